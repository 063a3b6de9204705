"""The national API's search surface, derived from the IG files, against the simulator and the mapping tables.

Which version: the national API runs ROR 3.2, whose server declaration is the IG's `ror-serveur-prod`
(HAPI FHIR 6.4.4, 2024-07-29; docs/ror-fhir-api.md §2.1), kept in ig-main as FSH. The compiled IG 0.1.0
`ror-serveur` CapabilityStatement and SearchParameters are read too: the production declaration holds every
0.1.0 parameter but two (checked below), and the 0.1.0 SearchParameters give the extension parameters' types.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from bridge.model import RequestParams
from bridge.simulator import vocab
from bridge.simulator.dataset import Dataset
from bridge.simulator.national_api import SimulatorConfig, create_simulator_app
from bridge.simulator.search import (
    NOT_SERVED,
    REVINCLUDE_DECLARED,
    REVINCLUDE_INFERRED,
    SEARCH_PARAMS,
)
from bridge.translate.delta import ORGANIZATION_CHAINS, feed_directories
from bridge.translate.feeds import (
    OFFERS_BELOW,
    back_params,
    chained_searches,
    completion_searches,
    tables_of,
)
from bridge.translate.loaders import load_mappings
from bridge.translate.plan import region_tags
from bridge.translate.resolvers import RESOLVERS
from bridge.translate.tables import FunctionSpec, Mappings

from .test_search_http import search_all

MAPPINGS = Path(__file__).resolve().parents[2] / "mappings"
PROD = Path("fhir/ig-main/input/fsh/instances/ror-serveur-prod.fsh")
IG_010 = Path("fhir/ig-0.1.0-compiled")
READ_TYPES = ("Organization", "HealthcareService", "Location", "PractitionerRole", "Practitioner")
RESULT = ("_include", "_include:iterate", "_revinclude", "_revinclude:iterate")
# Result parameters the IG documents for every search though no CapabilityStatement lists them: _count
# (RG_RECH_52, 200 per page by default) and _sort (ror-fhir-api.md §2.4, the IG's modifiers page).
DOCUMENTED = ("_count", "_sort")
STRING_MODIFIERS = (
    "contains",
    "exact",
)  # on string parameters (HAPI; `:contains` in the IG's modifiers page)


class Surface:
    """One server declaration: per resource type, the search parameters (name[:modifier] → type)."""

    def __init__(self, params: dict[str, dict[str, str]], include_all: set[str]) -> None:
        self.params = params
        self.include_all = include_all  # types with searchInclude "*"

    def declared(self, rtype: str) -> set[tuple[str, str]]:
        """(name, modifier) pairs the declaration lists as filters (result parameters apart)."""
        return {_split(n) for n in self.params.get(rtype, {}) if n not in RESULT}

    def allows(self, rtype: str, full_name: str) -> bool:
        name, modifier = _split(full_name)
        if full_name in DOCUMENTED:
            return True
        if name == "_include":
            return rtype in self.include_all and modifier in ("", "iterate")
        if name == "_revinclude":
            return full_name in self.params.get(rtype, {})
        if (name, modifier) in self.declared(rtype):
            return True
        return modifier in STRING_MODIFIERS and self.params.get(rtype, {}).get(name) == "string"


def _split(full_name: str) -> tuple[str, str]:
    name, _, modifier = full_name.partition(":")
    return name, modifier


def production(reference: Path) -> Surface:
    """ror-serveur-prod.fsh: `rest.resource[..].type`, `.searchInclude`, `.searchParam[..].name/.type`."""
    params: dict[str, dict[str, str]] = {}
    include_all: set[str] = set()
    rtype = name = ""
    for line in (reference / PROD).read_text(encoding="utf-8").splitlines():
        if m := re.fullmatch(r"\* rest\.resource\[[^\]]*\]\.type = #(\w+)", line.strip()):
            rtype = m[1]
            params[rtype] = {}
        elif m := re.fullmatch(r'\* rest\.resource\[=\]\.searchInclude = "\*"', line.strip()):
            include_all.add(rtype)
        elif m := re.fullmatch(
            r'\* rest\.resource\[=\]\.searchParam\[[^\]]*\]\.name = "([^"]+)"', line.strip()
        ):
            name = m[1]
        elif m := re.fullmatch(r"\* rest\.resource\[=\]\.searchParam\[=\]\.type = #(\w+)", line.strip()):
            params[rtype][name] = m[1]
    return Surface(params, include_all)


@pytest.fixture(scope="module")
def prod(reference_dir: Path) -> Surface:
    return production(reference_dir)


def test_the_production_declaration_is_read_whole(prod: Surface) -> None:
    """A parse that missed lines would make every later check vacuous: the five types and their sizes."""
    assert set(READ_TYPES) <= set(prod.params)
    assert prod.include_all >= set(READ_TYPES)
    assert "organization.identifier:above" in prod.params["HealthcareService"]
    assert "service-type" in prod.params["HealthcareService"]
    assert "type" not in prod.params["HealthcareService"]
    assert len(prod.declared("Location")) > 25
    assert prod.declared("PractitionerRole") == {("_id", ""), ("_lastUpdated", ""), ("_tag", "")}


def test_production_holds_the_ig_010_server_parameters(reference_dir: Path, prod: Surface) -> None:
    """Every parameter of the IG 0.1.0 `ror-serveur` on the five types is declared in production, except
    HealthcareService `location` (production declares the `location.<param>` chains instead) and
    Organization `type` (production: only through `organization.type:above` on HealthcareService)."""
    statement = json.loads((reference_dir / IG_010 / "CapabilityStatement-ror-serveur.json").read_text())
    missing = {
        (r["type"], p["name"])
        for r in statement["rest"][0]["resource"]
        if r["type"] in READ_TYPES
        for p in r.get("searchParam", ())
        if p["name"] not in prod.params[r["type"]]
    }
    assert missing == {("HealthcareService", "location"), ("Organization", "type")}
    assert "location._id" in prod.params["HealthcareService"]
    assert "organization.type:above" in prod.params["HealthcareService"]


def test_ig_010_search_parameters_match_the_production_types(reference_dir: Path, prod: Surface) -> None:
    """The IG's own SearchParameters (code, base, type) agree with production where both name one, except the
    codes production renamed or retyped (0.1.0 `capacity-update` → `capacity-update-date`, `gender-capacity`
    → `gender-capacity-available`; `drop-zone` token → string)."""
    renamed = {"capacity-update": "capacity-update-date", "gender-capacity": "gender-capacity-available"}
    disagree = set()
    for path in sorted((reference_dir / IG_010).glob("SearchParameter-*.json")):
        sp = json.loads(path.read_text())
        for base in sp["base"]:
            code = renamed.get(sp["code"], sp["code"])
            declared = prod.params.get(base, {}).get(code)
            if declared is not None and declared != sp["type"]:
                disagree.add((base, code, sp["type"], declared))
    assert disagree == {("Organization", "drop-zone", "token", "string")}


def _served(rtype: str) -> set[tuple[str, str]]:
    return {(spec.name, m) for spec in SEARCH_PARAMS[rtype] for m in spec.modifiers}


@pytest.mark.parametrize("rtype", READ_TYPES)
def test_the_simulator_serves_only_the_national_surface(prod: Surface, rtype: str) -> None:
    outside = {
        f"{n}:{m}" if m else n for n, m in _served(rtype) if not prod.allows(rtype, f"{n}:{m}" if m else n)
    }
    assert outside == set(), f"{rtype}: served but not declared by the national API"


@pytest.mark.parametrize("rtype", READ_TYPES)
def test_the_simulator_serves_every_national_parameter_but_the_listed_ones(prod: Surface, rtype: str) -> None:
    declared = prod.declared(rtype)
    not_served = {_split(n) for n in NOT_SERVED.get(rtype, {})}
    assert not_served <= declared, "NOT_SERVED names a parameter the national API does not declare"
    assert not_served.isdisjoint(_served(rtype)), "NOT_SERVED names a parameter the simulator serves"
    assert declared - _served(rtype) == not_served


REVINCLUDES = ("_revinclude", "_revinclude:iterate")


@pytest.mark.parametrize("rtype", READ_TYPES)
def test_revinclude_is_served_where_the_national_api_declares_it(prod: Surface, rtype: str) -> None:
    declared = {name for name in REVINCLUDES if name in prod.params[rtype]}
    assert REVINCLUDE_DECLARED.get(rtype, frozenset()) == declared
    assert declared.isdisjoint(REVINCLUDE_INFERRED.get(rtype, {})), "an [INFER] exception that is declared"


@pytest.mark.parametrize(
    ("rtype", "params", "served"),
    [
        ("Organization", {"_revinclude:iterate": "Organization:partof"}, False),
        ("Organization", {"_revinclude": "Organization:partof"}, False),
        ("Location", {"_revinclude:iterate": "HealthcareService:location"}, False),
        ("Location", {"_revinclude": "HealthcareService:location"}, True),
        ("PractitionerRole", {"_revinclude": "PractitionerRole:practitioner"}, False),
        ("PractitionerRole", {"_revinclude:iterate": "PractitionerRole:practitioner"}, True),  # [INFER]
        ("Practitioner", {"_revinclude:iterate": "PractitionerRole:practitioner"}, False),
        ("HealthcareService", {"_revinclude:iterate": "PractitionerRole:service"}, True),
    ],
)
async def test_strict_mode_refuses_an_undeclared_revinclude(
    client: httpx.AsyncClient, dataset: Dataset, rtype: str, params: dict[str, str], served: bool
) -> None:
    response = await client.get(f"/{rtype}", params={"_count": "1", **params})
    if served:
        assert response.status_code == 200, response.text
    else:
        assert response.status_code == 400, response.text
        issue = response.json()["issue"][0]
        assert issue["code"] == "not-supported"
        assert f"not supported on {rtype}" in issue["diagnostics"]
    lenient = create_simulator_app(SimulatorConfig(strict=False), dataset)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=lenient), base_url="http://sim") as http:
        assert (await http.get(f"/{rtype}", params={"_count": "1", **params})).status_code == 200
    statement = (await client.get("/metadata")).json()
    (resource,) = [r for r in statement["rest"][0]["resource"] if r["type"] == rtype]
    assert bool(resource["searchRevInclude"]) == bool(
        REVINCLUDE_DECLARED.get(rtype, REVINCLUDE_INFERRED.get(rtype))
    )


async def test_metadata_names_are_national_and_the_rest_is_a_400(
    client: httpx.AsyncClient, prod: Surface
) -> None:
    statement = (await client.get("/metadata")).json()
    for resource in statement["rest"][0]["resource"]:
        rtype = resource["type"]
        names = {p["name"] for p in resource["searchParam"]}
        assert {n for n in names if not prod.allows(rtype, n)} == set()
        listed = {_split(n) for n in names} - {_split(n) for n in DOCUMENTED}
        assert listed == {
            (n, m) for n, m in _served(rtype) if m not in STRING_MODIFIERS or (n, "") not in _served(rtype)
        }
        for refused in [*NOT_SERVED.get(rtype, {}), "type" if rtype == "HealthcareService" else "family"]:
            response = await client.get(f"/{rtype}", params={refused: "1"})
            assert response.status_code == 400, (rtype, refused)
            assert response.json()["resourceType"] == "OperationOutcome"


# ------------------------------------------------------------------------------------------------------
# What the mapping tables send


def _queries(mappings: Mappings) -> Iterator[tuple[str, FunctionSpec]]:
    for spec in mappings.functions.values():
        yield spec.name, spec
    if mappings.modifications is not None:
        yield "modifications", mappings.modifications


_FILTER_PARAM = re.compile(r"([A-Za-z_][A-Za-z0-9_.:-]*)\s+(?:eq|ne|gt|lt|ge|le|sa|eb|co|sw|ew)\s")


def _sent(mappings: Mappings, spec: FunctionSpec) -> Iterator[tuple[str, str]]:
    """(resource type, parameter name) of every query the function can send, `_filter` contents included."""
    params = RequestParams(record_updated=datetime(2025, 1, 1, tzinfo=UTC))
    for query in spec.queries:
        for name, value in query.params:
            yield query.resource, name
            if name == "_filter":
                placeholder = re.fullmatch(r"\{(\w+)\}", value)
                text = (
                    str(RESOLVERS[placeholder[1]](params, mappings.identities, mappings.systems))
                    if placeholder
                    else value
                )
                for inner in _FILTER_PARAM.findall(text):
                    yield query.resource, inner
        # Every query may be scoped to a region (plan.region_tags), paged (_count) and windowed on
        # _lastUpdated by the client (fhir/client.py) beyond the 10 000-result cap.
        yield query.resource, "_tag"
        yield query.resource, "_count"
        yield query.resource, "_lastUpdated"
    if spec.delta is not None:
        # The includes derived from the entity tables (translate/feeds.py), then the completion searches by
        # _id (bridge/modifications.py): each entity with what its record reads, or the chains' organisations.
        directories = feed_directories(spec.delta, spec.directories)
        for query in spec.queries:
            for name, _ in back_params(mappings, directories, query.resource):
                yield query.resource, name
        for table in tables_of(mappings, spec.directories):
            yield table.resource, "_id"
            for params in completion_searches(table):
                for name, _ in params:
                    yield table.resource, name
            for search in chained_searches(table):
                yield search.resource, search.param
                for name, _ in search.includes:
                    yield search.resource, name
        yield "Organization", "_id"
        yield "Organization", "_include:iterate"
        if spec.delta == ORGANIZATION_CHAINS:  # the EG below a changed EJ, through their offers
            yield OFFERS_BELOW.resource, OFFERS_BELOW.param
            for name, _ in OFFERS_BELOW.includes:
                yield OFFERS_BELOW.resource, name


def test_the_filter_placeholders_are_read() -> None:
    mappings = load_mappings(MAPPINGS)
    spec = mappings.functions["urn:ror:csd:stored-function:establishment-offers"]
    sent = set(_sent(mappings, spec))
    assert ("HealthcareService", "organization._lastUpdated:above") in sent
    assert region_tags(mappings, None) is None


def test_every_query_of_the_tables_is_on_the_national_surface(prod: Surface) -> None:
    mappings = load_mappings(MAPPINGS)
    outside = {
        (function, rtype, name)
        for function, spec in _queries(mappings)
        for rtype, name in _sent(mappings, spec)
        if not prod.allows(rtype, name)
    }
    # [INFER] kept and documented in functions.yaml: a changed professional's situations come through
    # `Practitioner?_revinclude=PractitionerRole:practitioner`; production declares searchInclude `*` on
    # Practitioner but no `_revinclude` (HAPI answers it). No other declared parameter reaches them.
    inferred = {(f, "Practitioner", "_revinclude") for f in ("modifications", "establishments-updated-since")}
    # (TR-Notif finds the EG of a changed EJ through the offers below it, `organization._id:above`, not by
    # `Organization?_revinclude=Organization:partof`: production declares no `_revinclude` on Organization.)
    # [INFER] derived from the placement's tables (translate/feeds.py), HAPI answers it too: the other
    # situations of a professional (one provider per RPPS merges them) — production declares no `_revinclude`
    # on PractitionerRole. (The offers below an internal organisation, its typeActivity, come by the declared
    # `HealthcareService?organization._id:above=` instead: feeds.CHAINED.)
    inferred |= {
        ("modifications", "PractitionerRole", "_revinclude:iterate"),
        ("establishments-updated-since", "PractitionerRole", "_revinclude:iterate"),
    }
    assert outside == inferred
    # and exactly those the simulator still serves in strict mode beyond the declaration
    assert {(rtype, name) for _f, rtype, name in inferred} == {
        (rtype, name) for rtype, names in REVINCLUDE_INFERRED.items() for name in names
    }


def test_the_extraction_sends_the_offer_search_criteria(prod: Surface) -> None:
    from bridge.pipeline.extraction import extraction_plan, extraction_request

    mappings = load_mappings(MAPPINGS)
    request = extraction_request(mappings, "idf", (("champActivite", "01"), ("categorieOrganisation", "1")))
    plan = extraction_plan(mappings, request)
    names = [name for name, _ in plan.query.params]
    assert "service-type" in names
    assert [n for n in names if not prod.allows("HealthcareService", n)] == []
    for type_filter in plan.export.type_filters:
        rtype, _, query = type_filter.partition("?")
        for pair in query.split("&"):
            assert prod.allows(rtype, pair.partition("=")[0]), type_filter


# ------------------------------------------------------------------------------------------------------
# The parameters read from the rendered resources answer what the resources carry (an oracle of their own)


def _ext(node: dict[str, Any], url: str) -> list[dict[str, Any]]:
    return [e for e in node.get("extension", ()) if e.get("url") == url]


def _codes(value: dict[str, Any]) -> list[tuple[str, str]]:
    return [(c["system"], c["code"]) for c in value.get("coding", ())]


def _equipments(location: dict[str, Any]) -> list[dict[str, Any]]:
    return _ext(location, vocab.EXT_EQUIPMENT)


def _limits(location: dict[str, Any]) -> list[dict[str, Any]]:
    return [limit for e in _equipments(location) for limit in _ext(e, vocab.EXT_EQUIPMENT_LIMIT)]


ORACLES: dict[str, Any] = {
    "equipment-type": lambda loc: [
        c
        for e in _equipments(loc)
        for p in _ext(e, "equipmentType")
        for c in _codes(p["valueCodeableConcept"])
    ],
    "equipment-feature": lambda loc: [
        c
        for lim in _limits(loc)
        for p in _ext(lim, "equipmentFeature")
        for c in _codes(p["valueCodeableConcept"])
    ],
    "residential-type": lambda loc: [
        c
        for r in _ext(loc, vocab.EXT_RESIDENTIAL_CAPACITY)
        for p in _ext(r, "residentialType")
        for c in _codes(p["valueCodeableConcept"])
    ],
    "capacity-closing-type": lambda loc: [
        c
        for r in _ext(loc, vocab.EXT_SUPPORTED_CAPACITY)
        for p in _ext(r, "capacityClosingType")
        for c in _codes(p["valueCodeableConcept"])
    ],
    "type": lambda loc: [c for t in loc.get("type", ()) for c in _codes(t)],
}


@pytest.mark.parametrize("param", sorted(ORACLES))
async def test_rendered_token_parameters(client: httpx.AsyncClient, dataset: Dataset, param: str) -> None:
    locations = dataset.resources["Location"]
    carried = {lid: ORACLES[param](loc) for lid, loc in locations.items()}
    system, code = next(c for cs in carried.values() for c in cs)
    want = {lid for lid, cs in carried.items() if (system, code) in cs}
    assert 0 < len(want) < len(locations)
    for value in (f"{system}|{code}", code):
        ids, _ = await search_all(client, "/Location", {param: value})
        assert set(ids) == want, value
    # Chained from the offers (location.<param>): the offers given at those lieux.
    ids, _ = await search_all(client, "/HealthcareService", {f"location.{param}": f"{system}|{code}"})
    offers = dataset.resources["HealthcareService"]
    assert set(ids) == {
        oid
        for oid, o in offers.items()
        if any(ref["reference"].split("/")[1] in want for ref in o["location"])
    }


async def test_rendered_number_and_quantity_parameters(client: httpx.AsyncClient, dataset: Dataset) -> None:
    locations = dataset.resources["Location"]
    numbers = {
        lid: [
            p["valueInteger"]
            for r in _ext(loc, vocab.EXT_RESIDENTIAL_CAPACITY)
            for p in _ext(r, "residentialNumber")
        ]
        for lid, loc in locations.items()
    }
    want = {lid for lid, ns in numbers.items() if any(n >= 30 for n in ns)}
    assert 0 < len(want) < len(locations)
    ids, _ = await search_all(client, "/Location", {"residential-number": "ge30"})
    assert set(ids) == want
    limits = {
        lid: [p["valueQuantity"]["value"] for lim in _limits(loc) for p in _ext(lim, "limitValue")]
        for lid, loc in locations.items()
    }
    bound = sorted(v for vs in limits.values() for v in vs)[
        len([1 for vs in limits.values() for _ in vs]) // 2
    ]
    want = {lid for lid, vs in limits.items() if any(v <= bound for v in vs)}
    assert 0 < len(want) < len(locations)
    ids, _ = await search_all(client, "/Location", {"limit-value": f"le{bound}"})
    assert set(ids) == want


async def test_rendered_date_parameter(client: httpx.AsyncClient, dataset: Dataset) -> None:
    locations = dataset.resources["Location"]
    stamps = {
        lid: [
            datetime.fromisoformat(p["valueDateTime"])
            for r in _ext(loc, vocab.EXT_SUPPORTED_CAPACITY)
            for p in _ext(r, "capacityUpdateDate")
        ]
        for lid, loc in locations.items()
    }
    middle = sorted(s for ss in stamps.values() for s in ss)[len(locations) // 4]
    want = {lid for lid, ss in stamps.items() if any(s >= middle for s in ss)}
    assert 0 < len(want) < len(locations)
    ids, _ = await search_all(client, "/Location", {"capacity-update-date": f"ge{middle.isoformat()}"})
    assert set(ids) == want


async def test_practitioner_identifier_finds_the_offers_of_a_professional(
    client: httpx.AsyncClient, dataset: Dataset
) -> None:
    roles = dataset.resources["PractitionerRole"]
    practitioner_id = next(iter(roles.values()))["practitioner"]["reference"].split("/")[1]
    (rpps,) = dataset.resources["Practitioner"][practitioner_id]["identifier"]
    want = {
        r["healthcareService"][0]["reference"].split("/")[1]
        for r in roles.values()
        if r["practitioner"]["reference"] == f"Practitioner/{practitioner_id}"
    }
    ids, _ = await search_all(client, "/HealthcareService", {"practitioner.identifier": rpps["value"]})
    assert set(ids) == want


async def test_a_bad_value_of_a_rendered_parameter_is_a_400(client: httpx.AsyncClient) -> None:
    for params in ({"residential-number": "lots"}, {"capacity-update-date": "yesterday"}):
        response = await client.get("/Location", params=params)
        assert response.status_code == 400, params
        assert response.json()["resourceType"] == "OperationOutcome"


def test_every_recorded_golden_call_is_on_the_national_surface(prod: Surface) -> None:
    """The calls the bridge made in the golden cases (tests/golden/cases/*/calls.json, replayed exactly by
    test_golden_case) use only declared parameters, or one of the simulator's [INFER] `_revinclude`s."""
    from tests.golden.manifest import load_manifest

    outside = {
        (call["resource"], name)
        for case in load_manifest().cases
        for call in case.calls()
        for name, _ in call["params"]
        if not prod.allows(call["resource"], name)
    }
    inferred = {(rtype, name) for rtype, names in REVINCLUDE_INFERRED.items() for name in names}
    assert outside <= inferred, outside - inferred


async def test_a_professionals_situations_are_reachable_only_through_its_offers(
    client: httpx.AsyncClient, dataset: Dataset, prod: Surface
) -> None:
    """Why REVINCLUDE_INFERRED stays (mappings/README.md): production declares no way from a Practitioner
    to its PractitionerRoles (no `_revinclude`, no `_has` on Practitioner; no `practitioner` on
    PractitionerRole). The nearest declared route, `HealthcareService?practitioner.identifier=<RPPS>` with
    the offers' situations (`_revinclude=PractitionerRole:service`, declared on HealthcareService) and their
    professionals, does reach every situation (RORPractitionerRole.healthcareService is 1..1), but keyed by
    RPPS, not by id, and with the situations of every other professional of those offers."""
    assert not {"_revinclude", "_has"} & set(prod.params["Practitioner"])
    assert "practitioner" not in prod.params["PractitionerRole"]
    assert prod.allows("HealthcareService", "practitioner.identifier")
    counts: dict[int, int] = {}
    for practitioner in dataset.role_practitioner.tolist():
        counts[practitioner] = counts.get(practitioner, 0) + 1
    index = max(counts, key=lambda k: counts[k])
    practitioner_id = dataset.id_of("Practitioner", index)
    resource = dataset.get("Practitioner", practitioner_id)
    assert resource is not None
    rpps = resource["identifier"][0]["value"]
    params = {
        "practitioner.identifier": rpps,
        "_revinclude": "PractitionerRole:service",
        "_include:iterate": "PractitionerRole:practitioner",
        "_count": "200",
    }
    response = await client.get("/HealthcareService", params=params)
    assert response.status_code == 200, response.text
    roles = [
        e["resource"] for e in response.json()["entry"] if e["resource"]["resourceType"] == "PractitionerRole"
    ]
    own = {r["id"] for r in roles if r["practitioner"]["reference"] == f"Practitioner/{practitioner_id}"}
    expected = {
        dataset.id_of("PractitionerRole", i)
        for i, p in enumerate(dataset.role_practitioner.tolist())
        if p == index
    }
    assert own == expected
