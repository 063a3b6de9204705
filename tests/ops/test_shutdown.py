"""SIGTERM: answers in flight finish within the grace period; an extraction still running then is cut without
its terminator, never ended as if complete (issue 16 item 4). Real processes against a slow simulator."""

from __future__ import annotations

import signal
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.ops.processes import running
from tests.test_cli import free_port

NAME_SEARCH = b"""<csd:careServicesRequest xmlns:csd="urn:ihe:iti:csd:2013">
  <csd:function urn="urn:ihe:iti:csd:2014:stored-function:organization-search">
    <csd:requestParams><csd:name>a</csd:name></csd:requestParams>
  </csd:function>
</csd:careServicesRequest>"""


def _drain(chunks: Iterator[bytes], into: bytearray) -> None:
    for chunk in chunks:
        into += chunk


@pytest.fixture(scope="module")
def slow_upstream(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The simulator answering every FHIR request after 150 ms."""
    port = free_port()
    log = tmp_path_factory.mktemp("sim") / "simulator.log"
    base = f"http://127.0.0.1:{port}/ws-diffusion-fhir"
    args = ["simulator", "--port", str(port), "--open", "--scale", "200", "--latency-ms", "150"]
    with running([sys.executable, "-m", "bridge", *args], log, f"{base}/metadata", {}):
        yield base


def _bridge(upstream: str, grace_s: float, log: Path) -> tuple[list[str], str, dict[str, str]]:
    port = free_port()
    env = {
        "BRIDGE_SHUTDOWN_GRACE_S": str(grace_s),
        "BRIDGE_EXTRACTION_SOURCE": "search",
        "BRIDGE_UPSTREAM_PAGE_SIZE": "5",
        "BRIDGE_UPSTREAM_CONCURRENCY": "1",
        "BRIDGE_LOG_FORMAT": "json",
    }
    return ["serve", "--port", str(port), "--upstream", upstream], f"http://127.0.0.1:{port}", env


def test_sigterm_cuts_a_long_extraction_without_its_terminator(slow_upstream: str, tmp_path: Path) -> None:
    log = tmp_path / "bridge.log"
    args, url, env = _bridge(slow_upstream, 1.0, log)
    received = bytearray()
    with running([sys.executable, "-m", "bridge", *args], log, f"{url}/healthz", env) as bridge:
        with httpx.stream("GET", f"{url}/extraction", timeout=60) as response:
            assert response.status_code == 200
            chunks = response.iter_raw()
            received += next(chunks)  # the extraction has started
            sent_at = time.monotonic()
            bridge.send_signal(signal.SIGTERM)
            with pytest.raises(httpx.RemoteProtocolError):  # the chunked body ends without its terminator
                _drain(chunks, received)
        bridge.wait(timeout=30)
        stopped_after = time.monotonic() - sent_at
    assert b"</CSD>" not in received  # never ended as if complete
    assert stopped_after < 10  # the grace period (1 s) and the shutdown, not the whole extraction
    assert bridge.returncode in (0, -signal.SIGTERM)  # uvicorn re-raises the signal once shut down
    assert '"event":"extraction-aborted"' in log.read_text()


def test_sigterm_lets_an_answer_in_flight_finish_and_refuses_new_connections(
    slow_upstream: str, tmp_path: Path
) -> None:
    log = tmp_path / "bridge.log"
    args, url, env = _bridge(slow_upstream, 30.0, log)
    answers: list[httpx.Response] = []
    answered_at: list[float] = []

    def ask() -> None:
        answers.append(
            httpx.post(f"{url}/csd", content=NAME_SEARCH, headers={"Content-Type": "text/xml"}, timeout=60)
        )
        answered_at.append(time.monotonic())

    with running([sys.executable, "-m", "bridge", *args], log, f"{url}/healthz", env) as bridge:
        request = threading.Thread(target=ask)
        request.start()
        time.sleep(0.8)  # the search is paging (150 ms a page) when the signal arrives
        signalled_at = time.monotonic()
        bridge.send_signal(signal.SIGTERM)
        time.sleep(0.3)
        with pytest.raises(httpx.TransportError):
            httpx.get(f"{url}/healthz", timeout=2)
        request.join(timeout=60)
        bridge.wait(timeout=30)
    assert len(answers) == 1
    assert answered_at[0] > signalled_at + 0.5  # it was in flight when the signal came, and was let finish
    assert answers[0].status_code == 200, answers[0].text
    assert answers[0].text.rstrip().endswith("</csd:CSD>")  # the whole document
    assert answers[0].text.count("<csd:organization ") > 20  # many pages of 5: still paging at the signal
    assert bridge.returncode in (0, -signal.SIGTERM)  # uvicorn re-raises the signal once shut down
