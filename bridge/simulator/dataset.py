"""The simulator's deterministic synthetic ROR dataset, generated on demand from compact arrays (simulator/).

`generate_dataset(scale, seed)` draws the national structure (EJ → EG → pôle / service / UF / UE → offers,
with Locations, PractitionerRoles and Practitioners) into numpy arrays of a few bytes per entity; each FHIR
resource is built only when asked, by a pure function of seed, type and index (docs/ror-fhir-api.md §3).
"""

from __future__ import annotations

import random
import unicodedata
from array import array
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any, Literal, overload
from zoneinfo import ZoneInfo

import numpy as np
import numpy.typing as npt

from bridge.model import Resource
from bridge.simulator import vocab
from bridge.simulator.vocab import CodeLists, Equipment, code_lists

RESOURCE_TYPES = ("Organization", "HealthcareService", "Location", "PractitionerRole", "Practitioner")

# Reference search parameters: (source type, parameter) → element holding the reference(s). They back
# `_include`, `_revinclude` and the reverse-reference lookups (FHIR R4 SearchParameter expressions).
REFERENCE_PARAMS: Mapping[tuple[str, str], str] = {
    ("HealthcareService", "organization"): "providedBy",
    ("HealthcareService", "location"): "location",
    ("Organization", "partof"): "partOf",
    ("Location", "organization"): "managingOrganization",
    ("PractitionerRole", "practitioner"): "practitioner",
    ("PractitionerRole", "service"): "healthcareService",
    ("PractitionerRole", "organization"): "organization",
}

IntArray = npt.NDArray[np.int64]
BoolArray = npt.NDArray[np.bool_]


def references(resource: Resource, element: str) -> list[str]:
    """The `Type/id` references an element holds (single Reference or list of them)."""
    value = resource.get(element)
    items = value if isinstance(value, list) else [value] if value is not None else []
    return [
        ref for item in items if isinstance(item, Mapping) and isinstance(ref := item.get("reference"), str)
    ]


class OrgKind(StrEnum):
    """Where an Organization sits in the ROR structure (ror-fhir-api.md §3.1, TRE_R207 for OIs)."""

    EJ = "EJ"
    EG = "EG"
    POLE = "1"
    SERVICE = "2"
    UF = "3"
    UE = "4"


# Kind codes of the `org_kind` array, in this order.
KINDS = (OrgKind.EJ, OrgKind.EG, OrgKind.POLE, OrgKind.SERVICE, OrgKind.UF, OrgKind.UE)
K_EJ, K_EG, K_POLE, K_SERVICE, K_UF, K_UE = range(6)


def id_sort_key(resource_id: str) -> tuple[int, str]:
    """Numeric ids (as HAPI hands out) in numeric order; any other id after, in text order."""
    return (len(resource_id), resource_id)


# Ids are numeric like HAPI's: `base + index`, one block of ten million per type, so an id names its index
# by arithmetic and every type's ids sort in index order (same length within a type).
ID_BASE = {rtype: 10_000_000 * (n + 1) for n, rtype in enumerate(RESOURCE_TYPES)}
ID_SPAN = 10_000_000

# ------------------------------------------------------------------------------------------------------
# Fixed vocabulary and time frame

PARIS = ZoneInfo("Europe/Paris")
# A fixed epoch, never the wall clock: same seed and scale give byte-identical resources.
EPOCH = datetime(2019, 1, 1, tzinfo=PARIS)
# Arithmetic on instants goes through UTC: adding seconds to a Europe/Paris datetime is wall-clock
# arithmetic in Python (an hour off across DST changes), so stamps are UTC instants shown in Paris time.
EPOCH_UTC = EPOCH.astimezone(UTC)


def instant(seconds: int) -> datetime:
    """The Paris-time instant `seconds` after EPOCH."""
    return (EPOCH_UTC + timedelta(seconds=seconds)).astimezone(PARIS)


SPAN_S = 7 * 365 * 24 * 3600  # meta.lastUpdated spread over 2019-2025
CREATION_BACK_S = 4 * 365 * 24 * 3600
# Recent bursts: a share of every type was touched on a few days of the last months of the span (the mass
# updates a regional migration or a national campaign produces), so `_lastUpdated=ge…` deltas are uneven.
BURST_SHARE = 0.15
BURST_DAYS = 6
BURST_WINDOW_S = 120 * 24 * 3600

# Synthetic, neutral place words (not real establishment names) and the two address cities of the IG
# examples (ROROrganizationExempleEJ/EG.fsh, RORLocationExemple.fsh).
_WORDS = (
    "Les Tilleuls",
    "Les Cèdres",
    "Le Bocage",
    "Les Érables",
    "La Roseraie",
    "Le Val Fleuri",
    "Les Charmes",
    "Bel Air",
    "Les Peupliers",
    "Le Parc",
    "Les Sources",
    "La Clairière",
)
# Contacts of EJ / EG by confidentiality level 1, 2, 3: TRE_R287 nature (code, label) and TRE_R283 labels.
_CONTACT_NATURES = (("06", "Standard"), ("03", "Admission"), ("04", "Médical"))
_CONFIDENTIALITY = ("Accès libre", "Accès restreint", "Accès très restreint")
_STREET_TYPES = ("rue", "avenue", "boulevard", "allée", "place")
_STREET_NAMES = (
    "des Tilleuls",
    "du Parc",
    "des Écoles",
    "de la Gare",
    "des Lilas",
    "du Moulin",
    "des Vignes",
)
_CITIES = (("VERSAILLES", "78000"), ("BOIS-COLOMBES", "92270"))
_FAMILY = ("Martin", "Bernard", "Dubois", "Thomas", "Robert", "Richard", "Petit", "Durand", "Leroy", "Moreau")
_GIVEN = (
    ("Camille", "female"),
    ("Louise", "female"),
    ("Claire", "female"),
    ("Hugo", "male"),
    ("Paul", "male"),
    ("Lucas", "male"),
    ("Emma", "female"),
    ("Jules", "male"),
)
AGE_RANGES = ((0, 120), (18, 120), (0, 17), (0, 5), (18, 90), (65, 120), (16, 120))
# Depth patterns of the internal organisation chain between an EG and a UE (TRE_R207 kinds):
# UE directly under the EG, under a UF, under a service, under service/UF, pôle/service, pôle/service/UF.
_CHAINS: tuple[tuple[int, ...], ...] = (
    (),
    (K_UF,),
    (K_SERVICE,),
    (K_SERVICE, K_UF),
    (K_POLE, K_SERVICE),
    (K_POLE, K_SERVICE, K_UF),
)
_OI_LABEL = {K_POLE: "Pôle", K_SERVICE: "Service", K_UF: "UF", K_UE: "UE"}
# Opening hours (availableTime): weekdays, or every day (RORHealthcareService.fsh availableTime).
_HOURS = (
    (("mon", "tue", "wed", "thu", "fri"), "08:00:00", "18:00:00"),
    (("mon", "tue", "wed", "thu", "fri", "sat", "sun"), "00:00:00", "23:59:59"),
)
# Équipements spécifiques (ror-location-equipment) of a location: the share of locations holding any, by the
# leading champ d'activité (TRE_R227) of the offers given there, mostly MCO sites [INFER]; one to three
# equipments are drawn among the TRE_R212 codes placed in that champ (data/tre_r212_equipement.csv).
EQUIPMENT_SHARE = {"01": 0.5, "02": 0.25, "03": 0.1, "04": 0.08, "05": 0.03}
# Capacité d'habitation (ror-location-residential-capacity) on the locations of médico-social offers
# (TRE_R227 04) and of hébergement offers (TRE_R213 46 "Hébergement (accueil jour et nuit)") [INFER].
RESIDENTIAL_SHARE = {"champ:04": 0.6, "mode:46": 0.8}


def fold_text(text: str) -> str:
    """Case- and accent-insensitive form for string search (FHIR R4 search §3.1.1.4.7; HAPI normalises)."""
    return "".join(c for c in unicodedata.normalize("NFD", text) if not unicodedata.combining(c)).casefold()


def luhn_key(digits: str) -> str:
    """The Luhn check digit for `digits` (FINESS, SIREN, SIRET and RPPS numbers all end with one)."""
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = int(ch) * (2 if i % 2 == 0 else 1)
        total += d - 9 if d > 9 else d
    return str((10 - total % 10) % 10)


@dataclass(frozen=True, slots=True)
class _Permutation:
    """x → (a·x + b) mod m, a bijection of [0, m) (a prime to m): serials that look random yet invert."""

    a: int
    b: int
    m: int

    def __call__(self, x: int) -> int:
        return (self.a * x + self.b) % self.m

    def inverse(self, y: int) -> int:
        return ((y - self.b) * pow(self.a, -1, self.m)) % self.m


def _permutation(seed: int, salt: int, m: int) -> _Permutation:
    rng = random.Random(seed * 1_000_003 + salt)
    a = rng.randrange(1, m)
    while a % 2 == 0 or a % 5 == 0:  # prime to every m = 10^k
        a = rng.randrange(1, m)
    return _Permutation(a, rng.randrange(m), m)


# ------------------------------------------------------------------------------------------------------
# Lazy views (the old eager dataset's mapping interface, built on demand)


class IdSequence(Sequence[str]):
    """Ids of one type for an array of indexes, made into strings only when read."""

    def __init__(self, base: int, indexes: IntArray) -> None:
        self.base = base
        self.indexes = indexes

    def __len__(self) -> int:
        return len(self.indexes)

    @overload
    def __getitem__(self, i: int) -> str: ...
    @overload
    def __getitem__(self, i: slice) -> list[str]: ...
    def __getitem__(self, i: int | slice) -> str | list[str]:
        if isinstance(i, slice):
            return [str(self.base + int(x)) for x in self.indexes[i]]
        return str(self.base + int(self.indexes[i]))

    def __iter__(self) -> Iterator[str]:
        base = self.base
        for x in self.indexes.tolist():
            yield str(base + x)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Sequence) and list(self) == list(other)

    __hash__ = None  # type: ignore[assignment]  # compared by content, like a list: not hashable


class _TypeView(Mapping[str, dict[str, Any]]):
    """`dataset.resources[type]`: id → resource, built on each access."""

    def __init__(self, dataset: Dataset, rtype: str) -> None:
        self.dataset = dataset
        self.rtype = rtype

    def __getitem__(self, rid: str) -> dict[str, Any]:
        resource = self.dataset.get(self.rtype, rid)
        if resource is None:
            raise KeyError(rid)
        return resource

    def __iter__(self) -> Iterator[str]:
        return iter(self.dataset.ids(self.rtype))

    def __len__(self) -> int:
        return self.dataset.count(self.rtype)

    def __contains__(self, rid: object) -> bool:
        return isinstance(rid, str) and self.dataset.index_of(self.rtype, rid) is not None


class _OrgView(Mapping[str, Any]):
    """`dataset.kind` / `dataset.parent`: Organization id → kind or parent id, from the arrays."""

    def __init__(self, dataset: Dataset, parent: bool) -> None:
        self.dataset = dataset
        self.parent = parent

    def __getitem__(self, rid: str) -> Any:
        i = self.dataset.index_of("Organization", rid)
        if i is None:
            raise KeyError(rid)
        if not self.parent:
            return KINDS[int(self.dataset.org_kind[i])]
        p = int(self.dataset.org_parent[i])
        if p < 0:
            raise KeyError(rid)
        return self.dataset.org_id(p)

    def __iter__(self) -> Iterator[str]:
        ids = self.dataset.ids("Organization")
        if not self.parent:
            return iter(ids)
        return (rid for rid, p in zip(ids, self.dataset.org_parent.tolist(), strict=True) if p >= 0)

    def __len__(self) -> int:
        n = self.dataset.count("Organization")
        return int(np.count_nonzero(self.dataset.org_parent >= 0)) if self.parent else n


# ------------------------------------------------------------------------------------------------------
# The dataset


class Dataset:
    """The arrays of one generated dataset and the on-demand resource builders. Read-only once built.

    Organizations are numbered in depth-first order, so every subtree is the index range
    `[i, org_end[i])`; offers, their locations and their roles follow the same order, so the offers of a
    subtree are a contiguous range of `offer_provider` (sorted), found by binary search.
    """

    def __init__(
        self, scale: int, seed: int, lists: CodeLists, arrays: Mapping[str, npt.NDArray[Any]]
    ) -> None:
        self.scale = scale
        self.seed = seed
        self.lists = lists
        a = arrays
        self.org_parent: npt.NDArray[np.int32] = a["org_parent"]
        self.org_kind: npt.NDArray[np.int8] = a["org_kind"]
        self.org_region: npt.NDArray[np.int8] = a["org_region"]
        self.org_end: npt.NDArray[np.int32] = a["org_end"]
        self.org_ordinal: npt.NDArray[np.int32] = a["org_ordinal"]
        self.org_serial: npt.NDArray[np.int32] = a["org_serial"]  # EJ/EG structure serial, -1 for OIs
        self.struct_org: npt.NDArray[np.int32] = a["struct_org"]  # structure serial → org index
        self.offer_provider: npt.NDArray[np.int32] = a["offer_provider"]
        self.offer_location: npt.NDArray[np.int32] = a["offer_location"]
        self.offer_champ: npt.NDArray[np.int16] = a["offer_champ"]
        self.offer_activity: npt.NDArray[np.int16] = a["offer_activity"]
        self.offer_mode: npt.NDArray[np.int16] = a["offer_mode"]
        self.offer_act: npt.NDArray[np.int16] = a["offer_act"]  # -1: no specific act
        self.offer_modality: npt.NDArray[np.int16] = a["offer_modality"]  # -1: none
        self.offer_speciality: npt.NDArray[np.int16] = a["offer_speciality"]  # -1: none
        self.offer_category: npt.NDArray[np.int16] = a["offer_category"]  # -1: none
        self.offer_age: npt.NDArray[np.int8] = a["offer_age"]  # index into AGE_RANGES
        self.offer_zone: npt.NDArray[np.int16] = a["offer_zone"]  # commune index, -1: no zone
        self.loc_unit: npt.NDArray[np.int32] = a["loc_unit"]
        self.loc_eg: npt.NDArray[np.int32] = a["loc_eg"]
        self.loc_commune: npt.NDArray[np.int16] = a["loc_commune"]
        self.loc_lat: npt.NDArray[np.float32] = a["loc_lat"]
        self.loc_lon: npt.NDArray[np.float32] = a["loc_lon"]
        self.loc_cap_status: npt.NDArray[np.int16] = a["loc_cap_status"]  # -1: no capacity record
        self.loc_cap_nb: npt.NDArray[np.int16] = a["loc_cap_nb"]
        self.role_offer: npt.NDArray[np.int32] = a["role_offer"]
        self.role_practitioner: npt.NDArray[np.int32] = a["role_practitioner"]
        self.prac_region: npt.NDArray[np.int8] = a["prac_region"]
        self.updated: dict[str, npt.NDArray[np.int32]] = {
            "Organization": a["org_updated"],
            "HealthcareService": a["offer_updated"],
            "Location": a["loc_updated"],
            "PractitionerRole": a["role_updated"],
            "Practitioner": a["prac_updated"],
        }
        self.perm = {
            "finess": _permutation(seed, 1, 10**6),
            "siren": _permutation(seed, 2, 10**8),
            "oi": _permutation(seed, 3, 10**8),
            "offer": _permutation(seed, 4, 10**7),
            "location": _permutation(seed, 5, 10**7),
            "rpps": _permutation(seed, 6, 10**9),
        }
        self.resources: Mapping[str, Mapping[str, dict[str, Any]]] = {
            t: _TypeView(self, t) for t in RESOURCE_TYPES
        }
        self._derived: dict[str, npt.NDArray[Any]] = {}
        self.kind: Mapping[str, OrgKind] = _OrgView(self, parent=False)
        self.parent: Mapping[str, str] = _OrgView(self, parent=True)

    # ---- ids and counts ------------------------------------------------------------------------------

    def count(self, rtype: str) -> int:
        return len(self.updated[rtype]) if rtype in self.updated else 0

    def counts(self) -> dict[str, int]:
        return {rtype: self.count(rtype) for rtype in RESOURCE_TYPES}

    def index_of(self, rtype: str, rid: str) -> int | None:
        """The index an id names, or None (not a number, another type's block, out of range)."""
        if rtype not in ID_BASE or not rid.isdigit() or len(rid) > 9:
            return None
        i = int(rid) - ID_BASE[rtype]
        return i if 0 <= i < self.count(rtype) and str(ID_BASE[rtype] + i) == rid else None

    def id_of(self, rtype: str, index: int) -> str:
        return str(ID_BASE[rtype] + index)

    def org_id(self, index: int) -> str:
        return self.id_of("Organization", index)

    def ids(self, rtype: str) -> IdSequence:
        """Every id of a type, in the server's result order (index order)."""
        return IdSequence(ID_BASE.get(rtype, 0), np.arange(self.count(rtype), dtype=np.int64))

    def __iter__(self) -> Iterator[dict[str, Any]]:
        """Every resource, by type then id."""
        for rtype in RESOURCE_TYPES:
            for i in range(self.count(rtype)):
                yield self.build(rtype, i)

    def get(self, resource_type: str, resource_id: str) -> dict[str, Any] | None:
        i = self.index_of(resource_type, resource_id)
        return None if i is None else self.build(resource_type, i)

    # ---- structure -----------------------------------------------------------------------------------

    def ancestors(self, org_id: str) -> list[str]:
        """The partOf chain above an Organization, nearest first, ending at its EJ."""
        i = self.index_of("Organization", org_id)
        chain: list[str] = []
        if i is None:
            return chain
        p = int(self.org_parent[i])
        while p >= 0:
            chain.append(self.org_id(p))
            p = int(self.org_parent[p])
        return chain

    def subtree_range(self, index: int) -> tuple[int, int]:
        return index, int(self.org_end[index])

    def subtree(self, org_id: str) -> list[str]:
        """An Organization and every Organization below it through partOf (depth-first order)."""
        i = self.index_of("Organization", org_id)
        if i is None:
            return []
        return [self.org_id(j) for j in range(*self.subtree_range(i))]

    def ej_of(self, org_id: str) -> str:
        chain = self.ancestors(org_id)
        return chain[-1] if chain else org_id

    def offers_of_orgs(self, lo: int, hi: int) -> tuple[int, int]:
        """The offer index range whose providers are the Organizations [lo, hi)."""
        return _position(self.offer_provider, lo), _position(self.offer_provider, hi)

    def roles_of_offers(self, lo: int, hi: int) -> tuple[int, int]:
        return _position(self.role_offer, lo), _position(self.role_offer, hi)

    def forward(self, source_type: str, param: str, index: int) -> list[tuple[str, int]]:
        """What the reference parameter `param` of entity `index` points at, read from the arrays (the
        resource is not built): (target type, target index) pairs."""
        key = (source_type, param)
        if key == ("HealthcareService", "organization"):
            return [("Organization", int(self.offer_provider[index]))]
        if key == ("HealthcareService", "location"):
            return [("Location", int(self.offer_location[index]))]
        if key == ("Organization", "partof"):
            parent = int(self.org_parent[index])
            return [("Organization", parent)] if parent >= 0 else []
        if key == ("Location", "organization"):
            return [("Organization", int(self.loc_eg[index]))]
        if key == ("PractitionerRole", "practitioner"):
            return [("Practitioner", int(self.role_practitioner[index]))]
        if key == ("PractitionerRole", "service"):
            return [("HealthcareService", int(self.role_offer[index]))]
        if key == ("PractitionerRole", "organization"):
            return [("Organization", int(self.offer_provider[self.role_offer[index]]))]
        return []

    def referrers(self, source_type: str, param: str, target: str) -> list[str]:
        """Ids of `source_type` whose reference parameter `param` points at `target` (`Type/id`)."""
        ttype, _, tid = target.partition("/")
        t = self.index_of(ttype, tid)
        if t is None:
            return []
        found: IntArray | range
        key = (source_type, param)
        if key == ("HealthcareService", "organization") and ttype == "Organization":
            found = range(*self.offers_of_orgs(t, t + 1))
        elif key == ("HealthcareService", "location") and ttype == "Location":
            found = _equal_range(self.offer_location, t)  # offers follow their location: sorted
        elif key == ("Organization", "partof") and ttype == "Organization":
            lo, hi = self.subtree_range(t)
            found = lo + 1 + np.flatnonzero(self.org_parent[lo + 1 : hi] == t)
        elif key == ("Location", "organization") and ttype == "Organization":
            found = _equal_range(self.loc_eg, t)  # locations are laid out EG by EG: sorted
        elif key == ("PractitionerRole", "practitioner") and ttype == "Practitioner":
            found = np.flatnonzero(self.role_practitioner == t)
        elif key == ("PractitionerRole", "service") and ttype == "HealthcareService":
            found = range(*self.roles_of_offers(t, t + 1))
        elif key == ("PractitionerRole", "organization") and ttype == "Organization":
            found = _equal_range(self.derived("role_provider"), t)
        else:
            return []
        return [self.id_of(source_type, int(x)) for x in found]

    def derived(self, name: str) -> npt.NDArray[Any]:
        """Arrays computed from the stored ones on first use (per-entity region, role provider)."""
        cached = self._derived.get(name)
        if cached is None:
            if name == "role_provider":
                cached = self.offer_provider[self.role_offer]
            elif name == "region:Organization":
                cached = self.org_region
            elif name == "region:HealthcareService":
                cached = self.org_region[self.offer_provider]
            elif name == "region:Location":
                cached = self.org_region[self.loc_eg]
            elif name == "region:PractitionerRole":
                cached = self.org_region[self.derived("role_provider")]
            elif name == "region:Practitioner":
                cached = self.prac_region
            elif name in ("names:Organization", "aliases:Organization"):
                # Folded UTF-8 names (or aliases, "" when none) of every Organization, built on the first
                # name search: a few seconds and ~50 bytes per Organization at national scale.
                def text(i: int) -> str:
                    return self.org_name(i) if name.startswith("names") else " ".join(self.org_aliases(i))

                folded = [fold_text(text(i)).encode() for i in range(self.count("Organization"))]
                cached = np.array(folded, dtype=np.bytes_)
            elif name.startswith("order"):
                # `order_lastUpdated:Type` / `order-_lastUpdated:Type`: indexes by meta.lastUpdated, ties
                # in id order in both directions (stable sort, on the negated key for descending).
                key, _, rtype = name.removeprefix("order").partition(":")
                stamps = self.updated[rtype].astype(np.int64)
                cached = np.argsort(-stamps if key.startswith("-") else stamps, kind="stable")
            else:
                raise KeyError(name)
            self._derived[name] = cached
        return cached

    # ---- identifiers (arithmetic: each value encodes its entity's serial) ------------------------------

    def _finess(self, serial: int) -> str:
        ej = self._ej_index(int(self.struct_org[serial]))
        body = _CITIES[self._city(ej)][1][:2] + f"{self.perm['finess'](serial):06d}"
        return body + luhn_key(body)

    def _siren(self, ej_serial: int) -> str:
        body = f"{self.perm['siren'](ej_serial):08d}"
        return body + luhn_key(body)

    def _siret(self, eg_index: int) -> str:
        ej = int(self.org_parent[eg_index])
        body = self._siren(int(self.org_serial[ej])) + f"{int(self.org_ordinal[eg_index]):04d}"
        return body + luhn_key(body)

    def _oi(self, index: int) -> str:
        return f"OI{self.perm['oi'](index):08d}"

    def _region_code(self, region: int) -> str:
        return self.lists.regions.codes[region].code

    def _offer_identifier(self, index: int) -> str:
        region = int(self.org_region[self.offer_provider[index]])
        return f"{self._region_code(region)}/{self.perm['offer'](index)}"

    def _location_identifier(self, index: int) -> str:
        region = int(self.org_region[self.loc_eg[index]])
        return f"{self._region_code(region)}/{self.perm['location'](index)}"

    def _rpps(self, index: int) -> str:
        body = f"1{self.perm['rpps'](index):09d}"
        return body + luhn_key(body)

    def _ej_index(self, org: int) -> int:
        while self.org_parent[org] >= 0:
            org = int(self.org_parent[org])
        return org

    def _city(self, ej: int) -> int:
        return (int(self.org_serial[ej]) * 7 + self.seed) % len(_CITIES)

    def identifier_index(self, rtype: str, system: str | None, value: str) -> list[int]:
        """Indexes of `rtype` carrying identifier `system|value` (any system when `system` is None)."""
        found: list[int] = []
        systems = _IDENTIFIER_SYSTEMS.get(rtype, ())
        for sys_ in systems:
            if system is not None and system != sys_:
                continue
            i = self._decode(rtype, sys_, value)
            if i is not None and i not in found:
                found.append(i)
        return sorted(found)

    def _decode(self, rtype: str, system: str, value: str) -> int | None:
        """The entity whose identifier of `system` is `value`, by inverting the serial arithmetic."""
        candidate: int | None = None
        try:
            if rtype == "Organization":
                if system in (vocab.FINESS, vocab.ID_NAT_STRUCT):
                    digits = value[1:] if system == vocab.ID_NAT_STRUCT and value[:1] == "1" else value
                    if system == vocab.ID_NAT_STRUCT and value[:1] != "1":
                        return None
                    if len(digits) != 9 or not digits.isdigit():
                        return None
                    serial = self.perm["finess"].inverse(int(digits[2:8]))
                    if serial >= len(self.struct_org):
                        return None
                    candidate = int(self.struct_org[serial])
                    ok = self._finess(serial) == digits
                    return candidate if ok else None
                if system == vocab.SIRENE:
                    if len(value) == 9 and value.isdigit():
                        serial = self.perm["siren"].inverse(int(value[:8]))
                        if serial < len(self.struct_org):
                            candidate = int(self.struct_org[serial])
                            if self.org_kind[candidate] == K_EJ and self._siren(serial) == value:
                                return candidate
                        return None
                    if len(value) == 14 and value.isdigit():
                        ej = self._decode(rtype, system, value[:9])
                        if ej is None:
                            return None
                        lo, hi = self.subtree_range(ej)
                        ordinal = int(value[9:13])
                        for eg in (lo + 1 + np.flatnonzero(self.org_parent[lo + 1 : hi] == ej)).tolist():
                            if int(self.org_ordinal[eg]) == ordinal and self._siret(eg) == value:
                                return int(eg)
                    return None
                if system == vocab.OI:
                    if len(value) != 10 or not value.startswith("OI") or not value[2:].isdigit():
                        return None
                    candidate = self.perm["oi"].inverse(int(value[2:]))
                    ok = candidate < self.count(rtype) and self.org_kind[candidate] >= K_POLE
                    return candidate if ok else None
            if rtype in ("HealthcareService", "Location"):
                _, sep, serial_text = value.partition("/")
                if not sep or not serial_text.isdigit() or len(serial_text) > 7:
                    return None
                perm = self.perm["offer" if rtype == "HealthcareService" else "location"]
                candidate = perm.inverse(int(serial_text))
                if candidate >= self.count(rtype):
                    return None
                made = (
                    self._offer_identifier(candidate)
                    if rtype == "HealthcareService"
                    else self._location_identifier(candidate)
                )
                return candidate if made == value else None
            if rtype == "Practitioner":
                if len(value) != 11 or not value.isdigit() or value[0] != "1":
                    return None
                candidate = self.perm["rpps"].inverse(int(value[1:10]))
                ok = candidate < self.count(rtype) and self._rpps(candidate) == value
                return candidate if ok else None
        except ValueError:
            return None
        return None

    def ids_by_identifier(self, resource_type: str, system: str | None, value: str) -> list[str]:
        """Ids of `resource_type` carrying identifier `system|value` (any system when `system` is None)."""
        return [self.id_of(resource_type, i) for i in self.identifier_index(resource_type, system, value)]

    def system_mask(self, resource_type: str, system: str) -> BoolArray:
        """Which entities carry an identifier of `system` (`identifier=system|`)."""
        n = self.count(resource_type)
        if system not in _IDENTIFIER_SYSTEMS.get(resource_type, ()):
            return np.zeros(n, dtype=bool)
        if resource_type == "Organization":
            if system == vocab.OI:
                return np.asarray(self.org_kind >= K_POLE)
            if system == vocab.SIRENE or system in (vocab.FINESS, vocab.ID_NAT_STRUCT):
                return np.asarray(self.org_kind <= K_EG)
        return np.ones(n, dtype=bool)

    def ids_by_identifier_system(self, resource_type: str, system: str) -> list[str]:
        return [
            self.id_of(resource_type, int(i)) for i in np.flatnonzero(self.system_mask(resource_type, system))
        ]

    # ---- resources, built on demand ------------------------------------------------------------------

    def _rng(self, rtype: str, index: int) -> random.Random:
        """The cosmetic details' generator of one resource: a pure function of seed, type and index."""
        return random.Random((self.seed << 34) ^ (RESOURCE_TYPES.index(rtype) << 30) ^ index)

    def _stamp(self, rtype: str, index: int) -> str:
        return instant(int(self.updated[rtype][index])).isoformat(timespec="milliseconds")

    def _start(self, rtype: str, index: int, region: int, rng: random.Random) -> dict[str, Any]:
        seconds = int(self.updated[rtype][index])
        created = instant(seconds - rng.randrange(CREATION_BACK_S))
        return {
            "resourceType": rtype,
            "id": self.id_of(rtype, index),
            "meta": {
                "lastUpdated": self._stamp(rtype, index),
                "profile": [vocab.PROFILE[rtype]],
                "tag": [self.lists.regions.coding(self.lists.regions.codes[region])],
            },
            "extension": [
                {
                    "url": vocab.EXT_CREATION_DATE,
                    "valueDateTime": created.isoformat(timespec="seconds"),
                }
            ],
        }

    def build(self, rtype: str, index: int) -> dict[str, Any]:
        """The FHIR resource of `rtype` at `index`, the same bytes at every call."""
        builder = {
            "Organization": self._organization,
            "HealthcareService": self._offer,
            "Location": self._location,
            "PractitionerRole": self._role,
            "Practitioner": self._practitioner,
        }[rtype]
        return builder(index)

    def _address(self, rng: random.Random, city: int) -> dict[str, Any]:
        name, postal = _CITIES[city]
        return {"use": "work", "line": [_street(rng)], "city": name, "postalCode": postal, "country": "FRA"}

    def _eg_word(self, eg: int) -> str:
        return _WORDS[(int(self.org_serial[eg]) * 5 + self.seed) % len(_WORDS)]

    def _organization(self, i: int) -> dict[str, Any]:
        lists = self.lists
        rng = self._rng("Organization", i)
        kind = int(self.org_kind[i])
        org = self._start("Organization", i, int(self.org_region[i]), rng)
        ej = self._ej_index(i)
        g07 = vocab.TRE_G07_TYPE_IDENTIFIANT_STRUCTURE
        if kind in (K_EJ, K_EG):
            finess = self._finess(int(self.org_serial[i]))
            third = (
                _identifier(g07, vocab.G07_SIREN, vocab.SIRENE, self._siren(int(self.org_serial[i])))
                if kind == K_EJ
                else _identifier(g07, vocab.G07_SIRET, vocab.SIRENE, self._siret(i))
            )
            org["identifier"] = [
                {"use": "official"}
                | _identifier(g07, vocab.G07_ID_NAT_STRUCT, vocab.ID_NAT_STRUCT, "1" + finess),
                _identifier(g07, vocab.G07_FINESS, vocab.FINESS, finess),
                third,
            ]
        else:
            # [INFER] identifiantOI value format is not documented; a national serial, unique nationally.
            org["identifier"] = [
                _identifier(
                    vocab.TRE_R345_TYPE_IDENTIFIANT_AUTRE,
                    vocab.R345_OI,
                    vocab.OI,
                    self._oi(i),
                )
            ]
        org["active"] = True
        org["name"] = self.org_name(i)
        if kind == K_EJ:
            org["type"] = [{"coding": [lists.legal_statuses.coding(rng.choice(lists.legal_statuses.codes))]}]
            org["address"] = [self._address(rng, self._city(ej))]
            org["contact"] = self._contacts(i)
            return org
        if kind == K_EG:
            org["type"] = [{"coding": [lists.eg_categories.coding(rng.choice(lists.eg_categories.codes))]}]
            org["alias"] = self.org_aliases(i)
            org["address"] = [self._address(rng, self._city(ej))]
            org["contact"] = self._contacts(i)
        else:
            oi_code = KINDS[kind].value
            type_code = next(c for c in lists.oi_types.codes if c.code == oi_code)
            org["type"] = [{"coding": [lists.oi_types.coding(type_code)]}]
        org["partOf"] = {"reference": f"Organization/{self.org_id(int(self.org_parent[i]))}"}
        return org

    def _contacts(self, i: int) -> list[dict[str, Any]]:
        """An EJ's or EG's contacts, one per confidentiality level (TRE_R283: 1 accès libre, 2 restreint,
        3 très restreint), each with one telephone of the same level: what the access profiles filter."""
        contacts = []
        for level, (nature, label) in enumerate(_CONTACT_NATURES, start=1):
            phone = f"0{1 + i % 5}{(i * 7919 + level * 104729) % 10**8:08d}"
            channel = vocab.coding(vocab.TRE_R200_CANAL_COMMUNICATION, "2", "Téléphone fixe")
            confidentiality = vocab.coding(
                vocab.TRE_R283_NIVEAU_CONFIDENTIALITE, str(level), _CONFIDENTIALITY[level - 1]
            )
            telecom = {
                "extension": [
                    {"url": vocab.EXT_TELECOM_CONFIDENTIALITY, "valueCoding": confidentiality},
                    {"url": vocab.EXT_TELECOM_CHANNEL, "valueCoding": channel},
                ],
                "system": "phone",
                "value": phone,
            }
            contacts.append(
                {
                    "extension": [{"url": vocab.EXT_CONTACT_CONFIDENTIALITY, "valueCoding": confidentiality}],
                    "purpose": {"coding": [vocab.coding(vocab.TRE_R287_NATURE_CONTACT, nature, label)]},
                    "telecom": [telecom],
                }
            )
        return contacts

    def _eg_label(self, eg: int) -> str:
        n_ej = int(self.org_ordinal[int(self.org_parent[eg])])
        return f"{self._eg_word(eg)} {n_ej}-{int(self.org_ordinal[eg])}"

    def org_aliases(self, i: int) -> list[str]:
        """An Organization's aliases (an EG's operational name; none for the others)."""
        return [self._eg_label(i)] if int(self.org_kind[i]) == K_EG else []

    def org_name(self, i: int) -> str:
        """An Organization's name from the arrays alone (also names its unit's Location)."""
        kind = int(self.org_kind[i])
        if kind == K_EJ:
            n_ej = int(self.org_ordinal[i])
            return f"Groupe hospitalier {_WORDS[n_ej % len(_WORDS)]} {n_ej}"
        if kind == K_EG:
            return f"Site {self._eg_label(i)}"
        return f"{_OI_LABEL[kind]} {self._eg_label(self._eg_of(i))} {int(self.org_ordinal[i])}"

    def _eg_of(self, org: int) -> int:
        while self.org_kind[org] != K_EG:
            org = int(self.org_parent[org])
        return org

    def offer_name(self, index: int) -> str:
        mode = self.lists.care_modes.codes[int(self.offer_mode[index])]
        activity = self.lists.activities.codes[int(self.offer_activity[index])]
        return offer_name(mode.display, activity.display, activity.code)

    def _offer(self, i: int) -> dict[str, Any]:
        lists = self.lists
        rng = self._rng("HealthcareService", i)
        provider = int(self.offer_provider[i])
        offer = self._start("HealthcareService", i, int(self.org_region[provider]), rng)
        low, high = AGE_RANGES[int(self.offer_age[i])]
        offer["extension"] += [
            {
                "url": vocab.EXT_PATIENT_TYPE,
                "extension": [
                    {
                        "url": "ageRange",
                        "valueRange": {
                            "low": {"value": low, "unit": "a", "system": vocab.UCUM, "code": "a"},
                            "high": {"value": high, "unit": "a", "system": vocab.UCUM, "code": "a"},
                        },
                    }
                ],
            },
            {"url": vocab.EXT_SENSITIVE_UNIT, "valueBoolean": rng.random() < 0.05},
        ]
        zone = int(self.offer_zone[i])
        if zone >= 0:
            # zoneIntervention (RORTerritorialDivision): the division type has no code in the sources, so the
            # [INFER] sub-extension carries the commune only (the search reads codeTerritorialDivision).
            commune = lists.communes[zone]
            offer["extension"].append(
                {
                    "url": vocab.EXT_TERRITORIAL_DIVISION,
                    "extension": [
                        {
                            "url": "codeTerritorialDivision",
                            "valueCodeableConcept": {
                                "coding": [
                                    {
                                        "system": vocab.TRE_R13_COMMUNE,
                                        "code": commune.cog,
                                        "display": commune.name,
                                    }
                                ]
                            },
                        }
                    ],
                }
            )
        offer["identifier"] = [{"system": vocab.OFFER, "value": self._offer_identifier(i)}]
        offer["active"] = True
        offer["providedBy"] = {"reference": f"Organization/{self.org_id(provider)}"}
        category = int(self.offer_category[i])
        if category >= 0:
            offer["category"] = [
                {"coding": [lists.offer_categories.coding(lists.offer_categories.codes[category])]}
            ]
        offer["type"] = [{"coding": [lists.champs.coding(lists.champs.codes[int(self.offer_champ[i])])]}]
        offer["specialty"] = [
            {"coding": [lists.activities.coding(lists.activities.codes[int(self.offer_activity[i])])]}
        ]
        offer["location"] = [{"reference": f"Location/{self.id_of('Location', int(self.offer_location[i]))}"}]
        offer["name"] = self.offer_name(i)
        characteristic: list[dict[str, Any]] = [
            {"coding": [lists.care_modes.coding(lists.care_modes.codes[int(self.offer_mode[i])])]}
        ]
        modality = int(self.offer_modality[i])
        if modality >= 0:
            characteristic.append({"coding": [lists.modalities.coding(lists.modalities.codes[modality])]})
        speciality = int(self.offer_speciality[i])
        if speciality >= 0:
            characteristic.append(
                {"coding": [lists.specialities.coding(lists.specialities.codes[speciality])]}
            )
        act = int(self.offer_act[i])
        if act >= 0:
            characteristic.append(
                {
                    "extension": [{"url": vocab.EXT_ACT_TYPE, "valueCode": "specificAct"}],
                    "coding": [lists.acts.coding(lists.acts.codes[act])],
                }
            )
        offer["characteristic"] = characteristic
        days, start, end = _HOURS[rng.randrange(len(_HOURS))]
        offer["availableTime"] = [
            {"daysOfWeek": list(days), "availableStartTime": start, "availableEndTime": end}
        ]
        if rng.random() < 0.07:
            # Closed offer: notAvailable[closingReopeningDate] (RORHealthcareService.fsh fixes its id and
            # description), during.start = dateFermeture, during.end = datePrevisionnelleReouverture.
            closed = EPOCH + timedelta(days=rng.randrange(7 * 365))
            during: dict[str, str] = {"start": closed.date().isoformat()}
            if rng.random() < 0.5:
                during["end"] = (closed + timedelta(days=rng.randint(7, 400))).date().isoformat()
            offer["notAvailable"] = [
                {
                    "id": "closingReopeningDate",
                    "description": "Période de fermeture et de réouverture prévisionnelle",
                    "during": during,
                }
            ]
        return offer

    def _location(self, i: int) -> dict[str, Any]:
        lists = self.lists
        rng = self._rng("Location", i)
        eg = int(self.loc_eg[i])
        unit = int(self.loc_unit[i])
        location = self._start("Location", i, int(self.org_region[eg]), rng)
        commune = lists.communes[int(self.loc_commune[i])]
        location["extension"].append(
            {
                "url": vocab.EXT_COMMUNE_COG,
                "valueCodeableConcept": {
                    "coding": [
                        {"system": vocab.TRE_R13_COMMUNE, "code": commune.cog, "display": commune.name}
                    ]
                },
            }
        )
        # Location identifiers look like `<region>/<id>` (ror-fhir-api.md §3.3); the system is ours [INFER].
        location["identifier"] = [
            _identifier(
                vocab.TRE_R354_TYPE_IDENTIFIANT_RESSOURCE,
                vocab.R354_ID_LOCATION,
                vocab.LOCATION,
                self._location_identifier(i),
            )
        ]
        location["name"] = f"Lieu {self.org_name(unit)}"
        function = rng.choice(lists.place_functions.codes)
        location["type"] = [{"coding": [lists.place_functions.coding(function)]}]
        location["address"] = {
            "use": "work",
            "line": [_street(rng)],
            "city": commune.name.upper(),
            "postalCode": commune.postal_code,
            "country": "FRA",
        }
        location["position"] = {
            "longitude": round(float(self.loc_lon[i]), 5),
            "latitude": round(float(self.loc_lat[i]), 5),
        }
        location["managingOrganization"] = {"reference": f"Organization/{self.org_id(eg)}"}
        status = int(self.loc_cap_status[i])
        if status >= 0:
            location["extension"].append(self._capacity(i, status, rng))
        # Drawn last from the same generator, so the parts above do not depend on them.
        location["extension"] += self._equipment_and_housing(i, rng)
        return location

    def _equipment_and_housing(self, i: int, rng: random.Random) -> list[dict[str, Any]]:
        """ror-location-equipment (with its nested ror-location-equipment-limit when the equipment's display
        states one) and ror-location-residential-capacity, after the champs and care modes of the offers
        given at the location (EQUIPMENT_SHARE, RESIDENTIAL_SHARE)."""
        lists = self.lists
        offers = _equal_range(self.offer_location, i)
        champs = {lists.champs.codes[int(self.offer_champ[o])].code for o in offers}
        modes = {lists.care_modes.codes[int(self.offer_mode[o])].code for o in offers}
        out: list[dict[str, Any]] = []
        lead = max(sorted(champs), key=lambda c: EQUIPMENT_SHARE.get(c, 0.0))  # MCO first
        if rng.random() < EQUIPMENT_SHARE.get(lead, 0.0):
            pool = [e for e in lists.equipments if lead in e.champs]
            for equipment in rng.sample(pool, min(len(pool), rng.randint(1, 3))):
                out.append(self._equipment(equipment, rng))
        keys = {f"champ:{c}" for c in champs} | {f"mode:{m}" for m in modes}
        if rng.random() < max((RESIDENTIAL_SHARE.get(k, 0.0) for k in keys), default=0.0):
            for kind in rng.sample(lists.residential_types.codes, rng.randint(1, 2)):
                parts: list[dict[str, Any]] = [
                    {
                        "url": "residentialType",
                        "valueCodeableConcept": {"coding": [lists.residential_types.coding(kind)]},
                    }
                ]
                if rng.random() < 0.9:
                    parts.append({"url": "residentialNumber", "valueInteger": rng.randint(1, 60)})
                out.append({"url": vocab.EXT_RESIDENTIAL_CAPACITY, "extension": parts})
        return out

    def _equipment(self, equipment: Equipment, rng: random.Random) -> dict[str, Any]:
        lists = self.lists
        parts: list[dict[str, Any]] = [
            {
                "url": "equipmentType",
                "valueCodeableConcept": {"coding": [lists.equipment_types.coding(equipment.code)]},
            }
        ]
        if rng.random() < 0.85:
            parts.append({"url": "nbInService", "valueInteger": rng.randint(1, 4)})
        if equipment.limit_feature and rng.random() < 0.8:
            # The limit is nested in the equipment (ror-location-equipment-limit has the context
            # ror-location-equipment in the ROR IG source; data/README.md): the bound the display states,
            # in UCUM.
            feature = next(c for c in lists.equipment_features.codes if c.code == equipment.limit_feature)
            quantity = {
                "value": equipment.limit_value,
                "unit": equipment.limit_unit,
                "system": vocab.UCUM,
                "code": equipment.limit_unit,
            }
            parts.append(
                {
                    "url": vocab.EXT_EQUIPMENT_LIMIT,
                    "extension": [
                        {
                            "url": "equipmentFeature",
                            "valueCodeableConcept": {"coding": [lists.equipment_features.coding(feature)]},
                        },
                        {"url": "limitValue", "valueQuantity": quantity},
                    ],
                }
            )
        return {"url": vocab.EXT_EQUIPMENT, "extension": parts}

    def _capacity(self, i: int, status: int, rng: random.Random) -> dict[str, Any]:
        """ror-location-supported-capacity with the parts the sources give codes for (status R330, closing
        type R333, count, update date); capacity type, temporality, source and temporary assignment have no
        sourced code and are left out (data/README.md)."""
        lists = self.lists
        code = lists.capacity_statuses.codes[status]
        parts: list[dict[str, Any]] = [
            {
                "url": "capacityStatus",
                "valueCodeableConcept": {"coding": [lists.capacity_statuses.coding(code)]},
            },
            {"url": "nbCapacity", "valueInteger": int(self.loc_cap_nb[i])},
            {
                "url": "capacityUpdateDate",
                "valueDateTime": instant(int(self.updated["Location"][i]) - rng.randrange(86400)).isoformat(
                    timespec="seconds"
                ),
            },
        ]
        if code.code == "05":  # a closed bed: its closing type (réouvrable, IG scenario "lit fermé")
            closing = lists.capacity_closings.codes[0]
            parts.append(
                {
                    "url": "capacityClosingType",
                    "valueCodeableConcept": {"coding": [lists.capacity_closings.coding(closing)]},
                }
            )
        return {"url": vocab.EXT_SUPPORTED_CAPACITY, "extension": parts}

    def _role(self, i: int) -> dict[str, Any]:
        lists = self.lists
        rng = self._rng("PractitionerRole", i)
        offer = int(self.role_offer[i])
        provider = int(self.offer_provider[offer])
        role = self._start("PractitionerRole", i, int(self.org_region[provider]), rng)
        role["extension"].append(
            {
                "url": vocab.EXT_UNIT_EXERCISE_MODE,
                "valueCodeableConcept": {
                    "coding": [lists.exercise_modes.coding(rng.choice(lists.exercise_modes.codes))]
                },
            }
        )
        role["active"] = True
        role["practitioner"] = {
            "reference": f"Practitioner/{self.id_of('Practitioner', int(self.role_practitioner[i]))}"
        }
        role["organization"] = {"reference": f"Organization/{self.org_id(provider)}"}
        role["code"] = [{"coding": [lists.professions.coding(rng.choice(lists.professions.codes))]}]
        # specialty[expertiseType] is 1..1 (RORPractitionerRole.fsh): typeSavoirFaire, TRE_R04.
        expertise = rng.choice(lists.expertise_types.codes)
        role["specialty"] = [{"coding": [lists.expertise_types.coding(expertise)]}]
        role["healthcareService"] = [
            {"reference": f"HealthcareService/{self.id_of('HealthcareService', offer)}"}
        ]
        return role

    def _practitioner(self, i: int) -> dict[str, Any]:
        rng = self._rng("Practitioner", i)
        practitioner = self._start("Practitioner", i, int(self.prac_region[i]), rng)
        given, gender = rng.choice(_GIVEN)
        practitioner["identifier"] = [{"system": vocab.RPPS, "value": self._rpps(i)}]
        practitioner["active"] = True
        practitioner["name"] = [{"family": rng.choice(_FAMILY).upper(), "given": [given]}]
        practitioner["gender"] = gender
        return practitioner


def _position(values: npt.NDArray[Any], target: int, side: Literal["left", "right"] = "left") -> int:
    """Where `target` goes in a sorted array, by binary search. The target is cast to the array's dtype
    first: numpy would otherwise convert the whole int32 array for a Python int (~1 ms at a million, O(n)
    per lookup instead of O(log n)), which made the simulator quadratic at national scale."""
    return int(values.searchsorted(values.dtype.type(target), side=side))


def _equal_range(values: npt.NDArray[Any], target: int) -> range:
    """Indexes of a sorted array holding `target`, by binary search."""
    return range(_position(values, target), _position(values, target, "right"))


def offer_name(mode_display: str, activity_display: str, activity_code: str) -> str:
    return f"{mode_display} — {activity_display or 'activité ' + activity_code}"


_IDENTIFIER_SYSTEMS: Mapping[str, tuple[str, ...]] = {
    "Organization": (vocab.ID_NAT_STRUCT, vocab.FINESS, vocab.SIRENE, vocab.OI),
    "HealthcareService": (vocab.OFFER,),
    "Location": (vocab.LOCATION,),
    "Practitioner": (vocab.RPPS,),
}


def _identifier(type_system: str, type_code: tuple[str, str], system: str, value: str) -> dict[str, Any]:
    code, display = type_code
    return {
        "type": {"coding": [{"system": type_system, "code": code, "display": display}]},
        "system": system,
        "value": value,
    }


def _street(rng: random.Random) -> str:
    return f"{rng.randint(1, 180)} {rng.choice(_STREET_TYPES)} {rng.choice(_STREET_NAMES)}"


# ------------------------------------------------------------------------------------------------------
# Generation of the arrays


class _Structure:
    """The Organization tree, offers and locations, drawn EG by EG and laid out depth-first."""

    def __init__(self, rng: random.Random, n_regions: int) -> None:
        self.rng = rng
        self.n_regions = n_regions
        self.org_parent = array("i")
        self.org_kind = array("b")
        self.org_region = array("b")
        self.org_end = array("i")
        self.org_ordinal = array("i")
        self.org_serial = array("i")
        self.struct_org = array("i")
        self.offer_provider = array("i")
        self.offer_location = array("i")
        self.loc_unit = array("i")
        self.loc_eg = array("i")

    def org(self, parent: int, kind: int, region: int, ordinal: int) -> int:
        index = len(self.org_kind)
        self.org_parent.append(parent)
        self.org_kind.append(kind)
        self.org_region.append(region)
        self.org_end.append(index + 1)
        self.org_ordinal.append(ordinal)
        if kind in (K_EJ, K_EG):
            self.org_serial.append(len(self.struct_org))
            self.struct_org.append(index)
        else:
            self.org_serial.append(-1)
        return index

    def run(self, scale: int) -> None:
        rng = self.rng
        remaining = scale
        n_ej = 0
        while remaining > 0:
            n_ej += 1
            region = rng.randrange(self.n_regions)
            ej = self.org(-1, K_EJ, region, n_ej)
            for n_eg in range(1, rng.randint(1, 3) + 1):
                n_offers = min(remaining, rng.randint(2, 12))
                self.eg(ej, region, n_eg, n_offers)
                remaining -= n_offers
                if remaining == 0:
                    break
            self.org_end[ej] = len(self.org_kind)
        self._fill_empty_regions()

    def _fill_empty_regions(self) -> None:
        """Moves whole EJs (with their tree) from the regions that have most to the regions that have none,
        while a region has more than one: every legacy regional endpoint then has data as soon as there are
        enough EJs (the default demo scale), and a region that had data keeps some. No random draw: the rest
        of the dataset is unchanged."""
        by_region: dict[int, list[int]] = {region: [] for region in range(self.n_regions)}
        for index, parent in enumerate(self.org_parent):
            if parent == -1:
                by_region[self.org_region[index]].append(index)
        for region in range(self.n_regions):
            if by_region[region]:
                continue
            donor = max(by_region, key=lambda r: (len(by_region[r]), -r))
            if len(by_region[donor]) < 2:
                return
            ej = by_region[donor].pop()
            for index in range(ej, self.org_end[ej]):
                self.org_region[index] = region
            by_region[region].append(ej)

    def eg(self, ej: int, region: int, n_eg: int, n_offers: int) -> None:
        """Plan one EG's internal tree (reusing containers), then lay it out depth-first."""
        rng = self.rng
        kinds = [K_EG]
        children: list[list[int]] = [[]]
        offers = [0]
        left = n_offers
        while left > 0:
            if rng.random() < 0.12:
                # Some offers hang directly off the EG (providedBy → EG, ror-fhir-api.md §3).
                offers[0] += 1
                left -= 1
                continue
            current = 0
            for kind in rng.choice(_CHAINS):
                existing = [c for c in children[current] if kinds[c] == kind]
                if existing and rng.random() < 0.6:
                    current = rng.choice(existing)
                else:
                    current = self._add(kinds, children, offers, current, kind)
            ue = self._add(kinds, children, offers, current, K_UE)
            k = min(left, rng.randint(1, 3))
            offers[ue] = k
            left -= k
        self._emit(0, ej, n_eg, kinds, children, offers, region, eg=-1)

    @staticmethod
    def _add(kinds: list[int], children: list[list[int]], offers: list[int], parent: int, kind: int) -> int:
        kinds.append(kind)
        children.append([])
        offers.append(0)
        children[parent].append(len(kinds) - 1)
        return len(kinds) - 1

    def _emit(
        self,
        node: int,
        parent: int,
        ordinal: int,
        kinds: list[int],
        children: list[list[int]],
        offers: list[int],
        region: int,
        eg: int,
    ) -> None:
        index = self.org(parent, kinds[node], region, ordinal)
        eg = index if kinds[node] == K_EG else eg
        if offers[node]:
            location = len(self.loc_unit)
            self.loc_unit.append(index)
            self.loc_eg.append(eg)
            for _ in range(offers[node]):
                self.offer_provider.append(index)
                self.offer_location.append(location)
        seen: dict[int, int] = {}
        for child in children[node]:
            seen[kinds[child]] = seen.get(kinds[child], 0) + 1
            self._emit(child, index, seen[kinds[child]], kinds, children, offers, region, eg)
        self.org_end[index] = len(self.org_kind)


def _np(values: array[int], dtype: type[np.generic]) -> npt.NDArray[Any]:
    return np.frombuffer(values, dtype=np.int32 if values.typecode == "i" else np.int8).astype(dtype)


def _stamps(rng: np.random.Generator, n: int, bursts: IntArray) -> npt.NDArray[np.int32]:
    """meta.lastUpdated as seconds after EPOCH: spread over the span, a share in the burst days."""
    spread = rng.integers(0, SPAN_S, n, dtype=np.int64)
    in_burst = rng.random(n) < BURST_SHARE
    burst = bursts[rng.integers(0, len(bursts), n)] + rng.integers(0, 24 * 3600, n)
    return np.where(in_burst, burst, spread).astype(np.int32)


def generate_dataset(scale: int, seed: int) -> Dataset:
    """A deterministic synthetic dataset with `scale` HealthcareService offers.

    Only `random.Random(seed)`, `numpy.random.default_rng(seed)` and a fixed epoch feed it: the same seed and
    scale give byte-identical resources. Codes come from the real code lists under `data/`.
    """
    if scale < 0:
        raise ValueError("scale must be >= 0")
    lists = code_lists()
    structure = _Structure(random.Random(seed), len(lists.regions.codes))
    structure.run(scale)
    s = structure
    rng = np.random.default_rng(seed)
    n_org, n_offer, n_loc = len(s.org_kind), len(s.offer_provider), len(s.loc_unit)
    # FINESS numbers carry a 6-digit serial of the EJ/EG (département + serial + key): a million at most.
    if max(n_org, n_offer, n_loc) >= ID_SPAN or len(s.struct_org) >= 10**6:
        raise ValueError(f"scale {scale} is beyond the id space of this simulator")
    bursts = SPAN_S - rng.integers(0, BURST_WINDOW_S // 86400, BURST_DAYS) * 86400 - 86400
    # Roles: 0-3 per offer; a practitioner is new, or (30 %) one already working for the same EJ.
    offer_provider = _np(s.offer_provider, np.int32)
    org_parent = _np(s.org_parent, np.int32)
    org_region = _np(s.org_region, np.int8)
    n_roles = rng.choice(np.array([0, 1, 1, 2, 3]), n_offer)
    role_offer = np.repeat(np.arange(n_offer, dtype=np.int32), n_roles)
    n_role = len(role_offer)
    if n_role >= ID_SPAN:
        raise ValueError(f"scale {scale} is beyond the id space of this simulator")
    ej_of_org = np.arange(n_org, dtype=np.int32)
    for _ in range(6):  # the tree is at most 6 deep: EJ, EG, pôle, service, UF, UE
        parent = org_parent[ej_of_org]
        ej_of_org = np.where(parent >= 0, parent, ej_of_org)
    role_ej = ej_of_org[offer_provider[role_offer]] if n_role else np.zeros(0, dtype=np.int32)
    first_of_ej = np.ones(n_role, dtype=bool)
    first_of_ej[1:] = role_ej[1:] != role_ej[:-1]
    new = first_of_ej | (rng.random(n_role) >= 0.3)
    created_before: IntArray = np.cumsum(new) - new  # practitioners created before each role
    start = np.maximum.accumulate(np.where(first_of_ej, created_before, 0)) if n_role else created_before
    pick = start + np.floor(rng.random(n_role) * np.maximum(created_before - start, 1)).astype(np.int64)
    role_practitioner = np.where(new, created_before, pick).astype(np.int32)
    n_prac = int(new.sum())
    prac_region = org_region[role_ej[new]] if n_role else np.zeros(0, dtype=np.int8)

    def choose(n: int, size: int, share: float = 1.0) -> npt.NDArray[np.int16]:
        values = rng.integers(0, max(n, 1), size).astype(np.int16)
        if share < 1.0:
            values[rng.random(size) >= share] = -1
        return values

    n_communes = len(lists.communes)
    centres = np.array([(c.latitude, c.longitude) for c in lists.communes], dtype=np.float64).reshape(-1, 2)
    arrays: dict[str, npt.NDArray[Any]] = {
        "org_parent": org_parent,
        "org_kind": _np(s.org_kind, np.int8),
        "org_region": org_region,
        "org_end": _np(s.org_end, np.int32),
        "org_ordinal": _np(s.org_ordinal, np.int32),
        "org_serial": _np(s.org_serial, np.int32),
        "struct_org": _np(s.struct_org, np.int32),
        "offer_provider": offer_provider,
        "offer_location": _np(s.offer_location, np.int32),
        "loc_unit": _np(s.loc_unit, np.int32),
        "loc_eg": _np(s.loc_eg, np.int32),
        "offer_champ": choose(len(lists.champs.codes), n_offer),
        "offer_activity": choose(len(lists.activities.codes), n_offer),
        "offer_mode": choose(len(lists.care_modes.codes), n_offer),
        "offer_act": choose(len(lists.acts.codes), n_offer, 0.2),
        "offer_modality": choose(len(lists.modalities.codes), n_offer, 0.3),
        "offer_speciality": choose(len(lists.specialities.codes), n_offer, 0.15),
        "offer_category": choose(len(lists.offer_categories.codes), n_offer, 0.25),
        "offer_age": rng.integers(0, len(AGE_RANGES), n_offer).astype(np.int8),
        "offer_zone": choose(n_communes, n_offer, 0.1),
        "loc_commune": (loc_commune := choose(n_communes, n_loc)),
        # Around the commune's placement centre (data/tre_r13_commune.csv): within a few kilometres.
        "loc_lat": (centres[loc_commune, 0] + rng.uniform(-0.05, 0.05, n_loc)).astype(np.float32),
        "loc_lon": (centres[loc_commune, 1] + rng.uniform(-0.05, 0.05, n_loc)).astype(np.float32),
        # Bed/place capacity on 70 % of locations: available (R330 02) or closed (05), 0-59 of them.
        "loc_cap_status": choose(len(lists.capacity_statuses.codes), n_loc, 0.7),
        "loc_cap_nb": rng.integers(0, 60, n_loc).astype(np.int16),
        "role_offer": role_offer,
        "role_practitioner": role_practitioner,
        "prac_region": prac_region.astype(np.int8),
        "org_updated": _stamps(rng, n_org, bursts),
        "offer_updated": _stamps(rng, n_offer, bursts),
        "loc_updated": _stamps(rng, n_loc, bursts),
        "role_updated": _stamps(rng, n_role, bursts),
        "prac_updated": _stamps(rng, n_prac, bursts),
    }
    return Dataset(scale, seed, lists, arrays)
