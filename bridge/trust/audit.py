"""The audit log (BRIDGE_AUDIT_LOG): one JSON line per transaction, and the record each request fills in.

Part of trust/. The record of the running request lives in a context variable: the gate opens it, the
routes (app.py) note the function, parameters and entities, the upstream hooks (trust/upstream.py) note the
national API calls. Identifiers are kept, free-text search terms are hashed; nothing else personal.
"""

from __future__ import annotations

import hashlib
import os
import signal
import sys
import threading
import time
from collections.abc import Iterable, Mapping
from contextvars import ContextVar
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import orjson

from bridge.model import CsdDocument, CsdRequest, RequestParams
from bridge.trust.allowlist import Client

MAX_UPSTREAM_CALLS = 50  # listed per line; `upstream_calls` keeps the full count

# Parameter names (lower case) whose values are identifiers, codes, dates or paging: kept as sent.
# Every other value (names, address lines, free text) is hashed.
_IDENTIFYING = ("id", "finess", "siret", "rpps", "code", "type", "date", "modified", "status", "start", "max")


def hashed(text: str) -> str:
    """A free-text term as `sha256:` + the first 16 hex digits of its SHA-256 (correlation, not content)."""
    return "sha256:" + hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


def _value(name: str, value: str) -> str:
    lower = name.lower()
    return value if any(word in lower for word in _IDENTIFYING) else hashed(value)


def request_parameters(params: RequestParams) -> dict[str, Any]:
    """The identifying parameters of a stored-function call, free-text terms hashed."""
    out: dict[str, Any] = {}
    if params.entity_id:
        out["id"] = params.entity_id
    if params.other_ids:
        out["otherID"] = [f"{o.assigning_authority_name}|{o.code}" for o in params.other_ids]
    if params.coded_types:
        out["codedType"] = [f"{c.coding_scheme}|{c.code}" for c in params.coded_types]
    if params.organizations:
        out["organizations"] = list(params.organizations)
    for name in ("primary_name", "name", "common_name"):
        text = getattr(params, name)
        if text:
            out[name] = hashed(text)
    if params.address_lines:
        out["addressLine"] = [hashed(line.value) for line in params.address_lines]
    if params.record_status:
        out["recordStatus"] = params.record_status
    if params.record_updated is not None:
        out["recordUpdated"] = params.record_updated.isoformat()
    if params.start is not None:
        out["start"] = params.start
    if params.max is not None:
        out["max"] = params.max
    for name, value in params.extra:
        out.setdefault(name, []).append(_value(name, value))
    return out


def query_parameters(items: Iterable[tuple[str, str]]) -> dict[str, list[str]]:
    """The query string of an extraction, by the same rule."""
    out: dict[str, list[str]] = {}
    for name, value in items:
        out.setdefault(name[:64], []).append(_value(name, value[:256]))
    return out


@dataclass
class Transaction:
    """What one request did, filled in as it runs and written as one line when it ends."""

    route: str
    method: str
    remote: str | None
    started: float = field(default_factory=time.monotonic)
    time: str = field(default_factory=lambda: datetime.now(UTC).isoformat(timespec="milliseconds"))
    client: str | None = None
    fingerprint: str | None = None
    subject: str | None = None
    certificate_source: str | None = None
    profile: int | None = None
    function: str | None = None
    region: str | None = None
    params: dict[str, Any] | None = None
    entities: dict[str, int] | None = None
    upstream: list[list[Any]] = field(default_factory=list)
    upstream_count: int = 0
    status: int | None = None
    outcome: str | None = None  # answered, fault:<Subcode>, refused:<Subcode>, http:<status>, aborted
    notes: list[str] = field(default_factory=list)
    admitted: Client | None = None  # the allow-list entry the request was admitted as

    def line(self) -> bytes:
        record: dict[str, Any] = {
            "time": self.time,
            "client": self.client,
            "fingerprint": self.fingerprint,
            "subject": self.subject,
            "certificate": self.certificate_source,
            "profile": self.profile,
            "remote": self.remote,
            "method": self.method,
            "route": self.route,
            "function": self.function,
            "region": self.region,
            "params": self.params,
            "entities": self.entities,
            "upstream": self.upstream,
            "upstream_calls": self.upstream_count,
            "status": self.status,
            "outcome": self.outcome,
            "duration_ms": round((time.monotonic() - self.started) * 1000, 1),
        }
        if self.notes:
            record["notes"] = self.notes
        return orjson.dumps(record) + b"\n"


CURRENT: ContextVar[Transaction | None] = ContextVar("bridge_audit_transaction", default=None)


def current() -> Transaction | None:
    return CURRENT.get()


def note_request(request: CsdRequest, function: str) -> None:
    """The stored function (or `modifications`) and the identifying parameters of a CSD request."""
    transaction = CURRENT.get()
    if transaction is not None:
        transaction.function = function
        transaction.region = request.region
        transaction.params = request_parameters(request.params)
        if request.last_modified is not None:
            transaction.params["lastModified"] = request.last_modified.isoformat()


def note_document(document: CsdDocument) -> None:
    """Entities returned per directory (answers built in memory; spooled answers are counted by the spool)."""
    note_entities(
        {
            "organizations": len(document.organizations),
            "services": len(document.services),
            "facilities": len(document.facilities),
            "providers": len(document.providers),
        }
    )


def note_entities(counts: Mapping[str, int]) -> None:
    transaction = CURRENT.get()
    if transaction is not None:
        transaction.entities = dict(counts)


def note_outcome(outcome: str) -> None:
    transaction = CURRENT.get()
    if transaction is not None:
        transaction.outcome = outcome


class AuditLog:
    """Appends lines to a file (reopened after SIGHUP, for logrotate) or to standard error (`-`).

    One `os.write` per line on an O_APPEND descriptor: lines of several worker processes do not interleave.
    """

    def __init__(self, target: str) -> None:
        self.target = target
        self._lock = threading.Lock()
        self._reopen = False
        self._fd: int | None = None
        if target != "-":
            self._fd = self._open()

    def _open(self) -> int:
        return os.open(self.target, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o640)

    def reopen(self) -> None:
        """Ask for the file to be reopened before the next line (safe from a signal handler)."""
        self._reopen = True

    def install_sighup(self) -> bool:
        """Reopen on SIGHUP; False when signals cannot be set here (not the main thread, or no SIGHUP)."""
        if self._fd is None or not hasattr(signal, "SIGHUP"):
            return False
        try:
            signal.signal(signal.SIGHUP, lambda _signum, _frame: self.reopen())
        except ValueError:  # not the main thread of the main interpreter
            return False
        return True

    def write(self, transaction: Transaction) -> None:
        line = transaction.line()
        with self._lock:
            if self._fd is None:
                sys.stderr.buffer.write(line)
                sys.stderr.flush()
                return
            if self._reopen:
                self._reopen = False
                os.close(self._fd)
                self._fd = self._open()
            os.write(self._fd, line)

    def close(self) -> None:
        with self._lock:
            if self._fd is not None:
                os.close(self._fd)
                self._fd = None
                self.target = "-"
