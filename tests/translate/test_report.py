"""coverage_report: tables, rules, targets, systems with and without OID, and what was reported."""

from __future__ import annotations

from bridge.translate import Mappings, coverage_report
from bridge.translate.findings import Finding

R66 = "https://mos.esante.gouv.fr/NOS/TRE_R66-CategorieEtablissement/FHIR/TRE-R66-CategorieEtablissement"
R343 = "https://mos.esante.gouv.fr/NOS/TRE_R343-FonctionLieu/FHIR/TRE-R343-FonctionLieu"


def test_report_lists_tables_rules_targets_and_systems(mappings: Mappings) -> None:
    report = coverage_report(mappings)
    for expected in (
        "functions.yaml: 8 stored function(s)",
        "urn:ror:csd:stored-function:internal-organization",
        "alias urn:ror:csd:stored-function:organisation-interne",
        "GET Organization?identifier={identifier}&_include:iterate=Organization:partof",
        "entities/organization.yaml: csd:organization from Organization",
        "entities/organization.yaml: csd:organization from Organization (establishment)",
        "entities/internal-organization.yaml: csd:facility from Organization (internal-organization)",
        "entities/unit.yaml: csd:facility from HealthcareService",
        "entities/service.yaml: csd:service from HealthcareService",
        "  parent: parent <- partOf.reference via reference_entity_id",
        "extension type=detailAdresse urn=urn:ror:csd:extension",
        "extension facilityExtension/parentFacility (v2.4 profile)",
        "OID 1.2.250.1.213.3.3.12  TRE_R211-ActiviteOperationnelle",
        f"no OID  TRE_R343-FonctionLieu (code)  {R343}",
        f"OID 1.2.250.1.213.1.6.1.8  TRE_R66-CategorieEtablissement (code, verified)  {R66}",
        "Organization: oi > idnatstruct > finess > urn:ror:fhir:Organization/<id>",
        "Reported since start-up: 0",
    ):
        assert expected in report, expected


def test_report_shows_findings(mappings: Mappings) -> None:
    mappings.findings.add(Finding.SYSTEM_WITHOUT_OID, R66)
    mappings.findings.add(Finding.SYSTEM_WITHOUT_OID, R66)
    report = coverage_report(mappings)
    assert "Reported since start-up: 2" in report
    assert f"     2  code system without OID (system URL written as codingScheme): {R66}" in report


def test_report_prints_the_v24_coverage_class_by_class(mappings: Mappings) -> None:
    report = coverage_report(mappings)
    lines = report.splitlines()
    attributes = [a for c in mappings.model for a in c.attributes]
    not_mapped = [a for a in attributes if a.unmapped]
    assert (
        f"model-v24.yaml: ME 2.4 coverage, {len(mappings.model)} classes, {len(attributes)} attributes: "
        f"{len(attributes) - len(not_mapped)} mapped, {len(not_mapped)} not mapped"
    ) in lines
    for model_class in mappings.model:
        assert any(line.startswith(f"  {model_class.name}  [") for line in lines), model_class.name
    # every attribute is printed once per class, mapped with its CSD place, or with the reason it is not
    assert sum(1 for line in lines if line.startswith(("    + ", "    - "))) == len(attributes)
    assert (
        "    + secteurPsychiatrique: csd:facility/extension/psychiatricSector (unit#psychiatric-sector)"
        in lines
    )
    assert "    + latitude: csd:facility/extension/location (unit#location)" in lines
    assert (
        "    + rattachement: csd:facility/extension/parentFacility (internal-organization#parent-facility)"
        in lines
    )
    assert any(line.startswith("    - visiteDomicile: NOT MAPPED: ME 2.4 carried it") for line in lines)


def test_shipped_model_covers_every_class_the_issue_names(mappings: Mappings) -> None:
    """Issue 5 item 2 lists the classes of the seed's "modèle d'exposition V2" and its annex."""
    names = {c.name for c in mappings.model}
    for required in (
        "Entité Juridique",
        "Entité Géographique",
        "Organisation Interne",
        "Unité élémentaire",
        "Activité opérationnelle",
        "Acte spécifique",
        "Équipement spécifique",
        "Capacité d'accueil",
        "Capacité d'habitation",
        "Capacité de crise",
        "Patientèle",
        "Adresse",
        "Géolocalisation",
        "Horaires",
        "Mode de prise en charge",
        "Temporalité d'accueil",
        "Ouverture annuelle",
        "Secteur psychiatrique",
        "Type de maternité",
        "Compétences spécifiques",
        "Zone d'intervention",
        "Territoire de santé",
        "Tarif",
        "Contact",
        "Télécommunication",
        "Zone de poser",
        "Habilitation soins sans consentement",
        "Niveau de recours ORSAN",
        "Aide financière",
        "Hébergement famille",
        "Places d'aide sociale",
        "Accessibilité",
        "Professionnel",
        "Situation opérationnelle",
        "Mode d'exercice",
        "Visite à domicile",
        "Métadonnées",
    ):
        assert required in names, required


def test_report_prints_the_coverage_of_the_profiles_typed_extensions(mappings: Mappings) -> None:
    lines = coverage_report(mappings).splitlines()
    start = lines.index("ROR CSD v2.4 profile: typed extension elements filled by the entity tables")
    section = lines[start : start + 13]
    header = "  csd:organization/extension (organisationExtension, entities/organization.yaml): "
    (organization,) = [line for line in section if line.startswith(header)]
    filled = section[section.index(organization) + 1]
    missing = section[section.index(organization) + 2]
    for element in ("useName", "contact", "healthCareTerritorial"):
        assert element in filled
        assert element not in missing
    assert missing.startswith("    not filled: ")
    assert "price" in missing
    # the counts agree with the lists, against the profile's sequence (16 elements in organisationExtension)
    count = len(filled.removeprefix("    filled: ").split(", "))
    assert organization == f"{header}{count} of 16 elements"
    assert count + len(missing.removeprefix("    not filled: ").split(", ")) == 16


def test_report_prints_the_typed_elements_of_the_units_and_internal_organisations(mappings: Mappings) -> None:
    # the profile's placement: the UE (an offer) and the internal organisations fill facilityExtension
    lines = coverage_report(mappings).splitlines()
    unit = next(i for i, line in enumerate(lines) if "(facilityExtension, entities/unit.yaml)" in line)
    for element in (
        "typeActivity",
        "careMode",
        "patientsType",
        "location",
        "parentFacility",
        "sensitiveUnit",
    ):
        assert element in lines[unit + 1].removeprefix("    filled: ").split(", "), element
    internal = next(
        i
        for i, line in enumerate(lines)
        if "(facilityExtension, entities/internal-organization.yaml)" in line
    )
    assert "location" in lines[internal + 2].removeprefix("    not filled: ").split(", ")
