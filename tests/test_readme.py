"""The README stays true: the two commands, every setting with its default in the configuration table, and the
conformance catalogue's size wherever it is given."""

from __future__ import annotations

import re
from pathlib import Path

from bridge.config import Settings

REPO = Path(__file__).resolve().parent.parent
README = (REPO / "README.md").read_text(encoding="utf-8")


def _settings_table() -> dict[str, str]:
    rows = re.findall(r"^\| `BRIDGE_([A-Z0-9_]+)` \| ([^|]+) \|", README, flags=re.MULTILINE)
    return {name.lower(): default.strip() for name, default in rows}


def test_every_setting_is_documented_with_its_default() -> None:
    table = _settings_table()
    assert set(table) == set(Settings.model_fields), "README settings table and bridge/config.py disagree"
    for name, field in Settings.model_fields.items():
        documented = table[name]
        if field.default is None:
            assert documented.startswith("("), f"{name}: an unset default is written in parentheses"
        else:
            assert documented == f"`{field.default}`", f"{name}: README {documented}, code {field.default}"


def test_the_first_two_commands_install_and_run_and_ci_runs_the_test_command() -> None:
    commands = re.findall(r"^make (\w+)", README, flags=re.MULTILINE)
    assert commands[:2] == ["run", "test"]
    ci = (REPO / ".ci" / "run").read_text(encoding="utf-8")
    assert re.search(r"^make test$", ci, flags=re.MULTILINE)


def test_every_count_of_the_conformance_scenarios_is_the_catalogues() -> None:
    from bridge.compare.selftest import load_scenarios

    catalogue = len(load_scenarios())
    counts = re.findall(r"(\d+) (?:named |conformance )?scenarios", README)
    assert len(counts) >= 3, "the README gives the catalogue's size in Try it, Commands and Comparison"
    assert set(counts) == {str(catalogue)}, f"README counts {counts}, catalogue {catalogue}"
