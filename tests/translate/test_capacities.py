"""The lieu's capacities as the UE's typed elements (issue 11 item 3): lieu_accommodation_capacity and
lieu_residential_capacity on hand-made RORLocations, the v2.4 profile's accommodationCapacity and
residentialCapactity."""

from __future__ import annotations

from typing import Any

from bridge.model import ExtensionNode
from bridge.translate import Mappings
from bridge.translate.findings import Finding
from tests.translate.test_transforms import run

SD = "https://interop.esante.gouv.fr/ig/fhir/ror/StructureDefinition/"
NOS = "https://mos.esante.gouv.fr/NOS/"
R329 = f"{NOS}TRE_R329-NatureCapacite/FHIR/TRE-R329-NatureCapacite"
R330 = f"{NOS}TRE_R330-StatutCapacite/FHIR/TRE-R330-StatutCapacite"
R331 = f"{NOS}TRE_R331-TemporaliteCapacite/FHIR/TRE-R331-TemporaliteCapacite"
R336 = f"{NOS}TRE_R336-TypeCrise/FHIR/TRE-R336-TypeCrise"
R242 = f"{NOS}TRE_R242-TypeHabitation/FHIR/TRE-R242-TypeHabitation"
R242_OID = "1.2.250.1.213.3.3.35"  # NOS files of 2023-06-14
UPDATED = "2024-05-02T10:00:00+02:00"


def coded(url: str, system: str, code: str) -> dict[str, Any]:
    return {"url": url, "valueCodeableConcept": {"coding": [{"system": system, "code": code}]}}


def capacity(
    status: str, number: int, when: str = "2024-05-01T08:00:00+02:00", **more: str
) -> dict[str, Any]:
    parts = [coded("capacityStatus", R330, status), {"url": "nbCapacity", "valueInteger": number}]
    parts.append({"url": "capacityUpdateDate", "valueDateTime": when})
    if "nature" in more:
        parts.append(coded("capacityType", R329, more["nature"]))
    if "temporality" in more:
        parts.append(coded("temporalityCapacity", R331, more["temporality"]))
    if "crisis" in more:
        parts.append(coded("crisisType", R336, more["crisis"]))
    return {"url": f"{SD}ror-location-supported-capacity", "extension": parts}


def number(value: int) -> dict[str, Any]:
    return {"url": "residentialNumber", "valueInteger": value}


def lieu(*extensions: dict[str, Any]) -> dict[str, Any]:
    return {
        "resourceType": "Location",
        "id": "L1",
        "meta": {"lastUpdated": UPDATED},
        "extension": list(extensions),
    }


def apply(mappings: Mappings, name: str, location: dict[str, Any]) -> list[Any]:
    offer = {"resourceType": "HealthcareService"}
    return run(mappings, name, ["Location/L1"], offer, index={"Location/L1": location})


def attributes(node: ExtensionNode) -> dict[str, str]:
    return dict(node.attributes)


def test_installed_and_available_beds_and_places(mappings: Mappings) -> None:
    location = lieu(
        capacity("01", 20, nature="01"),
        capacity("02", 3, nature="01", when="2024-05-01T09:30:00+02:00"),
        capacity("02", 2, nature="01", when="2024-04-30T09:30:00+02:00"),  # another gender: summed
        capacity("02", 4, nature="02"),
        capacity("05", 7, nature="01"),  # closed: the profile has no place for it
        capacity("02", 9, nature="01", temporality="03"),  # a 24 h forecast: not the current capacity
        capacity("06", 5, nature="01", crisis="02"),  # a crisis capacity: not the accommodation capacity
    )
    (node,) = apply(mappings, "lieu_accommodation_capacity", location)
    assert node.name == "accommodationCapacity"
    beds, space, record = node.children
    assert beds.name == "beds"
    assert attributes(beds) == {"total": "20", "avaible": "5", "updateDate": "2024-05-01T09:30:00+02:00"}
    assert space.name == "space"
    assert attributes(space) == {"avaible": "4", "updateDate": "2024-05-01T08:00:00+02:00"}
    assert record.name == "record"
    assert attributes(record)["updated"] == "2024-05-02T10:00:00+02:00"


def test_a_capacity_without_nature_counts_as_beds(mappings: Mappings) -> None:
    """What the national API's data gives (no capacityType): [INFER] lits."""
    (node,) = apply(mappings, "lieu_accommodation_capacity", lieu(capacity("02", 11, temporality="01")))
    assert [child.name for child in node.children] == ["beds", "record"]
    assert attributes(node.children[0])["avaible"] == "11"


def test_no_installed_or_available_capacity_writes_nothing(mappings: Mappings) -> None:
    assert apply(mappings, "lieu_accommodation_capacity", lieu(capacity("05", 4))) == []
    assert apply(mappings, "lieu_accommodation_capacity", lieu()) == []


def test_a_lieu_not_received_gives_no_capacity_and_is_reported(mappings: Mappings) -> None:
    offer = {"resourceType": "HealthcareService"}
    found = run(mappings, "lieu_accommodation_capacity", ["Location/absent"], offer)
    assert found == []
    assert mappings.findings.count(Finding.UNRESOLVED_REFERENCE) == 1


def test_residential_capacities_one_per_type(mappings: Mappings) -> None:
    housing = f"{SD}ror-location-residential-capacity"
    location = lieu(
        {"url": housing, "extension": [coded("residentialType", R242, "01"), number(12)]},
        {"url": housing, "extension": [coded("residentialType", R242, "02")]},
        {"url": housing, "extension": [number(3)]},
    )
    first, second = apply(mappings, "lieu_residential_capacity", location)
    assert [c.name for c in first.children] == ["residentialType", "residentialNumber", "record"]
    assert attributes(first.children[0]) == {"code": "01", "codingScheme": R242_OID}
    assert first.children[1].text == "12"
    assert [c.name for c in second.children] == ["residentialType", "record"]
    # the one without residentialType (required by the profile) is reported, not written
    assert mappings.findings.count(Finding.INCOMPLETE_TYPED_ELEMENT) == 1
