"""Changes since a date at flat memory (ITI-74 getModificationsRequest, establishments-updated-since): any
number of them, never in part.

Pipeline level (`bridge/pipeline/`): the pages of the delta searches (what
changed, with the includes translate/feeds.py derives from the entity tables) go to a disk spool
(pipeline/spool.py: each resource once) that marks the changed resources (the matches) and keeps every
reference by element; then the entities whose record reads a changed resource for its content (their feeds,
followed in the spool) are the answer (ITI-74), or the establishments on their organisation chains
(establishments-updated-since); the answer's entities are searched again by `_id` with everything their
records read (feeds.completion_searches; what a backward feed reads by the chained search the national API
declares, feeds.CHAINED), then mapped a batch at a time, per directory, with what they
reference read back from the spool (pipeline/workers.py SpoolWriter), and their elements written to a
temporary file.
Only once that file is complete does the edge send anything (CsdResponse.directories): an upstream failure at
any point before is still a clean SOAP fault. Memory is the spool's page cache plus one batch; disk is about
the size of what the searches returned plus the answer.
"""

from __future__ import annotations

import contextlib
import logging
import tempfile
from collections.abc import AsyncIterator, Collection
from datetime import UTC, datetime
from functools import partial
from typing import BinaryIO

from bridge.fhir.client import FhirClient, Page
from bridge.fhir.resilience import Deadline
from bridge.model import CodedType, QueryPlan
from bridge.pipeline.change_spools import ChainSpool, DeltaSpool
from bridge.pipeline.progress import Progress, stop_walk
from bridge.pipeline.workers import SpoolWriter
from bridge.translate import FunctionSpec, Mappings
from bridge.translate.delta import ORGANIZATION_CHAINS

log = logging.getLogger(__name__)


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
    progress = Progress(request=plan.function)
    spool = (ChainSpool if spec.delta == ORGANIZATION_CHAINS else DeltaSpool)(mappings, spec, region_tags)
    answer: BinaryIO | None = None
    try:
        # One search's deadline per query: the queries of a delta are walked one after the other.
        deadline = Deadline(client.deadline_s * len(plan.queries))
        async for _number, page in _pages(client, plan, deadline):
            progress.pages += 1
            progress.received += len(page.matches) + len(page.includes)
            progress.spooled += await spool.call(
                partial(spool.add_page, changes=True), page.matches, page.includes
            )
        completion = await spool.call(spool.settle)
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
            await stop_walk(pages)
        return
    partitioned = client.iter_partitioned(plan.queries, deadline=deadline)
    try:
        async for number, page in partitioned:
            yield number, page
    finally:
        await stop_walk(partitioned)
