"""Prometheus metrics of the bridge (`GET /metrics`), all under `ror_bridge_`, correct with several workers.

Part of the HTTP surface: built by `create_app` only. With `serve --workers N` the CLI points
`PROMETHEUS_MULTIPROC_DIR` at a fresh directory before any worker starts, and a scrape of any worker sums
every live worker's values (prometheus-client multiprocess mode); with one process, the app's own registry.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
)

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
CONTENT_TYPE = CONTENT_TYPE_LATEST
# Seconds: from a one-record lookup to a whole national extraction.
DURATION_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 1800.0, 7200.0)
UPSTREAM_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
BREAKER_STATES = {"closed": 0, "half-open": 1, "open": 2}


def multiprocess_dir() -> str | None:
    """The shared directory of multiprocess mode, or None with one process."""
    return os.environ.get(MULTIPROC_ENV) or None


class Metrics:
    """Every metric of one bridge application; also its national API observer (`bridge.fhir.observe`)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        registry = self.registry
        self.requests = Counter(
            "ror_bridge_requests",
            "CSD transactions and extractions answered, by function, region, SOAP version and outcome",
            ["function", "region", "soap_version", "outcome"],
            registry=registry,
        )
        self.request_duration = Histogram(
            "ror_bridge_request_duration_seconds",
            "Time to answer a CSD transaction or an extraction (extractions: until the last byte)",
            ["function"],
            buckets=DURATION_BUCKETS,
            registry=registry,
        )
        self.entities = Counter(
            "ror_bridge_entities_returned",
            "CSD records sent to clients, by directory",
            ["directory"],
            registry=registry,
        )
        self.upstream_requests = Counter(
            "ror_bridge_upstream_requests",
            "HTTP exchanges with the national API, by resource and status (`error`: no answer)",
            ["resource", "status"],
            registry=registry,
        )
        self.upstream_duration = Histogram(
            "ror_bridge_upstream_request_duration_seconds",
            "Duration of one HTTP exchange with the national API",
            ["resource"],
            buckets=UPSTREAM_BUCKETS,
            registry=registry,
        )
        self.upstream_retries = Counter(
            "ror_bridge_upstream_retries",
            "National API attempts that failed and were tried again",
            ["resource"],
            registry=registry,
        )
        self.breaker_state = Gauge(
            "ror_bridge_upstream_circuit_breaker_state",
            "Circuit breaker towards the national API: 0 closed, 1 half-open, 2 open (worst live worker)",
            registry=registry,
            multiprocess_mode="livemax",
        )
        self.token_renewals = Counter(
            "ror_bridge_upstream_token_renewals",
            "Bearer tokens obtained from the national token endpoint",
            registry=registry,
        )
        self.pages = Counter(
            "ror_bridge_upstream_pages",
            "Searchset pages received from the national API",
            ["resource"],
            registry=registry,
        )
        self.truncation_splits = Counter(
            "ror_bridge_upstream_truncation_splits",
            "Searches over the national result cap split into _lastUpdated windows",
            ["resource"],
            registry=registry,
        )
        self.export_jobs = Counter(
            "ror_bridge_upstream_export_jobs",
            "$export jobs of the national API, by outcome (started, completed, failed)",
            ["outcome"],
            registry=registry,
        )
        self.refusals = Counter(
            "ror_bridge_refusals",
            "Requests the trust circle refused, by allow-list client (`unknown`: not listed) and subcode",
            ["client", "reason"],
            registry=registry,
        )
        self.shadow_comparisons = Counter(
            "ror_bridge_shadow_comparisons",
            "Shadow-mode comparisons recorded, by function and result (equal, different, not-compared)",
            ["function", "result"],
            registry=registry,
        )
        self.shadow_differences = Counter(
            "ror_bridge_shadow_differences",
            "Field differences found by shadow mode between the legacy and the bridge answers, by function",
            ["function"],
            registry=registry,
        )
        self.breaker_state.set(0)

    # --- the HTTP surface

    def request_done(
        self, function: str, region: str | None, soap_version: str, outcome: str, seconds: float
    ) -> None:
        self.requests.labels(function, region or "national", soap_version, outcome).inc()
        self.request_duration.labels(function).observe(seconds)

    def entities_returned(self, counts: Mapping[str, int]) -> None:
        for directory, count in counts.items():
            if count:
                self.entities.labels(directory).inc(count)

    def refusal(self, client: str | None, reason: str) -> None:
        self.refusals.labels(client or "unknown", reason).inc()

    def shadow_recorded(self, record: Mapping[str, Any]) -> None:
        """One line of the shadow log (bridge/compare/shadow.py): its result and number of differences."""
        function = str(record.get("function") or "unknown")
        entities = record.get("entities")
        if record.get("problem") or not isinstance(entities, Mapping):
            self.shadow_comparisons.labels(function, "not-compared").inc()
            return
        differences = record.get("differences") or []
        self.shadow_comparisons.labels(function, "different" if differences else "equal").inc()
        if differences:
            self.shadow_differences.labels(function).inc(len(differences))

    def exposition(self) -> bytes:
        """The text format of every metric: all live workers' in multiprocess mode, else this app's."""
        directory = multiprocess_dir()
        if directory is None:
            return generate_latest(self.registry)
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry, path=directory)  # type: ignore[no-untyped-call]
        return generate_latest(registry)

    @staticmethod
    def worker_stopped() -> None:
        """A worker's live gauges stop counting when it exits (multiprocess mode only)."""
        if multiprocess_dir() is not None:
            multiprocess.mark_process_dead(os.getpid())  # type: ignore[no-untyped-call]

    # --- UpstreamObserver (bridge/fhir/observe.py)

    def exchange(self, resource: str, status: str, seconds: float) -> None:
        self.upstream_requests.labels(resource, status).inc()
        self.upstream_duration.labels(resource).observe(seconds)

    def retry(self, resource: str) -> None:
        self.upstream_retries.labels(resource).inc()

    def breaker(self, state: str) -> None:
        self.breaker_state.set(BREAKER_STATES.get(state, 2))

    def token_issued(self) -> None:
        self.token_renewals.inc()

    def page(self, resource: str) -> None:
        self.pages.labels(resource).inc()

    def truncation_split(self, resource: str) -> None:
        self.truncation_splits.labels(resource).inc()

    def export_job(self, outcome: str) -> None:
        self.export_jobs.labels(outcome).inc()
