"""The one mapping from the bridge's exceptions to SOAP 1.2 / SOAP 1.1 faults and HTTP statuses (SOAP answers
and the plain HTTP answers of GET /extraction alike), decided by the exception's class, never its text.

Part of soap/. Sources: SOAP 1.2 part 1 §5.4 (Fault), §5.4.7-5.4.8 (Upgrade, NotUnderstood), part 2 §7.5.2.2;
SOAP 1.1 §4.4; WS-I Basic Profile 1.1 R1126; WS-Addressing 1.0 SOAP binding §6; csd-wire-format §6.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from lxml import etree

from bridge import ns
from bridge.correlation import current_request_id
from bridge.errors import (
    AccessRefusedError,
    ConfigurationError,
    ExtractionBusyError,
    IncompleteResultError,
    InvalidParameterError,
    MalformedXmlError,
    MappingError,
    MustUnderstandError,
    ReceiverError,
    RequestTimeoutError,
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
    UpstreamTimeoutError,
    UpstreamUnavailableError,
    VersionMismatchError,
)
from bridge.model import Envelope
from bridge.soap.addressing import Addressing, append_answer_headers

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
    """How one error class is reported: SOAP 1.2 Code, our Subcode (local name in ns.FAULT), HTTP status, and
    the `@code` of the ROR v2.4 profile's `erreur` (the bridge's own numbers: the profile publishes none;
    1xx the request (112: refused by the trust circle), 2xx the national API or the mapping, 500 a defect).

    `http_status` is the SOAP 1.2 status (400 Sender, 500 Receiver); SOAP 1.1 faults always use 500.
    `plain_status` is the status of a plain HTTP answer that is not SOAP (GET /extraction refused before its
    first byte): 500 means an internal error, whose reason is not told.
    """

    code: FaultCode
    subcode: str
    http_status: int
    number: int
    plain_status: int = field(default=500, compare=False)


_SENDER = 400
_RECEIVER = 500

# Most specific class first: fault_spec() walks the exception's MRO and takes the first class listed.
# MustUnderstand and VersionMismatch are SenderErrors, answered 400 like every Sender fault (errors.py
# and architecture decision). Note: SOAP 1.2 part 2 §7.5.2.2 suggests 500 for these two codes; change
# the status here if a client needs it.
_SPECS: dict[type[BaseException], FaultSpec] = {
    RequestTooLargeError: FaultSpec("Sender", "RequestTooLarge", _SENDER, 103),
    MalformedXmlError: FaultSpec("Sender", "MalformedXml", _SENDER, 101),
    UnsupportedMediaTypeError: FaultSpec("Sender", "UnsupportedMediaType", _SENDER, 102),
    UnsupportedRequestError: FaultSpec("Sender", "UnsupportedRequest", _SENDER, 104),
    UnknownFunctionError: FaultSpec("Sender", "UnknownStoredFunction", _SENDER, 105),
    InvalidParameterError: FaultSpec("Sender", "InvalidParameter", _SENDER, 106, plain_status=400),
    UnknownEntityError: FaultSpec("Sender", "UnknownEntity", _SENDER, 110),
    UnknownRegionError: FaultSpec("Sender", "UnknownRegion", _SENDER, 107, plain_status=404),
    RequestTimeoutError: FaultSpec("Sender", "RequestTimeout", _SENDER, 111),
    # SOAP 1.2 part 2 §7.5.2.2 (table 20): only env:Sender maps to 400; env:MustUnderstand and
    # env:VersionMismatch map to 500 like env:Receiver.
    MustUnderstandError: FaultSpec("MustUnderstand", "HeaderNotUnderstood", _RECEIVER, 108),
    VersionMismatchError: FaultSpec("VersionMismatch", "UnsupportedEnvelope", _RECEIVER, 109),
    SenderError: FaultSpec("Sender", "BadRequest", _SENDER, 100),
    # A timeout or a passed deadline is a gateway timeout; refused connections and an open breaker are an
    # unavailable upstream (the same SOAP fault).
    UpstreamTimeoutError: FaultSpec("Receiver", "UpstreamUnavailable", _RECEIVER, 201, plain_status=504),
    UpstreamUnavailableError: FaultSpec("Receiver", "UpstreamUnavailable", _RECEIVER, 201, plain_status=503),
    UpstreamStatusError: FaultSpec("Receiver", "UpstreamStatus", _RECEIVER, 202, plain_status=502),
    UpstreamProtocolError: FaultSpec("Receiver", "UpstreamProtocol", _RECEIVER, 203, plain_status=502),
    IncompleteResultError: FaultSpec("Receiver", "IncompleteResult", _RECEIVER, 204, plain_status=502),
    UpstreamError: FaultSpec("Receiver", "UpstreamFailed", _RECEIVER, 200, plain_status=502),
    MappingError: FaultSpec("Receiver", "MappingFailed", _RECEIVER, 205),
    # Only GET /extraction limits how many run at once: a busy bridge (Retry-After).
    ExtractionBusyError: FaultSpec("Receiver", "Busy", _RECEIVER, 206, plain_status=503),
    ReceiverError: FaultSpec("Receiver", "ReceiverFailed", _RECEIVER, 299),
}
_INTERNAL = FaultSpec("Receiver", "InternalError", _RECEIVER, 500)

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
        return FaultSpec("Sender", error.subcode, error.http_status, 112)
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
    elif isinstance(error, UnknownEntityError):
        items.append(("identifier", error.identifier))
    elif isinstance(error, MustUnderstandError):
        items.append(("header", error.header))
    elif isinstance(error, VersionMismatchError):
        items.append(("envelopeNamespace", error.namespace))
    elif isinstance(error, RequestTooLargeError):
        items.append(("limit", str(error.limit)))
    elif isinstance(error, UpstreamError) and error.status is not None:
        items.append(("upstreamStatus", str(error.status)))
    return items


def _append_detail(
    parent: etree._Element, tag: str, spec: FaultSpec, error: BaseException, profile: bool
) -> None:
    detail = etree.SubElement(parent, tag)
    if profile:
        # The ROR v2.4 WSDL's fault message: element `erreur` (urn:asip:ror:2015) of type csd:error, the
        # reason as text, @code the number, @message the subcode.
        erreur = etree.SubElement(
            detail,
            ns.qn(ns.ROR, "erreur"),
            {"code": str(spec.number), "message": spec.subcode},
            nsmap={"ror": ns.ROR},
        )
        erreur.text = fault_reason(error)
    entry = etree.SubElement(detail, ns.qn(ns.FAULT, "error"), {"subcode": spec.subcode})
    for local, text in _detail_items(error):
        etree.SubElement(entry, ns.qn(ns.FAULT, local)).text = text
    request_id = current_request_id()
    if request_id is not None:  # the id of the bridge's log lines and of its calls to the national API
        etree.SubElement(entry, ns.qn(ns.FAULT, "requestId")).text = request_id


def _nsmap(prefix: str, env_ns: str, request: Addressing | None) -> dict[str, str]:
    """The fault Envelope's prefixes: wsa only when the answer carries WS-Addressing headers."""
    nsmap = {prefix: env_ns, "f": ns.FAULT}
    if request is not None and request.engaged:
        nsmap["wsa"] = ns.WSA
    return nsmap


def _split_clark(name: str) -> tuple[str | None, str]:
    if name.startswith("{") and "}" in name:
        namespace, _, local = name[1:].partition("}")
        return namespace or None, local
    return None, name


def _soap12_fault(
    error: BaseException, spec: FaultSpec, request: Addressing | None, profile: bool
) -> etree._Element:
    env = ns.SOAP12
    envelope = etree.Element(ns.qn(env, "Envelope"), nsmap=_nsmap("env", env, request))
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
    # WS-Addressing 1.0 SOAP binding §6 (fault Action), only if the request engaged WS-Addressing.
    append_answer_headers(header, request, ns.ACTION_FAULT)
    if not len(header):
        envelope.remove(header)

    fault = etree.SubElement(etree.SubElement(envelope, ns.qn(env, "Body")), ns.qn(env, "Fault"))
    code = etree.SubElement(fault, ns.qn(env, "Code"))
    etree.SubElement(code, ns.qn(env, "Value")).text = f"env:{spec.code}"
    subcode = etree.SubElement(code, ns.qn(env, "Subcode"))
    etree.SubElement(subcode, ns.qn(env, "Value")).text = f"f:{spec.subcode}"
    reason = etree.SubElement(fault, ns.qn(env, "Reason"))
    text = etree.SubElement(reason, ns.qn(env, "Text"), {ns.qn(ns.XML, "lang"): "en"})
    text.text = fault_reason(error)
    _append_detail(fault, ns.qn(env, "Detail"), spec, error, profile)
    return envelope


def _soap11_fault(
    error: BaseException, spec: FaultSpec, request: Addressing | None, profile: bool
) -> etree._Element:
    env = ns.SOAP11
    envelope = etree.Element(ns.qn(env, "Envelope"), nsmap=_nsmap("soap", env, request))
    header = etree.SubElement(envelope, ns.qn(env, "Header"))
    append_answer_headers(header, request, ns.ACTION_FAULT)
    if not len(header):
        envelope.remove(header)
    fault = etree.SubElement(etree.SubElement(envelope, ns.qn(env, "Body")), ns.qn(env, "Fault"))
    # SOAP 1.1 §4.4: faultcode, faultstring and detail are unqualified; BP 1.1 R1004 prefers a standard
    # code over the "Client.Xxx" dot notation, so our subcode goes in detail.
    etree.SubElement(fault, "faultcode").text = f"soap:{_SOAP11_CODES[spec.code]}"
    faultstring = etree.SubElement(fault, "faultstring", {ns.qn(ns.XML, "lang"): "en"})
    faultstring.text = fault_reason(error)
    _append_detail(fault, "detail", spec, error, profile)
    return envelope


def render_fault(
    error: BaseException,
    envelope: Envelope,
    request_addressing: Addressing | None,
    *,
    profile: bool = False,
) -> tuple[bytes, int, str]:
    """The whole fault message: (body, HTTP status, Content-Type). Bare requests get a SOAP 1.2 fault.

    `profile`: the request was one of the ROR v2.4 profile's (parser.is_profile_request); the detail starts
    with the profile's `erreur`.
    """
    spec = fault_spec(error)
    if envelope is Envelope.SOAP11:
        root = _soap11_fault(error, spec, request_addressing, profile)
        status, content_type = SOAP11_FAULT_STATUS, SOAP11_CONTENT_TYPE
        if isinstance(error, AccessRefusedError):
            status = spec.http_status  # a refusal is 403/429 whatever the SOAP version (issue 15)
    else:
        root = _soap12_fault(error, spec, request_addressing, profile)
        status, content_type = spec.http_status, SOAP12_CONTENT_TYPE
    body = etree.tostring(root, xml_declaration=True, encoding="utf-8")
    return body, status, content_type
