"""Loads the code systems (codes/systems.csv), the code tables (codes/*.csv) and the identity schemes
(identities.yaml). translate/loaders/.
"""

from __future__ import annotations

import re
from pathlib import Path

from bridge.errors import MappingTableError
from bridge.model import CodedType
from bridge.translate.codes import CodeEntry, CodeSystem, CodeTable, Systems
from bridge.translate.identity import ANY_SYSTEM, Identities, IdentityScheme
from bridge.translate.loaders.reading import Section, read_csv, read_yaml
from bridge.translate.tables import CODES, IDENTITIES, SYSTEMS


def load_systems(directory: Path) -> Systems:
    columns = ("system", "oid", "name", "kind", "source", "confidence")
    by_url: dict[str, CodeSystem] = {}
    for rule, row in read_csv(directory, SYSTEMS, columns):
        for column in ("system", "name", "source"):
            if not row[column]:
                raise MappingTableError(SYSTEMS, rule, column, "required")
        if row["system"] in by_url:
            raise MappingTableError(SYSTEMS, rule, "system", f"duplicate system {row['system']!r}")
        if row["kind"] not in ("code", "identifier"):
            raise MappingTableError(SYSTEMS, rule, "kind", "must be code or identifier")
        oid = row["oid"] or None
        if oid is not None and not re.fullmatch(r"[0-2](\.(0|[1-9][0-9]*))+", oid):
            raise MappingTableError(SYSTEMS, rule, "oid", f"not an OID: {oid!r} (leave empty when unknown)")
        if row["confidence"] not in ("verified", "unknown"):
            raise MappingTableError(SYSTEMS, rule, "confidence", "must be verified or unknown")
        if oid is None and row["confidence"] == "verified":
            raise MappingTableError(SYSTEMS, rule, "confidence", "a system without OID cannot be verified")
        by_url[row["system"]] = CodeSystem(
            row["system"], oid, row["name"], row["kind"], row["source"], row["confidence"]
        )
    return Systems(by_url)


def load_code_tables(directory: Path, systems: Systems) -> dict[str, CodeTable]:
    columns = ("source_code", "code", "coding_scheme", "display", "note")
    tables: dict[str, CodeTable] = {}
    for path in sorted((directory / CODES).glob("*.csv")):
        if path.name == Path(SYSTEMS).name:
            continue
        table = f"{CODES}/{path.name}"
        entries: dict[str, CodeEntry] = {}
        for rule, row in read_csv(directory, table, columns):
            for column in ("source_code", "code", "coding_scheme", "note"):
                if not row[column]:
                    raise MappingTableError(table, rule, column, "required")
            if row["source_code"] in entries:
                raise MappingTableError(table, rule, "source_code", f"duplicate {row['source_code']!r}")
            # A crosswalk names its target system by URL, like the data: written as its NOS OID when known.
            coded = CodedType(row["code"], systems.scheme(row["coding_scheme"]), row["display"] or None)
            entries[row["source_code"]] = CodeEntry(row["source_code"], coded, row["note"])
        tables[path.stem] = CodeTable(path.stem, entries)
    return tables


def load_identities(directory: Path) -> Identities:
    top = Section(IDENTITIES, None, "", read_yaml(directory, IDENTITIES))
    top.only("schemes", "order", "fallback")
    fallback = Section(IDENTITIES, "fallback", "fallback", top.data.get("fallback"))
    fallback.only("prefix", "note")
    fallback_prefix = fallback.req("prefix")
    fallback.req("note")
    raw_schemes = top.data.get("schemes")
    if not isinstance(raw_schemes, dict) or not raw_schemes:
        raise top.fail("schemes", "must be a non-empty mapping of scheme name to scheme")
    schemes: dict[str, IdentityScheme] = {}
    for name, raw in raw_schemes.items():
        section = Section(IDENTITIES, str(name), f"schemes.{name}", raw)
        section.only("prefix", "systems", "types", "note")
        prefix = section.req("prefix")
        if not prefix.startswith("urn:") or not prefix.endswith(":"):
            raise section.fail("prefix", "must be a URN prefix ending with ':'")
        systems = section.strings("systems", required=True)
        if not systems or (ANY_SYSTEM in systems and len(systems) > 1):
            raise section.fail("systems", f"list identifier systems, or only {ANY_SYSTEM!r}")
        schemes[str(name)] = IdentityScheme(
            str(name), prefix, systems, section.req("note"), section.strings("types")
        )
    prefixes = [(s.name, s.prefix) for s in schemes.values()] + [("fallback", fallback_prefix)]
    for name, prefix in prefixes:
        for other_name, other in prefixes:
            if name != other_name and other.startswith(prefix):
                raise MappingTableError(
                    IDENTITIES,
                    other_name,
                    "fallback.prefix" if other_name == "fallback" else f"schemes.{other_name}.prefix",
                    f"{other!r} starts with the prefix of {name!r}: reversal ambiguous",
                )
    order_section = Section(IDENTITIES, None, "order", top.data.get("order"))
    order: dict[str, tuple[str, ...]] = {}
    for resource_type in order_section.data:
        names = order_section.strings(str(resource_type), required=True)
        for scheme_name in names:
            if scheme_name not in schemes:
                raise MappingTableError(
                    IDENTITIES,
                    str(resource_type),
                    f"order.{resource_type}",
                    f"unknown scheme {scheme_name!r}",
                )
        order[str(resource_type)] = names
    return Identities(schemes, order, fallback_prefix)
