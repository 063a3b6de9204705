"""Loads and validates the mapping tables of a `mappings/` directory into one immutable `Mappings`.

translate/: pure mapping engine. Every problem raises MappingTableError naming the table, the rule and the
place in the table (mappings/README.md describes the format).
"""

from __future__ import annotations

import csv
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import yaml

from bridge import profile
from bridge.errors import MappingTableError, UnknownFunctionError, UnknownRegionError
from bridge.model import (
    Address,
    CodedType,
    ContactPoint,
    CsdRequest,
    Demographic,
    Directory,
    Envelope,
    ExtensionNode,
    FacilityOrganization,
    Geocode,
    OtherID,
    ProviderFacility,
    ProviderOrganization,
    Record,
    Resource,
)
from bridge.translate.access import AccessProfiles, load_access_profiles
from bridge.translate.codes import CodeEntry, CodeSystem, CodeTable, Systems
from bridge.translate.delta import POST_STEP, SELECTIONS, feed_directories
from bridge.translate.findings import Findings
from bridge.translate.identity import ANY_SYSTEM, Identities, IdentityScheme
from bridge.translate.paths import PathSyntaxError, SourcePath
from bridge.translate.resolvers import PARAMETERS, RESOLVERS
from bridge.translate.select import FILTERS
from bridge.translate.transforms import SELECTORS, TEXT, TRANSFORMS, Transform

FUNCTIONS = "functions.yaml"
IDENTITIES = "identities.yaml"
SYSTEMS = "codes/systems.csv"
REGIONS = "regions.csv"
ENTITIES = "entities"
CODES = "codes"
MODEL = "model-v24.yaml"

# The label ITI-74 plans carry as their "function": the transaction's request action (csd-wire-format §2);
# the `modifications` entry of functions.yaml has no URN of its own (ITI-74 calls no stored function).
MODIFICATIONS_URN = "urn:ihe:iti:csd:2013:GetDirectoryModificationsRequest"
# functions.yaml `referenced`: what becomes of the resources the matches reference.

_PLACEHOLDER = re.compile(r"\{([^{}]*)\}")
_RULE_ID = re.compile(r"^[a-z][a-z0-9-]*$")
_RESOURCE_TYPE = re.compile(r"^[A-Z][A-Za-z]+$")


# --------------------------------------------------------------------------------------------------
# What the tables hold


@dataclass(frozen=True, slots=True)
class Target:
    """A CSD element or attribute a rule may fill: the value type it takes and how many."""

    name: str
    type: type
    many: bool
    required: bool  # the entity table must have a rule for it (CSD minOccurs ≥ 1)


@dataclass(frozen=True, slots=True)
class EntityKind:
    """A CSD entity kind the engine builds, its directory and targets (CSD 2014, csd-wire-format §5)."""

    name: str
    directory: Directory
    targets: Mapping[str, Target]


def _targets(*targets: Target) -> dict[str, Target]:
    return {t.name: t for t in targets}


# Extension values are str or CodedType; the Extension wrapper is built by the engine from the rule's spec.
_EXTENSION = Target("extension", object, many=True, required=False)

ENTITY_KINDS: Mapping[str, EntityKind] = {
    "organization": EntityKind(
        "organization",
        Directory.ORGANIZATION,
        _targets(
            Target("@entityID", str, many=False, required=True),
            Target("otherID", OtherID, many=True, required=False),
            Target("codedType", CodedType, many=True, required=True),
            Target("primaryName", str, many=False, required=True),
            Target("otherName", str, many=True, required=False),
            Target("address", Address, many=True, required=False),
            Target("contactPoint", ContactPoint, many=True, required=False),
            Target("parent", str, many=False, required=False),
            _EXTENSION,
            Target("record", Record, many=False, required=True),
        ),
    ),
    "service": EntityKind(
        "service",
        Directory.SERVICE,
        _targets(
            Target("@entityID", str, many=False, required=True),
            Target("codedType", CodedType, many=False, required=True),  # 2014 schema: exactly one
            _EXTENSION,
            Target("record", Record, many=False, required=True),
        ),
    ),
    "facility": EntityKind(
        "facility",
        Directory.FACILITY,
        _targets(
            Target("@entityID", str, many=False, required=True),
            Target("otherID", OtherID, many=True, required=False),
            Target("codedType", CodedType, many=True, required=True),
            Target("primaryName", str, many=False, required=True),
            Target("otherName", str, many=True, required=False),
            Target("address", Address, many=True, required=False),
            Target("geocode", Geocode, many=False, required=False),
            Target("contactPoint", ContactPoint, many=True, required=False),
            Target("organizations", FacilityOrganization, many=True, required=False),
            _EXTENSION,
            Target("record", Record, many=False, required=True),
        ),
    ),
    "provider": EntityKind(
        "provider",
        Directory.PROVIDER,
        _targets(
            Target("@entityID", str, many=False, required=True),
            Target("otherID", OtherID, many=True, required=False),
            Target("codedType", CodedType, many=True, required=True),
            Target("demographic", Demographic, many=False, required=True),
            Target("organizations", ProviderOrganization, many=True, required=False),
            Target("facilities", ProviderFacility, many=True, required=False),
            Target("specialty", CodedType, many=True, required=False),
            _EXTENSION,
            Target("record", Record, many=False, required=True),
        ),
    ),
}


@dataclass(frozen=True, slots=True)
class ExtensionSpec:
    """`csd:extension type=… urn=…` holding one `<element>` child in the ROR extension namespace; or, with
    `profile`, one typed element of the ROR CSD v2.4 profile's extension of the entity (bridge/profile.py)."""

    type: str
    urn: str
    element: str
    profile: bool = False


@dataclass(frozen=True, slots=True)
class Rule:
    id: str
    target: str
    source: SourcePath | None
    transform: Transform
    codes: CodeTable | None
    extension: ExtensionSpec | None
    fallback: bool  # applies only when the earlier rules left the target empty
    note: str


@dataclass(frozen=True, slots=True)
class EntityTable:
    table: str  # e.g. "entities/organization.yaml"
    kind: EntityKind
    resource: str  # FHIR resource type the entity is built from
    rules: tuple[Rule, ...]
    # The table's name (its file name without .yaml), what model-v24.yaml references as "<name>#<rule id>".
    name: str = ""
    # `select`: which resources of the type the table maps (closed list, transforms.SELECTORS); None: all.
    select: str | None = None

    def applies(self, resource: Resource) -> bool:
        return self.select is None or SELECTORS[self.select](resource)


@dataclass(frozen=True, slots=True)
class QuerySpec:
    resource: str
    params: tuple[tuple[str, str], ...]  # values may hold {resolver} placeholders
    purpose: str


@dataclass(frozen=True, slots=True)
class FunctionSpec:
    name: str  # the rule id in functions.yaml
    urn: str  # canonical URN
    aliases: tuple[str, ...]
    description: str
    parameters: tuple[str, ...]  # the request parameters the function accepts
    queries: tuple[QuerySpec, ...]
    directories: frozenset[Directory]
    note: str
    # The directory `start`/`max` and the IHE filters apply to (None: the function does not page).
    result: Directory | None = None
    # Parameters the national API cannot answer exactly: checked by the bridge on CSD records (select.py).
    bridge_filters: tuple[str, ...] = ()
    # The step that goes with a delta selection (translate/delta.POST_STEP, closed pairs), run in the spool
    # (bridge/pipeline/changes.py): `establishments` with `organization-chains`.
    post: str | None = None
    # Changes since a date (translate/delta.py, closed list): the answer is built from what changed, not from
    # the matches — `entities` (ITI-74) or `organization-chains` (establishments-updated-since).
    delta: str | None = None
    # The ROR v2.4 profile's requests this function answers: (function/@urn, or None for an operation of its
    # own, selecting element), e.g. (urn:asip:ror:lecture:offreSoinEtablissement:2017,
    # TR_Lecture-OffresSanteEtablissement) or (None, TR-Notif-ListeEtablissementsMajApresDate_Demande).
    official: tuple[tuple[str | None, str], ...] = ()


@dataclass(frozen=True, slots=True)
class ModelAttribute:
    """One attribute of the ME 2.4 model (model-v24.yaml): the rules that map it, or why it is not mapped."""

    name: str
    rules: tuple[str, ...]  # "<entity kind>#<rule id>", e.g. "service#champ-activite"
    unmapped: str | None  # the reason, when no rule maps it


@dataclass(frozen=True, slots=True)
class ModelClass:
    """One class of the ME 2.4 model ("modèle d'exposition V2" and its annex) and its attributes."""

    name: str
    fhir: str  # where ME 3.0 FHIR carries it
    attributes: tuple[ModelAttribute, ...]


@dataclass(frozen=True, slots=True)
class Region:
    """One legacy regional ROR endpoint (`/csd/{code}`) and the TRE_R30 "région source" codes it covers."""

    code: str
    name: str
    region_codes: tuple[str, ...]
    confidence: str  # sourced | inferred
    source: str
    note: str


@dataclass(frozen=True)
class Mappings:
    """Every table of one `mappings/` directory, validated. Immutable except for its findings counters."""

    directory: Path
    functions: Mapping[str, FunctionSpec]  # by canonical URN
    aliases: Mapping[str, str]  # alias -> canonical URN
    encapsulated_defaults: Mapping[Envelope, bool]
    timezone: ZoneInfo
    entities: Mapping[str, EntityTable]  # by entity kind name
    systems: Systems
    code_tables: Mapping[str, CodeTable]
    identities: Identities
    regions: Mapping[str, Region]  # by lower-case code
    region_tag_system: str  # meta.tag system of the "région source" (TRE_R30)
    findings: Findings = field(default_factory=Findings, compare=False)
    model: tuple[ModelClass, ...] = ()  # the ME 2.4 coverage table (model-v24.yaml)
    # ITI-74 getModificationsRequest (functions.yaml `modifications`); None: not served by this deployment.
    modifications: FunctionSpec | None = None
    # What each ROR access profile may not see (access-profiles.yaml, translate/access.py).
    access: AccessProfiles = field(default_factory=lambda: AccessProfiles({}))

    def function(self, urn: str) -> FunctionSpec:
        """The stored function a URN names, canonical or alias."""
        key = urn.strip()
        spec = self.functions.get(key) or self.functions.get(self.aliases.get(key, ""))
        if spec is None:
            raise UnknownFunctionError(urn)
        return spec

    def official_function(self, urn: str | None, element: str) -> FunctionSpec:
        """The stored function answering a ROR v2.4 profile request: function/@urn (None for the TR-Notif
        operation) and the element selecting it (functions.yaml `official`)."""
        key = (urn.strip() if urn else None, element)
        for spec in self.functions.values():
            if key in spec.official:
                return spec
        raise UnknownFunctionError(f"{urn or ''} {element}".strip())

    def encapsulated(self, request: CsdRequest, envelope: Envelope) -> bool:
        """The request's @encapsulated, else the table default for how it arrived [INFER]."""
        if request.encapsulated is not None:
            return request.encapsulated
        return self.encapsulated_defaults[envelope]

    def region(self, code: str) -> Region:
        """The legacy regional ROR a `/csd/{region}` path names (case-insensitive)."""
        region = self.regions.get(code.strip().lower())
        if region is None:
            raise UnknownRegionError(code)
        return region

    def entity_for(self, resource_type: str, directories: frozenset[Directory]) -> EntityTable | None:
        """The first table of that resource type mapping into one of `directories` (any `select`)."""
        for table in self.entities.values():
            if table.resource == resource_type and table.kind.directory in directories:
                return table
        return None

    def entities_for(self, resource: Resource, directories: frozenset[Directory]) -> list[EntityTable]:
        """Every table that maps this resource (its type, its `select`) into one of `directories`: an offer
        is both a service and the unité élémentaire facility; an organisation is an organization (EJ, EG) or
        a facility (internal organisation)."""
        resource_type = resource.get("resourceType")
        return [
            t
            for t in self.entities.values()
            if t.resource == resource_type and t.kind.directory in directories and t.applies(resource)
        ]


# --------------------------------------------------------------------------------------------------
# Loading


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


def _read_yaml(directory: Path, table: str) -> Any:
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


def _read_csv(directory: Path, table: str, columns: tuple[str, ...]) -> list[tuple[str, dict[str, str]]]:
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


class _Section:
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


def load_mappings(directory: Path) -> Mappings:
    """Load and validate every table of `directory`; raises MappingTableError naming table, rule and path."""
    directory = Path(directory)
    if not directory.is_dir():
        raise MappingTableError(str(directory), None, None, "mappings directory not found")
    systems = _load_systems(directory)
    code_tables = _load_code_tables(directory, systems)
    identities = _load_identities(directory)
    functions, aliases, encapsulated, timezone, tag_system, modifications = _load_functions(directory)
    entities = _load_entities(directory, code_tables)
    regions = _load_regions(directory)
    model = _load_model(directory, entities)
    mappings = Mappings(
        directory=directory,
        functions=functions,
        aliases=aliases,
        encapsulated_defaults=encapsulated,
        timezone=timezone,
        entities=entities,
        systems=systems,
        code_tables=code_tables,
        identities=identities,
        regions=regions,
        region_tag_system=tag_system,
        model=model,
        modifications=modifications,
        access=load_access_profiles(directory),
    )
    _check_deltas(mappings)
    return mappings


def _check_deltas(mappings: Mappings) -> None:
    """Each delta function searches the changes of every type its records read for their content
    (translate/feeds.py: the change sets are derived from the entity tables, not listed by hand)."""
    from bridge.translate import feeds  # feeds reads the loaded tables: imported here, not at the top

    specs = [*mappings.functions.values(), *([mappings.modifications] if mappings.modifications else [])]
    for spec in specs:
        if spec.delta is None:
            continue
        for table in feeds.tables_of(mappings, feed_directories(spec.delta, spec.directories)):
            feeds.feeds(table)  # MappingTableError for a read the ROR model has no reference for
        searched = {query.resource for query in spec.queries}
        directories = feed_directories(spec.delta, spec.directories)
        missing = feeds.changed_types(mappings, directories) - searched
        if missing:
            where = "modifications" if spec is mappings.modifications else f"functions.{spec.name}"
            raise MappingTableError(
                FUNCTIONS,
                spec.name,
                f"{where}.queries",
                f"the records read {', '.join(sorted(missing))} for their content: search their changes too",
            )


def _load_systems(directory: Path) -> Systems:
    columns = ("system", "oid", "name", "kind", "source", "confidence")
    by_url: dict[str, CodeSystem] = {}
    for rule, row in _read_csv(directory, SYSTEMS, columns):
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


def _load_code_tables(directory: Path, systems: Systems) -> dict[str, CodeTable]:
    columns = ("source_code", "code", "coding_scheme", "display", "note")
    tables: dict[str, CodeTable] = {}
    for path in sorted((directory / CODES).glob("*.csv")):
        if path.name == Path(SYSTEMS).name:
            continue
        table = f"{CODES}/{path.name}"
        entries: dict[str, CodeEntry] = {}
        for rule, row in _read_csv(directory, table, columns):
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


def _load_identities(directory: Path) -> Identities:
    top = _Section(IDENTITIES, None, "", _read_yaml(directory, IDENTITIES))
    top.only("schemes", "order", "fallback")
    fallback = _Section(IDENTITIES, "fallback", "fallback", top.data.get("fallback"))
    fallback.only("prefix", "note")
    fallback_prefix = fallback.req("prefix")
    fallback.req("note")
    raw_schemes = top.data.get("schemes")
    if not isinstance(raw_schemes, dict) or not raw_schemes:
        raise top.fail("schemes", "must be a non-empty mapping of scheme name to scheme")
    schemes: dict[str, IdentityScheme] = {}
    for name, raw in raw_schemes.items():
        section = _Section(IDENTITIES, str(name), f"schemes.{name}", raw)
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
    order_section = _Section(IDENTITIES, None, "order", top.data.get("order"))
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


def _load_functions(
    directory: Path,
) -> tuple[dict[str, FunctionSpec], dict[str, str], dict[Envelope, bool], ZoneInfo, str, FunctionSpec]:
    top = _Section(FUNCTIONS, None, "", _read_yaml(directory, FUNCTIONS))
    top.only("defaults", "functions", "modifications")
    defaults = _Section(FUNCTIONS, "defaults", "defaults", top.data.get("defaults"))
    defaults.only("encapsulated", "request_timezone", "region_tag_system", "note")
    enc = _Section(FUNCTIONS, "defaults", "defaults.encapsulated", defaults.data.get("encapsulated"))
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


def _load_regions(directory: Path) -> dict[str, Region]:
    columns = ("code", "name", "region_codes", "confidence", "source", "note")
    regions: dict[str, Region] = {}
    covered: dict[str, str] = {}
    for rule, row in _read_csv(directory, REGIONS, columns):
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
    section = _Section(FUNCTIONS, name, where, raw)
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
        query = _Section(FUNCTIONS, name, f"{where}.queries[{number}]", raw_query)
        query.only("resource", "purpose", "params")
        resource = query.req("resource")
        if not _RESOURCE_TYPE.match(resource):
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


def _load_official(section: _Section) -> tuple[tuple[str | None, str], ...]:
    """`official`: the ROR v2.4 profile requests a function answers, each {urn (optional), element}."""
    raw = section.data.get("official")
    if raw is None:
        return ()
    if not isinstance(raw, list) or not raw:
        raise section.fail("official", "must be a non-empty list of {urn, element}")
    found: list[tuple[str | None, str]] = []
    for number, item in enumerate(raw):
        entry = _Section(section.table, section.rule, f"{section.where}.official[{number}]", item)
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
    section: _Section, parameters: tuple[str, ...], directories: set[Directory]
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


def _load_entities(directory: Path, code_tables: Mapping[str, CodeTable]) -> dict[str, EntityTable]:
    entities: dict[str, EntityTable] = {}
    files = sorted((directory / ENTITIES).glob("*.yaml"))
    if not files:
        raise MappingTableError(ENTITIES, None, None, "no entity table (*.yaml) found")
    for path in files:
        table = f"{ENTITIES}/{path.name}"
        entity = _load_entity(table, _read_yaml(directory, table), code_tables)
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
    top = _Section(table, None, "", raw)
    top.only("entity", "resource", "select", "note", "rules")
    kind_name = top.req("entity")
    kind = ENTITY_KINDS.get(kind_name)
    if kind is None:
        raise top.fail("entity", f"unknown CSD entity {kind_name!r} (known: {', '.join(ENTITY_KINDS)})")
    resource = top.req("resource")
    if not _RESOURCE_TYPE.match(resource):
        raise top.fail("resource", f"not a FHIR resource type: {resource!r}")
    select = top.text("select", required=False)
    if select is not None and select not in SELECTORS:
        raise top.fail("select", f"unknown selector {select!r} (closed list: {', '.join(SELECTORS)})")
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
    for target in kind.targets.values():
        if target.required and not any(r.target == target.name for r in rules):
            raise MappingTableError(table, None, "rules", f"no rule for required CSD target {target.name!r}")
    return EntityTable(table, kind, resource, tuple(rules), select=select)


def _load_rule(
    table: str, kind: EntityKind, where: str, raw: Any, code_tables: Mapping[str, CodeTable]
) -> Rule:
    rule_id = raw.get("id") if isinstance(raw, dict) else None
    section = _Section(table, rule_id if isinstance(rule_id, str) else None, where, raw)
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
        spec = _Section(table, rule_id, f"{where}.extension", section.data.get("extension"))
        if isinstance(spec.data, dict) and "profile" in spec.data:
            spec.only("profile")
            extension = _profile_extension(spec, kind)
        else:
            spec.only("type", "urn", "element")
            element = spec.req("element")
            if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_.-]*", element):
                raise spec.fail("element", f"not an XML element name: {element!r}")
            extension = ExtensionSpec(spec.req("type"), spec.req("urn"), element)
    else:
        if "extension" in section.data:
            raise section.fail("extension", "only a rule whose target is 'extension' has an extension spec")
        if transform.output is not target.type:
            raise section.fail(
                "transform",
                f"{transform.name!r} gives {transform.output.__name__}, "
                f"target {target.name!r} takes {target.type.__name__}",
            )
    codes_name = section.text("codes", required=False)
    codes = None
    if codes_name is not None:
        codes = code_tables.get(codes_name)
        if codes is None:
            raise section.fail("codes", f"no code table {CODES}/{codes_name}.csv")
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


def _profile_extension(spec: _Section, kind: EntityKind) -> ExtensionSpec:
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


def _load_model(directory: Path, entities: Mapping[str, EntityTable]) -> tuple[ModelClass, ...]:
    """model-v24.yaml: every ME 2.4 class and attribute, each with the rules that map it (checked to exist)
    or the reason it is not mapped (issue 5 item 2; printed by `ror-bridge mappings check`)."""
    top = _Section(MODEL, None, "", _read_yaml(directory, MODEL))
    top.only("note", "classes")
    top.req("note")
    raw_classes = top.data.get("classes")
    if not isinstance(raw_classes, list) or not raw_classes:
        raise top.fail("classes", "must be a non-empty list")
    classes: list[ModelClass] = []
    for number, raw_class in enumerate(raw_classes):
        name = raw_class.get("class") if isinstance(raw_class, dict) else None
        section = _Section(MODEL, name if isinstance(name, str) else None, f"classes[{number}]", raw_class)
        section.only("class", "fhir", "attributes")
        class_name = section.req("class")
        if any(c.name == class_name for c in classes):
            raise section.fail("class", f"duplicate class {class_name!r}")
        raw_attributes = section.data.get("attributes")
        if not isinstance(raw_attributes, list) or not raw_attributes:
            raise section.fail("attributes", "must be a non-empty list")
        attributes: list[ModelAttribute] = []
        for index, raw_attribute in enumerate(raw_attributes):
            attribute = _Section(MODEL, class_name, section.at(f"attributes[{index}]"), raw_attribute)
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
