"""Bounded concurrency for the heavy answers (changes since a date), identical requests waiting for a slot
answered by one computation. Pipeline level: a leaf (transaction.py uses it; it imports no other module).

A request joins only a computation that has not started yet: every request it answers arrived before its
first upstream read, so the shared answer is as fresh as each one's own would have been (a change made
before a request arrived is in its answer — an ITI-74 client may use its request's time as the next
`lastModified`). A computation already running is never joined, and nothing is kept once it is answered.
Each waiter gets its own copy of the answer file (the edge reads it and deletes it).
"""

from __future__ import annotations

import asyncio
import logging
import os
import tempfile
from collections.abc import Awaitable, Callable, Hashable
from dataclasses import dataclass, field
from enum import StrEnum
from typing import BinaryIO, Generic, TypeVar

log = logging.getLogger(__name__)

_T = TypeVar("_T")
COPY_CHUNK = 1 << 20


class LogEvent(StrEnum):
    """What the gate logs (house style: events are enum members, never free text)."""

    JOINED = "answer-shared"


def copy_of(source: BinaryIO) -> BinaryIO:
    """An anonymous temporary copy of `source`, read without moving its position (pread)."""
    target = tempfile.TemporaryFile(prefix="ror-bridge-shared-")  # noqa: SIM115 (handed to the caller)
    try:
        descriptor, offset = source.fileno(), 0
        source.flush()
        while chunk := os.pread(descriptor, COPY_CHUNK, offset):
            target.write(chunk)
            offset += len(chunk)
        target.flush()
        target.seek(0)
    except BaseException:
        target.close()
        raise
    return target


@dataclass
class _Shared(Generic[_T]):
    """One computation and the requests waiting for it."""

    holders: int = 0
    files: list[BinaryIO] = field(default_factory=list)
    task: asyncio.Task[_T] | None = None


class SharedGate(Generic[_T]):
    """At most `limit` computations at once; a request identical (`key`) to one still waiting for a slot
    waits for that one. `compute` returns its result and the answer file in it (`file_of`)."""

    def __init__(self, limit: int, file_of: Callable[[_T], BinaryIO]) -> None:
        self._slots = asyncio.Semaphore(limit)
        self._waiting: dict[Hashable, _Shared[_T]] = {}
        self._file_of = file_of
        self.shared = 0  # requests answered by another's computation (tests, logs)

    async def run(
        self, key: Hashable, compute: Callable[[], Awaitable[_T]], replace: Callable[[_T, BinaryIO], _T]
    ) -> _T:
        """The result of `compute` (or of the identical waiting one), with an answer file of its own
        (`replace` puts it in a result)."""
        entry = self._waiting.get(key)
        if entry is None:
            entry = _Shared()
            self._waiting[key] = entry
            entry.task = asyncio.create_task(self._compute(key, entry, compute))
        else:
            self.shared += 1
            log.info("%s %d requests for one answer", LogEvent.JOINED, entry.holders + 1)
        task = entry.task
        assert task is not None
        entry.holders += 1
        try:
            result = await asyncio.shield(task)
            return replace(result, entry.files.pop())
        finally:
            entry.holders -= 1
            if entry.holders == 0:
                if not task.done():
                    task.cancel()  # nobody waits for it any more (clients gone): as without the gate
                for left in entry.files:
                    left.close()
                entry.files.clear()

    async def _compute(self, key: Hashable, entry: _Shared[_T], compute: Callable[[], Awaitable[_T]]) -> _T:
        try:
            async with self._slots:
                # Started: from now on an identical request computes its own (it may have come after a
                # change this computation has already read past).
                self._waiting.pop(key, None)
                result = await compute()
        finally:
            if self._waiting.get(key) is entry:
                self._waiting.pop(key, None)
        answer = self._file_of(result)
        try:
            copies = [await asyncio.to_thread(copy_of, answer) for _ in range(entry.holders - 1)]
        except BaseException:
            answer.close()
            raise
        entry.files = [answer, *copies]
        return result
