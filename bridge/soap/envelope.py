"""Streams a CSD answer in the request's envelope (SOAP 1.2, SOAP 1.1 or bare), with the answer headers.

Part of soap/ (the outbound half of the edge). Pattern: engineering-notes §2.4 (xmlfile → bounded queue);
headers: csd-wire-format §3.2 and §8.1; the Body content itself is written by bridge.csd.writer.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from types import TracebackType
from typing import Any

from lxml import etree

from bridge import ns
from bridge.csd.writer import write_response_body
from bridge.model import CsdRequest, CsdResponse, Envelope, Transaction
from bridge.soap.addressing import append_answer_headers
from bridge.soap.parser import SoapMessage

# Chunks waiting between the XML producer and the HTTP consumer: enough to keep both busy, small enough
# that memory stays flat whatever the document size (engineering-notes §2.4: maxsize 8, measured).
QUEUE_SIZE = 8
# Bytes the producer gathers before handing a chunk over: lxml's writes (a start tag, a batch of entries, an
# end tag) come in a few dozen pieces per answer, each a queue hand-over, a task switch and an HTTP body
# message; gathered, an offer-search's answer of ~400 KB goes out in ~7 chunks instead of ~55 (README,
# Performance). Memory stays bounded: QUEUE_SIZE chunks of about this size, plus the one being gathered.
CHUNK_BYTES = 64 * 1024


def response_action(request: CsdRequest) -> str:
    """The wsa:Action of the answer (csd-wire-format §2, "SOAP / WS-Addressing actions")."""
    if request.transaction is Transaction.MODIFICATIONS:
        return ns.ACTION_ITI74_RESPONSE
    if request.transaction is Transaction.ROR_NOTIF:
        # The ROR v2.4 WSDL declares no wsam:Action: WS-Addressing's default action of its output.
        return ns.ACTION_ROR_NOTIF_RESPONSE
    return ns.ACTION_ITI73_RESPONSE


def content_type_for(envelope: Envelope, action: str | None) -> str:
    """Content-Type of a successful answer: SOAP 1.2 carries the action parameter (RFC 3902)."""
    if envelope is Envelope.SOAP12:
        if action:
            return f'application/soap+xml; charset=utf-8; action="{action}"'
        return "application/soap+xml; charset=utf-8"
    if envelope is Envelope.SOAP11:
        return "text/xml; charset=utf-8"
    return "application/xml; charset=utf-8"


@dataclass(frozen=True, slots=True)
class _End:
    """Last queue item: the producer finished, cleanly (error None) or not."""

    error: BaseException | None = None


class _QueueSink:
    """The file-like object xmlfile writes to: hands each chunk to the bounded queue.

    Once poisoned (the producer failed), it drops everything: lxml writes the end tags of open elements
    when their context exits with an exception, and those would make a truncated document look complete.
    """

    def __init__(self, queue: asyncio.Queue[bytes | _End]) -> None:
        self._queue = queue
        self.poisoned = False
        self._pending: list[bytes] = []
        self._size = 0

    async def write(self, data: bytes) -> None:
        if data and not self.poisoned:
            self._pending.append(bytes(data))
            self._size += len(data)
            if self._size >= CHUNK_BYTES:
                await self.flush()

    async def flush(self) -> None:
        """Hands over what was gathered (written before any failure): at the end, and when a chunk is full."""
        if self._pending:
            chunk = b"".join(self._pending)
            self._pending.clear()
            self._size = 0
            await self._queue.put(chunk)


class _GuardedElement:
    """Wraps an `xf.element(...)` context: poisons the sink before lxml closes the element on error."""

    def __init__(self, inner: Any, sink: _QueueSink) -> None:
        self._inner = inner
        self._sink = sink

    async def __aenter__(self) -> Any:
        return await self._inner.__aenter__()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> Any:
        if exc_type is not None:
            self._sink.poisoned = True
        return await self._inner.__aexit__(exc_type, exc, tb)


class _GuardedWriter:
    """An async xmlfile whose `element()` contexts are guarded; everything else is delegated."""

    def __init__(self, xf: Any, sink: _QueueSink) -> None:
        self._xf = xf
        self._sink = sink

    def element(self, *args: Any, **kwargs: Any) -> _GuardedElement:
        return _GuardedElement(self._xf.element(*args, **kwargs), self._sink)

    async def write_raw(self, data: bytes) -> None:
        """Bytes already serialised (a pre-written answer, CsdResponse.directories), after what lxml holds."""
        await self._xf.flush()
        await self._sink.write(data)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._xf, name)


def _soap_header(env_ns: str, prefix: str, message: SoapMessage, action: str) -> etree._Element | None:
    """The answer's Header, or None when it would be empty (the rule: addressing.respond_to)."""
    # Same prefixes as the enclosing Envelope, so the written header reads `env:Header`, not `ns0:Header`.
    header = etree.Element(ns.qn(env_ns, "Header"), nsmap={prefix: env_ns, "wsa": ns.WSA})
    append_answer_headers(header, message.addressing, action)
    return header if len(header) else None


async def _write_message(xf: Any, response: CsdResponse, message: SoapMessage, *, encapsulated: bool) -> None:
    if message.envelope is Envelope.BARE:
        # Bare request, bare answer (OpenInfoMan behaviour, engineering-notes §2.2).
        await write_response_body(xf, response, encapsulated=encapsulated)
        return
    env_ns = ns.SOAP12 if message.envelope is Envelope.SOAP12 else ns.SOAP11
    prefix = "env" if message.envelope is Envelope.SOAP12 else "soap"
    nsmap = {prefix: env_ns, "csd": ns.CSD}
    if message.addressing.engaged:
        nsmap["wsa"] = ns.WSA
    async with xf.element(ns.qn(env_ns, "Envelope"), nsmap=nsmap):
        header = _soap_header(env_ns, prefix, message, response_action(response.request))
        if header is not None:
            await xf.write(header)
        async with xf.element(ns.qn(env_ns, "Body")):
            await write_response_body(xf, response, encapsulated=encapsulated)


async def _produce(
    sink: _QueueSink,
    queue: asyncio.Queue[bytes | _End],
    response: CsdResponse,
    message: SoapMessage,
    encapsulated: bool,
) -> None:
    try:
        async with etree.xmlfile(sink, encoding="utf-8") as raw:
            xf = _GuardedWriter(raw, sink)
            try:
                await xf.write_declaration()
                await _write_message(xf, response, message, encapsulated=encapsulated)
            except BaseException:
                sink.poisoned = True
                raise
    except asyncio.CancelledError:
        raise  # the consumer went away: nobody is left to tell
    except BaseException as exc:
        await sink.flush()  # the bytes written before the failure, as they would have been sent ungathered
        await queue.put(_End(exc))
        return
    await sink.flush()
    await queue.put(_End())


async def stream_response(
    response: CsdResponse, message: SoapMessage, *, encapsulated: bool
) -> AsyncIterator[bytes]:
    """Stream the answer to `message` as UTF-8 chunks, never holding the whole document in memory.

    An exception in the writer propagates out of this generator after the bytes already produced, and
    nothing written after the failure is sent: the HTTP server must abort the connection, so the client
    sees a truncated, non-well-formed document rather than a complete-looking one (engineering-notes §2.4).
    """
    queue: asyncio.Queue[bytes | _End] = asyncio.Queue(maxsize=QUEUE_SIZE)
    sink = _QueueSink(queue)
    producer = asyncio.create_task(_produce(sink, queue, response, message, encapsulated))
    try:
        while True:
            item = await queue.get()
            if isinstance(item, _End):
                if item.error is not None:
                    raise item.error
                return
            yield item
    finally:
        if not producer.done():
            producer.cancel()
        # Wait for the producer to unwind (no "task destroyed but pending"); its outcome is known already.
        await asyncio.wait({producer})
        if response.directories is not None:
            response.directories.close()  # a temporary file: closing it deletes it
