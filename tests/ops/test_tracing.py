"""OpenTelemetry (optional): spans for the SOAP transaction, its translation and each upstream call; OTLP
export when OTEL_EXPORTER_OTLP_ENDPOINT is set (issue 16 item 6)."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path

import httpx
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from bridge.app import create_app
from bridge.config import load_settings
from bridge.tracing import Tracing, build_tracing
from tests.server import running_server
from tests.test_cli import REPO, free_port

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"
SOAP12 = {"Content-Type": "application/soap+xml; charset=utf-8"}
ITI74_MESSAGE_ID = "urn:uuid:77e0a1d4-3f2b-4e61-a0c5-1b9e4d3c2a03"


def test_tracing_is_off_without_an_endpoint() -> None:
    assert "OTEL_EXPORTER_OTLP_ENDPOINT" not in os.environ
    assert build_tracing().enabled is False


def test_a_transaction_is_one_trace_with_translation_and_upstream_calls() -> None:
    exporter = InMemorySpanExporter()
    app = create_app(load_settings(demo_scale=40), tracing=build_tracing(exporter))
    with running_server(app) as url:
        body = (FIXTURES / "e2e" / "modifications-soap12.xml").read_bytes()
        assert httpx.post(f"{url}/csd", content=body, headers=SOAP12).status_code == 200
    spans = exporter.get_finished_spans()
    by_name = {span.name: span for span in spans}
    transaction, translate = by_name["csd.transaction"], by_name["csd.translate"]
    upstream = [span for span in spans if span.name.startswith("upstream GET ")]
    assert upstream
    assert translate.parent is not None
    assert translate.parent.span_id == transaction.context.span_id
    for span in upstream:
        assert span.parent is not None
        assert span.parent.span_id == translate.context.span_id
        assert span.context.trace_id == transaction.context.trace_id
        assert span.attributes is not None
        assert span.attributes["http.response.status_code"] == "200"
    assert translate.attributes is not None
    assert translate.attributes["bridge.request_id"] == ITI74_MESSAGE_ID
    assert translate.attributes["csd.function"] == "GetDirectoryModificationsRequest"  # ITI-74


def test_spans_are_exported_over_otlp_when_the_endpoint_is_set(tmp_path: Path) -> None:
    received: list[bytes] = []

    class Collector(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            received.append(self.rfile.read(int(self.headers["Content-Length"])))
            self.send_response(200)
            self.send_header("Content-Type", "application/x-protobuf")
            self.end_headers()

        def log_message(self, *_: object) -> None:
            return

    collector = HTTPServer(("127.0.0.1", 0), Collector)
    thread = threading.Thread(target=collector.serve_forever, daemon=True)
    thread.start()
    port = free_port()
    env = {
        **os.environ,
        "OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{collector.server_port}",
        "OTEL_BSP_SCHEDULE_DELAY": "100",
        "BRIDGE_DEMO_SCALE": "40",
    }
    log = tmp_path / "serve.log"
    try:
        with (
            log.open("wb") as output,
            subprocess.Popen(
                [sys.executable, "-m", "bridge", "serve", "--port", str(port)],
                cwd=REPO,
                env=env,
                stdout=output,
                stderr=subprocess.STDOUT,
            ) as bridge,
        ):
            try:
                deadline = time.monotonic() + 60
                while True:
                    try:
                        if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200:
                            break
                    except httpx.TransportError:
                        pass
                    assert bridge.poll() is None, log.read_text()
                    assert time.monotonic() < deadline, log.read_text()
                    time.sleep(0.1)
                body = (FIXTURES / "e2e" / "modifications-soap12.xml").read_bytes()
                answer = httpx.post(f"http://127.0.0.1:{port}/csd", content=body, headers=SOAP12)
                assert answer.status_code == 200
            finally:
                bridge.terminate()
                bridge.wait(timeout=30)  # the shutdown flushes the batch
    finally:
        collector.shutdown()
        collector.server_close()
    names = set()
    for payload in received:
        request = ExportTraceServiceRequest()
        request.ParseFromString(payload)
        for resource_spans in request.resource_spans:
            for scope in resource_spans.scope_spans:
                names.update(span.name for span in scope.spans)
    assert {"csd.transaction", "csd.translate"} <= names, (names, log.read_text())
    assert any(name.startswith("upstream GET ") for name in names)


def test_without_the_sdk_the_endpoint_names_the_extra() -> None:
    code = (
        "import sys; sys.modules['opentelemetry.sdk'] = None\n"
        "import os; os.environ['OTEL_EXPORTER_OTLP_ENDPOINT'] = 'http://127.0.0.1:4318'\n"
        "from bridge.tracing import build_tracing\n"
        "from bridge.errors import ConfigurationError\n"
        "try:\n    build_tracing()\nexcept ConfigurationError as error:\n    print(error)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=60, check=False
    )
    assert "install the `tracing` extra" in result.stdout, result.stderr


def test_a_disabled_tracing_records_nothing() -> None:
    tracing = Tracing()
    with tracing.span("csd.transaction"):
        tracing.exchange("Organization", "200", 0.01)
    assert tracing.enabled is False
