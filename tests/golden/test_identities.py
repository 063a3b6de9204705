"""Property (issue 11 item 5): consistent identities. In every answer of every stored function, ITI-74 and the
extraction, each entityID — of a record or of a reference to another entity (parent, organizations,
organization, service, facilities, parentFacility, …) — is the one that entity has when written itself.

The oracle is the dataset: every resource's own entityID is `identities.derive(resource)`, computed here
from the raw FHIR resources, independently of the bridge's plan, includes and reference resolution.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from lxml import etree

from bridge import ns
from bridge.app import create_app
from bridge.config import load_settings
from bridge.simulator.dataset import Dataset

Draw = Callable[..., Any]  # DataObject.draw
IHE = "urn:ihe:iti:csd:2014:stored-function:"
ROR = "urn:ror:csd:stored-function:"
FINESS = "https://finess.esante.gouv.fr"
OI = "https://oi.esante.gouv.fr"
RPPS = "urn:oid:1.2.250.1.71.4.2.1"
MAPPINGS = Path(__file__).resolve().parents[2] / "mappings"
R227 = "https://mos.esante.gouv.fr/NOS/TRE_R227-ChampActivite/FHIR/TRE-R227-ChampActivite"


def _identifier(dataset: Dataset, rtype: str, system: str, draw: Draw) -> str | None:
    """An identifier value (or, for R227, a champ d'activité code) the dataset holds."""
    values = sorted(
        {
            str(i.get("value", i.get("code")))
            for r in dataset
            if r["resourceType"] == rtype
            for i in [*r.get("identifier", ()), *(c for t in r.get("type", ()) for c in t.get("coding", ()))]
            if i.get("system") == system
        }
    )
    return draw(st.sampled_from(values)) if values else None


Maker = Callable[[Dataset, Draw], str | None]  # requestParams content, None: nothing to ask


def _function(urn: str, params: str) -> str:
    return (
        f'<csd:careServicesRequest xmlns:csd="{ns.CSD}"><csd:function urn="{urn}" encapsulated="false">'
        f"<csd:requestParams>{params}</csd:requestParams></csd:function></csd:careServicesRequest>"
    )


def _by_otherid(urn: str, rtype: str, system: str) -> Callable[[Dataset, Draw], str | None]:
    def make(dataset: Dataset, draw: Draw) -> str | None:
        value = _identifier(dataset, rtype, system, draw)
        if value is None:
            return None
        return _function(urn, f'<csd:otherID code="{value}" assigningAuthorityName="{system}"/>')

    return make


def _name_part(dataset: Dataset, draw: Draw) -> str:
    names = sorted(
        {
            str(r["name"])
            for r in dataset
            if r["resourceType"] == "Organization" and r.get("name") and _establishment(r)
        }
    )
    name = str(draw(st.sampled_from(names)))
    start = int(draw(st.integers(0, max(0, len(name) - 3))))
    return name[start : start + 3]


def _since(dataset: Dataset, draw: Draw) -> str:
    """A date between the offers' lastUpdated values: some entities changed since, others not, and at least
    one offer did (its UE and its establishment are in the answer). Any resource's date would not do: a v3
    UE organisation changed alone changes no record (the offers are the UEs; it is read for its parent's
    entityID only), so both changes-since-a-date answers are rightly empty (seed 649 at 6 offers)."""
    offers = (r for r in dataset if r["resourceType"] == "HealthcareService")
    stamps = sorted(str(r["meta"]["lastUpdated"]) for r in offers)
    return str(draw(st.sampled_from(stamps[len(stamps) // 4 :])))[:19]


def _establishment(resource: dict[str, Any]) -> bool:
    """An EJ or EG: an organisation without the OI identifier (the ROR v2.4 profile's csd:organization; an
    internal organisation is a csd:facility, which an organization-search does not answer)."""
    return not any(i.get("system") == OI for i in resource.get("identifier", ()))


def _entity_id_of(urn: str, rtype: str, keep: Callable[[dict[str, Any]], bool] = lambda r: True) -> Maker:
    def make(dataset: Dataset, draw: Draw) -> str | None:
        from bridge.translate.loaders import load_mappings  # the shipped identities, as the app loads them

        resources = [r for r in dataset if r["resourceType"] == rtype and keep(r)]
        if not resources:
            return None
        identities = load_mappings(MAPPINGS).identities
        entity_id = identities.derive(draw(st.sampled_from(resources)))[0]
        return _function(urn, f'<csd:id entityID="{entity_id}"/>')

    return make


REQUESTS: dict[str, Maker] = {
    "organization-search by name": lambda d, draw: _function(
        IHE + "organization-search", f"<csd:name>{_name_part(d, draw)}</csd:name>"
    ),
    "organization-search by id": _entity_id_of(IHE + "organization-search", "Organization", _establishment),
    "facility-search by id": _entity_id_of(IHE + "facility-search", "Location"),
    "service-search by id": _entity_id_of(IHE + "service-search", "HealthcareService"),
    "provider-search by RPPS": _by_otherid(IHE + "provider-search", "Practitioner", RPPS),
    "internal-organization by UE": _by_otherid(ROR + "internal-organization", "Organization", OI),
    "ITI-74 since a date": lambda d, draw: (
        f'<csd:getModificationsRequest xmlns:csd="{ns.CSD}"><csd:lastModified>{_since(d, draw)}'
        "</csd:lastModified></csd:getModificationsRequest>"
    ),
    "establishments-updated-since a date": lambda d, draw: _function(
        ROR + "establishments-updated-since", f"<dateMiseAJour>{_since(d, draw)}</dateMiseAJour>"
    ),
    "organization-search": lambda d, draw: _function(IHE + "organization-search", ""),
    "facility-search": lambda d, draw: _function(IHE + "facility-search", ""),
    "service-search": lambda d, draw: _function(IHE + "service-search", ""),
    "provider-search": lambda d, draw: (
        _function(IHE + "provider-search", "")
        if any(r["resourceType"] == "PractitionerRole" for r in d)
        else None
    ),
    "internal-organization": _by_otherid(ROR + "internal-organization", "Organization", OI),
    "establishment-offers": _by_otherid(ROR + "establishment-offers", "Organization", FINESS),
    "offer-search": lambda d, draw: _function(
        ROR + "offer-search",
        f"<champActivite>{_identifier(d, 'HealthcareService', R227, draw)}</champActivite>",
    ),
    "establishments-updated-since": lambda d, draw: _function(
        ROR + "establishments-updated-since", "<dateMiseAJour>2000-01-01</dateMiseAJour>"
    ),
    "ITI-74": lambda d, draw: (
        f'<csd:getModificationsRequest xmlns:csd="{ns.CSD}"><csd:lastModified>2000-01-01</csd:lastModified>'
        "</csd:getModificationsRequest>"
    ),
}


def _entity_ids(document: etree._Element) -> list[tuple[str, str]]:
    """(path, entityID) of every element carrying an entityID, records and references alike."""
    tree = document.getroottree()
    return [(tree.getpath(e), str(e.get("entityID"))) for e in document.iter() if e.get("entityID")]


EQUIPMENT = "https://interop.esante.gouv.fr/ig/fhir/ror/StructureDefinition/ror-location-equipment"
EQUIPMENT_REFS = f".//{{{ns.CSD}}}facility/{{{ns.CSD}}}extension/{{{ns.CSD}}}equipment"
DEVICES = f".//{{{ns.CSD}}}deviceDirectory/{{{ns.CSD}}}device"


def _device_ids(resource: dict[str, Any], identities: Any) -> list[str]:
    """The entityIDs of a lieu's équipements as mappings/README.md states them, worked out here on their own:
    urn:ror:equipement: + percent-encoded `<lieu identifier>/<TRE_R212 code>[/<rank among that code>]`."""
    if resource.get("resourceType") != "Location":
        return []
    lieu = identities.reverse(identities.derive(resource)[0])
    codes = [
        coding["code"]
        for e in resource.get("extension") or ()
        if e.get("url") == EQUIPMENT
        for part in e.get("extension") or ()
        if part.get("url") == "equipmentType"
        for coding in part["valueCodeableConcept"]["coding"][:1]
    ]
    out = []
    for n, code in enumerate(codes):
        rank = f"/{codes[:n].count(code) + 1}" if codes.count(code) > 1 else ""
        out.append("urn:ror:equipement:" + quote(f"{lieu.value}/{code}{rank}", safe=""))
    return out


async def _answers(scale: int, seed: int, name: str, draw: Draw) -> None:
    app = create_app(load_settings(demo_scale=scale, demo_seed=seed))
    dataset: Dataset = app.state.upstream.dataset
    identities = app.state.mappings.identities
    own = {identities.derive(r)[0]: r for r in dataset}
    own.update({device: r for r in dataset for device in _device_ids(r, identities)})
    body = REQUESTS[name](dataset, draw)
    if body is None:
        return
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://bridge") as client:
            response = await client.post("/csd", content=body, headers={"Content-Type": "application/xml"})
            extraction = await client.get("/extraction") if name == "ITI-74" else None
    answers = [response] + ([extraction] if extraction is not None else [])
    for answer in answers:
        assert answer.status_code == 200, answer.text[:2000]
        document = etree.fromstring(answer.content)
        written = _entity_ids(document)
        assert written, f"{name}: an empty answer proves nothing"
        stray = [(path, eid) for path, eid in written if eid not in own]
        assert stray == [], f"{name}: entityIDs that are no entity's own: {stray[:5]}"
        # each device is named by a UE of the answer; each UE's `equipment` names a csd:device of the same
        # answer — but in a change set since a date, where a changed UE may name a device of its unchanged
        # lieu (the device's record did not change)
        named = {str(e.get("entityID")) for e in document.iterfind(EQUIPMENT_REFS)}
        devices = [str(e.get("entityID")) for e in document.iterfind(DEVICES)]
        assert len(devices) == len(set(devices)), f"{name}: a device written twice"
        assert set(devices) <= named, f"{name}: devices no UE names: {sorted(set(devices) - named)[:5]}"
        if name != "ITI-74 since a date":
            assert named == set(devices), (
                f"{name}: references without device: {sorted(named - set(devices))[:5]}"
            )


@pytest.mark.parametrize("name", sorted(REQUESTS))
@settings(max_examples=4, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(scale=st.integers(3, 20), seed=st.integers(0, 10_000), data=st.data())
def test_every_entity_id_is_the_one_that_entity_has_when_written_itself(
    name: str, scale: int, seed: int, data: st.DataObject
) -> None:
    asyncio.run(_answers(scale, seed, name, data.draw))
