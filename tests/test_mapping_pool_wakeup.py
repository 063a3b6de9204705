"""A batch awaited from the mapping pool (bridge/pipeline/workers.py `_result`): the pool's manager thread is
woken while the batch is awaited, so that a worker dying unseen fails the answer instead of hanging it; and a
worker found dead while its batch is still awaited fails it too (killed while writing its result, the
manager thread stays blocked reading the rest); and the pool's stop unblocks that thread, which the
interpreter's exit would otherwise wait for forever."""

from __future__ import annotations

import multiprocessing
import os
import signal
import struct
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


def test_a_manager_blocked_on_a_partial_result_ends_with_the_pool(monkeypatch: pytest.MonkeyPatch) -> None:
    """What a worker killed while writing its result leaves in the results pipe: a message's header and part
    of it. The manager thread blocks reading the rest, and concurrent.futures joins it at the interpreter's
    exit (a `make test` run hung there once every worker had ended). MappingPool's stop ends the workers
    and then closes this process's writing end, so the thread reads the pipe's end and stops."""
    monkeypatch.setattr(workers, "STOP_WITHIN_S", 0.5)
    pool = workers.MappingPool(max_workers=2, mp_context=multiprocessing.get_context("spawn"))
    manager = None
    results = pool._result_queue  # type: ignore[attr-defined]
    try:
        assert pool.submit(int, "1").result(timeout=60) == 1  # the workers and the manager thread are up
        manager = pool._executor_manager_thread  # type: ignore[attr-defined]
        assert manager is not None
        # The header announces 1 000 bytes; one follows, as from a writer killed mid-message.
        os.write(results._writer.fileno(), struct.pack("!i", 1000) + b"x")
        time.sleep(0.3)
        assert manager.is_alive(), "the manager thread is blocked reading the rest"
        pool.shutdown(wait=False, cancel_futures=True)
        manager.join(20)
        assert not manager.is_alive(), "the manager thread still blocked after the pool's stop"
    finally:
        if manager is not None and manager.is_alive() and not results._writer.closed:
            os.write(results._writer.fileno(), b"x" * 999)  # the check failed: unblock it for the exit
