"""HAPI-style paging: next links, totals, page-size cap, snapshot expiry (410) and eviction, mounting."""

from __future__ import annotations

from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from fastapi import FastAPI

from bridge.simulator.dataset import Dataset
from bridge.simulator.national_api import SimulatorConfig, create_simulator_app, mount_simulator
from bridge.simulator.paging import SnapshotStore
from tests.server import running_server

from .conftest import BASE
from .test_search_http import assert_outcome, keys, link


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.mark.parametrize("count", [1, 37, 200])
async def test_walking_every_page_gives_every_match_once(
    client: httpx.AsyncClient, dataset: Dataset, count: int
) -> None:
    response = await client.get("/HealthcareService", params={"_count": str(count)})
    seen: list[str] = []
    pages = 0
    while True:
        assert response.status_code == 200
        bundle = response.json()
        pages += 1
        assert bundle["total"] == 300
        page = [rid for _, rid in keys(bundle, "match")]
        assert 0 < len(page) <= count
        seen += page
        next_url = link(bundle, "next")
        if next_url is None:
            break
        query = parse_qs(urlsplit(next_url).query)
        assert set(query) == {"_getpages", "_getpagesoffset", "_count", "_bundletype"}
        assert query["_bundletype"] == ["searchset"]
        assert next_url.startswith(f"{BASE}?_getpages=")
        response = await client.get(next_url)
    assert seen == dataset.ids("HealthcareService")
    assert pages == -(-300 // count)


async def test_default_page_size_is_200(client: httpx.AsyncClient) -> None:
    bundle = (await client.get("/HealthcareService")).json()
    assert len(keys(bundle)) == 200
    assert "_count=200" in str(link(bundle, "next"))


async def test_count_is_capped_at_200(client: httpx.AsyncClient) -> None:
    bundle = (await client.get("/HealthcareService", params={"_count": "1000"})).json()
    assert len(keys(bundle, "match")) == 200
    assert "_count=200" in str(link(bundle, "next"))
    second = (await client.get(str(link(bundle, "next")).replace("_count=200", "_count=5000"))).json()
    assert len(keys(second, "match")) == 100


async def test_count_zero_gives_the_total_only(client: httpx.AsyncClient) -> None:
    bundle = (await client.get("/Organization", params={"_count": "0"})).json()
    assert bundle["total"] > 0
    assert "entry" not in bundle
    assert link(bundle, "next") is None


async def test_later_pages_link_back(client: httpx.AsyncClient) -> None:
    first = (await client.get("/HealthcareService", params={"_count": "100"})).json()
    assert link(first, "previous") is None
    second = (await client.get(str(link(first, "next")))).json()
    assert "_getpagesoffset=100" in str(link(second, "self"))
    assert "_getpagesoffset=0" in str(link(second, "previous"))


async def test_expired_page_is_410(app: FastAPI, client: httpx.AsyncClient) -> None:
    clock = FakeClock()
    app.state.pages.clock = clock
    bundle = (await client.get("/HealthcareService", params={"_count": "10"})).json()
    next_url = str(link(bundle, "next"))
    clock.now += 599
    assert (await client.get(next_url)).status_code == 200
    clock.now += 2
    assert_outcome(await client.get(next_url), 410, "may have expired")


async def test_unknown_page_id_is_410(client: httpx.AsyncClient) -> None:
    assert_outcome(await client.get("/", params={"_getpages": "nope", "_getpagesoffset": "10"}), 410, "nope")


async def test_bad_paging_requests_are_400(client: httpx.AsyncClient) -> None:
    assert_outcome(await client.get("/"), 400, "_getpages")
    bad_offset = await client.get("/", params={"_getpages": "x", "_getpagesoffset": "-3"})
    assert_outcome(bad_offset, 400, "_getpagesoffset")
    zero = await client.get("/", params={"_getpages": "x", "_count": "0"})
    assert_outcome(zero, 400, "_count")


async def test_stored_searches_are_bounded(dataset: Dataset) -> None:
    app = create_simulator_app(SimulatorConfig(max_snapshots=2), dataset)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=BASE) as http:
        links = [
            str(link((await http.get("/Organization", params={"_count": "5"})).json(), "next"))
            for _ in range(3)
        ]
        assert len(app.state.pages) == 2
        assert (await http.get(links[0])).status_code == 410
        assert (await http.get(links[2])).status_code == 200


async def test_single_page_searches_store_nothing(app: FastAPI, client: httpx.AsyncClient) -> None:
    bundle = (await client.get("/HealthcareService", params={"_count": "200", "_id": "1"})).json()
    assert link(bundle, "next") is None
    assert len(app.state.pages) == 0


def test_snapshot_store_expiry_and_eviction() -> None:
    clock = FakeClock()
    store = SnapshotStore(ttl_s=10, max_entries=3, clock=clock)
    first = store.put("Organization", ("1", "2"), (), 1)
    assert store.get(first.id) is first
    clock.now += 11
    assert store.get(first.id) is None
    made = [store.put("Organization", (str(i),), (), 1) for i in range(4)]
    assert len(store) == 3
    assert store.get(made[0].id) is None
    assert all(store.get(s.id) is s for s in made[1:])
    with pytest.raises(ValueError, match="max_entries"):
        SnapshotStore(ttl_s=1, max_entries=0)


# ---- absolute URLs follow where the app is served --------------------------------------------------------


async def test_root_path_is_part_of_every_url(app: FastAPI) -> None:
    base = "http://ror.test/ws-diffusion-fhir"
    transport = httpx.ASGITransport(app=app, root_path="/ws-diffusion-fhir")
    async with httpx.AsyncClient(transport=transport, base_url=base) as http:
        bundle = (await http.get(f"{base}/HealthcareService", params={"_count": "150"})).json()
        assert all(e["fullUrl"].startswith(f"{base}/HealthcareService/") for e in bundle["entry"])
        next_url = str(link(bundle, "next"))
        assert next_url.startswith(f"{base}?_getpages=")  # HAPI's form: no slash before `?`
        second = await http.get(next_url)
        assert second.status_code == 200
        assert len(keys(second.json(), "match")) == 150
        assert (await http.get(f"{base}/metadata")).json()["implementation"]["url"] == base


async def test_links_work_when_mounted_in_another_app(app: FastAPI) -> None:
    parent = FastAPI()
    parent.mount("/demo/fhir", app)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=parent), base_url="http://bridge") as http:
        bundle = (await http.get("/demo/fhir/HealthcareService", params={"_count": "250"})).json()
        assert bundle["entry"][0]["fullUrl"].startswith("http://bridge/demo/fhir/HealthcareService/")
        second = await http.get(str(link(bundle, "next")))
        assert second.status_code == 200
        assert len(keys(second.json(), "match")) == 100


def test_standalone_serving_over_real_http(dataset: Dataset) -> None:
    served = mount_simulator(create_simulator_app(SimulatorConfig(), dataset))
    with running_server(served) as url, httpx.Client() as http:
        bundle = http.get(f"{url}/ws-diffusion-fhir/HealthcareService", params={"_count": "120"}).json()
        next_url = str(link(bundle, "next"))
        assert next_url.startswith(f"{url}/ws-diffusion-fhir?_getpages=")
        assert http.get(next_url).status_code == 200
        assert http.get(f"{url}/ws-diffusion-fhir/metadata").status_code == 200
        outside = http.get(f"{url}/elsewhere")
        assert outside.status_code == 404
        assert outside.json()["resourceType"] == "OperationOutcome"
