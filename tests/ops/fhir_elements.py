"""Builds `bridge/translate/fhir-r4b-elements.json` from the fhir.resources R4B models (a dev dependency):
every element of the resources the mapping tables read and of the types reachable from them.

`python -m tests.ops.fhir_elements` rewrites the file; tests/ops/test_mappings_check.py checks it is current.
"""

from __future__ import annotations

import json
import typing
from pathlib import Path
from typing import Any

from bridge.translate.fhirpaths import ELEMENTS_FILE, PRIMITIVE, ROOTS


def _type_names(annotation: Any) -> set[str]:
    names: set[str] = set()

    def walk(node: Any) -> None:
        for argument in typing.get_args(node):
            walk(argument)
        name = getattr(node, "__name__", "")
        if name.endswith("Type") and name != "NoneType":
            names.add(name.removesuffix("Type"))

    walk(annotation)
    return names


def build() -> dict[str, dict[str, list[str]]]:
    from fhir.resources.R4B import get_fhir_model_class

    table: dict[str, dict[str, list[str]]] = {}
    pending = list(ROOTS)
    while pending:
        type_name = pending.pop()
        if type_name in table:
            continue
        model = get_fhir_model_class(type_name)
        elements: dict[str, list[str]] = {}
        for field in model.model_fields.values():
            extra = field.json_schema_extra if isinstance(field.json_schema_extra, dict) else {}
            if not extra.get("element_property") or field.alias is None:
                continue
            types = sorted(_type_names(field.annotation) - {"FHIRPrimitiveExtension"})
            if not types:
                elements[field.alias] = [PRIMITIVE]
                continue
            elements[field.alias] = types
            pending.extend(t for t in types if t not in ("Resource",) and t not in table)
        table[type_name] = dict(sorted(elements.items()))
    return dict(sorted(table.items()))


def render() -> str:
    return json.dumps(build(), indent=0, sort_keys=True) + "\n"


if __name__ == "__main__":
    Path(ELEMENTS_FILE).write_text(render(), encoding="utf-8")
