"""CSD request → FHIR query plan for internal-organization, for every request shape."""

from __future__ import annotations

import pytest

from bridge.errors import InvalidParameterError, UnknownFunctionError
from bridge.model import CsdRequest, Directory, OtherID, RequestForm, RequestParams, Transaction
from bridge.translate import Mappings, to_fhir_plan

URN = "urn:ror:csd:stored-function:internal-organization"
INCLUDES = (
    ("_include", "HealthcareService:organization"),
    ("_include:iterate", "Organization:partof"),
    ("_include", "HealthcareService:location"),
    ("_revinclude", "PractitionerRole:service"),
    ("_include", "PractitionerRole:practitioner"),
)


def request(urn: str | None = URN, **params: object) -> CsdRequest:
    return CsdRequest(
        Transaction.CARE_SERVICES,
        RequestForm.FUNCTION_URN_2014,
        function_urn=urn,
        params=RequestParams(**params),  # type: ignore[arg-type]
    )


def queries(mappings: Mappings, req: CsdRequest) -> list[tuple[str, tuple[tuple[str, str], ...]]]:
    plan = to_fhir_plan(mappings, req)
    assert plan.function == URN
    assert plan.directories == frozenset(
        {Directory.ORGANIZATION, Directory.SERVICE, Directory.FACILITY, Directory.DEVICE}
    )
    return [(q.resource_type, q.params) for q in plan.queries]


def expected(token: str, value: str) -> list[tuple[str, tuple[tuple[str, str], ...]]]:
    return [
        ("Organization", (("identifier", token), ("_include:iterate", "Organization:partof"))),
        ("HealthcareService", (("organization.identifier:above", value), *INCLUDES)),
    ]


@pytest.mark.parametrize(
    "authority",
    ["https://oi.esante.gouv.fr", "identifiantOI", "IDENTIFIANTOI"],
)
def test_other_id_with_a_known_authority_searches_with_its_system(mappings: Mappings, authority: str) -> None:
    req = request(other_ids=(OtherID("OI-POLE-1", authority),))
    assert queries(mappings, req) == expected("https://oi.esante.gouv.fr|OI-POLE-1", "OI-POLE-1")


@pytest.mark.parametrize("authority", ["1.2.250.1.71.4.2.2", "urn:oid:1.2.250.1.71.4.2.2"])
def test_other_id_with_an_oid_authority(mappings: Mappings, authority: str) -> None:
    req = request(other_ids=(OtherID("392131725800020", authority),))
    assert queries(mappings, req) == expected("urn:oid:1.2.250.1.71.4.2.2|392131725800020", "392131725800020")


@pytest.mark.parametrize("authority", ["", "1.2.3.4.5", "https://finess.esante.gouv.fr"])
def test_other_id_without_usable_authority_searches_by_value(mappings: Mappings, authority: str) -> None:
    # unknown authority, or FINESS whose data carries two spellings of the system (http / https)
    req = request(other_ids=(OtherID(" 920000123 ", authority),))
    assert queries(mappings, req) == expected("920000123", "920000123")


def test_entity_id_issued_by_the_bridge_is_reversed(mappings: Mappings) -> None:
    req = request(entity_id="urn:ror:oi:OI%20UE%2F2")
    assert queries(mappings, req) == expected("https://oi.esante.gouv.fr|OI UE/2", "OI UE/2")
    req = request(entity_id="urn:ror:finess:920000123")
    assert queries(mappings, req) == expected("920000123", "920000123")


def test_alias_resolves_to_the_canonical_function(mappings: Mappings) -> None:
    req = request("urn:ror:csd:stored-function:organisation-interne", other_ids=(OtherID("X", ""),))
    assert queries(mappings, req) == expected("X", "X")


def test_plan_has_no_count(mappings: Mappings) -> None:
    plan = to_fhir_plan(mappings, request(other_ids=(OtherID("X", ""),)))
    assert all(name != "_count" for q in plan.queries for name, _ in q.params)


@pytest.mark.parametrize(
    ("params", "fragment"),
    [
        ({}, "missing national identifier"),
        ({"other_ids": (OtherID("  ", "https://oi.esante.gouv.fr"),)}, "otherID/@code is empty"),
        ({"other_ids": (OtherID("A", ""), OtherID("B", ""))}, "several otherID"),
        ({"entity_id": "urn:uuid:dc6aedf0-f609-11e2-b778-0800200c9a66"}, "not issued by this bridge"),
        ({"entity_id": "urn:ror:fhir:Organization/42"}, "without national identifier"),
        ({"entity_id": "urn:ror:oi:%C3%28"}, "not issued by this bridge"),
        ({"other_ids": (OtherID("A", ""),), "primary_name": "Pôle"}, "does not accept primaryName"),
        ({"other_ids": (OtherID("A", ""),), "extra": (("region", "11"),)}, "does not accept region"),
    ],
)
def test_invalid_parameters(mappings: Mappings, params: dict, fragment: str) -> None:  # type: ignore[type-arg]
    with pytest.raises(InvalidParameterError, match=fragment):
        to_fhir_plan(mappings, request(**params))


@pytest.mark.parametrize("urn", ["urn:ihe:iti:csd:2014:stored-function:nothing", None])
def test_unknown_function(mappings: Mappings, urn: str | None) -> None:
    with pytest.raises(UnknownFunctionError):
        to_fhir_plan(mappings, request(urn, other_ids=(OtherID("A", ""),)))
