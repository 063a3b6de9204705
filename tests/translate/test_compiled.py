"""The tables compiled into functions (translate/compiled.py) give what interpreting them gives: compiled
source paths and grouped filtered steps against `SourcePath.select` over random JSON, the shipped tables'
records against a rule-by-rule interpretation of the same tables over the simulator's dataset, and what is
worked out once per referenced resource (transforms.once) still counting every finding."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bridge.errors import MappingError
from bridge.model import CodedType, Extension, ExtensionNode
from bridge.simulator.dataset import generate_dataset
from bridge.translate import Mappings
from bridge.translate.compiled import (
    Grouped,
    _group_key,
    _grouper,
    _rest,
    compile_path,
    compile_table,
    tables_by_type,
    tables_of,
)
from bridge.translate.findings import Finding
from bridge.translate.paths import SourcePath
from bridge.translate.tables import EntityTable
from bridge.translate.transforms import TRANSFORMS, Context, offers_below, offers_by_location

NOW = datetime(2024, 6, 1, 12, 0, tzinfo=UTC)

# Random JSON over a few names, so that paths and filters often reach something.
FIELDS = ("a", "b", "k")
SCALARS = st.one_of(
    st.sampled_from(["x", "y", "true", "1", "1.5"]), st.booleans(), st.integers(0, 2), st.just(1.5), st.none()
)
JSON = st.recursive(
    SCALARS,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4), st.dictionaries(st.sampled_from(FIELDS), inner, max_size=3)
    ),
    max_leaves=25,
)
STEP = st.tuples(
    st.sampled_from(FIELDS),
    st.lists(st.tuples(st.sampled_from(FIELDS), st.sampled_from(["x", "y", "true", "1", "1.5"])), max_size=2),
)
PATH = st.lists(STEP, min_size=1, max_size=4).map(
    lambda steps: SourcePath.parse(".".join(f + "".join(f"[{k}={v}]" for k, v in fs) for f, fs in steps))
)


@settings(max_examples=400, deadline=None)
@given(node=JSON, path=PATH)
def test_a_compiled_path_selects_what_the_path_selects(node: Any, path: SourcePath) -> None:
    assert compile_path(path)(node) == path.select(node)


@settings(max_examples=400, deadline=None)
@given(node=JSON, path=PATH)
def test_a_grouped_filter_selects_what_the_path_selects(node: Any, path: SourcePath) -> None:
    found = _group_key(path)
    if found is None:  # no single-filter step: compiled as a plain path
        assert all(not s.filters for s in path.steps) or any(len(s.filters) > 1 for s in path.steps)
        return
    (fields, key), wanted, rest = found
    grouped = Grouped(0, _grouper(fields, key), wanted, _rest(rest))
    values: list[Any] = [None]
    assert grouped.select(node, values) == path.select(node)
    assert values[0] is not None  # the groups are kept for the next rule of the same resource
    assert grouped.select(node, values) == path.select(node)


def test_grouping_compares_the_filter_as_select_does() -> None:
    node = {
        "extension": [
            {"url": "u1", "valueString": "one"},
            {"url": True, "valueString": "bool"},
            {"url": 1, "valueString": "int"},
            {"url": {"not": "scalar"}, "valueString": "object"},
            None,
            "primitive",
            {"url": "u1", "valueString": "again"},
        ]
    }
    for text in ("extension[url=u1].valueString", "extension[url=true].valueString", "extension[url=1]"):
        path = SourcePath.parse(text)
        (fields, key), wanted, rest = _group_key(path) or pytest.fail(text)
        assert Grouped(0, _grouper(fields, key), wanted, _rest(rest)).select(node, [None]) == path.select(
            node
        )
    assert _group_key(SourcePath.parse("a[k=1][b=2].c")) is None  # two filters: a plain compiled path
    assert _group_key(SourcePath.parse("a.b")) is None


# --------------------------------------------------------------------------------------------------
# The shipped tables, compiled, against a rule-by-rule interpretation


def _interpreted(table: EntityTable, resource: dict[str, Any], base: Context) -> dict[str, list[Any]]:
    """The values of a record as the engine computed them before its tables were compiled: every rule in
    order, its source selected by SourcePath.select, its context made with its code table."""
    values: dict[str, list[Any]] = defaultdict(list)
    for rule in table.rules:
        if rule.fallback and values[rule.target]:
            continue
        selected = rule.source.select(resource) if rule.source is not None else []
        if rule.transform.source and not selected:
            continue
        ctx = base if rule.codes is None else replace(base, codes=rule.codes)
        produced = rule.transform.func(selected, resource, ctx)
        if rule.extension is not None:
            spec = rule.extension
            for value in produced:
                if isinstance(value, ExtensionNode):
                    node = ExtensionNode(spec.element, value.text, value.attributes, value.children)
                elif isinstance(value, CodedType):
                    attributes = (("code", value.code), ("codingScheme", value.coding_scheme))
                    node = ExtensionNode(spec.element, text=value.display, attributes=attributes)
                else:
                    node = ExtensionNode(spec.element, text=str(value))
                values[rule.target].append(Extension(spec.type, spec.urn, node, spec.profile))
        else:
            values[rule.target].extend(produced)
    return values


def _context(mappings: Mappings, index: dict[str, Any]) -> Context:
    return Context(
        systems=mappings.systems,
        identities=mappings.identities,
        index=index,
        findings=mappings.findings,
        now=NOW,
        timezone=mappings.timezone,
        offers_at=offers_by_location(index),
        offers_under=offers_below(index),
    )


def test_the_shipped_tables_compiled_give_the_interpreted_values(mappings: Mappings) -> None:
    dataset = generate_dataset(40, 3)
    index = {f"{r['resourceType']}/{r['id']}": r for r in dataset}
    directories = frozenset(t.kind.directory for t in mappings.entities.values())
    by_type = tables_by_type(mappings, directories)
    compiled_ctx, interpreted_ctx = _context(mappings, index), _context(mappings, index)
    checked: set[str] = set()
    for resource in dataset:
        tables = tables_of(by_type, resource)
        expected = mappings.entities_for(resource, directories)
        assert [t.table for t in tables] == expected
        for compiled in tables:
            if compiled.each is not None:
                # an `each` table maps parts of the resource, not the resource: test_devices.py
                # checks the device table through the engine, which runs the compiled tables
                continue
            values = compiled.bind(compiled_ctx, {})(resource, resource)
            interpreted = _interpreted(compiled.table, resource, interpreted_ctx)
            slots = {name: n for n, name in enumerate(compiled.table.kind.targets)}
            for target, slot in slots.items():
                assert (values[slot] or []) == interpreted.get(target, []), (compiled.table.table, target)
            checked.add(compiled.table.name)
            # the record built from them is the record of those values
            assert compiled.build(values, mappings.findings) == compiled.build(
                [interpreted.get(t) or None for t in compiled.table.kind.targets]
                + [None] * (len(values) - len(slots)),
                mappings.findings,
            )
    assert checked >= {"organization", "internal-organization", "service", "unit", "provider"}


def test_a_compiled_rule_reports_a_transform_error_with_its_table_and_rule(mappings: Mappings) -> None:
    table = mappings.entities["service"]
    compiled = compile_table(table)
    broken = {"resourceType": "HealthcareService", "id": "s1", "meta": {}}
    with pytest.raises(MappingError) as caught:
        compiled.bind(_context(mappings, {}), {})(broken, broken)
    assert caught.value.table == "entities/service.yaml"
    assert "meta.lastUpdated" in caught.value.reason
    assert "HealthcareService/s1" in caught.value.reason
    assert compile_table(table) is compiled  # compiled once per table


def test_a_value_of_the_wrong_type_is_a_mapping_error_naming_the_target(mappings: Mappings) -> None:
    table = mappings.entities["service"]
    compiled = compile_table(table)
    values: list[Any] = [None] * compiled.places
    values[list(table.kind.targets).index("@entityID")] = [CodedType("1", "2")]
    with pytest.raises(MappingError) as caught:
        compiled.build(values, mappings.findings)
    assert "expected str, got CodedType" in caught.value.reason


# --------------------------------------------------------------------------------------------------
# Worked out once per referenced resource, findings still counted each time


def test_a_lieu_worked_out_once_still_reports_each_time(mappings: Mappings) -> None:
    good: dict[str, Any] = {
        "resourceType": "Location",
        "id": "L1",
        "meta": {"lastUpdated": "2024-05-02T10:00:00+02:00"},
    }
    good["extension"] = [
        {
            "url": "https://interop.esante.gouv.fr/ig/fhir/ror/StructureDefinition/ror-commune-cog",
            "valueCodeableConcept": {
                "coding": [
                    {
                        "system": "https://mos.esante.gouv.fr/NOS/TRE_R13-CommuneOM/FHIR/TRE-R13-CommuneOM",
                        "code": "75056",
                    }
                ]
            },
        }
    ]
    bad = {"resourceType": "Location", "id": "L2", "meta": {"lastUpdated": "2024-05-02T10:00:00+02:00"}}
    ctx = _context(mappings, {"Location/L1": good, "Location/L2": bad})
    lieu_location = TRANSFORMS["lieu_location"].func
    first = lieu_location(["Location/L1"], {}, ctx)
    assert lieu_location(["Location/L1"], {}, ctx) == first
    assert lieu_location(["Location/L1"], {}, ctx)[0] is first[0]  # the same node: worked out once
    before = mappings.findings.count(Finding.INCOMPLETE_TYPED_ELEMENT)
    for _ in range(3):
        assert lieu_location(["Location/L2"], {}, ctx) == []
    assert mappings.findings.count(Finding.INCOMPLETE_TYPED_ELEMENT) == before + 3


def test_the_tables_are_compiled_when_loaded(mappings: Mappings) -> None:
    from bridge.translate.compiled import _COMPILED
    from bridge.translate.loaders import load_mappings

    _COMPILED.clear()  # what other tests loaded (bounded: the cache starts again when full)
    loaded = load_mappings(mappings.directory)
    assert {id(table) for table in loaded.entities.values()} <= set(_COMPILED)
    for table in loaded.entities.values():
        assert _COMPILED[id(table)][0] is table
