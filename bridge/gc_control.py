"""The garbage collector around batch work: paused while an answer is mapped or written, frozen at start.

Leaf module. A mapping batch allocates hundreds of thousands of acyclic objects (parsed JSON, records); the
cyclic collector's full passes over them cost about a third of a translation and free nothing. Reference
counting still frees everything; the collector runs again when the last batch in flight ends.
"""

from __future__ import annotations

import contextlib
import gc
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

_lock = threading.Lock()
_batches = 0  # batches in flight (any thread)
_paused = False  # True when the first of them disabled an enabled collector
# Young objects (the collector's generation-0 count: tracked objects allocated and not yet freed) past which
# a batch that ends while others still run collects anyway: batches that overlap without a break (a server
# under steady load) never leave the collector paused for good, and the garbage cycles of requests already
# answered are collected as they would be without pauses, only less often (a 50-offer offer-search's
# upstream page alone is ~9 100 tracked dicts and lists).
YOUNG_LIMIT = 250_000
# Batches open in the current context (thread, or asyncio task): a batch nested in another of the same work
# (a translation inside the batch that parses its input) ends without collecting, whatever the young count:
# the outer batch pauses the collector on purpose, and that collection would walk all its live objects.
_depth: ContextVar[int] = ContextVar("gc_control_depth", default=0)


@contextmanager
def batch() -> Iterator[None]:
    """No automatic collection while the block runs (nested and concurrent blocks alike); the collector is
    re-enabled when the last block ends, unless it was already disabled before the first."""
    _pause()
    outer = _depth.get()
    token = _depth.set(outer + 1)
    try:
        yield
    finally:
        _depth.reset(token)
        _resume(collect=outer == 0)


def _pause() -> None:
    """One pause more (a batch, a hold): the first disables an enabled collector."""
    global _batches, _paused
    with _lock:
        if _batches == 0:
            _paused = gc.isenabled()
            if _paused:
                gc.disable()
        _batches += 1


def _resume(*, collect: bool) -> None:
    """One pause less: the last re-enables the collector it disabled; another, with `collect`, collects once
    the young objects pass YOUNG_LIMIT."""
    global _batches, _paused
    with _lock:
        _batches -= 1
        if _batches == 0 and _paused:
            _paused = False
            gc.enable()
            return
        due = _paused and collect and gc.get_count()[0] > YOUNG_LIMIT
    # Outside the lock: a collection may finalise a dropped read-back's generator, whose pause ends here too.
    if due:
        _collect_as_the_collector_would()


def _collect_as_the_collector_would() -> None:
    """One collection of the generation the collector itself would pick now (the oldest whose count passed
    its threshold), for a pause that lasts."""
    counts, thresholds = gc.get_count(), gc.get_threshold()
    generation = 0
    for older in (1, 2):
        if counts[older] > thresholds[older]:
            generation = older
    gc.collect(generation)


def freeze_start_up() -> None:
    """Move every object alive after start-up (modules, tables, the application) out of the collector's
    reach, so that each later full collection only walks what requests allocate."""
    gc.collect()
    gc.freeze()


class Spans:
    """The collector paused over spans of `size` steps of a long walk (pages, export files), a `batch` each:
    what a step allocates and frees within a span is never walked (a 2 MB page is ~50 000 objects, one
    collector pass over it costs about a third of its parse); the collector runs between spans, so garbage
    cycles made meanwhile are still collected every `size` steps. `close` ends the span in progress."""

    def __init__(self, size: int) -> None:
        if size < 1:
            raise ValueError("a span holds at least one step")
        self.size = size
        self._steps = 0
        self._batch: contextlib.AbstractContextManager[None] | None = None

    def step(self) -> None:
        """One step more: starts a span, or ends the current one after its `size`-th step."""
        if self._batch is None:
            self._batch = batch()
            self._batch.__enter__()
            self._steps = 0
        self._steps += 1
        if self._steps > self.size:
            self.close()

    def close(self) -> None:
        if self._batch is not None:
            current, self._batch = self._batch, None
            current.__exit__(None, None, None)


class Hold:
    """The collector paused over a whole walk of steps (the read-back's batches), collecting at a step only
    once the young objects pass YOUNG_LIMIT, as a batch ending among others does. For steps that leave no
    garbage cycles but many survivors (a cache that turns over): a collection after each step,
    or after each fixed span of them (`Spans`), walks those survivors for nothing, while the young count (what
    is allocated and not freed) grows only with what is really kept, garbage cycles included, so memory stays
    bounded. The steps may run in any thread, and a `batch` within a step is not nested in the hold (its end
    collects past the limit too). `close` (from any thread, any number of times) gives the collector back for
    good: a step after it does nothing."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._held = False
        self._closed = False

    def step(self) -> None:
        """One step more: starts the pause, or collects if the young objects passed YOUNG_LIMIT."""
        with self._lock:
            if self._closed:
                return
            if not self._held:
                self._held = True
                _pause()
                return
        if gc.get_count()[0] > YOUNG_LIMIT:
            _collect_as_the_collector_would()

    def close(self) -> None:
        with self._lock:
            held, self._held, self._closed = self._held, False, True
        if held:
            _resume(collect=False)
