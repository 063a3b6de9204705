"""`create_app(settings)`: the only place that builds the bridge's objects from configuration.

Wires the inbound edge (soap/, csd/), the pipeline (translate/, fhir/) and, for `--upstream demo`, the
embedded ROR simulator into one FastAPI application. Also the entry points the CLI uses for offline work.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import logging
import os
import tempfile
import time
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Iterable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import format_datetime
from enum import StrEnum
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO, cast

import httpx
import orjson
from fastapi import FastAPI, Request
from fastapi.responses import FileResponse, JSONResponse, PlainTextResponse, Response, StreamingResponse
from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from bridge import correlation, memory
from bridge.access import PROFILES, current_profile
from bridge.compare.shadow import Shadow
from bridge.config import Settings
from bridge.csd.request import parse_request
from bridge.csd.writer import document_to_bytes
from bridge.errors import (
    BridgeError,
    ConfigurationError,
    InvalidParameterError,
    RequestTimeoutError,
    SenderError,
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
from bridge.fhir.observe import FanOut, UpstreamObserver
from bridge.metrics import Metrics
from bridge.model import (
    CsdRequest,
    CsdResponse,
    Directory,
    Envelope,
    FhirQuery,
    QueryPlan,
    Resource,
    SearchResult,
)
from bridge.paths import shipped_dir
from bridge.pipeline import Pipeline
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
from bridge.tracing import Tracing, build_tracing
from bridge.translate import Mappings, coverage_report, from_fhir_results, load_mappings
from bridge.translate.fhirpaths import check_tables
from bridge.translate.plan import function_of
from bridge.trust import audit
from bridge.trust.gate import TrustGate, admit_function, build_policy
from bridge.trust.tls import uvicorn_options as uvicorn_options  # for `serve` (cli.py)
from bridge.trust.upstream import UpstreamHooks

if TYPE_CHECKING:
    from bridge.simulator.dataset import Dataset

log = logging.getLogger("bridge")


class LogEvent(StrEnum):
    """What the HTTP surface logs (house style: events are enum members, never free text)."""

    STARTED = "bridge-started"
    REQUEST_REFUSED = "request-refused"
    UNEXPECTED_FAILURE = "unexpected-failure"
    EXTRACTION_REFUSED = "extraction-refused"
    EXTRACTION_ABORTED = "extraction-aborted"
    STOPPED = "bridge-stopped"


# The embedded simulator is reached in-process (no socket) under this base; the host name is never
# resolved. `/ws-diffusion-fhir` mirrors the national API's path so logs read the same.
DEMO_BASE_URL = "http://ror-simulator.internal/ws-diffusion-fhir"
DEMO_MOUNT = "/demo/fhir"
XSD_MEDIA_TYPE = "application/xml; charset=utf-8"
METRICS_CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
SHUTDOWN_SETTLE_STEPS = 50  # × 20 ms: how long shutdown waits for cancelled responses to unwind
EXTRACTION_FUNCTION = "extraction"  # the `function` label of GET /extraction[/{region}]
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


def check_mappings(settings: Settings, profile_schema: Path | None = None) -> str:
    """`ror-bridge mappings check`: load and validate every table, return the coverage report, then the
    coverage of the official ROR CSD v2.4 profile's elements (`profile_schema`, else the profile's schema in
    ../shared/reference/ror-v24/ next to a source checkout; skipped, and said so, when neither exists)."""
    from bridge.compare.rules import describe, load_rules
    from bridge.csd.profile import csd_elements
    from bridge.translate.profile_coverage import coverage_lines, load_reasons, profile_coverage

    mappings = mappings_from(settings)
    report = coverage_report(mappings) + f"\n{describe(load_rules(mappings.directory))}"
    schema = profile_schema or default_profile_schema()
    if schema is None or not schema.is_file():
        wanted = schema or PROFILE_SCHEMA_NAME
        return (
            report + f"\nOfficial profile coverage skipped: {wanted} not found (give --profile-schema FILE)\n"
        )
    official = [element.path for element in csd_elements(schema)]
    ours = {element.path for element in csd_elements(shipped_dir("xsd") / "csd.xsd")}
    coverage = profile_coverage(mappings, official, ours, load_reasons(mappings.directory))
    return report + "\n" + "\n".join(coverage_lines(coverage, schema.name)) + "\n"


PROFILE_SCHEMA_NAME = "IHE_ProfilCSD-ExtensionROR_fr-v2.4.xsd"


def default_profile_schema() -> Path | None:
    """ANS's ROR CSD v2.4 schema in ../shared/reference/ror-v24/local/, next to a source checkout."""
    candidate = (
        shipped_dir("xsd").parent.parent / "shared" / "reference" / "ror-v24" / "local" / PROFILE_SCHEMA_NAME
    )
    return candidate if candidate.is_file() else None


def build_shadow(settings: Settings) -> Shadow | None:
    """Shadow mode (BRIDGE_SHADOW_LEGACY_URL set): the legacy side and the comparison rules; else None."""
    if not settings.shadow_legacy_url:
        return None
    from bridge.compare.rules import load_rules

    rules = load_rules(settings.mappings_dir or shipped_dir("mappings"))
    log_path = settings.shadow_log or Path("ror-bridge-shadow.jsonl")
    return Shadow(rules, settings.shadow_legacy_url, log_path, settings.shadow_budget_ms)


async def _replayed_body(body: bytes) -> Message:
    return {"type": "http.request", "body": body, "more_body": False}


async def _chunks(content: bytes) -> AsyncIterator[bytes]:
    yield content


def verify_mappings(settings: Settings, profile_schema: Path | None = None) -> tuple[str, list[str]]:
    """`ror-bridge mappings check`: the coverage reports (check_mappings), and what is wrong beyond loading
    (source paths that are no FHIR R4B element, unknown region codes). ConfigurationError when the tables do
    not load."""
    return check_mappings(settings, profile_schema), check_tables(mappings_from(settings))


def build_upstream(settings: Settings, observer: UpstreamObserver | None = None) -> Upstream:
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
        if importlib.util.find_spec("fhir.resources") is None:
            raise ConfigurationError(
                "BRIDGE_UPSTREAM_VALIDATION_RATE > 0 needs fhir.resources: install the `validation` extra "
                "(pip install 'ror-csd-bridge[validation]')"
            )
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
        "observer": observer,
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
    try:  # the `demo` extra (numpy): a production install serving the national API does without it
        from bridge.simulator.app import SimulatorConfig, create_simulator_app
        from bridge.simulator.dataset import generate_dataset
    except ImportError as error:
        raise ConfigurationError(
            f"BRIDGE_UPSTREAM_URL / --upstream demo needs the embedded simulator, which needs {error.name}: "
            "install the `demo` extra (pip install 'ror-csd-bridge[demo]') or set a real upstream URL"
        ) from None
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


def extraction_outcome(status: int) -> str:
    """The `outcome` label of an extraction refused before its first byte."""
    if status in (400, 404):
        return "sender-fault"
    return "busy" if status == 503 else "receiver-fault"


def function_label(mappings: Mappings, csd_request: CsdRequest | None) -> str:
    """The bounded `function` label: the last part of the dispatched function's canonical URN."""
    if csd_request is None:
        return "unparsed"
    try:
        spec, _ = function_of(mappings, csd_request)
    except BridgeError:
        return "unknown"
    return spec.urn.rsplit(":", 1)[-1]


def _entity_counts(response: CsdResponse) -> dict[str, int]:
    if response.written is not None:
        return {str(directory): count for directory, count in response.written.items()}
    document = response.document
    return {
        Directory.ORGANIZATION.value: len(document.organizations),
        Directory.SERVICE.value: len(document.services),
        Directory.FACILITY.value: len(document.facilities),
        Directory.PROVIDER.value: len(document.providers),
    }


async def _observed(chunks: AsyncIterator[bytes], done: Callable[[str], None]) -> AsyncGenerator[bytes, None]:
    """`chunks`, calling `done("ok")` after the last one, `done("aborted")` when cut (error or shutdown)."""
    outcome = "aborted"
    try:
        async for chunk in chunks:
            yield chunk
        outcome = "ok"
    finally:
        done(outcome)


class CorrelationMiddleware:
    """Opens each HTTP request's correlation (bridge/correlation.py) and returns its id as `X-Request-ID`.

    A front end's `X-Request-ID` (e.g. nginx `$request_id`) is kept when plain; the CSD endpoint replaces
    it by the message's `wsa:MessageID`.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        received = None
        for name, value in scope.get("headers", ()):
            if name == b"x-request-id":
                received = value.decode("latin-1")
                break
        state = correlation.begin(received)

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                headers[correlation.HEADER] = state.request_id
            await send(message)

        await self.app(scope, receive, send_with_id)


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


def create_app(settings: Settings, *, tracing: Tracing | None = None) -> FastAPI:
    """The bridge application for these settings (`tracing`: default from `OTEL_EXPORTER_OTLP_ENDPOINT`)."""
    memory.cap_arenas()  # before the request threads exist: their arenas are the ones that grow
    mappings = mappings_from(settings)
    metrics = Metrics()
    tracing = tracing if tracing is not None else build_tracing()
    in_flight: set[AsyncGenerator[bytes, None]] = set()  # responses still streaming (graceful shutdown)
    upstream = build_upstream(settings, observer=FanOut(metrics, tracing) if tracing.enabled else metrics)
    pipeline = Pipeline(mappings, upstream.client, mapping_workers=settings.effective_mapping_workers)
    extractor = build_extractor(settings, mappings, upstream.client)
    shadow = build_shadow(settings)
    if shadow is not None:
        shadow.on_record = metrics.shadow_recorded
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
        if shadow is not None:
            await shadow.aclose()
        # The server has stopped accepting and waited `shutdown_grace_s` for answers in flight; a response
        # still streaming now is closed here, so it ends as an abort (its `finally` blocks run: metrics,
        # cache discard, log), never as a complete document.
        # The server has just cancelled their tasks: let them unwind first.
        for _step in range(SHUTDOWN_SETTLE_STEPS):
            if not in_flight:
                break
            await asyncio.sleep(0.02)
        for stream in list(in_flight):
            with contextlib.suppress(Exception):
                await stream.aclose()
        releaser.cancel()
        await upstream.client.aclose()
        if trust.audit is not None:
            trust.audit.close()
        tracing.shutdown()
        metrics.worker_stopped()
        log.info("%s", LogEvent.STOPPED)

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
    app.state.metrics = metrics
    app.state.trust = trust
    app.add_middleware(TrustGate, policy=trust, on_refusal=metrics.refusal)
    app.add_middleware(CorrelationMiddleware)  # outermost: refusals carry the request id too
    if upstream.simulator is not None:
        # Lets a user look at the FHIR data behind each CSD answer (access checks off).
        app.mount(DEMO_MOUNT, upstream.simulator)

    async def csd_post(request: Request, region: str | None) -> Response:
        # The transaction's span ends when the answer starts streaming (OpenTelemetry, off by default).
        with tracing.span("csd.transaction", **{"csd.region": region or "national"}):
            return await csd_answer(request, region)

    async def csd_answer(request: Request, region: str | None) -> Response:
        started = time.perf_counter()
        content_type = request.headers.get("content-type")
        soap_action = request.headers.get("soapaction")
        envelope: Envelope = guess_envelope(content_type, soap_action)
        addressing: Addressing | None = None
        profile = is_profile_action(content_type, soap_action)
        csd_request: CsdRequest | None = None
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
            profile = profile or is_profile_request(message.body)
            correlation.adopt(addressing.message_id if addressing is not None else None)
            csd_request = parse_request(message.body, region=region)
            with tracing.span(
                "csd.translate",
                **{
                    "csd.function": function_label(mappings, csd_request),
                    "bridge.request_id": correlation.current_request_id() or "",
                },
            ):
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
            fault, status, fault_type = render_fault(error, envelope, addressing, profile=profile)
            outcome = "sender-fault" if status < 500 and isinstance(error, SenderError) else "receiver-fault"
            metrics.request_done(
                function_label(mappings, csd_request),
                region,
                envelope.value,
                outcome,
                time.perf_counter() - started,
            )
            audit.note_outcome(f"fault:{fault_spec(error).subcode}")
            return Response(fault, status_code=status, media_type=fault_type)
        label = function_label(mappings, csd_request)
        counts = _entity_counts(response)

        def answered(outcome: str) -> None:
            in_flight.discard(stream)
            elapsed = time.perf_counter() - started
            metrics.request_done(label, region, message.envelope.value, outcome, elapsed)
            if outcome == "ok":
                metrics.entities_returned(counts)

        stream = _observed(stream_response(response, message, encapsulated=encapsulated), answered)
        in_flight.add(stream)
        return StreamingResponse(
            stream,
            media_type=content_type_for(message.envelope, response_action(csd_request)),
        )

    async def csd_serve(request: Request, region: str | None) -> Response:
        """The CSD endpoint; in shadow mode the request also goes to the other side (compare/shadow.py)."""
        if shadow is None:
            return await csd_post(request, region)
        try:
            body = await read_body(request.stream(), settings.max_request_bytes)
        except BridgeError as error:
            envelope = guess_envelope(request.headers.get("content-type"), request.headers.get("soapaction"))
            fault, status, fault_type = render_fault(error, envelope, None)
            return Response(fault, status_code=status, media_type=fault_type)

        async def bridge_call(payload: bytes) -> tuple[int, AsyncIterator[bytes], str]:
            response = await csd_post(Request(request.scope, partial(_replayed_body, payload)), region)
            media_type = response.headers.get("content-type", XSD_MEDIA_TYPE)
            if isinstance(response, StreamingResponse):
                return response.status_code, cast(AsyncIterator[bytes], response.body_iterator), media_type
            return response.status_code, _chunks(bytes(response.body)), media_type

        status, chunks, media_type = await shadow.handle(body, dict(request.headers), region, bridge_call)
        return StreamingResponse(chunks, status_code=status, headers={"content-type": media_type})

    def wsdl_or_hint(request: Request, region: str | None = None) -> Response:
        if region is not None and region.strip().lower() not in mappings.regions:
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

    @app.post("/csd")
    async def csd_national(request: Request) -> Response:
        return await csd_serve(request, None)

    @app.post("/csd/{region}")
    async def csd_regional(request: Request, region: str) -> Response:
        return await csd_serve(request, region)

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
        # An authenticated probe outside the retry policy and the breaker: it never opens the breaker,
        # and a national API that refuses this deployment's credentials is "not ready".
        if upstream.client.breaker.is_cooling_down():
            reason = "circuit breaker open: the national API failed repeatedly"
            return JSONResponse({"status": "not ready", "upstream": reason}, status_code=503)
        try:
            await upstream.client.probe()
        except Exception as error:  # any upstream failure means "not ready"
            reason = getattr(error, "reason", type(error).__name__)
            status = getattr(error, "status", None)
            if status is not None:
                reason = f"{reason} (HTTP {status})"
            return JSONResponse({"status": "not ready", "upstream": reason}, status_code=503)
        return JSONResponse(
            {"status": "ready", "upstream": "reachable, credentials accepted", "mappings": "loaded"}
        )

    @app.get("/metrics")
    async def metrics_endpoint() -> Response:
        return Response(metrics.exposition(), media_type=METRICS_CONTENT_TYPE)

    async def extraction(request: Request, region: str | None) -> Response:
        clock = time.perf_counter()

        def refused(error: Exception) -> Response:
            answer = extraction_failure(error)
            metrics.request_done(
                EXTRACTION_FUNCTION,
                region,
                "none",
                extraction_outcome(answer.status_code),
                time.perf_counter() - clock,
            )
            return answer

        try:
            wanted = extraction_request(mappings, region, request.query_params.multi_items())
            transaction = audit.current()
            if transaction is not None:
                transaction.params = audit.query_parameters(request.query_params.multi_items())
        except BridgeError as error:
            return refused(error)
        cache = caches[current_profile()]
        cached = cache.lookup(wanted)
        if cached is not None:
            metrics.request_done(EXTRACTION_FUNCTION, region, "none", "ok", time.perf_counter() - clock)
            return FileResponse(
                cached.path, media_type=XSD_MEDIA_TYPE, headers=extraction_headers(cached.date, "hit")
            )
        started = datetime.now(UTC)
        final = ExtractionProgress()

        def remember(progress: ExtractionProgress) -> None:
            nonlocal final
            final = progress
            if transaction is not None:
                transaction.entities = {str(d): n for d, n in progress.written.items()}

        chunks = extractor.stream(wanted, remember, profile=current_profile())
        try:
            first = await anext(chunks)
        except Exception as error:  # nothing was sent: a clean HTTP error
            return refused(error)

        def finished(outcome: str) -> None:
            in_flight.discard(stream)
            metrics.request_done(EXTRACTION_FUNCTION, region, "none", outcome, time.perf_counter() - clock)
            if outcome == "ok":
                metrics.entities_returned({str(d): n for d, n in final.written.items()})
            elif outcome == "aborted":
                log.warning("%s cut before its end, sent without terminator", LogEvent.EXTRACTION_ABORTED)

        entry = cache.open(wanted, started)
        stream = _observed(cached_stream(_aborting(first, chunks), entry), finished)
        in_flight.add(stream)
        return StreamingResponse(
            stream,
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


# `serve --workers N`: the CLI puts what built its settings here (JSON: config file and flag values); each
# worker process rebuilds the same settings from it and the inherited `BRIDGE_*` environment.
WORKER_ARGS_ENV = "ROR_BRIDGE_WORKER_ARGS"


def worker_app() -> FastAPI:
    """The application of one `serve --workers N` worker process (uvicorn factory)."""
    from bridge.config import load_settings
    from bridge.logs import configure_logging

    args = orjson.loads(os.environ[WORKER_ARGS_ENV])
    config = Path(args["config"]) if args.get("config") else None
    settings = load_settings(config, **args["overrides"])
    configure_logging(settings.log_level, settings.log_format)
    return create_app(settings)


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
