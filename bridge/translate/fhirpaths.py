"""Checks the mapping tables' source paths against the FHIR R4B element definitions, offline.

translate/: pure. The element table `fhir-r4b-elements.json` (type → element → types) ships with the
package, generated from the fhir.resources R4B models by `python -m tests.ops.fhir_elements`, so a
production install checks paths without fhir.resources.
"""

from __future__ import annotations

import difflib
import json
from collections.abc import Iterable, Mapping
from functools import cache
from pathlib import Path

from bridge.translate.paths import SourcePath
from bridge.translate.tables import REGIONS, Mappings

ELEMENTS_FILE = Path(__file__).with_name("fhir-r4b-elements.json")
PRIMITIVE = "primitive"
# The resources the mapping tables read; every type reachable from them is in the table.
ROOTS = ("HealthcareService", "Location", "Organization", "Practitioner", "PractitionerRole")
# `_field` is a primitive's id and extensions (FHIR JSON §2.6.2).
PRIMITIVE_EXTENSION = "(primitive id and extension)"
PRIMITIVE_ELEMENT = {"id": [PRIMITIVE], "extension": ["Extension"]}


@cache
def elements() -> Mapping[str, Mapping[str, list[str]]]:
    loaded: dict[str, dict[str, list[str]]] = json.loads(ELEMENTS_FILE.read_text(encoding="utf-8"))
    return loaded


def _children(types: Iterable[str]) -> dict[str, list[str]]:
    table = elements()
    merged: dict[str, list[str]] = {}
    for type_name in types:
        found = PRIMITIVE_ELEMENT if type_name == PRIMITIVE_EXTENSION else table.get(type_name, {})
        for name, element_types in found.items():
            merged.setdefault(name, []).extend(element_types)
    return merged


def check_path(resource: str, path: SourcePath) -> str | None:
    """None when every step of `path` is an element of the type reached so far, else what is wrong."""
    if resource not in elements():
        return f"{resource} is not a resource type this check knows ({', '.join(ROOTS)})"
    types: list[str] = [resource]
    where = resource
    for step in path.steps:
        children = _children(types)
        field = step.field
        if field.startswith("_") and children.get(field[1:]) == [PRIMITIVE]:
            types = [PRIMITIVE_EXTENSION]
        elif field in children:
            types = children[field]
        else:
            close = difflib.get_close_matches(field, list(children), n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            return f"{where} has no element {field!r}{hint}"
        if "Resource" in types:
            return None  # a contained resource: any type, not checked further
        where = f"{where}.{field}"
        reachable = _children(types)
        for key, _ in step.filters:
            if key not in reachable:
                return f"{where} has no element {key!r} to filter on"
    return None


# TRE_R30 RegionOM: the 18 region codes of the national nomenclature (INSEE regions, overseas included).
TRE_R30_CODES = frozenset(
    [
        "01",
        "02",
        "03",
        "04",
        "06",
        "11",
        "24",
        "27",
        "28",
        "32",
        "44",
        "52",
        "53",
        "75",
        "76",
        "84",
        "93",
        "94",
    ]
)


def check_tables(mappings: Mappings) -> list[str]:
    """What `ror-bridge mappings check` finds beyond loading: source paths that are no FHIR R4B element,
    region codes that are no TRE_R30 code. Each problem names the table, the rule and the path."""
    problems = []
    for entity in mappings.entities.values():
        for rule in entity.rules:
            if rule.source is None:
                continue
            problem = check_path(entity.resource, rule.source)
            if problem is not None:
                problems.append(f"{entity.table}: rule {rule.id}: source {rule.source.text!r}: {problem}")
    for region in mappings.regions.values():
        for code in region.region_codes:
            if code not in TRE_R30_CODES:
                problems.append(f"{REGIONS}: region {region.code}: {code!r} is not a TRE_R30 region code")
    return problems
