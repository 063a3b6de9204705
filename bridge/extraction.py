"""The legacy REST extraction (TR-Récupération Extraction): the national or a regional offer as one streamed
`csd:CSD` document, at flat memory. Pipeline level, like pipeline.py: fhir/ fetches (`$export` or searches), a
disk spool keeps each resource once, translate/ maps through the entity tables and csd/ builds the elements.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import multiprocessing
import os
import sqlite3
import tempfile
import threading
import time
from collections import deque
from collections.abc import AsyncIterator, Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future, ProcessPoolExecutor, ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from enum import StrEnum
from functools import partial
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlencode

import orjson

from bridge.csd.writer import (
    device_element,
    directory_end,
    directory_start,
    document_end,
    document_start,
    element_bytes,
    facility_element,
    organization_element,
    provider_element,
    service_element,
)
from bridge.errors import ConfigurationError, InvalidParameterError
from bridge.fhir.client import FhirClient
from bridge.fhir.export import ExportRequest, ExportStats
from bridge.fhir.resilience import Deadline
from bridge.model import (
    CsdDocument,
    CsdRequest,
    Directory,
    FhirQuery,
    QueryPlan,
    RequestForm,
    RequestParams,
    Resource,
    SearchResult,
    Transaction,
)
from bridge.translate import FunctionSpec, Mappings, from_fhir_results, load_mappings, to_fhir_plan
from bridge.translate.access import NO_ACTIVITIES, Activities, filter_records, uses_activity
from bridge.translate.findings import Finding, Findings
from bridge.translate.transforms import reference_key

log = logging.getLogger(__name__)
_T = TypeVar("_T")

# The stored function whose criteria an extraction accepts and whose FHIR query (criteria + the "offre
# complète" include set, ror-fhir-api §5 (A) 2) it sends: an extraction is that search, complete and streamed.
OFFER_SEARCH = "offer-search"
# Paging parameters of offer-search that mean nothing for a whole extraction.
PAGING = frozenset({"start", "max"})
# Entities mapped and written per step of the read-back: one chunk of the streamed document.
BATCH_SIZE = 200
# A directory of at least this many spooled resources is mapped in worker processes (when the deployment has
# any, `mapping_workers`): below it, starting them (about a second) costs more than they save.
PARALLEL_FROM = 20_000
# Batches handed to the workers ahead of the one being written, per worker (bounds memory, keeps them busy).
AHEAD_PER_WORKER = 2
# Resources spooled per SQLite transaction from an `$export` (search pages are spooled page by page).
EXPORT_BATCH = 500
# Whitespace sent this often while the upstream answer is being spooled, so that proxies and client read
# timeouts see a live connection (whitespace between elements is insignificant: the document stays valid).
HEARTBEAT_S = 10.0
# SQLite page cache of one spool, KiB: what the spool may hold in memory whatever its size on disk.
SPOOL_CACHE_KIB = 16 * 1024
# A cache temporary file untouched this long belongs to no running extraction (a killed process left it).
ORPHAN_PART_S = 24 * 3600.0
# Host parameters per SQL statement (SQLite's limit is 32766 since 3.32; stay far below it).
SQL_CHUNK = 500
_DIRECTORIES = (
    Directory.ORGANIZATION,
    Directory.SERVICE,
    Directory.FACILITY,
    Directory.PROVIDER,
    Directory.DEVICE,
)
_OFFER = "HealthcareService"
_ORGANIZATION = "Organization"
_BUILDERS: dict[Directory, Callable[[Any], Any]] = {
    Directory.ORGANIZATION: organization_element,
    Directory.SERVICE: service_element,
    Directory.FACILITY: facility_element,
    Directory.PROVIDER: provider_element,
    Directory.DEVICE: device_element,
}


class LogEvent(StrEnum):
    """What the extraction logs (house style: events are enum members, never free text)."""

    STARTED = "extraction-started"
    SPOOLED = "extraction-spooled"
    DONE = "extraction-done"
    CACHE_STORED = "extraction-cache-stored"
    CACHE_FAILED = "extraction-cache-failed"


class Source(StrEnum):
    """Where the offer comes from: `$export` (bulk, a snapshot), paged searches, or `auto` (export when the
    upstream CapabilityStatement announces the operation, else searches)."""

    AUTO = "auto"
    EXPORT = "export"
    SEARCH = "search"


class ExtractionBusyError(Exception):
    """As many extractions as allowed are running; the client should retry later (HTTP 503)."""


@dataclass(frozen=True, slots=True)
class ExtractionRequest:
    """What to extract: the national offer or one legacy region's, restricted by offer-search criteria."""

    region: str | None  # lower-case code of mappings/regions.csv; None = national
    params: tuple[tuple[str, str], ...]  # offer-search criteria (ME 2.4 names), one value each, sorted

    @property
    def key(self) -> str:
        """Stable across runs and processes: names the cached document of this region and filter."""
        digest = hashlib.sha256(orjson.dumps([self.region, self.params])).hexdigest()
        return f"{self.region or 'national'}-{digest[:24]}"

    def describe(self) -> str:
        scope = "national" if self.region is None else f"region {self.region}"
        criteria = ", ".join(f"{name}={value}" for name, value in self.params)
        return f"{scope}{' (' + criteria + ')' if criteria else ''}"


def offer_search(mappings: Mappings) -> FunctionSpec:
    """The `offer-search` entry of functions.yaml (a ConfigurationError when a deployment removed it)."""
    for spec in mappings.functions.values():
        if spec.name == OFFER_SEARCH:
            return spec
    raise ConfigurationError(f"functions.yaml has no `{OFFER_SEARCH}` entry: the extraction sends its query")


def extraction_request(
    mappings: Mappings, region: str | None, items: Iterable[tuple[str, str]]
) -> ExtractionRequest:
    """An extraction request from a region code and query parameters (offer-search criteria, each repeatable,
    comma = alternatives). UnknownRegionError, InvalidParameterError (an unknown or unusable parameter: IHE
    criteria combine with AND, so ignoring one would silently widen the document)."""
    code = mappings.region(region).code.lower() if region is not None else None
    accepted = [name for name in offer_search(mappings).parameters if name not in PAGING]
    params: set[tuple[str, str]] = set()
    for name, raw in items:
        if name not in accepted:
            raise InvalidParameterError(
                f"the extraction does not accept {name!r} (accepted: {', '.join(accepted)})"
            )
        values = [v.strip() for v in raw.split(",")]
        if not all(values):
            raise InvalidParameterError(f"empty value for {name!r}")
        params.update((name, value) for value in values)
    request = ExtractionRequest(code, tuple(sorted(params)))
    extraction_plan(mappings, request)  # the resolvers refuse unusable values now, before any byte is sent
    return request


@dataclass(frozen=True, slots=True)
class ExtractionPlan:
    """The upstream questions of one extraction: the search (criteria, région-source scope and the "offre
    complète" includes) and the equivalent `$export` (`_typeFilter` = the same criteria)."""

    query: FhirQuery
    export: ExportRequest


def extraction_plan(mappings: Mappings, request: ExtractionRequest) -> ExtractionPlan:
    spec = offer_search(mappings)
    csd_request = CsdRequest(
        transaction=Transaction.CARE_SERVICES,
        form=RequestForm.FUNCTION_URN_2014,
        function_urn=spec.urn,
        params=RequestParams(extra=request.params),
        region=request.region,
    )
    plan = to_fhir_plan(mappings, csd_request)
    if len(plan.queries) != 1 or plan.queries[0].resource_type != _OFFER:
        raise ConfigurationError(f"functions.yaml `{OFFER_SEARCH}` must send one HealthcareService search")
    query = plan.queries[0]
    criteria = [(n, v) for n, v in query.params if not n.startswith(("_include", "_revinclude"))]
    filters = (f"{_OFFER}?{urlencode(criteria)}",) if criteria else ()
    return ExtractionPlan(query, ExportRequest(types=(_OFFER,), type_filters=filters))


@dataclass(slots=True)
class Progress:
    """Counters of one extraction, updated as it runs (the CLI's progress line and summary, logs)."""

    request: str = ""
    source: Source | None = None
    phase: str = "starting"  # starting, fetching, writing, done
    pages: int = 0  # search pages, or `$export` files
    received: int = 0  # resources received from upstream, repeats included
    spooled: int = 0  # distinct resources kept
    written: dict[Directory, int] = field(default_factory=lambda: dict.fromkeys(_DIRECTORIES, 0))
    expected: dict[Directory, int] = field(default_factory=lambda: dict.fromkeys(_DIRECTORIES, 0))
    bytes: int = 0
    started: float = field(default_factory=time.monotonic)

    @property
    def elapsed_s(self) -> float:
        return time.monotonic() - self.started


ProgressCallback = Callable[[Progress], None]


# --------------------------------------------------------------------------------------------------
# The spool: every resource received, once, on disk


def _references(resource: Resource) -> list[str]:
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


def _select_in(
    db: sqlite3.Connection, sql: str, keys: Sequence[str], *extra: str
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
        self._db = sqlite3.connect("", check_same_thread=False, isolation_level=None)
        for pragma in (
            f"cache_size=-{SPOOL_CACHE_KIB}",
            "temp_store=FILE",
            "journal_mode=OFF",
            "synchronous=OFF",
        ):
            self._db.execute(f"PRAGMA {pragma}")
        self._db.execute(
            "CREATE TABLE resource (key TEXT PRIMARY KEY, type TEXT NOT NULL, entity_id TEXT, "
            "depth INTEGER NOT NULL DEFAULT 0, body BLOB NOT NULL)"
        )
        self._db.execute("CREATE TABLE ref (src TEXT NOT NULL, dst TEXT NOT NULL)")
        self._closed = False
        self._pool: ProcessPoolExecutor | None = None  # the mapping workers, started by the read-back

    def mapping_pool(self, workers: int) -> ProcessPoolExecutor:
        """The spool's mapping worker processes (started on first use, ended with the spool)."""
        if self._pool is None:
            self._pool = ProcessPoolExecutor(
                max_workers=workers,
                # spawn: a fork of this multi-threaded process could inherit a lock held by another thread.
                mp_context=multiprocessing.get_context("spawn"),
                initializer=_start_worker,
                initargs=(str(self._mappings.directory),),
            )
        return self._pool

    async def call(self, func: Callable[..., _T], *args: Any) -> _T:
        """`func(*args)` in the spool's thread, after whatever runs there already."""
        return await asyncio.get_running_loop().run_in_executor(self._thread, partial(func, *args))

    def close(self) -> None:
        with self.lock:
            if not self._closed:
                self._closed = True
                self._db.close()
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
                    entity_id = _spooled_entity_id(resource, self._mappings)
                rows.append((key, rtype, entity_id, orjson.dumps(resource)))
                refs += [(key, target) for target in _references(resource)]
            self._db.execute("BEGIN")
            self._db.executemany(
                "INSERT INTO resource (key, type, entity_id, body) VALUES (?, ?, ?, ?)", rows
            )
            self._db.executemany("INSERT INTO ref (src, dst) VALUES (?, ?)", refs)
            self._db.execute("COMMIT")
        return len(rows)

    def _existing(self, keys: Sequence[str]) -> set[str]:
        return {k for (k,) in _select_in(self._db, "SELECT key FROM resource WHERE key IN ({marks})", keys)}

    def finish(self) -> None:
        """Index the spool and place each organisation in its `partOf` chain (roots first, as the engine
        orders a stored function's answer: depth within the answer, then entityID)."""
        with self.lock:
            db = self._db
            db.execute("CREATE INDEX ref_src ON ref (src)")
            db.execute("CREATE INDEX ref_dst ON ref (dst)")
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
                row = self._db.execute("SELECT COUNT(*) FROM resource").fetchone()
            else:
                row = self._db.execute(
                    "SELECT COUNT(*) FROM resource WHERE type = ?", (resource_type,)
                ).fetchone()
            return int(row[0])

    # -- read-back (the caller holds the lock)

    # `(key, entity_id, body)` of every resource of a type (the one parameter), in document order: what the
    # read-back writes. A subclass answering part of the spool (modifications.py) says which part here.
    ROWS_SQL = "SELECT key, entity_id, body FROM resource WHERE type = ? ORDER BY depth, entity_id, key"

    def rows(self, resource_type: str) -> sqlite3.Cursor:
        """The rows to write for a type (ROWS_SQL)."""
        return self._db.execute(self.ROWS_SQL, (resource_type,))

    def count_rows(self, resource_type: str) -> int:
        """How many rows `rows` gives for a type."""
        sql = f"SELECT COUNT(*) FROM ({self.ROWS_SQL})"  # noqa: S608 (a class constant, no input)
        return int(self._db.execute(sql, (resource_type,)).fetchone()[0])

    def context(self, keys: Sequence[str], *, offers_at: bool, below: bool = False) -> list[bytes]:
        """What the entity tables read besides the resources `keys` name: what they reference and, through the
        offers among those (and, with `offers_at`, the offers whose `location` is one of them), what the
        offers reference — an offer's organisation and lieux (mappings/entities/*.yaml); with `below`, the
        organisations under the `keys` and the offers they provide (an internal organisation's typeActivity);
        and the partOf ancestors of every organisation met (a UE's EG, its parent facility); as stored
        (JSON)."""
        targets = self._targets(keys)
        if offers_at:
            sql = "SELECT src FROM ref WHERE dst IN ({marks}) AND src >= ? AND src < ?"
            targets.update(src for (src,) in _select_in(self._db, sql, keys, f"{_OFFER}/", f"{_OFFER}0"))
        if below:
            targets.update(self._below(keys))
        offers = [k for k in targets if k.startswith(f"{_OFFER}/")]
        targets.update(self._targets(offers))
        targets.update(self._ancestors([k for k in (*keys, *targets) if k.startswith(f"{_ORGANIZATION}/")]))
        targets.difference_update(keys)
        sql = "SELECT body FROM resource WHERE key IN ({marks})"
        return [body for (body,) in _select_in(self._db, sql, sorted(targets))]

    def _below(self, keys: Sequence[str]) -> set[str]:
        """The organisations under `keys` (partOf, transitively) and the offers any of them provides."""
        found: set[str] = set()
        level = list(keys)
        sql = "SELECT src FROM ref WHERE dst IN ({marks}) AND (src LIKE 'Organization/%' OR src LIKE ?)"
        while level:
            fresh = {s for (s,) in _select_in(self._db, sql, level, f"{_OFFER}/%")} - found
            found |= fresh
            level = [k for k in fresh if k.startswith(f"{_ORGANIZATION}/")]
        return found

    def _ancestors(self, keys: Sequence[str]) -> set[str]:
        """The organisations above `keys` (their partOf chains)."""
        found: set[str] = set()
        level = list(keys)
        sql = "SELECT dst FROM ref WHERE src IN ({marks}) AND dst LIKE 'Organization/%'"
        while level:
            fresh = {d for (d,) in _select_in(self._db, sql, level)} - found - set(keys)
            found |= fresh
            level = list(fresh)
        return found

    def _targets(self, keys: Sequence[str]) -> set[str]:
        return {dst for (dst,) in _select_in(self._db, "SELECT dst FROM ref WHERE src IN ({marks})", keys)}


class _Writer:
    """The read-back: each directory, entity by entity in document order, mapped a batch at a time with the
    context each batch needs, as chunks of the document. `next_chunk` runs in the spool's thread.

    With `workers` > 0, a directory of at least PARALLEL_FROM resources is mapped in that many worker
    processes: this thread reads the batches and their context from the spool and hands them out, a few
    ahead, and writes the results in order; anything a worker reports (findings) is merged here."""

    def __init__(
        self,
        spool: Spool,
        mappings: Mappings,
        now: datetime,
        progress: Progress,
        *,
        workers: int = 0,
        profile: int | None = None,
    ) -> None:
        self._profile = profile  # the client's ROR access profile (None: unfiltered), given to the workers
        self._spool = spool
        self._mappings = mappings
        self._now = now
        self._progress = progress
        self._workers = workers
        self._chunks = self._generate()

    def next_chunk(self) -> bytes | None:
        with self._spool.lock:
            return next(self._chunks, None)

    def _generate(self) -> Iterator[bytes]:
        for directory in _DIRECTORIES:
            # a directory may be built from several resource types (facilities: internal organisations, then
            # the offers as unités élémentaires), each in turn
            types = dict.fromkeys(
                t.resource for t in self._mappings.entities.values() if t.kind.directory is directory
            )
            yield directory_start(directory)
            for resource_type in types:
                yield from self._directory(directory, resource_type)
            yield directory_end(directory)

    def _directory(self, directory: Directory, resource_type: str) -> Iterator[bytes]:
        parallel = self._workers > 0 and self._spool.count_rows(resource_type) >= PARALLEL_FROM
        pool = self._spool.mapping_pool(self._workers) if parallel else None
        cursor = self._spool.rows(resource_type)
        offers_at = resource_type == "Location"
        below = resource_type == _ORGANIZATION and directory is Directory.FACILITY
        pending: deque[Future[_Mapped]] = deque()
        last: list[str | None] = [None]  # rows come sorted by entityID: a repeated entityID is written once
        for batch in _whole_groups(cursor):
            context = self._spool.context([key for key, _, _ in batch], offers_at=offers_at, below=below)
            if pool is None:
                parts = map_batch(
                    self._mappings, directory, resource_type, batch, context, self._now, self._profile
                )
                yield self._emit(directory, parts, last)
                continue
            pending.append(
                pool.submit(
                    _map_in_worker, directory, resource_type, batch, context, self._now, self._profile
                )
            )
            if len(pending) >= AHEAD_PER_WORKER * self._workers:
                yield self._emit_mapped(directory, pending.popleft(), last)
        while pending:
            yield self._emit_mapped(directory, pending.popleft(), last)

    def _emit_mapped(self, directory: Directory, future: Future[_Mapped], last: list[str | None]) -> bytes:
        parts, findings = future.result()  # a worker's failure (or death) fails the answer here
        self._mappings.findings.merge(findings)
        return self._emit(directory, parts, last)

    def _emit(self, directory: Directory, parts: list[tuple[str, bytes]], last: list[str | None]) -> bytes:
        kept = []
        for entity_id, element in parts:
            if entity_id != last[0]:
                kept.append(element)
                last[0] = entity_id
        self._progress.written[directory] += len(kept)
        return b"".join(kept)


# A mapped batch: (entityID, element bytes) in row order, and the findings counted while mapping it.
_Mapped = tuple[list[tuple[str, bytes]], dict[tuple[Finding, str], int]]


def _whole_groups(cursor: sqlite3.Cursor) -> Iterator[list[Any]]:
    """The rows in batches of about BATCH_SIZE that never split rows of one spooled entityID: the situations
    of one professional (spooled under their Practitioner, `_spooled_entity_id`) make one csd:provider, which
    the engine can only merge within a batch."""
    held: list[Any] = []
    while rows := cursor.fetchmany(BATCH_SIZE):
        held += rows
        last = held[-1][1]
        cut = len(held)
        while cut > 0 and last is not None and held[cut - 1][1] == last:
            cut -= 1
        if cut == 0:  # one group fills the batch: wait for its end
            continue
        yield held[:cut]
        held = held[cut:]
    if held:
        yield held


def _spooled_entity_id(resource: Resource, mappings: Mappings) -> str:
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


def map_batch(
    mappings: Mappings,
    directory: Directory,
    resource_type: str,
    rows: Sequence[tuple[str, str | None, bytes]],
    context: Sequence[bytes],
    now: datetime,
    profile: int | None = None,
) -> list[tuple[str, bytes]]:
    """One batch of spooled rows (`key, entity_id, body`) mapped with its context (stored JSON): the element
    of each entity, in row order. An entity the engine did not write (e.g. a provider whose Practitioner was
    not received, reported by the engine) has no element."""
    query = FhirQuery(resource_type, (), purpose="extraction")
    plan = QueryPlan(function="extraction", queries=(query,), directories=frozenset({directory}))
    resources = [orjson.loads(body) for _, _, body in rows]
    result = SearchResult(query, matches=resources, includes=[orjson.loads(body) for body in context])
    # The batch's own entities only: an organisation's parent in the context is written in its turn.
    keys = [key for key, _, _ in rows]
    document = from_fhir_results(mappings, plan, [result], now=now, selected=keys)
    # What the client's access profile may not see is removed here (translate/access.py). A provider's champ
    # d'activité is its units': the offers in the batch's context, mapped as the facilities they are.
    activities = NO_ACTIVITIES
    if directory is Directory.PROVIDER and uses_activity(mappings.access, profile, "provider"):
        offers = [f"HealthcareService/{r.get('id')}" for r in result.includes if _is_offer(r)]
        units = QueryPlan("extraction", (query,), frozenset({Directory.FACILITY}))
        quiet = replace(mappings, findings=Findings())  # counted once, when the units are written
        activities = Activities.of_document(
            from_fhir_results(quiet, units, [result], now=now, selected=offers)
        )
    kept = filter_records(
        mappings.access, profile, _KIND[directory], _records(document, directory), activities
    )
    records = {record.entity_id: record for record in kept}
    build = _BUILDERS[directory]
    order = [entity_id for _, entity_id, _ in rows if entity_id is not None and entity_id in records]
    # an entity whose entityID is not its row's (a professional, keyed by the RPPS of its situations' rows)
    placed = set(order)
    order += [entity_id for entity_id in records if entity_id not in placed]
    return [(entity_id, element_bytes(build(records[entity_id]))) for entity_id in dict.fromkeys(order)]


def _is_offer(resource: Resource) -> bool:
    return resource.get("resourceType") == "HealthcareService"


# The mapping tables of a worker process, loaded once when it starts.
_worker_mappings: Mappings | None = None


def _start_worker(directory: str) -> None:
    global _worker_mappings
    # A worker's findings are counted and sent back with each batch; the parent logs them (Findings.merge).
    logging.getLogger(Finding.__module__).setLevel(logging.WARNING)
    _worker_mappings = load_mappings(Path(directory))


def _map_in_worker(
    directory: Directory,
    resource_type: str,
    rows: Sequence[tuple[str, str | None, bytes]],
    context: Sequence[bytes],
    now: datetime,
    profile: int | None = None,
) -> _Mapped:
    mappings = _worker_mappings
    if mappings is None:
        raise RuntimeError("mapping worker started without its mapping tables")
    before = mappings.findings.counts()
    parts = map_batch(mappings, directory, resource_type, rows, context, now, profile)
    after = mappings.findings.counts()
    return parts, {key: n - before.get(key, 0) for key, n in after.items() if n != before.get(key, 0)}


_KIND = {
    Directory.ORGANIZATION: "organization",
    Directory.SERVICE: "service",
    Directory.FACILITY: "facility",
    Directory.PROVIDER: "provider",
    Directory.DEVICE: "device",
}


def _records(document: CsdDocument, directory: Directory) -> Sequence[Any]:
    if directory is Directory.ORGANIZATION:
        return document.organizations
    if directory is Directory.SERVICE:
        return document.services
    if directory is Directory.FACILITY:
        return document.facilities
    return document.providers


# The read-back, for the other answer written from a spool: ITI-74 (bridge/modifications.py), whose spool's
# `rows` are the changed resources only.
SpoolWriter = _Writer


# --------------------------------------------------------------------------------------------------
# The extraction


class Extractor:
    """Runs extractions: fetch into a spool, then write the five directories from it, streaming."""

    def __init__(
        self,
        mappings: Mappings,
        client: FhirClient,
        *,
        source: Source = Source.AUTO,
        deadline_s: float = 3600.0,
        max_concurrent: int = 2,
        heartbeat_s: float = HEARTBEAT_S,
        workers: int = 0,
    ) -> None:
        self.mappings = mappings
        self.workers = workers
        self.client = client
        self.source = source
        self.deadline_s = deadline_s
        self.max_concurrent = max_concurrent
        self.heartbeat_s = heartbeat_s
        self._running = 0

    async def choose_source(self) -> Source:
        """The configured source; for `auto`, `$export` when the upstream announces it (CapabilityStatement
        `rest.operation` named `export`, as the production server and the simulator do), else searches."""
        if self.source is not Source.AUTO:
            return self.source
        statement = await self.client.capabilities()
        names = {
            operation.get("name")
            for rest in statement.get("rest") or ()
            if isinstance(rest, dict)
            for operation in rest.get("operation") or ()
            if isinstance(operation, dict)
        }
        return Source.EXPORT if "export" in names else Source.SEARCH

    async def stream(
        self,
        request: ExtractionRequest,
        on_progress: ProgressCallback | None = None,
        *,
        profile: int | None = None,
    ) -> AsyncIterator[bytes]:
        """The document, chunk by chunk.

        Nothing is yielded before the upstream has answered once: a failure until then (busy, upstream
        refusing or unreachable) is raised at the first `anext` and the caller can still answer a clean HTTP
        error. Any failure after the first chunk is raised too: the caller must then abort the transfer, so
        that a truncated document can never pass for a complete one.
        """
        if self._running >= self.max_concurrent:
            raise ExtractionBusyError(f"{self._running} extraction(s) already running")
        self._running += 1
        progress = Progress(request=request.describe())
        notify = on_progress or (lambda _: None)
        spool: Spool | None = None
        fill: asyncio.Task[None] | None = None
        try:
            plan = extraction_plan(self.mappings, request)
            progress.source = await self.choose_source()
            log.info("%s %s from %s", LogEvent.STARTED, progress.request, progress.source)
            now = datetime.now(UTC)
            spool = Spool(self.mappings)
            progress.phase = "fetching"
            export_stats = ExportStats()
            fill = asyncio.create_task(
                self._fill(progress.source, plan, spool, progress, export_stats, notify)
            )

            # The first byte waits for the upstream's first answer (a search page, an export poll); a failure
            # until then is the caller's clean HTTP error, any later one an aborted transfer.
            def answered() -> bool:
                return progress.pages > 0 or export_stats.polls > 0

            while not answered() and not fill.done():
                await asyncio.wait({fill}, timeout=0.02)
            if not answered():
                fill.result()  # raises the upstream failure: nothing was sent yet
            chunk = document_start()
            progress.bytes += len(chunk)
            yield chunk
            while not fill.done():
                await asyncio.wait({fill}, timeout=self.heartbeat_s)
                if not fill.done():
                    progress.bytes += 1
                    yield b"\n"
            fill.result()
            log.info(
                "%s %d resources (%d received, %d pages/files) in %.1f s",
                LogEvent.SPOOLED,
                progress.spooled,
                progress.received,
                progress.pages,
                progress.elapsed_s,
            )
            # an upper bound: an organisation is counted in both directories its tables' `select` split
            pairs = dict.fromkeys((t.kind.directory, t.resource) for t in self.mappings.entities.values())
            for directory, resource_type in pairs:
                progress.expected[directory] += await spool.call(spool.count, resource_type)
            progress.phase = "writing"
            writer = _Writer(spool, self.mappings, now, progress, workers=self.workers, profile=profile)
            while (part := await spool.call(writer.next_chunk)) is not None:
                progress.bytes += len(part)
                notify(progress)
                yield part
            chunk = document_end()
            progress.bytes += len(chunk)
            yield chunk
            progress.phase = "done"
            notify(progress)
            log.info(
                "%s %s: %s; %d bytes in %.1f s",
                LogEvent.DONE,
                progress.request,
                ", ".join(f"{d.value} {n}" for d, n in progress.written.items()),
                progress.bytes,
                progress.elapsed_s,
            )
        finally:
            if fill is not None and not fill.done():
                fill.cancel()
                with contextlib.suppress(BaseException):
                    await fill
            if spool is not None:
                # After a step still reading or indexing the spool, in its own thread.
                with contextlib.suppress(BaseException):
                    await spool.aclose()
            self._running -= 1

    async def _fill(
        self,
        source: Source,
        plan: ExtractionPlan,
        spool: Spool,
        progress: Progress,
        stats: ExportStats,
        notify: ProgressCallback,
    ) -> None:
        """Spool everything the source gives, then index the spool; raises the first upstream failure."""
        if source is Source.SEARCH:
            pages = self.client.iter_pages_unordered([plan.query], deadline=Deadline(self.deadline_s))
            try:
                async for page in pages:
                    progress.pages += 1  # received: the upstream has answered (the first byte may go)
                    resources = [*page.matches, *page.includes]
                    progress.received += len(resources)
                    progress.spooled += await spool.call(spool.add, resources)
                    notify(progress)
            finally:
                await _close(pages)
        else:
            await self._fill_export(plan, spool, progress, stats, notify)
        await spool.call(spool.finish)

    async def _fill_export(
        self,
        plan: ExtractionPlan,
        spool: Spool,
        progress: Progress,
        stats: ExportStats,
        notify: ProgressCallback,
    ) -> None:
        batch: list[Resource] = []
        resources = self.client.export(plan.export, stats=stats)
        try:
            async for resource in resources:
                batch.append(resource)
                if len(batch) >= EXPORT_BATCH:
                    await self._spool_batch(spool, batch, progress, stats, notify)
                    batch = []
        finally:
            await _close(resources)  # an abandoned export job is still deleted upstream
        await self._spool_batch(spool, batch, progress, stats, notify)

    @staticmethod
    async def _spool_batch(
        spool: Spool, batch: list[Resource], progress: Progress, stats: ExportStats, notify: ProgressCallback
    ) -> None:
        progress.spooled += await spool.call(spool.add, batch)
        progress.received += len(batch)
        progress.pages = stats.files
        notify(progress)


async def _close(iterator: AsyncIterator[Any]) -> None:
    """Stop an async generator now (its clean-up runs), not when it is collected."""
    close = getattr(iterator, "aclose", None)
    if close is not None:
        await close()


# --------------------------------------------------------------------------------------------------
# The disk cache of completed extractions


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
