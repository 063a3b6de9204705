"""ITI-74 reports the lieux whose records list changed offers (issue 11 item 6, its known bug): since just
before the latest offer changes, the answer holds those offers and every lieu they are given at — in the ROR
CSD v2.4 profile's placement, each offer's UE facility with its lieu as extension/location.
"""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta

import httpx
from lxml import etree

from bridge import ns
from bridge.app import create_app
from bridge.config import load_settings


async def _ask(scale: int, seed: int, latest: int) -> None:
    app = create_app(load_settings(demo_scale=scale, demo_seed=seed))
    dataset = app.state.upstream.dataset
    identities = app.state.mappings.identities
    resources = list(dataset)
    stamps = sorted(datetime.fromisoformat(str(r["meta"]["lastUpdated"])) for r in resources)
    offers = sorted(
        (r for r in resources if r["resourceType"] == "HealthcareService"),
        key=lambda r: datetime.fromisoformat(str(r["meta"]["lastUpdated"])),
    )
    since = datetime.fromisoformat(str(offers[-latest]["meta"]["lastUpdated"])) - timedelta(seconds=1)
    assert since > stamps[0], "the date must leave some resources unchanged"
    by_key = {f"{r['resourceType']}/{r['id']}": r for r in resources}
    lieux = {
        identities.derive(by_key[ref["reference"]])[0]
        for offer in offers[-latest:]
        for ref in offer.get("location", ())
    }
    changed_offers = {identities.derive(o)[0] for o in offers[-latest:]}
    body = (
        f'<csd:getModificationsRequest xmlns:csd="{ns.CSD}"><csd:lastModified>'
        f"{since.isoformat(timespec='seconds')}</csd:lastModified></csd:getModificationsRequest>"
    )
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://bridge") as client:
            response = await client.post("/csd", content=body, headers={"Content-Type": "application/xml"})
    assert response.status_code == 200, response.text[:2000]
    document = etree.fromstring(response.content)
    services = {str(e.get("entityID")) for e in document.iterfind(f".//{{{ns.CSD}}}serviceDirectory/*")}
    facilities = {str(e.get("entityID")): e for e in document.iterfind(f".//{{{ns.CSD}}}facilityDirectory/*")}
    assert lieux, "the latest offers are given somewhere"
    assert changed_offers <= services
    # each changed offer's UE is a facility of the answer, its lieu inside it (extension/location)
    assert changed_offers <= set(facilities), sorted(changed_offers - set(facilities))[:5]
    names = {
        str(by_key[ref["reference"]].get("name")) for o in offers[-latest:] for ref in o.get("location", ())
    }
    written = {
        str(n.text)
        for eid in changed_offers
        for n in facilities[eid].iterfind(f"{{{ns.CSD}}}extension/{{{ns.CSD}}}location/{{{ns.CSD}}}name")
    }
    assert names <= written, f"lieux of changed offers missing from their UEs: {sorted(names - written)[:5]}"


def test_iti74_reports_the_lieux_of_the_latest_changed_offers() -> None:
    asyncio.run(_ask(200, 3, 10))
