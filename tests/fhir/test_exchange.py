"""The one upstream exchange (fhir/exchange.py): searches, paging and `$export` downloads share its auth,
retries, deadline and circuit breaker — over real HTTP against the scripted upstream."""

from __future__ import annotations

import gc
from collections.abc import AsyncIterator
from contextlib import aclosing
from typing import Any

import httpx
import orjson
import pytest
from starlette.requests import Request
from starlette.responses import Response

from bridge import correlation
from bridge.errors import UpstreamStatusError, UpstreamTimeoutError, UpstreamUnavailableError
from bridge.fhir import exchange
from bridge.fhir.bulk_export import ExportStats
from bridge.fhir.client import Credentials, FhirClient
from bridge.fhir.exchange import LARGE_ANSWER, decode
from bridge.fhir.resilience import CircuitBreaker, Deadline, RetryPolicy
from bridge.model import FhirQuery
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


def _large_page(length: int) -> dict[str, Any]:
    """A searchset page of at least `length` bytes holding what national pages hold: accents, escapes and
    control characters, decimals, integers up to 2**63 - 1, booleans, nulls, empty and nested lists."""
    entries: list[dict[str, Any]] = []
    page: dict[str, Any] = {"resourceType": "Bundle", "type": "searchset", "total": 0, "entry": entries}
    while True:
        for _ in range(500):
            n = len(entries)
            entries.append(
                {
                    "fullUrl": f"https://ror.example/fhir/Organization/o-{n}",
                    "resource": {
                        "resourceType": "Organization",
                        "id": f"o-{n}",
                        "meta": {"lastUpdated": "2026-11-30T08:15:00.123+01:00", "tag": []},
                        "active": n % 2 == 0,
                        "name": f'Centre hospitalier d\'Évreux « Nord » n°{n}\t"bis"\n',
                        "alias": ["CH É", "\u00e9\\", "😀"],
                        "extension": [
                            {"url": "x", "valueDecimal": 49.0245 + n / 7, "valueInteger": 2**63 - 1}
                        ],
                        "partOf": None,
                    },
                    "search": {"mode": "match", "score": 1},
                }
            )
        page["total"] = len(entries)
        if len(orjson.dumps(page)) >= length:
            return page


class _Counted:
    """Stands for the large answers' decoder and counts what it decodes."""

    def __init__(self) -> None:
        self.calls = 0

    def decode(self, body: bytes) -> Any:
        self.calls += 1
        return _MSGSPEC.decode(body)


_MSGSPEC = exchange._large_answers


def test_a_large_answer_is_parsed_by_msgspec_to_what_orjson_parses(monkeypatch: pytest.MonkeyPatch) -> None:
    counted = _Counted()
    monkeypatch.setattr(exchange, "_large_answers", counted)
    body = orjson.dumps(_large_page(LARGE_ANSWER + 1))
    assert gc.isenabled()
    decoded = decode(body)
    assert counted.calls == 1
    assert gc.isenabled()
    assert decoded == orjson.loads(body)
    assert decoded["entry"][3]["resource"]["name"] == 'Centre hospitalier d\'Évreux « Nord » n°3\t"bis"\n'
    assert type(decoded["entry"][0]["resource"]["extension"][0]["valueDecimal"]) is float
    small = orjson.dumps(_large_page(1))
    assert decode(small) == orjson.loads(small)
    assert counted.calls == 1, "an answer up to LARGE_ANSWER bytes stays with orjson"


def test_a_large_answer_that_does_not_parse_raises_what_orjson_raises() -> None:
    body = orjson.dumps(_large_page(LARGE_ANSWER + 1))
    out_of_range = body.replace(b'"score":1', b'"score":1e400', 1)
    for bad in (body[:-100], body + b" x", out_of_range, body.replace(b"\xc3\x89", b"\xc3(", 1)):
        assert len(bad) > LARGE_ANSWER
        with pytest.raises(orjson.JSONDecodeError):
            decode(bad)
        assert gc.isenabled()


async def test_a_large_page_arrives_whole_through_the_client(scripted: Scripted) -> None:
    page = _large_page(LARGE_ANSWER + 1)

    async def large(request: Request) -> Response:
        return fhir(page)

    scripted.fhir_handler = large
    async with FhirClient(scripted.base, headers={}, retry=FAST) as client:
        result = await client.search(FhirQuery("Organization", ()))
    assert result.total == len(page["entry"])
    assert result.matches == [entry["resource"] for entry in page["entry"]]
