"""The simulator's deterministic synthetic ROR dataset and its in-memory store with indexes (simulator/).

`generate_dataset(scale, seed)` builds EJ → EG → internal organisations → offers (+ Location,
PractitionerRole, Practitioner) shaped like the ROR IG profiles (docs/ror-fhir-api.md §3); `Dataset` stores
them by type and id with the indexes searches need (identifiers, partOf tree, reverse references).
"""

from __future__ import annotations

import gc
import random
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any
from zoneinfo import ZoneInfo

from bridge.model import Resource
from bridge.simulator import codes
from bridge.simulator.codes import Code, CodeLists, code_lists

RESOURCE_TYPES = ("Organization", "HealthcareService", "Location", "PractitionerRole", "Practitioner")

# Reference search parameters: (source type, parameter) → element holding the reference(s). They back
# `_include`, `_revinclude` and the reverse-reference index (FHIR R4 SearchParameter expressions).
REFERENCE_PARAMS: Mapping[tuple[str, str], str] = {
    ("HealthcareService", "organization"): "providedBy",
    ("HealthcareService", "location"): "location",
    ("Organization", "partof"): "partOf",
    ("Location", "organization"): "managingOrganization",
    ("PractitionerRole", "practitioner"): "practitioner",
    ("PractitionerRole", "service"): "healthcareService",
    ("PractitionerRole", "organization"): "organization",
}


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


def id_sort_key(resource_id: str) -> tuple[int, str]:
    """Numeric ids (as HAPI hands out) in numeric order; any other id after, in text order."""
    return (len(resource_id), resource_id)


class Dataset:
    """Resources by type and id, with the indexes the search engine uses. Read-only once built."""

    def __init__(self, resources: Iterable[dict[str, Any]], *, scale: int, seed: int) -> None:
        self.scale = scale
        self.seed = seed
        self.resources: dict[str, dict[str, dict[str, Any]]] = {t: {} for t in RESOURCE_TYPES}
        for resource in resources:
            by_id = self.resources.setdefault(resource["resourceType"], {})
            if resource["id"] in by_id:
                raise ValueError(f"duplicate resource {resource['resourceType']}/{resource['id']}")
            by_id[resource["id"]] = resource
        # type → (system, value) → ids; type → value → ids (identifier searched without a system)
        self._by_identifier: dict[str, dict[tuple[str, str], list[str]]] = {}
        self._by_identifier_value: dict[str, dict[str, list[str]]] = {}
        # (source type, param) → "Type/id" → source ids
        self._referrers: dict[tuple[str, str], dict[str, list[str]]] = {key: {} for key in REFERENCE_PARAMS}
        self.parent: dict[str, str] = {}
        self.children: dict[str, list[str]] = {}
        self.kind: dict[str, OrgKind] = {}
        self._index()

    def _index(self) -> None:
        for rtype, by_id in self.resources.items():
            systems = self._by_identifier.setdefault(rtype, {})
            values = self._by_identifier_value.setdefault(rtype, {})
            for rid in sorted(by_id, key=id_sort_key):
                resource = by_id[rid]
                for ident in resource.get("identifier", []):
                    value = ident.get("value")
                    if value is None:
                        continue
                    systems.setdefault((ident.get("system", ""), value), []).append(rid)
                    values.setdefault(value, []).append(rid)
                for (source, param), element in REFERENCE_PARAMS.items():
                    if source == rtype:
                        for ref in references(resource, element):
                            self._referrers[(source, param)].setdefault(ref, []).append(rid)
        for oid, org in self.resources["Organization"].items():
            parents = references(org, "partOf")
            if parents:
                parent_id = parents[0].removeprefix("Organization/")
                self.parent[oid] = parent_id
                self.children.setdefault(parent_id, []).append(oid)
            self.kind[oid] = _org_kind(org)
        for kids in self.children.values():
            kids.sort(key=id_sort_key)

    # ---- reads -------------------------------------------------------------------------------------

    def get(self, resource_type: str, resource_id: str) -> dict[str, Any] | None:
        return self.resources.get(resource_type, {}).get(resource_id)

    def ids(self, resource_type: str) -> list[str]:
        """Every id of a type, in the server's result order."""
        return sorted(self.resources.get(resource_type, {}), key=id_sort_key)

    def __iter__(self) -> Iterator[dict[str, Any]]:
        """Every resource, by type then id."""
        for rtype in self.resources:
            for rid in self.ids(rtype):
                yield self.resources[rtype][rid]

    def counts(self) -> dict[str, int]:
        return {rtype: len(by_id) for rtype, by_id in self.resources.items()}

    # ---- indexes -----------------------------------------------------------------------------------

    def ids_by_identifier(self, resource_type: str, system: str | None, value: str) -> list[str]:
        """Ids of `resource_type` carrying identifier `system|value` (any system when `system` is None)."""
        if system is None:
            return self._by_identifier_value.get(resource_type, {}).get(value, [])
        return self._by_identifier.get(resource_type, {}).get((system, value), [])

    def ids_by_identifier_system(self, resource_type: str, system: str) -> list[str]:
        """Ids carrying any identifier of `system` (`identifier=system|`); rare, so a scan of the index."""
        found = {
            rid
            for (sys_, _), ids in self._by_identifier.get(resource_type, {}).items()
            if sys_ == system
            for rid in ids
        }
        return sorted(found, key=id_sort_key)

    def referrers(self, source_type: str, param: str, target: str) -> list[str]:
        """Ids of `source_type` whose reference parameter `param` points at `target` (`Type/id`)."""
        return self._referrers.get((source_type, param), {}).get(target, [])

    def ancestors(self, org_id: str) -> list[str]:
        """The partOf chain above an Organization, nearest first, ending at its EJ."""
        chain: list[str] = []
        current = self.parent.get(org_id)
        while current is not None and current not in chain:
            chain.append(current)
            current = self.parent.get(current)
        return chain

    def subtree(self, org_id: str) -> list[str]:
        """An Organization and every Organization below it through partOf."""
        out: list[str] = []
        stack = [org_id]
        seen: set[str] = set()
        while stack:
            current = stack.pop()
            if current in seen:
                continue
            seen.add(current)
            out.append(current)
            stack.extend(reversed(self.children.get(current, [])))
        return out

    def ej_of(self, org_id: str) -> str:
        chain = self.ancestors(org_id)
        return chain[-1] if chain else org_id


def _org_kind(org: Resource) -> OrgKind:
    if "partOf" not in org:
        return OrgKind.EJ
    for concept in org.get("type", []):
        for coding in concept.get("coding", []):
            if coding.get("system") == codes.TRE_R207_TYPE_OI:
                return OrgKind(coding["code"])
    return OrgKind.EG


# ------------------------------------------------------------------------------------------------------
# Generation

PARIS = ZoneInfo("Europe/Paris")
# A fixed epoch, never the wall clock: same seed and scale give byte-identical resources.
EPOCH = datetime(2019, 1, 1, tzinfo=PARIS)
SPAN_S = 7 * 365 * 24 * 3600  # meta.lastUpdated spread over 2019-2025
CREATION_BACK_S = 4 * 365 * 24 * 3600

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
_AGE_RANGES = ((0, 120), (18, 120), (0, 17), (0, 5), (18, 90), (65, 120), (16, 120))
# Depth patterns of the internal organisation chain between an EG and a UE (TRE_R207 codes):
# UE directly under the EG, under a UF, under a service, under service/UF, pôle/service, pôle/service/UF.
_CHAINS: tuple[tuple[str, ...], ...] = ((), ("3",), ("2",), ("2", "3"), ("1", "2"), ("1", "2", "3"))
_OI_LABEL = {"1": "Pôle", "2": "Service", "3": "UF", "4": "UE"}


def luhn_key(digits: str) -> str:
    """The Luhn check digit for `digits` (FINESS, SIREN, SIRET and RPPS numbers all end with one)."""
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = int(ch) * (2 if i % 2 == 0 else 1)
        total += d - 9 if d > 9 else d
    return str((10 - total % 10) % 10)


@dataclass
class _Tree:
    """One EJ's generation state: its region and its practitioners (shared by its offers)."""

    region: Code
    dept: str
    practitioners: list[str] = field(default_factory=list)


class _Generator:
    def __init__(self, rng: random.Random, lists: CodeLists) -> None:
        self.rng = rng
        self.lists = lists
        self.out: list[dict[str, Any]] = []
        self.next_id = 1000
        self.used: set[str] = set()
        self.serial = 0  # national serial for OI / offer / location identifier values
        self.children: dict[str, list[tuple[str, str]]] = {}  # org id → [(R207 code, child id)]
        self.organizations: dict[str, dict[str, Any]] = {}

    # ---- helpers ---------------------------------------------------------------------------------

    def new_id(self) -> str:
        self.next_id += self.rng.randint(1, 9)
        return str(self.next_id)

    def unique_number(self, prefix: str, length: int) -> str:
        """A synthetic number: `prefix` + random digits + Luhn key, unique in the dataset."""
        while True:
            body = prefix + "".join(str(self.rng.randint(0, 9)) for _ in range(length - len(prefix) - 1))
            number = body + luhn_key(body)
            if number not in self.used:
                self.used.add(number)
                return number

    def next_serial(self) -> int:
        self.serial += self.rng.randint(1, 40)
        return self.serial

    def meta(self, resource_type: str, tree: _Tree) -> tuple[dict[str, Any], dict[str, Any]]:
        """`meta` (lastUpdated, profile, region tag) and the ror-meta-creation-date extension."""
        updated = EPOCH + timedelta(seconds=self.rng.randrange(SPAN_S))
        created = updated - timedelta(seconds=self.rng.randrange(CREATION_BACK_S))
        meta = {
            "lastUpdated": updated.isoformat(timespec="milliseconds"),
            "profile": [codes.PROFILE[resource_type]],
            "tag": [self.lists.regions.coding(tree.region)],
        }
        creation = {"url": codes.EXT_CREATION_DATE, "valueDateTime": created.isoformat(timespec="seconds")}
        return meta, creation

    def start(self, resource_type: str, tree: _Tree) -> dict[str, Any]:
        meta, creation = self.meta(resource_type, tree)
        resource: dict[str, Any] = {
            "resourceType": resource_type,
            "id": self.new_id(),
            "meta": meta,
            "extension": [creation],
        }
        self.out.append(resource)
        if resource_type == "Organization":
            self.organizations[resource["id"]] = resource
        return resource

    def address(self) -> dict[str, Any]:
        city, postal = self.rng.choice(_CITIES)
        return {"use": "work", "line": [self.street()], "city": city, "postalCode": postal, "country": "FRA"}

    def street(self) -> str:
        return f"{self.rng.randint(1, 180)} {self.rng.choice(_STREET_TYPES)} {self.rng.choice(_STREET_NAMES)}"

    @staticmethod
    def identifier(type_system: str, type_code: tuple[str, str], system: str, value: str) -> dict[str, Any]:
        code, display = type_code
        return {
            "type": {"coding": [{"system": type_system, "code": code, "display": display}]},
            "system": system,
            "value": value,
        }

    # ---- structure -------------------------------------------------------------------------------

    def run(self, scale: int) -> None:
        remaining = scale
        n_ej = 0
        while remaining > 0:
            n_ej += 1
            ej, tree = self.make_ej(n_ej)
            for n_eg in range(1, self.rng.randint(1, 3) + 1):
                n_offers = min(remaining, self.rng.randint(2, 12))
                self.make_eg(ej, tree, n_ej, n_eg, n_offers)
                remaining -= n_offers
                if remaining == 0:
                    break

    def make_ej(self, n: int) -> tuple[dict[str, Any], _Tree]:
        city_index = self.rng.randrange(len(_CITIES))
        tree = _Tree(region=self.rng.choice(self.lists.regions.codes), dept=_CITIES[city_index][1][:2])
        ej = self.start("Organization", tree)
        finess = self.unique_number(tree.dept, 9)
        siren = self.unique_number("", 9)
        ej["identifier"] = [
            {"use": "official"}
            | self.identifier(
                codes.TRE_G07_TYPE_IDENTIFIANT_STRUCTURE,
                codes.G07_ID_NAT_STRUCT,
                codes.ID_NAT_STRUCT,
                "1" + finess,
            ),
            self.identifier(codes.TRE_G07_TYPE_IDENTIFIANT_STRUCTURE, codes.G07_FINESS, codes.FINESS, finess),
            self.identifier(codes.TRE_G07_TYPE_IDENTIFIANT_STRUCTURE, codes.G07_SIREN, codes.SIRENE, siren),
        ]
        ej["active"] = True
        ej["type"] = [
            {"coding": [self.lists.legal_statuses.coding(self.rng.choice(self.lists.legal_statuses.codes))]}
        ]
        ej["name"] = f"Groupe hospitalier {self.rng.choice(_WORDS)} {n}"
        ej["address"] = [self.address()]
        ej["_siren"] = siren  # generation scratch, removed in finish()
        return ej, tree

    def make_eg(self, ej: dict[str, Any], tree: _Tree, n_ej: int, n_eg: int, n_offers: int) -> None:
        eg = self.start("Organization", tree)
        finess = self.unique_number(tree.dept, 9)
        siret = self.unique_number(ej["_siren"], 14)
        eg["identifier"] = [
            {"use": "official"}
            | self.identifier(
                codes.TRE_G07_TYPE_IDENTIFIANT_STRUCTURE,
                codes.G07_ID_NAT_STRUCT,
                codes.ID_NAT_STRUCT,
                "1" + finess,
            ),
            self.identifier(codes.TRE_G07_TYPE_IDENTIFIANT_STRUCTURE, codes.G07_FINESS, codes.FINESS, finess),
            self.identifier(codes.TRE_G07_TYPE_IDENTIFIANT_STRUCTURE, codes.G07_SIRET, codes.SIRENE, siret),
        ]
        eg["active"] = True
        category = self.rng.choice(self.lists.eg_categories.codes)
        eg["type"] = [{"coding": [self.lists.eg_categories.coding(category)]}]
        word = self.rng.choice(_WORDS)
        eg["name"] = f"Site {word} {n_ej}-{n_eg}"
        eg["alias"] = [f"{word} {n_ej}-{n_eg}"]
        eg["address"] = [self.address()]
        eg["partOf"] = {"reference": f"Organization/{ej['id']}"}

        site_location: dict[str, Any] | None = None
        left = n_offers
        n_ue = 0
        while left > 0:
            if self.rng.random() < 0.12:
                # Some offers hang directly off the EG (providedBy → EG, ror-fhir-api.md §3).
                if site_location is None:
                    site_location = self.make_location(eg, eg, tree)
                self.make_offer(eg, eg, site_location, tree)
                left -= 1
                continue
            n_ue += 1
            parent = self.container(eg, tree, self.rng.choice(_CHAINS))
            ue = self.make_oi(parent, "4", tree, f"{eg['alias'][0]} {n_ue}")
            location = self.make_location(ue, eg, tree)
            for _ in range(min(left, self.rng.randint(1, 3))):
                self.make_offer(ue, eg, location, tree)
                left -= 1

    def container(self, eg: dict[str, Any], tree: _Tree, chain: tuple[str, ...]) -> dict[str, Any]:
        """Walk (reusing or creating) the internal organisations of `chain` below the EG."""
        current = eg
        for oi_type in chain:
            existing = [cid for code, cid in self.children.get(current["id"], []) if code == oi_type]
            if existing and self.rng.random() < 0.6:
                current = self.organizations[self.rng.choice(existing)]
            else:
                count = len(existing) + 1
                current = self.make_oi(current, oi_type, tree, f"{current['name']} {count}")
        return current

    def make_oi(self, parent: dict[str, Any], oi_type: str, tree: _Tree, label: str) -> dict[str, Any]:
        oi = self.start("Organization", tree)
        # [INFER] identifiantOI value format is not documented; a national serial, unique nationally.
        oi["identifier"] = [
            self.identifier(
                codes.TRE_R345_TYPE_IDENTIFIANT_AUTRE, codes.R345_OI, codes.OI, f"OI{self.next_serial():08d}"
            )
        ]
        oi["active"] = True
        type_code = next(c for c in self.lists.oi_types.codes if c.code == oi_type)
        oi["type"] = [{"coding": [self.lists.oi_types.coding(type_code)]}]
        oi["name"] = f"{_OI_LABEL[oi_type]} {label.removeprefix('Site ')}"
        oi["partOf"] = {"reference": f"Organization/{parent['id']}"}
        self.children.setdefault(parent["id"], []).append((oi_type, oi["id"]))
        return oi

    def make_location(self, unit: dict[str, Any], eg: dict[str, Any], tree: _Tree) -> dict[str, Any]:
        location = self.start("Location", tree)
        commune = self.rng.choice(self.lists.communes)
        location["extension"].append(
            {
                "url": codes.EXT_COMMUNE_COG,
                "valueCodeableConcept": {
                    "coding": [
                        {"system": codes.TRE_R13_COMMUNE, "code": commune.cog, "display": commune.name}
                    ]
                },
            }
        )
        # Location identifiers look like `<region>/<id>` (ror-fhir-api.md §3.3); the system is ours [INFER].
        location["identifier"] = [
            self.identifier(
                codes.TRE_R354_TYPE_IDENTIFIANT_RESSOURCE,
                codes.R354_ID_LOCATION,
                codes.LOCATION,
                f"{tree.region.code}/{self.next_serial()}",
            )
        ]
        location["name"] = f"Lieu {unit['name']}"
        function = self.rng.choice(self.lists.place_functions.codes)
        location["type"] = [{"coding": [self.lists.place_functions.coding(function)]}]
        location["address"] = {
            "use": "work",
            "line": [self.street()],
            "city": commune.name.upper(),
            "postalCode": commune.postal_code,
            "country": "FRA",
        }
        # Around the commune (Versailles 48.80 N, 2.13 E), rounded so the JSON stays short and stable.
        location["position"] = {
            "longitude": round(2.13 + self.rng.uniform(-0.05, 0.05), 5),
            "latitude": round(48.80 + self.rng.uniform(-0.05, 0.05), 5),
        }
        location["managingOrganization"] = {"reference": f"Organization/{eg['id']}"}
        return location

    def make_offer(
        self, provider: dict[str, Any], eg: dict[str, Any], location: dict[str, Any], tree: _Tree
    ) -> dict[str, Any]:
        lists = self.lists
        offer = self.start("HealthcareService", tree)
        low, high = self.rng.choice(_AGE_RANGES)
        offer["extension"] += [
            {
                "url": codes.EXT_PATIENT_TYPE,
                "extension": [
                    {
                        "url": "ageRange",
                        "valueRange": {
                            "low": {"value": low, "unit": "a", "system": codes.UCUM, "code": "a"},
                            "high": {"value": high, "unit": "a", "system": codes.UCUM, "code": "a"},
                        },
                    }
                ],
            },
            {"url": codes.EXT_SENSITIVE_UNIT, "valueBoolean": self.rng.random() < 0.05},
        ]
        offer["identifier"] = [{"system": codes.OFFER, "value": f"{tree.region.code}/{self.next_serial()}"}]
        offer["active"] = True
        offer["providedBy"] = {"reference": f"Organization/{provider['id']}"}
        champ = self.rng.choice(lists.champs.codes)
        offer["type"] = [{"coding": [lists.champs.coding(champ)]}]
        activity = self.rng.choice(lists.activities.codes)
        offer["specialty"] = [{"coding": [lists.activities.coding(activity)]}]
        offer["location"] = [{"reference": f"Location/{location['id']}"}]
        mode = self.rng.choice(lists.care_modes.codes)
        offer["name"] = f"{mode.display} — {activity.display or 'activité ' + activity.code}"
        characteristic: list[dict[str, Any]] = [{"coding": [lists.care_modes.coding(mode)]}]
        if self.rng.random() < 0.2:
            act = self.rng.choice(lists.acts.codes)
            characteristic.append(
                {
                    "extension": [{"url": codes.EXT_ACT_TYPE, "valueCode": "specificAct"}],
                    "coding": [lists.acts.coding(act)],
                }
            )
        offer["characteristic"] = characteristic
        if self.rng.random() < 0.07:
            # Closed offer: notAvailable[closingReopeningDate] (RORHealthcareService.fsh; description is 1..1
            # in FHIR R4), during.start = dateFermeture, during.end = datePrevisionnelleReouverture.
            closed = EPOCH + timedelta(days=self.rng.randrange(7 * 365))
            during: dict[str, str] = {"start": closed.date().isoformat()}
            if self.rng.random() < 0.5:
                during["end"] = (closed + timedelta(days=self.rng.randint(7, 400))).date().isoformat()
            offer["notAvailable"] = [
                {"id": "closingReopeningDate", "description": "Fermeture", "during": during}
            ]
        for _ in range(self.rng.choice((0, 1, 1, 2, 3))):
            self.make_role(offer, provider, tree)
        return offer

    def make_role(self, offer: dict[str, Any], provider: dict[str, Any], tree: _Tree) -> None:
        if tree.practitioners and self.rng.random() < 0.3:
            practitioner_id = self.rng.choice(tree.practitioners)
        else:
            practitioner_id = self.make_practitioner(tree)
        role = self.start("PractitionerRole", tree)
        role["extension"].append(
            {
                "url": codes.EXT_UNIT_EXERCISE_MODE,
                "valueCodeableConcept": {
                    "coding": [
                        self.lists.exercise_modes.coding(self.rng.choice(self.lists.exercise_modes.codes))
                    ]
                },
            }
        )
        role["active"] = True
        role["practitioner"] = {"reference": f"Practitioner/{practitioner_id}"}
        role["organization"] = {"reference": f"Organization/{provider['id']}"}
        role["code"] = [
            {"coding": [self.lists.professions.coding(self.rng.choice(self.lists.professions.codes))]}
        ]
        role["healthcareService"] = [{"reference": f"HealthcareService/{offer['id']}"}]

    def make_practitioner(self, tree: _Tree) -> str:
        practitioner = self.start("Practitioner", tree)
        given, gender = self.rng.choice(_GIVEN)
        practitioner["identifier"] = [{"system": codes.RPPS, "value": self.unique_number("1", 11)}]
        practitioner["active"] = True
        practitioner["name"] = [{"family": self.rng.choice(_FAMILY).upper(), "given": [given]}]
        practitioner["gender"] = gender
        tree.practitioners.append(practitioner["id"])
        return str(practitioner["id"])

    def finish(self) -> list[dict[str, Any]]:
        for resource in self.out:
            resource.pop("_siren", None)
        return self.out


def generate_dataset(scale: int, seed: int) -> Dataset:
    """A deterministic synthetic dataset with `scale` HealthcareService offers.

    Only `random.Random(seed)` and a fixed epoch feed it: the same seed and scale give byte-identical
    resources. Codes come from the real code lists under `data/`.
    """
    if scale < 0:
        raise ValueError("scale must be >= 0")
    # Millions of small dicts make the cyclic GC rescan the growing heap again and again (4x slower at
    # 20 000 offers); nothing here builds cycles, so collection is paused while building.
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        generator = _Generator(random.Random(seed), code_lists())
        generator.run(scale)
        return Dataset(generator.finish(), scale=scale, seed=seed)
    finally:
        if was_enabled:
            gc.enable()
