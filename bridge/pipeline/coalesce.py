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
from collections.abc import Awaitable, Callable, Hashable, Mapping
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
    """One computation and the requests waiting for it, by the variant of the answer each wants."""

    holders: dict[Hashable, int] = field(default_factory=dict)
    files: dict[Hashable, list[BinaryIO]] = field(default_factory=dict)
    task: asyncio.Task[_T] | None = None

    def waiting(self) -> int:
        return sum(self.holders.values())

    def close(self) -> None:
        for files in self.files.values():
            for file in files:
                file.close()
        self.files.clear()


class SharedGate(Generic[_T]):
    """At most `limit` computations at once; a request identical (`key`) to one still waiting for a slot
    waits for that one. A computation writes one answer file per `variant` its waiters want (e.g. a client's
    access profile filtering the same upstream data): `compute(variants)` returns its result, whose files
    `files_of` gives by variant."""

    def __init__(self, limit: int, files_of: Callable[[_T], Mapping[Hashable, BinaryIO]]) -> None:
        self._slots = asyncio.Semaphore(limit)
        self._waiting: dict[Hashable, _Shared[_T]] = {}
        self._files_of = files_of
        self.shared = 0  # requests answered by another's computation (tests, logs)

    async def run(
        self,
        key: Hashable,
        variant: Hashable,
        compute: Callable[[frozenset[Hashable]], Awaitable[_T]],
    ) -> tuple[_T, BinaryIO]:
        """The result of `compute` (or of the identical waiting one) and an answer file of `variant` of its
        own (the caller closes it)."""
        entry = self._waiting.get(key)
        if entry is None:
            entry = _Shared()
            self._waiting[key] = entry
            entry.task = asyncio.create_task(self._compute(key, entry, compute))
        else:
            self.shared += 1
            log.info("%s %d requests for one computation", LogEvent.JOINED, entry.waiting() + 1)
        task = entry.task
        assert task is not None
        entry.holders[variant] = entry.holders.get(variant, 0) + 1
        try:
            result = await asyncio.shield(task)
            return result, entry.files[variant].pop()
        finally:
            entry.holders[variant] -= 1
            if entry.waiting() == 0:
                if not task.done():
                    task.cancel()  # nobody waits for it any more (clients gone): as without the gate
                entry.close()

    async def _compute(
        self, key: Hashable, entry: _Shared[_T], compute: Callable[[frozenset[Hashable]], Awaitable[_T]]
    ) -> _T:
        try:
            async with self._slots:
                # Started: from now on an identical request computes its own (it may have come after a
                # change this computation has already read past).
                self._waiting.pop(key, None)
                wanted = frozenset(variant for variant, count in entry.holders.items() if count > 0)
                result = await compute(wanted)
        finally:
            if self._waiting.get(key) is entry:
                self._waiting.pop(key, None)
        answers = self._files_of(result)
        try:
            for variant, answer in answers.items():
                entry.files[variant] = [answer]
                for _ in range(entry.holders.get(variant, 0) - 1):
                    entry.files[variant].append(await asyncio.to_thread(copy_of, answer))
        except BaseException:
            for answer in answers.values():
                answer.close()
            entry.close()
            raise
        return result
