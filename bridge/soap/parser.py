"""Safe parsing of what arrives on POST /csd: byte cap, hostile-XML-proof parser, SOAP version, headers.

Part of soap/ (the inbound edge). Policy: engineering-notes §2.2 and §3.3; envelope rules: SOAP 1.2 part 1
§5 and SOAP 1.1 §4; accepted shapes: architecture.md §2 "Accepted request shapes on the CSD endpoints".
"""

from __future__ import annotations

import threading
from collections.abc import AsyncIterable
from dataclasses import dataclass
from typing import Any

from lxml import etree

from bridge import ns
from bridge.errors import (
    MalformedXmlError,
    MustUnderstandError,
    RequestTooLargeError,
    UnsupportedMediaTypeError,
    UnsupportedRequestError,
    VersionMismatchError,
)
from bridge.model import Envelope
from bridge.soap.addressing import Addressing, read_addressing

# SOAP 1.2 part 1 §5.2.2: the roles a header block may target; only these (or no role) target the
# ultimate receiver, which the bridge is. "none" and any other URI are not for us.
SOAP12_ROLE_NEXT = f"{ns.SOAP12}/role/next"
SOAP12_ROLE_ULTIMATE_RECEIVER = f"{ns.SOAP12}/role/ultimateReceiver"
# SOAP 1.1 §4.2.2: the special actor URI "next"; no actor means the ultimate receiver.
SOAP11_ACTOR_NEXT = "http://schemas.xmlsoap.org/soap/actor/next"

# WS-Addressing 1.0 message addressing properties the bridge processes (or safely ignores, being the
# ultimate receiver answering synchronously): accepted whatever their mustUnderstand (csd-wire-format §3.1).
_WSA_UNDERSTOOD = frozenset({"Action", "MessageID", "ReplyTo", "To", "From", "FaultTo", "RelatesTo"})

_CSD_REQUESTS = frozenset({"careServicesRequest", "getModificationsRequest"})

# Media types that are XML whatever the envelope inside (legacy clients mix them up: csd-wire-format §2,
# OIM accepts application/xml, text/xml and application/soap+xml).
_XML_MEDIA_TYPES = frozenset({"application/soap+xml", "text/xml", "application/xml"})
# Media types that can never carry an XML request: refused before parsing.
_NON_XML_PREFIXES = ("multipart/", "image/", "audio/", "video/", "font/")
_NON_XML_TYPES = frozenset(
    {"application/json", "application/x-www-form-urlencoded", "application/pdf", "application/zip"}
)

_BOMS = (b"\xef\xbb\xbf", b"\xff\xfe", b"\xfe\xff")


@dataclass(frozen=True, slots=True)
class SoapMessage:
    """A parsed request: its envelope version, WS-Addressing headers and the element to dispatch on."""

    envelope: Envelope
    addressing: Addressing
    body: etree._Element  # the Body's first element child, or the document root for a bare request
    action: str | None  # wsa:Action, else the Content-Type action parameter, else SOAPAction


async def read_body(chunks: AsyncIterable[bytes], limit: int) -> bytes:
    """Read the request body, refusing it as soon as it exceeds `limit` bytes (the rest is never read)."""
    buffer = bytearray()
    iterator = chunks.__aiter__()
    try:
        async for chunk in iterator:
            buffer += chunk
            if len(buffer) > limit:
                raise RequestTooLargeError(limit)
    finally:
        # Stop the producer (e.g. an ASGI receive loop wrapped in an async generator) right away.
        aclose = getattr(iterator, "aclose", None)
        if aclose is not None:
            await aclose()
    return bytes(buffer)


def _split_content_type(content_type: str | None) -> tuple[str, dict[str, str]]:
    """Media type (lower case) and parameters (names lower case, values unquoted) of a Content-Type."""
    if not content_type:
        return "", {}
    parts: list[str] = []
    current: list[str] = []
    quoted = False
    escaped = False
    for char in content_type:
        if escaped:
            current.append(char)
            escaped = False
        elif quoted and char == "\\":
            escaped = True
        elif char == '"':
            quoted = not quoted
            current.append(char)
        elif char == ";" and not quoted:
            parts.append("".join(current))
            current = []
        else:
            current.append(char)
    parts.append("".join(current))
    media_type = parts[0].strip().lower()
    params: dict[str, str] = {}
    for part in parts[1:]:
        name, sep, value = part.partition("=")
        if not sep:
            continue
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] == '"':
            value = value[1:-1]
        params.setdefault(name.strip().lower(), value)
    return media_type, params


def _unquote(value: str | None) -> str | None:
    """SOAPAction is a quoted URI, possibly `""` (SOAP 1.1 §6.1.1); clients also send it unquoted."""
    if value is None:
        return None
    value = value.strip()
    if len(value) >= 2 and value[0] == value[-1] == '"':
        value = value[1:-1].strip()
    return value or None


_PROFILE_ACTIONS = frozenset({ns.ACTION_ROR_SEARCH, ns.ACTION_ROR_UPDATE})


def is_profile_action(content_type: str | None, soap_action: str | None) -> bool:
    """Whether the HTTP headers name one of the ROR v2.4 profile's soapActions (the Content-Type action
    parameter, RFC 3902, or SOAPAction): its faults carry the profile's `erreur` even when the body cannot
    be read."""
    _, params = _split_content_type(content_type)
    return bool({(params.get("action") or "").strip(), _unquote(soap_action) or ""} & _PROFILE_ACTIONS)


def guess_envelope(content_type: str | None, soap_action: str | None) -> Envelope:
    """The version to answer a fault in when the body cannot be parsed.

    application/soap+xml is SOAP 1.2 (RFC 3902); text/xml with a SOAPAction header is SOAP 1.1
    (SOAP 1.1 §6.1.1); anything else gets SOAP 1.2, the version of CSD (csd-wire-format §2).
    """
    media_type, _ = _split_content_type(content_type)
    if media_type == "text/xml" and soap_action is not None:
        return Envelope.SOAP11
    return Envelope.SOAP12


_local = threading.local()


def _parser() -> etree.XMLParser:
    """The inbound parser of this thread: lxml parsers are not thread-safe (engineering-notes §2.4)."""
    parser: etree.XMLParser | None = getattr(_local, "parser", None)
    if parser is None:
        # engineering-notes §3.3: no entity expansion, no network, no DTD loading, libxml2's default
        # limits (depth 256, text nodes 10 MB, entity amplification), comments and PIs dropped.
        parser = etree.XMLParser(
            resolve_entities=False,
            no_network=True,
            load_dtd=False,
            huge_tree=False,
            remove_comments=True,
            remove_pis=True,
        )
        _local.parser = parser
    return parser


def _looks_like_xml(body: bytes) -> bool:
    for bom in _BOMS:
        if body.startswith(bom):
            return True
    return body.lstrip().startswith(b"<")


def _check_media_type(media_type: str, body: bytes) -> None:
    """Refuse clearly non-XML media types; tolerate XML ones whatever the envelope version inside."""
    if media_type in _XML_MEDIA_TYPES or media_type.endswith("+xml"):
        return
    if (
        media_type in _NON_XML_TYPES
        or media_type.endswith("+json")
        or media_type.startswith(_NON_XML_PREFIXES)
    ):
        raise UnsupportedMediaTypeError(f"media type {media_type!r} cannot carry a CSD request")
    # text/plain, application/octet-stream, no Content-Type at all: sloppy legacy clients; accept the
    # body only if it looks like XML.
    if not _looks_like_xml(body):
        shown = media_type or "(no Content-Type)"
        raise UnsupportedMediaTypeError(f"media type {shown} with a body that is not XML")


def _has_doctype_text(body: bytes) -> bool:
    return any(
        marker in body
        for marker in (b"<!DOCTYPE", "<!DOCTYPE".encode("utf-16-le"), "<!DOCTYPE".encode("utf-16-be"))
    )


def _parse_xml(body: bytes) -> etree._Element:
    try:
        root = etree.fromstring(body, _parser())
    except etree.XMLSyntaxError as exc:
        message = exc.msg or str(exc)
        if _has_doctype_text(body):
            # Only to word the error better; the authoritative check is the docinfo test below.
            raise MalformedXmlError(f"DTD not allowed in a request ({message})") from None
        raise MalformedXmlError(f"request is not well-formed XML: {message}") from None
    # SOAP 1.2 part 1 §5 and SOAP 1.1 §3: a message must not contain a DTD; refusing every DOCTYPE also
    # rules out internal entities that resolve_entities=False would leave unexpanded.
    docinfo: Any = root.getroottree().docinfo  # lxml-stubs 0.5 lacks DocInfo.doctype
    if docinfo.doctype:
        raise MalformedXmlError("DTD not allowed in a request")
    return root


def _xs_boolean_true(value: str | None) -> bool:
    return value is not None and value.strip() in ("1", "true")


def _targets_us(block: etree._Element, envelope: Envelope) -> bool:
    if envelope is Envelope.SOAP12:
        role = block.get(ns.qn(ns.SOAP12, "role"))
        return role is None or role.strip() in ("", SOAP12_ROLE_NEXT, SOAP12_ROLE_ULTIMATE_RECEIVER)
    actor = block.get(ns.qn(ns.SOAP11, "actor"))
    return actor is None or actor.strip() in ("", SOAP11_ACTOR_NEXT)


def _check_must_understand(header: etree._Element, envelope: Envelope) -> None:
    """SOAP 1.2 part 1 §5.2.3 / SOAP 1.1 §4.2.3: a mandatory header block we do not process is a fault."""
    env_ns = ns.SOAP12 if envelope is Envelope.SOAP12 else ns.SOAP11
    for block in _elements(header):
        name = etree.QName(block)
        if name.namespace == ns.WSA and name.localname in _WSA_UNDERSTOOD:
            continue
        if _xs_boolean_true(block.get(ns.qn(env_ns, "mustUnderstand"))) and _targets_us(block, envelope):
            raise MustUnderstandError(block.tag)


def _elements(parent: etree._Element) -> list[etree._Element]:
    """Element children only (comments and PIs are removed by the parser, entities cannot occur)."""
    return [child for child in parent if isinstance(child.tag, str)]


def _soap_parts(root: etree._Element, env_ns: str) -> tuple[etree._Element | None, etree._Element]:
    """(Header or None, Body's one element child) of an Envelope.

    SOAP 1.2 part 1 §5.1 / SOAP 1.1 §4: an optional Header, then exactly one Body, nothing else; the CSD
    request is the Body's only child (one request per message: a second one would go unanswered).
    """
    header = root.find(ns.qn(env_ns, "Header"))
    body = root.find(ns.qn(env_ns, "Body"))
    if body is None:
        raise UnsupportedRequestError("SOAP Envelope without a Body")
    parts = _elements(root)
    expected = [header, body] if header is not None else [body]
    if parts != expected:
        names = ", ".join(etree.QName(part).localname for part in parts)
        raise UnsupportedRequestError(
            f"a SOAP Envelope holds an optional Header then one Body, nothing else; this one holds {names}"
        )
    children = _elements(body)
    if not children:
        raise UnsupportedRequestError("SOAP Body is empty: expected a CSD request")
    if len(children) > 1:
        raise UnsupportedRequestError(
            f"SOAP Body holds {len(children)} elements: send one CSD request per message"
        )
    return header, children[0]


def parse_message(body: bytes, content_type: str | None, soap_action: str | None) -> SoapMessage:
    """Parse a request body safely and find what to dispatch on; raise a SenderError subclass otherwise."""
    media_type, params = _split_content_type(content_type)
    _check_media_type(media_type, body)
    root = _parse_xml(body)
    name = etree.QName(root)

    # Version by the root element, whatever Content-Type said (engineering-notes §2.2).
    if name.localname == "Envelope" and name.namespace in (ns.SOAP12, ns.SOAP11):
        envelope = Envelope.SOAP12 if name.namespace == ns.SOAP12 else Envelope.SOAP11
        header, content = _soap_parts(root, name.namespace)
        if header is not None:
            _check_must_understand(header, envelope)
        addressing = read_addressing(header)
    elif name.localname == "Envelope":
        # SOAP 1.2 part 1 §5.4.7: any other Envelope namespace is a VersionMismatch.
        raise VersionMismatchError(name.namespace or "")
    elif (name.localname in _CSD_REQUESTS and name.namespace in (ns.CSD, None)) or (
        name.localname == ns.ROR_NOTIF_REQUEST and name.namespace == ns.ROR
    ):
        # OpenInfoMan-style bare request (architecture.md §2); sloppy clients drop the namespace.
        envelope, content, addressing = Envelope.BARE, root, read_addressing(None)
    else:
        raise UnsupportedRequestError(
            f"root element {root.tag} is neither a SOAP Envelope nor a CSD careServicesRequest or "
            "getModificationsRequest"
        )

    # engineering-notes §2.2: wsa:Action > Content-Type action (RFC 3902) > SOAPAction; informative only,
    # dispatch is on the Body content.
    action = addressing.action or (params.get("action") or "").strip() or _unquote(soap_action)
    return SoapMessage(envelope=envelope, addressing=addressing, body=content, action=action or None)


_PROFILE_READS = frozenset({ns.ROR_READ_ESTABLISHMENT, ns.ROR_READ_INTERNAL_ORGANIZATION})


def is_profile_request(body: etree._Element) -> bool:
    """Whether the request is one of the official ROR v2.4 profile's (the TR-Notif operation, or a
    careServicesRequest calling its reading function): its faults then carry the profile's `erreur`."""
    name = etree.QName(body)
    if name.namespace == ns.ROR:
        return True
    for function in _elements(body):
        if etree.QName(function).localname != "function":
            continue
        if (function.get("urn") or "").strip() == ns.ROR_READ_URN:
            return True
        children = _elements(function)
        return bool(children) and etree.QName(children[0]).localname in _PROFILE_READS
    return False
