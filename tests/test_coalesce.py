"""pipeline/coalesce.py: at most `limit` heavy computations at once; identical requests waiting for a slot
share one, never one already running; each waiter gets its own answer file; failures and cancellations."""

from __future__ import annotations

import asyncio
import tempfile
from collections.abc import Awaitable, Callable, Hashable
from dataclasses import dataclass
from typing import BinaryIO

import pytest

from bridge.pipeline.coalesce import SharedGate, copy_of


@dataclass(frozen=True)
class Answer:
    """One file per variant asked (the variants each computation was asked for are remembered)."""

    files: dict[Hashable, BinaryIO]
    key: str


def gate(limit: int) -> SharedGate[Answer]:
    return SharedGate(limit, lambda answer: answer.files)


class Computations:
    """Computations that write their key to a temporary file once released; counted per key."""

    def __init__(self) -> None:
        self.started: dict[str, int] = {}
        self.variants: dict[str, list[frozenset[Hashable]]] = {}
        self.release = asyncio.Event()

    def of(self, key: str, *, fail: bool = False) -> Callable[[frozenset[Hashable]], Awaitable[Answer]]:
        async def compute(variants: frozenset[Hashable]) -> Answer:
            self.started[key] = self.started.get(key, 0) + 1
            self.variants.setdefault(key, []).append(variants)
            await self.release.wait()
            if fail:
                raise RuntimeError(f"upstream failed for {key}")
            files: dict[Hashable, BinaryIO] = {}
            for variant in variants:
                files[variant] = tempfile.TemporaryFile()  # noqa: SIM115 (the waiter closes it)
                files[variant].write(f"{key}{variant}".encode() * 1000)
            return Answer(files, key)

        return compute


def read(answered: tuple[Answer, BinaryIO]) -> bytes:
    _, file = answered
    file.seek(0)
    content = file.read()
    file.close()
    return content


def test_identical_requests_waiting_for_a_slot_share_one_computation() -> None:
    async def scenario() -> None:
        shared = gate(1)
        runs = Computations()
        first = asyncio.create_task(shared.run("a", 1, runs.of("a")))
        await asyncio.sleep(0.01)  # "a" holds the only slot
        waiting = [asyncio.create_task(shared.run("b", 1, runs.of("b"))) for _ in range(3)]
        await asyncio.sleep(0.01)
        runs.release.set()
        answers = await asyncio.gather(first, *waiting)
        assert runs.started == {"a": 1, "b": 1}
        assert shared.shared == 2
        files = {id(file) for _, file in answers}
        assert len(files) == 4, "each waiter has its own answer file"
        assert [read(answer) for answer in answers[1:]] == [b"b1" * 1000] * 3
        assert read(answers[0]) == b"a1" * 1000

    asyncio.run(scenario())


def test_a_running_computation_is_never_joined() -> None:
    """A request arriving once a computation has started reads the upstream itself (it may come after a
    change the running one has already read past)."""

    async def scenario() -> None:
        shared = gate(2)
        runs = Computations()
        first = asyncio.create_task(shared.run("a", 1, runs.of("a")))
        await asyncio.sleep(0.01)
        assert runs.started == {"a": 1}
        second = asyncio.create_task(shared.run("a", 1, runs.of("a")))
        await asyncio.sleep(0.01)
        runs.release.set()
        answers = await asyncio.gather(first, second)
        assert runs.started == {"a": 2}
        assert shared.shared == 0
        assert [read(answer) for answer in answers] == [b"a1" * 1000] * 2

    asyncio.run(scenario())


def test_at_most_limit_computations_run_at_once() -> None:
    async def scenario() -> None:
        shared = gate(2)
        runs = Computations()
        tasks = [asyncio.create_task(shared.run(key, 1, runs.of(key))) for key in "abcd"]
        await asyncio.sleep(0.02)
        assert runs.started == {"a": 1, "b": 1}
        runs.release.set()
        answers = await asyncio.gather(*tasks)
        assert runs.started == dict.fromkeys("abcd", 1)
        assert [read(answer) for answer in answers] == [f"{key}1".encode() * 1000 for key in "abcd"]

    asyncio.run(scenario())


def test_a_failure_reaches_every_waiter() -> None:
    async def scenario() -> None:
        shared = gate(1)
        runs = Computations()
        first = asyncio.create_task(shared.run("a", 1, runs.of("a")))
        await asyncio.sleep(0.01)
        failing = [asyncio.create_task(shared.run("b", 1, runs.of("b", fail=True))) for _ in range(2)]
        runs.release.set()
        read(await first)
        for task in failing:
            with pytest.raises(RuntimeError, match="upstream failed for b"):
                await task
        assert runs.started == {"a": 1, "b": 1}

    asyncio.run(scenario())


def test_a_waiter_gone_leaves_the_others_their_answer_and_all_gone_cancels_it() -> None:
    async def scenario() -> None:
        shared = gate(1)
        runs = Computations()
        blocker = asyncio.create_task(shared.run("a", 1, runs.of("a")))
        await asyncio.sleep(0.01)
        leaving, staying = (asyncio.create_task(shared.run("b", 1, runs.of("b"))) for _ in range(2))
        await asyncio.sleep(0.01)
        leaving.cancel()
        runs.release.set()
        assert read(await staying) == b"b1" * 1000
        assert leaving.cancelled()
        read(await blocker)
        # Every waiter of a computation gone: the computation is cancelled, as a lone request's would be.
        runs.release.clear()
        alone = asyncio.create_task(shared.run("c", 1, runs.of("c")))
        await asyncio.sleep(0.01)
        alone.cancel()
        await asyncio.sleep(0.01)
        assert alone.cancelled()
        assert runs.started["c"] == 1

    asyncio.run(scenario())


def test_copy_of_leaves_the_source_position_alone() -> None:
    with tempfile.TemporaryFile() as source:
        source.write(b"0123456789" * 300_000)
        source.seek(7)
        with copy_of(source) as copy:
            assert copy.read() == b"0123456789" * 300_000
        assert source.tell() == 7


def test_waiters_of_other_variants_share_the_computation_each_with_its_variant() -> None:
    """Two access profiles reading the same upstream: one computation, asked for both, each waiter gets its
    own profile's answer."""

    async def scenario() -> None:
        shared = gate(1)
        runs = Computations()
        blocker = asyncio.create_task(shared.run("a", 1, runs.of("a")))
        await asyncio.sleep(0.01)
        waiting = [asyncio.create_task(shared.run("b", variant, runs.of("b"))) for variant in (0, 1, 1, 3)]
        await asyncio.sleep(0.01)
        runs.release.set()
        read(await blocker)
        assert [read(await task) for task in waiting] == [
            b"b0" * 1000,
            b"b1" * 1000,
            b"b1" * 1000,
            b"b3" * 1000,
        ]
        assert runs.started == {"a": 1, "b": 1}
        assert runs.variants["b"] == [frozenset({0, 1, 3})]

    asyncio.run(scenario())
