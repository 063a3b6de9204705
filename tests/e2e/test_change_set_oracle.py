"""The change sets of ITI-74 and TR-Notif against an oracle (issue 11 item 6).

A simulated dataset is mapped whole by the real engine (every entity, every resource received), then a sample
of resources of each type is changed in the simulator (meta.lastUpdated bumped past every other one, content
altered: names, an offer's champ d'activité, a professional's family name — every kind of content some record
reads, since the national API does not say which element changed; identifiers and references untouched,
deletions being invisible by design) and the dataset mapped whole again. Over real HTTP (uvicorn on
127.0.0.1: the bridge, pointed at the simulator serving the changed dataset):
- ITI-74 since just before the changes answers exactly the entities whose records differ, directory by
  directory, each written exactly as the whole-dataset mapping writes it (its record is complete);
- TR-Notif answers exactly the establishments (EG) whose reading (`TR_Lecture-OffresSanteEtablissement`, asked
  of the bridge before and after) differs.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import httpx
import numpy as np
import pytest
from lxml import etree

from bridge import ns
from bridge.app import create_app
from bridge.config import load_settings
from bridge.csd.writer import (
    device_element,
    facility_element,
    organization_element,
    provider_element,
    service_element,
)
from bridge.model import (
    CsdRequest,
    FhirQuery,
    RequestForm,
    Resource,
    SearchResult,
    Transaction,
)
from bridge.shipped import shipped_dir
from bridge.simulator.dataset import EPOCH_UTC, Dataset, generate_dataset, instant
from bridge.simulator.national_api import SimulatorConfig, create_simulator_app, mount_simulator
from bridge.translate import Mappings, from_fhir_results, load_mappings, to_fhir_plan
from tests.server import running_server

SCALE, SEED = 300, 5
PER_TYPE = 8  # resources changed per type
NEW_CHAMP = "99"  # a champ d'activité (TRE_R227) code no simulated offer has
EJ, EG = 0, 1  # Dataset.org_kind
IDNATSTRUCT = "urn:oid:1.2.250.1.71.4.2.2"
DIRECTORIES = (
    "organizationDirectory",
    "serviceDirectory",
    "facilityDirectory",
    "providerDirectory",
    "deviceDirectory",
)
ELEMENTS: dict[str, Callable[[Any], etree._Element]] = {
    "organizationDirectory": organization_element,
    "serviceDirectory": service_element,
    "facilityDirectory": facility_element,
    "providerDirectory": provider_element,
    "deviceDirectory": device_element,
}

Records = dict[str, dict[str, Any]]  # directory → entityID → the engine's record


@dataclass
class Changes:
    """Edits of a simulator dataset: a resource's meta.lastUpdated (the arrays its searches read) and content
    (applied each time the simulator builds it)."""

    dataset: Dataset
    edits: dict[tuple[str, int], Callable[[dict[str, Any]], None]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        original = self.dataset.build

        def build(rtype: str, index: int) -> dict[str, Any]:
            resource = original(rtype, index)
            edit = self.edits.get((rtype, index))
            if edit is not None:
                edit(resource)
            return resource

        self.dataset.build = build  # type: ignore[method-assign]

    def change(self, rtype: str, index: int, seconds: int, edit: Callable[[dict[str, Any]], None]) -> None:
        self.dataset.updated[rtype][index] = seconds
        self.edits[(rtype, index)] = edit
        for name in [n for n in self.dataset._derived if n.startswith("order")]:
            del self.dataset._derived[name]  # the _lastUpdated orders, sorted again on the next search


def _renamed(resource: dict[str, Any]) -> None:
    resource["name"] = f"{resource.get('name', '')} (modifié)"


def _offer_changed(resource: dict[str, Any]) -> None:
    """A new name and a champ d'activité no other offer has (what lieux, units, internal organisations and
    providers read of an offer: its name, its champ)."""
    _renamed(resource)
    for concept in resource.get("type", []):
        for coding in concept.get("coding", []):
            if "TRE_R227" in str(coding.get("system")):
                coding["code"], coding["display"] = NEW_CHAMP, "Champ modifié"


def _family_renamed(resource: dict[str, Any]) -> None:
    for name in resource.get("name", []):
        name["family"] = f"{name.get('family', '')}-MODIFIE"


def _untouched(resource: dict[str, Any]) -> None:
    """A change of meta.lastUpdated only (a situation opérationnelle saved again)."""


EDITS: dict[str, Callable[[dict[str, Any]], None]] = {
    "Organization": _renamed,
    "HealthcareService": _offer_changed,
    "Location": _renamed,
    "PractitionerRole": _untouched,
    "Practitioner": _family_renamed,
}


def whole_mapping(mappings: Mappings, dataset: Dataset, now: datetime) -> Records:
    """Every entity of the dataset as the engine writes it with every resource received."""
    request = CsdRequest(Transaction.MODIFICATIONS, RequestForm.MODIFICATIONS, last_modified=EPOCH_UTC)
    plan = to_fhir_plan(mappings, request, now=now)
    resources: list[Resource] = list(dataset)
    keys = [f"{r['resourceType']}/{r['id']}" for r in resources]
    received = SearchResult(FhirQuery("all", ()), matches=resources)
    document = from_fhir_results(mappings, plan, [received], now=now, selected=keys)
    return {
        "organizationDirectory": {o.entity_id: o for o in document.organizations},
        "serviceDirectory": {s.entity_id: s for s in document.services},
        "facilityDirectory": {f.entity_id: f for f in document.facilities},
        "providerDirectory": {p.entity_id: p for p in document.providers},
        "deviceDirectory": {d.entity_id: d for d in document.devices},
    }


def differing(before: Records, after: Records) -> dict[str, set[str]]:
    return {
        directory: {
            entity_id
            for entity_id in before[directory].keys() | after[directory].keys()
            if before[directory].get(entity_id) != after[directory].get(entity_id)
        }
        for directory in DIRECTORIES
    }


def canonical(element: etree._Element) -> str:
    return str(etree.canonicalize(etree.tostring(element, encoding="unicode"), strip_text=True))


def post(url: str, body: bytes) -> httpx.Response:
    headers = {"Content-Type": "application/soap+xml; charset=utf-8"}
    return httpx.post(url, content=body, headers=headers, timeout=300)


def soap12(body: str) -> bytes:
    return (
        f'<soap:Envelope xmlns:soap="{ns.SOAP12}" xmlns:csd="{ns.CSD}" xmlns:ror="{ns.ROR}">'
        f"<soap:Header/><soap:Body>{body}</soap:Body></soap:Envelope>"
    ).encode()


def reading(url: str, code: str) -> str:
    """The establishment's TR_Lecture-OffresSanteEtablissement answer (its queryResult), canonical."""
    body = (
        '<csd:careServicesRequest><csd:function urn="urn:asip:ror:lecture:offreSoinEtablissement:2017">'
        "<csd:TR_Lecture-OffresSanteEtablissement><csd:etablissementDemandeLecture>"
        f'<csd:id_etablissement code="{code}" assigningAuthorityName="{ns.OID_IDNATSTRUCT}"/>'
        "</csd:etablissementDemandeLecture></csd:TR_Lecture-OffresSanteEtablissement></csd:function>"
        "</csd:careServicesRequest>"
    )
    response = post(f"{url}/csd", soap12(body))
    assert response.status_code == 200, response.text[:2000]
    result = etree.fromstring(response.content).find(f".//{{{ns.CSD}}}queryResult")
    assert result is not None, response.text[:2000]
    return canonical(result)


def eg_codes(dataset: Dataset) -> dict[int, str]:
    """Index → idNatStruct of every EG."""
    codes = {}
    for index in np.flatnonzero(dataset.org_kind == EG):
        organization = dataset.build("Organization", int(index))
        codes[int(index)] = next(i["value"] for i in organization["identifier"] if i["system"] == IDNATSTRUCT)
    return codes


@pytest.fixture
def servers() -> Iterator[tuple[Dataset, str]]:
    dataset = generate_dataset(SCALE, SEED)
    simulator = mount_simulator(create_simulator_app(SimulatorConfig(scale=SCALE, seed=SEED), dataset))
    with running_server(simulator) as sim:
        bridge = create_app(load_settings(upstream_url=f"{sim}/ws-diffusion-fhir"))
        with running_server(bridge) as url:
            yield dataset, url


def change_a_sample(dataset: Dataset, *, with_ej: bool) -> tuple[datetime, dict[str, list[int]]]:
    """Changes PER_TYPE resources of each type (an EJ among the organisations when asked), each later than
    every resource of the dataset; returns the instant just before them and the indexes changed per type."""
    rng = random.Random(SEED)
    changes = Changes(dataset)
    latest = max(int(stamps.max()) for stamps in dataset.updated.values())
    seconds = latest + 60
    changed: dict[str, list[int]] = {}
    for rtype, edit in EDITS.items():
        sample = rng.sample(range(dataset.count(rtype)), PER_TYPE)
        if rtype == "Organization" and with_ej:
            sample[0] = int(rng.choice(np.flatnonzero(dataset.org_kind == EJ)))
        for index in sample:
            seconds += 1
            changes.change(rtype, index, seconds, edit)
        changed[rtype] = sample
    return instant(latest + 30).astimezone(UTC), changed


def champs_by_eg(dataset: Dataset, offers: list[int], codes: dict[int, str]) -> dict[str, set[str]]:
    """idNatStruct of an EG → the champ d'activité codes (TRE_R227) of the given offers under it."""
    out: dict[str, set[str]] = {}
    for index in offers:
        org = int(dataset.offer_provider[index])
        while org >= 0 and org not in codes:
            org = int(dataset.org_parent[org])
        offer = dataset.build("HealthcareService", index)
        champs = {c["code"] for t in offer.get("type", []) for c in t["coding"] if "TRE_R227" in c["system"]}
        if org >= 0:
            out.setdefault(codes[org], set()).update(champs)
    return out


def test_iti74_answers_exactly_the_entities_whose_records_differ(servers: tuple[Dataset, str]) -> None:
    dataset, url = servers
    mappings = load_mappings(shipped_dir("mappings"))
    now = datetime.now(UTC)
    before = whole_mapping(mappings, dataset, now)
    since, _ = change_a_sample(dataset, with_ej=False)
    after = whole_mapping(mappings, dataset, now)
    expected = differing(before, after)
    # Every kind of change shows in some other record: a lieu lists its offers, a provider its professional.
    assert all(expected[d] for d in DIRECTORIES)
    assert len(expected["facilityDirectory"]) > PER_TYPE  # lieux of changed offers
    assert len(expected["providerDirectory"]) > PER_TYPE  # providers of changed offers and professionals
    assert expected["deviceDirectory"]  # the équipements of changed lieux (their record)
    body = f"<csd:getModificationsRequest><csd:lastModified>{since.isoformat()}</csd:lastModified>"
    response = post(f"{url}/csd", soap12(body + "</csd:getModificationsRequest>"))
    assert response.status_code == 200, response.text[:2000]
    csd = etree.fromstring(response.content).find(f".//{{{ns.CSD}}}getModificationsResponse/{{{ns.CSD}}}CSD")
    assert csd is not None, response.text[:2000]
    for directory in DIRECTORIES:
        written = csd.find(f"{{{ns.CSD}}}{directory}")
        assert written is not None, directory
        found = {str(e.get("entityID")): e for e in written}
        assert len(found) == len(written), f"{directory}: an entity written twice"
        assert set(found) == expected[directory], directory
        for entity_id, element in found.items():
            # The record is complete: written as the whole-dataset mapping writes it.
            whole = ELEMENTS[directory](after[directory][entity_id])
            assert canonical(element) == canonical(whole), entity_id


def test_tr_notif_answers_exactly_the_establishments_whose_reading_differs(
    servers: tuple[Dataset, str],
) -> None:
    dataset, url = servers
    codes = eg_codes(dataset)
    before = {code: reading(url, code) for code in codes.values()}
    since, changed = change_a_sample(dataset, with_ej=True)
    after = {code: reading(url, code) for code in codes.values()}
    expected = {code for code in codes.values() if before[code] != after[code]}
    assert expected, "the changes must reach some establishment"
    assert len(expected) < len(codes), "and leave others unchanged"
    body = (
        f'<ror:TR-Notif-ListeEtablissementsMajApresDate_Demande xmlns:ror="{ns.ROR}" xmlns:csd="{ns.CSD}">'
        f"<csd:params><csd:dateRef>{since.isoformat()}</csd:dateRef></csd:params>"
        "</ror:TR-Notif-ListeEtablissementsMajApresDate_Demande>"
    )
    response = httpx.post(
        f"{url}/csd", content=body.encode(), headers={"Content-Type": "application/xml"}, timeout=300
    )
    assert response.status_code == 200, response.text[:2000]
    answer = etree.fromstring(response.content)
    entries = answer.findall(f"{{{ns.CSD}}}etablissementReponseNotif")
    found = [str(entry.find(f"{{{ns.CSD}}}id_etablissement").get("code")) for entry in entries]  # type: ignore[union-attr]
    assert len(found) == len(set(found))
    assert set(found) == expected
    # typeActivity: the champs d'activité of the establishment's changed offers (none for other changes).
    champs = champs_by_eg(dataset, changed["HealthcareService"], codes)
    assert champs, "some changed offer is under an EG"
    for code, entry in zip(found, entries, strict=True):
        written = entry.findall(f"{{{ns.CSD}}}typeActivity")
        assert {str(t.get("code")) for t in written} == champs.get(code, set()), code
        assert {t.get("codingScheme") for t in written} <= {"1.2.250.1.213.3.3.17"}
