"""The CSD endpoint: POST /csd[/{region}] (ITI-73, ITI-74, the ROR v2.4 profile), its WSDL and schemas.

Part of the HTTP surface (`bridge/http/`): the request is read and parsed by soap/ and csd/, answered by the
pipeline, and every failure becomes one SOAP fault (soap/faults.py decides which from the error's class).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator
from enum import StrEnum
from functools import partial
from typing import cast

from fastapi import APIRouter, Request
from fastapi.responses import PlainTextResponse, Response, StreamingResponse
from starlette.types import Message

from bridge import correlation
from bridge.csd.request import parse_request
from bridge.errors import BridgeError, RequestTimeoutError, SenderError
from bridge.http.streams import observed
from bridge.http.wiring import XSD_MEDIA_TYPE, Wiring
from bridge.model import CsdRequest, CsdResponse, Directory, Envelope
from bridge.pipeline.request_plan import TransactionPlan, plan_transaction, scope_of
from bridge.soap.addressing import Addressing
from bridge.soap.envelope import content_type_for, response_action, stream_response
from bridge.soap.faults import fault_spec, render_fault
from bridge.soap.parser import (
    guess_envelope,
    is_profile_action,
    is_profile_request,
    parse_message,
    read_body,
)
from bridge.soap.wsdl import WSDL_FILES, render_wsdl, schema_file
from bridge.trust import audit
from bridge.trust.gate import admit_function

# The HTTP surface logs as `bridge` (the logger name operators' queries use).
log = logging.getLogger("bridge")


class LogEvent(StrEnum):
    """What the CSD endpoint logs (house style: events are enum members, never free text)."""

    REQUEST_REFUSED = "request-refused"
    UNEXPECTED_FAILURE = "unexpected-failure"


def entity_counts(response: CsdResponse) -> dict[str, int]:
    """The entities of an answer per directory (the `entities_returned` metric)."""
    if response.written is not None:
        return {str(directory): count for directory, count in response.written.items()}
    document = response.document
    return {
        Directory.ORGANIZATION.value: len(document.organizations),
        Directory.SERVICE.value: len(document.services),
        Directory.FACILITY.value: len(document.facilities),
        Directory.PROVIDER.value: len(document.providers),
    }


async def _replayed_body(body: bytes) -> Message:
    return {"type": "http.request", "body": body, "more_body": False}


async def _chunks(content: bytes) -> AsyncIterator[bytes]:
    yield content


class CsdEndpoint:
    """The CSD endpoint's handlers over what `create_app` wired."""

    def __init__(self, wiring: Wiring) -> None:
        self.settings = wiring.settings
        self.mappings = wiring.mappings
        self.metrics = wiring.metrics
        self.tracing = wiring.tracing
        self.pipeline = wiring.pipeline
        self.shadow = wiring.shadow
        self.in_flight = wiring.in_flight

    async def post(self, request: Request, region: str | None) -> Response:
        # The transaction's span ends when the answer starts streaming (OpenTelemetry, off by default).
        with self.tracing.span("csd.transaction", **{"csd.region": region or "national"}):
            return await self._answer(request, region)

    async def _answer(self, request: Request, region: str | None) -> Response:
        started = time.perf_counter()
        content_type = request.headers.get("content-type")
        soap_action = request.headers.get("soapaction")
        envelope: Envelope = guess_envelope(content_type, soap_action)
        addressing: Addressing | None = None
        profile = is_profile_action(content_type, soap_action)
        csd_request: CsdRequest | None = None
        label = "unparsed"  # the `function` label: "unknown" once parsed, the function's once resolved
        try:
            tags = scope_of(self.mappings, region)  # an unknown region is refused before the body is read
            try:  # a body trickled in (slow-loris) is cut off, not waited for
                async with asyncio.timeout(self.settings.request_body_timeout_s):
                    body = await read_body(request.stream(), self.settings.max_request_bytes)
            except TimeoutError:
                raise RequestTimeoutError(self.settings.request_body_timeout_s) from None
            message = parse_message(body, content_type, soap_action)
            envelope, addressing = message.envelope, message.addressing
            profile = profile or is_profile_request(message.body)
            correlation.adopt(addressing.message_id if addressing is not None else None)
            csd_request = parse_request(message.body, region=region)
            # The request's plan, made once: its function resolved here, nowhere else.
            resolved: TransactionPlan | BridgeError
            try:
                resolved = plan_transaction(self.mappings, csd_request, tags)
            except BridgeError as error:
                resolved = error
            label = resolved.label if isinstance(resolved, TransactionPlan) else "unknown"
            with self.tracing.span(
                "csd.translate",
                **{"csd.function": label, "bridge.request_id": correlation.current_request_id() or ""},
            ):
                if isinstance(resolved, BridgeError):
                    raise resolved
                plan = resolved
                audit.note_request(csd_request, plan.spec.name)
                admit_function(plan.spec.name)
                response = await self.pipeline.run(csd_request, plan)
                if response.directories is None:
                    audit.note_document(response.document)
            encapsulated = self.mappings.encapsulated(csd_request, message.envelope)
        except Exception as error:  # every failure becomes a SOAP fault, in one place
            if isinstance(error, BridgeError):
                log.warning("%s %s: %s", LogEvent.REQUEST_REFUSED, type(error).__name__, error.reason)
            else:  # a defect of the bridge: the client gets a generic reason, the log gets the traceback
                log.exception("%s %s", LogEvent.UNEXPECTED_FAILURE, type(error).__name__)
            fault, status, fault_type = render_fault(error, envelope, addressing, profile=profile)
            outcome = "sender-fault" if status < 500 and isinstance(error, SenderError) else "receiver-fault"
            self.metrics.request_done(
                label,
                region,
                envelope.value,
                outcome,
                time.perf_counter() - started,
            )
            audit.note_outcome(f"fault:{fault_spec(error).subcode}")
            return Response(fault, status_code=status, media_type=fault_type)
        counts = entity_counts(response)

        def answered(outcome: str) -> None:
            self.in_flight.discard(stream)
            elapsed = time.perf_counter() - started
            self.metrics.request_done(label, region, message.envelope.value, outcome, elapsed)
            if outcome == "ok":
                self.metrics.entities_returned(counts)

        stream = observed(stream_response(response, message, encapsulated=encapsulated), answered)
        self.in_flight.add(stream)
        return StreamingResponse(
            stream,
            media_type=content_type_for(message.envelope, response_action(csd_request)),
        )

    async def serve(self, request: Request, region: str | None) -> Response:
        """The CSD endpoint; in shadow mode the request also goes to the other side (compare/shadow.py)."""
        if self.shadow is None:
            return await self.post(request, region)
        try:
            body = await read_body(request.stream(), self.settings.max_request_bytes)
        except BridgeError as error:
            envelope = guess_envelope(request.headers.get("content-type"), request.headers.get("soapaction"))
            fault, status, fault_type = render_fault(error, envelope, None)
            return Response(fault, status_code=status, media_type=fault_type)

        async def bridge_call(payload: bytes) -> tuple[int, AsyncIterator[bytes], str]:
            response = await self.post(Request(request.scope, partial(_replayed_body, payload)), region)
            media_type = response.headers.get("content-type", XSD_MEDIA_TYPE)
            if isinstance(response, StreamingResponse):
                return response.status_code, cast(AsyncIterator[bytes], response.body_iterator), media_type
            return response.status_code, _chunks(bytes(response.body)), media_type

        status, chunks, media_type = await self.shadow.handle(
            body, dict(request.headers), region, bridge_call
        )
        return StreamingResponse(chunks, status_code=status, headers={"content-type": media_type})

    def wsdl_or_hint(self, request: Request, region: str | None = None) -> Response:
        if region is not None and region.strip().lower() not in self.mappings.regions:
            return PlainTextResponse(
                f"unknown region {region!r} (see mappings/regions.csv)\n", status_code=404
            )
        wanted = [value for key, value in request.query_params.multi_items() if key.lower() == "wsdl"]
        if not wanted:
            return PlainTextResponse(
                "This is a CSD SOAP endpoint: POST ITI-73/ITI-74 requests here; the WSDL is at ?wsdl "
                "(IHE CSD) and ?wsdl=ror (the ROR v2.4 profile)\n",
                status_code=404,
            )
        wsdl_file = WSDL_FILES.get(wanted[0].strip().lower())
        if wsdl_file is None:
            return PlainTextResponse(
                f"no WSDL named {wanted[0]!r}: ?wsdl (IHE CSD), ?wsdl=ihe or ?wsdl=ror (ROR v2.4 profile)\n",
                status_code=404,
            )
        service_url = str(request.url.replace(query=""))
        schema_base = f"{str(request.base_url).rstrip('/')}/csd/schemas/"
        return Response(render_wsdl(service_url, schema_base, wsdl_file), media_type=XSD_MEDIA_TYPE)


def router(wiring: Wiring) -> APIRouter:
    """The CSD endpoint's routes, national and regional."""
    endpoint = CsdEndpoint(wiring)
    routes = APIRouter()

    # A trailing slash is served, not redirected: old SOAP stacks do not follow a 307 on POST, and a redirect
    # would send an encoded "/" region (`/csd/%2F`) to the national endpoint instead of a 404.
    @routes.post("/csd")
    @routes.post("/csd/", include_in_schema=False)
    async def csd_national(request: Request) -> Response:
        return await endpoint.serve(request, None)

    @routes.post("/csd/{region}")
    @routes.post("/csd/{region}/", include_in_schema=False)
    async def csd_regional(request: Request, region: str) -> Response:
        return await endpoint.serve(request, region)

    @routes.get("/csd")
    @routes.get("/csd/", include_in_schema=False)
    async def wsdl_national(request: Request) -> Response:
        return endpoint.wsdl_or_hint(request)

    @routes.get("/csd/schemas/{name}")
    async def csd_schema(name: str) -> Response:
        try:
            return Response(schema_file(name), media_type=XSD_MEDIA_TYPE)
        except FileNotFoundError:
            return PlainTextResponse(f"no schema named {name!r}\n", status_code=404)

    @routes.get("/csd/{region}")
    @routes.get("/csd/{region}/", include_in_schema=False)
    async def wsdl_regional(request: Request, region: str) -> Response:
        return endpoint.wsdl_or_hint(request, region)

    return routes
