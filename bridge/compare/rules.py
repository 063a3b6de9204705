"""The comparison's rules table (`mappings/compare.yaml`) and the code tables it reads, loaded and validated.

compare/ (side-by-side comparison). Pure data: how entities are matched across systems, which fields count,
how coding schemes (OID or FHIR system URL) and crosswalked codes are made comparable.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from bridge.errors import CompareRulesError

RULES_FILE = "compare.yaml"
ENTITY_ID = "entityID"
# A match step `via:KIND`: an entity is matched as the entity of KIND sharing its entityID on its own side was
# (a v2.4 csd:service carries no identifier but the entityID of its offer's UE facility).
VIA = "via:"
SIDES = ("legacy", "bridge")


@dataclass(frozen=True)
class KindRule:
    name: str
    element: str
    coded: frozenset[str]


@dataclass(frozen=True)
class IdentifierRule:
    name: str
    other_id: frozenset[str]
    elements: frozenset[str]
    entity_id_prefixes: tuple[str, ...]


@dataclass(frozen=True)
class CompareRules:
    """Everything `compare.yaml` says, with the scheme equivalences of systems.csv and the crosswalk rows."""

    kinds: tuple[KindRule, ...]
    identifiers: Mapping[str, IdentifierRule]
    match: Mapping[str, tuple[str, ...]]
    key_attributes: frozenset[str]
    ignore: tuple[str, ...]
    ordered: frozenset[str]
    opaque: frozenset[str]
    references: frozenset[str]
    region_elements: frozenset[str]
    shadow_default: str
    shadow_functions: Mapping[str, str]
    schemes: Mapping[str, str] = field(default_factory=dict)  # spelling (URL, OID) -> canonical scheme
    crosswalk: Mapping[tuple[str, str], tuple[str, str]] = field(default_factory=dict)
    crosswalk_targets: frozenset[str] = frozenset()
    regions: Mapping[str, str] = field(default_factory=dict)  # TRE_R30 code -> legacy region code
    functions: Mapping[str, str] = field(default_factory=dict)  # function URN -> function name

    def scheme(self, value: str) -> str:
        """The canonical name of a coding scheme or assigning authority (an OID when one is known)."""
        spelling = value.strip()
        if spelling.lower().startswith("urn:oid:"):
            spelling = spelling[8:]
        return self.schemes.get(spelling.rstrip("/").lower(), spelling)

    def code_key(self, scheme: str, code: str) -> tuple[str, str]:
        """(scheme, code) after the crosswalk: a v3 code and its v2.4 crosswalk value give the same key."""
        canonical = self.scheme(scheme)
        code = code.strip()
        if canonical not in self.crosswalk_targets:
            for source in (canonical, "*"):
                target = self.crosswalk.get((source, code))
                if target is not None:
                    return target
        return canonical, code

    def match_order(self, kind: str) -> tuple[str, ...]:
        return self.match.get(kind, (ENTITY_ID,))

    def answered_by(self, function: str) -> str:
        """`legacy` or `bridge`: which side answers the client in shadow mode for this function."""
        return self.shadow_functions.get(function, self.shadow_default)


def _strings(raw: Any, where: str) -> list[str]:
    if raw is None:
        return []
    if not isinstance(raw, list) or not all(isinstance(item, str | int) for item in raw):
        raise CompareRulesError(f"{where}: expected a list of strings")
    return [str(item) for item in raw]


def _csv_rows(path: Path) -> list[dict[str, str]]:
    text = path.read_text("utf-8")
    lines = [line for line in text.splitlines() if line.strip() and not line.startswith("#")]
    return list(csv.DictReader(io.StringIO("\n".join(lines))))


def _schemes(mappings_dir: Path) -> dict[str, str]:
    """Every spelling of a scheme (system URL, OID) -> its canonical name (the OID when known)."""
    schemes: dict[str, str] = {}
    path = mappings_dir / "codes" / "systems.csv"
    if not path.exists():
        return schemes
    for row in _csv_rows(path):
        system = (row.get("system") or "").strip()
        oid = (row.get("oid") or "").strip()
        canonical = oid or system
        for spelling in (system, oid):
            if spelling:
                schemes[spelling.rstrip("/").lower()] = canonical
    return schemes


def load_rules(mappings_dir: Path) -> CompareRules:
    """Read and validate `compare.yaml` in this mappings directory (and the tables it names)."""
    path = mappings_dir / RULES_FILE
    try:
        raw = yaml.safe_load(path.read_text("utf-8"))
    except FileNotFoundError as error:
        raise CompareRulesError(f"{path}: missing") from error
    except yaml.YAMLError as error:
        raise CompareRulesError(f"{path}: not YAML ({error})") from error
    if not isinstance(raw, dict):
        raise CompareRulesError(f"{path}: expected a mapping")
    known = {
        "kinds",
        "identifiers",
        "match",
        "key_attributes",
        "ignore",
        "ordered",
        "opaque",
        "references",
        "region_elements",
        "crosswalks",
        "shadow",
    }
    unknown = set(raw) - known
    if unknown:
        raise CompareRulesError(f"{path}: unknown keys {sorted(unknown)}")
    kinds = []
    for index, item in enumerate(raw.get("kinds") or []):
        if not isinstance(item, dict) or not item.get("name") or not item.get("element"):
            raise CompareRulesError(f"{path}: kinds[{index}]: needs `name` and `element`")
        kinds.append(
            KindRule(
                name=str(item["name"]),
                element=str(item["element"]),
                coded=frozenset(_strings(item.get("coded"), f"{path}: kinds[{index}].coded")),
            )
        )
    identifiers: dict[str, IdentifierRule] = {}
    for name, item in (raw.get("identifiers") or {}).items():
        if not isinstance(item, dict):
            raise CompareRulesError(f"{path}: identifiers.{name}: expected a mapping")
        extra = set(item) - {"other_id", "elements", "entity_id_prefixes"}
        if extra:
            raise CompareRulesError(f"{path}: identifiers.{name}: unknown keys {sorted(extra)}")
        identifiers[str(name)] = IdentifierRule(
            name=str(name),
            other_id=frozenset(_strings(item.get("other_id"), f"{path}: identifiers.{name}.other_id")),
            elements=frozenset(_strings(item.get("elements"), f"{path}: identifiers.{name}.elements")),
            entity_id_prefixes=tuple(
                _strings(item.get("entity_id_prefixes"), f"{path}: identifiers.{name}.entity_id_prefixes")
            ),
        )
        if not (
            identifiers[name].other_id or identifiers[name].elements or identifiers[name].entity_id_prefixes
        ):
            raise CompareRulesError(f"{path}: identifiers.{name}: says nowhere to find it")
    match: dict[str, tuple[str, ...]] = {}
    for kind, order in (raw.get("match") or {}).items():
        steps = _strings(order, f"{path}: match.{kind}")
        for step in steps:
            if step.startswith(VIA):
                if not step[len(VIA) :].strip():
                    raise CompareRulesError(f"{path}: match.{kind}: {step!r}: via: names no kind")
                if step[len(VIA) :].strip() == str(kind):
                    raise CompareRulesError(
                        f"{path}: match.{kind}: {step!r}: a kind cannot be matched via itself"
                    )
                continue
            if step != ENTITY_ID and step not in identifiers:
                raise CompareRulesError(
                    f"{path}: match.{kind}: {step!r} is not an identifier of `identifiers`"
                )
        match[str(kind)] = tuple(
            f"{VIA}{step[len(VIA) :].strip()}" if step.startswith(VIA) else step for step in steps
        )
    shadow = raw.get("shadow") or {}
    default = str(shadow.get("default", "bridge"))
    functions = {str(k): str(v) for k, v in (shadow.get("functions") or {}).items()}
    for name, side in [("default", default), *functions.items()]:
        if side not in SIDES:
            raise CompareRulesError(f"{path}: shadow.{name}: {side!r} is neither `legacy` nor `bridge`")
    schemes = _schemes(mappings_dir)
    rules = CompareRules(
        kinds=tuple(kinds),
        identifiers=identifiers,
        match=match,
        key_attributes=frozenset(_strings(raw.get("key_attributes"), f"{path}: key_attributes")),
        ignore=tuple(_strings(raw.get("ignore"), f"{path}: ignore")),
        ordered=frozenset(_strings(raw.get("ordered"), f"{path}: ordered")),
        opaque=frozenset(_strings(raw.get("opaque"), f"{path}: opaque")),
        references=frozenset(_strings(raw.get("references"), f"{path}: references")),
        region_elements=frozenset(_strings(raw.get("region_elements"), f"{path}: region_elements")),
        shadow_default=default,
        shadow_functions=functions,
        schemes=schemes,
    )
    crosswalk: dict[tuple[str, str], tuple[str, str]] = {}
    targets: set[str] = set()
    for index, item in enumerate(raw.get("crosswalks") or []):
        if not isinstance(item, dict) or not item.get("table"):
            raise CompareRulesError(f"{path}: crosswalks[{index}]: needs `table`")
        table = mappings_dir / str(item["table"])
        if not table.exists():
            raise CompareRulesError(f"{path}: crosswalks[{index}]: no table {item['table']}")
        sources = [rules.scheme(s) for s in _strings(item.get("source_systems"), f"{path}: crosswalks")]
        for row in _csv_rows(table):
            source, code, scheme = (row.get(k, "") or "" for k in ("source_code", "code", "coding_scheme"))
            if not source or not code or not scheme:
                raise CompareRulesError(f"{table}: a row lacks source_code, code or coding_scheme")
            target = (rules.scheme(scheme), code.strip())
            targets.add(target[0])
            system_of_row, bar, code_of_row = source.strip().rpartition("|")
            if bar:  # a `<system>|<code>` row names its own source system
                crosswalk[(rules.scheme(system_of_row), code_of_row)] = target
                continue
            for system in sources or ["*"]:
                crosswalk[(system, source.strip())] = target
    regions: dict[str, str] = {}
    regions_csv = mappings_dir / "regions.csv"
    if regions_csv.exists():
        for row in _csv_rows(regions_csv):
            for code in (row.get("region_codes") or "").split():
                regions[code] = (row.get("code") or "").strip()
    functions_by_urn: dict[str, str] = {}
    functions_yaml = mappings_dir / "functions.yaml"
    if functions_yaml.exists():
        registry = yaml.safe_load(functions_yaml.read_text("utf-8")) or {}
        for name, item in (registry.get("functions") or {}).items():
            if isinstance(item, dict):
                for urn in [item.get("urn"), *(item.get("aliases") or [])]:
                    if urn:
                        functions_by_urn[str(urn)] = str(name)
    return CompareRules(
        **{
            **rules.__dict__,
            "crosswalk": crosswalk,
            "crosswalk_targets": frozenset(targets),
            "regions": regions,
            "functions": functions_by_urn,
        }
    )


def describe(rules: CompareRules) -> str:
    """One line for `ror-bridge mappings check`."""
    return (
        f"compare.yaml: {len(rules.identifiers)} identifier(s), match rules for {len(rules.match)} kind(s), "
        f"{len(rules.ignore)} ignore rule(s), {len(rules.crosswalk)} crosswalk row(s), "
        f"shadow answers from {rules.shadow_default} ({len(rules.shadow_functions)} override(s))"
    )
