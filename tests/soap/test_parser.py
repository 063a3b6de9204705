"""Tests of bridge.soap.parser: body cap, media types, SOAP versions, mustUnderstand, hostile corpus."""

from __future__ import annotations

import select
import socket
import threading
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from lxml import etree

from bridge import ns
from bridge.errors import (
    MalformedXmlError,
    MustUnderstandError,
    RequestTooLargeError,
    SenderError,
    UnsupportedMediaTypeError,
    UnsupportedRequestError,
    VersionMismatchError,
)
from bridge.model import Envelope
from bridge.soap.faults import render_fault
from bridge.soap.parser import _parser, guess_envelope, parse_message, read_body

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"
REQUESTS = FIXTURES / "requests"
HOSTILE = FIXTURES / "hostile"
SOAP12_CT = "application/soap+xml; charset=utf-8"
MARKER = "MARKER-7f3c1e9a-must-never-leak"


def _load(name: str) -> bytes:
    return (REQUESTS / name).read_bytes()


# ------------------------------------------------------------------------------------------------
# read_body


class _Chunks:
    """An async chunk source that records how far it was read and whether it was closed."""

    def __init__(self, data: bytes, size: int) -> None:
        self._parts = [data[i : i + size] for i in range(0, len(data), size)]
        self.pulled = 0
        self.closed = False

    def __aiter__(self) -> AsyncIterator[bytes]:
        return self._generate()

    async def _generate(self) -> AsyncIterator[bytes]:
        try:
            for part in self._parts:
                self.pulled += 1
                yield part
        finally:
            self.closed = True

    @property
    def total(self) -> int:
        return len(self._parts)


async def test_read_body_within_limit() -> None:
    data = _load("bare-2014-function-urn.xml")
    chunks = _Chunks(data, 100)
    assert await read_body(chunks, len(data)) == data
    assert chunks.pulled == chunks.total


async def test_read_body_stops_at_the_first_chunk_over_the_limit() -> None:
    data = (HOSTILE / "oversized.xml").read_bytes()
    chunks = _Chunks(data, 4096)
    with pytest.raises(RequestTooLargeError) as caught:
        await read_body(chunks, 16 * 1024)
    assert caught.value.limit == 16 * 1024
    assert chunks.pulled == 5  # 5 x 4096 > 16384: the rest is never read
    assert chunks.pulled < chunks.total
    assert chunks.closed


async def test_read_body_empty() -> None:
    assert await read_body(_Chunks(b"", 10), 10) == b""


# ------------------------------------------------------------------------------------------------
# Versions, addressing, action


@pytest.mark.parametrize(
    ("content_type", "soap_action", "expected"),
    [
        ("application/soap+xml; charset=utf-8", None, Envelope.SOAP12),
        ('application/soap+xml; action="urn:a"', '"urn:a"', Envelope.SOAP12),
        ("text/xml; charset=utf-8", '""', Envelope.SOAP11),
        ("Text/XML", "urn:a", Envelope.SOAP11),
        ("text/xml", None, Envelope.SOAP12),
        ("application/xml", '"urn:a"', Envelope.SOAP12),
        (None, None, Envelope.SOAP12),
        ("application/json", None, Envelope.SOAP12),
    ],
)
def test_guess_envelope(content_type: str | None, soap_action: str | None, expected: Envelope) -> None:
    assert guess_envelope(content_type, soap_action) is expected


@pytest.mark.parametrize(
    ("name", "envelope", "body_tag", "message_id", "to"),
    [
        (
            "soap12-wsa-mu1-facility-search-2014.xml",
            Envelope.SOAP12,
            ns.qn(ns.CSD, "careServicesRequest"),
            "urn:uuid:5b0c7a2e-3f4d-4c1b-9a6e-0d2f8e1c7b01",
            "https://bridge.example.test/csd/ara",
        ),
        (
            "soap12-wsa-mu0-modifications.xml",
            Envelope.SOAP12,
            ns.qn(ns.CSD, "getModificationsRequest"),
            "urn:uuid:0e9d4c55-7a61-4f0a-b2c3-9f1e6d5a4b32",
            "https://bridge.example.test/csd",
        ),
        (
            "soap12-zeep-style-2016.xml",
            Envelope.SOAP12,
            ns.qn(ns.CSD, "careServicesRequest"),
            "urn:uuid:a1b2c3d4-0000-4000-8000-00000000beef",
            "http://127.0.0.1:8080/csd",
        ),
        (
            "soap11-provider-search-2016.xml",
            Envelope.SOAP11,
            ns.qn(ns.CSD, "careServicesRequest"),
            None,
            None,
        ),
        ("soap11-mu-other-actor.xml", Envelope.SOAP11, ns.qn(ns.CSD, "getModificationsRequest"), None, None),
        (
            "soap12-optional-headers.xml",
            Envelope.SOAP12,
            ns.qn(ns.CSD, "getModificationsRequest"),
            None,
            None,
        ),
        ("bare-2013-function-uuid.xml", Envelope.BARE, ns.qn(ns.CSD, "careServicesRequest"), None, None),
        (
            "bare-modifications-date-only.xml",
            Envelope.BARE,
            ns.qn(ns.CSD, "getModificationsRequest"),
            None,
            None,
        ),
        ("sloppy-no-namespace.xml", Envelope.BARE, "careServicesRequest", None, None),
        (
            "sloppy-unqualified-children.xml",
            Envelope.SOAP12,
            ns.qn(ns.CSD, "careServicesRequest"),
            None,
            None,
        ),
    ],
)
def test_accepted_shapes(
    name: str, envelope: Envelope, body_tag: str, message_id: str | None, to: str | None
) -> None:
    message = parse_message(_load(name), SOAP12_CT, None)
    assert message.envelope is envelope
    assert message.body.tag == body_tag
    assert message.addressing.message_id == message_id
    assert message.addressing.to == to
    # zeep sends no ReplyTo: it defaults to anonymous (WS-Addressing Core §3.2).
    assert message.addressing.reply_to == ns.WSA_ANONYMOUS


def test_reply_to_address_is_read() -> None:
    message = parse_message(_load("soap12-wsa-mu1-facility-search-2014.xml"), SOAP12_CT, None)
    assert message.addressing.reply_to == ns.WSA_ANONYMOUS
    assert message.addressing.action == ns.ACTION_ITI73_REQUEST


def test_comments_are_removed() -> None:
    message = parse_message(_load("soap12-wsa-mu1-facility-search-2014.xml"), SOAP12_CT, None)
    assert message.body.getroottree().xpath("//comment()") == []


@pytest.mark.parametrize(
    ("name", "content_type", "soap_action", "expected"),
    [
        # wsa:Action wins over everything (engineering-notes §2.2).
        (
            "soap12-wsa-mu0-modifications.xml",
            'application/soap+xml; action="urn:ct"',
            '"urn:sa"',
            ns.ACTION_ITI74_REQUEST,
        ),
        # then the Content-Type action parameter (RFC 3902), quoted, among other parameters…
        (
            "sloppy-unqualified-children.xml",
            'application/soap+xml; charset=utf-8; action="urn:ct;x"',
            '"urn:sa"',
            "urn:ct;x",
        ),
        # … or unquoted, with odd case in the parameter name
        ("sloppy-unqualified-children.xml", "application/soap+xml;Action=urn:ct2", None, "urn:ct2"),
        # then SOAPAction, unquoted (SOAP 1.1 §6.1.1)
        ("soap11-provider-search-2016.xml", "text/xml; charset=utf-8", '"urn:sa"', "urn:sa"),
        ("soap11-provider-search-2016.xml", "text/xml", "urn:bare-sa", "urn:bare-sa"),
        # an empty SOAPAction means "no intent given"
        ("soap11-provider-search-2016.xml", "text/xml", '""', None),
        ("bare-2014-function-urn.xml", "application/xml", None, None),
    ],
)
def test_action_precedence(
    name: str, content_type: str, soap_action: str | None, expected: str | None
) -> None:
    assert parse_message(_load(name), content_type, soap_action).action == expected


# ------------------------------------------------------------------------------------------------
# Media types


@pytest.mark.parametrize(
    ("name", "content_type", "envelope"),
    [
        # Content-Type and envelope disagree: tolerated, the envelope decides (legacy clients are sloppy).
        ("soap12-wsa-mu0-modifications.xml", "text/xml; charset=utf-8", Envelope.SOAP12),
        ("soap11-provider-search-2016.xml", "application/soap+xml", Envelope.SOAP11),
        ("soap12-wsa-mu0-modifications.xml", "application/xml", Envelope.SOAP12),
        ("bare-2014-function-urn.xml", "text/xml", Envelope.BARE),
        ("bare-2014-function-urn.xml", "application/csd+xml", Envelope.BARE),
        # No or vague Content-Type, but an XML body.
        ("bare-2014-function-urn.xml", None, Envelope.BARE),
        ("bare-2014-function-urn.xml", "text/plain; charset=utf-8", Envelope.BARE),
        ("soap12-zeep-style-2016.xml", "application/octet-stream", Envelope.SOAP12),
    ],
)
def test_tolerated_media_types(name: str, content_type: str | None, envelope: Envelope) -> None:
    assert parse_message(_load(name), content_type, None).envelope is envelope


@pytest.mark.parametrize(
    ("body", "content_type"),
    [
        (_load("bare-2014-function-urn.xml"), "application/json"),
        (b'{"resourceType": "Bundle"}', "application/json; charset=utf-8"),
        (b'{"a": 1}', "application/fhir+json"),
        (b"hello", "text/plain"),
        (b"hello", None),
        (b"a=1&b=2", "application/x-www-form-urlencoded"),
        (_load("bare-2014-function-urn.xml"), "multipart/related; type=application/xop+xml"),
    ],
)
def test_refused_media_types(body: bytes, content_type: str | None) -> None:
    with pytest.raises(UnsupportedMediaTypeError):
        parse_message(body, content_type, None)


@pytest.mark.parametrize("body", [b"", b"   ", b"not xml", b"<a><b></a>", b"<a>&undefined;</a>"])
def test_xml_media_type_with_broken_body_is_malformed(body: bytes) -> None:
    with pytest.raises(MalformedXmlError, match="not well-formed"):
        parse_message(body, "application/soap+xml", None)


def test_utf16_body_is_parsed() -> None:
    text = _load("bare-modifications-date-only.xml").decode().replace('encoding="UTF-8"', 'encoding="UTF-16"')
    message = parse_message(text.encode("utf-16"), "text/plain", None)
    assert message.envelope is Envelope.BARE


# ------------------------------------------------------------------------------------------------
# Refusals of structure and headers


@pytest.mark.parametrize(
    ("name", "error", "words"),
    [
        ("soap12-empty-body.xml", UnsupportedRequestError, "Body is empty"),
        ("soap12-no-body.xml", UnsupportedRequestError, "without a Body"),
        ("not-csd.xml", UnsupportedRequestError, "{http://hl7.org/fhir}Bundle"),
        ("soap-unknown-version.xml", VersionMismatchError, "http://www.w3.org/2001/12/soap-envelope"),
        ("soap12-mu-unknown-header.xml", MustUnderstandError, "{urn:example:security}Ticket"),
        ("soap12-mu-role-next.xml", MustUnderstandError, "{urn:example:extras}Routing"),
        ("soap11-mu-unknown-header.xml", MustUnderstandError, "{urn:example:legacy-session}Session"),
    ],
)
def test_structural_refusals(name: str, error: type[SenderError], words: str) -> None:
    with pytest.raises(error) as caught:
        parse_message(_load(name), SOAP12_CT, None)
    assert words in caught.value.reason


def test_must_understand_error_carries_the_header_qname() -> None:
    with pytest.raises(MustUnderstandError) as caught:
        parse_message(_load("soap12-mu-unknown-header.xml"), SOAP12_CT, None)
    assert caught.value.header == "{urn:example:security}Ticket"


def test_envelope_without_namespace_is_a_version_mismatch() -> None:
    with pytest.raises(VersionMismatchError) as caught:
        parse_message(b"<Envelope><Body/></Envelope>", "text/xml", None)
    assert caught.value.namespace == ""


def test_must_understand_on_a_soap11_block_uses_the_soap11_attribute() -> None:
    # A SOAP 1.2 mustUnderstand attribute means nothing inside a SOAP 1.1 envelope.
    body = _load("soap11-mu-unknown-header.xml").replace(
        b"soapenv:mustUnderstand", b'xmlns:s12="http://www.w3.org/2003/05/soap-envelope" s12:mustUnderstand'
    )
    assert parse_message(body, "text/xml", '""').envelope is Envelope.SOAP11


def test_one_parser_per_thread() -> None:
    mine = _parser()
    assert _parser() is mine
    seen: list[etree.XMLParser] = []
    thread = threading.Thread(target=lambda: seen.append(_parser()))
    thread.start()
    thread.join()
    assert seen
    assert seen[0] is not mine


# ------------------------------------------------------------------------------------------------
# Hostile corpus (engineering-notes §3.1 and §3.4)


def test_libxml2_is_recent_enough_for_the_amplification_limit() -> None:
    # libxml2 >= 2.12 enforces a maximum entity amplification even with huge_tree; the lxml wheel bundles
    # its libxml2, so an lxml upgrade or a source build can change this (engineering-notes §3.1).
    assert etree.LIBXML_VERSION >= (2, 12, 0)


@pytest.fixture
def listener() -> Iterator[socket.socket]:
    """A 127.0.0.1 listener that no parse may ever connect to."""
    server = socket.create_server(("127.0.0.1", 0))
    server.setblocking(False)
    yield server
    server.close()


def _connections(server: socket.socket) -> int:
    """How many connections reached the listener (libxml2 would connect synchronously during a parse)."""
    count = 0
    while select.select([server], [], [], 0.05)[0]:
        connection, _ = server.accept()
        connection.close()
        count += 1
    return count


def test_the_listener_check_detects_a_connection(listener: socket.socket) -> None:
    # Guard against a check that cannot fail.
    with socket.create_connection(listener.getsockname()):
        pass
    assert _connections(listener) == 1


@pytest.fixture
def marker_file(tmp_path: Path) -> Path:
    path = tmp_path / "secret.txt"
    path.write_text(MARKER)
    return path


HOSTILE_CASES = [
    ("xxe-file.xml", MalformedXmlError, "DTD not allowed"),
    ("xxe-http.xml", MalformedXmlError, "DTD not allowed"),
    ("external-dtd.xml", MalformedXmlError, "DTD not allowed"),
    ("parameter-entity.xml", MalformedXmlError, "DTD not allowed"),
    ("internal-entity.xml", MalformedXmlError, "DTD not allowed"),
    ("billion-laughs.xml", MalformedXmlError, "amplification"),
    ("quadratic-blowup.xml", MalformedXmlError, "amplification"),
    ("depth-5000.xml", MalformedXmlError, "depth"),
    ("dtd-only.xml", MalformedXmlError, "DTD not allowed"),
]


def _hostile(name: str, marker_file: Path, port: int) -> bytes:
    raw = (HOSTILE / name).read_bytes()
    return raw.replace(b"@@MARKER_FILE@@", str(marker_file).encode()).replace(b"@@PORT@@", str(port).encode())


def _fault_parts(body: bytes) -> tuple[str, str, str]:
    """(Code/Value, Subcode/Value, Reason/Text) of a SOAP 1.2 fault, QNames in Clark notation."""
    root = etree.fromstring(body)
    env = {"env": ns.SOAP12}

    def qname(xpath: str) -> str:
        found = root.xpath(xpath, namespaces=env)
        assert isinstance(found, list)
        element = found[0]
        assert isinstance(element, etree._Element)
        prefix, _, local = (element.text or "").partition(":")
        return ns.qn(element.nsmap[prefix], local)

    reason = root.xpath("string(/env:Envelope/env:Body/env:Fault/env:Reason/env:Text)", namespaces=env)
    return (
        qname("/env:Envelope/env:Body/env:Fault/env:Code/env:Value"),
        qname("/env:Envelope/env:Body/env:Fault/env:Code/env:Subcode/env:Value"),
        str(reason),
    )


@pytest.mark.parametrize(("name", "error", "words"), HOSTILE_CASES)
def test_hostile_payload_is_refused_with_a_sender_fault(
    name: str, error: type[SenderError], words: str, marker_file: Path, listener: socket.socket
) -> None:
    payload = _hostile(name, marker_file, listener.getsockname()[1])
    started = time.perf_counter()
    with pytest.raises(error) as caught:
        parse_message(payload, SOAP12_CT, None)
    elapsed = time.perf_counter() - started
    assert words in caught.value.reason
    assert elapsed < 0.5  # engineering-notes §3.1 measured ~1 ms; generous for slow CI

    body, status, content_type = render_fault(caught.value, Envelope.SOAP12, None)
    code, subcode, reason = _fault_parts(body)
    assert (code, subcode, status) == (ns.qn(ns.SOAP12, "Sender"), ns.qn(ns.FAULT, "MalformedXml"), 400)
    assert reason == caught.value.reason
    assert content_type.startswith("application/soap+xml")

    assert MARKER not in caught.value.reason
    assert MARKER.encode() not in body
    assert _connections(listener) == 0


@pytest.mark.parametrize("name", ["xxe-file.xml", "xxe-http.xml", "billion-laughs.xml"])
def test_hostile_payload_also_refused_as_soap11_and_bare(
    name: str, marker_file: Path, listener: socket.socket
) -> None:
    payload = _hostile(name, marker_file, listener.getsockname()[1])
    for content_type, soap_action in (("text/xml", '"urn:x"'), ("application/xml", None), (None, None)):
        with pytest.raises(MalformedXmlError) as caught:
            parse_message(payload, content_type, soap_action)
        envelope = guess_envelope(content_type, soap_action)
        body, status, _ = render_fault(caught.value, envelope, None)
        assert MARKER.encode() not in body
        assert status in (400, 500)
    assert _connections(listener) == 0


async def test_oversized_body_is_refused_with_a_sender_fault() -> None:
    data = (HOSTILE / "oversized.xml").read_bytes()
    with pytest.raises(RequestTooLargeError) as caught:
        await read_body(_Chunks(data, 8192), 64 * 1024)
    body, status, _ = render_fault(caught.value, Envelope.SOAP12, None)
    code, subcode, reason = _fault_parts(body)
    assert (code, subcode, status) == (ns.qn(ns.SOAP12, "Sender"), ns.qn(ns.FAULT, "RequestTooLarge"), 400)
    assert "65536" in reason
