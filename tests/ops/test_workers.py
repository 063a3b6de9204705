"""`serve --workers 2` as an operator runs it: one port, two processes, every request counted once."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from bridge.config import available_cores
from tests.ops.conftest import scrape, total
from tests.test_cli import REPO, free_port

REQUESTS = 24


def _wait_ready(url: str, process: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 60
    while True:
        try:
            if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            pass
        if process.poll() is not None or time.monotonic() > deadline:
            raise AssertionError(f"serve --workers 2 did not start: {log.read_text()}")
        time.sleep(0.2)


@pytest.mark.skipif(available_cores() < 2, reason="two workers need two CPU cores (serve refuses more)")
def test_two_workers_count_every_request_once(tmp_path: Path) -> None:
    port = free_port()
    metrics_dir = tmp_path / "metrics"
    metrics_dir.mkdir()
    (metrics_dir / "counter_999999.db").write_bytes(b"stale")  # a previous run's file is cleared at start
    env = {
        **os.environ,
        "BRIDGE_DEMO_SCALE": "40",
        "BRIDGE_LOG_FORMAT": "json",
        "PROMETHEUS_MULTIPROC_DIR": str(metrics_dir),
    }
    log = tmp_path / "serve.log"
    url = f"http://127.0.0.1:{port}"
    with (
        log.open("wb") as output,
        subprocess.Popen(
            [sys.executable, "-m", "bridge", "serve", "--port", str(port), "--workers", "2"],
            cwd=REPO,
            env=env,
            stdout=output,
            stderr=subprocess.STDOUT,
        ) as process,
    ):
        try:
            _wait_ready(url, process, log)
            for _ in range(REQUESTS):  # one connection per request: the kernel spreads them over both
                with httpx.Client() as client:
                    assert client.get(f"{url}/extraction/idf", timeout=30).status_code == 200
            counts = [
                total(scrape(url), "ror_bridge_requests_total", function="extraction") for _ in range(6)
            ]
            workers = {path.name for path in metrics_dir.glob("counter_*.db")}
        finally:
            process.terminate()
            process.wait(timeout=30)
    assert counts == [REQUESTS] * 6  # whichever worker answered the scrape
    assert len(workers) == 2, f"both workers should have counted requests: {workers}"
    assert process.returncode == 0
