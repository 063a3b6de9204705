"""Tests of the CSD document writer (bridge/csd/writer.py): schema validity against our schema and the
official 2014 one, XSD element order, the streaming path, the response wrappers and text escaping."""

from __future__ import annotations

import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import replace
from datetime import UTC, date, datetime, time, timedelta, timezone
from pathlib import Path
from typing import Any, overload
from zoneinfo import ZoneInfo

import pytest
from lxml import etree

from bridge import ns, profile
from bridge.csd.writer import (
    COPY_CHUNK,
    FLUSH_EVERY,
    _spooled_elements,
    document_to_bytes,
    facility_number,
    write_csd,
    write_response_body,
    xs_date,
    xs_datetime,
    xs_decimal,
    xs_time,
)
from bridge.model import (
    Address,
    AddressLine,
    CodedType,
    ContactPoint,
    Credential,
    CsdDocument,
    CsdRequest,
    CsdResponse,
    Demographic,
    Device,
    Extension,
    ExtensionNode,
    Facility,
    FacilityOrganization,
    FacilityService,
    Geocode,
    OperatingHours,
    Organization,
    OtherID,
    PersonName,
    Provider,
    ProviderFacility,
    ProviderOrganization,
    ProviderService,
    Record,
    RequestForm,
    Service,
    Transaction,
)
from tests.profile.harness import OfficialProfile, assert_follows_profile

CSD = ns.CSD


def q(local: str) -> str:
    return ns.qn(CSD, local)


# --------------------------------------------------------------------------------------------------
# Test data: every record type with every optional field populated


RECORD = Record(
    created=datetime(2015, 3, 1, 8, 0, tzinfo=UTC),
    updated=datetime(2024, 6, 30, 17, 45, 12, tzinfo=timezone(timedelta(hours=2))),
    status="Active",
    source_directory="https://ror.example.fr/csd",
)
CODED = CodedType("355", "1.2.250.1.213.3.3.65", "Centre Hospitalier (C.H.)")
PHONE = ContactPoint(
    CodedType("BP", "urn:ihe:iti:csd:2013:contactPoint", "+33 1 42 16 00 00"), "Fixe", "Accueil"
)
ADDRESS = Address(
    lines=(
        AddressLine("47-83 boulevard de l'Hôpital", "streetAddress"),
        AddressLine("Paris", "city"),
        AddressLine("75013", "postalCode"),
    ),
    type="Practice",
)
HOURS = OperatingHours(
    open_flag=True,
    begin_effective_date=date(2024, 1, 1),
    days_of_week=(1, 2, 3, 4, 5),
    beginning_hour=time(8, 30),
    ending_hour=time(18, 0),
    end_effective_date=date(2024, 12, 31),
)
EXTENSION = Extension(
    type="capacite",
    urn="urn:ror:csd:extension:capacite",
    content=ExtensionNode(
        name="capacite",
        attributes=(("nature", "01"),),
        children=(
            ExtensionNode("nombreLits", text="24"),
            ExtensionNode(
                "statut", attributes=(("code", "A"),), children=(ExtensionNode("libelle", "Actif"),)
            ),
        ),
    ),
)
EMPTY_EXTENSION = Extension(type="marqueur", urn="urn:ror:csd:extension:marqueur")


def full_organization(entity_id: str = "urn:uuid:00000000-0000-4000-8000-000000000001") -> Organization:
    return Organization(
        entity_id=entity_id,
        coded_types=(CODED, CodedType("1", "1.2.250.1.71.4.2.2")),
        primary_name="CHU de Paris",
        record=RECORD,
        other_ids=(OtherID("750712184", "1.2.250.1.71.4.2.2"), OtherID("1750712184", "1.2.250.1.71.4.2.1")),
        other_names=("AP-HP", "Assistance publique"),
        addresses=(ADDRESS,),
        contact_points=(PHONE,),
        parent_id="urn:uuid:00000000-0000-4000-8000-000000000000",
        extensions=(EXTENSION, EMPTY_EXTENSION),
    )


def full_service() -> Service:
    return Service(
        entity_id="urn:uuid:00000000-0000-4000-8000-000000000002",
        coded_type=CodedType("07", "1.2.250.1.213.3.3.11", "Médecine d'urgence"),
        record=RECORD,
        extensions=(EXTENSION,),
    )


def full_facility() -> Facility:
    return Facility(
        entity_id="urn:uuid:00000000-0000-4000-8000-000000000003",
        coded_types=(CODED,),
        primary_name="Site Pitié-Salpêtrière",
        record=RECORD,
        other_ids=(OtherID("750100125", "1.2.250.1.71.4.2.2"),),
        other_names=("La Pitié",),
        addresses=(ADDRESS,),
        contact_points=(PHONE,),
        geocode=Geocode(48.837, 2.3652, 35.5, "WGS84"),
        organizations=(
            FacilityOrganization(
                entity_id="urn:uuid:00000000-0000-4000-8000-000000000001",
                services=(
                    FacilityService(
                        entity_id="urn:uuid:00000000-0000-4000-8000-000000000002",
                        names=("Urgences adultes", "SAU"),
                        operating_hours=(HOURS,),
                        extensions=(EXTENSION,),
                    ),
                ),
                extensions=(EMPTY_EXTENSION,),
            ),
        ),
        operating_hours=(HOURS,),
        extensions=(EXTENSION,),
    )


DOCTEUR = CodedType("DR", "1.2.250.1.213.1.6.1.11", "Docteur")  # TRE_R11, the profile's coded honorific


def full_provider() -> Provider:
    return Provider(
        entity_id="urn:uuid:00000000-0000-4000-8000-000000000004",
        coded_types=(CodedType("10", "1.2.250.1.71.1.2.7", "Médecin"),),
        demographic=Demographic(
            names=(PersonName(("Dr Émile Roux",), DOCTEUR, "Émile", "Roux", "fils"),),
            contact_points=(PHONE,),
            addresses=(ADDRESS,),
            gender="M",
            date_of_birth=date(1970, 5, 17),
        ),
        record=RECORD,
        other_ids=(OtherID("810000000000", "1.2.250.1.71.4.2.1"),),
        organizations=(
            ProviderOrganization(
                entity_id="urn:uuid:00000000-0000-4000-8000-000000000001",
                extensions=(EXTENSION,),
                addresses=(ADDRESS,),
                contact_points=(PHONE,),
            ),
        ),
        facilities=(
            ProviderFacility(
                entity_id="urn:uuid:00000000-0000-4000-8000-000000000003",
                services=(
                    ProviderService(
                        entity_id="urn:uuid:00000000-0000-4000-8000-000000000002",
                        names=("Urgences",),
                        organization_id="urn:uuid:00000000-0000-4000-8000-000000000001",
                        operating_hours=(HOURS,),
                        extensions=(EXTENSION,),
                    ),
                ),
                operating_hours=(HOURS,),
                extensions=(EXTENSION,),
            ),
        ),
        credentials=(
            Credential(
                coded_type=CodedType("RPPS", "1.2.250.1.71.4.2.1"),
                number="10001234567",
                issuing_authority="Ordre des médecins",
                issue_date=date(2000, 1, 1),
                renewal_date=date(2030, 1, 1),
                extensions=(EXTENSION,),
            ),
        ),
        specialties=(CodedType("SM26", "1.2.250.1.71.4.2.5", "Médecine générale"),),
        extensions=(EXTENSION,),
    )


FULL = CsdDocument(
    organizations=(full_organization(),),
    services=(full_service(),),
    facilities=(full_facility(),),
    providers=(full_provider(),),
)
EMPTY = CsdDocument()


def minimal_organization(index: int) -> Organization:
    return Organization(
        entity_id=f"urn:uuid:00000000-0000-4000-8000-{index:012d}",
        coded_types=(CODED,),
        primary_name=f"Organisation {index}",
        record=RECORD,
    )


def request(transaction: Transaction = Transaction.CARE_SERVICES) -> CsdRequest:
    form = (
        RequestForm.MODIFICATIONS if transaction == Transaction.MODIFICATIONS else RequestForm.ROOT_URN_2016
    )
    return CsdRequest(transaction=transaction, form=form)


# --------------------------------------------------------------------------------------------------
# Helpers


class Sink:
    """The async sink `etree.xmlfile` writes into: keeps every chunk it receives."""

    def __init__(self) -> None:
        self.chunks: list[bytes] = []

    async def write(self, data: bytes) -> None:
        self.chunks.append(bytes(data))

    @property
    def data(self) -> bytes:
        return b"".join(self.chunks)


class RawWriter:
    """lxml's async xmlfile with `write_raw`, as the edge's writer (soap/envelope.py) gives it to the CSD
    writer: serialised bytes after what lxml holds. Counts the raw writes."""

    def __init__(self, xf: Any, sink: Sink) -> None:
        self.xf = xf
        self.sink = sink
        self.raw: list[bytes] = []

    async def write_raw(self, data: bytes) -> None:
        self.raw.append(data)
        await self.xf.flush()
        await self.sink.write(data)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.xf, name)


async def stream_document(document: CsdDocument) -> Sink:
    sink = Sink()
    async with etree.xmlfile(sink, encoding="utf-8") as xf:
        await xf.write_declaration()
        await write_csd(RawWriter(xf, sink), document)
    return sink


async def stream_body(response: CsdResponse, *, encapsulated: bool) -> bytes:
    sink = Sink()
    async with etree.xmlfile(sink, encoding="utf-8") as xf:
        await write_response_body(RawWriter(xf, sink), response, encapsulated=encapsulated)
    return sink.data


def parse(data: bytes) -> etree._Element:
    return etree.fromstring(data, etree.XMLParser(resolve_entities=False, no_network=True))


def c14n(data: bytes) -> str:
    return etree.canonicalize(etree.ElementTree(parse(data)))


def children(element: etree._Element) -> list[str]:
    return [etree.QName(child).localname for child in element]


def assert_valid(schema: etree.XMLSchema, data: bytes) -> None:
    tree = etree.ElementTree(parse(data))
    assert schema.validate(tree), str(schema.error_log)


# --------------------------------------------------------------------------------------------------
# Schema validity


@pytest.mark.parametrize("document", [FULL, EMPTY], ids=["full", "empty"])
def test_document_is_valid_against_our_schema(document: CsdDocument, our_csd_schema: etree.XMLSchema) -> None:
    assert_valid(our_csd_schema, document_to_bytes(document))


@pytest.mark.parametrize("document", [FULL, EMPTY], ids=["full", "empty"])
def test_document_is_valid_against_the_official_2014_schema(
    document: CsdDocument, official_csd_schema: etree.XMLSchema
) -> None:
    # The fixture sets the profile's deviceDirectory aside (conftest.Csd2014WithDevices) ...
    assert_valid(official_csd_schema, document_to_bytes(document))


def test_an_empty_document_follows_the_official_ror_profile(official_profile: OfficialProfile) -> None:
    # FULL exercises every element of the CSD 2014 schema with sample values (IHE contact point codes,
    # credentials, altitude…): a writer fixture, not an answer of the mapping tables, valid against the 2014
    # schema (above). The tables' answers are checked against the profile where they are produced
    # (tests/golden, tests/translate, tests/test_extraction.py).
    assert_follows_profile(official_profile, parse(document_to_bytes(EMPTY)))


def test_the_2014_schema_alone_refuses_the_device_directory(official_csd_schema: Any) -> None:
    # ... which plain CSD 2014 does not have.
    root = parse(document_to_bytes(EMPTY))
    assert root[-1].tag == q("deviceDirectory")
    assert not official_csd_schema.schema.validate(etree.ElementTree(root))
    root.remove(root[-1])
    assert official_csd_schema.schema.validate(etree.ElementTree(root))


def test_our_schema_rejects_what_the_official_one_rejects(
    our_csd_schema: etree.XMLSchema, official_csd_schema: etree.XMLSchema
) -> None:
    # A service with two codedTypes is valid in 2016 only; the 2014 revision (and ours) refuses it.
    root = parse(document_to_bytes(CsdDocument(services=(full_service(),))))
    service = root.find(f"{q('serviceDirectory')}/{q('service')}")
    assert service is not None
    service.insert(1, etree.fromstring(f'<c:codedType xmlns:c="{CSD}" code="x" codingScheme="y"/>'))
    for schema in (our_csd_schema, official_csd_schema):
        assert not schema.validate(etree.ElementTree(root))


def test_empty_document_has_the_five_directories_in_order() -> None:
    root = parse(document_to_bytes(EMPTY))
    assert root.tag == q("CSD")
    assert children(root) == [
        "organizationDirectory",
        "serviceDirectory",
        "facilityDirectory",
        "providerDirectory",
        "deviceDirectory",
    ]
    assert all(len(directory) == 0 for directory in root)


def test_document_starts_with_an_xml_declaration_and_uses_the_csd_prefix() -> None:
    data = document_to_bytes(FULL)
    assert data.startswith(b"<?xml")
    root = parse(data)
    assert root.prefix == "csd"
    assert root.nsmap["csd"] == CSD


# --------------------------------------------------------------------------------------------------
# Element order (XSD sequences of the 2014 revision)


def test_element_order_of_every_entry() -> None:
    root = parse(document_to_bytes(FULL))
    organization = root.find(f"{q('organizationDirectory')}/{q('organization')}")
    service = root.find(f"{q('serviceDirectory')}/{q('service')}")
    facility = root.find(f"{q('facilityDirectory')}/{q('facility')}")
    provider = root.find(f"{q('providerDirectory')}/{q('provider')}")
    assert organization is not None
    assert service is not None
    assert facility is not None
    assert provider is not None

    assert children(organization) == [
        "otherID", "otherID", "codedType", "codedType", "primaryName", "otherName", "otherName",
        "address", "contactPoint", "parent", "extension", "extension", "record",
    ]  # fmt: skip
    assert children(service) == ["codedType", "extension", "record"]
    assert children(facility) == [
        "otherID", "codedType", "primaryName", "otherName", "address", "geocode", "contactPoint",
        "organizations", "operatingHours", "extension", "record",
    ]  # fmt: skip
    assert children(provider) == [
        "otherID", "codedType", "demographic", "organizations", "facilities", "credential", "specialty",
        "extension", "record",
    ]  # fmt: skip


def test_element_order_inside_nested_structures() -> None:
    root = parse(document_to_bytes(FULL))

    def one(path: str) -> etree._Element:
        found = root.find(path, {"c": CSD})
        assert found is not None, path
        return found

    facility = "c:facilityDirectory/c:facility"
    provider = "c:providerDirectory/c:provider"
    assert children(one(f"{facility}/c:organizations/c:organization")) == ["service", "extension"]
    assert children(one(f"{facility}/c:organizations/c:organization/c:service")) == [
        "name", "name", "operatingHours", "extension",
    ]  # fmt: skip
    assert children(one(f"{facility}/c:organizations/c:organization/c:service/c:name")) == ["commonName"]
    assert children(one(f"{facility}/c:geocode")) == ["latitude", "longitude", "altitude", "coordinateSystem"]
    assert children(one(f"{facility}/c:operatingHours")) == [
        "openFlag", "dayOfTheWeek", "dayOfTheWeek", "dayOfTheWeek", "dayOfTheWeek", "dayOfTheWeek",
        "beginningHour", "endingHour", "beginEffectiveDate", "endEffectiveDate",
    ]  # fmt: skip
    # provider/organizations/organization: extension comes before address and contactPoint.
    assert children(one(f"{provider}/c:organizations/c:organization")) == [
        "extension",
        "address",
        "contactPoint",
    ]
    assert children(one(f"{provider}/c:facilities/c:facility")) == ["service", "operatingHours", "extension"]
    assert children(one(f"{provider}/c:facilities/c:facility/c:service")) == [
        "name", "organization", "operatingHours", "extension",
    ]  # fmt: skip
    assert children(one(f"{provider}/c:demographic")) == [
        "name", "contactPoint", "address", "gender", "dateOfBirth",
    ]  # fmt: skip
    assert children(one(f"{provider}/c:demographic/c:name")) == [
        "commonName", "honorific", "forename", "surname", "suffix",
    ]  # fmt: skip
    assert children(one(f"{provider}/c:credential")) == [
        "codedType", "number", "issuingAuthority", "credentialIssueDate", "credentialRenewalDate",
        "extension",
    ]  # fmt: skip
    assert children(one(f"{provider}/c:demographic/c:contactPoint")) == ["codedType", "equipment", "purpose"]


def test_empty_optionals_are_omitted() -> None:
    facility = Facility(
        entity_id="f1",
        coded_types=(CODED,),
        primary_name="Site",
        record=Record(datetime(2020, 1, 1), datetime(2020, 1, 2), "Inactive"),
        addresses=(Address(lines=()),),  # an address without lines is empty
        contact_points=(ContactPoint(CodedType("EMAIL", "s", "a@b.fr"), equipment="", purpose=None),),
    )
    root = parse(document_to_bytes(CsdDocument(facilities=(facility,))))
    element = root.find(f"{q('facilityDirectory')}/{q('facility')}")
    assert element is not None
    assert children(element) == ["codedType", "primaryName", "contactPoint", "record"]
    assert children(element[2]) == ["codedType"]
    record = element[3]
    assert "sourceDirectory" not in record.attrib


# --------------------------------------------------------------------------------------------------
# Values


def test_values_are_written_in_their_xsd_lexical_forms() -> None:
    root = parse(document_to_bytes(FULL))
    ns_ = {"c": CSD}
    record = root.find("c:organizationDirectory/c:organization/c:record", ns_)
    assert record is not None
    assert dict(record.attrib) == {
        "created": "2015-03-01T08:00:00Z",
        "updated": "2024-06-30T17:45:12+02:00",
        "status": "Active",
        "sourceDirectory": "https://ror.example.fr/csd",
    }
    hours = root.find("c:facilityDirectory/c:facility/c:operatingHours", ns_)
    assert hours is not None
    assert [child.text for child in hours] == [
        "true", "1", "2", "3", "4", "5", "08:30:00", "18:00:00", "2024-01-01", "2024-12-31",
    ]  # fmt: skip
    geocode = root.find("c:facilityDirectory/c:facility/c:geocode", ns_)
    assert geocode is not None
    assert [child.text for child in geocode] == ["48.837", "2.3652", "35.5", "WGS84"]
    coded = root.find("c:organizationDirectory/c:organization/c:codedType", ns_)
    assert coded is not None
    assert (coded.get("code"), coded.get("codingScheme"), coded.text) == (
        CODED.code,
        CODED.coding_scheme,
        CODED.display,
    )
    other_id = root.find("c:organizationDirectory/c:organization/c:otherID", ns_)
    assert other_id is not None
    assert dict(other_id.attrib) == {"code": "750712184", "assigningAuthorityName": "1.2.250.1.71.4.2.2"}
    assert other_id.text is None  # CSD 2014: otherID has no text content
    parent = root.find("c:organizationDirectory/c:organization/c:parent", ns_)
    assert parent is not None
    assert dict(parent.attrib) == {"entityID": "urn:uuid:00000000-0000-4000-8000-000000000000"}


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (datetime(2024, 1, 2, 3, 4, 5), "2024-01-02T03:04:05Z"),  # naive: taken as UTC
        (datetime(2024, 1, 2, 3, 4, 5, 120000, tzinfo=UTC), "2024-01-02T03:04:05.120000Z"),
        (
            datetime(2024, 1, 2, 3, 4, 5, tzinfo=timezone(timedelta(hours=-5, minutes=-30))),
            "2024-01-02T03:04:05-05:30",
        ),
        (datetime(2024, 1, 2, 0, 0, 30, tzinfo=timezone(timedelta(seconds=30))), "2024-01-02T00:00:00Z"),
        # a zero offset that is not UTC itself is `Z` too; a time-zone database zone takes its offset then
        (datetime(2024, 1, 2, 3, 4, 5, tzinfo=timezone(timedelta(0))), "2024-01-02T03:04:05Z"),
        (
            datetime(2024, 7, 2, 3, 4, 5, 7, tzinfo=ZoneInfo("Europe/Paris")),
            "2024-07-02T03:04:05.000007+02:00",
        ),
        (datetime(2024, 1, 2, 3, 4, 5, tzinfo=ZoneInfo("Europe/Paris")), "2024-01-02T03:04:05+01:00"),
        (datetime(2024, 1, 2, 3, 4, 5, tzinfo=ZoneInfo("Europe/London")), "2024-01-02T03:04:05Z"),
    ],
)
def test_xs_datetime(value: datetime, expected: str) -> None:
    assert xs_datetime(value) == expected


def test_xs_date_time_decimal() -> None:
    assert xs_date(date(2024, 2, 29)) == "2024-02-29"
    assert xs_date(datetime(2024, 2, 29, 23, 0)) == "2024-02-29"
    assert xs_time(time(7, 5)) == "07:05:00"
    assert xs_time(time(7, 5, tzinfo=timezone(timedelta(hours=1)))) == "07:05:00+01:00"
    assert xs_decimal(1e-05) == "0.00001"
    assert xs_decimal(-0.5) == "-0.5"
    assert xs_decimal(45.0) == "45"
    assert xs_decimal(1e20) == "100000000000000000000"
    with pytest.raises(ValueError, match="xs:decimal"):
        xs_decimal(float("nan"))


def test_extension_content_is_written_unqualified() -> None:
    # The one child the v2.4 profile's extension type leaves open is unqualified (xs:any ##local).
    root = parse(document_to_bytes(CsdDocument(services=(full_service(),))))
    extension = root.find(f"{q('serviceDirectory')}/{q('service')}/{q('extension')}")
    assert extension is not None
    assert dict(extension.attrib) == {"type": "capacite", "urn": "urn:ror:csd:extension:capacite"}
    assert len(extension) == 1  # CSD schema: at most one child element
    content = extension[0]
    assert content.tag == "capacite"
    assert dict(content.attrib) == {"nature": "01"}
    assert [child.tag for child in content] == ["nombreLits", "statut"]
    assert content[0].text == "24"
    assert content[1].get("code") == "A"
    assert content[1][0].tag == "libelle"
    assert content[1][0].text == "Actif"


def test_extension_without_content_is_empty() -> None:
    organization = full_organization()
    root = parse(document_to_bytes(CsdDocument(organizations=(organization,))))
    extensions = root.findall(f"{q('organizationDirectory')}/{q('organization')}/{q('extension')}")
    assert [len(extension) for extension in extensions] == [1, 0]
    assert extensions[1].text is None


HOSTILE = "A < B & C > D \"quoted\" 'apos' ]]> <!-- x --> &amp; Hôpital Émile-Roux — Saint-Étienne 漢字 🏥"


def test_hostile_text_round_trips(our_csd_schema: etree.XMLSchema) -> None:
    organization = Organization(
        entity_id='urn:"id"&<x>',
        coded_types=(CodedType(code="<&>", coding_scheme="\"'", display=HOSTILE),),
        primary_name=HOSTILE,
        record=Record(datetime(2020, 1, 1), datetime(2020, 1, 1), "Active"),
        other_names=(HOSTILE,),
        addresses=(Address((AddressLine(HOSTILE, component=HOSTILE),), type=HOSTILE),),
        extensions=(
            Extension(
                HOSTILE, HOSTILE, ExtensionNode("texte", text=HOSTILE, attributes=(("valeur", HOSTILE),))
            ),
        ),
    )
    data = document_to_bytes(CsdDocument(organizations=(organization,)))
    assert_valid(our_csd_schema, data)
    element = parse(data).find(f"{q('organizationDirectory')}/{q('organization')}")
    assert element is not None
    assert element.get("entityID") == 'urn:"id"&<x>'
    coded, primary, other, address, extension = element[0], element[1], element[2], element[3], element[4]
    assert (coded.get("code"), coded.get("codingScheme"), coded.text) == ("<&>", "\"'", HOSTILE)
    assert primary.text == HOSTILE
    assert other.text == HOSTILE
    assert address.get("type") == HOSTILE
    assert (address[0].text, address[0].get("component")) == (HOSTILE, HOSTILE)
    assert (extension.get("type"), extension.get("urn")) == (HOSTILE, HOSTILE)
    assert (extension[0].text, extension[0].get("valeur")) == (HOSTILE, HOSTILE)


def test_characters_xml_cannot_carry_are_replaced() -> None:
    organization = minimal_organization(1)
    broken = Organization(
        entity_id=organization.entity_id,
        coded_types=organization.coded_types,
        primary_name="Cabinet\x0b du\x00 Dr X\ud800 \t fin",
        record=organization.record,
    )
    element = parse(document_to_bytes(CsdDocument(organizations=(broken,))))[0][0]
    assert element.findtext(q("primaryName")) == "Cabinet\ufffd du\ufffd Dr X\ufffd \t fin"


# --------------------------------------------------------------------------------------------------
# Streaming


async def test_streamed_document_equals_document_to_bytes(our_csd_schema: etree.XMLSchema) -> None:
    many = CsdDocument(
        organizations=(*(minimal_organization(i) for i in range(450)), full_organization()),
        services=(full_service(),) * 3,
        facilities=(full_facility(),) * 2,
        providers=(full_provider(),),
    )
    for document in (FULL, EMPTY, many):
        sink = await stream_document(document)
        assert c14n(sink.data) == c14n(document_to_bytes(document))
        assert_valid(our_csd_schema, sink.data)


class CountingSequence(Sequence[Organization]):
    """A directory whose entries are made on demand, counting how many were asked for."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.produced = 0

    def __len__(self) -> int:
        return self.size

    @overload
    def __getitem__(self, index: int) -> Organization: ...
    @overload
    def __getitem__(self, index: slice) -> Sequence[Organization]: ...
    def __getitem__(self, index: int | slice) -> Any:
        raise NotImplementedError("the writer must iterate, not index")

    def __iter__(self) -> Iterator[Organization]:
        for i in range(self.size):
            self.produced += 1
            yield minimal_organization(i)


async def test_large_document_is_streamed_in_chunks_while_records_are_produced() -> None:
    size = 20_000
    organizations = CountingSequence(size)
    produced_at_first_chunk: list[int] = []

    class ObservingSink(Sink):
        async def write(self, data: bytes) -> None:
            if not self.chunks:
                produced_at_first_chunk.append(organizations.produced)
            await super().write(data)

    sink = ObservingSink()
    async with etree.xmlfile(sink, encoding="utf-8") as xf:
        await write_csd(RawWriter(xf, sink), CsdDocument(organizations=organizations))

    # The first bytes left before most records existed: the document is never built whole.
    assert produced_at_first_chunk
    assert produced_at_first_chunk[0] <= 2 * FLUSH_EVERY
    assert len(sink.chunks) >= size // FLUSH_EVERY
    root = parse(sink.data)
    assert len(root[0]) == size
    assert root[0][-1].get("entityID") == minimal_organization(size - 1).entity_id


# --------------------------------------------------------------------------------------------------
# Response wrappers


async def test_iti73_encapsulated_wrapper(
    our_csd_schema: etree.XMLSchema, official_csd_schema: etree.XMLSchema
) -> None:
    data = await stream_body(CsdResponse(request(), FULL), encapsulated=True)
    root = parse(data)
    assert root.tag == q("careServicesResponse")
    assert dict(root.attrib) == {"content-type": "text/xml"}
    assert children(root) == ["result"]
    # The ROR v2.4 profile's Result: facilityNumber (the unités élémentaires, PLATINES RG_ALIM_019), then
    # queryResult of type CSD (the four directories directly inside).
    assert [child.tag for child in root[0]] == [q("facilityNumber"), q("queryResult")]
    units = sum(1 for f in FULL.facilities for c in f.coded_types if c.code == "4")
    assert root[0][0].text == str(units) == str(facility_number(FULL))
    query_result = root[0][1]
    query_result.tag = q("CSD")
    assert c14n(etree.tostring(query_result)) == c14n(document_to_bytes(FULL))
    assert_valid(our_csd_schema, data)
    assert_valid(official_csd_schema, data)


async def test_facility_number_counts_units_as_platines_does() -> None:
    """count(//facility/codedType[@code="4"]) of the answer, whether written from records or a spool."""
    unit = CodedType("4", "1.2.250.1.213.3.3.8", "Unité élémentaire")
    facilities = [
        replace(FULL.facilities[0], entity_id=f"urn:x:{n}", coded_types=(unit,) if n % 2 else ())
        for n in range(5)
    ]
    document = replace(FULL, facilities=facilities)
    assert facility_number(document) == 2
    data = await stream_body(CsdResponse(request(), document), encapsulated=True)
    root = parse(data)
    assert root[0][0].text == "2"
    assert len(root.findall(f".//{q('facility')}/{q('codedType')}[@code='4']")) == 2
    # A delta answer's directories, pre-written to a file (CsdResponse.directories): same count.
    with tempfile.TemporaryFile() as spool:
        spool.write(document_to_bytes(document).split(b">", 2)[2].rsplit(b"</csd:CSD>", 1)[0])
        sink = Sink()
        async with etree.xmlfile(sink, encoding="utf-8") as xf:

            async def write_raw(data: bytes) -> None:
                await xf.flush()
                await sink.write(data)

            class Raw:  # the edge's writer (soap/envelope.py) adds write_raw to lxml's
                def __getattr__(self, name: str) -> Any:
                    return write_raw if name == "write_raw" else getattr(xf, name)

            await write_response_body(
                Raw(), CsdResponse(request(), EMPTY, directories=spool), encapsulated=True
            )
        spooled = parse(sink.data)
    assert spooled[0][0].text == "2"
    assert c14n(etree.tostring(spooled[0][1])) == c14n(etree.tostring(root[0][1]))


async def test_iti73_not_encapsulated_is_the_bare_document(our_csd_schema: etree.XMLSchema) -> None:
    data = await stream_body(CsdResponse(request(), FULL), encapsulated=False)
    assert parse(data).tag == q("CSD")
    assert c14n(data) == c14n(document_to_bytes(FULL))
    assert_valid(our_csd_schema, data)


@pytest.mark.parametrize("encapsulated", [True, False])
async def test_iti74_wrapper(
    encapsulated: bool, our_csd_schema: etree.XMLSchema, official_csd_schema: etree.XMLSchema
) -> None:
    data = await stream_body(
        CsdResponse(request(Transaction.MODIFICATIONS), EMPTY), encapsulated=encapsulated
    )
    root = parse(data)
    assert root.tag == q("getModificationsResponse")
    assert [child.tag for child in root] == [q("CSD")]
    assert c14n(etree.tostring(root[0])) == c14n(document_to_bytes(EMPTY))
    assert_valid(our_csd_schema, data)
    assert_valid(official_csd_schema, data)


async def test_entries_go_out_flush_every_records_at_a_time() -> None:
    """The entries' bytes leave in batches of FLUSH_EVERY records (the last of each directory smaller), each
    after what lxml holds: the document is whole and in order."""
    records = 5 * FLUSH_EVERY + 7
    document = CsdDocument(
        organizations=tuple(minimal_organization(i) for i in range(records - 7)),
        services=(full_service(),) * 7,
    )
    sink = Sink()
    async with etree.xmlfile(sink, encoding="utf-8") as xf:
        writer = RawWriter(xf, sink)
        await xf.write_declaration()
        await write_csd(writer, document)
    assert [chunk.count(b"<csd:record ") for chunk in writer.raw] == [FLUSH_EVERY] * 5 + [7]
    assert sink.data == document_to_bytes(document)


def test_a_spooled_answer_is_read_one_chunk_at_a_time() -> None:
    """Reading a pre-written answer (facilityNumber, TR-Notif) holds the entries of one read chunk at most,
    the other directories' entries included (measured: 4.7 MiB of peak RSS growth for a 147 MiB spool of
    200 000 organisations and 200 000 facilities, against 743 MiB when only the wanted entries were
    cleared)."""
    count = 3000
    document = CsdDocument(
        organizations=[minimal_organization(i) for i in range(count)],
        facilities=[replace(full_facility(), entity_id=f"urn:x:{i}") for i in range(count)],
    )
    with tempfile.TemporaryFile() as spool:
        data = document_to_bytes(document).split(b">", 2)[2].rsplit(b"</csd:CSD>", 1)[0]
        assert len(data) > 4 * COPY_CHUNK  # several read chunks
        spool.write(data)
        held = []
        for element in _spooled_elements(spool, "facility"):
            root = element.getroottree().getroot()
            assert len(root[0]) <= 1  # the organisations read before are gone
            held.append(sum(len(directory) for directory in root))
        assert len(held) == count
        assert max(held) < count // 2
        assert sum(1 for _ in _spooled_elements(spool, "organization")) == count


# --------------------------------------------------------------------------------------------------
# Typed elements of the ROR CSD v2.4 profile (Extension.profile)

ROR_V24 = "ror-v24/local/IHE_ProfilCSD-ExtensionROR_fr-v2.4.xsd"


def profile_element(name: str, text: str | None = None, **attributes: str) -> Extension:
    node = ExtensionNode(name, text=text, attributes=tuple(attributes.items()))
    return Extension("organisationExtension", profile.URN, node, profile=True)


def test_profile_elements_go_into_one_extension_in_the_sequence_order() -> None:
    organization = Organization(
        entity_id="urn:ror:idnatstruct:1",
        coded_types=(CODED,),
        primary_name="Hôpital",
        record=RECORD,
        extensions=(
            profile_element("dropZone", "true"),
            Extension("commentaire", "urn:ror:csd:extension", ExtensionNode("commentaire", text="c")),
            profile_element("financialHelpType", "aide sociale", code="01", codingScheme="1.2.3"),
            profile_element("useName", "Hôpital Nord"),
            profile_element("financialHelpType", None, code="02", codingScheme="1.2.3"),
        ),
    )
    root = parse(document_to_bytes(CsdDocument(organizations=(organization,))))
    extensions = root.findall(f"{q('organizationDirectory')}/{q('organization')}/{q('extension')}")
    # The typed extension takes the place of its first element; the ROR tree stays where it was.
    assert [e.get("type") for e in extensions] == ["organisationExtension", "commentaire"]
    typed = extensions[0]
    assert typed.get("urn") == profile.URN
    assert [child.tag for child in typed] == [
        q("useName"),
        q("dropZone"),
        q("financialHelpType"),
        q("financialHelpType"),
    ]
    assert [child.get("code") for child in typed[2:]] == ["01", "02"]  # repeats keep their order
    assert typed[0].text == "Hôpital Nord"


def test_profile_elements_nest_in_the_csd_namespace() -> None:
    record = ExtensionNode("record", attributes=(("created", "2020-01-01T00:00:00Z"),))
    node = ExtensionNode("healthCareTerritorial", children=(ExtensionNode("type", attributes=()), record))
    organization = replace(
        full_organization(), extensions=(Extension("organisationExtension", profile.URN, node, profile=True),)
    )
    root = parse(document_to_bytes(CsdDocument(organizations=(organization,))))
    territorial = root.find(f".//{q('extension')}/{q('healthCareTerritorial')}")
    assert territorial is not None
    assert [child.tag for child in territorial] == [q("type"), q("record")]


def test_an_element_outside_the_sequence_is_refused() -> None:
    organization = replace(full_organization(), extensions=(profile_element("typeActivity", "x"),))
    with pytest.raises(ValueError, match="typeActivity"):
        document_to_bytes(CsdDocument(organizations=(organization,)))


def test_organization_with_profile_elements_is_valid_against_the_official_v24_schema(
    reference_dir: Path,
) -> None:
    schema = etree.XMLSchema(etree.parse(str(reference_dir / ROR_V24)))
    organization = Organization(
        entity_id="urn:ror:idnatstruct:1",
        coded_types=(CODED,),
        primary_name="Hôpital",
        record=RECORD,
        other_ids=(OtherID("1", "1.2.250.1.71.4.2.2"),),
        parent_id="urn:ror:idnatstruct:0",
        extensions=(
            profile_element("closingDate", "2030-01-01"),
            profile_element("dropZone", "false"),
            profile_element("useName", "Hôpital Nord"),
            profile_element("nbPermanentSocialHelpPlace", "12"),
        ),
    )
    device = Device("urn:ror:equipement:1", CodedType("052", "1.2.250.1.213.3.3.70"), RECORD)
    data = document_to_bytes(CsdDocument(organizations=(organization,), devices=(device,)))
    assert_valid(schema, data)
    # The same organisation with the elements out of order would not be: the writer's order is the schema's.
    root = parse(data)
    typed = root.find(f".//{q('extension')}")
    assert typed is not None
    typed.insert(0, typed[-1])
    assert not schema.validate(etree.ElementTree(root))
