"""The one mapping from the bridge's exceptions to SOAP 1.2 / SOAP 1.1 faults and HTTP statuses.

Part of soap/. Sources: SOAP 1.2 part 1 §5.4 (Fault), §5.4.7-5.4.8 (Upgrade, NotUnderstood), part 2 §7.5.2.2;
SOAP 1.1 §4.4; WS-I Basic Profile 1.1 R1126; WS-Addressing 1.0 SOAP binding §6; csd-wire-format §6.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from lxml import etree

from bridge import ns
from bridge.errors import (
    AccessRefusedError,
    ConfigurationError,
    IncompleteResultError,
    InvalidParameterError,
    MalformedXmlError,
    MappingError,
    MustUnderstandError,
    ReceiverError,
    RequestTimeoutError,
    RequestTooLargeError,
    SenderError,
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
from bridge.soap.addressing import Addressing, new_message_id

FaultCode = Literal["Sender", "Receiver", "MustUnderstand", "VersionMismatch"]

SOAP12_CONTENT_TYPE = "application/soap+xml; charset=utf-8"
SOAP11_CONTENT_TYPE = "text/xml; charset=utf-8"

# WS-I Basic Profile 1.1 R1126: "An INSTANCE MUST use a 500 Internal Server Error HTTP status code if the
# response message is a SOAP Fault". SOAP 1.1 clients (.NET, Axis, Mirth) expect exactly that, so every
# SOAP 1.1 fault, Client ones included, goes out with HTTP 500; the Client/Server distinction stays in
# faultcode.
SOAP11_FAULT_STATUS = 500

# Reason sent for exceptions that are not deliberate bridge errors: their text may hold paths, settings
# or stack details, which must not reach a client.
INTERNAL_REASON = "internal error in the bridge; the request may be retried later"


@dataclass(frozen=True)
class FaultSpec:
    """How one error class is reported: SOAP 1.2 Code, our Subcode (local name in ns.FAULT), HTTP status.

    `http_status` is the SOAP 1.2 status (400 Sender, 500 Receiver); SOAP 1.1 faults always use 500.
    """

    code: FaultCode
    subcode: str
    http_status: int


_SENDER = 400
_RECEIVER = 500

# Most specific class first: fault_spec() walks the exception's MRO and takes the first class listed.
# MustUnderstand and VersionMismatch are SenderErrors, answered 400 like every Sender fault (errors.py
# and architecture decision). Note: SOAP 1.2 part 2 §7.5.2.2 suggests 500 for these two codes; change
# the status here if a client needs it.
_SPECS: dict[type[BaseException], FaultSpec] = {
    RequestTooLargeError: FaultSpec("Sender", "RequestTooLarge", _SENDER),
    RequestTimeoutError: FaultSpec("Sender", "RequestTimeout", _SENDER),
    MalformedXmlError: FaultSpec("Sender", "MalformedXml", _SENDER),
    UnsupportedMediaTypeError: FaultSpec("Sender", "UnsupportedMediaType", _SENDER),
    UnsupportedRequestError: FaultSpec("Sender", "UnsupportedRequest", _SENDER),
    UnknownFunctionError: FaultSpec("Sender", "UnknownStoredFunction", _SENDER),
    InvalidParameterError: FaultSpec("Sender", "InvalidParameter", _SENDER),
    UnknownRegionError: FaultSpec("Sender", "UnknownRegion", _SENDER),
    # SOAP 1.2 part 2 §7.5.2.2 (table 20): only env:Sender maps to 400; env:MustUnderstand and
    # env:VersionMismatch map to 500 like env:Receiver.
    MustUnderstandError: FaultSpec("MustUnderstand", "HeaderNotUnderstood", _RECEIVER),
    VersionMismatchError: FaultSpec("VersionMismatch", "UnsupportedEnvelope", _RECEIVER),
    SenderError: FaultSpec("Sender", "BadRequest", _SENDER),
    UpstreamUnavailableError: FaultSpec("Receiver", "UpstreamUnavailable", _RECEIVER),
    UpstreamStatusError: FaultSpec("Receiver", "UpstreamStatus", _RECEIVER),
    UpstreamProtocolError: FaultSpec("Receiver", "UpstreamProtocol", _RECEIVER),
    IncompleteResultError: FaultSpec("Receiver", "IncompleteResult", _RECEIVER),
    UpstreamError: FaultSpec("Receiver", "UpstreamFailed", _RECEIVER),
    MappingError: FaultSpec("Receiver", "MappingFailed", _RECEIVER),
    ReceiverError: FaultSpec("Receiver", "ReceiverFailed", _RECEIVER),
}
_INTERNAL = FaultSpec("Receiver", "InternalError", _RECEIVER)

_SOAP11_CODES: dict[FaultCode, str] = {
    "Sender": "Client",
    "Receiver": "Server",
    "MustUnderstand": "MustUnderstand",
    "VersionMismatch": "VersionMismatch",
}


def fault_spec(error: BaseException) -> FaultSpec:
    """The fault for `error`; anything that is not a Sender/Receiver bridge error is an InternalError.

    ConfigurationError never reaches a client by design (errors.py); if it does, it is internal too.
    A trust-circle refusal carries its own subcode (the rule) and HTTP status (403, 429).
    """
    if isinstance(error, AccessRefusedError):
        return FaultSpec("Sender", error.subcode, error.http_status)
    for cls in type(error).__mro__:
        spec = _SPECS.get(cls)
        if spec is not None:
            return spec
    return _INTERNAL


# A reason quoting a hostile value is cut: a fault never grows with the request (issue 15).
MAX_REASON_CHARS = 2000


def fault_reason(error: BaseException) -> str:
    """The human-readable reason sent to the client: the error's own for deliberate errors, else generic."""
    if isinstance(error, SenderError | ReceiverError) and not isinstance(error, ConfigurationError):
        reason = error.reason
        if len(reason) > MAX_REASON_CHARS:
            reason = f"{reason[:MAX_REASON_CHARS]}… ({len(reason)} characters, cut)"
        return reason
    return INTERNAL_REASON


def _detail_items(error: BaseException) -> list[tuple[str, str]]:
    """Machine-readable facts a client may act on, as (local name in ns.FAULT, text)."""
    items: list[tuple[str, str]] = []
    if isinstance(error, UnknownFunctionError):
        items.append(("functionUrn", error.urn))
    elif isinstance(error, UnknownRegionError):
        items.append(("region", error.region))
    elif isinstance(error, MustUnderstandError):
        items.append(("header", error.header))
    elif isinstance(error, VersionMismatchError):
        items.append(("envelopeNamespace", error.namespace))
    elif isinstance(error, RequestTooLargeError):
        items.append(("limit", str(error.limit)))
    elif isinstance(error, UpstreamError) and error.status is not None:
        items.append(("upstreamStatus", str(error.status)))
    return items


def _append_detail(parent: etree._Element, tag: str, spec: FaultSpec, error: BaseException) -> None:
    detail = etree.SubElement(parent, tag)
    entry = etree.SubElement(detail, ns.qn(ns.FAULT, "error"), {"subcode": spec.subcode})
    for local, text in _detail_items(error):
        etree.SubElement(entry, ns.qn(ns.FAULT, local)).text = text


def _append_addressing(header: etree._Element, env_ns: str, request: Addressing | None) -> None:
    """WS-Addressing 1.0 SOAP binding §6: fault Action, a new MessageID, RelatesTo the request."""
    action = etree.SubElement(header, ns.qn(ns.WSA, "Action"))
    action.set(ns.qn(env_ns, "mustUnderstand"), "1")  # "1": valid in SOAP 1.1 and 1.2
    action.text = ns.ACTION_FAULT
    etree.SubElement(header, ns.qn(ns.WSA, "MessageID")).text = new_message_id()
    etree.SubElement(header, ns.qn(ns.WSA, "To")).text = ns.WSA_ANONYMOUS
    if request is not None and request.message_id:
        etree.SubElement(header, ns.qn(ns.WSA, "RelatesTo")).text = request.message_id


def _split_clark(name: str) -> tuple[str | None, str]:
    if name.startswith("{") and "}" in name:
        namespace, _, local = name[1:].partition("}")
        return namespace or None, local
    return None, name


def _soap12_fault(error: BaseException, spec: FaultSpec, request: Addressing | None) -> etree._Element:
    env = ns.SOAP12
    envelope = etree.Element(ns.qn(env, "Envelope"), nsmap={"env": env, "wsa": ns.WSA, "f": ns.FAULT})
    header = etree.SubElement(envelope, ns.qn(env, "Header"))
    if isinstance(error, MustUnderstandError):
        # SOAP 1.2 part 1 §5.4.8: one NotUnderstood block per header not understood; its qname
        # attribute is a QName, so its namespace needs a prefix declared in scope.
        namespace, local = _split_clark(error.header)
        if namespace is None:
            etree.SubElement(header, ns.qn(env, "NotUnderstood"), {"qname": local})
        else:
            etree.SubElement(
                header, ns.qn(env, "NotUnderstood"), {"qname": f"nu:{local}"}, nsmap={"nu": namespace}
            )
    elif isinstance(error, VersionMismatchError):
        # SOAP 1.2 part 1 §5.4.7: list the envelopes we support, preferred first.
        upgrade = etree.SubElement(header, ns.qn(env, "Upgrade"))
        etree.SubElement(
            upgrade, ns.qn(env, "SupportedEnvelope"), {"qname": "s12:Envelope"}, nsmap={"s12": ns.SOAP12}
        )
        etree.SubElement(
            upgrade, ns.qn(env, "SupportedEnvelope"), {"qname": "s11:Envelope"}, nsmap={"s11": ns.SOAP11}
        )
    _append_addressing(header, env, request)

    fault = etree.SubElement(etree.SubElement(envelope, ns.qn(env, "Body")), ns.qn(env, "Fault"))
    code = etree.SubElement(fault, ns.qn(env, "Code"))
    etree.SubElement(code, ns.qn(env, "Value")).text = f"env:{spec.code}"
    subcode = etree.SubElement(code, ns.qn(env, "Subcode"))
    etree.SubElement(subcode, ns.qn(env, "Value")).text = f"f:{spec.subcode}"
    reason = etree.SubElement(fault, ns.qn(env, "Reason"))
    text = etree.SubElement(reason, ns.qn(env, "Text"), {ns.qn(ns.XML, "lang"): "en"})
    text.text = fault_reason(error)
    _append_detail(fault, ns.qn(env, "Detail"), spec, error)
    return envelope


def _soap11_fault(error: BaseException, spec: FaultSpec, request: Addressing | None) -> etree._Element:
    env = ns.SOAP11
    envelope = etree.Element(ns.qn(env, "Envelope"), nsmap={"soap": env, "wsa": ns.WSA, "f": ns.FAULT})
    header = etree.SubElement(envelope, ns.qn(env, "Header"))
    _append_addressing(header, env, request)
    fault = etree.SubElement(etree.SubElement(envelope, ns.qn(env, "Body")), ns.qn(env, "Fault"))
    # SOAP 1.1 §4.4: faultcode, faultstring and detail are unqualified; BP 1.1 R1004 prefers a standard
    # code over the "Client.Xxx" dot notation, so our subcode goes in detail.
    etree.SubElement(fault, "faultcode").text = f"soap:{_SOAP11_CODES[spec.code]}"
    faultstring = etree.SubElement(fault, "faultstring", {ns.qn(ns.XML, "lang"): "en"})
    faultstring.text = fault_reason(error)
    _append_detail(fault, "detail", spec, error)
    return envelope


def render_fault(
    error: BaseException, envelope: Envelope, request_addressing: Addressing | None
) -> tuple[bytes, int, str]:
    """The whole fault message: (body, HTTP status, Content-Type). Bare requests get a SOAP 1.2 fault."""
    spec = fault_spec(error)
    if envelope is Envelope.SOAP11:
        root = _soap11_fault(error, spec, request_addressing)
        status, content_type = SOAP11_FAULT_STATUS, SOAP11_CONTENT_TYPE
        if isinstance(error, AccessRefusedError):
            status = spec.http_status  # a refusal is 403/429 whatever the SOAP version (issue 15)
    else:
        root = _soap12_fault(error, spec, request_addressing)
        status, content_type = spec.http_status, SOAP12_CONTENT_TYPE
    body = etree.tostring(root, xml_declaration=True, encoding="utf-8")
    return body, status, content_type
