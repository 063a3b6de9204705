"""The synthetic dataset: determinism, ROR shape, identifiers, metadata, codes and FHIR R4 validity."""

from __future__ import annotations

import csv
from collections import Counter
from pathlib import Path
from typing import Any

import orjson
import pytest
from fhir.resources.R4B.healthcareservice import HealthcareService
from fhir.resources.R4B.location import Location
from fhir.resources.R4B.organization import Organization
from fhir.resources.R4B.practitioner import Practitioner
from fhir.resources.R4B.practitionerrole import PractitionerRole

from bridge.simulator import vocab
from bridge.simulator.dataset import (
    REFERENCE_PARAMS,
    Dataset,
    OrgKind,
    generate_dataset,
    luhn_key,
    references,
)

DATA = Path(__file__).resolve().parents[2] / "bridge" / "simulator" / "data"
MODELS: dict[str, Any] = {
    "Organization": Organization,
    "HealthcareService": HealthcareService,
    "Location": Location,
    "PractitionerRole": PractitionerRole,
    "Practitioner": Practitioner,
}


def data_codes(file: str, *, open_only: bool = False) -> set[str]:
    with (DATA / file).open(encoding="utf-8", newline="") as handle:
        return {r["code"] for r in csv.DictReader(handle) if not (open_only and r.get("closed") == "true")}


def codings(concepts: list[dict[str, Any]], system: str) -> list[str]:
    return [c["code"] for concept in concepts for c in concept.get("coding", []) if c["system"] == system]


def parent_of(resource: dict[str, Any]) -> str | None:
    ref = resource.get("partOf", {}).get("reference")
    return ref.removeprefix("Organization/") if ref else None


def chain(dataset: Dataset, org_id: str) -> list[str]:
    """The partOf chain from an organisation up to its root, read from the resources themselves."""
    out = [org_id]
    while (parent := parent_of(dataset.resources["Organization"][out[-1]])) is not None:
        out.append(parent)
    return out


def dump(dataset: Dataset) -> bytes:
    return orjson.dumps(list(dataset), option=orjson.OPT_SORT_KEYS)


def test_same_seed_and_scale_give_byte_identical_resources() -> None:
    assert dump(generate_dataset(120, 7)) == dump(generate_dataset(120, 7))


def test_another_seed_gives_other_resources() -> None:
    assert dump(generate_dataset(120, 7)) != dump(generate_dataset(120, 8))


@pytest.mark.parametrize("scale", [0, 1, 2, 50, 300])
def test_scale_is_the_number_of_offers(scale: int) -> None:
    assert generate_dataset(scale, 3).counts()["HealthcareService"] == scale


def test_negative_scale_is_refused() -> None:
    with pytest.raises(ValueError, match="scale"):
        generate_dataset(-1, 1)


def test_every_type_is_populated(dataset: Dataset) -> None:
    counts = dataset.counts()
    assert all(counts[t] > 0 for t in MODELS), counts


def test_ej_eg_and_internal_organisations(dataset: Dataset) -> None:
    orgs = dataset.resources["Organization"]
    kinds = Counter(dataset.kind.values())
    assert set(kinds) == set(OrgKind)
    for oid, org in orgs.items():
        kind = dataset.kind[oid]
        parent = parent_of(org)
        if kind is OrgKind.EJ:
            assert parent is None
            assert codings(org["type"], vocab.TRE_R72_STATUT_JURIDIQUE)
        elif kind is OrgKind.EG:
            assert parent is not None
            assert dataset.kind[parent] is OrgKind.EJ
            assert org["alias"]
            assert org["address"][0]["city"]
            assert org["address"][0]["postalCode"]
        else:
            assert parent is not None
            assert dataset.kind[parent] is not OrgKind.EJ  # an OI hangs under its EG (IG 0.6.0 note)
            assert [i["system"] for i in org["identifier"]] == [vocab.OI]


def test_every_unit_and_offer_reaches_an_ej(dataset: Dataset) -> None:
    for offer in dataset.resources["HealthcareService"].values():
        provider = offer["providedBy"]["reference"].removeprefix("Organization/")
        path = chain(dataset, provider)
        assert dataset.kind[path[-1]] is OrgKind.EJ
        assert dataset.kind[path[-2]] is OrgKind.EG
        assert dataset.kind[provider] in (OrgKind.UE, OrgKind.EG)


def test_hierarchy_depth_varies(dataset: Dataset) -> None:
    # Number of internal organisations between a UE and its EG: 0 (directly under the EG) up to 3.
    depths = Counter(len(chain(dataset, oid)) - 3 for oid, kind in dataset.kind.items() if kind is OrgKind.UE)
    assert {0, 1, 2, 3} <= set(depths), depths


def test_some_offers_hang_off_the_eg_and_most_off_a_ue(dataset: Dataset) -> None:
    providers = Counter(
        dataset.kind[o["providedBy"]["reference"].removeprefix("Organization/")]
        for o in dataset.resources["HealthcareService"].values()
    )
    assert providers[OrgKind.EG] > 0
    assert providers[OrgKind.UE] > providers[OrgKind.EG]


def test_identifiers_are_unique(dataset: Dataset) -> None:
    seen = Counter(
        (ident["system"], ident["value"]) for resource in dataset for ident in resource.get("identifier", [])
    )
    assert seen
    assert max(seen.values()) == 1


def test_structure_identifiers_follow_the_profiles(dataset: Dataset) -> None:
    for oid, org in dataset.resources["Organization"].items():
        by_system = {i["system"]: i for i in org["identifier"]}
        if dataset.kind[oid] in (OrgKind.EJ, OrgKind.EG):
            finess = by_system[vocab.FINESS]["value"]
            assert len(finess) == 9
            assert finess[-1] == luhn_key(finess[:-1])
            assert by_system[vocab.ID_NAT_STRUCT]["value"] == "1" + finess
            sirene = by_system[vocab.SIRENE]
            expected = ("2", 9) if dataset.kind[oid] is OrgKind.EJ else ("3", 14)
            assert (sirene["type"]["coding"][0]["code"], len(sirene["value"])) == expected
    for practitioner in dataset.resources["Practitioner"].values():
        (rpps,) = practitioner["identifier"]
        assert rpps["system"] == vocab.RPPS
        assert len(rpps["value"]) == 11
        assert rpps["value"][-1] == luhn_key(rpps["value"][:-1])
    for offer in dataset.resources["HealthcareService"].values():
        assert [i["system"] for i in offer["identifier"]] == [vocab.OFFER]


def test_every_resource_has_meta_and_creation_date(dataset: Dataset) -> None:
    regions = data_codes("tre_r30_region.csv")
    years = set()
    for resource in dataset:
        meta = resource["meta"]
        years.add(meta["lastUpdated"][:4])
        assert meta["profile"] == [vocab.PROFILE[resource["resourceType"]]]
        (tag,) = meta["tag"]
        assert tag["system"] == vocab.TRE_R30_REGION
        assert tag["code"] in regions
        creation = [e for e in resource["extension"] if e["url"] == vocab.EXT_CREATION_DATE]
        assert len(creation) == 1
    assert len(years) >= 5


def test_a_whole_ej_tree_shares_one_region(dataset: Dataset) -> None:
    def region(resource: dict[str, Any]) -> str:
        return str(resource["meta"]["tag"][0]["code"])

    for oid in dataset.resources["Organization"]:
        ej = chain(dataset, oid)[-1]
        assert region(dataset.resources["Organization"][oid]) == region(dataset.resources["Organization"][ej])
    for offer in dataset.resources["HealthcareService"].values():
        provider = dataset.get(*offer["providedBy"]["reference"].split("/"))
        assert provider is not None
        assert region(offer) == region(provider)


def test_codes_come_from_the_data_files(dataset: Dataset) -> None:
    oi_types = data_codes("tre_r207_type_organisation_interne.csv")
    for oid, org in dataset.resources["Organization"].items():
        kind = dataset.kind[oid]
        if kind is OrgKind.EJ:
            assert set(codings(org["type"], vocab.TRE_R72_STATUT_JURIDIQUE)) <= data_codes(
                "tre_r72_statut_juridique.csv"
            )
        elif kind is OrgKind.EG:
            eg_codes = codings(org["type"], vocab.TRE_R66_CATEGORIE_ETABLISSEMENT)
            assert eg_codes
            assert set(eg_codes) <= data_codes("tre_r66_categorie_etablissement.csv")
        else:
            assert codings(org["type"], vocab.TRE_R207_TYPE_OI) == [kind.value]
            assert kind.value in oi_types
    for offer in dataset.resources["HealthcareService"].values():
        assert set(codings(offer["type"], vocab.TRE_R227_CHAMP_ACTIVITE)) <= data_codes(
            "tre_r227_champ_activite.csv"
        )
        activity = codings(offer["specialty"], vocab.TRE_R211_ACTIVITE_OPERATIONNELLE)
        assert len(activity) == 1
        assert activity[0] in data_codes("tre_r211_activite_operationnelle.csv")
        modes = codings(offer["characteristic"], vocab.TRE_R213_MODE_PRISE_EN_CHARGE)
        assert len(modes) == 1
        assert modes[0] in data_codes("tre_r213_mode_prise_en_charge.csv", open_only=True)
        acts = codings(offer["characteristic"], vocab.TRE_R210_ACTE_SPECIFIQUE)
        assert set(acts) <= data_codes("tre_r210_acte_specifique.csv")
    for location in dataset.resources["Location"].values():
        (cog,) = [e for e in location["extension"] if e["url"] == vocab.EXT_COMMUNE_COG]
        assert codings([cog["valueCodeableConcept"]], vocab.TRE_R13_COMMUNE)[0] in data_codes(
            "tre_r13_commune.csv"
        )
        assert set(codings(location["type"], vocab.TRE_R343_FONCTION_LIEU)) <= data_codes(
            "tre_r343_fonction_lieu.csv"
        )
    for role in dataset.resources["PractitionerRole"].values():
        assert set(codings(role["code"], vocab.TRE_G15_PROFESSION_SANTE)) <= data_codes(
            "tre_g15_profession_sante.csv"
        )


def test_offer_extensions_and_closures(dataset: Dataset) -> None:
    closed = 0
    for offer in dataset.resources["HealthcareService"].values():
        urls = {e["url"] for e in offer["extension"]}
        assert {
            vocab.EXT_PATIENT_TYPE,
            vocab.EXT_SENSITIVE_UNIT,
            vocab.EXT_CREATION_DATE,
        } <= urls
        (patient,) = [e for e in offer["extension"] if e["url"] == vocab.EXT_PATIENT_TYPE]
        age = patient["extension"][0]["valueRange"]
        assert age["low"]["value"] <= age["high"]["value"]
        for item in offer.get("notAvailable", []):
            assert item["id"] == "closingReopeningDate"
            assert item["during"]["start"]
            closed += 1
        assert offer["location"]
    assert closed > 0


def _parts(extension: dict[str, Any]) -> dict[str, Any]:
    return {part["url"]: part for part in extension["extension"]}


def test_location_equipment_and_residential_capacity() -> None:
    """Équipement spécifique mostly on MCO sites, capacité d'habitation on médico-social / hébergement
    locations, with codes (and limits) from the data files (dataset.py EQUIPMENT_SHARE, RESIDENTIAL_SHARE)."""
    dataset = generate_dataset(2000, 3)
    with (DATA / "tre_r212_equipement.csv").open(encoding="utf-8", newline="") as handle:
        equipments = {row["code"]: row for row in csv.DictReader(handle)}
    offers = dataset.resources["HealthcareService"]
    champs_at: dict[str, set[str]] = {}
    modes_at: dict[str, set[str]] = {}
    for offer in offers.values():
        lieu = offer["location"][0]["reference"].partition("/")[2]
        champs_at.setdefault(lieu, set()).update(codings(offer["type"], vocab.TRE_R227_CHAMP_ACTIVITE))
        modes_at.setdefault(lieu, set()).update(
            codings(offer["characteristic"], vocab.TRE_R213_MODE_PRISE_EN_CHARGE)
        )
    placed: Counter[str] = Counter()
    equipped: Counter[bool] = Counter()
    limits = housed = 0
    for lid, location in dataset.resources["Location"].items():
        champs, modes = champs_at[lid], modes_at[lid]
        items = [e for e in location["extension"] if e["url"] == vocab.EXT_EQUIPMENT]
        equipped["01" in champs] += bool(items)
        types = [
            codings([_parts(e)["equipmentType"]["valueCodeableConcept"]], vocab.TRE_R212_EQUIPEMENT)
            for e in items
        ]
        assert all(len(t) == 1 for t in types)
        assert len({t[0] for t in types}) == len(types) <= 3
        for item, (code,) in zip(items, types, strict=True):
            parts = _parts(item)
            row = equipments[code]
            assert set(row["champs"].split()) & champs
            placed["MCO" if "01" in row["champs"].split() else "other"] += 1
            assert 1 <= parts.get("nbInService", {"valueInteger": 1})["valueInteger"] <= 4
            if vocab.EXT_EQUIPMENT_LIMIT in parts:
                limits += 1
                limit = _parts(parts[vocab.EXT_EQUIPMENT_LIMIT])
                feature = limit["equipmentFeature"]["valueCodeableConcept"]
                assert codings([feature], vocab.TRE_R340_TYPE_CARACTERISTIQUE_EQUIPEMENT) == [
                    row["limit_feature"]
                ]
                assert limit["limitValue"]["valueQuantity"] == {
                    "value": int(row["limit_value"]),
                    "unit": row["limit_unit"],
                    "system": vocab.UCUM,
                    "code": row["limit_unit"],
                }
        housing = [e for e in location["extension"] if e["url"] == vocab.EXT_RESIDENTIAL_CAPACITY]
        if housing:
            housed += 1
            assert "04" in champs or "46" in modes
        for item in housing:
            parts = _parts(item)
            kind = codings([parts["residentialType"]["valueCodeableConcept"]], vocab.TRE_R242_TYPE_HABITATION)
            assert kind
            assert set(kind) <= data_codes("tre_r242_type_habitation.csv")
            assert 1 <= parts.get("residentialNumber", {"valueInteger": 1})["valueInteger"] <= 60
    total = dataset.count("Location")
    assert placed["MCO"] > 2 * placed["other"] > 0
    assert limits > 0
    # about half the locations with an MCO offer hold equipment, far fewer of the others
    with_mco = sum(1 for c in champs_at.values() if "01" in c)
    assert 0.4 < equipped[True] / with_mco < 0.6
    assert equipped[False] / (total - with_mco) < 0.2
    assert 0.1 * total < housed < 0.5 * total


def test_references_resolve(dataset: Dataset) -> None:
    for resource in dataset:
        for key in ("providedBy", "partOf", "managingOrganization", "practitioner", "organization"):
            if key in resource:
                assert dataset.get(*resource[key]["reference"].split("/")) is not None
        for key in ("location", "healthcareService"):
            for ref in resource.get(key, []):
                assert dataset.get(*ref["reference"].split("/")) is not None
    for location in dataset.resources["Location"].values():
        manager = location["managingOrganization"]["reference"].removeprefix("Organization/")
        assert dataset.kind[manager] is OrgKind.EG


@pytest.mark.parametrize(("scale", "step"), [(1, 1), (50, 1), (500, 7)])
def test_resources_parse_as_fhir_r4(scale: int, step: int) -> None:
    resources = list(generate_dataset(scale, 11))
    for resource in resources[::step]:
        MODELS[resource["resourceType"]].model_validate(resource)


def test_index_lookups(dataset: Dataset) -> None:
    ej_id = next(oid for oid, kind in dataset.kind.items() if kind is OrgKind.EJ)
    ej = dataset.resources["Organization"][ej_id]
    finess = next(i["value"] for i in ej["identifier"] if i["system"] == vocab.FINESS)
    assert dataset.ids_by_identifier("Organization", vocab.FINESS, finess) == [ej_id]
    assert dataset.ids_by_identifier("Organization", None, finess) == [ej_id]
    assert ej_id in dataset.ids_by_identifier_system("Organization", vocab.FINESS)
    subtree = dataset.subtree(ej_id)
    assert subtree[0] == ej_id
    assert all(chain(dataset, oid)[-1] == ej_id for oid in subtree)
    assert all(dataset.ej_of(oid) == ej_id for oid in subtree)


# ---- the compact, on-demand store (issue 3 item 2) -----------------------------------------------------


def test_every_identifier_finds_its_resource_by_arithmetic(dataset: Dataset) -> None:
    """Each identifier value, with and without its system, leads back to exactly its resource."""
    checked = 0
    for resource in dataset:
        rtype, rid = resource["resourceType"], resource["id"]
        for ident in resource.get("identifier", []):
            assert dataset.ids_by_identifier(rtype, ident["system"], ident["value"]) == [rid]
            assert dataset.ids_by_identifier(rtype, None, ident["value"]) == [rid]
            checked += 1
    assert checked > 1000


@pytest.mark.parametrize(
    ("rtype", "system", "value"),
    [
        ("Organization", vocab.FINESS, "780000000"),
        ("Organization", vocab.FINESS, "not-a-number"),
        ("Organization", vocab.SIRENE, "12345678901234"),
        ("Organization", vocab.OI, "OI99999999"),
        ("HealthcareService", vocab.OFFER, "11/1"),
        ("HealthcareService", vocab.OFFER, "11/"),
        ("Location", vocab.LOCATION, "xx/12"),
        ("Practitioner", vocab.RPPS, "10000000000"),
        ("PractitionerRole", None, "anything"),
    ],
)
def test_unknown_identifiers_find_nothing(
    dataset: Dataset, rtype: str, system: str | None, value: str
) -> None:
    assert dataset.ids_by_identifier(rtype, system, value) == []


def test_reference_lookups_agree_with_the_resources(dataset: Dataset) -> None:
    """`referrers` (searches on the arrays) finds exactly the resources whose JSON holds the reference."""
    expected: dict[tuple[str, str, str], set[str]] = {}
    for (source, param), element in REFERENCE_PARAMS.items():
        for resource in dataset.resources[source].values():
            for ref in references(resource, element):
                expected.setdefault((source, param, ref), set()).add(resource["id"])
    assert len(expected) > 500
    for (source, param, ref), ids in expected.items():
        assert set(dataset.referrers(source, param, ref)) == ids, (source, param, ref)
    assert dataset.referrers("HealthcareService", "organization", "Organization/nope") == []


def test_subtrees_are_index_ranges_closed_under_part_of(dataset: Dataset) -> None:
    for oid in dataset.ids("Organization"):
        below = {o for o in dataset.ids("Organization") if oid in [o, *dataset.ancestors(o)]}
        assert set(dataset.subtree(oid)) == below


def test_last_updated_spreads_over_years_with_recent_bursts(dataset: Dataset) -> None:
    stamps = [r["meta"]["lastUpdated"] for r in dataset]
    years = Counter(s[:4] for s in stamps)
    assert len(years) >= 6
    days = Counter(s[:10] for s in stamps)
    busiest = days.most_common(6)
    # A burst day holds far more than an average day of the seven-year spread (about 1/2555 of the total).
    assert all(count > len(stamps) / 200 for _, count in busiest)
    assert all(day >= "2025-08" for day, _ in busiest)


def test_resources_are_built_on_demand_and_identical_each_time(dataset: Dataset) -> None:
    first = dataset.resources["HealthcareService"][dataset.ids("HealthcareService")[7]]
    again = dataset.resources["HealthcareService"][dataset.ids("HealthcareService")[7]]
    assert first == again
    assert first is not again  # nothing is kept: each read builds the resource anew
    assert "Organization/1" not in dataset.resources["Organization"]
    assert dataset.get("Organization", dataset.ids("HealthcareService")[0]) is None  # another type's id
