"""What the bridge filters and pages itself, on CSD records, where the national API cannot answer a request.

translate/: pure mapping engine. IHE semantics (docs/csd-wire-format.md §4): case-insensitive contains, AND of
the parameters present, 1-based `start`, `max < 0` = no maximum. functions.yaml names, per function, the
directory these apply to (`result`), the parameters checked here (`bridge_filters`) and a `post` step.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from datetime import tzinfo
from typing import TYPE_CHECKING, Any, TypeVar

from bridge.errors import InvalidParameterError
from bridge.model import (
    Address,
    CodedType,
    CsdDocument,
    Directory,
    Facility,
    Organization,
    OtherID,
    Provider,
    RequestParams,
    SearchResult,
    Service,
)
from bridge.translate.codes import OID_PREFIX, Systems
from bridge.translate.resolvers import PARAMETERS

if TYPE_CHECKING:
    from bridge.translate.tables import FunctionSpec

Entity = Organization | Service | Facility | Provider
T = TypeVar("T")


class _Context:
    """What a filter needs besides the record: the request, the code systems and the request time zone."""

    __slots__ = ("params", "systems", "timezone")

    def __init__(self, params: RequestParams, systems: Systems, timezone: tzinfo) -> None:
        self.params = params
        self.systems = systems
        self.timezone = timezone


Filter = Callable[[Entity, _Context], bool]


def _contains(haystack: str | None, needle: str) -> bool:
    return haystack is not None and needle.strip().casefold() in haystack.casefold()


def _names(entity: Entity) -> tuple[str, ...]:
    if isinstance(entity, Organization | Facility):
        return (entity.primary_name, *entity.other_names)
    return ()


def _primary_name(entity: Entity, ctx: _Context) -> bool:
    wanted = ctx.params.primary_name or ""
    return isinstance(entity, Organization | Facility) and _contains(entity.primary_name, wanted)


def _name(entity: Entity, ctx: _Context) -> bool:
    # IHE: primaryName or any otherName contains the value (csd-wire-format §4).
    wanted = ctx.params.name or ""
    return any(_contains(name, wanted) for name in _names(entity))


def _common_name(entity: Entity, ctx: _Context) -> bool:
    wanted = ctx.params.common_name or ""
    if not isinstance(entity, Provider):
        return False
    return any(_contains(common, wanted) for name in entity.demographic.names for common in name.common_names)


def _scheme_key(scheme: str, systems: Systems) -> str:
    """One spelling per coding scheme: its NOS OID when the tables know it, else the scheme as sent."""
    bare = scheme.strip().removeprefix(OID_PREFIX)
    return (systems.oid(scheme.strip()) or bare).casefold()


def _coded_types(entity: Entity) -> tuple[CodedType, ...]:
    if isinstance(entity, Service):
        return (entity.coded_type,)
    return entity.coded_types


def _coded_type(entity: Entity, ctx: _Context) -> bool:
    # IHE: codedType/@code equals the value within that scheme, case-insensitive.
    wanted = ctx.params.coded_types[0]
    scheme = _scheme_key(wanted.coding_scheme, ctx.systems)
    return any(
        c.code.casefold() == wanted.code.strip().casefold()
        and _scheme_key(c.coding_scheme, ctx.systems) == scheme
        for c in _coded_types(entity)
    )


def _authorities(authority: str, systems: Systems) -> set[str]:
    spelled = {authority.strip().casefold(), authority.strip().removeprefix(OID_PREFIX).casefold()}
    for system in systems.identifier_systems(authority) or ():
        spelled.add(system.casefold())
        oid = systems.oid(system)
        if oid:
            spelled.add(oid.casefold())
    return spelled


def _other_ids(entity: Entity) -> tuple[OtherID, ...]:
    return () if isinstance(entity, Service) else entity.other_ids


def _other_id(entity: Entity, ctx: _Context) -> bool:
    # IHE: the entity has an otherID with that authority and code; an empty authority matches any authority.
    wanted = ctx.params.other_ids[0]
    authorities = (
        _authorities(wanted.assigning_authority_name, ctx.systems)
        if wanted.assigning_authority_name.strip()
        else None
    )
    return any(
        other.code == wanted.code.strip()
        and (authorities is None or _authorities(other.assigning_authority_name, ctx.systems) & authorities)
        for other in _other_ids(entity)
    )


def _addresses(entity: Entity) -> tuple[Address, ...]:
    if isinstance(entity, Organization | Facility):
        return entity.addresses
    if isinstance(entity, Provider):
        return entity.demographic.addresses
    return ()


def _address(entity: Entity, ctx: _Context) -> bool:
    # IHE: the addressLine with that @component contains the value, case-insensitive; every line must match.
    return all(
        any(
            (line.component or "") == (wanted.component or "") and _contains(line.value, wanted.value)
            for address in _addresses(entity)
            for line in address.lines
        )
        for wanted in ctx.params.address_lines
    )


def _organizations(entity: Entity, ctx: _Context) -> bool:
    # cp-926: the facility is linked to one of the organizations sent.
    wanted = {entity_id.strip() for entity_id in ctx.params.organizations}
    return isinstance(entity, Facility) and any(org.entity_id in wanted for org in entity.organizations)


def _status(entity: Entity, ctx: _Context) -> bool:
    return entity.record.status.casefold() == (ctx.params.record_status or "").strip().casefold()


def _updated(entity: Entity, ctx: _Context) -> bool:
    since = ctx.params.record_updated
    if since is None:
        return True
    if since.tzinfo is None:  # functions.yaml defaults.request_timezone [INFER]
        since = since.replace(tzinfo=ctx.timezone)
    return entity.record.updated >= since


def _entity_id(entity: Entity, ctx: _Context) -> bool:
    return entity.entity_id == (ctx.params.entity_id or "").strip()


# Parameter name (functions.yaml) → the IHE check on one record (csd-wire-format §4).
FILTERS: Mapping[str, Filter] = {
    "id": _entity_id,
    "otherID": _other_id,
    "primaryName": _primary_name,
    "name": _name,
    "commonName": _common_name,
    "codedType": _coded_type,
    "address": _address,
    "organizations": _organizations,
    "record/@status": _status,
    "record/@updated": _updated,
}


_FIELDS: Mapping[Directory, str] = {
    Directory.ORGANIZATION: "organizations",
    Directory.SERVICE: "services",
    Directory.FACILITY: "facilities",
    Directory.PROVIDER: "providers",
}


def page(records: Sequence[T], start: int | None, maximum: int | None) -> list[T]:
    """IHE paging: `start` is 1-based (default 1), `max < 0` or absent means no maximum."""
    first = 1 if start is None else start
    if first < 1:
        raise InvalidParameterError(f"start must be 1 or more (got {first})")
    chosen = list(records[first - 1 :])
    if maximum is not None and maximum >= 0:
        chosen = chosen[:maximum]
    return chosen


def select_records(
    spec: FunctionSpec, params: RequestParams, document: CsdDocument, systems: Systems, timezone: tzinfo
) -> CsdDocument:
    """The records a stored function returns: bridge filters (AND), then start/max. (A delta function's
    answer, post step included, is written from its spool: bridge/pipeline/changes.py.)"""
    if spec.result is None:
        return document
    present = [name for name in spec.bridge_filters if _present(name, params)]
    if not present:
        # page_upstream() already paged the matches; a match may give several records (a lieu matched by
        # facility-search is answered by its UEs, the ROR v2.4 profile's placement): `max` still caps them
        if params.max is None or params.max < 0:
            return document
        field = _FIELDS[spec.result]
        return replace(document, **{field: list(getattr(document, field))[: params.max]})
    ctx = _Context(params, systems, timezone)
    field = _FIELDS[spec.result]
    records: Sequence[Entity] = getattr(document, field)
    kept = [r for r in records if all(FILTERS[name](r, ctx) for name in present)]
    changes: dict[str, Any] = {field: page(kept, params.start, params.max)}
    return replace(document, **changes)


# The UE's typed element naming a device of its lieu (facilityExtension/equipment, entities/unit.yaml).
EQUIPMENT = "equipment"


def named_devices(document: CsdDocument) -> CsdDocument:
    """The answer's deviceDirectory reduced to the devices its facilities name in `equipment`: a lieu's
    équipements are written as the UEs given there show them, so what paging, the IHE filters, the client's
    access profile or the restricted reading took out of the UEs (the UE, or its `equipment`) leaves the
    devices too (mappings/README.md, "Équipements as `deviceDirectory`")."""
    if not document.devices:
        return document
    named = {
        value
        for facility in document.facilities
        for extension in facility.extensions
        if extension.profile and extension.content is not None and extension.content.name == EQUIPMENT
        for key, value in extension.content.attributes
        if key == "entityID"
    }
    kept = [device for device in document.devices if device.entity_id in named]
    return document if len(kept) == len(document.devices) else replace(document, devices=kept)


def page_upstream(
    spec: FunctionSpec, params: RequestParams, results: Sequence[SearchResult]
) -> list[SearchResult]:
    """start/max applied to the first query's matches, in the national API's order, before mapping.

    Used when every parameter present was answered by the national API: the page is then a window on its
    matches, and what the other directories carry (organisations, lieux, professionals) is exactly what the
    kept matches reference. When the bridge filters records itself, select_records() pages after filtering.
    """
    if spec.result is None or not results or any(_present(n, params) for n in spec.bridge_filters):
        return list(results)
    if params.start is None and (params.max is None or params.max < 0):
        return list(results)
    first, *others = results
    window = page(first.matches, params.start, params.max)
    return [replace(first, matches=window), *others]


def _present(name: str, params: RequestParams) -> bool:
    return PARAMETERS[name](params)


def needed_matches(spec: FunctionSpec, params: RequestParams) -> int | None:
    """How many upstream matches answer the request (start - 1 + max), or None when all are needed.

    All are needed when `max` is absent or negative, or when a parameter is checked in the bridge (the
    filtered-out records cannot be known before they are fetched).
    """
    if spec.result is None or params.max is None or params.max < 0:
        return None
    if any(_present(name, params) for name in spec.bridge_filters):
        return None
    return max(params.start or 1, 1) - 1 + params.max
