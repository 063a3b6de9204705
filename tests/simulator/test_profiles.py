"""Every generated resource against the ROR IG profiles: min cardinalities and fixed values read from the FSH
sources in ../shared/reference/fhir (profiles of ig-main, extensions of the 0.1 fork), and a parse with
fhir.resources R4B. Skipped when ../shared is absent (the project's own tests must not need it)."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import pytest
from fhir.resources.R4B import get_fhir_model_class

from bridge.simulator import vocab
from bridge.simulator.dataset import Dataset, generate_dataset

FHIR = Path(__file__).resolve().parents[3] / "shared" / "reference" / "fhir"
PROFILES = FHIR / "ig-main" / "input" / "fsh"
EXTENSIONS = FHIR / "ig-v0.1-fork-src" / "input" / "fsh" / "extensions"
pytestmark = pytest.mark.skipif(not PROFILES.is_dir(), reason="../shared/reference/fhir is not available")

Json = Any
Member = Callable[[Json], bool]


def _system(system: str) -> Member:
    return lambda v: any(c.get("system") == system for c in v.get("coding", []))


def _type_code(code: str) -> Member:
    return lambda v: any(c.get("code") == code for c in v.get("type", {}).get("coding", []))


def _region(v: Json) -> bool:
    return bool(v.get("system") == vocab.TRE_R30_REGION)


# Membership of the non-extension slices the profiles put rules on, from each slicing's discriminator
# (RORHealthcareService.fsh: characteristic and specialty by coding.system, the bound JDV's TRE per
# csd/nomenclatures-extract.md; notAvailable by id; ROROrganization.fsh identifiers by type code, TRE_G07 /
# TRE_R345 per the commented-out rules next to them; RORLocation.fsh identifiers by type code).
SLICES: dict[tuple[str, str], Member] = {
    **{
        (rtype, "meta.tag[codeRegion]"): _region
        for rtype in ("Organization", "HealthcareService", "Location", "PractitionerRole")
    },
    ("HealthcareService", "characteristic[careMode]"): _system(vocab.TRE_R213_MODE_PRISE_EN_CHARGE),
    ("HealthcareService", "characteristic[specificAct]"): lambda v: (
        _system(vocab.TRE_R210_ACTE_SPECIFIQUE)(v)
        and all(e.get("valueCode") != "outsideOfficeAct" for e in v.get("extension", []))
    ),
    ("HealthcareService", "characteristic[outsideOfficeAct]"): lambda v: any(
        e.get("valueCode") == "outsideOfficeAct" for e in v.get("extension", [])
    ),
    ("HealthcareService", "specialty[operationalActivity]"): _system(vocab.TRE_R211_ACTIVITE_OPERATIONNELLE),
    ("HealthcareService", "notAvailable[closingReopeningDate]"): lambda v: (
        v.get("id") == "closingReopeningDate"
    ),
    ("Organization", "identifier[idNatSt]"): _type_code("40"),
    ("Organization", "identifier[finess]"): _type_code("1"),
    ("Organization", "identifier[sirene]"): _type_code("2"),
    ("Organization", "identifier[numSIRET]"): _type_code("3"),
    ("Organization", "identifier[rppsRang]"): _type_code("4"),
    ("Organization", "identifier[adeliRang]"): _type_code("0"),
    ("Organization", "identifier[identifierOI]"): _type_code("42"),
    ("Location", "identifier[idExterneSynchro]"): _type_code("26"),
    ("Location", "identifier[idLocation]"): _type_code("25"),
    ("PractitionerRole", "specialty[expertiseType]"): _system(vocab.TRE_R04_TYPE_SAVOIR_FAIRE),
}
# Deliberate deviations, each documented where the value is chosen: the SIRET system is the examples' https
# form while ROROrganization.fsh fixes http (docs/ror-fhir-api.md §7; bridge/simulator/vocab.py SIRENE).
# Sub-extensions whose code list has no code in the sources are left out rather than invented
# (bridge/simulator/data/README.md): the territorial division's type (TRE_R201) and four parts of the
# supported capacity (capacity type, temporality, source type, temporary assignment).
CAPACITY = vocab.EXT_SUPPORTED_CAPACITY
KNOWN_DEVIATIONS = {
    "Organization": {("Organization", "identifier[numSIRET].system", "fixed")},
    "HealthcareService": {(vocab.EXT_TERRITORIAL_DIVISION, "extension[typeTerritorialDivision]", "min")},
    "Location": {
        (CAPACITY, f"extension[{part}]", "min")
        for part in ("capacityType", "temporalityCapacity", "capacitySourceType", "temporaryAssignement")
    },
    "PractitionerRole": set(),
}


@dataclass(frozen=True)
class Rule:
    path: str  # FSH path: segments with optional [slice]
    min: int | None  # a cardinality rule
    fixed: Json = None  # or a fixed value (str, bool, or ("coding", system, code))


@dataclass(frozen=True)
class Profile:
    name: str  # resource type, or the extension's url
    rules: tuple[Rule, ...]
    extension_urls: dict[str, str]  # "path[slice]" of an extension slice → its url


@cache
def aliases() -> dict[str, str]:
    out: dict[str, str] = {}
    for file in [PROFILES / "aliases.fsh", *PROFILES.rglob("*.fsh"), *EXTENSIONS.parent.rglob("aliases.fsh")]:
        for match in re.finditer(r"^Alias:\s*(\S+)\s*=\s*(\S+)", file.read_text(encoding="utf-8"), re.M):
            out.setdefault(match[1], match[2])
    return out


@cache
def extension_ids() -> dict[str, str]:
    """Extension name → Id, over the extension definitions."""
    out: dict[str, str] = {}
    for file in EXTENSIONS.glob("*.fsh"):
        text = file.read_text(encoding="utf-8")
        name, ident = re.search(r"^Extension:\s*(\S+)", text, re.M), re.search(r"^Id:\s*(\S+)", text, re.M)
        if name and ident:
            out[name[1]] = ident[1]
    return out


def _value(text: str) -> Json:
    text = text.strip()
    quoted = re.match(r'"((?:[^"\\]|\\.)*)"', text)
    if quoted:
        return quoted[1]
    if text.startswith('"'):
        raise AssertionError(f"unterminated FSH string {text!r}")
    if text in ("true", "false"):
        return text == "true"
    code = re.match(r"(\$?[\w.:/-]*)#(\S+)", text)
    if code:
        system = aliases().get(code[1], code[1]) if code[1] else ""
        return ("coding", system, code[2])
    return text


def parse_fsh(text: str, name: str) -> Profile:
    rules: list[Rule] = []
    urls: dict[str, str] = {}
    lines = [re.sub(r"(^|\s)//.*$", "", line.rstrip()) for line in text.splitlines()]
    lines = re.sub(r"/\*.*?\*/", "", "\n".join(lines), flags=re.S).splitlines()
    i = 0
    while i < len(lines):
        line = lines[i]
        rule = re.match(r"^\* (\S+) (.*)$", line)
        i += 1
        if rule is None or rule[1].startswith("^"):  # `^…` rules describe the definition, not instances
            continue
        path, rest = rule[1], rule[2]
        if rest.startswith("contains"):
            entries = rest[len("contains") :]
            while (
                i < len(lines) and lines[i].startswith((" ", "\t")) and not lines[i].lstrip().startswith("*")
            ):
                entries += " " + lines[i].strip()
                i += 1
            for entry in re.split(r"\band\b", entries):
                found = re.match(r"\s*(\S+)(?:\s+named\s+(\S+))?\s+(\d+)\.\.(\S+)", entry)
                if found is None:
                    continue
                slice_name = found[2] or found[1]
                if found[2]:
                    # An extension defined outside the sources read here: its Id is taken as the slice name.
                    ext_id = extension_ids().get(found[1], found[2])
                    url = ext_id if "://" in ext_id else f"{vocab.IG_SD}/{ext_id}"
                    if ext_id == "organization-period":
                        url = vocab.EXT_ORGANIZATION_PERIOD
                    urls[f"{path}[{slice_name}]"] = url
                elif path.endswith("extension"):
                    urls[f"{path}[{slice_name}]"] = slice_name  # a sub-extension: its url is its name
                if int(found[3]) > 0:
                    rules.append(Rule(f"{path}[{slice_name}]", int(found[3])))
            continue
        card = re.match(r"(\d+)\.\.(\S+)", rest)
        if card:
            if int(card[1]) > 0:  # min 0 constrains nothing the test checks (max is not checked)
                rules.append(Rule(path, int(card[1])))
        elif rest.startswith("= "):
            rules.append(Rule(path, None, _value(rest[2:])))
    return Profile(name, tuple(rules), urls)


@cache
def profile(rtype: str) -> Profile:
    file = PROFILES / "profiles" / f"ROR{rtype}.fsh"
    return parse_fsh(file.read_text(encoding="utf-8"), rtype)


@cache
def extension_profiles() -> dict[str, Profile]:
    out: dict[str, Profile] = {}
    for file in EXTENSIONS.glob("*.fsh"):
        text = file.read_text(encoding="utf-8")
        ident = re.search(r"^Id:\s*(\S+)", text, re.M)
        if ident:
            url = f"{vocab.IG_SD}/{ident[1]}"
            out[url] = parse_fsh(text, url)
    return out


_SEGMENT = re.compile(r"([^.\[]+(?:\[x\])?)(?:\[([^\]]+)\])?")


def _segments(path: str) -> list[tuple[str, str | None]]:
    out = []
    for part in re.findall(r"[^.\[]+(?:\[[^\]]+\])*", path):
        match = _SEGMENT.fullmatch(part)
        assert match is not None, path
        element, slice_name = match[1], match[2]
        if element.endswith("[x]") or slice_name == "x":
            element, slice_name = element.removesuffix("[x]"), None
            element += "[x]"
        out.append((element, slice_name))
    return out


def _children(value: Json, element: str) -> list[Json]:
    if not isinstance(value, dict):
        return []
    if element.endswith("[x]"):
        stem = element.removesuffix("[x]")
        found = [v for k, v in value.items() if k.startswith(stem) and k[len(stem) : len(stem) + 1].isupper()]
    else:
        found = [value[element]] if element in value else []
    flat: list[Json] = []
    for item in found:
        flat += item if isinstance(item, list) else [item]
    return flat


def _select(owner: str, prof: Profile, values: list[Json], path: str, prefix: str = "") -> list[Json]:
    """The values at `path` below `values`; `prefix` is the FSH path of `values` (slice keys are full)."""
    done = prefix
    for element, slice_name in _segments(path):
        values = [child for v in values for child in _children(v, element)]
        done = f"{done}.{element}" if done else element
        if slice_name is not None:
            key = f"{done}[{slice_name}]"
            # An extension slice declared on the unsliced element (`characteristic.extension contains …`)
            # applies inside every slice of it.
            plain = re.sub(r"\[[^\]]+\]", "", done) + f"[{slice_name}]"
            if key in prof.extension_urls or plain in prof.extension_urls:
                url = prof.extension_urls.get(key) or prof.extension_urls[plain]
                values = [v for v in values if v.get("url") == url]
            else:
                member = SLICES.get((owner, key))
                if member is None:
                    raise AssertionError(f"{owner}: no membership rule for slice {key} (add it to SLICES)")
                values = [v for v in values if member(v)]
            done = key
    return values


def _fixed_ok(value: Json, fixed: Json) -> bool:
    if isinstance(fixed, tuple):
        _, system, code = fixed
        if isinstance(value, str):  # a code element: `….coding.code = $TRE#25`
            return bool(value == code)
        codings = value.get("coding", [value])
        return any(c.get("code") == code and (not system or c.get("system") == system) for c in codings)
    return bool(value == fixed)


def violations(owner: str, prof: Profile, resource: Json) -> Iterator[tuple[str, str, str]]:
    """(owner, path, kind) for each rule the resource breaks; extensions are checked against their own."""
    for rule in prof.rules:
        head, _, last = rule.path.rpartition(".")
        parents = _select(owner, prof, [resource], head) if head else [resource]
        for parent in parents:
            found = _select(owner, prof, [parent], last, head)
            if rule.min is not None and len(found) < rule.min:
                yield owner, rule.path, "min"
            if rule.min is None and any(not _fixed_ok(v, rule.fixed) for v in found):
                yield owner, rule.path, "fixed"
    for ext in _all_extensions(resource):
        ext_profile = extension_profiles().get(ext.get("url", ""))
        if ext_profile is not None:
            yield from violations(ext_profile.name, ext_profile, ext)


def _all_extensions(value: Json) -> Iterator[Json]:
    if isinstance(value, dict):
        for key, item in value.items():
            if key in ("extension", "modifierExtension"):
                yield from item
            else:
                yield from _all_extensions(item)
    elif isinstance(value, list):
        for item in value:
            yield from _all_extensions(item)


@pytest.fixture(scope="module")
def big() -> Dataset:
    return generate_dataset(1500, 23)


@pytest.mark.parametrize("rtype", ["Organization", "HealthcareService", "Location", "PractitionerRole"])
def test_every_resource_meets_its_profile(big: Dataset, rtype: str) -> None:
    prof = profile(rtype)
    assert any(r.min for r in prof.rules), "the FSH reader found no cardinality rule"
    broken: set[tuple[str, str, str]] = set()
    for resource in big.resources[rtype].values():
        broken |= set(violations(rtype, prof, resource))
    # Exactly the documented deviations: a new one fails, and a deviation fixed must leave the list.
    assert broken == KNOWN_DEVIATIONS[rtype]


def test_the_checker_catches_missing_and_wrong_values(big: Dataset) -> None:
    offer = big.build("HealthcareService", 0)
    prof = profile("HealthcareService")
    assert list(violations("HealthcareService", prof, offer)) == []
    broken = dict(
        offer,
        characteristic=[
            c
            for c in offer["characteristic"]
            if not SLICES[("HealthcareService", "characteristic[careMode]")](c)
        ],
    )
    assert ("HealthcareService", "characteristic[careMode]", "min") in set(
        violations("HealthcareService", prof, broken)
    )
    closed = dict(
        offer,
        notAvailable=[{"id": "closingReopeningDate", "description": "x", "during": {"start": "2020-01-01"}}],
    )
    assert ("HealthcareService", "notAvailable[closingReopeningDate].description", "fixed") in set(
        violations("HealthcareService", prof, closed)
    )
    ages = next(e for e in offer["extension"] if e["url"] == vocab.EXT_PATIENT_TYPE)
    no_low = dict(ages, extension=[{"url": "ageRange", "valueRange": {"high": {"value": 3}}}])
    others = [e for e in offer["extension"] if e["url"] != vocab.EXT_PATIENT_TYPE]
    found = set(violations("HealthcareService", prof, dict(offer, extension=[*others, no_low])))
    assert (vocab.EXT_PATIENT_TYPE, "extension[ageRange].value[x].low", "min") in found


def test_location_extensions_are_checked_against_their_definitions(big: Dataset) -> None:
    """Equipment (with its nested limit) and residential capacity are read from the extension definitions
    (RORLocationEquipment*.fsh, RORLocationResidentialCapacity.fsh): dropping a required part is caught."""
    for url in (
        vocab.EXT_EQUIPMENT,
        vocab.EXT_EQUIPMENT_LIMIT,
        vocab.EXT_RESIDENTIAL_CAPACITY,
    ):
        assert any(r.min for r in extension_profiles()[url].rules), url
    prof = profile("Location")
    location = next(
        loc
        for loc in big.resources["Location"].values()
        if {vocab.EXT_EQUIPMENT, vocab.EXT_RESIDENTIAL_CAPACITY} <= {e["url"] for e in loc["extension"]}
        and any(
            p["url"] == vocab.EXT_EQUIPMENT_LIMIT
            for e in loc["extension"]
            if e["url"] == vocab.EXT_EQUIPMENT
            for p in e["extension"]
        )
    )
    assert set(violations("Location", prof, location)) <= KNOWN_DEVIATIONS["Location"]

    def without(url: str, part: str) -> Json:
        def strip(ext: Json) -> Json:
            parts = [
                strip(p) for p in ext.get("extension", []) if not (ext["url"] == url and p["url"] == part)
            ]
            return dict(ext, extension=parts) if "extension" in ext else ext

        return dict(location, extension=[strip(e) for e in location["extension"]])

    for url, part in (
        (vocab.EXT_EQUIPMENT, "equipmentType"),
        (vocab.EXT_EQUIPMENT_LIMIT, "equipmentFeature"),
        (vocab.EXT_EQUIPMENT_LIMIT, "limitValue"),
        (vocab.EXT_RESIDENTIAL_CAPACITY, "residentialType"),
    ):
        assert (url, f"extension[{part}]", "min") in set(violations("Location", prof, without(url, part)))


def test_every_slice_the_ig_defines_for_locations_is_generated(big: Dataset) -> None:
    """The Location extensions the simulator has real codes for all occur (IG RORLocation.fsh)."""
    locations = list(big.resources["Location"].values())
    urls = {e["url"] for loc in locations for e in loc["extension"]}
    assert {
        vocab.EXT_CREATION_DATE,
        vocab.EXT_COMMUNE_COG,
        vocab.EXT_SUPPORTED_CAPACITY,
        vocab.EXT_EQUIPMENT,
        vocab.EXT_RESIDENTIAL_CAPACITY,
    } <= urls
    nested = {
        p["url"]
        for loc in locations
        for e in loc["extension"]
        if e["url"] == vocab.EXT_EQUIPMENT
        for p in e["extension"]
    }
    assert nested == {"equipmentType", "nbInService", vocab.EXT_EQUIPMENT_LIMIT}


@pytest.mark.parametrize(
    "rtype", ["Organization", "HealthcareService", "Location", "PractitionerRole", "Practitioner"]
)
def test_every_resource_parses_as_fhir_r4b(big: Dataset, rtype: str) -> None:
    model = get_fhir_model_class(rtype)
    for resource in big.resources[rtype].values():
        model.model_validate(resource)


def test_every_slice_the_ig_defines_for_offers_is_generated(big: Dataset) -> None:
    """The offer slices the simulator has real codes for all occur (IG RORHealthcareService.fsh)."""
    offers = list(big.resources["HealthcareService"].values())
    members = {
        key[1]: sum(
            1 for o in offers for c in o.get("characteristic", []) + o.get("specialty", []) if member(c)
        )
        for key, member in SLICES.items()
        if key[0] == "HealthcareService"
        and not key[1].startswith(("meta", "notAvailable", "characteristic[outside"))
    }
    assert all(members.values()), members
    urls = {e["url"] for o in offers for e in o["extension"]}
    assert {
        vocab.EXT_PATIENT_TYPE,
        vocab.EXT_SENSITIVE_UNIT,
        vocab.EXT_CREATION_DATE,
        vocab.EXT_TERRITORIAL_DIVISION,
    } <= urls
    assert any("notAvailable" in o for o in offers)
    assert any("category" in o for o in offers)
    assert all(o.get("availableTime") for o in offers)
    for system in (vocab.TRE_R338_MODALITE_ACCUEIL, vocab.TRE_R245_SPECIALISATION):
        assert any(_system(system)(c) for o in offers for c in o["characteristic"])
