"""Loads the entity tables (entities/*.yaml: one CSD entity kind from one FHIR resource type, rule by rule)
and the ME 2.4 coverage table (model-v24.yaml) that names their rules. translate/loaders/.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

from bridge import ns, profile
from bridge.errors import MappingTableError
from bridge.model import CodedType, ExtensionNode
from bridge.translate.codes import CodeEntry, CodeTable
from bridge.translate.loaders.reading import RESOURCE_TYPE, Section, read_yaml
from bridge.translate.paths import PathSyntaxError, SourcePath
from bridge.translate.tables import (
    CODES,
    ENTITIES,
    ENTITY_KINDS,
    MODEL,
    EntityKind,
    EntityTable,
    ExtensionSpec,
    ModelAttribute,
    ModelClass,
    Rule,
)
from bridge.translate.transforms import SELECTORS, TEXT, TRANSFORMS

_RULE_ID = re.compile(r"^[a-z][a-z0-9-]*$")


def load_entities(directory: Path, code_tables: Mapping[str, CodeTable]) -> dict[str, EntityTable]:
    entities: dict[str, EntityTable] = {}
    files = sorted((directory / ENTITIES).glob("*.yaml"))
    if not files:
        raise MappingTableError(ENTITIES, None, None, "no entity table (*.yaml) found")
    for path in files:
        table = f"{ENTITIES}/{path.name}"
        entity = _load_entity(table, read_yaml(directory, table), code_tables)
        entity = replace(entity, name=path.stem)
        for other in entities.values():
            if (other.kind, other.resource) == (entity.kind, entity.resource) and (
                other.select is None or entity.select is None or other.select == entity.select
            ):
                raise MappingTableError(
                    table,
                    None,
                    "select",
                    f"csd:{entity.kind.name} from {entity.resource} is already mapped by {other.table} "
                    "(tables of the same entity and resource need different `select`)",
                )
        entities[path.stem] = entity
    return entities


def _load_entity(table: str, raw: Any, code_tables: Mapping[str, CodeTable]) -> EntityTable:
    top = Section(table, None, "", raw)
    top.only("entity", "resource", "select", "each", "note", "rules")
    kind_name = top.req("entity")
    kind = ENTITY_KINDS.get(kind_name)
    if kind is None:
        raise top.fail("entity", f"unknown CSD entity {kind_name!r} (known: {', '.join(ENTITY_KINDS)})")
    resource = top.req("resource")
    if not RESOURCE_TYPE.match(resource):
        raise top.fail("resource", f"not a FHIR resource type: {resource!r}")
    select = top.text("select", required=False)
    if select is not None and select not in SELECTORS:
        raise top.fail("select", f"unknown selector {select!r} (closed list: {', '.join(SELECTORS)})")
    each_text = top.text("each", required=False)
    each: SourcePath | None = None
    if each_text is not None:
        try:
            each = SourcePath.parse(each_text)
        except PathSyntaxError as error:
            raise top.fail("each", str(error)) from error
    top.req("note")
    raw_rules = top.data.get("rules")
    if not isinstance(raw_rules, list) or not raw_rules:
        raise top.fail("rules", "must be a non-empty list")
    rules: list[Rule] = []
    for number, raw_rule in enumerate(raw_rules):
        rule = _load_rule(table, kind, f"rules[{number}]", raw_rule, code_tables)
        if any(r.id == rule.id for r in rules):
            raise MappingTableError(table, rule.id, f"rules[{number}].id", "duplicate rule id")
        if rule.fallback and not any(r.target == rule.target for r in rules):
            raise MappingTableError(
                table,
                rule.id,
                f"rules[{number}].fallback",
                "a fallback rule must follow a rule of the same target",
            )
        rules.append(rule)
    for rule in rules:
        if rule.transform.name == "part_entity_id" and each is None:
            raise MappingTableError(
                table, rule.id, "transform", "part_entity_id maps a part: the table needs `each`"
            )
    for target in kind.targets.values():
        if target.required and not any(r.target == target.name for r in rules):
            raise MappingTableError(table, None, "rules", f"no rule for required CSD target {target.name!r}")
    return EntityTable(table, kind, resource, tuple(rules), select=select, each=each)


def _load_rule(
    table: str, kind: EntityKind, where: str, raw: Any, code_tables: Mapping[str, CodeTable]
) -> Rule:
    rule_id = raw.get("id") if isinstance(raw, dict) else None
    section = Section(table, rule_id if isinstance(rule_id, str) else None, where, raw)
    section.only("id", "target", "source", "transform", "codes", "extension", "fallback", "note")
    rule_id = section.req("id")
    if not _RULE_ID.match(rule_id):
        raise section.fail("id", "rule ids are lower-case words joined by '-'")
    target_name = section.req("target")
    target = kind.targets.get(target_name)
    if target is None:
        raise section.fail(
            "target", f"{target_name!r} is not a target of csd:{kind.name} (one of {', '.join(kind.targets)})"
        )
    source_text = section.text("source", required=False)
    source = None
    if source_text is not None:
        try:
            source = SourcePath.parse(source_text)
        except PathSyntaxError as error:
            raise section.fail("source", str(error)) from error
    transform_name = section.text("transform", required=False)
    if transform_name is None:
        transform = TEXT
    elif transform_name in TRANSFORMS:
        transform = TRANSFORMS[transform_name]
    else:
        raise section.fail(
            "transform", f"unknown transform {transform_name!r} (closed list: {', '.join(TRANSFORMS)})"
        )
    if transform.source and source is None:
        raise section.fail("source", f"transform {transform.name!r} needs a source path")
    if not transform.source and source is not None:
        raise section.fail(
            "source", f"transform {transform.name!r} reads the whole resource; remove the source"
        )
    extension = None
    if target.name == "extension":
        if transform.output not in (str, CodedType, ExtensionNode):
            raise section.fail(
                "transform", f"an extension holds text, a code or a tree, not {transform.output.__name__}"
            )
        spec = Section(table, rule_id, f"{where}.extension", section.data.get("extension"))
        if isinstance(spec.data, dict) and "profile" in spec.data:
            spec.only("profile")
            extension = _profile_extension(spec, kind)
        else:
            # `element` defaults to the type, `urn` to ours (ns.ROR_EXT): `extension: {type: tarif}`
            spec.only("type", "urn", "element")
            extension_type = spec.req("type")
            element = spec.text("element", required=False) or extension_type
            if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_.-]*", element):
                key = "element" if "element" in spec.data else "type"
                raise spec.fail(key, f"not an XML element name: {element!r}")
            extension = ExtensionSpec(extension_type, spec.text("urn", required=False) or ns.ROR_EXT, element)
    else:
        if "extension" in section.data:
            raise section.fail("extension", "only a rule whose target is 'extension' has an extension spec")
        if transform.output is not target.type:
            raise section.fail(
                "transform",
                f"{transform.name!r} gives {transform.output.__name__}, "
                f"target {target.name!r} takes {target.type.__name__}",
            )
    codes_name, codes = _code_table(section, code_tables)
    if codes_name is not None and codes is not None:
        missing = [k for k in transform.required_keys if codes.get(k) is None]
        if missing:
            raise section.fail("codes", f"code table {codes_name!r} lacks rows for {', '.join(missing)}")
    elif transform.codes:
        raise section.fail("codes", f"transform {transform.name!r} needs a code table")
    return Rule(
        id=rule_id,
        target=target.name,
        source=source,
        transform=transform,
        codes=codes,
        extension=extension,
        fallback=section.flag("fallback"),
        note=section.req("note"),
    )


def _profile_extension(spec: Section, kind: EntityKind) -> ExtensionSpec:
    """`extension: {profile: <element>}`: a typed element of the profile's extension of this entity kind."""
    element = spec.req("profile")
    extension_type = profile.BY_ENTITY.get(kind.name)
    if extension_type is None:
        raise spec.fail("profile", f"the ROR v2.4 profile has no typed extension for csd:{kind.name}")
    if element not in profile.SEQUENCES[extension_type]:
        raise spec.fail(
            "profile",
            f"{element!r} is not an element of the profile's {extension_type} "
            f"(one of {', '.join(profile.SEQUENCES[extension_type])})",
        )
    return ExtensionSpec(extension_type, profile.URN, element, profile=True)


def load_model(directory: Path, entities: Mapping[str, EntityTable]) -> tuple[ModelClass, ...]:
    """model-v24.yaml: every ME 2.4 class and attribute, each with the rules that map it (checked to exist)
    or the reason it is not mapped (issue 5 item 2; printed by `ror-bridge mappings check`)."""
    top = Section(MODEL, None, "", read_yaml(directory, MODEL))
    top.only("note", "classes")
    top.req("note")
    raw_classes = top.data.get("classes")
    if not isinstance(raw_classes, list) or not raw_classes:
        raise top.fail("classes", "must be a non-empty list")
    classes: list[ModelClass] = []
    for number, raw_class in enumerate(raw_classes):
        name = raw_class.get("class") if isinstance(raw_class, dict) else None
        section = Section(MODEL, name if isinstance(name, str) else None, f"classes[{number}]", raw_class)
        section.only("class", "fhir", "attributes")
        class_name = section.req("class")
        if any(c.name == class_name for c in classes):
            raise section.fail("class", f"duplicate class {class_name!r}")
        raw_attributes = section.data.get("attributes")
        if not isinstance(raw_attributes, list) or not raw_attributes:
            raise section.fail("attributes", "must be a non-empty list")
        attributes: list[ModelAttribute] = []
        for index, raw_attribute in enumerate(raw_attributes):
            attribute = Section(MODEL, class_name, section.at(f"attributes[{index}]"), raw_attribute)
            attribute.only("name", "rules", "unmapped")
            attribute_name = attribute.req("name")
            if any(a.name == attribute_name for a in attributes):
                raise attribute.fail("name", f"duplicate attribute {attribute_name!r}")
            rules = attribute.strings("rules")
            unmapped = attribute.text("unmapped", required=False)
            if bool(rules) == bool(unmapped):
                raise attribute.fail(None, "give either rules (the rules that map it) or unmapped (why not)")
            for reference in rules:
                kind, _, rule_id = reference.partition("#")
                table = entities.get(kind)
                if table is None or not any(r.id == rule_id for r in table.rules):
                    raise attribute.fail("rules", f"no rule {reference!r} (<entity>#<rule id> of entities/)")
            attributes.append(ModelAttribute(attribute_name, rules, unmapped))
        classes.append(ModelClass(class_name, section.req("fhir"), tuple(attributes)))
    return tuple(classes)


def _code_table(
    section: Section, code_tables: Mapping[str, CodeTable]
) -> tuple[str | None, CodeTable | None]:
    """The rule's `codes`: one table's name, or a list of names whose rows a transform reads as one table
    (e.g. a demographic's contact points and civilités); a source code in two of them is refused."""
    raw = section.data.get("codes")
    if raw is None:
        return None, None
    listed: list[Any] = raw if isinstance(raw, list) else [section.text("codes")]
    names = [n for n in listed if isinstance(n, str) and n]
    if not names or len(names) != len(listed):
        raise section.fail("codes", "expected a code table name or a list of them")
    entries: dict[str, CodeEntry] = {}
    for name in names:
        table = code_tables.get(name)
        if table is None:
            raise section.fail("codes", f"no code table {CODES}/{name}.csv")
        for key, entry in table.entries.items():
            if key in entries:
                raise section.fail("codes", f"source code {key!r} is in two of the rule's code tables")
            entries[key] = entry
    if len(names) == 1:
        return names[0], code_tables[names[0]]
    joined = "+".join(names)
    return joined, CodeTable(joined, entries)
