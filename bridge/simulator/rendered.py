"""Search parameters answered from the rendered resources (simulator/): values the arrays do not keep.

The IG's extension SearchParameters (equipment, residential and supported capacity of a lieu, closing type or
price of an organisation, …) read elements drawn per resource when it is built; their values are read once
per dataset from every built resource of the type (a lazy index), then each search is a lookup over it.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from bridge.simulator import vocab
from bridge.simulator.dataset import Dataset

Token = tuple[str | None, str]  # (system, code); system None for a bare `code`
Value = Token | float | str  # a token, a number / quantity value (float), a dateTime text


def _ext(node: Mapping[str, Any], url: str) -> Iterator[Mapping[str, Any]]:
    for ext in node.get("extension") or ():
        if isinstance(ext, Mapping) and ext.get("url") == url:
            yield ext


def _tokens(value: Any) -> list[Token]:
    """The tokens of a CodeableConcept, a Coding, a code or a boolean (as `true` / `false`)."""
    if isinstance(value, bool):
        return [(None, "true" if value else "false")]
    if isinstance(value, str):
        return [(None, value)]
    if not isinstance(value, Mapping):
        return []
    codings = value.get("coding") if "coding" in value else [value]
    return [
        (c.get("system"), str(c["code"])) for c in codings or () if isinstance(c, Mapping) and "code" in c
    ]


def _typed(ext: Mapping[str, Any]) -> Any:
    return next((v for k, v in ext.items() if k.startswith("value")), None)


@dataclass(frozen=True, slots=True)
class Path:
    """Extension URLs from the resource down to a value (the IG SearchParameter's expression)."""

    urls: tuple[str, ...]

    def values(self, resource: Mapping[str, Any]) -> list[Any]:
        nodes: list[Mapping[str, Any]] = [resource]
        for url in self.urls:
            nodes = [e for n in nodes for e in _ext(n, url)]
        return [v for n in nodes if (v := _typed(n)) is not None]


def _capacity(part: str) -> Path:
    return Path((vocab.EXT_SUPPORTED_CAPACITY, part))


_EQUIPMENT_LIMIT = (vocab.EXT_EQUIPMENT, vocab.EXT_EQUIPMENT_LIMIT)

# (resource type, parameter) → (FHIR search type, how its values are read). The extension paths are the IG
# SearchParameters' (ror-fhir-api.md §2.3), with the equipment limit nested in the equipment as the
# simulator writes it (dataset.py _equipment).
_ORG_PRICE = f"{vocab.IG_SD}/ror-organization-price"
_READERS: dict[tuple[str, str], tuple[str, Callable[[Mapping[str, Any]], list[Any]]]] = {
    ("Location", "type"): ("token", lambda r: list(r.get("type") or ())),
    ("Location", "status"): ("token", lambda r: [r["status"]] if "status" in r else []),
    ("Location", "capacity-type"): ("token", _capacity("capacityType").values),
    ("Location", "temporality-capacity"): ("token", _capacity("temporalityCapacity").values),
    ("Location", "additional-bed-type"): ("token", _capacity("additionalBedType").values),
    ("Location", "capacity-closing-type"): ("token", _capacity("capacityClosingType").values),
    ("Location", "crisis-type"): ("token", _capacity("crisisType").values),
    ("Location", "gender-capacity-available"): ("token", _capacity("genderCapacityAvailable").values),
    ("Location", "temporary-assignement"): ("token", _capacity("temporaryAssignement").values),
    ("Location", "capacity-update-date"): ("date", _capacity("capacityUpdateDate").values),
    ("Location", "equipment-type"): ("token", Path((vocab.EXT_EQUIPMENT, "equipmentType")).values),
    ("Location", "equipment-feature"): ("token", Path((*_EQUIPMENT_LIMIT, "equipmentFeature")).values),
    ("Location", "limit-value"): ("quantity", Path((*_EQUIPMENT_LIMIT, "limitValue")).values),
    ("Location", "residential-type"): (
        "token",
        Path((vocab.EXT_RESIDENTIAL_CAPACITY, "residentialType")).values,
    ),
    ("Location", "residential-number"): (
        "number",
        Path((vocab.EXT_RESIDENTIAL_CAPACITY, "residentialNumber")).values,
    ),
    ("Organization", "closing-type"): (
        "token",
        Path((f"{vocab.IG_SD}/ror-organization-closing-type",)).values,
    ),
    # A string in the production CapabilityStatement, a boolean extension: `true` / `false`.
    ("Organization", "drop-zone"): (
        "token",
        Path((f"{vocab.IG_SD}/ror-organization-drop-zone",)).values,
    ),
    ("Organization", "period-end"): (
        "date",
        lambda r: [
            p["end"]
            for p in Path((vocab.EXT_ORGANIZATION_PERIOD,)).values(r)
            if isinstance(p, Mapping) and "end" in p
        ],
    ),
    ("Organization", "type"): ("token", lambda r: list(r.get("type") or ())),
    ("Organization", "price-amount-value"): ("number", Path((_ORG_PRICE, "amountValue")).values),
    ("Organization", "price-dependency-level"): ("token", Path((_ORG_PRICE, "dependencyLevel")).values),
    ("Organization", "price-residential-type"): ("token", Path((_ORG_PRICE, "residentialType")).values),
    ("Organization", "price-type"): ("token", Path((_ORG_PRICE, "priceType")).values),
    ("Organization", "price-unit"): ("token", Path((_ORG_PRICE, "unitPrice")).values),
    ("Organization", "price-validity-start-date"): ("date", Path((_ORG_PRICE, "validityStartDate")).values),
    ("Organization", "price-welcome-type"): ("token", Path((_ORG_PRICE, "welcomeType")).values),
    ("Organization", "special-price"): ("token", Path((_ORG_PRICE, "specialPrice")).values),
    ("HealthcareService", "psychiatric-sector"): (
        "string",
        Path((f"{vocab.IG_SD}/ror-healthcareservice-psychiatric-sector",)).values,
    ),
    ("HealthcareService", "specific-competence"): (
        "token",
        Path((f"{vocab.IG_SD}/ror-healthcareservice-competence-ressource", "specificCompetence")).values,
    ),
    ("HealthcareService", "notavailable-closing-reopeningdate"): (
        "date",
        lambda r: [
            bound
            for n in r.get("notAvailable") or ()
            if isinstance(n, Mapping) and n.get("id") == "closingReopeningDate"
            for bound in ((n.get("during") or {}).get("start"), (n.get("during") or {}).get("end"))
            if isinstance(bound, str)
        ],
    ),
}

PARAMS: Mapping[tuple[str, str], str] = {key: kind for key, (kind, _) in _READERS.items()}


def _normalise(kind: str, raw: Any) -> list[Value]:
    if kind == "token":
        return list(_tokens(raw))
    if kind in ("number", "quantity"):
        number = raw.get("value") if isinstance(raw, Mapping) else raw
        return [float(number)] if isinstance(number, int | float) and not isinstance(number, bool) else []
    return [raw] if isinstance(raw, str) else []


_INDEX: weakref.WeakKeyDictionary[Dataset, dict[tuple[str, str], list[list[Value]]]] = (
    weakref.WeakKeyDictionary()
)


def values(dataset: Dataset, resource_type: str, param: str) -> list[list[Value]]:
    """Every resource's values of the parameter, by index; built from the rendered resources on first use."""
    per_dataset = _INDEX.setdefault(dataset, {})
    found = per_dataset.get((resource_type, param))
    if found is None:
        kind, read = _READERS[(resource_type, param)]
        found = []
        for i in range(dataset.count(resource_type)):
            resource = dataset.build(resource_type, i)
            found.append([v for raw in read(resource) for v in _normalise(kind, raw)])
        per_dataset[(resource_type, param)] = found
    return found
