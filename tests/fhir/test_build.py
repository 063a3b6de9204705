"""The client built from settings (`bridge.app.build_upstream`): credentials, TLS, resilience, profiles."""

from __future__ import annotations

from pathlib import Path

import pytest
from starlette.requests import Request
from starlette.responses import Response

from bridge.app import build_upstream
from bridge.config import Settings
from bridge.errors import ConfigurationError
from tests.fhir.scripted import Scripted, fhir

TLS = Path(__file__).resolve().parent.parent / "fixtures" / "fhir-client" / "tls"


def settings_for(scripted: Scripted, **overrides: object) -> Settings:
    values: dict[str, object] = {
        "upstream_url": scripted.base,
        "upstream_token_url": f"{scripted.root}/auth/token",
        "upstream_client_id": "bridge",
        "upstream_client_secret": "s3cr3t-value",
        "upstream_max_attempts": 3,
        "upstream_backoff_base_s": 0.001,
        "upstream_concurrency": 3,
        "upstream_validation_rate": 0.5,
    }
    values.update(overrides)
    return Settings(**values)  # type: ignore[arg-type]


async def empty(request: Request) -> Response:
    return fhir({"resourceType": "CapabilityStatement", "status": "active"})


async def test_settings_give_an_authenticated_resilient_client(scripted: Scripted) -> None:
    scripted.fhir_handler = empty
    scripted.require_token = True
    settings = settings_for(scripted)
    assert "s3cr3t-value" not in repr(settings)  # SecretStr: settings can be logged safely
    client = build_upstream(settings).client
    async with client:
        await client.capabilities()
        assert (client.retry.max_attempts, client.concurrency) == (3, 3)
        assert client.validator is not None
        assert client.validator.rate == 0.5
    assert len(scripted.token_requests) == 1
    assert scripted.requests[0].headers["ror-profil-utilisateur-code"] == "CU22"


async def test_a_legacy_client_profile_overrides_the_ror_headers(scripted: Scripted) -> None:
    scripted.fhir_handler = empty
    client = build_upstream(settings_for(scripted, upstream_token_url=None)).client
    async with client:
        await client.with_headers({"Ror-Profil-Utilisateur-Code": "CU20"}).capabilities()
        await client.capabilities()
    assert [r.headers["ror-profil-utilisateur-code"] for r in scripted.requests] == ["CU20", "CU22"]
    assert all(r.headers["ror-role-metier-code"] == "AUTOMATE" for r in scripted.requests)


def test_a_token_url_without_a_client_id_is_a_configuration_error(scripted: Scripted) -> None:
    with pytest.raises(ConfigurationError, match="upstream_client_id"):
        build_upstream(settings_for(scripted, upstream_client_id=None))


async def test_tls_settings_build_one_context_with_the_client_certificate(scripted: Scripted) -> None:
    settings = settings_for(
        scripted,
        upstream_ca_bundle=TLS / "ca.pem",
        upstream_client_cert=TLS / "client.pem",
        upstream_client_key=TLS / "client.key",
    )
    client = build_upstream(settings).client
    await client.aclose()
    with pytest.raises(ConfigurationError, match="client certificate"):
        build_upstream(settings_for(scripted, upstream_client_cert=TLS / "missing.pem"))
