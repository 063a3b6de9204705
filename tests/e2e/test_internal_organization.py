"""`internal-organization` end to end: real HTTP, the embedded simulator, zeep and hand-written requests.

Every answer is validated against our schema and the official CSD 2014 schema, and the entities it holds
are checked against the simulator's own data, computed here independently of the mapping engine.
"""

from __future__ import annotations

import uuid
from pathlib import Path
from urllib.parse import quote

import httpx
import pytest
import zeep
from lxml import etree
from zeep.plugins import HistoryPlugin
from zeep.wsa import WsAddressingPlugin

from bridge import ns
from bridge.simulator.dataset import OrgKind
from tests.e2e.conftest import RunningBridge, identifier
from tests.expected import answer_csd

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "e2e"
OI = "https://oi.esante.gouv.fr"
IDNAT = "urn:oid:1.2.250.1.71.4.2.2"
FUNCTION = "urn:ror:csd:stored-function:internal-organization"
C = {"csd": ns.CSD, "s12": ns.SOAP12, "s11": ns.SOAP11, "wsa": ns.WSA, "f": ns.FAULT}


def entity_id(resource: dict[str, object]) -> str:
    """entityID the bridge must issue: identities.yaml, reimplemented here as the test's own oracle."""
    for system, prefix in ((OI, "urn:ror:oi:"), (IDNAT, "urn:ror:idnatstruct:")):
        value = identifier(resource, system)  # type: ignore[arg-type]
        if value is not None:
            return prefix + quote(value, safe="-._~")
    raise AssertionError(f"no national identifier on {resource['id']}")


def expected_entities(bridge: RunningBridge, org_id: str) -> tuple[set[str], set[str], set[str]]:
    """Organisations (EJ, EG), offers and facilities the answer for `org_id` must hold, from the simulator's
    data, placed as the ROR v2.4 profile places them: pôles, services and UFs are facilities, each offer is
    a UE facility (and its activity a service), a v3 organisation typed UE is no entity."""
    data = bridge.dataset
    subtree = set(data.subtree(org_id))
    offers = [
        hs
        for hs in data.resources["HealthcareService"].values()
        if hs["providedBy"]["reference"].split("/")[-1] in subtree
    ]
    orgs = {org_id, *data.ancestors(org_id)}
    for offer in offers:  # the chain from each offer's provider up to the requested organisation
        current = offer["providedBy"]["reference"].split("/")[-1]
        while current != org_id:
            orgs.add(current)
            current = data.parent[current]
    establishments = {o for o in orgs if data.kind[o] in (OrgKind.EJ, OrgKind.EG)}
    internal = {o for o in orgs if data.kind[o] in (OrgKind.POLE, OrgKind.SERVICE, OrgKind.UF)}
    org_ids = {entity_id(data.resources["Organization"][o]) for o in establishments}
    offer_ids = {"urn:ror:offre:" + quote(hs["identifier"][0]["value"], safe="-._~") for hs in offers}
    facility_ids = {entity_id(data.resources["Organization"][o]) for o in internal} | offer_ids
    return org_ids, offer_ids, facility_ids


def pick(bridge: RunningBridge, kind: OrgKind) -> str:
    """The first organisation of that kind with at least one offer below it."""
    data = bridge.dataset
    providers = {
        hs["providedBy"]["reference"].split("/")[-1] for hs in data.resources["HealthcareService"].values()
    }
    for org_id in data.ids("Organization"):
        if data.kind[org_id] is kind and providers & set(data.subtree(org_id)):
            return org_id
    raise AssertionError(f"the demo dataset has no {kind} with offers")


def fill(fixture: str, **values: str) -> bytes:
    text = (FIXTURES / fixture).read_text(encoding="utf-8")
    for key, value in values.items():
        text = text.replace("{" + key + "}", value)
    return text.encode("utf-8")


def csd_of(answer: etree._Element) -> etree._Element:
    return answer_csd(answer)


def check_document(
    csd: etree._Element,
    our: etree.XMLSchema,
    official: etree.XMLSchema,
    expected: tuple[set[str], set[str], set[str]],
) -> None:
    assert expected[0]
    assert expected[1], "the case must hold offers, or it proves little"
    document = etree.ElementTree(csd)
    our.assertValid(document)
    official.assertValid(document)
    orgs = csd.xpath("csd:organizationDirectory/csd:organization/@entityID", namespaces=C)
    services = csd.xpath("csd:serviceDirectory/csd:service/@entityID", namespaces=C)
    facilities = csd.xpath("csd:facilityDirectory/csd:facility/@entityID", namespaces=C)
    assert len(orgs) == len(set(orgs)), "each organisation once"
    assert len(services) == len(set(services)), "each offer once"
    assert len(facilities) == len(set(facilities)), "each facility once"
    assert (set(orgs), set(services), set(facilities)) == expected
    assert csd.xpath("count(csd:providerDirectory/*)", namespaces=C) == 0
    # The EG's parent is the EJ of the same answer (the only organisation with no parent); every
    # parentFacility names a facility of the same answer.
    parents = set(csd.xpath("csd:organizationDirectory/csd:organization/csd:parent/@entityID", namespaces=C))
    assert parents <= set(orgs)
    assert (
        len(orgs) - len(csd.xpath("csd:organizationDirectory/csd:organization[csd:parent]", namespaces=C))
        == 1
    )
    links = csd.xpath(
        "csd:facilityDirectory/csd:facility/csd:extension/csd:parentFacility/@entityID", namespaces=C
    )
    assert set(links) <= set(facilities)


@pytest.mark.parametrize("kind", [OrgKind.UE, OrgKind.UF, OrgKind.SERVICE, OrgKind.POLE])
def test_soap12_with_ws_addressing(
    bridge: RunningBridge,
    kind: OrgKind,
    our_csd_schema: etree.XMLSchema,
    official_csd_schema: etree.XMLSchema,
) -> None:
    org_id = pick(bridge, kind)
    code = identifier(bridge.dataset.resources["Organization"][org_id], OI)
    assert code is not None
    body = fill("internal-organization-soap12.xml", endpoint=bridge.csd, code=code, authority=OI)
    response = httpx.post(
        bridge.csd, content=body, headers={"Content-Type": "application/soap+xml; charset=utf-8"}
    )
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("application/soap+xml")
    assert f'action="{ns.ACTION_ITI73_RESPONSE}"' in response.headers["content-type"]
    answer = etree.fromstring(response.content)
    header = answer.find(f"{{{ns.SOAP12}}}Header")
    assert header is not None
    assert header.findtext(f"{{{ns.WSA}}}RelatesTo") == "urn:uuid:0f3d3c2e-7c55-4c8e-9d7e-2d6d0b1a9e01"
    assert header.findtext(f"{{{ns.WSA}}}Action") == ns.ACTION_ITI73_RESPONSE
    message_id = header.findtext(f"{{{ns.WSA}}}MessageID")
    assert message_id is not None
    assert message_id.startswith("urn:uuid:")
    assert message_id != "urn:uuid:0f3d3c2e-7c55-4c8e-9d7e-2d6d0b1a9e01"
    assert (
        answer.xpath("count(s12:Body/csd:careServicesResponse/csd:result/csd:queryResult)", namespaces=C) == 1
    )
    check_document(csd_of(answer), our_csd_schema, official_csd_schema, expected_entities(bridge, org_id))


def test_soap11_2016_form(
    bridge: RunningBridge, our_csd_schema: etree.XMLSchema, official_csd_schema: etree.XMLSchema
) -> None:
    org_id = pick(bridge, OrgKind.SERVICE)
    code = identifier(bridge.dataset.resources["Organization"][org_id], OI)
    assert code is not None
    response = httpx.post(
        bridge.csd,
        content=fill("internal-organization-soap11.xml", code=code, authority=OI),
        headers={"Content-Type": "text/xml; charset=utf-8", "SOAPAction": f'"{ns.ACTION_ITI73_REQUEST}"'},
    )
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/xml")
    answer = etree.fromstring(response.content)
    assert answer.tag == f"{{{ns.SOAP11}}}Envelope"
    check_document(csd_of(answer), our_csd_schema, official_csd_schema, expected_entities(bridge, org_id))


def test_bare_2013_form_is_answered_bare_and_unencapsulated(
    bridge: RunningBridge, our_csd_schema: etree.XMLSchema, official_csd_schema: etree.XMLSchema
) -> None:
    """OpenInfoMan-style plain POST; the legacy 2013 `urn:uuid:` id is not registered for this function."""
    org_id = pick(bridge, OrgKind.UE)
    code = identifier(bridge.dataset.resources["Organization"][org_id], OI)
    assert code is not None
    unknown = str(uuid.UUID(int=7))
    refused = httpx.post(
        bridge.csd,
        content=fill("internal-organization-bare-2013.xml", uuid=unknown, code=code, authority=OI),
        headers={"Content-Type": "application/xml"},
    )
    assert refused.status_code == 400
    assert f"urn:uuid:{unknown}" in refused.text
    # The same bare request with the 2014 function/@urn form is answered with a bare csd:CSD.
    bare = fill("internal-organization-bare-2013.xml", uuid="", code=code, authority=OI).replace(
        b'uuid=""', f'urn="{FUNCTION}"'.encode()
    )
    response = httpx.post(bridge.csd, content=bare, headers={"Content-Type": "application/xml"})
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("application/xml")
    answer = etree.fromstring(response.content)
    assert answer.tag == f"{{{ns.CSD}}}CSD"
    check_document(answer, our_csd_schema, official_csd_schema, expected_entities(bridge, org_id))


def test_by_an_entity_id_the_bridge_issued(
    bridge: RunningBridge, our_csd_schema: etree.XMLSchema, official_csd_schema: etree.XMLSchema
) -> None:
    org_id = pick(bridge, OrgKind.UF)
    issued = entity_id(bridge.dataset.resources["Organization"][org_id])
    response = httpx.post(
        bridge.csd,
        content=fill("internal-organization-by-entity-id.xml", entity_id=issued),
        headers={"Content-Type": "application/soap+xml"},
    )
    assert response.status_code == 200, response.text
    check_document(
        csd_of(etree.fromstring(response.content)),
        our_csd_schema,
        official_csd_schema,
        expected_entities(bridge, org_id),
    )


@pytest.mark.parametrize("with_wsa_plugin", [False, True])
def test_zeep_client_built_from_the_served_wsdl(
    bridge: RunningBridge,
    our_csd_schema: etree.XMLSchema,
    official_csd_schema: etree.XMLSchema,
    with_wsa_plugin: bool,
) -> None:
    """zeep adds WS-Addressing itself (the WSDL declares wsam:Action); its WsAddressingPlugin adds the
    same headers a second time, which a legacy-tolerant endpoint must accept."""
    org_id = pick(bridge, OrgKind.UE)
    code = identifier(bridge.dataset.resources["Organization"][org_id], OI)
    history = HistoryPlugin()
    plugins: list[object] = [history, WsAddressingPlugin()] if with_wsa_plugin else [history]
    client = zeep.Client(f"{bridge.csd}?wsdl", plugins=plugins)
    result = client.service.FindMatchingCareServices(
        function={
            "urn": FUNCTION,
            "encapsulated": True,
            "requestParams": {"_value_1": [{"otherID": {"code": code, "assigningAuthorityName": OI}}]},
        }
    )
    sent = history.last_sent["envelope"]
    received = history.last_received["envelope"]
    sent_ids = [e.text for e in sent.iter(f"{{{ns.WSA}}}MessageID")]
    assert len(sent_ids) == (2 if with_wsa_plugin else 1)
    sent_id = sent_ids[0]  # the first occurrence counts (bridge/soap/addressing.py)
    assert sent_id is not None  # zeep adds WS-Addressing because the WSDL declares wsam:Action
    assert received.findtext(f".//{{{ns.WSA}}}RelatesTo") == sent_id
    check_document(csd_of(received), our_csd_schema, official_csd_schema, expected_entities(bridge, org_id))
    # zeep also turned the answer into objects through the served schema.
    # The ROR v2.4 profile's Result: facilityNumber, then queryResult of type CSD.
    assert isinstance(result.result.facilityNumber, int)
    organizations = result.result.queryResult.organizationDirectory.organization
    assert {o.entityID for o in organizations} == expected_entities(bridge, org_id)[0]


def test_unknown_identifier_gives_an_empty_but_complete_document(bridge: RunningBridge) -> None:
    response = httpx.post(
        bridge.csd,
        content=fill("internal-organization-soap12.xml", endpoint=bridge.csd, code="OI-NOPE", authority=OI),
        headers={"Content-Type": "application/soap+xml"},
    )
    assert response.status_code == 200, response.text
    csd = csd_of(etree.fromstring(response.content))
    assert [child.tag.split("}")[1] for child in csd] == [
        "organizationDirectory",
        "serviceDirectory",
        "facilityDirectory",
        "providerDirectory",
        "deviceDirectory",
    ]
    assert len(csd.xpath("//csd:organization | //csd:service", namespaces=C)) == 0


def test_a_regional_endpoint_answers_with_its_region_only(
    bridge: RunningBridge, our_csd_schema: etree.XMLSchema, official_csd_schema: etree.XMLSchema
) -> None:
    org_id = pick(bridge, OrgKind.POLE)
    organization = bridge.dataset.resources["Organization"][org_id]
    code = identifier(organization, OI)
    assert code is not None
    region_code = organization["meta"]["tag"][0]["code"]
    regions = bridge.app.state.mappings.regions.values()
    own = next(r.code for r in regions if region_code in r.region_codes)
    other = next(r.code for r in regions if region_code not in r.region_codes)
    body = fill("internal-organization-soap12.xml", endpoint=bridge.csd, code=code, authority=OI)
    headers = {"Content-Type": "application/soap+xml"}

    response = httpx.post(f"{bridge.csd}/{own}", content=body, headers=headers)
    assert response.status_code == 200, response.text
    expected = expected_entities(bridge, org_id)
    check_document(csd_of(etree.fromstring(response.content)), our_csd_schema, official_csd_schema, expected)

    elsewhere = httpx.post(f"{bridge.csd}/{other}", content=body, headers=headers)
    assert elsewhere.status_code == 200, elsewhere.text
    assert len(csd_of(etree.fromstring(elsewhere.content)).xpath("//csd:organization", namespaces=C)) == 0
