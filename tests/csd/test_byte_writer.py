"""The byte writer (bridge/csd/writer.py) writes what lxml's serialiser writes for the same tree: each entry
against the tree-building writer it replaced (tests/csd/lxml_reference.py) over random records, and the
escaping of text and attribute values against lxml itself over random strings (any code point: non-ASCII,
controls, lone surrogates, `]]>`)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta, timezone
from io import BytesIO
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from lxml import etree

from bridge import ns, profile
from bridge.csd import writer
from bridge.model import (
    Address,
    AddressLine,
    CodedType,
    ContactPoint,
    Credential,
    CsdDocument,
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
    Service,
)
from tests.csd import lxml_reference as reference

# Any code point, surrogates included (they reach the writer from upstream JSON), weighted towards the ones
# an escape applies to.
TEXT = st.text(
    st.one_of(
        st.characters(codec=None),
        st.sampled_from(["&", "<", ">", '"', "'", "\t", "\n", "\r", "]", "\x00", "\x1f", "\ud800", "\ufffe"]),
    ),
    max_size=12,
)
SOME = st.text(max_size=3)  # short plain values: most of a record
MAYBE = st.none() | TEXT
NAMES = st.sampled_from(["a", "code", "x-y", "élément", "n1", "record"])


def tuples(strategy: st.SearchStrategy[Any], size: int = 2) -> st.SearchStrategy[tuple[Any, ...]]:
    return st.lists(strategy, max_size=size).map(tuple)


ZONES = st.sampled_from([None, UTC, timezone(timedelta(hours=2)), timezone(timedelta(hours=-3, seconds=7))])
DATETIMES = st.datetimes(timezones=ZONES)
TIMES = st.times(timezones=ZONES)
DATES = st.none() | st.dates()
FLOATS = st.floats(allow_nan=False, allow_infinity=False, width=32)

CODED = st.builds(CodedType, TEXT, TEXT, MAYBE)
OTHER_ID = st.builds(OtherID, TEXT, TEXT)
RECORD = st.builds(Record, DATETIMES, DATETIMES, TEXT, MAYBE)
ADDRESS = st.builds(Address, tuples(st.builds(AddressLine, TEXT, MAYBE)), MAYBE)
CONTACT = st.builds(ContactPoint, CODED, MAYBE, MAYBE)
NODE: st.SearchStrategy[ExtensionNode] = st.deferred(
    lambda: st.builds(ExtensionNode, NAMES, MAYBE, tuples(st.tuples(NAMES, TEXT), 3), tuples(NODE))
)
EXTENSION = st.builds(Extension, TEXT, TEXT, st.none() | NODE)


@st.composite
def profile_extension(draw: st.DrawFn) -> Extension:
    """A typed element of the ROR v2.4 profile, as the engine makes them (the writer groups them)."""
    extension_type = draw(st.sampled_from(sorted(profile.SEQUENCES)))
    name = draw(st.sampled_from(profile.SEQUENCES[extension_type]))
    node = draw(
        st.builds(ExtensionNode, st.just(name), MAYBE, tuples(st.tuples(NAMES, TEXT)), tuples(NODE, 1))
    )
    return Extension(extension_type, "urn:ror", node, profile=True)


EXTENSIONS = tuples(EXTENSION | profile_extension(), 4)
HOURS = st.builds(
    OperatingHours,
    st.booleans(),
    st.dates(),
    tuples(st.integers(0, 6)),
    st.none() | TIMES,
    st.none() | TIMES,
    st.none() | st.dates(),
    EXTENSIONS,
)
ORGANIZATION = st.builds(
    Organization,
    TEXT,
    tuples(CODED),
    TEXT,
    RECORD,
    tuples(OTHER_ID),
    tuples(TEXT),
    tuples(ADDRESS),
    tuples(CONTACT),
    MAYBE,
    EXTENSIONS,
)
SERVICE = st.builds(Service, TEXT, CODED, RECORD, EXTENSIONS)
FACILITY_SERVICE = st.builds(FacilityService, TEXT, tuples(TEXT), tuples(HOURS, 1), tuples(EXTENSION))
FACILITY = st.builds(
    Facility,
    TEXT,
    tuples(CODED),
    TEXT,
    RECORD,
    tuples(OTHER_ID),
    tuples(TEXT),
    tuples(ADDRESS),
    tuples(CONTACT),
    st.none() | st.builds(Geocode, FLOATS, FLOATS, st.none() | FLOATS, MAYBE),
    tuples(st.builds(FacilityOrganization, TEXT, tuples(FACILITY_SERVICE), tuples(EXTENSION))),
    tuples(HOURS, 1),
    EXTENSIONS,
)
PROVIDER_SERVICE = st.builds(ProviderService, TEXT, tuples(TEXT), MAYBE, tuples(HOURS, 1), tuples(EXTENSION))
PROVIDER = st.builds(
    Provider,
    TEXT,
    tuples(CODED),
    st.builds(
        Demographic,
        tuples(st.builds(PersonName, tuples(TEXT), st.none() | CODED, MAYBE, MAYBE, MAYBE, EXTENSIONS)),
        tuples(CONTACT),
        tuples(ADDRESS),
        MAYBE,
        st.none() | st.dates(),
    ),
    RECORD,
    tuples(OTHER_ID),
    tuples(st.builds(ProviderOrganization, TEXT, tuples(EXTENSION), tuples(ADDRESS), tuples(CONTACT))),
    tuples(st.builds(ProviderFacility, TEXT, tuples(PROVIDER_SERVICE), tuples(HOURS, 1), tuples(EXTENSION))),
    tuples(
        st.builds(
            Credential, CODED, TEXT, MAYBE, st.none() | st.dates(), st.none() | st.dates(), tuples(EXTENSION)
        )
    ),
    tuples(CODED),
    EXTENSIONS,
)
DEVICE = st.builds(Device, TEXT, CODED, RECORD, tuples(OTHER_ID), EXTENSIONS)

KINDS: dict[str, tuple[st.SearchStrategy[Any], Callable[[Any], bytes], Callable[[Any], etree._Element]]] = {
    "organization": (ORGANIZATION, writer.organization_bytes, reference.organization_element),
    "service": (SERVICE, writer.service_bytes, reference.service_element),
    "facility": (FACILITY, writer.facility_bytes, reference.facility_element),
    "provider": (PROVIDER, writer.provider_bytes, reference.provider_element),
    "device": (DEVICE, writer.device_bytes, reference.device_element),
}


def tree_bytes(build: Callable[[Any], etree._Element], record: Any) -> bytes | type[Exception]:
    try:
        return etree.tostring(build(record), encoding="utf-8")
    except ValueError:  # e.g. a profile element out of its sequence: both writers refuse it
        return ValueError


def byte_bytes(write: Callable[[Any], bytes], record: Any) -> bytes | type[Exception]:
    try:
        return write(record)
    except ValueError:
        return ValueError


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_each_entry_is_the_bytes_the_tree_writer_wrote(kind: str) -> None:
    strategy, write, build = KINDS[kind]

    @settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(strategy)
    def check(record: Any) -> None:
        assert byte_bytes(write, record) == tree_bytes(build, record)

    check()


@settings(max_examples=500, deadline=None)
@given(TEXT)
def test_text_is_escaped_as_lxml_escapes_it(value: str) -> None:
    element = etree.Element(ns.qn(ns.CSD, "a"), nsmap={"csd": ns.CSD})
    child = etree.SubElement(element, ns.qn(ns.CSD, "b"))
    child.text = writer._text(value)
    expected = etree.tostring(child, encoding="utf-8").replace(f' xmlns:csd="{ns.CSD}"'.encode(), b"")
    parts: list[str] = []
    writer._leaf(parts, "b", value)
    assert "".join(parts).encode() == expected


@settings(max_examples=500, deadline=None)
@given(TEXT)
def test_attribute_values_are_escaped_as_lxml_escapes_them(value: str) -> None:
    element = etree.Element("a", {"v": writer._text(value)})
    assert f'<a v="{writer._escape_attribute(value)}"/>'.encode() == etree.tostring(element, encoding="utf-8")


def test_the_escapes_and_the_replaced_characters() -> None:
    value = 'a&b<c>d"e\tf\ng\rh]]>\x01i\ud800j é'
    parts: list[str] = []
    writer._leaf(parts, "b", value)
    assert parts == ['<csd:b>a&amp;b&lt;c&gt;d"e\tf\ng&#13;h]]&gt;\ufffdi\ufffdj é</csd:b>']
    assert (
        writer._escape_attribute(value) == "a&amp;b&lt;c&gt;d&quot;e&#9;f&#10;g&#13;h]]&gt;\ufffdi\ufffdj é"
    )


def test_empty_elements_and_empty_text() -> None:
    service = Service(
        "s",
        CodedType("c", "", None),
        Record(datetime(2020, 1, 1), datetime(2020, 1, 1), ""),
        (Extension("t", "u", ExtensionNode("e", "")), Extension("t", "u")),
    )
    assert (
        writer.service_bytes(service)
        == (
            f'<csd:service xmlns:csd="{ns.CSD}" entityID="s"><csd:codedType code="c" codingScheme=""/>'
            '<csd:extension type="t" urn="u"><e></e></csd:extension><csd:extension type="t" urn="u"/>'
            '<csd:record created="2020-01-01T00:00:00Z" updated="2020-01-01T00:00:00Z" status=""/>'
            "</csd:service>"
        ).encode()
    )


def test_a_name_that_is_not_an_xml_name_is_refused() -> None:
    service = Service(
        "s",
        CodedType("c", "s"),
        Record(datetime(2020, 1, 1), datetime(2020, 1, 1), "Active"),
        (Extension("t", "u", ExtensionNode("not a name")),),
    )
    with pytest.raises(ValueError, match="Invalid tag name"):
        writer.service_bytes(service)


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(ORGANIZATION, max_size=2), st.lists(FACILITY, max_size=2), st.lists(DEVICE, max_size=2))
def test_a_document_is_what_lxml_xmlfile_wrote_around_the_entries(
    organizations: list[Organization], facilities: list[Facility], devices: list[Device]
) -> None:
    document = CsdDocument(organizations=organizations, facilities=facilities, devices=devices)
    try:
        data = writer.document_to_bytes(document)
    except ValueError:
        return  # an entry both writers refuse (checked above)
    sink = BytesIO()
    with etree.xmlfile(sink, encoding="utf-8") as xf:
        xf.write_declaration()
        with xf.element(ns.qn(ns.CSD, "CSD"), nsmap={"csd": ns.CSD}):
            for directory, entries in (
                ("organizationDirectory", map(reference.organization_element, organizations)),
                ("serviceDirectory", iter(())),
                ("facilityDirectory", map(reference.facility_element, facilities)),
                ("providerDirectory", iter(())),
                ("deviceDirectory", map(reference.device_element, devices)),
            ):
                with xf.element(ns.qn(ns.CSD, directory)):
                    for entry in entries:
                        xf.write(entry)
    assert data == sink.getvalue()


def test_the_serialised_nodes_kept_are_bounded() -> None:
    """A long-running server meets ever new extension values: the nodes kept for reuse stay bounded."""
    record = Record(datetime(2020, 1, 1), datetime(2020, 1, 1), "Active")
    extensions = tuple(Extension("t", "u", ExtensionNode("e", str(n))) for n in range(writer._CACHED + 10))
    data = writer.service_bytes(Service("s", CodedType("c", "s"), record, extensions))
    assert len(writer._LEAVES) <= writer._CACHED
    assert data.count(b"<e>") == writer._CACHED + 10
    assert data == etree.tostring(
        reference.service_element(Service("s", CodedType("c", "s"), record, extensions))
    )
