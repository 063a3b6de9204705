"""start/max mapped onto FHIR paging: the bridge reads the national API's pages only as far as the CSD page
asked for, when the national API answered every parameter (a stand-in on 127.0.0.1 counts the pages)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from lxml import etree

from bridge import ns
from bridge.app import create_app
from bridge.config import load_settings
from tests.server import running_server

PAGES = 3
PER_PAGE = 3
SERVICE = "urn:ihe:iti:csd:2014:stored-function:service-search"
R211 = "https://mos.esante.gouv.fr/NOS/TRE_R211-ActiviteOperationnelle/FHIR/TRE-R211-ActiviteOperationnelle"


def _offer(number: int) -> dict[str, Any]:
    return {
        "resourceType": "HealthcareService",
        "id": str(number),
        "meta": {"lastUpdated": "2024-01-01T00:00:00Z"},
        "identifier": [{"system": "https://ror.esante.gouv.fr/offre", "value": f"99/{number:03d}"}],
        "specialty": [{"coding": [{"system": R211, "code": "481"}]}],
    }


class PagedUpstream:
    def __init__(self) -> None:
        self.pages_read: list[int] = []
        self.base = ""
        self.app = FastAPI()

        @self.app.get("/fhir/HealthcareService")
        async def search(request: Request, page: int = 1) -> JSONResponse:
            self.pages_read.append(page)
            first = (page - 1) * PER_PAGE
            bundle: dict[str, Any] = {
                "resourceType": "Bundle",
                "type": "searchset",
                "entry": [
                    {"resource": _offer(n), "search": {"mode": "match"}}
                    for n in range(first, first + PER_PAGE)
                ],
                "link": [{"relation": "self", "url": str(request.url)}],
            }
            if page < PAGES:
                bundle["link"].append(
                    {"relation": "next", "url": f"{self.base}/HealthcareService?page={page + 1}"}
                )
            return JSONResponse(bundle)


@pytest.fixture(scope="module")
def upstream() -> Iterator[PagedUpstream]:
    stand_in = PagedUpstream()
    with running_server(stand_in.app) as url:
        stand_in.base = f"{url}/fhir"
        yield stand_in


async def _ask(base: str, params: str) -> list[str]:
    bridge = create_app(load_settings(upstream_url=base))
    body = (
        f'<csd:careServicesRequest xmlns:csd="{ns.CSD}"><csd:function urn="{SERVICE}" encapsulated="false">'
        f"<csd:requestParams>{params}</csd:requestParams></csd:function></csd:careServicesRequest>"
    )
    async with bridge.router.lifespan_context(bridge):
        transport = httpx.ASGITransport(app=bridge)
        async with httpx.AsyncClient(transport=transport, base_url="http://bridge") as client:
            response = await client.post("/csd", content=body, headers={"Content-Type": "application/xml"})
    assert response.status_code == 200, response.text
    document = etree.fromstring(response.content)
    return [str(s.get("entityID")) for s in document.iterfind(f"{{{ns.CSD}}}serviceDirectory/*")]


@pytest.mark.parametrize(
    ("params", "pages", "offers"),
    [
        ("<csd:max>2</csd:max>", [1], [0, 1]),
        ("<csd:max>3</csd:max>", [1], [0, 1, 2]),
        ("<csd:start>3</csd:start><csd:max>2</csd:max>", [1, 2], [2, 3]),
        ("<csd:start>8</csd:start><csd:max>5</csd:max>", [1, 2, 3], [7, 8]),
        ("<csd:max>-1</csd:max>", [1, 2, 3], list(range(9))),
        ("<csd:start>9</csd:start>", [1, 2, 3], [8]),
        # codedType with a scheme the tables do not know is checked by the bridge: every page is needed
        ('<csd:codedType code="481" codingScheme="1.2.3"/><csd:max>1</csd:max>', [1, 2, 3], []),
    ],
)
def test_pages_are_read_only_as_far_as_the_csd_page(
    upstream: PagedUpstream, params: str, pages: list[int], offers: list[int]
) -> None:
    upstream.pages_read = []
    found = asyncio.run(_ask(upstream.base, params))
    assert upstream.pages_read == pages
    assert found == [f"urn:ror:offre:99%2F{n:03d}" for n in offers]
