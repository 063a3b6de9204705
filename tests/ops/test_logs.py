"""JSON log lines and the request id, read from a real `ror-bridge serve` (issue 16 item 2)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from lxml import etree

from bridge import correlation, ns
from bridge.fhir.client import FhirClient
from bridge.model import FhirQuery
from tests.test_cli import REPO, free_port

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"
SOAP12 = {"Content-Type": "application/soap+xml; charset=utf-8"}
SOAP11 = {"Content-Type": "text/xml; charset=utf-8", "SOAPAction": '""'}
ITI74_MESSAGE_ID = "urn:uuid:77e0a1d4-3f2b-4e61-a0c5-1b9e4d3c2a03"  # in modifications-soap12.xml
FAULT_MESSAGE_ID = "urn:uuid:5b1f1c8e-11aa-4f3b-8d21-6f0e2a7c9d02"  # in unknown-function-soap12.xml
# A name searched upstream (`Organization?name:contains=…`): it travels in a URL, which must not be logged.
NAME_SEARCH = b"""<csd:careServicesRequest xmlns:csd="urn:ihe:iti:csd:2013">
  <csd:function urn="urn:ihe:iti:csd:2014:stored-function:organization-search">
    <csd:requestParams><csd:name>Zorglubovitch</csd:name></csd:requestParams>
  </csd:function>
</csd:careServicesRequest>"""


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    """Runs the bridge with JSON logs at info level, sends a few requests, stops it; its lines and answers."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    log = tmp_path_factory.mktemp("logs") / "serve.log"
    env = {**os.environ, "BRIDGE_DEMO_SCALE": "60", "BRIDGE_LOG_FORMAT": "json", "BRIDGE_LOG_LEVEL": "info"}
    answers: dict[str, httpx.Response] = {}
    with (
        log.open("wb") as output,
        subprocess.Popen(
            [sys.executable, "-m", "bridge", "serve", "--port", str(port)],
            cwd=REPO,
            env=env,
            stdout=output,
            stderr=output,
        ) as process,
    ):
        try:
            deadline = time.monotonic() + 60
            while True:
                try:
                    if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                assert process.poll() is None, log.read_text()
                assert time.monotonic() < deadline, log.read_text()
                time.sleep(0.1)
            answers["iti74"] = httpx.post(
                f"{url}/csd",
                content=(FIXTURES / "e2e" / "modifications-soap12.xml").read_bytes(),
                headers=SOAP12,
            )
            answers["search"] = httpx.post(
                f"{url}/csd",
                content=(FIXTURES / "requests" / "soap11-provider-search-2016.xml").read_bytes(),
                headers=SOAP11,
            )
            answers["fault"] = httpx.post(
                f"{url}/csd",
                content=(FIXTURES / "e2e" / "unknown-function-soap12.xml").read_bytes(),
                headers=SOAP12,
            )
            answers["name"] = httpx.post(
                f"{url}/csd", content=NAME_SEARCH, headers={"Content-Type": "text/xml"}
            )
            answers["front"] = httpx.get(f"{url}/extraction/ara", headers={"X-Request-ID": "nginx-42"})
        finally:
            process.terminate()
            process.wait(timeout=30)
    return {"lines": log.read_text(encoding="utf-8").splitlines(), "answers": answers}


def _records(served: dict[str, object]) -> list[dict[str, object]]:
    lines = served["lines"]
    assert isinstance(lines, list)
    assert lines
    return [json.loads(line) for line in lines]  # every line is one JSON object, or this fails


def test_every_line_is_a_json_object_with_the_stable_fields(served: dict[str, object]) -> None:
    records = _records(served)
    for record in records:
        assert {"time", "level", "event", "request_id", "logger", "message"} <= record.keys(), record
    events = {record["event"] for record in records}
    assert {"bridge-listening", "bridge-started", "request-refused", "http-access"} <= events


def test_the_message_id_is_the_request_id_in_logs_header_and_fault(served: dict[str, object]) -> None:
    answers = served["answers"]
    assert isinstance(answers, dict)
    iti74, fault, front = answers["iti74"], answers["fault"], answers["front"]
    assert iti74.status_code == 200
    assert iti74.headers["X-Request-ID"] == ITI74_MESSAGE_ID
    assert fault.headers["X-Request-ID"] == FAULT_MESSAGE_ID
    detail = etree.fromstring(fault.content).findtext(f".//{{{ns.FAULT}}}requestId")
    assert detail == FAULT_MESSAGE_ID
    assert front.headers["X-Request-ID"] == "nginx-42"  # a front end's id is kept
    generated = answers["search"].headers["X-Request-ID"]  # no wsa:MessageID: a generated one
    assert generated.startswith("urn:uuid:")
    records = _records(served)
    by_id = {record["request_id"] for record in records}
    assert {ITI74_MESSAGE_ID, FAULT_MESSAGE_ID, "nginx-42", generated} <= by_id
    refused = [r for r in records if r["event"] == "request-refused"]
    assert [r["request_id"] for r in refused] == [FAULT_MESSAGE_ID]


def test_payloads_and_names_never_reach_the_log_above_debug(served: dict[str, object]) -> None:
    answers = served["answers"]
    assert isinstance(answers, dict)
    assert answers["search"].status_code == 200
    assert answers["name"].status_code == 200
    for record in _records(served):
        text = json.dumps(record)
        assert "Dupont" not in text, record  # the searched names (personal data)
        assert "Zorglubovitch" not in text, record
        assert "careServicesRequest" not in text, record  # the request body
        assert "<csd:" not in text, record  # the answer
        assert "commonName" not in text, record


async def test_the_request_id_is_sent_upstream_as_x_request_id() -> None:
    seen: list[str | None] = []

    def answer(request: httpx.Request) -> httpx.Response:
        seen.append(request.headers.get("X-Request-ID"))
        return httpx.Response(200, json={"resourceType": "Bundle", "type": "searchset", "total": 0})

    client = FhirClient("http://upstream.test/fhir", headers={}, transport=httpx.MockTransport(answer))
    async with client:
        correlation.begin("urn:uuid:0c1d")
        await client.search(FhirQuery("Organization", ()))
        correlation.begin("bad id with spaces")  # not plain: replaced by a generated one
        await client.search(FhirQuery("Organization", ()))
    assert seen[0] == "urn:uuid:0c1d"
    assert seen[1] is not None
    assert seen[1].startswith("urn:uuid:")
    assert seen[1] != "urn:uuid:0c1d"
