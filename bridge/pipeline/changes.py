"""Changes since a date at flat memory (ITI-74 getModificationsRequest, establishments-updated-since): any
number of them, never in part.

Pipeline level (`bridge/pipeline/`): the pages of the delta searches (what
changed, with the includes translate/feeds.py derives from the entity tables) go to a disk spool
(pipeline/spool.py: each resource once) that marks the changed resources (the matches) and keeps every
reference by element; then the entities whose record reads a changed resource for its content (their feeds,
followed in the spool) are the answer (ITI-74), or the establishments on their organisation chains
(establishments-updated-since); the answer's entities are searched again by `_id` with everything their
records read (feeds.completion_searches; what a backward feed reads by the chained search the national API
declares, feeds.CHAINED) — unless the delta searches matched every resource of every type those records read
(a first synchronisation: the completion would read them all again) —, then mapped a batch at a time, per
directory, with what they reference read back from the spool (pipeline/workers.py SpoolWriter), and their
elements written to a temporary file.
Only once that file is complete does the edge send anything (CsdResponse.directories): an upstream failure at
any point before is still a clean SOAP fault. Memory is the spool's page cache plus one batch; disk is about
the size of what the searches returned plus the answer.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import tempfile
from collections import deque
from collections.abc import AsyncIterator, Collection, Sequence
from dataclasses import replace
from datetime import UTC, datetime
from enum import StrEnum
from functools import partial
from typing import BinaryIO

from bridge import gc_control
from bridge.errors import UpstreamError
from bridge.fhir.client import FhirClient, Page
from bridge.fhir.resilience import Deadline
from bridge.model import CodedType, FhirQuery, QueryPlan
from bridge.pipeline.change_spools import ChainSpool, DeltaSpool
from bridge.pipeline.progress import Progress, stop_walk
from bridge.pipeline.workers import SpoolWriter
from bridge.translate import FunctionSpec, Mappings
from bridge.translate.delta import ORGANIZATION_CHAINS

log = logging.getLogger(__name__)

# Pages of the delta searches received and handed to the spool's thread but not spooled yet (each is held in
# memory until then): the walk goes on while the spool writes.
SPOOLING_AHEAD = 2


class LogEvent(StrEnum):
    """What the changes since a date log (house style: events are enum members, never free text)."""

    COMPLETION_SKIPPED = "completion-skipped"


async def spooled_delta(
    mappings: Mappings,
    client: FhirClient,
    plan: QueryPlan,
    spec: FunctionSpec,
    region_tags: Collection[str] | None,
    *,
    workers: int = 0,
    activities: dict[str, tuple[CodedType, ...]] | None = None,
    profile: int | None = None,
) -> tuple[BinaryIO, Progress]:
    """The five directories of the delta answer, written to an open temporary file (deleted when closed),
    and the counts of what was received and written; `activities`, when given, receives the champs
    d'activité of the changed offers per EG (organization-chains: TR-Notif). Raises the first upstream
    failure, having written nothing anyone can see."""
    answers = await spooled_deltas(
        mappings, client, plan, spec, region_tags, (profile,), workers=workers, activities=activities
    )
    return answers[profile]


async def spooled_deltas(
    mappings: Mappings,
    client: FhirClient,
    plan: QueryPlan,
    spec: FunctionSpec,
    region_tags: Collection[str] | None,
    profiles: Collection[int | None],
    *,
    workers: int = 0,
    activities: dict[str, tuple[CodedType, ...]] | None = None,
) -> dict[int | None, tuple[BinaryIO, Progress]]:
    """`spooled_delta` for several ROR access profiles at once: the upstream read and spooled once (their
    upstream requests must not differ), each batch mapped once, and one answer file written per profile,
    each filtered by it (in one pass: SpoolWriter views)."""
    progress = Progress(request=plan.function)
    spool = (ChainSpool if spec.delta == ORGANIZATION_CHAINS else DeltaSpool)(mappings, spec, region_tags)
    answers: dict[int | None, tuple[BinaryIO, Progress]] = {}
    try:
        # One search's deadline per query: the queries of a delta are walked one after the other.
        deadline = Deadline(client.deadline_s * len(plan.queries))
        # A page is spooled (in the spool's thread) while the next ones are received and parsed: at most
        # SPOOLING_AHEAD pages handed over and not spooled yet.
        spooling: deque[asyncio.Future[int]] = deque()
        try:
            async for _number, page in _pages(client, plan, deadline):
                progress.pages += 1
                progress.received += len(page.matches) + len(page.includes)
                if len(spooling) >= SPOOLING_AHEAD:
                    progress.spooled += await spooling.popleft()
                spooling.append(
                    asyncio.ensure_future(
                        spool.call(partial(spool.add_page, changes=True), page.matches, page.includes)
                    )
                )
            while spooling:
                progress.spooled += await spooling.popleft()
        finally:
            # a failure: the pages handed over end before the spool closes (its thread runs them first)
            await asyncio.gather(*spooling, return_exceptions=True)
        completion = await spool.call(spool.settle)
        if completion and await _matched_everything(client, plan, spool, region_tags, len(completion)):
            # The spool already holds every resource the completion would search again (README "Load").
            log.info("%s %s: %d searches", LogEvent.COMPLETION_SKIPPED, plan.function, len(completion))
            completion = []
        if completion:
            # As many search deadlines as the completion runs rounds of concurrent searches.
            rounds = 1 + len(completion) // max(1, client.concurrency)
            pages = client.iter_pages_unordered(completion, deadline=Deadline(client.deadline_s * rounds))
            try:
                async for page in pages:
                    progress.pages += 1
                    progress.received += len(page.matches) + len(page.includes)
                    progress.spooled += await spool.call(
                        partial(spool.add_page, changes=False), page.matches, page.includes
                    )
            finally:
                await stop_walk(pages)
        await spool.call(spool.finish)
        if activities is not None and isinstance(spool, ChainSpool):
            activities.update(await spool.call(spool.activities))
        now = datetime.now(UTC)
        views: list[tuple[int | None, Progress]] = []
        for profile in sorted(profiles, key=lambda p: -1 if p is None else p):
            written = replace(
                progress, phase="writing", written=dict(progress.written), expected=dict(progress.expected)
            )
            file: BinaryIO = tempfile.TemporaryFile(prefix="ror-bridge-iti74-")  # noqa: SIM115 (to the edge)
            answers[profile] = (file, written)
            views.append((profile, written))
        writer = SpoolWriter(spool, mappings, now, progress, workers=workers, views=views)
        await _write(spool, writer, [(answers[profile][0], written) for profile, written in views])
        for _, written in views:
            written.phase = "done"
        return answers
    except BaseException:
        for made, _ in answers.values():
            made.close()
        raise
    finally:
        with contextlib.suppress(Exception):
            await spool.aclose()


async def _write(
    spool: DeltaSpool, writer: SpoolWriter, answers: Sequence[tuple[BinaryIO, Progress]]
) -> None:
    """The writer's chunks into the answer files (one per view), a step at a time in the spool's thread."""

    def step() -> bool:
        parts = writer.next_chunks()
        if parts is None:
            return False
        for part, (file, progress) in zip(parts, answers, strict=True):
            file.write(part)
            progress.bytes += len(part)
        return True

    # The cyclic collector paused for the whole writing (bridge/gc_control.py), the answer files' writes
    # between the steps included, as the read-back's Hold pauses it over the batches (workers.SpoolWriter).
    with gc_control.batch():
        while await spool.call(step):
            pass
    for file, _ in answers:
        await spool.call(file.flush)


# What a delta search may carry besides its date for its matches to be every resource of its type when their
# number is the type's `Bundle.total` (no region tag, no other filter).
_UNFILTERED = ("_lastUpdated", "_count", "_include", "_revinclude")


async def _total(client: FhirClient, resource_type: str) -> int | None:
    """`Bundle.total` of a one-result search of every resource of the type (None when the API gives none, or
    fails: the completion then runs as usual)."""
    query = FhirQuery(resource_type, (("_count", "1"),), purpose="how many there are")
    try:
        _, body = await client.exchange.get_json(client.url_for(query), client.new_deadline())
    except UpstreamError:
        return None
    total = body.get("total")
    return total if isinstance(total, int) and not isinstance(total, bool) else None


async def _matched_everything(
    client: FhirClient,
    plan: QueryPlan,
    spool: DeltaSpool,
    region_tags: Collection[str] | None,
    searches: int,
) -> bool:
    """Whether the delta searches matched every resource of every type the completion searches could bring
    (a change set since before the directory's oldest change: a first synchronisation): their matches, each
    once, are as many as each type's `Bundle.total` asked afterwards. The completion would then only read
    the same resources again. Counted after the delta walk, so a resource created meanwhile makes the counts
    differ and the completion runs as usual. Asked only when the completion has more than twice as many
    `searches` as there are types to count."""
    if region_tags is not None:
        return False
    types = [query.resource_type for query in plan.queries]
    unfiltered = all(
        name.partition(":")[0] in _UNFILTERED for query in plan.queries for name, _ in query.params
    )
    needed = sorted(spool.completion_types())
    if not unfiltered or len(set(types)) != len(types) or not set(needed) <= set(types):
        return False
    if searches <= 2 * len(needed):
        return False  # the totals would cost as much as a good part of the completion: not worth the risk
    totals = await asyncio.gather(*(_total(client, resource_type) for resource_type in needed))
    matched = await spool.call(spool.matched, needed)
    return all(total is not None and matched[t] >= total for t, total in zip(needed, totals, strict=True))


async def _pages(client: FhirClient, plan: QueryPlan, deadline: Deadline) -> AsyncIterator[tuple[int, Page]]:
    """Every page of the plan's queries with the number of its query. When each query searches its own
    resource type (functions.yaml `modifications` does), the pages come in arrival order and the client
    remembers little across them (FhirClient.iter_pages_unordered: flat memory; a repeat is harmless, the
    spool keeps each resource once, and an include repeated byte for byte is left out, the spool has it);
    else in query order, each query's keys remembered (iter_partitioned)."""
    types = [query.resource_type for query in plan.queries]
    if len(set(types)) == len(types):
        numbers = {resource_type: number for number, resource_type in enumerate(types)}
        pages = client.iter_pages_unordered(plan.queries, deadline=deadline)
        try:
            async for page in pages:
                if page.matches:  # includes come with matches only
                    yield numbers[str(page.matches[0].get("resourceType"))], page
        finally:
            await stop_walk(pages)
        return
    partitioned = client.iter_partitioned(plan.queries, deadline=deadline)
    try:
        async for number, page in partitioned:
            yield number, page
    finally:
        await stop_walk(partitioned)
