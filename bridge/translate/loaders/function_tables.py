"""Loads the stored functions and the ITI-74 entry (functions.yaml) and the legacy regions (regions.csv).
translate/loaders/: checks resolvers, bridge filters and delta selections against their closed lists.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from bridge.errors import MappingTableError
from bridge.model import Directory, Envelope
from bridge.translate.delta import POST_STEP, SELECTIONS
from bridge.translate.loaders.reading import RESOURCE_TYPE, Section, read_csv, read_yaml
from bridge.translate.resolvers import PARAMETERS, RESOLVERS
from bridge.translate.select import FILTERS
from bridge.translate.tables import FUNCTIONS, MODIFICATIONS_URN, REGIONS, FunctionSpec, QuerySpec, Region

_PLACEHOLDER = re.compile(r"\{([^{}]*)\}")


def load_functions(
    directory: Path,
) -> tuple[dict[str, FunctionSpec], dict[str, str], dict[Envelope, bool], ZoneInfo, str, FunctionSpec]:
    top = Section(FUNCTIONS, None, "", read_yaml(directory, FUNCTIONS))
    top.only("defaults", "functions", "modifications")
    defaults = Section(FUNCTIONS, "defaults", "defaults", top.data.get("defaults"))
    defaults.only("encapsulated", "request_timezone", "region_tag_system", "note")
    enc = Section(FUNCTIONS, "defaults", "defaults.encapsulated", defaults.data.get("encapsulated"))
    enc.only(*(e.value for e in Envelope))
    encapsulated: dict[Envelope, bool] = {}
    for envelope in Envelope:
        if envelope.value not in enc.data:
            raise enc.fail(envelope.value, "required")
        encapsulated[envelope] = enc.flag(envelope.value)
    tz_name = defaults.req("request_timezone")
    try:
        timezone = ZoneInfo(tz_name)
    except (ZoneInfoNotFoundError, ValueError) as error:
        raise defaults.fail("request_timezone", f"unknown time zone {tz_name!r}") from error
    tag_system = defaults.req("region_tag_system")

    raw_functions = top.data.get("functions")
    if not isinstance(raw_functions, dict) or not raw_functions:
        raise top.fail("functions", "must be a non-empty mapping of function name to function")
    functions: dict[str, FunctionSpec] = {}
    aliases: dict[str, str] = {}
    official: set[tuple[str | None, str]] = set()
    for name, raw in raw_functions.items():
        spec = _load_function(str(name), raw)
        for key in spec.official:
            if key in official:
                raise MappingTableError(
                    FUNCTIONS, spec.name, f"functions.{name}.official", f"{key} is declared twice"
                )
            official.add(key)
        for urn in (spec.urn, *spec.aliases):
            if urn in functions or urn in aliases:
                raise MappingTableError(
                    FUNCTIONS, spec.name, f"functions.{name}", f"URN {urn!r} is declared twice"
                )
            if urn == spec.urn:
                functions[urn] = spec
            else:
                aliases[urn] = spec.urn
    if top.data.get("modifications") is None:
        raise top.fail("modifications", "required: the ITI-74 getModificationsRequest entry")
    modifications = _load_function("modifications", top.data["modifications"], modifications=True)
    if modifications.delta != "entities":
        raise MappingTableError(
            FUNCTIONS,
            "modifications",
            "modifications.delta",
            "ITI-74 answers the changed entities: `entities`",
        )
    if modifications.directories != frozenset(Directory):
        raise MappingTableError(
            FUNCTIONS, "modifications", "modifications.directories", "ITI-74 fills every directory"
        )
    return functions, aliases, encapsulated, timezone, tag_system, modifications


def load_regions(directory: Path) -> dict[str, Region]:
    columns = ("code", "name", "region_codes", "confidence", "source", "note")
    regions: dict[str, Region] = {}
    covered: dict[str, str] = {}
    for rule, row in read_csv(directory, REGIONS, columns):
        for column in ("code", "name", "region_codes", "source"):
            if not row[column]:
                raise MappingTableError(REGIONS, rule, column, "required")
        code = row["code"]
        if not re.fullmatch(r"[a-z][a-z0-9-]*", code):
            raise MappingTableError(REGIONS, rule, "code", f"{code!r}: use a-z, 0-9 and '-'")
        if code in regions:
            raise MappingTableError(REGIONS, rule, "code", f"duplicate region {code!r}")
        if row["confidence"] not in ("sourced", "inferred"):
            raise MappingTableError(REGIONS, rule, "confidence", "must be sourced or inferred")
        region_codes = tuple(row["region_codes"].split())
        for region_code in region_codes:
            if not re.fullmatch(r"[0-9]{2}", region_code):
                raise MappingTableError(REGIONS, rule, "region_codes", f"not a TRE_R30 code: {region_code!r}")
            if region_code in covered:
                raise MappingTableError(
                    REGIONS,
                    rule,
                    "region_codes",
                    f"{region_code} already covered by {covered[region_code]!r}",
                )
            covered[region_code] = code
        regions[code] = Region(code, row["name"], region_codes, row["confidence"], row["source"], row["note"])
    return regions


def _load_function(name: str, raw: Any, *, modifications: bool = False) -> FunctionSpec:
    """One stored function, or (`modifications`) the ITI-74 entry: the same shape without URN or aliases."""
    where = "modifications" if modifications else f"functions.{name}"
    section = Section(FUNCTIONS, name, where, raw)
    keys = ["description", "parameters", "queries", "directories", "note", "result", "bridge_filters", "post"]
    section.only(*keys, "delta", *(() if modifications else ("urn", "aliases", "official")))
    urn = MODIFICATIONS_URN if modifications else section.req("urn")
    if not urn.startswith("urn:"):
        raise section.fail("urn", "must be a URN")
    delta = section.text("delta", required=False)
    if delta is not None and delta not in SELECTIONS:
        raise section.fail(
            "delta", f"unknown delta selection {delta!r} (closed list: {', '.join(SELECTIONS)})"
        )
    parameters = section.strings("parameters", required=True)
    for parameter in parameters:
        if parameter not in PARAMETERS and not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_.-]*", parameter):
            raise section.fail("parameters", f"not a parameter name: {parameter!r}")
    directories: set[Directory] = set()
    for value in section.strings("directories", required=True):
        try:
            directories.add(Directory(value))
        except ValueError:
            allowed = ", ".join(d.value for d in Directory)
            raise section.fail("directories", f"unknown directory {value!r} (one of {allowed})") from None
    raw_queries = section.data.get("queries")
    if not isinstance(raw_queries, list) or not raw_queries:
        raise section.fail("queries", "must be a non-empty list")
    queries = []
    for number, raw_query in enumerate(raw_queries):
        query = Section(FUNCTIONS, name, f"{where}.queries[{number}]", raw_query)
        query.only("resource", "purpose", "params")
        resource = query.req("resource")
        if not RESOURCE_TYPE.match(resource):
            raise query.fail("resource", f"not a FHIR resource type: {resource!r}")
        raw_params = query.data.get("params")
        if not isinstance(raw_params, list) or not raw_params:
            raise query.fail("params", "must be a non-empty list of [name, value] pairs")
        params = []
        for index, pair in enumerate(raw_params):
            at = f"params[{index}]"
            if not (
                isinstance(pair, list) and len(pair) == 2 and all(isinstance(p, str) and p for p in pair)
            ):
                raise query.fail(at, "must be a [name, value] pair of non-empty strings")
            if pair[0] == "_count":
                raise query.fail(at, "_count is the client's (upstream_page_size), not the plan's")
            for placeholder in _PLACEHOLDER.findall(pair[1]):
                if placeholder not in RESOLVERS:
                    raise query.fail(
                        at,
                        f"unknown resolver {{{placeholder}}} (closed list: {', '.join(sorted(RESOLVERS))})",
                    )
            params.append((pair[0], pair[1]))
        queries.append(QuerySpec(resource, tuple(params), query.text("purpose", required=False) or ""))
    result, bridge_filters, post = _load_selection(section, parameters, directories)
    if delta is not None and result is not None:
        raise section.fail("result", "a delta function answers every change: no start/max paging")
    if post != (POST_STEP[delta] if delta is not None else None):
        pairs = ", ".join(f"delta {d} → post {p or '(none)'}" for d, p in POST_STEP.items())
        raise section.fail(
            "post", f"a post step belongs to its delta selection, written from the spool ({pairs})"
        )
    return FunctionSpec(
        name=name,
        urn=urn,
        aliases=section.strings("aliases"),
        description=section.req("description"),
        parameters=parameters,
        queries=tuple(queries),
        directories=frozenset(directories),
        note=section.req("note"),
        result=result,
        bridge_filters=bridge_filters,
        post=post,
        delta=delta,
        official=_load_official(section),
    )


def _load_official(section: Section) -> tuple[tuple[str | None, str], ...]:
    """`official`: the ROR v2.4 profile requests a function answers, each {urn (optional), element}."""
    raw = section.data.get("official")
    if raw is None:
        return ()
    if not isinstance(raw, list) or not raw:
        raise section.fail("official", "must be a non-empty list of {urn, element}")
    found: list[tuple[str | None, str]] = []
    for number, item in enumerate(raw):
        entry = Section(section.table, section.rule, f"{section.where}.official[{number}]", item)
        entry.only("urn", "element")
        urn = entry.text("urn", required=False)
        if urn is not None and not urn.startswith("urn:"):
            raise entry.fail("urn", "must be a URN")
        element = entry.req("element")
        if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_.-]*", element):
            raise entry.fail("element", f"not an XML element name: {element!r}")
        found.append((urn, element))
    return tuple(found)


def _load_selection(
    section: Section, parameters: tuple[str, ...], directories: set[Directory]
) -> tuple[Directory | None, tuple[str, ...], str | None]:
    """`result`, `bridge_filters` and `post` of a function (what select.py does after mapping)."""
    result: Directory | None = None
    raw_result = section.text("result", required=False)
    if raw_result:
        try:
            result = Directory(raw_result)
        except ValueError:
            raise section.fail("result", f"unknown directory {raw_result!r}") from None
        if result not in directories:
            raise section.fail("result", f"{raw_result} is not one of the function's directories")
    elif any(p in parameters for p in ("start", "max")):
        raise section.fail("result", "required when the function accepts start/max (the directory they page)")
    bridge_filters = section.strings("bridge_filters")
    for parameter in bridge_filters:
        if parameter not in parameters:
            raise section.fail("bridge_filters", f"{parameter!r} is not one of the function's parameters")
        if parameter not in FILTERS:
            raise section.fail(
                "bridge_filters", f"no bridge filter for {parameter!r} (closed list: {', '.join(FILTERS)})"
            )
    post = section.text("post", required=False) or None
    steps = [step for step in POST_STEP.values() if step is not None]
    if post is not None and post not in steps:
        raise section.fail("post", f"unknown step {post!r} (closed list: {', '.join(steps)})")
    return result, bridge_filters, post
