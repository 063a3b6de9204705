"""The frozen records' slot-setting `__init__` (bridge/model.py, issue 13 item 1) against the dataclass's own.

Each record type is compared with a twin made by `dataclasses.make_dataclass` from the same fields: same
signature, same values set, same defaults and default factories, same errors; and the records stay frozen,
equal, hashable, picklable and `dataclasses.replace`-able.
"""

from __future__ import annotations

import dataclasses
import inspect
import pickle
from typing import Any

import pytest

from bridge import model
from bridge.model import FAST_INIT

HOT = ("ExtensionNode", "Extension", "AddressLine", "OtherID", "Record", "CodedType", "Provider", "Facility")


def _twin(cls: type) -> type:
    """`cls` as `@dataclass(frozen=True, slots=True)` alone would make it (its generated `__init__`)."""
    specs: list[tuple[str, Any, Any]] = []
    for declared in dataclasses.fields(cls):
        if declared.default is not dataclasses.MISSING:
            spec = dataclasses.field(default=declared.default)
        elif declared.default_factory is not dataclasses.MISSING:
            spec = dataclasses.field(default_factory=declared.default_factory)
        else:
            spec = dataclasses.field()
        specs.append((declared.name, declared.type, spec))
    return dataclasses.make_dataclass(cls.__name__, specs, frozen=True, slots=True)


def _values(cls: type) -> dict[str, str]:
    return {declared.name: f"{cls.__name__}.{declared.name}" for declared in dataclasses.fields(cls)}


def _required(cls: type) -> list[str]:
    return [
        declared.name
        for declared in dataclasses.fields(cls)
        if declared.default is dataclasses.MISSING and declared.default_factory is dataclasses.MISSING
    ]


def _error(call: Any) -> str:
    with pytest.raises(TypeError) as raised:
        call()
    return str(raised.value)


def test_every_frozen_record_type_has_the_slot_setting_init() -> None:
    names = {cls.__name__ for cls in FAST_INIT}
    assert set(HOT) <= names
    for cls in FAST_INIT:
        assert "__set_0" in cls.__init__.__globals__, cls  # type: ignore[misc]
    frozen_slots = {
        value
        for value in vars(model).values()
        if dataclasses.is_dataclass(value) and isinstance(value, type) and value.__dataclass_params__.frozen  # type: ignore[attr-defined]
    }
    assert frozen_slots == set(FAST_INIT)


@pytest.mark.parametrize("cls", FAST_INIT, ids=lambda cls: cls.__name__)
def test_same_signature_values_defaults_and_errors_as_the_dataclass_init(cls: type) -> None:
    twin = _twin(cls)
    assert str(inspect.signature(cls)) == str(inspect.signature(twin))
    values = _values(cls)
    positional = cls(*values.values())
    by_name = cls(**values)
    for name, value in values.items():
        assert getattr(positional, name) is value
        assert getattr(by_name, name) is value
    required = {name: values[name] for name in _required(cls)}
    fast, plain = cls(**required), twin(**required)
    for declared in dataclasses.fields(cls):
        assert getattr(fast, declared.name) == getattr(plain, declared.name), declared.name
        if declared.default_factory is not dataclasses.MISSING:  # a fresh value each time
            assert getattr(fast, declared.name) is not getattr(cls(**required), declared.name)
    too_many = [*values.values(), "extra"]
    assert _error(lambda: cls(*too_many)) == _error(lambda: twin(*too_many))
    assert _error(lambda: cls(**values, unknown=1)) == _error(lambda: twin(**values, unknown=1))
    if required:
        assert _error(lambda: cls()) == _error(lambda: twin())


@pytest.mark.parametrize("cls", FAST_INIT, ids=lambda cls: cls.__name__)
def test_records_stay_frozen_equal_hashable_picklable_and_replaceable(cls: type) -> None:
    values = _values(cls)
    record = cls(**values)
    assert record == cls(**values)
    assert hash(record) == hash(cls(**values))
    assert pickle.loads(pickle.dumps(record)) == record  # noqa: S301 — our own bytes
    first = next(iter(values))
    changed = dataclasses.replace(record, **{first: "changed"})
    assert getattr(changed, first) == "changed"
    assert changed != record
    assert repr(record) == repr(_twin(cls)(**values)).replace(_twin(cls).__qualname__, cls.__qualname__)
    with pytest.raises(dataclasses.FrozenInstanceError):
        setattr(record, first, "other")
    assert getattr(record, first) == values[first]


def test_the_model_records_of_a_translation_keep_their_values() -> None:
    node = model.ExtensionNode("adresse", attributes=(("type", "physical"),))
    extension = model.Extension("organisationExtension", "urn:x", node, profile=True)
    assert (node.name, node.text, node.attributes, node.children) == (
        "adresse",
        None,
        (("type", "physical"),),
        (),
    )
    assert extension.content is node
    assert extension.profile is True
    assert extension == model.Extension(
        "organisationExtension", "urn:x", model.ExtensionNode("adresse", None, (("type", "physical"),)), True
    )


@pytest.mark.parametrize(
    "extra",
    [
        {"__post_init__": lambda self: None},
        {"__annotations__": {"late": "int"}, "late": dataclasses.field(default=0, init=False)},
        {"__annotations__": {"named": "int"}, "named": dataclasses.field(default=0, kw_only=True)},
    ],
    ids=["post_init", "init_false", "kw_only"],
)
def test_a_record_the_fast_init_cannot_keep_is_refused_at_import(extra: dict[str, Any]) -> None:
    namespace = {"__annotations__": {"value": "int"}, **extra}
    namespace["__annotations__"] = {"value": "int", **extra.get("__annotations__", {})}
    record = dataclasses.dataclass(frozen=True, slots=True)(type("Late", (), namespace))
    with pytest.raises(TypeError, match="fast init cannot keep"):
        model._slot_setting_init(record)
