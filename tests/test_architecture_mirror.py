"""The README's architecture section mirrors the shared architecture page's table of parts (architecture.md
§3): every part it lists is in the README's table with the same "may import", and every part is a real path.
The page's `bridge/pipeline.py` is the `bridge/pipeline/` package since issue 12. Skips when ../shared is
absent."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
ARCHITECTURE = REPO.parent / "shared" / "docs" / "architecture.md"
RENAMED = {"bridge/pipeline.py": "bridge/pipeline/"}


def _table(text: str, header: str) -> dict[str, tuple[str, str]]:
    """`part → (job, may import)` of the markdown table that starts with `header`."""
    start = text.index(header)
    rows: dict[str, tuple[str, str]] = {}
    for line in text[start:].splitlines()[2:]:
        if not line.startswith("|"):
            break
        cells = [cell.strip() for cell in line.strip().strip("|").split(" | ")]
        for part in re.findall(r"`([^`]+)`", cells[0]):
            rows[part] = (cells[1], cells[2] if len(cells) > 2 else "")
    return rows


def test_the_readme_lists_every_part_of_the_architecture_page_with_what_it_may_import() -> None:
    if not ARCHITECTURE.is_file():
        pytest.skip("../shared/docs/architecture.md is not present next to the repository")
    page = _table(ARCHITECTURE.read_text("utf-8"), "| part | job | may import |")
    readme = _table((REPO / "README.md").read_text("utf-8"), "| part | job | may import |")
    assert len(page) >= 10
    for part, (_, may_import) in page.items():
        ours = RENAMED.get(part, part)
        assert ours in readme, f"{part} is missing from the README's architecture table"
        assert readme[ours][1] == may_import, (
            f"{part}: README says {readme[ours][1]!r}, the page {may_import!r}"
        )


def test_every_part_of_the_readme_table_exists() -> None:
    readme = _table((REPO / "README.md").read_text("utf-8"), "| part | job | may import |")
    for part in readme:
        assert (REPO / part).exists(), part
