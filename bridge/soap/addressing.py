"""WS-Addressing 1.0 (2005/08) headers of the inbound edge: read them from a request, compute the answer's.

Part of soap/. Sources: WS-Addressing 1.0 SOAP Binding §2 and §3, csd-wire-format §3.1/§3.2/§8.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from lxml import etree

from bridge import ns


@dataclass(frozen=True, slots=True)
class Addressing:
    """The WS-Addressing message headers the bridge understands on a request.

    `reply_to` defaults to the anonymous address: zeep sends no ReplyTo (engineering-notes §2.2), and
    WS-Addressing Core §3.2 says an absent ReplyTo means anonymous.
    """

    action: str | None = None
    message_id: str | None = None
    reply_to: str | None = ns.WSA_ANONYMOUS
    to: str | None = None


@dataclass
class ResponseAddressing:
    """The WS-Addressing headers of the bridge's answer (csd-wire-format §3.2)."""

    action: str
    message_id: str
    relates_to: str | None
    to: str = ns.WSA_ANONYMOUS


def _is_element(node: etree._Element) -> bool:
    return isinstance(node.tag, str)  # comments, PIs and entities have a non-string tag


def _text(element: etree._Element) -> str | None:
    value = (element.text or "").strip()
    return value or None


def read_addressing(header: etree._Element | None) -> Addressing:
    """Read wsa:Action, MessageID, ReplyTo/Address and To from a SOAP Header (None: no Header).

    Only the first occurrence of each header counts; WS-Addressing allows at most one of each.
    """
    if header is None:
        return Addressing()
    found: dict[str, str | None] = {}
    for block in header:
        if not _is_element(block):
            continue
        name = etree.QName(block)
        if name.namespace != ns.WSA or name.localname in found:
            continue
        if name.localname == "ReplyTo":
            address = block.find(ns.qn(ns.WSA, "Address"))
            found["ReplyTo"] = _text(address) if address is not None else None
        elif name.localname in ("Action", "MessageID", "To"):
            found[name.localname] = _text(block)
    return Addressing(
        action=found.get("Action"),
        message_id=found.get("MessageID"),
        reply_to=found.get("ReplyTo") or ns.WSA_ANONYMOUS,
        to=found.get("To"),
    )


def new_message_id() -> str:
    """A fresh `urn:uuid:` message identifier (WS-Addressing Core §3.1: an absolute IRI, unique)."""
    return f"urn:uuid:{uuid.uuid4()}"


def respond_to(request: Addressing, action: str) -> ResponseAddressing:
    """The answer's headers: `action`, a new MessageID, RelatesTo = the request's MessageID, To anonymous.

    The bridge only answers synchronously on the same connection, so To is always anonymous whatever
    ReplyTo said (csd-wire-format §3.2 and §8.1).
    """
    return ResponseAddressing(
        action=action,
        message_id=new_message_id(),
        relates_to=request.message_id,
        to=ns.WSA_ANONYMOUS,
    )
