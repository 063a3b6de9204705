"""A batch awaited from the mapping pool (bridge/pipeline/workers.py `_result`): the pool's manager thread is
woken while the batch is awaited, so that a worker dying unseen fails the answer instead of hanging it; and a
worker found dead while its batch is still awaited fails it too (killed while writing its result, the
manager thread stays blocked reading the rest)."""

from __future__ import annotations

import os
import signal
import threading
import time
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import Any

import pytest

from bridge.pipeline import workers


class _Wakeup:
    """Stands for the pool's manager-thread wake-up: woken, the thread finds the dead worker and fails the
    pool's futures, as CPython's `_ExecutorManagerThread` does."""

    def __init__(self, future: Future[Any]) -> None:
        self.future = future
        self.calls = 0

    def wakeup(self) -> None:
        self.calls += 1
        if self.calls == 2 and not self.future.done():
            self.future.set_exception(BrokenProcessPool("a worker died"))


class _Pool:
    def __init__(self, future: Future[Any]) -> None:
        self._executor_manager_thread_wakeup = _Wakeup(future)


def test_a_batch_whose_worker_died_unseen_fails_once_the_manager_is_woken(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(workers, "WAKE_POOL_S", 0.05)
    future: Future[Any] = Future()  # the batch a dead worker took: no result will ever come
    pool = _Pool(future)
    with pytest.raises(BrokenProcessPool):
        workers._result(future, pool)  # type: ignore[arg-type]
    assert pool._executor_manager_thread_wakeup.calls == 2


def test_a_batch_that_comes_is_returned_without_waking_the_pool(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(workers, "WAKE_POOL_S", 0.05)
    future: Future[Any] = Future()
    pool = _Pool(future)
    threading.Timer(0.01, future.set_result, args=(("views", "findings"),)).start()
    assert workers._result(future, pool) == ("views", "findings")  # type: ignore[arg-type]
    done: Future[Any] = Future()
    done.set_result(1)
    assert workers._result(done, None) == 1  # the pool's result only: mapped in process, no pool


def test_the_standard_pool_has_the_wake_up_the_guard_uses() -> None:
    """The guard reaches a private part of CPython's pool: if it is renamed, this fails (not the guard)."""
    with ProcessPoolExecutor(max_workers=1) as pool:
        assert pool.submit(int, "7").result(timeout=60) == 7
        assert callable(pool._executor_manager_thread_wakeup.wakeup)  # type: ignore[attr-defined]


def test_a_worker_found_dead_fails_the_batch_even_if_the_manager_never_does(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A real pool, one worker killed; the batch stands for one the manager thread never settles (blocked
    reading the result a worker was killed while writing): the batch fails within a few wake-ups."""
    monkeypatch.setattr(workers, "WAKE_POOL_S", 0.2)
    pool = ProcessPoolExecutor(max_workers=2)
    try:
        pool.submit(int, "1").result(timeout=60)  # the workers are up
        processes = list(pool._processes.values())  # type: ignore[attr-defined]
        victim = processes[0]
        # Stand for the manager thread blocked on a partial message: it never sets the batch's outcome.
        batch: Future[Any] = Future()
        os.kill(victim.pid or 0, signal.SIGKILL)
        victim.join(10)
        began = time.monotonic()
        with pytest.raises(BrokenProcessPool, match="exit code -9"):
            workers._result(batch, pool)
        assert time.monotonic() - began < 5 * workers.WAKE_POOL_S
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
