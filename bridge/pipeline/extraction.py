"""The legacy REST extraction (TR-Récupération Extraction): the national or a regional offer as one streamed
`csd:CSD` document, at flat memory. Pipeline level (`bridge/pipeline/`): fhir/ fetches (`$export` or
searches) into the spool (pipeline/spool.py), the mapping workers (pipeline/workers.py) write the directories.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from enum import StrEnum
from urllib.parse import urlencode

import orjson

from bridge import memory
from bridge.csd.writer import document_end, document_start
from bridge.errors import ConfigurationError, ExtractionBusyError, InvalidParameterError
from bridge.fhir.bulk_export import ExportRequest, ExportStats
from bridge.fhir.client import FhirClient
from bridge.fhir.resilience import Deadline
from bridge.model import FhirQuery, RequestParams, Resource
from bridge.pipeline.progress import Progress, ProgressCallback, Source, stop_walk
from bridge.pipeline.spool import OFFER, Spool
from bridge.pipeline.workers import SpoolWriter
from bridge.translate import FunctionSpec, Mappings
from bridge.translate.plan import plan_queries, region_tags, tags_of

log = logging.getLogger(__name__)

# The stored function whose criteria an extraction accepts and whose FHIR query (criteria + the "offre
# complète" include set, ror-fhir-api §5 (A) 2) it sends: an extraction is that search, complete and streamed.
OFFER_SEARCH = "offer-search"
# Paging parameters of offer-search that mean nothing for a whole extraction.
PAGING = frozenset({"start", "max"})
# Resources spooled per SQLite transaction from an `$export` (search pages are spooled page by page).
EXPORT_BATCH = 500
# Whitespace sent this often while the upstream answer is being spooled, so that proxies and client read
# timeouts see a live connection (whitespace between elements is insignificant: the document stays valid).
HEARTBEAT_S = 10.0


class LogEvent(StrEnum):
    """What the extraction logs (house style: events are enum members, never free text)."""

    STARTED = "extraction-started"
    SPOOLED = "extraction-spooled"
    DONE = "extraction-done"


@dataclass(frozen=True, slots=True)
class ExtractionRequest:
    """What to extract: the national offer or one legacy region's, restricted by offer-search criteria."""

    region: str | None  # lower-case code of mappings/regions.csv; None = national
    params: tuple[tuple[str, str], ...]  # offer-search criteria (ME 2.4 names), one value each, sorted
    # Its upstream questions, planned once by `extraction_request` (not part of what names the request).
    plan: ExtractionPlan | None = field(default=None, compare=False, repr=False)

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
    found = mappings.region(region) if region is not None else None  # the one check of the region
    code = found.code.lower() if found is not None else None
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
    # Planned now, once: the resolvers refuse unusable values before any byte is sent.
    tags = tags_of(mappings, found) if found is not None else None
    return replace(request, plan=_plan(mappings, request, tags))


@dataclass(frozen=True, slots=True)
class ExtractionPlan:
    """The upstream questions of one extraction: the search (criteria, région-source scope and the "offre
    complète" includes) and the equivalent `$export` (`_typeFilter` = the same criteria)."""

    query: FhirQuery
    export: ExportRequest


def extraction_plan(mappings: Mappings, request: ExtractionRequest) -> ExtractionPlan:
    """The offer-search query of the request's criteria and region (translate/plan.py), and its `$export`."""
    return _plan(mappings, request, region_tags(mappings, request.region))


def _plan(mappings: Mappings, request: ExtractionRequest, tags: tuple[str, ...] | None) -> ExtractionPlan:
    spec = offer_search(mappings)
    plan = plan_queries(mappings, spec, RequestParams(extra=request.params), tags)
    if len(plan.queries) != 1 or plan.queries[0].resource_type != OFFER:
        raise ConfigurationError(f"functions.yaml `{OFFER_SEARCH}` must send one HealthcareService search")
    query = plan.queries[0]
    criteria = [(n, v) for n, v in query.params if not n.startswith(("_include", "_revinclude"))]
    filters = (f"{OFFER}?{urlencode(criteria)}",) if criteria else ()
    return ExtractionPlan(query, ExportRequest(types=(OFFER,), type_filters=filters))


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
            plan = request.plan if request.plan is not None else extraction_plan(self.mappings, request)
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
            # The fetch's freed memory (pages, export files: decoded and spooled) goes back to the system
            # before the read-back starts its mapping workers, not at the next periodic release (issue 13).
            await spool.call(memory.release)
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
            writer = SpoolWriter(spool, self.mappings, now, progress, workers=self.workers, profile=profile)
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
                await stop_walk(pages)
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
            await stop_walk(resources)  # an abandoned export job is still deleted upstream
        await self._spool_batch(spool, batch, progress, stats, notify)

    @staticmethod
    async def _spool_batch(
        spool: Spool, batch: list[Resource], progress: Progress, stats: ExportStats, notify: ProgressCallback
    ) -> None:
        progress.spooled += await spool.call(spool.add, batch)
        progress.received += len(batch)
        progress.pages = stats.files
        notify(progress)
