"""The lieu's crisis capacities as the UE's crisisAccomodationCapacity (issue 11 item 3): lieu_crisis_capacity
on hand-made RORLocations, and the whole-model UE carrying the element, valid against ANS's official schema
and Schematron rules."""

from __future__ import annotations

import copy
import json
from typing import Any

from lxml import etree

from bridge.csd.writer import document_to_bytes
from bridge.translate import Mappings
from bridge.translate.findings import Finding
from tests.profile.harness import OfficialProfile, assert_follows_profile
from tests.translate.test_capacities import apply, capacity, lieu
from tests.translate.test_whole_model import BUNDLE, QUERY, answer, child, typed

from .conftest import search_result

SUPPORTED = "https://interop.esante.gouv.fr/ig/fhir/ror/StructureDefinition/ror-location-supported-capacity"
SSE, PMIE = "02", "01"  # TRE_R336-TypeCrise (NOS 2023-06-14)
NOW, ONE_HOUR = "01", "02"  # TRE_R331-TemporaliteCapacite: Courant, Prévisionnel 1 heure


def counts(node: Any) -> tuple[str | None, str | None]:
    t0, t60, record = node.children
    assert (t0.name, t60.name, record.name) == ("crisisCapacityT0", "crisisCapacityT60", "record")
    return t0.text, t60.text


def test_t0_and_t60_crisis_capacities_are_summed(mappings: Mappings) -> None:
    location = lieu(
        capacity("02", 6, crisis=SSE, temporality=NOW),
        capacity("06", 4, crisis=SSE),  # no temporality: the current one (T0)
        capacity("06", 15, crisis=SSE, temporality=ONE_HOUR),
        capacity("01", 40, crisis=SSE, temporality=ONE_HOUR),  # installed: not mobilised beds
        capacity("06", 30, crisis=SSE, temporality="03"),  # a 24 h forecast: neither T0 nor T60
        capacity("02", 9, nature="01"),  # not a crisis capacity
    )
    (node,) = apply(mappings, "lieu_crisis_capacity", location)
    assert node.name == "crisisAccomodationCapacity"
    assert counts(node) == ("10", "15")
    assert dict(node.children[2].attributes)["updated"] == "2024-05-02T10:00:00+02:00"
    assert mappings.findings.count(Finding.INCOMPLETE_TYPED_ELEMENT) == 0


def test_only_t0_writes_nothing_and_is_reported(mappings: Mappings) -> None:
    location = lieu(capacity("06", 4, crisis=SSE, temporality=NOW))
    assert apply(mappings, "lieu_crisis_capacity", location) == []
    assert (
        mappings.findings.count(
            Finding.INCOMPLETE_TYPED_ELEMENT, "crisis capacity (TRE_R336 02) without T0 or T60"
        )
        == 1
    )


def test_only_t60_writes_nothing_and_is_reported(mappings: Mappings) -> None:
    location = lieu(capacity("06", 4, crisis=PMIE, temporality=ONE_HOUR))
    assert apply(mappings, "lieu_crisis_capacity", location) == []
    assert mappings.findings.count(Finding.INCOMPLETE_TYPED_ELEMENT) == 1


def test_no_crisis_capacity_writes_nothing(mappings: Mappings) -> None:
    location = lieu(capacity("01", 20, nature="01"), capacity("02", 3, nature="01", temporality=ONE_HOUR))
    assert apply(mappings, "lieu_crisis_capacity", location) == []
    assert apply(mappings, "lieu_crisis_capacity", lieu()) == []
    assert mappings.findings.count(Finding.INCOMPLETE_TYPED_ELEMENT) == 0


def test_non_crisis_capacities_are_unaffected(mappings: Mappings) -> None:
    """The crisis capacities stay out of the accommodationCapacity, which keeps its own counts."""
    location = lieu(
        capacity("01", 20, nature="01"),
        capacity("02", 6, crisis=SSE, temporality=NOW),
        capacity("06", 15, crisis=SSE, temporality=ONE_HOUR),
    )
    (beds,) = apply(mappings, "lieu_accommodation_capacity", location)[0].children[:1]
    assert dict(beds.attributes) == {"total": "20", "updateDate": "2024-05-01T08:00:00+02:00"}


def test_a_second_crisis_type_is_reported_not_added(mappings: Mappings) -> None:
    location = lieu(
        capacity("02", 2, crisis=PMIE, temporality=NOW),
        capacity("02", 5, crisis=PMIE, temporality=ONE_HOUR),
        capacity("06", 7, crisis=SSE, temporality=NOW),
        capacity("06", 8, crisis=SSE, temporality=ONE_HOUR),
    )
    (node,) = apply(mappings, "lieu_crisis_capacity", location)
    assert counts(node) == ("2", "5")
    assert mappings.findings.count(Finding.SECOND_CRISIS_TYPE, "TRE_R336 02") == 1


def crisis_bundle_result() -> Any:
    """The whole-model bundle whose lieu's supported capacities are an SSE crisis capacity at T0 and T60."""
    bundle = json.loads(BUNDLE.read_text(encoding="utf-8"))
    for entry in bundle["entry"]:
        resource = entry["resource"]
        if resource["resourceType"] == "Location":
            others = [e for e in resource.get("extension", []) if e.get("url") != SUPPORTED]
            crisis = [
                capacity("06", 12, crisis=SSE, temporality=NOW),
                capacity("06", 25, crisis=SSE, temporality=ONE_HOUR),
            ]
            resource["extension"] = others + copy.deepcopy(crisis)
    return bundle


def test_the_ue_crisis_capacity_follows_the_official_profile(
    mappings: Mappings, official_profile: OfficialProfile, tmp_path: Any
) -> None:
    path = tmp_path / "bundle.json"
    path.write_text(json.dumps(crisis_bundle_result()), encoding="utf-8")
    document = answer(mappings, search_result(QUERY, path))
    (unit,) = document.facilities
    node = typed(unit, "crisisAccomodationCapacity")
    assert child(node, "crisisCapacityT0").text == "12"
    assert child(node, "crisisCapacityT60").text == "25"
    xml = etree.fromstring(document_to_bytes(document))
    found = xml.xpath(
        "//*[local-name()='crisisAccomodationCapacity']/*[local-name()='crisisCapacityT60']/text()"
    )
    assert found == ["25"]
    assert_follows_profile(official_profile, xml)
