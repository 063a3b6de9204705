"""The `ror-bridge` commands as a user runs them: real processes, real ports on 127.0.0.1."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

from bridge.shipped import shipped_dir

REPO = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "bridge", *args],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=REPO,
        env={**os.environ, **(env or {})},
        check=False,
    )


@contextmanager
def running(*args: str, ready_url: str) -> Iterator[subprocess.Popen[bytes]]:
    """Run a long-lived command until its `ready_url` answers 200; its output goes to a file, not a pipe."""
    with (
        tempfile.TemporaryFile() as output,
        subprocess.Popen(
            [sys.executable, "-m", "bridge", *args], cwd=REPO, stdout=output, stderr=subprocess.STDOUT
        ) as process,
    ):
        try:
            deadline = time.monotonic() + 30
            while not _answers(ready_url):
                if process.poll() is not None or time.monotonic() > deadline:
                    output.seek(0)
                    raise AssertionError(f"the command did not become ready: {output.read().decode()}")
                time.sleep(0.1)
            yield process
        finally:
            process.terminate()
            process.wait(timeout=10)


def _answers(url: str) -> bool:
    try:
        return httpx.get(url, timeout=1).status_code == 200
    except httpx.TransportError:
        return False


def test_mappings_check_prints_the_coverage() -> None:
    result = cli("mappings", "check")
    assert result.returncode == 0, result.stderr
    assert "urn:ror:csd:stored-function:internal-organization" in result.stdout
    assert "regions.csv: 17 legacy regional endpoint(s)" in result.stdout


def test_mappings_check_names_table_rule_and_path_of_a_defect(tmp_path: Path) -> None:
    directory = tmp_path / "mappings"
    shutil.copytree(shipped_dir("mappings"), directory)
    (directory / "identities.yaml").write_text("schemes: {}\n", encoding="utf-8")
    result = cli("mappings", "check", "--mappings-dir", str(directory))
    assert result.returncode == 2
    assert "identities.yaml" in result.stderr


def test_settings_come_from_the_environment_and_are_validated() -> None:
    result = cli("mappings", "check", env={"BRIDGE_UPSTREAM_PAGE_SIZE": "500"})
    assert result.returncode == 2
    assert "BRIDGE_UPSTREAM_PAGE_SIZE" in result.stderr
    assert "less than or equal to 200" in result.stderr
    assert "(got '500')" in result.stderr


def test_serve_on_the_demo_upstream_is_ready() -> None:
    port = free_port()
    with running("serve", "--port", str(port), ready_url=f"http://127.0.0.1:{port}/readyz"):
        wsdl = httpx.get(f"http://127.0.0.1:{port}/csd?wsdl")
        assert wsdl.status_code == 200
        assert f"http://127.0.0.1:{port}/csd" in wsdl.text


def test_serve_reads_a_toml_file_and_flags_win(tmp_path: Path) -> None:
    port = free_port()
    config = tmp_path / "bridge.toml"
    config.write_text(f"port = {free_port()}\ndemo_scale = 10\n", encoding="utf-8")
    with running(
        "serve", "--config", str(config), "--port", str(port), ready_url=f"http://127.0.0.1:{port}/readyz"
    ):
        bundle = httpx.get(f"http://127.0.0.1:{port}/demo/fhir/HealthcareService", params={"_count": "0"})
        assert bundle.json()["total"] == 10


def test_the_simulator_runs_alone_under_the_national_path_with_access_checks() -> None:
    port = free_port()
    root = f"http://127.0.0.1:{port}"
    base = f"{root}/ws-diffusion-fhir"
    with running("simulator", "--port", str(port), "--scale", "25", ready_url=f"{base}/metadata"):
        refused = httpx.get(f"{base}/HealthcareService", params={"_count": "0"})
        assert refused.status_code == 401
        assert refused.json()["resourceType"] == "OperationOutcome"
        token = httpx.post(
            f"{root}/auth/realms/ror/protocol/openid-connect/token",
            data={
                "grant_type": "client_credentials",
                "client_id": "bridge-demo",
                "client_secret": "bridge-demo",
            },
        ).json()["access_token"]
        headers = {"Authorization": f"Bearer {token}"} | dict.fromkeys(
            (
                "Ror-Profil-Utilisateur-Code",
                "Ror-Profil-Utilisateur-System",
                "Ror-Role-Metier-Code",
                "Ror-Role-Metier-System",
            ),
            "x",
        )
        bundle = httpx.get(f"{base}/HealthcareService", params={"_count": "0"}, headers=headers).json()
        assert bundle["total"] == 25


def test_the_simulator_open_switch_drops_the_access_checks() -> None:
    port = free_port()
    base = f"http://127.0.0.1:{port}/ws-diffusion-fhir"
    with running("simulator", "--port", str(port), "--scale", "25", "--open", ready_url=f"{base}/metadata"):
        bundle = httpx.get(f"{base}/HealthcareService", params={"_count": "0"}).json()
        assert bundle["total"] == 25
        strict = httpx.get(f"{base}/HealthcareService", params={"no-such-param": "1"})
        assert strict.status_code == 400
        assert "no-such-param" in strict.text


def test_the_simulator_lenient_and_max_results_switches() -> None:
    port = free_port()
    base = f"http://127.0.0.1:{port}/ws-diffusion-fhir"
    argv = ("simulator", "--port", str(port), "--scale", "25", "--open", "--lenient", "--max-results", "7")
    with running(*argv, ready_url=f"{base}/metadata"):
        bundle = httpx.get(f"{base}/HealthcareService", params={"no-such-param": "1", "_count": "5"}).json()
        assert bundle["total"] == 25  # the real count, as the ROR does past its cap
        served = len(bundle["entry"])
        while next_url := next((link["url"] for link in bundle["link"] if link["relation"] == "next"), None):
            bundle = httpx.get(next_url).json()
            served += len(bundle.get("entry", []))
        assert served == 7


@pytest.mark.parametrize("argv", [["--version"], ["serve", "--help"]])
def test_help_and_version(argv: list[str]) -> None:
    result = cli(*argv)
    assert result.returncode == 0
    assert "ror-bridge" in result.stdout


def test_the_console_script_is_installed() -> None:
    script = Path(sys.executable).parent / "ror-bridge"
    assert script.is_file(), "`pip install -e .` installs the ror-bridge console script next to python"
    result = subprocess.run(
        [str(script), "--version"], capture_output=True, text=True, timeout=30, check=False
    )
    assert result.returncode == 0
    assert result.stdout.startswith("ror-bridge ")
