"""Neutral typed records passed between the parts of the bridge (no XML, no HTTP, no framework).

Leaf module: the inbound edge produces `CsdRequest`, translate/ produces `QueryPlan` and `CsdDocument`,
fhir/ produces `SearchResult`. CSD names follow the IHE CSD 2014 schema (docs/csd-wire-format.md §5).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import MISSING, dataclass, field, fields
from datetime import UTC, date, datetime, time, tzinfo
from enum import StrEnum
from typing import Any, BinaryIO, Final, get_args, get_origin, get_type_hints

# A FHIR resource as parsed JSON. The hot path never builds pydantic models (engineering-notes §4.3).
Resource = Mapping[str, Any]


# --------------------------------------------------------------------------------------------------
# Inbound: the CSD request, whatever its wire form


class Transaction(StrEnum):
    """The IHE transaction a request belongs to."""

    CARE_SERVICES = "ITI-73"  # careServicesRequest (stored functions)
    MODIFICATIONS = "ITI-74"  # getModificationsRequest
    ROR_NOTIF = "TR-Notif"  # the ROR v2.4 profile's TR-Notif-ListeEtablissementsMajApresDate operation


class RequestForm(StrEnum):
    """The historical wire forms of a request, all normalised into one `CsdRequest`."""

    FUNCTION_UUID_2013 = "2013 function/@uuid"
    FUNCTION_URN_2014 = "2014 function/@urn + requestParams"
    ROOT_URN_2016 = "2016 careServicesRequest/@urn + requestParams"
    MODIFICATIONS = "getModificationsRequest"
    ROR_PROFILE = "ROR v2.4 profile (TR_Lecture function child, TR-Notif operation)"


class Envelope(StrEnum):
    """How the request arrived; the answer uses the same."""

    SOAP12 = "soap12"
    SOAP11 = "soap11"
    BARE = "bare"


@dataclass(frozen=True, slots=True)
class CodedType:
    code: str
    coding_scheme: str
    display: str | None = None


@dataclass(frozen=True, slots=True)
class OtherID:
    code: str
    assigning_authority_name: str


@dataclass(frozen=True, slots=True)
class AddressLine:
    value: str
    component: str | None = None


@dataclass(frozen=True, slots=True)
class Since:
    """A request's "changed since" instant (record/@updated, dateMiseAJour, dateRef, ITI-74 lastModified),
    read once per request by translate/ (plan.py): time-zone-aware, a time sent without offset read in
    functions.yaml's `request_timezone` (the one place it is applied: `Since.at`)."""

    instant: datetime  # aware
    # True: a stored function's time sent without offset, which the search states as sent (the client's wall
    # clock, no `Z`); False: the search states the instant in UTC (`Z`), as ITI-74 always does.
    wall_clock: bool

    @classmethod
    def at(cls, when: datetime, timezone: tzinfo, *, wall_clock: bool) -> Since:
        """`when` as sent; without offset it is read in `timezone` (and stated as sent when `wall_clock`)."""
        if when.tzinfo is None:
            return cls(when.replace(tzinfo=timezone), wall_clock)
        return cls(when, wall_clock=False)

    def fhir_instant(self) -> str:
        """The instant as a FHIR search states it: `2024-01-02T03:04:05[.5]` then `Z` unless wall clock."""
        when = self.instant.replace(tzinfo=None) if self.wall_clock else self.instant.astimezone(UTC)
        stamp = when.strftime("%Y-%m-%dT%H:%M:%S")
        if when.microsecond:  # kept: ge floor(T) would also return what changed in [floor(T), T)
            stamp += f".{when.microsecond:06d}".rstrip("0")
        return stamp if self.wall_clock else stamp + "Z"


@dataclass(frozen=True, slots=True)
class RequestParams:
    """`requestParams` of an ITI-73 stored function (IHE parameter names, docs/csd-wire-format.md §4).

    Absent parameters are None / empty. `extra` keeps every other leaf parameter by local name, in
    document order, for stored functions with their own parameters (ROR functions).
    """

    entity_id: str | None = None
    other_ids: tuple[OtherID, ...] = ()
    primary_name: str | None = None
    name: str | None = None
    common_name: str | None = None
    coded_types: tuple[CodedType, ...] = ()
    address_lines: tuple[AddressLine, ...] = ()
    organizations: tuple[str, ...] = ()
    record_status: str | None = None
    record_updated: datetime | None = None
    start: int | None = None
    max: int | None = None
    extra: tuple[tuple[str, str], ...] = ()
    # The "changed since" instant, typed: set once by the plan (translate/plan.py), never by the parser.
    since: Since | None = None


@dataclass(frozen=True, slots=True)
class CsdRequest:
    """One CSD request, normalised from any of its wire forms."""

    transaction: Transaction
    form: RequestForm
    function_urn: str | None = None  # as sent by the client (canonical URN or an alias)
    encapsulated: bool | None = None  # None: the attribute was absent
    params: RequestParams = field(default_factory=RequestParams)
    last_modified: datetime | None = None  # ITI-74 only
    request_id: str | None = None  # 2016 careServicesRequest/@id
    region: str | None = None  # legacy regional endpoint the request was posted to
    # ROR v2.4 profile: the element naming the function (a TR_Lecture child of csd:function, or the TR-Notif
    # operation's root element); functions.yaml `official` maps it (with function_urn) to a stored function.
    selector: str | None = None


# --------------------------------------------------------------------------------------------------
# Outbound to the national API: what to ask, and what came back


@dataclass(frozen=True, slots=True)
class FhirQuery:
    """One FHIR search: `GET [base]/{resource_type}?{params}`; params keep their order and repeats."""

    resource_type: str
    params: tuple[tuple[str, str], ...]
    purpose: str = ""  # a human label, for logs and golden cases


class Directory(StrEnum):
    """The four CSD directories, in the order the CSD document carries them."""

    ORGANIZATION = "organizationDirectory"
    SERVICE = "serviceDirectory"
    FACILITY = "facilityDirectory"
    PROVIDER = "providerDirectory"
    DEVICE = "deviceDirectory"  # ROR CSD v2.4 profile: the equipment, after the four IHE directories


@dataclass(frozen=True, slots=True)
class QueryPlan:
    """What translate/ decided to ask the national API for one stored function call."""

    function: str  # canonical URN of the stored function
    queries: tuple[FhirQuery, ...]
    directories: frozenset[Directory]  # the directories the answer fills (the others stay empty)
    # How many matches of the first query answer the request (IHE start - 1 + max); None: all of them.
    # A client may stop following `next` links once it holds that many (translate/select.py).
    limit: int | None = None
    # The directory an IHE search answers in (functions.yaml `result`): its records are the matches only;
    # an entity of it that a match references (a parent) is received to resolve the reference's entityID,
    # not written. None: every entity the matches reference is written too.
    result: Directory | None = None
    # The point (WGS84 latitude, longitude) of a distance search around a point (the `near_point` resolver):
    # each UE's location/calculatedDistance is its lieu's distance from it. None: no such search.
    origin: tuple[float, float] | None = None


@dataclass(slots=True)
class SearchResult:
    """The complete answer to one `FhirQuery`: every page followed, matches and includes apart."""

    query: FhirQuery
    matches: list[Resource] = field(default_factory=list)
    includes: list[Resource] = field(default_factory=list)
    total: int | None = None
    pages: int = 0


# --------------------------------------------------------------------------------------------------
# CSD records (the response document), field order = XSD sequence order


@dataclass(frozen=True, slots=True)
class Record:
    created: datetime
    updated: datetime
    status: str  # "Active" / "Inactive"
    source_directory: str | None = None


@dataclass(frozen=True, slots=True)
class Address:
    lines: tuple[AddressLine, ...]
    type: str | None = None


@dataclass(frozen=True, slots=True)
class ContactPoint:
    coded_type: CodedType  # code e.g. BP / FAX / EMAIL; the number or address is its display text
    equipment: str | None = None
    purpose: str | None = None


@dataclass(frozen=True, slots=True)
class Geocode:
    latitude: float
    longitude: float
    altitude: float | None = None
    coordinate_system: str | None = None


@dataclass(frozen=True, slots=True)
class OperatingHours:
    open_flag: bool
    begin_effective_date: date
    days_of_week: tuple[int, ...] = ()  # CSD numbering: Sunday = 0
    beginning_hour: time | None = None
    ending_hour: time | None = None
    end_effective_date: date | None = None
    extensions: tuple[Extension, ...] = ()  # the v2.4 profile's operatingHoursExtension (slot type, record)


@dataclass(frozen=True, slots=True)
class ExtensionNode:
    """A child element inside `csd:extension`: unqualified (the one child the v2.4 profile's extension type
    leaves open), or, for a typed element of the ROR CSD v2.4 profile (`Extension.profile`), in the CSD
    namespace with its children."""

    name: str
    text: str | None = None
    attributes: tuple[tuple[str, str], ...] = ()
    children: tuple[ExtensionNode, ...] = ()


@dataclass(frozen=True, slots=True)
class Extension:
    """`csd:extension type=… urn=…` with at most one child element (CSD schema).

    `profile`: the content is one typed element of the ROR CSD v2.4 profile (bridge/profile.py, `type` names
    the typed extension, e.g. `organisationExtension`); the writer gathers every such element of an entity
    into one `csd:extension`, in the profile's sequence order.
    """

    type: str
    urn: str
    content: ExtensionNode | None = None
    profile: bool = False


@dataclass(frozen=True, slots=True)
class Organization:
    entity_id: str
    coded_types: tuple[CodedType, ...]
    primary_name: str
    record: Record
    other_ids: tuple[OtherID, ...] = ()
    other_names: tuple[str, ...] = ()
    addresses: tuple[Address, ...] = ()
    contact_points: tuple[ContactPoint, ...] = ()
    parent_id: str | None = None
    extensions: tuple[Extension, ...] = ()


@dataclass(frozen=True, slots=True)
class Service:
    """`serviceDirectory/service`: the 2014 schema allows exactly one codedType, extensions, record."""

    entity_id: str
    coded_type: CodedType
    record: Record
    extensions: tuple[Extension, ...] = ()


@dataclass(frozen=True, slots=True)
class FacilityService:
    """`facility/organizations/organization/service`: an offer given at a facility."""

    entity_id: str
    names: tuple[str, ...] = ()
    operating_hours: tuple[OperatingHours, ...] = ()
    extensions: tuple[Extension, ...] = ()


@dataclass(frozen=True, slots=True)
class FacilityOrganization:
    entity_id: str
    services: tuple[FacilityService, ...] = ()
    extensions: tuple[Extension, ...] = ()


@dataclass(frozen=True, slots=True)
class Facility:
    entity_id: str
    coded_types: tuple[CodedType, ...]
    primary_name: str
    record: Record
    other_ids: tuple[OtherID, ...] = ()
    other_names: tuple[str, ...] = ()
    addresses: tuple[Address, ...] = ()
    contact_points: tuple[ContactPoint, ...] = ()
    geocode: Geocode | None = None
    organizations: tuple[FacilityOrganization, ...] = ()
    operating_hours: tuple[OperatingHours, ...] = ()
    extensions: tuple[Extension, ...] = ()


@dataclass(frozen=True, slots=True)
class PersonName:
    """`csd:name` of a person: `honorific` is the profile's civilité d'exercice (TRE_R11, coded); the
    civilité (TRE_R81) is the profile's `nameExtension/title`, a typed element in `extensions`."""

    common_names: tuple[str, ...]
    honorific: CodedType | None = None
    forename: str | None = None
    surname: str | None = None
    suffix: str | None = None
    extensions: tuple[Extension, ...] = ()


@dataclass(frozen=True, slots=True)
class Demographic:
    names: tuple[PersonName, ...]
    contact_points: tuple[ContactPoint, ...] = ()
    addresses: tuple[Address, ...] = ()
    gender: str | None = None
    date_of_birth: date | None = None


@dataclass(frozen=True, slots=True)
class Credential:
    coded_type: CodedType
    number: str
    issuing_authority: str | None = None
    issue_date: date | None = None
    renewal_date: date | None = None
    extensions: tuple[Extension, ...] = ()


@dataclass(frozen=True, slots=True)
class ProviderOrganization:
    entity_id: str
    extensions: tuple[Extension, ...] = ()
    addresses: tuple[Address, ...] = ()
    contact_points: tuple[ContactPoint, ...] = ()


@dataclass(frozen=True, slots=True)
class ProviderService:
    entity_id: str
    names: tuple[str, ...] = ()
    organization_id: str | None = None
    operating_hours: tuple[OperatingHours, ...] = ()
    extensions: tuple[Extension, ...] = ()


@dataclass(frozen=True, slots=True)
class ProviderFacility:
    entity_id: str
    services: tuple[ProviderService, ...] = ()
    operating_hours: tuple[OperatingHours, ...] = ()
    extensions: tuple[Extension, ...] = ()


@dataclass(frozen=True, slots=True)
class Provider:
    entity_id: str
    coded_types: tuple[CodedType, ...]
    demographic: Demographic
    record: Record
    other_ids: tuple[OtherID, ...] = ()
    organizations: tuple[ProviderOrganization, ...] = ()
    facilities: tuple[ProviderFacility, ...] = ()
    credentials: tuple[Credential, ...] = ()
    specialties: tuple[CodedType, ...] = ()
    extensions: tuple[Extension, ...] = ()


@dataclass(frozen=True, slots=True)
class Device:
    """`deviceDirectory/device` (ROR CSD v2.4 profile): an equipment, referenced by the facilities using it
    (`facilityExtension/equipment`)."""

    entity_id: str
    coded_type: CodedType
    record: Record
    other_ids: tuple[OtherID, ...] = ()
    extensions: tuple[Extension, ...] = ()


# --------------------------------------------------------------------------------------------------
# The one declaration of each CSD entity's shape: its XSD sequence, which record field holds each element
# and which elements the mapping tables fill. The tables' targets (translate/tables.py `ENTITY_KINDS`), the
# engine's record builder (translate/engine.py) and the writer (csd/writer.py) are derived from it; value
# type, multiplicity and requiredness come from the record's field (a tuple: many; no default: required).


class Form(StrEnum):
    """How an element of an entity is written."""

    VALUE = "value"  # the value's own element(s), by its type (str: a text element of that name)
    ATTRIBUTE = "attribute"  # `@entityID`, on the entry's start tag
    REFERENCE = "reference"  # `<csd:parent entityID="…"/>`: another entity's entityID
    LIST = "list"  # a wrapper element (`organizations`) holding each value, written only when there is one
    EXTENSIONS = "extensions"  # every `csd:extension`, the profile's typed elements grouped (csd/writer.py)


@dataclass(frozen=True, slots=True)
class Slot:
    """One place of an entity's XSD sequence."""

    element: str  # the CSD element (or `@attribute`) name; a mapping table rule's `target`
    field: str  # the record's field holding its value(s)
    form: Form = Form.VALUE
    mapped: bool = True  # a mapping table rule may fill it (False: written when the record has it)


@dataclass(frozen=True, slots=True)
class Shape:
    """A CSD entity kind: its entry element, directory, record type and sequence."""

    name: str
    directory: Directory
    record: type
    slots: tuple[Slot, ...]
    mapped: bool = True  # mapping tables build it (`entity:` in mappings/entities/*.yaml)


_ENTITY_ID: Final = Slot("@entityID", "entity_id", Form.ATTRIBUTE)
_EXTENSION: Final = Slot("extension", "extensions", Form.EXTENSIONS)
_RECORD: Final = Slot("record", "record")

# CSD 2014 sequences (docs/csd-wire-format.md §5; contact, credential of an organisation, language and
# specialization have no source in the model and are never written).
ENTITY_SHAPES: Final[Mapping[str, Shape]] = {
    shape.name: shape
    for shape in (
        Shape(
            "organization",
            Directory.ORGANIZATION,
            Organization,
            (
                _ENTITY_ID,
                Slot("otherID", "other_ids"),
                Slot("codedType", "coded_types"),
                Slot("primaryName", "primary_name"),
                Slot("otherName", "other_names"),
                Slot("address", "addresses"),
                Slot("contactPoint", "contact_points"),
                Slot("parent", "parent_id", Form.REFERENCE),
                _EXTENSION,
                _RECORD,
            ),
        ),
        Shape(
            "service",
            Directory.SERVICE,
            Service,
            (_ENTITY_ID, Slot("codedType", "coded_type"), _EXTENSION, _RECORD),  # 2014: exactly one codedType
        ),
        Shape(
            "facility",
            Directory.FACILITY,
            Facility,
            (
                _ENTITY_ID,
                Slot("otherID", "other_ids"),
                Slot("codedType", "coded_types"),
                Slot("primaryName", "primary_name"),
                Slot("otherName", "other_names"),
                Slot("address", "addresses"),
                Slot("geocode", "geocode"),
                Slot("contactPoint", "contact_points"),
                Slot("organizations", "organizations", Form.LIST),
                Slot("operatingHours", "operating_hours", mapped=False),
                _EXTENSION,
                _RECORD,
            ),
        ),
        Shape(
            "provider",
            Directory.PROVIDER,
            Provider,
            (
                _ENTITY_ID,
                Slot("otherID", "other_ids"),
                Slot("codedType", "coded_types"),
                Slot("demographic", "demographic"),
                Slot("organizations", "organizations", Form.LIST),
                Slot("facilities", "facilities", Form.LIST),
                Slot("credential", "credentials"),
                Slot("specialty", "specialties"),
                _EXTENSION,
                _RECORD,
            ),
        ),
        Shape(
            "device",  # ROR CSD v2.4 profile: a table with `each` builds one per part of a resource
            Directory.DEVICE,
            Device,
            (_ENTITY_ID, Slot("otherID", "other_ids"), Slot("codedType", "coded_type"), _EXTENSION, _RECORD),
        ),
    )
}


@dataclass(frozen=True, slots=True)
class SlotType:
    """What a record field declares for a slot: its value type, whether it holds many, whether required."""

    type: type
    many: bool
    required: bool


def slot_types(shape: Shape) -> dict[str, SlotType]:
    """Each slot's `SlotType` (by element name), read from the record's field annotations."""
    hints = get_type_hints(shape.record)
    defaults = {f.name: f for f in fields(shape.record)}
    types: dict[str, SlotType] = {}
    for slot in shape.slots:
        hint = hints[slot.field]
        many = get_origin(hint) is tuple
        args = [a for a in get_args(hint) if a is not type(None) and a is not Ellipsis]
        value_type = args[0] if args else hint
        declared = defaults[slot.field]
        required = declared.default is MISSING and declared.default_factory is MISSING
        types[slot.element] = SlotType(value_type, many, required)
    return types


@dataclass(frozen=True, slots=True)
class CsdDocument:
    """A whole `csd:CSD` answer; the five directories (the four IHE ones, then the profile's deviceDirectory)
    are always written, possibly empty."""

    organizations: Sequence[Organization] = ()
    services: Sequence[Service] = ()
    facilities: Sequence[Facility] = ()
    providers: Sequence[Provider] = ()
    devices: Sequence[Device] = ()


@dataclass(frozen=True, slots=True)
class CsdResponse:
    """What the edge writes back for one request: the document and how to wrap it.

    `directories`, when set, replaces `document`: the five directories of the `csd:CSD` answer already
    written (UTF-8, from `<csd:organizationDirectory>` to `</csd:deviceDirectory>`) to an open temporary
    file, which the edge copies into the envelope and then closes (ITI-74 at flat memory,
    pipeline/changes.py).
    """

    request: CsdRequest
    document: CsdDocument
    directories: BinaryIO | None = None
    written: Mapping[Directory, int] | None = None  # records per directory in `directories` (metrics)
    # TR-Notif: EG entityID → the champs d'activité (TRE_R227) of its changed offers (pipeline/changes.py).
    activities: Mapping[str, tuple[CodedType, ...]] | None = None


# --------------------------------------------------------------------------------------------------
# Cheaper construction of the frozen records (issue 13 item 1): a translation of 3 000 offers makes ~200 000
# of them (84 000 `ExtensionNode`, 31 500 `Extension`, …). A frozen dataclass's generated `__init__` sets each
# field through `object.__setattr__(self, "name", value)` (an attribute look-up of the name on the type per
# field); the one made here calls each slot's own descriptor instead (~0.58 → ~0.30 µs for a 4-field record).
# Same signature, defaults and default factories, same `__setattr__` (still frozen), `__eq__`, `__hash__`,
# `__repr__`, pickling (the dataclass's `__getstate__`/`__setstate__`) and `dataclasses.replace`.


def _slot_setting_init(cls: type) -> None:
    """Replace the `__init__` of the frozen slots dataclass `cls` by one setting each slot through its
    member descriptor (tests/test_model_init.py checks it against the fields)."""
    unsupported = [f.name for f in fields(cls) if not f.init or f.kw_only is True]
    if unsupported or hasattr(cls, "__post_init__"):
        # The generated __init__ below knows positional fields with defaults or factories only.
        raise TypeError(f"{cls.__qualname__}: fast init cannot keep __post_init__/init=False/kw_only fields")
    namespace: dict[str, Any] = {"__has_factory": _HAS_FACTORY}
    parameters: list[str] = []
    body: list[str] = []
    for number, declared in enumerate(fields(cls)):
        name = declared.name
        namespace[f"__set_{number}"] = cls.__dict__[name].__set__
        if declared.default is not MISSING:
            namespace[f"__default_{number}"] = declared.default
            parameters.append(f"{name}=__default_{number}")
        elif declared.default_factory is not MISSING:
            namespace[f"__factory_{number}"] = declared.default_factory
            parameters.append(f"{name}=__has_factory")
            body.append(f"    if {name} is __has_factory:\n        {name} = __factory_{number}()")
        else:
            parameters.append(name)
        body.append(f"    __set_{number}(self, {name})")
    source = f"def __init__(self, {', '.join(parameters)}):\n" + "\n".join(body or ["    pass"]) + "\n"
    exec(source, namespace)  # noqa: S102 — the source is made from the class's own field names only
    init = namespace["__init__"]
    init.__qualname__ = f"{cls.__qualname__}.__init__"
    init.__module__ = cls.__module__
    init.__annotations__ = dict(cls.__dict__["__init__"].__annotations__)
    cls.__init__ = init  # type: ignore[misc]


class _HasFactory:
    """The default of a parameter whose field has a default factory (called when the argument is absent)."""

    def __repr__(self) -> str:
        return "<factory>"


_HAS_FACTORY: Final = _HasFactory()

# Every frozen slots dataclass of this module (the records above).
FAST_INIT: Final[tuple[type, ...]] = tuple(
    value
    for value in list(globals().values())
    if isinstance(value, type)
    and value.__module__ == __name__
    and getattr(getattr(value, "__dataclass_params__", None), "frozen", False)
    and "__slots__" in value.__dict__
)
for _record_type in FAST_INIT:
    _slot_setting_init(_record_type)
del _record_type
