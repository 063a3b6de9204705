"""Tests of bridge.soap.faults: one fault per error class, SOAP 1.2 and 1.1 structure, status, addressing."""

from __future__ import annotations

import uuid

import pytest
from lxml import etree

from bridge import ns
from bridge.errors import (
    BridgeError,
    ConfigurationError,
    IncompleteResultError,
    InvalidParameterError,
    MalformedXmlError,
    MappingError,
    MappingTableError,
    MustUnderstandError,
    ReceiverError,
    RequestTooLargeError,
    SenderError,
    UnknownEntityError,
    UnknownFunctionError,
    UnknownRegionError,
    UnsupportedMediaTypeError,
    UnsupportedRequestError,
    UpstreamError,
    UpstreamProtocolError,
    UpstreamStatusError,
    UpstreamUnavailableError,
    VersionMismatchError,
)
from bridge.model import Envelope
from bridge.soap.addressing import Addressing
from bridge.soap.faults import INTERNAL_REASON, FaultSpec, fault_spec, render_fault

S12 = {"env": ns.SOAP12, "wsa": ns.WSA, "f": ns.FAULT}
S11 = {"soap": ns.SOAP11, "wsa": ns.WSA, "f": ns.FAULT}
REQUEST = Addressing(
    action=ns.ACTION_ITI73_REQUEST, message_id="urn:uuid:11111111-2222-4333-8444-555555555555"
)

# Every error class the bridge raises on purpose, with the fault it must become.
CASES: list[tuple[BaseException, FaultSpec]] = [
    (RequestTooLargeError(1024), FaultSpec("Sender", "RequestTooLarge", 400, 103)),
    (MalformedXmlError("DTD not allowed"), FaultSpec("Sender", "MalformedXml", 400, 101)),
    (UnsupportedMediaTypeError("json"), FaultSpec("Sender", "UnsupportedMediaType", 400, 102)),
    (UnsupportedRequestError("empty Body"), FaultSpec("Sender", "UnsupportedRequest", 400, 104)),
    (UnknownFunctionError("urn:x:nope"), FaultSpec("Sender", "UnknownStoredFunction", 400, 105)),
    (InvalidParameterError("max"), FaultSpec("Sender", "InvalidParameter", 400, 106)),
    (UnknownRegionError("zz"), FaultSpec("Sender", "UnknownRegion", 400, 107)),
    (UnknownEntityError("establishment", "1999"), FaultSpec("Sender", "UnknownEntity", 400, 110)),
    (
        MustUnderstandError("{urn:example:security}Ticket"),
        FaultSpec("MustUnderstand", "HeaderNotUnderstood", 500, 108),
    ),
    (VersionMismatchError("urn:old"), FaultSpec("VersionMismatch", "UnsupportedEnvelope", 500, 109)),
    (SenderError("generic"), FaultSpec("Sender", "BadRequest", 400, 100)),
    (UpstreamUnavailableError("timeout"), FaultSpec("Receiver", "UpstreamUnavailable", 500, 201)),
    (UpstreamStatusError("bad", status=503), FaultSpec("Receiver", "UpstreamStatus", 500, 202)),
    (UpstreamProtocolError("not a Bundle"), FaultSpec("Receiver", "UpstreamProtocol", 500, 203)),
    (IncompleteResultError("paging broke"), FaultSpec("Receiver", "IncompleteResult", 500, 204)),
    (UpstreamError("other"), FaultSpec("Receiver", "UpstreamFailed", 500, 200)),
    (
        MappingError("entities/facility.yaml", "name", "$.name", "missing"),
        FaultSpec("Receiver", "MappingFailed", 500, 205),
    ),
    (ReceiverError("generic"), FaultSpec("Receiver", "ReceiverFailed", 500, 299)),
]


@pytest.mark.parametrize(("error", "expected"), CASES, ids=[type(e).__name__ for e, _ in CASES])
def test_fault_spec(error: BaseException, expected: FaultSpec) -> None:
    assert fault_spec(error) == expected


def test_one_subcode_per_error_class() -> None:
    subcodes = [spec.subcode for _, spec in CASES]
    assert len(subcodes) == len(set(subcodes))


def test_one_profile_error_number_per_error_class() -> None:
    numbers = [spec.number for _, spec in CASES]
    assert len(numbers) == len(set(numbers))


@pytest.mark.parametrize("envelope", [Envelope.SOAP12, Envelope.SOAP11])
def test_profile_fault_carries_erreur(envelope: Envelope) -> None:
    """ROR v2.4 profile requests: the detail starts with `erreur` (urn:asip:ror:2015), text @code @message."""
    error = InvalidParameterError("dateRef must be an xs:dateTime")
    body, _, _ = render_fault(error, envelope, None, profile=True)
    erreur = etree.fromstring(body).find(f".//{{{ns.ROR}}}erreur")
    assert erreur is not None
    parent = erreur.getparent()
    assert parent is not None
    assert etree.QName(parent).localname in ("Detail", "detail")
    assert erreur.get("code") == "106"
    assert erreur.get("message") == "InvalidParameter"
    assert erreur.text == "dateRef must be an xs:dateTime"
    plain, _, _ = render_fault(error, envelope, None)
    assert etree.fromstring(plain).find(f".//{{{ns.ROR}}}erreur") is None


def test_subclass_of_a_known_error_inherits_its_fault() -> None:
    class SlowUpstreamError(UpstreamUnavailableError):
        pass

    assert fault_spec(SlowUpstreamError("x")).subcode == "UpstreamUnavailable"


@pytest.mark.parametrize(
    "error",
    [
        KeyError("/etc/bridge/secret.toml"),
        RuntimeError("password=hunter2 at /srv/app"),
        ConfigurationError("BRIDGE_UPSTREAM_CLIENT_SECRET missing"),
        MappingTableError("codes/x.csv", None, None, "bad row"),
        BridgeError("bare base"),
    ],
)
def test_unknown_exceptions_are_internal_and_do_not_leak(error: BaseException) -> None:
    assert fault_spec(error) == FaultSpec("Receiver", "InternalError", 500, 500)
    body, status, _ = render_fault(error, Envelope.SOAP12, REQUEST)
    assert status == 500
    root = etree.fromstring(body)
    assert root.xpath("string(//env:Reason/env:Text)", namespaces=S12) == INTERNAL_REASON
    text = body.decode()
    for secret in ("secret", "hunter2", "/srv/app", "bad row", "bare base"):
        assert secret not in text


def _qname(element: etree._Element) -> str:
    """Resolve a QName-valued element text (`prefix:local`) in its in-scope namespaces."""
    prefix, _, local = (element.text or "").partition(":")
    return ns.qn(element.nsmap[prefix], local)


def _one(root: etree._Element, xpath: str, namespaces: dict[str, str]) -> etree._Element:
    found = root.xpath(xpath, namespaces=namespaces)
    assert isinstance(found, list)
    assert len(found) == 1, xpath
    element = found[0]
    assert isinstance(element, etree._Element)
    return element


@pytest.mark.parametrize(("error", "expected"), CASES, ids=[type(e).__name__ for e, _ in CASES])
def test_soap12_fault_structure(error: BaseException, expected: FaultSpec) -> None:
    body, status, content_type = render_fault(error, Envelope.SOAP12, REQUEST)
    assert status == expected.http_status
    assert content_type == "application/soap+xml; charset=utf-8"
    assert body.startswith(b"<?xml")
    root = etree.fromstring(body)
    assert root.tag == ns.qn(ns.SOAP12, "Envelope")
    fault = _one(root, "/env:Envelope/env:Body/env:Fault", S12)
    # SOAP 1.2 part 1 §5.4: Code, Reason, [Node], [Role], [Detail], in this order.
    assert [child.tag for child in fault] == [ns.qn(ns.SOAP12, n) for n in ("Code", "Reason", "Detail")]
    assert _qname(_one(fault, "env:Code/env:Value", S12)) == ns.qn(ns.SOAP12, expected.code)
    assert _qname(_one(fault, "env:Code/env:Subcode/env:Value", S12)) == ns.qn(ns.FAULT, expected.subcode)
    text = _one(fault, "env:Reason/env:Text", S12)
    assert text.get(ns.qn(ns.XML, "lang")) == "en"
    assert text.text == str(error)
    assert _one(fault, "env:Detail/f:error", S12).get("subcode") == expected.subcode
    # WS-Addressing 1.0 SOAP binding §6 and csd-wire-format §8.1.
    assert _one(root, "env:Header/wsa:Action", S12).text == ns.ACTION_FAULT
    assert _one(root, "env:Header/wsa:RelatesTo", S12).text == REQUEST.message_id
    message_id = _one(root, "env:Header/wsa:MessageID", S12).text or ""
    assert message_id.startswith("urn:uuid:")
    uuid.UUID(message_id.removeprefix("urn:uuid:"))
    assert message_id != REQUEST.message_id


@pytest.mark.parametrize(("error", "expected"), CASES, ids=[type(e).__name__ for e, _ in CASES])
def test_soap11_fault_structure(error: BaseException, expected: FaultSpec) -> None:
    body, status, content_type = render_fault(error, Envelope.SOAP11, REQUEST)
    # WS-I Basic Profile 1.1 R1126: every SOAP 1.1 fault is HTTP 500.
    assert status == 500
    assert content_type == "text/xml; charset=utf-8"
    root = etree.fromstring(body)
    assert root.tag == ns.qn(ns.SOAP11, "Envelope")
    fault = _one(root, "/soap:Envelope/soap:Body/soap:Fault", S11)
    assert [child.tag for child in fault] == ["faultcode", "faultstring", "detail"]
    soap11_code = {"Sender": "Client", "Receiver": "Server"}.get(expected.code, expected.code)
    assert _qname(_one(fault, "faultcode", S11)) == ns.qn(ns.SOAP11, soap11_code)
    assert _one(fault, "faultstring", S11).text == str(error)
    assert _one(fault, "detail/f:error", S11).get("subcode") == expected.subcode
    assert _one(root, "soap:Header/wsa:RelatesTo", S11).text == REQUEST.message_id
    assert _one(root, "soap:Header/wsa:Action", S11).text == ns.ACTION_FAULT


def test_bare_requests_get_a_soap12_fault() -> None:
    body, status, content_type = render_fault(UnknownFunctionError("urn:x"), Envelope.BARE, None)
    root = etree.fromstring(body)
    assert root.tag == ns.qn(ns.SOAP12, "Envelope")
    assert status == 400
    assert content_type.startswith("application/soap+xml")


@pytest.mark.parametrize("request_addressing", [None, Addressing()])
def test_no_addressing_in_a_fault_to_a_request_without_it(request_addressing: Addressing | None) -> None:
    for envelope, namespaces in ((Envelope.SOAP12, S12), (Envelope.SOAP11, S11)):
        body, _, _ = render_fault(MalformedXmlError("x"), envelope, request_addressing)
        root = etree.fromstring(body)
        assert root.xpath("//wsa:*", namespaces=namespaces) == []
        # Nothing else to say in a Header either: none at all.
        assert root.xpath("/*/*[local-name()='Header']") == []


def test_no_relates_to_without_a_request_message_id() -> None:
    for envelope, namespaces in ((Envelope.SOAP12, S12), (Envelope.SOAP11, S11)):
        body, _, _ = render_fault(MalformedXmlError("x"), envelope, Addressing(action="urn:a"))
        root = etree.fromstring(body)
        assert root.xpath("//wsa:RelatesTo", namespaces=namespaces) == []
        message_ids = root.xpath("//wsa:MessageID", namespaces=namespaces)
        assert isinstance(message_ids, list)
        assert len(message_ids) == 1


def test_detail_names_the_unknown_function() -> None:
    body, _, _ = render_fault(
        UnknownFunctionError("urn:ror:csd:stored-function:nope"), Envelope.SOAP12, REQUEST
    )
    root = etree.fromstring(body)
    assert root.xpath("string(//env:Detail/f:error/f:functionUrn)", namespaces=S12) == (
        "urn:ror:csd:stored-function:nope"
    )


def test_detail_carries_the_upstream_status() -> None:
    body, _, _ = render_fault(UpstreamStatusError("national API", status=502), Envelope.SOAP11, REQUEST)
    root = etree.fromstring(body)
    assert root.xpath("string(//detail/f:error/f:upstreamStatus)", namespaces=S11) == "502"


def test_must_understand_fault_has_a_not_understood_header() -> None:
    body, status, _ = render_fault(
        MustUnderstandError("{urn:example:security}Ticket"), Envelope.SOAP12, REQUEST
    )
    root = etree.fromstring(body)
    block = _one(root, "env:Header/env:NotUnderstood", S12)
    prefix, _, local = (block.get("qname") or "").partition(":")
    assert ns.qn(block.nsmap[prefix], local) == "{urn:example:security}Ticket"
    assert status == 500


def test_must_understand_fault_for_an_unqualified_header() -> None:
    body, _, _ = render_fault(MustUnderstandError("Ticket"), Envelope.SOAP12, None)
    block = _one(etree.fromstring(body), "env:Header/env:NotUnderstood", S12)
    assert block.get("qname") == "Ticket"


def test_version_mismatch_fault_lists_the_supported_envelopes() -> None:
    body, _, _ = render_fault(
        VersionMismatchError("http://www.w3.org/2001/12/soap-envelope"), Envelope.SOAP12, None
    )
    root = etree.fromstring(body)
    supported = root.xpath("env:Header/env:Upgrade/env:SupportedEnvelope", namespaces=S12)
    assert isinstance(supported, list)
    resolved = []
    for element in supported:
        assert isinstance(element, etree._Element)
        prefix, _, local = (element.get("qname") or "").partition(":")
        resolved.append(ns.qn(element.nsmap[prefix], local))
    # SOAP 1.2 first: the preferred version (SOAP 1.2 part 1 §5.4.7).
    assert resolved == [ns.qn(ns.SOAP12, "Envelope"), ns.qn(ns.SOAP11, "Envelope")]


def test_other_faults_have_no_upgrade_or_not_understood() -> None:
    body, _, _ = render_fault(MalformedXmlError("x"), Envelope.SOAP12, None)
    root = etree.fromstring(body)
    assert root.xpath("//env:Upgrade | //env:NotUnderstood", namespaces=S12) == []


def test_reason_text_is_escaped_not_interpreted() -> None:
    error = InvalidParameterError("parameter 'name' got '<x>&amp;</x>'")
    body, _, _ = render_fault(error, Envelope.SOAP12, None)
    root = etree.fromstring(body)
    assert root.xpath("string(//env:Reason/env:Text)", namespaces=S12) == error.reason
