"""The ROR national API simulator as an ASGI app: FHIR read, search and paging over the dataset (simulator/).

Served at the app's root; the caller mounts it (`/ws-diffusion-fhir` standalone, `/demo/fhir` in the bridge)
or calls it in-process through `httpx.ASGITransport`. Access checks (access_control.py), faults
(fault_injection.py) and `$export` (export.py) are wired in `create_simulator_app`; `create_simulator_server`
adds the token endpoint.
"""

from __future__ import annotations

import ssl
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from fastapi import FastAPI
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send

from bridge.simulator.access_control import (
    AccessMiddleware,
    CertH11Protocol,
    TokenEndpoint,
    TokenStore,
    WithTokenEndpoint,
)
from bridge.simulator.bundle import (
    FhirResponse,
    error_response,
    fhir_base,
    getpages_url,
    paging_root,
    searchset,
)
from bridge.simulator.capability import capability_statement
from bridge.simulator.dataset import RESOURCE_TYPES, Dataset, generate_dataset
from bridge.simulator.export import ExportSettings, add_export_routes
from bridge.simulator.fault_injection import FaultInjector, FaultMiddleware, parse_faults
from bridge.simulator.paging import Snapshot, SnapshotStore
from bridge.simulator.render_cache import RenderCache
from bridge.simulator.search import (
    IncludeSpec,
    SearchError,
    evaluate,
    parse_search,
    resolve_includes,
)

FHIR_MOUNT = "/ws-diffusion-fhir"  # the national base path (ror-fhir-api.md §1.1)


@dataclass(frozen=True)
class SimulatorConfig:
    """Settings of one simulator instance.

    Page size: the ROR returns 200 results per page by default and at most 200 (RG_RECH_52, ror-fhir-api.md
    §2.4), so both default to 200; a larger `_count` is capped silently, as HAPI does.
    """

    scale: int = 300
    seed: int = 1
    page_size_max: int = 200
    page_size_default: int = 200
    next_link_ttl_s: float = 600
    strict: bool = True  # unknown search parameters → 400; False ignores them (HAPI lenient mode)
    max_snapshots: int = 1000  # stored searches kept for paging; the oldest is evicted beyond this
    # Access (access_control.py). Open by default (in-process demo, tests); `ror-bridge simulator` checks.
    open_access: bool = True
    clients: Mapping[str, str] = field(default_factory=lambda: {"bridge-demo": "bridge-demo"})  # id → secret
    client_certs: Mapping[str, str] = field(default_factory=dict)  # cert SHA-256 (hex) → client_id (mTLS)
    token_ttl_s: float = 300
    tls_cert: str | None = None  # PEM paths; TLS is on when cert and key are set
    tls_key: str | None = None
    tls_ca: str | None = None  # with a CA, clients may present a certificate (RFC 8705)
    # Faults (fault_injection.py): the fault spec, and a fixed latency added to every FHIR request.
    faults: str = ""
    latency_ms: float = 0
    # $export (export.py)
    export_file_size: int = 1000  # resources per output file
    export_step_delay_s: float = 0  # pause before each output file, to watch a job run
    export_retry_after_s: int = 1  # Retry-After while a job runs
    export_poll_wait_s: float = 0.5  # a poll of a running job waits this long for it to finish (export.py)
    export_build_ahead: int = 8  # files built ahead of the downloads (export.py)
    # Search (A1): results past this many are not served; Bundle.total still gives the real count
    # (the ROR truncates searches at 10 000 results, ror-fhir-api.md §5 (A); simulator choice, see README).
    max_results: int = 10_000
    # Resources kept serialised for pages and export files, built at start (render_cache.py); 0: each one is
    # built every time it is served.
    render_cache: int = 0


class _BareRoot:
    """Routes the bare base URL (`…/ws-diffusion-fhir?_getpages=…`, no trailing slash) to `/`.

    HAPI next links have no slash before `?`; with a non-empty root_path the route path is then empty.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            root = scope.get("root_path", "")
            if root and scope["path"] == root:
                scope = dict(scope, path=root + "/", raw_path=(root + "/").encode())
        await self.app(scope, receive, send)


def create_simulator_app(config: SimulatorConfig, dataset: Dataset | None = None) -> FastAPI:
    """A simulator serving `dataset` (generated from the config's scale and seed when not given)."""
    if not 1 <= config.page_size_default <= config.page_size_max:
        raise ValueError("page sizes must satisfy 1 <= page_size_default <= page_size_max")
    data = dataset if dataset is not None else generate_dataset(config.scale, config.seed)
    pages = SnapshotStore(config.next_link_ttl_s, config.max_snapshots)
    rendered = RenderCache(data, config.render_cache)
    rendered.warm()  # with a render cache, every page and file is spliced from the start (no-op without)
    app = FastAPI(title="ROR national API simulator", docs_url=None, redoc_url=None, openapi_url=None)
    app.state.config = config
    app.state.dataset = data
    app.state.pages = pages
    app.add_middleware(_BareRoot)
    # A2: access checks, then faults outermost (so every FHIR request is counted by the fault selectors);
    # the $export routes go before the generic `/{resource_type}` routes below.
    tokens = TokenStore(config.token_ttl_s)
    app.state.tokens = tokens
    if not config.open_access:
        app.add_middleware(AccessMiddleware, store=tokens)
    injector = FaultInjector(parse_faults(config.faults), seed=config.seed, latency_ms=config.latency_ms)
    app.state.faults = injector
    app.add_middleware(FaultMiddleware, injector=injector, expire_token=tokens.expire)
    app.state.exports = add_export_routes(
        app,
        data,
        ExportSettings(
            config.export_file_size,
            config.export_step_delay_s,
            config.export_retry_after_s,
            config.export_poll_wait_s,
            config.export_build_ahead,
        ),
        rendered,
    )

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_: Request, exc: StarletteHTTPException) -> Response:
        code = {404: "not-found", 405: "not-supported"}.get(exc.status_code, "processing")
        return error_response(exc.status_code, str(exc.detail), code=code)

    def unknown_type(resource_type: str) -> Response:
        return error_response(
            404,
            f"Unknown resource type '{resource_type}' - Server knows how to handle: {list(RESOURCE_TYPES)}",
            code="not-supported",
        )

    def page(
        request: Request,
        rtype: str,
        ids: Sequence[str],
        includes: tuple[IncludeSpec, ...],
        snapshot: Snapshot | None,
        offset: int,
        count: int,
        total: int,
    ) -> Response:
        """One page of a search: matches `ids[offset:offset+count]` (ids served, truncated) and includes."""
        base = fhir_base(request)
        root = paging_root(request)
        window = list(ids[offset : offset + count])
        keys = [(rtype, rid) for rid in window]
        # First page: self = the search as asked; later pages: self = their own _getpages link (HAPI).
        links = [("self", str(request.url))]
        if snapshot is not None:
            if offset > 0:
                links[0] = ("self", getpages_url(root, snapshot.id, offset, count))
                links.append(("previous", getpages_url(root, snapshot.id, max(0, offset - count), count)))
            if offset + count < len(ids):
                links.append(("next", getpages_url(root, snapshot.id, offset + count, count)))
        bundle = searchset(
            base=base,
            bundle_id=snapshot.id if snapshot is not None else str(uuid.uuid4()),
            total=total,
            links=links,
            matches=rendered.rendered(keys),
            includes=rendered.rendered(resolve_includes(data, keys, includes)),
        )
        return FhirResponse(bundle)

    def page_size(requested: int | None) -> int:
        return config.page_size_default if requested is None else min(requested, config.page_size_max)

    @app.get("/metadata")
    async def metadata(request: Request) -> Response:
        return FhirResponse(
            capability_statement(
                fhir_base(request),
                page_size_default=config.page_size_default,
                page_size_max=config.page_size_max,
                max_results=config.max_results,
                strict=config.strict,
            )
        )

    @app.get("/")
    async def getpages(request: Request) -> Response:
        params = request.query_params
        snapshot_id = params.get("_getpages")
        if not snapshot_id:
            return error_response(400, "Missing _getpages: a search needs a resource type", code="invalid")
        raw_offset = params.get("_getpagesoffset", "0")
        raw_count = params.get("_count")
        if not raw_offset.isdigit() or (
            raw_count is not None and (not raw_count.isdigit() or raw_count == "0")
        ):
            # A zero page size would hand out a next link to the same offset forever.
            return error_response(400, "_getpagesoffset must be >= 0 and _count >= 1", code="invalid")
        snapshot = pages.get(snapshot_id)
        if snapshot is None:
            # HAPI: ResourceGoneException for an unknown or expired search.
            return error_response(410, f'Search ID "{snapshot_id}" does not exist and may have expired')
        count = page_size(int(raw_count) if raw_count is not None else snapshot.count)
        offset = int(raw_offset)
        rtype, ids, total = snapshot.resource_type, snapshot.ids, snapshot.total
        return page(request, rtype, ids, snapshot.includes, snapshot, offset, count, total)

    @app.get("/{resource_type}")
    async def search(request: Request, resource_type: str) -> Response:
        if resource_type not in RESOURCE_TYPES:
            return unknown_type(resource_type)
        try:
            query = parse_search(resource_type, request.query_params.multi_items(), strict=config.strict)
        except SearchError as exc:
            return error_response(400, str(exc), code=exc.code)
        matches = evaluate(data, query)
        total = len(matches)
        # Truncation (contract A1): only the first max_results are paged through, no next link after them.
        ids = matches if total <= config.max_results else matches[: config.max_results]
        count = page_size(query.count)
        snapshot = None
        if count > 0 and len(ids) > count:
            snapshot = pages.put(resource_type, ids, query.includes, count, total)
        return page(request, resource_type, ids, query.includes, snapshot, 0, count, total)

    @app.get("/{resource_type}/{resource_id}")
    async def read(resource_type: str, resource_id: str) -> Response:
        if resource_type not in RESOURCE_TYPES:
            return unknown_type(resource_type)
        resource = data.get(resource_type, resource_id)
        if resource is None:
            return error_response(
                404, f"Resource {resource_type}/{resource_id} is not known", code="not-found"
            )
        return FhirResponse(resource)

    return app


def run_simulator(config: SimulatorConfig, host: str, port: int) -> None:
    """Serve `create_simulator_server(config)` with uvicorn and the config's TLS (blocks until stopped)."""
    import uvicorn

    # Bounded shutdown: a request held by the `timeout` fault, or an idle TLS connection waiting for its
    # close_notify, would otherwise hold Ctrl-C for minutes.
    uvicorn.run(
        create_simulator_server(config),
        host=host,
        port=port,
        log_level="info",
        timeout_graceful_shutdown=5,
        **tls_options(config),
    )


def create_simulator_server(config: SimulatorConfig, dataset: Dataset | None = None) -> ASGIApp:
    """The standalone server's root: FHIR base at `/ws-diffusion-fhir`, OAuth2 token endpoint at `TOKEN_PATH`.

    The token endpoint sits at the server root beside the FHIR base, as the ROR's Keycloak realm path does
    (ror-fhir-api.md §1.1); it is served even with open access, so clients can keep their token logic.
    """
    simulator = create_simulator_app(config, dataset)
    endpoint = TokenEndpoint(simulator.state.tokens, config.clients, config.client_certs)
    return WithTokenEndpoint(mount_simulator(simulator), endpoint)


def tls_options(config: SimulatorConfig) -> dict[str, Any]:
    """uvicorn keyword options for the config's TLS settings (none when TLS is off).

    With a CA, client certificates are optional (`CERT_OPTIONAL`) so secret-based clients still connect and a
    missing certificate gets a readable 401 rather than a dropped handshake (engineering-notes §6.2); the
    h11 protocol subclass hands the peer certificate to the token endpoint (engineering-notes §6.1).
    """
    if not (config.tls_cert and config.tls_key):
        if config.tls_cert or config.tls_key or config.tls_ca:
            raise ValueError("TLS needs both a certificate and a key (--tls-cert and --tls-key)")
        return {}
    options: dict[str, Any] = {"ssl_certfile": config.tls_cert, "ssl_keyfile": config.tls_key}
    if config.tls_ca:
        options.update(ssl_ca_certs=config.tls_ca, ssl_cert_reqs=ssl.CERT_OPTIONAL, http=CertH11Protocol)
    return options


def mount_simulator(simulator: ASGIApp, prefix: str = FHIR_MOUNT) -> ASGIApp:
    """An ASGI app serving `simulator` under `prefix`, the bare `prefix` included (HAPI next links)."""

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await _lifespan_noop(receive, send)
            return
        path: str = scope.get("path", "")
        if path == prefix or path.startswith(prefix + "/"):
            root = scope.get("root_path", "") + prefix
            await simulator(dict(scope, root_path=root), receive, send)
            return
        response = error_response(404, f"Not found: the FHIR base is {prefix}", code="not-found")
        await response(scope, receive, send)

    return app


async def _lifespan_noop(receive: Receive, send: Send) -> None:
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return
