"""FHIR search over the simulator's dataset: parameter parsing, `_filter`, matching, `_include`/`_revinclude`.

Part of simulator/. Kept apart from HTTP (app.py) and from storage (dataset.py): every criterion is a boolean
mask over one type's entity arrays (numpy), so a search costs a few vector operations even at national scale.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Protocol
from zoneinfo import ZoneInfo

import numpy as np

from bridge.errors import SearchError as SearchError  # raised here; importers keep this path
from bridge.simulator import rendered, vocab
from bridge.simulator.dataset import (
    AGE_RANGES,
    EPOCH_UTC,
    ID_BASE,
    REFERENCE_PARAMS,
    RESOURCE_TYPES,
    BoolArray,
    Dataset,
    IdSequence,
    fold_text,
    offer_name,
)
from bridge.simulator.vocab import CodeList


@dataclass(frozen=True, slots=True)
class ParamSpec:
    name: str
    type: str  # FHIR search parameter type, for the CapabilityStatement
    documentation: str
    modifiers: frozenset[str] = frozenset({""})  # accepted modifiers ("" = none)


_COMMON = (
    ParamSpec("_id", "token", "Logical id; comma = OR."),
    ParamSpec("_tag", "token", "meta.tag `system|code` or `code` (TRE_R30 source region)."),
    ParamSpec(
        "_lastUpdated",
        "date",
        "meta.lastUpdated with prefixes eq ne gt lt ge le sa eb at any precision; repeat = AND.",
    ),
)
_IDENTIFIER = ParamSpec("identifier", "token", "`system|value`, `value`, `|value` or `system|`; comma = OR.")
_FILTER = ParamSpec(
    "_filter", "special", "Subset: `param op value` joined by and / or / not and parentheses."
)
_STRING = frozenset({"", "contains", "exact"})
_PLACE = (
    ParamSpec("address-postalcode", "string", "Postal code, starts-with (a department: `71`).", _STRING),
    ParamSpec("address-city", "string", "City, starts-with, case- and accent-insensitive.", _STRING),
    ParamSpec("commune-cog", "token", "ror-commune-cog extension, TRE_R13 commune code; comma = OR."),
    ParamSpec("near", "special", "`latitude|longitude|distance|unit` (unit km or m; default km)."),
    ParamSpec(
        "near-insee-code",
        "special",
        "`COG|distance|unit` (TRE_R13 commune; unit km or m): distance from the commune's centre.",
    ),
    ParamSpec("capacity-status", "token", "ror-location-supported-capacity capacityStatus (TRE_R330)."),
    ParamSpec("nb-capacity", "number", "ror-location-supported-capacity nbCapacity with a prefix: `gt0`."),
)
# Read from the rendered resources (rendered.py): the IG SearchParameters' elements and extensions.
_RENDERED_DOC = {
    "token": "`system|code` or `code`; comma = OR.",
    "number": "A number with a prefix (`ge2`); comma = OR.",
    "quantity": "`[prefix]number[|system|unit]`; comma = OR.",
    "date": "A date with a prefix (`ge2024-01-01`); repeat = AND.",
    "string": "Starts-with; `:contains`, `:exact`.",
}


def _rendered(resource_type: str) -> tuple[ParamSpec, ...]:
    return tuple(
        ParamSpec(
            name,
            "token" if kind == "token" else kind,
            f"{name} (IG SearchParameter, read from the resource): {_RENDERED_DOC[kind]}",
            _STRING if kind == "string" else frozenset({""}),
        )
        for (rtype, name), kind in rendered.PARAMS.items()
        if rtype == resource_type
    )


_LOCATION = (*_COMMON, _IDENTIFIER, _FILTER, *_PLACE, *_rendered("Location"))
_ORGANIZATION_OWN = (
    *_COMMON,
    _IDENTIFIER,
    ParamSpec(
        "name", "string", "name or alias, starts-with; `:contains`, `:exact` (ror-fhir-api.md §2.4).", _STRING
    ),
    *(p for p in _rendered("Organization") if p.name != "type"),
)
# Organization `type` is searched only through the offers' chain (organization.type:above): the production
# CapabilityStatement declares no `type` on Organization itself.
_ORGANIZATION_CHAINED = (
    *(p for p in _ORGANIZATION_OWN if p.name not in ("_lastUpdated", "identifier", "period-end")),
    *(p for p in _rendered("Organization") if p.name == "type"),
)

# What the simulator supports, per resource type: the national API's surface (the production
# CapabilityStatement ror-serveur-prod, ror-fhir-api.md §2.1; tests/simulator/test_national_surface.py derives
# it from the IG files and checks this table against it), except NOT_SERVED. The CapabilityStatement is
# generated from this table, so it lists exactly what is accepted.
_PLACE_NAMES = frozenset(p.name for p in _PLACE)
SEARCH_PARAMS: dict[str, tuple[ParamSpec, ...]] = dict.fromkeys(RESOURCE_TYPES, _COMMON)
SEARCH_PARAMS["Location"] = _LOCATION
SEARCH_PARAMS["Organization"] = _ORGANIZATION_OWN
SEARCH_PARAMS["HealthcareService"] = (
    *_COMMON,
    _IDENTIFIER,
    _FILTER,
    ParamSpec(
        "organization.identifier",
        "token",
        "Identifier of the providing Organization or any ancestor through partOf (`:above`, the only form "
        "the national API declares): the whole subtree of an EJ, EG or internal organisation.",
        frozenset({"above"}),
    ),
    ParamSpec(
        "organization._lastUpdated",
        "date",
        "meta.lastUpdated of the providing Organization or any ancestor (partOf); `:above` only.",
        frozenset({"above"}),
    ),
    *(
        ParamSpec(
            f"organization.{p.name}",
            p.type,
            f"Of the providing Organization or any ancestor (`:above` only): {p.documentation}",
            frozenset({"above"}),
        )
        for p in _ORGANIZATION_CHAINED
    ),
    ParamSpec("specialty", "token", "specialty[operationalActivity] (TRE_R211); comma = OR."),
    ParamSpec(
        "characteristic",
        "token",
        "Any characteristic slice (TRE_R213 careMode, TRE_R338 receptionModality, TRE_R245 "
        "takingCareSpeciality, TRE_R210 specificAct); comma = OR, repeat = AND.",
    ),
    ParamSpec("service-category", "token", "category, typeOffre (TRE_R244); comma = OR."),
    ParamSpec("service-type", "token", "type, champ d'activité (TRE_R227); comma = OR."),
    ParamSpec(
        "age-range-low",
        "quantity",
        "Patient age range low bound, years: `le35` or `le35|http://unitsofmeasure.org|a`.",
    ),
    ParamSpec("age-range-high", "quantity", "Patient age range high bound, years (as age-range-low)."),
    ParamSpec("intervention-zone", "token", "zoneIntervention commune (TRE_R13); comma = OR."),
    ParamSpec(
        "patient-type",
        "token",
        "ror-healthcareservice-patient-type supportedPatientInfo (TRE_R239). The synthetic offers carry none "
        "(no TRE_R239 code in the sources), so it matches nothing.",
    ),
    ParamSpec(
        "name",
        "string",
        "Offer name, starts-with; `:contains`, `:exact`.",
        frozenset({"", "contains", "exact"}),
    ),
    ParamSpec(
        "practitioner.identifier",
        "string",
        "Identifier (RPPS) of a professional with a situation opérationnelle in the offer (chained through "
        "PractitionerRole.healthcareService); the bare value or `system|value`; comma = OR.",
    ),
    *_rendered("HealthcareService"),
    *(
        ParamSpec(f"location.{p.name}", p.type, f"Of the offer's Location: {p.documentation}", p.modifiers)
        for p in _LOCATION
        if p.name != "_filter"
    ),
)

# Parameters the national API declares that the simulator refuses (400 in strict mode), with why.
NOT_SERVED: Mapping[str, Mapping[str, str]] = {
    "Location": {"_has": "reverse chaining is not implemented"},
    "Organization": {
        "_content": "full-text search is not implemented",
        "extension.typeActivity": "no SearchParameter defines it in the IG files",
    },
    "HealthcareService": {
        "location.identifier:of-type": "the identifier type modifier is not implemented",
    },
}

# `_revinclude` as the national API declares it per searched type (ror-serveur-prod: HealthcareService
# `_revinclude` and `_revinclude:iterate`, Location `_revinclude`, no other type; `_include` is declared on
# every type, searchInclude "*"). Strict mode refuses any other `_revinclude` (400), except the [INFER]
# searches the bridge still sends, each with why (tests/simulator/test_national_surface.py checks both
# against the IG files and the mapping tables).
REVINCLUDE_DECLARED: Mapping[str, frozenset[str]] = {
    "HealthcareService": frozenset({"_revinclude", "_revinclude:iterate"}),
    "Location": frozenset({"_revinclude"}),
}
REVINCLUDE_INFERRED: Mapping[str, Mapping[str, str]] = {
    "Practitioner": {
        "_revinclude": "a changed professional's situations (PractitionerRole:practitioner), ITI-74 and "
        "TR-Notif: Practitioner declares no _revinclude nor _has, PractitionerRole no practitioner parameter "
        "(the declared HealthcareService?practitioner.identifier route: mappings/README.md)"
    },
    "PractitionerRole": {
        "_revinclude:iterate": "the other situations of a professional (PractitionerRole:practitioner), "
        "merged into one provider per RPPS: PractitionerRole declares only _id, _lastUpdated, _tag "
        "(the declared HealthcareService?practitioner.identifier route: mappings/README.md)"
    },
}


def revinclude_served(resource_type: str, *, strict: bool = True) -> frozenset[str]:
    """`_revinclude` / `_revinclude:iterate`, as served on a searched type (lenient: both everywhere)."""
    if not strict:
        return frozenset({"_revinclude", "_revinclude:iterate"})
    inferred = frozenset(REVINCLUDE_INFERRED.get(resource_type, {}))
    return REVINCLUDE_DECLARED.get(resource_type, frozenset()) | inferred


# Result parameters (never filters): accepted on every type (`_revinclude`: see REVINCLUDE_DECLARED).
RESULT_PARAMS = frozenset({"_include", "_revinclude", "_count", "_sort"})
INCLUDE_MODIFIERS = frozenset({"", "iterate", "recurse"})  # `recurse` is the R3 spelling of `iterate`
IGNORED_PARAMS = frozenset({"_format", "_pretty"})
SORT_KEYS = ("_lastUpdated", "-_lastUpdated", "_id", "-_id")


@dataclass(frozen=True, slots=True)
class IncludeSpec:
    """One `_include` / `_revinclude` value: `Source:param[:Target]`."""

    source_type: str
    param: str
    target_type: str | None
    iterate: bool
    reverse: bool

    def __str__(self) -> str:
        name = "_revinclude" if self.reverse else "_include"
        mod = ":iterate" if self.iterate else ""
        target = f":{self.target_type}" if self.target_type else ""
        return f"{name}{mod}={self.source_type}:{self.param}{target}"


class Criterion(Protocol):
    def mask(self, dataset: Dataset, resource_type: str) -> BoolArray:
        """Which entities of `resource_type` match (one boolean per index)."""


@dataclass(frozen=True, slots=True)
class SearchRequest:
    resource_type: str
    criteria: tuple[Criterion, ...]
    includes: tuple[IncludeSpec, ...]
    count: int | None
    sort: str | None = None  # one of SORT_KEYS; None = id order


# ------------------------------------------------------------------------------------------------------
# Value syntax (FHIR R4 search §3.1.1.4: `\` escapes `,`, `|`, `$`, `\`)


def split_unescaped(text: str, sep: str) -> list[str]:
    parts: list[str] = []
    current: list[str] = []
    chars = iter(text)
    for ch in chars:
        if ch == "\\":
            current.append(ch + next(chars, ""))
        elif ch == sep:
            parts.append("".join(current))
            current = []
        else:
            current.append(ch)
    parts.append("".join(current))
    return parts


def _unescape(text: str) -> str:
    return re.sub(r"\\(.)", r"\1", text)


def parse_token(text: str) -> tuple[str | None, str]:
    """`system|code` → (system, code); `code` → (None, code); `|code` → ("", code); `sys|` → (sys, "")."""
    parts = split_unescaped(text, "|")
    if len(parts) == 1:
        return None, _unescape(parts[0])
    if len(parts) == 2:
        return _unescape(parts[0]), _unescape(parts[1])
    raise SearchError(f"invalid token value {text!r}")


def _or_values(name: str, text: str) -> list[str]:
    values = split_unescaped(text, ",")
    if any(v == "" for v in values):
        raise SearchError(f"empty value in parameter {name!r}")
    return values


_fold = fold_text


# ------------------------------------------------------------------------------------------------------
# Criteria (each a mask over one type's arrays)


def _empty(dataset: Dataset, rtype: str) -> BoolArray:
    return np.zeros(dataset.count(rtype), dtype=bool)


@dataclass(frozen=True, slots=True)
class IdCriterion:
    ids: tuple[str, ...]

    def mask(self, dataset: Dataset, resource_type: str) -> BoolArray:
        out = _empty(dataset, resource_type)
        for rid in self.ids:
            i = dataset.index_of(resource_type, rid)
            if i is not None:
                out[i] = True
        return out


def _identifier_mask(dataset: Dataset, rtype: str, tokens: Sequence[tuple[str | None, str]]) -> BoolArray:
    out = _empty(dataset, rtype)
    for system, value in tokens:
        if value == "" and system:
            out |= dataset.system_mask(rtype, system)
        else:
            out[dataset.identifier_index(rtype, system, value)] = True
    return out


@dataclass(frozen=True, slots=True)
class IdentifierCriterion:
    tokens: tuple[tuple[str | None, str], ...]

    def mask(self, dataset: Dataset, resource_type: str) -> BoolArray:
        return _identifier_mask(dataset, resource_type, self.tokens)


@dataclass(frozen=True, slots=True)
class OrganizationIdentifierCriterion:
    """HealthcareService `organization.identifier[:above]` (prod CapabilityStatement, ror-fhir-api.md §2.1).

    Without `:above`: offers whose providedBy Organization has the identifier. With `:above`: offers whose
    providedBy Organization has it or has an ancestor (partOf) with it — i.e. every offer of the subtree
    of the identified EJ, EG or internal organisation (ror-fhir-api.md §5 (C)): a range of offer indexes.
    """

    tokens: tuple[tuple[str | None, str], ...]
    above: bool

    def mask(self, dataset: Dataset, resource_type: str) -> BoolArray:
        out = _empty(dataset, resource_type)
        for org in np.flatnonzero(_identifier_mask(dataset, "Organization", self.tokens)).tolist():
            hi = int(dataset.org_end[org]) if self.above else org + 1
            lo_offer, hi_offer = dataset.offers_of_orgs(org, hi)
            out[lo_offer:hi_offer] = True
        return out


@dataclass(frozen=True, slots=True)
class TagCriterion:
    tokens: tuple[tuple[str | None, str], ...]

    def mask(self, dataset: Dataset, resource_type: str) -> BoolArray:
        regions = dataset.lists.regions
        wanted = [
            n
            for n, code in enumerate(regions.codes)
            for system, value in self.tokens
            if (system is None or system == regions.system) and value == code.code
        ]
        return np.isin(dataset.derived(f"region:{resource_type}"), wanted)


# [INFER] A date without a time zone is read in the server's zone, as HAPI does (JVM default); the
# national server is in France.
SERVER_ZONE = ZoneInfo("Europe/Paris")
_DATE = re.compile(
    r"(?P<prefix>eq|ne|gt|lt|ge|le|sa|eb)?"
    r"(?P<y>\d{4})(?:-(?P<m>\d{2})(?:-(?P<d>\d{2})"
    r"(?:T(?P<H>\d{2}):(?P<M>\d{2})(?::(?P<S>\d{2})(?P<f>\.\d{1,9})?)?(?P<tz>Z|[+-]\d{2}:\d{2})?)?)?)?"
)


def parse_date_range(text: str) -> tuple[str, datetime, datetime]:
    """A date search value → (prefix, start, end): the implicit range [start, end) of its precision."""
    match = _DATE.fullmatch(text)
    if match is None:
        raise SearchError(f"invalid date value {text!r}")
    g = match.groupdict()
    prefix = g["prefix"] or "eq"
    try:
        tz = SERVER_ZONE
        if g["tz"]:
            tz = ZoneInfo("UTC") if g["tz"] == "Z" else datetime.strptime(g["tz"], "%z").tzinfo  # type: ignore[assignment]  # strptime %z gives a fixed-offset tzinfo
        year = int(g["y"])
        if g["m"] is None:
            start = datetime(year, 1, 1, tzinfo=tz)
            return prefix, start, start.replace(year=year + 1)
        month = int(g["m"])
        if g["d"] is None:
            start = datetime(year, month, 1, tzinfo=tz)
            end = start.replace(year=year + 1, month=1) if month == 12 else start.replace(month=month + 1)
            return prefix, start, end
        day = int(g["d"])
        if g["H"] is None:
            start = datetime(year, month, day, tzinfo=tz)
            return prefix, start, start + timedelta(days=1)
        start = datetime(year, month, day, int(g["H"]), int(g["M"]), int(g["S"] or 0), tzinfo=tz)
        if g["S"] is None:
            return prefix, start, start + timedelta(minutes=1)
        if g["f"] is None:
            return prefix, start, start + timedelta(seconds=1)
        digits = g["f"][1:]
        micro = int((digits + "000000")[:6])
        start = start.replace(microsecond=micro)
        return prefix, start, start + timedelta(microseconds=10 ** max(0, 6 - len(digits)))
    except ValueError as exc:
        raise SearchError(f"invalid date value {text!r}: {exc}") from exc


def _date_mask(seconds: np.ndarray[Any, Any], prefix: str, start: datetime, end: datetime) -> BoolArray:
    """FHIR R4 search §3.1.1.4.2 prefixes against instants (whole seconds after EPOCH)."""
    lo = (start - EPOCH_UTC).total_seconds()  # EPOCH_UTC's tzinfo differs: an absolute difference
    hi = (end - EPOCH_UTC).total_seconds()
    if prefix == "eq":
        return np.asarray((seconds >= lo) & (seconds < hi))
    if prefix == "ne":
        return np.asarray((seconds < lo) | (seconds >= hi))
    if prefix in ("gt", "sa"):
        return np.asarray(seconds >= hi)
    if prefix in ("lt", "eb"):
        return np.asarray(seconds < lo)
    if prefix == "ge":
        return np.asarray(seconds >= lo)
    return np.asarray(seconds < hi)  # le


@dataclass(frozen=True, slots=True)
class LastUpdatedCriterion:
    """`_lastUpdated` against meta.lastUpdated (kept as seconds in a compact array)."""

    prefix: str
    start: datetime
    end: datetime

    def mask(self, dataset: Dataset, resource_type: str) -> BoolArray:
        return _date_mask(dataset.updated[resource_type], self.prefix, self.start, self.end)


@dataclass(frozen=True, slots=True)
class OrganizationLastUpdatedCriterion:
    """`organization._lastUpdated[:above]`: the provider's (or, with `:above`, any ancestor's) lastUpdated.

    Backs the ANS delta query "offer or its organisation chain changed" (ror-fhir-api.md §5 (B)).
    """

    prefix: str
    start: datetime
    end: datetime
    above: bool

    def mask(self, dataset: Dataset, resource_type: str) -> BoolArray:
        orgs = _date_mask(dataset.updated["Organization"], self.prefix, self.start, self.end)
        if self.above:
            # Parents come before children (depth-first numbering): six passes reach the deepest UE.
            parent = dataset.org_parent
            has_parent = parent >= 0
            for _ in range(6):
                orgs = orgs | (has_parent & orgs[np.where(has_parent, parent, 0)])
        return np.asarray(orgs[dataset.offer_provider])


def _code_indexes(code_list: CodeList, tokens: Sequence[tuple[str | None, str]]) -> list[int]:
    return [
        n
        for n, code in enumerate(code_list.codes)
        for system, value in tokens
        if (system is None or system == code_list.system) and value == code.code
    ]


@dataclass(frozen=True, slots=True)
class CodedCriterion:
    """A token parameter over coded slices kept as code-list indexes (-1 = absent)."""

    slots: tuple[tuple[str, str], ...]  # (dataset array attribute, CodeLists attribute)
    tokens: tuple[tuple[str | None, str], ...]

    def mask(self, dataset: Dataset, resource_type: str) -> BoolArray:
        out = _empty(dataset, resource_type)
        for array_name, list_name in self.slots:
            wanted = _code_indexes(getattr(dataset.lists, list_name), self.tokens)
            if wanted:
                out |= np.isin(getattr(dataset, array_name), wanted)
        return out


@dataclass(frozen=True, slots=True)
class AgeCriterion:
    """`age-range-low` / `age-range-high`: a number (years) with a prefix against the offer's ageRange."""

    bound: int  # 0 = low, 1 = high
    prefix: str
    value: float

    def mask(self, dataset: Dataset, resource_type: str) -> BoolArray:
        table = np.array([r[self.bound] for r in AGE_RANGES], dtype=np.float64)
        return _compare(table[dataset.offer_age], self.prefix, self.value)


def _compare(values: np.ndarray[Any, Any], prefix: str, number: float) -> BoolArray:
    """Number/quantity prefixes (FHIR R4 search §3.1.1.4.1; sa/eb as gt/lt on exact values)."""
    if prefix == "eq":
        return np.asarray(values == number)
    if prefix == "ne":
        return np.asarray(values != number)
    if prefix in ("gt", "sa"):
        return np.asarray(values > number)
    if prefix in ("lt", "eb"):
        return np.asarray(values < number)
    if prefix == "ge":
        return np.asarray(values >= number)
    return np.asarray(values <= number)  # le


def _number(name: str, value: str) -> tuple[str, float]:
    match = re.fullmatch(r"(eq|ne|gt|lt|ge|le|sa|eb)?(-?\d+(?:\.\d+)?)", value)
    if match is None:
        raise SearchError(f"invalid {name} value {value!r} (expected [prefix]number)")
    return match[1] or "eq", float(match[2])


def _string_match(text: str, values: Sequence[str], mode: str) -> bool:
    """FHIR string search: starts-with by default, `:contains`, `:exact` (R4 search §3.1.1.4.7)."""
    if mode == "exact":
        return text in values
    folded = _fold(text)
    if mode == "contains":
        return any(_fold(v) in folded for v in values)
    return any(folded.startswith(_fold(v)) for v in values)


@dataclass(frozen=True, slots=True)
class OrganizationNameCriterion:
    """Organization `name[:contains|:exact]` over name and alias (HAPI: both), on folded byte arrays."""

    values: tuple[str, ...]
    mode: str

    def mask(self, dataset: Dataset, resource_type: str) -> BoolArray:
        out = _empty(dataset, resource_type)
        for column in ("names", "aliases"):
            texts = dataset.derived(f"{column}:Organization")
            for value in self.values:
                needle = fold_text(value).encode()
                if self.mode == "contains":
                    out |= np.strings.find(texts, needle) >= 0
                elif self.mode == "exact":
                    out |= texts == needle  # folded equality; the exact spelling is checked below
                else:
                    out |= np.strings.startswith(texts, needle)
        if self.mode == "exact":
            for i in np.flatnonzero(out).tolist():
                spellings = [dataset.org_name(i), *dataset.org_aliases(i)]
                out[i] = any(v in spellings for v in self.values)
        return out


@dataclass(frozen=True, slots=True)
class NameCriterion:
    """Offer `name` (starts-with), `name:contains`, `name:exact`, over the names the arrays produce."""

    values: tuple[str, ...]
    mode: str  # "", "contains", "exact"

    def _matches(self, name: str) -> bool:
        return _string_match(name, self.values, self.mode)

    def mask(self, dataset: Dataset, resource_type: str) -> BoolArray:
        modes, activities = dataset.lists.care_modes.codes, dataset.lists.activities.codes
        table = np.array(
            [[self._matches(offer_name(m.display, a.display, a.code)) for a in activities] for m in modes]
        ).reshape(len(modes), len(activities))
        return np.asarray(table[dataset.offer_mode, dataset.offer_activity])


@dataclass(frozen=True, slots=True)
class PlaceCriterion:
    """Location `address-postalcode`, `commune-cog`, `near`; on HealthcareService via `location.` chaining."""

    param: str
    values: tuple[str, ...]
    chained: bool
    mode: str = ""  # string modifier: "", "contains", "exact"

    def location_mask(self, dataset: Dataset) -> BoolArray:
        communes = dataset.lists.communes
        if self.param in ("address-postalcode", "address-city"):
            # The address is the commune's (dataset.py _location): a test per commune, then a lookup.
            wanted = [
                n
                for n, c in enumerate(communes)
                if _string_match(
                    c.postal_code if self.param == "address-postalcode" else c.name.upper(),
                    self.values,
                    self.mode,
                )
            ]
            return np.isin(dataset.loc_commune, wanted)
        if self.param == "commune-cog":
            tokens = [parse_token(v) for v in self.values]
            wanted = [
                n
                for n, c in enumerate(communes)
                for system, code in tokens
                if system in (None, vocab.TRE_R13_COMMUNE) and code == c.cog
            ]
            return np.isin(dataset.loc_commune, wanted)
        if self.param == "capacity-status":
            statuses = dataset.lists.capacity_statuses
            wanted = _code_indexes(statuses, [parse_token(v) for v in self.values])
            return np.isin(dataset.loc_cap_status, wanted)
        out = _empty(dataset, "Location")
        if self.param == "nb-capacity":
            counts = dataset.loc_cap_nb.astype(np.float64)
            for value in self.values:
                prefix, number = _number(self.param, value)
                out |= (dataset.loc_cap_status >= 0) & _compare(counts, prefix, number)
            return out
        for value in self.values:
            if self.param == "near-insee-code":
                cog, km = _parse_near_insee(value)
                commune = next((c for c in communes if c.cog == cog), None)
                if commune is None:
                    continue  # a commune the simulator does not know has no location near it
                lat, lon = commune.latitude, commune.longitude
            else:
                lat, lon, km = _parse_near(value)
            # Haversine distance on a 6371 km sphere.
            phi1, phi2 = math.radians(lat), np.radians(dataset.loc_lat.astype(np.float64))
            dphi = phi2 - phi1
            dlmb = np.radians(dataset.loc_lon.astype(np.float64)) - math.radians(lon)
            h = np.sin(dphi / 2) ** 2 + math.cos(phi1) * np.cos(phi2) * np.sin(dlmb / 2) ** 2
            out |= 2 * 6371.0 * np.arcsin(np.sqrt(h)) <= km
        return out

    def mask(self, dataset: Dataset, resource_type: str) -> BoolArray:
        locations = self.location_mask(dataset)
        return np.asarray(locations[dataset.offer_location]) if self.chained else locations


def _parse_near_insee(value: str) -> tuple[str, float]:
    """`COG|distance|unit` (ror-fhir-api.md §5 (D): `location.near-insee-code=44162|15|km`)."""
    parts = value.split("|")
    try:
        distance = float(parts[1]) if len(parts) > 1 and parts[1] else 1.0
    except ValueError as exc:
        raise SearchError(f"invalid near-insee-code value {value!r} (expected COG|distance|unit)") from exc
    unit = parts[2] if len(parts) > 2 else "km"
    if unit not in ("km", "m") or not re.fullmatch(r"[0-9][0-9AB][0-9]{3}", parts[0]):
        raise SearchError(f"invalid near-insee-code value {value!r} (a 5-character COG, unit km or m)")
    return parts[0], distance / 1000 if unit == "m" else distance


def _parse_near(value: str) -> tuple[float, float, float]:
    parts = value.split("|")
    try:
        lat, lon = float(parts[0]), float(parts[1])
        distance = float(parts[2]) if len(parts) > 2 and parts[2] else 1.0
    except (ValueError, IndexError) as exc:
        raise SearchError(
            f"invalid near value {value!r} (expected latitude|longitude|distance|unit)"
        ) from exc
    unit = parts[3] if len(parts) > 3 else "km"
    if unit not in ("km", "m") or not (-90 <= lat <= 90 and -180 <= lon <= 180):
        raise SearchError(f"invalid near value {value!r} (unit km or m, latitude/longitude in range)")
    return lat, lon, distance / 1000 if unit == "m" else distance


@dataclass(frozen=True, slots=True)
class Not:
    inner: Criterion

    def mask(self, dataset: Dataset, resource_type: str) -> BoolArray:
        return ~self.inner.mask(dataset, resource_type)


@dataclass(frozen=True, slots=True)
class AllOf:
    parts: tuple[Criterion, ...]

    def mask(self, dataset: Dataset, resource_type: str) -> BoolArray:
        out = ~_empty(dataset, resource_type)
        for part in self.parts:
            out &= part.mask(dataset, resource_type)
        return out


@dataclass(frozen=True, slots=True)
class AnyOf:
    parts: tuple[Criterion, ...]

    def mask(self, dataset: Dataset, resource_type: str) -> BoolArray:
        out = _empty(dataset, resource_type)
        for part in self.parts:
            out |= part.mask(dataset, resource_type)
        return out


# ------------------------------------------------------------------------------------------------------
# Parsing

_CODED = {
    "specialty": (("offer_activity", "activities"),),
    "service-type": (("offer_champ", "champs"),),
    "service-category": (("offer_category", "offer_categories"),),
    "characteristic": (
        ("offer_mode", "care_modes"),
        ("offer_modality", "modalities"),
        ("offer_speciality", "specialities"),
        ("offer_act", "acts"),
    ),
}
_QUANTITY = re.compile(
    r"(?P<prefix>eq|ne|gt|lt|ge|le|sa|eb)?(?P<n>-?\d+(?:\.\d+)?)(?:\|(?P<sys>[^|]*)\|(?P<unit>[^|]*))?"
)


def supported_names(resource_type: str) -> list[str]:
    return sorted({p.name for p in SEARCH_PARAMS[resource_type]} | RESULT_PARAMS)


def _parse_include(name: str, modifier: str, value: str) -> IncludeSpec:
    if modifier not in INCLUDE_MODIFIERS:
        raise SearchError(f"unsupported modifier {name}:{modifier}", code="not-supported")
    parts = value.split(":")
    if len(parts) not in (2, 3):
        raise SearchError(f"invalid {name} value {value!r} (expected Type:param[:Target])")
    source, param = parts[0], parts[1]
    target = parts[2] if len(parts) == 3 else None
    if (source, param) not in REFERENCE_PARAMS or (target is not None and target not in RESOURCE_TYPES):
        supported = ", ".join(f"{s}:{p}" for s, p in REFERENCE_PARAMS)
        raise SearchError(f"unsupported {name} value {value!r}; supported: {supported}", code="not-supported")
    return IncludeSpec(source, param, target, iterate=modifier != "", reverse=name == "_revinclude")


def parse_search(resource_type: str, params: Sequence[tuple[str, str]], *, strict: bool) -> SearchRequest:
    """Query parameters of `GET [base]/{resource_type}?…` → a SearchRequest.

    Repeated parameters are AND, comma-separated values OR (FHIR R4 search §3.1.1.3). Unknown parameters and
    modifiers raise SearchError in strict mode; otherwise they are ignored, like HAPI's lenient handling.
    """
    criteria: list[Criterion] = []
    includes: list[IncludeSpec] = []
    count: int | None = None
    sort: str | None = None
    for full_name, value in params:
        name, _, modifier = full_name.partition(":")
        if name in IGNORED_PARAMS:
            continue
        if name in ("_include", "_revinclude"):
            includes.append(_parse_include(name, modifier, value))
            served = revinclude_served(resource_type, strict=strict)
            if name == "_revinclude" and ("_revinclude:iterate" if modifier else name) not in served:
                raise SearchError(
                    f"{full_name} is not supported on {resource_type} (the national API declares "
                    f"{', '.join(sorted(served)) or 'none'} there)",
                    code="not-supported",
                )
            continue
        if name == "_count":
            if modifier or not value.isdigit():
                raise SearchError(f"invalid _count value {value!r} (expected an integer >= 0)")
            count = int(value)
            continue
        if name == "_sort":
            if modifier or value not in SORT_KEYS:
                raise SearchError(
                    f"unsupported _sort {value!r}; supported: {', '.join(SORT_KEYS)}", code="not-supported"
                )
            sort = value
            continue
        spec = _spec(resource_type, name, modifier, strict=strict)
        if spec is None:
            continue
        if name == "_filter":
            criteria.append(parse_filter(resource_type, value))
        else:
            criteria.append(_criterion(resource_type, name, modifier, value))
    return SearchRequest(resource_type, tuple(criteria), tuple(dict.fromkeys(includes)), count, sort)


def _spec(resource_type: str, name: str, modifier: str, *, strict: bool) -> ParamSpec | None:
    """The parameter's spec; None (lenient) or SearchError (strict) when unknown or wrongly modified."""
    spec = next((p for p in SEARCH_PARAMS[resource_type] if p.name == name), None)
    if spec is None:
        if strict:
            full = f"{name}:{modifier}" if modifier else name
            raise SearchError(
                f'Unknown search parameter "{full}" for resource type "{resource_type}". '
                f"Valid search parameters for this search are: {supported_names(resource_type)}",
                code="not-supported",
            )
        return None
    if modifier not in spec.modifiers:
        if strict:
            raise SearchError(
                f'Unsupported modifier ":{modifier}" on search parameter "{name}"', code="not-supported"
            )
        return None
    return spec


def _tokens(name: str, value: str) -> tuple[tuple[str | None, str], ...]:
    return tuple(parse_token(v) for v in _or_values(name, value))


def _criterion(resource_type: str, name: str, modifier: str, value: str) -> Criterion:
    if name == "_id":
        return IdCriterion(tuple(_unescape(v) for v in _or_values(name, value)))
    if name == "identifier":
        return IdentifierCriterion(_tokens(name, value))
    if name == "organization.identifier":
        return OrganizationIdentifierCriterion(_tokens(name, value), above=modifier == "above")
    if name == "_tag":
        return TagCriterion(_tokens(name, value))
    if name in ("_lastUpdated", "organization._lastUpdated"):
        if "," in value:
            raise SearchError(f"{name} takes one value per parameter (repeat it for a range)")
        prefix, start, end = parse_date_range(value)
        if name == "_lastUpdated":
            return LastUpdatedCriterion(prefix, start, end)
        return OrganizationLastUpdatedCriterion(prefix, start, end, above=modifier == "above")
    if name == "intervention-zone":
        return _ZoneCriterion(_tokens(name, value))
    if name in _CODED:
        return CodedCriterion(_CODED[name], _tokens(name, value))
    if name in ("age-range-low", "age-range-high"):
        return AnyOf(tuple(_age(name, v) for v in _or_values(name, value)))
    if name == "name":
        values = tuple(_unescape(v) for v in _or_values(name, value))
        if resource_type == "Organization":
            return OrganizationNameCriterion(values, modifier)
        return NameCriterion(values, modifier)
    if name == "patient-type":
        _tokens(name, value)  # checked, then nothing matches: the dataset has no supportedPatientInfo
        return Not(AllOf(()))
    if (resource_type, name) in rendered.PARAMS:
        return _rendered_criterion(resource_type, name, modifier, value)
    if name == "practitioner.identifier":
        return PractitionerIdentifierCriterion(_tokens(name, value))
    if name.startswith("organization."):
        inner = _criterion("Organization", name.removeprefix("organization."), "", value)
        return OrganizationChainCriterion(inner)
    if name.startswith("location.") and name.removeprefix("location.") not in _PLACE_NAMES:
        return LocationChainCriterion(_criterion("Location", name.removeprefix("location."), modifier, value))
    place = name.removeprefix("location.")
    if place in _PLACE_NAMES:
        values = tuple(_unescape(v) for v in _or_values(name, value))
        for v in values:  # refuse a bad value at parse time
            if place == "near":
                _parse_near(v)
            elif place == "near-insee-code":
                _parse_near_insee(v)
            elif place == "nb-capacity":
                _number(name, v)
        return PlaceCriterion(place, values, chained=name.startswith("location."), mode=modifier)
    raise SearchError(f"unsupported search parameter {name!r}", code="not-supported")  # pragma: no cover


def _rendered_criterion(resource_type: str, name: str, modifier: str, value: str) -> Criterion:
    """A parameter read from the rendered resources (rendered.py); its values are checked here."""
    kind = rendered.PARAMS[(resource_type, name)]
    if kind == "date":  # one value per parameter, as _lastUpdated
        wanted: tuple[Any, ...] = (parse_date_range(value),)
    elif kind == "token":
        wanted = _tokens(name, value)
    elif kind in ("number", "quantity"):
        wanted = tuple(_number(name, text.split("|", 1)[0]) for text in _or_values(name, value))
    else:
        wanted = tuple(_unescape(text) for text in _or_values(name, value))
    return RenderedCriterion(resource_type, name, kind, modifier, wanted)


def _date_matches(value: str, prefix: str, start: datetime, end: datetime) -> bool:
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        return False
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=SERVER_ZONE)
    seconds = np.array([(moment - EPOCH_UTC).total_seconds()])
    return bool(_date_mask(seconds, prefix, start, end)[0])


@dataclass(frozen=True, slots=True)
class RenderedCriterion:
    """A parameter of rendered.PARAMS: the resources one of whose values matches one wanted value (OR)."""

    resource_type: str
    param: str
    kind: str  # token, number, quantity, date, string
    modifier: str
    wanted: tuple[Any, ...]  # tokens, (prefix, number), (prefix, start, end), or texts

    def _matches(self, value: rendered.Value) -> bool:
        if self.kind == "token":
            return isinstance(value, tuple) and any(
                value[1] == code and (system is None or (value[0] or "") == system)
                for system, code in self.wanted
            )
        if self.kind in ("number", "quantity"):
            return isinstance(value, float) and any(
                bool(_compare(np.array([value]), prefix, number)[0]) for prefix, number in self.wanted
            )
        if not isinstance(value, str):
            return False
        if self.kind == "date":
            return any(_date_matches(value, *bounds) for bounds in self.wanted)
        return _string_match(value, self.wanted, self.modifier)

    def mask(self, dataset: Dataset, resource_type: str) -> BoolArray:
        values = rendered.values(dataset, self.resource_type, self.param)
        hits = (any(self._matches(v) for v in vs) for vs in values)
        return np.fromiter(hits, dtype=bool, count=len(values))


@dataclass(frozen=True, slots=True)
class LocationChainCriterion:
    """HealthcareService `location.<param>`: the offers whose Location matches (one lieu per offer)."""

    inner: Criterion

    def mask(self, dataset: Dataset, resource_type: str) -> BoolArray:
        return np.asarray(self.inner.mask(dataset, "Location")[dataset.offer_location])


@dataclass(frozen=True, slots=True)
class OrganizationChainCriterion:
    """HealthcareService `organization.<param>:above`: the providing Organization or an ancestor matches."""

    inner: Criterion

    def mask(self, dataset: Dataset, resource_type: str) -> BoolArray:
        orgs = self.inner.mask(dataset, "Organization")
        parent = dataset.org_parent
        has_parent = parent >= 0
        for _ in range(6):  # parents come before children: six passes reach the deepest UE
            orgs = orgs | (has_parent & orgs[np.where(has_parent, parent, 0)])
        return np.asarray(orgs[dataset.offer_provider])


@dataclass(frozen=True, slots=True)
class PractitionerIdentifierCriterion:
    """HealthcareService `practitioner.identifier`: an offer one of whose situations has that professional."""

    tokens: tuple[tuple[str | None, str], ...]

    def mask(self, dataset: Dataset, resource_type: str) -> BoolArray:
        practitioners = _identifier_mask(dataset, "Practitioner", self.tokens)
        roles = practitioners[dataset.role_practitioner]
        out = _empty(dataset, resource_type)
        out[dataset.role_offer[roles]] = True
        return out


@dataclass(frozen=True, slots=True)
class _ZoneCriterion:
    """`intervention-zone`: the ror-territorial-division commune (TRE_R13) of the offer."""

    tokens: tuple[tuple[str | None, str], ...]

    def mask(self, dataset: Dataset, resource_type: str) -> BoolArray:
        wanted = [
            n
            for n, c in enumerate(dataset.lists.communes)
            for system, code in self.tokens
            if system in (None, vocab.TRE_R13_COMMUNE) and code == c.cog
        ]
        return np.isin(dataset.offer_zone, wanted)


def _age(name: str, value: str) -> AgeCriterion:
    match = _QUANTITY.fullmatch(value)
    units = (None, "a")
    if (
        match is None
        or match["unit"] not in units
        or (match["sys"] or vocab.UCUM).rstrip("/").split("://")[-1] != "unitsofmeasure.org"
    ):
        raise SearchError(f"invalid {name} value {value!r} (expected [prefix]number[|unitsofmeasure.org|a])")
    return AgeCriterion(0 if name == "age-range-low" else 1, match["prefix"] or "eq", float(match["n"]))


# ------------------------------------------------------------------------------------------------------
# _filter (FHIR R4 search_filter subset: param op value, and / or / not, parentheses)

_FILTER_TOKEN = re.compile(
    r'\s*(?:(?P<open>\()|(?P<close>\))|"(?P<quoted>(?:[^"\\]|\\.)*)"|(?P<word>[^\s()"]+))'
)
_FILTER_OPS = frozenset({"eq", "ne", "gt", "lt", "ge", "le", "sa", "eb", "co", "sw", "ew"})


@dataclass
class _FilterParser:
    resource_type: str
    tokens: list[tuple[str, str]]  # (kind, text): kind in "(", ")", "q" (quoted), "w" (word)
    pos: int = 0

    def peek(self, offset: int = 0) -> tuple[str, str] | None:
        i = self.pos + offset
        return self.tokens[i] if i < len(self.tokens) else None

    def take(self) -> tuple[str, str]:
        token = self.peek()
        if token is None:
            raise SearchError("_filter ends too early")
        self.pos += 1
        return token

    def keyword(self, word: str, offset: int = 0) -> bool:
        token = self.peek(offset)
        return token is not None and token[0] == "w" and token[1].lower() == word

    def expr(self) -> Criterion:
        parts = [self.term()]
        while self.keyword("or"):
            self.take()
            parts.append(self.term())
        return parts[0] if len(parts) == 1 else AnyOf(tuple(parts))

    def term(self) -> Criterion:
        parts = [self.factor()]
        while self.keyword("and"):
            self.take()
            parts.append(self.factor())
        return parts[0] if len(parts) == 1 else AllOf(tuple(parts))

    def factor(self) -> Criterion:
        if self.keyword("not"):
            self.take()
            return Not(self.factor())
        kind, _ = self.peek() or ("", "")
        if kind == "(":
            self.take()
            inner = self.expr()
            closing = self.peek()
            if closing is None or closing[0] != ")":
                raise SearchError("_filter: unbalanced parentheses")
            self.take()
            return inner
        return self.comparison()

    def comparison(self) -> Criterion:
        kind, param = self.take()
        if kind != "w":
            raise SearchError(f"_filter: expected a parameter name, got {param!r}")
        kind, op = self.take()
        if kind != "w" or op.lower() not in _FILTER_OPS:
            raise SearchError(f"_filter: unsupported operator {op!r} after {param!r}")
        values = [self.value()]
        # `(location.address-postalcode eq "60000" or "76620")`: a bare value after `or` repeats the
        # comparison (the ANS query examples, ror-fhir-api.md §5 (D)).
        while self.keyword("or") and self.peek(1) is not None and not self._starts_comparison(1):
            self.take()
            values.append(self.value())
        return (
            AnyOf(tuple(self.leaf(param, op.lower(), v) for v in values))
            if len(values) > 1
            else self.leaf(param, op.lower(), values[0])
        )

    def _starts_comparison(self, offset: int) -> bool:
        first, second = self.peek(offset), self.peek(offset + 1)
        if first is None or first[0] != "w":
            return first is None or first[0] != "q"  # `(` starts an expression; a quoted text is a value
        return second is not None and second[0] == "w" and second[1].lower() in _FILTER_OPS

    def value(self) -> str:
        kind, text = self.take()
        if kind not in ("q", "w"):
            raise SearchError(f"_filter: expected a value, got {text!r}")
        return re.sub(r'\\(["\\])', r"\1", text) if kind == "q" else text

    def leaf(self, param: str, op: str, value: str) -> Criterion:
        name, _, modifier = param.partition(":")
        spec = _spec(self.resource_type, name, modifier, strict=True)
        assert spec is not None  # strict: unknown names raise
        if name == "_filter":
            raise SearchError("_filter cannot nest _filter")
        if spec.type in ("date", "quantity"):
            if op in ("co", "sw", "ew"):
                raise SearchError(f"_filter: operator {op} does not apply to {name}")
            return _criterion(self.resource_type, name, modifier, op + value)
        if spec.type == "string":
            if op == "ew":
                raise SearchError("_filter: operator ew is not supported")
            modifier = {"co": "contains", "eq": "exact" if name == "name" else ""}.get(op, modifier)
            escaped = value.replace("\\", "\\\\").replace(",", "\\,")
            criterion = _criterion(self.resource_type, name, modifier, escaped)
            return Not(criterion) if op == "ne" else criterion
        if op not in ("eq", "ne"):
            raise SearchError(f"_filter: operator {op} does not apply to {name} (token: eq, ne)")
        escaped = value.replace("\\", "\\\\").replace(",", "\\,")
        criterion = _criterion(self.resource_type, name, modifier, escaped)
        return Not(criterion) if op == "ne" else criterion


def parse_filter(resource_type: str, text: str) -> Criterion:
    """A `_filter` expression → a criterion tree. Supported: every search parameter of the type, operators
    eq ne gt lt ge le sa eb (dates, quantities), co sw (strings), and / or / not, parentheses."""
    tokens: list[tuple[str, str]] = []
    pos = 0
    text = text.strip()
    while pos < len(text):
        match = _FILTER_TOKEN.match(text, pos)
        if match is None or match.end() == pos:
            raise SearchError(f"_filter: cannot read {text[pos:]!r}")
        pos = match.end()
        if match["open"]:
            tokens.append(("(", "("))
        elif match["close"]:
            tokens.append((")", ")"))
        elif match["quoted"] is not None:
            tokens.append(("q", match["quoted"]))
        elif match["word"]:
            tokens.append(("w", match["word"]))
    if not tokens:
        raise SearchError("_filter is empty")
    parser = _FilterParser(resource_type, tokens)
    criterion = parser.expr()
    if parser.peek() is not None:
        raise SearchError(f"_filter: unexpected {parser.peek()[1]!r}")  # type: ignore[index]  # checked just above
    return criterion


# ------------------------------------------------------------------------------------------------------
# Evaluation


def evaluate(dataset: Dataset, request: SearchRequest) -> Sequence[str]:
    """Every id matching every criterion, in result order (id order, or `_sort`); never truncated.

    The ids are made into strings only when read: a search matching a million offers holds 8 bytes each.
    """
    rtype = request.resource_type
    mask = AllOf(request.criteria).mask(dataset, rtype) if request.criteria else None
    indexes = np.arange(dataset.count(rtype), dtype=np.int64) if mask is None else np.flatnonzero(mask)
    if request.sort in ("_lastUpdated", "-_lastUpdated"):
        # The type's whole order is sorted once and cached; a search keeps its matches in that order (O(n)).
        order = dataset.derived(f"order{request.sort}:{rtype}")
        indexes = order if mask is None else order[mask[order]]
    elif request.sort == "-_id":
        indexes = indexes[::-1]
    return IdSequence(ID_BASE[rtype], indexes)


Key = tuple[str, str]  # (resource type, id)


def resolve_includes(dataset: Dataset, matches: Sequence[Key], specs: Sequence[IncludeSpec]) -> list[Key]:
    """Resources to add to a page for its matches, each once and never a match again.

    Round one applies every `_revinclude` to the matches, then every `_include` to the matches and the
    revincluded resources; `:iterate` specs then run over each newly added resource until nothing is new.
    [INFER] Including from revincluded resources in round one is what the ANS "offre complète" query
    (`_revinclude=PractitionerRole:service&_include=PractitionerRole:practitioner`, ror-fhir-api.md §5)
    relies on to return the practitioners; plain HAPI would need `_include:iterate` for it.
    """
    seen: set[Key] = set(matches)
    added: list[Key] = []

    def apply(spec: IncludeSpec, sources: Sequence[Key]) -> list[Key]:
        new: list[Key] = []
        for rtype, rid in sources:
            if spec.reverse:
                if spec.target_type is not None and rtype != spec.target_type:
                    continue
                found = [
                    (spec.source_type, s)
                    for s in dataset.referrers(spec.source_type, spec.param, f"{rtype}/{rid}")
                ]
            else:
                index = dataset.index_of(rtype, rid) if rtype == spec.source_type else None
                if index is None:
                    continue
                found = [
                    (ttype, dataset.id_of(ttype, t))
                    for ttype, t in dataset.forward(spec.source_type, spec.param, index)
                    if spec.target_type is None or ttype == spec.target_type
                ]
            for key in found:
                if key not in seen:
                    seen.add(key)
                    new.append(key)
        return new

    revincluded: list[Key] = []
    for spec in specs:
        if spec.reverse:
            revincluded += apply(spec, matches)
    frontier = list(revincluded)
    for spec in specs:
        if not spec.reverse:
            frontier += apply(spec, [*matches, *revincluded])
    added += frontier
    iterating = [spec for spec in specs if spec.iterate]
    while frontier and iterating:
        new: list[Key] = []
        for spec in iterating:
            new += apply(spec, frontier)
        added += new
        frontier = new
    return added


def page_resources(dataset: Dataset, keys: Sequence[Key]) -> list[dict[str, Any]]:
    return [r for key in keys if (r := dataset.get(*key)) is not None]
