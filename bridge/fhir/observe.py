"""What the national API client reports to whoever watches it: metric labels of URLs and the fan-out.

Outbound edge (`bridge/fhir/`). The client knows nothing of Prometheus; `create_app` injects an observer
built by `bridge/metrics.py` and `bridge/tracing.py`. The interface itself is the leaf `bridge/observer.py`.
"""

from __future__ import annotations

import re

from bridge.observer import NULL_OBSERVER, NullObserver, UpstreamObserver

__all__ = ["NULL_OBSERVER", "FanOut", "NullObserver", "UpstreamObserver", "resource_of"]

_SEGMENT = re.compile(r"^[$A-Za-z][A-Za-z0-9_-]{0,40}$")


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
