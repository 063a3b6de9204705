"""bridge/gc_control.py: the collector paused around batch work and given back afterwards, however nested."""

from __future__ import annotations

import contextvars
import gc
import threading
from collections.abc import Iterator

import pytest

from bridge import gc_control


@pytest.fixture(autouse=True)
def collector_enabled() -> Iterator[None]:
    was = gc.isenabled()
    gc.enable()
    yield
    if was:
        gc.enable()  # a test that disabled it (or failed paused) leaves the next ones as they were
    else:
        gc.disable()


def test_a_batch_pauses_the_collector_and_gives_it_back() -> None:
    with gc_control.batch():
        assert not gc.isenabled()
        with gc_control.batch():
            assert not gc.isenabled()
        assert not gc.isenabled()  # the outer batch is still running
    assert gc.isenabled()


def test_the_collector_comes_back_after_a_failing_batch() -> None:
    with pytest.raises(RuntimeError), gc_control.batch():
        raise RuntimeError("mapping failed")
    assert gc.isenabled()


def test_a_collector_disabled_before_stays_disabled() -> None:
    gc.disable()
    with gc_control.batch():
        assert not gc.isenabled()
    assert not gc.isenabled()


def test_concurrent_batches_enable_it_once_the_last_ends() -> None:
    inside, release = threading.Event(), threading.Event()

    def other() -> None:
        with gc_control.batch():
            inside.set()
            release.wait(10)

    thread = threading.Thread(target=other)
    thread.start()
    assert inside.wait(10)
    with gc_control.batch():
        pass
    assert not gc.isenabled()  # the other thread's batch is still running
    release.set()
    thread.join(10)
    assert gc.isenabled()


def test_freezing_moves_what_is_alive_out_of_reach() -> None:
    try:
        gc_control.freeze_start_up()
        assert gc.get_freeze_count() > 0
    finally:
        gc.unfreeze()


def test_spans_pause_the_collector_over_steps_and_give_it_back_between() -> None:
    spans = gc_control.Spans(3)
    enabled = []
    for _ in range(8):
        spans.step()
        enabled.append(gc.isenabled())
    # Three paused steps, one with the collector back (it runs between spans), and again.
    assert enabled == [False, False, False, True, False, False, False, True]
    spans.step()
    spans.close()
    assert gc.isenabled()
    spans.close()  # closing twice is harmless
    assert gc.isenabled()
    with pytest.raises(ValueError, match="at least one step"):
        gc_control.Spans(0)


def test_a_page_freed_within_a_span_is_never_walked_by_the_collector() -> None:
    """What the spans are for: objects born and freed while paused never reach the collector."""
    collections: list[int] = []

    def record(phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            collections.append(info["generation"])

    gc.collect()
    gc.callbacks.append(record)
    try:
        spans = gc_control.Spans(16)
        for _ in range(16):
            spans.step()
            page = [{"entry": [{"id": str(n)}]} for n in range(5_000)]  # ~15 000 tracked objects
            del page
        spans.close()
        assert collections == []
        for _ in range(4):
            page = [{"entry": [{"id": str(n)}]} for n in range(5_000)]
            del page
        assert collections, "without the span, the same pages are walked"
    finally:
        gc.callbacks.remove(record)


def recorded_collections() -> tuple[list[int], object]:
    """The generations of the collections from now on, and the callback to remove from `gc.callbacks`."""
    seen: list[int] = []

    def record(phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            seen.append(info["generation"])

    gc.callbacks.append(record)
    return seen, record


def test_overlapping_batches_collect_past_the_young_limit(monkeypatch: pytest.MonkeyPatch) -> None:
    """Batches that overlap without a break (a server under steady load) never leave the collector paused
    for good: one that ends while others run collects once the young objects pass `YOUNG_LIMIT`."""
    monkeypatch.setattr(gc_control, "YOUNG_LIMIT", 5_000)
    gc.collect()
    seen, record = recorded_collections()
    try:
        outer = gc_control.batch()
        elsewhere = contextvars.copy_context()  # another asyncio task's or thread's context
        elsewhere.run(outer.__enter__)  # a long answer still streaming
        try:
            with gc_control.batch():  # a short answer, begun and done meanwhile
                kept = [[] for _ in range(1_000)]  # below the limit: nothing collected
            assert seen == []
            with gc_control.batch():
                for _ in range(6_000):  # garbage cycles only the collector frees
                    cycle: list[object] = []
                    cycle.append(cycle)
            assert gc.get_count()[0] < 5_000
            assert seen, "past the limit, the batch ending collects"
            assert not gc.isenabled()  # the long answer's pause goes on
        finally:
            elsewhere.run(outer.__exit__, None, None, None)
        assert gc.isenabled()
        del kept
    finally:
        gc.callbacks.remove(record)  # type: ignore[arg-type]


def test_a_batch_nested_in_the_same_work_never_collects(monkeypatch: pytest.MonkeyPatch) -> None:
    """A translation's batch inside the batch that parsed its input (the same thread or task) ends without a
    collection past the limit: that one would walk every live object of the outer batch for nothing."""
    monkeypatch.setattr(gc_control, "YOUNG_LIMIT", 5_000)
    gc.collect()
    seen, record = recorded_collections()
    try:
        with gc_control.batch():
            with gc_control.batch():
                kept = [[] for _ in range(20_000)]  # live, past the limit
            assert gc.get_count()[0] > 5_000
            assert seen == []
            assert not gc.isenabled()
        assert gc.isenabled()
        del kept
    finally:
        gc.callbacks.remove(record)  # type: ignore[arg-type]


class _Cycle:
    """A garbage cycle only the collector frees (weak-referenceable, so the test can count them alive)."""

    def __init__(self) -> None:
        self.me = self


def test_a_hold_walks_no_cycle_free_step_and_collects_cycles_past_the_young_limit(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """What the read-back's pause is for (issue 13 item 4): steps that leave survivors but no garbage cycles
    (a cache that turns over) are never walked, however many; garbage cycles still are, once the young
    objects pass YOUNG_LIMIT: what a step leaves stays bounded."""
    import weakref

    monkeypatch.setattr(gc_control, "YOUNG_LIMIT", 20_000)
    gc.collect()
    seen, record = recorded_collections()
    hold = gc_control.Hold()
    try:
        cache: dict[int, list[dict[str, int]]] = {}
        for step in range(200):
            hold.step()
            assert not gc.isenabled()
            cache[step] = [{"n": n} for n in range(1_000)]  # ~1 000 survivors a step...
            cache.pop(step - 5, None)  # ...and as many freed: the young count does not grow
        assert seen == [], "a cycle-free step was walked by the collector"
        alive: weakref.WeakSet[_Cycle] = weakref.WeakSet()
        most = 0
        for _ in range(200):
            hold.step()
            for _ in range(1_000):  # 1 000 garbage cycles a step: 200 000 in all
                alive.add(_Cycle())
            most = max(most, len(alive))
        assert seen, "past the young limit, a step collects"
        assert most < 40_000, f"{most} garbage cycles alive at once: not collected while held"
        assert not gc.isenabled()
    finally:
        hold.close()
        gc.callbacks.remove(record)  # type: ignore[arg-type]
    assert gc.isenabled()
    hold.close()  # closing twice is harmless
    assert gc.isenabled()


def test_a_hold_closed_from_another_thread_gives_the_collector_back() -> None:
    """A writer dropped half-way closes its pause from whichever thread drops it (a generator finalised
    elsewhere): the collector comes back, without an error."""
    hold = gc_control.Hold()
    started = threading.Thread(target=hold.step)
    started.start()
    started.join(10)
    assert not gc.isenabled()
    ended = threading.Thread(target=hold.close)  # another thread: another context
    errors: list[BaseException | None] = []

    def caught(args: threading.ExceptHookArgs) -> None:
        errors.append(args.exc_value)

    threading.excepthook = caught
    try:
        ended.start()
        ended.join(10)
    finally:
        threading.excepthook = threading.__excepthook__
    assert errors == []
    assert gc.isenabled()
