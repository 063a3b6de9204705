"""`ror-bridge mappings check` ends with one OK / FAIL line and refuses a misspelt FHIR path or an unknown
region code (issue 16 item 8)."""

from __future__ import annotations

import shutil
from pathlib import Path

from bridge.shipped import shipped_dir
from bridge.translate.fhirpaths import ELEMENTS_FILE, check_path
from bridge.translate.paths import SourcePath
from tests.ops.fhir_elements import render
from tests.test_cli import cli


def _copy(tmp_path: Path) -> Path:
    directory = tmp_path / "mappings"
    shutil.copytree(shipped_dir("mappings"), directory)
    return directory


def test_the_shipped_tables_end_with_ok() -> None:
    result = cli("mappings", "check")
    assert result.returncode == 0, result.stderr
    assert result.stdout.rstrip().splitlines()[-1].startswith("mappings check: OK")


def test_a_misspelt_fhir_path_fails_naming_table_rule_and_the_close_element(tmp_path: Path) -> None:
    directory = _copy(tmp_path)
    table = directory / "entities" / "service.yaml"
    text = table.read_text(encoding="utf-8")
    assert "source: specialty.coding[" in text
    table.write_text(
        text.replace("source: specialty.coding[", "source: specialty.codding[", 1), encoding="utf-8"
    )
    result = cli("mappings", "check", "--mappings-dir", str(directory))
    assert result.returncode == 2
    assert result.stdout.rstrip().splitlines()[-1] == "mappings check: FAIL (1 problem(s), listed on stderr)"
    assert "entities/service.yaml: rule coded-type" in result.stderr
    assert "HealthcareService.specialty has no element 'codding' (did you mean 'coding'?)" in result.stderr


def test_an_unknown_region_code_fails(tmp_path: Path) -> None:
    directory = _copy(tmp_path)
    regions = directory / "regions.csv"
    regions.write_text(
        regions.read_text(encoding="utf-8").replace("bretagne,Bretagne,53,", "bretagne,Bretagne,55,")
    )
    result = cli("mappings", "check", "--mappings-dir", str(directory))
    assert result.returncode == 2
    assert "regions.csv: region bretagne: '55' is not a TRE_R30 region code" in result.stderr
    assert result.stdout.rstrip().splitlines()[-1].startswith("mappings check: FAIL")


def test_a_table_that_does_not_load_ends_with_fail(tmp_path: Path) -> None:
    directory = _copy(tmp_path)
    (directory / "identities.yaml").write_text("schemes: {}\n", encoding="utf-8")
    result = cli("mappings", "check", "--mappings-dir", str(directory))
    assert result.returncode == 2
    assert result.stdout.rstrip().splitlines()[-1].startswith("mappings check: FAIL (the tables do not load")


def test_paths_walk_types_primitive_extensions_and_filters() -> None:
    def check(resource: str, text: str) -> str | None:
        return check_path(resource, SourcePath.parse(text))

    assert check("Organization", "_name.extension[url=http://x].valueString") is None
    assert check("Location", "address._line") is None
    assert check("HealthcareService", "notAvailable[id=closingReopeningDate]") is None
    assert (
        check("Organization", "type.codding")
        == "Organization.type has no element 'codding' (did you mean 'coding'?)"
    )
    assert check("Organization", "name.value") == "Organization.name has no element 'value'"
    assert (
        check("Organization", "identifier[sytem=x]")
        == "Organization.identifier has no element 'sytem' to filter on"
    )


def test_the_shipped_element_table_is_current() -> None:
    """Regenerate with `python -m tests.ops.fhir_elements` after a fhir.resources upgrade."""
    assert ELEMENTS_FILE.read_text(encoding="utf-8") == render()
