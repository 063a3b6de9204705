"""Server-side search snapshots behind HAPI-style `_getpages` next links (simulator/).

HAPI FHIR (the national server, ror-fhir-api.md §2.1) stores each search's ordered result under an opaque id
and pages through it with `?_getpages=<id>&_getpagesoffset=<n>&_count=<n>`; old searches expire and then
answer 410 Gone (engineering-notes §1.2, hapifhir/hapi-fhir#7220). The store is bounded: oldest out first.
"""

from __future__ import annotations

import time
import uuid
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from bridge.simulator.search import IncludeSpec


@dataclass(frozen=True, slots=True)
class Snapshot:
    id: str
    created: float  # store clock, seconds
    resource_type: str
    ids: Sequence[str]  # the matches served (at most max_results), in result order
    total: int  # every match, truncated or not (Bundle.total)
    includes: tuple[IncludeSpec, ...]  # recomputed per page for that page's matches
    count: int  # page size of the search


class SnapshotStore:
    """Snapshots by id, expiring `ttl_s` after creation, at most `max_entries` kept (oldest evicted)."""

    def __init__(self, ttl_s: float, max_entries: int, clock: Callable[[], float] = time.monotonic) -> None:
        if max_entries < 1:
            raise ValueError("max_entries must be >= 1")
        self.ttl_s = ttl_s
        self.max_entries = max_entries
        self.clock = clock  # replaceable, so tests age snapshots without sleeping
        self._entries: OrderedDict[str, Snapshot] = OrderedDict()

    def __len__(self) -> int:
        return len(self._entries)

    def put(
        self,
        resource_type: str,
        ids: Sequence[str],
        includes: tuple[IncludeSpec, ...],
        count: int,
        total: int | None = None,
    ) -> Snapshot:
        self._purge()
        snapshot = Snapshot(
            str(uuid.uuid4()),
            self.clock(),
            resource_type,
            ids,
            len(ids) if total is None else total,
            includes,
            count,
        )
        self._entries[snapshot.id] = snapshot
        while len(self._entries) > self.max_entries:
            self._entries.popitem(last=False)
        return snapshot

    def get(self, snapshot_id: str) -> Snapshot | None:
        """The snapshot, or None when it is unknown, evicted or expired."""
        snapshot = self._entries.get(snapshot_id)
        if snapshot is None:
            return None
        if self._expired(snapshot):
            del self._entries[snapshot_id]
            return None
        return snapshot

    def _expired(self, snapshot: Snapshot) -> bool:
        return self.clock() - snapshot.created > self.ttl_s

    def _purge(self) -> None:
        # Entries are in creation order: drop expired ones from the front.
        while self._entries:
            oldest = next(iter(self._entries.values()))
            if not self._expired(oldest):
                break
            self._entries.popitem(last=False)
