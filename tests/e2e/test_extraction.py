"""`GET /extraction[/{region}]` over real HTTP: the streamed document, clean errors before the first byte, an
aborted transfer after it, the disk cache and the concurrency limit.

The fault tests run the bridge against a standalone simulator whose fault selectors count requests from its
start (bridge/simulator/fault_injection.py).
"""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from lxml import etree

from bridge.app import create_app
from bridge.config import load_settings
from bridge.model import Directory
from bridge.shipped import shipped_dir
from bridge.simulator.dataset import generate_dataset
from bridge.simulator.national_api import SimulatorConfig, create_simulator_server
from bridge.translate import load_mappings
from tests.e2e.conftest import RunningBridge
from tests.expected import entity_ids, expected_entities
from tests.server import running_server

MAPPINGS = load_mappings(shipped_dir("mappings"))
SCALE = 120
SEED = 7
DATASET = generate_dataset(SCALE, SEED)


@contextmanager
def bridge_on_simulator(faults: str = "", latency_ms: float = 0, **settings: Any) -> Iterator[str]:
    """A standalone simulator (open access, `faults`) and a bridge pointed at it; yields the bridge URL."""
    config = SimulatorConfig(scale=SCALE, seed=SEED, open_access=True, faults=faults, latency_ms=latency_ms)
    with running_server(create_simulator_server(config, DATASET)) as upstream:
        options: dict[str, Any] = {
            "upstream_url": f"{upstream}/ws-diffusion-fhir",
            "extraction_source": "search",
            "upstream_page_size": 10,
            "upstream_max_attempts": 1,
        }
        options.update(settings)
        with running_server(create_app(load_settings(**options))) as url:
            yield url


def test_a_regional_extraction_is_one_valid_document_of_the_region(
    bridge: RunningBridge, our_csd_schema: etree.XMLSchema
) -> None:
    response = httpx.get(f"{bridge.url}/extraction/bretagne", timeout=60)
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/xml; charset=utf-8"
    assert response.headers["x-extraction-cache"] == "off"
    date = datetime.fromisoformat(response.headers["x-extraction-date"])
    assert parsedate_to_datetime(response.headers["last-modified"]) == date.replace(microsecond=0)
    assert our_csd_schema.validate(etree.fromstring(response.content)), our_csd_schema.error_log.last_error
    expected = expected_entities(bridge.dataset, MAPPINGS, region_codes=("53",))
    found = entity_ids(response.content)
    assert expected[Directory.SERVICE]
    for directory in Directory:
        assert sorted(found[directory]) == sorted(expected[directory]), directory.value


def test_the_champ_filter_restricts_the_national_extraction(bridge: RunningBridge) -> None:
    response = httpx.get(f"{bridge.url}/extraction?champActivite=03", timeout=60)
    assert response.status_code == 200
    expected = expected_entities(bridge.dataset, MAPPINGS, champs={"03"})
    found = entity_ids(response.content)
    assert expected[Directory.SERVICE]
    for directory in Directory:
        assert sorted(found[directory]) == sorted(expected[directory]), directory.value


def test_an_unknown_region_is_a_404_saying_so(bridge: RunningBridge) -> None:
    response = httpx.get(f"{bridge.url}/extraction/atlantis", timeout=10)
    assert response.status_code == 404
    assert response.headers["content-type"].startswith("text/plain")
    assert "unknown region 'atlantis'" in response.text


def test_an_unknown_parameter_is_a_400_naming_it(bridge: RunningBridge) -> None:
    response = httpx.get(f"{bridge.url}/extraction/idf?colour=blue", timeout=10)
    assert response.status_code == 400
    assert response.headers["content-type"].startswith("text/plain")
    assert "'colour'" in response.text
    assert "champActivite" in response.text


def download(url: str, into: bytearray) -> None:
    """Stream a document into `into` as the bytes arrive (kept when the transfer breaks)."""
    with httpx.stream("GET", url, timeout=30) as response:
        assert response.status_code == 200
        for chunk in response.iter_raw():
            into += chunk


def test_a_failure_after_the_first_byte_aborts_the_transfer() -> None:
    # The third upstream page is refused (400, never retried): the document has started, so the bridge
    # closes the connection without the chunked terminator and the client cannot take it for complete.
    received = bytearray()
    with bridge_on_simulator(faults="status(400)@n=3") as url, pytest.raises(httpx.RemoteProtocolError):
        download(f"{url}/extraction", received)
    assert received.startswith(b"<?xml version='1.0' encoding='utf-8'?>\n<csd:CSD ")
    assert not received.rstrip().endswith(b"</csd:CSD>")


@pytest.mark.parametrize(
    ("faults", "settings", "status", "words"),
    [
        ("status(400)", {}, 502, "HTTP 400"),
        ("timeout(5s)", {"upstream_timeout_s": 0.3}, 504, "timeout"),
    ],
    ids=["upstream-refuses", "upstream-times-out"],
)
def test_a_failure_before_the_first_byte_is_a_clean_http_error(
    faults: str, settings: dict[str, Any], status: int, words: str
) -> None:
    with bridge_on_simulator(faults=faults, **settings) as url:
        response = httpx.get(f"{url}/extraction", timeout=30)
    assert response.status_code == status
    assert response.headers["content-type"].startswith("text/plain")
    assert response.text.startswith("extraction not started: the national API")
    assert words in response.text


def test_an_unreachable_upstream_is_a_503() -> None:
    with socket.socket() as probe:  # a free port, closed again: nothing listens there
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    app = create_app(load_settings(upstream_url=f"http://127.0.0.1:{port}/fhir", upstream_max_attempts=1))
    with running_server(app) as url:
        response = httpx.get(f"{url}/extraction/corse", timeout=30)
    assert response.status_code == 503
    assert "connection failed" in response.text


def test_a_completed_extraction_is_served_again_from_the_cache_with_its_date(tmp_path: Path) -> None:
    with bridge_on_simulator(extraction_cache_s=60, extraction_cache_dir=tmp_path) as url:
        first = httpx.get(f"{url}/extraction/guyane", timeout=60)
        assert first.headers["x-extraction-cache"] == "miss"
        cached = list(tmp_path.glob("extraction-*.xml"))
        assert len(cached) == 1
        assert cached[0].read_bytes() == first.content
        time.sleep(1.1)  # a second later: a fresh extraction would carry a later date
        second = httpx.get(f"{url}/extraction/guyane", timeout=60)
        other = httpx.get(f"{url}/extraction/guyane?champActivite=04", timeout=60)
    assert second.status_code == 200
    assert second.headers["x-extraction-cache"] == "hit"
    assert second.content == first.content
    assert second.headers["x-extraction-date"] == first.headers["x-extraction-date"]
    assert second.headers["last-modified"] == first.headers["last-modified"]
    assert other.headers["x-extraction-cache"] == "miss", "another filter is another document"
    assert len(list(tmp_path.glob("extraction-*.xml"))) == 2


def test_an_expired_cached_document_is_not_served(tmp_path: Path) -> None:
    with bridge_on_simulator(extraction_cache_s=0.5, extraction_cache_dir=tmp_path) as url:
        first = httpx.get(f"{url}/extraction/corse", timeout=60)
        time.sleep(1.0)
        second = httpx.get(f"{url}/extraction/corse", timeout=60)
    assert first.headers["x-extraction-cache"] == second.headers["x-extraction-cache"] == "miss"
    assert second.headers["x-extraction-date"] > first.headers["x-extraction-date"]


def test_a_failed_extraction_never_lands_in_the_cache(tmp_path: Path) -> None:
    with bridge_on_simulator(
        faults="status(400)@n=3", extraction_cache_s=60, extraction_cache_dir=tmp_path
    ) as url:
        with pytest.raises(httpx.RemoteProtocolError):
            httpx.get(f"{url}/extraction", timeout=30)
        time.sleep(0.2)  # the server side finishes closing the stream
    assert list(tmp_path.iterdir()) == [], "neither a cached document nor a temporary file is left"


def test_one_extraction_too_many_is_a_503_with_retry_after() -> None:
    with (
        bridge_on_simulator(latency_ms=150, extraction_max_concurrent=1) as url,
        httpx.Client(timeout=60) as client,
        client.stream("GET", f"{url}/extraction") as running,
    ):
        assert running.status_code == 200  # the first byte is out: this extraction holds the only slot
        refused = httpx.get(f"{url}/extraction/corse", timeout=10)
        assert refused.status_code == 503
        assert refused.headers["retry-after"]
        assert "busy" in refused.text
        body = running.read()
    assert body.rstrip().endswith(b"</csd:CSD>")


def test_an_unusable_cache_directory_never_fails_the_extraction(tmp_path: Path) -> None:
    blocked = tmp_path / "not-a-directory"
    blocked.write_text("a file where the cache directory should be")
    with bridge_on_simulator(extraction_cache_s=60, extraction_cache_dir=blocked) as url:
        response = httpx.get(f"{url}/extraction/corse", timeout=60)
    assert response.status_code == 200
    assert response.headers["x-extraction-cache"] == "off"
    assert response.content.rstrip().endswith(b"</csd:CSD>")
