"""The access-profile table (mappings/access-profiles.yaml) and its filter: each profile's answer passes ANS's
filtre_profilN.sch rules, the table is checked at load, and records are filtered, never dropped silently."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from lxml import etree

from bridge import profile as v24
from bridge.csd.writer import document_to_bytes
from bridge.errors import MappingTableError
from bridge.model import (
    CodedType,
    CsdDocument,
    Demographic,
    Extension,
    ExtensionNode,
    Facility,
    FacilityOrganization,
    FacilityService,
    Organization,
    OtherID,
    PersonName,
    Provider,
    ProviderFacility,
    Record,
)
from bridge.translate.access_profiles import (
    Activities,
    filter_document,
    filter_records,
    load_access_profiles,
)

MAPPINGS = Path(__file__).resolve().parents[2] / "mappings"
CSD = "urn:ihe:iti:csd:2013"
NS = {"csd": CSD}
RECORD = Record(datetime(2024, 1, 1, tzinfo=UTC), datetime(2024, 6, 1, tzinfo=UTC), "Active")
RECORD_NODE = ExtensionNode(
    "record",
    attributes=(("created", "2024-01-01T00:00:00+00:00"), ("updated", "2024-06-01T00:00:00+00:00"),
                ("status", "Active")),
)  # fmt: skip
LEVEL_OID = "1.2.250.1.213.1.1.4.344"


def _typed(kind: str, node: ExtensionNode) -> Extension:
    return Extension(type=v24.BY_ENTITY[kind], urn=v24.URN, content=node, profile=True)


def _coded(name: str, code: str, scheme: str, text: str | None = None) -> ExtensionNode:
    return ExtensionNode(name, text=text, attributes=(("code", code), ("codingScheme", scheme)))


def contact(level: str, telecom_level: str | None = None) -> ExtensionNode:
    telecom = ExtensionNode(
        "contactPoint",
        children=(
            _coded("codedType", "2", "1.2.250.1.213.3.3.1", "Téléphone fixe"),
            ExtensionNode("equipment", text=f"01000000{level}{telecom_level or level}"),
            ExtensionNode(
                "extension",
                attributes=(("type", "contactPointExtension"), ("urn", v24.URN)),
                children=(_coded("confidentialityLevel", telecom_level or level, LEVEL_OID), RECORD_NODE),
            ),
        ),
    )
    return ExtensionNode(
        "contact",
        children=(
            _coded("nature", "06", "1.2.250.1.213.3.3.67", "Standard"),
            _coded("confidentialityLevel", level, LEVEL_OID),
            telecom,
            RECORD_NODE,
        ),
    )


def levels_of(kind: str) -> tuple[Extension, ...]:
    return tuple(_typed(kind, contact(level)) for level in ("1", "2", "3"))


def unit(entity_id: str, activity: str, *, sensitive: bool = False, eg: str = "urn:eg:1") -> Facility:
    typed = [
        *levels_of("facility"),
        _typed("facility", _coded("typeActivity", activity, "1.2.250.1.213.3.3.17")),
        _typed(
            "facility",
            ExtensionNode(
                "accommodationCapacity",
                children=(
                    ExtensionNode(
                        "beds",
                        attributes=(("total", "20"), ("avaible", "3"), ("updateDate", "2024-06-01T00:00:00")),
                    ),
                    RECORD_NODE,
                ),
            ),
        ),
        _typed("facility", ExtensionNode("crisisAccomodationCapacity", children=(RECORD_NODE,))),
        _typed("facility", ExtensionNode("resourcesSkills", children=(RECORD_NODE,))),
        _typed("facility", ExtensionNode("equipment", attributes=(("entityID", "urn:device:1"),))),
        _typed("facility", _coded("takingCareSpeciality", "1", "1.2.250.1.213.3.3.45")),
        _typed("facility", _coded("specificAct", "1", "1.2.250.1.213.3.3.19")),
        _typed("facility", ExtensionNode("sensitiveUnit", text="1" if sensitive else "0")),
    ]
    return Facility(
        entity_id=entity_id,
        coded_types=(CodedType("4", "1.2.250.1.213.3.3.8"),),
        primary_name=f"UE {entity_id}",
        record=RECORD,
        other_ids=(OtherID(entity_id.rsplit(":", 1)[-1], "https://oi.esante.gouv.fr"),),
        organizations=(FacilityOrganization(eg, services=(FacilityService(f"{entity_id}:activity"),)),),
        extensions=tuple(typed),
    )


def provider(entity_id: str, facility: str) -> Provider:
    status = ExtensionNode(
        "operationalStatus",
        children=(_coded("exerciceModeInUnit", "S", "1.2.250.1.213.1.6.1.18"), RECORD_NODE),
    )
    return Provider(
        entity_id=entity_id,
        coded_types=(CodedType("10", "1.2.250.1.71.1.2.7"),),
        demographic=Demographic(names=(PersonName(common_names=("Jo DOE",)),)),
        record=RECORD,
        other_ids=(OtherID(entity_id.rsplit(":", 1)[-1], "1.2.250.1.71.4.2.1"),),
        facilities=(ProviderFacility(facility),),
        extensions=(_typed("provider", status),),
    )


def document() -> CsdDocument:
    ej = Organization(
        "urn:ej:1", (CodedType("72", "1.2.250.1.213.1.6.1.44"),), "EJ", RECORD,
        other_ids=(OtherID("1000000001", "1.2.250.1.71.4.2.2"),), extensions=levels_of("organization"),
    )  # fmt: skip
    eg_typed = (
        *levels_of("organization"),
        _typed("organization", ExtensionNode("dropZone", children=(RECORD_NODE,))),
        _typed("organization", _coded("levelRecourseORSAN", "1", "1.2.250.1.213.3.3.70")),
    )
    eg = Organization(
        "urn:eg:1", (CodedType("355", "1.2.250.1.71.4.2.2"),), "EG", RECORD, parent_id="urn:ej:1",
        other_ids=(OtherID("1000000002", "1.2.250.1.71.4.2.2"),), extensions=eg_typed,
    )  # fmt: skip
    facilities = (
        unit("urn:oi:01", "01"),
        unit("urn:oi:04", "04"),
        unit("urn:oi:05", "05"),
        unit("urn:oi:sensitive", "04", sensitive=True),
    )
    providers = (provider("urn:ps:01", "urn:oi:01"), provider("urn:ps:05", "urn:oi:05"))
    return CsdDocument(organizations=(ej, eg), facilities=facilities, providers=providers)


def parse(doc: CsdDocument) -> etree._Element:
    return etree.fromstring(document_to_bytes(doc))


def reports(official_profile: Any, root: etree._Element, number: int) -> list[str]:
    """The failed `report`s of filtre_profilN (the "must not appear" rules; its asserts check placement)."""
    found = official_profile.schematron(f"filtre_profil{number}.sch").validate(root)
    return [f"{f.path}: {f.test}" for f in found if f.kind == "report"]


def xpath(root: etree._Element, path: str) -> list[Any]:
    found = root.xpath(path, namespaces=NS)
    assert isinstance(found, list)
    return found


def contact_levels(root: etree._Element, entity: str) -> list[str]:
    return [
        str(code)
        for code in xpath(
            root, f"//*[@entityID='{entity}']/csd:extension/csd:contact/csd:confidentialityLevel/@code"
        )
    ]


@pytest.fixture(scope="module")
def access() -> Any:
    return load_access_profiles(MAPPINGS)


@pytest.mark.parametrize("number", [0, 1, 2, 3])
def test_each_profile_answer_passes_its_filter_rules(official_profile: Any, access: Any, number: int) -> None:
    unfiltered = parse(document())
    if number != 1:  # profile 1 sees everything but a sensitive unit's lower-level contacts
        assert reports(official_profile, unfiltered, number), "the unfiltered document must break the rules"
    filtered = parse(filter_document(access, number, document()))
    assert reports(official_profile, filtered, number) == []
    # The rest of the rule set (asserts: identifiers, statuses, records) holds before and after.
    failures = official_profile.schematron(f"filtre_profil{number}.sch").validate(filtered)
    assert [f for f in failures if f.kind == "assert"] == []


def test_profile_one_still_removes_a_sensitive_units_lower_contacts(
    official_profile: Any, access: Any
) -> None:
    root = parse(document())
    assert any("sensitiveUnit" in r for r in reports(official_profile, root, 1))
    filtered = parse(filter_document(access, 1, document()))
    assert contact_levels(filtered, "urn:oi:sensitive") == ["3"]
    assert contact_levels(filtered, "urn:oi:01") == ["1", "2", "3"]


def test_confidential_contacts_by_profile(access: Any) -> None:
    for number, expected in {0: ["1"], 1: ["1", "2", "3"], 2: ["1", "2"]}.items():
        root = parse(filter_document(access, number, document()))
        for entity in ("urn:ej:1", "urn:eg:1", "urn:oi:01"):
            assert contact_levels(root, entity) == expected, (number, entity)
    root = parse(filter_document(access, 3, document()))
    assert contact_levels(root, "urn:oi:04") == ["1", "2"]  # médico-social unit: restricted contacts
    assert contact_levels(root, "urn:oi:01") == ["1"]
    # Its units are not all médico-social: when in doubt, out.
    assert contact_levels(root, "urn:eg:1") == ["1"]
    assert contact_levels(root, "urn:oi:sensitive") == []


def test_what_the_misspelled_schematron_rules_mean_is_removed(access: Any) -> None:
    """ANS's rules test crisisAccommodationCapacity and beds/@available, the schema's names are
    crisisAccomodationCapacity and beds/@avaible: the filter removes the schema's (rules cannot see them)."""
    for number in (0, 3):
        root = parse(filter_document(access, number, document()))
        assert xpath(root, "//csd:crisisAccomodationCapacity") == []
        beds = xpath(root, "//csd:accommodationCapacity/csd:beds")
        assert beds
        assert all(b.get("avaible") is None and b.get("updateDate") is None for b in beds)
        assert all(b.get("total") == "20" for b in beds)  # the total stays
    root = parse(filter_document(access, 1, document()))
    assert len(xpath(root, "//csd:crisisAccomodationCapacity")) == 4


def test_entities_are_removed_only_where_the_profile_says(access: Any) -> None:
    doc = document()
    for number, providers in {0: ["urn:ps:05"], 1: ["urn:ps:01", "urn:ps:05"], 3: ["urn:ps:05"]}.items():
        filtered = filter_document(access, number, doc)
        assert [p.entity_id for p in filtered.providers] == providers
        assert [f.entity_id for f in filtered.facilities] == [f.entity_id for f in doc.facilities]
        assert [o.entity_id for o in filtered.organizations] == ["urn:ej:1", "urn:eg:1"]
    # Filtered alone (a batch of the extraction): the provider's unit is unknown, so profile 0 removes it.
    assert filter_records(access, 0, "provider", doc.providers) == []
    activities = Activities.of_document(doc)
    assert filter_records(access, 0, "provider", doc.providers, activities) == [doc.providers[1]]


def test_no_profile_no_filter(access: Any) -> None:
    doc = document()
    assert filter_document(access, None, doc) is doc
    assert document_to_bytes(filter_document(access, 1, CsdDocument())) == document_to_bytes(CsdDocument())


@pytest.mark.parametrize(
    ("old", "new", "message"),
    [
        ("remove: contact\n", "remove: contakt\n", "'contakt' is not an element of the profile's"),
        ("  3:\n    label", "  4:\n    label", "a profile is 0, 1, 2 or 3"),
        ("entities: [provider]", "entities: [practitioner]", "entities"),
        ("not_in: [\"05\"]", "among: [\"05\"]", "a condition has the keys"),
        ("        source: filtre_profil0 EJ", "        sourc: filtre_profil0 EJ", "unknown key"),
        ("id: p2-eg-crisis-elements", "id: p0-eg-crisis-elements", "duplicate id"),
        ("remove: entity\n        when: [{activity: true, not_in: [\"05\"]}]",
         "remove: entity\n        when: [{value: confidentialityLevel/@code, in: [\"1\"]}]",
         "not with 'entity'"),
    ],
)  # fmt: skip
def test_a_broken_table_stops_the_start(
    edited_access_table: Callable[[str, str], Path], old: str, new: str, message: str
) -> None:
    with pytest.raises(MappingTableError, match=r"access-profiles\.yaml") as error:
        load_access_profiles(edited_access_table(old, new))
    assert message in str(error.value)


def test_the_table_is_required(tmp_path: Path) -> None:
    target = tmp_path / "mappings"
    shutil.copytree(MAPPINGS, target)
    (target / "access-profiles.yaml").unlink()
    with pytest.raises(MappingTableError, match="file not found"):
        load_access_profiles(target)
