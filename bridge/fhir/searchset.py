"""A search answer's Bundle as a walk reads it (`Searchset`): matches, includes, total and next link; in an
unordered walk, decoded without the includes the walk has already handed out byte for byte (`Repeats`).

Outbound edge (`bridge/fhir/`), used by the client's walks (client.py). The windows of a split search each
carry their offers' organisations, parents and locations again: at 12 000 offers half the bytes of a
partitioned walk are includes it has already received, unchanged (docs/performance-journal.md, "Collection:
includes received once"). msgspec finds each entry's resource as raw bytes without building it, so a repeat is
never parsed, held or freed; everything else is parsed by orjson, as on every other path.
"""

from __future__ import annotations

import hashlib
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import msgspec
import orjson

from bridge import gc_control
from bridge.errors import UpstreamProtocolError
from bridge.model import Resource

# Includes remembered per unordered walk: SHA-256 digests, ~115 bytes each with their set and queue (11 MiB
# at most, traced). Beyond it the oldest are forgotten and handed out again when they come back: harmless to
# the consumers, which keep every resource once by key (the spools).
REMEMBERED = 100_000
_MISSING = "a Bundle entry lacks resource type or id"


@dataclass(slots=True)
class Searchset:
    """One search answer: what the walk checks (`resource_type`, `type`, `total`, as sent), its entries split
    by `search.mode`, its next link, and the digests of its includes for `Repeats.remember`."""

    resource_type: object
    type: object
    total: object
    next_link: str | None
    matches: list[Resource]
    includes: list[Resource]
    digests: list[bytes] = field(default_factory=list)

    @classmethod
    def from_bundle(cls, bundle: object, url: str) -> Searchset:
        """The searchset of a Bundle already parsed (orjson): nothing left out."""
        if not isinstance(bundle, Mapping):
            raise UpstreamProtocolError("the answer is not a JSON object", request=url)
        matches: list[Resource] = []
        includes: list[Resource] = []
        for entry in bundle.get("entry") or ():
            resource = _checked(entry.get("resource") if isinstance(entry, dict) else None, url)
            (includes if _mode(entry.get("search")) == "include" else matches).append(resource)
        return cls(
            bundle.get("resourceType"),
            bundle.get("type"),
            bundle.get("total"),
            _next(bundle.get("link")),
            matches,
            includes,
        )


class _Entry(msgspec.Struct):
    resource: msgspec.Raw = msgspec.Raw()
    search: Any = None


class _Bundle(msgspec.Struct):
    resourceType: Any = None  # noqa: N815 (FHIR's element names)
    type: Any = None
    total: Any = None
    link: Any = None
    entry: list[_Entry] | None = None


_DECODER = msgspec.json.Decoder(_Bundle)


class Repeats:
    """The includes one unordered walk has handed out (digests of their bytes, the last `limit`), and the
    decoding of its pages without them. A page's includes are remembered only once it is handed out
    (`remember`): a truncated first page, decoded for its total and dates and never handed out, must not
    hide its includes from the windows that follow. Pages are decoded one at a time (the walk's turns)."""

    def __init__(self, limit: int = REMEMBERED) -> None:
        if limit < 1:
            raise ValueError("limit must be >= 1")
        self.limit = limit
        self.skipped = 0  # includes left out, over the walk
        self._seen: set[bytes] = set()
        self._order: deque[bytes] = deque()

    def decode(self, body: bytes, url: str) -> Searchset:
        """The page's searchset without the includes already handed out. Raises msgspec.DecodeError when the
        body is not JSON (a transfer cut short: the caller fetches it again), UpstreamProtocolError when it
        is JSON but not a Bundle of resources."""
        with gc_control.batch():
            try:
                bundle = _DECODER.decode(body)
            except msgspec.ValidationError as error:
                raise UpstreamProtocolError(
                    f"the answer is not a search Bundle: {error}", request=url
                ) from None
            matches: list[Resource] = []
            includes: list[Resource] = []
            digests: list[bytes] = []
            for entry in bundle.entry or ():
                raw = memoryview(entry.resource)
                if _mode(entry.search) == "include":
                    digest = hashlib.sha256(raw).digest()
                    if digest in self._seen:
                        self.skipped += 1
                        continue
                    digests.append(digest)
                    includes.append(_resource(raw, url))
                else:
                    matches.append(_resource(raw, url))
            return Searchset(
                bundle.resourceType, bundle.type, bundle.total, _next(bundle.link), matches, includes, digests
            )

    def remember(self, page: Searchset) -> None:
        """The page's includes are handed out: later pages leave out their exact repeats."""
        for digest in page.digests:
            if digest not in self._seen:
                self._seen.add(digest)
                self._order.append(digest)
                if len(self._order) > self.limit:
                    self._seen.discard(self._order.popleft())


def _resource(raw: memoryview, url: str) -> Resource:
    return _checked(orjson.loads(raw) if raw else None, url)


def _checked(value: object, url: str) -> Resource:
    """`value` if it is a resource (an object with a type and an id), else the protocol error."""
    if not isinstance(value, dict) or "resourceType" not in value or "id" not in value:
        raise UpstreamProtocolError(_MISSING, request=url)
    return value


def _mode(search: object) -> object:
    return search.get("mode", "match") if isinstance(search, dict) else "match"


def _next(links: object) -> str | None:
    for link in links if isinstance(links, list) else ():
        if isinstance(link, dict) and link.get("relation") == "next" and link.get("url"):
            return str(link["url"])
    return None
