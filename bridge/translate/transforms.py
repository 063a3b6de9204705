"""The closed list of named transforms a mapping rule may use: selected FHIR values in, CSD values out.

translate/: pure mapping engine. A case that needs logic gets a transform here, with a test — never an
expression in a table (architecture.md §4; mappings/README.md, "Transforms").
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import date, datetime, time, tzinfo
from decimal import Decimal
from functools import lru_cache
from typing import Any, TypeVar

from bridge import profile
from bridge.errors import TransformError as TransformError  # raised here; importers keep this path
from bridge.model import (
    Address,
    AddressLine,
    CodedType,
    ContactPoint,
    Credential,
    Demographic,
    Extension,
    ExtensionNode,
    FacilityOrganization,
    FacilityService,
    Geocode,
    OperatingHours,
    OtherID,
    PersonName,
    ProviderFacility,
    ProviderOrganization,
    ProviderService,
    Record,
    Resource,
)
from bridge.translate.codes import CodeTable, Systems
from bridge.translate.findings import Finding, Findings
from bridge.translate.identity import Identities, NationalIdentifier, encode
from bridge.translate.paths import SourcePath

# Extension URLs the closure and creation-date logic reads (ROR IG profiles ROROrganization /
# RORHealthcareService; docs/ror-fhir-api.md §3.1, §3.2).
META_CREATION_DATE = "https://interop.esante.gouv.fr/ig/fhir/ror/StructureDefinition/ror-meta-creation-date"
ORGANIZATION_PERIOD = "http://hl7.org/fhir/StructureDefinition/organization-period"
ORGANIZATION_CLOSING_TYPE = (
    "https://interop.esante.gouv.fr/ig/fhir/ror/StructureDefinition/ror-organization-closing-type"
)
# Statut du lieu (TRE_R203-StatutLieu, OID 1.2.250.1.213.3.3.4; JDV_J224 its ROR subset): #1 closes for good.
LOCATION_STATUS = "https://interop.esante.gouv.fr/ig/fhir/ror/StructureDefinition/ror-location-status"
LIEU_CLOSED_FOR_GOOD = "1"
LIEU_STATUS_SYSTEM_MARKS = ("TRE_R203", "JDV_J224", "1.2.250.1.213.3.3.4")
CLOSING_REOPENING_ID = "closingReopeningDate"  # HealthcareService.notAvailable slice, id fixed by the profile
# How an internal organisation is recognised (ROROrganization: slice identifierOI, its system and type
# TRE_R345 #42; type slice OIType from TRE_R207). The IG does not spell the EJ/EG/OI test out
# (docs/ror-fhir-api.md §3.1).
OI_IDENTIFIER_SYSTEM = "https://oi.esante.gouv.fr"
OI_IDENTIFIER_TYPE_CODE = "42"
OI_TYPE_SYSTEM_MARK = "TRE_R207"

# availableTime extensions of RORHealthcareService / RORPractitionerRole (IG 0.1 fork, RORAvailableTime*.fsh).
_IG_SD = "https://interop.esante.gouv.fr/ig/fhir/ror/StructureDefinition/"
AVAILABLE_TIME_PERIOD = f"{_IG_SD}ror-available-time-effective-opening-closing-date"
AVAILABLE_TIME_DAY = f"{_IG_SD}ror-available-time-number-days-of-week"
AVAILABLE_TIME_TYPE = f"{_IG_SD}ror-available-time-type-of-time"
CLOSING_SLOT_CODE = "08"  # TRE_R252-TypeHoraire / JDV_J41 "Horaire de fermeture"
# RORLocation.position: "système géodésique : WGS84" (RORLocation.fsh, position ^short).
COORDINATE_SYSTEM = "WGS84"

Value = (
    str
    | CodedType
    | OtherID
    | Address
    | ContactPoint
    | Record
    | Geocode
    | ExtensionNode
    | FacilityOrganization
    | Demographic
    | ProviderOrganization
    | ProviderFacility
    | Credential
)


@dataclass(frozen=True, slots=True)
class Part:
    """The part of a resource one record of an `each` table is made of (EntityTable.each): the part, its
    position among the resource's parts (0-based), and each part's key (what the table's `@entityID` rule's
    source selects in it), so that a part's entityID can tell apart two parts with the same key."""

    element: Mapping[str, Any]
    position: int
    keys: tuple[tuple[str, ...], ...]


@dataclass(frozen=True, slots=True)
class Context:
    """What a transform may look at besides the values its rule selected."""

    systems: Systems
    identities: Identities
    index: Mapping[str, Resource]  # every resource received, by "Type/id"
    findings: Findings
    now: datetime
    timezone: tzinfo
    codes: CodeTable | None = None  # the rule's code table, when it names one
    # "Location/<id>" → the received HealthcareServices whose `location` names it, in index order (built once
    # per answer, when first read: a ReverseIndex; facility_organizations would otherwise scan every resource
    # per Location)
    offers_at: Mapping[str, tuple[Resource, ...]] = field(default_factory=dict)
    # "Organization/<id>" → the received HealthcareServices provided by it or by an organisation below it
    # (providedBy, then partOf up the chain), built once per answer when first read (offers_below)
    offers_under: Mapping[str, tuple[Resource, ...]] = field(default_factory=dict)
    # What a transform worked out for one resource of this answer, kept for the other rules and typed elements
    # asking again (the record of a resource is written once per contact point): (name, id(resource)) →
    # (the resource, kept to check the id still names it; the value). Shared by the `replace`d contexts, which
    # also keep there their copy without code table (`plain`, keyed by the context's id).
    memo: dict[tuple[str, int], tuple[Any, Any]] = field(default_factory=dict)
    # The point of a distance search (QueryPlan.origin): lieu_location states the lieu's distance from it
    origin: tuple[float, float] | None = None
    # The part being mapped by an `each` table (EntityTable.each); None for a table of whole resources
    part: Part | None = None


TransformFunc = Callable[[Sequence[Any], Resource, Context], list[Value]]


@dataclass(frozen=True, slots=True)
class Transform:
    name: str
    output: type  # the CSD value type it produces; the loader checks it against the rule's target
    source: bool  # True: the rule must give a source path; False: the rule must not
    codes: bool  # True: the rule must name a code table
    func: TransformFunc
    required_keys: tuple[str, ...] = ()  # source codes the code table must hold
    # What the transform reads besides its own resource (translate/feeds.py derives change sets from it):
    # paths of reference steps from the resource — `@source` (the references its rule's source selects),
    # `element` (a Reference element followed forward), `<Type.element` (the resources of Type whose element
    # references this one) — each marked as read for its content (`Feed`) or for its entityID only.
    reads: tuple[Read, ...] = ()


@dataclass(frozen=True, slots=True)
class Read:
    """One path of other resources a transform reads (Transform.reads): `content` False when only the
    reached resource's entityID (its national identifier) is written, True when any more of it is."""

    path: tuple[str, ...]
    content: bool


SOURCE = "@source"  # a Read step: the references the rule's source path selects
_IDENTITY = (Read((SOURCE,), content=False),)
# The offers provided by an organisation or by any organisation below it (Context.offers_under): their champs
# d'activité and publics make an internal organisation's typeActivity / patientsType.
_OFFERS_BELOW = Read(("<Organization.partOf*", "<HealthcareService.providedBy"), content=True)


# --------------------------------------------------------------------------------------------------
# FHIR dates


_PARTIAL = re.compile(r"^(\d{4})(?:-(\d{2}))?$")
# Parsed datetimes remembered: a resource's dates recur in the elements written from it and its neighbours in
# a batch; across a national extraction they hardly do (7 % hits at 4 096, 29 % at 65 536, each entry ~250 B
# per process: issue 13 item 4).
DATETIMES_KEPT = 4096


def parse_datetime(text: Any, timezone: tzinfo) -> datetime:
    """A FHIR date / dateTime / instant, made aware; naive and partial values take `timezone` [INFER]."""
    if not isinstance(text, str) or not text:
        raise TransformError(f"not a FHIR dateTime: {text!r}")
    return _parse_datetime(text, timezone)


@lru_cache(maxsize=DATETIMES_KEPT)
def _parse_datetime(text: str, timezone: tzinfo) -> datetime:
    """parse_datetime of a non-empty string, remembered: a record's dates repeat across the entities and the
    typed elements written from one resource (datetimes are immutable; errors are not remembered)."""
    partial = _PARTIAL.match(text)
    try:
        if partial:
            value = datetime(int(partial[1]), int(partial[2] or 1), 1)
        elif len(text) == 10:
            value = datetime.combine(date.fromisoformat(text), time())
        else:
            value = datetime.fromisoformat(text)
    except ValueError as error:
        raise TransformError(f"not a FHIR dateTime: {text!r}") from error
    return value if value.tzinfo else value.replace(tzinfo=timezone)


def _extensions(resource: Resource, url: str) -> list[dict[str, Any]]:
    return [e for e in resource.get("extension") or () if isinstance(e, dict) and e.get("url") == url]


# --------------------------------------------------------------------------------------------------
# The transforms


def entity_id(values: Sequence[Any], resource: Resource, ctx: Context) -> list[Value]:
    """The resource's own entityID (mappings/identities.yaml)."""
    derived, national = _derive(resource, ctx)
    if not national:
        ctx.findings.add(Finding.FHIR_ID_ENTITY, str(resource.get("resourceType")))
    return [derived]


PART_SCHEME = "equipement"  # identities.yaml: the prefix of a part's entityID [INFER]


def part_entity_id(values: Sequence[Any], resource: Resource, ctx: Context) -> list[Value]:
    """The entityID of a part of a resource (an `each` table: an équipement of a lieu, which has no identifier
    in v3) [INFER]: `<prefix of identities.yaml scheme "equipement"><resource's national identifier>/<key>`,
    the key being what the rule's source selects in the part (the TRE_R212 code), with `/<rank>` (1-based
    among the parts of the same key) only when the resource has several parts of that key. The resource's
    identifier is the one its own entityID is derived from (identities.yaml order), else its FHIR id."""
    part = ctx.part
    if part is None:
        raise TransformError("part_entity_id maps a part: the table needs `each`")
    if not part.keys[part.position]:
        raise TransformError("part_entity_id: the part has no key (its source selected nothing)")
    return [part_id(resource, part.keys, part.position, ctx)]


def part_id(resource: Resource, keys: Sequence[tuple[str, ...]], position: int, ctx: Context) -> str:
    """part_entity_id's entityID of the part at `position` of a resource whose parts have `keys`: what a
    part's own entry and every reference to it (lieu_equipment) write."""
    scheme = ctx.identities.schemes.get(PART_SCHEME)
    if scheme is None:
        raise TransformError(f"part_entity_id needs the identities.yaml scheme {PART_SCHEME!r}")
    derived, national = _derive(resource, ctx)
    found = ctx.identities.reverse(derived)
    if national and isinstance(found, NationalIdentifier):
        owner = found.value
    else:
        ctx.findings.add(Finding.FHIR_ID_ENTITY, str(resource.get("resourceType")))
        owner = f"{resource.get('resourceType')}/{resource.get('id')}"
    key = keys[position]
    same = [n for n, k in enumerate(keys) if k == key]
    value = f"{owner}/{'/'.join(key)}"
    if len(same) > 1:
        value += f"/{same.index(position) + 1}"
    return scheme.prefix + encode(value)


def _derive(resource: Resource, ctx: Context) -> tuple[str, bool]:
    """identities.derive, once per resource of the answer (its entityID is asked by itself and by every
    resource referencing it)."""
    known = ctx.memo.get(("derive", id(resource)))
    if known is not None and known[0] is resource:
        derived: tuple[str, bool] = known[1]
        return derived
    made = ctx.identities.derive(resource)
    ctx.memo[("derive", id(resource))] = (resource, made)
    return made


def plain(ctx: Context) -> Context:
    """The context without its code table (a coded value that must not go through the rule's crosswalk), made
    once per context of an answer."""
    if ctx.codes is None:
        return ctx
    known = ctx.memo.get(("plain", id(ctx)))
    if known is not None and known[0] is ctx:
        made: Context = known[1]
        return made
    made = replace(ctx, codes=None)
    ctx.memo[("plain", id(ctx))] = (ctx, made)
    return made


_T = TypeVar("_T")


def once(name: str, owner: Resource, ctx: Context, make: Callable[[Resource, Context], _T]) -> _T:
    """What `make(owner, ctx)` works out from `owner` alone (a lieu, an offer), once per resource of the
    answer: every resource referencing it asks again. Kept only when it reported nothing (so a finding is
    counted each time, as before) and outside an `each` part; `name` says what, and any code table it uses."""
    key = (name, id(owner))
    known = ctx.memo.get(key)
    if known is not None and known[0] is owner:
        found: _T = known[1]
        return found
    before = ctx.findings.added
    made = make(owner, ctx)
    if ctx.findings.added == before and ctx.part is None:
        ctx.memo[key] = (owner, made)
    return made


# References remembered: an answer's references recur within a batch and its neighbours (an offer's
# organisation and lieu), hardly across a national extraction. Each entry holds the reference, its key and
# the cache's link (~260 B, ~17 MB at 65 536 entries in the bridge and in each mapping worker); at 10 000
# offers 4 096 entries hit 77 % of the read-back's lookups against 92 % for 65 536, which held all 37 000
# references, for a CPU difference below the noise (a miss is ~1 µs; issue 13 item 4).
REFERENCES_KEPT = 4096


@lru_cache(maxsize=REFERENCES_KEPT)
def reference_key(reference: str) -> str | None:
    """`Type/id` of a literal FHIR reference, relative or absolute, with or without `_history/…` (remembered:
    the same references recur across the resources of an answer)."""
    parts = [p for p in reference.split("?")[0].split("/") if p]
    if len(parts) >= 4 and parts[-2] == "_history":
        parts = parts[:-2]
    if len(parts) < 2 or not parts[-2][:1].isupper():
        return None
    return f"{parts[-2]}/{parts[-1]}"


def derived_id(target: Resource, ctx: Context) -> str:
    """The entityID of another received resource; a FHIR-id fallback is reported as for the entity itself."""
    derived, national = _derive(target, ctx)
    if not national:
        ctx.findings.add(Finding.FHIR_ID_ENTITY, str(target.get("resourceType")))
    return derived


def reference_entity_id(values: Sequence[Any], resource: Resource, ctx: Context) -> list[Value]:
    """The entityID of each referenced resource found among those received; else its FHIR-id entityID."""
    out: list[Value] = []
    for value in values:
        if not isinstance(value, str):
            raise TransformError(f"a reference must be a string, got {type(value).__name__}")
        key = reference_key(value)
        if key is None:
            raise TransformError(f"not a literal reference: {value!r}")
        target = ctx.index.get(key)
        if target is not None:
            out.append(derived_id(target, ctx))
        else:
            resource_type, _, logical_id = key.partition("/")
            ctx.findings.add(Finding.UNRESOLVED_REFERENCE, key)
            out.append(ctx.identities.fallback(resource_type, logical_id))
    return out


def resolved_entity_id(values: Sequence[Any], resource: Resource, ctx: Context) -> list[Value]:
    """The entityID of each referenced resource received; a reference to a resource not received is reported
    and left out: for links in extensions, a FHIR-id entityID would name the same entity differently from
    the answers that carry it (identities.yaml)."""
    return [derived_id(target, ctx) for target in _referenced(values, ctx)]


def other_id(values: Sequence[Any], resource: Resource, ctx: Context) -> list[Value]:
    """FHIR Identifier → otherID(code = value, assigningAuthorityName = NOS OID, else the system URL)."""
    out: list[Value] = []
    for identifier in values:
        if not isinstance(identifier, dict):
            raise TransformError("other_id needs Identifier objects")
        value, system = identifier.get("value"), identifier.get("system")
        if not isinstance(value, str) or not value:
            continue
        if not isinstance(system, str) or not system:
            ctx.findings.add(Finding.IDENTIFIER_WITHOUT_SYSTEM, str(resource.get("resourceType")))
            continue
        if ctx.systems.oid(system) is None:
            ctx.findings.add(Finding.IDENTIFIER_WITHOUT_OID, system)
        out.append(OtherID(code=value, assigning_authority_name=ctx.systems.scheme(system)))
    return out


def coded_type(values: Sequence[Any], resource: Resource, ctx: Context) -> list[Value]:
    """FHIR Coding (or CodeableConcept) → codedType; codingScheme = NOS OID, else the system URL (reported).

    With a code table, the code is looked up there first (v3 → v2.4 crosswalk); absent codes pass through.
    """
    codings: Sequence[dict[str, Any]]
    if len(values) == 1 and isinstance(values[0], dict) and "coding" not in values[0]:
        codings = values  # one Coding (most calls): as the loop below would list it
    else:
        codings = []
        for value in values:
            if not isinstance(value, dict):
                raise TransformError("coded_type needs Coding or CodeableConcept objects")
            if "coding" in value:
                codings.extend(c for c in value.get("coding") or () if isinstance(c, dict))
            else:
                codings.append(value)
    out: list[Value] = []
    for coding in codings:
        code, system = coding.get("code"), coding.get("system")
        if not isinstance(code, str) or not code:
            continue
        if not isinstance(system, str) or not system:
            raise TransformError(f"coding {code!r} has no system")
        crosswalked = ctx.codes.get(code) if ctx.codes else None
        if crosswalked is not None:
            out.append(crosswalked)
            continue
        oid = ctx.systems.oid(system)
        if oid is None:
            ctx.findings.add(Finding.SYSTEM_WITHOUT_OID, system)
        display = coding.get("display")
        out.append(_coded(code, oid or system, display if isinstance(display, str) else None))
    return out


@lru_cache(maxsize=16384)
def _coded(code: str, scheme: str, display: str | None) -> CodedType:
    """A codedType (immutable: the same code of the same scheme and display is one object, remembered)."""
    return CodedType(code, scheme, display)


def organization_kind(resource: Resource) -> str:
    """EJ, EG or OI (ror-fhir-api §3.1 inference: OI carries identifierOI / OIType; EJ has no partOf)."""
    for identifier in resource.get("identifier") or ():
        if not isinstance(identifier, dict):
            continue
        if identifier.get("system") == OI_IDENTIFIER_SYSTEM:
            return "OI"
        codings = (identifier.get("type") or {}).get("coding") or ()
        if any(
            c.get("code") == OI_IDENTIFIER_TYPE_CODE and "TRE_R345" in str(c.get("system")) for c in codings
        ):
            return "OI"
    for concept in resource.get("type") or ():
        if any(OI_TYPE_SYSTEM_MARK in str(c.get("system")) for c in (concept or {}).get("coding") or ()):
            return "OI"
    return "EG" if resource.get("partOf") else "EJ"


def organization_kind_coded_type(values: Sequence[Any], resource: Resource, ctx: Context) -> list[Value]:
    """The organisation kind (EJ / EG / OI) as a codedType from the rule's code table."""
    if ctx.codes is None:
        raise TransformError("organization_kind needs a code table")
    kind = organization_kind(resource)
    coded = ctx.codes.get(kind)
    if coded is None:
        raise TransformError(f"code table {ctx.codes.name!r} has no row for {kind!r}")
    return [coded]


# FHIR Address.type → CSD address/@type (Practice / Mailing in the CSD samples) [INFER].
_ADDRESS_TYPE = {"physical": "Practice", "both": "Practice", "postal": "Mailing"}


def address(values: Sequence[Any], resource: Resource, ctx: Context) -> list[Value]:
    """FHIR Address → CSD address; line → streetAddress, then city, postalCode, stateProvince, country
    (the addressLine components of the CSD samples, docs/csd-wire-format.md §5)."""
    out: list[Value] = []
    for value in values:
        if not isinstance(value, dict):
            raise TransformError("address needs Address objects")
        lines = [
            AddressLine(line, "streetAddress") for line in value.get("line") or () if isinstance(line, str)
        ]
        for fhir_field, component in (
            ("city", "city"),
            ("postalCode", "postalCode"),
            ("state", "stateProvince"),
            ("country", "country"),
        ):
            if isinstance(value.get(fhir_field), str) and value[fhir_field]:
                lines.append(AddressLine(value[fhir_field], component))
        if lines:
            out.append(Address(tuple(lines), _ADDRESS_TYPE.get(str(value.get("type")))))
    return out


def contact_point(values: Sequence[Any], resource: Resource, ctx: Context) -> list[Value]:
    """FHIR ContactPoint → CSD contactPoint as the v2.4 profile writes it: codedType = the canal TRE_R200 (the
    telecom's ror-telecom-communication-channel, else its `system|use` or `system` row of the code table),
    equipment = the number or address."""
    if ctx.codes is None:
        raise TransformError("contact_point needs a code table")
    out: list[Value] = []
    for value in values:
        if not isinstance(value, dict):
            raise TransformError("contact_point needs ContactPoint objects")
        number = value.get("value")
        if not isinstance(number, str) or not number:
            continue
        channel = _first_value(value, TELECOM_CHANNEL)
        found = coded_type([channel], {}, plain(ctx)) if isinstance(channel, dict) else []
        coded = found[0] if found and isinstance(found[0], CodedType) else None
        if coded is None:
            system = str(value.get("system"))
            coded = ctx.codes.get(f"{system}|{value.get('use')}") or ctx.codes.get(system)
        if coded is None:
            ctx.findings.add(Finding.SYSTEM_WITHOUT_OID, f"ContactPoint.system {value.get('system')!r}")
            continue
        out.append(ContactPoint(coded, equipment=number))
    return out


def _closed_for_good(location: Resource) -> bool:
    """The lieu's status (operationalStatus, or the IG 0.1 ror-location-status extension) is TRE_R203 #1
    "Fermé définitivement" (NOS file of 2023-06-14); #2 "Fermé temporairement" stays Active [INFER: the lieu
    reopens, the profile's record/@status is the entity's validity]."""
    codings: list[Any] = [location.get("operationalStatus")]
    for extension in _extensions(location, LOCATION_STATUS):
        value = _extension_value(extension)
        codings.extend((value or {}).get("coding") or () if isinstance(value, dict) else ())
        codings.append(value)
    for coding in codings:
        if not isinstance(coding, dict) or coding.get("code") != LIEU_CLOSED_FOR_GOOD:
            continue
        system = str(coding.get("system") or "")
        if any(mark in system for mark in LIEU_STATUS_SYSTEM_MARKS):
            return True
    return False


def status_from_closure(resource: Resource, now: datetime, timezone: tzinfo) -> str:
    """`Inactive` when the resource is closed at `now`, else `Active` (csd-wire-format §7.4, [INFER]).

    Organization: organization-period end reached, or a ror-organization-closing-type present.
    HealthcareService: notAvailable[closingReopeningDate] started and not yet reopened.
    Location: its TRE_R203 status is #1 "Fermé définitivement" (_closed_for_good).
    Any resource: FHIR `active` false (Organization, HealthcareService, PractitionerRole) or Location
    `status` inactive — the FHIR core closure flags.
    """
    if resource.get("active") is False or (
        resource.get("resourceType") == "Location" and resource.get("status") == "inactive"
    ):
        return "Inactive"
    if resource.get("resourceType") == "Location" and _closed_for_good(resource):
        return "Inactive"
    if _closed_organization(resource.get("extension"), now, timezone):
        return "Inactive"
    for slot in resource.get("notAvailable") or ():
        if not isinstance(slot, dict) or slot.get("id") != CLOSING_REOPENING_ID:
            continue
        during = slot.get("during") or {}
        start, end = during.get("start"), during.get("end")
        if (
            start
            and parse_datetime(start, timezone) <= now
            and not (end and parse_datetime(end, timezone) <= now)
        ):
            return "Inactive"
    return "Active"


def _closed_organization(extensions: Any, now: datetime, timezone: tzinfo) -> bool:
    """An organization-period whose end is reached (in their order), else a ror-organization-closing-type
    present: one pass over the resource's extensions."""
    closing = False
    for extension in extensions or ():
        if not isinstance(extension, dict):
            continue
        url = extension.get("url")
        if url == ORGANIZATION_PERIOD:
            end = (extension.get("valuePeriod") or {}).get("end")
            if end and parse_datetime(end, timezone) <= now:
                return True
        elif url == ORGANIZATION_CLOSING_TYPE:
            closing = True
    return closing


def record(values: Sequence[Any], resource: Resource, ctx: Context) -> list[Value]:
    """created = ror-meta-creation-date (else meta.lastUpdated), updated = meta.lastUpdated, status."""
    known = ctx.memo.get(("record", id(resource)))
    if known is not None and known[0] is resource:
        return [known[1]]
    made = _record(resource, ctx)
    ctx.memo[("record", id(resource))] = (resource, made)
    return [made]


def _record(resource: Resource, ctx: Context) -> Record:
    updated_text = (resource.get("meta") or {}).get("lastUpdated")
    created_texts = [e.get("valueDateTime") for e in _extensions(resource, META_CREATION_DATE)]
    created_text = next((t for t in created_texts if t), None) or updated_text
    if not updated_text:
        raise TransformError("meta.lastUpdated is missing (1..1 in every ROR profile)")
    updated = parse_datetime(updated_text, ctx.timezone)
    created = parse_datetime(created_text, ctx.timezone)
    return Record(
        created=created, updated=updated, status=status_from_closure(resource, ctx.now, ctx.timezone)
    )


def text(values: Sequence[Any], resource: Resource, ctx: Context) -> list[Value]:
    """No transform: the selected values are written as they are (strings, numbers, booleans)."""
    out: list[Value] = []
    for value in values:
        if isinstance(value, bool):
            out.append("true" if value else "false")
        elif isinstance(value, str | int | float):
            out.append(str(value))
        else:
            raise TransformError(f"expected a string, found a {type(value).__name__}; name a transform")
    return out


def crosswalk(values: Sequence[Any], resource: Resource, ctx: Context) -> list[Value]:
    """v3 code → v2.4 code through the rule's code table; a code without row is written as received and
    reported (CODE_WITHOUT_CROSSWALK), never dropped (issue 5 item 3; mappings/README.md "Codes")."""
    if ctx.codes is None:
        raise TransformError("crosswalk needs a code table")
    out: list[Value] = []
    for coding in _codings(values):
        code, system = coding["code"], coding["system"]
        # `system|code` rows first: they let one table crosswalk codes of several systems without clashes
        crosswalked = ctx.codes.get(f"{system}|{code}") or ctx.codes.get(code)
        if crosswalked is not None:
            out.append(crosswalked)
            continue
        ctx.findings.add(Finding.CODE_WITHOUT_CROSSWALK, f"{ctx.codes.name}: {system}|{code}")
        out.extend(coded_type([coding], resource, plain(ctx)))
    return out


def _codings(values: Sequence[Any]) -> list[dict[str, str]]:
    """The codings of Codings / CodeableConcepts that carry a code and a system."""
    out: list[dict[str, str]] = []
    for value in values:
        if not isinstance(value, dict):
            raise TransformError("expected Coding or CodeableConcept objects")
        codings = value.get("coding") if "coding" in value else [value]
        for coding in codings or ():
            if not isinstance(coding, dict) or not isinstance(coding.get("code"), str) or not coding["code"]:
                continue
            if not isinstance(coding.get("system"), str) or not coding["system"]:
                raise TransformError(f"coding {coding['code']!r} has no system")
            out.append(coding)
    return out


def default_code(values: Sequence[Any], resource: Resource, ctx: Context) -> list[Value]:
    """The `default` row of the rule's code table: the codedType of an entity whose data has none [INFER]."""
    if ctx.codes is None or ctx.codes.get("default") is None:
        raise TransformError("default_code needs a code table with a 'default' row")
    coded = ctx.codes.get("default")
    return [coded] if coded is not None else []


def geocode(values: Sequence[Any], resource: Resource, ctx: Context) -> list[Value]:
    """Location.position → CSD geocode (latitude, longitude, altitude; WGS84 per RORLocation)."""
    out: list[Value] = []
    for value in values:
        if not isinstance(value, dict):
            raise TransformError("geocode needs Location.position objects")
        latitude, longitude = value.get("latitude"), value.get("longitude")
        if not isinstance(latitude, int | float) or not isinstance(longitude, int | float):
            continue
        altitude = value.get("altitude")
        out.append(
            Geocode(
                float(latitude),
                float(longitude),
                float(altitude) if isinstance(altitude, int | float) else None,
                COORDINATE_SYSTEM,
            )
        )
    return out


_XML_NAME = re.compile(r"[^A-Za-z0-9_.-]")


def _node_name(text: str) -> str:
    """An XML element name from a FHIR key or extension URL (its last path segment)."""
    name = _XML_NAME.sub("_", text.rstrip("/").rsplit("/", 1)[-1]) or "value"
    return name if name[0].isalpha() or name[0] == "_" else f"_{name}"


def _tree(name: str, value: Any, ctx: Context) -> ExtensionNode:
    """One FHIR value as an extension node: primitives as text, codings as code/codingScheme attributes,
    extensions as children named after their URL, other objects as children named after their keys."""
    if isinstance(value, bool):
        return ExtensionNode(name, text="true" if value else "false")
    if isinstance(value, str | int | float):
        return ExtensionNode(name, text=str(value))
    if not isinstance(value, dict):
        raise TransformError(f"cannot write a {type(value).__name__} in an extension")
    if isinstance(value.get("code"), str) and isinstance(value.get("system"), str) and "value" not in value:
        # a Coding (a Quantity also has code and system, but with a value: it stays an object)
        coded = coded_type([value], {}, plain(ctx))[0]
        assert isinstance(coded, CodedType)  # coded_type gives codedTypes only
        attributes = (("code", coded.code), ("codingScheme", coded.coding_scheme))
        return ExtensionNode(name, text=coded.display, attributes=attributes)
    codings = value.get("coding")
    if set(value) <= {"coding", "text"} and isinstance(codings, list) and len(codings) == 1:
        return _tree(name, codings[0], ctx)  # a one-coding CodeableConcept is written as its coding
    children: list[ExtensionNode] = []
    for key, item in value.items():
        if key in ("id", "url") or key.startswith("_"):
            continue
        items = item if isinstance(item, list) else [item]
        for element in items:
            if element is None:  # JSON null is not FHIR; nothing to write
                continue
            if key == "extension" and isinstance(element, dict) and isinstance(element.get("url"), str):
                children.append(_tree(_node_name(element["url"]), _extension_value(element), ctx))
            elif key == "coding" and isinstance(element, dict):
                children.append(_tree("coding", element, ctx))
            else:
                children.append(_tree(_node_name(key), element, ctx))
    return ExtensionNode(name, children=tuple(children))


def _extension_value(extension: dict[str, Any]) -> Any:
    """A FHIR extension's content: its value[x] when simple, itself (sub-extensions) when complex."""
    for key, item in extension.items():
        if key.startswith("value"):
            return item
    return extension


def tree(values: Sequence[Any], resource: Resource, ctx: Context) -> list[Value]:
    """Any FHIR element or extension → an extension node tree (for attributes with no CSD element: capacity,
    tarif, patientèle, zone d'intervention, contacts…). The engine names the top node after the rule's
    `extension.element`; sub-extensions become children named after their URL's last segment."""
    out: list[Value] = []
    for value in values:
        if isinstance(value, dict) and isinstance(value.get("url"), str):
            out.append(_tree("value", _extension_value(value), ctx))
        else:
            out.append(_tree("value", value, ctx))
    return out


def referenced_other_id(values: Sequence[Any], resource: Resource, ctx: Context) -> list[Value]:
    """The identifiers of each referenced resource received (e.g. the Practitioner's RPPS) as otherIDs."""
    out: list[Value] = []
    for target in _referenced(values, ctx):
        out.extend(other_id([i for i in target.get("identifier") or () if isinstance(i, dict)], target, ctx))
    return out


def _referenced(values: Sequence[Any], ctx: Context) -> list[Resource]:
    """The received resources the references point to; the others are reported."""
    out: list[Resource] = []
    for value in values:
        if not isinstance(value, str):
            raise TransformError(f"a reference must be a string, got {type(value).__name__}")
        key = reference_key(value)
        if key is None:
            raise TransformError(f"not a literal reference: {value!r}")
        target = ctx.index.get(key)
        if target is None:
            ctx.findings.add(Finding.UNRESOLVED_REFERENCE, key)
        else:
            out.append(target)
    return out


# The civilité rows' codingSchemes (codes/civilite.csv): TRE_R11-CiviliteExercice → name/honorific,
# TRE_R81-Civilite → name/extension/title (NOS files of 2023-06-14).
CIVILITE_EXERCICE_OID = "1.2.250.1.213.1.6.1.11"
CIVILITE_OID = "1.2.250.1.213.1.6.1.69"

# FHIR AdministrativeGender → CSD demographic/gender (free text in CSD; M / F as in the CSD samples [INFER]).
_GENDER = {"male": "M", "female": "F"}


def demographic(values: Sequence[Any], resource: Resource, ctx: Context) -> list[Value]:
    """The referenced Practitioner → CSD demographic: name (commonName, honorific = prefix, forename = given,
    surname = family), telecom (through the rule's contact-point table), gender M / F [INFER]."""
    out: list[Value] = []
    for practitioner in _referenced(values, ctx):
        names = []
        for name in practitioner.get("name") or ():
            if not isinstance(name, dict):
                continue
            given = " ".join(g for g in name.get("given") or () if isinstance(g, str))
            family = name.get("family") if isinstance(name.get("family"), str) else None
            common = name.get("text") if isinstance(name.get("text"), str) else None
            common = common or " ".join(p for p in (given, family) if p)
            if not common:
                continue
            honorific, title = _civilites(name.get("prefix"), ctx)
            names.append(PersonName((common,), honorific, given or None, family, extensions=title))
        if not names:
            continue
        telecom = practitioner.get("telecom") or []
        points = tuple(p for p in contact_point(telecom, practitioner, ctx) if isinstance(p, ContactPoint))
        gender = _GENDER.get(str(practitioner.get("gender")))
        out.append(Demographic(tuple(names), contact_points=points, gender=gender))
    return out


def _civilites(prefixes: Any, ctx: Context) -> tuple[CodedType | None, tuple[Extension, ...]]:
    """A name's prefixes (JDV_J207 civilités) through the rule's civilité rows: a TRE_R11 code is the
    profile's `honorific` (civilité d'exercice), a TRE_R81 code its `nameExtension/title` (civilité); the
    first of each is written, a prefix without row is reported and left out."""
    honorific: CodedType | None = None
    title: tuple[Extension, ...] = ()
    for prefix in prefixes or ():
        if not isinstance(prefix, str) or not prefix.strip():
            continue
        coded = ctx.codes.get(prefix.strip()) if ctx.codes is not None else None
        if coded is not None and coded.coding_scheme == CIVILITE_EXERCICE_OID and honorific is None:
            honorific = coded
        elif coded is not None and coded.coding_scheme == CIVILITE_OID and not title:
            node = ExtensionNode(
                "title",
                text=coded.display,
                attributes=(("code", coded.code), ("codingScheme", coded.coding_scheme)),
            )
            title = (Extension("nameExtension", profile.URN, node, profile=True),)
        else:
            ctx.findings.add(Finding.CODE_WITHOUT_CROSSWALK, f"civilité (name.prefix): {prefix!r}")
    return honorific, title


# The profile's credential (savoirFaire): codedType = typeSavoirFaire (TRE_R04), and each other savoir-faire
# nomenclature of PractitionerRole.specialty (JDV_J210…J216, J232 slices) as its credentialsExtension element.
SAVOIR_FAIRE_TYPE_MARK = "/TRE_R04-TypeSavoirFaire/"
SAVOIR_FAIRE_ELEMENTS: Mapping[str, str] = {
    "/TRE_R38-SpecialiteOrdinale/": "speciality",
    "/TRE_R39-Competence/": "competence",
    "/TRE_R40-CompetenceExclusive/": "exclusiveCompetence",
    "/TRE_G13-OrientationParticuliere/": "particularSkills",
    "/TRE_R43-CapaciteSavoirFaire/": "capacity",
    "/TRE_R44-QualificationPAC/": "qualificationPAC",
    "/TRE_R42-DESCnonQualifiant/": "DESCNonQualifiant",
    "/TRE_R97-DroitExerciceCompl/": "complementarySkills",
}


@lru_cache(maxsize=1024)
def _savoir_faire_element(system: str) -> str | None:
    """The credentialsExtension element of a savoir-faire nomenclature (its system), None: not one."""
    return next((e for mark, e in SAVOIR_FAIRE_ELEMENTS.items() if mark in system), None)


def savoir_faire(values: Sequence[Any], resource: Resource, ctx: Context) -> list[Value]:
    """A situation's savoir-faire (PractitionerRole.specialty) → the profile's `credential`: codedType = the
    typeSavoirFaire (TRE_R04), number = the code of the savoir-faire (its first value, else its type)
    [INFER: the profile requires a number, ME 2.4 has none], extension = each value in its
    credentialsExtension element (speciality TRE_R38, competence TRE_R39, …) with the situation's record. A
    value of another nomenclature (compétence spécifique J33) or a second value of one element is reported,
    not written; a situation without typeSavoirFaire has no credential."""
    kind: CodedType | None = None
    elements: dict[str, CodedType] = {}
    for coding in _codings(values):
        system = coding["system"]
        found = coded_type([coding], resource, plain(ctx))
        coded = found[0] if found and isinstance(found[0], CodedType) else None
        if coded is None:
            continue
        element = _savoir_faire_element(system)
        if SAVOIR_FAIRE_TYPE_MARK in system and kind is None:
            kind = coded
        elif element is not None and element not in elements:
            elements[element] = coded
        else:
            detail = f"savoir-faire not placed: {system}|{coded.code}"
            ctx.findings.add(Finding.INCOMPLETE_TYPED_ELEMENT, detail)
    if kind is None:
        if elements:
            ctx.findings.add(Finding.INCOMPLETE_TYPED_ELEMENT, "credential without typeSavoirFaire")
        return []
    nodes = [coded_element(name, c) for name, c in elements.items()]
    nodes.append(_record_node(resource, ctx))
    number = next(iter(elements.values()), kind).code
    extensions = tuple(Extension("credentialsExtension", profile.URN, node, profile=True) for node in nodes)
    return [Credential(kind, number, extensions=extensions)]


def exercise_name(values: Sequence[Any], resource: Resource, ctx: Context) -> list[Value]:
    """RORPractitionerRoleName (exerciseLastName 1..1, exerciseFirstName) → a demographic with that name: the
    provider's name when its Practitioner was not received (ror-fhir-api §3.4)."""
    out: list[Value] = []
    for value in values:
        if not isinstance(value, dict):
            raise TransformError("exercise_name needs RORPractitionerRoleName extensions")
        parts = {
            e.get("url"): e.get("valueString")
            for e in value.get("extension") or ()
            if isinstance(e, dict) and isinstance(e.get("valueString"), str)
        }
        last, first = parts.get("exerciseLastName"), parts.get("exerciseFirstName")
        if last:
            common = " ".join(p for p in (first, last) if p)
            out.append(Demographic((PersonName((common,), forename=first, surname=last),)))
    return out


def provider_organization(values: Sequence[Any], resource: Resource, ctx: Context) -> list[Value]:
    """PractitionerRole.organization → provider/organizations/organization: the organisation's entityID; an
    internal organisation (a csd:facility in the profile's placement) gives its EG, the csd:organization of
    its chain (the role's unit is in facilities); not received: the FHIR-id fallback (reported)."""
    out: list[Value] = []
    for value in values:
        key = reference_key(value) if isinstance(value, str) else None
        target = ctx.index.get(key) if key is not None else None
        if target is not None and organization_kind(target) == "OI":
            establishment = _establishment_above(key, ctx)
            if establishment is not None:
                out.append(ProviderOrganization(derived_id(establishment, ctx)))
            continue
        out += [ProviderOrganization(str(v)) for v in reference_entity_id([value], resource, ctx)]
    return list(dict.fromkeys(out))


def _entity_ids(references: Any, resource: Resource, ctx: Context, *, resolved: bool = True) -> list[str]:
    """EntityIDs of FHIR Reference objects: of the resources received only (`resolved`, the others reported),
    or with the reported FHIR-id fallback where CSD requires an entityID."""
    refs = [r.get("reference") for r in references or () if isinstance(r, dict)]
    func = resolved_entity_id if resolved else reference_entity_id
    return [str(v) for v in func([r for r in refs if isinstance(r, str)], resource, ctx)]


def provider_facilities(values: Sequence[Any], resource: Resource, ctx: Context) -> list[Value]:
    """PractitionerRole → provider/facilities/facility: the unité élémentaire of each of its offers (the
    profile's placement: the UE facility has the offer's entityID), holding the offer as `service` with its
    name and providing organisation. A role without offer received: none."""
    offers = _referenced(values, ctx)
    return [once("provider_facility", offer, ctx, _provider_facility) for offer in offers]


def _provider_facility(offer: Resource, ctx: Context) -> ProviderFacility:
    return ProviderFacility(
        derived_id(offer, ctx),
        (
            ProviderService(
                entity_id=derived_id(offer, ctx),
                names=tuple(n for n in [offer.get("name")] if isinstance(n, str) and n),
                organization_id=_establishment_id(offer, ctx),
            ),
        ),
    )


def _establishment_id(offer: Resource, ctx: Context) -> str | None:
    establishment = _establishment_of(offer, ctx)
    return derived_id(establishment, ctx) if establishment is not None else None


_FHIR_DAYS = {"sun": 0, "mon": 1, "tue": 2, "wed": 3, "thu": 4, "fri": 5, "sat": 6}


def _is_closing_slot(slot_type: ExtensionNode | None) -> bool:
    """TRE_R252 (JDV_J41, the binding of ror-available-time-type-of-time) #08 "Horaire de fermeture"."""
    return slot_type is not None and dict(slot_type.attributes).get("code") == CLOSING_SLOT_CODE


def operating_hours(available: Any, owner: Resource, ctx: Context) -> list[OperatingHours]:
    """availableTime → CSD operatingHours (CSD Sunday = 0): openFlag false for a closing slot (type TRE_R252
    #08), true otherwise; the v2.4 profile's operatingHoursExtension with the slot's type
    (ror-available-time-type-of-time) and the owner's record. jourSemaine (ROR integer) is read as ISO
    1 = Monday … 7 = Sunday [INFER: the IG does not say]. A slot without debutDateEffective cannot fill the
    required beginEffectiveDate: reported and skipped."""
    out: list[OperatingHours] = []
    for slot in available or ():
        if not isinstance(slot, dict):
            continue
        days = {_FHIR_DAYS[d] for d in slot.get("daysOfWeek") or () if d in _FHIR_DAYS}
        for extension in _extensions(slot, AVAILABLE_TIME_DAY):
            number = extension.get("valueInteger")
            if isinstance(number, int) and 1 <= number <= 7:
                days.add(number % 7)
        period = next((e.get("valuePeriod") or {} for e in _extensions(slot, AVAILABLE_TIME_PERIOD)), {})
        if not period.get("start"):
            ctx.findings.add(Finding.HOURS_WITHOUT_START, str(owner.get("resourceType")))
            continue
        begin = parse_datetime(period["start"], ctx.timezone).date()
        end = parse_datetime(period["end"], ctx.timezone).date() if period.get("end") else None
        type_node = _coded_node("operatingHoursType", _first_value(slot, AVAILABLE_TIME_TYPE), ctx)
        extensions = tuple(
            Extension("operatingHoursExtension", profile.URN, node, profile=True)
            for node in (type_node, _record_node(owner, ctx))
            if node is not None
        )
        out.append(
            OperatingHours(
                open_flag=not _is_closing_slot(type_node),
                extensions=extensions,
                begin_effective_date=begin,
                days_of_week=tuple(sorted(days)),
                beginning_hour=_time(slot.get("availableStartTime")),
                ending_hour=_time(slot.get("availableEndTime")),
                end_effective_date=end,
            )
        )
    return out


def _time(value: Any) -> time | None:
    if not isinstance(value, str) or not value:
        return None
    try:
        return time.fromisoformat(value)
    except ValueError as error:
        raise TransformError(f"not a FHIR time: {value!r}") from error


class ReverseIndex(Mapping[str, tuple[Resource, ...]]):
    """A reverse index of an answer's resources (`offers_by_location`, `offers_below`), built from its index
    when a transform first reads it: the answers whose tables never ask (most of an extraction's batches)
    no longer build it (issue 13 item 4)."""

    __slots__ = ("_build", "_index", "_made")

    def __init__(
        self,
        build: Callable[[Mapping[str, Resource]], dict[str, tuple[Resource, ...]]],
        index: Mapping[str, Resource],
    ) -> None:
        self._build = build
        self._index = index
        self._made: dict[str, tuple[Resource, ...]] | None = None

    def _data(self) -> dict[str, tuple[Resource, ...]]:
        made = self._made
        if made is None:
            made = self._made = self._build(self._index)
        return made

    def get(self, key: str, default: Any = None) -> Any:
        return self._data().get(key, default)

    def __getitem__(self, key: str) -> tuple[Resource, ...]:
        return self._data()[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._data())

    def __len__(self) -> int:
        return len(self._data())


def offers_by_location(index: Mapping[str, Resource]) -> dict[str, tuple[Resource, ...]]:
    """ "Location/<id>" → the HealthcareServices of `index` whose `location` references it (each once)."""
    found: dict[str, dict[int, Resource]] = {}
    for resource in index.values():
        if resource.get("resourceType") != "HealthcareService":
            continue
        for ref in resource.get("location") or ():
            key = (
                reference_key(ref["reference"])
                if isinstance(ref, dict) and isinstance(ref.get("reference"), str)
                else None
            )
            if key is not None:
                found.setdefault(key, {})[id(resource)] = resource
    return {key: tuple(offers.values()) for key, offers in found.items()}


def facility_organizations(values: Sequence[Any], resource: Resource, ctx: Context) -> list[Value]:
    """Location → facility/organizations/organization/service: the offers received whose `location` is this
    Location, grouped by providing organisation (CSD: the services an organisation offers at a facility;
    csd-wire-format §7.4 [INFER]). Each service carries the offer's name and opening hours."""
    own = f"{resource.get('resourceType')}/{resource.get('id')}"
    by_org: dict[str, list[FacilityService]] = {}
    for offer in ctx.offers_at.get(own, ()):
        # organization/@entityID is required here: the FHIR-id fallback (reported) when not received
        org_ids = _entity_ids([offer.get("providedBy")], offer, ctx, resolved=False)
        service = FacilityService(
            entity_id=derived_id(offer, ctx),
            names=tuple(n for n in [offer.get("name")] if isinstance(n, str) and n),
            operating_hours=tuple(operating_hours(offer.get("availableTime"), offer, ctx)),
        )
        if not org_ids:  # providedBy 0..1 before IG 0.7.0: no organisation to hold it; reported
            ctx.findings.add(Finding.UNRESOLVED_REFERENCE, f"HealthcareService/{offer.get('id')}.providedBy")
        for org_id in org_ids:
            by_org.setdefault(org_id, []).append(service)
    return [
        FacilityOrganization(org_id, tuple(sorted(services, key=lambda s: s.entity_id)))
        for org_id, services in sorted(by_org.items())
    ]


# --------------------------------------------------------------------------------------------------
# Typed elements of the ROR CSD v2.4 profile (rules with `extension: {profile: …}`): extension nodes named
# and ordered as the profile's schema types (contact, territorialDivision, …), `record` included where the
# profile requires it. The writer puts them in the CSD namespace (mappings/README.md, "Typed elements").

CONTACT_FUNCTION = f"{_IG_SD}ror-contact-function-contact"
CONTACT_DESCRIPTION = f"{_IG_SD}ror-contact-description"
CONTACT_CONFIDENTIALITY = f"{_IG_SD}ror-contact-confidentiality-level"
TELECOM_CONFIDENTIALITY = (
    f"{_IG_SD}ror-contact-telecom-confidentiality-level",
    f"{_IG_SD}ror-telecom-confidentiality-level",
)
TELECOM_CHANNEL = f"{_IG_SD}ror-telecom-communication-channel"


def _record_node(resource: Resource, ctx: Context) -> ExtensionNode:
    """The profile's `record` of a sub-element: the record of the resource that carries it (made once per
    resource of the answer: every typed element of the resource repeats it)."""
    known = ctx.memo.get(("record_node", id(resource)))
    if known is not None and known[0] is resource:
        node: ExtensionNode = known[1]
        return node
    node = _new_record_node(resource, ctx)
    ctx.memo[("record_node", id(resource))] = (resource, node)
    return node


def _new_record_node(resource: Resource, ctx: Context) -> ExtensionNode:
    (made,) = record((), resource, ctx)
    assert isinstance(made, Record)  # record gives one Record
    attributes = (
        ("created", made.created.isoformat()),
        ("updated", made.updated.isoformat()),
        ("status", made.status),
    )
    return ExtensionNode("record", attributes=attributes)


def _coded_node(name: str, value: Any, ctx: Context) -> ExtensionNode | None:
    """The first coding of a Coding / CodeableConcept as a codedtype element (codingScheme = the NOS OID)."""
    if not isinstance(value, dict):
        return None
    found = coded_type([value], {}, plain(ctx))
    if not found or not isinstance(found[0], CodedType):
        return None
    return coded_element(name, found[0])


@lru_cache(maxsize=16384)
def coded_element(name: str, coded: CodedType) -> ExtensionNode:
    """A codedtype element (text = display, code and codingScheme attributes), remembered: immutable, and the
    same codes recur across the entities of an answer."""
    return ExtensionNode(
        name, text=coded.display, attributes=(("code", coded.code), ("codingScheme", coded.coding_scheme))
    )


def _first_value(holder: Any, url: str) -> Any:
    """value[x] of the first extension of `holder` with that URL (None when absent)."""
    for extension in (holder or {}).get("extension") or ():
        if isinstance(extension, dict) and extension.get("url") == url:
            return _extension_value(extension)
    return None


def _confidentiality(holder: Any, urls: Sequence[str], ctx: Context) -> ExtensionNode:
    """confidentialityLevel (TRE_R283) from the first of `urls` present; [INFER] absent: the code table's
    `public` row (the national API gave the value to this caller, so it is not restricted for it)."""
    for url in urls:
        node = _coded_node("confidentialityLevel", _first_value(holder, url), ctx)
        if node is not None:
            return node
    public = ctx.codes.get("public") if ctx.codes else None
    if public is None:
        raise TransformError("the code table has no 'public' row (TRE_R283 level of an unmarked contact)")
    attributes = (("code", public.code), ("codingScheme", public.coding_scheme))
    return ExtensionNode("confidentialityLevel", text=public.display, attributes=attributes)


def _telecom_node(telecom: Any, owner: Resource, ctx: Context) -> ExtensionNode | None:
    """A FHIR ContactPoint as the profile's contactPoint: codedType = canal (TRE_R200, from the telecom's
    communication-channel extension, else its `system` through the code table), equipment = the address
    (ANS requires it), extension = its confidentialityLevel and record."""
    if not isinstance(telecom, dict) or not isinstance(telecom.get("value"), str) or not telecom["value"]:
        return None
    channel = _coded_node("codedType", _first_value(telecom, TELECOM_CHANNEL), ctx)
    if channel is None:
        system = str(telecom.get("system"))
        row = ctx.codes.get(f"{system}|{telecom.get('use')}") or ctx.codes.get(system) if ctx.codes else None
        if row is None:
            ctx.findings.add(Finding.SYSTEM_WITHOUT_OID, f"ContactPoint.system {telecom.get('system')!r}")
            return None
        attributes = (("code", row.code), ("codingScheme", row.coding_scheme))
        channel = ExtensionNode("codedType", text=row.display, attributes=attributes)
    extension = ExtensionNode(
        "extension",
        attributes=(("type", "contactPointExtension"), ("urn", "urn:asip:ror:2015")),
        children=(_confidentiality(telecom, TELECOM_CONFIDENTIALITY, ctx), _record_node(owner, ctx)),
    )
    return ExtensionNode(
        "contactPoint", children=(channel, ExtensionNode("equipment", text=telecom["value"]), extension)
    )


def profile_contact(values: Sequence[Any], resource: Resource, ctx: Context) -> list[Value]:
    """A FHIR contact (Organization.contact, the offer's contact extension) → the profile's `contact`: name,
    function (TRE_R251), nature (purpose, TRE_R287), description, confidentialityLevel (TRE_R283),
    contactPoint*, record."""
    out: list[Value] = []
    for value in values:
        if not isinstance(value, dict):
            raise TransformError("profile_contact needs contact objects")
        children: list[ExtensionNode] = []
        name = value.get("name")
        if isinstance(name, dict):
            given = [str(g) for g in name.get("given") or ()]
            parts = name.get("text") or " ".join([*given, str(name.get("family") or "")]).strip()
            if parts:
                children.append(ExtensionNode("name", text=str(parts)))
        for node in (
            _coded_node("function", _first_value(value, CONTACT_FUNCTION), ctx),
            _coded_node("nature", value.get("purpose"), ctx),
        ):
            if node is not None:
                children.append(node)
        description = _first_value(value, CONTACT_DESCRIPTION)
        if isinstance(description, str) and description:
            children.append(ExtensionNode("description", text=description))
        children.append(_confidentiality(value, (CONTACT_CONFIDENTIALITY,), ctx))
        for telecom in value.get("telecom") or ():
            node = _telecom_node(telecom, resource, ctx)
            if node is not None:
                children.append(node)
        children.append(_record_node(resource, ctx))
        out.append(ExtensionNode("contact", children=tuple(children)))
    return out


# The offer's contact (RORHealthcareServiceContact, IG 0.1: a flat complex extension) and its parts.
OFFER_CONTACT_CONFIDENTIALITY = f"{_IG_SD}ror-confidentiality-level"


def offer_contact(values: Sequence[Any], resource: Resource, ctx: Context) -> list[Value]:
    """The offer's contacts (ror-healthcareservice-contact: name, ror-contact-function-contact,
    purposeContact TRE_R287, description, ror-confidentiality-level TRE_R283, and one telecom —
    telecomAddress with its ror-telecom-communication-channel TRE_R200, ror-telecom-usage and
    ror-telecom-confidentiality-level) → the UE's `contact`, written as profile_contact writes an
    organisation's (name, function, nature, description, confidentialityLevel, contactPoint, record)."""
    contacts: list[dict[str, Any]] = []
    for value in values:
        if not isinstance(value, dict) or not isinstance(value.get("extension"), list):
            raise TransformError("offer_contact needs ror-healthcareservice-contact extensions")
        contact: dict[str, Any] = {"extension": []}
        name = _part(value, "name")
        if isinstance(name, str) and name:
            contact["name"] = {"text": name}
        purpose = _part(value, "purposeContact")
        if purpose is not None:
            contact["purpose"] = purpose
        for url, target in (
            (CONTACT_FUNCTION, CONTACT_FUNCTION),
            ("description", CONTACT_DESCRIPTION),
            (OFFER_CONTACT_CONFIDENTIALITY, CONTACT_CONFIDENTIALITY),
        ):
            found = _part(value, url)
            if found is not None:
                contact["extension"].append({"url": target, "value": found})
        address_text = _part(value, "telecomAddress")
        if isinstance(address_text, str) and address_text:
            telecom_parts = [
                {"url": url, "value": found}
                for url in (TELECOM_CHANNEL, f"{_IG_SD}ror-telecom-usage", *TELECOM_CONFIDENTIALITY)
                if (found := _part(value, url)) is not None
            ]
            contact["telecom"] = [{"value": address_text, "extension": telecom_parts}]
        contacts.append(contact)
    return profile_contact(contacts, resource, ctx)


def profile_mailbox(values: Sequence[Any], resource: Resource, ctx: Context) -> list[Value]:
    """Each of the offer's telecoms (HealthcareService.telecom = boiteLettreMSS, RORHealthcareService) → the
    UE's `mailBoxMSS`: the profile's contactPoint (canal TRE_R200, equipment = the address, its
    confidentialityLevel and record) and record; a telecom without address or known canal is left out."""
    out: list[Value] = []
    for telecom in values:
        node = _telecom_node(telecom, resource, ctx)
        if node is not None:
            out.append(ExtensionNode("mailBoxMSS", children=(node, _record_node(resource, ctx))))
    return out


def profile_territorial_division(values: Sequence[Any], resource: Resource, ctx: Context) -> list[Value]:
    """ror-territorial-division → territorialDivision: type (TRE_R201), codedType (the division's code),
    record; a division without both codes is reported and left out (the profile requires them)."""
    out: list[Value] = []
    for value in values:
        kind = _coded_node("type", _first_value(value, "typeTerritorialDivision"), ctx)
        code = _coded_node("codedType", _first_value(value, "codeTerritorialDivision"), ctx)
        if kind is None or code is None:
            ctx.findings.add(Finding.INCOMPLETE_TYPED_ELEMENT, "territorialDivision without type or code")
            continue
        out.append(ExtensionNode("value", children=(kind, code, _record_node(resource, ctx))))
    return out


GEOLOCATION = "http://hl7.org/fhir/StructureDefinition/geolocation"


def _is_insee_code(extension: Any) -> bool:
    """The address's INSEE commune code slice (`inseeCode`, from FrAddress): its URL differs between the
    French core IG versions [INFER: recognised by its URL ending in insee-code / InseeCode]."""
    url = str(extension.get("url", "")) if isinstance(extension, dict) else ""
    return url.replace("-", "").casefold().endswith("inseecode")


def _decimal(value: float) -> str:
    """xs:decimal text (no exponent)."""
    text = format(Decimal(repr(float(value))), "f")
    return text[:-2] if text.endswith(".0") else text


def profile_location(values: Sequence[Any], resource: Resource, ctx: Context) -> list[Value]:
    """An EG's address (Organization.address) → the profile's `location`: address, geoCoordinates (the
    address's `geolocation` extension, WGS84, record), cityNumber (its INSEE code, TRE_R13), record. The
    profile requires cityNumber: an address without INSEE code is reported and left out."""
    out: list[Value] = []
    for value in values:
        if not isinstance(value, dict):
            raise TransformError("profile_location needs Address objects")
        insee = next((e for e in value.get("extension") or () if _is_insee_code(e)), None)
        city = _coded_node("cityNumber", _extension_value(insee), ctx) if insee is not None else None
        if city is None:
            ctx.findings.add(Finding.INCOMPLETE_TYPED_ELEMENT, "location without INSEE code (cityNumber)")
            continue
        children: list[ExtensionNode] = []
        children.extend(_address_nodes([value], resource, ctx))
        where = next(
            (e for e in value.get("extension") or () if isinstance(e, dict) and e.get("url") == GEOLOCATION),
            None,
        )
        latitude, longitude = _first_value(where, "latitude"), _first_value(where, "longitude")
        if isinstance(latitude, int | float) and isinstance(longitude, int | float):
            children.append(_geo_coordinates(latitude, longitude, (), _record_node(resource, ctx)))
        children += [city, _record_node(resource, ctx)]
        out.append(ExtensionNode("location", children=tuple(children)))
    return out


EXERCISE_MODE = f"{_IG_SD}ror-practitionerrole-unit-exercise-mode"


def _hours_node(hours: OperatingHours) -> ExtensionNode:
    """An OperatingHours as the profile's operatingHours element (inside operationalStatus)."""
    children = [ExtensionNode("openFlag", text="true" if hours.open_flag else "false")]
    children += [ExtensionNode("dayOfTheWeek", text=str(day)) for day in hours.days_of_week]
    if hours.beginning_hour is not None:
        children.append(ExtensionNode("beginningHour", text=hours.beginning_hour.isoformat()))
    if hours.ending_hour is not None:
        children.append(ExtensionNode("endingHour", text=hours.ending_hour.isoformat()))
    children.append(ExtensionNode("beginEffectiveDate", text=hours.begin_effective_date.isoformat()))
    if hours.end_effective_date is not None:
        children.append(ExtensionNode("endEffectiveDate", text=hours.end_effective_date.isoformat()))
    typed = tuple(e.content for e in hours.extensions if e.profile and e.content is not None)
    if typed:
        attributes = (("type", "operatingHoursExtension"), ("urn", profile.URN))
        children.append(ExtensionNode("extension", attributes=attributes, children=typed))
    return ExtensionNode("operatingHours", children=tuple(children))


def profile_operational_status(values: Sequence[Any], resource: Resource, ctx: Context) -> list[Value]:
    """A PractitionerRole (situation opérationnelle) → the profile's `operationalStatus`: exerciceModeInUnit
    (ror-practitionerrole-unit-exercise-mode, TRE_R23; required: a role without it is reported and left
    out), contactPoint (its first telecom, as in a contact), operatingHours (its first dated slot), record.
    The profile holds one telecom and one slot: all of them stay in the `telecommunication` / `horaire`
    trees."""
    mode = _coded_node("exerciceModeInUnit", _first_value(resource, EXERCISE_MODE), ctx)
    if mode is None:
        ctx.findings.add(Finding.INCOMPLETE_TYPED_ELEMENT, "operationalStatus without exerciceModeInUnit")
        return []
    children = [mode]
    telecoms = (_telecom_node(t, resource, ctx) for t in resource.get("telecom") or ())
    first_telecom = next((t for t in telecoms if t is not None), None)
    if first_telecom is not None:
        children.append(first_telecom)
    slots = operating_hours(resource.get("availableTime"), resource, ctx)
    if slots:
        children.append(_hours_node(slots[0]))
    children.append(_record_node(resource, ctx))
    return [ExtensionNode("operationalStatus", children=tuple(children))]


# --------------------------------------------------------------------------------------------------
# The profile's placement (issue 11 item 2): internal organisations and unités élémentaires as csd:facility
# coded TRE_R207; the offre opérationnelle (HealthcareService) is the v2.4 unité élémentaire; its lieu is the
# UE's `location` (mappings/README.md, "The ROR CSD v2.4 profile's placement").

SELECTORS: Mapping[str, Callable[[Resource], bool]] = {
    # EJ and EG: csd:organization (entities/organization.yaml)
    "establishment": lambda resource: organization_kind(resource) in ("EJ", "EG"),
    # pôle, service, UF: csd:facility coded TRE_R207 (entities/internal-organization.yaml). A v3
    # organisation typed UE (TRE_R207 #4) is not one: its offers are the profile's UEs [INFER]
    "internal-organization": lambda resource: (
        organization_kind(resource) == "OI" and not is_unit_organization(resource)
    ),
}
UNIT_TYPE_CODE = "4"  # TRE_R207 "Unité élémentaire"


def is_unit_organization(resource: Resource) -> bool:
    """A v3 organisation typed unité élémentaire (TRE_R207 #4)."""
    return any(
        OI_TYPE_SYSTEM_MARK in str(c.get("system")) and c.get("code") == UNIT_TYPE_CODE
        for concept in resource.get("type") or ()
        for c in (concept or {}).get("coding") or ()
        if isinstance(c, dict)
    )


CHAMP_ACTIVITE = "https://mos.esante.gouv.fr/NOS/TRE_R227-ChampActivite/FHIR/TRE-R227-ChampActivite"
PATIENT_TYPE = f"{_IG_SD}ror-healthcareservice-patient-type"
COMMUNE_COG = f"{_IG_SD}ror-commune-cog"
UCUM = "http://unitsofmeasure.org"
# [INFER] the profile requires patientTypeAgeMin / Max: an offer without age range is open to every age.
AGE_MIN_DEFAULT, AGE_MAX_DEFAULT = 0, 120


def offers_below(index: Mapping[str, Resource]) -> dict[str, tuple[Resource, ...]]:
    """ "Organization/<id>" → the HealthcareServices of `index` it provides, itself or through the
    organisations below it (providedBy, then partOf while the parent was received), each once."""
    found: dict[str, dict[int, Resource]] = {}
    for resource in index.values():
        if resource.get("resourceType") != "HealthcareService":
            continue
        provided = resource.get("providedBy")
        key = _reference_of(provided)
        seen: set[str] = set()
        while key is not None and key not in seen:
            seen.add(key)
            found.setdefault(key, {})[id(resource)] = resource
            parent = index.get(key)
            key = _reference_of(parent.get("partOf")) if parent is not None else None
    return {key: tuple(offers.values()) for key, offers in found.items()}


def _reference_of(holder: Any) -> str | None:
    reference = holder.get("reference") if isinstance(holder, dict) else None
    return reference_key(reference) if isinstance(reference, str) else None


def parent_facility(values: Sequence[Any], resource: Resource, ctx: Context) -> list[Value]:
    """The entityID of the referenced organisation when it is an internal organisation (a csd:facility of the
    same answer), a v3 UE organisation standing for its parent; an EJ / EG parent is not a facility: nothing
    (the UE's link to its EG is organizations)."""
    out: list[Value] = []
    for referenced in _referenced(values, ctx):
        target: Resource | None = referenced
        seen: set[int] = set()
        # a v3 UE organisation is not written (its offers are the UEs): its parent is the facility's parent
        while target is not None and is_unit_organization(target) and id(target) not in seen:
            seen.add(id(target))
            key = _reference_of(target.get("partOf"))
            target = ctx.index.get(key) if key is not None else None
        if (
            target is not None
            and target.get("resourceType") == "Organization"
            and organization_kind(target) == "OI"
        ):
            entity = derived_id(target, ctx)
            out.append(ExtensionNode("parentFacility", attributes=(("entityID", entity),)))
    return out


REGION_TAG = "https://mos.esante.gouv.fr/NOS/TRE_R30-RegionOM/FHIR/TRE-R30-RegionOM"


def regional_other_id(values: Sequence[Any], resource: Resource, ctx: Context) -> list[Value]:
    """An identifier as the profile writes an internal organisation's: `<région source>/<value>` (ANS
    validation_identifiants.sch: a facility's otherID starts with its TRE_R30 region code and a slash); the
    region is the resource's meta.tag codeRegion. Without region tag: the value as received (reported)."""
    region = next(
        (
            str(tag.get("code"))
            for tag in (resource.get("meta") or {}).get("tag") or ()
            if isinstance(tag, dict) and tag.get("system") == REGION_TAG and tag.get("code")
        ),
        None,
    )
    out: list[Value] = []
    for made in other_id(values, resource, ctx):
        assert isinstance(made, OtherID)  # other_id gives OtherID values
        if region is None:
            ctx.findings.add(Finding.INCOMPLETE_TYPED_ELEMENT, "identifier without région source")
            out.append(made)
        elif made.code.startswith(f"{region}/"):
            out.append(made)
        else:
            out.append(replace(made, code=f"{region}/{made.code}"))
    return out


def _own_key(resource: Resource) -> str:
    return f"{resource.get('resourceType')}/{resource.get('id')}"


def subtree_activity_fields(values: Sequence[Any], resource: Resource, ctx: Context) -> list[Value]:
    """An internal organisation's typeActivity: the champs d'activité (TRE_R227) of the offers received below
    it, each once ("remonté dans les OI intermédiaires", PLATINES RG_EXP_010); none received: reported."""
    codings: dict[str, dict[str, Any]] = {}
    for offer in ctx.offers_under.get(_own_key(resource), ()):
        for concept in offer.get("type") or ():
            for coding in (concept or {}).get("coding") or ():
                if isinstance(coding, dict) and coding.get("system") == CHAMP_ACTIVITE:
                    codings.setdefault(str(coding.get("code")), coding)
    if not codings:
        ctx.findings.add(
            Finding.INCOMPLETE_TYPED_ELEMENT, "internal organisation without offer: typeActivity"
        )
    return coded_type([codings[k] for k in sorted(codings)], resource, plain(ctx))


def _age(value: Any) -> int | None:
    quantity = value if isinstance(value, dict) else {}
    number = quantity.get("value")
    return int(number) if isinstance(number, int | float) else None


def _patients_node(
    supported: Sequence[ExtensionNode], low: int | None, high: int | None, resource: Resource, ctx: Context
) -> ExtensionNode:
    unit = ExtensionNode(
        "unit", text="an", attributes=(("code", "a"), ("codingScheme", ctx.systems.scheme(UCUM)))
    )
    children = [
        *supported,
        ExtensionNode("patientTypeAgeMin", children=(ExtensionNode("value", text=str(low)), unit)),
        ExtensionNode("patientTypeAgeMax", children=(ExtensionNode("value", text=str(high)), unit)),
        _record_node(resource, ctx),
    ]
    return ExtensionNode("patientsType", children=tuple(children))


_PatientParts = tuple[tuple[ExtensionNode, ...], int | None, int | None]


def _patient_parts(offer: Resource, ctx: Context) -> _PatientParts:
    """The offer's patientèle: supportedPatient nodes, lowest and highest age (once per offer of the answer:
    every internal organisation above it asks)."""
    return once("patient_parts", offer, ctx, _new_patient_parts)


def _new_patient_parts(
    offer: Resource, ctx: Context
) -> tuple[tuple[ExtensionNode, ...], int | None, int | None]:
    supported: list[ExtensionNode] = []
    low = high = None
    for extension in _extensions(offer, PATIENT_TYPE):
        for part in extension.get("extension") or ():
            if not isinstance(part, dict):
                continue
            if part.get("url") == "supportedPatientInfo":
                node = _coded_node("supportedPatient", _extension_value(part), ctx)
                if node is not None:
                    supported.append(node)
            elif part.get("url") == "ageRange":
                age_range = part.get("valueRange") or {}
                low, high = _age(age_range.get("low")), _age(age_range.get("high"))
    return tuple(supported), low, high


def patients_type(values: Sequence[Any], resource: Resource, ctx: Context) -> list[Value]:
    """The offer's patientèle (ror-healthcareservice-patient-type) → the profile's patientsType:
    supportedPatient* (TRE_R239), patientTypeAgeMin / Max in years (required: [INFER] 0 / 120 when the offer
    gives none), record."""
    supported, low, high = _patient_parts(resource, ctx)
    low = AGE_MIN_DEFAULT if low is None else low
    high = AGE_MAX_DEFAULT if high is None else high
    return [_patients_node(supported, low, high, resource, ctx)]


def subtree_patients_type(values: Sequence[Any], resource: Resource, ctx: Context) -> list[Value]:
    """An internal organisation's patientsType (required by the profile): the publics of the offers received
    below it, each once, the lowest minimum and highest maximum age ([INFER] 0 / 120 without offer)."""
    supported: dict[tuple[tuple[str, str], ...], ExtensionNode] = {}
    lows: list[int] = []
    highs: list[int] = []
    for offer in ctx.offers_under.get(_own_key(resource), ()):
        nodes, low, high = _patient_parts(offer, ctx)
        for node in nodes:
            supported.setdefault(node.attributes, node)
        lows += [AGE_MIN_DEFAULT if low is None else low]
        highs += [AGE_MAX_DEFAULT if high is None else high]
    low = min(lows, default=AGE_MIN_DEFAULT)
    high = max(highs, default=AGE_MAX_DEFAULT)
    return [_patients_node([supported[k] for k in sorted(supported)], low, high, resource, ctx)]


SENSITIVE_UNIT = f"{_IG_SD}ror-healthcareservice-sensitive-unit"


def sensitive_unit(values: Sequence[Any], resource: Resource, ctx: Context) -> list[Value]:
    """The profile's required sensitiveUnit: uniteSensible (ror-healthcareservice-sensitive-unit) when the
    resource carries it, else `false` [INFER] (an internal organisation, an offer without the element)."""
    value = _first_value(resource, SENSITIVE_UNIT)
    return ["true" if value is True else "false"]


def lieu_location(values: Sequence[Any], resource: Resource, ctx: Context) -> list[Value]:
    """The offer's lieu (HealthcareService.location → RORLocation) → the UE's `location`: name, description,
    status (TRE_R203), address, geoCoordinates (position, WGS84, record), cityNumber (ror-commune-cog,
    TRE_R13; required: a lieu without it is reported and left out), record. The first lieu received (the
    v2.4 UE had one)."""
    for lieu in _referenced(values, ctx):
        node = once("lieu_location", lieu, ctx, _lieu_location)
        if node is not None:
            return [node]
    return []


def _lieu_location(lieu: Resource, ctx: Context) -> ExtensionNode | None:
    """lieu_location of one lieu (None, reported: without cityNumber)."""
    city = _coded_node("cityNumber", _first_value(lieu, COMMUNE_COG), ctx)
    if city is None:
        ctx.findings.add(Finding.INCOMPLETE_TYPED_ELEMENT, "lieu without ror-commune-cog (cityNumber)")
        return None
    children: list[ExtensionNode] = []
    if isinstance(lieu.get("name"), str) and lieu["name"]:
        children.append(ExtensionNode("name", text=lieu["name"]))
    if isinstance(lieu.get("description"), str) and lieu["description"]:
        children.append(ExtensionNode("description", text=lieu["description"]))
    status = _coded_node("status", lieu.get("operationalStatus"), ctx)
    if status is not None:
        children.append(status)
    children.extend(_address_nodes(_lieu_addresses(lieu), lieu, ctx))
    position = lieu.get("position")
    where: dict[str, Any] = position if isinstance(position, dict) else {}
    latitude, longitude = where.get("latitude"), where.get("longitude")
    if isinstance(latitude, int | float) and isinstance(longitude, int | float):
        children.append(
            _geo_coordinates(latitude, longitude, _reliability(where, lieu, ctx), _record_node(lieu, ctx))
        )
    children.append(city)
    if ctx.origin is not None and isinstance(latitude, int | float) and isinstance(longitude, int | float):
        distance = calculated_distance(ctx.origin, (latitude, longitude))
        children.append(ExtensionNode("calculatedDistance", text=distance))
    children.append(_record_node(lieu, ctx))
    return ExtensionNode("location", children=tuple(children))


# Compétences ressources of an offer (HealthcareService.characteristic slices ressourceProfession, JDV_J186,
# and specificCompetence, JDV_J33): the code system of each coding says which part of resourceSkills it is.
# ME 2.4's profession list (JDV_J54) draws on TRE_G15, G16, R94, R95, R96 and R85.
_PROFESSION_MARKS = ("/TRE_G15-", "/TRE_G16-", "/TRE_R94-", "/TRE_R95-", "/TRE_R96-", "/TRE_R85-")
_SKILL_PARTS = (("/TRE_R38-", "medicalSpeciality"), ("/TRE_R243-", "specificSkills"))


def offer_resource_skills(values: Sequence[Any], resource: Resource, ctx: Context) -> list[Value]:
    """The offer's compétences ressources (characteristic codings) → the UE's resourcesSkills: profession*
    (TRE_G15 through the rule's code table, as ME 2.4's profession; G16, R94, R95, R96, R85 as received),
    medicalSpeciality* (TRE_R38), specificSkills* (TRE_R243), record; none of them: nothing."""
    parts: dict[str, list[ExtensionNode]] = {"profession": [], "medicalSpeciality": [], "specificSkills": []}
    for coding in _codings(values):
        system = str(coding.get("system"))
        uncoded = plain(ctx)  # only the G15 codes go through the profession crosswalk
        if "/TRE_G15-" in system:
            name, made = "profession", crosswalk([coding], resource, ctx)
        elif any(mark in system for mark in _PROFESSION_MARKS):
            name, made = "profession", coded_type([coding], resource, uncoded)
        else:
            name = next((part for mark, part in _SKILL_PARTS if mark in system), "")
            made = coded_type([coding], resource, uncoded) if name else []
        for coded in made:
            assert isinstance(coded, CodedType)  # crosswalk and coded_type give CodedType values
            parts[name].append(coded_element(name, coded))
    children = [node for nodes in parts.values() for node in nodes]
    if not children:
        return []
    return [ExtensionNode("resourcesSkills", children=(*children, _record_node(resource, ctx)))]


EARTH_RADIUS_KM = 6371.0  # mean radius (IUGG): the great-circle distance of a spherical Earth


def calculated_distance(origin: tuple[float, float], point: tuple[float, float]) -> str:
    """The great-circle (haversine) distance in km between two WGS84 points, as xs:decimal text with three
    decimals (metres): the profile's location/calculatedDistance of a distance search [INFER: the unit is
    the request's distanceKm's; the profile's element has none]."""
    lat1, lon1, lat2, lon2 = (math.radians(v) for v in (*origin, *point))
    h = math.sin((lat2 - lat1) / 2) ** 2 + math.cos(lat1) * math.cos(lat2) * math.sin((lon2 - lon1) / 2) ** 2
    km = 2 * EARTH_RADIUS_KM * math.asin(min(1.0, math.sqrt(h)))
    return f"{km:.3f}"


COORDINATE_RELIABILITY = f"{_IG_SD}ror-coordinate-reliability"


def _address_nodes(values: Sequence[Any], resource: Resource, ctx: Context) -> list[ExtensionNode]:
    """The profile's `address` node (its addressLine components) of each address `address` makes."""
    nodes: list[ExtensionNode] = []
    for made in address(values, resource, ctx):
        assert isinstance(made, Address)  # address gives Address values
        lines = tuple(
            ExtensionNode("addressLine", text=line.value, attributes=(("component", line.component),))
            if line.component
            else ExtensionNode("addressLine", text=line.value)
            for line in made.lines
        )
        nodes.append(ExtensionNode("address", children=lines))
    return nodes


def _geo_coordinates(
    latitude: float, longitude: float, extensions: Sequence[ExtensionNode], record: ExtensionNode
) -> ExtensionNode:
    """The profile's geoCoordinates: latitude, longitude, WGS84, then `extensions` (geoCodeExtension) and
    the record."""
    return ExtensionNode(
        "geoCoordinates",
        children=(
            ExtensionNode("latitude", text=_decimal(latitude)),
            ExtensionNode("longitude", text=_decimal(longitude)),
            ExtensionNode("coordinateSystem", text=COORDINATE_SYSTEM),
            *extensions,
            record,
        ),
    )


def _reliability(position: dict[str, Any], lieu: Resource, ctx: Context) -> list[ExtensionNode]:
    """positionFiable (Location.position's ror-coordinate-reliability, a boolean) as the profile's
    geoCodeExtension of the coordinates: coordonneesFiables and record; absent or not a boolean: none."""
    reliable = _first_value(position, COORDINATE_RELIABILITY)
    if not isinstance(reliable, bool):
        return []
    return [
        ExtensionNode(
            "extension",
            attributes=(("type", "geoCodeExtension"), ("urn", profile.URN)),
            children=(
                ExtensionNode("coordonneesFiables", text="true" if reliable else "false"),
                _record_node(lieu, ctx),
            ),
        )
    ]


def _lieu_addresses(lieu: Resource) -> list[Any]:
    """Location.address (0..1, an Address; some data sends a list of them)."""
    found = lieu.get("address")
    return [a for a in (found if isinstance(found, list) else [found]) if isinstance(a, dict)]


def _lieu_address(lieu: Resource, ctx: Context) -> list[Value]:
    return address(_lieu_addresses(lieu), lieu, ctx)


def lieu_address(values: Sequence[Any], resource: Resource, ctx: Context) -> list[Value]:
    """The address of the offer's first lieu received (HealthcareService.location → RORLocation.address), as
    the UE facility's csd:address: what an IHE facility-search by address compares."""
    for lieu in _referenced(values, ctx):
        found = once("lieu_address", lieu, ctx, _lieu_address)
        if found:
            return list(found)
    return []


SUPPORTED_CAPACITY = f"{_IG_SD}ror-location-supported-capacity"
RESIDENTIAL_CAPACITY = f"{_IG_SD}ror-location-residential-capacity"
# natureCapacite (capacityType, JDV_J187 / TRE_R329, NOS 2023-06-14): 01 Lit → beds, 02 Place → space.
_CAPACITY_NATURE = {"01": "beds", "02": "space"}
# statutCapacite (capacityStatus, JDV_J188 / TRE_R330): 01 Installé → @total, 02 Disponible → @avaible (the
# schema's spelling). Occupé, réservé, fermé, supplémentaire have no attribute in the profile's capacity.
_CAPACITY_STATUS = {"01": "total", "02": "avaible"}
# temporaliteCapacite (TRE_R331) 01 Courant: the profile's capacity is the current one; no forecast.
_CAPACITY_NOW = "01"


def _part(extension: Any, url: str) -> Any:
    """value[x] of the sub-extension `url` of a complex extension (None when absent)."""
    return _first_value(extension, url)


def _code_of(value: Any) -> str | None:
    """The code of a Coding, or of the first coding of a CodeableConcept."""
    if isinstance(value, dict) and isinstance(value.get("coding"), list):
        value = next((c for c in value["coding"] if isinstance(c, dict)), None)
    return str(value["code"]) if isinstance(value, dict) and value.get("code") is not None else None


def _first_lieu(values: Sequence[Any], ctx: Context) -> Resource | None:
    """The offer's first lieu received (the v2.4 UE had one lieu); the others are reported by _referenced."""
    return next(iter(_referenced(values, ctx)), None)


EQUIPMENT = f"{_IG_SD}ror-location-equipment"
# An équipement's key (its TRE_R212 code), as mappings/entities/device.yaml's entity-id rule selects it
EQUIPMENT_KEY = SourcePath.parse("extension[url=equipmentType].valueCodeableConcept.coding.code")


def equipment_keys(lieu: Resource) -> tuple[tuple[str, ...], ...]:
    """The key of each `ror-location-equipment` extension of a lieu, in order (part_id)."""
    return tuple(tuple(str(v) for v in EQUIPMENT_KEY.select(part)) for part in _extensions(lieu, EQUIPMENT))


def lieu_equipment(values: Sequence[Any], resource: Resource, ctx: Context) -> list[Value]:
    """The offer's first lieu received → one UE `equipment` (uniqueID) per équipement of the lieu, naming the
    csd:device the device table writes for it (part_id, the same entityID); an équipement without type has no
    device (reported by the device table) and no reference."""
    lieu = _first_lieu(values, ctx)
    if lieu is None:
        return []
    keys = equipment_keys(lieu)
    return [
        ExtensionNode("equipment", attributes=(("entityID", part_id(lieu, keys, n, ctx)),))
        for n, key in enumerate(keys)
        if key
    ]


def lieu_accommodation_capacity(values: Sequence[Any], resource: Resource, ctx: Context) -> list[Value]:
    """The offer's first lieu received → the UE's accommodationCapacity: `beds` / `space` (natureCapacite
    TRE_R329 01 / 02; [INFER] beds when the capacity does not say) with `total` = the installed ones (statut
    TRE_R330 01), `avaible` = the available ones (02), each the sum of the lieu's current capacities
    (temporality TRE_R331 01 or none; crisis capacities excluded) and `updateDate` their latest
    capacityUpdateDate; record = the lieu's. No installed or available capacity: nothing."""
    lieu = _first_lieu(values, ctx)
    if lieu is None:
        return []
    return list(once("accommodation_capacity", lieu, ctx, _accommodation_capacity))


def _accommodation_capacity(lieu: Resource, ctx: Context) -> list[Value]:
    counts: dict[tuple[str, str], int] = {}
    dates: dict[str, datetime] = {}
    for capacity in _extensions(lieu, SUPPORTED_CAPACITY):
        if _part(capacity, "crisisType") is not None:
            continue
        if _code_of(_part(capacity, "temporalityCapacity")) not in (None, _CAPACITY_NOW):
            continue
        status = _CAPACITY_STATUS.get(_code_of(_part(capacity, "capacityStatus")) or "")
        number = _part(capacity, "nbCapacity")
        if status is None or not isinstance(number, int) or isinstance(number, bool):
            continue
        nature_code = _code_of(_part(capacity, "capacityType"))
        nature = "beds" if nature_code is None else _CAPACITY_NATURE.get(nature_code)
        if nature is None:
            continue
        counts[(nature, status)] = counts.get((nature, status), 0) + number
        updated = _part(capacity, "capacityUpdateDate")
        if isinstance(updated, str) and updated:
            when = parse_datetime(updated, ctx.timezone)
            dates[nature] = max(dates.get(nature, when), when)
    children: list[ExtensionNode] = []
    for nature in ("beds", "space"):
        attributes = tuple(
            (status, str(counts[(nature, status)]))
            for status in ("total", "avaible")
            if (nature, status) in counts
        )
        if not attributes:
            continue
        if nature in dates:
            attributes += (("updateDate", dates[nature].isoformat()),)
        children.append(ExtensionNode(nature, attributes=attributes))
    if not children:
        return []
    return [ExtensionNode("accommodationCapacity", children=(*children, _record_node(lieu, ctx)))]


# temporaliteCapacite (TRE_R331, NOS 2023-06-14) of a crisis capacity → the profile's
# crisisAccomodationCapacity: [INFER] 01 Courant (or none) is T0, 02 Prévisionnel 1 heure is T60.
_CRISIS_TIMES = {None: "crisisCapacityT0", _CAPACITY_NOW: "crisisCapacityT0", "02": "crisisCapacityT60"}
# statutCapacite (TRE_R330) of the beds a crisis mobilises: [INFER] 02 Disponible and 06 Supplémentaire
# (TRE_R336 "mobiliser le nombre de lits supplémentaires"); the other statuses are not counted.
_CRISIS_STATUSES = ("02", "06")


def lieu_crisis_capacity(values: Sequence[Any], resource: Resource, ctx: Context) -> list[Value]:
    """The offer's first lieu received → the UE's crisisAccomodationCapacity from its crisis capacities
    (ror-location-supported-capacity with a crisisType TRE_R336): crisisCapacityT0 / crisisCapacityT60 = the
    sums of the available and supplementary counts (statut TRE_R330 02 / 06) of temporality TRE_R331 01 (or
    none) / 02 ([INFER] the profile leaves the reading open), record = the lieu's. The profile requires both
    counts: only one of them is reported and nothing written. The profile holds one crisis capacity without
    its type: the first crisis type received is written, the counts of another type are reported."""
    lieu = _first_lieu(values, ctx)
    if lieu is None:
        return []
    counts: dict[str, dict[str, int]] = {}
    for capacity in _extensions(lieu, SUPPORTED_CAPACITY):
        crisis = _code_of(_part(capacity, "crisisType"))
        if crisis is None:
            continue
        time = _CRISIS_TIMES.get(_code_of(_part(capacity, "temporalityCapacity")))
        number = _part(capacity, "nbCapacity")
        status = _code_of(_part(capacity, "capacityStatus"))
        if time is None or status not in _CRISIS_STATUSES:
            continue
        if not isinstance(number, int) or isinstance(number, bool):
            continue
        by_time = counts.setdefault(crisis, {})
        by_time[time] = by_time.get(time, 0) + number
    written: list[Value] = []
    for crisis, by_time in counts.items():
        if len(by_time) < len(set(_CRISIS_TIMES.values())):
            ctx.findings.add(
                Finding.INCOMPLETE_TYPED_ELEMENT, f"crisis capacity (TRE_R336 {crisis}) without T0 or T60"
            )
        elif written:
            ctx.findings.add(Finding.SECOND_CRISIS_TYPE, f"TRE_R336 {crisis}")
        else:
            times = ("crisisCapacityT0", "crisisCapacityT60")
            children = (*(ExtensionNode(t, text=str(by_time[t])) for t in times), _record_node(lieu, ctx))
            written.append(ExtensionNode("crisisAccomodationCapacity", children=children))
    return written


def lieu_residential_capacity(values: Sequence[Any], resource: Resource, ctx: Context) -> list[Value]:
    """The offer's first lieu received → one residentialCapactity (the schema's spelling) per
    ror-location-residential-capacity: residentialType (typeHabitation TRE_R242; required: one without it is
    reported and left out), residentialNumber (nombreHabitation), record = the lieu's."""
    lieu = _first_lieu(values, ctx)
    if lieu is None:
        return []
    return list(once("residential_capacity", lieu, ctx, _residential_capacity))


def _residential_capacity(lieu: Resource, ctx: Context) -> list[Value]:
    out: list[Value] = []
    for capacity in _extensions(lieu, RESIDENTIAL_CAPACITY):
        kind = _coded_node("residentialType", _part(capacity, "residentialType"), ctx)
        if kind is None:
            ctx.findings.add(Finding.INCOMPLETE_TYPED_ELEMENT, "residential capacity without residentialType")
            continue
        children = [kind]
        number = _part(capacity, "residentialNumber")
        if isinstance(number, int) and not isinstance(number, bool):
            children.append(ExtensionNode("residentialNumber", text=str(number)))
        children.append(_record_node(lieu, ctx))
        out.append(ExtensionNode("residentialCapactity", children=tuple(children)))
    return out


def _establishment_of(offer: Resource, ctx: Context) -> Resource | None:
    """The EG on the offer's organisation chain (providedBy, then partOf), else the top one received."""
    return _establishment_above(_reference_of(offer.get("providedBy")), ctx)


def _establishment_above(key: str | None, ctx: Context) -> Resource | None:
    """The EG on the organisation chain from `key` (itself, then partOf), else its EJ when received (worked
    out once per organisation of the answer: every offer and role below it asks)."""
    start = ctx.index.get(key) if key is not None else None
    if start is None:
        return None
    known = ctx.memo.get(("establishment", id(start)))
    if known is not None and known[0] is start:
        found: Resource | None = known[1]
        return found
    found = _establishment_walk(key, ctx)
    ctx.memo[("establishment", id(start))] = (start, found)
    return found


def _establishment_walk(key: str | None, ctx: Context) -> Resource | None:
    seen: set[str] = set()
    last: Resource | None = None
    while key is not None and key not in seen:
        seen.add(key)
        organization = ctx.index.get(key)
        if organization is None:
            break
        last = organization
        if organization_kind(organization) == "EG":
            return organization
        key = _reference_of(organization.get("partOf"))
    return last if last is not None and organization_kind(last) != "OI" else None


def unit_organizations(values: Sequence[Any], resource: Resource, ctx: Context) -> list[Value]:
    """The UE (an offre opérationnelle) → facility/organizations/organization: its EG (the csd:organization of
    the offer's chain) with the offer's activity as `service` (the csd:service of the same entityID), its
    name and opening hours. Without the EG received: nothing (reported)."""
    establishment = _establishment_of(resource, ctx)
    if establishment is None:
        ctx.findings.add(Finding.UNRESOLVED_REFERENCE, f"HealthcareService/{resource.get('id')} EG")
        return []
    service = FacilityService(
        entity_id=derived_id(resource, ctx),
        names=tuple(n for n in [resource.get("name")] if isinstance(n, str) and n),
        operating_hours=tuple(operating_hours(resource.get("availableTime"), resource, ctx)),
    )
    return [FacilityOrganization(derived_id(establishment, ctx), (service,))]


TRANSFORMS: Mapping[str, Transform] = {
    t.name: t
    for t in (
        Transform("entity_id", str, source=False, codes=False, func=entity_id),
        Transform(
            "reference_entity_id", str, source=True, codes=False, func=reference_entity_id, reads=_IDENTITY
        ),
        Transform(
            "resolved_entity_id", str, source=True, codes=False, func=resolved_entity_id, reads=_IDENTITY
        ),
        Transform("part_entity_id", str, source=True, codes=False, func=part_entity_id),
        Transform("other_id", OtherID, source=True, codes=False, func=other_id),
        Transform("coded_type", CodedType, source=True, codes=False, func=coded_type),
        Transform(
            "organization_kind",
            CodedType,
            source=False,
            codes=True,
            func=organization_kind_coded_type,
            required_keys=("EJ", "EG", "OI"),
        ),
        Transform("address", Address, source=True, codes=False, func=address),
        Transform("contact_point", ContactPoint, source=True, codes=True, func=contact_point),
        Transform("record", Record, source=False, codes=False, func=record),
        Transform("crosswalk", CodedType, source=True, codes=True, func=crosswalk),
        Transform(
            "default_code", CodedType, source=False, codes=True, func=default_code, required_keys=("default",)
        ),
        Transform("geocode", Geocode, source=True, codes=False, func=geocode),
        Transform("tree", ExtensionNode, source=True, codes=False, func=tree),
        Transform(
            "profile_contact",
            ExtensionNode,
            source=True,
            codes=True,
            func=profile_contact,
            required_keys=("public", "phone", "email"),
        ),
        Transform(
            "offer_contact",
            ExtensionNode,
            source=True,
            codes=True,
            func=offer_contact,
            required_keys=("public", "phone", "email"),
        ),
        Transform(
            "profile_mailbox",
            ExtensionNode,
            source=True,
            codes=True,
            func=profile_mailbox,
            required_keys=("public", "phone", "email"),
        ),
        Transform("profile_location", ExtensionNode, source=True, codes=False, func=profile_location),
        Transform(
            "profile_operational_status",
            ExtensionNode,
            source=False,
            codes=True,
            func=profile_operational_status,
            required_keys=("public", "phone", "email"),
        ),
        Transform(
            "profile_territorial_division",
            ExtensionNode,
            source=True,
            codes=False,
            func=profile_territorial_division,
        ),
        Transform(
            "referenced_other_id",
            OtherID,
            source=True,
            codes=False,
            func=referenced_other_id,
            reads=(Read((SOURCE,), content=True),),
        ),
        Transform(
            "demographic",
            Demographic,
            source=True,
            codes=True,
            func=demographic,
            reads=(Read((SOURCE,), content=True),),
        ),
        Transform("exercise_name", Demographic, source=True, codes=False, func=exercise_name),
        Transform("savoir_faire", Credential, source=True, codes=False, func=savoir_faire),
        Transform(
            "provider_organization",
            ProviderOrganization,
            source=True,
            codes=False,
            func=provider_organization,
            reads=_IDENTITY,
        ),
        Transform(
            "provider_facilities",
            ProviderFacility,
            source=True,
            codes=False,
            func=provider_facilities,
            reads=(
                Read((SOURCE,), content=True),  # the offer: its name
                Read((SOURCE, "providedBy"), content=False),  # its EG, up the chain
                Read((SOURCE, "providedBy", "partOf*"), content=False),
            ),
        ),
        Transform(
            "parent_facility",
            ExtensionNode,
            source=True,
            codes=False,
            func=parent_facility,
            # the referenced organisation's kind and entityID; a v3 UE organisation stands for its parent
            reads=(Read((SOURCE,), content=False), Read((SOURCE, "partOf*"), content=False)),
        ),
        Transform("regional_other_id", OtherID, source=True, codes=False, func=regional_other_id),
        Transform(
            "subtree_activity_fields",
            CodedType,
            source=False,
            codes=False,
            func=subtree_activity_fields,
            reads=(_OFFERS_BELOW,),
        ),
        Transform(
            "subtree_patients_type",
            ExtensionNode,
            source=False,
            codes=False,
            func=subtree_patients_type,
            reads=(_OFFERS_BELOW,),
        ),
        Transform("patients_type", ExtensionNode, source=False, codes=False, func=patients_type),
        Transform("sensitive_unit", str, source=False, codes=False, func=sensitive_unit),
        Transform(
            "lieu_location",
            ExtensionNode,
            source=True,
            codes=False,
            func=lieu_location,
            reads=(Read((SOURCE,), content=True),),
        ),
        Transform(
            "lieu_address",
            Address,
            source=True,
            codes=False,
            func=lieu_address,
            reads=(Read((SOURCE,), content=True),),
        ),
        Transform(
            "lieu_equipment",
            ExtensionNode,
            source=True,
            codes=False,
            func=lieu_equipment,
            reads=(Read((SOURCE,), content=True),),
        ),
        Transform(
            "lieu_accommodation_capacity",
            ExtensionNode,
            source=True,
            codes=False,
            func=lieu_accommodation_capacity,
            reads=(Read((SOURCE,), content=True),),
        ),
        Transform(
            "lieu_crisis_capacity",
            ExtensionNode,
            source=True,
            codes=False,
            func=lieu_crisis_capacity,
            reads=(Read((SOURCE,), content=True),),
        ),
        Transform(
            "lieu_residential_capacity",
            ExtensionNode,
            source=True,
            codes=False,
            func=lieu_residential_capacity,
            reads=(Read((SOURCE,), content=True),),
        ),
        Transform(
            "offer_resource_skills",
            ExtensionNode,
            source=True,
            codes=True,
            func=offer_resource_skills,
        ),
        Transform(
            "unit_organizations",
            FacilityOrganization,
            source=False,
            codes=False,
            func=unit_organizations,
            # the EG on the offer's chain: the kinds of the organisations up to it, its entityID
            reads=(Read(("providedBy",), content=False), Read(("providedBy", "partOf*"), content=False)),
        ),
        Transform(
            "facility_organizations",
            FacilityOrganization,
            source=False,
            codes=False,
            func=facility_organizations,
            reads=(
                # the offers given at the lieu: name, opening hours with their record
                Read(("<HealthcareService.location",), content=True),
                Read(("<HealthcareService.location", "providedBy"), content=False),
            ),
        ),
    )
}
TEXT = Transform("text", str, source=True, codes=False, func=text)  # what a rule without `transform` does
