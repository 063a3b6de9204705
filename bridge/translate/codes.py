"""Code systems (FHIR system URL ↔ NOS OID) and code tables, as loaded from mappings/codes/*.csv.

translate/: pure mapping engine. Lookups only; the loader in tables.py validates the files.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from bridge.model import CodedType

OID_PREFIX = "urn:oid:"


@dataclass(frozen=True, slots=True)
class CodeSystem:
    """One row of mappings/codes/systems.csv."""

    system: str  # FHIR system URL as found in the data
    oid: str | None  # NOS OID, written as CSD codingScheme / assigningAuthorityName; None: unknown
    name: str
    kind: str  # "code" (a coding system) or "identifier" (an identifier namespace)
    source: str
    confidence: str  # "verified" or "unknown"


@dataclass(frozen=True, slots=True)
class Systems:
    by_url: Mapping[str, CodeSystem]

    def oid(self, system: str) -> str | None:
        row = self.by_url.get(system)
        return row.oid if row else None

    def scheme(self, system: str) -> str:
        """CSD `codingScheme` / `assigningAuthorityName` for a FHIR system: its OID, else the URL itself."""
        return self.oid(system) or system

    def identifier_systems(self, authority: str) -> tuple[str, ...] | None:
        """The FHIR identifier systems an `assigningAuthorityName` names (URL, OID, `urn:oid:` OID or name).

        Several systems come back when the data spells one authority several ways (http/https FINESS).
        None: the authority is unknown to the tables.
        """
        wanted = authority.strip()
        bare = wanted.removeprefix(OID_PREFIX)
        rows = [r for r in self.by_url.values() if r.kind == "identifier"]
        for row in rows:
            if wanted == row.system or (row.oid is not None and bare == row.oid):
                return tuple(r.system for r in rows if r.name == row.name)
        named = tuple(r.system for r in rows if r.name.casefold() == wanted.casefold())
        return named or None


@dataclass(frozen=True, slots=True)
class CodeEntry:
    """One row of a code table: a source code (FHIR v3 code, or a key a transform computes) → CSD code."""

    source_code: str
    coded_type: CodedType
    note: str


@dataclass(frozen=True, slots=True)
class CodeTable:
    name: str
    entries: Mapping[str, CodeEntry]

    def get(self, source_code: str) -> CodedType | None:
        entry = self.entries.get(source_code)
        return entry.coded_type if entry else None
