"""Reading a mapping table: strict YAML (no duplicate keys), CSV with a fixed header, and typed access to a
YAML section whose errors say where. translate/loaders/: every problem is a MappingTableError saying where.
"""

from __future__ import annotations

import csv
import re
from pathlib import Path
from typing import Any

import yaml

from bridge.errors import MappingTableError

# A FHIR resource type, as the tables name one (entity tables, function queries).
RESOURCE_TYPE = re.compile(r"^[A-Z][A-Za-z]+$")


class _StrictLoader(yaml.SafeLoader):
    """Safe YAML that refuses duplicate keys (a silently overridden rule would go unreviewed)."""


def _no_duplicates(loader: _StrictLoader, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
    seen: set[Any] = set()
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=deep)
        if key in seen:
            raise yaml.constructor.ConstructorError(None, None, f"duplicate key {key!r}", key_node.start_mark)
        seen.add(key)
    return loader.construct_mapping(node, deep=deep)


_StrictLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _no_duplicates)


def read_yaml(directory: Path, table: str) -> Any:
    path = directory / table
    if not path.is_file():
        raise MappingTableError(table, None, None, f"file not found in {directory}")
    try:
        return yaml.load(path.read_text(encoding="utf-8"), Loader=_StrictLoader)  # noqa: S506 -- SafeLoader subclass
    except yaml.MarkedYAMLError as error:
        mark = error.problem_mark
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else None
        raise MappingTableError(table, None, where, f"invalid YAML: {error.problem}") from error
    except (yaml.YAMLError, UnicodeDecodeError) as error:
        raise MappingTableError(table, None, None, f"invalid YAML: {error}") from error


def read_csv(directory: Path, table: str, columns: tuple[str, ...]) -> list[tuple[str, dict[str, str]]]:
    """Rows as (rule name "row N", values); blank lines and lines starting with # are skipped."""
    path = directory / table
    if not path.is_file():
        raise MappingTableError(table, None, None, f"file not found in {directory}")
    lines = [
        (number, line)
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1)
        if line.strip() and not line.lstrip().startswith("#")
    ]
    if not lines:
        raise MappingTableError(table, None, None, "empty table")
    reader = csv.reader([line for _, line in lines])
    header = [h.strip() for h in next(reader)]
    if tuple(header) != columns:
        raise MappingTableError(
            table, None, "header", f"columns must be {','.join(columns)}, found {','.join(header)}"
        )
    rows = []
    for (number, _), cells in zip(lines[1:], reader, strict=True):
        if len(cells) != len(columns):
            raise MappingTableError(
                table, f"row {number}", None, f"{len(cells)} cells, expected {len(columns)}"
            )
        rows.append((f"row {number}", {c: v.strip() for c, v in zip(columns, cells, strict=True)}))
    return rows


class Section:
    """A YAML mapping being validated: typed access with errors that say where."""

    def __init__(self, table: str, rule: str | None, where: str, data: Any) -> None:
        if not isinstance(data, dict):
            raise MappingTableError(table, rule, where or None, "expected a mapping")
        self.table, self.rule, self.where, self.data = table, rule, where, data

    def at(self, key: str) -> str:
        return f"{self.where}.{key}" if self.where else key

    def fail(self, key: str | None, problem: str) -> MappingTableError:
        return MappingTableError(
            self.table, self.rule, self.at(key) if key else (self.where or None), problem
        )

    def only(self, *allowed: str) -> None:
        unknown = sorted(set(self.data) - set(allowed))
        if unknown:
            raise self.fail(str(unknown[0]), f"unknown key (allowed: {', '.join(allowed)})")

    def text(self, key: str, required: bool = True) -> str | None:
        value = self.data.get(key)
        if value is None:
            if required:
                raise self.fail(key, "required")
            return None
        if not isinstance(value, str) or not value.strip():
            raise self.fail(key, "must be a non-empty string")
        return value.strip()

    def req(self, key: str) -> str:
        value = self.text(key)
        if value is None:  # unreachable: text(required=True) raises first; keeps the type exact
            raise self.fail(key, "required")
        return value

    def strings(self, key: str, required: bool = False) -> tuple[str, ...]:
        value = self.data.get(key)
        if value is None:
            if required:
                raise self.fail(key, "required")
            return ()
        if not isinstance(value, list) or not all(isinstance(v, str) and v.strip() for v in value):
            raise self.fail(key, "must be a list of non-empty strings")
        return tuple(v.strip() for v in value)

    def flag(self, key: str) -> bool:
        value = self.data.get(key, False)
        if not isinstance(value, bool):
            raise self.fail(key, "must be true or false")
        return value
