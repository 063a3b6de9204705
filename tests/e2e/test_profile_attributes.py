"""End-to-end: the v2.4 attributes issue 11 item 3 adds to the profile's typed elements, read over real HTTP
from the simulator's resources (a TR_Lecture-OffresSanteEtablissement of an EG whose lieux carry them), each
answer valid against the official schema and ANS's rules."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from datetime import datetime
from typing import Any

import httpx
import pytest
from lxml import etree

from bridge import ns
from bridge.simulator import vocab
from bridge.simulator.dataset import Dataset
from tests.e2e.conftest import RunningBridge
from tests.e2e.test_ror_profile import body_of, reading, send
from tests.expected import answer_csd, device_ids
from tests.profile.harness import LECTURE_PROJECT

C = {"csd": ns.CSD}
EG = 1  # Dataset.org_kind
IDNATSTRUCT = "urn:oid:1.2.250.1.71.4.2.2"
R242_OID = "1.2.250.1.213.3.3.35"  # TRE_R242-TypeHabitation, NOS files of 2023-06-14


def _part(extension: dict[str, Any], url: str) -> Any:
    for part in extension.get("extension", []):
        if part["url"] == url:
            return next(v for k, v in part.items() if k.startswith("value"))
    return None


def _offers_by_eg(dataset: Dataset) -> Iterator[tuple[str, dict[str, Any], dict[str, Any]]]:
    """(EG idNatStruct, offer, its lieu) for every offer under an EG of the dataset."""
    for index in range(len(dataset.org_kind)):
        if int(dataset.org_kind[index]) != EG:
            continue
        eg = dataset.build("Organization", index)
        code = next((i["value"] for i in eg.get("identifier", []) if i.get("system") == IDNATSTRUCT), None)
        if code is None:
            continue
        low, high = dataset.subtree_range(index)
        first, end = dataset.offers_of_orgs(low, high)
        for offer_index in range(first, end):
            offer = dataset.build("HealthcareService", offer_index)
            lieu = dataset.build("Location", int(dataset.offer_location[offer_index]))
            yield str(code), offer, lieu


def _first(
    dataset: Dataset, wanted: Callable[[dict[str, Any]], list[dict[str, Any]]]
) -> tuple[str, dict[str, Any], dict[str, Any], list[dict[str, Any]]]:
    """The first (EG code, offer, lieu, found) whose lieu gives `wanted` something; fails when none does."""
    for code, offer, lieu in _offers_by_eg(dataset):
        found = wanted(lieu)
        if found:
            return code, offer, lieu, found
    pytest.fail("no lieu of the dataset has what the test needs")


def _capacities(lieu: dict[str, Any], status: str) -> list[dict[str, Any]]:
    """The lieu's one supported capacity when it has exactly one, of that status."""
    found = [e for e in lieu.get("extension", []) if e["url"] == vocab.EXT_SUPPORTED_CAPACITY]
    return (
        found if len(found) == 1 and _part(found[0], "capacityStatus")["coding"][0]["code"] == status else []
    )


def _unit(bridge: RunningBridge, code: str, offer: dict[str, Any]) -> etree._Element:
    """The UE facility of `offer` in the reading of its EG (official schema and ANS's rules checked)."""
    response = send(bridge, reading(code), "soap12")
    assert response.status_code == 200, response.text[:2000]
    document = answer_csd(body_of(response))
    (identifier,) = [i["value"] for i in offer["identifier"]]
    found = document.xpath(
        "csd:facilityDirectory/csd:facility[csd:otherID/@code=$code][csd:codedType/@code='4']",
        namespaces=C,
        code=identifier,
    )
    assert len(found) == 1, f"UE of offer {identifier} not in the reading of {code}"
    return found[0]


def _follows_profile(official_profile: Any, bridge: RunningBridge, code: str, *elements: str) -> None:
    """The reading is valid against the official schema, and ANS's rules and PLATINES assertions find
    nothing wrong with `elements` (the dataset's codes newer than the NOS files and the other known
    departures are the golden cases' business: tests/golden, tests/profile/harness.py)."""
    response = send(bridge, reading(code), "soap12")
    document = answer_csd(body_of(response))
    assert official_profile.schema_failures(document) == []
    failures = official_profile.check(document, project=LECTURE_PROJECT)
    mine = [str(f) for f in failures if any(e in f.path or e in f.message for e in elements)]
    assert mine == []


def test_available_beds_of_the_lieu_are_the_ue_accommodation_capacity(
    bridge: RunningBridge, official_profile: Any
) -> None:
    code, offer, lieu, capacities = _first(bridge.dataset, lambda lieu: _capacities(lieu, "02"))
    unit = _unit(bridge, code, offer)
    (beds,) = unit.xpath("csd:extension/csd:accommodationCapacity/csd:beds", namespaces=C)
    assert beds.get("avaible") == str(_part(capacities[0], "nbCapacity"))
    assert beds.get("total") is None  # the simulator gives no installed count
    expected = datetime.fromisoformat(_part(capacities[0], "capacityUpdateDate"))
    assert datetime.fromisoformat(str(beds.get("updateDate"))) == expected
    record = unit.xpath("csd:extension/csd:accommodationCapacity/csd:record", namespaces=C)
    assert len(record) == 1
    assert datetime.fromisoformat(str(record[0].get("updated"))) == datetime.fromisoformat(
        lieu["meta"]["lastUpdated"]
    )
    _follows_profile(official_profile, bridge, code, "accommodationCapacity")


def test_a_closed_capacity_is_not_written(bridge: RunningBridge) -> None:
    code, offer, _lieu, _found = _first(bridge.dataset, lambda lieu: _capacities(lieu, "05"))
    unit = _unit(bridge, code, offer)
    assert unit.xpath("csd:extension/csd:accommodationCapacity", namespaces=C) == []


def test_residential_capacities_of_the_lieu_are_the_ue_ones(
    bridge: RunningBridge, official_profile: Any
) -> None:
    code, offer, _lieu, housing = _first(
        bridge.dataset,
        lambda lieu: [e for e in lieu.get("extension", []) if e["url"] == vocab.EXT_RESIDENTIAL_CAPACITY],
    )
    unit = _unit(bridge, code, offer)
    written = unit.xpath("csd:extension/csd:residentialCapactity", namespaces=C)
    assert len(written) == len(housing)
    for element, extension in zip(written, housing, strict=True):
        assert isinstance(element, etree._Element)
        kind = element.find(f"{{{ns.CSD}}}residentialType")
        assert kind is not None
        assert kind.get("code") == _part(extension, "residentialType")["coding"][0]["code"]
        assert kind.get("codingScheme") == R242_OID
        number = element.findtext(f"{{{ns.CSD}}}residentialNumber")
        expected = _part(extension, "residentialNumber")
        assert number == (None if expected is None else str(expected))
    _follows_profile(official_profile, bridge, code, "residentialCapactity", "accommodationCapacity")


# --------------------------------------------------------------------------------------------------
# restrictedOrganisation=true (RG_ALIM_015)

RESTRICTED = "<csd:restrictedOrganisation>1</csd:restrictedOrganisation>"
# What the restricted reading leaves out of a UE (mappings/access-profiles.yaml, restricted-organisation).
UE_ONLY = (
    "accommodationCapacity",
    "crisisAccomodationCapacity",
    "residentialCapactity",
    "resourcesSkills",
    "equipment",
    "location",
    "interventionZone",
    "receptionType",
    "receptionMode",
    "takingCareSpeciality",
    "annualOpenning",
    "psychiatricSector",
    "specificAct",
    "managementType",
    "maternityHospitalType",
)


def _csd(bridge: RunningBridge, code: str, extra: str = "") -> etree._Element:
    response = send(bridge, reading(code, extra), "soap12")
    assert response.status_code == 200, response.text[:2000]
    return answer_csd(body_of(response))


def _names(document: etree._Element, path: str) -> list[str]:
    found = document.xpath(path, namespaces=C)
    assert isinstance(found, list)
    return [etree.QName(i).localname if isinstance(i, etree._Element) else str(i) for i in found]


def test_a_restricted_reading_leaves_out_the_ue_attributes_and_classes(
    bridge: RunningBridge, official_profile: Any
) -> None:
    code, _offer, _lieu, _found = _first(
        bridge.dataset,
        lambda lieu: [e for e in lieu.get("extension", []) if e["url"] == vocab.EXT_RESIDENTIAL_CAPACITY],
    )
    plain = _csd(bridge, code)
    restricted = _csd(bridge, code, RESTRICTED)
    ue = "csd:facilityDirectory/csd:facility[csd:codedType/@code='4']"
    # the same entities, the UEs counted alike
    for path in ("//csd:organization/@entityID", "//csd:facility/@entityID", "//csd:service/@entityID"):
        assert _names(restricted, path) == _names(plain, path)
    # what the plain reading has and the restricted one does not
    present = {n for n in UE_ONLY if _names(plain, f"{ue}/csd:extension/csd:{n}")}
    assert {"location", "residentialCapactity"} <= present
    for name in UE_ONLY:
        assert _names(restricted, f"{ue}/csd:extension/csd:{name}") == [], name
    # (the simulator's slots have no effective start date, so no operatingHours to remove here:
    # tests/translate/test_restriction.py shows they go)
    assert _names(restricted, f"{ue}//csd:operatingHours") == []
    assert _names(plain, f"{ue}/csd:address")
    assert _names(restricted, f"{ue}/csd:address") == []
    # kept: care mode, activity, patientèle (and the schema's required sensitiveUnit), on every UE
    units = len(_names(restricted, f"{ue}/@entityID"))
    for name in ("typeActivity", "careMode", "patientsType", "sensitiveUnit"):
        assert len(_names(restricted, f"{ue}/csd:extension/csd:{name}")) == units, name
    # the organisation category only in the médico-social field
    assert (
        _names(restricted, f"{ue}/csd:extension[csd:typeActivity/@code!='04']/csd:facilityType/@code") == []
    )
    assert _names(restricted, f"{ue}/csd:extension[csd:typeActivity/@code='04']/csd:facilityType/@code") == (
        _names(plain, f"{ue}/csd:extension[csd:typeActivity/@code='04']/csd:facilityType/@code")
    )
    # valid against the official schema, and ANS's restriction rules find nothing
    assert official_profile.schema_failures(restricted) == []

    def failures(document: etree._Element) -> set[tuple[str, str]]:
        found = official_profile.schematron_failures(document, ["avecRestrictionOI.sch"])
        return {(f.rule, f.message) for f in found}

    forbidden = "avecRestrictionOI.sch#balises-interdites-restriction1"
    # the elements a restricted answer must not have: all gone (the plain reading has them: the test can fail)
    assert {rule for rule, _ in failures(plain)} >= {forbidden}
    assert {rule for rule, _ in failures(restricted)} <= {
        "avecRestrictionOI.sch#balises-attendues-restriction1"
    }
    # the elements it must have: none missing that the plain reading has (the demo's internal organisations
    # carry no creation date: "date Creation attendue" fails on both, a matter of data)
    assert failures(restricted) <= failures(plain)


# --------------------------------------------------------------------------------------------------
# calculatedDistance of a search around a point

OFFER_SEARCH = """<?xml version="1.0" encoding="UTF-8"?>
<csd:careServicesRequest xmlns:csd="urn:ihe:iti:csd:2013" xmlns:ror="urn:ror:csd:params"
    urn="urn:ror:csd:stored-function:offer-search" encapsulated="false">
  <csd:requestParams>{params}</csd:requestParams>
</csd:careServicesRequest>"""


def _haversine_km(a: tuple[float, float], b: tuple[float, float]) -> float:
    lat1, lon1, lat2, lon2 = (math.radians(v) for v in (*a, *b))
    h = math.sin((lat2 - lat1) / 2) ** 2 + math.cos(lat1) * math.cos(lat2) * math.sin((lon2 - lon1) / 2) ** 2
    return 2 * 6371.0 * math.asin(math.sqrt(h))


def _offer_search(bridge: RunningBridge, params: str) -> etree._Element:
    response = httpx.post(
        bridge.csd,
        content=OFFER_SEARCH.format(params=params).encode(),
        headers={"Content-Type": "application/xml"},
        timeout=120,
    )
    assert response.status_code == 200, response.text[:2000]
    return answer_csd(etree.fromstring(response.content))


def test_a_search_around_a_point_states_each_lieu_distance(
    bridge: RunningBridge, official_profile: Any
) -> None:
    lieu = bridge.dataset.build("Location", 0)
    origin = (lieu["position"]["latitude"] + 0.05, lieu["position"]["longitude"] - 0.05)  # about 6-7 km away
    document = _offer_search(
        bridge,
        f"<ror:latitude>{origin[0]}</ror:latitude><ror:longitude>{origin[1]}</ror:longitude>"
        "<ror:distanceKm>20</ror:distanceKm>",
    )
    units = document.xpath("csd:facilityDirectory/csd:facility[csd:codedType/@code='4']", namespaces=C)
    assert isinstance(units, list)
    assert units
    for unit in units:
        assert isinstance(unit, etree._Element)
        (location,) = unit.xpath("csd:extension/csd:location", namespaces=C)
        latitude = float(location.findtext(f"{{{ns.CSD}}}geoCoordinates/{{{ns.CSD}}}latitude"))
        longitude = float(location.findtext(f"{{{ns.CSD}}}geoCoordinates/{{{ns.CSD}}}longitude"))
        distance = float(location.findtext(f"{{{ns.CSD}}}calculatedDistance"))
        assert distance == pytest.approx(_haversine_km(origin, (latitude, longitude)), abs=0.001)
        assert distance <= 20
    # the simulator's lieu 0 is among them, at its distance from the point
    expected = _haversine_km(origin, (lieu["position"]["latitude"], lieu["position"]["longitude"]))
    found = document.xpath(
        "csd:facilityDirectory/csd:facility/csd:extension/csd:location[csd:name=$name]/csd:calculatedDistance",
        namespaces=C,
        name=lieu["name"],
    )
    assert isinstance(found, list)
    assert found
    assert {round(float(str(e.text)), 3) for e in found if isinstance(e, etree._Element)} == {
        round(expected, 3)
    }
    assert official_profile.schema_failures(document) == []


def test_other_searches_state_no_distance(bridge: RunningBridge) -> None:
    lieu = bridge.dataset.build("Location", 0)
    commune = next(e for e in lieu["extension"] if e["url"] == vocab.EXT_COMMUNE_COG)
    cog = commune["valueCodeableConcept"]["coding"][0]["code"]
    document = _offer_search(bridge, f"<ror:communeCog>{cog}</ror:communeCog>")
    assert document.xpath("count(//csd:location)", namespaces=C) > 0
    assert document.xpath("count(//csd:calculatedDistance)", namespaces=C) == 0


def test_a_reading_carries_the_equipements_of_its_lieux(bridge: RunningBridge, official_profile: Any) -> None:
    """An EG whose offers' lieux hold équipements spécifiques: its TR_Lecture reading writes one csd:device
    per équipement (deviceDirectory), each named by the UE of an offer given there (the same entityID), valid
    against the official schema, ANS's rules (TRE_R212 on device/codedType) and PLATINES' assertions."""
    expected: dict[str, set[str]] = {}  # EG idNatStruct → the entityIDs of its offers' lieux' équipements
    for code, _offer, lieu in _offers_by_eg(bridge.dataset):
        expected.setdefault(code, set()).update(device_ids(lieu))
    code = next((c for c, found in expected.items() if found), None)
    assert code is not None, "no EG of the dataset has an offer at a lieu with équipements"
    response = send(bridge, reading(code), "soap12")
    assert response.status_code == 200, response.text[:2000]
    document = answer_csd(body_of(response))
    c = {"csd": ns.CSD}
    devices = {str(e) for e in document.xpath("//csd:deviceDirectory/csd:device/@entityID", namespaces=c)}
    refs = "//csd:facility/csd:extension/csd:equipment/@entityID"
    assert devices == expected[code]
    assert {str(e) for e in document.xpath(refs, namespaces=c)} == expected[code]
    _follows_profile(official_profile, bridge, code, "device", "equipment", "deviceDirectory")
