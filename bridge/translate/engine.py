"""FHIR resources that came back for a plan → neutral CSD records, driven by mappings/entities/*.yaml.

translate/: pure mapping engine. Which resources become entities: the matches of every query whose type maps
into one of the plan's directories, plus every received resource those entities reference (parent, provider).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

from bridge.errors import MappingError
from bridge.model import (
    Address,
    CodedType,
    ContactPoint,
    CsdDocument,
    Directory,
    Extension,
    ExtensionNode,
    Organization,
    OtherID,
    QueryPlan,
    Record,
    Resource,
    SearchResult,
    Service,
)
from bridge.translate.findings import Finding
from bridge.translate.tables import EntityTable, ExtensionSpec, Mappings, Rule
from bridge.translate.transforms import TRANSFORMS, Context, TransformError, Value, reference_key

_REFERENCE = TRANSFORMS["reference_entity_id"]


def from_fhir_results(
    mappings: Mappings, plan: QueryPlan, results: Sequence[SearchResult], *, now: datetime | None = None
) -> CsdDocument:
    """The CSD document for a plan's results. `now` (default: the current time) decides what is closed."""
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
    )
    selected = _select(mappings, plan, results, index)
    organizations: dict[str, Organization] = {}
    services: dict[str, Service] = {}
    for resource in selected:
        table = mappings.entity_for(str(resource.get("resourceType")), plan.directories)
        if table is None:
            continue
        values = _apply(table, resource, base)
        if table.kind.directory is Directory.ORGANIZATION:
            org = _organization(table, values, mappings)
            organizations.setdefault(org.entity_id, org)
        elif table.kind.directory is Directory.SERVICE:
            service = _service(table, values)
            services.setdefault(service.entity_id, service)
    return CsdDocument(
        organizations=_roots_first(organizations),
        services=[services[k] for k in sorted(services)],
    )


def _key(resource: Resource) -> str | None:
    resource_type, logical_id = resource.get("resourceType"), resource.get("id")
    if isinstance(resource_type, str) and isinstance(logical_id, str) and resource_type and logical_id:
        return f"{resource_type}/{logical_id}"
    return None


def _select(
    mappings: Mappings, plan: QueryPlan, results: Sequence[SearchResult], index: dict[str, Resource]
) -> list[Resource]:
    """Matches mapped into the plan's directories, then (transitively) what they reference, each once."""
    queue = [
        r
        for result in results
        for r in result.matches
        if mappings.entity_for(str(r.get("resourceType")), plan.directories) is not None
    ]
    seen: set[str] = set()
    selected: list[Resource] = []
    while queue:
        resource = queue.pop(0)
        key = _key(resource)
        if key is None or key in seen:
            continue
        seen.add(key)
        selected.append(resource)
        table = mappings.entity_for(str(resource.get("resourceType")), plan.directories)
        for rule in table.rules if table else ():
            if rule.transform is not _REFERENCE or rule.source is None:
                continue
            for reference in rule.source.select(resource):
                target_key = reference_key(reference) if isinstance(reference, str) else None
                target = index.get(target_key) if target_key else None
                if target is not None and mappings.entity_for(
                    str(target.get("resourceType")), plan.directories
                ):
                    queue.append(target)
    return selected


def _apply(table: EntityTable, resource: Resource, base: Context) -> dict[str, list[Any]]:
    """Every rule of the table, in order: target name → the values it collected."""
    values: dict[str, list[Any]] = defaultdict(list)
    for rule in table.rules:
        if rule.fallback and values[rule.target]:
            continue
        selected = rule.source.select(resource) if rule.source is not None else []
        if rule.transform.source and not selected:
            continue
        context = replace(base, codes=rule.codes) if rule.codes is not None else base
        try:
            produced = rule.transform.func(selected, resource, context)
        except TransformError as error:
            raise _error(table, rule, resource, str(error)) from error
        if rule.extension is not None:
            spec = rule.extension
            values[rule.target].extend(_extension(spec, value) for value in produced)
        else:
            values[rule.target].extend(produced)
    return values


def _extension(spec: ExtensionSpec, value: Value) -> Extension:
    if isinstance(value, CodedType):
        attributes = (("code", value.code), ("codingScheme", value.coding_scheme))
        node = ExtensionNode(spec.element, text=value.display, attributes=attributes)
    else:
        node = ExtensionNode(spec.element, text=str(value))
    return Extension(type=spec.type, urn=spec.urn, content=node)


def _error(table: EntityTable, rule: Rule, resource: Resource, problem: str) -> MappingError:
    where = str(rule.source) if rule.source is not None else "(whole resource)"
    return MappingError(
        table.table, rule.id, where, f"{problem} (in {_key(resource) or 'a resource without id'})"
    )


def _first(table: EntityTable, values: dict[str, list[Any]], target: str, kind: type) -> Any:
    found = values.get(target) or []
    for value in found:
        if not isinstance(value, kind):
            rule = next(r.id for r in table.rules if r.target == target)
            raise MappingError(
                table.table, rule, target, f"expected {kind.__name__}, got {type(value).__name__}"
            )
    return found[0] if found else None


def _all(values: dict[str, list[Any]], target: str, kind: type[Any]) -> tuple[Any, ...]:
    return tuple(v for v in values.get(target, ()) if isinstance(v, kind))


def _organization(table: EntityTable, values: dict[str, list[Any]], mappings: Mappings) -> Organization:
    entity_id = _first(table, values, "@entityID", str)
    coded_types = _all(values, "codedType", CodedType)
    if not coded_types:
        # codedType is 1..* (CSD 2014); the shipped table's organization_kind fallback always gives one.
        rule = next(r for r in table.rules if r.target == "codedType")
        raise MappingError(
            table.table, rule.id, str(rule.source or "(whole resource)"), f"no codedType for {entity_id}"
        )
    name = _first(table, values, "primaryName", str)
    if name is None:
        mappings.findings.add(Finding.MISSING_NAME, entity_id)
    return Organization(
        entity_id=entity_id,
        coded_types=coded_types,
        primary_name=name or "",
        record=_first(table, values, "record", Record),
        other_ids=_all(values, "otherID", OtherID),
        other_names=_all(values, "otherName", str),
        addresses=_all(values, "address", Address),
        contact_points=_all(values, "contactPoint", ContactPoint),
        parent_id=_first(table, values, "parent", str),
        extensions=_all(values, "extension", Extension),
    )


def _service(table: EntityTable, values: dict[str, list[Any]]) -> Service:
    entity_id = _first(table, values, "@entityID", str)
    coded_type = _first(table, values, "codedType", CodedType)
    if coded_type is None:
        rule = next(r for r in table.rules if r.target == "codedType")
        raise MappingError(
            table.table,
            rule.id,
            str(rule.source or "(whole resource)"),
            f"service {entity_id} has no codedType",
        )
    return Service(
        entity_id=entity_id,
        coded_type=coded_type,
        record=_first(table, values, "record", Record),
        extensions=_all(values, "extension", Extension),
    )


def _roots_first(organizations: dict[str, Organization]) -> list[Organization]:
    """Root first: by depth in the parent chain within the answer, then by entityID (deterministic)."""

    def depth(org: Organization) -> int:
        seen = {org.entity_id}
        level = 0
        while org.parent_id in organizations and org.parent_id not in seen:
            org = organizations[org.parent_id]
            seen.add(org.entity_id)
            level += 1
        return level

    return sorted(organizations.values(), key=lambda o: (depth(o), o.entity_id))
