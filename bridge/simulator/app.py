"""The ROR national API simulator as an ASGI app: FHIR read, search and paging over the dataset (simulator/).

Served at the app's root; the caller mounts it (`/ws-diffusion-fhir` standalone, `/demo/fhir` in the bridge)
or calls it in-process through `httpx.ASGITransport`. This cut is open: no token, no `Ror-*` headers required
(access checks come with OAuth2 in a later issue).
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass

from fastapi import FastAPI
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send

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
from bridge.simulator.paging import Snapshot, SnapshotStore
from bridge.simulator.search import (
    IncludeSpec,
    SearchError,
    evaluate,
    page_resources,
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
    app = FastAPI(title="ROR national API simulator", docs_url=None, redoc_url=None, openapi_url=None)
    app.state.config = config
    app.state.dataset = data
    app.state.pages = pages
    app.add_middleware(_BareRoot)

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
    ) -> Response:
        """One page of a search: matches `ids[offset:offset+count]` and their includes."""
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
            total=len(ids),
            links=links,
            matches=page_resources(data, keys),
            includes=page_resources(data, resolve_includes(data, keys, includes)),
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
        return page(request, snapshot.resource_type, snapshot.ids, snapshot.includes, snapshot, offset, count)

    @app.get("/{resource_type}")
    async def search(request: Request, resource_type: str) -> Response:
        if resource_type not in RESOURCE_TYPES:
            return unknown_type(resource_type)
        try:
            query = parse_search(resource_type, request.query_params.multi_items(), strict=config.strict)
        except SearchError as exc:
            return error_response(400, str(exc), code=exc.code)
        ids = evaluate(data, query)
        count = page_size(query.count)
        snapshot = None
        if count > 0 and len(ids) > count:
            snapshot = pages.put(resource_type, tuple(ids), query.includes, count)
        return page(request, resource_type, ids, query.includes, snapshot, 0, count)

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
    """Serve the simulator alone under `/ws-diffusion-fhir` with uvicorn (blocks until stopped).

    Open access in this cut: no OAuth2 token and no `Ror-*` headers are required.
    """
    import uvicorn

    uvicorn.run(mount_simulator(create_simulator_app(config)), host=host, port=port, log_level="info")


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
