"""Retries with exponential backoff and jitter, per-transaction deadlines, circuit breaker (outbound edge).

Only idempotent GETs are retried (issue 4 §5). The breaker fails fast while the national API is down and
lets one probe through after a cool-down.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum

from bridge.errors import UpstreamTimeoutError, UpstreamUnavailableError

log = logging.getLogger(__name__)

# Statuses worth another try: rate limiting and the gateway/server failures of a busy HAPI behind a proxy.
RETRYABLE_STATUSES = frozenset({429, 500, 502, 503, 504})


class LogEvent(StrEnum):
    RETRY = "upstream-retry"
    BREAKER_OPEN = "upstream-breaker-open"
    BREAKER_CLOSED = "upstream-breaker-closed"


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """At most `max_attempts` tries; the n-th wait is uniform in [0, min(cap, base·2ⁿ)] ("full jitter")."""

    max_attempts: int = 4
    backoff_base_s: float = 0.2
    backoff_max_s: float = 10.0
    retry_after_max_s: float = 60.0  # a Retry-After longer than this is not waited for: the attempt fails

    def backoff(self, attempt: int, rng: random.Random) -> float:
        """Wait before attempt `attempt + 1` (attempt counts from 1)."""
        ceiling = min(self.backoff_max_s, self.backoff_base_s * 2 ** (attempt - 1))
        return rng.uniform(0, ceiling)


class Deadline:
    """The time left for one transaction (a search with all its pages, an export)."""

    def __init__(self, seconds: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.seconds = seconds
        self._clock = clock
        self._end = clock() + seconds

    def remaining(self) -> float:
        return self._end - self._clock()

    def check(self, request: str) -> float:
        """The time left, or UpstreamTimeoutError when none is."""
        left = self.remaining()
        if left <= 0:
            raise UpstreamTimeoutError(
                f"the transaction deadline of {self.seconds:g} s passed", request=request
            )
        return left


class BreakerState(StrEnum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half-open"


class CircuitBreaker:
    """Opens after `failure_threshold` consecutive outage failures; after `reset_s` one probe is let through.

    A success closes it; a failed probe opens it for another `reset_s`. While open, calls fail at once with
    UpstreamUnavailableError instead of waiting for timeouts against a dead upstream.
    """

    def __init__(
        self, failure_threshold: int = 5, reset_s: float = 30.0, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.failure_threshold = failure_threshold
        self.reset_s = reset_s
        self._clock = clock
        self.state = BreakerState.CLOSED
        self._failures = 0
        self._opened_at = 0.0
        self._probing = False
        self._probe_started = 0.0
        # Told every state change (metrics); set by the client that owns the breaker.
        self.on_change: Callable[[str], None] = _ignore_state

    def is_cooling_down(self) -> bool:
        """Open and still within its cool-down: calls fail fast (readiness reports it, without a call)."""
        return self.state is BreakerState.OPEN and self._clock() - self._opened_at < self.reset_s

    def before_call(self, request: str) -> None:
        """Raises when the call must not go out; otherwise lets it through (possibly as the probe)."""
        if self.state is BreakerState.CLOSED:
            return
        if self.state is BreakerState.OPEN and self._clock() - self._opened_at >= self.reset_s:
            self.state = BreakerState.HALF_OPEN
            self.on_change(self.state.value)
            self._probing = False
        if self.state is BreakerState.HALF_OPEN and (
            not self._probing or self._clock() - self._probe_started >= self.reset_s
        ):
            # Exactly one probe; the others keep failing fast until it answers. A probe that never
            # answers (its task was cancelled) is replaced after another `reset_s`.
            self._probing = True
            self._probe_started = self._clock()
            return
        raise UpstreamUnavailableError("the national API is down (circuit breaker open)", request=request)

    def record_success(self) -> None:
        if self.state is not BreakerState.CLOSED:
            log.info("%s", LogEvent.BREAKER_CLOSED)
            self.state = BreakerState.CLOSED
            self.on_change(self.state.value)
        self._failures = 0
        self._probing = False

    def record_failure(self) -> None:
        self._failures += 1
        if self.state is BreakerState.HALF_OPEN or self._failures >= self.failure_threshold:
            if self.state is not BreakerState.OPEN:
                log.warning("%s after %d failures", LogEvent.BREAKER_OPEN, self._failures)
            self.state = BreakerState.OPEN
            self.on_change(self.state.value)
            self._opened_at = self._clock()
            self._probing = False


def _ignore_state(state: str) -> None:
    return None
