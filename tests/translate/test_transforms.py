"""Each named transform of the closed list, on hand-made FHIR values."""

from __future__ import annotations

import shutil
from dataclasses import replace
from datetime import UTC, date, datetime, time, timedelta, timezone
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from bridge.model import (
    Address,
    AddressLine,
    CodedType,
    ContactPoint,
    Demographic,
    ExtensionNode,
    FacilityOrganization,
    FacilityService,
    Geocode,
    OperatingHours,
    OtherID,
    PersonName,
    Record,
)
from bridge.shipped import shipped_dir
from bridge.translate import Mappings, load_mappings
from bridge.translate.findings import Finding
from bridge.translate.transforms import (
    TRANSFORMS,
    Context,
    TransformError,
    offers_by_location,
    operating_hours,
    organization_kind,
    parse_datetime,
    reference_key,
    status_from_closure,
)

PARIS = ZoneInfo("Europe/Paris")
NOW = datetime(2024, 6, 1, 12, 0, tzinfo=UTC)
R200 = "1.2.250.1.213.3.3.1"  # TRE_R200-CanalCommunication
R207 = "https://mos.esante.gouv.fr/NOS/TRE_R207-TypeOrganisationInterne/FHIR/TRE-R207-TypeOrganisationInterne"
R66 = "https://mos.esante.gouv.fr/NOS/TRE_R66-CategorieEtablissement/FHIR/TRE-R66-CategorieEtablissement"
R66_OID = "1.2.250.1.213.1.6.1.8"  # NOS files of 2023-06-14
# a TRE newer than the NOS files of 2023-06-14: no OID in codes/systems.csv
R343 = "https://mos.esante.gouv.fr/NOS/TRE_R343-FonctionLieu/FHIR/TRE-R343-FonctionLieu"
CREATED = "https://interop.esante.gouv.fr/ig/fhir/ror/StructureDefinition/ror-meta-creation-date"


def context(mappings: Mappings, codes: str | None = None, index: dict | None = None) -> Context:  # type: ignore[type-arg]
    return Context(
        systems=mappings.systems,
        identities=mappings.identities,
        index=index or {},
        findings=mappings.findings,
        now=NOW,
        timezone=PARIS,
        codes=mappings.code_tables[codes] if codes else None,
    )


def run(
    mappings: Mappings,
    name: str,
    values: list,
    resource: dict | None = None,
    codes: str | None = None,  # type: ignore[type-arg]
    index: dict | None = None,
) -> list:  # type: ignore[type-arg]
    return TRANSFORMS[name].func(values, resource or {}, context(mappings, codes, index))


def test_entity_id_reports_fhir_id_fallback(mappings: Mappings) -> None:
    assert run(mappings, "entity_id", [], {"resourceType": "Organization", "id": "7"}) == [
        "urn:ror:fhir:Organization/7"
    ]
    assert mappings.findings.count(Finding.FHIR_ID_ENTITY) == 1


def test_reference_entity_id_resolves_through_received_resources(mappings: Mappings) -> None:
    parent = {
        "resourceType": "Organization",
        "id": "eg",
        "identifier": [{"system": "urn:oid:1.2.250.1.71.4.2.2", "value": "392"}],
    }
    index = {"Organization/eg": parent}
    refs = ["Organization/eg", "https://ror.example/fhir/Organization/eg/_history/3", "Organization/gone"]
    assert run(mappings, "reference_entity_id", refs, index=index) == [
        "urn:ror:idnatstruct:392",
        "urn:ror:idnatstruct:392",
        "urn:ror:fhir:Organization/gone",
    ]
    assert mappings.findings.count(Finding.UNRESOLVED_REFERENCE, "Organization/gone") == 1


def test_reference_key_and_bad_references(mappings: Mappings) -> None:
    assert reference_key("Organization/1") == "Organization/1"
    assert reference_key("#contained") is None
    with pytest.raises(TransformError, match="not a literal reference"):
        run(mappings, "reference_entity_id", ["#contained"])


def test_other_id_uses_oid_else_system_and_reports(mappings: Mappings) -> None:
    identifiers = [
        {"system": "urn:oid:1.2.250.1.71.4.2.2", "value": "392"},
        {"system": "https://finess.esante.gouv.fr", "value": "920000123"},
        {"value": "no-system"},
        {"system": "https://oi.esante.gouv.fr"},
    ]
    identifiers.append({"system": "https://oi.esante.gouv.fr", "value": "75/OI-1"})
    assert run(mappings, "other_id", identifiers, {"resourceType": "Organization"}) == [
        OtherID("392", "1.2.250.1.71.4.2.2"),
        OtherID("920000123", "1.2.250.1.213.3.2"),  # FINESS as ANS's identifier rule expects it
        OtherID("75/OI-1", "https://oi.esante.gouv.fr"),  # no OID: the system, reported
    ]
    assert mappings.findings.count(Finding.IDENTIFIER_WITHOUT_OID, "https://finess.esante.gouv.fr") == 0
    assert mappings.findings.count(Finding.IDENTIFIER_WITHOUT_OID, "https://oi.esante.gouv.fr") == 1
    assert mappings.findings.count(Finding.IDENTIFIER_WITHOUT_SYSTEM) == 1


def test_coded_type_writes_oid_or_reports_the_system_url(mappings: Mappings) -> None:
    codings = [
        {"system": R207, "code": "4", "display": "Unité élémentaire"},
        {"coding": [{"system": R343, "code": "002"}]},
        {"system": R207},
    ]
    assert run(mappings, "coded_type", codings) == [
        CodedType("4", "1.2.250.1.213.3.3.8", "Unité élémentaire"),
        CodedType("002", R343, None),
    ]
    assert mappings.findings.count(Finding.SYSTEM_WITHOUT_OID, R343) == 1
    assert mappings.findings.count(Finding.SYSTEM_WITHOUT_OID, R207) == 0
    with pytest.raises(TransformError, match="has no system"):
        run(mappings, "coded_type", [{"code": "1"}])


def test_coded_type_crosswalks_through_a_code_table(mappings: Mappings) -> None:
    # any code table works as a crosswalk: organization-kind maps "EG" → its own scheme
    assert run(
        mappings,
        "coded_type",
        [{"system": R66, "code": "EG"}, {"system": R66, "code": "365"}],
        codes="organization-kind",
    ) == [
        CodedType("EG", "urn:ror:csd:organization-kind", "Entité géographique"),
        CodedType("365", R66_OID, None),
    ]


@pytest.mark.parametrize(
    ("resource", "kind"),
    [
        ({"identifier": [{"system": "https://oi.esante.gouv.fr", "value": "1"}], "partOf": {}}, "OI"),
        (
            {
                "identifier": [
                    {"type": {"coding": [{"system": "…/TRE_R345-TypeIdentifiantAutre", "code": "42"}]}}
                ]
            },
            "OI",
        ),
        (
            {
                "type": [{"coding": [{"system": R207, "code": "2"}]}],
                "partOf": {"reference": "Organization/1"},
            },
            "OI",
        ),
        ({"partOf": {"reference": "Organization/1"}}, "EG"),
        ({"type": [{"coding": [{"system": R66, "code": "365"}]}]}, "EJ"),
    ],
)
def test_organization_kind(resource: dict, kind: str, mappings: Mappings) -> None:  # type: ignore[type-arg]
    assert organization_kind(resource) == kind
    assert run(mappings, "organization_kind", [], resource, codes="organization-kind") == [
        CodedType(
            kind,
            "urn:ror:csd:organization-kind",
            {"EJ": "Entité juridique", "EG": "Entité géographique", "OI": "Organisation interne"}[kind],
        )
    ]


def test_address(mappings: Mappings) -> None:
    value = {
        "type": "postal",
        "line": ["12 rue des Tilleuls", "Bât. A"],
        "city": "BOIS-COLOMBES",
        "postalCode": "92270",
    }
    assert run(mappings, "address", [value, {"use": "work"}]) == [
        Address(
            (
                AddressLine("12 rue des Tilleuls", "streetAddress"),
                AddressLine("Bât. A", "streetAddress"),
                AddressLine("BOIS-COLOMBES", "city"),
                AddressLine("92270", "postalCode"),
            ),
            "Mailing",
        )
    ]


def test_contact_point_maps_system_and_reports_unknown(mappings: Mappings) -> None:
    telecoms = [
        {"system": "phone", "value": "01 02"},
        {"system": "email", "value": "a@b.fr"},
        {"system": "pager", "value": "9"},
        {"system": "phone"},
    ]
    assert run(mappings, "contact_point", telecoms, codes="contact-point") == [
        ContactPoint(
            CodedType("2", R200, "Téléphone fixe"), equipment="01 02"
        ),  # TRE_R200, value in equipment
        ContactPoint(CodedType("3", R200, "Courrier électronique"), equipment="a@b.fr"),
    ]
    assert mappings.findings.count(Finding.SYSTEM_WITHOUT_OID, "ContactPoint.system 'pager'") == 1
    # the telecom's own channel (ror-telecom-communication-channel, TRE_R200) wins over its FHIR system
    r200 = "https://mos.esante.gouv.fr/NOS/TRE_R200-CanalCommunication/FHIR/TRE-R200-CanalCommunication"
    alert = {
        "system": "phone",
        "value": "15",
        "extension": [
            {"url": f"{SD}ror-telecom-communication-channel", "valueCoding": {"system": r200, "code": "8"}}
        ],
    }
    (point,) = run(mappings, "contact_point", [alert], codes="contact-point")
    assert (point.coded_type.code, point.equipment) == ("8", "15")


def test_record_prefers_creation_date_and_falls_back_on_last_updated(mappings: Mappings) -> None:
    resource = {
        "meta": {"lastUpdated": "2024-03-01T09:00:00+01:00"},
        "extension": [{"url": CREATED, "valueDateTime": "2020-01-15"}],
    }
    [record] = run(mappings, "record", [], resource)
    assert record == Record(
        created=datetime(2020, 1, 15, tzinfo=PARIS),
        updated=datetime(2024, 3, 1, 9, tzinfo=timezone(timedelta(hours=1))),
        status="Active",
    )
    [plain] = run(mappings, "record", [], {"meta": {"lastUpdated": "2024-03-01T08:00:00Z"}})
    assert plain.created == plain.updated == datetime(2024, 3, 1, 8, tzinfo=UTC)
    with pytest.raises(TransformError, match=r"meta\.lastUpdated is missing"):
        run(mappings, "record", [], {"meta": {}})


def test_one_context_remembers_each_resource_apart(mappings: Mappings) -> None:
    """An answer's context remembers a resource's record and entityID (Context.memo) for that very resource
    only: another resource, even one reusing a freed resource's id(), is worked out afresh."""
    ctx = context(mappings)
    first = {"resourceType": "Organization", "id": "1", "meta": {"lastUpdated": "2024-03-01T08:00:00Z"}}
    [one] = TRANSFORMS["record"].func([], first, ctx)
    assert TRANSFORMS["record"].func([], first, ctx) == [one]
    assert TRANSFORMS["entity_id"].func([], first, ctx) == ["urn:ror:fhir:Organization/1"]
    for number in range(50):  # freed dicts: their id() is reused by the next ones
        other = {
            "resourceType": "Organization",
            "id": f"x{number}",
            "meta": {"lastUpdated": f"2023-{1 + number % 12:02d}-01"},
        }
        [made] = TRANSFORMS["record"].func([], other, ctx)
        assert made.updated == datetime(2023, 1 + number % 12, 1, tzinfo=PARIS)
        assert TRANSFORMS["entity_id"].func([], other, ctx) == [f"urn:ror:fhir:Organization/x{number}"]
        del other


PERIOD = "http://hl7.org/fhir/StructureDefinition/organization-period"
CLOSING = "https://interop.esante.gouv.fr/ig/fhir/ror/StructureDefinition/ror-organization-closing-type"


R203 = "https://mos.esante.gouv.fr/NOS/TRE_R203-StatutLieu/FHIR/TRE-R203-StatutLieu"


@pytest.mark.parametrize(
    ("resource", "status"),
    [
        ({}, "Active"),
        (
            {"extension": [{"url": PERIOD, "valuePeriod": {"start": "2019-01-01", "end": "2024-05-31"}}]},
            "Inactive",
        ),
        (
            {"extension": [{"url": PERIOD, "valuePeriod": {"start": "2019-01-01", "end": "2024-12-31"}}]},
            "Active",
        ),
        ({"extension": [{"url": CLOSING, "valueCodeableConcept": {}}]}, "Inactive"),
        ({"notAvailable": [{"id": "closingReopeningDate", "during": {"start": "2024-01-01"}}]}, "Inactive"),
        (
            {
                "notAvailable": [
                    {"id": "closingReopeningDate", "during": {"start": "2024-01-01", "end": "2024-02-01"}}
                ]
            },
            "Active",
        ),
        ({"notAvailable": [{"id": "closingReopeningDate", "during": {"start": "2024-07-01"}}]}, "Active"),
        ({"notAvailable": [{"id": "holidays", "during": {"start": "2024-01-01"}}]}, "Active"),
    ],
)
def test_status_from_closure(resource: dict, status: str) -> None:  # type: ignore[type-arg]
    assert status_from_closure(resource, NOW, PARIS) == status


def test_parse_datetime_partial_and_naive_values_take_the_time_zone() -> None:
    assert parse_datetime("2024", PARIS) == datetime(2024, 1, 1, tzinfo=PARIS)
    assert parse_datetime("2024-05", PARIS) == datetime(2024, 5, 1, tzinfo=PARIS)
    assert parse_datetime("2024-05-02T10:00:00", PARIS) == datetime(2024, 5, 2, 10, tzinfo=PARIS)
    with pytest.raises(TransformError):
        parse_datetime("yesterday", PARIS)


def test_text_refuses_objects(mappings: Mappings) -> None:
    from bridge.translate.transforms import TEXT

    assert TEXT.func(["a", 3, False], {}, context(mappings)) == ["a", "3", "false"]
    with pytest.raises(TransformError, match="name a transform"):
        TEXT.func([{"a": 1}], {}, context(mappings))


# --------------------------------------------------------------------------------------------------
# Transforms of the whole v2.4 model (facility, provider, extension trees, crosswalks)

G15 = "https://mos.esante.gouv.fr/NOS/TRE_G15-ProfessionSante/FHIR/TRE-G15-ProfessionSante"
G15_OID = "1.2.250.1.71.1.2.7"
SD = "https://interop.esante.gouv.fr/ig/fhir/ror/StructureDefinition/"


def test_crosswalk_uses_the_row_and_reports_codes_without_one(mappings: Mappings) -> None:
    codings = [{"system": G15, "code": "60"}, {"system": G15, "code": "93", "display": "Orthoptiste"}]
    assert run(mappings, "crosswalk", codings, codes="profession") == [
        CodedType("60", G15_OID, "Infirmier"),  # the row's code, scheme (its NOS OID) and display
        CodedType("93", G15_OID, "Orthoptiste"),  # no row: written as received, never dropped
    ]
    assert mappings.findings.count(Finding.CODE_WITHOUT_CROSSWALK, f"profession: {G15}|93") == 1
    assert mappings.findings.count(Finding.CODE_WITHOUT_CROSSWALK) == 1


def test_crosswalk_refuses_a_coding_without_system(mappings: Mappings) -> None:
    with pytest.raises(TransformError, match="no system"):
        run(mappings, "crosswalk", [{"coding": [{"code": "60"}]}], codes="profession")


def test_default_code_gives_the_default_row(mappings: Mappings) -> None:
    assert run(mappings, "default_code", [], codes="facility-kind") == [
        CodedType("LIEU", "urn:ror:csd:facility-kind", "Lieu de réalisation de l'offre")
    ]
    with pytest.raises(TransformError, match="default"):
        run(mappings, "default_code", [], codes="contact-point")


def test_geocode_needs_both_coordinates(mappings: Mappings) -> None:
    assert run(mappings, "geocode", [{"latitude": 45, "longitude": 4.5, "altitude": 170}]) == [
        Geocode(45.0, 4.5, 170.0, "WGS84")
    ]
    assert run(mappings, "geocode", [{"latitude": 45}]) == []


def test_tree_renders_extensions_codings_and_objects(mappings: Mappings) -> None:
    extension = {
        "url": f"{SD}ror-healthcareservice-patient-type",
        "extension": [
            {
                "url": "supportedPatientInfo",
                "valueCodeableConcept": {"coding": [{"system": G15, "code": "1"}]},
            },
            {"url": "ageRange", "valueRange": {"low": {"value": 3, "unit": "a"}}},
            {"url": "flag", "valueBoolean": True},
        ],
    }
    [node] = run(mappings, "tree", [extension])
    assert node == ExtensionNode(
        "value",
        children=(
            ExtensionNode("supportedPatientInfo", attributes=(("code", "1"), ("codingScheme", G15_OID))),
            ExtensionNode(
                "ageRange",
                children=(
                    ExtensionNode("low", children=(ExtensionNode("value", "3"), ExtensionNode("unit", "a"))),
                ),
            ),
            ExtensionNode("flag", "true"),
        ),
    )
    # a simple extension: its value; a plain string: itself
    assert run(mappings, "tree", [{"url": f"{SD}ror-meta-comment", "valueString": "x"}]) == [
        ExtensionNode("value", "x")
    ]
    assert mappings.findings.count(Finding.SYSTEM_WITHOUT_OID, G15) == 0  # written as its NOS OID


def test_tree_refuses_what_xml_cannot_hold(mappings: Mappings) -> None:
    with pytest.raises(TransformError, match="cannot write"):
        run(mappings, "tree", [[["nested"]]])
    # a JSON null inside an object has nothing to write and is skipped
    assert run(mappings, "tree", [{"a": None, "b": [None, 1]}]) == [
        ExtensionNode("value", children=(ExtensionNode("b", "1"),))
    ]


def test_referenced_other_id_and_demographic_read_the_received_practitioner(mappings: Mappings) -> None:
    practitioner = {
        "resourceType": "Practitioner",
        "id": "p1",
        "identifier": [{"system": "urn:oid:1.2.250.1.71.4.2.1", "value": "10000000001"}],
        "name": [{"text": "Dr Jean Martin", "given": ["Jean"], "family": "Martin", "prefix": ["DR"]}],
        "gender": "male",
    }
    index = {"Practitioner/p1": practitioner}
    refs = ["Practitioner/p1", "Practitioner/absent"]
    assert run(mappings, "referenced_other_id", refs, index=index) == [
        OtherID("10000000001", "1.2.250.1.71.4.2.1")
    ]
    # the provider table's demographic rule reads its contact-point and civilite rows as one table
    rule = next(r for r in mappings.entities["provider"].rules if r.id == "demographic")
    assert rule.codes is not None
    assert rule.codes.name == "contact-point+civilite"
    ctx = replace(context(mappings, index=index), codes=rule.codes)
    [person] = TRANSFORMS["demographic"].func(refs, {}, ctx)
    # DR is a TRE_R11 civilité d'exercice: the profile's coded honorific
    honorific = CodedType("DR", "1.2.250.1.213.1.6.1.11", "Docteur")
    assert person == Demographic((PersonName(("Dr Jean Martin",), honorific, "Jean", "Martin"),), gender="M")
    assert mappings.findings.count(Finding.UNRESOLVED_REFERENCE, "Practitioner/absent") == 2
    # MME is a TRE_R81 civilité: the name's extension/title; a free-text prefix is reported, never written
    practitioner["name"][0]["prefix"] = ["MME", "Docteur"]
    [person] = TRANSFORMS["demographic"].func(refs[:1], {}, ctx)
    assert isinstance(person, Demographic)
    (name,) = person.names
    assert name.honorific is None
    (title,) = name.extensions
    assert (title.type, title.profile, title.content.name if title.content else None) == (
        "nameExtension",
        True,
        "title",
    )
    assert title.content is not None
    assert ("code", "MME") in title.content.attributes
    assert mappings.findings.count(Finding.CODE_WITHOUT_CROSSWALK, "civilité (name.prefix): 'Docteur'") == 1
    # a Practitioner without any name gives no demographic (CSD person/name is 1..*)
    index["Practitioner/p1"] = {"resourceType": "Practitioner", "id": "p1", "name": [{"use": "official"}]}
    assert run(mappings, "demographic", refs[:1], codes="contact-point", index=index) == []


def test_operating_hours_from_available_time(mappings: Mappings) -> None:
    slot = {
        "daysOfWeek": ["sat", "sun"],
        "availableStartTime": "07:00:00",
        "extension": [
            {
                "url": f"{SD}ror-available-time-effective-opening-closing-date",
                "valuePeriod": {"start": "2024-02-01"},
            },
            {"url": f"{SD}ror-available-time-number-days-of-week", "valueInteger": 1},
        ],
    }
    owner = {"resourceType": "HealthcareService", "meta": {"lastUpdated": "2024-03-01T10:00:00+01:00"}}
    hours = operating_hours([slot, {"daysOfWeek": ["mon"]}], owner, context(mappings))
    assert len(hours) == 1
    assert replace(hours[0], extensions=()) == OperatingHours(
        True, date(2024, 2, 1), (0, 1, 6), time(7, 0), None, None
    )
    # the v2.4 profile's operatingHoursExtension: no slot type here, the owner's record
    assert [(e.type, e.profile, e.content and e.content.name) for e in hours[0].extensions] == [
        ("operatingHoursExtension", True, "record")
    ]
    assert mappings.findings.count(Finding.HOURS_WITHOUT_START, "HealthcareService") == 1
    slot["availableEndTime"] = "25:99"
    with pytest.raises(TransformError, match="not a FHIR time"):
        operating_hours([slot], owner, context(mappings))


def test_a_closing_slot_is_not_open(mappings: Mappings) -> None:
    j41 = "https://mos.esante.gouv.fr/NOS/JDV_J41-TypeHoraire-ROR/FHIR/JDV-J41-TypeHoraire-ROR"

    def slot(code: str) -> dict[str, Any]:
        return {
            "extension": [
                {
                    "url": f"{SD}ror-available-time-effective-opening-closing-date",
                    "valuePeriod": {"start": "2024"},
                },
                {
                    "url": f"{SD}ror-available-time-type-of-time",
                    "valueCodeableConcept": {"coding": [{"system": j41, "code": code}]},
                },
            ]
        }

    owner = {"resourceType": "HealthcareService", "meta": {"lastUpdated": "2024-03-01T10:00:00+01:00"}}
    opening, closing = operating_hours([slot("01"), slot("08")], owner, context(mappings))
    assert (opening.open_flag, closing.open_flag) == (True, False)  # TRE_R252 #08 Horaire de fermeture
    slot_type = closing.extensions[0].content
    assert slot_type is not None
    assert (slot_type.name, dict(slot_type.attributes)["code"]) == ("operatingHoursType", "08")


@pytest.mark.parametrize(
    ("resource", "status"),
    [
        ({"resourceType": "Location", "status": "inactive"}, "Inactive"),
        ({"resourceType": "Location", "status": "active"}, "Active"),
        ({"resourceType": "PractitionerRole", "active": False}, "Inactive"),
        ({"resourceType": "Organization", "active": True}, "Active"),
        # TRE_R203-StatutLieu (NOS 2023-06-14): 1 fermé définitivement, 2 fermé temporairement, 3 opérationnel
        ({"resourceType": "Location", "operationalStatus": {"system": R203, "code": "1"}}, "Inactive"),
        ({"resourceType": "Location", "operationalStatus": {"system": R203, "code": "2"}}, "Active"),
        ({"resourceType": "Location", "operationalStatus": {"system": R203, "code": "3"}}, "Active"),
        ({"resourceType": "Location", "operationalStatus": {"system": "urn:other", "code": "1"}}, "Active"),
        (
            {
                "resourceType": "Location",
                "extension": [
                    {"url": f"{SD}ror-location-status", "valueCoding": {"system": R203, "code": "1"}}
                ],
            },
            "Inactive",
        ),
    ],
)
def test_fhir_core_closure_flags(resource: dict, status: str) -> None:  # type: ignore[type-arg]
    assert status_from_closure(resource, NOW, PARIS) == status


def test_crosswalk_prefers_system_qualified_rows(mappings: Mappings, tmp_path: Path) -> None:
    shutil.copytree(shipped_dir("mappings"), tmp_path / "m")
    table = tmp_path / "m" / "codes" / "profession.csv"
    r94 = "https://mos.esante.gouv.fr/NOS/TRE_R94-ProfessionSocial/FHIR/TRE-R94-ProfessionSocial"
    table.write_text(
        table.read_text(encoding="utf-8") + f"{r94}|60,S60,urn:test:v24,Social 60,test row\n",
        encoding="utf-8",
    )
    local = load_mappings(tmp_path / "m")
    codings = [{"system": r94, "code": "60"}, {"system": G15, "code": "60"}]
    assert run(local, "crosswalk", codings, codes="profession") == [
        CodedType("S60", "urn:test:v24", "Social 60"),  # the system-qualified row
        CodedType("60", G15_OID, "Infirmier"),  # the bare-code row
    ]


def test_resolved_entity_id_leaves_out_what_was_not_received(mappings: Mappings) -> None:
    location = {
        "resourceType": "Location",
        "id": "l1",
        "identifier": [{"type": {"coding": [{"code": "25"}]}, "value": "84/1"}],
    }
    refs = ["Location/l1", "https://ror.example/fhir/Location/l2"]
    assert run(mappings, "resolved_entity_id", refs, index={"Location/l1": location}) == [
        "urn:ror:lieu:84%2F1"
    ]
    assert mappings.findings.count(Finding.UNRESOLVED_REFERENCE, "Location/l2") == 1


def test_facility_organizations_groups_offers_by_providing_organisation(mappings: Mappings) -> None:
    org = {
        "resourceType": "Organization",
        "id": "o1",
        "identifier": [{"system": "https://oi.esante.gouv.fr", "value": "OI1"}],
    }

    def offer(offer_id: str, provided_by: str | None) -> dict:  # type: ignore[type-arg]
        resource = {
            "resourceType": "HealthcareService",
            "id": offer_id,
            "identifier": [{"value": offer_id.upper()}],
            "name": f"Offre {offer_id}",
            "location": [{"reference": "Location/l1"}],
        }
        if provided_by:
            resource["providedBy"] = {"reference": provided_by}
        return resource

    index = {
        "Organization/o1": org,
        "HealthcareService/b": offer("b", "Organization/o1"),
        "HealthcareService/a": offer("a", "Organization/o1"),
        "HealthcareService/c": offer("c", "Organization/o-absent"),
        "HealthcareService/d": offer("d", None),
    }
    ctx = replace(context(mappings, index=index), offers_at=offers_by_location(index))
    location = {"resourceType": "Location", "id": "l1"}
    assert TRANSFORMS["facility_organizations"].func([], location, ctx) == [
        FacilityOrganization(
            "urn:ror:fhir:Organization/o-absent", (FacilityService("urn:ror:offre:C", ("Offre c",)),)
        ),
        FacilityOrganization(
            "urn:ror:oi:OI1",
            (
                FacilityService("urn:ror:offre:A", ("Offre a",)),
                FacilityService("urn:ror:offre:B", ("Offre b",)),
            ),
        ),
    ]
    assert mappings.findings.count(Finding.UNRESOLVED_REFERENCE, "Organization/o-absent") == 1
    assert mappings.findings.count(Finding.UNRESOLVED_REFERENCE, "HealthcareService/d.providedBy") == 1
    assert TRANSFORMS["facility_organizations"].func([], {"resourceType": "Location", "id": "l2"}, ctx) == []


def test_operational_status_of_a_situation(mappings: Mappings) -> None:
    r23 = "https://mos.esante.gouv.fr/NOS/TRE_R23-ModeExercice/FHIR/TRE-R23-ModeExercice"
    role: dict[str, Any] = {
        "resourceType": "PractitionerRole",
        "meta": {"lastUpdated": "2024-03-06T09:00:00+01:00"},
        "extension": [
            {
                "url": f"{SD}ror-practitionerrole-unit-exercise-mode",
                "valueCodeableConcept": {"coding": [{"system": r23, "code": "L", "display": "Libéral"}]},
            }
        ],
        "telecom": [{"system": "email", "value": "dr@example.fr"}, {"system": "phone", "value": "01"}],
        "availableTime": [
            {
                "daysOfWeek": ["mon"],
                "extension": [
                    {
                        "url": f"{SD}ror-available-time-effective-opening-closing-date",
                        "valuePeriod": {"start": "2024-01-01"},
                    }
                ],
            }
        ],
    }
    (status,) = run(mappings, "profile_operational_status", [], role, codes="contact-channel")
    assert [c.name for c in status.children] == [
        "exerciceModeInUnit",
        "contactPoint",  # the first telecom only: the profile holds one
        "operatingHours",
        "record",
    ]
    assert status.children[0].attributes[0] == ("code", "L")
    channel, equipment, _ = status.children[1].children
    assert (channel.attributes[0], equipment.text) == (("code", "3"), "dr@example.fr")  # TRE_R200 e-mail
    hours = status.children[2]
    assert [c.name for c in hours.children] == ["openFlag", "dayOfTheWeek", "beginEffectiveDate", "extension"]
    # without its exercise mode (required by the profile) the situation has no operationalStatus, reported
    del role["extension"]
    assert run(mappings, "profile_operational_status", [], role, codes="contact-channel") == []
    assert mappings.findings.count(Finding.INCOMPLETE_TYPED_ELEMENT) == 1


def test_savoir_faire_is_the_profiles_credential(mappings: Mappings) -> None:
    """typeSavoirFaire (TRE_R04) → credential/codedType, each value in its credentialsExtension element."""
    nos = "https://mos.esante.gouv.fr/NOS"
    role = {"resourceType": "PractitionerRole", "id": "r1", "meta": {"lastUpdated": "2024-01-02T10:00:00Z"}}
    specialty = [
        {"coding": [{"system": f"{nos}/TRE_R04-TypeSavoirFaire/FHIR/TRE-R04-TypeSavoirFaire", "code": "C"}]},
        {"coding": [{"system": f"{nos}/TRE_R39-Competence/FHIR/TRE-R39-Competence", "code": "CM01"}]},
        {"coding": [{"system": f"{nos}/TRE_R39-Competence/FHIR/TRE-R39-Competence", "code": "CM02"}]},
    ]
    [credential] = run(mappings, "savoir_faire", specialty, role)
    assert credential.coded_type.code == "C"
    assert credential.coded_type.coding_scheme == "1.2.250.1.213.1.6.1.16"
    assert credential.number == "CM01"
    names = [e.content.name for e in credential.extensions if e.content is not None]
    assert names == ["competence", "record"]  # one element per nomenclature: the second competence reported
    assert mappings.findings.count(Finding.INCOMPLETE_TYPED_ELEMENT) == 1
    # without typeSavoirFaire there is no credential (its codedType is 1..1), reported
    assert run(mappings, "savoir_faire", specialty[1:2], role) == []
    without_type = "credential without typeSavoirFaire"
    assert mappings.findings.count(Finding.INCOMPLETE_TYPED_ELEMENT, without_type) == 1
