"""Tests of the answer-header rule (bridge.soap.addressing.respond_to): answers and faults, SOAP 1.1 and 1.2.

WS-Addressing headers only when the request engaged it; mustUnderstand only where the request used it.
"""

from __future__ import annotations

import uuid

import pytest
from lxml import etree

from bridge import ns
from bridge.csd.request import parse_request
from bridge.errors import InvalidParameterError
from bridge.model import CsdDocument, CsdResponse, Envelope
from bridge.soap.envelope import stream_response
from bridge.soap.faults import render_fault
from bridge.soap.parser import SoapMessage, parse_message

MESSAGE_ID = "urn:uuid:7d1c2b3a-4e5f-4a6b-8c7d-9e0f1a2b3c4d"
BODY = (
    '<csd:getModificationsRequest xmlns:csd="urn:ihe:iti:csd:2013">'
    "<csd:lastModified>2025-06-01T00:00:00</csd:lastModified></csd:getModificationsRequest>"
)
VERSIONS = {
    Envelope.SOAP12: (ns.SOAP12, "application/soap+xml; charset=utf-8"),
    Envelope.SOAP11: (ns.SOAP11, "text/xml; charset=utf-8"),
}


def _request(envelope: Envelope, headers: str) -> SoapMessage:
    env_ns, content_type = VERSIONS[envelope]
    text = (
        f'<e:Envelope xmlns:e="{env_ns}" xmlns:wsa="{ns.WSA}">'
        f"<e:Header>{headers}</e:Header><e:Body>{BODY}</e:Body></e:Envelope>"
    )
    soap_action = None if envelope is Envelope.SOAP12 else f'"{ns.ACTION_ITI74_REQUEST}"'
    return parse_message(text.encode(), content_type, soap_action)


async def _answer(message: SoapMessage) -> etree._Element:
    response = CsdResponse(request=parse_request(message.body), document=CsdDocument())
    chunks = [chunk async for chunk in stream_response(response, message, encapsulated=True)]
    return etree.fromstring(b"".join(chunks))


def _fault(message: SoapMessage) -> etree._Element:
    body, _, _ = render_fault(InvalidParameterError("max"), message.envelope, message.addressing)
    return etree.fromstring(body)


def _wsa(root: etree._Element) -> dict[str, tuple[str, str | None]]:
    """{local name: (text, mustUnderstand attribute)} of the answer's WS-Addressing headers."""
    env_ns = etree.QName(root).namespace or ""
    found: dict[str, tuple[str, str | None]] = {}
    for element in root.iterfind(f"{{{env_ns}}}Header/{{{ns.WSA}}}*"):
        must_understand = element.get(ns.qn(env_ns, "mustUnderstand"))
        found[etree.QName(element).localname] = (element.text or "", must_understand)
    return found


BOTH = pytest.mark.parametrize("envelope", [Envelope.SOAP12, Envelope.SOAP11], ids=["soap12", "soap11"])


@BOTH
@pytest.mark.parametrize("kind", ["answer", "fault"])
async def test_no_wsa_in_the_request_no_header_in_the_answer(envelope: Envelope, kind: str) -> None:
    # A header the bridge ignores (not mandatory) does not engage WS-Addressing; neither does wsa:To alone.
    message = _request(envelope, '<x:Trace xmlns:x="urn:example">1</x:Trace><wsa:To>http://h/csd</wsa:To>')
    root = await _answer(message) if kind == "answer" else _fault(message)
    env_ns = etree.QName(root).namespace
    assert env_ns == VERSIONS[envelope][0]
    assert root.find(f"{{{env_ns}}}Header") is None
    assert b"addressing" not in etree.tostring(root.find(f"{{{env_ns}}}Body"))


@BOTH
async def test_wsa_without_must_understand(envelope: Envelope) -> None:
    message = _request(
        envelope,
        f"<wsa:Action>{ns.ACTION_ITI74_REQUEST}</wsa:Action><wsa:MessageID>{MESSAGE_ID}</wsa:MessageID>"
        f"<wsa:To>http://h/csd</wsa:To>",
    )
    headers = _wsa(await _answer(message))
    assert list(headers) == ["Action", "MessageID", "RelatesTo"]
    assert headers["Action"] == (ns.ACTION_ITI74_RESPONSE, None)
    assert headers["RelatesTo"] == (MESSAGE_ID, None)
    text, must_understand = headers["MessageID"]
    assert must_understand is None
    assert text != MESSAGE_ID
    uuid.UUID(text.removeprefix("urn:uuid:"))


@BOTH
@pytest.mark.parametrize("value", ["1", "true"])
async def test_must_understand_only_where_the_request_used_it(envelope: Envelope, value: str) -> None:
    message = _request(
        envelope,
        f'<wsa:Action e:mustUnderstand="{value}">{ns.ACTION_ITI74_REQUEST}</wsa:Action>'
        f"<wsa:MessageID>{MESSAGE_ID}</wsa:MessageID>"
        f'<wsa:To e:mustUnderstand="1">http://h/csd</wsa:To>',
    )
    headers = _wsa(await _answer(message))
    assert headers["Action"] == (ns.ACTION_ITI74_RESPONSE, "1")
    assert headers["MessageID"][1] is None
    assert headers["RelatesTo"] == (MESSAGE_ID, None)
    assert "To" not in headers


@BOTH
async def test_must_understand_false_is_not_must_understand(envelope: Envelope) -> None:
    message = _request(
        envelope,
        f'<wsa:Action e:mustUnderstand="false">{ns.ACTION_ITI74_REQUEST}</wsa:Action>'
        f'<wsa:MessageID e:mustUnderstand="1">{MESSAGE_ID}</wsa:MessageID>',
    )
    headers = _wsa(await _answer(message))
    assert headers["Action"][1] is None
    assert headers["MessageID"][1] == "1"


@BOTH
async def test_message_id_alone_engages_wsa(envelope: Envelope) -> None:
    headers = _wsa(await _answer(_request(envelope, f"<wsa:MessageID>{MESSAGE_ID}</wsa:MessageID>")))
    assert headers["Action"] == (ns.ACTION_ITI74_RESPONSE, None)
    assert headers["RelatesTo"] == (MESSAGE_ID, None)


@BOTH
async def test_action_alone_gives_no_relates_to(envelope: Envelope) -> None:
    message = _request(envelope, f'<wsa:Action e:mustUnderstand="1">{ns.ACTION_ITI74_REQUEST}</wsa:Action>')
    headers = _wsa(await _answer(message))
    assert list(headers) == ["Action", "MessageID"]
    assert headers["Action"][1] == "1"


@BOTH
def test_faults_follow_the_same_rule(envelope: Envelope) -> None:
    message = _request(
        envelope,
        f'<wsa:Action e:mustUnderstand="1">{ns.ACTION_ITI74_REQUEST}</wsa:Action>'
        f"<wsa:MessageID>{MESSAGE_ID}</wsa:MessageID>",
    )
    headers = _wsa(_fault(message))
    assert headers["Action"] == (ns.ACTION_FAULT, "1")
    assert headers["RelatesTo"] == (MESSAGE_ID, None)
    assert headers["MessageID"][1] is None
    assert "To" not in headers
