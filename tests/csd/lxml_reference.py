"""The tree-building CSD writer the bridge used before issue 13 (lxml `SubElement` per node): the oracle
the byte writer (bridge/csd/writer.py) is checked against, byte for byte (tests/csd/test_byte_writer.py).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Final, TypeVar

from lxml import etree

from bridge import ns, profile
from bridge.csd.writer import _NOT_XML_CHAR, _text, xs_boolean, xs_date, xs_datetime, xs_decimal, xs_time
from bridge.model import (
    Address,
    CodedType,
    ContactPoint,
    Credential,
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

_NSMAP: Final = {"csd": ns.CSD}
_T = TypeVar("_T")
_TAGS: dict[str, str] = {}


def _tag(local: str) -> str:
    tag = _TAGS.get(local)
    if tag is None:
        tag = _TAGS[local] = ns.qn(ns.CSD, local)
    return tag


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
