"""coverage_report: tables, rules, targets, systems with and without OID, and what was reported."""

from __future__ import annotations

from bridge.translate import Mappings, coverage_report
from bridge.translate.findings import Finding

R66 = "https://mos.esante.gouv.fr/NOS/TRE_R66-CategorieEtablissement/FHIR/TRE-R66-CategorieEtablissement"


def test_report_lists_tables_rules_targets_and_systems(mappings: Mappings) -> None:
    report = coverage_report(mappings)
    for expected in (
        "functions.yaml: 1 stored function(s)",
        "urn:ror:csd:stored-function:internal-organization",
        "alias urn:ror:csd:stored-function:organisation-interne",
        "GET Organization?identifier={identifier}&_include:iterate=Organization:partof",
        "entities/organization.yaml: csd:organization from Organization",
        "entities/service.yaml: csd:service from HealthcareService",
        "  parent: parent <- partOf.reference via reference_entity_id",
        "extension type=nomOffre urn=urn:ror:csd:extension",
        "OID 1.2.250.1.213.3.3.12  TRE_R211-ActiviteOperationnelle",
        f"no OID  TRE_R66-CategorieEtablissement (code)  {R66}",
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
