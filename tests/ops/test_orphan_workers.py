"""`serve` stopped while an extraction maps in worker processes: no mapping worker (nor multiprocessing's
resource tracker) outlives it, on SIGTERM (the pool is shut down) as on SIGKILL (each worker notices its
parent's death). Real processes: a simulator, `serve`, the extraction's workers."""

from __future__ import annotations

import logging
import multiprocessing
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path

import httpx
import pytest

from bridge.pipeline.workers import STOP_WITHIN_S, LogEvent, MappingPool
from tests.bench.procs import descendants
from tests.ops.processes import running
from tests.test_cli import free_port

# `serve` with the parallel mapping from a small directory (PARALLEL_FROM is a constant: lowered in this
# process only, before the command line runs; the workers themselves never read it).
SERVE = (
    "import sys, bridge.pipeline.workers as w; w.PARALLEL_FROM = 50; "
    "from bridge.cli import main; sys.argv[0] = 'ror-bridge'; raise SystemExit(main())"
)


@pytest.fixture(scope="module")
def upstream(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    port = free_port()
    log = tmp_path_factory.mktemp("sim") / "simulator.log"
    base = f"http://127.0.0.1:{port}/ws-diffusion-fhir"
    command = [sys.executable, "-m", "bridge", "simulator", "--port", str(port), "--open", "--scale", "300"]
    with running(command, log, f"{base}/metadata", {}, kill=True):
        yield base


def _alive(pid: int) -> bool:
    """Whether `pid` runs (a zombie, ended but not reaped yet, does not)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state not in ("Z", "X")


def _mapping(serve: subprocess.Popen[bytes], url: str) -> tuple[httpx.Response, httpx.Client, list[int]]:
    """The extraction started and read until its mapping workers run: the response (no longer read, the
    workers stay), and the processes below `serve` then."""
    client = httpx.Client(timeout=60)
    response = client.send(client.build_request("GET", f"{url}/extraction"), stream=True)
    assert response.status_code == 200
    chunks = response.iter_raw()
    deadline = time.monotonic() + 60
    while len(below := descendants(serve.pid)) < 3:  # two workers and the resource tracker
        assert time.monotonic() < deadline, f"no mapping workers under serve: {below}"
        next(chunks)
    return response, client, below


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL], ids=["sigterm", "sigkill"])
def test_no_mapping_worker_outlives_serve(upstream: str, tmp_path: Path, sig: signal.Signals) -> None:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = {
        "BRIDGE_MAPPING_WORKERS": "2",
        "BRIDGE_EXTRACTION_SOURCE": "search",
        "BRIDGE_SHUTDOWN_GRACE_S": "1",
        "BRIDGE_EXTRACTION_CACHE_DIR": "",
        "BRIDGE_LOG_FORMAT": "json",
    }
    log = tmp_path / "serve.log"
    command = [sys.executable, "-c", SERVE, "serve", "--port", str(port), "--upstream", upstream]
    with running(command, log, f"{url}/healthz", env, kill=True) as serve:
        response, client, below = _mapping(serve, url)
        try:
            serve.send_signal(sig)
            serve.wait(timeout=30)
            deadline = time.monotonic() + 5
            while (left := [pid for pid in below if _alive(pid)]) and time.monotonic() < deadline:
                time.sleep(0.1)
        finally:
            for pid in below:  # never leave one behind, whatever the outcome
                if _alive(pid):
                    os.kill(pid, signal.SIGKILL)
            response.close()
            client.close()
    assert not left, f"still running {5} s after serve ended: {left}\n{log.read_text()[-3000:]}"


def test_a_stopped_pool_terminates_a_worker_stuck_in_its_batch(caplog: pytest.LogCaptureFixture) -> None:
    pool = MappingPool(max_workers=1, mp_context=multiprocessing.get_context("spawn"))
    worker = pool.submit(os.getpid).result(timeout=60)
    stuck = pool.submit(time.sleep, 120)  # a batch that never ends
    queued = pool.submit(time.sleep, 120)
    deadline = time.monotonic() + 30
    while not stuck.running():  # in the worker (or handed to it)
        assert time.monotonic() < deadline
        time.sleep(0.05)
    time.sleep(0.5)  # the worker has taken the batch
    with caplog.at_level(logging.WARNING, logger="bridge.pipeline.workers"):
        stopped_at = time.monotonic()
        pool.shutdown(
            wait=False
        )  # the spool's close: no cancel_futures asked, the queued batch dropped anyway
        while _alive(worker) and time.monotonic() < stopped_at + STOP_WITHIN_S + 5:
            time.sleep(0.1)
        took = time.monotonic() - stopped_at
        for thread in threading.enumerate():
            if thread.name == "mapping-pool-stop":
                thread.join(10)
    assert not _alive(worker)
    assert STOP_WITHIN_S - 0.5 < took < STOP_WITHIN_S + 3  # waited for the batch, then terminated it
    # never run: dropped, or (handed to the worker's queue already) failed with the pool
    assert queued.cancelled() or isinstance(queued.exception(timeout=5), BrokenProcessPool)
    assert isinstance(stuck.exception(timeout=5), BrokenProcessPool)
    assert any(r.message.startswith(LogEvent.WORKERS_TERMINATED) for r in caplog.records), caplog.text
