"""Upstream authentication: client-credentials tokens, renewal, single flight, 401 handling, no leaks."""

from __future__ import annotations

import asyncio
import logging

import pytest
from starlette.requests import Request
from starlette.responses import Response

from bridge.errors import UpstreamStatusError
from bridge.fhir.client import Credentials, FhirClient
from bridge.fhir.resilience import RetryPolicy
from bridge.model import FhirQuery
from tests.fhir.scripted import Scripted, fhir, resources

SECRET = "s3cr3t-value"
ROR_HEADERS = {
    "Ror-Profil-Utilisateur-Code": "CU22",
    "Ror-Profil-Utilisateur-System": "1.2.250.1.213.1.6.1.66",
    "Ror-Role-Metier-Code": "AUTOMATE",
    "Ror-Role-Metier-System": "1.2.250.1.213.1.1.4.6",
}
QUERY = FhirQuery("Organization", ())


async def one_page(request: Request) -> Response:
    return fhir(
        {
            "resourceType": "Bundle",
            "type": "searchset",
            "total": 2,
            "entry": [{"resource": r, "search": {"mode": "match"}} for r in resources(2)],
        }
    )


def client_for(scripted: Scripted, secret: str = SECRET) -> FhirClient:
    return FhirClient(
        scripted.base,
        headers=ROR_HEADERS,
        credentials=Credentials(f"{scripted.root}/auth/token", "bridge", secret),
        retry=RetryPolicy(max_attempts=2, backoff_base_s=0.01),
    )


async def test_a_token_is_fetched_once_and_sent_as_bearer(scripted: Scripted) -> None:
    scripted.fhir_handler = one_page
    scripted.require_token = True
    async with client_for(scripted) as client:
        await client.search(QUERY)
        await client.search(QUERY)
    assert len(scripted.token_requests) == 1
    form = scripted.token_requests[0]
    assert form == {"grant_type": "client_credentials", "client_id": "bridge", "client_secret": SECRET}
    bearer = scripted.requests[0].headers["authorization"]
    assert bearer.startswith("Bearer tok-")
    assert all(r.headers["authorization"] == bearer for r in scripted.requests)


async def test_concurrent_requests_share_one_token_refresh(scripted: Scripted) -> None:
    scripted.fhir_handler = one_page
    scripted.require_token = True
    async with client_for(scripted) as client:
        await asyncio.gather(*(client.search(QUERY) for _ in range(8)))
    assert len(scripted.token_requests) == 1
    assert len(scripted.requests) == 8


async def test_the_token_is_renewed_before_it_expires(scripted: Scripted) -> None:
    scripted.fhir_handler = one_page
    scripted.require_token = True
    scripted.token_ttl_s = 0.2  # renewed at half its life: after 0.1 s
    async with client_for(scripted) as client:
        await client.search(QUERY)
        await asyncio.sleep(0.15)
        await client.search(QUERY)
    assert len(scripted.token_requests) == 2
    first, second = (r.headers["authorization"] for r in scripted.requests)
    assert first != second


async def test_a_401_triggers_one_refresh_and_one_retry(scripted: Scripted) -> None:
    scripted.fhir_handler = one_page
    scripted.require_token = True
    async with client_for(scripted) as client:
        await client.search(QUERY)
        scripted.valid_tokens.clear()  # the upstream revokes the token (e.g. the realm restarted)
        result = await client.search(QUERY)
    assert len(result.matches) == 2
    assert len(scripted.token_requests) == 2
    assert [
        r.headers["authorization"] == scripted.requests[0].headers["authorization"] for r in scripted.requests
    ] == [
        True,
        True,
        False,
    ]


async def test_a_401_after_a_refresh_is_an_error_not_a_loop(scripted: Scripted) -> None:
    async def always_401(request: Request) -> Response:
        return fhir({"resourceType": "OperationOutcome", "issue": [{"diagnostics": "profile refused"}]}, 401)

    scripted.fhir_handler = always_401
    async with client_for(scripted) as client:
        with pytest.raises(UpstreamStatusError) as caught:
            await client.search(QUERY)
    assert caught.value.status == 401
    assert caught.value.outcome == "profile refused"
    assert (len(scripted.requests), len(scripted.token_requests)) == (2, 2)


async def test_bad_client_credentials_are_a_typed_error(scripted: Scripted) -> None:
    scripted.fhir_handler = one_page
    async with client_for(scripted, secret="wrong") as client:
        with pytest.raises(UpstreamStatusError) as caught:
            await client.search(QUERY)
    assert caught.value.status == 401
    assert caught.value.outcome == "invalid_client"
    assert "wrong" not in str(caught.value)
    assert scripted.requests == []


async def test_a_busy_token_endpoint_is_retried(scripted: Scripted) -> None:
    scripted.fhir_handler = one_page
    scripted.require_token = True
    scripted.token_failures = 1  # the first token request gets a 503
    async with client_for(scripted) as client:
        result = await client.search(QUERY)
    assert len(result.matches) == 2
    assert len(scripted.token_requests) == 2


async def test_secrets_and_tokens_are_never_logged(
    scripted: Scripted, caplog: pytest.LogCaptureFixture
) -> None:
    scripted.fhir_handler = one_page
    scripted.require_token = True
    caplog.set_level(logging.DEBUG)  # every logger, httpx and httpcore included
    async with client_for(scripted) as client:
        await client.search(QUERY)
        scripted.valid_tokens.clear()
        await client.search(QUERY)
        token = scripted.requests[-1].headers["authorization"].removeprefix("Bearer ")
        shown = repr(client.tokens) + repr(client) + repr(Credentials("u", "bridge", SECRET))
    assert caplog.records, "the flow logs something (else this test would prove nothing)"
    for secret in (SECRET, token, scripted.requests[0].headers["authorization"].removeprefix("Bearer ")):
        assert secret not in caplog.text
        assert secret not in shown
