"""The mapping workers: a spool read back in document order, mapped a batch at a time, as document chunks.

Pipeline level (`bridge/pipeline/`): translate/ maps each batch with the context it references and csd/
builds the elements; a large directory is mapped in worker processes (`mapping_workers`).
"""

from __future__ import annotations

import logging
import multiprocessing
import multiprocessing.connection
import os
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import replace
from datetime import datetime
from enum import StrEnum
from functools import partial
from itertools import islice
from pathlib import Path
from typing import Any, cast

import orjson

from bridge import gc_control, memory
from bridge.csd.writer import (
    device_bytes,
    directory_end,
    directory_start,
    facility_bytes,
    organization_bytes,
    provider_bytes,
    service_bytes,
)
from bridge.model import CsdDocument, Directory, FhirQuery, QueryPlan, Resource, SearchResult
from bridge.pipeline.progress import DIRECTORIES, Progress
from bridge.pipeline.spool import ORGANIZATION, Row, Spool
from bridge.translate import Mappings, from_fhir_results, load_mappings
from bridge.translate.access_profiles import (
    NO_ACTIVITIES,
    Activities,
    filter_document,
    filter_records,
    uses_activity,
)
from bridge.translate.feeds import feeds
from bridge.translate.findings import Finding, Findings
from bridge.translate.select import named_devices

# Entities mapped and written per step of the read-back: one chunk of the streamed document.
BATCH_SIZE = 200
# A directory of at least this many spooled resources is mapped in worker processes (when the deployment has
# any, `mapping_workers`): below it, starting them (about a second) costs more than they save.
PARALLEL_FROM = 20_000
# Batches handed to the workers ahead of the one being written, per worker (bounds memory, keeps them busy).
AHEAD_PER_WORKER = 2
# A stopped pool's workers still running this long after (a batch being mapped) are terminated.
STOP_WITHIN_S = 3.0
# How often a worker checks that the process that started it still runs (it exits when that one died).
PARENT_CHECK_S = 0.5
# While a batch's result is awaited, how often the pool's manager thread is woken to look at its workers
# (`_result`): CPython 3.11's pool can miss the death of a worker it has just started.
WAKE_POOL_S = 1.0
log = logging.getLogger(__name__)


class LogEvent(StrEnum):
    """What the mapping pool logs (house style: events are enum members)."""

    WORKERS_TERMINATED = "mapping-workers-terminated"


_BUILDERS: dict[Directory, Callable[[Any], Any]] = {
    Directory.ORGANIZATION: organization_bytes,
    Directory.SERVICE: service_bytes,
    Directory.FACILITY: facility_bytes,
    Directory.PROVIDER: provider_bytes,
    Directory.DEVICE: device_bytes,
}


class SpoolWriter:
    """The read-back: each directory, entity by entity in document order, mapped a batch at a time with the
    context each batch needs, as chunks of the document. `next_chunk` runs in the spool's thread.

    With `workers` > 0, a directory of at least PARALLEL_FROM resources is mapped in that many worker
    processes: this thread reads the batches and their context from the spool and hands them out, a few
    ahead, and writes the results in order; anything a worker reports (findings) is merged here.

    `views` (access profile, progress) writes the same spool for several access profiles in one pass: each
    batch read, parsed and mapped once, then filtered and written per profile (`next_chunks`, one chunk per
    view); without it, the one view is (`profile`, `progress`)."""

    def __init__(
        self,
        spool: Spool,
        mappings: Mappings,
        now: datetime,
        progress: Progress,
        *,
        workers: int = 0,
        profile: int | None = None,
        views: Sequence[tuple[int | None, Progress]] | None = None,
    ) -> None:
        views = views or ((profile, progress),)
        # the clients' ROR access profiles (None: unfiltered), given to the workers
        self._profiles = tuple(view_profile for view_profile, _ in views)
        self._progresses = tuple(view_progress for _, view_progress in views)
        self._spool = spool
        self._mappings = mappings
        self._now = now
        self._workers = workers
        # The cyclic collector paused over the whole read-back (gc_control.Hold), collecting only once the
        # young objects pass gc_control.YOUNG_LIMIT: a batch leaves no garbage cycles, so a collection after
        # every batch walked what outlives it for nothing (~15 % of an in-process read-back; issue 13 item 4).
        self._paused = gc_control.Hold()
        spool.on_close(self._paused.close)  # a writer dropped half-way: given back with the spool
        self._chunks = self._generate()

    def next_chunk(self) -> bytes | None:
        """The next chunk of the (first) view's document, None at its end."""
        chunks = self.next_chunks()
        return None if chunks is None else chunks[0]

    def next_chunks(self) -> tuple[bytes, ...] | None:
        """The next chunk of each view's document (in the order of `views`), None at their end."""
        with self._spool.lock:
            return next(self._chunks, None)

    def _generate(self) -> Iterator[tuple[bytes, ...]]:
        try:
            for directory in DIRECTORIES:
                # a directory may be built from several resource types (facilities: internal organisations,
                # then the offers as unités élémentaires), each in turn
                types = dict.fromkeys(
                    t.resource for t in self._mappings.entities.values() if t.kind.directory is directory
                )
                yield (directory_start(directory),) * len(self._profiles)
                for resource_type in types:
                    yield from self._directory(directory, resource_type)
                yield (directory_end(directory),) * len(self._profiles)
        finally:
            # The pause ends with the document, or when the generator is closed (a writer dropped half-way;
            # else when its spool closes).
            self._paused.close()

    def _directory(self, directory: Directory, resource_type: str) -> Iterator[tuple[bytes, ...]]:
        parallel = self._workers > 0 and self._spool.count_rows(resource_type, directory) >= PARALLEL_FROM
        pool = (
            self._spool.mapping_pool(partial(start_pool, self._workers, self._mappings)) if parallel else None
        )
        offers_at = resource_type == "Location"
        below = resource_type == ORGANIZATION and directory is Directory.FACILITY
        pending: deque[Future[_Mapped]] = deque()
        # rows come sorted by entityID: a repeated entityID is written once (per view)
        last: list[str | None] = [None] * len(self._profiles)
        tables = [
            t
            for t in self._mappings.entities.values()
            if t.kind.directory is directory and t.resource == resource_type
        ]
        # A record that reads nothing besides its own resource (no feed, translate/feeds.py: a csd:service is
        # its offer alone) needs no context: none is read, sent or parsed (a fifth of the read-back's context
        # was the service directory's, issue 13 item 4). A device is made of its lieu alone too, but its batch
        # needs the offers given at the lieux to filter the devices as a client's access profile filters their
        # UEs.
        filtered = directory is Directory.DEVICE and any(self._mappings.access.of(p) for p in self._profiles)
        bare = not filtered and not any(feeds(t) for t in tables)
        # Only the rows some table of this directory maps are read back, batched and mapped: an organisation
        # directory maps the EJ / EG (a sixth of the organisations), the facility directory the internal
        # organisations, and a row no table maps makes no entity (issue 13 item 4). So only those read what
        # is below them (an internal organisation's typeActivity): an EJ's or EG's subtree is no facility's
        # context.
        for batch in _whole_groups(self._spool.rows(resource_type, directory, tables)):
            keys = [key for key, _, _ in batch]
            self._paused.step()
            # The context as stored, parsed with the batch (in the worker, or here): nothing parsed is kept
            # for the next batches. A cache of the parsed context (8 MiB of its JSON) cost ~35 MiB and saved
            # no CPU once an organisation's context became its identity alone (docs/performance-journal.md).
            context = [] if bare else self._spool.context(keys, offers_at=offers_at, below=below)
            if pool is None:
                # The collector paused over the parse as well as the mapping (bridge/gc_control.py): parsing
                # the context made most of the full collections, each walking every live object (issue 13).
                with gc_control.batch():
                    views = map_batch_views(
                        self._mappings, directory, resource_type, batch, context, self._now, self._profiles
                    )
                yield self._emit(directory, views, last)
                continue
            pending.append(
                pool.submit(
                    _map_in_worker, directory, resource_type, batch, context, self._now, self._profiles
                )
            )
            if len(pending) >= AHEAD_PER_WORKER * self._workers:
                yield self._emit_mapped(directory, pending.popleft(), last, pool)
        while pending:
            yield self._emit_mapped(directory, pending.popleft(), last, pool)

    def _emit_mapped(
        self,
        directory: Directory,
        future: Future[_Mapped],
        last: list[str | None],
        pool: ProcessPoolExecutor | None,
    ) -> tuple[bytes, ...]:
        views, findings = _result(future, pool)  # a worker's failure (or death) fails the answer here
        self._mappings.findings.merge(findings)
        return self._emit(directory, views, last)

    def _emit(
        self, directory: Directory, views: list[list[tuple[str, bytes]]], last: list[str | None]
    ) -> tuple[bytes, ...]:
        chunks = []
        for number, (parts, progress) in enumerate(zip(views, self._progresses, strict=True)):
            kept = []
            for entity_id, element in parts:
                if entity_id != last[number]:
                    kept.append(element)
                    last[number] = entity_id
            progress.written[directory] += len(kept)
            chunks.append(b"".join(kept))
        return tuple(chunks)


def _whole_groups(rows: Iterable[Any]) -> Iterator[list[Any]]:
    """The rows in batches of about BATCH_SIZE that never split rows of one spooled entityID: the situations
    of one professional (spooled under their Practitioner, `spool.spooled_entity_id`) make one csd:provider,
    which the engine can only merge within a batch."""
    held: list[Any] = []
    source = iter(rows)
    while part := list(islice(source, BATCH_SIZE)):
        held += part
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


# A mapped batch: per view, (entityID, element bytes) in row order; and the findings counted while mapping it.
_Mapped = tuple[list[list[tuple[str, bytes]]], dict[tuple[Finding, str], int]]


def map_batch(
    mappings: Mappings,
    directory: Directory,
    resource_type: str,
    rows: Sequence[Row],
    context: Sequence[bytes],
    now: datetime,
    profile: int | None = None,
) -> list[tuple[str, bytes]]:
    """One batch of spooled rows (`key, entity_id, body`) mapped with its context (stored JSON): the element
    of each entity, in row order. An entity the engine did not write (e.g. a provider whose Practitioner was
    not received, reported by the engine) has no element."""
    return map_batch_views(mappings, directory, resource_type, rows, context, now, (profile,))[0]


def map_batch_views(
    mappings: Mappings,
    directory: Directory,
    resource_type: str,
    rows: Sequence[Row],
    context: Sequence[bytes],
    now: datetime,
    profiles: Sequence[int | None],
) -> list[list[tuple[str, bytes]]]:
    """`map_batch` for several access profiles at once: the batch parsed and mapped once, then filtered and
    built per profile (an element a profile's filter leaves as it is, built once)."""
    query = FhirQuery(resource_type, (), purpose="extraction")
    plan = QueryPlan(function="extraction", queries=(query,), directories=frozenset({directory}))
    resources, includes = parse_batch(rows, context)
    result = SearchResult(query, matches=resources, includes=includes)
    # The batch's own entities only: an organisation's parent in the context is written in its turn; but the
    # resources of the context whose entityID is a row's (the other situations of a professional) merge in.
    keys = [key for key, _, _ in rows]
    keys += _merged_in(mappings, directory, resource_type, resources, result.includes)
    document = from_fhir_results(mappings, plan, [result], now=now, selected=keys)
    # What the client's access profile may not see is removed here (translate/access_profiles.py). A
    # provider's champ d'activité is its units': the offers in the batch's context, mapped as the facilities
    # they are.
    activities = NO_ACTIVITIES
    if directory is Directory.PROVIDER and any(
        uses_activity(mappings.access, profile, "provider") for profile in profiles
    ):
        offers = [f"HealthcareService/{r.get('id')}" for r in result.includes if _is_offer(r)]
        units = QueryPlan("extraction", (query,), frozenset({Directory.FACILITY}))
        quiet = replace(mappings, findings=Findings())  # counted once, when the units are written
        activities = Activities.of_document(
            from_fhir_results(quiet, units, [result], now=now, selected=offers)
        )
    # A lieu's devices are seen as the UEs given there show them (select.named_devices): for a client whose
    # access profile filters the UEs, the offers of the batch's context mapped as their UEs, filtered alike.
    units_of: CsdDocument | None = None
    if directory is Directory.DEVICE and document.devices and any(mappings.access.of(p) for p in profiles):
        offers = [f"HealthcareService/{r.get('id')}" for r in result.includes if _is_offer(r)]
        units = QueryPlan("extraction", (query,), frozenset({Directory.FACILITY}))
        quiet = replace(mappings, findings=Findings())  # counted once, when the units are written
        units_of = from_fhir_results(quiet, units, [result], now=now, selected=offers)
    build = _BUILDERS[directory]
    built: dict[int, tuple[Any, bytes]] = {}  # by the record's identity: what a filter left unchanged

    def element(record: Any) -> bytes:
        known = built.get(id(record))
        if known is None:
            known = built[id(record)] = (record, build(record))  # the record kept alive
        return known[1]

    views = []
    for profile in profiles:
        kept = filter_records(
            mappings.access, profile, _KIND[directory], _records(document, directory), activities
        )
        if units_of is not None and mappings.access.of(profile):
            seen = filter_document(mappings.access, profile, replace(units_of, devices=kept))
            kept = list(named_devices(seen).devices)
        records = {record.entity_id: record for record in kept}
        order = [entity_id for _, entity_id, _ in rows if entity_id is not None and entity_id in records]
        # an entity whose entityID is not its row's (a professional, keyed by the RPPS of its situations'
        # rows)
        placed = set(order)
        order += [entity_id for entity_id in records if entity_id not in placed]
        views.append([(entity_id, element(records[entity_id])) for entity_id in dict.fromkeys(order)])
    return views


def parse_batch(rows: Sequence[Row], context: Sequence[bytes]) -> tuple[list[Resource], list[Resource]]:
    """A batch's rows and its context, as stored (JSON), parsed: what a mapping worker does before the engine
    (also what `bench_extract --floor` measures alone, tests/bench/floor_serve.py)."""
    return [orjson.loads(body) for _, _, body in rows], [orjson.loads(item) for item in context]


def start_pool(workers: int, mappings: Mappings) -> ProcessPoolExecutor:
    """`workers` mapping processes, each loading the tables of `mappings`' directory once; each exits by
    itself when this process dies (even killed); `shutdown` ends them within STOP_WITHIN_S (MappingPool)."""
    return MappingPool(
        max_workers=workers,
        # spawn: a fork of this multi-threaded process could inherit a lock held by another thread.
        mp_context=multiprocessing.get_context("spawn"),
        initializer=_start_worker,
        initargs=(str(mappings.directory), os.getpid()),
    )


class MappingPool(ProcessPoolExecutor):
    """A process pool whose `shutdown` never leaves a worker running: the batches queued are dropped (whatever
    `cancel_futures` says), and a worker still running STOP_WITHIN_S later (a batch being mapped, a stuck one)
    is terminated, then killed, by a thread that the interpreter waits for at exit. Once they have all ended,
    that thread closes this process's copy of the results pipe's writing end: a manager thread blocked
    reading a result a worker was killed while writing then reads the pipe's end and stops, instead of
    blocking the interpreter's exit for ever (concurrent.futures joins it; seen in `make test`)."""

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        processes = list((self._processes or {}).values())  # emptied by the shutdown
        results = getattr(self, "_result_queue", None)  # dropped by the shutdown
        super().shutdown(wait=wait, cancel_futures=True)
        if processes:
            threading.Thread(
                target=_end_workers, args=(processes, results), name="mapping-pool-stop", daemon=False
            ).start()


def _result(future: Future[_Mapped], pool: ProcessPoolExecutor | None) -> _Mapped:
    """`future.result()`, waking the pool's manager thread every WAKE_POOL_S meanwhile. CPython 3.11's
    `submit` wakes that thread before it starts a new worker, so the thread can wait on a list of workers
    without it; if that worker then dies (killed, out of memory) with the batch it took, nothing wakes the
    thread again and the batch is awaited forever (seen once in `make test`: a hung extraction kept alive by
    its heartbeats). Woken, the thread looks at every worker, finds the dead one and fails the pool
    (BrokenProcessPool, raised here). A worker killed while it writes its result leaves the thread blocked
    reading the rest of that message, which the other workers keep open (seen once in `make test` too): a
    worker found dead at two wake-ups in a row, the batch still not there, fails the answer here."""
    dead_before = False
    while True:
        try:
            return future.result(timeout=WAKE_POOL_S)
        except TimeoutError:
            wakeup = getattr(pool, "_executor_manager_thread_wakeup", None)
            if wakeup is not None:
                wakeup.wakeup()
            exit_code = _dead_worker(pool)
            if exit_code is not None and dead_before:
                raise BrokenProcessPool(f"a mapping worker died (exit code {exit_code})") from None
            dead_before = exit_code is not None


def _dead_worker(pool: ProcessPoolExecutor | None) -> int | None:
    """The exit code of a worker of `pool` that has ended (a pool's workers live as long as it), else None."""
    try:
        processes = list((getattr(pool, "_processes", None) or {}).values())
    except RuntimeError:  # changed by the pool's manager thread meanwhile: looked at again next time
        return None
    return next((p.exitcode for p in processes if p.exitcode is not None), None)


def _end_workers(processes: Sequence[multiprocessing.process.BaseProcess], results: Any = None) -> None:
    """Wait up to STOP_WITHIN_S for the workers to end; terminate those still running, kill the stubborn;
    then close this process's writing end of `results` (the pool's results queue, MappingPool)."""
    deadline = time.monotonic() + STOP_WITHIN_S
    running = {p.sentinel: p for p in processes if p.exitcode is None}
    while running and (left := deadline - time.monotonic()) > 0:
        for ended in multiprocessing.connection.wait(list(running), timeout=left):
            running.pop(cast(int, ended))  # a sentinel given: an int
    if running:
        log.warning(
            "%s %d still running %.0f s after the stop",
            LogEvent.WORKERS_TERMINATED,
            len(running),
            STOP_WITHIN_S,
        )
        for process in running.values():
            process.terminate()
        for process in running.values():
            process.join(1.0)
            if process.exitcode is None:
                process.kill()
                process.join(1.0)
    # No worker writes any more: the pipe's end reaches a reader blocked on a partial result (the pool never
    # writes to it itself; a no-op when the shutdown closed it already, `wait=True`).
    writer = getattr(results, "_writer", None)
    if writer is not None:
        writer.close()


def _is_offer(resource: Resource) -> bool:
    return resource.get("resourceType") == "HealthcareService"


def _merged_in(
    mappings: Mappings,
    directory: Directory,
    resource_type: str,
    resources: Sequence[Resource],
    context: Sequence[Resource],
) -> list[str]:
    """`Type/id` of the context's resources of the rows' type that name the same entityID target as a row
    (a table whose @entityID is read from a reference: its records merge per target)."""
    sources = [
        rule.source
        for table in mappings.entities.values()
        if table.resource == resource_type and table.kind.directory is directory
        for rule in table.rules
        if rule.target == "@entityID" and rule.source is not None and rule.transform.reads
    ]
    if not sources:
        return []
    targets = {value for source in sources for r in resources for value in source.select(r)}
    return [
        f"{c.get('resourceType')}/{c.get('id')}"
        for c in context
        if c.get("resourceType") == resource_type and any(v in targets for s in sources for v in s.select(c))
    ]


# The mapping tables of a worker process, loaded once when it starts.
_worker_mappings: Mappings | None = None
# A worker's collector, paused from its first batch on for good (the worker maps batches and does nothing
# else): it collects only once the young objects pass gc_control.YOUNG_LIMIT (issue 13 item 4).
_worker_pause = gc_control.Hold()


def _start_worker(directory: str, parent: int) -> None:
    global _worker_mappings
    # The worker ends with the process that started it, even a killed one (no shutdown then): else it would
    # wait for batches forever (it holds the writing end of its own queue). A thread polling the parent:
    # Linux's PR_SET_PDEATHSIG would follow the parent's thread that started the worker, not the process.
    threading.Thread(target=_exit_with, args=(parent,), name="parent-watch", daemon=True).start()
    # A worker's findings are counted and sent back with each batch; the parent logs them (Findings.merge).
    logging.getLogger(Finding.__module__).setLevel(logging.WARNING)
    memory.cap_arenas()
    _worker_mappings = load_mappings(Path(directory))
    gc_control.freeze_start_up()  # the tables out of the collector's reach, as in `serve`


def _exit_with(parent: int) -> None:
    """Exit this process once `parent` is no longer its parent (it died: this one was re-parented)."""
    while os.getppid() == parent:
        time.sleep(PARENT_CHECK_S)
    os._exit(1)


def _map_in_worker(
    directory: Directory,
    resource_type: str,
    rows: Sequence[Row],
    context: Sequence[bytes],
    now: datetime,
    profiles: Sequence[int | None] = (None,),
) -> _Mapped:
    mappings = _worker_mappings
    if mappings is None:
        raise RuntimeError("mapping worker started without its mapping tables")
    before = mappings.findings.counts()
    _worker_pause.step()
    with gc_control.batch():  # the batch's JSON parsed with the collector paused, as it is mapped
        views = map_batch_views(mappings, directory, resource_type, rows, context, now, profiles)
    after = mappings.findings.counts()
    # What the batch freed goes back to the system now: glibc keeps the large blocks of parsed JSON freed
    # between long-lived ones, and the worker's RSS crept up to its largest batches' (issue 13 item 4).
    memory.release()
    return views, {key: n - before.get(key, 0) for key, n in after.items() if n != before.get(key, 0)}


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
    if directory is Directory.DEVICE:
        return document.devices
    return document.providers
