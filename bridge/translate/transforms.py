"""The closed list of named transforms a mapping rule may use: selected FHIR values in, CSD values out.

translate/: pure mapping engine. A case that needs logic gets a transform here, with a test — never an
expression in a table (architecture.md §4; mappings/README.md, "Transforms").
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime, time, tzinfo
from typing import Any

from bridge.model import Address, AddressLine, CodedType, ContactPoint, OtherID, Record, Resource
from bridge.translate.codes import CodeTable, Systems
from bridge.translate.findings import Finding, Findings
from bridge.translate.identity import Identities

# Extension URLs the closure and creation-date logic reads (ROR IG profiles ROROrganization /
# RORHealthcareService; docs/ror-fhir-api.md §3.1, §3.2).
META_CREATION_DATE = "https://interop.esante.gouv.fr/ig/fhir/ror/StructureDefinition/ror-meta-creation-date"
ORGANIZATION_PERIOD = "http://hl7.org/fhir/StructureDefinition/organization-period"
ORGANIZATION_CLOSING_TYPE = (
    "https://interop.esante.gouv.fr/ig/fhir/ror/StructureDefinition/ror-organization-closing-type"
)
CLOSING_REOPENING_ID = "closingReopeningDate"  # HealthcareService.notAvailable slice, id fixed by the profile
# How an internal organisation is recognised (ROROrganization: slice identifierOI, its system and type
# TRE_R345 #42; type slice OIType from TRE_R207). The IG does not spell the EJ/EG/OI test out
# (docs/ror-fhir-api.md §3.1).
OI_IDENTIFIER_SYSTEM = "https://oi.esante.gouv.fr"
OI_IDENTIFIER_TYPE_CODE = "42"
OI_TYPE_SYSTEM_MARK = "TRE_R207"

Value = str | CodedType | OtherID | Address | ContactPoint | Record


class TransformError(Exception):
    """A transform met data it cannot map; the engine reports it as MappingError(table, rule, path, …)."""


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


TransformFunc = Callable[[Sequence[Any], Resource, Context], list[Value]]


@dataclass(frozen=True, slots=True)
class Transform:
    name: str
    output: type  # the CSD value type it produces; the loader checks it against the rule's target
    source: bool  # True: the rule must give a source path; False: the rule must not
    codes: bool  # True: the rule must name a code table
    func: TransformFunc
    required_keys: tuple[str, ...] = ()  # source codes the code table must hold


# --------------------------------------------------------------------------------------------------
# FHIR dates


_PARTIAL = re.compile(r"^(\d{4})(?:-(\d{2}))?$")


def parse_datetime(text: Any, timezone: tzinfo) -> datetime:
    """A FHIR date / dateTime / instant, made aware; naive and partial values take `timezone` [INFER]."""
    if not isinstance(text, str) or not text:
        raise TransformError(f"not a FHIR dateTime: {text!r}")
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
    derived, national = ctx.identities.derive(resource)
    if not national:
        ctx.findings.add(Finding.FHIR_ID_ENTITY, str(resource.get("resourceType")))
    return [derived]


def reference_key(reference: str) -> str | None:
    """`Type/id` of a literal FHIR reference, relative or absolute, with or without `_history/…`."""
    parts = [p for p in reference.split("?")[0].split("/") if p]
    if len(parts) >= 4 and parts[-2] == "_history":
        parts = parts[:-2]
    if len(parts) < 2 or not parts[-2][:1].isupper():
        return None
    return f"{parts[-2]}/{parts[-1]}"


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
            out.append(ctx.identities.derive(target)[0])
        else:
            resource_type, _, logical_id = key.partition("/")
            ctx.findings.add(Finding.UNRESOLVED_REFERENCE, key)
            out.append(ctx.identities.fallback(resource_type, logical_id))
    return out


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
    codings: list[dict[str, Any]] = []
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
        if ctx.systems.oid(system) is None:
            ctx.findings.add(Finding.SYSTEM_WITHOUT_OID, system)
        display = coding.get("display")
        out.append(CodedType(code, ctx.systems.scheme(system), display if isinstance(display, str) else None))
    return out


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
    """FHIR ContactPoint → CSD contactPoint: its `system` looked up in the code table, the value as text."""
    if ctx.codes is None:
        raise TransformError("contact_point needs a code table")
    out: list[Value] = []
    for value in values:
        if not isinstance(value, dict):
            raise TransformError("contact_point needs ContactPoint objects")
        number = value.get("value")
        if not isinstance(number, str) or not number:
            continue
        coded = ctx.codes.get(str(value.get("system")))
        if coded is None:
            ctx.findings.add(Finding.SYSTEM_WITHOUT_OID, f"ContactPoint.system {value.get('system')!r}")
            continue
        out.append(ContactPoint(CodedType(coded.code, coded.coding_scheme, number)))
    return out


def status_from_closure(resource: Resource, now: datetime, timezone: tzinfo) -> str:
    """`Inactive` when the resource is closed at `now`, else `Active` (csd-wire-format §7.4, [INFER]).

    Organization: organization-period end reached, or a ror-organization-closing-type present.
    HealthcareService: notAvailable[closingReopeningDate] started and not yet reopened.
    """
    for extension in _extensions(resource, ORGANIZATION_PERIOD):
        end = (extension.get("valuePeriod") or {}).get("end")
        if end and parse_datetime(end, timezone) <= now:
            return "Inactive"
    if _extensions(resource, ORGANIZATION_CLOSING_TYPE):
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


def record(values: Sequence[Any], resource: Resource, ctx: Context) -> list[Value]:
    """created = ror-meta-creation-date (else meta.lastUpdated), updated = meta.lastUpdated, status."""
    updated_text = (resource.get("meta") or {}).get("lastUpdated")
    created_texts = [e.get("valueDateTime") for e in _extensions(resource, META_CREATION_DATE)]
    created_text = next((t for t in created_texts if t), None) or updated_text
    if not updated_text:
        raise TransformError("meta.lastUpdated is missing (1..1 in every ROR profile)")
    updated = parse_datetime(updated_text, ctx.timezone)
    created = parse_datetime(created_text, ctx.timezone)
    return [
        Record(created=created, updated=updated, status=status_from_closure(resource, ctx.now, ctx.timezone))
    ]


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


TRANSFORMS: Mapping[str, Transform] = {
    t.name: t
    for t in (
        Transform("entity_id", str, source=False, codes=False, func=entity_id),
        Transform("reference_entity_id", str, source=True, codes=False, func=reference_entity_id),
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
    )
}
TEXT = Transform("text", str, source=True, codes=False, func=text)  # what a rule without `transform` does
