"""Changes since a date at flat memory (ITI-74 getModificationsRequest, establishments-updated-since): any
number of them, never in part.

Pipeline level, like pipeline.py and extraction.py (which it reuses): the pages of the delta searches go to a
disk spool (extraction.Spool: each resource once) with a `changed` mark set by the propagation rules of
translate/delta.py; then the answer's entities (ITI-74: the changed ones; establishments-updated-since: the EJ
and EG on the organisation chains of the changes) are mapped a batch at a time, per directory, with what they
reference read back from the spool (extraction.SpoolWriter), and their elements written to a temporary file.
Only once that file is complete does the edge send anything (CsdResponse.directories): an upstream failure at
any point before is still a clean SOAP fault. Memory is the spool's page cache plus one batch; disk is about
the size of what the searches returned plus the answer.
"""

from __future__ import annotations

import contextlib
import logging
import tempfile
from collections.abc import AsyncIterator, Collection, Sequence
from datetime import UTC, datetime
from typing import Any, BinaryIO

from bridge.extraction import Progress, Spool, SpoolWriter
from bridge.fhir.client import FhirClient, Page
from bridge.fhir.resilience import Deadline
from bridge.model import QueryPlan, Resource
from bridge.translate import FunctionSpec, Mappings
from bridge.translate.delta import ORGANIZATION_CHAINS, chain_parent, changed_keys, resource_key

log = logging.getLogger(__name__)


class DeltaSpool(Spool):
    """A Spool that also records which of its resources changed (delta `entities`, ITI-74): `rows` reads back
    those only, organisations root first by their depth among the changed ones (as the engine orders an
    answer), then by entityID."""

    def __init__(self, mappings: Mappings, spec: FunctionSpec, region_tags: Collection[str] | None) -> None:
        super().__init__(mappings)
        self._spec = spec
        self._region_tags = frozenset(region_tags) if region_tags is not None else None
        with self.lock:
            self._db.execute("CREATE TABLE changed (key TEXT PRIMARY KEY)")

    def add_page(self, query: int, matches: Sequence[Resource], includes: Sequence[Resource]) -> int:
        """One page of the plan's query number `query`: spooled, and what it says changed marked."""
        keys = changed_keys(self._spec, query, matches, includes, self._region_tags)
        fresh = self.add([*matches, *includes])
        with self.lock:
            self._db.execute("BEGIN")
            self._db.executemany("INSERT OR IGNORE INTO changed (key) VALUES (?)", [(k,) for k in keys])
            self._db.execute("COMMIT")
        return fresh

    def finish(self) -> None:
        super().finish()
        with self.lock:
            self._rank()

    def _rank(self) -> None:
        """`answer_depth`: the organisations of the answer and their depth in it."""
        self._db.execute(
            "CREATE TEMP TABLE answer_depth AS WITH RECURSIVE"
            " org (key) AS (SELECT c.key FROM changed c JOIN resource r ON r.key = c.key"
            "  WHERE r.type = 'Organization'),"
            " chain (key, depth) AS ("
            "  SELECT o.key, 0 FROM org o WHERE NOT EXISTS ("
            "   SELECT 1 FROM ref JOIN org p ON p.key = ref.dst WHERE ref.src = o.key)"
            "  UNION ALL"
            "  SELECT ref.src, chain.depth + 1 FROM chain JOIN ref ON ref.dst = chain.key"
            "  JOIN org c ON c.key = ref.src WHERE chain.depth < 64"
            ") SELECT key, MIN(depth) AS depth FROM chain GROUP BY key"
        )
        self._db.execute("CREATE UNIQUE INDEX answer_depth_key ON answer_depth (key)")

    ROWS_SQL = (
        "SELECT r.key, r.entity_id, r.body FROM changed c JOIN resource r ON r.key = c.key"
        " LEFT JOIN answer_depth d ON d.key = r.key WHERE r.type = ?"
        " ORDER BY COALESCE(d.depth, 0), r.entity_id, r.key"
    )


class ChainSpool(DeltaSpool):
    """Delta `organization-chains` (establishments-updated-since): besides what changed, the link up the
    organisation chain of each organisation and offer received (translate/delta.chain_parent). `rows` reads
    back the establishments on the chains of the changes: the chain of a changed organisation starts at it,
    that of a changed offer at its providing organisation, and goes up `partOf` while the parent was received;
    of those organisations, the EJ (no parent among them) and EG (their parent is an EJ) [INFER], roots first,
    then by entityID. (Organisations on a `partOf` cycle, invalid data, have no root: none is written.)"""

    def __init__(self, mappings: Mappings, spec: FunctionSpec, region_tags: Collection[str] | None) -> None:
        super().__init__(mappings, spec, region_tags)
        with self.lock:
            self._db.execute("CREATE TABLE up (src TEXT PRIMARY KEY, dst TEXT NOT NULL)")

    def add_page(self, query: int, matches: Sequence[Resource], includes: Sequence[Resource]) -> int:
        fresh = super().add_page(query, matches, includes)
        links = [
            (key, parent)
            for resource in (*matches, *includes)
            if (key := resource_key(resource)) is not None and (parent := chain_parent(resource)) is not None
        ]
        with self.lock:
            self._db.execute("BEGIN")  # the first version received wins, as for the resource itself
            self._db.executemany("INSERT OR IGNORE INTO up (src, dst) VALUES (?, ?)", links)
            self._db.execute("COMMIT")
        return fresh

    def _rank(self) -> None:
        db = self._db
        db.execute("CREATE INDEX up_dst ON up (dst)")
        db.execute(
            "CREATE TEMP TABLE chain AS WITH RECURSIVE walk (key) AS ("
            " SELECT key FROM changed WHERE key >= 'Organization/' AND key < 'Organization0'"
            " UNION SELECT up.dst FROM changed JOIN up ON up.src = changed.key"
            "  WHERE changed.key >= 'HealthcareService/' AND changed.key < 'HealthcareService0'"
            " UNION SELECT up.dst FROM walk JOIN up ON up.src = walk.key"
            ") SELECT walk.key FROM walk JOIN resource r ON r.key = walk.key WHERE r.type = 'Organization'"
        )
        db.execute("CREATE UNIQUE INDEX chain_key ON chain (key)")
        db.execute(
            "CREATE TEMP TABLE answer_depth AS WITH RECURSIVE ranked (key, depth) AS ("
            " SELECT c.key, 0 FROM chain c WHERE NOT EXISTS ("
            "  SELECT 1 FROM up JOIN chain p ON p.key = up.dst WHERE up.src = c.key)"
            " UNION ALL"
            " SELECT up.src, ranked.depth + 1 FROM ranked JOIN up ON up.dst = ranked.key"
            " JOIN chain c ON c.key = up.src WHERE ranked.depth < 1"
            ") SELECT key, MIN(depth) AS depth FROM ranked GROUP BY key"
        )
        db.execute("CREATE UNIQUE INDEX answer_depth_key ON answer_depth (key)")

    ROWS_SQL = (
        "SELECT r.key, r.entity_id, r.body FROM answer_depth d JOIN resource r ON r.key = d.key"
        " WHERE r.type = ? ORDER BY d.depth, r.entity_id, r.key"
    )


async def spooled_delta(
    mappings: Mappings,
    client: FhirClient,
    plan: QueryPlan,
    spec: FunctionSpec,
    region_tags: Collection[str] | None,
    *,
    workers: int = 0,
    profile: int | None = None,
) -> tuple[BinaryIO, Progress]:
    """The five directories of the delta answer, written to an open temporary file (deleted when closed),
    and the counts of what was received and written. Raises the first upstream failure, having written
    nothing anyone can see."""
    progress = Progress(request=plan.function)
    spool = (ChainSpool if spec.delta == ORGANIZATION_CHAINS else DeltaSpool)(mappings, spec, region_tags)
    answer: BinaryIO | None = None
    try:
        # One search's deadline per query: the queries of a delta are walked one after the other.
        deadline = Deadline(client.deadline_s * len(plan.queries))
        async for number, page in _pages(client, plan, deadline):
            progress.pages += 1
            progress.received += len(page.matches) + len(page.includes)
            progress.spooled += await spool.call(spool.add_page, number, page.matches, page.includes)
        await spool.call(spool.finish)
        progress.phase = "writing"
        answer = tempfile.TemporaryFile(prefix="ror-bridge-iti74-")  # noqa: SIM115 (handed to the edge)
        writer = SpoolWriter(spool, mappings, datetime.now(UTC), progress, workers=workers, profile=profile)

        def step(file: BinaryIO) -> bool:
            part = writer.next_chunk()
            if part is None:
                return False
            file.write(part)
            progress.bytes += len(part)
            return True

        while await spool.call(step, answer):
            pass
        await spool.call(answer.flush)
        progress.phase = "done"
        return answer, progress
    except BaseException:
        if answer is not None:
            answer.close()
        raise
    finally:
        with contextlib.suppress(Exception):
            await spool.aclose()


async def _pages(client: FhirClient, plan: QueryPlan, deadline: Deadline) -> AsyncIterator[tuple[int, Page]]:
    """Every page of the plan's queries with the number of its query. When each query searches its own
    resource type (functions.yaml `modifications` does), the pages come in arrival order and the client
    remembers nothing across them (FhirClient.iter_pages_unordered: flat memory; a repeat is harmless, the
    spool keeps each resource once); else in query order, each query's keys remembered (iter_partitioned)."""
    types = [query.resource_type for query in plan.queries]
    if len(set(types)) == len(types):
        numbers = {resource_type: number for number, resource_type in enumerate(types)}
        pages = client.iter_pages_unordered(plan.queries, deadline=deadline)
        try:
            async for page in pages:
                if page.matches:  # includes come with matches only
                    yield numbers[str(page.matches[0].get("resourceType"))], page
        finally:
            await _close(pages)
        return
    partitioned = client.iter_partitioned(plan.queries, deadline=deadline)
    try:
        async for number, page in partitioned:
            yield number, page
    finally:
        await _close(partitioned)


async def _close(iterator: AsyncIterator[Any]) -> None:
    close = getattr(iterator, "aclose", None)  # an async generator: stop its walk now, not at GC
    if close is not None:
        await close()
