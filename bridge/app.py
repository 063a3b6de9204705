"""`create_app(settings)`: the only place that builds the bridge's objects from configuration.

Wires the inbound edge (soap/, csd/), the pipeline (translate/, fhir/) and, for `--upstream demo`, the
embedded ROR simulator into one FastAPI application. Also the entry points the CLI uses for offline work.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from enum import StrEnum

import httpx
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, PlainTextResponse, Response, StreamingResponse

from bridge.config import Settings
from bridge.csd.request import parse_request
from bridge.errors import BridgeError
from bridge.fhir.client import FhirClient
from bridge.model import Envelope
from bridge.paths import shipped_dir
from bridge.pipeline import Pipeline
from bridge.simulator.app import SimulatorConfig, create_simulator_app
from bridge.simulator.dataset import Dataset, generate_dataset
from bridge.soap.addressing import Addressing
from bridge.soap.envelope import content_type_for, response_action, stream_response
from bridge.soap.faults import render_fault
from bridge.soap.parser import guess_envelope, parse_message, read_body
from bridge.soap.wsdl import render_wsdl, schema_file
from bridge.translate import Mappings, coverage_report, load_mappings

log = logging.getLogger("bridge")


class LogEvent(StrEnum):
    """What the HTTP surface logs (house style: events are enum members, never free text)."""

    STARTED = "bridge-started"
    REQUEST_REFUSED = "request-refused"
    UNEXPECTED_FAILURE = "unexpected-failure"


# The embedded simulator is reached in-process (no socket) under this base; the host name is never
# resolved. `/ws-diffusion-fhir` mirrors the national API's path so logs read the same.
DEMO_BASE_URL = "http://ror-simulator.internal/ws-diffusion-fhir"
DEMO_MOUNT = "/demo/fhir"
XSD_MEDIA_TYPE = "application/xml; charset=utf-8"


@dataclass(frozen=True, slots=True)
class Upstream:
    """The FHIR base the bridge talks to, and the demo dataset when it is the embedded simulator."""

    client: FhirClient
    simulator: FastAPI | None = None
    dataset: Dataset | None = None


def mappings_from(settings: Settings) -> Mappings:
    """The mapping tables of this deployment (its own directory, else the shipped tables)."""
    return load_mappings(settings.mappings_dir or shipped_dir("mappings"))


def check_mappings(settings: Settings) -> str:
    """`ror-bridge mappings check`: load and validate every table, return the coverage report."""
    return coverage_report(mappings_from(settings))


def build_upstream(settings: Settings) -> Upstream:
    headers = {
        "Ror-Profil-Utilisateur-Code": settings.ror_profile_code,
        "Ror-Profil-Utilisateur-System": settings.ror_profile_system,
        "Ror-Role-Metier-Code": settings.ror_role_code,
        "Ror-Role-Metier-System": settings.ror_role_system,
    }
    if not settings.is_demo:
        client = FhirClient(
            settings.upstream_url,
            headers=headers,
            page_size=settings.upstream_page_size,
            timeout_s=settings.upstream_timeout_s,
        )
        return Upstream(client=client)
    dataset = generate_dataset(settings.demo_scale, settings.demo_seed)
    simulator = create_simulator_app(
        SimulatorConfig(scale=settings.demo_scale, seed=settings.demo_seed), dataset
    )
    transport = httpx.ASGITransport(app=simulator, root_path="/ws-diffusion-fhir")
    client = FhirClient(
        DEMO_BASE_URL,
        headers=headers,
        page_size=settings.upstream_page_size,
        timeout_s=settings.upstream_timeout_s,
        transport=transport,
    )
    return Upstream(client=client, simulator=simulator, dataset=dataset)


def create_app(settings: Settings) -> FastAPI:
    """The bridge application for these settings."""
    mappings = mappings_from(settings)
    upstream = build_upstream(settings)
    pipeline = Pipeline(mappings, upstream.client)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        log.info("%s upstream=%s", LogEvent.STARTED, settings.upstream_url)
        yield
        await upstream.client.aclose()

    app = FastAPI(
        title="ROR CSD bridge",
        summary="IHE CSD (ITI-73 / ITI-74) SOAP endpoint in front of the national ROR FHIR API",
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,
        openapi_url=None,
    )
    app.state.settings = settings
    app.state.mappings = mappings
    app.state.upstream = upstream
    if upstream.simulator is not None:
        # Lets a user look at the FHIR data behind each CSD answer (access checks off).
        app.mount(DEMO_MOUNT, upstream.simulator)

    async def csd_post(request: Request, region: str | None) -> Response:
        content_type = request.headers.get("content-type")
        soap_action = request.headers.get("soapaction")
        envelope: Envelope = guess_envelope(content_type, soap_action)
        addressing: Addressing | None = None
        try:
            if region is not None:
                mappings.region(region)  # an unknown region is refused before the body is read
            body = await read_body(request.stream(), settings.max_request_bytes)
            message = parse_message(body, content_type, soap_action)
            envelope, addressing = message.envelope, message.addressing
            csd_request = parse_request(message.body, region=region)
            response = await pipeline.run(csd_request)
            encapsulated = mappings.encapsulated(csd_request, message.envelope)
        except Exception as error:  # every failure becomes a SOAP fault, in one place
            if isinstance(error, BridgeError):
                log.warning("%s %s: %s", LogEvent.REQUEST_REFUSED, type(error).__name__, error.reason)
            else:  # a defect of the bridge: the client gets a generic reason, the log gets the traceback
                log.exception("%s %s", LogEvent.UNEXPECTED_FAILURE, type(error).__name__)
            fault, status, fault_type = render_fault(error, envelope, addressing)
            return Response(fault, status_code=status, media_type=fault_type)
        return StreamingResponse(
            stream_response(response, message, encapsulated=encapsulated),
            media_type=content_type_for(message.envelope, response_action(csd_request)),
        )

    def wsdl_or_hint(request: Request, region: str | None = None) -> Response:
        if region is not None and region.strip().lower() not in mappings.regions:
            return PlainTextResponse(
                f"unknown region {region!r} (see mappings/regions.csv)\n", status_code=404
            )
        if not any(key.lower() == "wsdl" for key in request.query_params):
            return PlainTextResponse(
                "This is a CSD SOAP endpoint: POST ITI-73/ITI-74 requests here; the WSDL is at ?wsdl\n",
                status_code=404,
            )
        service_url = str(request.url.replace(query=""))
        schema_base = f"{str(request.base_url).rstrip('/')}/csd/schemas/"
        return Response(render_wsdl(service_url, schema_base), media_type=XSD_MEDIA_TYPE)

    @app.post("/csd")
    async def csd_national(request: Request) -> Response:
        return await csd_post(request, None)

    @app.post("/csd/{region}")
    async def csd_regional(request: Request, region: str) -> Response:
        return await csd_post(request, region)

    @app.get("/csd")
    async def wsdl_national(request: Request) -> Response:
        return wsdl_or_hint(request)

    @app.get("/csd/schemas/{name}")
    async def csd_schema(name: str) -> Response:
        try:
            return Response(schema_file(name), media_type=XSD_MEDIA_TYPE)
        except FileNotFoundError:
            return PlainTextResponse(f"no schema named {name!r}\n", status_code=404)

    @app.get("/csd/{region}")
    async def wsdl_regional(request: Request, region: str) -> Response:
        return wsdl_or_hint(request, region)

    @app.get("/healthz")
    async def healthz() -> Response:
        return JSONResponse({"status": "ok"})

    @app.get("/readyz")
    async def readyz() -> Response:
        try:
            await upstream.client.capabilities()
        except Exception as error:  # any upstream failure means "not ready"
            reason = getattr(error, "reason", type(error).__name__)
            return JSONResponse({"status": "not ready", "upstream": reason}, status_code=503)
        return JSONResponse({"status": "ready", "upstream": "reachable", "mappings": "loaded"})

    return app
