"""The mapping tables compiled once into plain functions: a selector per source path, a closure per rule (its
transform, code table and extension wrapping bound), a record builder per table, the tables of each type.

translate/: pure mapping engine. The tables stay declarative (translate/tables.py); the engine runs what this
module makes of them (translate/engine.py), with the same results as interpreting them rule by rule.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, replace
from functools import partial
from typing import Any

from bridge.errors import MappingError
from bridge.model import CodedType, Directory, Extension, ExtensionNode, Resource
from bridge.translate.codes import CodeTable
from bridge.translate.findings import Finding, Findings
from bridge.translate.paths import SourcePath, Step, _matches, _scalar
from bridge.translate.tables import EntityTable, ExtensionSpec, Mappings, Rule
from bridge.translate.transforms import (
    SELECTORS,
    TRANSFORMS,
    Context,
    TransformError,
    Value,
    reference_key,
)

# A compiled source path: what SourcePath.select returns, as a fresh list.
Selector = Callable[[Any], list[Any]]
# Appends what the rest of a path reaches from one node (one step of a compiled path).
_Walker = Callable[[Any, list[Any]], None]
# A record's values while its rules run, by slot (the table's targets, in its kind's order; None: no value),
# then the resource's groups (`Groups`), each worked out when a rule first asks.
Values = list[Any]
# One rule bound to an answer's context: (what its source reads, the resource, the values) → None.
Runner = Callable[[Any, Resource, Values], None]
# A table bound to an answer's context: (what the sources read, the resource) → the values of its record.
Apply = Callable[[Any, Resource], Values]

# The transforms whose references bring the referenced resources into the answer (README "entities/"), by
# their functions: compared by identity (a set of functions hashes by id), never by dataclass equality.
REFERENCES = frozenset(
    TRANSFORMS[name].func
    for name in (
        "reference_entity_id",
        "resolved_entity_id",
        "parent_facility",
        "lieu_location",
        "lieu_address",
        "provider_facilities",
    )
)
# Extension records made of the same code by the same rule are shared (immutable): bounded per rule.
MAX_SHARED_EXTENSIONS = 4096
# Rules sharing a filtered step that make it grouped once per resource (Grouped).
MIN_GROUPED = 2
# Compiled tables kept (by id of the table, the table kept alive so that its id is not reused); beyond, the
# cache starts again (a process loads its tables once; tests load many).
MAX_COMPILED = 64


# --------------------------------------------------------------------------------------------------
# Source paths


def compile_path(path: SourcePath) -> Selector:
    """A function returning what `path.select` returns (same values, same order), without walking the path's
    steps generically: one closure per step, the last one appending, one-step paths inlined."""
    steps = path.steps
    if len(steps) == 1 and not steps[0].filters:
        return _one_field(steps[0].field)
    walk: _Walker | None = None
    for step in reversed(steps):
        walk = _step(step.field, step.filters, walk)
    assert walk is not None  # a parsed path has at least one step
    first = walk

    def select(node: Any) -> list[Any]:
        out: list[Any] = []
        first(node, out)
        return out

    return select


def _one_field(field: str) -> Selector:
    def select(node: Any) -> list[Any]:
        if not isinstance(node, dict):
            return []
        value = node.get(field)
        if value is None:
            return []
        if isinstance(value, list):  # JSON nulls skipped (`in` finds only None: no JSON value equals it)
            return [item for item in value if item is not None] if None in value else value.copy()
        return [value]

    return select


def _filter(filters: tuple[tuple[str, str], ...]) -> Callable[[Any], bool]:
    if len(filters) != 1:
        return lambda node: _matches(node, filters)
    ((key, wanted),) = filters

    def matches(node: Any) -> bool:
        if not isinstance(node, dict):
            return False
        found = node.get(key)
        if found.__class__ is not str:  # exactly str: a str subclass or a number goes through _scalar
            found = _scalar(found)
        return bool(found == wanted)

    return matches


def _step(field: str, filters: tuple[tuple[str, str], ...], then: _Walker | None) -> _Walker:
    """One step: the field's value (each item of an array, nulls skipped) kept when it passes the filters,
    handed to the next step (`then`) or appended when it is the last."""
    if not filters:
        if then is None:

            def last(node: Any, out: list[Any]) -> None:
                if not isinstance(node, dict):
                    return
                value = node.get(field)
                if value is None:
                    return
                if isinstance(value, list):  # JSON nulls skipped, without a generator when there are none
                    out.extend(value if None not in value else [item for item in value if item is not None])
                else:
                    out.append(value)

            return last
        following = then

        def inner(node: Any, out: list[Any]) -> None:
            if not isinstance(node, dict):
                return
            value = node.get(field)
            if value is None:
                return
            if isinstance(value, list):
                for item in value:
                    if item is not None:
                        following(item, out)
            else:
                following(value, out)

        return inner
    matches = _filter(filters)
    if then is None:

        def last_filtered(node: Any, out: list[Any]) -> None:
            if not isinstance(node, dict):
                return
            value = node.get(field)
            if value is None:
                return
            if isinstance(value, list):
                out.extend(item for item in value if item is not None and matches(item))
            elif matches(value):
                out.append(value)

        return last_filtered
    after = then

    def inner_filtered(node: Any, out: list[Any]) -> None:
        if not isinstance(node, dict):
            return
        value = node.get(field)
        if value is None:
            return
        if isinstance(value, list):
            for item in value:
                if item is not None and matches(item):
                    after(item, out)
        elif matches(value):
            after(value, out)

    return inner_filtered


@dataclass(frozen=True, slots=True)
class Grouped:
    """A source path whose first filter several rules of a table share, but for its value:
    `extension[url=…].valueCodeableConcept`, `characteristic.coding[system=…]`. The values of the filtered
    step are grouped by the filter's key once per resource (`group`, kept in `Values` at `place`); each rule
    then takes its value's group and walks the rest of its path (`rest`; None: the group is the result)."""

    place: int
    group: Callable[[Any], dict[str, list[Any]]]
    wanted: str
    rest: _Walker | None

    def select(self, read: Any, values: Values) -> list[Any]:
        groups = values[self.place]
        if groups is None:
            groups = values[self.place] = self.group(read)
        found = groups.get(self.wanted)
        if found is None:
            return []
        rest = self.rest
        if rest is None:
            return list(found)
        out: list[Any] = []
        for node in found:
            rest(node, out)
        return out


# (the fields up to the filtered step, the filter's key): what rules sharing a grouping have in common
_GroupKey = tuple[tuple[str, ...], str]


def _group_key(path: SourcePath) -> tuple[_GroupKey, str, tuple[Step, ...]] | None:
    """The grouping a path's first filtered step allows (one filter, no filter before it), its value and the
    steps after it; None: none."""
    for n, step in enumerate(path.steps):
        if step.filters:
            if len(step.filters) != 1:
                return None
            ((key, wanted),) = step.filters
            return (tuple(s.field for s in path.steps[: n + 1]), key), wanted, path.steps[n + 1 :]
    return None


def _grouper(fields: tuple[str, ...], key: str) -> Callable[[Any], dict[str, list[Any]]]:
    """The values the unfiltered `fields` path reaches, by their `key` as a filter compares it (a str as it
    is, a number or boolean as text; others never match), each group in document order."""
    reach = compile_path(SourcePath(".".join(fields), tuple(Step(f) for f in fields)))

    def group(read: Any) -> dict[str, list[Any]]:
        groups: dict[str, list[Any]] = {}
        for node in reach(read):
            if not isinstance(node, dict):
                continue
            found = node.get(key)
            if found.__class__ is not str:
                found = _scalar(found)
                if found is None:
                    continue
            known = groups.get(found)
            if known is None:
                groups[found] = [node]
            else:
                known.append(node)
        return groups

    return group


def _rest(steps: tuple[Step, ...]) -> _Walker | None:
    walk: _Walker | None = None
    for step in reversed(steps):
        walk = _step(step.field, step.filters, walk)
    return walk


# --------------------------------------------------------------------------------------------------
# Rules


def resource_key(resource: Resource) -> str | None:
    resource_type, logical_id = resource.get("resourceType"), resource.get("id")
    if isinstance(resource_type, str) and isinstance(logical_id, str) and resource_type and logical_id:
        return f"{resource_type}/{logical_id}"
    return None


def rule_error(table: EntityTable, rule: Rule, resource: Resource, problem: str) -> MappingError:
    where = str(rule.source) if rule.source is not None else "(whole resource)"
    return MappingError(
        table.table, rule.id, where, f"{problem} (in {resource_key(resource) or 'a resource without id'})"
    )


def _wrapper(spec: ExtensionSpec) -> Callable[[Value], Extension]:
    """The Extension record of each value an extension rule produces: a `tree`'s top node takes the rule's
    element name, a codedType its code and codingScheme as attributes, anything else its text."""
    element, kind, urn, typed = spec.element, spec.type, spec.urn, spec.profile
    shared: dict[CodedType, Extension] = {}

    def wrap(value: Value) -> Extension:
        if isinstance(value, CodedType):
            made = shared.get(value)
            if made is None:
                attributes = (("code", value.code), ("codingScheme", value.coding_scheme))
                node = ExtensionNode(element, text=value.display, attributes=attributes)
                made = Extension(type=kind, urn=urn, content=node, profile=typed)
                if len(shared) >= MAX_SHARED_EXTENSIONS:
                    shared.clear()
                shared[value] = made
            return made
        if isinstance(value, ExtensionNode):
            # named as the rule's element already (a typed element's transform names it): the node itself
            node = (
                value
                if value.name == element
                else ExtensionNode(element, value.text, value.attributes, value.children)
            )
        else:
            node = ExtensionNode(element, text=str(value))
        return Extension(type=kind, urn=urn, content=node, profile=typed)

    return wrap


@dataclass(frozen=True, slots=True)
class CompiledRule:
    """A rule with its source path compiled, its target's slot and its extension wrapping."""

    rule: Rule
    slot: int
    select: Selector | None
    wrap: Callable[[Value], Extension] | None
    grouped: Grouped | None = None  # instead of `select`: the rule's path through its table's grouping

    def bind(self, table: EntityTable, ctx: Context) -> Runner:
        """The rule as one function of an answer (its context bound): runs the transform on what the source
        selects (a rule whose transform needs a source is skipped when it selects nothing; a fallback rule
        when its target has values) and adds what it produced to the target's values."""
        rule, slot, select, wrap = self.rule, self.slot, self.select, self.wrap
        func, fallback = rule.transform.func, rule.fallback
        if self.grouped is not None:
            return self._bind_grouped(table, ctx, self.grouped)
        if select is None:
            if rule.transform.source:
                return _skip  # nothing selected: never runs (the loader requires a source for those)

            def run(read: Any, resource: Resource, values: Values) -> None:
                if fallback and values[slot]:
                    return
                try:
                    produced = func([], resource, ctx)
                except TransformError as error:
                    raise rule_error(table, rule, resource, str(error)) from error
                if produced:
                    made: list[Any] = produced if wrap is None else [wrap(v) for v in produced]
                    known = values[slot]
                    values[slot] = made if known is None else known + made

            return run
        source = select
        needs_source = rule.transform.source

        def run_selected(read: Any, resource: Resource, values: Values) -> None:
            if fallback and values[slot]:
                return
            selected = source(read)
            if needs_source and not selected:
                return
            try:
                produced = func(selected, resource, ctx)
            except TransformError as error:
                raise rule_error(table, rule, resource, str(error)) from error
            if produced:
                made: list[Any] = produced if wrap is None else [wrap(v) for v in produced]
                known = values[slot]
                values[slot] = made if known is None else known + made

        return run_selected

    def _bind_grouped(self, table: EntityTable, ctx: Context, grouped: Grouped) -> Runner:
        rule, slot, wrap = self.rule, self.slot, self.wrap
        func, fallback, needs_source = rule.transform.func, rule.fallback, rule.transform.source
        source = grouped.select

        def run_grouped(read: Any, resource: Resource, values: Values) -> None:
            if fallback and values[slot]:
                return
            selected = source(read, values)
            if needs_source and not selected:
                return
            try:
                produced = func(selected, resource, ctx)
            except TransformError as error:
                raise rule_error(table, rule, resource, str(error)) from error
            if produced:
                made: list[Any] = produced if wrap is None else [wrap(v) for v in produced]
                known = values[slot]
                values[slot] = made if known is None else known + made

        return run_grouped


def _skip(read: Any, resource: Resource, values: Values) -> None:
    return None


# --------------------------------------------------------------------------------------------------
# Records


def _first_rule(table: EntityTable, target: str) -> Rule:
    return next(r for r in table.rules if r.target == target)


def _wrong_type(table: EntityTable, target: str, kept: type, value: Any) -> MappingError:
    return MappingError(
        table.table,
        _first_rule(table, target).id,
        target,
        f"expected {kept.__name__}, got {type(value).__name__}",
    )


def _first(table: EntityTable, found: list[Any] | None, target: str, kept: type) -> Any:
    """The first value of a single-valued target; every value must be of its type."""
    if not found:
        return None
    for value in found:
        if not isinstance(value, kept):
            raise _wrong_type(table, target, kept, value)
    return found[0]


Builder = Callable[[Values, Findings], Any]


def _builder(table: EntityTable, slots: Mapping[str, int]) -> Builder:
    """The record of an entity from its values (its kind's record type, fields from its targets:
    bridge/model.py `ENTITY_SHAPES`); None (reported) for a provider whose Practitioner was not received:
    CSD demographic is 1..1. A missing primaryName is reported and written empty; a missing codedType is an
    error. Single-valued targets take the first value, multi-valued ones every value of their type."""
    kind = table.kind
    record = kind.shape.record
    plan = tuple(
        # an extension rule's values are wrapped in Extension records (_wrapper)
        (slots[t.name], t.name, t.field, Extension if t.type is object else t.type, t.many, t.required)
        for t in kind.targets.values()
    )
    demographic = slots["demographic"] if "demographic" in kind.targets else None
    entity_id = slots["@entityID"]

    def build(values: Values, findings: Findings) -> Any:
        if demographic is not None and not values[demographic]:
            findings.add(Finding.MISSING_DEMOGRAPHIC, _first(table, values[entity_id], "@entityID", str))
            return None
        fields: dict[str, Any] = {}
        for slot, name, field, kept, many, required in plan:
            found = values[slot]
            if found:
                if many:
                    value: Any = tuple([v for v in found if isinstance(v, kept)])
                    if value:
                        fields[field] = value
                        continue
                else:
                    for v in found:
                        if not isinstance(v, kept):
                            raise _wrong_type(table, name, kept, v)
                    fields[field] = found[0]
                    continue
            elif not required:
                continue  # the record's default: None or ()
            if name == "codedType":
                # codedType is 1..* (CSD 2014; exactly one for a service); the shipped tables end with a
                # default_code / kind fallback.
                found_id = _first(table, values[entity_id], "@entityID", str)
                raise no_coded_type(table, f"no codedType for {kind.name} {found_id}")
            if name == "primaryName":
                findings.add(Finding.MISSING_NAME, _first(table, values[entity_id], "@entityID", str))
                fields[field] = ""
            else:
                fields[field] = () if many else None
        return record(**fields)

    return build


def no_coded_type(table: EntityTable, problem: str) -> MappingError:
    """The error of an entity left without the codedType CSD requires, naming the table's codedType rule."""
    rule = _first_rule(table, "codedType")
    return MappingError(table.table, rule.id, str(rule.source or "(whole resource)"), problem)


# --------------------------------------------------------------------------------------------------
# Tables


@dataclass(frozen=True, slots=True)
class CompiledTable:
    """One entity table compiled: its rules, the selectors of its reference rules, its `each` and record
    builder. `bind` makes the function mapping resources for one answer's context."""

    table: EntityTable
    size: int  # slots: the kind's targets (and any other target a rule names)
    places: int  # the slots, then one place per grouping (Grouped)
    rules: tuple[CompiledRule, ...]
    # what the reference rules (their transform in REFERENCES, with a source) select: the referenced resources
    references: tuple[Selector, ...]
    each: Selector | None  # `each`: the parts of a resource, one record each
    part_key: Selector | None  # `each`: the @entityID rule's source, the key of a part
    build: Builder
    applies: Callable[[Resource], bool] | None  # the table's `select` (None: every resource of its type)

    def bind(self, base: Context, contexts: dict[int, Context]) -> Apply:
        """The table as one function of an answer: `contexts` keeps the base context with each code table,
        made once per answer (not once per rule and resource)."""
        runners = tuple(r.bind(self.table, _with_codes(r.rule.codes, base, contexts)) for r in self.rules)
        size = self.places

        def apply(read: Any, resource: Resource) -> Values:
            values: Values = [None] * size
            for run in runners:
                run(read, resource, values)
            return values

        return apply


def _with_codes(codes: CodeTable | None, base: Context, contexts: dict[int, Context]) -> Context:
    if codes is None:
        return base
    known = contexts.get(id(codes))
    if known is None:
        known = contexts[id(codes)] = replace(base, codes=codes)
    return known


_COMPILED: dict[int, tuple[EntityTable, CompiledTable]] = {}


def compile_table(table: EntityTable) -> CompiledTable:
    """The table compiled (once per table object)."""
    known = _COMPILED.get(id(table))
    if known is not None and known[0] is table:
        return known[1]
    compiled = _compile(table)
    if len(_COMPILED) >= MAX_COMPILED:
        _COMPILED.clear()
    _COMPILED[id(table)] = (table, compiled)
    return compiled


def _compile(table: EntityTable) -> CompiledTable:
    slots = {name: n for n, name in enumerate(table.kind.targets)}
    for rule in table.rules:
        slots.setdefault(rule.target, len(slots))
    paths: dict[str, Selector] = {}  # a path several rules read is compiled once
    # (module functions rather than nested ones: compiled by mypyc, nested functions sharing their closure
    # hold it and it holds them, a cycle per compiled table left to the collector)
    selector = partial(_selector, paths)

    size = len(slots)
    # groupings shared by several rules: each gets a place in Values after the slots
    keys = [_group_key(r.source) for r in table.rules if r.source is not None]
    counts: dict[_GroupKey, int] = {}
    for found in keys:
        if found is not None:
            counts[found[0]] = counts.get(found[0], 0) + 1
    places: dict[_GroupKey, tuple[int, Callable[[Any], dict[str, list[Any]]]]] = {}
    for group_key, count in counts.items():
        if count >= MIN_GROUPED:
            places[group_key] = (size + len(places), _grouper(*group_key))

    grouped = partial(_grouped, places)

    rules = tuple(
        CompiledRule(
            rule,
            slots[rule.target],
            selector(rule.source) if rule.source is not None else None,
            _wrapper(rule.extension) if rule.extension is not None else None,
            grouped(rule.source) if rule.source is not None else None,
        )
        for rule in table.rules
    )
    references = tuple(
        selector(r.source) for r in table.rules if r.transform.func in REFERENCES and r.source is not None
    )
    id_rule = next((r for r in table.rules if r.target == "@entityID" and r.source is not None), None)
    return CompiledTable(
        table=table,
        size=size,
        places=size + len(places),
        rules=rules,
        references=references,
        each=selector(table.each) if table.each is not None else None,
        part_key=selector(id_rule.source) if id_rule is not None and id_rule.source is not None else None,
        build=_builder(table, slots),
        applies=SELECTORS[table.select] if table.select is not None else None,
    )


def _selector(paths: dict[str, Selector], path: SourcePath) -> Selector:
    """The path compiled, once per table (`paths`)."""
    known = paths.get(path.text)
    if known is None:
        known = paths[path.text] = compile_path(path)
    return known


def _grouped(
    places: dict[_GroupKey, tuple[int, Callable[[Any], dict[str, list[Any]]]]], path: SourcePath
) -> Grouped | None:
    """The path through its table's grouping (`places`: each grouping's place and function); None: none."""
    found = _group_key(path)
    if found is None or found[0] not in places:
        return None
    place, group = places[found[0]]
    return Grouped(place, group, found[1], _rest(found[2]))


# Resource type → the compiled tables of that type mapping into some directories, in the tables' order.
TablesByType = dict[str, tuple[CompiledTable, ...]]
# By (id of the tables' mapping, directories): the mapping kept alive so that its id is not reused. A copy of
# Mappings with other findings (pipeline/workers.py) shares its tables: the same entry.
_BY_TYPE: dict[tuple[int, frozenset[Directory]], tuple[Mapping[str, EntityTable], TablesByType]] = {}


def tables_by_type(mappings: Mappings, directories: Collection[Directory]) -> TablesByType:
    """Every table mapping into one of `directories`, compiled, by resource type (once per tables and
    directories)."""
    wanted = frozenset(directories)
    key = (id(mappings.entities), wanted)
    known = _BY_TYPE.get(key)
    if known is not None and known[0] is mappings.entities:
        return known[1]
    found: dict[str, list[CompiledTable]] = {}
    for table in mappings.entities.values():
        if table.kind.directory in wanted:
            found.setdefault(table.resource, []).append(compile_table(table))
    by_type = {resource_type: tuple(tables) for resource_type, tables in found.items()}
    if len(_BY_TYPE) >= MAX_COMPILED:
        _BY_TYPE.clear()
    _BY_TYPE[key] = (mappings.entities, by_type)
    return by_type


def tables_of(by_type: TablesByType, resource: Resource) -> list[CompiledTable]:
    """The compiled tables that map this resource (its type, their `select`): Mappings.entities_for."""
    resource_type = resource.get("resourceType")
    candidates = by_type.get(resource_type) if isinstance(resource_type, str) else None
    if not candidates:
        return []
    return [t for t in candidates if t.applies is None or t.applies(resource)]


def reference_keys(tables: Sequence[CompiledTable], resource: Resource) -> list[str]:
    """`Type/id` of what the tables' reference rules select in the resource."""
    keys: list[str] = []
    for table in tables:
        for select in table.references:
            for reference in select(resource):
                key = reference_key(reference) if isinstance(reference, str) else None
                if key is not None:
                    keys.append(key)
    return keys
