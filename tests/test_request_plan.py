"""One CSD request is planned once (issue 12 item 3): its stored function resolved once and its region
checked once, over a real ITI-74 and a real ITI-73 request to the in-process bridge; the extraction plans
its query without a made-up CSD request."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from bridge import ns
from bridge.app import create_app
from bridge.config import load_settings
from bridge.pipeline.extraction import extraction_plan, extraction_request
from bridge.shipped import shipped_dir
from bridge.translate import Mappings, load_mappings

REGION = "ocean-indien"
ITI74 = (
    f'<csd:getModificationsRequest xmlns:csd="{ns.CSD}"><csd:lastModified>2026-06-01</csd:lastModified>'
    "</csd:getModificationsRequest>"
)
FACILITY_SEARCH = (
    f'<csd:careServicesRequest xmlns:csd="{ns.CSD}">'
    '<csd:function urn="urn:ihe:iti:csd:2014:stored-function:facility-search">'
    "<csd:requestParams><csd:max>5</csd:max></csd:requestParams></csd:function></csd:careServicesRequest>"
)


def counting(calls: Counter[str], name: str, real: Callable[..., Any]) -> Callable[..., Any]:
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        calls[name] += 1
        return real(*args, **kwargs)

    return wrapper


@pytest.mark.parametrize("body", [ITI74, FACILITY_SEARCH], ids=["iti74", "facility-search"])
async def test_a_regional_request_resolves_its_function_and_checks_its_region_once(
    monkeypatch: pytest.MonkeyPatch, body: str
) -> None:
    import bridge.pipeline.request_plan
    import bridge.translate.plan

    app = create_app(load_settings(demo_scale=40))
    calls: Counter[str] = Counter()
    monkeypatch.setattr(
        bridge.pipeline.request_plan,
        "function_of",
        counting(calls, "function_of", bridge.pipeline.request_plan.function_of),
    )
    monkeypatch.setattr(
        bridge.translate.plan,
        "function_of",
        counting(calls, "function_of", bridge.translate.plan.function_of),
    )
    monkeypatch.setattr(Mappings, "region", counting(calls, "region", Mappings.region))
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://bridge") as client:
        response = await client.post(
            f"/csd/{REGION}", content=body.encode(), headers={"content-type": "application/xml"}
        )
    assert response.status_code == 200, response.text
    assert calls == Counter({"function_of": 1, "region": 1})


def test_the_extraction_plans_its_query_without_a_csd_request(monkeypatch: pytest.MonkeyPatch) -> None:
    import bridge.translate.plan

    mappings = load_mappings(shipped_dir("mappings"))

    def refuse(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("the extraction made a CSD request to plan its query")

    monkeypatch.setattr(bridge.translate.plan, "function_of", refuse)
    plan = extraction_plan(mappings, extraction_request(mappings, REGION, [("champActivite", "01")]))
    assert plan.query.resource_type == "HealthcareService"
    assert any(name == "_tag" for name, _ in plan.query.params)


async def test_an_extraction_plans_its_query_once(monkeypatch: pytest.MonkeyPatch) -> None:
    import bridge.pipeline.extraction

    app = create_app(load_settings(demo_scale=40, extraction_cache_s=0))
    calls: Counter[str] = Counter()
    monkeypatch.setattr(
        bridge.pipeline.extraction,
        "plan_queries",
        counting(calls, "plan_queries", bridge.pipeline.extraction.plan_queries),
    )
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://bridge") as client:
        response = await client.get(f"/extraction/{REGION}", params={"champActivite": "01"}, timeout=60)
    assert response.status_code == 200, response.text
    assert response.content.rstrip().endswith(b"</CSD>") or response.content.rstrip().endswith(b":CSD>")
    assert calls == Counter({"plan_queries": 1})


def test_the_extraction_checks_its_region_once(monkeypatch: pytest.MonkeyPatch) -> None:
    mappings = load_mappings(shipped_dir("mappings"))
    calls: Counter[str] = Counter()
    monkeypatch.setattr(Mappings, "region", counting(calls, "region", Mappings.region))
    request = extraction_request(mappings, REGION.upper(), [("champActivite", "01")])
    assert request.region == REGION
    assert request.plan is not None
    assert request.plan.query.params[-1][0] == "_tag"
    assert calls == Counter({"region": 1})
