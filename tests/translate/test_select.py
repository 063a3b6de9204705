"""select.py: the IHE checks the bridge makes on CSD records, paging, and the `establishments` step."""

from __future__ import annotations

from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import pytest

from bridge.errors import InvalidParameterError
from bridge.model import (
    Address,
    AddressLine,
    CodedType,
    CsdDocument,
    Demographic,
    Facility,
    FacilityOrganization,
    FhirQuery,
    Organization,
    OtherID,
    PersonName,
    Provider,
    Record,
    RequestParams,
    SearchResult,
    Service,
)
from bridge.translate import Mappings
from bridge.translate.select import page, page_upstream, select_records

IHE = "urn:ihe:iti:csd:2014:stored-function:"
PARIS = ZoneInfo("Europe/Paris")


def record(updated: datetime = datetime(2024, 1, 1, tzinfo=UTC), status: str = "Active") -> Record:
    return Record(created=datetime(2020, 1, 1, tzinfo=UTC), updated=updated, status=status)


def org(
    entity_id: str, name: str, parent: str | None = None, *, other: tuple[str, ...] = (), **kw: object
) -> Organization:
    return Organization(
        entity_id=entity_id,
        coded_types=(CodedType("EJ", "1.2.250.1.213.3.3.66"),),
        primary_name=name,
        record=kw.pop("rec", record()),  # type: ignore[arg-type]
        other_names=other,
        parent_id=parent,
        addresses=kw.pop("addresses", ()),  # type: ignore[arg-type]
        other_ids=kw.pop("other_ids", ()),  # type: ignore[arg-type]
    )


def run(mappings: Mappings, function: str, document: CsdDocument, **params: object) -> CsdDocument:
    spec = mappings.function(IHE + function if ":" not in function else function)
    return select_records(spec, RequestParams(**params), document, mappings.systems, PARIS)  # type: ignore[arg-type]


def ids(records: object) -> list[str]:
    return [r.entity_id for r in records]  # type: ignore[attr-defined]


ORGS = CsdDocument(
    organizations=[
        org("o1", "Centre Hospitalier de Nantes", other=("CHU Nantes",)),
        org("o2", "Clinique du Parc", rec=record(status="Inactive")),
        org(
            "o3",
            "Pôle urgences",
            addresses=(Address((AddressLine("Versailles", "city"), AddressLine("78000", "postalCode"))),),
        ),
        org("o4", "Service de chirurgie", rec=record(updated=datetime(2025, 6, 1, 8, 0, tzinfo=UTC))),
    ]
)


def test_primary_name_and_name_contain_case_insensitively(mappings: Mappings) -> None:
    assert ids(run(mappings, "organization-search", ORGS, primary_name="HOSPITALIER").organizations) == ["o1"]
    assert ids(run(mappings, "organization-search", ORGS, primary_name="chu").organizations) == []
    # name also looks at otherName (csd-wire-format §4)
    assert ids(run(mappings, "organization-search", ORGS, name="chu").organizations) == ["o1"]
    assert ids(run(mappings, "organization-search", ORGS, name="É").organizations) == []


def test_parameters_combine_with_and(mappings: Mappings) -> None:
    both = run(mappings, "organization-search", ORGS, name="c", record_status="inactive")
    assert ids(both.organizations) == ["o2"]


def test_address_line_by_component(mappings: Mappings) -> None:
    city = (AddressLine("versail", "city"),)
    assert ids(run(mappings, "organization-search", ORGS, address_lines=city).organizations) == ["o3"]
    wrong_component = (AddressLine("versail", "postalCode"),)
    assert ids(run(mappings, "organization-search", ORGS, address_lines=wrong_component).organizations) == []


def test_record_updated_is_greater_or_equal_and_naive_times_are_french(mappings: Mappings) -> None:
    # 2025-06-01 10:00 in Paris is 08:00 UTC: equal, so kept; one second later is not.
    kept = run(mappings, "organization-search", ORGS, record_updated=datetime(2025, 6, 1, 10, 0))
    assert ids(kept.organizations) == ["o4"]
    later = run(mappings, "organization-search", ORGS, record_updated=datetime(2025, 6, 1, 10, 0, 1))
    assert ids(later.organizations) == []


def test_coded_type_matches_code_case_insensitively_within_the_scheme(mappings: Mappings) -> None:
    doc = CsdDocument(
        services=[
            Service("s1", CodedType("AB1", "1.2.250.1.213.3.3.12"), record()),
            Service("s2", CodedType("ab1", "9.9.9"), record()),
        ]
    )
    r211 = (
        "https://mos.esante.gouv.fr/NOS/TRE_R211-ActiviteOperationnelle/FHIR/TRE-R211-ActiviteOperationnelle"
    )
    for scheme in ("urn:oid:1.2.250.1.213.3.3.12", r211):
        found = run(mappings, "service-search", doc, coded_types=(CodedType("ab1", scheme),))
        assert ids(found.services) == ["s1"], scheme


def test_other_id_authority_in_any_spelling(mappings: Mappings) -> None:
    provider = Provider(
        entity_id="p1",
        coded_types=(),
        demographic=Demographic((PersonName(("Paul MOREAU",)),)),
        record=record(),
        other_ids=(OtherID("17320215274", "1.2.250.1.71.4.2.1"),),
    )
    doc = CsdDocument(providers=[provider])
    for authority in ("1.2.250.1.71.4.2.1", "urn:oid:1.2.250.1.71.4.2.1", "RPPS", ""):
        found = run(mappings, "provider-search", doc, other_ids=(OtherID("17320215274", authority),))
        assert ids(found.providers) == ["p1"], authority
    other = run(mappings, "provider-search", doc, other_ids=(OtherID("17320215274", "FINESS"),))
    assert ids(other.providers) == []
    assert ids(run(mappings, "provider-search", doc, common_name="moreau").providers) == ["p1"]


def test_facility_linked_to_organizations(mappings: Mappings) -> None:
    facility = Facility(
        entity_id="f1",
        coded_types=(),
        primary_name="Lieu",
        record=record(),
        organizations=(FacilityOrganization("o1"),),
    )
    doc = CsdDocument(facilities=[facility])
    assert ids(run(mappings, "facility-search", doc, organizations=("o1",)).facilities) == ["f1"]
    assert ids(run(mappings, "facility-search", doc, organizations=("o2",)).facilities) == []


@pytest.mark.parametrize(
    ("start", "maximum", "expected"),
    [
        (None, None, [1, 2, 3, 4, 5]),
        (1, 2, [1, 2]),
        (4, 10, [4, 5]),
        (6, 1, []),
        (2, -1, [2, 3, 4, 5]),
        (None, 0, []),
    ],
)
def test_paging_is_one_based_and_negative_max_is_unlimited(
    start: int | None, maximum: int | None, expected: list[int]
) -> None:
    assert page([1, 2, 3, 4, 5], start, maximum) == expected


def test_start_below_one_is_refused() -> None:
    with pytest.raises(InvalidParameterError):
        page([1], 0, None)


def test_filters_then_pages(mappings: Mappings) -> None:
    found = run(mappings, "organization-search", ORGS, name="UR", start=2, max=1)
    assert ids(found.organizations) == ["o4"]  # o3 and o4 contain "ur": the second of them


def test_page_upstream_windows_the_first_query_when_nothing_is_left_to_the_bridge(mappings: Mappings) -> None:
    query = FhirQuery("HealthcareService", ())
    matches = [{"resourceType": "HealthcareService", "id": str(n)} for n in range(5)]
    results = [SearchResult(query, matches=list(matches)), SearchResult(query, matches=list(matches))]
    offers = mappings.function("urn:ror:csd:stored-function:offer-search")
    paged = page_upstream(offers, RequestParams(start=2, max=2), results)
    assert [r["id"] for r in paged[0].matches] == ["1", "2"]
    assert paged[1].matches == matches  # only the first query is the result
    # a bridge filter present: every match is kept for select_records to filter, then page
    orgs = mappings.function(IHE + "organization-search")
    assert page_upstream(orgs, RequestParams(name="x", max=1), results)[0].matches == matches
