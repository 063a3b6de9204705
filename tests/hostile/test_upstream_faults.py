"""Upstream faults end to end: every fault the simulator injects, at a probability and at a fixed request
number, through the bridge, for an IHE search, an offer search, ITI-74 and the extraction.

Each case gives either the complete, correct answer (the same entities as without the fault) or an explicit
failure — a Receiver fault saying what failed, an HTTP error, or an aborted transfer — never a partial
answer presented as complete, never a hang beyond the configured deadline. The default run takes the whole
matrix (about a minute of one test process, most of it waiting; README, "Upstream faults").
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from lxml import etree

from bridge import ns
from bridge.app import create_app
from bridge.config import load_settings
from bridge.simulator.dataset import generate_dataset
from bridge.simulator.national_api import SimulatorConfig, create_simulator_server
from tests.server import running_server

SCALE, SEED = 60, 11
DATASET = generate_dataset(SCALE, SEED)
DEADLINE_S = 6.0
SOAP12 = {"Content-Type": "application/soap+xml; charset=utf-8"}


def _soap(inner: str) -> bytes:
    return f'<env:Envelope xmlns:env="{ns.SOAP12}"><env:Body>{inner}</env:Body></env:Envelope>'.encode()


OPERATIONS: dict[str, tuple[str, bytes | None]] = {
    "ihe-facility-search": (
        "/csd",
        _soap(
            '<csd:careServicesRequest xmlns:csd="urn:ihe:iti:csd:2013"><csd:function '
            'urn="urn:ihe:iti:csd:2014:stored-function:facility-search"><csd:requestParams/>'
            "</csd:function></csd:careServicesRequest>"
        ),
    ),
    "offer-search": (
        "/csd",
        _soap(
            '<csd:careServicesRequest xmlns:csd="urn:ihe:iti:csd:2013" '
            'urn="urn:ror:csd:stored-function:offer-search"><csd:requestParams/></csd:careServicesRequest>'
        ),
    ),
    "iti74": (
        "/csd",
        _soap(
            '<csd:getModificationsRequest xmlns:csd="urn:ihe:iti:csd:2013">'
            "<csd:lastModified>2000-01-01T00:00:00Z</csd:lastModified></csd:getModificationsRequest>"
        ),
    ),
    "extraction": ("/extraction", None),
}
# Every fault kind of the simulator (README "Faults and latency on demand") that applies to an open-access
# search upstream. token-expiry needs the token endpoint and export(fail) the $export source: both are
# covered against the simulator in tests/fhir/test_simulator.py and tests/simulator/.
FAULTS = [
    "status(503)",
    "status(500|502)",
    "status(429,retry-after=1)",
    'outcome(500,"simulated failure")',
    "timeout",
    "reset",
    "malformed-json",
    "next(missing)",
    "next(loop)",
    "next(expired)",
    "duplicates",
    "latency(10-200ms)",
]
SELECTORS = ["p=0.3", "n=2"]
MATRIX = [(op, fault, sel) for op in OPERATIONS for fault in FAULTS for sel in SELECTORS]
PARAMS = [pytest.param(*case, id="-".join(case)) for case in MATRIX]


@dataclass
class Outcome:
    status: int
    entities: set[str] | None  # entityIDs of a complete answer
    failure: str | None  # what the client was told failed (fault reason, HTTP error text, aborted transfer)


def _entity_ids(content: bytes) -> set[str]:
    root = etree.fromstring(content)
    return {str(e.get("entityID")) for e in root.iter() if e.get("entityID") and e.getparent() is not None}


def _run(url: str, operation: str) -> Outcome:
    path, body = OPERATIONS[operation]
    with httpx.Client(timeout=60) as http:
        if body is None:
            try:
                with http.stream("GET", url + path) as response:
                    content = response.read()
            except httpx.HTTPError as error:  # the transfer was cut: the client cannot take it as complete
                return Outcome(0, None, f"aborted: {type(error).__name__}")
            if response.status_code != 200:
                return Outcome(response.status_code, None, response.text)
            return Outcome(200, _entity_ids(content), None)
        response = http.post(url + path, content=body, headers=SOAP12)
    if response.status_code == 200:
        return Outcome(200, _entity_ids(response.content), None)
    root = etree.fromstring(response.content)
    e = {"e": ns.SOAP12}
    code = str(root.xpath("string(//e:Fault/e:Code/e:Value)", namespaces=e))
    reason = str(root.xpath("string(//e:Fault/e:Reason/e:Text)", namespaces=e))
    assert code == "env:Receiver", (code, reason)
    return Outcome(response.status_code, None, reason)


@dataclass
class Bridge:
    url: str
    app: Any


@pytest.fixture(scope="module")
def bridge() -> Iterator[Bridge]:
    """One bridge; each case points its national API client at a fresh simulator with the case's faults."""
    config = SimulatorConfig(scale=SCALE, seed=SEED, open_access=True)
    with running_server(create_simulator_server(config, DATASET)) as upstream:
        settings = load_settings(
            upstream_url=f"{upstream}/ws-diffusion-fhir",
            extraction_source="search",
            upstream_page_size=10,
            upstream_timeout_s=1.0,
            upstream_connect_timeout_s=1.0,
            upstream_backoff_base_s=0.01,
            upstream_backoff_max_s=0.05,
            upstream_deadline_s=DEADLINE_S,
            upstream_export_deadline_s=DEADLINE_S,
            upstream_breaker_failures=10_000,  # cases must not see the previous case's breaker
            mapping_workers=0,
        )
        app = create_app(settings)
        with running_server(app) as url:
            yield Bridge(url, app)


@contextmanager
def faulty_upstream(bridge: Bridge, faults: str) -> Iterator[None]:
    config = SimulatorConfig(scale=SCALE, seed=SEED, open_access=True, faults=faults)
    client = bridge.app.state.upstream.client
    with running_server(create_simulator_server(config, DATASET)) as upstream:
        saved, client.base_url = client.base_url, f"{upstream}/ws-diffusion-fhir"
        try:
            yield
        finally:
            client.base_url = saved


_baselines: dict[str, set[str]] = {}


def _baseline(bridge: Bridge, operation: str) -> set[str]:
    if operation not in _baselines:
        outcome = _run(bridge.url, operation)
        assert outcome.status == 200, outcome.failure
        assert outcome.entities
        _baselines[operation] = outcome.entities
    return _baselines[operation]


@pytest.mark.parametrize(("operation", "fault", "selector"), PARAMS)
def test_an_upstream_fault_gives_the_whole_answer_or_says_what_failed(
    bridge: Bridge, operation: str, fault: str, selector: str
) -> None:
    expected = _baseline(bridge, operation)
    with faulty_upstream(bridge, f"{fault}@{selector}"):
        started = time.monotonic()
        outcome = _run(bridge.url, operation)
        elapsed = time.monotonic() - started
    report = os.environ.get("FAULT_MATRIX_REPORT")  # for the README table: what each case gave
    if report:
        summary = "complete" if outcome.status == 200 else f"{outcome.status} {(outcome.failure or '')[:90]}"
        with open(report, "a", encoding="utf-8") as out:
            out.write(f"{operation}\t{fault}@{selector}\t{elapsed:.1f}s\t{summary}\n")
    assert elapsed < DEADLINE_S + 10, f"{elapsed:.1f} s: beyond the deadline"
    if outcome.status == 200:
        assert outcome.entities == expected, "a partial answer presented as complete"
    else:
        assert outcome.failure, "a failure that does not say what failed"
