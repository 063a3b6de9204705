"""`create_app(settings)`: the only place that builds the bridge's objects from configuration.

Wires the inbound edge (soap/, csd/), the pipeline (translate/, fhir/) and, for `--upstream demo`, the
embedded ROR simulator into one FastAPI application. Also the entry points the CLI uses for offline work.
"""

from __future__ import annotations

import asyncio
import logging
import tempfile
from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import format_datetime
from enum import StrEnum
from pathlib import Path
from typing import BinaryIO

import httpx
import orjson
from fastapi import FastAPI, Request
from fastapi.responses import FileResponse, JSONResponse, PlainTextResponse, Response, StreamingResponse

from bridge import memory
from bridge.access import PROFILES, current_profile
from bridge.config import Settings
from bridge.csd.request import parse_request
from bridge.csd.writer import document_to_bytes
from bridge.errors import (
    BridgeError,
    ConfigurationError,
    InvalidParameterError,
    RequestTimeoutError,
    UnknownRegionError,
    UpstreamError,
    UpstreamUnavailableError,
)
from bridge.extraction import (
    ExtractionBusyError,
    ExtractionCache,
    Extractor,
    Progress,
    ProgressCallback,
    Source,
    cached_stream,
    extraction_request,
)
from bridge.fhir.client import FhirClient
from bridge.model import Directory, Envelope, FhirQuery, QueryPlan, Resource, SearchResult
from bridge.paths import shipped_dir
from bridge.pipeline import Pipeline
from bridge.simulator.app import SimulatorConfig, create_simulator_app
from bridge.simulator.dataset import Dataset, generate_dataset
from bridge.soap.addressing import Addressing
from bridge.soap.envelope import content_type_for, response_action, stream_response
from bridge.soap.faults import fault_spec, render_fault
from bridge.soap.parser import guess_envelope, parse_message, read_body
from bridge.soap.wsdl import render_wsdl, schema_file
from bridge.translate import Mappings, coverage_report, from_fhir_results, load_mappings
from bridge.translate.plan import function_of
from bridge.trust import audit
from bridge.trust.gate import TrustGate, admit_function, build_policy
from bridge.trust.tls import uvicorn_options as uvicorn_options  # for `serve` (cli.py)
from bridge.trust.upstream import UpstreamHooks

log = logging.getLogger("bridge")


class LogEvent(StrEnum):
    """What the HTTP surface logs (house style: events are enum members, never free text)."""

    STARTED = "bridge-started"
    REQUEST_REFUSED = "request-refused"
    UNEXPECTED_FAILURE = "unexpected-failure"
    EXTRACTION_REFUSED = "extraction-refused"
    EXTRACTION_ABORTED = "extraction-aborted"


# The embedded simulator is reached in-process (no socket) under this base; the host name is never
# resolved. `/ws-diffusion-fhir` mirrors the national API's path so logs read the same.
DEMO_BASE_URL = "http://ror-simulator.internal/ws-diffusion-fhir"
DEMO_MOUNT = "/demo/fhir"
XSD_MEDIA_TYPE = "application/xml; charset=utf-8"
EXTRACTION_CACHE_DIR = (
    "ror-bridge-extractions"  # under the system temp dir unless extraction_cache_dir is set
)
# The progress counters of `ror-bridge extract` (the CLI reaches the extraction through this module only).
ExtractionProgress = Progress


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
    # Imported here: this function is the only place that turns upstream settings into client parts.
    from bridge.fhir.auth import build_ssl_context
    from bridge.fhir.client import Credentials
    from bridge.fhir.resilience import CircuitBreaker, RetryPolicy
    from bridge.fhir.validation import SampledValidator

    headers = {
        "Ror-Profil-Utilisateur-Code": settings.ror_profile_code,
        "Ror-Profil-Utilisateur-System": settings.ror_profile_system,
        "Ror-Role-Metier-Code": settings.ror_role_code,
        "Ror-Role-Metier-System": settings.ror_role_system,
    }
    validator = None
    if settings.upstream_validation_rate > 0:
        validator = SampledValidator(settings.upstream_validation_rate)
    options = {
        "headers": headers,
        "page_size": settings.upstream_page_size,
        "timeout_s": settings.upstream_timeout_s,
        "connect_timeout_s": settings.upstream_connect_timeout_s,
        "retry": RetryPolicy(
            max_attempts=settings.upstream_max_attempts,
            backoff_base_s=settings.upstream_backoff_base_s,
            backoff_max_s=settings.upstream_backoff_max_s,
        ),
        "breaker": CircuitBreaker(settings.upstream_breaker_failures, settings.upstream_breaker_reset_s),
        "deadline_s": settings.upstream_deadline_s,
        "export_deadline_s": settings.upstream_export_deadline_s,
        "concurrency": settings.upstream_concurrency,
        "max_results": settings.upstream_max_results,
        "validator": validator,
    }
    if not settings.is_demo:
        credentials = None
        if settings.upstream_token_url is not None:
            if settings.upstream_client_id is None:
                raise ConfigurationError("upstream_token_url is set but upstream_client_id is not")
            secret = settings.upstream_client_secret
            credentials = Credentials(
                settings.upstream_token_url,
                settings.upstream_client_id,
                secret.get_secret_value() if secret is not None else None,
            )
        context = build_ssl_context(
            settings.upstream_ca_bundle, settings.upstream_client_cert, settings.upstream_client_key
        )
        client = FhirClient(
            settings.upstream_url,
            verify=context if context is not None else True,
            credentials=credentials,
            **options,  # type: ignore[arg-type]  # the keyword values are typed by FhirClient itself
        )
        return Upstream(client=client)
    dataset = generate_dataset(settings.demo_scale, settings.demo_seed)
    simulator = create_simulator_app(
        SimulatorConfig(scale=settings.demo_scale, seed=settings.demo_seed), dataset
    )
    transport = httpx.ASGITransport(app=simulator, root_path="/ws-diffusion-fhir")
    client = FhirClient(DEMO_BASE_URL, transport=transport, **options)  # type: ignore[arg-type]  # as above
    return Upstream(client=client, simulator=simulator, dataset=dataset)


def build_extractor(settings: Settings, mappings: Mappings, client: FhirClient) -> Extractor:
    """The streamed extraction (`GET /extraction`, `ror-bridge extract`) for these settings."""
    return Extractor(
        mappings,
        client,
        source=Source(settings.extraction_source),
        deadline_s=settings.upstream_export_deadline_s,
        max_concurrent=settings.extraction_max_concurrent,
        workers=settings.effective_mapping_workers,
    )


def extraction_cache(settings: Settings, profile: int | None = None) -> ExtractionCache:
    directory = settings.extraction_cache_dir or Path(tempfile.gettempdir()) / EXTRACTION_CACHE_DIR
    # Documents depend on the upstream (and its demo dataset) and on the tables: part of every cache key.
    upstream = settings.upstream_url
    if settings.is_demo:
        upstream += f" scale={settings.demo_scale} seed={settings.demo_seed}"
    scope = f"{upstream}\n{settings.mappings_dir or shipped_dir('mappings')}"
    if profile is not None:  # the upstream answers a client's Ror-* profile headers: one cache per profile
        scope += f"\naccess profile {profile}"
    return ExtractionCache(directory, settings.extraction_cache_s, scope=scope)


def extraction_failure(error: Exception) -> Response:
    """An extraction that failed before its first byte: a plain-text HTTP error saying why."""
    if isinstance(error, UnknownRegionError):
        return PlainTextResponse(f"{error.reason} (see mappings/regions.csv)\n", status_code=404)
    if isinstance(error, InvalidParameterError):
        return PlainTextResponse(f"{error.reason}\n", status_code=400)
    headers = {}
    if isinstance(error, ExtractionBusyError):
        status, reason = 503, f"the bridge is busy: {error}; retry later"
        headers["Retry-After"] = "60"
    elif isinstance(error, UpstreamUnavailableError):
        # A timeout or a passed deadline is a gateway timeout; refused connections and an open breaker are
        # an unavailable upstream.
        status = 504 if any(word in error.reason for word in ("timeout", "deadline")) else 503
        reason = f"the national API is unavailable: {error.reason}"
    elif isinstance(error, UpstreamError):
        status, reason = 502, f"the national API failed: {error.reason}"
    else:
        log.exception("%s %s", LogEvent.UNEXPECTED_FAILURE, type(error).__name__, exc_info=error)
        return PlainTextResponse(
            "the extraction failed: internal error (see the bridge's log)\n", status_code=500
        )
    log.warning("%s %d: %s", LogEvent.EXTRACTION_REFUSED, status, reason)
    return PlainTextResponse(f"extraction not started: {reason}\n", status_code=status, headers=headers)


def extraction_headers(date: datetime, cache: str) -> dict[str, str]:
    """When the upstream data was read (HTTP date and ISO 8601), and whether the disk cache answered."""
    return {
        "Last-Modified": format_datetime(date.astimezone(UTC), usegmt=True),
        "X-Extraction-Date": date.astimezone(UTC).isoformat(timespec="seconds").replace("+00:00", "Z"),
        "X-Extraction-Cache": cache,
    }


async def _aborting(first: bytes, chunks: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
    """The document after its first chunk; a failure is logged and raised, so the server drops the
    connection without the chunked terminator and the client sees a truncated transfer, never a whole one."""
    yield first
    try:
        async for chunk in chunks:
            yield chunk
    except Exception as error:
        log.error(
            "%s %s: %s", LogEvent.EXTRACTION_ABORTED, type(error).__name__, getattr(error, "reason", error)
        )
        raise


# Freed native memory is handed back to the system this often while serving (bridge/memory.py).
MEMORY_RELEASE_S = 15.0


async def _release_memory_periodically() -> None:
    while True:
        await asyncio.sleep(MEMORY_RELEASE_S)
        await asyncio.to_thread(memory.release)


def create_app(settings: Settings) -> FastAPI:
    """The bridge application for these settings."""
    memory.cap_arenas()  # before the request threads exist: their arenas are the ones that grow
    mappings = mappings_from(settings)
    upstream = build_upstream(settings)
    pipeline = Pipeline(mappings, upstream.client, mapping_workers=settings.effective_mapping_workers)
    extractor = build_extractor(settings, mappings, upstream.client)
    caches = {profile: extraction_cache(settings, profile) for profile in (None, *PROFILES)}
    # The trust circle (issue 15): allow-list, scopes, rates, audit; upstream Ror-* headers per profile.
    trust = build_policy(
        settings,
        regions=mappings.regions,
        functions=[spec.name for spec in mappings.functions.values()],
    )
    hooks = UpstreamHooks(trust.allowlist.profile_headers if trust.allowlist else {})
    upstream.client.add_event_hooks(hooks.on_request, hooks.on_response)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        log.info("%s upstream=%s", LogEvent.STARTED, settings.upstream_url)
        if trust.audit is not None:
            trust.audit.install_sighup()
        releaser = asyncio.create_task(_release_memory_periodically())
        yield
        releaser.cancel()
        await upstream.client.aclose()
        if trust.audit is not None:
            trust.audit.close()

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
    app.state.trust = trust
    app.add_middleware(TrustGate, policy=trust)
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
            try:  # a body trickled in (slow-loris) is cut off, not waited for
                async with asyncio.timeout(settings.request_body_timeout_s):
                    body = await read_body(request.stream(), settings.max_request_bytes)
            except TimeoutError:
                raise RequestTimeoutError(settings.request_body_timeout_s) from None
            message = parse_message(body, content_type, soap_action)
            envelope, addressing = message.envelope, message.addressing
            csd_request = parse_request(message.body, region=region)
            function = function_of(mappings, csd_request)[0].name
            audit.note_request(csd_request, function)
            admit_function(function)
            response = await pipeline.run(csd_request)
            if response.directories is None:
                audit.note_document(response.document)
            encapsulated = mappings.encapsulated(csd_request, message.envelope)
        except Exception as error:  # every failure becomes a SOAP fault, in one place
            if isinstance(error, BridgeError):
                log.warning("%s %s: %s", LogEvent.REQUEST_REFUSED, type(error).__name__, error.reason)
            else:  # a defect of the bridge: the client gets a generic reason, the log gets the traceback
                log.exception("%s %s", LogEvent.UNEXPECTED_FAILURE, type(error).__name__)
            fault, status, fault_type = render_fault(error, envelope, addressing)
            audit.note_outcome(f"fault:{fault_spec(error).subcode}")
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

    async def extraction(request: Request, region: str | None) -> Response:
        try:
            wanted = extraction_request(mappings, region, request.query_params.multi_items())
            transaction = audit.current()
            if transaction is not None:
                transaction.params = audit.query_parameters(request.query_params.multi_items())
        except BridgeError as error:
            return extraction_failure(error)
        cache = caches[current_profile()]
        cached = cache.lookup(wanted)
        if cached is not None:
            return FileResponse(
                cached.path, media_type=XSD_MEDIA_TYPE, headers=extraction_headers(cached.date, "hit")
            )
        started = datetime.now(UTC)
        transaction = audit.current()

        def counted(progress: Progress) -> None:
            if transaction is not None:
                transaction.entities = {str(d): n for d, n in progress.written.items()}

        chunks = extractor.stream(wanted, counted)
        try:
            first = await anext(chunks)
        except Exception as error:  # nothing was sent: a clean HTTP error
            return extraction_failure(error)
        entry = cache.open(wanted, started)
        return StreamingResponse(
            cached_stream(_aborting(first, chunks), entry),
            media_type=XSD_MEDIA_TYPE,
            headers=extraction_headers(started, "miss" if entry is not None else "off"),
        )

    @app.get("/extraction")
    async def extraction_national(request: Request) -> Response:
        return await extraction(request, None)

    @app.get("/extraction/{region}")
    async def extraction_regional(request: Request, region: str) -> Response:
        return await extraction(request, region)

    return app


async def extract(
    settings: Settings,
    sink: BinaryIO,
    *,
    region: str | None = None,
    params: Iterable[tuple[str, str]] = (),
    on_progress: ProgressCallback | None = None,
) -> ExtractionProgress:
    """`ror-bridge extract`: the same document as `GET /extraction[/{region}]`, written to `sink`.

    Raises BridgeError (or ExtractionBusyError) with the reason when the extraction fails; what was
    written to `sink` by then is a truncated document the caller must discard.
    """
    mappings = mappings_from(settings)
    upstream = build_upstream(settings)
    try:
        extractor = build_extractor(settings, mappings, upstream.client)
        wanted = extraction_request(mappings, region, params)
        final = ExtractionProgress()

        def remember(progress: ExtractionProgress) -> None:
            nonlocal final
            final = progress
            if on_progress is not None:
                on_progress(progress)

        async for chunk in extractor.stream(wanted, remember):
            sink.write(chunk)
        return final
    finally:
        await upstream.client.aclose()


@dataclass(frozen=True, slots=True)
class Translation:
    """What `ror-bridge translate` produced: the CSD document and what the user should know about it."""

    document: bytes  # a whole `csd:CSD` document, UTF-8, with the XML declaration
    entities: int  # records written, all directories together
    notes: tuple[str, ...]  # e.g. a searchset page whose `next` link was not followed (offline)


TRANSLATABLE_BUNDLES = ("searchset", "collection")


def translate_bundle(settings: Settings, bundle: bytes) -> Translation:
    """`ror-bridge translate`: one FHIR searchset or collection Bundle → one CSD document, offline.

    Every resource of the Bundle (matches and includes alike) whose type maps into a CSD directory becomes a
    record, through this deployment's mapping tables; references resolve inside the Bundle only.
    ValueError says why a file is not a Bundle that can be translated.
    """
    try:
        data = orjson.loads(bundle)
    except orjson.JSONDecodeError as error:
        raise ValueError(f"not JSON: {error}") from None
    if not isinstance(data, dict) or data.get("resourceType") != "Bundle":
        raise ValueError("not a FHIR Bundle (resourceType must be Bundle)")
    if data.get("type") not in TRANSLATABLE_BUNDLES:
        raise ValueError(f"Bundle type {data.get('type')!r} is not one of {', '.join(TRANSLATABLE_BUNDLES)}")
    resources: list[Resource] = []
    for number, entry in enumerate(data.get("entry") or ()):
        resource = entry.get("resource") if isinstance(entry, dict) else None
        if not isinstance(resource, dict) or not resource.get("resourceType") or not resource.get("id"):
            raise ValueError(f"entry {number} has no resource with resourceType and id")
        resources.append(resource)
    notes = []
    if any(isinstance(link, dict) and link.get("relation") == "next" for link in data.get("link") or ()):
        notes.append("the Bundle has a next link: only this page was translated (offline, nothing fetched)")
    query = FhirQuery("Bundle", (), purpose="ror-bridge translate")
    plan = QueryPlan(function="ror-bridge translate", queries=(query,), directories=frozenset(Directory))
    document = from_fhir_results(mappings_from(settings), plan, [SearchResult(query, matches=resources)])
    count = sum(
        len(records)
        for records in (document.organizations, document.services, document.facilities, document.providers)
    )
    return Translation(document_to_bytes(document), count, tuple(notes))
