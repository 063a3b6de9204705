"""The ROR access profiles (0-3): what each profile may not see, from mappings/access-profiles.yaml, applied
to CSD records before they are written (translate/: pure, over model records only).

The table names CSD elements of the ROR v2.4 profile (typed extension elements, their children, attributes)
and the code values that trigger a removal; `filter_document` and `filter_records` remove them.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, TypeVar

import yaml

from bridge import profile as v24
from bridge.errors import MappingTableError
from bridge.model import CsdDocument, Extension, ExtensionNode, Facility, Organization, Provider

TABLE = "access-profiles.yaml"
PROFILES = (0, 1, 2, 3)
ENTITY_KINDS = ("organization", "facility", "provider")
# `remove: entity` removes the whole entity (only where the profile's rules say the entity must not appear).
WHOLE_ENTITY = "entity"
_STEP = re.compile(r"^[A-Za-z][A-Za-z0-9_]*$")
_ATTRIBUTE = re.compile(r"^@[A-Za-z][A-Za-z0-9_]*$")
_RULE_ID = re.compile(r"^[a-z0-9][a-z0-9-]*$")
_RULE_KEYS = {"id", "entities", "remove", "when", "source", "note"}
_TEST_KEYS = {"value", "entity", "activity", "in", "not_in"}


@dataclass(frozen=True, slots=True)
class NodePath:
    """Element steps, then optionally one attribute (`a/b/@c`); no steps = the node itself (`.`)."""

    steps: tuple[str, ...]
    attribute: str | None = None

    @classmethod
    def parse(cls, text: str, where: str, rule: str) -> NodePath:
        if text.strip() == ".":
            return cls(())
        parts = text.strip().split("/")
        attribute = None
        if parts and parts[-1].startswith("@"):
            if not _ATTRIBUTE.match(parts[-1]):
                raise MappingTableError(TABLE, rule, where, f"{text!r}: not an attribute name")
            attribute = parts.pop()[1:]
        for step in parts:
            if not _STEP.match(step):
                raise MappingTableError(TABLE, rule, where, f"{text!r}: {step!r} is not an element name")
        return cls(tuple(parts), attribute)

    def values(self, node: ExtensionNode) -> list[str]:
        """The text (or attribute) values this path reaches from `node`."""
        nodes = [node]
        for step in self.steps:
            nodes = [child for n in nodes for child in n.children if child.name == step]
        if self.attribute is not None:
            return [value for n in nodes for name, value in n.attributes if name == self.attribute]
        return [(n.text or "").strip() for n in nodes]

    def __str__(self) -> str:
        parts = [*self.steps, *([f"@{self.attribute}"] if self.attribute else [])]
        return "/".join(parts) or "."


@dataclass(frozen=True, slots=True)
class Test:
    """One condition of a rule. `scope`: "value" (path from the element removed), "entity" (path from the
    entity's typed extension), "activity" (the entity's champs d'activité, typeActivity/@code: a facility's
    own, or those of the facilities of the same answer a provider or organisation is linked to).

    `in`: every value found is in `values`, and there is one; `not_in`: the opposite (so a value the answer
    does not carry is never "in": a rule `not_in` removes when in doubt)."""

    scope: str
    path: NodePath | None
    values: frozenset[str]
    negate: bool


@dataclass(frozen=True, slots=True)
class Rule:
    id: str
    profile: int
    entities: frozenset[str]
    remove: tuple[NodePath, ...]  # empty: the whole entity
    when: tuple[Test, ...]
    source: str


@dataclass(frozen=True, slots=True)
class AccessProfiles:
    """The rules of each access profile, by profile number."""

    rules: Mapping[int, tuple[Rule, ...]]
    # The ROR v2.4 profile's restricted reading (restrictedOrganisation=true, RG_ALIM_015): None when the
    # table has no `restricted-organisation` section (the bridge then refuses such a request).
    restriction: Restriction | None = None

    def of(self, profile: int | None) -> tuple[Rule, ...]:
        return () if profile is None else self.rules.get(profile, ())


@dataclass(frozen=True, slots=True)
class Restriction:
    """What a restricted reading (restrictedOrganisation=true) leaves out: the typed elements its rules
    remove, the bridge's unqualified trees named in `trees` (organisations), and, always, the UEs' lieu
    classes that are no typed element — the UE's csd:address (its lieu's) and its service's opening hours."""

    rules: tuple[Rule, ...]
    trees: frozenset[str]


RESTRICTED = "restricted-organisation"
RESTRICTED_PROFILE = -1  # Rule.profile of the restriction's rules (not an access profile)


# --------------------------------------------------------------------------------------------------
# Loading and checking the table


def load_access_profiles(directory: Path) -> AccessProfiles:
    """Read and check `access-profiles.yaml`; MappingTableError names the profile, the rule and the key."""
    path = Path(directory) / TABLE
    if not path.is_file():
        raise MappingTableError(TABLE, None, None, f"file not found in {directory}")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError) as error:
        raise MappingTableError(TABLE, None, None, f"invalid YAML: {error}") from error
    if (
        not isinstance(data, dict)
        or not set(data) <= {"profiles", RESTRICTED}
        or not isinstance(data.get("profiles"), dict)
    ):
        raise MappingTableError(
            TABLE, None, None, f"expected the top-level key 'profiles' (a mapping), optionally {RESTRICTED!r}"
        )
    profiles: dict[int, tuple[Rule, ...]] = {}
    seen: set[str] = set()
    for key, body in data["profiles"].items():
        if key not in PROFILES:
            raise MappingTableError(TABLE, None, f"profiles.{key}", "a profile is 0, 1, 2 or 3")
        if not isinstance(body, dict) or not isinstance(body.get("rules", []), list):
            raise MappingTableError(TABLE, None, f"profiles.{key}", "expected 'label' and a list 'rules'")
        unknown = set(body) - {"label", "note", "rules"}
        if unknown:
            raise MappingTableError(TABLE, None, f"profiles.{key}", f"unknown key(s) {sorted(unknown)}")
        rules = []
        for number, raw in enumerate(body.get("rules") or []):
            rule = _rule(key, number, raw)
            if rule.id in seen:
                raise MappingTableError(TABLE, rule.id, f"profiles.{key}.rules[{number}]", "duplicate id")
            seen.add(rule.id)
            rules.append(rule)
        profiles[key] = tuple(rules)
    missing = [p for p in PROFILES if p not in profiles]
    if missing:
        raise MappingTableError(TABLE, None, "profiles", f"profile(s) {missing} not described")
    restriction = _restriction(data[RESTRICTED], seen) if RESTRICTED in data else None
    return AccessProfiles(profiles, restriction)


def _restriction(body: Any, seen: set[str]) -> Restriction:
    """The `restricted-organisation` section: label, rules (the access profiles' format), trees."""
    if not isinstance(body, dict) or not isinstance(body.get("rules"), list):
        raise MappingTableError(
            TABLE, None, RESTRICTED, "expected 'label', a list 'rules' and a list 'trees'"
        )
    unknown = set(body) - {"label", "note", "rules", "trees"}
    if unknown:
        raise MappingTableError(TABLE, None, RESTRICTED, f"unknown key(s) {sorted(unknown)}")
    trees = body.get("trees") or []
    if not isinstance(trees, list) or not all(isinstance(t, str) and _STEP.match(t) for t in trees):
        raise MappingTableError(TABLE, None, f"{RESTRICTED}.trees", "a list of extension element names")
    rules = []
    for number, raw in enumerate(body["rules"]):
        rule = _rule(RESTRICTED_PROFILE, number, raw, where=f"{RESTRICTED}.rules[{number}]")
        if rule.id in seen:
            raise MappingTableError(TABLE, rule.id, f"{RESTRICTED}.rules[{number}]", "duplicate id")
        seen.add(rule.id)
        rules.append(rule)
    return Restriction(tuple(rules), frozenset(trees))


def _rule(profile: int, number: int, raw: Any, where: str | None = None) -> Rule:
    where = where or f"profiles.{profile}.rules[{number}]"
    if not isinstance(raw, dict):
        raise MappingTableError(TABLE, None, where, "a rule is a mapping")
    rule_id = raw.get("id")
    if not isinstance(rule_id, str) or not _RULE_ID.match(rule_id):
        raise MappingTableError(TABLE, None, where, "'id' is required (a-z, 0-9, '-')")
    unknown = set(raw) - _RULE_KEYS
    if unknown:
        raise MappingTableError(TABLE, rule_id, where, f"unknown key(s) {sorted(unknown)}")
    entities = raw.get("entities")
    if isinstance(entities, str):
        entities = [entities]
    if not entities or not all(e in ENTITY_KINDS for e in entities):
        raise MappingTableError(TABLE, rule_id, f"{where}.entities", f"a list of {ENTITY_KINDS}")
    if not isinstance(raw.get("source"), str) or not raw["source"].strip():
        raise MappingTableError(TABLE, rule_id, f"{where}.source", "say which ANS rule this follows")
    removes = raw.get("remove")
    removes = [removes] if isinstance(removes, str) else removes
    if not removes or not all(isinstance(r, str) for r in removes):
        raise MappingTableError(TABLE, rule_id, f"{where}.remove", "an element path or 'entity' is required")
    paths: list[NodePath] = []
    if removes == [WHOLE_ENTITY]:
        pass
    else:
        for text in removes:
            path = NodePath.parse(text, f"{where}.remove", rule_id)
            if not path.steps:
                raise MappingTableError(TABLE, rule_id, f"{where}.remove", "name an element ('entity': all)")
            for kind in entities:
                extension = v24.BY_ENTITY[kind]
                if path.steps[0] not in v24.SEQUENCES[extension]:
                    raise MappingTableError(
                        TABLE,
                        rule_id,
                        f"{where}.remove",
                        f"{path.steps[0]!r} is not an element of the profile's {extension}",
                    )
            paths.append(path)
    tests = raw.get("when") or []
    if not isinstance(tests, list):
        raise MappingTableError(TABLE, rule_id, f"{where}.when", "a list of conditions")
    return Rule(
        id=rule_id,
        profile=profile,
        entities=frozenset(entities),
        remove=tuple(paths),
        when=tuple(_test(rule_id, f"{where}.when[{n}]", t, bool(paths)) for n, t in enumerate(tests)),
        source=raw["source"].strip(),
    )


def _test(rule: str, where: str, raw: Any, has_element: bool) -> Test:
    if not isinstance(raw, dict) or set(raw) - _TEST_KEYS:
        raise MappingTableError(TABLE, rule, where, f"a condition has the keys {sorted(_TEST_KEYS)}")
    scopes = [s for s in ("value", "entity", "activity") if s in raw]
    operators = [o for o in ("in", "not_in") if o in raw]
    if len(scopes) != 1 or len(operators) != 1:
        raise MappingTableError(
            TABLE, rule, where, "one of value / entity / activity, and one of in / not_in"
        )
    scope, operator = scopes[0], operators[0]
    values = raw[operator]
    if not isinstance(values, list) or not values or not all(isinstance(v, str | int) for v in values):
        raise MappingTableError(TABLE, rule, where, f"'{operator}' is a list of code values (quoted)")
    path = None
    if scope == "value" and not has_element:
        raise MappingTableError(TABLE, rule, where, "'value' tests the element removed: not with 'entity'")
    if scope in ("value", "entity"):
        if not isinstance(raw[scope], str):
            raise MappingTableError(TABLE, rule, where, f"'{scope}' is a path")
        path = NodePath.parse(raw[scope], where, rule)
    elif raw["activity"] is not True:
        raise MappingTableError(TABLE, rule, where, "write 'activity: true'")
    return Test(scope, path, frozenset(str(v) for v in values), operator == "not_in")


# --------------------------------------------------------------------------------------------------
# Applying the rules


@dataclass(frozen=True, slots=True)
class Activities:
    """The champs d'activité (typeActivity/@code) an answer shows: per facility, and per organisation through
    the facilities linked to it (and to its establishments, for an EJ)."""

    of_facility: Mapping[str, frozenset[str]]
    of_organization: Mapping[str, frozenset[str]]

    @classmethod
    def of_document(cls, document: CsdDocument) -> Activities:
        facilities = {f.entity_id: _own_activity(f) for f in document.facilities}
        organizations: dict[str, set[str]] = {}
        for facility in document.facilities:
            for link in facility.organizations:
                organizations.setdefault(link.entity_id, set()).update(facilities[facility.entity_id])
        for organization in document.organizations:
            if organization.parent_id and organization.entity_id in organizations:
                organizations.setdefault(organization.parent_id, set()).update(
                    organizations[organization.entity_id]
                )
        return cls(facilities, {k: frozenset(v) for k, v in organizations.items()})


NO_ACTIVITIES = Activities({}, {})


def _typed(extensions: Iterable[Extension]) -> list[ExtensionNode]:
    return [e.content for e in extensions if e.profile and e.content is not None]


def _own_activity(facility: Facility) -> frozenset[str]:
    return frozenset(
        value
        for node in _typed(facility.extensions)
        if node.name == "typeActivity"
        for name, value in node.attributes
        if name == "code"
    )


def _activity(entity: Organization | Facility | Provider, activities: Activities) -> frozenset[str]:
    if isinstance(entity, Facility):
        return _own_activity(entity)
    if isinstance(entity, Organization):
        return activities.of_organization.get(entity.entity_id, frozenset())
    # A provider's units: the facilities it is linked to, and the offers under those links (the ROR v2.4
    # placement writes each offer as its UE facility).
    codes: set[str] = set()
    for link in entity.facilities:
        for target in (link.entity_id, *(service.entity_id for service in link.services)):
            codes.update(activities.of_facility.get(target, frozenset()))
    return frozenset(codes)


def _holds(test: Test, found: Sequence[str] | frozenset[str]) -> bool:
    inside = bool(found) and all(value in test.values for value in found)
    return not inside if test.negate else inside


def _entity_values(path: NodePath, nodes: Sequence[ExtensionNode]) -> list[str]:
    root = ExtensionNode("extension", children=tuple(nodes))
    return path.values(root)


class _Applier:
    def __init__(
        self,
        rules: Sequence[Rule],
        kind: str,
        entity: Organization | Facility | Provider,
        activities: Activities,
    ) -> None:
        self.rules = [r for r in rules if kind in r.entities]
        self.entity = entity
        self.activities = activities
        self.typed = _typed(entity.extensions)
        self._activity: frozenset[str] | None = None
        self._active: list[Rule] | None = None

    def activity(self) -> frozenset[str]:
        if self._activity is None:
            self._activity = _activity(self.entity, self.activities)
        return self._activity

    def entity_conditions(self, rule: Rule) -> bool:
        for test in rule.when:
            if test.scope == "activity" and not _holds(test, self.activity()):
                return False
            if test.scope == "entity":
                assert test.path is not None
                if not _holds(test, _entity_values(test.path, self.typed)):
                    return False
        return True

    def removes_entity(self) -> bool:
        return any(not r.remove and self.entity_conditions(r) for r in self.rules)

    def filter_node(self, node: ExtensionNode) -> ExtensionNode | None:
        """The typed element with what the rules remove taken out (None: removed whole)."""
        if self._active is None:  # the element rules whose conditions on the entity hold, decided once
            self._active = [r for r in self.rules if r.remove and self.entity_conditions(r)]
        if not self._active:
            return node
        return _prune(node, (node.name,), self._active)


def _element_conditions(rule: Rule, node: ExtensionNode) -> bool:
    return all(
        _holds(test, test.path.values(node)) for test in rule.when if test.scope == "value" and test.path
    )


def _prune(node: ExtensionNode, at: tuple[str, ...], rules: Sequence[Rule]) -> ExtensionNode | None:
    attributes = node.attributes
    for rule in rules:
        for path in rule.remove:
            if path.steps == at and _element_conditions(rule, node):
                if path.attribute is None:
                    return None
                attributes = tuple((k, v) for k, v in attributes if k != path.attribute)
    deeper = [r for r in rules if any(len(p.steps) > len(at) and p.steps[: len(at)] == at for p in r.remove)]
    if not deeper:
        return node if attributes is node.attributes else replace(node, attributes=attributes)
    children = []
    for child in node.children:
        kept = _prune(child, (*at, child.name), deeper)
        if kept is not None:
            children.append(kept)
    return replace(node, attributes=attributes, children=tuple(children))


_E = TypeVar("_E", Organization, Facility, Provider)


def filter_entity(rules: Sequence[Rule], kind: str, entity: _E, activities: Activities) -> _E | None:
    """`entity` as the rules let it be seen (None: the rules remove it)."""
    applier = _Applier(rules, kind, entity, activities)
    if not applier.rules:
        return entity
    if applier.removes_entity():
        return None
    extensions: list[Extension] = []
    changed = False
    for extension in entity.extensions:
        if not extension.profile or extension.content is None:
            extensions.append(extension)
            continue
        kept = applier.filter_node(extension.content)
        if kept is not extension.content:
            changed = True
        if kept is not None:
            extensions.append(replace(extension, content=kept))
    return replace(entity, extensions=tuple(extensions)) if changed else entity


def uses_activity(access: AccessProfiles, profile: int | None, kind: str) -> bool:
    """Whether the profile's rules on `kind` read the champs d'activité (of the linked facilities)."""
    return any(
        kind in rule.entities and any(test.scope == "activity" for test in rule.when)
        for rule in access.of(profile)
    )


def filter_records(
    access: AccessProfiles,
    profile: int | None,
    kind: str,
    records: Sequence[_E],
    activities: Activities = NO_ACTIVITIES,
) -> list[_E]:
    """The records of one kind as `profile` may see them (records the rules remove are left out)."""
    rules = access.of(profile)
    if not rules or kind not in ENTITY_KINDS:
        return list(records)
    return [kept for r in records if (kept := filter_entity(rules, kind, r, activities)) is not None]


def filter_document(access: AccessProfiles, profile: int | None, document: CsdDocument) -> CsdDocument:
    """The whole answer as `profile` may see it; None (no allow-list): unchanged."""
    if not access.of(profile):
        return document
    activities = Activities.of_document(document)
    return replace(
        document,
        organizations=filter_records(access, profile, "organization", document.organizations, activities),
        facilities=filter_records(access, profile, "facility", document.facilities, activities),
        providers=filter_records(access, profile, "provider", document.providers, activities),
    )


# --------------------------------------------------------------------------------------------------
# The restricted reading (restrictedOrganisation=true)

# TRE_R207-TypeOrganisationInterne (OID 1.2.250.1.213.3.3.8) #4: the unité élémentaire.
_UNIT = ("4", "1.2.250.1.213.3.3.8")


def _is_unit(facility: Facility) -> bool:
    return any((c.code, c.coding_scheme) == _UNIT for c in facility.coded_types)


def _without_lieu(facility: Facility) -> Facility:
    """A UE without its lieu's classes that are no typed element: csd:address, its service's hours."""
    if not _is_unit(facility):
        return facility
    organizations = tuple(
        replace(o, services=tuple(replace(s, operating_hours=()) for s in o.services))
        for o in facility.organizations
    )
    return replace(facility, addresses=(), operating_hours=(), organizations=organizations)


def _without_trees(organization: Organization, trees: frozenset[str]) -> Organization:
    kept = tuple(
        e for e in organization.extensions if e.profile or e.content is None or e.content.name not in trees
    )
    return (
        organization if len(kept) == len(organization.extensions) else replace(organization, extensions=kept)
    )


def restrict_document(access: AccessProfiles, document: CsdDocument) -> CsdDocument:
    """The answer to a reading with restrictedOrganisation=true (ANS RG_ALIM_015, avecRestrictionOI.sch): the
    EJ / EG without tariffs, the internal organisations and UEs without the UE's own attributes and lower
    classes (capacities, skills, equipment, hours, lieu, …) except care mode, activity, patientèle and, in the
    médico-social field, the organisation category. MappingTableError when the tables do not describe it."""
    restriction = access.restriction
    if restriction is None:
        raise MappingTableError(TABLE, None, RESTRICTED, "no restricted-organisation section: not served")
    activities = Activities.of_document(document)
    rules = restriction.rules
    organizations = [
        _without_trees(o, restriction.trees)
        for o in filter_records_by(rules, "organization", document.organizations, activities)
    ]
    facilities = [
        _without_lieu(f) for f in filter_records_by(rules, "facility", document.facilities, activities)
    ]
    return replace(document, organizations=organizations, facilities=facilities)


def filter_records_by(
    rules: Sequence[Rule], kind: str, records: Sequence[_E], activities: Activities
) -> list[_E]:
    """The records of one kind with what `rules` remove taken out (records removed whole are left out)."""
    return [kept for r in records if (kept := filter_entity(rules, kind, r, activities)) is not None]
