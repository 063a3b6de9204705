"""Every offer search parameter, `_filter`, `_sort` and truncation, over HTTP, against an oracle that reads
the served resources' JSON (never the dataset's arrays the search engine uses)."""

from __future__ import annotations

import math
from collections.abc import Callable
from datetime import datetime
from typing import Any

import httpx
import pytest

from bridge.simulator import vocab
from bridge.simulator.dataset import Dataset
from bridge.simulator.national_api import SimulatorConfig, create_simulator_app

from .conftest import BASE
from .test_search_http import keys, link, search_all

Offer = dict[str, Any]


@pytest.fixture(scope="module")
def offers(dataset: Dataset) -> list[Offer]:
    return list(dataset.resources["HealthcareService"].values())


def expected(offers: list[Offer], predicate: Callable[[Offer], bool]) -> list[str]:
    found = [o["id"] for o in offers if predicate(o)]
    assert found, "the oracle must select something, or the test proves nothing"
    return found


def codings(concepts: list[dict[str, Any]]) -> list[tuple[str, str]]:
    return [(c["system"], c["code"]) for concept in concepts for c in concept["coding"]]


def age_range(offer: Offer) -> tuple[float, float]:
    ext = next(e for e in offer["extension"] if e["url"] == vocab.EXT_PATIENT_TYPE)
    value = next(e for e in ext["extension"] if e["url"] == "ageRange")["valueRange"]
    return value["low"]["value"], value["high"]["value"]


async def matches(client: httpx.AsyncClient, params: Any) -> list[str]:
    ids, _ = await search_all(client, "/HealthcareService", params)
    return ids


async def test_specialty_with_and_without_system_comma_is_or(
    client: httpx.AsyncClient, offers: list[Offer]
) -> None:
    system = vocab.TRE_R211_ACTIVITE_OPERATIONNELLE
    first, second = sorted({code for o in offers for _, code in codings(o["specialty"])})[:2]
    want = expected(offers, lambda o: (system, first) in codings(o["specialty"]))
    assert await matches(client, {"specialty": f"{system}|{first}"}) == want
    assert await matches(client, {"specialty": first}) == want
    assert await matches(client, {"specialty": f"{vocab.TRE_R227_CHAMP_ACTIVITE}|{first}"}) == []
    either = expected(offers, lambda o: {c for _, c in codings(o["specialty"])} & {first, second} != set())
    assert await matches(client, {"specialty": f"{system}|{first},{system}|{second}"}) == either


async def test_characteristic_repeat_is_and_comma_is_or(
    client: httpx.AsyncClient, offers: list[Offer]
) -> None:
    with_act = next(o for o in offers if len(o["characteristic"]) >= 2)
    (mode_sys, mode), *rest = codings(with_act["characteristic"])
    other_sys, other = rest[0]
    both = expected(
        offers,
        lambda o: {(mode_sys, mode), (other_sys, other)} <= set(codings(o["characteristic"])),
    )
    params = [("characteristic", f"{mode_sys}|{mode}"), ("characteristic", f"{other_sys}|{other}")]
    assert await matches(client, params) == both
    either = expected(
        offers, lambda o: {(mode_sys, mode), (other_sys, other)} & set(codings(o["characteristic"])) != set()
    )
    assert await matches(client, {"characteristic": f"{mode_sys}|{mode},{other_sys}|{other}"}) == either
    assert len(both) < len(either)


@pytest.mark.parametrize(
    ("param", "element", "system"),
    [
        ("service-type", "type", vocab.TRE_R227_CHAMP_ACTIVITE),
        ("service-category", "category", vocab.TRE_R244_CATEGORIE_ORGANISATION),
    ],
)
async def test_coded_elements(
    client: httpx.AsyncClient, offers: list[Offer], param: str, element: str, system: str
) -> None:
    code = next(c for o in offers for s, c in codings(o.get(element, [])) if s == system)
    want = expected(offers, lambda o: (system, code) in codings(o.get(element, [])))
    assert await matches(client, {param: f"{system}|{code}"}) == want
    assert len(want) < len(offers)


async def test_intervention_zone(client: httpx.AsyncClient, offers: list[Offer]) -> None:
    def zones(offer: Offer) -> list[str]:
        return [
            c["code"]
            for e in offer["extension"]
            if e["url"] == vocab.EXT_TERRITORIAL_DIVISION
            for sub in e["extension"]
            for c in sub["valueCodeableConcept"]["coding"]
        ]

    cog = next(z for o in offers for z in zones(o))
    want = expected(offers, lambda o: cog in zones(o))
    assert await matches(client, {"intervention-zone": f"{vocab.TRE_R13_COMMUNE}|{cog}"}) == want
    assert len(want) < len(offers)


async def test_age_range_filter_of_the_ans_examples(client: httpx.AsyncClient, offers: list[Offer]) -> None:
    """`_filter=(age-range-low le 35|…|a and age-range-high ge 35|…|a)` (ror-fhir-api.md §5 (D))."""
    want = expected(offers, lambda o: age_range(o)[0] <= 35 <= age_range(o)[1])
    query = "(age-range-low le 35|https://unitsofmeasure.org|a and age-range-high ge 35|https://unitsofmeasure.org|a)"
    assert await matches(client, {"_filter": query}) == want
    assert await matches(client, [("age-range-low", "le35"), ("age-range-high", "ge35")]) == want
    assert len(want) < len(offers)
    minors = expected(offers, lambda o: age_range(o)[1] < 18)
    assert await matches(client, {"age-range-high": "lt18|http://unitsofmeasure.org|a"}) == minors


async def test_name_starts_with_contains_and_exact(client: httpx.AsyncClient, offers: list[Offer]) -> None:
    name = offers[0]["name"]
    word = name.split(" — ")[1]
    assert await matches(client, {"name:exact": name}) == expected(offers, lambda o: o["name"] == name)
    prefix = name[:6].upper()  # case-insensitive
    want = expected(offers, lambda o: o["name"].casefold().startswith(prefix.casefold()))
    assert await matches(client, {"name": prefix}) == want
    contains = expected(offers, lambda o: word.casefold() in o["name"].casefold())
    assert await matches(client, {"name:contains": word.lower()}) == contains
    assert await matches(client, {"name": word}) != contains or all(
        o["name"].startswith(word) for o in offers
    )


async def test_location_chained_parameters(
    client: httpx.AsyncClient, dataset: Dataset, offers: list[Offer]
) -> None:
    def location(offer: Offer) -> dict[str, Any]:
        return dataset.resources["Location"][offer["location"][0]["reference"].removeprefix("Location/")]

    postal = location(offers[0])["address"]["postalCode"]
    assert await matches(client, {"location.address-postalcode": postal[:2]}) == [o["id"] for o in offers]
    assert await matches(client, {"location.address-postalcode": "00"}) == []
    cog = next(
        e["valueCodeableConcept"]["coding"][0]["code"]
        for e in location(offers[0])["extension"]
        if e["url"] == vocab.EXT_COMMUNE_COG
    )
    assert len(await matches(client, {"location.commune-cog": f"{vocab.TRE_R13_COMMUNE}|{cog}"})) == len(
        offers
    )
    assert await matches(client, {"location.commune-cog": f"{vocab.TRE_R13_COMMUNE}|00000"}) == []

    here = location(offers[0])["position"]

    def km(offer: Offer) -> float:
        there = location(offer)["position"]
        p1, p2 = math.radians(here["latitude"]), math.radians(there["latitude"])
        dl = math.radians(there["longitude"] - here["longitude"])
        h = math.sin((p2 - p1) / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
        return 2 * 6371.0 * math.asin(math.sqrt(h))

    near = expected(offers, lambda o: km(o) <= 2.5)
    assert await matches(client, {"location.near": f"{here['latitude']}|{here['longitude']}|2.5|km"}) == near
    assert await matches(client, {"location.near": f"{here['latitude']}|{here['longitude']}|2500|m"}) == near
    assert 0 < len(near) < len(offers)


async def test_location_search_by_place(client: httpx.AsyncClient, dataset: Dataset) -> None:
    """`Location?_filter=(address-postalcode eq "22" or "29")` shape (ror-fhir-api.md §5 (A))."""
    everything = list(dataset.ids("Location"))
    postal = dataset.resources["Location"][everything[0]]["address"]["postalCode"]
    ids, _ = await search_all(
        client, "/Location", {"_filter": f'(address-postalcode eq "22" or "{postal[:2]}")'}
    )
    assert ids == everything
    ids, _ = await search_all(client, "/Location", {"_filter": '(address-postalcode eq "22" or "29")'})
    assert ids == []


def org_chain(dataset: Dataset, offer: Offer) -> list[dict[str, Any]]:
    org_id = offer["providedBy"]["reference"].removeprefix("Organization/")
    return [dataset.resources["Organization"][i] for i in [org_id, *dataset.ancestors(org_id)]]


def instant(resource: dict[str, Any]) -> datetime:
    return datetime.fromisoformat(resource["meta"]["lastUpdated"])


async def test_organization_last_updated_above_and_the_delta_filter(
    client: httpx.AsyncClient, dataset: Dataset, offers: list[Offer]
) -> None:
    """The ANS delta: `_filter=(_lastUpdated ge X or organization._lastUpdated:above ge X)` (§5 (B))."""
    stamps = sorted(instant(o) for o in offers)
    since = stamps[len(stamps) * 3 // 4]
    value = since.isoformat(timespec="seconds")
    provider_only = expected(offers, lambda o: instant(org_chain(dataset, o)[0]) >= since)
    # Bare organization._lastUpdated is not on the national surface (`:above` only): refused.
    refused = await client.get("/HealthcareService", params={"organization._lastUpdated": f"ge{value}"})
    assert refused.status_code == 400
    chain = expected(offers, lambda o: any(instant(org) >= since for org in org_chain(dataset, o)))
    assert await matches(client, {"organization._lastUpdated:above": f"ge{value}"}) == chain
    assert len(provider_only) < len(chain) < len(offers)
    delta = expected(
        offers, lambda o: instant(o) >= since or any(instant(g) >= since for g in org_chain(dataset, o))
    )
    query = f"(_lastUpdated ge {value} or organization._lastUpdated:above ge {value})"
    assert await matches(client, {"_filter": query}) == delta
    assert len(chain) < len(delta)


async def test_filter_and_or_not_and_parentheses(client: httpx.AsyncClient, offers: list[Offer]) -> None:
    champ_sys = vocab.TRE_R227_CHAMP_ACTIVITE
    champ = offers[0]["type"][0]["coding"][0]["code"]
    region = offers[0]["meta"]["tag"][0]["code"]

    def champ_of(o: Offer) -> str:
        return str(o["type"][0]["coding"][0]["code"])

    def region_of(o: Offer) -> str:
        return str(o["meta"]["tag"][0]["code"])

    and_ = expected(offers, lambda o: champ_of(o) == champ and region_of(o) == region)
    assert (
        await matches(client, {"_filter": f"service-type eq {champ_sys}|{champ} and _tag eq {region}"})
        == and_
    )
    or_ = expected(offers, lambda o: champ_of(o) == champ or region_of(o) == region)
    assert (
        await matches(client, {"_filter": f"service-type eq {champ_sys}|{champ} or _tag eq {region}"}) == or_
    )
    not_ = expected(offers, lambda o: not (champ_of(o) == champ or region_of(o) == region))
    assert await matches(client, {"_filter": f"not (service-type eq {champ} or _tag eq {region})"}) == not_
    ne = expected(offers, lambda o: champ_of(o) != champ)
    assert await matches(client, {"_filter": f'service-type ne "{champ}"'}) == ne
    grouped = expected(
        offers, lambda o: region_of(o) == region and (champ_of(o) == champ or age_range(o)[0] >= 18)
    )
    query = f"_tag eq {region} and (service-type eq {champ} or age-range-low ge 18)"
    assert await matches(client, {"_filter": query}) == grouped
    # and binds tighter than or
    loose = expected(
        offers, lambda o: (region_of(o) == region and champ_of(o) == champ) or age_range(o)[0] >= 18
    )
    assert (
        await matches(
            client, {"_filter": f"_tag eq {region} and service-type eq {champ} or age-range-low ge 18"}
        )
        == loose
    )


@pytest.mark.parametrize("descending", [False, True])
async def test_sort_by_last_updated(client: httpx.AsyncClient, offers: list[Offer], descending: bool) -> None:
    ids, _ = await search_all(
        client, "/HealthcareService", {"_sort": "-_lastUpdated" if descending else "_lastUpdated"}
    )
    by_id = {o["id"]: o for o in offers}
    stamps = [instant(by_id[i]) for i in ids]
    assert sorted(ids) == sorted(by_id)
    assert stamps == sorted(stamps, reverse=descending)
    assert ids != [o["id"] for o in offers]


@pytest.mark.parametrize("rtype", ["Organization", "Location", "PractitionerRole", "Practitioner"])
async def test_tag_on_every_type(client: httpx.AsyncClient, dataset: Dataset, rtype: str) -> None:
    resources = list(dataset.resources[rtype].values())
    tag = resources[0]["meta"]["tag"][0]
    want = [r["id"] for r in resources if r["meta"]["tag"][0]["code"] == tag["code"]]
    ids, _ = await search_all(client, f"/{rtype}", {"_tag": f"{tag['system']}|{tag['code']}"})
    assert ids == want
    assert 0 < len(want) < len(resources)


async def test_lenient_mode_ignores_unknown_parameters_but_applies_known_ones(dataset: Dataset) -> None:
    app = create_simulator_app(SimulatorConfig(strict=False), dataset)
    offer = next(iter(dataset.resources["HealthcareService"].values()))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=BASE) as http:
        response = await http.get(
            "/HealthcareService", params={"family": "x", "name:unknown": "y", "_id": offer["id"]}
        )
    assert [rid for _, rid in keys(response.json())] == [offer["id"]]


# ---- truncation (contract A1) -------------------------------------------------------------------------


@pytest.mark.parametrize(("max_results", "count"), [(50, 20), (50, 50), (40, 200)])
async def test_truncation_serves_the_first_max_results_and_reports_the_real_total(
    dataset: Dataset, max_results: int, count: int
) -> None:
    app = create_simulator_app(SimulatorConfig(max_results=max_results), dataset)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=BASE) as http:
        ids, totals = await search_all(http, "/HealthcareService", {"_count": str(count)})
    assert ids == list(dataset.ids("HealthcareService"))[:max_results]
    assert set(totals) == {300}  # Bundle.total is the real number of matches, on every page


async def test_a_search_at_the_cap_exactly_is_whole(dataset: Dataset) -> None:
    app = create_simulator_app(SimulatorConfig(max_results=300), dataset)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=BASE) as http:
        bundle = (await http.get("/HealthcareService", params={"_count": "200"})).json()
        assert bundle["total"] == 300
        rest = (await http.get(str(link(bundle, "next")))).json()
    assert len(keys(rest, "match")) == 100
    assert link(rest, "next") is None


def capacity(location: dict[str, Any]) -> tuple[str, int] | None:
    ext = next((e for e in location["extension"] if e["url"] == vocab.EXT_SUPPORTED_CAPACITY), None)
    if ext is None:
        return None
    parts = {p["url"]: p for p in ext["extension"]}
    return parts["capacityStatus"]["valueCodeableConcept"]["coding"][0]["code"], parts["nbCapacity"][
        "valueInteger"
    ]


async def test_capacity_status_and_count_of_the_ig_scenario(
    client: httpx.AsyncClient, dataset: Dataset, offers: list[Offer]
) -> None:
    """`location.capacity-status=<R330>|02&location.nb-capacity=gt0` (IG scenario "lit disponible")."""

    def cap(offer: Offer) -> tuple[str, int] | None:
        return capacity(
            dataset.resources["Location"][offer["location"][0]["reference"].removeprefix("Location/")]
        )

    system = vocab.TRE_R330_STATUT_CAPACITE
    available = expected(offers, lambda o: (c := cap(o)) is not None and c[0] == "02" and c[1] > 0)
    params = [("location.capacity-status", f"{system}|02"), ("location.nb-capacity", "gt0")]
    assert await matches(client, params) == available
    closed = expected(offers, lambda o: (c := cap(o)) is not None and c[0] == "05")
    assert await matches(client, {"location.capacity-status": "05"}) == closed
    few = expected(offers, lambda o: (c := cap(o)) is not None and c[1] <= 10)
    assert await matches(client, {"location.nb-capacity": "le10"}) == few
    locations = list(dataset.resources["Location"].values())
    ids, _ = await search_all(client, "/Location", {"capacity-status": f"{system}|05"})
    assert ids == [loc["id"] for loc in locations if (c := capacity(loc)) is not None and c[0] == "05"]
    assert set(map(len, (available, closed, few))) != {len(offers)}


# ---- the other parameters the bridge emits (mappings/functions.yaml) -----------------------------------


async def test_organization_name_covers_name_and_alias(client: httpx.AsyncClient, dataset: Dataset) -> None:
    orgs = list(dataset.resources["Organization"].values())

    def texts(org: dict[str, Any]) -> list[str]:
        return [org["name"], *org.get("alias", [])]

    eg = next(o for o in orgs if o.get("alias"))
    alias_word = eg["alias"][0].split(" ")[-1]  # "n-m", in the EG's alias, name and its OIs' names
    contains = [o["id"] for o in orgs if any(alias_word in t for t in texts(o))]
    ids, _ = await search_all(client, "/Organization", {"name:contains": alias_word})
    assert ids == contains
    assert len(contains) < len(orgs)
    by_alias = [
        o["id"] for o in orgs if any(t.casefold().startswith(eg["alias"][0].casefold()) for t in texts(o))
    ]
    ids, _ = await search_all(client, "/Organization", {"name": eg["alias"][0].upper()})
    assert ids == by_alias
    assert eg["id"] in ids
    ids, _ = await search_all(client, "/Organization", {"name:exact": eg["name"]})
    assert ids == [eg["id"]]
    ids, _ = await search_all(client, "/Organization", {"name:exact": eg["name"].upper()})
    assert ids == []
    ids, _ = await search_all(client, "/Organization", {"name": "Groupe hospitalier"})
    assert ids == [o["id"] for o in orgs if o["name"].startswith("Groupe hospitalier")]


async def test_location_city_and_postal_code_modifiers(client: httpx.AsyncClient, dataset: Dataset) -> None:
    everything = list(dataset.ids("Location"))
    city = dataset.resources["Location"][everything[0]]["address"]["city"]
    for params in (
        {"address-city": city[:4].lower()},
        {"address-city:contains": city[2:6].lower()},
        {"address-city:exact": city},
        {"address-postalcode:contains": "800"},
        {"address-postalcode:exact": "78000"},
    ):
        ids, _ = await search_all(client, "/Location", params)
        assert ids == everything, params
    for params in (
        {"address-city:exact": city.lower()},
        {"address-city": city[2:6]},
        {"address-postalcode:contains": "999"},
    ):
        ids, _ = await search_all(client, "/Location", params)
        assert ids == [], params


async def test_near_insee_code_measures_from_the_commune(
    client: httpx.AsyncClient, dataset: Dataset, offers: list[Offer]
) -> None:
    commune = dataset.lists.communes[0]

    def km(offer: Offer) -> float:
        there = dataset.resources["Location"][offer["location"][0]["reference"].removeprefix("Location/")]
        lat, lon = there["position"]["latitude"], there["position"]["longitude"]
        p1, p2 = math.radians(commune.latitude), math.radians(lat)
        dl = math.radians(lon - commune.longitude)
        h = math.sin((p2 - p1) / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
        return 2 * 6371.0 * math.asin(math.sqrt(h))

    near = expected(offers, lambda o: km(o) <= 3)
    assert await matches(client, {"location.near-insee-code": f"{commune.cog}|3|km"}) == near
    assert 0 < len(near) < len(offers)
    assert await matches(client, {"location.near-insee-code": "44162|15|km"}) == []  # not a simulated commune


async def test_patient_type_is_accepted_and_matches_what_the_data_holds(client: httpx.AsyncClient) -> None:
    """No offer carries supportedPatientInfo (TRE_R239 has no code in the sources): nothing matches."""
    response = await client.get("/HealthcareService", params={"patient-type": "x|1"})
    assert response.status_code == 200
    assert response.json()["total"] == 0
