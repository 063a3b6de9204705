"""Source-path syntax: parsing, errors, selection with filters."""

from __future__ import annotations

import pytest

from bridge.translate.paths import PathSyntaxError, SourcePath

RESOURCE = {
    "identifier": [
        {"system": "https://oi.esante.gouv.fr", "value": "OI-1"},
        {"system": "urn:oid:1.2.250.1.71.4.2.2", "value": "392131725800020"},
        {"value": "no-system"},
    ],
    "type": [
        {"coding": [{"system": "a", "code": "1"}, {"system": "b", "code": "2"}]},
        {"coding": [{"system": "a"}]},
    ],
    "name": "Pôle",
    "active": True,
    "notAvailable": [{"id": "closingReopeningDate", "during": {"start": "2024-01-01"}}],
}


def test_dotted_fields_flatten_arrays_in_document_order() -> None:
    assert SourcePath.parse("type.coding.system").select(RESOURCE) == ["a", "b", "a"]
    assert SourcePath.parse("identifier.value").select(RESOURCE) == ["OI-1", "392131725800020", "no-system"]


def test_filter_value_may_hold_dots_slashes_and_colons() -> None:
    path = SourcePath.parse("identifier[system=https://oi.esante.gouv.fr].value")
    assert path.select(RESOURCE) == ["OI-1"]
    assert SourcePath.parse("identifier[system=urn:oid:1.2.250.1.71.4.2.2].value").select(RESOURCE) == [
        "392131725800020"
    ]


def test_filters_and_booleans() -> None:
    assert SourcePath.parse("notAvailable[id=closingReopeningDate].during.start").select(RESOURCE) == [
        "2024-01-01"
    ]
    assert SourcePath.parse("type.coding[system=a][code=1]").select(RESOURCE) == [
        {"system": "a", "code": "1"}
    ]
    assert SourcePath.parse("active").select(RESOURCE) == [True]
    assert SourcePath.parse("identifier[value=no-system].system").select(RESOURCE) == []


def test_missing_and_primitive_steps_select_nothing() -> None:
    assert SourcePath.parse("partOf.reference").select(RESOURCE) == []
    assert SourcePath.parse("name.value").select(RESOURCE) == []


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("", "non-empty"),
        ("identifier..value", "expected a field name at character 12"),
        ("identifier[system=x", "unexpected '['"),
        ("identifier[system]", "unexpected '['"),
        ("type.coding.code + 1", "unexpected ' '"),
        ("1type", "expected a field name at character 1"),
        ("identifier[system=a]x", "unexpected 'x'"),
    ],
)
def test_invalid_paths_say_where(text: str, fragment: str) -> None:
    with pytest.raises(PathSyntaxError, match=fragment.replace("[", r"\[").replace("+", r"\+")):
        SourcePath.parse(text)
