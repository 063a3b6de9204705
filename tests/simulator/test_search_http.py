"""Search, read and metadata over HTTP against the simulator app (in-process ASGI transport)."""

from __future__ import annotations

from collections import Counter
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pytest
from fastapi import FastAPI
from fhir.resources.R4B.bundle import Bundle
from fhir.resources.R4B.capabilitystatement import CapabilityStatement
from fhir.resources.R4B.operationoutcome import OperationOutcome

from bridge.simulator import vocab
from bridge.simulator.dataset import Dataset, OrgKind
from bridge.simulator.national_api import SimulatorConfig, create_simulator_app

from .conftest import BASE

FHIR_JSON = "application/fhir+json;charset=utf-8"
INC = (
    ("_include", "HealthcareService:organization"),
    ("_include:iterate", "Organization:partof"),
    ("_include", "HealthcareService:location"),
    ("_revinclude", "PractitionerRole:service"),
    ("_include", "PractitionerRole:practitioner"),
)  # the ANS "offre complète" include set (ror-fhir-api.md §5)


def ident(resource: dict[str, Any], system: str) -> str:
    return next(str(i["value"]) for i in resource["identifier"] if i["system"] == system)


def keys(bundle: dict[str, Any], mode: str | None = None) -> list[tuple[str, str]]:
    return [
        (e["resource"]["resourceType"], e["resource"]["id"])
        for e in bundle.get("entry", [])
        if mode is None or e["search"]["mode"] == mode
    ]


def link(bundle: dict[str, Any], relation: str) -> str | None:
    return next((item["url"] for item in bundle["link"] if item["relation"] == relation), None)


def parent_of(dataset: Dataset, org_id: str) -> str | None:
    ref = dataset.resources["Organization"][org_id].get("partOf", {}).get("reference")
    return ref.removeprefix("Organization/") if ref else None


def offers_below(dataset: Dataset, org_id: str) -> set[str]:
    """Offers whose provider is `org_id` or below it, found by walking each offer's chain upwards."""
    found = set()
    for oid, offer in dataset.resources["HealthcareService"].items():
        current: str | None = offer["providedBy"]["reference"].removeprefix("Organization/")
        while current is not None:
            if current == org_id:
                found.add(oid)
                break
            current = parent_of(dataset, current)
    return found


async def search_all(client: httpx.AsyncClient, url: str, params: Any = None) -> tuple[list[str], list[int]]:
    """Follow next links to the end; the ids of the matches and the total of each page."""
    ids: list[str] = []
    totals: list[int] = []
    response = await client.get(url, params=params)
    while True:
        assert response.status_code == 200, response.text
        bundle = response.json()
        ids += [rid for _, rid in keys(bundle, "match")]
        totals.append(bundle["total"])
        next_url = link(bundle, "next")
        if next_url is None:
            return ids, totals
        response = await client.get(next_url)


def org_of_kind(dataset: Dataset, kind: OrgKind, *, with_offers: int = 2) -> str:
    return next(
        oid
        for oid in dataset.ids("Organization")
        if dataset.kind[oid] is kind and len(offers_below(dataset, oid)) >= with_offers
    )


def assert_outcome(response: httpx.Response, status: int, *needles: str) -> None:
    assert response.status_code == status
    assert response.headers["content-type"] == FHIR_JSON
    outcome = response.json()
    OperationOutcome.model_validate(outcome)
    for needle in needles:
        assert needle in outcome["issue"][0]["diagnostics"]


# ---- read and metadata ---------------------------------------------------------------------------------


async def test_read_returns_the_resource(client: httpx.AsyncClient, dataset: Dataset) -> None:
    oid = dataset.ids("HealthcareService")[5]
    response = await client.get(f"/HealthcareService/{oid}")
    assert response.status_code == 200
    assert response.headers["content-type"] == FHIR_JSON
    assert response.json() == dataset.resources["HealthcareService"][oid]


async def test_read_unknown_id_is_404(client: httpx.AsyncClient) -> None:
    assert_outcome(await client.get("/Organization/nope"), 404, "Organization/nope")


@pytest.mark.parametrize("path", ["/Patient/1", "/Patient"])
async def test_unknown_type_is_404(client: httpx.AsyncClient, path: str) -> None:
    assert_outcome(await client.get(path), 404, "Patient")


async def test_other_methods_answer_an_operation_outcome(client: httpx.AsyncClient) -> None:
    assert_outcome(await client.post("/Organization", json={}), 405)


async def test_metadata_is_a_capability_statement(client: httpx.AsyncClient) -> None:
    response = await client.get("/metadata")
    statement = response.json()
    CapabilityStatement.model_validate(statement)
    assert statement["implementation"]["url"] == BASE
    by_type = {r["type"]: r for r in statement["rest"][0]["resource"]}
    assert set(by_type) == {
        "Organization",
        "HealthcareService",
        "Location",
        "PractitionerRole",
        "Practitioner",
    }
    hs_params = {p["name"] for p in by_type["HealthcareService"]["searchParam"]}
    assert {
        "_id",
        "identifier",
        "organization.identifier:above",
        "_tag",
        "_lastUpdated",
        "_count",
    } <= hs_params
    assert "PractitionerRole:service" in by_type["HealthcareService"]["searchRevInclude"]


# ---- search parameters ---------------------------------------------------------------------------------


async def test_search_bundle_shape(client: httpx.AsyncClient, dataset: Dataset) -> None:
    response = await client.get("/Organization", params={"_count": "10"})
    assert response.headers["content-type"] == FHIR_JSON
    bundle = response.json()
    Bundle.model_validate(bundle)
    assert bundle["type"] == "searchset"
    assert bundle["total"] == dataset.counts()["Organization"]
    assert link(bundle, "self") == f"{BASE}/Organization?_count=10"
    for entry in bundle["entry"]:
        resource = entry["resource"]
        assert entry["fullUrl"] == f"{BASE}/Organization/{resource['id']}"
        assert entry["search"] == {"mode": "match"}


async def test_identifier_with_and_without_system(client: httpx.AsyncClient, dataset: Dataset) -> None:
    eg_id = org_of_kind(dataset, OrgKind.EG)
    finess = ident(dataset.resources["Organization"][eg_id], vocab.FINESS)
    for value in (finess, f"{vocab.FINESS}|{finess}"):
        bundle = (await client.get("/Organization", params={"identifier": value})).json()
        assert bundle["total"] == 1
        assert keys(bundle) == [("Organization", eg_id)]
    wrong_system = (
        await client.get("/Organization", params={"identifier": f"{vocab.SIRENE}|{finess}"})
    ).json()
    assert wrong_system["total"] == 0
    no_system = (await client.get("/Organization", params={"identifier": f"|{finess}"})).json()
    assert no_system["total"] == 0


async def test_identifier_comma_is_or_and_repeat_is_and(client: httpx.AsyncClient, dataset: Dataset) -> None:
    offers = [dataset.resources["HealthcareService"][i] for i in dataset.ids("HealthcareService")[:3]]
    values = [ident(o, vocab.OFFER) for o in offers]
    bundle = (await client.get("/HealthcareService", params={"identifier": ",".join(values)})).json()
    assert sorted(rid for _, rid in keys(bundle)) == sorted(o["id"] for o in offers)
    both = [("identifier", values[0]), ("identifier", values[1])]
    assert (await client.get("/HealthcareService", params=tuple(both))).json()["total"] == 0


async def test_identifier_with_system_only(client: httpx.AsyncClient, dataset: Dataset) -> None:
    bundle = (await client.get("/Organization", params={"identifier": f"{vocab.OI}|", "_count": "0"})).json()
    expected = sum(1 for kind in dataset.kind.values() if kind not in (OrgKind.EJ, OrgKind.EG))
    assert bundle["total"] == expected


async def test_search_by_id(client: httpx.AsyncClient, dataset: Dataset) -> None:
    ids = dataset.ids("Location")[:2]
    bundle = (await client.get("/Location", params={"_id": ",".join([*ids, "missing"])})).json()
    assert [rid for _, rid in keys(bundle)] == ids


@pytest.mark.parametrize(
    "kind", [OrgKind.EJ, OrgKind.EG, OrgKind.POLE, OrgKind.SERVICE, OrgKind.UF, OrgKind.UE]
)
async def test_organization_identifier_above_returns_the_subtree(
    client: httpx.AsyncClient, dataset: Dataset, kind: OrgKind
) -> None:
    org_id = org_of_kind(dataset, kind, with_offers=1)
    org = dataset.resources["Organization"][org_id]
    system = vocab.ID_NAT_STRUCT if kind in (OrgKind.EJ, OrgKind.EG) else vocab.OI
    expected = offers_below(dataset, org_id)
    for value in (ident(org, system), f"{system}|{ident(org, system)}"):
        ids, _ = await search_all(client, "/HealthcareService", {"organization.identifier:above": value})
        assert set(ids) == expected
        assert len(ids) == len(expected)


async def test_organization_identifier_above_by_finess_of_an_ej(
    client: httpx.AsyncClient, dataset: Dataset
) -> None:
    ej_id = org_of_kind(dataset, OrgKind.EJ)
    finess = ident(dataset.resources["Organization"][ej_id], vocab.FINESS)
    ids, _ = await search_all(client, "/HealthcareService", {"organization.identifier:above": finess})
    assert set(ids) == offers_below(dataset, ej_id)


async def test_organization_identifier_without_above_is_refused(
    client: httpx.AsyncClient, dataset: Dataset
) -> None:
    """The national API declares `organization.identifier:above` only (ror-serveur-prod): bare is a 400."""
    eg_id = org_of_kind(dataset, OrgKind.EG)
    value = ident(dataset.resources["Organization"][eg_id], vocab.ID_NAT_STRUCT)
    response = await client.get("/HealthcareService", params={"organization.identifier": value})
    assert response.status_code == 400
    assert response.json()["resourceType"] == "OperationOutcome"
    assert "organization.identifier" in response.json()["issue"][0]["diagnostics"]


async def test_tag_selects_a_source_region(client: httpx.AsyncClient, dataset: Dataset) -> None:
    regions = Counter(o["meta"]["tag"][0]["code"] for o in dataset.resources["HealthcareService"].values())
    region, expected = regions.most_common(1)[0]
    for value in (f"{vocab.TRE_R30_REGION}|{region}", region):
        bundle = (await client.get("/HealthcareService", params={"_tag": value, "_count": "0"})).json()
        assert bundle["total"] == expected
        assert "entry" not in bundle


def _updated(resource: dict[str, Any]) -> datetime:
    return datetime.fromisoformat(resource["meta"]["lastUpdated"])


@pytest.mark.parametrize(
    ("value", "predicate"),
    [
        ("ge2022", lambda t: t >= datetime(2022, 1, 1, tzinfo=ZoneInfo("Europe/Paris"))),
        ("lt2022", lambda t: t < datetime(2022, 1, 1, tzinfo=ZoneInfo("Europe/Paris"))),
        ("gt2022-06", lambda t: t >= datetime(2022, 7, 1, tzinfo=ZoneInfo("Europe/Paris"))),
        ("le2021-03-15", lambda t: t < datetime(2021, 3, 16, tzinfo=ZoneInfo("Europe/Paris"))),
        ("ge2023-05-01T10:00Z", lambda t: t >= datetime(2023, 5, 1, 10, 0, tzinfo=ZoneInfo("UTC"))),
        ("lt2020-01-01T00:00:00+01:00", lambda t: t < datetime(2020, 1, 1, tzinfo=ZoneInfo("Europe/Paris"))),
    ],
)
async def test_last_updated_prefixes_and_precisions(
    client: httpx.AsyncClient, dataset: Dataset, value: str, predicate: Any
) -> None:
    expected = sum(1 for o in dataset.resources["HealthcareService"].values() if predicate(_updated(o)))
    bundle = (await client.get("/HealthcareService", params={"_lastUpdated": value, "_count": "0"})).json()
    assert bundle["total"] == expected


async def test_last_updated_eq_and_range(client: httpx.AsyncClient, dataset: Dataset) -> None:
    offer = dataset.resources["HealthcareService"][dataset.ids("HealthcareService")[0]]
    day = offer["meta"]["lastUpdated"][:10]
    ids, _ = await search_all(client, "/HealthcareService", {"_lastUpdated": day})
    assert offer["id"] in ids
    assert all(dataset.resources["HealthcareService"][i]["meta"]["lastUpdated"][:10] == day for i in ids)
    ranged = [("_lastUpdated", "ge2021"), ("_lastUpdated", "lt2022"), ("_count", "0")]
    expected = sum(
        1 for o in dataset.resources["HealthcareService"].values() if o["meta"]["lastUpdated"][:4] == "2021"
    )
    assert (await client.get("/HealthcareService", params=tuple(ranged))).json()["total"] == expected


# ---- includes ------------------------------------------------------------------------------------------


async def test_complete_offer_includes_the_whole_chain(client: httpx.AsyncClient, dataset: Dataset) -> None:
    roles = dataset.resources["PractitionerRole"].values()
    offer_id = next(
        oid
        for oid in dataset.ids("HealthcareService")
        if any(r["healthcareService"][0]["reference"] == f"HealthcareService/{oid}" for r in roles)
        and len(
            dataset.ancestors(dataset.resources["HealthcareService"][oid]["providedBy"]["reference"][13:])
        )
        >= 2
    )
    offer = dataset.resources["HealthcareService"][offer_id]
    bundle = (
        await client.get("/HealthcareService", params=[("identifier", ident(offer, vocab.OFFER)), *INC])
    ).json()
    Bundle.model_validate(bundle)
    assert keys(bundle, "match") == [("HealthcareService", offer_id)]
    provider = offer["providedBy"]["reference"].removeprefix("Organization/")
    chain = [provider]
    while (parent := parent_of(dataset, chain[-1])) is not None:
        chain.append(parent)
    my_roles = [r for r in roles if r["healthcareService"][0]["reference"] == f"HealthcareService/{offer_id}"]
    expected = {("Organization", o) for o in chain}
    expected |= {("Location", ref["reference"].split("/")[1]) for ref in offer["location"]}
    expected |= {("PractitionerRole", r["id"]) for r in my_roles}
    expected |= {("Practitioner", r["practitioner"]["reference"].split("/")[1]) for r in my_roles}
    included = keys(bundle, "include")
    assert set(included) == expected
    assert len(included) == len(expected)
    assert dataset.kind[chain[-1]] is OrgKind.EJ


async def test_partof_without_iterate_does_not_climb(client: httpx.AsyncClient, dataset: Dataset) -> None:
    offer_id = next(
        oid
        for oid, o in dataset.resources["HealthcareService"].items()
        if dataset.kind[o["providedBy"]["reference"].removeprefix("Organization/")] is OrgKind.UE
    )
    params = [
        ("_id", offer_id),
        ("_include", "HealthcareService:organization"),
        ("_include", "Organization:partof"),
    ]
    bundle = (await client.get("/HealthcareService", params=tuple(params))).json()
    provider = dataset.resources["HealthcareService"][offer_id]["providedBy"]["reference"].split("/")[1]
    assert keys(bundle, "include") == [("Organization", provider)]


@pytest.mark.parametrize("modifier", ["iterate", "recurse"])
async def test_organization_partof_iterate_reaches_the_ej(
    client: httpx.AsyncClient, dataset: Dataset, modifier: str
) -> None:
    ue_id = max(
        (oid for oid, k in dataset.kind.items() if k is OrgKind.UE), key=lambda o: len(dataset.ancestors(o))
    )
    value = ident(dataset.resources["Organization"][ue_id], vocab.OI)
    params = {"identifier": value, f"_include:{modifier}": "Organization:partof"}
    bundle = (await client.get("/Organization", params=params)).json()
    assert keys(bundle, "match") == [("Organization", ue_id)]
    assert [rid for _, rid in keys(bundle, "include")] == dataset.ancestors(ue_id)
    one_step = (
        await client.get("/Organization", params={"identifier": value, "_include": "Organization:partof"})
    ).json()
    assert [rid for _, rid in keys(one_step, "include")] == dataset.ancestors(ue_id)[:1]


async def test_a_resource_appears_once_per_page(client: httpx.AsyncClient, dataset: Dataset) -> None:
    ej_id = org_of_kind(dataset, OrgKind.EJ, with_offers=5)
    value = ident(dataset.resources["Organization"][ej_id], vocab.ID_NAT_STRUCT)
    response = await client.get(
        "/HealthcareService", params=[("organization.identifier:above", value), ("_count", "3"), *INC]
    )
    while True:
        bundle = response.json()
        page = keys(bundle)
        assert len(page) == len(set(page))
        matches = [rid for _, rid in keys(bundle, "match")]
        providers = {dataset.resources["HealthcareService"][m]["providedBy"]["reference"] for m in matches}
        included_orgs = {f"Organization/{rid}" for t, rid in keys(bundle, "include") if t == "Organization"}
        assert providers <= included_orgs
        assert f"Organization/{ej_id}" in included_orgs
        next_url = link(bundle, "next")
        if next_url is None:
            break
        response = await client.get(next_url)


async def test_revinclude_on_location(client: httpx.AsyncClient, dataset: Dataset) -> None:
    location_id = dataset.ids("Location")[0]
    params = {"_id": location_id, "_revinclude": "HealthcareService:location"}
    bundle = (await client.get("/Location", params=params)).json()
    expected = {
        oid
        for oid, o in dataset.resources["HealthcareService"].items()
        if {"reference": f"Location/{location_id}"} in o["location"]
    }
    assert {rid for t, rid in keys(bundle, "include") if t == "HealthcareService"} == expected


# ---- errors and strictness -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("params", "needle"),
    [
        ({"family": "x"}, '"family"'),
        ({"name:missing": "x"}, ":missing"),
        ({"identifier:of-type": "x"}, "of-type"),
        ({"_include": "HealthcareService:specialty"}, "HealthcareService:specialty"),
        ({"_include": "*"}, "*"),
        ({"_count": "-1"}, "_count"),
        ({"_lastUpdated": "ge2022-13"}, "2022-13"),
        ({"_lastUpdated": "yesterday"}, "yesterday"),
        ({"_sort": "name"}, "_sort"),
        ({"_filter": "name eq"}, "_filter"),
        ({"_filter": "(service-type eq 01"}, "parentheses"),
        ({"_filter": "family eq x"}, '"family"'),
        ({"age-range-low": "le35|http://unitsofmeasure.org|mo"}, "age-range-low"),
        ({"location.near": "48.8|2.1|5|mi"}, "near"),
    ],
)
async def test_bad_searches_are_400(client: httpx.AsyncClient, params: dict[str, str], needle: str) -> None:
    assert_outcome(await client.get("/HealthcareService", params=params), 400, needle)


async def test_lenient_mode_ignores_unknown_parameters(dataset: Dataset) -> None:
    app = create_simulator_app(SimulatorConfig(strict=False), dataset)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=BASE) as http:
        response = await http.get("/Organization", params={"family": "x", "_count": "0"})
    assert response.status_code == 200
    assert response.json()["total"] == dataset.counts()["Organization"]


async def test_format_and_pretty_are_accepted(client: httpx.AsyncClient) -> None:
    response = await client.get("/Practitioner", params={"_format": "json", "_pretty": "true", "_count": "1"})
    assert response.status_code == 200


def test_page_sizes_are_checked(dataset: Dataset) -> None:
    with pytest.raises(ValueError, match="page sizes"):
        create_simulator_app(SimulatorConfig(page_size_default=300), dataset)


async def test_app_state_holds_the_dataset(app: FastAPI, dataset: Dataset) -> None:
    assert app.state.dataset is dataset


async def test_metadata_lists_exactly_the_parsers_parameters(client: httpx.AsyncClient) -> None:
    """Every listed parameter is accepted, and a name the statement does not list is refused (strict)."""
    statement = (await client.get("/metadata")).json()
    assert statement["rest"][0]["operation"] == [
        {"name": "export", "definition": "http://hl7.org/fhir/uv/bulkdata/OperationDefinition/export"}
    ]
    samples = {"token": "x", "date": "ge2020", "string": "x", "quantity": "ge1", "number": "ge1"}
    special = {
        "_filter": "_id eq 1",
        "_sort": "_lastUpdated",
        "near": "48.8|2.1|5|km",
        "near-insee-code": "78646|5|km",
    }
    for resource in statement["rest"][0]["resource"]:
        names = {p["name"] for p in resource["searchParam"]}
        for param in resource["searchParam"]:
            name = param["name"]
            value = special.get(name.removeprefix("location.")) or samples.get(param["type"], "1")
            response = await client.get(f"/{resource['type']}", params={name: value, "_count": "0"})
            assert response.status_code == 200, (resource["type"], name, response.text)
        unlisted = "specialty" if "specialty" not in names else "family"
        assert (await client.get(f"/{resource['type']}", params={unlisted: "x"})).status_code == 400
