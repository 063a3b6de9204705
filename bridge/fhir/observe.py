"""What the national API client reports to whoever watches it (metrics): a small observer interface.

Outbound edge (`bridge/fhir/`). The client knows nothing of Prometheus; `create_app` injects an observer
built by `bridge/metrics.py`. `NULL_OBSERVER` does nothing (tests, offline commands).
"""

from __future__ import annotations

import re
from typing import Protocol

_SEGMENT = re.compile(r"^[$A-Za-z][A-Za-z0-9_-]{0,40}$")


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
    """An observer that records nothing."""

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


def resource_of(url: str, base_url: str) -> str:
    """The bounded metric label of a URL: its first path segment under the FHIR base (`HealthcareService`,
    `metadata`, `$export`), `export-file` for anything outside the base (export downloads, polls)."""
    if not url.startswith(base_url):
        return "export-file"
    rest = url[len(base_url) :].lstrip("/")
    segment = rest.split("?", 1)[0].split("/", 1)[0]
    return segment if _SEGMENT.match(segment) else "other"


class FanOut:
    """Tells every observer in turn (metrics and tracing)."""

    def __init__(self, *observers: UpstreamObserver) -> None:
        self.observers = observers

    def exchange(self, resource: str, status: str, seconds: float) -> None:
        for observer in self.observers:
            observer.exchange(resource, status, seconds)

    def retry(self, resource: str) -> None:
        for observer in self.observers:
            observer.retry(resource)

    def breaker(self, state: str) -> None:
        for observer in self.observers:
            observer.breaker(state)

    def token_issued(self) -> None:
        for observer in self.observers:
            observer.token_issued()

    def page(self, resource: str) -> None:
        for observer in self.observers:
            observer.page(resource)

    def truncation_split(self, resource: str) -> None:
        for observer in self.observers:
            observer.truncation_split(resource)

    def export_job(self, outcome: str) -> None:
        for observer in self.observers:
            observer.export_job(outcome)
