"""The HTTP surface over real HTTP: WSDL and schemas, faults for every kind of bad request, health checks."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
from lxml import etree

from bridge import ns
from tests.e2e.conftest import RunningBridge

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "e2e"
C = {"csd": ns.CSD, "s12": ns.SOAP12, "s11": ns.SOAP11, "wsa": ns.WSA, "f": ns.FAULT, "wsdl": ns.WSDL}
SOAP12 = {"Content-Type": "application/soap+xml; charset=utf-8"}


def fault12(response: httpx.Response) -> tuple[str, str, str]:
    """(Code, Subcode, Reason) of a SOAP 1.2 fault."""
    fault = etree.fromstring(response.content)
    code = fault.xpath("string(s12:Body/s12:Fault/s12:Code/s12:Value)", namespaces=C)
    subcode = fault.xpath("string(s12:Body/s12:Fault/s12:Code/s12:Subcode/s12:Value)", namespaces=C)
    reason = fault.xpath("string(s12:Body/s12:Fault/s12:Reason/s12:Text)", namespaces=C)
    return code.split(":")[-1], subcode.split(":")[-1], reason


@pytest.mark.parametrize("path", ["/csd", "/csd/ara", "/csd/ocean-indien"])
def test_wsdl_has_the_address_the_client_used(bridge: RunningBridge, path: str) -> None:
    response = httpx.get(f"{bridge.url}{path}?wsdl")
    assert response.status_code == 200
    wsdl = etree.fromstring(response.content)
    locations = wsdl.xpath("//*[local-name()='address']/@location")
    assert locations == [f"{bridge.url}{path}", f"{bridge.url}{path}"]
    imports = wsdl.xpath("//*[local-name()='import']/@schemaLocation")
    assert imports == [f"{bridge.url}/csd/schemas/csd.xsd"]
    for location in imports:  # the schemas the WSDL imports are served, and compile as served
        schema = httpx.get(location)
        assert schema.status_code == 200
        assert etree.fromstring(schema.content).tag == f"{{{ns.XSD}}}schema"


def test_schema_files_refuse_anything_else(bridge: RunningBridge) -> None:
    assert httpx.get(f"{bridge.url}/csd/schemas/xml.xsd").status_code == 200
    assert httpx.get(f"{bridge.url}/csd/schemas/csd.wsdl").status_code == 404
    assert httpx.get(f"{bridge.url}/csd/schemas/..%2Fpyproject.toml").status_code == 404


def test_get_without_wsdl_says_where_the_wsdl_is(bridge: RunningBridge) -> None:
    response = httpx.get(f"{bridge.url}/csd")
    assert response.status_code == 404
    assert "?wsdl" in response.text


def test_unknown_stored_function_is_a_sender_fault_naming_the_urn(bridge: RunningBridge) -> None:
    response = httpx.post(
        bridge.csd, content=(FIXTURES / "unknown-function-soap12.xml").read_bytes(), headers=SOAP12
    )
    assert response.status_code == 400
    code, subcode, reason = fault12(response)
    assert (code, subcode) == ("Sender", "UnknownStoredFunction")
    assert "urn:ihe:iti:csd:2014:adhoc" in reason
    answer = etree.fromstring(response.content)
    assert answer.findtext(f".//{{{ns.WSA}}}RelatesTo") == "urn:uuid:5b1f1c8e-11aa-4f3b-8d21-6f0e2a7c9d02"
    assert answer.findtext(f".//{{{ns.WSA}}}Action") == ns.ACTION_FAULT


def test_unknown_stored_function_soap11(bridge: RunningBridge) -> None:
    response = httpx.post(
        bridge.csd,
        content=(FIXTURES / "unknown-function-soap11.xml").read_bytes(),
        headers={"Content-Type": "text/xml; charset=utf-8", "SOAPAction": '""'},
    )
    assert response.status_code == 500  # WS-I Basic Profile R1126: SOAP 1.1 faults travel with 500
    fault = etree.fromstring(response.content)
    assert fault.xpath("string(s11:Body/s11:Fault/faultcode)", namespaces=C).endswith(":Client")
    assert "urn:example:no-such-function" in fault.xpath(
        "string(s11:Body/s11:Fault/faultstring)", namespaces=C
    )


def test_iti74_is_answered_in_its_own_envelope(bridge: RunningBridge) -> None:
    """ITI-74 over SOAP 1.2 (the entity sets themselves: tests/e2e/test_modifications.py)."""
    response = httpx.post(
        bridge.csd, content=(FIXTURES / "modifications-soap12.xml").read_bytes(), headers=SOAP12
    )
    assert response.status_code == 200, response.text
    assert f'action="{ns.ACTION_ITI74_RESPONSE}"' in response.headers["content-type"]
    answer = etree.fromstring(response.content)
    assert answer.findtext(f".//{{{ns.WSA}}}RelatesTo") == "urn:uuid:77e0a1d4-3f2b-4e61-a0c5-1b9e4d3c2a03"
    assert answer.findtext(f".//{{{ns.WSA}}}Action") == ns.ACTION_ITI74_RESPONSE
    body = answer.find(f"{{{ns.SOAP12}}}Body")
    assert body is not None
    (csd,) = body.find(f"{{{ns.CSD}}}getModificationsResponse")  # type: ignore[union-attr]
    directories = [etree.QName(child).localname for child in csd]
    assert directories == [
        "organizationDirectory",
        "serviceDirectory",
        "facilityDirectory",
        "providerDirectory",
        "deviceDirectory",
    ]
    assert len(csd[0]) > 0


def test_oversized_body_is_refused_before_it_is_read_whole(bridge: RunningBridge) -> None:
    limit = bridge.app.state.settings.max_request_bytes
    body = b"<x>" + b"a" * (limit + 10) + b"</x>"
    response = httpx.post(bridge.csd, content=body, headers=SOAP12)
    assert response.status_code == 400
    assert fault12(response)[1] == "RequestTooLarge"


@pytest.mark.parametrize(
    ("body", "subcode"),
    [
        (b"<soap:Envelope xmlns:soap='http://www.w3.org/2003/05/soap-envelope'><soap:Body>", "MalformedXml"),
        (b'<!DOCTYPE x [<!ENTITY e SYSTEM "file:///etc/passwd">]><x>&e;</x>', "MalformedXml"),
        (
            b"<soap:Envelope xmlns:soap='http://www.w3.org/2003/05/soap-envelope'><soap:Body/></soap:Envelope>",
            "UnsupportedRequest",
        ),
    ],
)
def test_bad_xml_is_a_sender_fault_and_leaks_nothing(
    bridge: RunningBridge, body: bytes, subcode: str
) -> None:
    response = httpx.post(bridge.csd, content=body, headers=SOAP12)
    assert response.status_code == 400
    assert fault12(response)[:2] == ("Sender", subcode)
    assert b"root:" not in response.content


def test_json_is_an_unsupported_media_type(bridge: RunningBridge) -> None:
    response = httpx.post(bridge.csd, json={"careServicesRequest": {}})
    assert response.status_code == 400
    assert fault12(response)[1] == "UnsupportedMediaType"


def test_health_and_readiness(bridge: RunningBridge) -> None:
    assert httpx.get(f"{bridge.url}/healthz").json() == {"status": "ok"}
    ready = httpx.get(f"{bridge.url}/readyz")
    assert ready.status_code == 200
    assert ready.json()["status"] == "ready"


def test_the_demo_fhir_data_behind_the_answers_is_browsable(bridge: RunningBridge) -> None:
    response = httpx.get(f"{bridge.url}/demo/fhir/Organization", params={"_count": "3"})
    assert response.status_code == 200
    bundle = response.json()
    assert bundle["resourceType"] == "Bundle"
    assert bundle["total"] == len(bridge.dataset.resources["Organization"])
    assert all(link["url"].startswith(f"{bridge.url}/demo/fhir") for link in bundle["link"])


def test_unknown_region_is_refused_on_every_verb(bridge: RunningBridge) -> None:
    assert httpx.get(f"{bridge.url}/csd/atlantis?wsdl").status_code == 404
    body = (FIXTURES / "unknown-function-soap12.xml").read_bytes()
    response = httpx.post(f"{bridge.url}/csd/atlantis", content=body, headers=SOAP12)
    assert response.status_code == 400
    code, subcode, reason = fault12(response)
    assert (code, subcode) == ("Sender", "UnknownRegion")
    assert "atlantis" in reason
