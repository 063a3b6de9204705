"""FHIR results → CSD records for internal-organization, on the EJ, EG, OI and offer fixtures."""

from __future__ import annotations

import copy
import random
from dataclasses import replace
from datetime import datetime, timedelta, timezone

import pytest

from bridge.errors import MappingError
from bridge.model import (
    CodedType,
    ContactPoint,
    CsdDocument,
    CsdRequest,
    Directory,
    Extension,
    ExtensionNode,
    OtherID,
    QueryPlan,
    Record,
    RequestForm,
    RequestParams,
    SearchResult,
    Service,
    Transaction,
)
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
    document = answer(mappings)
    assert [(o.entity_id, o.parent_id) for o in document.organizations] == [
        ("urn:ror:idnatstruct:2921317258", None),  # EJ
        ("urn:ror:idnatstruct:392131725800020", "urn:ror:idnatstruct:2921317258"),  # EG
        ("urn:ror:oi:OI-POLE-1", "urn:ror:idnatstruct:392131725800020"),  # pôle (the one asked for)
        ("urn:ror:oi:OI-SVC-1", "urn:ror:oi:OI-POLE-1"),  # service
        ("urn:ror:oi:OI-UF-1", "urn:ror:oi:OI-SVC-1"),  # UF
        ("urn:ror:oi:OI%20UE%2F2", "urn:ror:oi:OI-UF-1"),  # UE 2 (same depth: by entityID)
        ("urn:ror:oi:OI-UE-1", "urn:ror:oi:OI-UF-1"),  # UE 1
    ]
    assert [s.entity_id for s in document.services] == ["urn:ror:offre:OFFRE-1", "urn:ror:offre:OFFRE-2"]
    assert list(document.facilities) == []
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


def test_internal_organisations_carry_their_tre_r207_type(mappings: Mappings) -> None:
    by_id = {o.entity_id: o for o in answer(mappings).organizations}
    for entity_id, code in (("OI-POLE-1", "1"), ("OI-SVC-1", "2"), ("OI-UF-1", "3"), ("OI-UE-1", "4")):
        assert [(c.code, c.coding_scheme) for c in by_id[f"urn:ror:oi:{entity_id}"].coded_types] == [
            (code, "1.2.250.1.213.3.3.8")
        ]


def test_unit_record_in_full(mappings: Mappings) -> None:
    ue1 = answer(mappings).organizations[-1]
    assert ue1 == type(ue1)(
        entity_id="urn:ror:oi:OI-UE-1",
        coded_types=(CodedType("4", "1.2.250.1.213.3.3.8", "Unité élémentaire"),),
        primary_name="UE Hospitalisation complète de neurologie",
        record=Record(datetime(2020, 1, 15, 8, tzinfo=CET), datetime(2024, 3, 1, 9, tzinfo=CET), "Active"),
        other_ids=(OtherID("OI-UE-1", "https://oi.esante.gouv.fr"),),
        contact_points=(
            ContactPoint(
                CodedType("3", "1.2.250.1.213.3.3.1", "Courrier électronique"),
                equipment="neuro@tilleuls.mssante.fr",
            ),
        ),
        parent_id="urn:ror:oi:OI-UF-1",
        extensions=(REGION,),
    )


def test_untyped_closed_unit_gets_kind_fallback_and_inactive(mappings: Mappings) -> None:
    ue2 = answer(mappings).organizations[-2]
    assert ue2.coded_types == (CodedType("OI", "urn:ror:csd:organization-kind", "Organisation interne"),)
    assert ue2.record.status == "Inactive"  # ror-organization-closing-type present


def test_offer_record_in_full(mappings: Mappings) -> None:
    offer = answer(mappings).services[0]
    assert offer == Service(
        entity_id="urn:ror:offre:OFFRE-1",
        coded_type=CodedType("183", "1.2.250.1.213.3.3.12", "Traitement neurochirurgical de la douleur"),
        record=Record(
            datetime(2021, 5, 4, 10, tzinfo=CEST), datetime(2024, 3, 2, 8, 15, tzinfo=CET), "Active"
        ),
        extensions=(
            Extension("nomOffre", EXT, ExtensionNode("nomOffre", "Hospitalisation complète de neurologie")),
            Extension("identifiantOffre", EXT, ExtensionNode("identifiantOffre", "OFFRE-1")),
            Extension("organisation", EXT, ExtensionNode("organisation", "urn:ror:oi:OI-UE-1")),
            # the offer's Location carries no idLocation: FHIR-id fallback, reported
            Extension("lieu", EXT, ExtensionNode("lieu", "urn:ror:fhir:Location/loc-1")),
            Extension(
                "champActivite",
                EXT,
                ExtensionNode(
                    "champActivite",
                    "Médecine Chirurgie Obstétrique (MCO)",
                    (("code", "01"), ("codingScheme", "1.2.250.1.213.3.3.17")),
                ),
            ),
            Extension(
                "modePriseEnCharge",
                EXT,
                ExtensionNode(
                    "modePriseEnCharge",
                    "Hospitalisation complète (HC)",
                    (("code", "28"), ("codingScheme", "1.2.250.1.213.3.3.13")),
                ),
            ),
            Extension(  # v3 typeOffre 11 has no row in codes/type-offre.csv: written as received, reported
                "categorieOrganisation",
                EXT,
                ExtensionNode(
                    "categorieOrganisation",
                    "Unité d'hospitalisation",
                    (("code", "11"), ("codingScheme", R244_OID)),
                ),
            ),
            Extension(
                "temporaliteAccueil",
                EXT,
                ExtensionNode(
                    "temporaliteAccueil", "Permanent", (("code", "01"), ("codingScheme", R240_OID))
                ),
            ),
            Extension(
                "patientele",
                EXT,
                ExtensionNode(
                    "patientele",
                    children=(
                        ExtensionNode(
                            "ageRange",
                            children=(
                                ExtensionNode("low", children=(ExtensionNode("value", "18"),)),
                                ExtensionNode("high", children=(ExtensionNode("value", "120"),)),
                            ),
                        ),
                    ),
                ),
            ),
            Extension(
                "fermeture",
                EXT,
                ExtensionNode(
                    "fermeture",
                    children=(
                        ExtensionNode("description", "Fermeture"),
                        ExtensionNode(
                            "during",
                            children=(
                                ExtensionNode("start", "2023-08-01"),
                                ExtensionNode("end", "2023-08-31"),
                            ),
                        ),
                    ),
                ),
            ),
            REGION,
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
    assert mappings.findings.count(Finding.IDENTIFIER_WITHOUT_OID, "https://oi.esante.gouv.fr") == 5
    assert mappings.findings.count(Finding.CODE_WITHOUT_CROSSWALK, f"type-offre: {R244}|11") == 2
    # loc-1 is received but carries no idLocation: its FHIR-id entityID is reported
    assert mappings.findings.count(Finding.FHIR_ID_ENTITY, "Location") == 2


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
    # without the offers, only the pôle and its ancestors are answered
    assert [o.entity_id for o in document.organizations][-1] == "urn:ror:oi:OI-POLE-1"
    assert len(document.organizations) == 3


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
    assert (caught.value.table, caught.value.rule) == ("entities/organization.yaml", "record")
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
    only_organizations = [results[0]]
    written = from_fhir_results(mappings, plan, only_organizations, now=NOW)
    resolve = replace(plan, result=Directory.ORGANIZATION)
    searched = from_fhir_results(mappings, resolve, only_organizations, now=NOW)
    assert [o.entity_id for o in searched.organizations] == ["urn:ror:oi:OI-POLE-1"]
    (pole,) = searched.organizations
    eg = next(o for o in written.organizations if o.entity_id == pole.parent_id)
    assert pole.parent_id == "urn:ror:idnatstruct:392131725800020" == eg.entity_id
    # without the parent received, the reference falls back on the FHIR id (and is reported)
    alone = SearchResult(results[0].query, matches=list(results[0].matches))
    (orphan,) = from_fhir_results(mappings, resolve, [alone], now=NOW).organizations
    assert orphan.parent_id == "urn:ror:fhir:Organization/eg-1"
