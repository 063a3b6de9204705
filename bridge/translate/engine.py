"""FHIR resources that came back for a plan → neutral CSD records, driven by mappings/entities/*.yaml.

translate/: pure mapping engine. Which resources become entities: the matches of every query whose type maps
into one of the plan's directories, plus every received resource those entities reference (parent, providing
organisation, lieu); facilities and providers read the offers and practitioners received with them.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Collection, Sequence
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

from bridge import gc_control
from bridge.model import (
    CsdDocument,
    Device,
    Directory,
    Facility,
    Organization,
    Provider,
    ProviderFacility,
    QueryPlan,
    Resource,
    SearchResult,
    Service,
)
from bridge.translate.compiled import (
    Apply,
    CompiledTable,
    Values,
    compile_table,
    reference_keys,
    resource_key,
    tables_by_type,
    tables_of,
)
from bridge.translate.findings import Finding
from bridge.translate.tables import Mappings
from bridge.translate.transforms import (
    Context,
    Part,
    ReverseIndex,
    offers_below,
    offers_by_location,
    reference_key,
)


class _Tables:
    """The compiled tables mapping each resource into the plan's directories, the references their reference
    rules select, and each table bound to the answer's context, worked out once per resource (the selection
    asks several times for each) or once per answer."""

    __slots__ = ("_bound", "_by_type", "_references", "_tables")

    def __init__(self, mappings: Mappings, directories: frozenset[Directory]) -> None:
        self._by_type = tables_by_type(mappings, directories)
        # id(resource) → ...: every resource asked about is held by the answer's index or results
        self._tables: dict[int, list[CompiledTable]] = {}
        self._references: dict[int, list[str]] = {}
        self._bound: dict[int, Apply] = {}  # id(compiled table) → the table bound to the answer's context

    def of(self, resource: Resource) -> list[CompiledTable]:
        tables = self._tables.get(id(resource))
        if tables is None:
            tables = tables_of(self._by_type, resource)
            self._tables[id(resource)] = tables
        return tables

    def maps_type(self, resource: Resource) -> bool:
        """A resource of a type some table of the plan's directories maps (whatever their `select`)."""
        resource_type = resource.get("resourceType")
        return isinstance(resource_type, str) and resource_type in self._by_type

    def references(self, resource: Resource) -> list[str]:
        keys = self._references.get(id(resource))
        if keys is None:
            keys = reference_keys(self.of(resource), resource)
            self._references[id(resource)] = keys
        return keys

    def bound(self, table: CompiledTable, base: Context, contexts: dict[int, Context]) -> Apply:
        apply = self._bound.get(id(table))
        if apply is None:
            apply = self._bound[id(table)] = table.bind(base, contexts)
        return apply


def from_fhir_results(
    mappings: Mappings,
    plan: QueryPlan,
    results: Sequence[SearchResult],
    *,
    now: datetime | None = None,
    selected: Collection[str] | None = None,
) -> CsdDocument:
    """The CSD document for a plan's results. `now` (default: the current time) decides what is closed.

    `selected` (`Type/id` keys) names the resources to write as entities instead of the matches and what they
    reference (a delta answer: what changed, translate/delta.py); every resource received still resolves
    references. Keys of a type without entity table in the plan's directories are skipped. The cyclic
    garbage collector is paused meanwhile (bridge/gc_control.py).
    """
    # What the transforms work out once per answer (`transforms.once`); it holds contexts that hold it, so
    # it is emptied here: the answer's pages and records are then freed by reference counting alone.
    memo: dict[tuple[str, int], tuple[Any, Any]] = {}
    try:
        with gc_control.batch():
            return _document(mappings, plan, results, now, selected, memo)
    finally:
        memo.clear()


def _document(
    mappings: Mappings,
    plan: QueryPlan,
    results: Sequence[SearchResult],
    now: datetime | None,
    selected: Collection[str] | None,
    memo: dict[tuple[str, int], tuple[Any, Any]],
) -> CsdDocument:
    index: dict[str, Resource] = {}
    for result in results:
        for resource in (*result.matches, *result.includes):
            key = _key(resource)
            if key is not None:
                index.setdefault(key, resource)
    base = Context(
        systems=mappings.systems,
        identities=mappings.identities,
        index=index,
        findings=mappings.findings,
        now=now or datetime.now(UTC),
        timezone=mappings.timezone,
        offers_at=ReverseIndex(offers_by_location, index),
        offers_under=ReverseIndex(offers_below, index),
        origin=plan.origin,
        memo=memo,
    )
    tables_of = _Tables(mappings, plan.directories)
    chosen = (
        _select(mappings, plan, results, index, tables_of)
        if selected is None
        else [index[key] for key in selected if key in index]
    )
    contexts: dict[int, Context] = {}  # id(code table) → the base context with those codes
    organizations: dict[str, Organization] = {}
    services: dict[str, Service] = {}
    facilities: dict[str, Facility] = {}
    provider_order: dict[str, tuple[str, str]] = {}  # as the extraction's spool orders them (see below)
    # Facilities in the streamed extraction's order: by resource type as the tables list them (internal
    # organisations, then the offers' UEs), organisations root first, then by entityID
    facility_order: dict[str, tuple[int, int, str]] = {}
    rank = {
        resource_type: n
        for n, resource_type in enumerate(
            dict.fromkeys(
                t.resource for t in mappings.entities.values() if t.kind.directory is Directory.FACILITY
            )
        )
    }
    providers: dict[str, Provider] = {}
    devices: dict[str, Device] = {}
    findings = mappings.findings
    for resource in chosen:
        for compiled in tables_of.of(resource):
            table = compiled.table
            if compiled.each is not None:  # one record per part of the resource (a lieu's équipements)
                for values in _apply_each(compiled, resource, base):
                    device: Device = compiled.build(values, findings)
                    devices.setdefault(device.entity_id, device)
                continue
            built = compiled.build(tables_of.bound(compiled, base, contexts)(resource, resource), findings)
            directory = table.kind.directory
            if directory is Directory.ORGANIZATION:
                org: Organization = built
                organizations.setdefault(org.entity_id, org)
            elif directory is Directory.SERVICE:
                service: Service = built
                services.setdefault(service.entity_id, service)
            elif directory is Directory.FACILITY:
                facility: Facility = built
                facilities.setdefault(facility.entity_id, facility)
                facility_order.setdefault(
                    facility.entity_id,
                    (rank[table.resource], _chain_depth(resource, index), facility.entity_id),
                )
            elif directory is Directory.PROVIDER:
                provider: Provider | None = built
                if provider is not None:
                    known = providers.get(provider.entity_id)
                    providers[provider.entity_id] = provider if known is None else _merged(known, provider)
                    provider_order.setdefault(provider.entity_id, _grouping_key(resource, provider.entity_id))
    return CsdDocument(
        organizations=_roots_first(organizations),
        services=[services[k] for k in sorted(services)],
        facilities=[facilities[k] for k in sorted(facilities, key=lambda k: facility_order[k])],
        providers=[providers[k] for k in sorted(providers, key=lambda k: provider_order[k])],
        devices=[devices[k] for k in sorted(devices)],
    )


_key = resource_key


def _select(
    mappings: Mappings,
    plan: QueryPlan,
    results: Sequence[SearchResult],
    index: dict[str, Resource],
    tables_of: _Tables,
) -> list[Resource]:
    """Matches mapped into the plan's directories, then (transitively) what they reference, each once; then
    the included resources of a type no entity references (only `_revinclude` brings them: the
    PractitionerRoles of an offer) that reference a selected entity, and what those reference."""
    queue = deque(r for result in results for r in result.matches if tables_of.of(r))
    included = [r for result in results for r in result.includes if tables_of.of(r)]
    # Types some entity points at (Organization via partOf, Location, HealthcareService) join an answer only
    # through those references; an included child organisation is not selected because its parent was.
    referenced = {k.partition("/")[0] for r in included for k in tables_of.references(r)}
    referenced |= {k.partition("/")[0] for q in queue for k in tables_of.references(q)}
    reverse = [r for r in included if str(r.get("resourceType")) not in referenced]
    # An IHE search's result directory holds its matches only (QueryPlan.result): a referenced entity of that
    # directory (an organisation's parent) only resolves the reference's entityID.
    # every match, with or without an entity of its own (a lieu: its UEs are the entities, see below)
    match_keys = {_key(r) for result in results for r in result.matches}
    seen: set[str] = set()
    selected: list[Resource] = []
    while True:  # the reverse step may start from matches alone (a facility-search's lieux): at least once
        while queue:
            resource = queue.popleft()
            key = _key(resource)
            if key is None or key in seen:
                continue
            seen.add(key)
            selected.append(resource)
            for target_key in tables_of.references(resource):
                target = index.get(target_key)
                if target is None:
                    continue
                tables = tables_of.of(target)
                if not tables and tables_of.maps_type(target):
                    # excluded by its tables' `select` (a v3 UE organisation): not written, but what it
                    # references (its parent) joins as if the referrer referenced it
                    queue.extendleft(
                        t for k in _references(mappings, plan, target, every=True) if (t := index.get(k))
                    )
                    continue
                if not tables or (
                    target_key not in match_keys
                    and all(t.table.kind.directory is plan.result for t in tables)
                ):
                    continue
                queue.append(target)
        waiting = []
        for resource in reverse:
            if _key(resource) in seen:
                continue
            # a match without entity of its own (a lieu: the profile writes it inside its UEs) counts too
            if any(k in seen or k in match_keys for k in tables_of.references(resource)):
                queue.append(resource)
            else:
                waiting.append(resource)
        reverse = waiting
        if not queue:
            return selected


def _references(mappings: Mappings, plan: QueryPlan, resource: Resource, *, every: bool = False) -> list[str]:
    """`Type/id` of what the resource's reference rules point at (`every`: of every table of its type in the
    plan's directories, whatever their `select`)."""
    if every:
        resource_type = resource.get("resourceType")
        tables = [
            t
            for t in mappings.entities.values()
            if t.resource == resource_type and t.kind.directory in plan.directories
        ]
    else:
        tables = mappings.entities_for(resource, plan.directories)
    return reference_keys([compile_table(t) for t in tables], resource)


def _apply_each(compiled: CompiledTable, resource: Resource, base: Context) -> list[Values]:
    """The values of each record an `each` table makes of one resource: its rules applied to each part (JSON
    object) `each` selects, in order, the part in the context (Context.part, with every part's key: what the
    `@entityID` rule's source selects in it)."""
    assert compiled.each is not None
    parts = [p for p in compiled.each(resource) if isinstance(p, dict)]
    if not parts:
        return []
    key_of = compiled.part_key
    keys = tuple(tuple(str(v) for v in key_of(p)) if key_of is not None else () for p in parts)
    out = []
    for position, part in enumerate(parts):
        if key_of is not None and not keys[position]:
            # no key, no entityID (an équipement without type): reported, not written
            base.findings.add(Finding.PART_WITHOUT_KEY, f"{compiled.table.table} in {_key(resource)}")
            continue
        context = replace(base, part=Part(part, position, keys))
        # the code tables' contexts are per part too: each rule's context is made from this part's; the
        # rules' sources read the part, their transforms still get the resource
        out.append(compiled.bind(context, {})(part, resource))
    return out


def _merged(first: Provider, other: Provider) -> Provider:
    """One csd:provider per professional (the ROR v2.4 profile keys providers by RPPS): the situations
    opérationnelles of the same professional, mapped one PractitionerRole at a time, in one entry — each
    situation's extension (its operationalStatus) in turn, the organisations, facilities, codes and
    identifiers each once, the record of the first with the latest `updated` (any role changed)."""

    def union(a: tuple[Any, ...], b: tuple[Any, ...]) -> tuple[Any, ...]:
        return tuple(dict.fromkeys((*a, *b)))

    record = first.record
    if other.record.updated > record.updated:
        record = replace(record, updated=other.record.updated)
    return replace(
        first,
        coded_types=union(first.coded_types, other.coded_types),
        other_ids=union(first.other_ids, other.other_ids),
        organizations=union(first.organizations, other.organizations),
        facilities=_facilities_merged((*first.facilities, *other.facilities)),
        credentials=union(first.credentials, other.credentials),
        specialties=first.specialties or other.specialties,
        extensions=(*first.extensions, *other.extensions),
        record=record,
    )


def _facilities_merged(facilities: Sequence[ProviderFacility]) -> tuple[ProviderFacility, ...]:
    """The facilities of several situations, one per entityID, with their services each once."""
    merged: dict[str, ProviderFacility] = {}
    for facility in facilities:
        known = merged.get(facility.entity_id)
        if known is None:
            merged[facility.entity_id] = facility
        else:
            services = tuple(dict.fromkeys((*known.services, *facility.services)))
            merged[facility.entity_id] = replace(known, services=services)
    return tuple(merged.values())


def _grouping_key(resource: Resource, entity_id: str) -> tuple[str, str]:
    """A professional's place in the answer: by its Practitioner's reference (how the extraction's spool
    groups the situations of one professional, bridge/pipeline/spool.py), then entityID."""
    practitioner = resource.get("practitioner")
    reference = practitioner.get("reference") if isinstance(practitioner, dict) else None
    return (reference if isinstance(reference, str) and reference else entity_id, entity_id)


def _chain_depth(resource: Resource, index: dict[str, Resource]) -> int:
    """How many organisations received are above an organisation on its partOf chain (0: not one)."""
    if resource.get("resourceType") != "Organization":
        return 0
    depth, seen = 0, set()
    parent = resource.get("partOf")
    while isinstance(parent, dict) and isinstance(parent.get("reference"), str):
        key = reference_key(parent["reference"])
        above = index.get(key) if key is not None else None
        if above is None or key in seen:
            break
        seen.add(key)
        depth += 1
        parent = above.get("partOf")
    return depth


def _roots_first(organizations: dict[str, Organization]) -> list[Organization]:
    """Root first: by depth in the parent chain within the answer, then by entityID (deterministic)."""
    # (a module function, not a nested one that the key would share its closure with: compiled by mypyc,
    # that closure would hold itself, and every answer's organisations would wait for the collector)
    return sorted(organizations.values(), key=lambda o: (_depth(o, organizations), o.entity_id))


def _depth(org: Organization, organizations: dict[str, Organization]) -> int:
    """How many parents above `org` within the answer."""
    seen = {org.entity_id}
    level = 0
    while org.parent_id in organizations and org.parent_id not in seen:
        org = organizations[org.parent_id]
        seen.add(org.entity_id)
        level += 1
    return level
