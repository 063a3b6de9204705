"""The source-path syntax of the mapping tables: dotted FHIR fields plus `[key=value]` filters.

translate/: pure mapping engine. A path selects values; it never computes (mappings/README.md, "Path syntax").
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from bridge.errors import PathSyntaxError as PathSyntaxError  # raised here; importers keep this path

_FIELD = r"[A-Za-z_][A-Za-z0-9_]*"
# One step: a field name, then zero or more filters. A filter value runs to the next `]`, so URLs with
# dots, slashes and colons need no quoting (`identifier[system=https://oi.esante.gouv.fr]`).
_STEP = re.compile(rf"(?P<field>{_FIELD})(?P<filters>(?:\[{_FIELD}=[^\]\[]+\])*)")
_FILTER = re.compile(rf"\[(?P<key>{_FIELD})=(?P<value>[^\]\[]+)\]")


@dataclass(frozen=True, slots=True)
class Step:
    field: str
    filters: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True, slots=True)
class SourcePath:
    """A parsed source path; `select` returns every value it reaches, arrays flattened, in document order."""

    text: str
    steps: tuple[Step, ...]

    @classmethod
    def parse(cls, text: str) -> SourcePath:
        if not isinstance(text, str) or not text:
            raise PathSyntaxError("a path must be a non-empty string")
        steps: list[Step] = []
        position = 0
        while True:
            match = _STEP.match(text, position)
            if match is None:
                raise PathSyntaxError(f"expected a field name at character {position + 1} of {text!r}")
            filters = tuple((f["key"], f["value"]) for f in _FILTER.finditer(match["filters"]))
            steps.append(Step(match["field"], filters))
            position = match.end()
            if position == len(text):
                return cls(text, tuple(steps))
            if text[position] != ".":
                raise PathSyntaxError(
                    f"unexpected {text[position]!r} at character {position + 1} of {text!r}"
                )
            position += 1

    def select(self, resource: Any) -> list[Any]:
        # The hot loop of every mapping (tens of calls per entity): flattening and filtering inlined.
        nodes: list[Any] = [resource]
        for step in self.steps:
            field, filters = step.field, step.filters
            found: list[Any] = []
            for node in nodes:
                if not isinstance(node, dict):
                    continue  # a primitive where an object was expected: nothing below it
                value = node.get(field)
                if value is None:
                    continue
                if isinstance(value, list):
                    for item in value:
                        if item is not None and (not filters or _matches(item, filters)):
                            found.append(item)
                elif not filters or _matches(value, filters):
                    found.append(value)
            if not found:
                return found
            nodes = found
        return nodes

    def __str__(self) -> str:
        return self.text


def _matches(node: Any, filters: tuple[tuple[str, str], ...]) -> bool:
    if not isinstance(node, dict):
        return False
    for key, value in filters:
        found = node.get(key)
        if found.__class__ is not str:  # exactly str: a str subclass or a number goes through _scalar
            found = _scalar(found)
        if found != value:
            return False
    return True


def _scalar(value: Any) -> str | None:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str | int | float):
        return str(value)
    return None
