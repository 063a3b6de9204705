"""The request id that follows one transaction from the legacy client to the national API and back.

Leaf module. The HTTP edge opens a `Correlation` per request (the SOAP message's `wsa:MessageID`, else a
generated id); the log formatter, the national API client (`X-Request-ID`) and SOAP faults read it.
"""

from __future__ import annotations

import re
import uuid
from contextvars import ContextVar
from dataclasses import dataclass

HEADER = "X-Request-ID"
# An id received from a front end (nginx `$request_id`) or a client is kept only when it is short and plain:
# it is echoed in headers and logs.
_ACCEPTABLE = re.compile(r"^[A-Za-z0-9._:@/+=-]{1,200}$")


@dataclass(slots=True)
class Correlation:
    """Mutable on purpose: the edge replaces a generated id by the message's `wsa:MessageID` once parsed."""

    request_id: str


_current: ContextVar[Correlation | None] = ContextVar("bridge_correlation", default=None)


def new_request_id() -> str:
    return f"urn:uuid:{uuid.uuid4()}"


def acceptable(value: str | None) -> bool:
    """Whether an id received from outside may be reused as is."""
    return value is not None and _ACCEPTABLE.match(value) is not None


def begin(received: str | None = None) -> Correlation:
    """Opens the correlation of the current request (`received` when acceptable, else a new id)."""
    correlation = Correlation(received if received is not None and acceptable(received) else new_request_id())
    _current.set(correlation)
    return correlation


def adopt(message_id: str | None) -> None:
    """The request's `wsa:MessageID` becomes its request id (when present and acceptable)."""
    correlation = _current.get()
    if correlation is not None and message_id is not None and acceptable(message_id):
        correlation.request_id = message_id


def current_request_id() -> str | None:
    correlation = _current.get()
    return correlation.request_id if correlation is not None else None
