"""OpenTelemetry spans (optional, off by default): the SOAP transaction, its translation, each upstream call.

Operations part, built by `create_app` only. On when `OTEL_EXPORTER_OTLP_ENDPOINT` is set (spans exported
over OTLP/HTTP, the standard `OTEL_*` variables apply) or when a test hands an exporter in. Needs the
`tracing` extra (opentelemetry-sdk and the OTLP exporter); the API alone (a FastAPI dependency) is a no-op.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from opentelemetry import trace

from bridge.errors import ConfigurationError
from bridge.observer import NullObserver

ENDPOINT_ENV = "OTEL_EXPORTER_OTLP_ENDPOINT"
SERVICE_NAME = "ror-csd-bridge"
TRACER = "bridge"


class Tracing(NullObserver):
    """Spans of one bridge application; also an upstream observer (an exchange becomes a finished span)."""

    def __init__(self, provider: Any | None = None) -> None:
        self._provider = provider
        self._tracer = provider.get_tracer(TRACER) if provider is not None else trace.get_tracer(TRACER)
        self.enabled = provider is not None

    @contextmanager
    def span(self, name: str, **attributes: str | int) -> Iterator[None]:
        """A span around a block (a no-op when tracing is off)."""
        if not self.enabled:
            yield
            return
        with self._tracer.start_as_current_span(name, attributes=attributes):
            yield

    def shutdown(self) -> None:
        """Flushes what is buffered (process exit)."""
        if self._provider is not None:
            self._provider.shutdown()

    # --- UpstreamObserver (bridge/observer.py): the exchange has ended, its span is back-dated; the other
    # callbacks are NullObserver's.

    def exchange(self, resource: str, status: str, seconds: float) -> None:
        if not self.enabled:
            return
        end = time.time_ns()
        span = self._tracer.start_span(
            f"upstream GET {resource}",
            start_time=end - int(seconds * 1e9),
            attributes={"ror.resource": resource, "http.response.status_code": status},
            kind=trace.SpanKind.CLIENT,
        )
        span.end(end_time=end)


def build_tracing(exporter: Any | None = None) -> Tracing:
    """Tracing for this process: OTLP when `OTEL_EXPORTER_OTLP_ENDPOINT` is set, `exporter` in tests,
    otherwise off. ConfigurationError names the extra when the SDK is missing."""
    if exporter is None and not os.environ.get(ENDPOINT_ENV):
        return Tracing()
    try:
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor
    except ImportError:
        raise ConfigurationError(
            f"{ENDPOINT_ENV} is set but OpenTelemetry's SDK is not installed: install the `tracing` extra "
            "(pip install 'ror-csd-bridge[tracing]')"
        ) from None
    provider = TracerProvider(resource=Resource.create({"service.name": SERVICE_NAME}))
    if exporter is not None:
        provider.add_span_processor(SimpleSpanProcessor(exporter))
    else:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    return Tracing(provider)
