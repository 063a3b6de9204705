"""Certificates made in the tests (trustme) and the bridge served over real HTTPS on 127.0.0.1."""

from __future__ import annotations

import socket
import ssl
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import trustme
import uvicorn
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization

from bridge.app import create_app, uvicorn_options
from bridge.config import Settings, load_settings

SCALE = 60
SEED = 3


@dataclass
class Pki:
    ca: trustme.CA
    other_ca: trustme.CA
    directory: Path
    server_cert: Path
    server_key: Path
    client_ca: Path

    def client(self, name: str, ca: trustme.CA | None = None) -> trustme.LeafCert:
        return (ca or self.ca).issue_cert(f"{name}@clients.example", common_name=name)

    def fingerprint(self, leaf: trustme.LeafCert) -> str:
        return (
            x509.load_pem_x509_certificate(leaf.cert_chain_pems[0].bytes()).fingerprint(hashes.SHA256()).hex()
        )

    def context(self, leaf: trustme.LeafCert | None = None) -> ssl.SSLContext:
        context = ssl.create_default_context()
        self.ca.configure_trust(context)
        if leaf is not None:
            leaf.configure_cert(context)
        return context

    def crl(self, revoked: list[trustme.LeafCert], path: Path) -> Path:
        ca_cert = x509.load_pem_x509_certificate(self.ca.cert_pem.bytes())
        key = serialization.load_pem_private_key(self.ca.private_key_pem.bytes(), password=None)
        now = datetime.now(UTC)
        builder = (
            x509.CertificateRevocationListBuilder()
            .issuer_name(ca_cert.subject)
            .last_update(now - timedelta(minutes=5))
            .next_update(now + timedelta(days=1))
        )
        for leaf in revoked:
            serial = x509.load_pem_x509_certificate(leaf.cert_chain_pems[0].bytes()).serial_number
            builder = builder.add_revoked_certificate(
                x509.RevokedCertificateBuilder().serial_number(serial).revocation_date(now).build()
            )
        crl = builder.sign(key, hashes.SHA256())  # type: ignore[arg-type]
        path.write_bytes(crl.public_bytes(serialization.Encoding.PEM))
        return path


@pytest.fixture(scope="session")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    directory = tmp_path_factory.mktemp("pki")
    ca, other = trustme.CA(organization_name="Test ROR CA"), trustme.CA(organization_name="Another CA")
    server = ca.issue_cert("127.0.0.1", "localhost")
    cert, key, client_ca = directory / "server.pem", directory / "server.key", directory / "client-ca.pem"
    server.cert_chain_pems[0].write_to_path(str(cert))
    server.private_key_pem.write_to_path(str(key))
    ca.cert_pem.write_to_path(str(client_ca))
    return Pki(ca, other, directory, cert, key, client_ca)


@contextmanager
def serving(settings: Settings) -> Iterator[tuple[str, Any]]:
    """The bridge for `settings` under uvicorn with the options `serve` uses; yields (base URL, app)."""
    app = create_app(settings)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    config = uvicorn.Config(app, log_level="warning", lifespan="on", **uvicorn_options(settings))
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("the test server did not start")
        time.sleep(0.01)
    scheme = "https" if settings.tls_enabled else "http"
    try:
        yield f"{scheme}://127.0.0.1:{port}", app
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()


def write_clients(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


Factory = Callable[..., Settings]


@pytest.fixture
def make_settings(pki: Pki, tmp_path: Path) -> Factory:
    def make(**overrides: Any) -> Settings:
        values: dict[str, Any] = {
            "demo_scale": SCALE,
            "demo_seed": SEED,
            "tls_cert": pki.server_cert,
            "tls_key": pki.server_key,
            "tls_client_ca": pki.client_ca,
            "audit_log": str(tmp_path / "audit.jsonl"),
            "mapping_workers": 0,
        }
        values.update(overrides)
        return load_settings(**values)

    return make
