"""`serve --workers 2` as an operator runs it: one port, two processes, every request counted once."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from bridge.config import available_cores
from bridge.listeners import balanced_listeners_supported
from tests.bench.procs import descendants
from tests.ops.conftest import scrape, total
from tests.ops.processes import running
from tests.test_cli import REPO, free_port

REQUESTS = 24


@pytest.mark.skipif(available_cores() < 2, reason="two workers need two CPU cores (serve refuses more)")
def test_two_workers_count_every_request_once(tmp_path: Path) -> None:
    port = free_port()
    metrics_dir = tmp_path / "metrics"
    metrics_dir.mkdir()
    (metrics_dir / "counter_999999.db").write_bytes(b"stale")  # a previous run's file is cleared at start
    env = {
        "BRIDGE_DEMO_SCALE": "40",
        "BRIDGE_LOG_FORMAT": "json",
        "PROMETHEUS_MULTIPROC_DIR": str(metrics_dir),
    }
    url = f"http://127.0.0.1:{port}"
    command = [sys.executable, "-m", "bridge", "serve", "--port", str(port), "--workers", "2"]
    with running(command, tmp_path / "serve.log", f"{url}/healthz", env) as process:
        for _ in range(REQUESTS):  # one connection per request: the kernel spreads them over both
            with httpx.Client() as client:
                assert client.get(f"{url}/extraction/idf", timeout=30).status_code == 200
        counts = [total(scrape(url), "ror_bridge_requests_total", function="extraction") for _ in range(6)]
        workers = {path.name for path in metrics_dir.glob("counter_*.db")}
    assert counts == [REQUESTS] * 6  # whichever worker answered the scrape
    assert len(workers) == 2, f"both workers should have counted requests: {workers}"
    assert process.returncode == 0


# --------------------------------------------------------------------------------------------------
# One listening socket per worker (bridge/listeners.py): keep-alive connections spread, a dead worker replaced


def _worker_pids(parent: int) -> list[int]:
    """The `serve` workers: its children but multiprocessing's resource tracker."""
    return [pid for pid in descendants(parent) if b"resource_tracker" not in _cmdline(pid)]


def _cmdline(pid: int) -> bytes:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return b"resource_tracker"  # ended: not a worker any more


def _socket_inodes(pid: int) -> set[str]:
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        with contextlib.suppress(OSError):
            target = os.readlink(fd)
            if target.startswith("socket:["):
                inodes.add(target[8:-1])
    return inodes


def _tcp_inodes(port: int, state: str) -> set[str]:
    """The inodes of the TCP sockets on local `port` in `state` (0A listening, 01 established)."""
    inodes = set()
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        if fields[3] == state and int(fields[1].rpartition(":")[2], 16) == port:
            inodes.add(fields[9])
    return inodes


@contextlib.contextmanager
def _two_workers(tmp_path: Path, **env: str) -> Iterator[tuple[subprocess.Popen[bytes], int, Path]]:
    port = free_port()
    log = tmp_path / "serve.log"
    environment = {**os.environ, "BRIDGE_DEMO_SCALE": "40", "BRIDGE_LOG_FORMAT": "json", **env}
    command = [sys.executable, "-m", "bridge", "serve", "--port", str(port), "--workers", "2"]
    with (
        log.open("wb") as output,
        subprocess.Popen(
            command, cwd=REPO, env=environment, stdout=output, stderr=subprocess.STDOUT
        ) as process,
    ):
        try:
            yield process, port, log
        finally:
            process.terminate()
            process.wait(timeout=60)


def _until(
    condition: Callable[[], bool], process: subprocess.Popen[bytes], log: Path, seconds: float = 90
) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        if process.poll() is not None or time.monotonic() > deadline:
            raise AssertionError(f"serve --workers 2: condition not met: {log.read_text()[-3000:]}")
        time.sleep(0.2)


def _each_worker_listens(process: subprocess.Popen[bytes], port: int) -> bool:
    listening = _tcp_inodes(port, "0A")
    owned = [_socket_inodes(pid) & listening for pid in _worker_pids(process.pid)]
    return (
        len(listening) == 2
        and len(owned) == 2
        and all(len(own) == 1 for own in owned)
        and owned[0] != owned[1]
    )


@pytest.mark.skipif(available_cores() < 2, reason="two workers need two CPU cores (serve refuses more)")
@pytest.mark.skipif(not balanced_listeners_supported(), reason="one socket per worker on Linux only")
def test_each_worker_has_its_own_socket_and_keep_alive_connections_are_spread(tmp_path: Path) -> None:
    with _two_workers(tmp_path) as (process, port, log):
        _until(lambda: _each_worker_listens(process, port), process, log)
        workers = _worker_pids(process.pid)

        async def open_connections() -> list[int]:
            # 32 clients opened at once, each keeping its connection: one burst, as a client's pool does.
            clients = [httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") for _ in range(32)]
            try:
                answers = await asyncio.gather(*(client.get("/healthz") for client in clients))
                assert all(answer.status_code == 200 for answer in answers)
                established = _tcp_inodes(port, "01")
                return [len(_socket_inodes(pid) & established) for pid in workers]
            finally:
                await asyncio.gather(*(client.aclose() for client in clients))

        held = asyncio.run(open_connections())
    assert sum(held) == 32, held
    # The kernel hashes each connection to one worker's socket: about half each (≤ 5 of 32: odds ~1e-4).
    # With one socket shared by both, the worker that woke first often took the whole burst.
    assert min(held) >= 6, held


@pytest.mark.skipif(available_cores() < 2, reason="two workers need two CPU cores (serve refuses more)")
@pytest.mark.skipif(not balanced_listeners_supported(), reason="one socket per worker on Linux only")
def test_a_worker_that_dies_is_replaced_on_its_socket(tmp_path: Path) -> None:
    with _two_workers(tmp_path) as (process, port, log):
        _until(lambda: _each_worker_listens(process, port), process, log)
        dead = _worker_pids(process.pid)[0]
        os.kill(dead, signal.SIGKILL)
        _until(
            lambda: dead not in _worker_pids(process.pid) and _each_worker_listens(process, port),
            process,
            log,
        )
        for _ in range(8):
            with httpx.Client() as client:  # new connections reach either worker, the new one included
                assert client.get(f"http://127.0.0.1:{port}/healthz", timeout=30).status_code == 200
        assert process.poll() is None
    assert f"serve-worker-exited pid={dead} exitcode=-9" in log.read_text()


@pytest.mark.skipif(available_cores() < 2, reason="two workers need two CPU cores (serve refuses more)")
@pytest.mark.skipif(not balanced_listeners_supported(), reason="one socket per worker on Linux only")
def test_workers_that_cannot_start_stop_serve_with_the_reason(tmp_path: Path) -> None:
    empty = tmp_path / "mappings"
    empty.mkdir()
    with _two_workers(tmp_path, BRIDGE_MAPPINGS_DIR=str(empty)) as (process, _port, log):
        status = process.wait(timeout=90)  # not restarted again and again
    assert status == 3
    text = log.read_text()
    assert "serve-worker-failed-to-start" in text
    assert f"file not found in {empty}" in text


@pytest.mark.skipif(available_cores() < 2, reason="two workers need two CPU cores (serve refuses more)")
@pytest.mark.skipif(not balanced_listeners_supported(), reason="one socket per worker on Linux only")
def test_a_port_in_use_is_refused_before_any_worker_starts(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = subprocess.run(
            [sys.executable, "-m", "bridge", "serve", "--port", str(port), "--workers", "2"],
            cwd=REPO,
            env={**os.environ, "BRIDGE_DEMO_SCALE": "40"},
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
    assert result.returncode == 2
    assert f"cannot listen on 127.0.0.1:{port}" in result.stderr
    assert "serve-worker-started" not in result.stderr
