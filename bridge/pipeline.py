"""One CSD transaction: plan (translate/) → fetch (fhir/) → map (translate/) → a CSD document.

The pipeline holds no mapping logic and no wire format: it sequences the parts and runs the FHIR
queries of a plan concurrently.
"""

from __future__ import annotations

import asyncio
import logging
import time
from enum import StrEnum

from bridge.errors import UnsupportedRequestError
from bridge.fhir.client import FhirClient
from bridge.model import CsdRequest, CsdResponse, FhirQuery, SearchResult, Transaction
from bridge.translate import Mappings, from_fhir_results, to_fhir_plan
from bridge.translate.select import page_upstream, select_records

log = logging.getLogger(__name__)


class LogEvent(StrEnum):
    """What the pipeline logs (house style: events are enum members, never free text)."""

    TRANSACTION_DONE = "transaction-done"


class Pipeline:
    """Answers normalised CSD requests from the national API through the mapping tables."""

    def __init__(self, mappings: Mappings, client: FhirClient) -> None:
        self.mappings = mappings
        self.client = client

    async def run(self, request: CsdRequest) -> CsdResponse:
        if request.transaction is Transaction.MODIFICATIONS:
            # ITI-74 needs complete deltas beyond the national API's 10 000-result cap; until that
            # lands, say so plainly rather than answer a partial directory.
            raise UnsupportedRequestError(
                "ITI-74 getModificationsRequest is not served by this version of the bridge yet"
            )
        started = time.perf_counter()
        plan = to_fhir_plan(self.mappings, request)
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
        # start/max on the national API's matches when it answered every parameter; else, after mapping, the
        # IHE filters it cannot answer, then start/max; and the function's `post` step (translate/select.py).
        spec = self.mappings.function(plan.function)
        results = page_upstream(spec, request.params, results)
        document = from_fhir_results(self.mappings, plan, results)
        document = select_records(
            spec, request.params, document, self.mappings.systems, self.mappings.timezone
        )
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
            close = getattr(pages, "aclose", None)  # an async generator: stop its walk now, not at GC
            if close is not None:
                await close()
        matched = {f"{r.get('resourceType')}/{r.get('id')}" for r in result.matches}
        result.includes = [
            r for r in result.includes if f"{r.get('resourceType')}/{r.get('id')}" not in matched
        ]
        return result
