"""The simulator's render cache (simulator/render_cache.py): pages and `$export` files spliced from kept
serialised resources are byte for byte those built resource by resource, and the cache stays bounded."""

from __future__ import annotations

import httpx
import orjson
import pytest

from bridge.simulator.dataset import Dataset
from bridge.simulator.national_api import SimulatorConfig, create_simulator_app
from bridge.simulator.render_cache import RenderCache

BASE = "http://sim"
OFFER_SEARCH = (
    "/HealthcareService?_include=HealthcareService:organization&_include:iterate=Organization:partof"
    "&_include=HealthcareService:location&_revinclude=PractitionerRole:service"
    "&_include=PractitionerRole:practitioner&_count=50"
)


def entries(body: bytes) -> bytes:
    """The raw bytes of a Bundle's entry array (the Bundle id, stamp and links differ per search)."""
    start = body.index(b'"entry":[')
    return body[start:]


async def first_page(dataset: Dataset, capacity: int, twice: bool = False) -> bytes:
    app = create_simulator_app(SimulatorConfig(render_cache=capacity), dataset)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=BASE) as http:
        body = (await http.get(OFFER_SEARCH)).content
        if twice:
            again = (await http.get(OFFER_SEARCH)).content
            assert entries(again) == entries(body)
        return body


async def test_pages_from_the_cache_are_the_bytes_built_each_time(dataset: Dataset) -> None:
    built = await first_page(dataset, 0)
    cached = await first_page(dataset, 100_000, twice=True)
    assert entries(cached) == entries(built)
    bundle = orjson.loads(cached)
    first = bundle["entry"][0]
    assert first["resource"] == dataset.get("HealthcareService", first["resource"]["id"])
    assert first["fullUrl"] == f"{BASE}/HealthcareService/{first['resource']['id']}"
    assert {e["search"]["mode"] for e in bundle["entry"]} == {"match", "include"}


def test_the_cache_keeps_at_most_its_capacity_most_recent_first_out(dataset: Dataset) -> None:
    cache = RenderCache(dataset, capacity=3)
    ids = sorted(dataset.resources["Organization"], key=int)[:5]
    keys = [("Organization", i) for i in ids]
    rendered = cache.rendered([*keys, ("Organization", "no-such-id")])
    assert [key for key, _ in rendered] == keys  # an unknown id is left out, as the search does
    assert [orjson.loads(orjson.dumps(f)) for _, f in rendered] == [dataset.get(*k) for k in keys]
    assert len(cache) == 3
    warmed = RenderCache(dataset, capacity=7)
    assert warmed.warm() == 7
    assert len(warmed) == 7
    keeps_none = RenderCache(dataset)
    assert keeps_none.warm() == 0
    assert len(keeps_none.rendered(keys)) == len(keys)
    assert len(keeps_none) == 0
    with pytest.raises(ValueError, match="capacity"):
        RenderCache(dataset, capacity=-1)
