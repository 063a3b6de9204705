"""A scripted upstream for the client tests: a token endpoint and a FHIR base whose handler each test sets.

Served on 127.0.0.1 by `tests.server.running_server`; it records every request, counts concurrency and can
emulate a small search server (next links, `_offset`, `_lastUpdated` windows, a result cap).
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qsl, urlencode

import orjson
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

Handler = Callable[[Request], Awaitable[Response]]
FHIR_JSON = "application/fhir+json"


def fhir(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(orjson.dumps(body), status_code=status, media_type=FHIR_JSON, headers=headers)


def outcome(text: str, status: int, headers: dict[str, str] | None = None) -> Response:
    body = {
        "resourceType": "OperationOutcome",
        "issue": [{"severity": "error", "code": "exception", "diagnostics": text}],
    }
    return fhir(body, status, headers)


@dataclass
class Recorded:
    method: str
    path: str
    params: list[tuple[str, str]]
    headers: dict[str, str]


@dataclass
class Scripted:
    """The scripted server's state; tests replace `fhir_handler` and read `requests` / `token_requests`."""

    base: str = ""
    root: str = ""
    fhir_handler: Handler | None = None
    requests: list[Recorded] = field(default_factory=list)
    token_requests: list[dict[str, str]] = field(default_factory=list)
    token_ttl_s: float = 300.0
    valid_tokens: set[str] = field(default_factory=set)
    require_token: bool = False
    clients: dict[str, str] = field(default_factory=lambda: {"bridge": "s3cr3t-value"})
    token_failures: int = 0  # the next token requests answered 503
    in_flight: int = 0
    max_in_flight: int = 0
    _serial: itertools.count[int] = field(default_factory=itertools.count)

    def reset(self) -> None:
        self.fhir_handler = None
        self.requests.clear()
        self.token_requests.clear()
        self.valid_tokens.clear()
        self.require_token = False
        self.token_ttl_s = 300.0
        self.token_failures = 0
        self.in_flight = self.max_in_flight = 0

    def fhir_requests(self, method: str = "GET") -> list[Recorded]:
        return [r for r in self.requests if r.method == method]

    async def token(self, request: Request) -> Response:
        form = dict(parse_qsl((await request.body()).decode()))
        self.token_requests.append(form)
        await asyncio.sleep(0.02)  # long enough for concurrent callers to pile up behind one refresh
        if self.token_failures > 0:
            self.token_failures -= 1
            return Response(
                orjson.dumps({"error": "temporarily_unavailable"}), 503, media_type="application/json"
            )
        if self.clients.get(form.get("client_id", "")) != form.get("client_secret"):
            return Response(orjson.dumps({"error": "invalid_client"}), 401, media_type="application/json")
        value = f"tok-{next(self._serial)}-opaque"
        self.valid_tokens.add(value)
        body = {"access_token": value, "token_type": "Bearer", "expires_in": self.token_ttl_s}
        return Response(orjson.dumps(body), media_type="application/json")

    async def handle(self, request: Request) -> Response:
        self.requests.append(
            Recorded(
                request.method,
                request.url.path,
                list(request.query_params.multi_items()),
                dict(request.headers),
            )
        )
        if self.require_token:
            bearer = request.headers.get("authorization", "").removeprefix("Bearer ")
            if bearer not in self.valid_tokens:
                return outcome("invalid or expired token", 401, {"WWW-Authenticate": "Bearer"})
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            assert self.fhir_handler is not None, "the test did not script the FHIR answer"
            return await self.fhir_handler(request)
        finally:
            self.in_flight -= 1

    def app(self) -> Starlette:
        return Starlette(
            routes=[
                Route("/auth/token", self.token, methods=["POST"]),
                Route("/fhir/{rest:path}", self.handle, methods=["GET", "DELETE"]),
            ]
        )


def resources(
    count: int, resource_type: str = "Organization", start: datetime | None = None
) -> list[dict[str, Any]]:
    """`count` minimal resources, ids r0000…, meta.lastUpdated one minute apart from `start`."""
    origin = start or datetime(2024, 1, 1, tzinfo=UTC)
    return [
        {
            "resourceType": resource_type,
            "id": f"r{i:04d}",
            "meta": {"lastUpdated": (origin + timedelta(minutes=i)).isoformat(timespec="milliseconds")},
        }
        for i in range(count)
    ]


def _instant(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


class SearchServer:
    """A tiny search server over `data`: `_lastUpdated` ge/lt, `_count`, `_offset`, next links, a cap.

    Like the simulator (contract A1): `total` is the real number of matches, paging stops at `cap`.
    """

    def __init__(self, scripted: Scripted, data: list[dict[str, Any]], *, cap: int = 10_000) -> None:
        self.scripted = scripted
        self.data = data
        self.cap = cap
        self.next_links = True
        self.expire_once: set[int] = set()  # offsets whose next link answers 410 the first time

    def matching(self, params: list[tuple[str, str]]) -> list[dict[str, Any]]:
        found = self.data
        for name, value in params:
            if name == "_lastUpdated":
                bound = _instant(value[2:])
                if value.startswith("ge"):
                    found = [r for r in found if _instant(r["meta"]["lastUpdated"]) >= bound]
                elif value.startswith("lt"):
                    found = [r for r in found if _instant(r["meta"]["lastUpdated"]) < bound]
        return found

    async def __call__(self, request: Request) -> Response:
        params = list(request.query_params.multi_items())
        names = dict(params)
        if "cursor" in names:
            offset = int(names["cursor"])
            if offset in self.expire_once:
                self.expire_once.discard(offset)
                return outcome("search expired", 410)
            params = [p for p in params if p[0] != "cursor"]
        else:
            offset = int(names.get("_offset", 0))
        count = int(names.get("_count", 200))
        found = self.matching(params)
        visible = found[: self.cap]
        page = visible[offset : offset + count]
        bundle: dict[str, Any] = {
            "resourceType": "Bundle",
            "type": "searchset",
            "total": len(found),
            "entry": [{"resource": r, "search": {"mode": "match"}} for r in page],
        }
        if self.next_links and offset + count < len(visible):
            query = urlencode([*(p for p in params if p[0] != "_offset"), ("cursor", str(offset + count))])
            path = request.url.path.removeprefix("/fhir")
            bundle["link"] = [{"relation": "next", "url": f"{self.scripted.base}{path}?{query}"}]
        return fhir(bundle)
