"""The disk cache of completed extractions: a whole document served again for a while, never a part of one.

Pipeline level (`bridge/pipeline/`): GET /extraction (bridge/http/extraction_routes.py) looks documents up
here and writes each new one through `cached_stream`.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import tempfile
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import Any

from bridge.pipeline.extraction import ExtractionRequest

log = logging.getLogger(__name__)

# A cache temporary file untouched this long belongs to no running extraction (a killed process left it).
ORPHAN_PART_S = 24 * 3600.0


class LogEvent(StrEnum):
    """What the cache logs (house style: events are enum members, never free text)."""

    CACHE_STORED = "extraction-cache-stored"
    CACHE_FAILED = "extraction-cache-failed"


@dataclass(frozen=True, slots=True)
class CachedExtraction:
    path: Path
    date: datetime  # when the upstream data was read (start of the extraction that produced it)
    size: int


class ExtractionCache:
    """Completed documents by request key, served again for `max_age_s` seconds.

    A document is written to a temporary name while it streams and renamed into place only once complete, so
    a failed or abandoned extraction never lands in the cache. Its modification time is set to the start of
    the extraction: the date of the data it holds. `scope` (the upstream and the mappings directory) is part
    of every key, so bridges sharing a directory never serve each other's documents.
    """

    def __init__(self, directory: Path, max_age_s: float, *, scope: str = "") -> None:
        self.directory = directory
        self.max_age_s = max_age_s
        self.scope = scope

    @property
    def enabled(self) -> bool:
        return self.max_age_s > 0

    def _name(self, request: ExtractionRequest) -> str:
        digest = hashlib.sha256(f"{self.scope}\n{request.key}".encode()).hexdigest()[:24]
        return f"extraction-{request.region or 'national'}-{digest}"

    def _path(self, request: ExtractionRequest) -> Path:
        return self.directory / f"{self._name(request)}.xml"

    def lookup(self, request: ExtractionRequest) -> CachedExtraction | None:
        if not self.enabled:
            return None
        path = self._path(request)
        try:
            stat = path.stat()
        except OSError:  # not cached yet, or an unusable cache directory (served uncached)
            return None
        if time.time() - stat.st_mtime > self.max_age_s:
            return None
        return CachedExtraction(path, datetime.fromtimestamp(stat.st_mtime, UTC), stat.st_size)

    def open(self, request: ExtractionRequest, date: datetime) -> CacheEntry | None:
        """A cache file being written for `request`, data read at `date`; None when the cache is off."""
        if not self.enabled:
            return None
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
            self._purge()
            descriptor, name = tempfile.mkstemp(
                prefix=f".{self._name(request)}.", suffix=".part", dir=self.directory
            )
        except OSError as error:  # the cache never fails an extraction: it is served uncached
            log.warning("%s %s", LogEvent.CACHE_FAILED, error)
            return None
        return CacheEntry(os.fdopen(descriptor, "wb"), Path(name), self._path(request), date)

    def _purge(self) -> None:
        """Drop documents past their age (a stale one is never served; this only frees the disk), and the
        temporary files a killed process left behind (untouched for a day: a running extraction writes its
        own at every chunk)."""
        now = time.time()
        for pattern, age in (("extraction-*.xml", self.max_age_s), (".extraction-*.part", ORPHAN_PART_S)):
            for path in self.directory.glob(pattern):
                with contextlib.suppress(FileNotFoundError):
                    if path.stat().st_mtime < now - age:
                        path.unlink()


@dataclass
class CacheEntry:
    """One document on its way into the cache."""

    file: Any  # BinaryIO
    temporary: Path
    final: Path
    date: datetime

    def write(self, chunk: bytes) -> None:
        self.file.write(chunk)

    def commit(self) -> None:
        """The whole document was produced: make it the cached one."""
        self.file.close()
        stamp = self.date.timestamp()
        os.utime(self.temporary, (stamp, stamp))
        self.temporary.replace(self.final)
        log.info("%s %s", LogEvent.CACHE_STORED, self.final.name)

    def discard(self) -> None:
        with contextlib.suppress(OSError):
            self.file.close()
        with contextlib.suppress(FileNotFoundError):
            self.temporary.unlink()


async def cached_stream(chunks: AsyncIterator[bytes], entry: CacheEntry | None) -> AsyncIterator[bytes]:
    """`chunks`, also written to `entry`: committed when the document is complete, discarded otherwise.

    The cache never fails a transfer: a disk error while caching is logged and the document still streams.
    """
    complete = False
    try:
        async for chunk in chunks:
            if entry is not None:
                try:
                    entry.write(chunk)
                except OSError as error:
                    log.warning("%s %s", LogEvent.CACHE_FAILED, error)
                    entry.discard()
                    entry = None
            yield chunk
        complete = True
    finally:
        if entry is not None:
            try:
                if complete:
                    entry.commit()
                else:
                    entry.discard()
            except OSError as error:
                log.warning("%s %s", LogEvent.CACHE_FAILED, error)
                entry.discard()
