"""Fault injection of the simulator: the spec parser, the selectors, and every fault kind served for real.

Resets and timeouts run over real HTTP (uvicorn on 127.0.0.1); the others in-process (httpx.ASGITransport).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import httpx
import orjson
import pytest
from fastapi import FastAPI

from bridge.simulator.dataset import Dataset
from bridge.simulator.fault_injection import FAULTS_HEADER, FaultRule, FaultSpecError, Selector, parse_faults
from bridge.simulator.national_api import SimulatorConfig, create_simulator_app, mount_simulator
from tests.server import running_server

BASE = "http://sim"


def sim(dataset: Dataset, **config: object) -> FastAPI:
    return create_simulator_app(SimulatorConfig(**config), dataset)  # type: ignore[arg-type]


@pytest.fixture
async def open_client(dataset: Dataset) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=sim(dataset)), base_url=BASE) as http:
        yield http


def client_for(app: FastAPI) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=BASE)


def faults(spec: str) -> dict[str, str]:
    return {FAULTS_HEADER: spec}


# ---- parser ---------------------------------------------------------------------------------------------


def test_the_parser_reads_every_kind_with_its_arguments_and_selectors() -> None:
    rules = parse_faults(
        "latency(10-200ms)@p=0.5&path=HealthcareService; status(429,retry-after=2)@n=3;"
        'outcome(500,"boom; (really)")@first=2;timeout;reset@every=5;malformed-json;next(loop);'
        "duplicates;token-expiry;export(fail);status(500|502|503|504)"
    )
    assert rules[0] == FaultRule(
        "latency", ("10-200ms",), (Selector("p", "0.5"), Selector("path", "HealthcareService"))
    )
    assert rules[0].latency_range_s() == pytest.approx((0.01, 0.2))
    assert rules[1].statuses() == (429,)
    assert rules[1].retry_after() == "2"
    assert rules[1].selectors == (Selector("n", "3"),)
    assert rules[2].args == ("500", "boom; (really)")  # quotes protect ';' and parentheses
    assert [r.kind for r in rules[3:10]] == [
        "timeout",
        "reset",
        "malformed-json",
        "next",
        "duplicates",
        "token-expiry",
        "export",
    ]
    assert rules[10].statuses() == (500, 502, 503, 504)
    assert parse_faults("  ") == ()


@pytest.mark.parametrize(
    "spec",
    [
        "explode",
        "latency",
        "latency(fast)",
        "latency(200-10ms)",
        "status",
        "status(200)",
        "status(429,retry-after=soon)",
        'outcome(abc,"x")',
        "reset(now)",
        "next(sideways)",
        "export(succeed)",
        "status(503)@p=1.5",
        "status(503)@n=0",
        "status(503)@when=3",
        "status(503)@n=1@n=2",
        'outcome(500,"unclosed)',
    ],
)
def test_the_parser_refuses_bad_specs(spec: str) -> None:
    with pytest.raises(FaultSpecError):
        parse_faults(spec)


async def test_a_bad_header_spec_is_a_400_operation_outcome(open_client: httpx.AsyncClient) -> None:
    response = await open_client.get("/HealthcareService", headers=faults("explode"))
    assert response.status_code == 400
    assert response.json()["resourceType"] == "OperationOutcome"
    assert "explode" in response.json()["issue"][0]["diagnostics"]


def test_a_bad_config_spec_refuses_to_build_the_app(dataset: Dataset) -> None:
    with pytest.raises(FaultSpecError):
        sim(dataset, faults="status(99)")


# ---- selectors ------------------------------------------------------------------------------------------


async def statuses(app: FastAPI, n: int, path: str = "/HealthcareService?_count=1") -> list[int]:
    async with client_for(app) as http:
        return [(await http.get(path)).status_code for _ in range(n)]


@pytest.mark.parametrize(
    ("spec", "failing"),
    [
        ("status(503)@n=3", [3]),
        ("status(503)@first=2", [1, 2]),
        ("status(503)@every=3", [3, 6]),
        ("status(503)", [1, 2, 3, 4, 5, 6, 7]),
        ("status(503)@n=2&every=2", [2]),
    ],
)
async def test_counting_selectors(dataset: Dataset, spec: str, failing: list[int]) -> None:
    codes = await statuses(sim(dataset, faults=spec), 7)
    assert [i for i, code in enumerate(codes, 1) if code == 503] == failing
    assert all(code == 200 for i, code in enumerate(codes, 1) if i not in failing)


async def test_the_path_selector_matches_path_and_query(dataset: Dataset) -> None:
    app = sim(dataset, faults="status(503)@path=Organization;status(502)@path=_count=2")
    async with client_for(app) as http:
        assert (await http.get("/Organization?_count=1")).status_code == 503
        assert (await http.get("/HealthcareService?_count=1")).status_code == 200
        assert (await http.get("/HealthcareService?_count=2")).status_code == 502


async def test_probability_is_seeded_and_repeatable(dataset: Dataset) -> None:
    first = await statuses(sim(dataset, faults="status(503)@p=0.5", seed=7), 40)
    again = await statuses(sim(dataset, faults="status(503)@p=0.5", seed=7), 40)
    other = await statuses(sim(dataset, faults="status(503)@p=0.5", seed=8), 40)
    assert first == again
    assert first != other
    assert 5 < first.count(503) < 35  # a probability, not always and not never


async def test_a_header_fault_applies_to_its_request_only(open_client: httpx.AsyncClient) -> None:
    assert (await open_client.get("/HealthcareService", headers=faults("status(504)"))).status_code == 504
    assert (await open_client.get("/HealthcareService?_count=1")).status_code == 200


# ---- kinds ----------------------------------------------------------------------------------------------


async def test_latency_fixed_random_and_configured(dataset: Dataset) -> None:
    app = sim(dataset, latency_ms=25, faults="latency(10-200ms)@path=Organization")
    slept: list[float] = []

    async def record(seconds: float) -> None:
        slept.append(seconds)

    app.state.faults.sleep = record
    async with client_for(app) as http:
        assert (await http.get("/HealthcareService?_count=1", headers=faults("latency(50ms)"))).is_success
        assert slept == [pytest.approx(0.025), pytest.approx(0.05)]
        slept.clear()
        for _ in range(10):
            assert (await http.get("/Organization?_count=1")).is_success
    configured, drawn = slept[0::2], slept[1::2]
    assert configured == [pytest.approx(0.025)] * 10
    assert all(0.01 <= s <= 0.2 for s in drawn)
    assert len(set(drawn)) > 1


async def test_status_429_carries_retry_after(open_client: httpx.AsyncClient) -> None:
    response = await open_client.get("/HealthcareService", headers=faults("status(429,retry-after=2)"))
    assert response.status_code == 429
    assert response.headers["Retry-After"] == "2"
    assert response.headers["content-type"].startswith("application/fhir+json")
    assert response.json()["resourceType"] == "OperationOutcome"


async def test_status_alternatives_draw_among_the_listed_codes(dataset: Dataset) -> None:
    codes = await statuses(sim(dataset, faults="status(500|502|503|504)"), 30)
    assert set(codes) <= {500, 502, 503, 504}
    assert len(set(codes)) > 1


async def test_outcome_is_an_operation_outcome_error_with_the_text(open_client: httpx.AsyncClient) -> None:
    response = await open_client.get("/Organization", headers=faults('outcome(500,"HAPI-0389: boom; sorry")'))
    assert response.status_code == 500
    issue = response.json()["issue"][0]
    assert issue["severity"] == "error"
    assert issue["diagnostics"] == "HAPI-0389: boom; sorry"


async def test_malformed_json_is_a_200_with_cut_json(open_client: httpx.AsyncClient) -> None:
    whole = await open_client.get("/HealthcareService?_count=3")
    cut = await open_client.get("/HealthcareService?_count=3", headers=faults("malformed-json"))
    assert cut.status_code == 200
    assert int(cut.headers["content-length"]) == len(cut.content)
    assert cut.content.startswith(b'{"resourceType":"Bundle"')
    assert 0 < len(cut.content) < len(whole.content)
    with pytest.raises(orjson.JSONDecodeError):
        orjson.loads(cut.content)


def links(bundle: dict[str, object]) -> dict[str, str]:
    return {link["relation"]: link["url"] for link in bundle["link"]}  # type: ignore[attr-defined]


async def test_next_missing_drops_the_next_link_of_a_page_that_needs_one(
    open_client: httpx.AsyncClient,
) -> None:
    normal = (await open_client.get("/HealthcareService?_count=5")).json()
    assert "next" in links(normal)
    faulty = (await open_client.get("/HealthcareService?_count=5", headers=faults("next(missing)"))).json()
    assert "next" not in links(faulty)
    assert faulty["total"] == normal["total"] > len(faulty["entry"])


async def test_next_loop_points_at_the_same_page(open_client: httpx.AsyncClient) -> None:
    first = (await open_client.get("/HealthcareService?_count=5")).json()
    second_url = links(first)["next"]
    second = (await open_client.get(second_url, headers=faults("next(loop)"))).json()
    assert links(second)["next"] == links(second)["self"] == second_url
    again = (await open_client.get(links(second)["next"])).json()
    assert [e["resource"]["id"] for e in again["entry"]] == [e["resource"]["id"] for e in second["entry"]]


async def test_next_expired_answers_410_when_followed(open_client: httpx.AsyncClient) -> None:
    page = (await open_client.get("/HealthcareService?_count=5", headers=faults("next(expired)"))).json()
    gone = await open_client.get(links(page)["next"])
    assert gone.status_code == 410
    assert gone.json()["resourceType"] == "OperationOutcome"


async def test_duplicates_repeat_the_previous_pages_last_match(open_client: httpx.AsyncClient) -> None:
    first = (await open_client.get("/HealthcareService?_count=5")).json()
    second = (await open_client.get(links(first)["next"], headers=faults("duplicates"))).json()
    plain = (await open_client.get(links(first)["next"])).json()
    matches = [e["resource"]["id"] for e in second["entry"] if e["search"]["mode"] == "match"]
    assert matches[0] == first["entry"][4]["resource"]["id"]
    assert matches[1:] == [e["resource"]["id"] for e in plain["entry"] if e["search"]["mode"] == "match"]
    assert len(matches) == 6


async def test_token_expiry_without_access_checks_still_answers_401(open_client: httpx.AsyncClient) -> None:
    response = await open_client.get("/HealthcareService", headers=faults("token-expiry"))
    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"].startswith("Bearer")
    assert (await open_client.get("/HealthcareService?_count=1")).status_code == 200


async def test_reset_and_timeout_in_process_raise_to_the_client(open_client: httpx.AsyncClient) -> None:
    with pytest.raises(ConnectionResetError):
        await open_client.get("/HealthcareService", headers=faults("reset"))
    with pytest.raises(TimeoutError):
        await open_client.get("/HealthcareService", headers=faults("timeout"))


# ---- over real HTTP -------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def served(dataset: Dataset) -> Iterator[str]:
    app = mount_simulator(create_simulator_app(SimulatorConfig(faults="reset@path=reset-me"), dataset))
    with running_server(app) as base:
        yield base + "/ws-diffusion-fhir"


def test_reset_closes_the_connection_without_a_response(served: str) -> None:
    with httpx.Client(timeout=10) as http:
        with pytest.raises((httpx.RemoteProtocolError, httpx.ReadError)):
            http.get(f"{served}/HealthcareService", headers=faults("reset"))
        with pytest.raises((httpx.RemoteProtocolError, httpx.ReadError)):
            http.get(f"{served}/HealthcareService?name=reset-me")  # the config's rule, path selector
        assert http.get(f"{served}/HealthcareService?_count=1").status_code == 200


def test_timeout_holds_the_request_past_the_client_timeout(served: str) -> None:
    with httpx.Client(timeout=0.5) as http, pytest.raises(httpx.ReadTimeout):
        http.get(f"{served}/HealthcareService", headers=faults("timeout"))
    with httpx.Client(timeout=10) as http:
        assert http.get(f"{served}/HealthcareService?_count=1").status_code == 200


def test_timeout_then_drops_the_connection_without_a_response(served: str) -> None:
    with httpx.Client(timeout=30) as http, pytest.raises(httpx.RemoteProtocolError):
        http.get(f"{served}/HealthcareService", headers=faults("timeout(100ms)"))
