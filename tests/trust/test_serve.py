"""`ror-bridge serve` itself: --tls-cert/--tls-key/--tls-client-ca over real HTTPS, the audit log reopened on
SIGHUP, and clear start-up errors for a half-given TLS configuration."""

from __future__ import annotations

import logging
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import orjson
import pytest

from bridge.cli import main
from bridge.logs import URL_LOGGERS, UVICORN_LOGGERS
from tests.trust.conftest import Pki, write_clients

BIN = Path(sys.executable).parent
FACILITY = (
    Path(__file__).resolve().parent.parent / "fixtures" / "trust" / "facility-search-soap12.xml"
).read_bytes()


@contextmanager
def _logging_kept() -> Iterator[None]:
    """Around `serve` run in this process (its start-up errors): serve configures the process's logging
    (bridge/logs.py: the root's one handler, on this test's captured stderr, its level, uvicorn's and httpx's
    loggers); they get back what they had, or a later test of this process would log to a closed stream at
    another level (tests/translate/test_findings.py did, after this file, in `make test`'s processes)."""
    loggers = [logging.getLogger(name) for name in ("", *URL_LOGGERS, *UVICORN_LOGGERS)]
    saved = [(logger, logger.handlers[:], logger.level, logger.propagate) for logger in loggers]
    try:
        yield
    finally:
        for logger, handlers, level, propagate in saved:
            logger.handlers[:] = handlers
            logger.setLevel(level)
            logger.propagate = propagate


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_serve_speaks_https_with_client_certificates_and_reopens_the_audit_log(
    pki: Pki, tmp_path: Path
) -> None:
    client = pki.client("serve-client")
    clients = write_clients(
        tmp_path / "clients.yaml",
        f'clients:\n  - id: serve-client\n    fingerprints: ["{pki.fingerprint(client)}"]\n'
        '    regions: ["*"]\n    functions: ["*"]\n    profile: 1\n',
    )
    audit = tmp_path / "audit.jsonl"
    port = _free_port()
    env = {
        **os.environ,
        "BRIDGE_CLIENTS_FILE": str(clients),
        "BRIDGE_AUDIT_LOG": str(audit),
        "BRIDGE_DEMO_SCALE": "40",
        "BRIDGE_MAPPING_WORKERS": "0",
        "BRIDGE_LOG_LEVEL": "warning",
    }
    command = [str(BIN / "ror-bridge"), "serve", "--port", str(port), "--tls-cert", str(pki.server_cert),
               "--tls-key", str(pki.server_key), "--tls-client-ca", str(pki.client_ca)]  # fmt: skip
    process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"https://127.0.0.1:{port}"
    try:
        with httpx.Client(verify=pki.context(client), timeout=30) as http:
            deadline = time.monotonic() + 60
            while True:
                try:
                    if http.get(f"{url}/healthz").status_code == 200:
                        break
                except httpx.TransportError:
                    if time.monotonic() > deadline or process.poll() is not None:
                        raise
                    time.sleep(0.3)
            headers = {"Content-Type": "application/soap+xml"}
            assert http.post(f"{url}/csd", content=FACILITY, headers=headers).status_code == 200
            time.sleep(0.5)  # the line is written once the answer is finished
            os.rename(audit, tmp_path / "audit.jsonl.1")  # logrotate moves the file, then sends SIGHUP
            process.send_signal(signal.SIGHUP)
            time.sleep(0.5)
            assert http.post(f"{url}/csd", content=FACILITY, headers=headers).status_code == 200
        with pytest.raises(httpx.TransportError):
            httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=5)  # plain HTTP is not served
    finally:
        process.terminate()
        process.wait(timeout=30)
    rotated = [orjson.loads(line) for line in (tmp_path / "audit.jsonl.1").read_bytes().splitlines()]
    fresh = [orjson.loads(line) for line in audit.read_bytes().splitlines()]
    assert [line["client"] for line in rotated] == ["serve-client"]
    assert [line["outcome"] for line in fresh] == ["answered"]


@pytest.mark.parametrize(
    ("flags", "words"),
    [
        (["--tls-cert", "server.pem"], "tls_cert and tls_key go together"),
        (["--tls-client-ca", "ca.pem"], "need tls_cert and tls_key"),
    ],
)
def test_serve_refuses_a_half_tls_configuration(
    flags: list[str], words: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with _logging_kept():
        assert main(["serve", *flags]) == 2
    assert words in capsys.readouterr().err


def test_serve_names_a_missing_certificate_file(
    pki: Pki, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with _logging_kept():
        code = main(["serve", "--tls-cert", str(tmp_path / "nope.pem"), "--tls-key", str(pki.server_key)])
    assert code == 2
    assert "TLS files" in capsys.readouterr().err
