"""The UE's location parts added by issue 11 item 3: calculatedDistance (a search around a point carries its
point in the plan, QueryPlan.origin, and each UE's location states its lieu's great-circle distance from it)
and positionFiable (the coordinates' geoCodeExtension)."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest

from bridge.model import ExtensionNode
from bridge.translate import Mappings
from bridge.translate.transforms import TRANSFORMS, calculated_distance
from tests.translate.test_functions import plan
from tests.translate.test_transforms import context

OFFER_SEARCH = "urn:ror:csd:stored-function:offer-search"
SD = "https://interop.esante.gouv.fr/ig/fhir/ror/StructureDefinition/"
R13 = "https://mos.esante.gouv.fr/NOS/TRE_R13-CommuneOM/FHIR/TRE-R13-CommuneOM"


def test_the_plan_of_a_search_around_a_point_holds_the_point(mappings: Mappings) -> None:
    extra = (("latitude", "45.75"), ("longitude", "4.85"), ("distanceKm", "10"))
    assert plan(mappings, OFFER_SEARCH, extra=extra).origin == (45.75, 4.85)
    # around a commune (the bridge does not know its centre) or no distance at all: no point
    assert plan(mappings, OFFER_SEARCH, extra=(("communeCog", "69123"), ("distanceKm", "10"))).origin is None
    assert plan(mappings, OFFER_SEARCH, extra=(("communeCog", "69123"),)).origin is None


@pytest.mark.parametrize(
    ("origin", "point", "km"),
    [
        ((48.8566, 2.3522), (45.7640, 4.8357), "391.499"),  # Paris - Lyon, haversine on 6371 km
        ((45.0, 4.0), (45.0, 4.0), "0.000"),
        ((0.0, 0.0), (0.0, 1.0), "111.195"),  # one degree of the equator
    ],
)
def test_great_circle_distances(origin: tuple[float, float], point: tuple[float, float], km: str) -> None:
    assert calculated_distance(origin, point) == km


def _lieu() -> dict[str, Any]:
    return {
        "resourceType": "Location",
        "id": "L1",
        "meta": {"lastUpdated": "2024-05-02T10:00:00+02:00"},
        "name": "Lieu",
        "position": {"latitude": 45.764, "longitude": 4.8357},
        "extension": [
            {
                "url": f"{SD}ror-commune-cog",
                "valueCodeableConcept": {"coding": [{"system": R13, "code": "69123"}]},
            }
        ],
    }


def _location(mappings: Mappings, origin: tuple[float, float] | None) -> ExtensionNode:
    ctx = replace(context(mappings, index={"Location/L1": _lieu()}), origin=origin)
    offer = {"resourceType": "HealthcareService"}
    (node,) = TRANSFORMS["lieu_location"].func(["Location/L1"], offer, ctx)
    assert isinstance(node, ExtensionNode)
    return node


def test_the_ue_location_states_the_distance_before_its_record(mappings: Mappings) -> None:
    node = _location(mappings, (48.8566, 2.3522))
    assert [c.name for c in node.children][-3:] == ["cityNumber", "calculatedDistance", "record"]
    (distance,) = [c for c in node.children if c.name == "calculatedDistance"]
    assert distance.text == "391.499"
    assert "calculatedDistance" not in [c.name for c in _location(mappings, None).children]


def test_the_position_reliability_is_the_coordinates_extension(mappings: Mappings) -> None:
    lieu = _lieu()
    lieu["position"]["extension"] = [{"url": f"{SD}ror-coordinate-reliability", "valueBoolean": False}]
    ctx = context(mappings, index={"Location/L1": lieu})
    (node,) = TRANSFORMS["lieu_location"].func(["Location/L1"], {"resourceType": "HealthcareService"}, ctx)
    assert isinstance(node, ExtensionNode)
    (coordinates,) = [c for c in node.children if c.name == "geoCoordinates"]
    assert [c.name for c in coordinates.children] == [
        "latitude",
        "longitude",
        "coordinateSystem",
        "extension",
        "record",
    ]
    extension = coordinates.children[3]
    assert dict(extension.attributes) == {"type": "geoCodeExtension", "urn": "urn:asip:ror:2015"}
    assert [(c.name, c.text) for c in extension.children[:1]] == [("coordonneesFiables", "false")]
    # without the extension (the simulator's lieux): no geoCodeExtension
    (coordinates,) = [c for c in _location(mappings, None).children if c.name == "geoCoordinates"]
    assert "extension" not in [c.name for c in coordinates.children]
