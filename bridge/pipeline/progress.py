"""The counters of one answer written from a spool (an extraction, changes since a date), updated as it runs.

Pipeline level (`bridge/pipeline/`): shared by the extraction, the changes since a date and the mapping
workers that write their directories; also the one way the pipeline stops an upstream walk early.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from bridge.model import Directory

# The directories of a CSD document, in the document's order.
DIRECTORIES = (
    Directory.ORGANIZATION,
    Directory.SERVICE,
    Directory.FACILITY,
    Directory.PROVIDER,
    Directory.DEVICE,
)


class Source(StrEnum):
    """Where the offer comes from: `$export` (bulk, a snapshot), paged searches, or `auto` (export when the
    upstream CapabilityStatement announces the operation, else searches)."""

    AUTO = "auto"
    EXPORT = "export"
    SEARCH = "search"


@dataclass(slots=True)
class Progress:
    """Counters of one extraction, updated as it runs (the CLI's progress line and summary, logs)."""

    request: str = ""
    source: Source | None = None
    phase: str = "starting"  # starting, fetching, writing, done
    pages: int = 0  # search pages, or `$export` files
    received: int = 0  # resources the client handed out, repeats included (byte-identical includes are not)
    spooled: int = 0  # distinct resources kept
    written: dict[Directory, int] = field(default_factory=lambda: dict.fromkeys(DIRECTORIES, 0))
    expected: dict[Directory, int] = field(default_factory=lambda: dict.fromkeys(DIRECTORIES, 0))
    bytes: int = 0
    started: float = field(default_factory=time.monotonic)

    @property
    def elapsed_s(self) -> float:
        return time.monotonic() - self.started


ProgressCallback = Callable[[Progress], None]


async def stop_walk(iterator: AsyncIterator[Any]) -> None:
    """Stop an async generator now (its clean-up runs: an upstream walk, an `$export` job), not when it is
    collected."""
    close = getattr(iterator, "aclose", None)
    if close is not None:
        await close()
