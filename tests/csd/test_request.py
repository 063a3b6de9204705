"""Tests of bridge.csd.request: the three careServicesRequest forms, ITI-74, parameters and xs:dateTime."""

from __future__ import annotations

import copy
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest
from lxml import etree

from bridge import ns
from bridge.csd.request import parse_request, parse_xs_datetime
from bridge.errors import InvalidParameterError, UnsupportedRequestError
from bridge.model import (
    AddressLine,
    CodedType,
    CsdRequest,
    OtherID,
    RequestForm,
    RequestParams,
    Transaction,
)
from bridge.soap.parser import parse_message

REQUESTS = Path(__file__).resolve().parent.parent / "fixtures" / "requests"
XSD = Path(__file__).resolve().parents[2] / "xsd" / "csd.xsd"
FACILITY_SEARCH = "urn:ihe:iti:csd:2014:stored-function:facility-search"


def _request(name: str, region: str | None = None) -> CsdRequest:
    message = parse_message((REQUESTS / name).read_bytes(), "application/soap+xml", None)
    return parse_request(message.body, region=region)


def _csr(inner: str, attributes: str = "") -> etree._Element:
    """A small careServicesRequest for edge cases of one parameter (the forms themselves are files)."""
    return etree.fromstring(
        f'<careServicesRequest xmlns="{ns.CSD}" {attributes}>{inner}</careServicesRequest>'
    )


def _params(inner: str) -> RequestParams:
    root = _csr(f"<requestParams>{inner}</requestParams>", f'urn="{FACILITY_SEARCH}"')
    return parse_request(root).params


# ------------------------------------------------------------------------------------------------
# The wire forms, from the fixture files


EXPECTED: dict[str, CsdRequest] = {
    "soap12-wsa-mu1-facility-search-2014.xml": CsdRequest(
        transaction=Transaction.CARE_SERVICES,
        form=RequestForm.FUNCTION_URN_2014,
        function_urn=FACILITY_SEARCH,
        encapsulated=True,
        params=RequestParams(
            coded_types=(CodedType("SA07", "1.2.250.1.213.3.3.66", "Centre hospitalier"),),
            address_lines=(AddressLine("Lyon", "city"), AddressLine("69003", "postalCode")),
            record_status="Active",
            record_updated=datetime(2025, 11, 2, 8, 15, 0, 123000, tzinfo=timezone(timedelta(hours=1))),
            start=21,
            max=20,
        ),
    ),
    "soap12-wsa-mu0-modifications.xml": CsdRequest(
        transaction=Transaction.MODIFICATIONS,
        form=RequestForm.MODIFICATIONS,
        last_modified=datetime(
            2026, 1, 15, 23, 59, 59, 123456, tzinfo=timezone(-timedelta(hours=3, minutes=30))
        ),
    ),
    "soap12-zeep-style-2016.xml": CsdRequest(
        transaction=Transaction.CARE_SERVICES,
        form=RequestForm.ROOT_URN_2016,
        function_urn="urn:ror:csd:stored-function:establishment-offers",
        params=RequestParams(other_ids=(OtherID("690781810", "1.2.250.1.71.4.2.2"),)),
        request_id="tx-42",
    ),
    "soap11-provider-search-2016.xml": CsdRequest(
        transaction=Transaction.CARE_SERVICES,
        form=RequestForm.ROOT_URN_2016,
        function_urn="urn:ihe:iti:csd:2014:stored-function:provider-search",
        encapsulated=False,
        params=RequestParams(
            common_name="Dupont",
            coded_types=(CodedType("10", "1.2.250.1.71.1.2.7"),),
            max=-1,
        ),
        request_id="req-0007",
    ),
    "bare-2013-function-uuid.xml": CsdRequest(
        transaction=Transaction.CARE_SERVICES,
        form=RequestForm.FUNCTION_UUID_2013,
        function_urn="urn:uuid:c7640530-f600-11e2-b778-0800200c9a66",
        params=RequestParams(entity_id="urn:oid:1.2.250.1.71.4.2.2.690781810"),
    ),
    "bare-2014-function-urn.xml": CsdRequest(
        transaction=Transaction.CARE_SERVICES,
        form=RequestForm.FUNCTION_URN_2014,
        function_urn="urn:ihe:iti:csd:2014:stored-function:organization-search",
        params=RequestParams(
            entity_id="urn:oid:1.2.250.1.71.4.2.2.130786548",
            other_ids=(
                OtherID("130786548", "1.2.250.1.71.4.2.2"),
                OtherID("26130001800017", "1.2.250.1.71.4.2.1"),
            ),
            primary_name="Assistance Publique",
            name="Marseille",
            coded_types=(
                CodedType("355", "1.2.250.1.71.4.2.2", "Centre Hospitalier Régional"),
                CodedType("101", "1.2.250.1.71.4.2.2"),
            ),
            organizations=(
                "urn:oid:1.2.250.1.71.4.2.2.130786548",
                "urn:uuid:3f2504e0-4f89-11d3-9a0c-0305e82c3301",
            ),
            record_status="Inactive",
            start=1,
            max=50,
        ),
    ),
    "bare-2016-root-urn-ror.xml": CsdRequest(
        transaction=Transaction.CARE_SERVICES,
        form=RequestForm.ROOT_URN_2016,
        function_urn="urn:ror:csd:stored-function:offer-search",
        encapsulated=True,
        params=RequestParams(
            max=10,
            extra=(
                ("activity", "Médecine d'urgence"),
                ("latitude", "45.75"),
                ("longitude", "4.85"),
                ("includeClosed", ""),
            ),
        ),
        request_id="abc-1",
    ),
    "bare-2016-empty-template.xml": CsdRequest(
        transaction=Transaction.CARE_SERVICES,
        form=RequestForm.ROOT_URN_2016,
        function_urn=FACILITY_SEARCH,
        params=RequestParams(),
    ),
    "bare-modifications-date-only.xml": CsdRequest(
        transaction=Transaction.MODIFICATIONS,
        form=RequestForm.MODIFICATIONS,
        last_modified=datetime(2025, 12, 31),
    ),
    "sloppy-no-namespace.xml": CsdRequest(
        transaction=Transaction.CARE_SERVICES,
        form=RequestForm.FUNCTION_URN_2014,
        function_urn="urn:uuid:4e8bbeb9-f5f5-11e2-b778-0800200c9a66",
        encapsulated=True,
        params=RequestParams(entity_id="urn:uuid:0b4e5a6c-1111-4222-8333-944455556666", common_name="Martin"),
    ),
    "sloppy-unqualified-children.xml": CsdRequest(
        transaction=Transaction.CARE_SERVICES,
        form=RequestForm.FUNCTION_URN_2014,
        function_urn=FACILITY_SEARCH,
        params=RequestParams(
            other_ids=(OtherID("690000880", "1.2.250.1.71.4.2.2"),),
            record_updated=datetime(2025, 3, 1, 10, 0, tzinfo=UTC),
        ),
    ),
    "soap12-optional-headers.xml": CsdRequest(
        transaction=Transaction.MODIFICATIONS,
        form=RequestForm.MODIFICATIONS,
        last_modified=datetime(2025, 6, 1),
    ),
}


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_fixture_forms_normalise(name: str) -> None:
    assert _request(name) == EXPECTED[name]


def test_region_is_carried() -> None:
    assert _request("bare-2014-function-urn.xml", region="ara").region == "ara"
    assert _request("bare-modifications-date-only.xml", region="idf").region == "idf"


def test_naive_datetimes_stay_naive() -> None:
    # The translate part picks the timezone from a mapping table: no silent UTC here.
    request = _request("bare-modifications-date-only.xml")
    assert request.last_modified is not None
    assert request.last_modified.tzinfo is None


# Not listed: the sloppy ones, the 2016 empty template (empty xs:int) and the date-only lastModified.
CONFORMING = [
    "soap12-wsa-mu1-facility-search-2014.xml",
    "soap12-wsa-mu0-modifications.xml",
    "soap12-zeep-style-2016.xml",
    "soap11-provider-search-2016.xml",
    "bare-2013-function-uuid.xml",
    "bare-2014-function-urn.xml",
    "bare-2016-root-urn-ror.xml",
]


@pytest.mark.parametrize("name", CONFORMING)
def test_conforming_fixtures_are_schema_valid(name: str) -> None:
    # The fixtures stand for real clients: the non-sloppy ones must be valid against the bridge's schema.
    if not XSD.is_file():
        pytest.skip("xsd/csd.xsd is not present")
    schema = etree.XMLSchema(etree.parse(str(XSD)))
    body = parse_message((REQUESTS / name).read_bytes(), None, None).body
    assert schema.validate(etree.ElementTree(copy.deepcopy(body))), schema.error_log


# ------------------------------------------------------------------------------------------------
# Refusals


@pytest.mark.parametrize(
    ("name", "error", "words"),
    [
        ("soap12-expression.xml", UnsupportedRequestError, "ad-hoc"),
        ("soap12-body-not-csd.xml", UnsupportedRequestError, "{urn:ihe:iti:csd:2013}CSD"),
        ("bare-modifications-missing.xml", InvalidParameterError, "lastModified"),
        ("bare-modifications-unparsable.xml", InvalidParameterError, "'yesterday'"),
    ],
)
def test_fixture_refusals(name: str, error: type[Exception], words: str) -> None:
    with pytest.raises(error) as caught:
        _request(name)
    assert words in str(caught.value)


def test_expression_reason_points_to_stored_functions() -> None:
    with pytest.raises(UnsupportedRequestError, match="stored function"):
        _request("soap12-expression.xml")


def test_request_without_function_or_expression() -> None:
    with pytest.raises(UnsupportedRequestError, match="names no stored function"):
        parse_request(_csr("<requestParams/>"))


def test_function_without_identifier() -> None:
    with pytest.raises(UnsupportedRequestError, match="neither @urn nor @uuid"):
        parse_request(_csr("<function><requestParams/></function>"))


def test_empty_root_urn() -> None:
    with pytest.raises(UnsupportedRequestError, match="empty"):
        parse_request(_csr("<requestParams/>", 'urn="  "'))


def test_root_in_another_namespace_is_named() -> None:
    root = etree.fromstring('<careServicesRequest xmlns="urn:example:other"/>')
    with pytest.raises(UnsupportedRequestError, match=r"\{urn:example:other\}careServicesRequest"):
        parse_request(root)


def test_get_modifications_with_empty_last_modified() -> None:
    root = etree.fromstring(
        f'<getModificationsRequest xmlns="{ns.CSD}"><lastModified> </lastModified></getModificationsRequest>'
    )
    with pytest.raises(InvalidParameterError, match="empty"):
        parse_request(root)


# ------------------------------------------------------------------------------------------------
# Function identification and @encapsulated


def test_2013_uuid_already_prefixed_is_kept() -> None:
    request = parse_request(_csr('<function uuid="urn:uuid:e3d8ecd0-f605-11e2-b778-0800200c9a66"/>'))
    assert request.function_urn == "urn:uuid:e3d8ecd0-f605-11e2-b778-0800200c9a66"
    assert request.form is RequestForm.FUNCTION_UUID_2013
    assert request.params == RequestParams()


def test_2014_function_child_need_not_be_called_request_params() -> None:
    # The 2014 schema leaves function's child open (xs:any); its children are the parameters.
    request = parse_request(
        _csr(f'<function urn="{FACILITY_SEARCH}"><params><name>Nice</name></params></function>')
    )
    assert request.params.name == "Nice"


@pytest.mark.parametrize(
    ("value", "expected"),
    [("true", True), (" 1 ", True), ("\ttrue\n", True), ("TRUE", True), ("false", False), ("0", False)],
)
def test_encapsulated_is_an_xs_boolean(value: str, expected: bool) -> None:
    request = parse_request(_csr(f'<function urn="{FACILITY_SEARCH}" encapsulated="{value}"/>'))
    assert request.encapsulated is expected


def test_encapsulated_absent_is_none() -> None:
    assert parse_request(_csr(f'<function urn="{FACILITY_SEARCH}"/>')).encapsulated is None


@pytest.mark.parametrize("value", ["yes", "", "2"])
def test_encapsulated_invalid(value: str) -> None:
    with pytest.raises(InvalidParameterError, match="encapsulated"):
        parse_request(_csr(f'<function urn="{FACILITY_SEARCH}" encapsulated="{value}"/>'))


# ------------------------------------------------------------------------------------------------
# Parameters


def test_id_variants() -> None:
    assert _params('<id entityID="urn:uuid:1"/>').entity_id == "urn:uuid:1"
    assert _params('<id oid="1.2.3"/>').entity_id == "urn:oid:1.2.3"
    assert _params('<id oid="urn:oid:1.2.3"/>').entity_id == "urn:oid:1.2.3"
    assert _params('<id urn="urn:oid:9.8"/>').entity_id == "urn:oid:9.8"
    assert _params('<id entityID="a" oid="1.2"/>').entity_id == "a"
    assert _params("<id/>").entity_id is None


def test_other_id_variants() -> None:
    assert _params('<otherID code=" 42 " assigningAuthorityName="1.2"/>').other_ids == (OtherID("42", "1.2"),)
    assert _params('<otherID assigningAuthorityName="1.2">77</otherID>').other_ids == (OtherID("77", "1.2"),)
    assert _params('<otherID code="5"/>').other_ids == (OtherID("5", ""),)
    assert _params("<otherID/>").other_ids == ()
    with pytest.raises(InvalidParameterError, match="otherID"):
        _params('<otherID assigningAuthorityName="1.2"/>')


def test_coded_type_without_code_is_ignored() -> None:
    assert _params('<codedType codingScheme="1.2"/>').coded_types == ()


def test_address_lines_keep_order_and_skip_blanks() -> None:
    params = _params(
        '<address><addressLine component="city">Metz</addressLine><addressLine> </addressLine>'
        "<addressLine>1 rue X</addressLine></address>"
    )
    assert params.address_lines == (AddressLine("Metz", "city"), AddressLine("1 rue X", None))


@pytest.mark.parametrize(
    ("name", "value"), [("start", "ten"), ("max", "1.5"), ("max", "1_000"), ("start", "1e3")]
)
def test_invalid_integers_name_the_parameter_and_value(name: str, value: str) -> None:
    with pytest.raises(InvalidParameterError) as caught:
        _params(f"<{name}>{value}</{name}>")
    assert repr(name) in caught.value.reason
    assert repr(value) in caught.value.reason


def test_invalid_record_updated() -> None:
    with pytest.raises(InvalidParameterError, match=r"record/@updated.*'last week'"):
        _params('<record updated="last week"/>')


def test_extra_parameters_keep_document_order_and_local_names() -> None:
    params = _params(
        '<b xmlns="urn:x">2</b><primaryName>P</primaryName><a>1</a><group><c> 3 </c><d/></group>'
    )
    assert params.primary_name == "P"
    assert params.extra == (("b", "2"), ("a", "1"), ("c", "3"), ("d", ""))


def test_first_value_wins_for_single_valued_parameters() -> None:
    params = _params("<name>one</name><name>two</name>")
    assert params.name == "one"


# ------------------------------------------------------------------------------------------------
# xs:dateTime


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2002-05-30T09:30:10.5", datetime(2002, 5, 30, 9, 30, 10, 500000)),
        ("2002-05-30T09:30:10", datetime(2002, 5, 30, 9, 30, 10)),
        ("2002-05-30T09:30:10.123456789Z", datetime(2002, 5, 30, 9, 30, 10, 123456, tzinfo=UTC)),
        ("2002-05-30T09:30:10+02:00", datetime(2002, 5, 30, 9, 30, 10, tzinfo=timezone(timedelta(hours=2)))),
        (
            "2002-05-30T09:30:10-14:00",
            datetime(2002, 5, 30, 9, 30, 10, tzinfo=timezone(timedelta(hours=-14))),
        ),
        ("2002-05-30", datetime(2002, 5, 30)),
        ("2002-05-30Z", datetime(2002, 5, 30, tzinfo=UTC)),
        (" 2002-05-30T24:00:00 ", datetime(2002, 5, 31)),
        ("2024-02-29T00:00:00", datetime(2024, 2, 29)),
    ],
)
def test_parse_xs_datetime(text: str, expected: datetime) -> None:
    value = parse_xs_datetime(text)
    assert value == expected
    assert value.tzinfo == expected.tzinfo


@pytest.mark.parametrize(
    "text",
    [
        "",
        "yesterday",
        "2002-13-01",
        "2023-02-29",
        "2002-05-30T25:00:00",
        "2002-05-30T24:00:01",
        "2002-05-30T09:30",
        "2002-05-30T09:30:10+0200",
        "2002-05-30T09:30:10+15:00",
        "2002-05-30 09:30:10",
        "02-05-30",
    ],
)
def test_parse_xs_datetime_refuses(text: str) -> None:
    with pytest.raises(ValueError, match=r"xs:dateTime|range|must be"):
        parse_xs_datetime(text)


def test_nil_parameters_are_absent() -> None:
    """Apache Axis 1.4 stubs send the unset xs:any members of requestParams as xsi:nil elements."""
    body = etree.fromstring(
        f'<csd:careServicesRequest xmlns:csd="{ns.CSD}" xmlns:xsi="{ns.XSI}">'
        '<csd:function urn="urn:x" encapsulated="true"><csd:requestParams><csd:max>5</csd:max>'
        '<csd:_any2 xsi:nil="true"/><csd:primaryName xsi:nil="1"/></csd:requestParams></csd:function>'
        "</csd:careServicesRequest>"
    )
    params = parse_request(body).params
    assert params.max == 5
    assert params.extra == ()
    assert params.primary_name is None


# ------------------------------------------------------------------------------------------------
# The official ROR v2.4 profile's requests (shared/reference/ror-v24/)

PROFILE_SCHEMA = etree.XMLSchema(etree.parse(str(XSD.parent / "ror-operations.xsd")))


def _reading(inner: str, child: str = ns.ROR_READ_ESTABLISHMENT) -> etree._Element:
    return _csr(
        f'<function urn="{ns.ROR_READ_URN}" encapsulated="true"><{child}>{inner}</{child}></function>'
    )


def _notif(inner: str) -> etree._Element:
    return etree.fromstring(
        f'<r:{ns.ROR_NOTIF_REQUEST} xmlns:r="{ns.ROR}" xmlns:c="{ns.CSD}"><c:params>{inner}</c:params>'
        f"</r:{ns.ROR_NOTIF_REQUEST}>"
    )


def test_profile_establishment_reading_normalises() -> None:
    root = _reading(
        "<etablissementDemandeLecture>"
        '<id_etablissement code="1750712184" assigningAuthorityName="1.2.250.1.71.4.2.2"/>'
        "<dateRef>2024-01-02T03:04:05+01:00</dateRef>"
        '<typeActivity code="01" codingScheme="1.2.250.1.213.3.3.17">MCO</typeActivity>'
        '<typeActivity code="04" codingScheme="1.2.250.1.213.3.3.17"/>'
        '<supportedPatient code="01" codingScheme="1.2.250.1.213.3.3.29"/>'
        "<restrictedOrganisation>0</restrictedOrganisation>"
        "</etablissementDemandeLecture>"
    )
    PROFILE_SCHEMA.assertValid(root)
    assert parse_request(root, region="ara") == CsdRequest(
        transaction=Transaction.CARE_SERVICES,
        form=RequestForm.ROR_PROFILE,
        function_urn=ns.ROR_READ_URN,
        encapsulated=True,
        params=RequestParams(
            other_ids=(OtherID("1750712184", "1.2.250.1.71.4.2.2"),),
            extra=(
                ("dateRef", "2024-01-02T03:04:05+01:00"),
                ("typeActivity", "01"),
                ("typeActivity", "04"),
                ("supportedPatient", "01"),
                ("restrictedOrganisation", "false"),
            ),
        ),
        region="ara",
        selector=ns.ROR_READ_ESTABLISHMENT,
    )


def test_profile_internal_organization_reading_normalises() -> None:
    root = _reading(
        '<organisationID code="75/1234" assigningAuthorityName="x"/>', ns.ROR_READ_INTERNAL_ORGANIZATION
    )
    PROFILE_SCHEMA.assertValid(root)
    request = parse_request(root)
    assert request.selector == ns.ROR_READ_INTERNAL_ORGANIZATION
    assert request.params == RequestParams(other_ids=(OtherID("75/1234", "x"),))


def test_profile_notif_normalises_and_tolerates_platines_one_digit_hour() -> None:
    # PLATINES's own default dateRef (C_Notif project) is "2018-05-30T7:00:00".
    request = parse_request(
        _notif('<c:dateRef>2018-05-30T7:00:00</c:dateRef><c:supportedPatient code="01" codingScheme="x"/>')
    )
    assert request.transaction is Transaction.ROR_NOTIF
    assert request.selector == ns.ROR_NOTIF_REQUEST
    assert request.function_urn is None
    assert request.params.extra == (("dateRef", "2018-05-30T07:00:00"), ("supportedPatient", "01"))


def _lecture(inner: str) -> etree._Element:
    """An etablissementDemandeLecture with an id_etablissement, then `inner`."""
    return _reading(
        f'<etablissementDemandeLecture><id_etablissement code="1"/>{inner}</etablissementDemandeLecture>'
    )


@pytest.mark.parametrize(
    ("root", "words"),
    [
        (_notif(""), "dateRef is required"),
        (_notif("<c:dateRef>yesterday</c:dateRef>"), "must be an xs:dateTime"),
        (
            _notif(
                "<c:dateRef>2024-01-01T00:00:00</c:dateRef><c:restrictedOrganisation>1</c:restrictedOrganisation>"
            ),
            "does not accept",
        ),
        (etree.fromstring(f'<r:{ns.ROR_NOTIF_REQUEST} xmlns:r="{ns.ROR}"/>'), "no params"),
        (_reading(""), "no etablissementDemandeLecture"),
        (_reading("<etablissementDemandeLecture/>"), "exactly one id_etablissement"),
        (
            _reading(
                "<etablissementDemandeLecture>"
                '<id_etablissement assigningAuthorityName="x"/></etablissementDemandeLecture>'
            ),
            "@code is required",
        ),
        (_lecture("<dateRef>2024-13-01</dateRef>"), "xs:dateTime"),
        (_lecture("<restrictedOrganisation>peut-être</restrictedOrganisation>"), "xs:boolean"),
        (_lecture('<typeActivity codingScheme="x"/>'), "typeActivity/@code"),
        (_lecture("<finess>1</finess>"), "does not accept 'finess'"),
        (_reading("", ns.ROR_READ_INTERNAL_ORGANIZATION), "exactly one organisationID"),
    ],
)
def test_profile_request_refusals(root: etree._Element, words: str) -> None:
    with pytest.raises(InvalidParameterError, match=words):
        parse_request(root)
