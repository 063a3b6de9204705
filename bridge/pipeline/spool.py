"""The spool: every resource an answer receives from the national API, once (by `Type/id`), on disk.

Pipeline level (`bridge/pipeline/`): a private SQLite temporary database filled by the extraction
(pipeline/extraction.py) and the changes since a date (pipeline/changes.py), read back in document order by
the mapping workers (pipeline/workers.py).
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from functools import partial
from itertools import islice
from typing import Any, TypeVar

import orjson

from bridge.model import Directory, Resource
from bridge.translate import Mappings
from bridge.translate.feeds import identity_reads
from bridge.translate.tables import EntityTable
from bridge.translate.transforms import reference_key

_T = TypeVar("_T")

# SQLite page cache of one spool, KiB: what the spool may hold in memory whatever its size on disk. Beyond
# it, pages come from the operating system's file cache: at 100 000 offers the fill and the read-back's
# queries take the same CPU with 4 MiB as with 16 MiB (issue 13 item 4; 12 MiB less for the bridge).
SPOOL_CACHE_KIB = 4 * 1024
# SQLite page of a spool, bytes. A resource is ~2.6 KB of JSON: at SQLite's default 4 KiB most rows were a
# page of their own and the larger ones spilled into overflow pages; at 16 KiB a page holds several. At
# 100 000 offers the fill takes about a fifth less CPU and the read-back's queries no more
# (docs/performance-journal.md, "The spool's layout"; issue 13 item 4).
SPOOL_PAGE_BYTES = 16 * 1024
# Host parameters per SQL statement (SQLite's limit is 32766 since 3.32; stay far below it).
SQL_CHUNK = 500
# The offers' resource type: the context of a batch follows the references of the offers it reaches.
OFFER = "HealthcareService"
ORGANIZATION = "Organization"
# A row of the read-back: a resource's key, the entityID it is ordered by, its stored JSON.
Row = tuple[str, str | None, bytes]


def references(resource: Resource) -> list[str]:
    """`Type/id` of the literal references held by the resource's top-level Reference elements (partOf,
    providedBy, location, managingOrganization, practitioner, organization, healthcareService…)."""
    keys: list[str] = []
    for value in resource.values():
        for item in value if isinstance(value, list) else (value,):
            if isinstance(item, dict) and isinstance(ref := item.get("reference"), str):
                key = reference_key(ref)
                if key is not None:
                    keys.append(key)
    return keys


def select_in(
    db: sqlite3.Connection, sql: str, keys: Sequence[str], *extra: str | int
) -> Iterator[tuple[Any, ...]]:
    """The rows of `sql` — whose one `IN ({marks})` takes `keys` — a bounded number of keys per statement."""
    for start in range(0, len(keys), SQL_CHUNK):
        part = keys[start : start + SQL_CHUNK]
        marks = ",".join("?" * len(part))
        # Only `?` placeholders are formatted into the statement; the values travel as parameters.
        yield from db.execute(sql.format(marks=marks), (*part, *extra))


class Spool:
    """The resources of one extraction, each once (by `Type/id`), in a private SQLite temporary database.

    The database lives on disk beyond a fixed page cache (`SPOOL_CACHE_KIB`), in SQLite's temporary directory
    (`SQLITE_TMPDIR`, else `TMPDIR`, else /var/tmp or /tmp); SQLite unlinks it as soon as it is created, so it
    disappears with the connection, even when the process is killed. Every operation runs in the spool's own
    thread (`call`): SQLite, JSON and the mapping stay off the event loop, and one thread keeps one malloc
    arena (a pool of threads would each grow their own). The lock guards `close` from any other thread.
    """

    def __init__(self, mappings: Mappings) -> None:
        self.lock = threading.Lock()
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="extraction-spool")
        self._mappings = mappings
        self._entity_types = {table.resource for table in mappings.entities.values()}
        # The entity tables, numbered: a resource's `maps` is the set of those that map it (bit i: table i),
        # for the types some table `select`s among (organisations: EJ / EG, internal organisations), decided
        # when spooled (the resource is parsed then): the read-back never parses a row only to filter it.
        self._numbered = list(mappings.entities.values())
        self._selecting = {table.resource for table in self._numbered if table.select is not None}
        # The types the tables read the entityID of only (feeds.identity_reads: organisations): each also kept
        # as its context copy, the elements such a read reads, which is what a batch's context hands over
        # (`stored`): a third of an organisation; the read-back's context halves (issue 13 item 4).
        self._identity_reads = identity_reads(mappings)
        # The connection; a subclass answering part of the spool (pipeline/change_spools.py) adds its own
        # tables.
        self.db = sqlite3.connect("", check_same_thread=False, isolation_level=None)
        for pragma in (
            f"page_size={SPOOL_PAGE_BYTES}",  # before the first table: it fixes the file's page size
            f"cache_size=-{SPOOL_CACHE_KIB}",
            "temp_store=FILE",
            "journal_mode=OFF",
            "synchronous=OFF",
        ):
            self.db.execute(f"PRAGMA {pragma}")
        # The large body last: SQLite reads a row's columns in order, so a column after it would cost its
        # overflow pages each time it is read (an organisation's context copy, read for every batch that has
        # the organisation in its context, `stored`).
        self.db.execute(
            "CREATE TABLE resource (key TEXT PRIMARY KEY, type TEXT NOT NULL, entity_id TEXT, "
            "depth INTEGER NOT NULL DEFAULT 0, maps INTEGER, context BLOB, body BLOB NOT NULL)"
        )
        self.db.execute("CREATE TABLE ref (src TEXT NOT NULL, dst TEXT NOT NULL)")
        self._closed = False
        self._pool: ProcessPoolExecutor | None = None  # the mapping workers, started by the read-back
        self._on_close: list[Callable[[], None]] = []  # what ends with the spool (`on_close`)

    def mapping_pool(self, start: Callable[[], ProcessPoolExecutor]) -> ProcessPoolExecutor:
        """The spool's mapping worker processes (started by `start` on first use, ended with the spool)."""
        if self._pool is None:
            self._pool = start()
        return self._pool

    async def call(self, func: Callable[..., _T], *args: Any) -> _T:
        """`func(*args)` in the spool's thread, after whatever runs there already."""
        # Imported here: a mapping worker imports this module, never calls this (asyncio brings ssl: ~10 MiB).
        import asyncio

        return await asyncio.get_running_loop().run_in_executor(self._thread, partial(func, *args))

    def on_close(self, func: Callable[[], None]) -> None:
        """`func()` when the spool closes (a read-back's paused collector, given back even when the writer
        is dropped half-way: its generator is only freed by a collection)."""
        self._on_close.append(func)

    def close(self) -> None:
        with self.lock:
            if not self._closed:
                self._closed = True
                for func in self._on_close:
                    func()
                self.db.close()
                if self._pool is not None:
                    # Batches still queued are dropped; a worker ends once its current batch is mapped.
                    self._pool.shutdown(wait=False, cancel_futures=True)

    async def aclose(self) -> None:
        """Close once the operation in progress (if any) has ended; the thread ends with it."""
        try:
            await self.call(self.close)
        finally:
            self.close()  # no-op when done; if the call was interrupted, wait for the lock here
            self._thread.shutdown(wait=False)

    def add(self, resources: Sequence[Resource]) -> int:
        """Keep the resources not kept yet (the first version received wins); returns how many were new."""
        fresh: dict[str, Resource] = {}
        for resource in resources:
            key = f"{resource.get('resourceType')}/{resource.get('id')}"
            fresh.setdefault(key, resource)
        with self.lock:
            known = self._existing(list(fresh))
            rows = []
            refs = []
            for key, resource in fresh.items():
                if key in known:
                    continue
                rtype = str(resource.get("resourceType"))
                entity_id = None
                if rtype in self._entity_types:
                    entity_id = spooled_entity_id(resource, self._mappings)
                maps = None
                if rtype in self._selecting:
                    maps = sum(
                        1 << number
                        for number, table in enumerate(self._numbered)
                        if table.resource == rtype and table.applies(resource)
                    )
                elements = self._identity_reads.get(rtype)
                context = (
                    None
                    if elements is None
                    else orjson.dumps({name: resource[name] for name in elements if name in resource})
                )
                rows.append((key, rtype, entity_id, maps, orjson.dumps(resource), context))
                refs += [(key, target) for target in references(resource)]
            self.db.execute("BEGIN")
            self.db.executemany(
                "INSERT INTO resource (key, type, entity_id, maps, body, context) VALUES (?, ?, ?, ?, ?, ?)",
                rows,
            )
            self.db.executemany("INSERT INTO ref (src, dst) VALUES (?, ?)", refs)
            self.db.execute("COMMIT")
        return len(rows)

    def _existing(self, keys: Sequence[str]) -> set[str]:
        return {k for (k,) in select_in(self.db, "SELECT key FROM resource WHERE key IN ({marks})", keys)}

    def finish(self) -> None:
        """Index the spool and place each organisation in its `partOf` chain (roots first, as the engine
        orders a stored function's answer: depth within the answer, then entityID)."""
        with self.lock:
            db = self.db
            # Covering indexes: every walk of the references (`context_keys`, the changes' chains) asks one
            # end by the other, so it reads the index alone, never the table (`tests/test_spool_layout.py`).
            db.execute("CREATE INDEX ref_src ON ref (src, dst)")
            db.execute("CREATE INDEX ref_dst ON ref (dst, src)")
            db.execute(
                "CREATE TEMP TABLE org_depth AS WITH RECURSIVE chain (key, depth) AS ("
                " SELECT r.key, 0 FROM resource r WHERE r.type = 'Organization' AND NOT EXISTS ("
                "  SELECT 1 FROM ref JOIN resource p ON p.key = ref.dst"
                "  WHERE ref.src = r.key AND p.type = 'Organization')"
                " UNION ALL"
                " SELECT ref.src, chain.depth + 1 FROM chain JOIN ref ON ref.dst = chain.key"
                " JOIN resource c ON c.key = ref.src AND c.type = 'Organization' WHERE chain.depth < 64"
                ") SELECT key, MIN(depth) AS depth FROM chain GROUP BY key"
            )
            db.execute("CREATE UNIQUE INDEX org_depth_key ON org_depth (key)")
            db.execute("BEGIN")
            db.execute(
                "UPDATE resource SET depth = (SELECT depth FROM org_depth WHERE org_depth.key = resource.key)"
                " WHERE type = 'Organization' AND key IN (SELECT key FROM org_depth)"
            )
            db.execute("COMMIT")
            db.execute("CREATE INDEX resource_order ON resource (type, depth, entity_id)")

    def count(self, resource_type: str | None = None) -> int:
        with self.lock:
            if resource_type is None:
                row = self.db.execute("SELECT COUNT(*) FROM resource").fetchone()
            else:
                row = self.db.execute(
                    "SELECT COUNT(*) FROM resource WHERE type = ?", (resource_type,)
                ).fetchone()
            return int(row[0])

    # -- read-back (the caller holds the lock)

    # `(key, entity_id, body)` of every resource of a type (the one parameter), in document order: what the
    # read-back writes. A subclass answering part of the spool (pipeline/change_spools.py) says which part
    # here.
    ROWS_SQL = "SELECT key, entity_id, body FROM resource WHERE type = ? ORDER BY depth, entity_id, key"
    COUNT_SQL = "SELECT COUNT(*) FROM resource WHERE type = ?"  # how many rows ROWS_SQL gives
    # ROWS_SQL keeping the rows some of the tables map (`maps & ?`: their `select`, decided when spooled), so
    # that a row no table maps is never read: five organisations in six for the organisation directory,
    # whose bodies `mapped` read only to drop them (issue 13 item 4).
    MAPPED_ROWS_SQL = (
        "SELECT key, entity_id, body FROM resource WHERE type = ? AND maps & ? != 0"
        " ORDER BY depth, entity_id, key"
    )

    def rows(
        self, resource_type: str, directory: Directory | None = None, tables: Sequence[EntityTable] = ()
    ) -> Iterable[Row]:
        """The rows to write for a type (ROWS_SQL), into a directory (a subclass may answer per directory);
        with `tables`, only those some of them map (`selecting`)."""
        wanted = self.selecting(tables)
        if wanted is None:
            return self.db.execute(self.ROWS_SQL, (resource_type,))
        return self.db.execute(self.MAPPED_ROWS_SQL, (resource_type, wanted))

    def selecting(self, tables: Sequence[EntityTable]) -> int | None:
        """The `maps` bits of `tables` when one of them selects among its resources (its `select`); None when
        they map every row."""
        if not any(table.select is not None for table in tables):
            return None
        return sum(1 << n for n, table in enumerate(self._numbered) if any(table is t for t in tables))

    def count_rows(self, resource_type: str, directory: Directory | None = None) -> int:
        """How many rows `rows` gives for a type (counted on the index, not through ROWS_SQL's sort: that
        sorted every row of the type, ~9 CPU-seconds of a national extraction, issue 13 item 4)."""
        return int(self.db.execute(self.COUNT_SQL, (resource_type,)).fetchone()[0])

    def mapped(self, rows: Iterable[Row], tables: Sequence[EntityTable]) -> Iterator[Row]:
        """The rows (`key, entity_id, body` of `rows`, a chunk at a time, in order) that some table of
        `tables` maps (its `select`): read from the `maps` the spool decided, never parsed again (for a
        subclass's own rows statement; the spool's own `rows` filters in its statement)."""
        wanted = self.selecting(tables)
        if wanted is None:
            yield from rows
            return
        sql = "SELECT key FROM resource WHERE key IN ({marks}) AND maps & ? != 0"
        source = iter(rows)
        while part := list(islice(source, SQL_CHUNK)):
            kept = {key for (key,) in select_in(self.db, sql, [row[0] for row in part], wanted)}
            yield from (row for row in part if row[0] in kept)

    def context(self, keys: Sequence[str], *, offers_at: bool, below: bool = False) -> list[bytes]:
        """The resources `context_keys` names, as stored (JSON), in key order."""
        return [body for _, body in self.stored(self.context_keys(keys, offers_at=offers_at, below=below))]

    def stored(self, keys: Sequence[str]) -> list[tuple[str, bytes]]:
        """(key, stored JSON) of the spooled resources of `keys` (sorted) as a batch's context reads them, in
        key order (a key not spooled has none): the whole resource, or its context copy when the tables read
        its entityID only (an organisation: `_identity_reads`)."""
        sql = "SELECT key, COALESCE(context, body) FROM resource WHERE key IN ({marks})"
        found = {key: bytes(body) for key, body in select_in(self.db, sql, keys)}
        return [(key, found[key]) for key in keys if key in found]

    def context_keys(
        self,
        keys: Sequence[str],
        *,
        offers_at: bool,
        below: bool = False,
    ) -> list[str]:
        """What the entity tables read besides the resources `keys` name: what they reference and, through the
        offers among those (and, with `offers_at`, the offers whose `location` is one of them), what the
        offers reference — an offer's organisation and lieux (mappings/entities/*.yaml); with `below`, the
        organisations under the `keys` and the offers they provide (an internal organisation's typeActivity;
        the read-back asks it only for the organisations a table maps), read for their own content only (the
        internal organisation's feeds end there: their lieux are no one's context); and the partOf ancestors
        of every organisation met (a UE's EG, its parent facility); sorted."""
        targets = self._targets(keys)
        if offers_at:
            sql = "SELECT src FROM ref WHERE dst IN ({marks}) AND src >= ? AND src < ?"
            targets.update(src for (src,) in select_in(self.db, sql, keys, f"{OFFER}/", f"{OFFER}0"))
        offers = [k for k in targets if k.startswith(f"{OFFER}/")]
        targets.update(self._targets(offers))
        if below:
            targets.update(self._below(keys))
        targets.update(self._ancestors([k for k in (*keys, *targets) if k.startswith(f"{ORGANIZATION}/")]))
        targets.difference_update(keys)
        return sorted(targets)

    def _below(self, keys: Sequence[str]) -> set[str]:
        """The organisations under `keys` (partOf, transitively) and the offers any of them provides."""
        found: set[str] = set()
        level = list(keys)
        sql = "SELECT src FROM ref WHERE dst IN ({marks}) AND (src LIKE 'Organization/%' OR src LIKE ?)"
        while level:
            fresh = {s for (s,) in select_in(self.db, sql, level, f"{OFFER}/%")} - found
            found |= fresh
            level = [k for k in fresh if k.startswith(f"{ORGANIZATION}/")]
        return found

    def _ancestors(self, keys: Sequence[str]) -> set[str]:
        """The organisations above `keys` (their partOf chains)."""
        found: set[str] = set()
        level = list(keys)
        sql = "SELECT dst FROM ref WHERE src IN ({marks}) AND dst LIKE 'Organization/%'"
        while level:
            fresh = {d for (d,) in select_in(self.db, sql, level)} - found - set(keys)
            found |= fresh
            level = list(fresh)
        return found

    def _targets(self, keys: Sequence[str]) -> set[str]:
        return {dst for (dst,) in select_in(self.db, "SELECT dst FROM ref WHERE src IN ({marks})", keys)}


def spooled_entity_id(resource: Resource, mappings: Mappings) -> str:
    """The key the read-back orders a resource's rows by: its entityID; a situation opérationnelle's is its
    Practitioner's reference (`Practitioner/<id>`), so that the situations of one professional come together
    (entities/provider.yaml takes the provider's entityID from the Practitioner, which the spool may not have
    yet)."""
    if resource.get("resourceType") == "PractitionerRole":
        practitioner = resource.get("practitioner")
        reference = practitioner.get("reference") if isinstance(practitioner, dict) else None
        if isinstance(reference, str) and reference:
            return reference
    return mappings.identities.derive(resource)[0]
