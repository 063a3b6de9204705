"""The client against the ROR simulator over real HTTP: access checks, injected faults, $export.

Each test starts its own simulator (fault selectors count requests from server start) with access checks on.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
from collections.abc import Iterator
from contextlib import aclosing, contextmanager

import pytest

from bridge.errors import UpstreamStatusError
from bridge.fhir.bulk_export import ExportRequest, ExportStats
from bridge.fhir.client import Credentials, FhirClient
from bridge.fhir.resilience import CircuitBreaker, RetryPolicy
from bridge.model import FhirQuery
from bridge.simulator.dataset import generate_dataset
from bridge.simulator.national_api import SimulatorConfig, create_simulator_server
from tests.server import running_server

SCALE = 40
DATASET = generate_dataset(SCALE, 1)
TOKEN_PATH = "/auth/realms/ror/protocol/openid-connect/token"
ROR_HEADERS = {
    "Ror-Profil-Utilisateur-Code": "CU22",
    "Ror-Profil-Utilisateur-System": "1.2.250.1.213.1.6.1.66",
    "Ror-Role-Metier-Code": "AUTOMATE",
    "Ror-Role-Metier-System": "1.2.250.1.213.1.1.4.6",
}
QUERY = FhirQuery(
    "HealthcareService",
    (("_include", "HealthcareService:organization"), ("_include", "HealthcareService:location")),
)
FAST = RetryPolicy(max_attempts=4, backoff_base_s=0.001, backoff_max_s=0.01)


@contextmanager
def simulator(**options: object) -> Iterator[str]:
    """A simulator with access checks on; yields the server root URL."""
    config = SimulatorConfig(scale=SCALE, open_access=False, **options)  # type: ignore[arg-type]
    with running_server(create_simulator_server(config, DATASET)) as root:
        yield root


def client_for(root: str, client_secret: str = "bridge-demo", **kwargs: object) -> FhirClient:  # noqa: S107  # the demo client's published secret
    options: dict[str, object] = {
        "headers": ROR_HEADERS,
        "page_size": 7,
        "retry": FAST,
        "timeout_s": 2.0,
        "breaker": CircuitBreaker(failure_threshold=1000),
        "credentials": Credentials(root + TOKEN_PATH, "bridge-demo", client_secret),
        "seed": 1,
    }
    options.update(kwargs)
    return FhirClient(f"{root}/ws-diffusion-fhir", **options)  # type: ignore[arg-type]


def keys(found: list[dict[str, object]]) -> list[str]:
    return [f"{r['resourceType']}/{r['id']}" for r in found]


@pytest.fixture(scope="module")
def reference() -> tuple[list[str], list[str]]:
    """The complete answer, from a fault-free simulator."""

    async def fetch() -> tuple[list[str], list[str]]:
        with simulator() as root:
            async with client_for(root) as client:
                result = await client.search(QUERY)
        return keys(result.matches), sorted(keys(result.includes))

    return asyncio.run(fetch())


def test_the_reference_answer_is_the_whole_dataset(reference: tuple[list[str], list[str]]) -> None:
    matches, includes = reference
    assert sorted(matches) == sorted(f"HealthcareService/{i}" for i in DATASET.ids("HealthcareService"))
    assert len(set(matches)) == len(matches)
    assert includes


async def test_without_the_ror_headers_the_simulator_refuses_with_a_typed_error() -> None:
    with simulator() as root:
        async with client_for(root, headers={}) as client:
            with pytest.raises(UpstreamStatusError) as caught:
                await client.search(QUERY)
    assert caught.value.status == 403
    assert caught.value.outcome is not None
    assert "Ror-" in caught.value.outcome


async def test_a_wrong_secret_is_refused_by_the_token_endpoint() -> None:
    with simulator() as root:
        async with client_for(root, client_secret="nope") as client:
            with pytest.raises(UpstreamStatusError) as caught:
                await client.search(QUERY)
    assert caught.value.status == 401
    assert caught.value.outcome is not None
    assert caught.value.outcome.startswith("invalid_client")


@pytest.mark.parametrize(
    ("faults", "handled_by"),
    [
        ("token-expiry@n=3", "upstream-token-rejected"),
        ('status(503)@n=2;status(429,retry-after=0)@n=4;outcome(500,"db down")@n=5', "upstream-retry"),
        ("reset@n=2;malformed-json@n=4", "upstream-retry"),
        ("timeout(3s)@n=3", "upstream-retry"),
        ("duplicates@n=3;duplicates@n=5", "upstream-duplicate-dropped"),
        ("next(expired)@n=4", "upstream-cursor-resumed"),
        ("next(loop)@n=3", "upstream-cursor-resumed"),
        ("next(missing)@n=3", "upstream-offset-paging"),
        ("latency(1-20ms)@p=0.5;status(502)@p=0.15", "upstream-retry"),
    ],
)
async def test_faults_never_change_the_answer(
    reference: tuple[list[str], list[str]], faults: str, handled_by: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="bridge")
    with simulator(faults=faults) as root:
        async with client_for(root, timeout_s=0.5) as client:
            result = await client.search(QUERY)
    assert (keys(result.matches), sorted(keys(result.includes))) == reference
    assert handled_by in caplog.text  # the fault did happen and was handled, not missed


async def test_a_search_over_the_result_cap_is_split_until_complete(
    reference: tuple[list[str], list[str]], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="bridge")
    with simulator(max_results=10) as root:  # the national 10 000, scaled down to the test dataset
        async with client_for(root, max_results=10) as client:
            result = await client.search(QUERY)
    assert sorted(keys(result.matches)) == sorted(reference[0])
    assert len(result.matches) == len(set(keys(result.matches)))
    assert sorted(keys(result.includes)) == reference[1]
    assert "upstream-truncation-split" in caplog.text


async def test_partitions_by_year_add_up_to_the_whole_answer(reference: tuple[list[str], list[str]]) -> None:
    years = [str(y) for y in range(2015, 2030)]
    partitions = [
        FhirQuery("HealthcareService", (("_lastUpdated", f"ge{lo}"), ("_lastUpdated", f"lt{hi}")))
        for lo, hi in itertools.pairwise(years)
    ]
    outside = [
        FhirQuery("HealthcareService", (("_lastUpdated", f"lt{years[0]}"),)),
        FhirQuery("HealthcareService", (("_lastUpdated", f"ge{years[-1]}"),)),
    ]
    with simulator(faults="status(503)@every=4") as root:
        async with client_for(root, concurrency=3) as client:
            results = await client.search_partitioned([*outside[:1], *partitions, *outside[1:]])
    found = [key for result in results for key in keys(result.matches)]
    assert sorted(found) == sorted(reference[0])
    assert len(found) == len(set(found))


async def test_an_export_downloads_the_offer_and_cleans_up(reference: tuple[list[str], list[str]]) -> None:
    stats = ExportStats()
    found: list[str] = []
    with simulator(export_file_size=15, export_retry_after_s=0) as root:
        async with (
            client_for(root) as client,
            aclosing(client.export(poll_interval_s=0.01, stats=stats)) as out,
        ):
            async for resource in out:
                found.append(f"{resource['resourceType']}/{resource['id']}")
    services = sorted(k for k in found if k.startswith("HealthcareService/"))
    assert services == sorted(reference[0])
    assert len(found) == len(set(found))  # each resource once (contract A2)
    assert stats.files > 1
    assert stats.cleaned_up


async def test_an_export_longer_than_a_token_renews_it(reference: tuple[list[str], list[str]]) -> None:
    found: list[str] = []
    # Tokens live 2 s (whole seconds in the simulator; renewed at half life); the job pauses 0.15 s before
    # each of its files, so the export outlives its first token.
    with simulator(
        export_file_size=10, export_retry_after_s=0, export_step_delay_s=0.15, token_ttl_s=2
    ) as root:
        async with client_for(root) as client:
            async with aclosing(client.export(poll_interval_s=0.05)) as out:
                found = [f"{r['resourceType']}/{r['id']}" async for r in out]
            assert client.tokens is not None
            issued = client.tokens.issued
    assert sorted(k for k in found if k.startswith("HealthcareService/")) == sorted(reference[0])
    assert issued >= 2


async def test_an_ndjson_export_gives_the_same_resources() -> None:
    found: dict[str, list[str]] = {}
    for output_format in ("application/fhir+json", "application/fhir+ndjson"):
        with simulator(export_file_size=15, export_retry_after_s=0) as root:
            async with client_for(root) as client:
                request = ExportRequest(output_format=output_format)
                async with aclosing(client.export(request, poll_interval_s=0.01)) as out:
                    found[output_format] = sorted([f"{r['resourceType']}/{r['id']}" async for r in out])
    assert found["application/fhir+json"] == found["application/fhir+ndjson"]


async def drain(client: FhirClient, stats: ExportStats) -> None:
    async with aclosing(client.export(poll_interval_s=0.01, stats=stats)) as out:
        async for _ in out:
            pass


async def test_a_failed_export_is_a_typed_error_with_the_outcome() -> None:
    stats = ExportStats()
    with simulator(faults="export(fail)", export_retry_after_s=0) as root:
        async with client_for(root) as client:
            with pytest.raises(UpstreamStatusError) as caught:
                await drain(client, stats)
    assert caught.value.outcome
    assert stats.cleaned_up
