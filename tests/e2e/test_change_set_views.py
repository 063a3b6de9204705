"""A change set computed once for several access profiles (pipeline/changes.py `spooled_deltas`, SpoolWriter
views: each batch mapped once, then filtered and written per profile) answers each profile byte for byte what
its own computation answers. Real HTTP on 127.0.0.1 against the open simulator.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
from lxml import etree

from bridge import ns
from bridge.fhir.client import FhirClient
from bridge.fhir.resilience import RetryPolicy
from bridge.model import CsdRequest, RequestForm, Transaction
from bridge.pipeline.changes import spooled_delta, spooled_deltas
from bridge.pipeline.request_plan import plan_transaction
from bridge.shipped import shipped_dir
from bridge.simulator.dataset import generate_dataset
from bridge.simulator.national_api import SimulatorConfig, create_simulator_server
from bridge.translate import load_mappings
from bridge.translate.plan import plan_queries
from tests.server import running_server

SCALE = 200
SEED = 7
MAPPINGS = load_mappings(shipped_dir("mappings"))
PROFILES = (None, 0, 1, 2, 3)
FAST = RetryPolicy(max_attempts=2, backoff_base_s=0.001, backoff_max_s=0.01)


@pytest.fixture(scope="module")
def upstream() -> Iterator[str]:
    config = SimulatorConfig(scale=SCALE, seed=SEED, open_access=True)
    with running_server(create_simulator_server(config, generate_dataset(SCALE, SEED))) as root:
        yield f"{root}/ws-diffusion-fhir"


def _client(base: str) -> FhirClient:
    return FhirClient(base, headers={}, page_size=50, retry=FAST, seed=1)


async def _answers(
    base: str, since: datetime, profiles: tuple[int | None, ...], *, together: bool
) -> list[bytes]:
    request = CsdRequest(Transaction.MODIFICATIONS, RequestForm.MODIFICATIONS, last_modified=since)
    resolved = plan_transaction(MAPPINGS, request, None)
    plan = plan_queries(MAPPINGS, resolved.spec, resolved.params, None)
    async with _client(base) as client:
        if together:
            files = await spooled_deltas(MAPPINGS, client, plan, resolved.spec, None, profiles)
            pairs = [files[profile] for profile in profiles]
        else:
            pairs = [
                await spooled_delta(MAPPINGS, client, plan, resolved.spec, None, profile=profile)
                for profile in profiles
            ]
    out = []
    for file, progress in pairs:
        with file:
            file.seek(0)
            content = file.read()
        assert progress.phase == "done"
        assert progress.bytes == len(content)
        out.append(content)
    return out


@pytest.mark.parametrize("since", ["2000-01-01T00:00:00Z", "2025-11-15T00:00:00Z"], ids=["whole", "partial"])
def test_one_computation_for_several_profiles_answers_each_as_its_own(upstream: str, since: str) -> None:
    moment = datetime.fromisoformat(since).astimezone(UTC)
    together = asyncio.run(_answers(upstream, moment, PROFILES, together=True))
    alone = asyncio.run(_answers(upstream, moment, PROFILES, together=False))
    for profile, shared, own in zip(PROFILES, together, alone, strict=True):
        assert shared == own, f"profile {profile}"
    assert b"<csd:provider " in together[0]
    assert b"<csd:service " in together[0]
    # the profiles do filter (else the comparison could not tell one view from another)
    assert len(set(together)) > 1
    # each view's devices are named by its UEs (profile 0 sees no équipement: filtre_profil0); a changed UE
    # may name a device of its unchanged lieu (not in a change set), not since before every change
    for profile, answer in zip(PROFILES, together, strict=True):
        devices, named = _devices_and_references(answer)
        assert devices <= named, f"profile {profile}"
        assert devices == named or since != "2000-01-01T00:00:00Z", f"profile {profile}"
    if since == "2000-01-01T00:00:00Z":
        assert _devices_and_references(together[0])[0], "unfiltered: every lieu's équipements"
    assert not _devices_and_references(together[PROFILES.index(0)])[0]


def _devices_and_references(answer: bytes) -> tuple[set[str], set[str]]:
    """The entityIDs of an answer's csd:device entries and of its UEs' `equipment` references."""
    root = etree.fromstring(b"<csd:CSD xmlns:csd='urn:ihe:iti:csd:2013'>" + answer + b"</csd:CSD>")
    devices = {str(d.get("entityID")) for d in root.iterfind(f".//{{{ns.CSD}}}device")}
    refs = f".//{{{ns.CSD}}}facility/{{{ns.CSD}}}extension/{{{ns.CSD}}}equipment"
    return devices, {str(e.get("entityID")) for e in root.iterfind(refs)}
