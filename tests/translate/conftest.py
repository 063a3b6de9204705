"""Shared fixtures of the translate/ tests: the shipped tables and the FHIR fixture Bundles."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from bridge.model import FhirQuery, SearchResult
from bridge.shipped import shipped_dir
from bridge.translate import Mappings, load_mappings

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"
FHIR = FIXTURES / "fhir"
NOW = datetime(2024, 6, 1, 12, 0, tzinfo=UTC)


@pytest.fixture
def mappings() -> Mappings:
    """A fresh load of the shipped tables (fresh findings counters per test)."""
    return load_mappings(shipped_dir("mappings"))


@pytest.fixture
def edited_access_table(tmp_path: Path) -> Callable[[str, str], Path]:
    """A copy of the shipped tables whose access-profiles.yaml has its first `old` replaced by `new`
    (asserted present); returns the copy's directory."""

    def edit(old: str, new: str) -> Path:
        target = tmp_path / "mappings"
        if not target.exists():
            shutil.copytree(shipped_dir("mappings"), target)
        path = target / "access-profiles.yaml"
        text = path.read_text(encoding="utf-8")
        assert old in text
        path.write_text(text.replace(old, new, 1), encoding="utf-8")
        return target

    return edit


def search_result(query: FhirQuery, bundle_file: Path) -> SearchResult:
    """A searchset Bundle file as the SearchResult fhir/ would hand over (match / include split)."""
    bundle: dict[str, Any] = json.loads(bundle_file.read_text(encoding="utf-8"))
    result = SearchResult(query=query, total=bundle.get("total"), pages=1)
    for entry in bundle.get("entry", []):
        mode = entry.get("search", {}).get("mode", "match")
        (result.matches if mode == "match" else result.includes).append(entry["resource"])
    return result
