"""Resilience: retries with backoff on 429/5xx/timeouts/resets, bounded attempts, deadline, breaker."""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator

import pytest
from starlette.requests import Request
from starlette.responses import Response

from bridge.errors import UpstreamStatusError, UpstreamUnavailableError
from bridge.fhir.client import FhirClient
from bridge.fhir.resilience import BreakerState, CircuitBreaker, RetryPolicy
from bridge.model import FhirQuery
from tests.fhir.scripted import Scripted, fhir, outcome, resources

QUERY = FhirQuery("Organization", ())
FAST = RetryPolicy(max_attempts=4, backoff_base_s=0.001, backoff_max_s=0.01)


def bundle_response() -> Response:
    entries = [{"resource": r, "search": {"mode": "match"}} for r in resources(2)]
    return fhir({"resourceType": "Bundle", "type": "searchset", "total": 2, "entry": entries})


def failing_then_ok(failures: list[Response]) -> object:
    async def handler(request: Request) -> Response:
        return failures.pop(0) if failures else bundle_response()

    return handler


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def client_for(scripted: Scripted, **kwargs: object) -> FhirClient:
    options: dict[str, object] = {"headers": {}, "retry": FAST, "seed": 7}
    options.update(kwargs)
    return FhirClient(scripted.base, **options)  # type: ignore[arg-type]


@pytest.mark.parametrize("status", [429, 500, 502, 503, 504])
async def test_a_transient_status_is_retried_until_it_succeeds(scripted: Scripted, status: int) -> None:
    scripted.fhir_handler = failing_then_ok([outcome("busy", status), outcome("busy", status)])  # type: ignore[assignment]
    async with client_for(scripted) as client:
        result = await client.search(QUERY)
    assert len(result.matches) == 2
    assert len(scripted.requests) == 3


async def test_attempts_are_bounded_and_the_last_error_carries_status_outcome_request(
    scripted: Scripted,
) -> None:
    scripted.fhir_handler = failing_then_ok([outcome("database timeout", 503) for _ in range(10)])  # type: ignore[assignment]
    async with client_for(scripted) as client:
        with pytest.raises(UpstreamStatusError) as caught:
            await client.search(QUERY)
    assert len(scripted.requests) == FAST.max_attempts
    assert (caught.value.status, caught.value.outcome) == (503, "database timeout")
    assert caught.value.request is not None
    assert "/fhir/Organization?" in caught.value.request


async def test_retry_after_is_honoured_and_a_too_long_one_is_not_waited_for(scripted: Scripted) -> None:
    policy = RetryPolicy(max_attempts=4, backoff_base_s=0.001, retry_after_max_s=5)
    scripted.fhir_handler = failing_then_ok([outcome("slow down", 429, {"Retry-After": "3600"})])  # type: ignore[assignment]
    async with client_for(scripted, retry=policy) as client:
        with pytest.raises(UpstreamStatusError) as caught:
            await client.search(QUERY)
    assert caught.value.status == 429
    assert len(scripted.requests) == 1  # an hour is beyond the policy: fail now rather than hang


async def test_a_client_error_is_not_retried(scripted: Scripted) -> None:
    scripted.fhir_handler = failing_then_ok([outcome("unknown parameter", 400)])  # type: ignore[assignment]
    async with client_for(scripted) as client:
        with pytest.raises(UpstreamStatusError) as caught:
            await client.search(QUERY)
    assert caught.value.status == 400
    assert len(scripted.requests) == 1


async def test_timeouts_are_retried_then_reported(scripted: Scripted) -> None:
    async def slow(request: Request) -> Response:
        await asyncio.sleep(1.0)
        return bundle_response()

    scripted.fhir_handler = slow
    async with client_for(
        scripted, timeout_s=0.05, retry=RetryPolicy(max_attempts=2, backoff_base_s=0.001)
    ) as client:
        with pytest.raises(UpstreamUnavailableError, match="timeout"):
            await client.search(QUERY)
    assert len(scripted.requests) == 2


async def test_a_cut_json_answer_is_retried(scripted: Scripted) -> None:
    cut = Response(b'{"resourceType": "Bundle", "type": "sea', media_type="application/fhir+json")
    scripted.fhir_handler = failing_then_ok([cut])  # type: ignore[assignment]
    async with client_for(scripted) as client:
        result = await client.search(QUERY)
    assert len(result.matches) == 2
    assert len(scripted.requests) == 2


@pytest.fixture
async def resetting_port() -> AsyncIterator[tuple[int, list[int]]]:
    """A TCP server on 127.0.0.1 that closes every connection without answering; counts them."""
    accepted: list[int] = []

    async def drop(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        accepted.append(1)
        await reader.read(1)
        writer.close()

    server = await asyncio.start_server(drop, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    yield port, accepted
    server.close()
    await server.wait_closed()


async def test_connection_resets_are_retried_then_reported(resetting_port: tuple[int, list[int]]) -> None:
    port, accepted = resetting_port
    async with FhirClient(f"http://127.0.0.1:{port}/fhir", headers={}, retry=FAST) as client:
        with pytest.raises(UpstreamUnavailableError, match="connection failed"):
            await client.search(QUERY)
    assert len(accepted) == FAST.max_attempts


async def test_the_transaction_deadline_bounds_all_retries(scripted: Scripted) -> None:
    scripted.fhir_handler = failing_then_ok([outcome("down", 503) for _ in range(100)])  # type: ignore[assignment]
    policy = RetryPolicy(max_attempts=100, backoff_base_s=0.05, backoff_max_s=0.05)
    breaker = CircuitBreaker(failure_threshold=1000)
    async with client_for(scripted, retry=policy, deadline_s=0.3, breaker=breaker) as client:
        with pytest.raises(UpstreamStatusError) as caught:
            await client.search(QUERY)
    assert caught.value.status == 503
    assert 1 < len(scripted.requests) < 100  # stopped by the deadline, not by the attempt bound


def test_backoff_is_exponential_capped_and_jittered() -> None:
    policy = RetryPolicy(backoff_base_s=0.1, backoff_max_s=1.0)
    rng = random.Random(1)
    waits = {attempt: [policy.backoff(attempt, rng) for _ in range(200)] for attempt in (1, 2, 3, 6)}
    assert max(waits[1]) <= 0.1 < max(waits[2]) <= 0.2 < max(waits[3]) <= 0.4
    assert max(waits[6]) <= 1.0  # 0.1·2⁵ = 3.2 is capped
    assert len(set(waits[3])) > 100  # jitter: no two clients retry in lockstep


def test_breaker_opens_fails_fast_probes_once_and_closes() -> None:
    clock = Clock()
    breaker = CircuitBreaker(failure_threshold=2, reset_s=10, clock=clock)
    breaker.before_call("u")
    breaker.record_failure()
    assert breaker.state is BreakerState.CLOSED
    breaker.record_failure()
    assert breaker.state is BreakerState.OPEN
    with pytest.raises(UpstreamUnavailableError, match="circuit breaker open"):
        breaker.before_call("u")
    clock.now = 10
    breaker.before_call("u")  # the probe
    with pytest.raises(UpstreamUnavailableError):
        breaker.before_call("u")  # only one probe at a time
    breaker.record_failure()  # the probe failed: open again for reset_s
    assert breaker.state is BreakerState.OPEN
    clock.now = 15
    with pytest.raises(UpstreamUnavailableError):
        breaker.before_call("u")
    clock.now = 20
    breaker.before_call("u")
    breaker.record_success()
    assert breaker.state is BreakerState.CLOSED
    breaker.before_call("u")


def test_a_probe_that_never_answers_is_replaced_after_the_cool_down() -> None:
    clock = Clock()
    breaker = CircuitBreaker(failure_threshold=1, reset_s=10, clock=clock)
    breaker.record_failure()
    clock.now = 10
    breaker.before_call("u")  # the probe, whose task is then cancelled: no success, no failure recorded
    clock.now = 15
    with pytest.raises(UpstreamUnavailableError):
        breaker.before_call("u")
    clock.now = 20
    breaker.before_call("u")  # a new probe rather than failing fast forever


async def test_the_client_fails_fast_while_the_upstream_is_down_and_probes_it_back(
    scripted: Scripted,
) -> None:
    clock = Clock()
    breaker = CircuitBreaker(failure_threshold=3, reset_s=30, clock=clock)
    scripted.fhir_handler = failing_then_ok([outcome("down", 503) for _ in range(3)])  # type: ignore[assignment]
    async with client_for(
        scripted, breaker=breaker, retry=RetryPolicy(max_attempts=3, backoff_base_s=0.001)
    ) as client:
        with pytest.raises(UpstreamStatusError):
            await client.search(QUERY)
        assert len(scripted.requests) == 3
        with pytest.raises(UpstreamUnavailableError, match="circuit breaker open"):
            await client.search(QUERY)
        assert len(scripted.requests) == 3  # failed fast: nothing sent
        clock.now = 30  # the upstream is back (the script has no failures left) and the cool-down is over
        result = await client.search(QUERY)
    assert len(result.matches) == 2
    assert breaker.state is BreakerState.CLOSED
