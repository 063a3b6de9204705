"""FHIR search evaluation over the simulator's dataset: parameter parsing, matching, _include/_revinclude.

Part of simulator/. Kept apart from HTTP (app.py) and from storage (dataset.py): criteria ask the dataset's
indexes for candidates where one exists and filter the rest with predicates.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Protocol
from zoneinfo import ZoneInfo

from bridge.model import Resource
from bridge.simulator.dataset import REFERENCE_PARAMS, RESOURCE_TYPES, Dataset, id_sort_key, references


class SearchError(ValueError):
    """A search the server refuses: HTTP 400 with an OperationOutcome naming the parameter."""

    def __init__(self, message: str, *, code: str = "invalid") -> None:
        super().__init__(message)
        self.code = code  # OperationOutcome.issue.code


@dataclass(frozen=True, slots=True)
class ParamSpec:
    name: str
    type: str  # FHIR search parameter type, for the CapabilityStatement
    documentation: str
    modifiers: frozenset[str] = frozenset()  # accepted modifiers ("" = none)


_COMMON = (
    ParamSpec("_id", "token", "Logical id; comma = OR.", frozenset({""})),
    ParamSpec(
        "identifier", "token", "`system|value`, `value`, `|value` or `system|`; comma = OR.", frozenset({""})
    ),
    ParamSpec("_tag", "token", "meta.tag `system|code` or `code` (TRE_R30 source region).", frozenset({""})),
    ParamSpec(
        "_lastUpdated",
        "date",
        "meta.lastUpdated with prefixes eq ne gt lt ge le sa eb at any precision; repeat = AND.",
        frozenset({""}),
    ),
)

# What this cut supports, per resource type (ror-fhir-api.md §2.1 names; the CapabilityStatement lists it).
SEARCH_PARAMS: dict[str, tuple[ParamSpec, ...]] = dict.fromkeys(RESOURCE_TYPES, _COMMON)
SEARCH_PARAMS["HealthcareService"] = (
    *_COMMON,
    ParamSpec(
        "organization.identifier",
        "token",
        "Identifier of the providing Organization; with `:above`, of that Organization or any ancestor "
        "through partOf (the whole subtree of an EJ, EG or internal organisation).",
        frozenset({"", "above"}),
    ),
)

# Result parameters (never filters): accepted on every type.
RESULT_PARAMS = frozenset({"_include", "_revinclude", "_count"})
INCLUDE_MODIFIERS = frozenset({"", "iterate", "recurse"})  # `recurse` is the R3 spelling of `iterate`
IGNORED_PARAMS = frozenset({"_format", "_pretty"})


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
    def candidates(self, dataset: Dataset, resource_type: str) -> Collection[str] | None:
        """Matching ids from an index, or None when the criterion can only filter."""

    def matches(self, resource: Resource) -> bool:
        """Whether a resource matches (called on candidates when `candidates` gave None)."""


@dataclass(frozen=True, slots=True)
class SearchRequest:
    resource_type: str
    criteria: tuple[Criterion, ...]
    includes: tuple[IncludeSpec, ...]
    count: int | None


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


# ------------------------------------------------------------------------------------------------------
# Criteria


@dataclass(frozen=True, slots=True)
class IdCriterion:
    ids: tuple[str, ...]

    def candidates(self, dataset: Dataset, resource_type: str) -> Collection[str]:
        return [i for i in self.ids if dataset.get(resource_type, i) is not None]

    def matches(self, resource: Resource) -> bool:
        return resource.get("id") in self.ids


def _identifier_ids(
    dataset: Dataset, resource_type: str, tokens: Sequence[tuple[str | None, str]]
) -> set[str]:
    found: set[str] = set()
    for system, value in tokens:
        if value == "" and system:
            found.update(dataset.ids_by_identifier_system(resource_type, system))
        else:
            found.update(dataset.ids_by_identifier(resource_type, system, value))
    return found


def _has_identifier(resource: Resource, tokens: Sequence[tuple[str | None, str]]) -> bool:
    for ident in resource.get("identifier", []):
        for system, value in tokens:
            system_ok = system is None or ident.get("system", "") == system
            value_ok = (value == "" and bool(system)) or ident.get("value") == value
            if system_ok and value_ok:
                return True
    return False


@dataclass(frozen=True, slots=True)
class IdentifierCriterion:
    tokens: tuple[tuple[str | None, str], ...]

    def candidates(self, dataset: Dataset, resource_type: str) -> Collection[str]:
        return _identifier_ids(dataset, resource_type, self.tokens)

    def matches(self, resource: Resource) -> bool:
        return _has_identifier(resource, self.tokens)


@dataclass(frozen=True, slots=True)
class OrganizationIdentifierCriterion:
    """HealthcareService `organization.identifier[:above]` (prod CapabilityStatement, ror-fhir-api.md §2.1).

    Without `:above`: offers whose providedBy Organization has the identifier. With `:above`: offers whose
    providedBy Organization has it or has an ancestor (partOf) with it — i.e. every offer of the subtree
    of the identified EJ, EG or internal organisation (ror-fhir-api.md §5 (C)).
    """

    tokens: tuple[tuple[str | None, str], ...]
    above: bool

    def organizations(self, dataset: Dataset) -> list[str]:
        orgs = sorted(_identifier_ids(dataset, "Organization", self.tokens), key=id_sort_key)
        if not self.above:
            return orgs
        subtree: dict[str, None] = {}
        for org in orgs:
            subtree.update(dict.fromkeys(dataset.subtree(org)))
        return list(subtree)

    def candidates(self, dataset: Dataset, resource_type: str) -> Collection[str]:
        found: set[str] = set()
        for org in self.organizations(dataset):
            found.update(dataset.referrers("HealthcareService", "organization", f"Organization/{org}"))
        return found

    def matches(self, resource: Resource) -> bool:  # pragma: no cover - candidates() always answers
        raise NotImplementedError


@dataclass(frozen=True, slots=True)
class TagCriterion:
    tokens: tuple[tuple[str | None, str], ...]

    def candidates(self, dataset: Dataset, resource_type: str) -> None:
        return None

    def matches(self, resource: Resource) -> bool:
        for tag in resource.get("meta", {}).get("tag", []):
            for system, code in self.tokens:
                if (system is None or tag.get("system", "") == system) and tag.get("code") == code:
                    return True
        return False


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


@dataclass(frozen=True, slots=True)
class LastUpdatedCriterion:
    """`_lastUpdated` against the instant meta.lastUpdated (FHIR R4 search §3.1.1.4.2 prefixes)."""

    prefix: str
    start: datetime
    end: datetime

    def candidates(self, dataset: Dataset, resource_type: str) -> None:
        return None

    def matches(self, resource: Resource) -> bool:
        value = resource.get("meta", {}).get("lastUpdated")
        if not isinstance(value, str):
            return False
        instant = datetime.fromisoformat(value)
        tests: dict[str, Callable[[], bool]] = {
            "eq": lambda: self.start <= instant < self.end,
            "ne": lambda: not self.start <= instant < self.end,
            "gt": lambda: instant >= self.end,
            "sa": lambda: instant >= self.end,
            "lt": lambda: instant < self.start,
            "eb": lambda: instant < self.start,
            "ge": lambda: instant >= self.start,
            "le": lambda: instant < self.end,
        }
        return tests[self.prefix]()


# ------------------------------------------------------------------------------------------------------
# Parsing


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
    specs = {p.name: p for p in SEARCH_PARAMS[resource_type]}
    criteria: list[Criterion] = []
    includes: list[IncludeSpec] = []
    count: int | None = None
    for full_name, value in params:
        name, _, modifier = full_name.partition(":")
        if name in IGNORED_PARAMS:
            continue
        if name in ("_include", "_revinclude"):
            includes.append(_parse_include(name, modifier, value))
            continue
        if name == "_count":
            if modifier or not value.isdigit():
                raise SearchError(f"invalid _count value {value!r} (expected an integer >= 0)")
            count = int(value)
            continue
        spec = specs.get(name)
        if spec is None:
            if strict:
                raise SearchError(
                    f'Unknown search parameter "{full_name}" for resource type "{resource_type}". '
                    f"Valid search parameters for this search are: {supported_names(resource_type)}",
                    code="not-supported",
                )
            continue
        if modifier not in spec.modifiers:
            if strict:
                raise SearchError(
                    f'Unsupported modifier ":{modifier}" on search parameter "{name}"', code="not-supported"
                )
            continue
        criteria.append(_criterion(name, modifier, value))
    return SearchRequest(resource_type, tuple(criteria), tuple(dict.fromkeys(includes)), count)


def _criterion(name: str, modifier: str, value: str) -> Criterion:
    if name == "_id":
        return IdCriterion(tuple(_unescape(v) for v in _or_values(name, value)))
    if name == "identifier":
        return IdentifierCriterion(tuple(parse_token(v) for v in _or_values(name, value)))
    if name == "organization.identifier":
        tokens = tuple(parse_token(v) for v in _or_values(name, value))
        return OrganizationIdentifierCriterion(tokens, above=modifier == "above")
    if name == "_tag":
        return TagCriterion(tuple(parse_token(v) for v in _or_values(name, value)))
    if name == "_lastUpdated":
        if "," in value:
            raise SearchError("_lastUpdated takes one value per parameter (repeat it for a range)")
        return LastUpdatedCriterion(*parse_date_range(value))
    raise SearchError(f"unsupported search parameter {name!r}", code="not-supported")  # pragma: no cover


# ------------------------------------------------------------------------------------------------------
# Evaluation


def evaluate(dataset: Dataset, request: SearchRequest) -> list[str]:
    """The ids matching every criterion, in the server's stable order (numeric id order)."""
    candidates: set[str] | None = None
    filters: list[Criterion] = []
    for criterion in request.criteria:
        found = criterion.candidates(dataset, request.resource_type)
        if found is None:
            filters.append(criterion)
        else:
            candidates = set(found) if candidates is None else candidates & set(found)
    ids = dataset.ids(request.resource_type) if candidates is None else sorted(candidates, key=id_sort_key)
    by_id = dataset.resources.get(request.resource_type, {})
    return [rid for rid in ids if all(f.matches(by_id[rid]) for f in filters)]


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
                resource = dataset.get(rtype, rid) if rtype == spec.source_type else None
                if resource is None:
                    continue
                found = []
                for ref in references(resource, REFERENCE_PARAMS[(spec.source_type, spec.param)]):
                    ttype, _, tid = ref.partition("/")
                    if (spec.target_type is None or ttype == spec.target_type) and dataset.get(ttype, tid):
                        found.append((ttype, tid))
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
