"""Équipements as the profile's deviceDirectory (issue 11 item 3): a table with `each` makes one csd:device
per `ror-location-equipment` extension of a lieu (mappings/entities/device.yaml), entityID
urn:ror:equipement:<lieu>/<TRE_R212 code>[/<rank>] [INFER]; the UE of the lieu names each in `equipment`."""

from __future__ import annotations

import shutil
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from bridge.csd.writer import device_bytes
from bridge.errors import MappingTableError
from bridge.model import CsdDocument, Directory, FhirQuery, QueryPlan, SearchResult
from bridge.shipped import shipped_dir
from bridge.translate import Mappings, from_fhir_results, load_mappings
from bridge.translate.access_profiles import filter_document, restrict_document
from bridge.translate.findings import Finding
from bridge.translate.select import named_devices
from tests.translate.conftest import NOW

SD = "https://interop.esante.gouv.fr/ig/fhir/ror/StructureDefinition/"
R212 = "https://mos.esante.gouv.fr/NOS/TRE_R212-Equipement/FHIR/TRE-R212-Equipement"
R354 = (
    "https://mos.esante.gouv.fr/NOS/TRE_R354-TypeIdentifiantRessourceOperationnelle/FHIR/"
    "TRE-R354-TypeIdentifiantRessourceOperationnelle"
)


def _mappings(tmp_path: Path, each: str | None = None, *, drop_each: bool = False) -> Mappings:
    """The shipped tables; with `each` / `drop_each`, a copy whose device table's `each` is edited."""
    if each is None and not drop_each:
        return load_mappings(shipped_dir("mappings"))
    target = tmp_path / "mappings"
    shutil.copytree(shipped_dir("mappings"), target)
    path = target / "entities" / "device.yaml"
    text = path.read_text(encoding="utf-8")
    line = "each: " + text.split("each: ", 1)[1].split("\n", 1)[0] + "\n"
    text = text.replace(line, "" if drop_each else f"each: {each}\n")
    path.write_text(text, encoding="utf-8")
    return load_mappings(target)


def equipment(code: str, count: int | None) -> dict[str, Any]:
    parts: list[dict[str, Any]] = [
        {"url": "equipmentType", "valueCodeableConcept": {"coding": [{"system": R212, "code": code}]}}
    ]
    if count is not None:
        parts.append({"url": "nbInService", "valueInteger": count})
    return {"url": f"{SD}ror-location-equipment", "extension": parts}


def lieu(*equipments: dict[str, Any]) -> dict[str, Any]:
    return {
        "resourceType": "Location",
        "id": "loc1",
        "meta": {"lastUpdated": "2024-05-02T10:00:00+02:00"},
        "identifier": [{"type": {"coding": [{"system": R354, "code": "25"}]}, "value": "11/L42"}],
        "name": "Plateau technique",
        "extension": list(equipments),
    }


def _document(mappings: Mappings, resource: dict[str, Any]) -> Any:
    query = FhirQuery("Location", (), "test")
    result = SearchResult(query=query, total=1, pages=1)
    result.matches.append(resource)
    plan = QueryPlan("urn:test", (query,), frozenset({Directory.DEVICE}))
    return from_fhir_results(mappings, plan, [result], now=NOW, selected=["Location/loc1"])


def test_one_device_per_equipment_of_the_lieu(tmp_path: Path) -> None:
    mappings = _mappings(tmp_path)
    document = _document(mappings, lieu(equipment("041", 2), equipment("030", 1), equipment("041", None)))
    ids = [d.entity_id for d in document.devices]
    assert ids == [
        "urn:ror:equipement:11%2FL42%2F030",
        "urn:ror:equipement:11%2FL42%2F041%2F1",
        "urn:ror:equipement:11%2FL42%2F041%2F2",
    ]
    by_id = {d.entity_id: d for d in document.devices}
    irm = by_id["urn:ror:equipement:11%2FL42%2F041%2F1"]
    assert (irm.coded_type.code, irm.coded_type.coding_scheme) == ("041", "1.2.250.1.213.3.3.10")
    assert [(e.content.name, e.content.text, e.profile) for e in irm.extensions] == [
        ("nbInService", "2", True)
    ]
    assert by_id["urn:ror:equipement:11%2FL42%2F041%2F2"].extensions == ()  # no nbInService: none written
    assert irm.record.updated.isoformat().startswith("2024-05-02T")
    assert not document.facilities
    assert not document.organizations
    written = device_bytes(irm).decode("utf-8")
    assert 'entityID="urn:ror:equipement:11%2FL42%2F041%2F1"' in written
    assert "nbInService>2</" in written
    assert 'code="041"' in written


def _unit_and_lieu(mappings: Mappings, location: dict[str, Any]) -> CsdDocument:
    """An offer given at the lieu, mapped as its UE with the lieu's devices."""
    offer = {
        "resourceType": "HealthcareService",
        "id": "hs1",
        "meta": {"lastUpdated": "2024-05-02T10:00:00+02:00"},
        "identifier": [{"value": "OFF-1"}],
        "name": "IRM",
        "location": [{"reference": "Location/loc1"}],
    }
    query = FhirQuery("HealthcareService", (), "test")
    result = SearchResult(query=query, total=1, pages=1)
    result.matches.append(offer)
    result.includes.append(location)
    plan = QueryPlan("urn:test", (query,), frozenset({Directory.FACILITY, Directory.DEVICE}))
    return from_fhir_results(mappings, plan, [result], now=NOW)


def test_the_unit_names_the_devices_of_its_lieu(tmp_path: Path) -> None:
    mappings = _mappings(tmp_path)
    location = lieu(equipment("041", 2), equipment("030", 1), equipment("041", None))
    document = _unit_and_lieu(mappings, location)
    devices = [d.entity_id for d in document.devices]
    (unit,) = document.facilities
    named = [
        dict(e.content.attributes)["entityID"]
        for e in unit.extensions
        if e.content is not None and e.content.name == "equipment"
    ]
    assert sorted(named) == devices
    assert len(devices) == 3


def test_an_equipment_without_type_makes_no_device_and_is_reported(tmp_path: Path) -> None:
    mappings = _mappings(tmp_path)
    untyped = {"url": f"{SD}ror-location-equipment", "extension": [{"url": "nbInService", "valueInteger": 3}]}
    document = _document(mappings, lieu(untyped, equipment("041", 1)))
    assert [d.entity_id for d in document.devices] == ["urn:ror:equipement:11%2FL42%2F041"]
    assert mappings.findings.count(Finding.PART_WITHOUT_KEY) == 1


def test_a_lieu_without_equipment_makes_no_device(tmp_path: Path) -> None:
    assert _document(_mappings(tmp_path), lieu()).devices == []


def test_each_must_be_a_path(tmp_path: Path) -> None:
    with pytest.raises(MappingTableError, match="each"):
        _mappings(tmp_path, each="extension[")


def test_part_entity_id_needs_each(tmp_path: Path) -> None:
    with pytest.raises(MappingTableError, match="needs `each`"):
        _mappings(tmp_path, each=None, drop_each=True)


def test_the_devices_follow_what_the_units_show(tmp_path: Path) -> None:
    """named_devices (every stored function's answer, after paging, filters and access profile): a device
    no UE of the answer names is left out; profile 0 removes the UEs' equipment (filtre_profil0), so the
    devices."""
    mappings = _mappings(tmp_path)
    document = _unit_and_lieu(mappings, lieu(equipment("041", 2), equipment("030", 1)))
    assert named_devices(document) is document  # every device named: unchanged
    assert len(document.devices) == 2
    public = named_devices(filter_document(mappings.access, 0, document))
    assert public.facilities
    assert not public.devices
    unfiltered = named_devices(filter_document(mappings.access, None, document))
    assert [d.entity_id for d in unfiltered.devices] == [d.entity_id for d in document.devices]
    without_units = named_devices(replace(document, facilities=[]))
    assert without_units.devices == []  # a UE paged or filtered out takes its lieu's devices along
    restricted = named_devices(restrict_document(mappings.access, document))
    assert restricted.devices == []  # the restricted reading (RG_ALIM_015) removes the UE's equipment
