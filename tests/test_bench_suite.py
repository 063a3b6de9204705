"""`make bench` (tests/bench/suite.py) run for real at its `--tiny` scale: every part gives its rows in the
one table, a broken benchmark makes the run exit 1 with a BROKEN row, a wrong part name is a clear error.

The figures themselves are not asserted (speed is measured by `make bench`, never in tests): only that each
row is there, with a number or the reason it has none.
"""

from __future__ import annotations

import math
import os
import re
import subprocess
import sys

import pytest

from tests.bench.suite import MSGSPEC_NAMES, NATIONAL_COMMAND, TINY, python_speed
from tests.conftest import REPO

PAGING_ROWS = {f"client paging at {ms} ms latency (FhirClient ÷ bare httpx)" for ms in (0, 50)}
NATIONAL_ROWS = {
    "one million offers: the bridge's own part (issue 13 item 4)",
    "one million offers: bridge + mapping workers peak RSS (issue 13 item 4)",
}
PROCESS_ROWS = {
    f"translation in process, {TINY.translate_offers} offers (physical limit ÷ bridge)",
    f"translation as `ror-bridge translate` processes, {TINY.translate_offers} offers (limit ÷ bridge)",
    f"offer-search answering {TINY.answer_offers} offers: bridge CPU per request",
    "collection by search (issue 13 item 3)",
    "collection by export (issue 13 item 3)",
}
WORKERS_ROWS = {
    "serve --workers 2 throughput",
    "uvloop + httptools throughput (1 worker)",
    "one socket per worker (2 workers) throughput",
}


def _suite(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "tests.bench.suite", "--tiny", *args],
        cwd=REPO,
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
        timeout=300,
    )


def _rows(stdout: str) -> dict[str, list[str]]:
    """The table's rows by figure name: [measured, target, met, baseline, detail, command]."""
    lines = [line for line in stdout.splitlines() if line.startswith("| ")]
    assert lines[0].startswith("| figure | measured | target | met |"), stdout
    rows = {}
    for line in lines[1:]:
        cells = [cell.strip() for cell in line.strip().strip("|").split(" | ")]
        rows[cells[0]] = cells[1:]
    return rows


def _measured(cells: list[str]) -> float:
    """The number of a measured row (its met column says yes or NO)."""
    assert cells[2] in ("yes", "NO"), cells
    value = float(cells[0].split()[0])
    assert math.isfinite(value)
    return value


def test_the_in_process_parts_give_their_rows_and_the_run_its_load_average() -> None:
    done = _suite("--only", "paging,decode,national")
    assert done.returncode == 0, done.stderr
    rows = _rows(done.stdout)
    assert set(rows) == PAGING_ROWS | set(MSGSPEC_NAMES) | NATIONAL_ROWS
    for name in PAGING_ROWS:
        assert _measured(rows[name]) > 0
    for name in NATIONAL_ROWS:
        assert rows[name][0].startswith("not measured in this run")
        assert rows[name][2] == "—"
        assert NATIONAL_COMMAND in rows[name][5]
        assert "last recorded (README" in rows[name][4]
    for name in MSGSPEC_NAMES:  # msgspec comes with the dev extra: its rows are measured, not skipped
        assert _measured(rows[name]) > 0
    summary = next(line for line in done.stdout.splitlines() if line.startswith("make bench"))
    assert "load average" in summary
    assert "at start" in summary
    assert "at end" in summary
    probe = re.search(
        r"host speed: the probe of (\d+) passes .* ([0-9.]+) s of CPU at start, ([0-9.]+) s at end", summary
    )
    assert probe is not None, summary
    assert int(probe[1]) > 0
    assert float(probe[2]) > 0
    assert float(probe[3]) > 0


def test_the_host_speed_probe_measures_the_work_it_is_given() -> None:
    """Ten times the passes take more CPU: the probe times its work, it does not print a constant."""
    assert python_speed(200) > python_speed(20) > 0


def test_the_parts_run_as_processes_give_their_rows() -> None:
    done = _suite("--only", "translate,serve,collect")
    assert done.returncode == 0, done.stderr
    rows = _rows(done.stdout)
    assert set(rows) == PROCESS_ROWS
    for name in PROCESS_ROWS:
        _measured(rows[name])
    serving = rows[f"offer-search answering {TINY.answer_offers} offers: bridge CPU per request"]
    assert "added p50" in serving[4]
    assert "straight to the simulator" in serving[4]


@pytest.mark.slow
def test_the_workers_part_gives_its_rows() -> None:
    done = _suite("--only", "workers")
    assert done.returncode == 0, done.stderr
    rows = _rows(done.stdout)
    assert set(rows) == WORKERS_ROWS
    for name in WORKERS_ROWS:
        assert _measured(rows[name]) > 0


def test_a_broken_benchmark_exits_1_and_says_so_beside_the_other_rows() -> None:
    # A real misconfiguration (a page size of 0 is refused by the settings) breaks the collection benchmark.
    done = _suite("--only", "collect,national", env={"BRIDGE_UPSTREAM_PAGE_SIZE": "0"})
    assert done.returncode == 1
    rows = _rows(done.stdout)
    assert set(rows) == {"collect (benchmark broke)"} | NATIONAL_ROWS
    broke = rows["collect (benchmark broke)"]
    assert broke[0].startswith("not measured in this run: BROKEN: ValidationError")
    assert "broken: collect" in done.stderr


def test_an_unknown_part_is_refused_with_the_known_ones() -> None:
    done = _suite("--only", "paging,speed")
    assert done.returncode == 2
    assert "unknown part(s) speed" in done.stderr
    assert "known: translate, serve, collect, workers, compiled, decode, paging, national" in done.stderr
