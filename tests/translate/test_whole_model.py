"""The whole v2.4 model through the tables: facility, provider, every extension class, crosswalks, findings.

Runs the engine on tests/fixtures/fhir/whole-model/bundle.json (hand-written after the IG profiles and the
IG 0.1 extensions) with a plan that fills all four directories, and renders the answer with the CSD writer.
"""

from __future__ import annotations

import json
import random
from dataclasses import replace
from datetime import UTC, date, time, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from lxml import etree

from bridge.csd.writer import document_to_bytes
from bridge.model import (
    CodedType,
    ContactPoint,
    CsdDocument,
    Demographic,
    Directory,
    Extension,
    ExtensionNode,
    FacilityOrganization,
    FacilityService,
    FhirQuery,
    OperatingHours,
    OtherID,
    PersonName,
    Provider,
    ProviderFacility,
    ProviderOrganization,
    ProviderService,
    QueryPlan,
    SearchResult,
)
from bridge.translate import Mappings, from_fhir_results
from bridge.translate.findings import Finding
from bridge.translate.identity import NationalIdentifier
from tests.profile.harness import OfficialProfile, assert_follows_profile

from .conftest import FHIR, NOW, search_result

BUNDLE = FHIR / "whole-model" / "bundle.json"
CET = timezone(timedelta(hours=1))
CEST = timezone(timedelta(hours=2))
NOS = "https://mos.esante.gouv.fr/NOS/"
G15 = f"{NOS}TRE_G15-ProfessionSante/FHIR/TRE-G15-ProfessionSante"
R244 = f"{NOS}TRE_R244-CategorieOrganisation/FHIR/TRE-R244-CategorieOrganisation"
R253 = f"{NOS}TRE_R253-TypeMaternite/FHIR/TRE-R253-TypeMaternite"
R343 = f"{NOS}TRE_R343-FonctionLieu/FHIR/TRE-R343-FonctionLieu"
# NOS OIDs written as codingScheme (codes/systems.csv, from the NOS files of 2023-06-14)
G15_OID, R244_OID, R253_OID = "1.2.250.1.71.1.2.7", "1.2.250.1.213.3.3.39", "1.2.250.1.213.3.3.52"
QUERY = FhirQuery("HealthcareService", (("_id", "hs-1"),), "whole model")
PLAN = QueryPlan("urn:test:whole-model", (QUERY,), frozenset(Directory))
OFFER = "urn:ror:offre:84%2F100001"  # the offer: its csd:service and its UE facility
EG = "urn:ror:idnatstruct:1690000002"
V24 = "ror-v24/local/IHE_ProfilCSD-ExtensionROR_fr-v2.4.xsd"


def answer(mappings: Mappings, result: SearchResult | None = None) -> CsdDocument:
    return from_fhir_results(mappings, PLAN, [result or search_result(QUERY, BUNDLE)], now=NOW)


def extension(entity: Any, type_: str) -> ExtensionNode:
    found = [e.content for e in entity.extensions if e.type == type_]
    assert len(found) == 1, (type_, found)
    assert found[0] is not None
    return found[0]


def typed(entity: Any, element: str) -> ExtensionNode:
    """The one typed element of the v2.4 profile of that name on the entity."""
    found = [e.content for e in entity.extensions if e.profile and e.content and e.content.name == element]
    assert len(found) == 1, (element, found)
    assert found[0] is not None
    return found[0]


def child(node: ExtensionNode, *names: str) -> ExtensionNode:
    for name in names:
        matches = [c for c in node.children if c.name == name]
        assert matches, (name, node)
        node = matches[0]
    return node


def test_every_directory_is_filled(mappings: Mappings) -> None:
    document = answer(mappings)
    # the profile's placement: EJ and EG are organisations; the v3 UE organisation OI-UE-CARDIO is not
    # written (its offer is the UE); the lieu is the UE's location, not a facility
    assert [o.entity_id for o in document.organizations] == ["urn:ror:idnatstruct:2690000001", EG]
    assert [s.entity_id for s in document.services] == [OFFER]
    assert [f.entity_id for f in document.facilities] == [OFFER]
    # pr-2's Practitioner was not received: CSD demographic is 1..1, so it is reported, not written; pr-1 is
    # its professional's entry (RPPS)
    assert [p.entity_id for p in document.providers] == ["urn:ror:rpps:11111573474"]
    assert mappings.findings.count(Finding.MISSING_DEMOGRAPHIC, "urn:ror:situation:84%2FSO-78") == 1
    assert mappings.findings.count(Finding.UNRESOLVED_REFERENCE, "Practitioner/p-absent") >= 2


def test_unit_in_full(mappings: Mappings) -> None:
    unit = answer(mappings).facilities[0]
    assert unit.other_ids == (OtherID("84/100001", "https://ror.example/identifiant-offre"),)
    assert unit.coded_types == (CodedType("4", "1.2.250.1.213.3.3.8", "Unité élémentaire"),)
    assert unit.primary_name == "Hospitalisation complète de cardiologie"
    assert [(line.value, line.component) for line in unit.addresses[0].lines] == [
        ("12 rue des Cimes", "streetAddress"),
        ("Lyon", "city"),
        ("69003", "postalCode"),
    ]
    # the lieu as the UE's typed location, the TRE_R203 status and TRE_R13 commune with their NOS OIDs
    location = typed(unit, "location")
    assert [c.name for c in location.children] == [
        "name",
        "description",
        "status",
        "address",
        "geoCoordinates",
        "cityNumber",
        "record",
    ]
    assert child(location, "name").text == "Bâtiment B - cardiologie"
    assert child(location, "cityNumber").attributes == (
        ("code", "69383"),
        ("codingScheme", "1.2.250.1.213.2.23"),
    )
    assert [c.text for c in child(location, "geoCoordinates").children[:3]] == ["45.7597", "4.8422", "WGS84"]
    assert child(location, "record").attributes[0] == ("created", "2019-05-01T00:00:00+02:00")
    # the offer's activity under its EG, with its dated opening hours (jourSemaine 7 = Sunday = CSD 0; the
    # slot without debutDateEffective is reported and skipped)
    hours = unit.organizations[0].services[0].operating_hours
    assert [[(e.type, e.content and e.content.name) for e in h.extensions] for h in hours] == [
        [("operatingHoursExtension", "record")]
    ]
    without_profile = tuple(
        replace(
            o,
            services=tuple(
                replace(v, operating_hours=tuple(replace(h, extensions=()) for h in v.operating_hours))
                for v in o.services
            ),
        )
        for o in unit.organizations
    )
    assert without_profile == (
        FacilityOrganization(
            EG,
            (
                FacilityService(
                    OFFER,
                    names=("Hospitalisation complète de cardiologie",),
                    operating_hours=(
                        OperatingHours(
                            open_flag=True,
                            begin_effective_date=date(2024, 1, 1),
                            days_of_week=(0, 1, 2),
                            beginning_hour=time(8, 30),
                            ending_hour=time(18, 0),
                            end_effective_date=date(2024, 12, 31),
                        ),
                    ),
                ),
            ),
        ),
    )
    assert mappings.findings.count(Finding.HOURS_WITHOUT_START, "HealthcareService") == 1
    # its parent facility: the v3 UE organisation stands for its parent, which was not received here
    assert [e.content.name for e in unit.extensions if e.content is not None].count("parentFacility") == 0


TITLE_MME = Extension(
    "nameExtension",
    "urn:asip:ror:2015",
    ExtensionNode("title", "Madame", (("code", "MME"), ("codingScheme", "1.2.250.1.213.1.6.1.69"))),
    profile=True,
)


def test_provider_in_full(mappings: Mappings) -> None:
    provider = answer(mappings).providers[0]
    assert provider.entity_id == "urn:ror:rpps:11111573474"  # one entry per professional, by RPPS
    assert provider.other_ids == (
        OtherID("11111573474", "1.2.250.1.71.4.2.1"),  # RPPS of the Practitioner, NOS OID
        OtherID("84/SO-77", "https://ror.example/situation"),
    )
    # profession 60 has a row in codes/profession.csv: no crosswalk finding for it
    assert provider.coded_types == (CodedType("60", G15_OID, "Infirmier"),)
    assert mappings.findings.count(Finding.CODE_WITHOUT_CROSSWALK, f"profession: {G15}|60") == 0
    assert mappings.findings.count(Finding.CODE_WITHOUT_CROSSWALK, f"profession: {G15}|10") == 1
    assert provider.demographic == Demographic(
        # civilité MME (TRE_R81, codes/civilite.csv) is the profile's name extension/title, not honorific
        names=(PersonName(("Cyndi CHANMET",), forename="Cyndi", surname="CHANMET", extensions=(TITLE_MME,)),),
        contact_points=(
            ContactPoint(
                CodedType("3", "1.2.250.1.213.3.3.1", "Courrier électronique"),
                equipment="cyndi.chanmet@lifen.mssante.fr",
            ),
        ),
        gender="F",
    )
    # the situation's organisation is the v3 UE organisation: its EG is the csd:organization
    assert provider.organizations == (ProviderOrganization(EG),)
    # the UE of the role's offer (the facility with the offer's entityID), holding the offer
    assert provider.facilities == (
        ProviderFacility(
            OFFER,
            (ProviderService(OFFER, ("Hospitalisation complète de cardiologie",), organization_id=EG),),
        ),
    )
    # the savoir-faire as the profile's credential: type S (TRE_R04), spécialité SM26 (TRE_R38) in its
    # extension
    assert provider.specialties == ()
    (credential,) = provider.credentials
    assert credential.coded_type == CodedType("S", "1.2.250.1.213.1.6.1.16", "Spécialité ordinale")
    assert credential.number == "SM26"
    assert [e.content.name for e in credential.extensions if e.content] == ["speciality", "record"]
    speciality = credential.extensions[0].content
    assert speciality is not None
    assert speciality.attributes == (("code", "SM26"), ("codingScheme", "1.2.250.1.213.2.28"))
    assert {e.type for e in credential.extensions} == {"credentialsExtension"}
    status = typed(provider, "operationalStatus")  # the v2.4 profile's providerExtension
    assert [c.name for c in status.children] == ["exerciceModeInUnit", "record"]
    assert child(status, "exerciceModeInUnit").attributes[0] == ("code", "S")
    assert [e.type for e in provider.extensions] == ["providerExtension"]  # the profile's only extension
    assert provider.record.status == "Active"


def test_unit_typed_elements_cover_the_v24_classes(mappings: Mappings) -> None:
    unit = answer(mappings).facilities[0]
    # the offer's attributes as the UE's facilityExtension, in the profile's sequence (the writer orders them)
    assert [e.content.name for e in unit.extensions if e.content is not None] == [
        "contact",
        "mailBoxMSS",
        "typeActivity",
        "careMode",
        "patientsType",
        "residentialCapactity",
        "resourcesSkills",
        "equipment",  # the lieu's IRM (ror-location-equipment), named as its csd:device
        "receptionType",
        "takingCareSpeciality",
        "facilityType",
        "location",
        "interventionZone",
        "annualOpenning",
        "psychiatricSector",
        "specificAct",
        "maternityHospitalType",
        "sensitiveUnit",
    ]
    assert {e.type for e in unit.extensions} == {"facilityExtension"}
    # patientèle: public (TRE_R239) and age range in years
    patients = typed(unit, "patientsType")
    assert child(patients, "supportedPatient").attributes[0] == ("code", "01")
    assert child(patients, "patientTypeAgeMin", "value").text == "18"
    assert child(patients, "patientTypeAgeMax", "unit").attributes[0] == ("code", "a")
    assert typed(unit, "psychiatricSector").text == "69G01"
    # the lieu's capacité d'habitation; its one supported capacity is a crisis one: no accommodationCapacity
    housing = typed(unit, "residentialCapactity")
    assert child(housing, "residentialType").attributes[0] == ("code", "01")
    assert child(housing, "residentialNumber").text == "2"
    assert typed(unit, "sensitiveUnit").text == "false"
    zone = typed(unit, "interventionZone")
    assert [c.name for c in zone.children] == ["type", "codedType", "record"]
    # the service is the activité opérationnelle, with its family (the profile's serviceExtension)
    offer = answer(mappings).services[0]
    assert offer.coded_type.code == "014"
    assert [e.content.name for e in offer.extensions if e.content is not None] == ["actFamily"]


def test_crosswalks_rows_and_reported_misses(mappings: Mappings) -> None:
    unit = answer(mappings).facilities[0]
    # typeOffre 43 has a row (ME 2.4 categorieOrganisation from TRE_R244): written from the row, not reported
    assert typed(unit, "facilityType").attributes == (("code", "43"), ("codingScheme", R244_OID))
    assert mappings.findings.count(Finding.CODE_WITHOUT_CROSSWALK, f"type-offre: {R244}|43") == 0
    # type-maternite has no row yet: the code is still written, and reported
    maternity = typed(unit, "maternityHospitalType")
    assert (maternity.text, maternity.attributes) == ("Type 3", (("code", "3"), ("codingScheme", R253_OID)))
    assert mappings.findings.count(Finding.CODE_WITHOUT_CROSSWALK, f"type-maternite: {R253}|3") == 1


def test_organisation_extensions(mappings: Mappings) -> None:
    ej, eg = answer(mappings).organizations
    assert ej.other_names == ("CH des Monts",)  # name extension ror-organization-additional-name
    # Typed elements of the profile's organisationExtension
    assert typed(ej, "creationDate").text == "1975-01-01"  # ror-organization-creation-date
    assert typed(eg, "creationDate").text == "1976-09-01"  # organization-period start (dateOuverture)
    assert typed(eg, "useName").text == "Hôpital des Monts"
    assert typed(eg, "dropZone").text == "true"
    assert typed(eg, "accomodationFamily").text == "false"
    assert typed(eg, "nbPermanentSocialHelpPlace").text == "12"
    assert typed(eg, "financialHelpType").attributes[0] == ("code", "02")
    assert typed(eg, "levelRecourseORSAN").attributes[0] == ("code", "2")
    location = typed(eg, "location")  # adresseEG with its INSEE code and geolocation
    assert [c.name for c in location.children] == ["address", "geoCoordinates", "cityNumber", "record"]
    assert child(location, "cityNumber").attributes[0] == ("code", "69383")
    assert [c.text for c in child(location, "geoCoordinates").children[:3]] == ["45.7597", "4.8422", "WGS84"]
    assert ("city", "Lyon") in [
        (dict(line.attributes).get("component"), line.text) for line in child(location, "address").children
    ]
    territorial = typed(eg, "healthCareTerritorial")
    assert [c.name for c in territorial.children] == ["type", "codedType", "record"]
    assert child(territorial, "codedType").attributes[0] == ("code", "T84-01")
    assert child(territorial, "type").attributes[0] == ("code", "4")
    # What the profile has no element for stays in the bridge's own (unqualified) trees
    assert child(extension(eg, "tarif"), "amount", "value").text == "72.5"
    assert extension(eg, "commentaire").text == "Accès par l'entrée nord"
    detail = extension(eg, "detailAdresse")
    assert [c.name for c in detail.children] == [
        "iso21090-ADXP-houseNumber",
        "iso21090-ADXP-streetNameType",
        "iso21090-ADXP-streetNameBase",
    ]


def test_a_provider_extension_is_valid_in_the_official_v24_profile(
    reference_dir: Path, mappings: Mappings
) -> None:
    # The typed extension on a bare provider: the rest of today's provider is not the profile's yet (its
    # trees are extensions without operationalStatus, its honorific is not coded, one provider per role).
    schema = etree.XMLSchema(etree.parse(str(reference_dir / V24)))
    provider = next(p for p in answer(mappings).providers if any(e.profile for e in p.extensions))
    typed_only = Provider(
        provider.entity_id,
        provider.coded_types[:1],
        Demographic((PersonName(("CHANMET Cyndi",)),)),
        provider.record,
        extensions=tuple(e for e in provider.extensions if e.profile),
    )
    assert schema.validate(etree.fromstring(document_to_bytes(CsdDocument(providers=(typed_only,))))), (
        schema.error_log
    )


def test_organisations_are_valid_against_the_official_v24_profile(
    mappings: Mappings, reference_dir: Path
) -> None:
    schema = etree.XMLSchema(etree.parse(str(reference_dir / V24)))
    organizations = answer(mappings).organizations
    xml = etree.fromstring(document_to_bytes(CsdDocument(organizations=organizations)))
    assert schema.validate(xml), schema.error_log
    (typed_extension,) = xml.xpath(
        "//csd:organization[csd:primaryName='CH des Monts - site principal']"
        "/csd:extension[@type='organisationExtension']",
        namespaces={"csd": "urn:ihe:iti:csd:2013"},
    )
    assert [etree.QName(c).localname for c in typed_extension] == [
        "useName",
        "healthCareTerritorial",
        "location",
        "dropZone",
        "financialHelpType",
        "accomodationFamily",
        "nbPermanentSocialHelpPlace",
        "creationDate",
        "levelRecourseORSAN",
    ]


def test_answer_validates_against_both_schemas(
    mappings: Mappings, our_csd_schema: etree.XMLSchema, official_csd_schema: etree.XMLSchema
) -> None:
    xml = etree.fromstring(document_to_bytes(answer(mappings)))
    for schema in (our_csd_schema, official_csd_schema):
        assert schema.validate(xml), schema.error_log
    ns = {"csd": "urn:ihe:iti:csd:2013"}
    assert (
        xml.xpath("count(//csd:facility/csd:organizations/csd:organization/csd:service)", namespaces=ns) == 1
    )
    assert xml.xpath("string(//csd:provider/csd:otherID/@code)", namespaces=ns) == "11111573474"


def test_entity_ids_are_stable_across_runs_and_input_order(mappings: Mappings) -> None:
    first = answer(mappings)
    bundle = json.loads(BUNDLE.read_text(encoding="utf-8"))
    random.Random(7).shuffle(bundle["entry"])
    shuffled = SearchResult(query=QUERY, pages=1)
    for entry in bundle["entry"]:
        target = shuffled.matches if entry["search"]["mode"] == "match" else shuffled.includes
        target.append(entry["resource"])
    second = answer(mappings, shuffled)
    assert second == first


@pytest.mark.parametrize(
    ("entity_id", "scheme", "value"),
    [
        ("urn:ror:lieu:84%2F5001", "lieu", "84/5001"),
        ("urn:ror:rpps:11111573474", "rpps", "11111573474"),
        ("urn:ror:situation:84%2FSO-77", "situation", "84/SO-77"),
    ],
)
def test_new_entity_ids_reverse_to_their_identifier(
    mappings: Mappings, entity_id: str, scheme: str, value: str
) -> None:
    national = mappings.identities.reverse(entity_id)
    assert isinstance(national, NationalIdentifier)
    assert (national.scheme.name, national.value) == (scheme, value)


def test_lieu_identity_needs_the_idlocation_type(mappings: Mappings) -> None:
    location = {
        "resourceType": "Location",
        "id": "loc-9",
        "identifier": [
            {
                "type": {"coding": [{"code": "26"}]},  # idExterneSynchro: not the functional identifier
                "system": "https://ror.example/lieu-externe",
                "value": "EXT-9",
            }
        ],
    }
    assert mappings.identities.derive(location) == ("urn:ror:fhir:Location/loc-9", False)
    location["identifier"].append({"type": {"coding": [{"code": "25"}]}, "value": "84/9"})
    assert mappings.identities.derive(location) == ("urn:ror:lieu:84%2F9", True)


def test_practitioner_identity_is_the_rpps(mappings: Mappings) -> None:
    practitioner = {
        "resourceType": "Practitioner",
        "id": "p-1",
        "identifier": [{"system": "urn:oid:1.2.250.1.71.4.2.1", "value": "11111573474"}],
    }
    assert mappings.identities.derive(practitioner) == ("urn:ror:rpps:11111573474", True)


def test_closed_offer_makes_its_unit_and_service_records_inactive(mappings: Mappings) -> None:
    bundle = json.loads(BUNDLE.read_text(encoding="utf-8"))
    result = SearchResult(query=QUERY, pages=1)
    for entry in bundle["entry"]:
        resource = entry["resource"]
        if resource["resourceType"] == "HealthcareService":
            start = (NOW - timedelta(days=3)).astimezone(UTC).isoformat()
            resource["notAvailable"] = [
                {"id": "closingReopeningDate", "description": "Fermeture", "during": {"start": start}}
            ]
        (result.matches if entry["search"]["mode"] == "match" else result.includes).append(resource)
    document = answer(mappings, result)
    assert document.services[0].record.status == "Inactive"
    assert document.facilities[0].record.status == "Inactive"


def test_role_without_practitioner_falls_back_on_its_name_of_exercise(mappings: Mappings) -> None:
    bundle = json.loads(BUNDLE.read_text(encoding="utf-8"))
    result = SearchResult(query=QUERY, pages=1)
    for entry in bundle["entry"]:
        resource = entry["resource"]
        if resource["id"] == "pr-2":  # its Practitioner is not in the answer
            resource["extension"] = [
                {
                    "url": "https://interop.esante.gouv.fr/ig/fhir/ror/StructureDefinition/RORPractitionerRoleName",
                    "extension": [
                        {"url": "exerciseLastName", "valueString": "DURAND"},
                        {"url": "exerciseFirstName", "valueString": "Paul"},
                    ],
                }
            ]
        (result.matches if entry["search"]["mode"] == "match" else result.includes).append(resource)
    providers = {p.entity_id: p for p in answer(mappings, result).providers}
    role = providers["urn:ror:situation:84%2FSO-78"]
    assert role.demographic == Demographic((PersonName(("Paul DURAND",), forename="Paul", surname="DURAND"),))
    assert role.other_ids == (OtherID("84/SO-78", "https://ror.example/situation"),)  # no RPPS without it
    assert role.coded_types == (
        CodedType("10", G15_OID, "Médecin"),
    )  # no crosswalk row: as received, reported
    assert mappings.findings.count(Finding.MISSING_DEMOGRAPHIC) == 0


def test_revincluded_roles_of_a_selected_offer_become_providers(mappings: Mappings) -> None:
    """An offer-search answer: offers matched, their roles brought by _revinclude=PractitionerRole:service."""
    bundle = json.loads(BUNDLE.read_text(encoding="utf-8"))
    result = SearchResult(query=QUERY, pages=1)
    for entry in bundle["entry"]:
        resource = entry["resource"]
        if resource["resourceType"] == "HealthcareService":
            result.matches.append(resource)
        else:
            result.includes.append(resource)
    # a role of an offer not in the answer stays out
    stray = json.loads(json.dumps(next(r for r in result.includes if r["id"] == "pr-1")))
    stray.update(id="pr-stray", identifier=[{"value": "STRAY"}])
    stray["healthcareService"] = [{"reference": "HealthcareService/not-matched"}]
    result.includes.append(stray)
    document = answer(mappings, result)
    assert [p.entity_id for p in document.providers] == ["urn:ror:rpps:11111573474"]
    assert [f.entity_id for f in document.facilities] == [OFFER]  # the offer's UE
    # a plan without organization and facility directories: the offer and its roles only
    services_only = QueryPlan(PLAN.function, PLAN.queries, frozenset({Directory.SERVICE, Directory.PROVIDER}))
    document = from_fhir_results(mappings, services_only, [result], now=NOW)
    assert [p.entity_id for p in document.providers] == ["urn:ror:rpps:11111573474"]
    assert list(document.organizations) == []
    assert list(document.facilities) == []


def test_answer_follows_the_official_ror_profile(
    mappings: Mappings, official_profile: OfficialProfile
) -> None:
    """The whole-model answer against ANS's v2.4 schema and Schematron rules (tests/profile/)."""
    assert_follows_profile(official_profile, etree.fromstring(document_to_bytes(answer(mappings))))
