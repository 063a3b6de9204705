"""Tests of bridge.soap.envelope: streamed SOAP 1.2 / 1.1 / bare answers, headers, back-pressure, failures."""

from __future__ import annotations

import asyncio
import copy
import re
import uuid
from collections.abc import AsyncGenerator, AsyncIterator, Iterator, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, cast, overload

import pytest
from lxml import etree

from bridge import ns
from bridge.csd.request import parse_request
from bridge.model import (
    CodedType,
    CsdDocument,
    CsdRequest,
    CsdResponse,
    Envelope,
    Facility,
    Record,
    RequestForm,
    Transaction,
)
from bridge.soap import envelope as envelope_module
from bridge.soap.envelope import (
    CHUNK_BYTES,
    QUEUE_SIZE,
    content_type_for,
    response_action,
    stream_response,
)
from bridge.soap.parser import SoapMessage, parse_message

REQUESTS = Path(__file__).resolve().parent.parent / "fixtures" / "requests"
XSD = Path(__file__).resolve().parents[2] / "xsd" / "csd.xsd"
NS = {"env": ns.SOAP12, "soap": ns.SOAP11, "wsa": ns.WSA, "csd": ns.CSD}
ITI73 = CsdRequest(
    transaction=Transaction.CARE_SERVICES, form=RequestForm.ROOT_URN_2016, function_urn="urn:x"
)
ITI74 = CsdRequest(
    transaction=Transaction.MODIFICATIONS, form=RequestForm.MODIFICATIONS, last_modified=datetime(2025, 1, 1)
)


def _facility(index: int) -> Facility:
    stamp = datetime(2025, 1, 1, tzinfo=UTC)
    return Facility(
        entity_id=f"urn:uuid:{uuid.UUID(int=index)}",
        coded_types=(CodedType("SA07", "1.2.250.1.213.3.3.66", "Centre hospitalier"),),
        primary_name=f"Site {index}",
        record=Record(created=stamp, updated=stamp, status="Active"),
    )


class _Facilities(Sequence[Facility]):
    """Facilities built on demand; counts how many were read, and can fail after `fail_after`."""

    def __init__(self, size: int, fail_after: int | None = None) -> None:
        self._size = size
        self._fail_after = fail_after
        self.read = 0

    def __len__(self) -> int:
        return self._size

    @overload
    def __getitem__(self, index: int) -> Facility: ...
    @overload
    def __getitem__(self, index: slice) -> Sequence[Facility]: ...
    def __getitem__(self, index: int | slice) -> Any:
        if isinstance(index, slice):
            return [self[i] for i in range(*index.indices(self._size))]
        return _facility(index)

    def __iter__(self) -> Iterator[Facility]:
        for index in range(self._size):
            if self._fail_after is not None and index == self._fail_after:
                raise RuntimeError("upstream went away mid-stream")
            self.read += 1
            yield _facility(index)


def _message(name: str, content_type: str = "application/soap+xml") -> SoapMessage:
    return parse_message((REQUESTS / name).read_bytes(), content_type, None)


def _response(message: SoapMessage, document: CsdDocument | None = None) -> CsdResponse:
    return CsdResponse(request=parse_request(message.body), document=document or CsdDocument())


async def _collect(response: CsdResponse, message: SoapMessage, *, encapsulated: bool) -> list[bytes]:
    return [chunk async for chunk in stream_response(response, message, encapsulated=encapsulated)]


async def _drain(stream: AsyncIterator[bytes], into: list[bytes]) -> None:
    """Consume `stream` into `into`, so that what arrived before an exception stays visible."""
    async for chunk in stream:
        into.append(chunk)


def _validate_against_our_schema(element: etree._Element) -> None:
    if not XSD.is_file():
        return  # the schema is another part's file; the structure checks still run
    schema = etree.XMLSchema(etree.parse(str(XSD)))
    tree = etree.ElementTree(copy.deepcopy(element))
    assert schema.validate(tree), schema.error_log


# ------------------------------------------------------------------------------------------------
# Small pure functions


def test_response_action() -> None:
    assert response_action(ITI73) == ns.ACTION_ITI73_RESPONSE
    assert response_action(ITI74) == ns.ACTION_ITI74_RESPONSE


@pytest.mark.parametrize(
    ("envelope", "action", "expected"),
    [
        (Envelope.SOAP12, "urn:a:b", 'application/soap+xml; charset=utf-8; action="urn:a:b"'),
        (Envelope.SOAP12, None, "application/soap+xml; charset=utf-8"),
        (Envelope.SOAP11, "urn:a:b", "text/xml; charset=utf-8"),
        (Envelope.BARE, "urn:a:b", "application/xml; charset=utf-8"),
        (Envelope.BARE, None, "application/xml; charset=utf-8"),
    ],
)
def test_content_type_for(envelope: Envelope, action: str | None, expected: str) -> None:
    assert content_type_for(envelope, action) == expected


# ------------------------------------------------------------------------------------------------
# Whole answers


async def test_soap12_iti73_encapsulated() -> None:
    message = _message("soap12-wsa-mu1-facility-search-2014.xml")
    document = CsdDocument(facilities=[_facility(1), _facility(2)])
    chunks = await _collect(_response(message, document), message, encapsulated=True)
    data = b"".join(chunks)
    assert data.startswith(b"<?xml")
    root = etree.fromstring(data)
    assert root.tag == ns.qn(ns.SOAP12, "Envelope")
    header = root.find(ns.qn(ns.SOAP12, "Header"))
    assert header is not None
    action = header.find(ns.qn(ns.WSA, "Action"))
    assert action is not None
    assert action.text == ns.ACTION_ITI73_RESPONSE
    assert action.get(ns.qn(ns.SOAP12, "mustUnderstand")) in ("1", "true")
    assert root.xpath("string(env:Header/wsa:RelatesTo)", namespaces=NS) == message.addressing.message_id
    # The request's MessageID was not mustUnderstand, so neither is the answer's; wsa:To is never sent.
    assert root.xpath("env:Header/wsa:MessageID/@env:mustUnderstand", namespaces=NS) == []
    assert root.xpath("env:Header/wsa:RelatesTo/@env:mustUnderstand", namespaces=NS) == []
    assert root.xpath("env:Header/wsa:To", namespaces=NS) == []
    message_id = str(root.xpath("string(env:Header/wsa:MessageID)", namespaces=NS))
    uuid.UUID(message_id.removeprefix("urn:uuid:"))
    assert message_id != message.addressing.message_id

    body = root.xpath("env:Body/*", namespaces=NS)
    assert isinstance(body, list)
    assert [element.tag for element in body if isinstance(element, etree._Element)] == [
        ns.qn(ns.CSD, "careServicesResponse")
    ]
    ids = root.xpath(
        "env:Body/csd:careServicesResponse/csd:result/csd:queryResult/csd:facilityDirectory/csd:facility/@entityID",
        namespaces=NS,
    )
    assert ids == [f"urn:uuid:{uuid.UUID(int=1)}", f"urn:uuid:{uuid.UUID(int=2)}"]
    content = body[0]
    assert isinstance(content, etree._Element)
    _validate_against_our_schema(content)


async def test_soap11_iti74() -> None:
    message = _message("soap11-mu-other-actor.xml", "text/xml")
    data = b"".join(await _collect(_response(message), message, encapsulated=True))
    root = etree.fromstring(data)
    assert root.tag == ns.qn(ns.SOAP11, "Envelope")
    # No WS-Addressing in the request: no Header at all in the answer (README "Answer headers").
    assert root.xpath("soap:Header", namespaces=NS) == []
    directories = root.xpath("soap:Body/csd:getModificationsResponse/csd:CSD/*", namespaces=NS)
    assert isinstance(directories, list)
    assert len(directories) == 5  # the four IHE directories and the profile's deviceDirectory
    content = root.xpath("soap:Body/*", namespaces=NS)
    assert isinstance(content, list)
    assert isinstance(content[0], etree._Element)
    _validate_against_our_schema(content[0])


@pytest.mark.parametrize(
    ("encapsulated", "root_tag"),
    [(False, ns.qn(ns.CSD, "CSD")), (True, ns.qn(ns.CSD, "careServicesResponse"))],
)
async def test_bare_request_gets_a_bare_answer(encapsulated: bool, root_tag: str) -> None:
    message = _message("bare-2014-function-urn.xml", "application/xml")
    data = b"".join(await _collect(_response(message), message, encapsulated=encapsulated))
    root = etree.fromstring(data)
    assert root.tag == root_tag
    assert b"Envelope" not in data
    _validate_against_our_schema(root)


async def test_big_document_streams_in_chunks_with_back_pressure() -> None:
    message = _message("soap12-zeep-style-2016.xml")
    facilities = _Facilities(20_000)
    stream = stream_response(
        _response(message, CsdDocument(facilities=facilities)), message, encapsulated=True
    )
    first = await anext(stream)
    await asyncio.sleep(0.05)  # let the producer run as far as the bounded queue allows
    # result/facilityNumber comes before queryResult: one pass over the records counts the unités
    # élémentaires (no element built), then the producer stays within the queue bound instead of building
    # the whole document.
    assert 20_000 <= facilities.read < 2 * 20_000
    total = len(first)
    chunks = 1
    async for chunk in stream:
        total += len(chunk)
        chunks += 1
    assert facilities.read == 2 * 20_000
    assert chunks > QUEUE_SIZE
    assert total > 1_000_000


async def test_the_answer_goes_out_in_gathered_chunks(monkeypatch: pytest.MonkeyPatch) -> None:
    """lxml's many writes (tags, batches of entries) are gathered into chunks of about CHUNK_BYTES (fewer
    hand-overs and HTTP body messages), the bytes the same as handed over one write at a time."""
    message = _message("soap12-zeep-style-2016.xml")
    message_id = re.compile(rb"<wsa:MessageID>[^<]*</wsa:MessageID>")  # a new one per answer

    async def chunks(size: int, gather: int) -> list[bytes]:
        monkeypatch.setattr(envelope_module, "CHUNK_BYTES", gather)
        document = CsdDocument(facilities=[_facility(n) for n in range(size)])
        return await _collect(_response(message, document), message, encapsulated=True)

    for size in (150, 3_000):  # an offer-search's answer (~50 KB), a long one (~1 MB)
        gathered, ungathered = await chunks(size, CHUNK_BYTES), await chunks(size, 1)
        assert message_id.sub(b"", b"".join(gathered)) == message_id.sub(b"", b"".join(ungathered))
        assert all(len(chunk) >= CHUNK_BYTES for chunk in gathered[:-1])
        assert len(gathered) <= len(b"".join(gathered)) // CHUNK_BYTES + 1
    assert len(await chunks(150, CHUNK_BYTES)) == 1 < len(await chunks(150, 1))


async def test_consumer_leaving_early_stops_the_producer() -> None:
    message = _message("soap12-zeep-style-2016.xml")
    facilities = _Facilities(20_000)
    stream = cast(
        AsyncGenerator[bytes, None],
        stream_response(_response(message, CsdDocument(facilities=facilities)), message, encapsulated=True),
    )
    await anext(stream)
    await stream.aclose()
    read = facilities.read
    await asyncio.sleep(0.05)
    # One counting pass (result/facilityNumber), then the writer stopped well before the end.
    assert facilities.read == read < 2 * 20_000
    pending = [task for task in asyncio.all_tasks() if task is not asyncio.current_task()]
    assert pending == []


# ------------------------------------------------------------------------------------------------
# Failures inside the producer


@pytest.mark.parametrize(
    ("fixture", "content_type", "closing"),
    [
        ("soap12-zeep-style-2016.xml", "application/soap+xml", b"Envelope>"),
        ("bare-2014-function-urn.xml", "application/xml", b"CSD>"),
    ],
)
async def test_producer_failure_propagates_and_output_stays_truncated(
    fixture: str, content_type: str, closing: bytes
) -> None:
    message = _message(fixture, content_type)
    facilities = _Facilities(5_000, fail_after=1_000)
    response = _response(message, CsdDocument(facilities=facilities))
    received: list[bytes] = []
    with pytest.raises(RuntimeError, match="mid-stream"):
        await _drain(stream_response(response, message, encapsulated=False), received)
    data = b"".join(received)
    assert data  # the records before the failure did go out
    # lxml closes open elements when their context exits with an exception: none of that may be sent,
    # or the truncated answer would look complete.
    assert not data.rstrip().endswith(closing)
    assert b"</csd:facilityDirectory>" not in data
    with pytest.raises(etree.XMLSyntaxError):
        etree.fromstring(data)


async def test_failure_before_any_record_propagates(monkeypatch: pytest.MonkeyPatch) -> None:
    async def broken_writer(xf: Any, response: CsdResponse, *, encapsulated: bool) -> None:
        async with xf.element(ns.qn(ns.CSD, "CSD")):
            raise ValueError("writer bug")

    monkeypatch.setattr(envelope_module, "write_response_body", broken_writer)
    message = _message("soap12-wsa-mu0-modifications.xml")
    received: list[bytes] = []
    with pytest.raises(ValueError, match="writer bug"):
        await _drain(stream_response(_response(message), message, encapsulated=True), received)
    data = b"".join(received)
    assert b"</env:Envelope>" not in data
    assert b"</csd:CSD>" not in data
