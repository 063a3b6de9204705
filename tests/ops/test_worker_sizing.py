"""`serve --workers N` never exceeds the machine: N above the CPU cores, or N mapping-worker pools whose
explicit size adds up to more than the cores, is refused at start with the setting's name (bridge/cli.py)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from bridge.config import available_cores

ROR_BRIDGE = str(Path(sys.executable).parent / "ror-bridge")
# Never reached: the start is refused before anything listens or connects.
UPSTREAM = "http://127.0.0.1:9/ws-diffusion-fhir"


def serve(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [ROR_BRIDGE, "serve", "--upstream", UPSTREAM, "--port", "9", *args],
        env={"PATH": "/usr/bin:/bin", **env},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_more_workers_than_cores_is_refused() -> None:
    done = serve("--workers", str(available_cores() + 1))
    assert done.returncode == 2
    assert "BRIDGE_WORKERS / --workers" in done.stderr
    assert f"exceed the {available_cores()} CPU core(s)" in done.stderr


@pytest.mark.skipif(available_cores() < 2, reason="two workers need two CPU cores")
def test_mapping_pools_adding_up_to_more_than_the_cores_are_refused() -> None:
    done = serve("--workers", "2", BRIDGE_MAPPING_WORKERS=str(available_cores()))
    assert done.returncode == 2
    assert "BRIDGE_MAPPING_WORKERS" in done.stderr
    assert "in each of 2 workers exceed" in done.stderr
