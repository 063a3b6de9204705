"""The legacy REST extraction over HTTP: GET /extraction[/{region}], one `csd:CSD` document, streamed.

Part of the HTTP surface (`bridge/http/`): the pipeline's extraction (pipeline/extraction.py) and its disk
cache (pipeline/cache.py); a refusal before the first byte is a plain HTTP error whose status soap/faults.py
decides from the error's class.
"""

from __future__ import annotations

import logging
import time
from datetime import UTC, datetime
from email.utils import format_datetime
from enum import StrEnum

from fastapi import APIRouter, Request
from fastapi.responses import FileResponse, PlainTextResponse, Response, StreamingResponse

from bridge.client_profile import current_profile
from bridge.errors import BridgeError, ExtractionBusyError, UnknownRegionError
from bridge.http.streams import aborting, observed
from bridge.http.wiring import XSD_MEDIA_TYPE, Wiring
from bridge.pipeline.cache import cached_stream
from bridge.pipeline.extraction import extraction_request
from bridge.pipeline.progress import Progress
from bridge.soap.faults import fault_spec
from bridge.trust import audit

# The HTTP surface logs as `bridge` (the logger name operators' queries use).
log = logging.getLogger("bridge")

EXTRACTION_FUNCTION = "extraction"  # the `function` label of GET /extraction[/{region}]
BUSY_RETRY_AFTER_S = 60


class LogEvent(StrEnum):
    """What the extraction's routes log (house style: events are enum members, never free text)."""

    UNEXPECTED_FAILURE = "unexpected-failure"
    EXTRACTION_REFUSED = "extraction-refused"
    EXTRACTION_ABORTED = "extraction-aborted"


def extraction_failure(error: Exception) -> Response:
    """An extraction that failed before its first byte: a plain-text HTTP error saying why, its status from
    the one error table (soap/faults.py `plain_status`)."""
    status = fault_spec(error).plain_status
    if status == 500 or not isinstance(error, BridgeError):
        log.exception("%s %s", LogEvent.UNEXPECTED_FAILURE, type(error).__name__, exc_info=error)
        return PlainTextResponse(
            "the extraction failed: internal error (see the bridge's log)\n", status_code=500
        )
    if isinstance(error, UnknownRegionError):
        return PlainTextResponse(f"{error.reason} (see mappings/regions.csv)\n", status_code=status)
    if status < 500:
        return PlainTextResponse(f"{error.reason}\n", status_code=status)
    headers = {}
    if isinstance(error, ExtractionBusyError):
        reason = f"the bridge is busy: {error}; retry later"
        headers["Retry-After"] = str(BUSY_RETRY_AFTER_S)
    elif status in (503, 504):
        reason = f"the national API is unavailable: {error.reason}"
    else:
        reason = f"the national API failed: {error.reason}"
    log.warning("%s %d: %s", LogEvent.EXTRACTION_REFUSED, status, reason)
    return PlainTextResponse(f"extraction not started: {reason}\n", status_code=status, headers=headers)


def extraction_headers(date: datetime, cache: str) -> dict[str, str]:
    """When the upstream data was read (HTTP date and ISO 8601), and whether the disk cache answered."""
    return {
        "Last-Modified": format_datetime(date.astimezone(UTC), usegmt=True),
        "X-Extraction-Date": date.astimezone(UTC).isoformat(timespec="seconds").replace("+00:00", "Z"),
        "X-Extraction-Cache": cache,
    }


def extraction_outcome(status: int) -> str:
    """The `outcome` label of an extraction refused before its first byte."""
    if status in (400, 404):
        return "sender-fault"
    return "busy" if status == 503 else "receiver-fault"


class ExtractionEndpoint:
    """GET /extraction's handler over what `create_app` wired."""

    def __init__(self, wiring: Wiring) -> None:
        self.mappings = wiring.mappings
        self.metrics = wiring.metrics
        self.extractor = wiring.extractor
        self.caches = wiring.caches
        self.in_flight = wiring.in_flight

    async def serve(self, request: Request, region: str | None) -> Response:
        clock = time.perf_counter()

        def refused(error: Exception) -> Response:
            answer = extraction_failure(error)
            self.metrics.request_done(
                EXTRACTION_FUNCTION,
                region,
                "none",
                extraction_outcome(answer.status_code),
                time.perf_counter() - clock,
            )
            return answer

        try:
            wanted = extraction_request(self.mappings, region, request.query_params.multi_items())
            transaction = audit.current()
            if transaction is not None:
                transaction.params = audit.query_parameters(request.query_params.multi_items())
        except BridgeError as error:
            return refused(error)
        cache = self.caches[current_profile()]
        cached = cache.lookup(wanted)
        if cached is not None:
            self.metrics.request_done(EXTRACTION_FUNCTION, region, "none", "ok", time.perf_counter() - clock)
            return FileResponse(
                cached.path, media_type=XSD_MEDIA_TYPE, headers=extraction_headers(cached.date, "hit")
            )
        started = datetime.now(UTC)
        final = Progress()

        def remember(progress: Progress) -> None:
            nonlocal final
            final = progress
            if transaction is not None:
                transaction.entities = {str(d): n for d, n in progress.written.items()}

        chunks = self.extractor.stream(wanted, remember, profile=current_profile())
        try:
            first = await anext(chunks)
        except Exception as error:  # nothing was sent: a clean HTTP error
            return refused(error)

        def finished(outcome: str) -> None:
            self.in_flight.discard(stream)
            self.metrics.request_done(
                EXTRACTION_FUNCTION, region, "none", outcome, time.perf_counter() - clock
            )
            if outcome == "ok":
                self.metrics.entities_returned({str(d): n for d, n in final.written.items()})
            elif outcome == "aborted":
                log.warning("%s cut before its end, sent without terminator", LogEvent.EXTRACTION_ABORTED)

        entry = cache.open(wanted, started)
        stream = observed(cached_stream(aborting(first, chunks), entry), finished)
        self.in_flight.add(stream)
        return StreamingResponse(
            stream,
            media_type=XSD_MEDIA_TYPE,
            headers=extraction_headers(started, "miss" if entry is not None else "off"),
        )


def router(wiring: Wiring) -> APIRouter:
    """The extraction's routes, national and regional."""
    endpoint = ExtractionEndpoint(wiring)
    routes = APIRouter()

    @routes.get("/extraction")
    async def extraction_national(request: Request) -> Response:
        return await endpoint.serve(request, None)

    @routes.get("/extraction/{region}")
    async def extraction_regional(request: Request, region: str) -> Response:
        return await endpoint.serve(request, region)

    return routes
