"""The one upstream exchange (fhir/exchange.py): searches, paging and `$export` downloads share its auth,
retries, deadline and circuit breaker — over real HTTP against the scripted upstream."""

from __future__ import annotations

import gc
from collections.abc import AsyncIterator
from contextlib import aclosing

import httpx
import orjson
import pytest
from starlette.requests import Request
from starlette.responses import Response

from bridge import correlation
from bridge.errors import UpstreamStatusError, UpstreamTimeoutError, UpstreamUnavailableError
from bridge.fhir.bulk_export import ExportStats
from bridge.fhir.client import Credentials, FhirClient
from bridge.fhir.exchange import decode
from bridge.fhir.resilience import CircuitBreaker, Deadline, RetryPolicy
from tests.fhir.scripted import Scripted, fhir, outcome
from tests.fhir.test_export import ExportServer

FAST = RetryPolicy(max_attempts=2, backoff_base_s=0.001)


async def read_lines(response: httpx.Response) -> AsyncIterator[str]:
    async for line in response.aiter_lines():
        yield line


async def test_an_export_download_carries_the_token_and_the_request_id_like_a_search(
    scripted: Scripted,
) -> None:
    scripted.require_token = True
    scripted.fhir_handler = ExportServer(scripted, polls_before_ready=0)
    credentials = Credentials(f"{scripted.root}/auth/token", "bridge", "s3cr3t-value")
    correlation.begin("req-exchange-1")
    async with FhirClient(
        scripted.base, headers={"Ror-X": "1"}, credentials=credentials, retry=FAST
    ) as client:
        resources = client.export(poll_interval_s=0.0, stats=ExportStats())
        async with aclosing(resources):
            received = [resource async for resource in resources]
    assert len(received) == 7
    downloads = [r for r in scripted.fhir_requests() if r.path.startswith("/fhir/Binary/")]
    assert len(downloads) == 2
    for request in downloads:
        assert request.headers["authorization"].startswith("Bearer ")
        assert request.headers["x-request-id"] == "req-exchange-1"
        assert request.headers["ror-x"] == "1"
        assert "ndjson" in request.headers["accept"]


async def test_searches_and_downloads_share_one_breaker(scripted: Scripted) -> None:
    async def down(request: Request) -> Response:
        return outcome("busy", 503)

    scripted.fhir_handler = down
    breaker = CircuitBreaker(failure_threshold=2, reset_s=60.0)
    async with FhirClient(scripted.base, headers={}, retry=FAST, breaker=breaker) as client:
        with pytest.raises(UpstreamStatusError):
            await client.capabilities()  # two attempts, two failures: the breaker opens
        before = len(scripted.requests)
        lines = client.exchange.stream(f"{scripted.base}/Binary/f2", Deadline(5.0), read_lines)
        with pytest.raises(UpstreamUnavailableError, match="circuit breaker open"):
            async with aclosing(lines):
                _ = [line async for line in lines]
    assert len(scripted.requests) == before, "the download never went out"


async def test_a_download_cut_short_is_retried_and_read_again_from_its_start(scripted: Scripted) -> None:
    attempts = 0

    async def flaky(request: Request) -> Response:
        nonlocal attempts
        attempts += 1
        if attempts == 1:
            return outcome("gateway", 502)
        return Response(b"a\nb\n", media_type="application/fhir+ndjson")

    scripted.fhir_handler = flaky
    async with FhirClient(scripted.base, headers={}, retry=FAST) as client:
        lines = client.exchange.stream(f"{scripted.base}/Binary/f", Deadline(5.0), read_lines)
        async with aclosing(lines):
            got = [line async for line in lines]
    assert got == ["a", "b"]
    assert attempts == 2


async def test_a_passed_deadline_is_a_timeout_error_naming_the_request(scripted: Scripted) -> None:
    scripted.fhir_handler = lambda request: _ok()
    async with FhirClient(scripted.base, headers={}, retry=FAST) as client:
        with pytest.raises(UpstreamTimeoutError, match="deadline of 0 s passed"):
            await client.exchange.send("GET", f"{scripted.base}/metadata", Deadline(0.0))


async def _ok() -> Response:
    return fhir({"resourceType": "CapabilityStatement"})


def test_decode_pauses_the_collector_and_restores_it_even_on_bad_json() -> None:
    assert gc.isenabled()
    assert decode(b'{"resourceType": "Bundle", "entry": [{"a": [1, 2]}]}') == {
        "resourceType": "Bundle",
        "entry": [{"a": [1, 2]}],
    }
    assert gc.isenabled()
    with pytest.raises(orjson.JSONDecodeError):
        decode(b'{"cut short')
    assert gc.isenabled()
    gc.disable()
    try:
        assert decode(b"[]") == []
        assert not gc.isenabled(), "a collector the caller paused stays paused"
    finally:
        gc.enable()
