"""The garbage collector around batch work: paused while an answer is mapped or written, frozen at start.

Leaf module. A mapping batch allocates hundreds of thousands of acyclic objects (parsed JSON, records); the
cyclic collector's full passes over them cost about a third of a translation and free nothing. Reference
counting still frees everything; the collector runs again when the last batch in flight ends.
"""

from __future__ import annotations

import gc
import threading
from collections.abc import Iterator
from contextlib import contextmanager

_lock = threading.Lock()
_batches = 0  # batches in flight (any thread)
_paused = False  # True when the first of them disabled an enabled collector


@contextmanager
def batch() -> Iterator[None]:
    """No automatic collection while the block runs (nested and concurrent blocks alike); the collector is
    re-enabled when the last block ends, unless it was already disabled before the first."""
    global _batches, _paused
    with _lock:
        if _batches == 0:
            _paused = gc.isenabled()
            if _paused:
                gc.disable()
        _batches += 1
    try:
        yield
    finally:
        with _lock:
            _batches -= 1
            if _batches == 0 and _paused:
                _paused = False
                gc.enable()


def freeze_start_up() -> None:
    """Move every object alive after start-up (modules, tables, the application) out of the collector's
    reach, so that each later full collection only walks what requests allocate."""
    gc.collect()
    gc.freeze()
