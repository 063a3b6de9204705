"""The mapping tables' types: what one `mappings/` directory holds once loaded (`Mappings`), immutable.

translate/: pure mapping engine. Loading and validating the tables is translate/loaders/'s job (this module
never imports it back); mappings/README.md describes the format.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from zoneinfo import ZoneInfo

from bridge.errors import UnknownFunctionError, UnknownRegionError
from bridge.model import (
    ENTITY_SHAPES,
    CsdRequest,
    Directory,
    Envelope,
    Form,
    Resource,
    Shape,
    slot_types,
)
from bridge.translate.access_profiles import AccessProfiles
from bridge.translate.codes import CodeTable, Systems
from bridge.translate.findings import Findings
from bridge.translate.identity import Identities
from bridge.translate.paths import SourcePath
from bridge.translate.transforms import SELECTORS, Transform

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


# --------------------------------------------------------------------------------------------------
# What the tables hold


@dataclass(frozen=True, slots=True)
class Target:
    """A CSD element or attribute a rule may fill: the value type it takes and how many."""

    name: str
    type: type
    many: bool
    required: bool  # the entity table must have a rule for it (CSD minOccurs ≥ 1)
    field: str = ""  # the record's field it fills (bridge/model.py `ENTITY_SHAPES`)


@dataclass(frozen=True, slots=True)
class EntityKind:
    """A CSD entity kind the engine builds, its directory and targets (CSD 2014, csd-wire-format §5)."""

    name: str
    directory: Directory
    targets: Mapping[str, Target]
    shape: Shape  # its one declaration (bridge/model.py `ENTITY_SHAPES`)


def _kind(shape: Shape) -> EntityKind:
    """The targets of an entity kind, from its one declaration (bridge/model.py `ENTITY_SHAPES`). Extension
    values are str or CodedType: the engine wraps them in the Extension the rule's spec describes."""
    types = slot_types(shape)
    targets = {
        slot.element: Target(
            slot.element,
            object if slot.form is Form.EXTENSIONS else types[slot.element].type,
            many=types[slot.element].many,
            required=types[slot.element].required,
            field=slot.field,
        )
        for slot in shape.slots
        if slot.mapped
    }
    return EntityKind(shape.name, shape.directory, targets, shape)


ENTITY_KINDS: Mapping[str, EntityKind] = {
    name: _kind(shape) for name, shape in ENTITY_SHAPES.items() if shape.mapped
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
    # `each`: a path selecting the resource's parts (JSON objects) the table makes one record of each — one
    # csd:device per `ror-location-equipment` extension of a lieu. The rules' sources then read the part;
    # their transforms still get the resource, and the part in `Context.part`. None: one record per resource.
    each: SourcePath | None = None

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
    # What each ROR access profile may not see (access-profiles.yaml, translate/access_profiles.py).
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
