"""One CSD transaction: plan (translate/) → fetch (fhir/) → map (translate/) → a CSD document (pipeline/).

The pipeline holds no mapping logic and no wire format: it sequences the parts and runs the FHIR
queries of a plan concurrently.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Hashable
from dataclasses import dataclass
from enum import StrEnum
from typing import BinaryIO

from bridge import ns
from bridge.client_profile import current_profile
from bridge.errors import UnknownEntityError
from bridge.fhir.client import FhirClient
from bridge.model import (
    CodedType,
    CsdDocument,
    CsdRequest,
    CsdResponse,
    Directory,
    FhirQuery,
    SearchResult,
)
from bridge.pipeline.changes import spooled_deltas
from bridge.pipeline.coalesce import SharedGate
from bridge.pipeline.progress import Progress, stop_walk
from bridge.pipeline.request_plan import TransactionPlan, plan_transaction, scope_of
from bridge.translate import Mappings, from_fhir_results
from bridge.translate.access_profiles import filter_document, restrict_document
from bridge.translate.plan import plan_queries
from bridge.translate.resolvers import extra_value
from bridge.translate.select import named_devices, page_upstream, select_records

log = logging.getLogger(__name__)


class LogEvent(StrEnum):
    """What the pipeline logs (house style: events are enum members, never free text)."""

    TRANSACTION_DONE = "transaction-done"


# What a ROR v2.4 profile reading names, for the "not found" error.
_PROFILE_ENTITIES = {
    ns.ROR_READ_ESTABLISHMENT: "establishment (id_etablissement)",
    ns.ROR_READ_INTERNAL_ORGANIZATION: "internal organisation (organisationID)",
}


CHANGES_MAX_CONCURRENT = 2


@dataclass(frozen=True)
class _Changes:
    """A change set's answers, one per access profile: its directories written to a temporary file and the
    counts; and TR-Notif's champs d'activité (the same for every profile)."""

    answers: dict[int | None, tuple[BinaryIO, Progress]]
    activities: dict[str, tuple[CodedType, ...]]

    def files(self) -> dict[Hashable, BinaryIO]:
        return {profile: file for profile, (file, _) in self.answers.items()}


def _same_upstream(profile: int | None) -> Hashable:
    """Without a say from the trust circle, each profile is taken to read the upstream its own way."""
    return profile


class Pipeline:
    """Answers normalised CSD requests from the national API through the mapping tables."""

    def __init__(
        self,
        mappings: Mappings,
        client: FhirClient,
        *,
        mapping_workers: int = 0,
        changes_max_concurrent: int = CHANGES_MAX_CONCURRENT,
        upstream_identity: Callable[[int | None], Hashable] = _same_upstream,
    ) -> None:
        self.mappings = mappings
        self.client = client
        self.mapping_workers = mapping_workers  # for answers written from a spool (pipeline/changes.py)
        # Changes since a date (a whole-directory ITI-74 is the heaviest answer) computed at once.
        self.changes_gate: SharedGate[_Changes] = SharedGate(changes_max_concurrent, _Changes.files)
        # What the upstream requests made for a client of this access profile depend on (its `Ror-*`
        # headers): profiles with the same identity share the upstream reading of a change set.
        self.upstream_identity = upstream_identity

    async def run(self, request: CsdRequest, resolved: TransactionPlan | None = None) -> CsdResponse:
        """The answer to `request`, from its plan made once (`resolved`, as the CSD route makes it; else made
        here)."""
        started = time.perf_counter()
        if resolved is None:
            resolved = plan_transaction(self.mappings, request, scope_of(self.mappings, request.region))
        spec = resolved.spec
        plan = plan_queries(self.mappings, spec, resolved.params, resolved.region_tags)
        if spec.delta is not None:
            profile = current_profile()

            async def compute(profiles: frozenset[Hashable]) -> _Changes:
                activities: dict[str, tuple[CodedType, ...]] = {}
                answers = await spooled_deltas(
                    self.mappings,
                    self.client,
                    plan,
                    spec,
                    resolved.region_tags,
                    [p for p in profiles if p is None or isinstance(p, int)],
                    workers=self.mapping_workers,
                    activities=activities,
                )
                return _Changes(answers, activities)

            # Identical change sets waiting for a slot are computed once (pipeline/coalesce.py), even for
            # clients of other access profiles when the upstream sees the same requests for them: the
            # upstream read once, one answer written per profile.
            key = (spec.name, plan.queries, resolved.region_tags, self.upstream_identity(profile))
            changes, directories = await self.changes_gate.run(key, profile, compute)
            progress, activities = changes.answers[profile][1], changes.activities
            written = progress.written
            log.info(
                "%s %s: %d FHIR queries, %d pages, %d resources spooled; %d organizations, %d services, "
                "%d facilities, %d providers (%d bytes, written before the first byte is sent); %.1f ms",
                LogEvent.TRANSACTION_DONE,
                plan.function,
                len(plan.queries),
                progress.pages,
                progress.spooled,
                written[Directory.ORGANIZATION],
                written[Directory.SERVICE],
                written[Directory.FACILITY],
                written[Directory.PROVIDER],
                progress.bytes,
                (time.perf_counter() - started) * 1000,
            )
            return CsdResponse(
                request=request,
                document=CsdDocument(),
                directories=directories,
                written=dict(written),
                activities=activities,
            )
        try:
            async with asyncio.TaskGroup() as group:
                tasks = [
                    group.create_task(self._fetch(query, plan.limit if number == 0 else None))
                    for number, query in enumerate(plan.queries)
                ]
        except ExceptionGroup as failures:
            # The other queries were cancelled; the first failure is the one the client is told about.
            raise failures.exceptions[0] from None
        results: list[SearchResult] = [task.result() for task in tasks]
        if request.selector is not None and results and not results[0].matches:
            # The profile's readings name one establishment or internal organisation (its first query).
            code = request.params.other_ids[0].code if request.params.other_ids else ""
            what = _PROFILE_ENTITIES.get(request.selector, request.selector)
            raise UnknownEntityError(what, code)
        # start/max on the national API's matches when it answered every parameter; else, after mapping, the
        # IHE filters it cannot answer, then start/max; and the function's `post` step (translate/select.py).
        results = page_upstream(spec, request.params, results)
        document = from_fhir_results(self.mappings, plan, results)
        document = select_records(
            spec, request.params, document, self.mappings.systems, self.mappings.timezone
        )
        # What the client's ROR access profile may not see (mappings/access-profiles.yaml); no profile: all.
        document = filter_document(self.mappings.access, current_profile(), document)
        if extra_value(resolved.params, "restrictedOrganisation") == "true":
            # The profile's restricted reading (RG_ALIM_015): without the UE's own attributes and classes.
            document = restrict_document(self.mappings.access, document)
        # The devices the UEs left in the answer name (after paging, filters and access profile).
        document = named_devices(document)
        log.info(
            "%s %s: %d FHIR queries, %d pages; %d organizations, %d services; %.1f ms",
            LogEvent.TRANSACTION_DONE,
            plan.function,
            len(plan.queries),
            sum(r.pages for r in results),
            len(document.organizations),
            len(document.services),
            (time.perf_counter() - started) * 1000,
        )
        return CsdResponse(request=request, document=document)

    async def _fetch(self, query: FhirQuery, limit: int | None) -> SearchResult:
        """The whole search, or, with a limit (IHE start - 1 + max), its pages until that many matches."""
        if limit is None:
            return await self.client.search(query)
        result = SearchResult(query=query)
        pages = self.client.iter_pages(query)
        try:
            async for page in pages:
                result.pages += 1
                result.matches.extend(page.matches)
                result.includes.extend(page.includes)
                if len(result.matches) >= limit:
                    break  # the following pages cannot be on the CSD page asked for
        finally:
            await stop_walk(pages)
        matched = {f"{r.get('resourceType')}/{r.get('id')}" for r in result.matches}
        result.includes = [
            r for r in result.includes if f"{r.get('resourceType')}/{r.get('id')}" not in matched
        ]
        return result
