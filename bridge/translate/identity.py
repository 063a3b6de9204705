"""Stable, reversible CSD entityIDs derived from national identifiers (mappings/identities.yaml).

translate/: pure mapping engine. `derive` picks the first identifier scheme of a resource type that the
resource carries; `reverse` turns an entityID the bridge issued back into that identifier.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, unquote

_UNRESERVED = re.compile(r"[A-Za-z0-9._~-]*")

ANY_SYSTEM = "any"


@dataclass(frozen=True, slots=True)
class IdentityScheme:
    """`<prefix><percent-encoded identifier value>` for identifiers of the given systems."""

    name: str
    prefix: str
    systems: tuple[str, ...]  # (ANY_SYSTEM,) accepts an identifier of any system, or none
    note: str
    # When not empty, only identifiers whose type.coding carries one of these codes: profiles that slice
    # identifiers on type rather than system (RORLocation: idLocation = TRE_R354 #25).
    types: tuple[str, ...] = ()

    def accepts(self, identifier: Mapping[str, Any]) -> bool:
        system = identifier.get("system")
        if not (ANY_SYSTEM in self.systems or (isinstance(system, str) and system in self.systems)):
            return False
        if not self.types:
            return True
        codings = (identifier.get("type") or {}).get("coding") or ()
        return any(isinstance(c, dict) and c.get("code") in self.types for c in codings)


@dataclass(frozen=True, slots=True)
class NationalIdentifier:
    """An identifier recovered from an entityID: the scheme it came through, and its value."""

    scheme: IdentityScheme
    value: str


@dataclass(frozen=True, slots=True)
class FhirId:
    """An entityID that fell back on the FHIR logical id (the resource had no national identifier)."""

    resource_type: str
    id: str


@dataclass(frozen=True, slots=True)
class Identities:
    schemes: Mapping[str, IdentityScheme]
    order: Mapping[str, tuple[str, ...]]  # resource type -> scheme names, highest priority first
    fallback_prefix: str

    def derive(self, resource: Mapping[str, Any]) -> tuple[str, bool]:
        """The entityID of a resource, and False when it fell back on the FHIR logical id."""
        resource_type = str(resource.get("resourceType", ""))
        identifiers = [i for i in resource.get("identifier") or () if isinstance(i, dict)]
        for name in self.order.get(resource_type, ()):
            scheme = self.schemes[name]
            for identifier in identifiers:
                value = identifier.get("value")
                if isinstance(value, str) and value and scheme.accepts(identifier):
                    return scheme.prefix + encode(value), True
        return self.fallback(resource_type, str(resource.get("id", ""))), False

    def fallback(self, resource_type: str, logical_id: str) -> str:
        return f"{self.fallback_prefix}{resource_type}/{encode(logical_id)}"

    def reverse(self, entity_id: str) -> NationalIdentifier | FhirId | None:
        """The identifier an entityID was derived from; None when the bridge did not issue it."""
        for scheme in self.schemes.values():
            if entity_id.startswith(scheme.prefix) and len(entity_id) > len(scheme.prefix):
                return NationalIdentifier(scheme, unquote(entity_id[len(scheme.prefix) :], errors="strict"))
        if entity_id.startswith(self.fallback_prefix):
            resource_type, slash, logical_id = entity_id[len(self.fallback_prefix) :].partition("/")
            if slash and resource_type and logical_id:
                return FhirId(resource_type, unquote(logical_id, errors="strict"))
        return None


def encode(value: str) -> str:
    """Percent-encode (UTF-8) every character outside the RFC 3986 unreserved set `A-Za-z0-9-._~`."""
    if _UNRESERVED.fullmatch(value):
        return value  # the usual case (national identifiers, numeric ids), without quote's byte loop
    return quote(value, safe="", encoding="utf-8", errors="strict")
