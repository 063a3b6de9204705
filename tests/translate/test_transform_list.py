"""The transform list (issue 12 item 5): `ror-bridge mappings check` prints every transform with one line, and
mappings/README.md's transform table lists exactly the transforms of translate/transforms.py."""

from __future__ import annotations

import re
from pathlib import Path

from bridge.translate.report import transform_list, transform_summary
from bridge.translate.transforms import TEXT, TRANSFORMS
from tests.test_cli import cli

README = Path(__file__).resolve().parents[2] / "mappings" / "README.md"
TABLE = "### Transforms (closed list"


def readme_transforms(text: str) -> list[str]:
    """The names in the first column of the README's transform table, in order (`*(none)*` left out)."""
    lines = text[text.index(TABLE) :].splitlines()
    header = next(i for i, line in enumerate(lines) if line.startswith("| transform |"))
    names = []
    for line in lines[header + 2 :]:
        if not line.startswith("|"):
            break
        cell = line.strip("|").split("|")[0].strip()
        match = re.fullmatch(r"`([a-z_]+)`", cell)
        if match:
            names.append(match.group(1))
        elif cell != "*(none)*":
            raise AssertionError(f"not a transform name in the README's table: {cell!r}")
    return names


def test_the_readme_lists_every_transform_once_and_no_other() -> None:
    names = readme_transforms(README.read_text("utf-8"))
    assert len(names) == len(set(names)), "a transform is listed twice"
    assert sorted(set(TRANSFORMS) - set(names)) == [], "transforms missing from mappings/README.md"
    assert sorted(set(names) - set(TRANSFORMS)) == [], "mappings/README.md lists transforms that do not exist"


def test_the_readme_check_fails_on_a_missing_or_an_extra_row() -> None:
    text = README.read_text("utf-8")
    without = re.sub(r"\n\| `crosswalk` \|[^\n]*", "", text)
    assert "crosswalk" not in readme_transforms(without)
    extra = text.replace("| `entity_id` |", "| `no_such_transform` | — | text | x |\n| `entity_id` |", 1)
    assert "no_such_transform" in readme_transforms(extra)


def test_every_transform_says_in_one_line_what_it_does() -> None:
    for transform in (TEXT, *TRANSFORMS.values()):
        summary = transform_summary(transform)
        assert summary, f"{transform.name}: its function has no docstring"
        assert "\n" not in summary
    lines = transform_list()
    assert lines[0] == f"transforms: {len(TRANSFORMS)} (closed list, translate/transforms.py)"
    assert [line.split(":", 1)[0].strip() for line in lines[2:]] == list(TRANSFORMS)


def test_the_first_sentence_stops_at_a_full_stop_before_a_capital_only() -> None:
    assert transform_summary(TRANSFORMS["referenced_other_id"]).endswith(
        "(e.g. the Practitioner's RPPS) as otherIDs"
    )
    assert transform_summary(TRANSFORMS["reference_entity_id"]).endswith("else its FHIR-id entityID")


def test_mappings_check_prints_the_transform_list() -> None:
    result = cli("mappings", "check")
    assert result.returncode == 0, result.stderr
    printed = result.stdout.splitlines()
    start = printed.index(transform_list()[0])
    assert printed[start : start + len(TRANSFORMS) + 2] == transform_list()
