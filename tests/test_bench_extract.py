"""`make bench-extract` (tests/bench/bench_extract.py) run for real at a tiny scale, and its CPU accounting
(tests/bench/procs.py `TreeSampler`): a child process that ends before the last sample still counts.

The figures themselves are not asserted (speed is measured by `make bench-extract`, never in tests): only
that each is there and adds up, and that a bad `--scales` is a clear error.
"""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

from tests.bench.procs import TreeSampler
from tests.conftest import REPO

# A parent that starts a child burning 0.5 s of CPU, reaps it, then idles: the child is gone well before the
# sampler's last sample.
PARENT = textwrap.dedent(
    """
    import subprocess, sys, time
    burn = "import time\\nwhile time.process_time() < 0.5: pass"
    subprocess.run([sys.executable, "-c", burn], check=True)
    print("child done", flush=True)
    time.sleep(30)
    """
)


def test_a_child_that_ends_before_the_last_sample_keeps_its_cpu() -> None:
    with subprocess.Popen([sys.executable, "-c", PARENT], stdout=subprocess.PIPE, text=True) as parent:
        try:
            sampler = TreeSampler(parent.pid, period_s=0.02)
            sampler.start()
            assert parent.stdout is not None
            assert parent.stdout.readline() == "child done\n"
            time.sleep(0.3)  # several samples with the child gone
            sampler.stop()
        finally:
            parent.kill()
    assert sampler.processes_seen == 2
    # At most one period of the child's work is lost (its CPU after its last sample).
    assert sampler.descendants_cpu_s >= 0.4
    assert sampler.own_cpu_s < sampler.descendants_cpu_s
    assert sampler.cpu_at(sampler.series[-1][0]) == (sampler.own_cpu_s, sampler.descendants_cpu_s)
    assert sampler.cpu_at(sampler.series[0][0] - 1) == (0.0, 0.0)


def _bench(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "tests.bench.bench_extract", *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_two_tiny_scales_give_every_figure_the_cpu_split_and_the_rss_ratio(tmp_path: Path) -> None:
    figures = tmp_path / "figures.json"
    done = _bench("--scales", "200,400", "--workdir", str(tmp_path), "--json", str(figures))
    assert done.returncode == 0, done.stderr
    results = json.loads(figures.read_text())
    assert [r["scale"] for r in results] == [200, 400]
    for r in results:
        assert r["entities"]["service"] == r["scale"]  # one service per offer
        assert 0 < r["fetch_s"] < r["duration_s"]
        assert math.isclose(r["fetch_s"] + r["write_s"], r["duration_s"])
        assert r["bridge_own_cpu_s"] > 0
        assert r["simulator_cpu_s"] > 0
        assert r["bridge_cpu_s"] == r["bridge_own_cpu_s"] + r["bridge_workers_cpu_s"]
        assert math.isclose(r["bridge_fetch_cpu_s"] + r["bridge_write_cpu_s"], r["bridge_cpu_s"])
        assert 0 <= r["simulator_fetch_cpu_s"] <= r["simulator_cpu_s"]
        assert len(r["load_average"]) == 2
        assert r["error"] == ""
        # the directories in document order, the last byte at the end of the download
        assert list(r["sections"]) == [
            "organizationDirectory",
            "serviceDirectory",
            "facilityDirectory",
            "providerDirectory",
            "deviceDirectory",
        ]
        assert r["first_byte_s"] <= min(r["sections"].values()) <= r["last_chunk_s"] <= r["duration_s"]
        assert 0 <= r["longest_gap_s"] <= r["duration_s"]
    assert (tmp_path / "bridge-400.log").read_text().count('"event":"extraction-spooled"') == 1
    assert "| bridge CPU: fetch + spool | bridge CPU: map + write |" in done.stdout
    assert "| 400 | " in done.stdout
    assert "RSS(400) / RSS(200) = " in done.stdout
    assert "400 offers, the bridge's part (download + spool + map + write" in done.stdout
    assert "400 offers, the directories: organizationDirectory from " in done.stdout


def test_the_floor_maps_nothing_even_in_the_mapping_workers(tmp_path: Path) -> None:
    # `--floor` (tests/bench/floor_serve.py): every batch still read, sent to the two workers and parsed
    # there, no entity written. The workers import the wrapper as their main module: were its patch not to
    # reach them, they would map the offers and the services would be counted.
    figures = tmp_path / "figures.json"
    command = [sys.executable, "-m", "tests.bench.bench_extract", "--scales", "400", "--floor"]
    command += ["--workers", "2", "--workdir", str(tmp_path), "--json", str(figures)]
    done = subprocess.run(
        command,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "FLOOR_PARALLEL_FROM": "1"},
    )
    assert done.returncode == 0, done.stderr
    (result,) = json.loads(figures.read_text())
    assert result["floor"] is True
    assert result["entities"] == dict.fromkeys(("organization", "service", "facility", "provider"), 0)
    assert result["processes"] >= 3  # the bridge, its two mapping workers (and the resource tracker)
    assert result["bridge_workers_cpu_s"] > 0
    assert result["error"] == ""
    assert "400 offers, the data path's floor, nothing mapped (--floor" in done.stdout
    assert "the bridge's part" not in done.stdout
    log = (tmp_path / "bridge-400.log").read_text()
    assert log.count('"event":"extraction-done"') == 1


def test_a_download_given_up_keeps_its_figures_so_far_and_exits_1(tmp_path: Path) -> None:
    # With the simulator adding 500 ms to every request, the answer stays silent for seconds before the
    # offer is spooled (under the bridge's 10 s heartbeat) on any machine: a read timeout of 0.2 s gives up.
    figures = tmp_path / "figures.json"
    done = _bench(
        "--scales", "200", "--read-timeout", "0.2", "--simulator-latency-ms", "500",
        "--workdir", str(tmp_path), "--json", str(figures),
    )  # fmt: skip
    assert done.returncode == 1, done.stderr
    (result,) = json.loads(figures.read_text())
    assert result["error"].startswith("ReadTimeout after ")
    assert 0 <= result["bytes"] < 1000  # at most the document's start (the first byte may wait on upstream)
    assert result["entities"]["service"] == 0
    assert result["bridge_own_cpu_s"] > 0
    assert "FAILED at 200: ReadTimeout after " in done.stdout
    assert "FAILED: ReadTimeout" in done.stderr


def test_bad_scales_are_refused_with_an_example() -> None:
    done = _bench("--scales", "100000,lots")
    assert done.returncode == 2
    assert "expected offer counts such as 100000,1000000, got '100000,lots'" in done.stderr


def test_sigint_stops_the_run_keeps_the_figures_so_far_and_skips_the_next_scales(tmp_path: Path) -> None:
    figures = tmp_path / "figures.json"
    command = [sys.executable, "-m", "tests.bench.bench_extract", "--scales", "3000,200"]
    command += ["--workdir", str(tmp_path), "--json", str(figures)]
    # started as a shell starts a background job: SIGINT ignored
    with subprocess.Popen(
        command,
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN),
    ) as bench:
        log = tmp_path / "bridge-3000.log"
        deadline = time.monotonic() + 120
        while not (log.exists() and '"event":"extraction-started"' in log.read_text()):
            assert bench.poll() is None
            assert time.monotonic() < deadline
            time.sleep(0.05)
        bench.send_signal(signal.SIGINT)
        stdout, stderr = bench.communicate(timeout=120)
    assert bench.returncode == 1, stderr
    (result,) = json.loads(figures.read_text())
    assert result["scale"] == 3000
    assert result["error"].startswith("interrupted (SIGINT) after ")
    assert result["entities"]["service"] < 3000
    assert "extracting 200 offers" not in stderr
    assert "FAILED at 3000: interrupted (SIGINT)" in stdout
