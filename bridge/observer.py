"""The upstream observer interface and its no-op base: what the national API client reports (metrics, spans).

A leaf (imports nothing of the bridge): `bridge/fhir/` calls it, `bridge/metrics.py` and `bridge/tracing.py`
implement it. `NullObserver` records nothing; an implementation overrides only the callbacks it uses.
"""

from __future__ import annotations

from typing import Protocol


class UpstreamObserver(Protocol):
    """Callbacks of the national API client; each must be cheap and must never raise."""

    def exchange(self, resource: str, status: str, seconds: float) -> None:
        """One HTTP exchange ended: `status` is the HTTP code, or `error` when no answer came."""

    def retry(self, resource: str) -> None:
        """An attempt failed and will be tried again."""

    def breaker(self, state: str) -> None:
        """The circuit breaker is now in `state` (closed, half-open, open)."""

    def token_issued(self) -> None:
        """A bearer token was obtained from the token endpoint."""

    def page(self, resource: str) -> None:
        """One searchset page was received."""

    def truncation_split(self, resource: str) -> None:
        """A search over the result cap was split into `_lastUpdated` windows."""

    def export_job(self, outcome: str) -> None:
        """A `$export` job `started`, `completed` or `failed`."""


class NullObserver:
    """An observer that records nothing; the base of observers that watch only some callbacks."""

    def exchange(self, resource: str, status: str, seconds: float) -> None:
        return None

    def retry(self, resource: str) -> None:
        return None

    def breaker(self, state: str) -> None:
        return None

    def token_issued(self) -> None:
        return None

    def page(self, resource: str) -> None:
        return None

    def truncation_split(self, resource: str) -> None:
        return None

    def export_job(self, outcome: str) -> None:
        return None


NULL_OBSERVER: UpstreamObserver = NullObserver()
