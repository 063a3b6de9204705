"""The one declaration of each CSD entity's shape (bridge/model.py `ENTITY_SHAPES`) and what derives from it:
the tables' targets (translate/tables.py), the engine's records, the writer's sequence (csd/writer.py), and
mappings/README.md's target table."""

from __future__ import annotations

import re
from dataclasses import fields, replace
from datetime import datetime
from pathlib import Path

import pytest
from lxml import etree

from bridge.csd import writer
from bridge.model import ENTITY_SHAPES, CodedType, Form, Record, Service, Shape, Slot, slot_types
from bridge.translate.tables import ENTITY_KINDS

README = Path(__file__).resolve().parents[2] / "mappings" / "README.md"


def test_every_field_of_each_record_has_its_one_slot() -> None:
    for shape in ENTITY_SHAPES.values():
        declared = [slot.field for slot in shape.slots]
        assert sorted(declared) == sorted(f.name for f in fields(shape.record)), shape.name
        assert len(set(declared)) == len(declared)


def test_the_tables_targets_are_the_mapped_slots_in_order() -> None:
    assert list(ENTITY_KINDS) == [name for name, shape in ENTITY_SHAPES.items() if shape.mapped]
    for name, kind in ENTITY_KINDS.items():
        shape = ENTITY_SHAPES[name]
        assert kind.directory is shape.directory
        assert list(kind.targets) == [slot.element for slot in shape.slots if slot.mapped]
        types = slot_types(shape)
        for target in kind.targets.values():
            assert (target.many, target.required) == (types[target.name].many, types[target.name].required)


def test_types_come_from_the_record_annotations() -> None:
    types = slot_types(ENTITY_SHAPES["organization"])
    assert (types["codedType"].type, types["codedType"].many, types["codedType"].required) == (
        CodedType,
        True,
        True,
    )
    assert (types["parent"].type, types["parent"].many, types["parent"].required) == (str, False, False)
    assert (types["record"].type, types["record"].required) == (Record, True)
    assert not slot_types(ENTITY_SHAPES["service"])["codedType"].many  # CSD 2014: exactly one


def readme_targets() -> dict[str, list[tuple[str, bool, bool]]]:
    """mappings/README.md's target table: entity → (target, required, many) in order."""
    text = README.read_text(encoding="utf-8")
    table = text.split("| entity | targets (required in bold) |", 1)[1].split("\n\n", 1)[0]
    rows: dict[str, list[tuple[str, bool, bool]]] = {}
    for line in table.splitlines()[2:]:
        entity, targets = (cell.strip() for cell in line.strip("|").split("|"))
        rows[entity] = [
            (match[1], match[0] == "**", match[2] == "*")
            for match in re.findall(r"(\*\*)?`([^`]+)`(?:\*\*)?(\*?)", targets)
        ]
    return rows


def test_the_mappings_readme_lists_the_declared_targets() -> None:
    expected = {
        name: [(t.name, t.required, t.many) for t in kind.targets.values()]
        for name, kind in ENTITY_KINDS.items()
    }
    assert readme_targets() == expected


def test_the_writer_follows_the_declared_sequence() -> None:
    """A service's entry is written in its declared order; a shape declared in another order is written in
    that order (the writer reads the declaration, it does not repeat it)."""
    record = Record(datetime(2020, 1, 1), datetime(2020, 1, 1), "Active")
    service = Service("s", CodedType("c", "x"), record)
    root = etree.fromstring(writer.service_bytes(service))
    assert [etree.QName(child).localname for child in root] == ["codedType", "record"]
    shape = ENTITY_SHAPES["service"]
    reordered = replace(shape, slots=(shape.slots[0], shape.slots[3], shape.slots[2], shape.slots[1]))
    data = writer._entry_writer(reordered)(service)
    assert [etree.QName(child).localname for child in etree.fromstring(data)] == ["record", "codedType"]


@pytest.mark.parametrize(
    "slots",
    [
        (Slot("codedType", "coded_type"), Slot("@entityID", "entity_id", Form.ATTRIBUTE)),
        (Slot("@entityID", "entity_id", Form.ATTRIBUTE), Slot("@other", "record", Form.ATTRIBUTE)),
    ],
)
def test_a_shape_without_entity_id_first_and_alone_is_refused(slots: tuple[Slot, ...]) -> None:
    shape = Shape("service", ENTITY_SHAPES["service"].directory, Service, slots)
    with pytest.raises(ValueError, match="@entityID must be the first slot"):
        writer._entry_writer(shape)
