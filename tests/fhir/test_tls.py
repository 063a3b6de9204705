"""Mutual TLS to the token endpoint (profiles 1–4, RFC 8705) against the simulator served over HTTPS.

The client builds one ssl.SSLContext (CA bundle + client certificate), never `verify=path` with `cert=`
(engineering-notes §6.3). Certificates: tests/fixtures/fhir-client/tls/ (test-only, see its README).
"""

from __future__ import annotations

import hashlib
import logging
import socket
import ssl
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import uvicorn

from bridge.errors import ConfigurationError, UpstreamStatusError, UpstreamUnavailableError
from bridge.fhir.auth import build_ssl_context
from bridge.fhir.client import Credentials, FhirClient
from bridge.fhir.resilience import RetryPolicy
from bridge.model import FhirQuery
from bridge.simulator.national_api import SimulatorConfig, create_simulator_server, tls_options

TLS = Path(__file__).resolve().parent.parent / "fixtures" / "fhir-client" / "tls"
TOKEN_PATH = "/auth/realms/ror/protocol/openid-connect/token"
ROR_HEADERS = {
    "Ror-Profil-Utilisateur-Code": "CU22",
    "Ror-Profil-Utilisateur-System": "1.2.250.1.213.1.6.1.66",
    "Ror-Role-Metier-Code": "AUTOMATE",
    "Ror-Role-Metier-System": "1.2.250.1.213.1.1.4.6",
}
QUERY = FhirQuery("Organization", ())
FAST = RetryPolicy(max_attempts=1)


def fingerprint(pem: Path) -> str:
    return hashlib.sha256(ssl.PEM_cert_to_DER_cert(pem.read_text(encoding="ascii"))).hexdigest()


@contextmanager
def https_simulator() -> Iterator[str]:
    """The simulator over HTTPS on 127.0.0.1, access checks on, `client.pem` allow-listed as `bridge-mtls`."""
    config = SimulatorConfig(
        scale=10,
        open_access=False,
        tls_cert=str(TLS / "server.pem"),
        tls_key=str(TLS / "server.key"),
        tls_ca=str(TLS / "ca.pem"),
        client_certs={fingerprint(TLS / "client.pem"): "bridge-mtls"},
    )
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(
        uvicorn.Config(create_simulator_server(config), log_level="warning", **tls_options(config))
    )
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        assert thread.is_alive(), "the HTTPS simulator did not start"
        assert time.monotonic() < deadline, "the HTTPS simulator did not start in time"
        time.sleep(0.01)
    try:
        yield f"https://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()


@pytest.fixture(scope="module")
def root() -> Iterator[str]:
    with https_simulator() as url:
        yield url


def client_for(root: str, context: ssl.SSLContext | None) -> FhirClient:
    return FhirClient(
        f"{root}/ws-diffusion-fhir",
        headers=ROR_HEADERS,
        verify=context if context is not None else True,
        credentials=Credentials(root + TOKEN_PATH, "bridge-mtls"),  # no secret: the certificate is the proof
        retry=FAST,
    )


async def test_a_client_certificate_obtains_a_token_without_a_secret(
    root: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    context = build_ssl_context(TLS / "ca.pem", TLS / "client.pem", TLS / "client.key")
    async with client_for(root, context) as client:
        result = await client.search(QUERY)
    assert result.matches
    key_text = (TLS / "client.key").read_text(encoding="ascii")
    key_body = key_text.splitlines()[1]  # a line of the private key itself
    assert key_body not in caplog.text


async def test_without_the_certificate_the_token_endpoint_refuses(root: str) -> None:
    context = build_ssl_context(TLS / "ca.pem")
    async with client_for(root, context) as client:
        with pytest.raises(UpstreamStatusError) as caught:
            await client.search(QUERY)
    assert caught.value.status == 401
    assert caught.value.outcome is not None
    assert caught.value.outcome.startswith("invalid_client")


async def test_an_untrusted_server_is_refused(root: str) -> None:
    async with client_for(root, None) as client:  # the system store does not know the test CA
        with pytest.raises(UpstreamUnavailableError, match="token endpoint unreachable"):
            await client.search(QUERY)


def test_a_key_without_a_certificate_is_a_configuration_error() -> None:
    with pytest.raises(ConfigurationError):
        build_ssl_context(client_key=TLS / "client.key")


def test_an_unreadable_certificate_names_the_file_not_its_content(tmp_path: Path) -> None:
    bad = tmp_path / "broken.pem"
    bad.write_text("-----BEGIN CERTIFICATE-----\nnot base64\n-----END CERTIFICATE-----\n", encoding="ascii")
    with pytest.raises(ConfigurationError, match=r"broken\.pem") as caught:
        build_ssl_context(TLS / "ca.pem", bad, TLS / "client.key")
    assert "not base64" not in str(caught.value)
