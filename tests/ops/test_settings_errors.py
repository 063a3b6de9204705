"""Setting errors at start-up name the `BRIDGE_*` variable and the flag (issue 16 item 8)."""

from __future__ import annotations

from bridge.config import unknown_variables
from tests.test_cli import cli


def test_a_mistyped_variable_fails_naming_the_closest_setting() -> None:
    result = cli("mappings", "check", env={"BRIDGE_UPSTREAM_PAGESIZE": "50"})
    assert result.returncode == 2
    expected = "BRIDGE_UPSTREAM_PAGESIZE is not a setting (did you mean BRIDGE_UPSTREAM_PAGE_SIZE?)"
    assert expected in result.stderr


def test_an_unrelated_unknown_variable_is_refused_without_a_guess() -> None:
    assert unknown_variables({"BRIDGE_ZZZZZZZZ": "1", "PATH": "/bin", "BRIDGE_PORT": "1"}) == [
        "BRIDGE_ZZZZZZZZ is not a setting"
    ]


def test_an_upstream_url_without_scheme_is_refused_naming_variable_and_flag() -> None:
    result = cli("serve", "--upstream", "ror.esante.gouv.fr/ws-diffusion-fhir")
    assert result.returncode == 2
    assert "BRIDGE_UPSTREAM_URL / --upstream" in result.stderr
    assert "is not an http:// or https:// URL" in result.stderr
    token = cli("mappings", "check", env={"BRIDGE_UPSTREAM_TOKEN_URL": "localhost:8443/token"})
    assert token.returncode == 2
    assert "BRIDGE_UPSTREAM_TOKEN_URL" in token.stderr


def test_too_many_workers_for_the_machine_are_refused() -> None:
    result = cli("serve", "--workers", "4096")
    assert result.returncode == 2
    assert "BRIDGE_WORKERS / --workers: 4096 worker processes exceed" in result.stderr


def test_a_bad_value_is_shown_with_its_variable_and_flag() -> None:
    result = cli("mappings", "check", env={"BRIDGE_PORT": "notaport"})
    assert result.returncode == 2
    assert "BRIDGE_PORT / --port" in result.stderr
    assert "notaport" in result.stderr
