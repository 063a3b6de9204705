"""WS-Addressing 1.0 (2005/08) headers: read them from a request, and THE rule for the answer's (and faults').

Part of soap/. Sources: WS-Addressing 1.0 SOAP Binding §2 and §3, IHE ITI TF-2x Appendix V,
csd-wire-format §3.
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
    # Local names of the WS-Addressing headers the request marked mustUnderstand="1"/"true".
    must_understand: frozenset[str] = frozenset()

    @property
    def engaged(self) -> bool:
        """The request engaged WS-Addressing: it carried wsa:Action or wsa:MessageID."""
        return self.action is not None or self.message_id is not None


@dataclass
class ResponseAddressing:
    """The WS-Addressing headers of an answer (IHE ITI TF-2x Appendix V) and which are mustUnderstand."""

    action: str
    message_id: str
    relates_to: str | None
    must_understand: frozenset[str] = frozenset()


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
    env_ns = etree.QName(header).namespace or ""
    found: dict[str, str | None] = {}
    must_understand: set[str] = set()
    for block in header:
        if not _is_element(block):
            continue
        name = etree.QName(block)
        if name.namespace != ns.WSA or name.localname in found:
            continue
        if (block.get(ns.qn(env_ns, "mustUnderstand")) or "").strip() in ("1", "true"):
            must_understand.add(name.localname)
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
        must_understand=frozenset(must_understand),
    )


def new_message_id() -> str:
    """A fresh `urn:uuid:` message identifier (WS-Addressing Core §3.1: an absolute IRI, unique)."""
    return f"urn:uuid:{uuid.uuid4()}"


def respond_to(request: Addressing | None, action: str) -> ResponseAddressing | None:
    """THE answer-header rule, for answers and faults alike (README "Answer headers").

    No WS-Addressing in the answer unless the request engaged it (wsa:Action or wsa:MessageID): a client
    that did not engage it (.NET ASMX, JAX-WS without the addressing feature) must refuse a header it is
    told it must understand (SOAP 1.1 §4.2.3, SOAP 1.2 part 1 §5.2.3). When engaged: `action`, a new
    MessageID and RelatesTo = the request's MessageID (when it had one), as IHE ITI TF-2x Appendix V shows
    them; no wsa:To (anonymous, the default: the bridge only answers on the same connection). Action and
    MessageID are mustUnderstand only if the request marked its own Action / MessageID so; RelatesTo never.
    """
    if request is None or not request.engaged:
        return None
    return ResponseAddressing(
        action=action,
        message_id=new_message_id(),
        relates_to=request.message_id,
        must_understand=request.must_understand & {"Action", "MessageID"},
    )


def append_answer_headers(header: etree._Element, request: Addressing | None, action: str) -> None:
    """Append to a SOAP `header` (its namespace gives the version) the answer's WS-Addressing headers."""
    answer = respond_to(request, action)
    if answer is None:
        return
    must_understand = ns.qn(etree.QName(header).namespace or "", "mustUnderstand")
    values = (("Action", answer.action), ("MessageID", answer.message_id), ("RelatesTo", answer.relates_to))
    for local, value in values:
        if value is None:
            continue
        # "1" is valid as xs:boolean in both SOAP 1.1 and SOAP 1.2.
        attributes = {must_understand: "1"} if local in answer.must_understand else {}
        etree.SubElement(header, ns.qn(ns.WSA, local), attributes).text = value
