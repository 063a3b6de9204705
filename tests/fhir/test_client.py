"""The national API client against a scripted FHIR server on 127.0.0.1: paging, headers, typed errors."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from bridge.errors import (
    IncompleteResultError,
    UpstreamProtocolError,
    UpstreamStatusError,
    UpstreamUnavailableError,
)
from bridge.fhir.client import FhirClient
from bridge.fhir.resilience import RetryPolicy
from bridge.model import FhirQuery
from tests.server import running_server

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "fhir-client"
ROR_HEADERS = {
    "Ror-Profil-Utilisateur-Code": "CU22",
    "Ror-Profil-Utilisateur-System": "1.2.250.1.213.1.6.1.66",
    "Ror-Role-Metier-Code": "AUTOMATE",
    "Ror-Role-Metier-System": "1.2.250.1.213.1.1.4.6",
}
QUERY = FhirQuery("Organization", (("identifier", "https://oi.esante.gouv.fr|x"),))


class ScriptedUpstream:
    """A FHIR server whose answer to each path is a fixture file; it records what it received."""

    def __init__(self) -> None:
        self.script: dict[str, tuple[int, str]] = {}
        self.requests: list[Request] = []
        self.delay_s = 0.0
        self.base = ""

    async def handle(self, request: Request) -> Response:
        self.requests.append(request)
        if self.delay_s:
            await asyncio.sleep(self.delay_s)
        key = request.url.path.rsplit("/", 1)[-1]
        status, fixture = self.script[key]
        body = (FIXTURES / fixture).read_text(encoding="utf-8").replace("{base}", self.base)
        return Response(body, status_code=status, media_type="application/fhir+json")

    def app(self) -> Starlette:
        return Starlette(routes=[Route("/fhir/{rest:path}", self.handle)])


@pytest.fixture(scope="module")
def upstream() -> Iterator[ScriptedUpstream]:
    scripted = ScriptedUpstream()
    with running_server(scripted.app()) as base_url:
        scripted.base = f"{base_url}/fhir"
        yield scripted


@pytest.fixture
def script(upstream: ScriptedUpstream) -> Iterator[ScriptedUpstream]:
    upstream.script.clear()
    upstream.requests.clear()
    upstream.delay_s = 0.0
    return upstream


def client_for(upstream: ScriptedUpstream, **kwargs: float) -> FhirClient:
    fast = RetryPolicy(max_attempts=2, backoff_base_s=0.001)
    return FhirClient(upstream.base, headers=ROR_HEADERS, page_size=2, retry=fast, **kwargs)


async def test_follows_next_links_and_keeps_matches_and_includes_apart(script: ScriptedUpstream) -> None:
    script.script = {"Organization": (200, "page-1.json"), "page-2": (200, "page-2.json")}
    async with client_for(script) as client:
        result = await client.search(QUERY)
    assert [r["id"] for r in result.matches] == ["a", "b", "c"]
    assert [r["id"] for r in result.includes] == ["p"]  # included on both pages, kept once
    assert (result.total, result.pages) == (3, 2)


async def test_sends_the_ror_headers_and_the_page_size(script: ScriptedUpstream) -> None:
    script.script = {"Organization": (200, "page-1.json"), "page-2": (200, "page-2.json")}
    async with client_for(script) as client:
        await client.search(QUERY)
    first = script.requests[0]
    for name, value in ROR_HEADERS.items():
        assert first.headers[name] == value
    assert first.headers["accept"] == "application/fhir+json"
    assert first.query_params["_count"] == "2"
    assert first.query_params["identifier"] == "https://oi.esante.gouv.fr|x"


async def test_an_error_status_carries_the_outcome_and_the_request(
    script: ScriptedUpstream,
) -> None:
    script.script = {"Organization": (500, "operation-outcome-500.json")}
    async with client_for(script) as client:
        with pytest.raises(UpstreamStatusError) as caught:
            await client.search(QUERY)
    assert caught.value.status == 500
    assert caught.value.outcome is not None
    assert "database timeout" in caught.value.outcome
    assert caught.value.request is not None
    assert "/fhir/Organization?" in caught.value.request


@pytest.mark.parametrize(
    ("page_2", "error"),
    [
        ("page-2-loops.json", UpstreamProtocolError),  # next link back to itself
        ("page-2-duplicate.json", IncompleteResultError),  # a repeated match leaves one missing
        ("not-a-bundle.json", UpstreamProtocolError),
        ("truncated.json", UpstreamProtocolError),
    ],
)
async def test_a_broken_walk_is_an_error_never_a_shorter_answer(
    script: ScriptedUpstream, page_2: str, error: type[Exception]
) -> None:
    script.script = {"Organization": (200, "page-1.json"), "page-2": (200, page_2)}
    async with client_for(script) as client:
        with pytest.raises(error):
            await client.search(QUERY)


async def test_a_timeout_is_upstream_unavailable(script: ScriptedUpstream) -> None:
    script.script = {"Organization": (200, "page-1.json")}
    script.delay_s = 1.0
    async with client_for(script, timeout_s=0.1) as client:
        with pytest.raises(UpstreamUnavailableError, match="timeout"):
            await client.search(QUERY)


async def test_a_refused_connection_is_upstream_unavailable() -> None:
    with socket.socket() as probe:  # a port that was free a moment ago: nothing listens there
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    fast = RetryPolicy(max_attempts=2, backoff_base_s=0.001)
    async with FhirClient(f"http://127.0.0.1:{port}/fhir", headers=ROR_HEADERS, retry=fast) as client:
        with pytest.raises(UpstreamUnavailableError, match="connection failed"):
            await client.search(QUERY)
