"""Every link of the READMEs and of the performance journal resolves in a clone of this repository: files,
folders and #anchors (issue 16 item 8). Links outside the repository (`../shared/…`) are refused: a clone does
not have them."""

from __future__ import annotations

import re
import unicodedata

import pytest

from tests.test_cli import REPO

DOCUMENTS = [
    "README.md",
    "mappings/README.md",
    "xsd/README.md",
    "docker/README.md",
    "docs/performance-journal.md",
]
LINK = re.compile(r"(?<!!)\[[^\]]*\]\(([^)\s]+)\)")


def _anchors(markdown: str) -> set[str]:
    """GitHub's heading anchors: lower case, punctuation dropped, spaces to hyphens."""
    anchors = set()
    for heading in re.findall(r"^#{1,6} (.+)$", markdown, flags=re.MULTILINE):
        text = unicodedata.normalize("NFC", heading.strip().lower())
        text = re.sub(r"[^\w\- ]", "", text)
        anchors.add(text.replace(" ", "-"))
    return anchors


def _outside_code(markdown: str) -> str:
    return re.sub(r"^```.*?^```", "", markdown, flags=re.MULTILINE | re.DOTALL)


@pytest.mark.parametrize("document", DOCUMENTS)
def test_every_link_resolves_in_a_clone(document: str) -> None:
    path = REPO / document
    text = _outside_code(path.read_text(encoding="utf-8"))
    broken = []
    for target in LINK.findall(text):
        if target.startswith(("http://", "https://", "mailto:")):
            continue
        file_part, _, anchor = target.partition("#")
        destination = (path.parent / file_part).resolve() if file_part else path
        if not destination.is_relative_to(REPO) or not destination.exists():
            broken.append(target)
            continue
        if (
            anchor
            and destination.suffix == ".md"
            and anchor not in _anchors(destination.read_text(encoding="utf-8"))
        ):
            broken.append(target)
    assert broken == [], f"{document}: links that do not resolve in a clone: {broken}"


def test_the_check_finds_a_broken_link() -> None:
    text = "see [notes](../shared/docs/x.md) and [here](#nowhere)\n# Somewhere\n"
    targets = LINK.findall(text)
    assert targets == ["../shared/docs/x.md", "#nowhere"]
    assert "nowhere" not in _anchors(text)
    assert "somewhere" in _anchors(text)
