"""The read-back's cyclic collector (issue 13 item 4): paused over the whole walk of batches, in process and
in a mapping worker (gc_control.Hold), not given back after each batch to walk what the batch leaves alive.

A batch leaves no garbage cycles, only survivors (what a cache kept across batches holds): the collector,
given back after each batch, walked them for nothing, ~15 % of an in-process read-back when the parsed
context was kept across batches. The spool is filled with the simulator's dataset and read back by the
extraction's SpoolWriter; the document is compared with the one written with the collector given back after
every batch.
"""

from __future__ import annotations

import gc
import hashlib
import threading
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime
from itertools import islice
from typing import Any

import pytest

from bridge import gc_control
from bridge.model import Directory
from bridge.pipeline import workers
from bridge.pipeline.progress import Progress
from bridge.pipeline.spool import Spool
from bridge.pipeline.workers import SpoolWriter
from bridge.simulator.dataset import generate_dataset
from tests.test_extraction import MAPPINGS, filled_spool
from tests.test_gc_control import recorded_collections

SCALE = 300
SEED = 5
NOW = datetime(2026, 1, 1, tzinfo=UTC)


@pytest.fixture(autouse=True)
def collector_enabled() -> Iterator[None]:
    """The collector runs during each test (what they check), and is left as it was."""
    was = gc.isenabled()
    gc.enable()
    yield
    if not was:
        gc.disable()


@pytest.fixture(scope="module")
def spool() -> Iterator[Spool]:
    with filled_spool(generate_dataset(SCALE, SEED)) as filled:
        yield filled


def _read_back(spool: Spool) -> tuple[str, int]:
    """The document's digest, and how many batches the read-back mapped."""
    batches = 0
    context_keys = spool.context_keys

    def counted(keys: Sequence[str], *, offers_at: bool, below: bool = False) -> list[str]:
        nonlocal batches
        batches += 1
        return context_keys(keys, offers_at=offers_at, below=below)

    spool.context_keys = counted  # type: ignore[method-assign]  # an instance attribute, removed below
    try:
        writer = SpoolWriter(spool, MAPPINGS, NOW, Progress())
        digest = hashlib.sha256()
        while (chunk := writer.next_chunk()) is not None:
            digest.update(chunk)
    finally:
        del spool.context_keys
    return digest.hexdigest(), batches


def test_the_read_back_walks_no_batch_and_writes_the_same_document(
    spool: Spool, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(workers, "BATCH_SIZE", 20)  # many batches
    # Each batch leaves survivors, as any cache kept across batches does (the writer's leaves; a parsed
    # context cache did until 2026-12-07): 1 000 objects a batch, more than the collector's first threshold.
    kept: list[list[dict[str, int]]] = []
    mapped = workers.map_batch_views

    def keeping(*args: Any, **kwargs: Any) -> list[list[tuple[str, bytes]]]:
        kept.append([{"n": n} for n in range(1_000)])
        return mapped(*args, **kwargs)

    monkeypatch.setattr(workers, "map_batch_views", keeping)
    gc.collect()
    seen, record = recorded_collections()
    try:
        digest, batches = _read_back(spool)
    finally:
        gc.callbacks.remove(record)  # type: ignore[arg-type]
    assert gc.isenabled(), "the collector is given back at the document's end"
    assert batches > 50, "many batches: the count below proves something"
    # Only what passes gc_control.YOUNG_LIMIT is collected: a handful for the whole read-back.
    assert len(seen) <= batches // 10, f"{len(seen)} collections for {batches} batches"

    # The same read-back with the collector given back after every batch (as before): the same bytes, and
    # the collector walking the survivors about once a batch.
    class PerBatch:
        def __init__(self) -> None:
            self.step, self.close = (lambda: None), (lambda: None)

    monkeypatch.setattr(gc_control, "Hold", PerBatch)
    seen, record = recorded_collections()
    try:
        per_batch, _ = _read_back(spool)
    finally:
        gc.callbacks.remove(record)  # type: ignore[arg-type]
    assert per_batch == digest
    assert len(seen) > batches // 3, "without the pause, the collector runs after (about) every batch"


def test_a_writer_dropped_half_way_gives_the_collector_back_with_its_spool() -> None:
    """A client gone half-way: the extraction closes its spool (pipeline/extraction.py), from whichever
    thread; the writer's generator, in a cycle with the writer, is not freed before a collection."""
    spool = Spool(MAPPINGS)
    spool.add(list(generate_dataset(40, SEED)))
    spool.finish()
    writer = SpoolWriter(spool, MAPPINGS, NOW, Progress())
    for _ in range(3):  # into the first directory's batches
        assert writer.next_chunk() is not None
    assert not gc.isenabled(), "paused between batches"
    del writer
    closing = threading.Thread(target=spool.close)
    closing.start()
    closing.join(10)
    assert gc.isenabled()


def test_a_mapping_worker_keeps_its_collector_paused_between_batches(
    spool: Spool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`_map_in_worker` as a worker process runs it, batch after batch, in this process: no collection."""
    hold = gc_control.Hold()
    monkeypatch.setattr(workers, "_worker_mappings", MAPPINGS)
    monkeypatch.setattr(workers, "_worker_pause", hold)
    with spool.lock:
        rows = list(islice(spool.rows("HealthcareService", Directory.SERVICE), 100))
        needed = spool.context_keys([key for key, _, _ in rows], offers_at=False)
        context = [body for _, body in spool.stored(needed)]
    assert rows
    assert context
    gc.collect()
    seen, record = recorded_collections()
    try:
        for _ in range(30):
            views, _ = workers._map_in_worker(Directory.SERVICE, "HealthcareService", rows, context, NOW)
            assert len(views[0]) == len(rows)
            assert not gc.isenabled(), "the worker's collector stays paused between batches"
        assert seen == []
    finally:
        gc.callbacks.remove(record)  # type: ignore[arg-type]
        hold.close()
    assert gc.isenabled()


def test_a_writer_dropped_with_its_spool_open_is_given_back_by_a_collection(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A writer dropped and its spool not closed yet: the generator, in a cycle with the writer, is freed by
    the next collection, here one that another thread's batch runs as it ends past the young limit; the
    generator's end gives the pause back from inside that collection (no deadlock on gc_control's lock)."""
    monkeypatch.setattr(gc_control, "YOUNG_LIMIT", 5_000)
    monkeypatch.setattr(gc_control, "_collect_as_the_collector_would", gc.collect)  # whatever the generation
    with filled_spool(generate_dataset(40, SEED)) as spool:
        writer = SpoolWriter(spool, MAPPINGS, NOW, Progress())
        for _ in range(3):
            assert writer.next_chunk() is not None
        del writer
        assert not gc.isenabled(), "held: only a collection frees the dropped writer"

        def other() -> None:
            with gc_control.batch():  # another thread's answer, past the young limit
                kept: list[list[object]] = [[] for _ in range(10_000)]
            del kept

        thread = threading.Thread(target=other)
        thread.start()
        thread.join(10)
        assert not thread.is_alive(), "deadlocked"
        assert gc.isenabled()
