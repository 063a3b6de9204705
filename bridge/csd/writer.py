"""The CSD document writer: neutral records out as `csd:CSD`, streamed one record at a time.

Part of the CSD vocabulary (bridge/csd/). Element order follows the XSD sequences of the IHE CSD 2014
revision (docs/csd-wire-format.md §5; xsd/csd.xsd), which legacy clients validate against.
"""

from __future__ import annotations

import asyncio
import math
import re
from collections.abc import Callable, Iterable, Iterator, Sequence
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from io import BytesIO
from typing import Any, BinaryIO, Final, TypeVar

from lxml import etree

from bridge import gc_control, ns, profile
from bridge.model import (
    Address,
    CodedType,
    ContactPoint,
    Credential,
    CsdDocument,
    CsdResponse,
    Demographic,
    Device,
    Directory,
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
    Transaction,
)

__all__ = [
    "FLUSH_EVERY",
    "device_element",
    "directory_end",
    "directory_start",
    "document_end",
    "document_start",
    "document_to_bytes",
    "element_bytes",
    "facility_element",
    "facility_number",
    "organization_element",
    "provider_element",
    "service_element",
    "write_csd",
    "write_response_body",
]

# Records written between two flushes of the output: small enough to keep the first bytes flowing and
# the buffered output small, large enough not to flush a few hundred bytes at a time.
FLUSH_EVERY: Final = 200
# Bytes read at a time from a pre-written answer file (CsdResponse.directories) into the envelope.
COPY_CHUNK: Final = 256 * 1024

_NSMAP: Final = {"csd": ns.CSD}
_XML_LANG: Final = ns.qn(ns.XML, "lang")

# Characters XML 1.0 cannot carry at all (§2.2 Char production), including lone surrogates, which
# Python strings can hold but no encoder can write. lxml refuses them with a ValueError; an upstream
# text field must not abort a streamed answer half-way, so they are replaced by U+FFFD.
_NOT_XML_CHAR: Final = re.compile("[^\t\n\r\u0020-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")
_REPLACEMENT: Final = "\ufffd"

_T = TypeVar("_T")


# Local name → Clark name in the CSD namespace, filled as names are met (a few dozen).
_TAGS: dict[str, str] = {}


def _tag(local: str) -> str:
    tag = _TAGS.get(local)
    if tag is None:
        tag = _TAGS[local] = ns.qn(ns.CSD, local)
    return tag


# --------------------------------------------------------------------------------------------------
# Lexical forms of the XSD simple types


def _text(value: str) -> str:
    if _NOT_XML_CHAR.search(value) is None:
        return value
    return _NOT_XML_CHAR.sub(_REPLACEMENT, value)


def _format_offset(offset: timedelta) -> str:
    if not offset:
        return "Z"
    sign = "-" if offset < timedelta(0) else "+"
    minutes = abs(offset) // timedelta(minutes=1)
    return f"{sign}{minutes // 60:02d}:{minutes % 60:02d}"


def xs_datetime(value: datetime) -> str:
    """xs:dateTime, always with a zone: naive values are taken as UTC and written with `Z`."""
    offset = value.utcoffset()
    if offset is None:
        value, offset = value.replace(tzinfo=UTC), timedelta(0)
    elif offset % timedelta(minutes=1):
        # xs:dateTime zones are whole minutes (XSD 1.0 Part 2 §3.2.7.3); express odd offsets in UTC.
        value, offset = value.astimezone(UTC), timedelta(0)
    return value.replace(tzinfo=None).isoformat() + _format_offset(offset)


def xs_date(value: date) -> str:
    """xs:date (a datetime passed by mistake is cut to its date)."""
    if isinstance(value, datetime):
        value = value.date()
    return value.isoformat()


def xs_time(value: time) -> str:
    """xs:time; a zone-aware time keeps its offset."""
    offset = value.utcoffset()
    plain = value.replace(tzinfo=None).isoformat()
    return plain if offset is None else plain + _format_offset(offset)


def xs_boolean(value: bool) -> str:
    return "true" if value else "false"


def xs_decimal(value: float) -> str:
    """xs:decimal has no exponent form: 1e-05 must be written 0.00001."""
    if not math.isfinite(value):
        raise ValueError(f"{value!r} cannot be written as xs:decimal")
    text = format(Decimal(repr(float(value))), "f")
    return text[:-2] if text.endswith(".0") else text


# --------------------------------------------------------------------------------------------------
# Small element helpers (all optional values: None and "" mean absent)


def _sub(parent: etree._Element, local: str, text: str | None = None) -> etree._Element:
    child = etree.SubElement(parent, _TAGS.get(local) or _tag(local))
    if text is not None:
        child.text = text if _NOT_XML_CHAR.search(text) is None else _text(text)
    return child


def _sub_opt(parent: etree._Element, local: str, text: str | None) -> None:
    if text:
        _sub(parent, local, text)


def _set(element: etree._Element, name: str, value: str | None) -> None:
    if value:
        element.set(name, _text(value))


def _each(parent: etree._Element, items: Iterable[_T], add: Callable[[etree._Element, _T], None]) -> None:
    for item in items:
        add(parent, item)


def _entity(parent: etree._Element | None, local: str, entity_id: str) -> etree._Element:
    element = etree.Element(_tag(local), nsmap=_NSMAP) if parent is None else _sub(parent, local)
    element.set("entityID", _text(entity_id))
    return element


def _add_other_id(parent: etree._Element, other_id: OtherID) -> None:
    # CSD 2014 schema: otherID carries its value in @code only; it has no text content.
    child = _sub(parent, "otherID")
    child.set("code", _text(other_id.code))
    child.set("assigningAuthorityName", _text(other_id.assigning_authority_name))


def _add_coded(parent: etree._Element, coded: CodedType, local: str = "codedType") -> None:
    child = _sub(parent, local, coded.display or None)
    child.set("code", _text(coded.code))
    child.set("codingScheme", _text(coded.coding_scheme))


def _add_other_name(parent: etree._Element, name: str) -> None:
    _sub(parent, "otherName", name)


def _add_address(parent: etree._Element, address: Address) -> None:
    if not address.lines:  # addressLine is 1..*: an address without lines is an empty optional
        return
    child = _sub(parent, "address")
    _set(child, "type", address.type)
    for line in address.lines:
        line_element = _sub(child, "addressLine", line.value)
        _set(line_element, "component", line.component)


def _add_contact_point(parent: etree._Element, point: ContactPoint) -> None:
    child = _sub(parent, "contactPoint")
    _add_coded(child, point.coded_type)
    _sub_opt(child, "equipment", point.equipment)
    _sub_opt(child, "purpose", point.purpose)


def _add_extension(parent: etree._Element, extension: Extension) -> None:
    child = _sub(parent, "extension")
    child.set("type", _text(extension.type))
    child.set("urn", _text(extension.urn))
    if extension.content is not None:  # CSD schema: at most one child element
        _extension_node(child, extension.content)


def _add_extensions(parent: etree._Element, extensions: Sequence[Extension]) -> None:
    """Each extension in turn, except the typed elements of the ROR v2.4 profile (`Extension.profile`): those
    of one typed extension go together in one `csd:extension`, where the first of them comes, in the order
    of the profile's sequence (bridge/profile.py; repeats keep their order)."""
    groups: dict[tuple[str, str, int], tuple[etree._Element, list[ExtensionNode]]] = {}
    opened: dict[tuple[str, str], int] = {}  # how many extensions of a type an OPENS_EXTENSION element opened
    for extension in extensions:
        if not extension.profile:
            _add_extension(parent, extension)
            continue
        pair = (extension.type, extension.urn)
        content = extension.content
        if content is not None and profile.OPENS_EXTENSION.get(extension.type) == content.name:
            opened[pair] = opened.get(pair, -1) + 1
        key = (*pair, opened.get(pair, 0))
        if key not in groups:  # the element takes its place now, its content once the group is complete
            child = _sub(parent, "extension")
            child.set("type", _text(extension.type))
            child.set("urn", _text(extension.urn))
            groups[key] = (child, [])
        if extension.content is not None:
            groups[key][1].append(extension.content)
    for (extension_type, _urn, _n), (child, nodes) in groups.items():
        for node in sorted(nodes, key=lambda n: profile.position(extension_type, n.name)):
            _profile_node(child, node)


def _attributes(node: ExtensionNode) -> dict[str, str] | None:
    """A node's attributes for SubElement, in their order (a repeated name keeps its first place and its
    last value, as successive `set` calls do)."""
    if not node.attributes:
        return None
    return {name: _text(value) for name, value in node.attributes}


def _extension_node(parent: etree._Element, node: ExtensionNode) -> None:
    # Unqualified: the one child the v2.4 profile's extension type leaves open (xs:any ##local), which CSD
    # 2014 (##any) accepts too.
    element = etree.SubElement(parent, node.name, _attributes(node))
    if node.text is not None:
        element.text = _text(node.text)
    for child in node.children:
        _extension_node(element, child)


def _profile_node(parent: etree._Element, node: ExtensionNode) -> None:
    # A typed element of the ROR v2.4 profile: in the CSD namespace, as its children.
    element = etree.SubElement(parent, _TAGS.get(node.name) or _tag(node.name), _attributes(node))
    if node.text is not None:
        element.text = _text(node.text)
    for child in node.children:
        _profile_node(element, child)


def _add_record(parent: etree._Element, record: Record) -> None:
    child = _sub(parent, "record")
    child.set("created", xs_datetime(record.created))
    child.set("updated", xs_datetime(record.updated))
    child.set("status", _text(record.status))
    _set(child, "sourceDirectory", record.source_directory)


def _add_operating_hours(parent: etree._Element, hours: OperatingHours) -> None:
    child = _sub(parent, "operatingHours")
    _sub(child, "openFlag", xs_boolean(hours.open_flag))
    for day in hours.days_of_week:
        _sub(child, "dayOfTheWeek", str(int(day)))
    if hours.beginning_hour is not None:
        _sub(child, "beginningHour", xs_time(hours.beginning_hour))
    if hours.ending_hour is not None:
        _sub(child, "endingHour", xs_time(hours.ending_hour))
    _sub(child, "beginEffectiveDate", xs_date(hours.begin_effective_date))
    if hours.end_effective_date is not None:
        _sub(child, "endEffectiveDate", xs_date(hours.end_effective_date))
    _add_extensions(child, hours.extensions)


def _add_geocode(parent: etree._Element, geocode: Geocode) -> None:
    child = _sub(parent, "geocode")
    _sub(child, "latitude", xs_decimal(geocode.latitude))
    _sub(child, "longitude", xs_decimal(geocode.longitude))
    if geocode.altitude is not None:
        _sub(child, "altitude", xs_decimal(geocode.altitude))
    _sub_opt(child, "coordinateSystem", geocode.coordinate_system)


def _add_service_name(parent: etree._Element, name: str) -> None:
    # The names of a service given at a facility are of the structured `name` type (commonName 1..*).
    _sub(_sub(parent, "name"), "commonName", name)


def _add_person_name(parent: etree._Element, name: PersonName) -> None:
    child = _sub(parent, "name")
    for common in name.common_names:
        _sub(child, "commonName", common)
    if name.honorific is not None:
        _add_coded(child, name.honorific, "honorific")
    _sub_opt(child, "forename", name.forename)
    _sub_opt(child, "surname", name.surname)
    _sub_opt(child, "suffix", name.suffix)
    _add_extensions(child, name.extensions)


def _add_demographic(parent: etree._Element, person: Demographic) -> None:
    # CSD person: name 1..*, contactPoint*, address*, gender?, dateOfBirth?
    child = _sub(parent, "demographic")
    _each(child, person.names, _add_person_name)
    _each(child, person.contact_points, _add_contact_point)
    _each(child, person.addresses, _add_address)
    _sub_opt(child, "gender", person.gender)
    if person.date_of_birth is not None:
        _sub(child, "dateOfBirth", xs_date(person.date_of_birth))


def _add_credential(parent: etree._Element, credential: Credential) -> None:
    child = _sub(parent, "credential")
    _add_coded(child, credential.coded_type)
    _sub(child, "number", credential.number)
    _sub_opt(child, "issuingAuthority", credential.issuing_authority)
    if credential.issue_date is not None:
        _sub(child, "credentialIssueDate", xs_date(credential.issue_date))
    if credential.renewal_date is not None:
        _sub(child, "credentialRenewalDate", xs_date(credential.renewal_date))
    _add_extensions(child, credential.extensions)


# --------------------------------------------------------------------------------------------------
# Directory entries: one standalone element each (what the streaming writer writes in one go)


def organization_element(organization: Organization) -> etree._Element:
    """`csd:organization`: otherID*, codedType+, primaryName, otherName*, address*, contactPoint*,
    parent?, extension*, record (CSD 2014 sequence; contact, credential, language and specialization
    have no source in the model and are never written)."""
    element = _entity(None, "organization", organization.entity_id)
    _each(element, organization.other_ids, _add_other_id)
    _each(element, organization.coded_types, _add_coded)
    _sub(element, "primaryName", organization.primary_name)
    _each(element, organization.other_names, _add_other_name)
    _each(element, organization.addresses, _add_address)
    _each(element, organization.contact_points, _add_contact_point)
    if organization.parent_id:
        _entity(element, "parent", organization.parent_id)
    _add_extensions(element, organization.extensions)
    _add_record(element, organization.record)
    return element


def service_element(service: Service) -> etree._Element:
    """`csd:service`: exactly one codedType, extension*, record (CSD 2014 schema)."""
    element = _entity(None, "service", service.entity_id)
    _add_coded(element, service.coded_type)
    _add_extensions(element, service.extensions)
    _add_record(element, service.record)
    return element


def _add_facility_service(parent: etree._Element, service: FacilityService) -> None:
    # name*, language*, operatingHours*, freeBusyURI?, extension*
    child = _entity(parent, "service", service.entity_id)
    _each(child, service.names, _add_service_name)
    _each(child, service.operating_hours, _add_operating_hours)
    _each(child, service.extensions, _add_extension)


def _add_facility_organization(parent: etree._Element, organization: FacilityOrganization) -> None:
    child = _entity(parent, "organization", organization.entity_id)
    _each(child, organization.services, _add_facility_service)
    _each(child, organization.extensions, _add_extension)


def facility_element(facility: Facility) -> etree._Element:
    """`csd:facility`: otherID*, codedType+, primaryName, otherName*, address*, geocode?,
    contactPoint*, organizations?, operatingHours*, extension*, record (CSD 2014 sequence)."""
    element = _entity(None, "facility", facility.entity_id)
    _each(element, facility.other_ids, _add_other_id)
    _each(element, facility.coded_types, _add_coded)
    _sub(element, "primaryName", facility.primary_name)
    _each(element, facility.other_names, _add_other_name)
    _each(element, facility.addresses, _add_address)
    if facility.geocode is not None:
        _add_geocode(element, facility.geocode)
    _each(element, facility.contact_points, _add_contact_point)
    if facility.organizations:  # organizations holds organization 1..*: omit when there is none
        _each(_sub(element, "organizations"), facility.organizations, _add_facility_organization)
    _each(element, facility.operating_hours, _add_operating_hours)
    _add_extensions(element, facility.extensions)
    _add_record(element, facility.record)
    return element


def _add_provider_organization(parent: etree._Element, organization: ProviderOrganization) -> None:
    # CSD 2014: here extension comes first, then address*, contactPoint*.
    child = _entity(parent, "organization", organization.entity_id)
    _each(child, organization.extensions, _add_extension)
    _each(child, organization.addresses, _add_address)
    _each(child, organization.contact_points, _add_contact_point)


def _add_provider_service(parent: etree._Element, service: ProviderService) -> None:
    # name*, organization?, language*, operatingHours*, freeBusyURI?, extension*
    child = _entity(parent, "service", service.entity_id)
    _each(child, service.names, _add_service_name)
    if service.organization_id:
        _entity(child, "organization", service.organization_id)
    _each(child, service.operating_hours, _add_operating_hours)
    _each(child, service.extensions, _add_extension)


def _add_provider_facility(parent: etree._Element, facility: ProviderFacility) -> None:
    child = _entity(parent, "facility", facility.entity_id)
    _each(child, facility.services, _add_provider_service)
    _each(child, facility.operating_hours, _add_operating_hours)
    _each(child, facility.extensions, _add_extension)


def provider_element(provider: Provider) -> etree._Element:
    """`csd:provider`: otherID*, codedType+, demographic, organizations?, facilities?, credential*,
    specialty*, extension*, record (CSD 2014 sequence)."""
    element = _entity(None, "provider", provider.entity_id)
    _each(element, provider.other_ids, _add_other_id)
    _each(element, provider.coded_types, _add_coded)
    _add_demographic(element, provider.demographic)
    if provider.organizations:
        _each(_sub(element, "organizations"), provider.organizations, _add_provider_organization)
    if provider.facilities:
        _each(_sub(element, "facilities"), provider.facilities, _add_provider_facility)
    _each(element, provider.credentials, _add_credential)
    for specialty in provider.specialties:
        _add_coded(element, specialty, "specialty")
    _add_extensions(element, provider.extensions)
    _add_record(element, provider.record)
    return element


def device_element(device: Device) -> etree._Element:
    """`csd:device` (ROR CSD v2.4 profile): otherID*, codedType, extension?, record."""
    element = _entity(None, "device", device.entity_id)
    _each(element, device.other_ids, _add_other_id)
    _add_coded(element, device.coded_type)
    _add_extensions(element, device.extensions)
    _add_record(element, device.record)
    return element


# --------------------------------------------------------------------------------------------------
# The document: one shape, two drivers (async streaming, sync bytes)


def _lazy(items: Sequence[_T], build: Callable[[_T], etree._Element]) -> Iterator[etree._Element]:
    return (build(item) for item in items)


def _directories(document: CsdDocument) -> Iterator[tuple[str, Iterator[etree._Element]]]:
    """The five directories in document order, each with its entries built one at a time."""
    yield _tag(Directory.ORGANIZATION), _lazy(document.organizations, organization_element)
    yield _tag(Directory.SERVICE), _lazy(document.services, service_element)
    yield _tag(Directory.FACILITY), _lazy(document.facilities, facility_element)
    yield _tag(Directory.PROVIDER), _lazy(document.providers, provider_element)
    yield _tag(Directory.DEVICE), _lazy(document.devices, device_element)


async def write_csd(xf: Any, document: CsdDocument, tag: str = "CSD") -> None:
    """Write one `csd:CSD` element into an open async `etree.xmlfile` context, one record at a time.

    All five directories are always written, possibly empty. The output is flushed every
    `FLUSH_EVERY` records so that the sink receives the document in chunks. `tag`: the element's local
    name (`queryResult`, of type CSD, in the ROR v2.4 profile's encapsulated answer).
    """
    written = 0
    async with xf.element(_tag(tag), nsmap=_NSMAP):
        for directory, elements in _directories(document):
            async with xf.element(directory):
                for element in elements:
                    await xf.write(element)
                    written += 1
                    if written % FLUSH_EVERY == 0:
                        await xf.flush()


# The ROR v2.4 profile's `result/facilityNumber` counts the unités élémentaires: PLATINES RG_ALIM_019 checks
# it equals count(//facility/codedType[@code="4"]) (TRE_R207 "4" = unité élémentaire).
UNIT_CODE: Final = "4"


def facility_number(document: CsdDocument) -> int:
    """`facilityNumber` of an answer: its facilities' codedType elements with code 4, as PLATINES counts."""
    return sum(1 for f in document.facilities for coded in f.coded_types if coded.code == UNIT_CODE)


def _spooled_elements(directories: BinaryIO, local: str) -> Iterator[etree._Element]:
    """Each `csd:{local}` directory entry of a pre-written answer file (CsdResponse.directories), parsed one
    at a time (flat memory: each is cleared once the caller moved on). Leaves the file at its end."""
    parser = etree.XMLPullParser(events=("end",), resolve_entities=False, no_network=True)
    wanted = _tag(local)
    parser.feed(f'<spool xmlns:csd="{ns.CSD}">'.encode())
    directories.seek(0)
    done = False
    while not done:
        chunk = directories.read(COPY_CHUNK)
        if chunk:
            parser.feed(chunk)
        else:
            parser.feed(b"</spool>")
            done = True
        for _, event_item in parser.read_events():
            if not isinstance(event_item, etree._Element):
                continue  # only "end" events are asked for: always elements
            element = event_item
            parent = element.getparent()
            if parent is None or not etree.QName(parent).localname.endswith("Directory"):
                continue  # inside an entry (cleared with it), a directory, or the wrapper
            if element.tag == wanted:
                yield element
            element.clear()  # every entry, wanted or not: the tree never holds more than one
            while element.getprevious() is not None:
                del parent[0]
    parser.close()


def _spooled_facility_number(directories: BinaryIO) -> int:
    return sum(
        1
        for facility in _spooled_elements(directories, "facility")
        for coded in facility.iterfind(_tag("codedType"))
        if coded.get("code") == UNIT_CODE
    )


async def write_response_body(xf: Any, response: CsdResponse, *, encapsulated: bool) -> None:
    """Write what goes in the SOAP Body (or the whole bare answer) for one request.

    ITI-73: `careServicesResponse/result` with `facilityNumber` and `queryResult` (a CSD), the ROR v2.4
    profile's `Result`, when `encapsulated`; the bare `CSD` otherwise.
    ITI-74: `getModificationsResponse/CSD` (`encapsulated` does not apply).
    TR-Notif: the profile's `TR-Notif-ListeEtablissementMajApresDate_Reponse`.
    """
    if response.request.transaction == Transaction.MODIFICATIONS:
        async with xf.element(_tag("getModificationsResponse"), nsmap=_NSMAP):
            await _write_answer(xf, response)
    elif response.request.transaction == Transaction.ROR_NOTIF:
        await _write_notif(xf, response)
    elif encapsulated:
        # The stored functions answer XML: content-type as OpenInfoMan writes it (csd-wire-format §3.5).
        if response.directories is not None:
            units = await asyncio.to_thread(_spooled_facility_number, response.directories)
        else:
            units = facility_number(response.document)
        async with (
            xf.element(_tag("careServicesResponse"), {"content-type": "text/xml"}, nsmap=_NSMAP),
            xf.element(_tag("result")),
        ):
            async with xf.element(_tag("facilityNumber")):
                await xf.write(str(units))
            await _write_answer(xf, response, "queryResult")
    else:
        await _write_answer(xf, response)


async def _write_answer(xf: Any, response: CsdResponse, tag: str = "CSD") -> None:
    """The `csd:CSD` (or `tag`) of a response: its pre-written directories (a delta answer), else its
    document."""
    if response.directories is not None:
        await _copy_directories(xf, response.directories, tag)
    else:
        await write_csd(xf, response.document, tag)


async def _copy_directories(xf: Any, directories: BinaryIO, tag: str = "CSD") -> None:
    """A `csd:CSD` element whose five directories were written beforehand to a file (CsdResponse.directories):
    lxml writes the CSD tags, the file's bytes go in between as they are, through `xf.write_raw` (the edge's
    writer, soap/envelope.py: it flushes lxml's buffer first, so the order is kept)."""
    async with xf.element(_tag(tag), nsmap=_NSMAP):
        directories.seek(0)
        while chunk := await asyncio.to_thread(directories.read, COPY_CHUNK):
            await xf.write_raw(chunk)


def _notif_code(organization: etree._Element) -> tuple[str, str] | None:
    """(idNatStruct, entityID) of an EG of the answer (an organisation with a parent; ns.OID_IDNATSTRUCT,
    PLATINES validation_identifiants); None for an EJ or an organisation without idNatStruct."""
    if organization.find(_tag("parent")) is None:
        return None
    for other in organization.iterfind(_tag("otherID")):
        code = other.get("code")
        if other.get("assigningAuthorityName") == ns.OID_IDNATSTRUCT and code:
            return code, str(organization.get("entityID"))
    return None


def _notif_codes(response: CsdResponse) -> list[tuple[str, str]]:
    """(idNatStruct, entityID) of every EG of an answer, in answer order; read from its spool at flat memory
    (two strings per EG are kept), in a worker thread so that the event loop is not held by the parse."""
    if response.directories is not None:
        organizations: Iterable[etree._Element] = _spooled_elements(response.directories, "organization")
    else:
        organizations = _lazy(response.document.organizations, organization_element)
    return [code for code in map(_notif_code, organizations) if code is not None]


async def _write_notif(xf: Any, response: CsdResponse) -> None:
    """`TR-Notif-ListeEtablissementMajApresDate_Reponse`: one `etablissementReponseNotif` per EG of the
    answer's organisations — its `id_etablissement` (idNatStruct), then a `typeActivity` per champ d'activité
    of its changed offers (CsdResponse.activities; none when only something else changed) [INFER: the
    profile's schema has them 0..*, TRE_R227, and says no more] — then `result` = how many [INFER: the
    profile's schema says only xs:integer; PLATINES checks no value]."""
    codes = await asyncio.to_thread(_notif_codes, response)
    activities = response.activities or {}
    async with xf.element(ns.qn(ns.ROR, ns.ROR_NOTIF_RESPONSE), nsmap={"ror": ns.ROR, "csd": ns.CSD}):
        for count, (code, entity_id) in enumerate(codes, 1):
            async with xf.element(_tag("etablissementReponseNotif")):
                identifier = {"code": code, "assigningAuthorityName": ns.OID_IDNATSTRUCT}
                await xf.write(etree.Element(_tag("id_etablissement"), identifier, nsmap=_NSMAP))
                for activity in activities.get(entity_id, ()):
                    coded = {"code": _text(activity.code), "codingScheme": _text(activity.coding_scheme)}
                    element = etree.Element(_tag("typeActivity"), coded, nsmap=_NSMAP)
                    element.text = _text(activity.display) if activity.display else None
                    await xf.write(element)
            if count % FLUSH_EVERY == 0:
                await xf.flush()
        async with xf.element(_tag("result")):
            await xf.write(str(len(codes)))


def document_to_bytes(document: CsdDocument) -> bytes:
    """The whole `csd:CSD` document (with the XML declaration) as UTF-8 bytes, synchronously.

    Same element builders and directory order as `write_csd`; for the offline `translate` command,
    the comparison tool and tests. The cyclic garbage collector is paused meanwhile (bridge/gc_control.py).
    """
    sink = BytesIO()
    with gc_control.batch(), etree.xmlfile(sink, encoding="utf-8") as xf:
        xf.write_declaration()
        with xf.element(_tag("CSD"), nsmap=_NSMAP):
            for directory, elements in _directories(document):
                with xf.element(directory):
                    for element in elements:
                        xf.write(element)
    return sink.getvalue()


# --------------------------------------------------------------------------------------------------
# A document assembled piece by piece (the streamed extraction writes each directory from its own pass and
# sends the pieces as they come): the same bytes `write_csd` writes, declaration included.

_DECLARATION: Final = b"<?xml version='1.0' encoding='utf-8'?>\n"


def document_start() -> bytes:
    """The XML declaration and the `csd:CSD` start tag."""
    return _DECLARATION + f'<csd:CSD xmlns:csd="{ns.CSD}">'.encode()


def document_end() -> bytes:
    return b"</csd:CSD>"


def directory_start(directory: Directory) -> bytes:
    return f"<csd:{directory.value}>".encode()


def directory_end(directory: Directory) -> bytes:
    return f"</csd:{directory.value}>".encode()


def element_bytes(element: etree._Element) -> bytes:
    """One directory entry (from `organization_element` and the like) as UTF-8 bytes, no declaration."""
    return etree.tostring(element, encoding="utf-8")
