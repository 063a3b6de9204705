"""Shadow mode of `serve`: each CSD request answered by one side and sent in the background to the other.

compare/ (side-by-side comparison). Which side answers is a per-function setting of compare.yaml; the
comparison is appended as one JSON line to the shadow log. The client never waits on the shadow side beyond
the budget, never gets another answer than the chosen side's, and a legacy side that is down or slow never
fails its request (the bridge answers instead, and the record says so).
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import Any

import httpx
import orjson

from bridge.compare.rules import CompareRules
from bridge.compare.runs import compare_answers, request_function

log = logging.getLogger("bridge.compare.shadow")
MAX_SHADOW_BYTES = 64 * 1024 * 1024  # larger answers are recorded as too large, never held in memory
UNAVAILABLE_STATUSES = frozenset({502, 503, 504})
FORWARDED_HEADERS = ("content-type", "soapaction")


class ShadowEvent(StrEnum):
    RECORDED = "shadow-recorded"
    LEGACY_UNAVAILABLE = "shadow-legacy-unavailable"
    FAILED = "shadow-failed"


@dataclass(frozen=True, slots=True)
class Answer:
    """One side's answer, whole (shadow mode only handles bounded answers)."""

    status: int
    content: bytes
    media_type: str
    elapsed_ms: float
    problem: str = ""


# The bridge's own answer to a request body: (status, chunks, media type) from the CSD endpoint.
BridgeCall = Callable[[bytes], Awaitable[tuple[int, AsyncIterator[bytes], str]]]


class Shadow:
    def __init__(
        self, rules: CompareRules, legacy_url: str, log_path: Path, budget_ms: float, timeout_s: float = 60.0
    ) -> None:
        self.rules = rules
        self.legacy_url = legacy_url
        self.log_path = log_path
        self.budget_s = budget_ms / 1000.0
        self.client = httpx.AsyncClient(timeout=timeout_s)
        self._lock = threading.Lock()
        self._tasks: set[asyncio.Task[None]] = set()
        # Told of every line written (the bridge's metrics: create_app sets it).
        self.on_record: Callable[[dict[str, Any]], None] | None = None

    async def aclose(self) -> None:
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        await self.client.aclose()

    def url_for(self, region: str | None) -> str:
        return self.legacy_url.replace("{region}", region or "")

    async def ask_legacy(self, body: bytes, headers: dict[str, str], region: str | None) -> Answer:
        started = time.monotonic()
        try:
            response = await self.client.post(self.url_for(region), content=body, headers=headers)
        except Exception as error:  # whatever goes wrong on the legacy side never reaches the client
            return Answer(
                0, b"", "", (time.monotonic() - started) * 1000, f"unreachable ({type(error).__name__})"
            )
        media_type = response.headers.get("content-type", "application/xml")
        problem = f"HTTP {response.status_code}" if response.status_code in UNAVAILABLE_STATUSES else ""
        return Answer(
            response.status_code, response.content, media_type, (time.monotonic() - started) * 1000, problem
        )

    def write(self, record: dict[str, Any]) -> None:
        line = orjson.dumps(record) + b"\n"
        with self._lock, self.log_path.open("ab") as out:
            out.write(line)
        if self.on_record is not None:
            self.on_record(record)

    def record(
        self, body: bytes, region: str | None, answered_by: str, legacy: Answer, bridge: Answer | None
    ) -> None:
        """Compare both sides (in a worker thread) and append the JSON line."""
        function = request_function(body, self.rules)
        entry: dict[str, Any] = {
            "time": datetime.now(UTC).isoformat(timespec="milliseconds"),
            "function": function,
            "region": region or "",
            "answered_by": answered_by,
            "legacy_status": str(legacy.status) if legacy.status else legacy.problem,
            "bridge_status": str(bridge.status) if bridge else "",
            "legacy_ms": round(legacy.elapsed_ms, 1),
            "bridge_ms": round(bridge.elapsed_ms, 1) if bridge else None,
        }
        problem = ""
        if legacy.problem:
            problem = f"legacy: {legacy.problem}"
        elif bridge is None:
            problem = "bridge: no answer"
        elif len(legacy.content) > MAX_SHADOW_BYTES or len(bridge.content) > MAX_SHADOW_BYTES:
            problem = "answer larger than the shadow limit: not compared"
        if problem or bridge is None:
            entry.update(problem=problem, entities=None, outcomes=[], differences=[])
            event = ShadowEvent.LEGACY_UNAVAILABLE if legacy.problem else ShadowEvent.FAILED
            log.warning("%s function=%s", event, function)
        else:
            compared = compare_answers(
                self.rules, legacy.content, bridge.content, function=function, region=region or ""
            )
            entry.update(compared, problem="")
            log.info(
                "%s function=%s parity=%s", ShadowEvent.RECORDED, function, compared["entities"]["parity"]
            )
        self.write(entry)

    def _spawn(self, work: Callable[[], Awaitable[None]]) -> None:
        async def run() -> None:
            try:
                await work()
            except Exception as error:  # the shadow side never reaches the client
                log.warning("%s %s", ShadowEvent.FAILED, type(error).__name__)

        task = asyncio.get_running_loop().create_task(run())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def handle(
        self, body: bytes, headers: dict[str, str], region: str | None, bridge_call: BridgeCall
    ) -> tuple[int, AsyncIterator[bytes], str]:
        """The answer the client gets (status, chunks, media type); the other side runs in the background."""
        function = request_function(body, self.rules)
        forwarded = {k: v for k, v in headers.items() if k.lower() in FORWARDED_HEADERS}
        pending: asyncio.Future[Answer] | None = None
        answered_by = "bridge"
        if self.rules.answered_by(function) == "legacy":
            pending = asyncio.ensure_future(self.ask_legacy(body, forwarded, region))
            done, _ = await asyncio.wait({pending}, timeout=self.budget_s)
            if done and not pending.result().problem:
                legacy = pending.result()

                async def shadow_bridge() -> None:
                    started = time.monotonic()
                    status, chunks, media_type = await bridge_call(body)
                    content = b"".join([chunk async for chunk in chunks])
                    bridge = Answer(status, content, media_type, (time.monotonic() - started) * 1000)
                    await asyncio.to_thread(self.record, body, region, "legacy", legacy, bridge)

                self._spawn(shadow_bridge)
                return legacy.status, _once(legacy.content), legacy.media_type
            # Down, or slower than the budget: the bridge answers; a slow legacy answer is still compared.
            answered_by = "bridge (legacy unavailable)" if done else "bridge (legacy over budget)"
        started = time.monotonic()
        status, chunks, media_type = await bridge_call(body)
        kept: list[bytes] = []
        size = [0]

        async def tee() -> AsyncIterator[bytes]:
            complete = False
            try:
                async for chunk in chunks:
                    size[0] += len(chunk)
                    if size[0] <= MAX_SHADOW_BYTES:
                        kept.append(chunk)
                    yield chunk
                complete = True
            finally:
                if complete:
                    content = b"".join(kept) if size[0] <= MAX_SHADOW_BYTES else b""
                    bridge = Answer(status, content, media_type, (time.monotonic() - started) * 1000)
                    self._spawn(
                        lambda: self._after_bridge(body, forwarded, region, answered_by, bridge, size[0])
                    )

        return status, tee(), media_type

    async def _after_bridge(
        self,
        body: bytes,
        headers: dict[str, str],
        region: str | None,
        answered_by: str,
        bridge: Answer,
        size: int,
    ) -> None:
        legacy = await self.ask_legacy(body, headers, region)
        if size > MAX_SHADOW_BYTES:
            legacy = Answer(legacy.status, b"", legacy.media_type, legacy.elapsed_ms, legacy.problem)
            self.write(
                {
                    "time": datetime.now(UTC).isoformat(timespec="milliseconds"),
                    "function": request_function(body, self.rules),
                    "region": region or "",
                    "answered_by": answered_by,
                    "legacy_status": str(legacy.status),
                    "bridge_status": str(bridge.status),
                    "problem": "answer larger than the shadow limit: not compared",
                    "entities": None,
                    "outcomes": [],
                    "differences": [],
                }
            )
            return
        await asyncio.to_thread(self.record, body, region, answered_by, legacy, bridge)


async def _once(content: bytes) -> AsyncIterator[bytes]:
    yield content
