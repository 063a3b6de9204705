"""Access control of the simulator: token endpoint, bearer and `Ror-*` checks, mTLS, the standalone command.

mTLS runs over real HTTPS on 127.0.0.1 with a throw-away CA made by `openssl` at test time (no stored keys).
"""

from __future__ import annotations

import base64
import hashlib
import shutil
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn

from bridge.simulator.access_control import ROR_HEADERS, TOKEN_PATH
from bridge.simulator.dataset import Dataset
from bridge.simulator.fault_injection import FAULTS_HEADER
from bridge.simulator.national_api import (
    SimulatorConfig,
    create_simulator_app,
    create_simulator_server,
    tls_options,
)

REPO = Path(__file__).resolve().parents[2]
ROOT = "http://sim"
FHIR = ROOT + "/ws-diffusion-fhir"
ROR = {  # the values of ror-fhir-api.md §1.3
    "Ror-Profil-Utilisateur-Code": "CU22",
    "Ror-Profil-Utilisateur-System": "1.2.250.1.213.1.6.1.66",
    "Ror-Role-Metier-Code": "AUTOMATE",
    "Ror-Role-Metier-System": "1.2.250.1.213.1.1.4.6",
}
DEMO = {"grant_type": "client_credentials", "client_id": "bridge-demo", "client_secret": "bridge-demo"}


@pytest.fixture
async def http(dataset: Dataset) -> AsyncIterator[httpx.AsyncClient]:
    server = create_simulator_server(SimulatorConfig(open_access=False, token_ttl_s=60), dataset)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=server), base_url=ROOT) as client:
        yield client


async def token(http: httpx.AsyncClient) -> str:
    response = await http.post(TOKEN_PATH, data=DEMO)
    assert response.status_code == 200, response.text
    return str(response.json()["access_token"])


def bearer(value: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {value}", **ROR}


# ---- token endpoint -------------------------------------------------------------------------------------


async def test_client_credentials_give_an_expiring_bearer_token(http: httpx.AsyncClient) -> None:
    response = await http.post(TOKEN_PATH, data=DEMO)
    body = response.json()
    assert response.status_code == 200
    assert body["token_type"] == "Bearer"
    assert body["expires_in"] == 60
    assert response.headers["cache-control"] == "no-store"
    # JWT-shaped with an `exp` claim, as the ANS Python example reads it (ror-fhir-api.md §1.2).
    claims = body["access_token"].split(".")[1]
    exp = httpx.Response(200, content=base64.urlsafe_b64decode(claims + "==")).json()["exp"]
    assert 0 < exp - time.time() <= 61


async def test_http_basic_client_authentication_works_too(http: httpx.AsyncClient) -> None:
    response = await http.post(
        TOKEN_PATH, data={"grant_type": "client_credentials"}, auth=("bridge-demo", "bridge-demo")
    )
    assert response.status_code == 200


@pytest.mark.parametrize(
    ("form", "status", "error"),
    [
        ({**DEMO, "client_secret": "wrong"}, 401, "invalid_client"),
        ({**DEMO, "client_id": "nobody"}, 401, "invalid_client"),
        ({"grant_type": "client_credentials"}, 401, "invalid_client"),
        ({**DEMO, "grant_type": "password"}, 400, "unsupported_grant_type"),
    ],
)
async def test_bad_token_requests_are_refused(
    http: httpx.AsyncClient, form: dict[str, str], status: int, error: str
) -> None:
    response = await http.post(TOKEN_PATH, data=form)
    assert response.status_code == status
    assert response.json()["error"] == error


async def test_the_token_endpoint_takes_only_post(http: httpx.AsyncClient) -> None:
    assert (await http.get(TOKEN_PATH)).status_code == 405


# ---- FHIR endpoints -------------------------------------------------------------------------------------


async def test_a_valid_token_and_the_ror_headers_open_the_fhir_api(http: httpx.AsyncClient) -> None:
    response = await http.get(f"{FHIR}/HealthcareService?_count=1", headers=bearer(await token(http)))
    assert response.status_code == 200
    assert response.json()["total"] == 300


@pytest.mark.parametrize("authorization", [None, "Bearer ", "Basic Zm9vOmJhcg==", "Bearer not.a.token"])
async def test_missing_or_invalid_bearer_is_401(http: httpx.AsyncClient, authorization: str | None) -> None:
    headers = dict(ROR)
    if authorization is not None:
        headers["Authorization"] = authorization
    response = await http.get(f"{FHIR}/HealthcareService", headers=headers)
    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"].startswith("Bearer")
    assert response.json()["resourceType"] == "OperationOutcome"


async def test_a_token_signed_by_another_server_is_refused(dataset: Dataset, http: httpx.AsyncClient) -> None:
    other = create_simulator_server(SimulatorConfig(open_access=False), dataset)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=other), base_url=ROOT) as elsewhere:
        foreign = await token(elsewhere)
    assert (await http.get(f"{FHIR}/Organization", headers=bearer(foreign))).status_code == 401


async def test_an_expired_token_is_401(dataset: Dataset) -> None:
    config = SimulatorConfig(open_access=False, token_ttl_s=60)
    fhir = create_simulator_app(config, dataset)
    now = [1_000_000.0]
    fhir.state.tokens.clock = lambda: now[0]
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=fhir), base_url=ROOT) as client:
        issued = fhir.state.tokens.issue("bridge-demo")["access_token"]
        assert (await client.get("/Organization?_count=1", headers=bearer(issued))).status_code == 200
        now[0] += 61
        expired = await client.get("/Organization?_count=1", headers=bearer(issued))
    assert expired.status_code == 401
    assert 'error="invalid_token"' in expired.headers["WWW-Authenticate"]
    assert "expired" in expired.json()["issue"][0]["diagnostics"]


@pytest.mark.parametrize("missing", ROR_HEADERS)
async def test_each_missing_ror_header_is_403_naming_it(http: httpx.AsyncClient, missing: str) -> None:
    headers = {k: v for k, v in bearer(await token(http)).items() if k != missing}
    response = await http.get(f"{FHIR}/HealthcareService", headers=headers)
    assert response.status_code == 403
    assert missing in response.json()["issue"][0]["diagnostics"]


async def test_metadata_stays_open(http: httpx.AsyncClient) -> None:
    assert (await http.get(f"{FHIR}/metadata")).status_code == 200
    assert (await http.get(f"{FHIR}/HealthcareService/metadata")).status_code == 401  # only the base's


async def test_open_access_needs_neither_token_nor_headers(dataset: Dataset) -> None:
    server = create_simulator_server(SimulatorConfig(), dataset)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=server), base_url=ROOT) as client:
        assert (await client.get(f"{FHIR}/HealthcareService?_count=1")).status_code == 200
        assert (await client.post(TOKEN_PATH, data=DEMO)).status_code == 200  # still served


async def test_token_expiry_fault_expires_the_bearer_mid_walk(http: httpx.AsyncClient) -> None:
    first = await token(http)
    page = (await http.get(f"{FHIR}/HealthcareService?_count=5", headers=bearer(first))).json()
    nxt = next(link["url"] for link in page["link"] if link["relation"] == "next")
    faulted = await http.get(nxt, headers={**bearer(first), FAULTS_HEADER: "token-expiry"})
    assert faulted.status_code == 401
    assert faulted.headers["WWW-Authenticate"].startswith("Bearer")
    assert (await http.get(nxt, headers=bearer(first))).status_code == 401  # that token stays expired
    assert (await http.get(nxt, headers=bearer(await token(http)))).status_code == 200  # a new one works


# ---- mTLS -----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Pki:
    ca: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path
    stranger_cert: Path  # CA-signed, not allow-listed
    stranger_key: Path
    forged_cert: Path  # self-signed, same subject as the client
    forged_key: Path

    def fingerprint(self, cert: Path) -> str:
        der = ssl.PEM_cert_to_DER_cert(cert.read_text())
        return hashlib.sha256(der).hexdigest()


def _openssl(*args: str | Path) -> None:
    subprocess.run(["openssl", *map(str, args)], check=True, capture_output=True, timeout=60)


@pytest.fixture(scope="session")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    if shutil.which("openssl") is None:
        pytest.skip("openssl is not installed")
    d = tmp_path_factory.mktemp("pki")
    _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=Test CA",
             "-keyout", d / "ca.key", "-out", d / "ca.pem")  # fmt: skip

    def signed(name: str, subject: str, *extra: str) -> None:
        _openssl("req", "-newkey", "rsa:2048", "-nodes", "-subj", subject,
                 "-keyout", d / f"{name}.key", "-out", d / f"{name}.csr")  # fmt: skip
        ext = d / f"{name}.ext"
        ext.write_text("\n".join(extra) + "\n")
        _openssl("x509", "-req", "-in", d / f"{name}.csr", "-CA", d / "ca.pem", "-CAkey", d / "ca.key",
                 "-CAcreateserial", "-days", "2", "-extfile", ext, "-out", d / f"{name}.pem")  # fmt: skip

    signed("server", "/CN=127.0.0.1", "subjectAltName=IP:127.0.0.1", "extendedKeyUsage=serverAuth")
    signed("client", "/O=Hopital Test/CN=legacy-client-01", "extendedKeyUsage=clientAuth")
    signed("stranger", "/O=Other/CN=someone-else", "extendedKeyUsage=clientAuth")
    _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
             "-subj", "/O=Hopital Test/CN=legacy-client-01",
             "-keyout", d / "forged.key", "-out", d / "forged.pem")  # fmt: skip
    return Pki(
        d / "ca.pem",
        d / "server.pem",
        d / "server.key",
        d / "client.pem",
        d / "client.key",
        d / "stranger.pem",
        d / "stranger.key",
        d / "forged.pem",
        d / "forged.key",
    )


@contextmanager
def running_tls_server(app: Any, options: dict[str, Any]) -> Iterator[str]:
    """Serve `app` over HTTPS on a free loopback port with the given uvicorn options; yields the root URL."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="off", **options))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("the TLS test server did not start")
        time.sleep(0.01)
    try:
        yield f"https://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()


def tls_client(pki: Pki, cert: Path | None = None, key: Path | None = None) -> httpx.Client:
    # An SSLContext, not verify=/cert= strings: httpx 0.28 silently drops the client certificate with a
    # string `verify` (engineering-notes §6.3).
    context = ssl.create_default_context(cafile=str(pki.ca))
    if cert is not None and key is not None:
        context.load_cert_chain(str(cert), str(key))
    return httpx.Client(verify=context, timeout=10)


@pytest.fixture(scope="module")
def mtls_server(pki: Pki, dataset: Dataset) -> Iterator[str]:
    config = SimulatorConfig(
        open_access=False,
        client_certs={pki.fingerprint(pki.client_cert): "legacy-client-01"},
        tls_cert=str(pki.server_cert),
        tls_key=str(pki.server_key),
        tls_ca=str(pki.ca),
    )
    with running_tls_server(create_simulator_server(config, dataset), tls_options(config)) as base:
        yield base


def test_an_allow_listed_client_certificate_replaces_the_secret(pki: Pki, mtls_server: str) -> None:
    with tls_client(pki, pki.client_cert, pki.client_key) as client:
        response = client.post(mtls_server + TOKEN_PATH, data={"grant_type": "client_credentials"})
        assert response.status_code == 200, response.text
        access = response.json()["access_token"]
        fhir = client.get(f"{mtls_server}/ws-diffusion-fhir/Organization?_count=1", headers=bearer(access))
        assert fhir.status_code == 200
        # The certificate's client id must agree with a client_id sent beside it.
        other = client.post(
            mtls_server + TOKEN_PATH, data={"grant_type": "client_credentials", "client_id": "bridge-demo"}
        )
        assert other.status_code == 401


def test_a_ca_signed_certificate_not_allow_listed_gets_no_token(pki: Pki, mtls_server: str) -> None:
    with tls_client(pki, pki.stranger_cert, pki.stranger_key) as client:
        response = client.post(mtls_server + TOKEN_PATH, data={"grant_type": "client_credentials"})
    assert response.status_code == 401
    assert response.json()["error"] == "invalid_client"


def test_without_a_certificate_the_secret_still_works_over_tls(pki: Pki, mtls_server: str) -> None:
    with tls_client(pki) as client:
        assert client.post(mtls_server + TOKEN_PATH, data=DEMO).status_code == 200
        refused = client.post(mtls_server + TOKEN_PATH, data={"grant_type": "client_credentials"})
        assert refused.status_code == 401


def test_a_self_signed_certificate_with_the_same_subject_fails_the_handshake(
    pki: Pki, mtls_server: str
) -> None:
    with tls_client(pki, pki.forged_cert, pki.forged_key) as client, pytest.raises(httpx.TransportError):
        client.post(mtls_server + TOKEN_PATH, data={"grant_type": "client_credentials"})


def test_tls_options_need_both_certificate_and_key() -> None:
    assert tls_options(SimulatorConfig()) == {}
    with pytest.raises(ValueError, match="certificate and a key"):
        tls_options(SimulatorConfig(tls_ca="ca.pem"))


# ---- the standalone command -----------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@contextmanager
def simulator_process(
    *args: str, scheme: str = "http", verify: ssl.SSLContext | bool = True
) -> Iterator[str]:
    port = _free_port()
    root = f"{scheme}://127.0.0.1:{port}"
    with (
        tempfile.TemporaryFile() as output,
        subprocess.Popen(
            [sys.executable, "-m", "bridge", "simulator", "--port", str(port), "--scale", "10", *args],
            cwd=REPO,
            stdout=output,
            stderr=subprocess.STDOUT,
        ) as process,
    ):
        try:
            deadline = time.monotonic() + 30
            while True:
                try:
                    if httpx.get(f"{root}/ws-diffusion-fhir/metadata", verify=verify).status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                if process.poll() is not None or time.monotonic() > deadline:
                    output.seek(0)
                    raise AssertionError(f"the simulator did not start: {output.read().decode()}")
                time.sleep(0.1)
            yield root
        finally:
            process.terminate()
            process.wait(timeout=10)


def test_the_standalone_simulator_checks_access_by_default() -> None:
    with simulator_process("--token-ttl", "120") as root:
        fhir = f"{root}/ws-diffusion-fhir/HealthcareService"
        assert httpx.get(fhir).status_code == 401
        issued = httpx.post(root + TOKEN_PATH, data=DEMO).json()
        assert issued["expires_in"] == 120
        assert httpx.get(fhir, headers=bearer(issued["access_token"])).json()["total"] == 10


def test_the_standalone_simulator_with_open_faults_and_latency() -> None:
    with simulator_process(
        "--open", "--latency-ms", "1", "--faults", "status(503)@path=Organization"
    ) as root:
        assert httpx.get(f"{root}/ws-diffusion-fhir/HealthcareService").status_code == 200
        assert httpx.get(f"{root}/ws-diffusion-fhir/Organization").status_code == 503


def test_the_standalone_simulator_serves_tls_with_client_certificates(pki: Pki) -> None:
    args = ["--tls-cert", str(pki.server_cert), "--tls-key", str(pki.server_key), "--tls-ca", str(pki.ca)]
    args += ["--client-cert", f"{pki.fingerprint(pki.client_cert)}=legacy-client-01"]
    trust = ssl.create_default_context(cafile=str(pki.ca))
    # The client closes before the server stops: an idle TLS connection would hold uvicorn's shutdown.
    with (
        simulator_process(*args, scheme="https", verify=trust) as root,
        tls_client(pki, pki.client_cert, pki.client_key) as client,
    ):
        response = client.post(root + TOKEN_PATH, data={"grant_type": "client_credentials"})
        assert response.status_code == 200, response.text
        access = response.json()["access_token"]
        assert client.get(f"{root}/ws-diffusion-fhir/Organization", headers=bearer(access)).status_code == 200


def test_the_standalone_simulator_refuses_a_bad_fault_spec() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "bridge", "simulator", "--faults", "status(99)"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2
    assert "bad status" in result.stderr
