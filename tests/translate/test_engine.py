"""FHIR results → CSD records for internal-organization, on the EJ, EG, OI and offer fixtures."""

from __future__ import annotations

import copy
import gc
import random
from collections.abc import Callable, Mapping
from dataclasses import replace
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest

from bridge.errors import MappingError
from bridge.model import (
    CodedType,
    CsdDocument,
    CsdRequest,
    Directory,
    Extension,
    ExtensionNode,
    Facility,
    FhirQuery,
    OtherID,
    QueryPlan,
    Record,
    RequestForm,
    RequestParams,
    SearchResult,
    Service,
    Transaction,
)
from bridge.simulator.dataset import generate_dataset
from bridge.translate import Mappings, from_fhir_results, to_fhir_plan
from bridge.translate.findings import Finding

from .conftest import FHIR, NOW, search_result

CASE = FHIR / "internal-organization"
CET = timezone(timedelta(hours=1))
CEST = timezone(timedelta(hours=2))
EXT = "urn:ror:csd:extension"
R30 = "https://mos.esante.gouv.fr/NOS/TRE_R30-RegionOM/FHIR/TRE-R30-RegionOM"
R244 = "https://mos.esante.gouv.fr/NOS/TRE_R244-CategorieOrganisation/FHIR/TRE-R244-CategorieOrganisation"
R240 = "https://mos.esante.gouv.fr/NOS/TRE_R240-TemporaliteAccueil/FHIR/TRE-R240-TemporaliteAccueil"
# their NOS OIDs (codes/systems.csv, from the NOS files of 2023-06-14)
R30_OID, R244_OID, R240_OID = "1.2.250.1.213.2.25", "1.2.250.1.213.3.3.39", "1.2.250.1.213.3.3.31"
REGION = Extension(
    "regionSource",
    EXT,
    ExtensionNode("regionSource", "Île-de-France", (("code", "11"), ("codingScheme", R30_OID))),
)


def plan_and_results(mappings: Mappings) -> tuple[QueryPlan, list[SearchResult]]:
    request = CsdRequest(
        Transaction.CARE_SERVICES,
        RequestForm.FUNCTION_URN_2014,
        function_urn="urn:ror:csd:stored-function:internal-organization",
        params=RequestParams(other_ids=(OtherID("OI-POLE-1", "https://oi.esante.gouv.fr"),)),
    )
    plan = to_fhir_plan(mappings, request)
    return plan, [
        search_result(plan.queries[0], CASE / "organization.json"),
        search_result(plan.queries[1], CASE / "healthcareservice.json"),
    ]


def answer(mappings: Mappings) -> CsdDocument:
    plan, results = plan_and_results(mappings)
    return from_fhir_results(mappings, plan, results, now=NOW)


def test_organisations_root_first_each_once(mappings: Mappings) -> None:
    # The profile's placement: EJ and EG are organisations; the internal organisations are facilities (below);
    # the v3 UE organisation OI-UE-1 (TRE_R207 #4) is not written, its offer OFFRE-1 is the UE.
    document = answer(mappings)
    assert [(o.entity_id, o.parent_id) for o in document.organizations] == [
        ("urn:ror:idnatstruct:2921317258", None),  # EJ
        ("urn:ror:idnatstruct:392131725800020", "urn:ror:idnatstruct:2921317258"),  # EG
    ]
    assert [s.entity_id for s in document.services] == ["urn:ror:offre:OFFRE-1", "urn:ror:offre:OFFRE-2"]
    # internal organisations root first (as the streamed extraction writes them), then the UEs
    assert [f.entity_id for f in document.facilities] == [
        "urn:ror:oi:OI-POLE-1",  # pôle (the one asked for)
        "urn:ror:oi:OI-SVC-1",  # service
        "urn:ror:oi:OI-UF-1",  # UF
        "urn:ror:oi:OI%20UE%2F2",  # an untyped internal organisation under the UF: an OI facility, not a UE
        "urn:ror:offre:OFFRE-1",  # UE (the offer)
        "urn:ror:offre:OFFRE-2",  # UE (the offer)
    ]
    assert list(document.providers) == []


def test_ej_and_eg(mappings: Mappings) -> None:
    ej, eg = answer(mappings).organizations[:2]
    assert [c.code for c in ej.coded_types] == ["72", "2200"]
    assert ej.other_ids == (
        OtherID("2921317258", "1.2.250.1.71.4.2.2"),
        OtherID("921317258", "1.3.2"),  # SIREN/SIRET as ANS's identifier rule expects
    )
    assert ej.record == Record(
        datetime(2019, 6, 1, tzinfo=CEST), datetime(2023, 12, 20, 10, tzinfo=CET), "Active"
    )
    assert eg.primary_name == "Clinique des Tilleuls"
    assert eg.other_names == ("Les Tilleuls",)
    assert eg.other_ids[1] == OtherID("920000123", "1.2.250.1.213.3.2")  # FINESS, as the profile writes it
    # The contact and its telecom: the v2.4 profile's organisationExtension/contact, no CSD contactPoint.
    assert eg.contact_points == ()
    (contact,) = [e.content for e in eg.extensions if e.profile and e.content and e.content.name == "contact"]
    assert contact is not None
    assert [c.name for c in contact.children] == ["nature", "confidentialityLevel", "contactPoint", "record"]
    level, point = contact.children[1], contact.children[2]
    assert level.attributes == (("code", "1"), ("codingScheme", "1.2.250.1.213.1.1.4.344"))  # [INFER] public
    channel, equipment, extension = point.children
    assert (channel.name, channel.attributes) == (
        "codedType",
        (("code", "2"), ("codingScheme", "1.2.250.1.213.3.3.1")),  # TRE_R200 téléphone fixe
    )
    assert (equipment.name, equipment.text) == ("equipment", "01 02 03 04 05")
    assert [c.name for c in extension.children] == ["confidentialityLevel", "record"]
    assert eg.addresses[0].type == "Practice"
    assert [line.component for line in eg.addresses[0].lines] == ["streetAddress", "city", "postalCode"]
    assert eg.record.status == "Active"  # organization-period has a start and no end


def parent_facility(facility: Facility) -> str | None:
    found = [e.content for e in facility.extensions if e.content and e.content.name == "parentFacility"]
    return dict(found[0].attributes)["entityID"] if found else None


def typed(facility: Facility, name: str) -> list[ExtensionNode]:
    return [e.content for e in facility.extensions if e.profile and e.content and e.content.name == name]


def test_internal_organisations_carry_their_tre_r207_type(mappings: Mappings) -> None:
    by_id = {f.entity_id: f for f in answer(mappings).facilities}
    for entity_id, code, parent in (
        ("OI-POLE-1", "1", None),  # right under its EG: no parent facility
        ("OI-SVC-1", "2", "urn:ror:oi:OI-POLE-1"),
        ("OI-UF-1", "3", "urn:ror:oi:OI-SVC-1"),
    ):
        facility = by_id[f"urn:ror:oi:{entity_id}"]
        assert [(c.code, c.coding_scheme) for c in facility.coded_types] == [(code, "1.2.250.1.213.3.3.8")]
        assert parent_facility(facility) == parent
        # the profile's required elements: the champs of the offers below, careMode "null", not sensitive
        assert [dict(n.attributes)["code"] for n in typed(facility, "typeActivity")] == ["01"]
        assert [dict(n.attributes)["code"] for n in typed(facility, "careMode")] == ["null"]
        assert [n.text for n in typed(facility, "sensitiveUnit")] == ["false"]
        # its identifier as the profile writes an OI's: <région source>/<identifiantOI>
        assert [o.code for o in facility.other_ids] == [f"11/{entity_id}"]


def test_unit_record_in_full(mappings: Mappings) -> None:
    # OFFRE-1 is provided by OI-UE-1 (a v3 UE organisation): the UE facility is the offer, its parent the UF.
    ue1 = next(f for f in answer(mappings).facilities if f.entity_id == "urn:ror:offre:OFFRE-1")
    assert ue1.coded_types == (CodedType("4", "1.2.250.1.213.3.3.8", "Unité élémentaire"),)
    assert ue1.primary_name == "Hospitalisation complète de neurologie"
    assert ue1.record == Record(
        datetime(2021, 5, 4, 10, tzinfo=CEST), datetime(2024, 3, 2, 8, 15, tzinfo=CET), "Active"
    )
    assert parent_facility(ue1) == "urn:ror:oi:OI-UF-1"
    codes = {
        n.name: dict(n.attributes).get("code")
        for e in ue1.extensions
        if e.profile and (n := e.content) is not None
    }
    assert codes == {
        "typeActivity": "01",
        "careMode": "28",
        "patientsType": None,
        "receptionType": "01",
        "facilityType": "11",  # v3 typeOffre 11 has no row in codes/type-offre.csv: written as received
        "parentFacility": None,
        "sensitiveUnit": None,
    }
    (patients,) = typed(ue1, "patientsType")
    ages = [(c.name, c.children[0].text) for c in patients.children if c.name.startswith("patientTypeAge")]
    assert ages == [("patientTypeAgeMin", "18"), ("patientTypeAgeMax", "120")]
    # its EG, with the offer's activity (the csd:service of the same entityID) as service
    (organization,) = ue1.organizations
    assert organization.entity_id == "urn:ror:idnatstruct:392131725800020"
    assert [s.entity_id for s in organization.services] == ["urn:ror:offre:OFFRE-1"]


def test_untyped_closed_unit_gets_kind_fallback_and_inactive(mappings: Mappings) -> None:
    ue2 = next(f for f in answer(mappings).facilities if f.entity_id == "urn:ror:oi:OI%20UE%2F2")
    assert ue2.coded_types == (CodedType("OI", "urn:ror:csd:organization-kind", "Organisation interne"),)
    assert ue2.record.status == "Inactive"  # ror-organization-closing-type present


def test_offer_record_in_full(mappings: Mappings) -> None:
    # csd:service is the activité opérationnelle only (the profile's service: codedType, one extension,
    # record); the offer's other attributes are its UE facility's (test_unit_record_in_full).
    offer = answer(mappings).services[0]
    assert offer == Service(
        entity_id="urn:ror:offre:OFFRE-1",
        coded_type=CodedType("183", "1.2.250.1.213.3.3.12", "Traitement neurochirurgical de la douleur"),
        record=Record(
            datetime(2021, 5, 4, 10, tzinfo=CEST), datetime(2024, 3, 2, 8, 15, tzinfo=CET), "Active"
        ),
    )


def test_offer_closed_and_not_reopened_is_inactive(mappings: Mappings) -> None:
    offer2 = answer(mappings).services[1]
    assert offer2.record.status == "Inactive"
    assert offer2.coded_type == CodedType("229", "1.2.250.1.213.3.3.12", "Neurologie")
    (family,) = [e.content for e in offer2.extensions if e.type == "serviceExtension"]
    assert family is not None
    assert family.name == "actFamily"  # the v2.4 profile's serviceExtension/actFamily (TRE_R266)


def test_codes_without_oid_are_written_and_reported(mappings: Mappings) -> None:
    answer(mappings)
    # R30 region tag, R244, R240: written as their NOS OIDs, nothing reported
    for system in (R30, R244, R240):
        assert mappings.findings.count(Finding.SYSTEM_WITHOUT_OID, system) == 0
    # the four internal organisations written (the v3 UE organisation is not)
    assert mappings.findings.count(Finding.IDENTIFIER_WITHOUT_OID, "https://oi.esante.gouv.fr") == 4
    assert mappings.findings.count(Finding.CODE_WITHOUT_CROSSWALK, f"type-offre: {R244}|11") == 2
    # loc-1 carries no ror-commune-cog: the UEs' location (cityNumber required) is left out, reported
    assert (
        mappings.findings.count(Finding.INCOMPLETE_TYPED_ELEMENT, "lieu without ror-commune-cog (cityNumber)")
        == 2
    )


def test_output_does_not_depend_on_input_order(mappings: Mappings) -> None:
    plan, results = plan_and_results(mappings)
    expected = from_fhir_results(mappings, plan, results, now=NOW)
    shuffled = list(reversed(results))
    for result in shuffled:
        random.Random(7).shuffle(result.matches)
        random.Random(7).shuffle(result.includes)
    again = from_fhir_results(mappings, plan, shuffled, now=NOW)
    assert list(again.organizations) == list(expected.organizations)
    assert list(again.services) == list(expected.services)


def test_parent_not_received_falls_back_on_fhir_id_and_is_reported(mappings: Mappings) -> None:
    plan, results = plan_and_results(mappings)
    for result in results:
        result.includes = [r for r in result.includes if r.get("id") != "ej-1"]
    document = from_fhir_results(mappings, plan, results, now=NOW)
    eg = next(o for o in document.organizations if o.entity_id == "urn:ror:idnatstruct:392131725800020")
    assert eg.parent_id == "urn:ror:fhir:Organization/ej-1"
    assert document.organizations[0] is eg  # now the root of what was received
    assert mappings.findings.count(Finding.UNRESOLVED_REFERENCE, "Organization/ej-1") >= 1


def test_only_the_plan_directories_are_filled(mappings: Mappings) -> None:
    plan, results = plan_and_results(mappings)
    organizations_only = QueryPlan(plan.function, plan.queries, frozenset({Directory.ORGANIZATION}))
    document = from_fhir_results(mappings, organizations_only, results, now=NOW)
    assert document.services == []
    assert document.facilities == []  # the internal organisations and UEs are facilities
    # the pôle asked for is no organisation: a match without entity of these directories joins nothing
    assert document.organizations == []


def test_offer_without_activite_operationnelle_is_a_mapping_error(mappings: Mappings) -> None:
    plan, results = plan_and_results(mappings)
    broken = copy.deepcopy(results[1].matches[0])
    broken["specialty"] = []
    results[1].matches = [broken]
    with pytest.raises(MappingError) as caught:
        from_fhir_results(mappings, plan, results, now=NOW)
    assert (caught.value.table, caught.value.rule) == ("entities/service.yaml", "coded-type")
    assert "specialty.coding" in caught.value.path


def test_resource_without_last_updated_is_a_mapping_error(mappings: Mappings) -> None:
    plan, results = plan_and_results(mappings)
    broken = copy.deepcopy(results[0].matches[0])
    del broken["meta"]["lastUpdated"]
    results[0].matches = [broken]
    with pytest.raises(MappingError) as caught:
        from_fhir_results(mappings, plan, results[:1], now=NOW)
    # the pôle is an internal organisation: the first of its rules that needs meta.lastUpdated fails
    assert caught.value.table == "entities/internal-organization.yaml"
    assert "meta.lastUpdated" in caught.value.reason
    assert "Organization/pole-1" in caught.value.reason


def test_default_now_is_the_current_time(mappings: Mappings) -> None:
    plan, results = plan_and_results(mappings)
    document = from_fhir_results(mappings, plan, results)
    # the offer closed on 2024-01-15 and never reopened stays closed today
    assert document.services[1].record.status == "Inactive"


def test_result_directory_names_the_parent_without_writing_it(mappings: Mappings) -> None:
    # An IHE search's result directory (functions.yaml `result`, organization-search): the included parent
    # gives the match's `parent` its national entityID, the same the parent has when it is written itself;
    # it is not an entity of the answer.
    plan, results = plan_and_results(mappings)
    received = {r["id"]: r for r in (*results[0].matches, *results[0].includes)}
    only_eg = [SearchResult(results[0].query, matches=[received["eg-1"]], includes=[received["ej-1"]])]
    written = from_fhir_results(mappings, plan, only_eg, now=NOW)
    resolve = replace(plan, result=Directory.ORGANIZATION)
    searched = from_fhir_results(mappings, resolve, only_eg, now=NOW)
    assert [o.entity_id for o in searched.organizations] == ["urn:ror:idnatstruct:392131725800020"]
    (eg,) = searched.organizations
    ej = next(o for o in written.organizations if o.entity_id == eg.parent_id)
    assert eg.parent_id == "urn:ror:idnatstruct:2921317258" == ej.entity_id
    # without the parent received, the reference falls back on the FHIR id (and is reported)
    alone = SearchResult(results[0].query, matches=[received["eg-1"]])
    (orphan,) = from_fhir_results(mappings, resolve, [alone], now=NOW).organizations
    assert orphan.parent_id == "urn:ror:fhir:Organization/ej-1"


def test_an_answer_leaves_no_cycle_for_the_collector(mappings: Mappings) -> None:
    """Everything one translation made is freed by reference counting alone: the per-answer memo of the
    transforms held contexts that held it (~2 100 objects per offer-search answer left to the collector)."""
    query = FhirQuery("Organization", (), "every resource")
    plan = QueryPlan("urn:test", (query,), frozenset(Directory))
    resources = list(generate_dataset(30, 3))
    results = [SearchResult(query=query, matches=resources, pages=1)]
    from_fhir_results(mappings, plan, results)  # caches and lazily built tables first
    gc.collect()
    gc.disable()
    try:
        document = from_fhir_results(mappings, plan, results)
        assert document.facilities
        del document
        unreachable = gc.collect()
    finally:
        gc.enable()
    assert unreachable == 0


def test_reverse_indexes_are_built_only_for_the_answers_that_read_them(
    mappings: Mappings, monkeypatch: pytest.MonkeyPatch
) -> None:
    # offers_below / offers_by_location walk every resource of the answer: only an answer whose tables read
    # them (an internal organisation's typeActivity and patientsType) pays for them, once (issue 13 item 4).
    from bridge.translate import engine, transforms

    built: list[str] = []

    def counting(name: str) -> Callable[[Mapping[str, Any]], dict[str, Any]]:
        real = getattr(transforms, name)

        def build(index: Mapping[str, Any]) -> dict[str, Any]:
            built.append(name)
            return dict(real(index))

        return build

    plan, results = plan_and_results(mappings)
    with monkeypatch.context() as eager:  # built with the answer's index, as the engine did before
        eager.setattr(engine, "ReverseIndex", lambda build, index: build(index))
        expected = from_fhir_results(mappings, plan, results, now=NOW)
    monkeypatch.setattr(engine, "offers_below", counting("offers_below"))
    monkeypatch.setattr(engine, "offers_by_location", counting("offers_by_location"))
    services_only = QueryPlan(plan.function, plan.queries, frozenset({Directory.SERVICE}))
    services = from_fhir_results(mappings, services_only, results, now=NOW)
    assert services.services
    assert built == []
    # the internal organisations (facilities) read the offers below them: built once for the whole answer
    whole = from_fhir_results(mappings, plan, results, now=NOW)
    assert built == ["offers_below"]
    assert whole.facilities
    assert whole == expected
