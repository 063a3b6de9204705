"""`ror-bridge selftest --target URL` as an integrator runs it: a real bridge process on 127.0.0.1, the
command in another process, the pass/fail table on stdout, the exit status."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from bridge.compare.selftest import SCENARIOS, load_scenarios
from bridge.shipped import shipped_dir
from tests.test_cli import cli, free_port, running


@pytest.fixture(scope="module")
def bridge_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    port = free_port()
    config = tmp_path_factory.mktemp("selftest") / "bridge.toml"
    config.write_text("demo_scale = 60\ndemo_seed = 2\n", encoding="utf-8")
    ready = f"http://127.0.0.1:{port}/readyz"
    with running("serve", "--config", str(config), "--port", str(port), ready_url=ready):
        yield f"http://127.0.0.1:{port}"


def test_the_catalogue_covers_every_stored_function_and_the_error_cases() -> None:
    from bridge.translate import load_mappings

    scenarios = load_scenarios()
    names = {spec.name for spec in load_mappings(shipped_dir("mappings")).functions.values()}
    assert names <= {s.function for s in scenarios}
    assert {"soap12", "soap11", "bare"} <= {s.envelope for s in scenarios}
    assert sum(s.name.startswith("error-") for s in scenarios) >= 5
    requests = [s.request for s in scenarios]
    assert any("<function uuid=" in r for r in requests)  # 2013 form
    assert any("<csd:function urn=" in r for r in requests)  # 2014 form
    assert any('urn="' in r.split(">", 1)[0] for r in requests)  # 2016 form: @urn on the root
    iti74 = [s for s in scenarios if s.function == "ITI-74"]  # issue 16 item 8
    assert {"soap12", "soap11", "bare"} <= {s.envelope for s in iti74}
    assert any(s.name.startswith("error-") for s in iti74)


def test_error_scenarios_pass_against_a_running_bridge(bridge_url: str) -> None:
    done = cli("selftest", "--target", bridge_url, "--only", "error-")
    assert done.returncode == 0, done.stdout + done.stderr
    lines = [line for line in done.stdout.splitlines() if line.startswith("error-")]
    assert len(lines) == sum(s.name.startswith("error-") for s in load_scenarios())
    assert all("  PASS  " in line for line in lines), done.stdout
    assert "failed, 0 skipped" in done.stdout
    assert " 0 failed" in done.stdout


def test_discovery_scenarios_capture_what_later_ones_use(bridge_url: str) -> None:
    done = cli(
        "selftest",
        "--target",
        f"{bridge_url}/csd",
        "--only",
        "organization-search",
        "--only",
        "internal-organization",
        "--only",
        "establishment-offers",
        "--only",
        "provider-search",
    )
    table = done.stdout
    for name in (
        "organization-search-soap12-first-page",
        "organization-search-2013-uuid-by-id",
        "organization-search-paging",
        "organization-search-2016-unencapsulated",
        "internal-organization-by-oi",
        "establishment-offers-by-idnatstruct",
        "provider-search-by-common-name",
    ):
        row = next(line for line in table.splitlines() if line.startswith(name))
        assert "  PASS  " in row, table


def test_a_failed_expectation_is_a_fail_row_and_exit_status_1(bridge_url: str, tmp_path: Path) -> None:
    catalogue = yaml.safe_load(SCENARIOS.read_text("utf-8"))
    wrong = dict(next(s for s in catalogue["scenarios"] if s["name"] == "error-start-zero"))
    wrong["name"] = "start-zero-wrongly-expected-to-succeed"
    wrong["expect"] = {"status": 200}
    missing = dict(
        next(s for s in catalogue["scenarios"] if s["name"] == "organization-search-2013-uuid-by-id")
    )
    (tmp_path / "mine.yaml").write_text(yaml.safe_dump({"scenarios": [wrong, missing]}), "utf-8")
    done = cli("selftest", "--target", bridge_url, "--scenarios", str(tmp_path / "mine.yaml"))
    assert done.returncode == 1
    row = next(line for line in done.stdout.splitlines() if line.startswith(wrong["name"]))
    assert "  FAIL  " in row
    assert "HTTP 400, expected 200" in row
    skipped = next(line for line in done.stdout.splitlines() if line.startswith(missing["name"]))
    assert "  SKIP  " in skipped
    assert "org_id" in skipped


def test_an_unreachable_target_fails_every_scenario() -> None:
    done = cli(
        "selftest", "--target", f"http://127.0.0.1:{free_port()}", "--only", "error-unknown", "--timeout", "5"
    )
    assert done.returncode == 1
    assert "  FAIL  " in done.stdout
    assert "no answer" in done.stdout


def test_a_broken_catalogue_is_exit_status_2(tmp_path: Path) -> None:
    (tmp_path / "bad.yaml").write_text("scenarios:\n  - name: x\n    envelope: soap99\n", "utf-8")
    done = cli("selftest", "--target", "http://127.0.0.1:9", "--scenarios", str(tmp_path / "bad.yaml"))
    assert done.returncode == 2
    assert "soap99" in done.stderr


def test_the_whole_catalogue_passes_against_the_demo_bridge(bridge_url: str) -> None:
    done = cli("selftest", "--target", bridge_url)
    assert done.returncode == 0, done.stdout + done.stderr
    scenarios = load_scenarios()
    assert f"{len(scenarios)} scenarios: {len(scenarios)} passed, 0 failed, 0 skipped" in done.stdout


def test_the_erreur_check_fails_on_another_code_or_none(bridge_url: str, tmp_path: Path) -> None:
    catalogue = yaml.safe_load(SCENARIOS.read_text("utf-8"))
    other = dict(
        next(s for s in catalogue["scenarios"] if s["name"] == "error-ror-profile-notif-without-date")
    )
    other["name"] = "notif-erreur-with-another-code"
    other["expect"] = {"status": 400, "erreur": 999}
    plain = dict(next(s for s in catalogue["scenarios"] if s["name"] == "error-start-zero"))
    plain["name"] = "ihe-fault-has-no-erreur"
    plain["expect"] = {"status": 400, "erreur": 106}
    (tmp_path / "mine.yaml").write_text(yaml.safe_dump({"scenarios": [other, plain]}), "utf-8")
    done = cli("selftest", "--target", bridge_url, "--scenarios", str(tmp_path / "mine.yaml"))
    assert done.returncode == 1
    row = next(line for line in done.stdout.splitlines() if line.startswith(other["name"]))
    assert "erreur @code '106', expected 999" in row
    row = next(line for line in done.stdout.splitlines() if line.startswith(plain["name"]))
    assert "erreur @code '(none)', expected 106" in row
