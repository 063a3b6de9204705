"""Flat memory of `ror-bridge compare` (issue 14): the run's store keeps SQLite's memory bounded, and the peak
RSS of `compare documents` does not follow the documents' size (the slow test, `make test-slow`)."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import orjson
import pytest

from bridge.compare.matching import CACHE_KIB, HEAP_LIMIT_MIB, TEMP_CACHE_KIB, Store, bound_sqlite_heap
from bridge.compare.rules import load_rules
from bridge.shipped import shipped_dir

CSD = "urn:ihe:iti:csd:2013"


def test_the_store_keeps_its_pages_in_a_bounded_cache_and_its_temporary_data_on_disk(tmp_path: Path) -> None:
    store = Store(load_rules(shipped_dir("mappings")), tmp_path / "run.sqlite")
    try:

        def pragma(name: str) -> int:
            return int(store.db.execute(f"PRAGMA {name}").fetchone()[0])

        assert pragma("cache_size") == -CACHE_KIB
        assert pragma("temp.cache_size") == -TEMP_CACHE_KIB
        assert pragma("mmap_size") == 0
        assert pragma("temp_store") == 1  # FILE
        assert pragma("threads") == 0
    finally:
        store.close()


def test_bound_sqlite_heap_sets_the_process_wide_soft_limit() -> None:
    with sqlite3.connect(":memory:") as db:
        before = int(db.execute("PRAGMA soft_heap_limit").fetchone()[0])
    try:
        assert bound_sqlite_heap(7) == 7 * 1024 * 1024
        with sqlite3.connect(":memory:") as other:  # any connection of the process sees it
            assert int(other.execute("PRAGMA soft_heap_limit").fetchone()[0]) == 7 * 1024 * 1024
        assert HEAP_LIMIT_MIB * 1024 >= CACHE_KIB + TEMP_CACHE_KIB
    finally:
        with sqlite3.connect(":memory:") as db:
            db.execute(f"PRAGMA soft_heap_limit={before}")


def write_document(path: Path, count: int, *, legacy: bool) -> None:
    """A csd:CSD of `count` organizations; legacy: one name in 100 altered, one entity in 1000 dropped."""
    with path.open("w", encoding="utf-8") as out:
        out.write(
            f'<?xml version="1.0" encoding="UTF-8"?>\n<csd:CSD xmlns:csd="{CSD}"><csd:organizationDirectory>'
        )
        for n in range(count):
            if legacy and n % 1000 == 999:
                continue
            name = f"Organisation {n}" + (" (legacy)" if legacy and n % 100 == 7 else "")
            out.write(
                f'<csd:organization entityID="urn:ror:organization:{n}">'
                f'<csd:otherID code="{n:09d}" assigningAuthorityName="1.2.250.1.71.4.2.2"/>'
                f'<csd:codedType code="{n % 40}" codingScheme="1.2.250.1.213.3.3.65"/>'
                f"<csd:primaryName>{name}</csd:primaryName>"
                f'<csd:address type="Practice"><csd:addressLine component="streetAddress">{n} rue de la Paix'
                f'</csd:addressLine><csd:addressLine component="city">Ville {n % 997}</csd:addressLine>'
                f'<csd:addressLine component="postalCode">{10000 + n % 80000}</csd:addressLine></csd:address>'
                f"<csd:contact><csd:person><csd:name><csd:commonName>Contact {n}</csd:commonName></csd:name>"
                f"</csd:person></csd:contact>"
                f'<csd:record created="2020-01-01T00:00:00" updated="2024-01-01T00:00:00" status="Active"/>'
                "</csd:organization>"
            )
        out.write("</csd:organizationDirectory></csd:CSD>\n")


def peak_rss_mib(legacy: Path, bridge: Path, out: Path) -> tuple[float, dict[str, int]]:
    """`ror-bridge compare documents` in its own process: its peak RSS and the report's totals."""
    child = subprocess.Popen(
        [
            *(sys.executable, "-m", "bridge", "compare", "documents", str(legacy), str(bridge)),
            *("--out", str(out), "--quiet", "--work-dir", str(out.parent)),
        ]
    )
    _, status, usage = os.wait4(child.pid, 0)
    child.returncode = os.waitstatus_to_exitcode(status)  # reaped here: ru_maxrss is this child's alone
    assert child.returncode == 0
    entities = orjson.loads((out / "report.json").read_bytes())["entities"]
    totals = {key: len(value) if isinstance(value, list) else value for key, value in entities.items()}
    return usage.ru_maxrss / 1024, totals


@pytest.mark.slow
def test_compare_documents_peak_rss_stays_flat_for_ten_times_the_entities(tmp_path: Path) -> None:
    peaks = {}
    for count in (10_000, 100_000):
        legacy, bridge = tmp_path / f"legacy-{count}.xml", tmp_path / f"bridge-{count}.xml"
        write_document(legacy, count, legacy=True)
        write_document(bridge, count, legacy=False)
        peaks[count], totals = peak_rss_mib(legacy, bridge, tmp_path / f"out-{count}")
        # The injected differences, exactly: the dropped entities and the altered names.
        dropped = count // 1000
        assert totals["only_bridge"] == dropped
        assert totals["only_legacy"] == 0
        assert totals["matched"] == count - dropped
        assert totals["different"] == count // 100
    assert peaks[100_000] <= 1.2 * peaks[10_000], peaks
