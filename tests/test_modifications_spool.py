"""The spools of the changes since a date (bridge/pipeline/changes.py), without HTTP: what each reads back.

ChainSpool (establishments-updated-since) walks the organisation chains of the changes in SQL and keeps the EJ
and EG; DeltaSpool (ITI-74) keeps what changed. Small hand-made resources, so every case is visible here.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import pytest

from bridge.pipeline.changes import ChainSpool, DeltaSpool
from bridge.shipped import shipped_dir
from bridge.translate import FunctionSpec, Mappings, load_mappings

TAG = "https://mos.esante.gouv.fr/NOS/TRE_R30-RegionOM/FHIR/TRE-R30-RegionOM"
# Query numbers of functions.yaml (same order in `modifications` and `establishments-updated-since`).
ORGANIZATIONS, OFFERS, LIEUX, ROLES, PRACTITIONERS = range(5)


@pytest.fixture(scope="module")
def mappings() -> Mappings:
    return load_mappings(shipped_dir("mappings"))


def resource(rtype: str, rid: str, region: str = "11", **fields: Any) -> dict[str, Any]:
    return {"resourceType": rtype, "id": rid, "meta": {"tag": [{"system": TAG, "code": region}]}, **fields}


def org(rid: str, parent: str | None = None, region: str = "11") -> dict[str, Any]:
    extra = {"partOf": {"reference": f"Organization/{parent}"}} if parent else {}
    return resource("Organization", rid, region, **extra)


def offer(rid: str, provider: str, region: str = "11") -> dict[str, Any]:
    return resource("HealthcareService", rid, region, providedBy={"reference": f"Organization/{provider}"})


# Two legal entities: ej1 > eg1 > ue1 > pole1 (an internal organisation under a unit), and ej2 > eg2.
EJ1, EG1, UE1, POLE1 = org("ej1"), org("eg1", "ej1"), org("ue1", "eg1"), org("pole1", "ue1")
EJ2, EG2 = org("ej2"), org("eg2", "ej2")


@pytest.fixture
def establishments_spec(mappings: Mappings) -> FunctionSpec:
    return mappings.functions["urn:ror:csd:stored-function:establishments-updated-since"]


def read_back(spool: DeltaSpool) -> dict[str, list[str]]:
    """`rows` of every type, in order, as `Type/id` keys."""
    spool.finish()
    with spool.lock:
        return {
            rtype: [key for key, _, _ in spool.rows(rtype)]
            for rtype in ("Organization", "HealthcareService", "Location", "PractitionerRole")
        }


@pytest.fixture
def spools() -> Iterator[list[DeltaSpool]]:
    made: list[DeltaSpool] = []
    yield made
    for spool in made:
        asyncio.run(spool.aclose())


def test_a_changed_offer_reports_the_ej_and_eg_of_its_chain(
    mappings: Mappings, establishments_spec: FunctionSpec, spools: list[DeltaSpool]
) -> None:
    spool = ChainSpool(mappings, establishments_spec, None)
    spools.append(spool)
    spool.add_page(OFFERS, [offer("hs1", "pole1")], [POLE1, UE1, EG1, EJ1])
    spool.add_page(ORGANIZATIONS, [], [])
    assert read_back(spool) == {
        "Organization": ["Organization/ej1", "Organization/eg1"],  # not the unit nor the pôle
        "HealthcareService": [],
        "Location": [],
        "PractitionerRole": [],
    }


def test_a_lieu_change_reaches_the_chain_of_its_offers_only(
    mappings: Mappings, establishments_spec: FunctionSpec, spools: list[DeltaSpool]
) -> None:
    spool = ChainSpool(mappings, establishments_spec, None)
    spools.append(spool)
    lieu = resource("Location", "l1")
    # The lieu's offer propagates; ej2's branch came as context of another page, unchanged.
    spool.add_page(LIEUX, [lieu], [offer("hs2", "eg2"), EG2, EJ2])
    spool.add_page(ORGANIZATIONS, [EG1], [EJ1])
    organizations = read_back(spool)["Organization"]
    assert sorted(organizations[:2]) == ["Organization/ej1", "Organization/ej2"]  # roots first
    assert sorted(organizations[2:]) == ["Organization/eg1", "Organization/eg2"]


def test_a_chain_stops_where_the_parent_was_not_received(
    mappings: Mappings, establishments_spec: FunctionSpec, spools: list[DeltaSpool]
) -> None:
    """The walk goes up partOf while the parent is among the resources received: here ue1's chain stops at
    eg1 (its EJ never came), so eg1 is the root of what was received and ue1 its child."""
    spool = ChainSpool(mappings, establishments_spec, None)
    spools.append(spool)
    spool.add_page(ORGANIZATIONS, [UE1], [EG1])
    assert read_back(spool)["Organization"] == ["Organization/eg1", "Organization/ue1"]


def test_a_regional_request_reports_the_changes_of_its_region(
    mappings: Mappings, establishments_spec: FunctionSpec, spools: list[DeltaSpool]
) -> None:
    spool = ChainSpool(mappings, establishments_spec, [f"{TAG}|04"])
    spools.append(spool)
    spool.add_page(OFFERS, [offer("hs1", "ue1", region="11"), offer("hs9", "eg9", region="04")], [])
    spool.add_page(ORGANIZATIONS, [], [UE1, EG1, EJ1, org("eg9", "ej9", "04"), org("ej9", region="04")])
    assert read_back(spool)["Organization"] == ["Organization/ej9", "Organization/eg9"]


def test_iti74_reads_back_what_changed_roots_first(mappings: Mappings, spools: list[DeltaSpool]) -> None:
    assert mappings.modifications is not None
    spool = DeltaSpool(mappings, mappings.modifications, None)
    spools.append(spool)
    spool.add_page(ORGANIZATIONS, [UE1, EG1], [EJ1])
    spool.add_page(LIEUX, [resource("Location", "l1")], [offer("hs1", "ue1")])
    assert read_back(spool) == {
        "Organization": ["Organization/eg1", "Organization/ue1"],  # ej1 is context, not a change
        "HealthcareService": ["HealthcareService/hs1"],
        "Location": ["Location/l1"],
        "PractitionerRole": [],
    }
