"""The closed set of named resolvers that fill `{placeholders}` of a FHIR query plan from request parameters.

translate/: pure mapping engine. A table names a resolver; it never computes a value itself.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

from bridge.errors import InvalidParameterError
from bridge.model import RequestParams
from bridge.translate.codes import Systems
from bridge.translate.identity import FhirId, Identities

# IHE stored-function parameter names (docs/csd-wire-format.md §4) and how to tell one is present.
PARAMETERS: Mapping[str, Callable[[RequestParams], bool]] = {
    "id": lambda p: p.entity_id is not None,
    "otherID": lambda p: bool(p.other_ids),
    "primaryName": lambda p: p.primary_name is not None,
    "name": lambda p: p.name is not None,
    "commonName": lambda p: p.common_name is not None,
    "codedType": lambda p: bool(p.coded_types),
    "address": lambda p: bool(p.address_lines),
    "organizations": lambda p: bool(p.organizations),
    "record/@status": lambda p: p.record_status is not None,
    "record/@updated": lambda p: p.record_updated is not None,
    "start": lambda p: p.start is not None,
    "max": lambda p: p.max is not None,
}


def present_parameters(params: RequestParams) -> list[str]:
    """The parameter names a request carries: IHE names first, then its own (`extra`) names."""
    names = [name for name, present in PARAMETERS.items() if present(params)]
    names.extend(name for name, _ in params.extra if name not in names)
    return names


@dataclass(frozen=True, slots=True)
class Lookup:
    """A national identifier to search by: its value and the FHIR systems it may be written under."""

    value: str
    systems: tuple[str, ...]  # () when unknown; several when the data spells the authority several ways

    @property
    def token(self) -> str:
        """FHIR token search value: `system|value` when exactly one system is known, else the bare value
        (`Organization?identifier=<value>` works without system, docs/ror-fhir-api.md §3.1)."""
        return f"{self.systems[0]}|{self.value}" if len(self.systems) == 1 else self.value


def national_identifier(params: RequestParams, identities: Identities, systems: Systems) -> Lookup:
    """The organisation identifier of a request: `id/@entityID` issued by the bridge, else `otherID`."""
    if params.entity_id is not None:
        entity_id = params.entity_id.strip()
        try:
            found = identities.reverse(entity_id)
        except UnicodeDecodeError:
            found = None
        if found is None:
            raise InvalidParameterError(
                f"id/@entityID {entity_id!r} was not issued by this bridge: expected one of "
                + ", ".join(f"{s.prefix}…" for s in identities.schemes.values())
            )
        if isinstance(found, FhirId):
            raise InvalidParameterError(
                f"id/@entityID {entity_id!r} names an entity without national identifier; "
                "send its national identifier in requestParams/otherID instead"
            )
        systems_of_scheme = tuple(s for s in found.scheme.systems if s != "any")
        return Lookup(found.value, systems_of_scheme)
    if len(params.other_ids) > 1:
        raise InvalidParameterError(
            "requestParams carries several otherID; send exactly one national identifier"
        )
    if params.other_ids:
        other = params.other_ids[0]
        code = other.code.strip()
        if not code:
            raise InvalidParameterError("requestParams/otherID/@code is empty")
        authority = other.assigning_authority_name.strip()
        known = systems.identifier_systems(authority) if authority else None
        return Lookup(code, known or ())
    raise InvalidParameterError(
        "missing national identifier: send requestParams/otherID/@code (with @assigningAuthorityName) "
        "or requestParams/id/@entityID"
    )


Resolver = Callable[[RequestParams, Identities, Systems], str]

RESOLVERS: Mapping[str, Resolver] = {
    # `system|value` (or the bare value) for token parameters such as Organization?identifier=
    "identifier": lambda p, i, s: national_identifier(p, i, s).token,
    # the bare value, for string-typed parameters such as HealthcareService?organization.identifier:above=
    "identifier_value": lambda p, i, s: national_identifier(p, i, s).value,
}
