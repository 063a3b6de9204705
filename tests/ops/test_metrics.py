"""`GET /metrics` scraped over HTTP: CSD transactions, extractions, upstream calls (issue 16 item 1)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from bridge.app import create_app
from bridge.config import load_settings
from tests.ops.conftest import scrape, total
from tests.server import running_server

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"
SOAP12 = {"Content-Type": "application/soap+xml; charset=utf-8"}
SOAP11 = {"Content-Type": "text/xml; charset=utf-8", "SOAPAction": '""'}


@pytest.fixture(scope="module")
def bridge_url() -> Iterator[str]:
    app = create_app(load_settings(demo_scale=60, demo_seed=3, upstream_page_size=20))
    with running_server(app) as url:
        yield url


def test_every_transaction_is_counted_by_function_region_version_and_outcome(bridge_url: str) -> None:
    before = scrape(bridge_url)
    modifications = (FIXTURES / "e2e" / "modifications-soap12.xml").read_bytes()
    for path in ("/csd/ara", "/csd"):
        assert httpx.post(f"{bridge_url}{path}", content=modifications, headers=SOAP12).status_code == 200
    provider = (FIXTURES / "requests" / "soap11-provider-search-2016.xml").read_bytes()
    assert httpx.post(f"{bridge_url}/csd", content=provider, headers=SOAP11).status_code == 200
    unknown = (FIXTURES / "e2e" / "unknown-function-soap12.xml").read_bytes()
    assert httpx.post(f"{bridge_url}/csd", content=unknown, headers=SOAP12).status_code == 400
    after = scrape(bridge_url)

    def delta(name: str, **labels: str) -> float:
        return total(after, name, **labels) - total(before, name, **labels)

    requests = "ror_bridge_requests_total"
    assert delta(requests, region="ara", soap_version="soap12", outcome="ok") == 1
    assert delta(requests, function="GetDirectoryModificationsRequest") == 2  # ITI-74
    assert delta(requests, region="national", soap_version="soap12", outcome="ok") == 1
    assert delta(requests, function="provider-search", region="national", soap_version="soap11") == 1
    assert delta(requests, function="unknown", outcome="sender-fault") == 1
    assert delta(requests) == 4
    assert delta("ror_bridge_request_duration_seconds_count") == 4
    assert delta("ror_bridge_request_duration_seconds_bucket", le="+Inf") == 4
    # Upstream side: every exchange, the pages, and the records sent.
    assert delta("ror_bridge_upstream_requests_total", status="200") > 0
    assert delta("ror_bridge_upstream_pages_total") > 0
    assert delta("ror_bridge_upstream_request_duration_seconds_count") == delta(
        "ror_bridge_upstream_requests_total"
    )
    assert delta("ror_bridge_entities_returned_total", directory="organizationDirectory") > 0
    assert total(after, "ror_bridge_upstream_circuit_breaker_state") == 0


def test_extraction_is_counted_with_its_records(bridge_url: str) -> None:
    before = scrape(bridge_url)
    response = httpx.get(f"{bridge_url}/extraction/ara", timeout=60)
    assert response.status_code == 200
    organizations = response.text.count("<organization ") + response.text.count("<csd:organization ")
    assert httpx.get(f"{bridge_url}/extraction/atlantide").status_code == 404
    after = scrape(bridge_url)
    extraction = {"function": "extraction", "region": "ara"}
    assert (
        total(after, "ror_bridge_requests_total", outcome="ok", **extraction)
        - total(before, "ror_bridge_requests_total", outcome="ok", **extraction)
        == 1
    )
    refused = {"function": "extraction", "outcome": "sender-fault"}
    assert (
        total(after, "ror_bridge_requests_total", **refused)
        - total(before, "ror_bridge_requests_total", **refused)
        == 1
    )
    returned = total(after, "ror_bridge_entities_returned_total", directory="organizationDirectory") - total(
        before, "ror_bridge_entities_returned_total", directory="organizationDirectory"
    )
    assert returned == organizations


def test_metric_names_share_the_prefix(bridge_url: str) -> None:
    names = {name for name, _ in scrape(bridge_url)}
    ours = {name for name in names if not name.startswith(("python_", "process_"))}
    assert ours
    assert all(name.startswith("ror_bridge_") for name in ours), sorted(ours)
