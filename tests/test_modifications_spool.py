"""The spools of the changes since a date (bridge/pipeline/changes.py), without HTTP: what each reads back.

DeltaSpool (ITI-74) derives from what changed the entities whose records read it for their content (the
feeds of the entity tables) and the `_id` searches that complete them; ChainSpool (establishments-updated-
since) walks the organisation chains of those entities in SQL and keeps the EJ and EG. Small hand-made
resources, so every case is visible here.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import pytest

from bridge.model import Directory
from bridge.pipeline.change_spools import ChainSpool, DeltaSpool
from bridge.shipped import shipped_dir
from bridge.translate import FunctionSpec, Mappings, load_mappings

TAG = "https://mos.esante.gouv.fr/NOS/TRE_R30-RegionOM/FHIR/TRE-R30-RegionOM"


@pytest.fixture(scope="module")
def mappings() -> Mappings:
    return load_mappings(shipped_dir("mappings"))


def resource(rtype: str, rid: str, region: str = "11", **fields: Any) -> dict[str, Any]:
    return {"resourceType": rtype, "id": rid, "meta": {"tag": [{"system": TAG, "code": region}]}, **fields}


def org(rid: str, parent: str | None = None, region: str = "11") -> dict[str, Any]:
    extra = {"partOf": {"reference": f"Organization/{parent}"}} if parent else {}
    return resource("Organization", rid, region, **extra)


def offer(rid: str, provider: str, region: str = "11", lieu: str | None = None) -> dict[str, Any]:
    extra = {"location": [{"reference": f"Location/{lieu}"}]} if lieu else {}
    return resource(
        "HealthcareService", rid, region, providedBy={"reference": f"Organization/{provider}"}, **extra
    )


def changes(spool: DeltaSpool, matches: list[dict[str, Any]], includes: list[dict[str, Any]]) -> None:
    """A page of the delta searches: its matches changed."""
    spool.add_page(matches, includes, changes=True)


def complete(spool: DeltaSpool, matches: list[dict[str, Any]], includes: list[dict[str, Any]]) -> None:
    """A page of the completion searches (by `_id`): context, nothing changed."""
    spool.add_page(matches, includes, changes=False)


# Two legal entities: ej1 > eg1 > ue1 > pole1 (an internal organisation under a unit), and ej2 > eg2.
EJ1, EG1, UE1, POLE1 = org("ej1"), org("eg1", "ej1"), org("ue1", "eg1"), org("pole1", "ue1")
EJ2, EG2 = org("ej2"), org("eg2", "ej2")


@pytest.fixture
def establishments_spec(mappings: Mappings) -> FunctionSpec:
    return mappings.functions["urn:ror:csd:stored-function:establishments-updated-since"]


def settle(spool: DeltaSpool) -> list[tuple[str, tuple[tuple[str, str], ...]]]:
    """The completion searches once the delta pages are in, as (type, params)."""
    return [(q.resource_type, q.params) for q in spool.settle()]


def read_back(spool: DeltaSpool) -> dict[str, list[str]]:
    """`rows` of every type into its directory, in order, as `Type/id` keys."""
    spool.finish()
    with spool.lock:
        return {
            rtype: [key for key, _, _ in spool.rows(rtype, directory)] for rtype, directory in DIRECTORY_OF
        }


DIRECTORY_OF = (
    ("Organization", Directory.ORGANIZATION),
    ("HealthcareService", Directory.SERVICE),
    ("Location", Directory.FACILITY),
    ("PractitionerRole", Directory.PROVIDER),
)


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
    changes(spool, [offer("hs1", "pole1")], [])
    # The chain starts at the offer's providing organisation, searched again with its ancestors.
    assert settle(spool) == [
        ("Organization", (("_id", "pole1"), ("_include:iterate", "Organization:partof")))
    ]
    complete(spool, [POLE1], [UE1, EG1, EJ1])
    assert read_back(spool) == {
        "Organization": ["Organization/ej1", "Organization/eg1"],  # not the unit nor the pôle
        "HealthcareService": [],
        "Location": [],
        "PractitionerRole": [],
    }


def test_a_lieu_reports_the_establishment_of_its_offers_and_an_ej_its_eg(
    mappings: Mappings, establishments_spec: FunctionSpec, spools: list[DeltaSpool]
) -> None:
    spool = ChainSpool(mappings, establishments_spec, None)
    spools.append(spool)
    lieu = resource("Location", "l1", managingOrganization={"reference": "Organization/eg2"})
    # The lieu changed: the unité élémentaire of the offer given there shows it (its record changed), so the
    # offer's establishment is reported; the lieu's managing organisation is not read by any record.
    changes(spool, [lieu], [offer("hs2", "eg1", lieu="l1")])
    # EJ1 changed: the national API declares no search of its children; the offers below it
    # (`organization._id:above`, declared) bring the EG providing them, whose readings hold EJ1: EG3 here,
    # which nothing else reported.
    changes(spool, [EJ1], [])
    assert settle(spool) == [
        ("Organization", (("_id", "eg1,ej1"), ("_include:iterate", "Organization:partof"))),
        (
            "HealthcareService",
            (
                ("organization._id:above", "ej1"),
                ("_include", "HealthcareService:organization"),
                ("_include:iterate", "Organization:partof"),
            ),
        ),
    ]
    complete(spool, [EG1, EJ1], [])
    complete(
        spool, [offer("hs2", "eg1"), offer("hs3", "ue3")], [EG1, EJ1, org("ue3", "eg3"), org("eg3", "ej1")]
    )
    assert read_back(spool)["Organization"] == ["Organization/ej1", "Organization/eg1", "Organization/eg3"]


def test_a_chain_stops_where_the_parent_was_not_received(
    mappings: Mappings, establishments_spec: FunctionSpec, spools: list[DeltaSpool]
) -> None:
    """The walk goes up partOf while the parent is among the resources received: here ue1's chain stops at
    eg1 (its EJ never came), so eg1 is the root of what was received and ue1 its child."""
    spool = ChainSpool(mappings, establishments_spec, None)
    spools.append(spool)
    changes(spool, [UE1], [EG1])
    settle(spool)
    assert read_back(spool)["Organization"] == ["Organization/eg1", "Organization/ue1"]


def test_a_regional_request_reports_the_changes_of_its_region(
    mappings: Mappings, establishments_spec: FunctionSpec, spools: list[DeltaSpool]
) -> None:
    spool = ChainSpool(mappings, establishments_spec, [f"{TAG}|04"])
    spools.append(spool)
    changes(spool, [offer("hs1", "ue1", region="11"), offer("hs9", "eg9", region="04")], [])
    assert settle(spool) == [("Organization", (("_id", "eg9"), ("_include:iterate", "Organization:partof")))]
    complete(spool, [org("eg9", "ej9", "04")], [org("ej9", region="04")])
    assert read_back(spool)["Organization"] == ["Organization/ej9", "Organization/eg9"]


def test_iti74_reports_the_entities_whose_records_read_a_change(
    mappings: Mappings, spools: list[DeltaSpool]
) -> None:
    assert mappings.modifications is not None
    spool = DeltaSpool(mappings, mappings.modifications, None)
    spools.append(spool)
    changes(spool, [UE1, EG1], [])
    # A changed lieu: the unité élémentaire of the offer given there (`_revinclude`) shows it; the offer's
    # service record does not.
    changes(spool, [resource("Location", "l1")], [offer("hs0", "ue1", lieu="l1")])
    changes(spool, [offer("hs1", "ue1", lieu="l2")], [resource("Location", "l2")])
    # A changed professional: the situations opérationnelles that carry it (`_revinclude`).
    role = resource("PractitionerRole", "r1", practitioner={"reference": "Practitioner/p1"})
    changes(spool, [resource("Practitioner", "p1")], [role])
    completion = settle(spool)
    assert {(rtype, params[0]) for rtype, params in completion} == {
        ("Organization", ("_id", "eg1,ue1")),
        ("HealthcareService", ("_id", "hs1")),  # the service
        ("HealthcareService", ("_id", "hs0,hs1")),  # the unités élémentaires
        ("PractitionerRole", ("_id", "r1")),
    }
    # Each with what its record reads: a unit's lieu and the organisation chain up to its EG.
    assert [params[1:] for rtype, params in completion if params[0] == ("_id", "hs0,hs1")] == [
        (
            ("_include", "HealthcareService:location"),
            ("_include", "HealthcareService:organization"),
            ("_include:iterate", "Organization:partof"),
        )
    ]
    complete(spool, [EG1, UE1], [EJ1])
    spool.finish()
    with spool.lock:
        rows = {
            directory.value: [key for key, _, _ in spool.rows(rtype, directory)]
            for rtype, directory in (
                ("Organization", Directory.ORGANIZATION),
                ("HealthcareService", Directory.SERVICE),
                ("HealthcareService", Directory.FACILITY),
                ("PractitionerRole", Directory.PROVIDER),
            )
        }
    assert rows == {
        "organizationDirectory": ["Organization/eg1", "Organization/ue1"],  # ej1 is context, not a change
        "serviceDirectory": ["HealthcareService/hs1"],
        "facilityDirectory": ["HealthcareService/hs0", "HealthcareService/hs1"],
        "providerDirectory": ["PractitionerRole/r1"],
    }
