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
from bridge.model import CsdRequest, CsdResponse, SearchResult, Transaction
from bridge.translate import Mappings, from_fhir_results, to_fhir_plan

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
                tasks = [group.create_task(self.client.search(query)) for query in plan.queries]
        except ExceptionGroup as failures:
            # The other queries were cancelled; the first failure is the one the client is told about.
            raise failures.exceptions[0] from None
        results: list[SearchResult] = [task.result() for task in tasks]
        document = from_fhir_results(self.mappings, plan, results)
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
