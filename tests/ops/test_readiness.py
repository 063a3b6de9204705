"""`/readyz` is an authenticated probe that never touches the circuit breaker (issue 16 items 3 and 8)."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from bridge.app import create_app
from bridge.config import load_settings
from bridge.fhir.resilience import BreakerState
from bridge.simulator.access_control import TOKEN_PATH
from bridge.simulator.dataset import generate_dataset
from bridge.simulator.national_api import SimulatorConfig, create_simulator_server
from tests.ops.conftest import scrape, total
from tests.server import running_server


@pytest.fixture(scope="module")
def simulator() -> Iterator[str]:
    """The simulator with its access checks on (token and Ror-* headers required), as the national API."""
    server = create_simulator_server(SimulatorConfig(open_access=False), generate_dataset(30, 2))
    with running_server(server) as url:
        yield url


def test_a_real_upstream_without_credentials_is_not_ready_and_the_breaker_stays_closed(
    simulator: str,
) -> None:
    settings = load_settings(upstream_url=f"{simulator}/ws-diffusion-fhir", upstream_breaker_failures=2)
    app = create_app(settings)
    with running_server(app) as url:
        for _ in range(5):
            response = httpx.get(f"{url}/readyz")
            assert response.status_code == 503
            assert response.json()["status"] == "not ready"
            assert "HTTP 401" in response.json()["upstream"]
        assert app.state.upstream.client.breaker.state is BreakerState.CLOSED
        assert total(scrape(url), "ror_bridge_upstream_circuit_breaker_state") == 0


def test_with_client_credentials_the_bridge_is_ready(simulator: str) -> None:
    settings = load_settings(
        upstream_url=f"{simulator}/ws-diffusion-fhir",
        upstream_token_url=f"{simulator}{TOKEN_PATH}",
        upstream_client_id="bridge-demo",
        upstream_client_secret="bridge-demo",
    )
    with running_server(create_app(settings)) as url:
        response = httpx.get(f"{url}/readyz")
        assert response.status_code == 200, response.text
        assert response.json()["status"] == "ready"
        assert total(scrape(url), "ror_bridge_upstream_token_renewals_total") == 1


def test_wrong_credentials_say_the_token_was_refused(simulator: str) -> None:
    settings = load_settings(
        upstream_url=f"{simulator}/ws-diffusion-fhir",
        upstream_token_url=f"{simulator}{TOKEN_PATH}",
        upstream_client_id="bridge-demo",
        upstream_client_secret="not-the-secret",
    )
    with running_server(create_app(settings)) as url:
        response = httpx.get(f"{url}/readyz")
        assert response.status_code == 503
        assert "token endpoint refused" in response.json()["upstream"]


def test_an_unreachable_upstream_is_not_ready() -> None:
    settings = load_settings(
        upstream_url="http://127.0.0.1:9/ws-diffusion-fhir", upstream_connect_timeout_s=1
    )
    with running_server(create_app(settings)) as url:
        response = httpx.get(f"{url}/readyz")
        assert response.status_code == 503
        assert "connection failed" in response.json()["upstream"]
