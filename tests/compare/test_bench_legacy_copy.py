"""bench-compare's legacy copy (tests/bench/bench_compare.py) against the real comparison: what it injects
is exactly what `compare documents` reports — an offer's UE and its service are dropped together, so no
legacy service is left without the UE it is matched through."""

from __future__ import annotations

import json
from pathlib import Path

from bridge.cli import main
from tests.bench.bench_compare import baseline_pass, legacy_copy


def test_the_legacy_copy_injects_what_the_report_finds(extraction: Path, tmp_path: Path) -> None:
    legacy = tmp_path / "legacy.xml"
    written, left_out, _ = legacy_copy(extraction, legacy, every=7)
    assert left_out > 0
    counts = baseline_pass([legacy, extraction])
    assert counts[str(legacy)] == written
    out = tmp_path / "out"
    assert main(["compare", "documents", str(legacy), str(extraction), "--out", str(out), "--quiet"]) == 0
    report = json.loads((out / "report.json").read_text("utf-8"))
    entities = report["entities"]
    assert entities["only_legacy"] == []
    assert entities["matched"] == written
    assert len(entities["only_bridge"]) == counts[str(extraction)] - written == left_out
    assert report["by_kind"]["service"]["matched"] > 0
