"""One exchange with the national API: auth (token, `Ror-*` headers), retries with backoff, the deadline and
the circuit breaker — for searches, paging and `$export` alike.

Outbound edge (`bridge/fhir/`): the client (client.py) and the bulk export (bulk_export.py) send through
this, never through the connection pool themselves. Every failure is an `UpstreamError` subclass.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import logging
import random
import ssl
import time
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, TypeVar

import httpx
import orjson

from bridge import gc_control
from bridge.correlation import HEADER as REQUEST_ID_HEADER
from bridge.correlation import current_request_id
from bridge.errors import (
    UpstreamError,
    UpstreamProtocolError,
    UpstreamStatusError,
    UpstreamTimeoutError,
    UpstreamUnavailableError,
)
from bridge.fhir.auth import TokenProvider
from bridge.fhir.observe import NULL_OBSERVER, UpstreamObserver, resource_of
from bridge.fhir.outcome import outcome_text, retry_after_s
from bridge.fhir.resilience import RETRYABLE_STATUSES, CircuitBreaker, Deadline, RetryPolicy

log = logging.getLogger(__name__)

FHIR_JSON = "application/fhir+json"
REFUSED = "the national API refused the request"
_T = TypeVar("_T")


class LogEvent(StrEnum):
    """What the exchange logs (house style: events are enum members, never free text)."""

    RETRY = "upstream-retry"


@dataclass(frozen=True, slots=True)
class Credentials:
    """OAuth2 client credentials (ror-fhir-api.md §1.2); `client_secret` is None with mTLS (profiles 1–4)."""

    token_url: str
    client_id: str
    client_secret: str | None = field(default=None, repr=False)


def decode(body: bytes) -> Any:
    """`orjson.loads` with the cyclic garbage collector paused (bridge/gc_control.py, the one pause
    shared with the mapping and the writer): a parsed JSON tree holds no reference cycles and reference
    counting frees it, whereas the collector, triggered by its ~50 000 new objects per 2 MB page, would walk
    the whole heap several times per page (3–5× the parse itself with eight pages in flight, measured:
    docs/performance-journal.md). Raises orjson.JSONDecodeError."""
    with gc_control.batch():
        return orjson.loads(body)


# Reads one streamed answer (a `$export` file); called again from the start on every attempt.
StreamReader = Callable[[httpx.Response], AsyncIterator[_T]]


class Exchange:
    """Requests to one FHIR base URL through one connection pool, each with auth, retries, the deadline and
    the breaker. `concurrency` bounds the buffered exchanges in flight (streamed downloads, which last as
    long as their file, do not take a slot)."""

    def __init__(
        self,
        base_url: str,
        *,
        headers: Mapping[str, str],
        timeout_s: float = 30.0,
        connect_timeout_s: float | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
        verify: ssl.SSLContext | bool = True,
        credentials: Credentials | None = None,
        retry: RetryPolicy | None = None,
        breaker: CircuitBreaker | None = None,
        concurrency: int = 4,
        seed: int | None = None,
        observer: UpstreamObserver | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.timeout_s = timeout_s
        self.connect_timeout_s = connect_timeout_s if connect_timeout_s is not None else timeout_s
        self.retry = retry or RetryPolicy()
        self.breaker = breaker or CircuitBreaker()
        self.observer = observer or NULL_OBSERVER
        self.breaker.on_change = self.observer.breaker
        self._headers = {"Accept": FHIR_JSON, **headers}
        self._rng = random.Random(seed)  # noqa: S311  # backoff jitter, not security
        # One pool for the FHIR calls and the token endpoint, kept alive between transactions.
        self._http = httpx.AsyncClient(
            timeout=httpx.Timeout(timeout_s, connect=self.connect_timeout_s),
            transport=transport,
            verify=verify,
            follow_redirects=False,
            limits=httpx.Limits(max_connections=concurrency * 2, max_keepalive_connections=concurrency * 2),
        )
        self.tokens: TokenProvider | None = None
        if credentials is not None:
            self.tokens = TokenProvider(
                credentials.token_url,
                credentials.client_id,
                client_secret=credentials.client_secret,
                http=self._http,
                observer=self.observer,
            )
        # Bounds the HTTP exchanges in flight, whatever the number of partitions being walked.
        self._slots = asyncio.Semaphore(concurrency)

    def __repr__(self) -> str:
        return f"Exchange({self.base_url!r})"

    def with_headers(self, overrides: Mapping[str, str]) -> Exchange:
        """The same exchange (pool, token, breaker, slots) sending other header values."""
        clone = copy.copy(self)
        clone._headers = {**self._headers, **overrides}
        return clone

    def add_event_hooks(
        self,
        request: Callable[[httpx.Request], Awaitable[None]],
        response: Callable[[httpx.Response], Awaitable[None]],
    ) -> None:
        """httpx hooks on every upstream exchange, token endpoint included."""
        self._http.event_hooks["request"].append(request)
        self._http.event_hooks["response"].append(response)

    async def aclose(self) -> None:
        await self._http.aclose()

    async def probe(self, url: str) -> None:
        """One authenticated GET outside the retry policy and the breaker (readiness): a failing probe never
        opens the breaker. Raises the typed UpstreamError."""
        timeout = httpx.Timeout(self.timeout_s, connect=self.connect_timeout_s)
        headers = await self.request_headers()
        try:
            response = await self._http.get(url, headers=headers, timeout=timeout)
        except httpx.HTTPError as exc:
            raise UpstreamUnavailableError(f"connection failed ({type(exc).__name__})", request=url) from None
        if response.status_code >= 400:
            raise UpstreamStatusError(
                "the national API refused the readiness probe",
                request=url,
                status=response.status_code,
                outcome=outcome_text(response.content),
            )

    async def request_headers(self, extra_headers: Mapping[str, str] | None = None) -> dict[str, str]:
        """The headers of one request: auth (auth_headers), `extra_headers`, the correlation id."""
        headers = await self.auth_headers()
        if extra_headers:
            headers.update(extra_headers)
        request_id = current_request_id()
        if request_id is not None:
            headers[REQUEST_ID_HEADER] = request_id
        return headers

    async def auth_headers(self) -> dict[str, str]:
        """The `Ror-*` headers and, with credentials, a valid bearer token."""
        headers = dict(self._headers)
        if self.tokens is not None:
            headers["Authorization"] = f"Bearer {await self.tokens.token()}"
        return headers

    async def get_json(self, url: str, deadline: Deadline) -> tuple[httpx.Response, dict[str, Any]]:
        """GET a JSON object, retried per the policy; raises a typed UpstreamError."""
        response, body = await self.send("GET", url, deadline, parse_json=True)
        if not isinstance(body, dict):
            raise UpstreamProtocolError("the answer is not a JSON object", request=url)
        return response, body

    async def send(
        self,
        method: str,
        url: str,
        deadline: Deadline,
        *,
        extra_headers: Mapping[str, str] | None = None,
        parse_json: bool = False,
    ) -> tuple[httpx.Response, Any]:
        """One idempotent request, its answer read whole: any response below 400 and, with `parse_json`, its
        body parsed once with orjson (a body that does not parse is a transfer cut short: retried). Raises
        the typed error of the last failure otherwise (see `exchange`)."""

        async def whole(response: httpx.Response) -> AsyncIterator[tuple[httpx.Response, Any]]:
            yield response, decode(response.content) if parse_json else None

        answers = self.exchange(method, url, deadline, whole, extra_headers=extra_headers, buffered=True)
        async with contextlib.aclosing(answers):
            async for answer in answers:
                return answer
        raise UpstreamProtocolError("no answer", request=url)  # unreachable: `whole` yields once

    def stream(
        self,
        url: str,
        deadline: Deadline,
        read: StreamReader[_T],
        *,
        extra_headers: Mapping[str, str] | None = None,
        refusal: str = REFUSED,
    ) -> AsyncGenerator[_T, None]:
        """A GET whose answer is read as it arrives (a `$export` file): what `read` yields from it. A failure
        midway is retried like any other and `read` starts again on the new answer: skipping what it already
        delivered is its job. Iterate under `contextlib.aclosing`."""
        return self.exchange(
            "GET", url, deadline, read, extra_headers=extra_headers, buffered=False, refusal=refusal
        )

    async def exchange(
        self,
        method: str,
        url: str,
        deadline: Deadline,
        read: StreamReader[_T],
        *,
        extra_headers: Mapping[str, str] | None = None,
        buffered: bool,
        refusal: str = REFUSED,
    ) -> AsyncGenerator[_T, None]:
        """The one retry loop: auth, retries with backoff, the breaker and the deadline around one request,
        whose answer below 400 `read` turns into what is yielded.

        Each attempt waits for the breaker and takes the time left from the deadline; a 401 gets one token
        refresh and one retry (not a backoff attempt); a retryable status (429, 5xx gateway) or a connection
        failure or timeout is retried after the backoff or the server's Retry-After; any other status of 400
        or more is final (`refusal` says what was refused). `buffered`: the answer is read whole within one of
        the `concurrency` slots.
        """
        attempt = 0
        refreshed = False
        last_failure: UpstreamError | None = None
        while True:
            attempt += 1
            if last_failure is not None and deadline.remaining() <= 0:
                # The backoff sleep overran the deadline it was sized to fit: the last upstream failure says
                # more (status, OperationOutcome) than "deadline passed".
                raise last_failure
            left = deadline.check(url)
            self.breaker.before_call(url)
            try:
                headers = await self.request_headers(extra_headers)
            except UpstreamError as error:
                # The token endpoint is down or busy: retried like the FHIR call it serves. A refusal of
                # the credentials themselves (4xx) is final.
                if error.status is not None and error.status not in RETRYABLE_STATUSES:
                    raise
                last_failure = error
                await self.pause_before_retry(attempt, error, None, deadline)
                continue
            timeout = httpx.Timeout(min(self.timeout_s, left), connect=min(self.connect_timeout_s, left))
            wait: float | None = None
            outage = True
            resource = resource_of(url, self.base_url)
            try:
                async with contextlib.AsyncExitStack() as stack:
                    if buffered:
                        await stack.enter_async_context(self._slots)
                    started = time.perf_counter()
                    try:
                        response = await stack.enter_async_context(
                            self._http.stream(method, url, headers=headers, timeout=timeout)
                        )
                        if buffered:
                            await response.aread()
                    except httpx.HTTPError:
                        self.observer.exchange(resource, "error", time.perf_counter() - started)
                        raise
                    status = response.status_code
                    self.observer.exchange(resource, str(status), time.perf_counter() - started)
                    if status == 401 and self.tokens is not None and not refreshed:
                        self.breaker.record_success()  # the server answered: not an outage
                        refreshed = True
                        attempt -= 1  # the retry after a refresh is not a backoff attempt
                        self.tokens.invalidate(headers["Authorization"].removeprefix("Bearer "))
                        continue
                    if status not in RETRYABLE_STATUSES and status >= 400:
                        self.breaker.record_success()
                        raise UpstreamStatusError(
                            refusal,
                            request=f"{method} {url}" if method != "GET" else url,
                            status=status,
                            outcome=outcome_text(await response.aread()),
                        )
                    if status < 400:
                        self.breaker.record_success()
                        async for item in read(response):
                            yield item
                        return
                    outage = status != 429  # rate limiting is the server protecting itself, not an outage
                    wait = retry_after_s(response.headers.get("retry-after"))
                    failure: UpstreamError = UpstreamStatusError(
                        refusal,
                        request=url,
                        status=status,
                        outcome=outcome_text(await response.aread()),
                    )
            except orjson.JSONDecodeError:
                outage = False
                failure = UpstreamProtocolError("the answer is not valid JSON", request=url)
            except httpx.TimeoutException as exc:
                failure = UpstreamTimeoutError(f"timeout ({type(exc).__name__})", request=url)
            except httpx.HTTPError as exc:
                failure = UpstreamUnavailableError(f"connection failed ({type(exc).__name__})", request=url)
            if outage:
                self.breaker.record_failure()
            last_failure = failure
            await self.pause_before_retry(attempt, failure, wait, deadline)

    async def pause_before_retry(
        self, attempt: int, failure: UpstreamError, wait: float | None, deadline: Deadline
    ) -> None:
        """Sleep before the next attempt, or raise `failure` when attempts, Retry-After or time run out."""
        if attempt >= self.retry.max_attempts:
            raise failure
        if wait is not None and wait > self.retry.retry_after_max_s:
            raise failure
        delay = wait if wait is not None else self.retry.backoff(attempt, self._rng)
        if delay >= deadline.remaining():
            raise failure
        self.observer.retry(resource_of(failure.request or "", self.base_url))
        log.info("%s %d/%d in %.2fs: %s", LogEvent.RETRY, attempt, self.retry.max_attempts, delay, failure)
        await asyncio.sleep(delay)
