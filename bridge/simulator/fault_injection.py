"""Fault injection of the ROR simulator (simulator/): the fault spec parser and the ASGI middleware.

Spec from `SimulatorConfig.faults` / `--faults`, or per request from the `X-Simulator-Faults` header.
"""

# Grammar (issue 3 item 7, contract A1/A2/B):
# SPEC := RULE (";" RULE)*    RULE := KIND ["(" ARGS ")"] ["@" SELECTOR ("&" SELECTOR)*]

from __future__ import annotations

import asyncio
import contextlib
import random
import re
import socket
import struct
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import orjson
from starlette.datastructures import Headers
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from bridge.errors import FaultSpecError as FaultSpecError  # raised here; importers keep this path
from bridge.simulator.bundle import error_response

FAULTS_HEADER = "X-Simulator-Faults"
SCOPE_KEY = "ror_simulator.faults"  # the rules selected for a request, read by the $export handlers

KINDS = (
    "latency",
    "status",
    "outcome",
    "timeout",
    "reset",
    "malformed-json",
    "next",
    "duplicates",
    "token-expiry",
    "export",
)
_NO_ARGS = frozenset({"reset", "malformed-json", "duplicates", "token-expiry"})
_SELECTORS = ("p", "n", "first", "every", "path")
DEFAULT_TIMEOUT_HOLD_S = 600.0  # longer than any sane client timeout; the hold ends early on disconnect


@dataclass(frozen=True, slots=True)
class Selector:
    name: str  # p, n, first, every, path
    value: str

    def deterministic_match(self, count: int, target: str) -> bool:
        """Every selector but `p` (drawn last, so the random sequence only depends on matching requests)."""
        if self.name == "n":
            return count == int(self.value)
        if self.name == "first":
            return count <= int(self.value)
        if self.name == "every":
            return count % int(self.value) == 0
        if self.name == "path":
            return self.value in target
        return True


@dataclass(frozen=True, slots=True)
class FaultRule:
    kind: str
    args: tuple[str, ...]
    selectors: tuple[Selector, ...]

    def applies(self, count: int, target: str, rng: random.Random) -> bool:
        if not all(s.deterministic_match(count, target) for s in self.selectors):
            return False
        return all(rng.random() < float(s.value) for s in self.selectors if s.name == "p")

    # ---- typed views of the arguments (validated by the parser) --------------------------------------

    def latency_range_s(self) -> tuple[float, float]:
        low, high = _parse_duration_range(self.args[0])
        return low, high

    def statuses(self) -> tuple[int, ...]:
        return tuple(int(code) for code in self.args[0].split("|"))

    def retry_after(self) -> str | None:
        for arg in self.args[1:]:
            key, _, value = arg.partition("=")
            if key == "retry-after":
                return value
        return None

    def hold_s(self) -> float:
        return _parse_duration_range(self.args[0])[1] if self.args else DEFAULT_TIMEOUT_HOLD_S


# ------------------------------------------------------------------------------------------------------
# Parser


def _split_top(text: str, sep: str) -> list[str]:
    """Split on `sep` outside parentheses and double quotes."""
    parts: list[str] = []
    current: list[str] = []
    depth = 0
    quoted = False
    for ch in text:
        if ch == '"':
            quoted = not quoted
        elif not quoted and ch == "(":
            depth += 1
        elif not quoted and ch == ")":
            depth -= 1
        if ch == sep and depth == 0 and not quoted:
            parts.append("".join(current))
            current = []
        else:
            current.append(ch)
    if quoted or depth != 0:
        raise FaultSpecError(f"unbalanced quotes or parentheses in fault spec {text!r}")
    parts.append("".join(current))
    return parts


_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(?:-\s*(\d+(?:\.\d+)?)\s*)?(ms|s)?\s*$")


def _parse_duration_range(text: str) -> tuple[float, float]:
    """`50ms`, `10-200ms`, `2s`, `1.5-3s` → (low, high) in seconds; a bare number is milliseconds."""
    match = _DURATION.match(text)
    if match is None:
        raise FaultSpecError(f"bad duration {text!r} (expected e.g. 50ms, 10-200ms, 2s)")
    scale = 1.0 if match.group(3) == "s" else 0.001
    low = float(match.group(1)) * scale
    high = float(match.group(2)) * scale if match.group(2) is not None else low
    if high < low:
        raise FaultSpecError(f"bad duration range {text!r} (high < low)")
    return low, high


def _check_status(code: str) -> None:
    if not code.isdigit() or not 400 <= int(code) <= 599:
        raise FaultSpecError(f"bad status {code!r} (expected an HTTP error status, 400-599)")


def _validate(kind: str, args: tuple[str, ...]) -> None:
    if kind in _NO_ARGS and args:
        raise FaultSpecError(f"{kind} takes no arguments")
    if kind == "latency":
        if len(args) != 1:
            raise FaultSpecError("latency takes one duration: latency(50ms) or latency(10-200ms)")
        _parse_duration_range(args[0])
    elif kind == "status":
        if not args:
            raise FaultSpecError(
                "status needs a status: status(503), status(500|502), status(429,retry-after=2)"
            )
        for code in args[0].split("|"):
            _check_status(code)
        for extra in args[1:]:
            key, _, value = extra.partition("=")
            if key != "retry-after" or not value.isdigit():
                raise FaultSpecError(f"bad status option {extra!r} (expected retry-after=<seconds>)")
    elif kind == "outcome":
        if not 1 <= len(args) <= 2:
            raise FaultSpecError('outcome takes a status and an optional text: outcome(500,"text")')
        _check_status(args[0])
    elif kind == "timeout":
        if len(args) > 1:
            raise FaultSpecError("timeout takes at most one duration (how long to hold the request)")
        if args:
            _parse_duration_range(args[0])
    elif kind == "next":
        if args not in (("missing",), ("loop",), ("expired",)):
            raise FaultSpecError("next takes one of: missing, loop, expired")
    elif kind == "export" and args != ("fail",):
        raise FaultSpecError("export takes: fail")


def _parse_selector(text: str) -> Selector:
    name, eq, value = text.strip().partition("=")
    name = name.strip()
    value = value.strip()
    if not eq or name not in _SELECTORS or not value:
        raise FaultSpecError(f"bad selector {text!r} (expected one of p=, n=, first=, every=, path=)")
    if name == "p":
        try:
            probability = float(value)
        except ValueError:
            raise FaultSpecError(f"bad probability {value!r}") from None
        if not 0.0 <= probability <= 1.0:
            raise FaultSpecError(f"probability {value!r} is not within [0, 1]")
    elif name in ("n", "first", "every") and (not value.isdigit() or int(value) < 1):
        raise FaultSpecError(f"{name}= takes an integer >= 1, not {value!r}")
    return Selector(name, value)


_RULE = re.compile(r"^\s*([a-z-]+)\s*(?:\((.*)\))?\s*$", re.DOTALL)


def _parse_rule(text: str) -> FaultRule:
    head, *selector_parts = _split_top(text, "@")
    if len(selector_parts) > 1:
        raise FaultSpecError(f"more than one '@' in fault rule {text!r}")
    match = _RULE.match(head)
    if match is None:
        raise FaultSpecError(f"bad fault rule {text.strip()!r} (expected KIND[(ARGS)][@SELECTOR&...])")
    kind = match.group(1)
    if kind not in KINDS:
        raise FaultSpecError(f"unknown fault kind {kind!r}; known kinds: {', '.join(KINDS)}")
    args: tuple[str, ...] = ()
    if match.group(2) is not None:
        args = tuple(_unquote(a.strip()) for a in _split_top(match.group(2), ",") if a.strip())
    _validate(kind, args)
    selectors = (
        tuple(_parse_selector(s) for s in _split_top(selector_parts[0], "&")) if selector_parts else ()
    )
    return FaultRule(kind, args, selectors)


def _unquote(text: str) -> str:
    if len(text) >= 2 and text[0] == text[-1] == '"':
        return text[1:-1]
    return text


def parse_faults(spec: str) -> tuple[FaultRule, ...]:
    """A fault spec → its rules, in order. An empty or blank spec has none. Raises FaultSpecError."""
    if not spec.strip():
        return ()
    return tuple(_parse_rule(part) for part in _split_top(spec, ";") if part.strip())


# ------------------------------------------------------------------------------------------------------
# Selection


class FaultInjector:
    """Counts the simulator's FHIR requests (1-based, from server start) and picks the rules that apply.

    Probabilities draw from a PRNG seeded with the simulator seed, so the same request sequence meets the
    same faults on every run.
    """

    def __init__(self, rules: Sequence[FaultRule], *, seed: int, latency_ms: float = 0) -> None:
        self.rules = tuple(rules)
        self.latency_ms = latency_ms
        self.sleep: Callable[[float], Awaitable[None]] = asyncio.sleep  # replaceable: tests record latency
        self.count = 0
        self._rng = random.Random(seed)

    def select(self, target: str, extra: Sequence[FaultRule] = ()) -> list[FaultRule]:
        """Rules applying to the next request (`target` = path and query); `extra` = the header's rules."""
        self.count += 1
        return [rule for rule in (*self.rules, *extra) if rule.applies(self.count, target, self._rng)]

    def uniform(self, low: float, high: float) -> float:
        return low if high <= low else self._rng.uniform(low, high)

    def choice(self, options: Sequence[int]) -> int:
        return options[0] if len(options) == 1 else self._rng.choice(list(options))


# ------------------------------------------------------------------------------------------------------
# Middleware

_TERMINAL = frozenset({"token-expiry", "status", "outcome", "timeout", "reset"})
_REWRITES = frozenset({"malformed-json", "next", "duplicates"})


class FaultMiddleware:
    """ASGI middleware of the simulator app: applies the selected faults to each HTTP request.

    Order for one request: latency (fixed `latency_ms`, then each latency rule), then the first terminal
    fault (token-expiry, status, outcome, timeout, reset) answers instead of the app, else the app answers
    and the body rewrites (malformed-json, next, duplicates) apply. `export(fail)` is left to the $export
    handlers through the scope (`SCOPE_KEY`).
    """

    def __init__(
        self,
        app: ASGIApp,
        injector: FaultInjector,
        expire_token: Callable[[str], None] | None = None,
    ) -> None:
        self.app = app
        self.injector = injector
        self.expire_token = expire_token  # revokes a bearer (token-expiry), when access checks exist

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        extra: tuple[FaultRule, ...] = ()
        header_spec = headers.get(FAULTS_HEADER)
        if header_spec:
            try:
                extra = parse_faults(header_spec)
            except FaultSpecError as exc:
                await error_response(400, f"{FAULTS_HEADER}: {exc}", code="invalid")(scope, receive, send)
                return
        query = scope.get("query_string", b"").decode("latin-1")
        target = scope.get("path", "") + ("?" + query if query else "")
        rules = self.injector.select(target, extra)
        if self.injector.latency_ms > 0:
            await self.injector.sleep(self.injector.latency_ms / 1000)
        for rule in rules:
            if rule.kind == "latency":
                await self.injector.sleep(self.injector.uniform(*rule.latency_range_s()))
        scope = dict(scope)
        scope[SCOPE_KEY] = tuple(rules)
        terminal = next((r for r in rules if r.kind in _TERMINAL), None)
        if terminal is not None:
            await self._terminal(terminal, headers, scope, receive, send)
            return
        rewrites = [r for r in rules if r.kind in _REWRITES]
        if not rewrites:
            await self.app(scope, receive, send)
            return
        start, body = await _capture(self.app, scope, receive)
        for rule in rewrites:
            body = await self._rewrite(rule, scope, body)
        await _send_rewritten(send, start, body)

    async def _terminal(
        self, rule: FaultRule, headers: Headers, scope: Scope, receive: Receive, send: Send
    ) -> None:
        if rule.kind == "token-expiry":
            # The bearer is treated as expired from now on: the client must fetch a new token (ror-fhir-api.md
            # §1.2: clients renew the token; this tests the renewal mid-walk).
            auth = headers.get("authorization", "")
            if auth[:7].lower() == "bearer " and self.expire_token is not None:
                self.expire_token(auth[7:].strip())
            response = error_response(401, "simulated fault: the access token has expired", code="login")
            response.headers["WWW-Authenticate"] = (
                'Bearer realm="ror", error="invalid_token", error_description="The access token expired"'
            )
            await response(scope, receive, send)
        elif rule.kind == "status":
            status = self.injector.choice(rule.statuses())
            response = error_response(status, f"simulated fault: HTTP {status}", code="transient")
            retry_after = rule.retry_after()
            if retry_after is not None:
                response.headers["Retry-After"] = retry_after
            await response(scope, receive, send)
        elif rule.kind == "outcome":
            text = rule.args[1] if len(rule.args) > 1 else "simulated fault: OperationOutcome error"
            await error_response(int(rule.args[0]), text, code="exception")(scope, receive, send)
        elif rule.kind == "timeout":
            if _transport(receive) is None:
                # In-process (httpx.ASGITransport) a client cannot time out: fail at once rather than hang.
                raise TimeoutError("simulated fault: timeout (in-process, raised at once)")
            await _hold(receive, rule.hold_s())
            await _drop(scope, receive, reset=False)
        else:  # reset
            await _drop(scope, receive, reset=True)

    async def _rewrite(self, rule: FaultRule, scope: Scope, body: bytes) -> bytes:
        if rule.kind == "malformed-json":
            # A 200 whose JSON is cut in the middle (the closing brace never comes).
            return body[: max(1, len(body) // 2)]
        bundle = _json_object(body)
        if bundle is None or bundle.get("resourceType") != "Bundle":
            return body
        if rule.kind == "next":
            return orjson.dumps(_rewrite_next(bundle, rule.args[0]))
        previous = await self._previous_last_match(scope)
        if previous is not None:
            bundle["entry"] = [previous, *bundle.get("entry", [])]
        return orjson.dumps(bundle)

    async def _previous_last_match(self, scope: Scope) -> dict[str, Any] | None:
        """The match just before this page (HAPI `_getpagesoffset` - 1), fetched from the app itself.

        Only a later page (`_getpages`, offset > 0) has a previous page; a first page is left as is.
        """
        params = dict(parse_qsl(scope.get("query_string", b"").decode("latin-1")))
        offset = params.get("_getpagesoffset", "")
        if "_getpages" not in params or not offset.isdigit() or int(offset) == 0:
            return None
        params.update(_getpagesoffset=str(int(offset) - 1), _count="1")
        sub_scope = dict(scope, method="GET", query_string=urlencode(params).encode())
        sub_scope[SCOPE_KEY] = ()

        async def no_body() -> Message:
            return {"type": "http.request", "body": b"", "more_body": False}

        start, body = await _capture(self.app, sub_scope, no_body)
        page = _json_object(body)
        if start.get("status") != 200 or page is None:
            return None
        for entry in page.get("entry", []):
            if entry.get("search", {}).get("mode") == "match":
                return dict(entry)
        return None


def _json_object(body: bytes) -> dict[str, Any] | None:
    try:
        value = orjson.loads(body)
    except orjson.JSONDecodeError:
        return None
    return value if isinstance(value, dict) else None


def _rewrite_next(bundle: dict[str, Any], how: str) -> dict[str, Any]:
    links: list[dict[str, Any]] = list(bundle.get("link", []))
    nexts = [link for link in links if link.get("relation") == "next"]
    if not nexts:
        return bundle  # only a page that needs a next link is affected
    if how == "missing":
        links = [link for link in links if link.get("relation") != "next"]
    elif how == "loop":
        self_url = next((link["url"] for link in links if link.get("relation") == "self"), None)
        if self_url is not None:
            nexts[0]["url"] = self_url
    else:  # expired: a search id the server no longer knows answers 410 Gone, as an expired HAPI search
        parts = urlsplit(nexts[0]["url"])
        params = dict(parse_qsl(parts.query))
        params["_getpages"] = f"expired-{uuid.uuid4()}"
        nexts[0]["url"] = urlunsplit(parts._replace(query=urlencode(params)))
    bundle["link"] = links
    return bundle


async def _capture(app: ASGIApp, scope: Scope, receive: Receive) -> tuple[Message, bytes]:
    start: Message = {"type": "http.response.start", "status": 500, "headers": []}
    chunks: list[bytes] = []

    async def collect(message: Message) -> None:
        nonlocal start
        if message["type"] == "http.response.start":
            start = message
        elif message["type"] == "http.response.body":
            chunks.append(message.get("body", b""))

    await app(scope, receive, collect)
    return start, b"".join(chunks)


async def _send_rewritten(send: Send, start: Message, body: bytes) -> None:
    headers = [(k, v) for k, v in start.get("headers", []) if k.lower() != b"content-length"]
    headers.append((b"content-length", str(len(body)).encode()))
    await send({"type": "http.response.start", "status": start.get("status", 200), "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def _hold(receive: Receive, seconds: float) -> None:
    """Wait `seconds`, or less if the client goes away first (then there is nobody left to wait for)."""

    async def until_disconnect() -> None:
        while (await receive())["type"] != "http.disconnect":
            pass

    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(until_disconnect(), timeout=seconds)


def _transport(receive: Receive) -> Any:
    """The connection's transport, found behind `receive`, or None (served in-process by httpx.ASGITransport).

    ASGI has no way to drop a connection without a response. uvicorn's `receive` is a bound method of its
    request cycle, which holds the transport (uvicorn 0.54, h11_impl / httptools_impl
    `RequestResponseCycle.transport`); middlewares (FastAPI's body limit) wrap it in closures and objects,
    so look through bound-method owners, closure cells and `receive` attributes, a bounded number of steps.
    """
    todo: list[Any] = [receive]
    seen: set[int] = set()
    while todo and len(seen) < 64:
        obj = todo.pop(0)
        if id(obj) in seen:
            continue
        seen.add(id(obj))
        transport = getattr(obj, "transport", None)
        if callable(getattr(transport, "abort", None)) and callable(
            getattr(transport, "get_extra_info", None)
        ):
            return transport
        for attr in ("__self__", "__wrapped__", "receive", "_receive"):
            inner = getattr(obj, attr, None)
            if inner is not None:
                todo.append(inner)
        for cell in getattr(obj, "__closure__", None) or ():
            with contextlib.suppress(ValueError):  # an empty cell
                todo.append(cell.cell_contents)
    return None


async def _drop(scope: Scope, receive: Receive, *, reset: bool) -> None:
    """Close the connection without any response (a TCP RST when `reset`); in-process, raise instead."""
    transport = _transport(receive)
    if transport is None:
        raise ConnectionResetError("simulated fault: connection closed without a response")
    sock = transport.get_extra_info("socket")
    if reset and sock is not None:
        # SO_LINGER on with a zero timeout: close() sends RST instead of FIN.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    transport.abort()
    # Let uvicorn see the disconnect, so it neither logs a missing response nor tries to send a 500.
    await _hold(receive, 5.0)
