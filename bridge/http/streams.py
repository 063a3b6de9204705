"""Answers that stream: told when they end (complete or cut), and cut cleanly when they fail midway.

Part of the HTTP surface (`bridge/http/`), used by the CSD and the extraction routes.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncGenerator, AsyncIterator, Callable
from enum import StrEnum

# The HTTP surface logs as `bridge` (the logger name operators' queries use).
log = logging.getLogger("bridge")


class LogEvent(StrEnum):
    """What a streamed answer logs (house style: events are enum members, never free text)."""

    EXTRACTION_ABORTED = "extraction-aborted"


async def observed(chunks: AsyncIterator[bytes], done: Callable[[str], None]) -> AsyncGenerator[bytes, None]:
    """`chunks`, calling `done("ok")` after the last one, `done("aborted")` when cut (error or shutdown)."""
    outcome = "aborted"
    try:
        async for chunk in chunks:
            yield chunk
        outcome = "ok"
    finally:
        done(outcome)


async def aborting(first: bytes, chunks: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
    """The document after its first chunk; a failure is logged and raised, so the server drops the
    connection without the chunked terminator and the client sees a truncated transfer, never a whole one."""
    yield first
    try:
        async for chunk in chunks:
            yield chunk
    except Exception as error:
        log.error(
            "%s %s: %s", LogEvent.EXTRACTION_ABORTED, type(error).__name__, getattr(error, "reason", error)
        )
        raise
