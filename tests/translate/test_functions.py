"""The stored-function registry (functions.yaml): every function, its aliases, and the FHIR plan of each
parameter — sent to the national API when it can answer, left to the bridge (select.py) when it cannot."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime
from pathlib import Path

import pytest
import yaml

from bridge.errors import InvalidParameterError, MappingTableError, UnknownFunctionError
from bridge.model import (
    AddressLine,
    CodedType,
    CsdRequest,
    Directory,
    OtherID,
    QueryPlan,
    RequestForm,
    RequestParams,
    Transaction,
)
from bridge.shipped import shipped_dir
from bridge.translate import Mappings, load_mappings, to_fhir_plan

IHE = "urn:ihe:iti:csd:2014:stored-function:"
ROR = "urn:ror:csd:stored-function:"
R211 = "https://mos.esante.gouv.fr/NOS/TRE_R211-ActiviteOperationnelle/FHIR/TRE-R211-ActiviteOperationnelle"
R13 = "https://mos.esante.gouv.fr/NOS/TRE_R13-CommuneOM/FHIR/TRE-R13-CommuneOM"
R227 = "https://mos.esante.gouv.fr/NOS/TRE_R227-ChampActivite/FHIR/TRE-R227-ChampActivite"
R239 = "https://mos.esante.gouv.fr/NOS/TRE_R239-PublicPrisEnCharge/FHIR/TRE-R239-PublicPrisEnCharge"


def plan(mappings: Mappings, urn: str, **params: object) -> QueryPlan:
    request = CsdRequest(
        Transaction.CARE_SERVICES,
        RequestForm.FUNCTION_URN_2014,
        function_urn=urn,
        params=RequestParams(**params),  # type: ignore[arg-type]
    )
    return to_fhir_plan(mappings, request)


def filters(query_plan: QueryPlan, index: int = 0) -> list[tuple[str, str]]:
    """The query's parameters without the include set."""
    return [
        (k, v) for k, v in query_plan.queries[index].params if not k.startswith(("_include", "_revinclude"))
    ]


@pytest.mark.parametrize(
    ("alias", "canonical"),
    [
        ("urn:uuid:c7640530-f600-11e2-b778-0800200c9a66", IHE + "facility-search"),
        ("urn:uuid:dc6aedf0-f609-11e2-b778-0800200c9a66", IHE + "organization-search"),
        ("urn:uuid:4e8bbeb9-f5f5-11e2-b778-0800200c9a66", IHE + "provider-search"),
        ("urn:uuid:e3d8ecd0-f605-11e2-b778-0800200c9a66", IHE + "service-search"),
        (ROR + "offres-etablissement", ROR + "establishment-offers"),
        (ROR + "recherche-offre", ROR + "offer-search"),
        (ROR + "liste-etablissement-maj-apres-date", ROR + "establishments-updated-since"),
    ],
)
def test_2013_connectathon_ids_and_aliases_name_the_functions(
    mappings: Mappings, alias: str, canonical: str
) -> None:
    assert mappings.function(alias).urn == canonical


def test_every_ihe_search_accepts_its_ihe_parameters(mappings: Mappings) -> None:
    # csd-wire-format §4: the parameters each IHE definition lists.
    expected = {
        "facility-search": {"id", "otherID", "primaryName", "name", "codedType", "address", "organizations"},
        "organization-search": {"id", "primaryName", "name", "codedType", "address"},
        "provider-search": {"id", "otherID", "commonName", "codedType", "address"},
        "service-search": {"id", "codedType"},
    }
    common = {"record/@status", "record/@updated", "start", "max"}
    for name, own in expected.items():
        assert set(mappings.function(IHE + name).parameters) == own | common, name


def test_no_parameter_means_the_whole_directory(mappings: Mappings) -> None:
    query_plan = plan(mappings, IHE + "service-search")
    assert [(q.resource_type, q.params) for q in query_plan.queries] == [("HealthcareService", ())]
    assert query_plan.directories == frozenset({Directory.SERVICE})
    assert query_plan.limit is None


def test_facility_search_sends_what_location_search_answers(mappings: Mappings) -> None:
    query_plan = plan(
        mappings,
        IHE + "facility-search",
        other_ids=(OtherID("52/418", "https://ror.esante.gouv.fr/lieu"),),
        address_lines=(AddressLine("Versailles", "city"), AddressLine("78000", "postalCode")),
        record_updated=datetime(2024, 1, 2, 3, 4, 5, tzinfo=UTC),
        primary_name="Lieu",
    )
    assert filters(query_plan) == [
        ("identifier", "52/418"),
        ("address-city:contains", "Versailles"),
        ("address-postalcode:contains", "78000"),
        ("_lastUpdated", "ge2024-01-02T03:04:05Z"),
    ]
    assert ("_revinclude", "HealthcareService:location") in query_plan.queries[0].params
    assert query_plan.directories == frozenset({Directory.FACILITY, Directory.DEVICE})


def test_organization_search_by_name_and_entity_id(mappings: Mappings) -> None:
    by_name = plan(mappings, IHE + "organization-search", name="chu ", max=10)
    assert filters(by_name) == [("name:contains", "chu")]
    # name is re-checked by the bridge (FHIR name also covers alias), so every match must be fetched.
    assert by_name.limit is None
    by_id = plan(mappings, IHE + "organization-search", entity_id="urn:ror:finess:926159989", start=3, max=2)
    assert filters(by_id) == [("identifier", "926159989")]
    assert by_id.limit == 4  # start - 1 + max: answered upstream, so the first four matches are enough
    by_fhir_id = plan(mappings, IHE + "organization-search", entity_id="urn:ror:fhir:Organization/42")
    assert filters(by_fhir_id) == [("_id", "42")]


def test_an_entity_id_the_bridge_did_not_issue_is_refused(mappings: Mappings) -> None:
    with pytest.raises(InvalidParameterError, match="not issued by this bridge"):
        plan(mappings, IHE + "organization-search", entity_id="urn:uuid:1234")


def test_service_search_coded_type_by_oid_or_url(mappings: Mappings) -> None:
    for scheme in ("1.2.250.1.213.3.3.12", "urn:oid:1.2.250.1.213.3.3.12", R211):
        query_plan = plan(mappings, IHE + "service-search", coded_types=(CodedType("481", scheme),))
        assert filters(query_plan) == [("specialty", f"{R211}|481")], scheme
    unknown = plan(mappings, IHE + "service-search", coded_types=(CodedType("481", "9.9.9"),))
    assert filters(unknown) == []  # unknown scheme: not sent, checked by the bridge


def test_provider_search_leaves_names_and_rpps_to_the_bridge(mappings: Mappings) -> None:
    query_plan = plan(
        mappings,
        IHE + "provider-search",
        common_name="Moreau",
        other_ids=(OtherID("17320215274", "1.2.250.1.71.4.2.1"),),
    )
    assert filters(query_plan) == []
    assert set(mappings.function(IHE + "provider-search").bridge_filters) >= {"commonName", "otherID"}


def test_a_parameter_a_function_does_not_define_is_refused(mappings: Mappings) -> None:
    with pytest.raises(InvalidParameterError, match="does not accept commonName"):
        plan(mappings, IHE + "facility-search", common_name="x")
    with pytest.raises(InvalidParameterError, match="does not accept activity"):
        plan(mappings, ROR + "offer-search", extra=(("activity", "x"),))


def test_start_is_one_based(mappings: Mappings) -> None:
    with pytest.raises(InvalidParameterError, match="1-based"):
        plan(mappings, IHE + "service-search", start=0)
    assert plan(mappings, IHE + "service-search", max=-1).limit is None


@pytest.mark.parametrize(
    ("extra", "expected"),
    [
        ((("finess", "926159989"),), "926159989"),
        ((("idNatStruct", "1926159989"),), "1926159989"),
        ((("siret", "57368193925966"),), "57368193925966"),
    ],
)
def test_establishment_offers_by_finess_idnatstruct_or_siret(
    mappings: Mappings, extra: tuple[tuple[str, str], ...], expected: str
) -> None:
    query_plan = plan(mappings, ROR + "establishment-offers", extra=extra)
    assert query_plan.queries[0].params[0] == ("identifier", expected)
    assert query_plan.queries[1].params[0] == ("organization.identifier:above", expected)
    assert query_plan.directories == frozenset(Directory)


def test_establishment_offers_needs_exactly_one_identifier(mappings: Mappings) -> None:
    with pytest.raises(InvalidParameterError, match="exactly one"):
        plan(mappings, ROR + "establishment-offers", extra=(("finess", "1"), ("siret", "2")))
    with pytest.raises(InvalidParameterError, match="missing national identifier"):
        plan(mappings, ROR + "establishment-offers")
    by_other_id = plan(mappings, ROR + "establishment-offers", other_ids=(OtherID("926159989", "FINESS"),))
    assert by_other_id.queries[1].params[0] == ("organization.identifier:above", "926159989")


def test_offer_search_sends_every_criterion_upstream(mappings: Mappings) -> None:
    query_plan = plan(
        mappings,
        ROR + "offer-search",
        extra=(
            ("activiteOperationnelle", "481"),
            ("activiteOperationnelle", "055"),
            ("modePriseEnCharge", "46"),
            ("champActivite", "01"),
            ("categorieOrganisation", "50"),
            ("publicPrisEnCharge", "10"),
            ("age", "35"),
            ("communeCog", "44162"),
            ("departement", "44"),
            ("capaciteDisponible", "2"),
        ),
    )
    sent = dict(filters(query_plan))
    assert sent["specialty"] == f"{R211}|481,{R211}|055"
    assert sent["characteristic"].endswith("TRE-R213-ModePriseEnCharge|46")
    assert sent["service-type"].endswith("TRE-R227-ChampActivite|01")
    assert sent["service-category"].endswith("TRE-R244-CategorieOrganisation|50")
    assert sent["patient-type"].endswith("TRE-R239-PublicPrisEnCharge|10")
    assert sent["age-range-low"] == "le35|http://unitsofmeasure.org|a"
    assert sent["age-range-high"] == "ge35|http://unitsofmeasure.org|a"
    assert sent["location.commune-cog"] == f"{R13}|44162"
    assert sent["location.address-postalcode"] == "44"
    assert sent["location.nb-capacity"] == "ge2"
    assert mappings.function(ROR + "offer-search").bridge_filters == ()


def test_offer_search_by_distance(mappings: Mappings) -> None:
    from_commune = plan(mappings, ROR + "offer-search", extra=(("communeCog", "44162"), ("distanceKm", "15")))
    assert dict(filters(from_commune)) == {"location.near-insee-code": "44162|15|km"}
    from_point = plan(
        mappings,
        ROR + "offer-search",
        extra=(("latitude", "47.218"), ("longitude", "-1.637"), ("distanceKm", "7.5")),
    )
    assert dict(filters(from_point)) == {"location.near": "47.218|-1.637|7.5|km"}


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ((("age", "abc"),), "not a number"),
        ((("age", "200"),), "out of range"),
        ((("communeCog", "4416"),), "not a COG"),
        ((("latitude", "47.2"),), "needs latitude, longitude and distanceKm"),
        ((("latitude", "147"), ("longitude", "1"), ("distanceKm", "3")), "not a WGS84 point"),
        ((("distanceKm", "0"), ("communeCog", "44162")), "out of range"),
        ((("capaciteDisponible", "0"),), "1 or more"),
        ((("departement", "7"),), "not valid"),
        ((("activiteOperationnelle", "a b"),), "not a code"),
    ],
)
def test_offer_search_refuses_malformed_criteria(
    mappings: Mappings, extra: tuple[tuple[str, str], ...], message: str
) -> None:
    with pytest.raises(InvalidParameterError, match=message):
        plan(mappings, ROR + "offer-search", extra=extra)


def test_establishments_updated_since(mappings: Mappings) -> None:
    query_plan = plan(
        mappings,
        ROR + "establishments-updated-since",
        extra=(("dateMiseAJour", "2025-06-01T00:00:00+02:00"),),
    )
    assert query_plan.queries[0].params[0] == ("_lastUpdated", "ge2025-05-31T22:00:00Z")
    # What changed, with the ancestors (the EG of a changed EJ come later, through the offers below it:
    # production declares no `_revinclude` on Organization), and the entities reading a changed offer.
    assert query_plan.queries[0].params[1:] == (("_include:iterate", "Organization:partof"),)
    assert query_plan.queries[1].params[:3] == (
        ("_lastUpdated", "ge2025-05-31T22:00:00Z"),
        ("_include", "HealthcareService:organization"),
        ("_include:iterate", "Organization:partof"),
    )
    spec = mappings.function(ROR + "establishments-updated-since")
    assert (spec.post, spec.delta) == ("establishments", "organization-chains")
    # The ITI-74 searches: a change of lieu or of a professional reaches the establishment too.
    assert [q.resource_type for q in query_plan.queries] == [
        "Organization",
        "HealthcareService",
        "Location",
        "PractitionerRole",
        "Practitioner",
    ]
    assert all(q.params[0][1] == "ge2025-05-31T22:00:00Z" for q in query_plan.queries[2:])
    with pytest.raises(InvalidParameterError, match="dateMiseAJour or record/@updated"):
        plan(mappings, ROR + "establishments-updated-since")
    with pytest.raises(InvalidParameterError, match="ISO 8601"):
        plan(mappings, ROR + "establishments-updated-since", extra=(("dateMiseAJour", "yesterday"),))


def test_regional_scope_is_added_to_every_query(mappings: Mappings) -> None:
    request = CsdRequest(
        Transaction.CARE_SERVICES,
        RequestForm.FUNCTION_URN_2014,
        function_urn=ROR + "offer-search",
        params=RequestParams(extra=(("activiteOperationnelle", "481"),)),
        region=next(iter(mappings.regions)),
    )
    query_plan = to_fhir_plan(mappings, request)
    assert all(q.params[-1][0] == "_tag" for q in query_plan.queries)


def _broken(tmp_path: Path, change: dict[str, object]) -> Path:
    source = shipped_dir("mappings")
    target = tmp_path / "mappings"
    target.mkdir()
    for path in source.rglob("*"):
        if path.is_file():
            (target / path.relative_to(source)).parent.mkdir(parents=True, exist_ok=True)
            (target / path.relative_to(source)).write_bytes(path.read_bytes())
    data = yaml.safe_load((target / "functions.yaml").read_text("utf-8"))
    data["functions"]["service-search"].update(change)
    (target / "functions.yaml").write_text(yaml.safe_dump(data, allow_unicode=True), "utf-8")
    return target


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"result": "nowhereDirectory"}, "unknown directory"),
        ({"result": "facilityDirectory"}, "not one of the function's directories"),
        ({"result": None}, "required when the function accepts start/max"),
        ({"bridge_filters": ["commonName"]}, "not one of the function's parameters"),
        ({"bridge_filters": ["start"]}, "no bridge filter"),
        ({"post": "everything"}, "unknown step"),
    ],
)
def test_the_loader_names_the_function_and_the_problem(
    tmp_path: Path, change: dict[str, object], message: str
) -> None:
    with pytest.raises(MappingTableError, match=message) as caught:
        load_mappings(_broken(tmp_path, change))
    assert "service-search" in str(caught.value)


# --------------------------------------------------------------------------------------------------
# The ROR v2.4 profile's requests (functions.yaml `official`)

READ = "urn:asip:ror:lecture:offreSoinEtablissement:2017"


def profile_plan(mappings: Mappings, urn: str | None, element: str, **params: object) -> QueryPlan:
    request = CsdRequest(
        Transaction.ROR_NOTIF if urn is None else Transaction.CARE_SERVICES,
        RequestForm.ROR_PROFILE,
        function_urn=urn,
        params=RequestParams(**params),  # type: ignore[arg-type]
        selector=element,
    )
    return to_fhir_plan(mappings, request)


@pytest.mark.parametrize(
    ("urn", "element", "function"),
    [
        (READ, "TR_Lecture-OffresSanteEtablissement", ROR + "establishment-offers"),
        (READ, "TR_Lecture-OffreSanteOrganisationInterne", ROR + "internal-organization"),
        (None, "TR-Notif-ListeEtablissementsMajApresDate_Demande", ROR + "establishments-updated-since"),
    ],
)
def test_profile_requests_name_a_stored_function(
    mappings: Mappings, urn: str | None, element: str, function: str
) -> None:
    assert mappings.official_function(urn, element).urn == function


@pytest.mark.parametrize(
    ("urn", "element"),
    [
        (READ, "TR-Notif-ListeEtablissementsMajApresDate_Demande"),  # the operation has no function URN
        (None, "TR_Lecture-OffresSanteEtablissement"),
        ("urn:asip:ror:lecture:autre:2017", "TR_Lecture-OffresSanteEtablissement"),
    ],
)
def test_profile_requests_must_match_urn_and_element(
    mappings: Mappings, urn: str | None, element: str
) -> None:
    with pytest.raises(UnknownFunctionError):
        mappings.official_function(urn, element)


def test_profile_reading_plan_with_every_parameter(mappings: Mappings) -> None:
    query_plan = profile_plan(
        mappings,
        READ,
        "TR_Lecture-OffresSanteEtablissement",
        other_ids=(OtherID("1750712184", "1.2.250.1.71.4.2.2"),),
        extra=(
            ("dateRef", "2024-01-02T03:04:05+01:00"),
            ("typeActivity", "01"),
            ("typeActivity", "04"),
            ("supportedPatient", "01"),
            ("restrictedOrganisation", "false"),
        ),
    )
    assert query_plan.function == ROR + "establishment-offers"
    assert filters(query_plan, 1) == [
        ("organization.identifier:above", "1750712184"),
        ("service-type", f"{R227}|01,{R227}|04"),
        ("patient-type", f"{R239}|01"),
        (
            "_filter",
            "(_lastUpdated ge 2024-01-02T02:04:05Z"
            " or organization._lastUpdated:above ge 2024-01-02T02:04:05Z)",
        ),
    ]
    # Without them, the establishment-offers plan of the bridge's own URN.
    bare = profile_plan(
        mappings, READ, "TR_Lecture-OffresSanteEtablissement", other_ids=(OtherID("1750712184", ""),)
    )
    assert (
        bare.queries
        == plan(mappings, ROR + "establishment-offers", other_ids=(OtherID("1750712184", ""),)).queries
    )


def test_profile_restricted_reading_is_served_or_refused_never_ignored(mappings: Mappings) -> None:
    """restrictedOrganisation=true reads the same resources (the answer is then restricted,
    translate/access_profiles.py restrict_document); tables without the restricted-organisation section
    refuse it rather than answer unrestricted."""
    ids = (OtherID("1750712184", ""),)
    restricted = profile_plan(
        mappings,
        READ,
        "TR_Lecture-OffresSanteEtablissement",
        other_ids=ids,
        extra=(("restrictedOrganisation", "true"),),
    )
    plain = profile_plan(mappings, READ, "TR_Lecture-OffresSanteEtablissement", other_ids=ids)
    assert restricted.queries == plain.queries
    without = dataclasses.replace(mappings, access=dataclasses.replace(mappings.access, restriction=None))
    with pytest.raises(InvalidParameterError, match="restrictedOrganisation=true"):
        profile_plan(
            without,
            READ,
            "TR_Lecture-OffresSanteEtablissement",
            other_ids=ids,
            extra=(("restrictedOrganisation", "true"),),
        )


def test_profile_notif_plan(mappings: Mappings) -> None:
    query_plan = profile_plan(
        mappings,
        None,
        "TR-Notif-ListeEtablissementsMajApresDate_Demande",
        extra=(("dateRef", "2024-01-02T03:04:05"), ("typeActivity", "04")),
    )
    assert query_plan.function == ROR + "establishments-updated-since"
    offers = dict(filters(query_plan, 1))
    assert offers["service-type"] == f"{R227}|04"  # the changed offers of that champ d'activité
    # A naive dateRef is sent naive, as the function's dateMiseAJour is.
    assert offers["_lastUpdated"] == "ge2024-01-02T03:04:05"
    assert dict(filters(query_plan, 0))["_lastUpdated"] == "ge2024-01-02T03:04:05"


@pytest.mark.parametrize(
    ("official", "message"),
    [
        ("TR_Lecture-OffresSanteEtablissement", "non-empty list"),
        ([{"element": "bad element"}], "not an XML element name"),
        ([{"urn": "nope", "element": "X"}], "must be a URN"),
        ([{"element": "X", "other": 1}], "other"),
        ([{"urn": READ, "element": "TR_Lecture-OffresSanteEtablissement"}], "declared twice"),
    ],
)
def test_the_loader_checks_official(tmp_path: Path, official: object, message: str) -> None:
    with pytest.raises(MappingTableError, match=message):
        load_mappings(_broken(tmp_path, {"official": official}))
