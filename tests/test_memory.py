"""bridge/memory.py: on glibc Linux the arena cap and the trim reach the C library; else they are no-ops. A
mapping worker trims after each batch."""

from __future__ import annotations

import platform
import sys
import threading
from datetime import UTC, datetime

import orjson
import pytest

from bridge import gc_control, memory
from bridge.model import Directory
from bridge.pipeline import workers
from bridge.pipeline.spool import spooled_entity_id
from bridge.shipped import shipped_dir
from bridge.simulator.dataset import generate_dataset
from bridge.translate import load_mappings


@pytest.mark.skipif(
    not sys.platform.startswith("linux") or platform.libc_ver()[0] != "glibc", reason="glibc only"
)
def test_glibc_takes_the_arena_cap_and_the_trim() -> None:
    assert memory.cap_arenas() is True
    blocks = [bytearray(256 * 1024) for _ in range(64)]  # some memory to give back
    del blocks
    assert isinstance(memory.release(), bool)  # 1 when memory was released, 0 when there was none


def test_without_glibc_both_are_no_ops(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(memory, "_LIBC", None)
    assert memory.cap_arenas() is False
    assert memory.release() is False


def test_a_mapping_worker_hands_back_what_each_batch_freed(monkeypatch: pytest.MonkeyPatch) -> None:
    """After each batch a mapping worker returns the memory the batch freed (issue 13 item 4: without it a
    worker's RSS crept up to its largest batches'), the batch still mapped."""
    # By thread: a bridge served in this test process by an earlier test's fixture releases memory every
    # MEMORY_RELEASE_S from a thread of its own (bridge/app.py), through the same patched function.
    released: list[int] = []
    monkeypatch.setattr(memory, "release", lambda: released.append(threading.get_ident()) or True)
    mappings = load_mappings(shipped_dir("mappings"))
    monkeypatch.setattr(workers, "_worker_mappings", mappings)
    # The worker's collector hold is a worker process's, for its life: here a fresh one, closed at the end,
    # or the pause it takes would outlive the test in this process.
    hold = gc_control.Hold()
    monkeypatch.setattr(workers, "_worker_pause", hold)
    organizations = [r for r in generate_dataset(60, 3) if r["resourceType"] == "Organization"]
    rows = [
        (f"Organization/{r['id']}", spooled_entity_id(r, mappings), orjson.dumps(r)) for r in organizations
    ]
    now = datetime(2026, 12, 6, tzinfo=UTC)
    try:
        views, _ = workers._map_in_worker(Directory.ORGANIZATION, "Organization", rows, [], now)
    finally:
        hold.close()
    assert views[0], "the batch was mapped"
    assert all(element.startswith(b"<csd:organization ") for _, element in views[0])
    assert released.count(threading.get_ident()) == 1
