"""`create_app(settings)`: the only place that builds the bridge's objects from configuration.

Wires the HTTP routes (bridge/http/) to the pipeline (bridge/pipeline/), the national API client (fhir/)
and, for `--upstream demo`, the embedded ROR simulator, into one FastAPI application; holds no route itself.
Also the entry points the CLI uses for offline work.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import logging
import os
import tempfile
from collections.abc import AsyncGenerator, AsyncIterator, Hashable, Iterable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from enum import StrEnum
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO

import httpx
import orjson
from fastapi import FastAPI

from bridge import gc_control, hot_path, memory
from bridge.client_profile import PROFILES
from bridge.compare.shadow import Shadow
from bridge.config import Settings
from bridge.csd.writer import document_to_bytes
from bridge.errors import (
    ConfigurationError,
)
from bridge.fhir.client import FhirClient
from bridge.fhir.observe import FanOut, UpstreamObserver
from bridge.http import csd_routes, extraction_routes, health_routes
from bridge.http.middleware import CorrelationMiddleware
from bridge.http.wiring import Wiring
from bridge.metrics import Metrics
from bridge.model import (
    Directory,
    FhirQuery,
    QueryPlan,
    Resource,
    SearchResult,
)
from bridge.pipeline.cache import ExtractionCache
from bridge.pipeline.extraction import Extractor, extraction_request
from bridge.pipeline.progress import Progress, ProgressCallback, Source
from bridge.pipeline.transaction import Pipeline
from bridge.shipped import shipped_dir
from bridge.tracing import Tracing, build_tracing
from bridge.translate import Mappings, coverage_report, from_fhir_results, load_mappings
from bridge.translate.fhirpaths import check_tables
from bridge.trust.gate import TrustGate, build_policy
from bridge.trust.tls import uvicorn_options as uvicorn_options  # for `serve` (cli.py)
from bridge.trust.upstream import UpstreamHooks

if TYPE_CHECKING:
    from bridge.simulator.dataset import Dataset

log = logging.getLogger("bridge")


class LogEvent(StrEnum):
    """What the HTTP surface logs (house style: events are enum members, never free text)."""

    STARTED = "bridge-started"
    STOPPED = "bridge-stopped"


# The embedded simulator is reached in-process (no socket) under this base; the host name is never
# resolved. `/ws-diffusion-fhir` mirrors the national API's path so logs read the same.
DEMO_BASE_URL = "http://ror-simulator.internal/ws-diffusion-fhir"
DEMO_MOUNT = "/demo/fhir"
SHUTDOWN_SETTLE_STEPS = 50  # × 20 ms: how long shutdown waits for cancelled responses to unwind
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
    from bridge.csd.schema_tree import csd_elements
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
        "export_downloads": settings.upstream_export_downloads,
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
        from bridge.simulator.dataset import generate_dataset
        from bridge.simulator.national_api import SimulatorConfig, create_simulator_app
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


def _upstream_identity(headers: Mapping[int, Mapping[str, str]], profile: int | None) -> Hashable:
    """What the upstream requests made for a client of `profile` depend on: the `Ror-*` headers the
    trust circle sets for it (none: the deployment's own)."""
    return tuple(sorted(headers.get(profile, {}).items())) if profile is not None else ()


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
    pipeline = Pipeline(
        mappings,
        upstream.client,
        mapping_workers=settings.effective_mapping_workers,
        changes_max_concurrent=settings.changes_max_concurrent,
    )
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
    # Clients whose access profiles send the same `Ror-*` headers share the upstream reading of a change set.
    pipeline.upstream_identity = partial(_upstream_identity, hooks.profile_headers)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        log.info("%s upstream=%s hot_path=%s", LogEvent.STARTED, settings.upstream_url, hot_path.STATE)
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
        redirect_slashes=False,  # the CSD routes serve their trailing-slash forms themselves
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

    wiring = Wiring(
        settings=settings,
        mappings=mappings,
        metrics=metrics,
        tracing=tracing,
        client=upstream.client,
        pipeline=pipeline,
        extractor=extractor,
        shadow=shadow,
        caches=caches,
        in_flight=in_flight,
    )
    app.include_router(csd_routes.router(wiring))
    app.include_router(health_routes.router(wiring))
    app.include_router(extraction_routes.router(wiring))
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
    app = create_app(settings)
    gc_control.freeze_start_up()  # what start-up built stays: later collections walk requests' objects only
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
    ValueError says why a file is not a Bundle that can be translated. The cyclic garbage collector is paused
    for the whole batch (bridge/gc_control.py): the parsed Bundle alone is hundreds of thousands of objects.
    """
    with gc_control.batch():
        return _translated(settings, bundle)


def _translated(settings: Settings, bundle: bytes) -> Translation:
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
