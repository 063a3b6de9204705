"""The CSD document writer: neutral records out as `csd:CSD`, streamed one record at a time.

Part of the CSD vocabulary (bridge/csd/). Element order follows the XSD sequences of the IHE CSD 2014
revision (docs/csd-wire-format.md §5; xsd/csd.xsd; each entity's declared once in bridge/model.py
`ENTITY_SHAPES`), which legacy clients validate against; entries are written as serialised bytes.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from functools import lru_cache
from operator import attrgetter
from typing import Any, BinaryIO, Final, TypeVar

from lxml import etree

from bridge import gc_control, ns, profile
from bridge.model import (
    ENTITY_SHAPES,
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
    Form,
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
    Shape,
    Slot,
    SlotType,
    Transaction,
    slot_types,
)

__all__ = [
    "FLUSH_EVERY",
    "device_bytes",
    "device_element",
    "directory_end",
    "directory_start",
    "document_end",
    "document_start",
    "document_to_bytes",
    "facility_bytes",
    "facility_element",
    "facility_number",
    "organization_bytes",
    "organization_element",
    "provider_bytes",
    "provider_element",
    "service_bytes",
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


@lru_cache(maxsize=64)  # a few zones only
def _format_offset(offset: timedelta) -> str:
    if not offset:
        return "Z"
    sign = "-" if offset < timedelta(0) else "+"
    minutes = abs(offset) // timedelta(minutes=1)
    return f"{sign}{minutes // 60:02d}:{minutes % 60:02d}"


_MINUTE: Final = timedelta(minutes=1)


def xs_datetime(value: datetime) -> str:
    """xs:dateTime, always with a zone: naive values are taken as UTC and written with `Z`."""
    offset = value.utcoffset()
    if offset is None:
        return value.isoformat() + "Z"
    if not offset:
        return value.isoformat()[:-6] + "Z"  # isoformat ends with +00:00
    if offset % _MINUTE:
        # xs:dateTime zones are whole minutes (XSD 1.0 Part 2 §3.2.7.3); express odd offsets in UTC.
        return value.astimezone(UTC).replace(tzinfo=None).isoformat() + "Z"
    return value.isoformat()  # ±HH:MM, as _format_offset writes it


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
# Serialised bytes straight from the records, as lxml's serialiser writes the same tree (libxml2's
# xmlsave: text escapes `&`, `<`, `>` and CR; attribute values also `"`, tab and LF; everything else as
# UTF-8; an element with neither text nor children is `<x/>`, one whose text is "" is `<x></x>`; the
# standalone entry declares the csd prefix before its attributes). tests/csd/test_byte_writer.py checks it
# against the tree-building writer it replaces, byte for byte.

# Characters one of the escapes below applies to, or that XML cannot carry (replaced first, see _text).
_TEXT_SPECIAL: Final = re.compile("[&<>\r]|[^\t\n\u0020-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")
_ATTRIBUTE_SPECIAL: Final = re.compile('[&<>"]|[^\u0020-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]')


# The values met again and again (codes, coding schemes, types, displays) are escaped once: bounded caches
# (8 192 entries hit as often as 16 384 in a national extraction, for half the memory: issue 13 item 4).
ESCAPES_KEPT = 8192


@lru_cache(maxsize=ESCAPES_KEPT)
def _escape_text(value: str) -> str:
    """Character data as lxml writes it."""
    if _TEXT_SPECIAL.search(value) is None:
        return value
    value = _text(value)
    return value.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace("\r", "&#13;")


@lru_cache(maxsize=ESCAPES_KEPT)
def _escape_attribute(value: str) -> str:
    """An attribute value as lxml writes it between double quotes."""
    if _ATTRIBUTE_SPECIAL.search(value) is None:
        return value
    value = _text(value).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    return value.replace('"', "&quot;").replace("\t", "&#9;").replace("\n", "&#10;").replace("\r", "&#13;")


# Tag name → its start-tag opening ("<csd:name" or "<name") and end tag; attribute name → ' name="'. Each
# name is checked once by lxml, which refuses what is not an XML name (ValueError, as the tree did).
_CSD_NAMES: dict[str, tuple[str, str]] = {}
_PLAIN_NAMES: dict[str, tuple[str, str]] = {}
_ATTRIBUTE_NAMES: dict[str, str] = {}


def _new_names(name: str, prefixed: bool) -> tuple[str, str]:
    etree.Element(name)
    qualified = f"csd:{name}" if prefixed else name
    names = (_CSD_NAMES if prefixed else _PLAIN_NAMES)[name] = ("<" + qualified, f"</{qualified}>")
    return names


def _attribute_name(name: str) -> str:
    etree.Element("a", {name: ""})
    start = _ATTRIBUTE_NAMES[name] = f' {name}="'
    return start


def _leaf(parts: list[str], name: str, text: str | None) -> None:
    """`<csd:name>text</csd:name>`; `<csd:name/>` when `text` is None."""
    if text is None:
        parts.append(f"<csd:{name}/>")
    else:
        parts.append(f"<csd:{name}>{_escape_text(text)}</csd:{name}>")


def _leaf_opt(parts: list[str], name: str, text: str | None) -> None:
    if text:
        parts.append(f"<csd:{name}>{_escape_text(text)}</csd:{name}>")


def _close(parts: list[str], mark: int, end: str) -> None:
    """Ends the element whose start tag (without its `>`) is parts[mark]: `/>` when nothing came after it."""
    if len(parts) == mark + 1:
        parts[mark] += "/>"
    else:
        parts[mark] += ">"
        parts.append(end)


def _other_id(parts: list[str], other_id: OtherID) -> None:
    # CSD 2014 schema: otherID carries its value in @code only; it has no text content.
    parts.append(
        f'<csd:otherID code="{_escape_attribute(other_id.code)}" '
        f'assigningAuthorityName="{_escape_attribute(other_id.assigning_authority_name)}"/>'
    )


def _coded(parts: list[str], coded: CodedType, name: str = "codedType") -> None:
    start = (
        f'<csd:{name} code="{_escape_attribute(coded.code)}" '
        f'codingScheme="{_escape_attribute(coded.coding_scheme)}"'
    )
    if coded.display:
        parts.append(f"{start}>{_escape_text(coded.display)}</csd:{name}>")
    else:
        parts.append(start + "/>")


def _address(parts: list[str], address: Address) -> None:
    if not address.lines:  # addressLine is 1..*: an address without lines is an empty optional
        return
    append = parts.append
    append(f'<csd:address type="{_escape_attribute(address.type)}">' if address.type else "<csd:address>")
    for line in address.lines:
        if line.component:
            start = f'<csd:addressLine component="{_escape_attribute(line.component)}"'
        else:
            start = "<csd:addressLine"
        append(f"{start}>{_escape_text(line.value)}</csd:addressLine>")
    append("</csd:address>")


def _contact_point(parts: list[str], point: ContactPoint) -> None:
    parts.append("<csd:contactPoint>")
    _coded(parts, point.coded_type)
    _leaf_opt(parts, "equipment", point.equipment)
    _leaf_opt(parts, "purpose", point.purpose)
    parts.append("</csd:contactPoint>")


def _extension_start(extension: Extension) -> str:
    return (
        f'<csd:extension type="{_escape_attribute(extension.type)}" urn="{_escape_attribute(extension.urn)}"'
    )


def _extension(parts: list[str], extension: Extension) -> None:
    if extension.content is None:  # CSD schema: at most one child element
        parts.append(_extension_start(extension) + "/>")
        return
    parts.append(_extension_start(extension) + ">")
    # Unqualified: the one child the v2.4 profile's extension type leaves open (xs:any ##local), which CSD
    # 2014 (##any) accepts too.
    _node(parts, extension.content, False)
    parts.append("</csd:extension>")


# (name, prefixed, attributes) → the start tag without its `>`; (name, prefixed, attributes, text) → the
# whole element without children. Most extension nodes repeat (the same code, the same display): each is
# serialised once. Emptied when full (bounded memory for a long-running server). Small: every resource's
# `record` leaf (its own dates) passes through it too, and 32 768 of them held ~20 MB in each mapping worker
# and in the bridge after an extraction, for the same CPU as 4 096 (issue 13 item 4, measured on the
# batches of a 30 000-offer read-back: 85 → 74 MiB peak RSS per worker).
_STARTS: dict[tuple[str, bool, tuple[tuple[str, str], ...]], str] = {}
_LEAVES: dict[tuple[str, bool, tuple[tuple[str, str], ...], str | None], str] = {}
_CACHED: Final = 4096


def _start(name: str, prefixed: bool, attributes: tuple[tuple[str, str], ...]) -> str:
    opening = (_CSD_NAMES if prefixed else _PLAIN_NAMES).get(name) or _new_names(name, prefixed)
    start = opening[0]
    if attributes:
        if len(attributes) > 1 and len({name for name, _ in attributes}) < len(attributes):
            # a repeated name keeps its first place and its last value, as successive `set` calls do
            attributes = tuple(dict(attributes).items())
        for attribute, value in attributes:
            opening_of = _ATTRIBUTE_NAMES.get(attribute) or _attribute_name(attribute)
            start += f'{opening_of}{_escape_attribute(value)}"'
    return start


def _leaf_node(name: str, prefixed: bool, attributes: tuple[tuple[str, str], ...], text: str | None) -> str:
    start = _start(name, prefixed, attributes)
    if text is None:
        leaf = start + "/>"
    else:
        leaf = f"{start}>{_escape_text(text)}{(_CSD_NAMES if prefixed else _PLAIN_NAMES)[name][1]}"
    if len(_LEAVES) >= _CACHED:
        _LEAVES.clear()
    _LEAVES[name, prefixed, attributes, text] = leaf
    return leaf


def _node(parts: list[str], node: ExtensionNode, prefixed: bool) -> None:
    """An extension's element and its subtree; `prefixed`: a typed element of the ROR v2.4 profile, in the
    CSD namespace as its children."""
    name, text, attributes, children = node.name, node.text, node.attributes, node.children
    if not children:
        parts.append(
            _LEAVES.get((name, prefixed, attributes, text)) or _leaf_node(name, prefixed, attributes, text)
        )
        return
    start = _STARTS.get((name, prefixed, attributes))
    if start is None:
        start = _start(name, prefixed, attributes)
        if len(_STARTS) >= _CACHED:
            _STARTS.clear()
        _STARTS[name, prefixed, attributes] = start
    append = parts.append
    append(start + ">" if text is None else f"{start}>{_escape_text(text)}")
    for child in children:
        if child.children:
            _node(parts, child, prefixed)
        else:  # a leaf (most children): its serialised element, without a call of its own
            leaf_key = (child.name, prefixed, child.attributes, child.text)
            append(_LEAVES.get(leaf_key) or _leaf_node(*leaf_key))
    append((_CSD_NAMES if prefixed else _PLAIN_NAMES)[name][1])


# Each typed extension's elements → their place in its sequence (bridge/profile.py; a repeated element takes
# its first place, as profile.position says). An element without place is refused by profile.position.
_POSITIONS: Final[dict[str, dict[str, int]]] = {
    extension_type: {element: sequence.index(element) for element in sequence}
    for extension_type, sequence in profile.SEQUENCES.items()
}


def _in_profile_order(extension_type: str, nodes: list[ExtensionNode]) -> list[ExtensionNode]:
    """`nodes` in the order of the typed extension's sequence (stable: repeats keep their order)."""
    positions = _POSITIONS.get(extension_type, {})
    order: list[int] = []
    for node in nodes:
        place = positions.get(node.name)
        if place is None:
            place = profile.position(extension_type, node.name)  # raises: not an element of that extension
        order.append(place)
    if len(nodes) == 1:
        return nodes
    return [nodes[i] for i in sorted(range(len(nodes)), key=order.__getitem__)]


def _extensions(parts: list[str], extensions: Sequence[Extension]) -> None:
    """Each extension in turn, except the typed elements of the ROR v2.4 profile (`Extension.profile`): those
    of one typed extension go together in one `csd:extension`, where the first of them comes, in the order
    of the profile's sequence (bridge/profile.py; repeats keep their order)."""
    if not extensions:
        return
    groups: dict[tuple[str, str, int], tuple[int, Extension, list[ExtensionNode]]] = {}
    opened: dict[tuple[str, str], int] = {}  # how many extensions of a type an OPENS_EXTENSION element opened
    opens = profile.OPENS_EXTENSION
    for extension in extensions:
        if not extension.profile:
            _extension(parts, extension)
            continue
        extension_type, content = extension.type, extension.content
        if extension_type in opens:
            pair = (extension_type, extension.urn)
            if content is not None and opens[extension_type] == content.name:
                opened[pair] = opened.get(pair, -1) + 1
            key = (*pair, opened.get(pair, 0))
        else:
            key = (extension_type, extension.urn, 0)
        group = groups.get(key)
        if group is None:  # the element takes its place now, its content once the group is complete
            group = groups[key] = (len(parts), extension, [])
            parts.append("")
        if content is not None:
            group[2].append(content)
    for (extension_type, _urn, _n), (index, extension, nodes) in groups.items():
        if not nodes:
            parts[index] = _extension_start(extension) + "/>"
            continue
        group_parts = [_extension_start(extension) + ">"]
        for node in _in_profile_order(extension_type, nodes):
            _node(group_parts, node, True)
        group_parts.append("</csd:extension>")
        parts[index] = "".join(group_parts)


def _extensions_each(parts: list[str], extensions: Sequence[Extension]) -> None:
    for extension in extensions:
        _extension(parts, extension)


def _record(parts: list[str], record: Record) -> None:
    source = record.source_directory
    parts.append(
        f'<csd:record created="{xs_datetime(record.created)}" updated="{xs_datetime(record.updated)}" '
        f'status="{_escape_attribute(record.status)}"'
        + (f' sourceDirectory="{_escape_attribute(source)}"/>' if source else "/>")
    )


def _operating_hours(parts: list[str], hours: OperatingHours) -> None:
    append = parts.append
    append(f"<csd:operatingHours><csd:openFlag>{xs_boolean(hours.open_flag)}</csd:openFlag>")
    for day in hours.days_of_week:
        append(f"<csd:dayOfTheWeek>{int(day)}</csd:dayOfTheWeek>")
    if hours.beginning_hour is not None:
        append(f"<csd:beginningHour>{xs_time(hours.beginning_hour)}</csd:beginningHour>")
    if hours.ending_hour is not None:
        append(f"<csd:endingHour>{xs_time(hours.ending_hour)}</csd:endingHour>")
    append(f"<csd:beginEffectiveDate>{xs_date(hours.begin_effective_date)}</csd:beginEffectiveDate>")
    if hours.end_effective_date is not None:
        append(f"<csd:endEffectiveDate>{xs_date(hours.end_effective_date)}</csd:endEffectiveDate>")
    _extensions(parts, hours.extensions)
    append("</csd:operatingHours>")


def _geocode(parts: list[str], geocode: Geocode) -> None:
    append = parts.append
    append(
        f"<csd:geocode><csd:latitude>{xs_decimal(geocode.latitude)}</csd:latitude>"
        f"<csd:longitude>{xs_decimal(geocode.longitude)}</csd:longitude>"
    )
    if geocode.altitude is not None:
        append(f"<csd:altitude>{xs_decimal(geocode.altitude)}</csd:altitude>")
    _leaf_opt(parts, "coordinateSystem", geocode.coordinate_system)
    append("</csd:geocode>")


def _service_name(parts: list[str], name: str) -> None:
    # The names of a service given at a facility are of the structured `name` type (commonName 1..*).
    parts.append(f"<csd:name><csd:commonName>{_escape_text(name)}</csd:commonName></csd:name>")


def _person_name(parts: list[str], name: PersonName) -> None:
    mark = len(parts)
    parts.append("<csd:name")
    for common in name.common_names:
        _leaf(parts, "commonName", common)
    if name.honorific is not None:
        _coded(parts, name.honorific, "honorific")
    _leaf_opt(parts, "forename", name.forename)
    _leaf_opt(parts, "surname", name.surname)
    _leaf_opt(parts, "suffix", name.suffix)
    _extensions(parts, name.extensions)
    _close(parts, mark, "</csd:name>")


def _demographic(parts: list[str], person: Demographic) -> None:
    # CSD person: name 1..*, contactPoint*, address*, gender?, dateOfBirth?
    mark = len(parts)
    parts.append("<csd:demographic")
    for name in person.names:
        _person_name(parts, name)
    for point in person.contact_points:
        _contact_point(parts, point)
    for address in person.addresses:
        _address(parts, address)
    _leaf_opt(parts, "gender", person.gender)
    if person.date_of_birth is not None:
        parts.append(f"<csd:dateOfBirth>{xs_date(person.date_of_birth)}</csd:dateOfBirth>")
    _close(parts, mark, "</csd:demographic>")


def _credential(parts: list[str], credential: Credential) -> None:
    append = parts.append
    append("<csd:credential>")
    _coded(parts, credential.coded_type)
    _leaf(parts, "number", credential.number)
    _leaf_opt(parts, "issuingAuthority", credential.issuing_authority)
    if credential.issue_date is not None:
        append(f"<csd:credentialIssueDate>{xs_date(credential.issue_date)}</csd:credentialIssueDate>")
    if credential.renewal_date is not None:
        append(f"<csd:credentialRenewalDate>{xs_date(credential.renewal_date)}</csd:credentialRenewalDate>")
    _extensions(parts, credential.extensions)
    append("</csd:credential>")


# A directory entry's start tag declares the csd prefix (it is written as a standalone element).
_ENTRY: Final = f' xmlns:csd="{ns.CSD}" entityID="'


def _entry_start(parts: list[str], name: str, entity_id: str) -> None:
    parts.append(f'<csd:{name}{_ENTRY}{_escape_attribute(entity_id)}">')


def _nested_start(parts: list[str], name: str, entity_id: str) -> int:
    """`<csd:name entityID="…"` (to be ended by _close): an entity referenced inside an entry."""
    parts.append(f'<csd:{name} entityID="{_escape_attribute(entity_id)}"')
    return len(parts) - 1


def _entry_bytes(parts: list[str]) -> bytes:
    return "".join(parts).encode()


# --------------------------------------------------------------------------------------------------
# Directory entries: each the bytes of one standalone element (what the streaming writer writes in one go)


def _facility_service(parts: list[str], service: FacilityService) -> None:
    # name*, language*, operatingHours*, freeBusyURI?, extension*
    mark = _nested_start(parts, "service", service.entity_id)
    for name in service.names:
        _service_name(parts, name)
    for hours in service.operating_hours:
        _operating_hours(parts, hours)
    _extensions_each(parts, service.extensions)
    _close(parts, mark, "</csd:service>")


def _facility_organization(parts: list[str], organization: FacilityOrganization) -> None:
    mark = _nested_start(parts, "organization", organization.entity_id)
    for service in organization.services:
        _facility_service(parts, service)
    _extensions_each(parts, organization.extensions)
    _close(parts, mark, "</csd:organization>")


def _provider_organization(parts: list[str], organization: ProviderOrganization) -> None:
    # CSD 2014: here extension comes first, then address*, contactPoint*.
    mark = _nested_start(parts, "organization", organization.entity_id)
    _extensions_each(parts, organization.extensions)
    for address in organization.addresses:
        _address(parts, address)
    for point in organization.contact_points:
        _contact_point(parts, point)
    _close(parts, mark, "</csd:organization>")


def _provider_service(parts: list[str], service: ProviderService) -> None:
    # name*, organization?, language*, operatingHours*, freeBusyURI?, extension*
    mark = _nested_start(parts, "service", service.entity_id)
    for name in service.names:
        _service_name(parts, name)
    if service.organization_id:
        parts.append(f'<csd:organization entityID="{_escape_attribute(service.organization_id)}"/>')
    for hours in service.operating_hours:
        _operating_hours(parts, hours)
    _extensions_each(parts, service.extensions)
    _close(parts, mark, "</csd:service>")


def _provider_facility(parts: list[str], facility: ProviderFacility) -> None:
    mark = _nested_start(parts, "facility", facility.entity_id)
    for service in facility.services:
        _provider_service(parts, service)
    for hours in facility.operating_hours:
        _operating_hours(parts, hours)
    _extensions_each(parts, facility.extensions)
    _close(parts, mark, "</csd:facility>")


# The entries: each entity kind's sequence from its one declaration (bridge/model.py `ENTITY_SHAPES`): how
# each slot's value is written, by its form and its type.

_Write = Callable[[list[str], Any], None]
# The value types written the same whatever the slot's name.
_VALUES: Final[dict[type, _Write]] = {
    OtherID: _other_id,
    Address: _address,
    ContactPoint: _contact_point,
    Geocode: _geocode,
    OperatingHours: _operating_hours,
    Demographic: _demographic,
    Credential: _credential,
    Record: _record,
}


def _named_writer(value_type: type, name: str) -> _Write:
    """How a value of `value_type` is written in the slot `name`: text and codedType elements take the slot's
    element name (made once here, not per value); the others are written as their type says."""
    if value_type is str:
        opening, closing, empty = f"<csd:{name}>", f"</csd:{name}>", f"<csd:{name}/>"

        def text(parts: list[str], value: str | None) -> None:
            parts.append(empty if value is None else f"{opening}{_escape_text(value)}{closing}")

        return text
    if value_type is CodedType:
        start, end = f'<csd:{name} code="', f"</csd:{name}>"

        def coded(parts: list[str], value: CodedType) -> None:  # as _coded writes it
            scheme = _escape_attribute(value.coding_scheme)
            element = f'{start}{_escape_attribute(value.code)}" codingScheme="{scheme}"'
            if value.display:
                parts.append(f"{element}>{_escape_text(value.display)}{end}")
            else:
                parts.append(element + "/>")

        return coded
    return _VALUES[value_type]


# The entities a LIST slot's wrapper holds (with their own nested sequences, above).
_LISTED: Final[dict[type, Callable[[list[str], Any], None]]] = {
    FacilityOrganization: _facility_organization,
    ProviderOrganization: _provider_organization,
    ProviderFacility: _provider_facility,
}
_Step = Callable[[list[str], Any], None]


def _step(slot: Slot, declared: SlotType) -> _Step:
    """What writes one slot of a record (nothing when it is empty and optional)."""
    get, name = attrgetter(slot.field), slot.element
    if slot.form is Form.EXTENSIONS:
        return lambda parts, record: _extensions(parts, get(record))
    if slot.form is Form.REFERENCE:
        start = f'<csd:{name} entityID="'

        def reference(parts: list[str], record: Any) -> None:
            if value := get(record):
                parts.append(f'{start}{_escape_attribute(value)}"/>')

        return reference
    if slot.form is Form.LIST:
        write_item, opening, closing = _LISTED[declared.type], f"<csd:{name}>", f"</csd:{name}>"

        def listed(parts: list[str], record: Any) -> None:
            if values := get(record):  # the wrapper holds 1..*: omitted when there is none
                parts.append(opening)
                for item in values:
                    write_item(parts, item)
                parts.append(closing)

        return listed
    write = _named_writer(declared.type, name)
    if declared.many:

        def each(parts: list[str], record: Any) -> None:
            for item in get(record):
                write(parts, item)

        return each

    def one(parts: list[str], record: Any) -> None:
        if (value := get(record)) is not None:
            write(parts, value)

    return one


def _entry_writer(shape: Shape) -> Callable[[Any], bytes]:
    """The bytes of one standalone entry of `shape`: its start tag with the csd prefix and `@entityID`, then
    its slots in order."""
    declared = slot_types(shape)
    first, *rest = shape.slots
    if first.form is not Form.ATTRIBUTE or any(slot.form is Form.ATTRIBUTE for slot in rest):
        raise ValueError(f"csd:{shape.name}: @entityID must be the first slot and the only attribute")
    entity_id = attrgetter(first.field)
    steps = tuple(_step(slot, declared[slot.element]) for slot in rest)
    start, end = f"<csd:{shape.name}{_ENTRY}", f"</csd:{shape.name}>"

    def write(record: Any) -> bytes:
        parts = [f'{start}{_escape_attribute(entity_id(record))}">']
        for step in steps:
            step(parts, record)
        parts.append(end)
        return "".join(parts).encode()

    return write


_ENTRIES: Final[dict[str, Callable[[Any], bytes]]] = {
    name: _entry_writer(shape) for name, shape in ENTITY_SHAPES.items()
}


def organization_bytes(organization: Organization) -> bytes:
    """`csd:organization`, as `ENTITY_SHAPES` declares it."""
    return _ENTRIES["organization"](organization)


def service_bytes(service: Service) -> bytes:
    """`csd:service`, as `ENTITY_SHAPES` declares it."""
    return _ENTRIES["service"](service)


def facility_bytes(facility: Facility) -> bytes:
    """`csd:facility`, as `ENTITY_SHAPES` declares it."""
    return _ENTRIES["facility"](facility)


def provider_bytes(provider: Provider) -> bytes:
    """`csd:provider`, as `ENTITY_SHAPES` declares it."""
    return _ENTRIES["provider"](provider)


def device_bytes(device: Device) -> bytes:
    """`csd:device` (ROR CSD v2.4 profile), as `ENTITY_SHAPES` declares it."""
    return _ENTRIES["device"](device)


def _parsed(data: bytes) -> etree._Element:
    return etree.fromstring(data, etree.XMLParser(resolve_entities=False, no_network=True))


def organization_element(organization: Organization) -> etree._Element:
    """The entry of `organization_bytes` as an lxml element (for readers of the written entry)."""
    return _parsed(organization_bytes(organization))


def service_element(service: Service) -> etree._Element:
    return _parsed(service_bytes(service))


def facility_element(facility: Facility) -> etree._Element:
    return _parsed(facility_bytes(facility))


def provider_element(provider: Provider) -> etree._Element:
    return _parsed(provider_bytes(provider))


def device_element(device: Device) -> etree._Element:
    return _parsed(device_bytes(device))


# --------------------------------------------------------------------------------------------------
# The document: one shape, two drivers (async streaming, sync bytes)


def _entries(document: CsdDocument) -> Iterator[tuple[Directory, Iterator[bytes]]]:
    """The five directories in document order, each with its entries' bytes made one at a time."""
    yield Directory.ORGANIZATION, map(organization_bytes, document.organizations)
    yield Directory.SERVICE, map(service_bytes, document.services)
    yield Directory.FACILITY, map(facility_bytes, document.facilities)
    yield Directory.PROVIDER, map(provider_bytes, document.providers)
    yield Directory.DEVICE, map(device_bytes, document.devices)


async def write_csd(xf: Any, document: CsdDocument, tag: str = "CSD") -> None:
    """Write one `csd:CSD` element into an open async `etree.xmlfile` context, one record at a time.

    All five directories are always written, possibly empty. lxml writes the CSD and directory tags; the
    entries' bytes (`organization_bytes` and the like) go in between through `xf.write_raw` (the edge's
    writer, soap/envelope.py: it flushes lxml's buffer first), `FLUSH_EVERY` records at a time, so that the
    sink receives the document in chunks. `tag`: the element's local name (`queryResult`, of type CSD, in
    the ROR v2.4 profile's encapsulated answer).
    """
    async with xf.element(_tag(tag), nsmap=_NSMAP):
        for directory, entries in _entries(document):
            async with xf.element(_tag(directory.value)):
                batch: list[bytes] = []
                for entry in entries:
                    batch.append(entry)
                    if len(batch) == FLUSH_EVERY:
                        await xf.write_raw(b"".join(batch))
                        batch.clear()
                if batch:
                    await xf.write_raw(b"".join(batch))


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
            units = await _off_loop(_spooled_facility_number, response.directories)
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


async def _off_loop(func: Callable[..., _T], *args: Any) -> _T:
    """`asyncio.to_thread(func, *args)`, asyncio imported on first use: a mapping worker imports this module
    for its byte writer and never runs these coroutines (asyncio brings ssl: ~10 MiB a worker, issue 13)."""
    import asyncio

    return await asyncio.to_thread(func, *args)


async def _copy_directories(xf: Any, directories: BinaryIO, tag: str = "CSD") -> None:
    """A `csd:CSD` element whose five directories were written beforehand to a file (CsdResponse.directories):
    lxml writes the CSD tags, the file's bytes go in between as they are, through `xf.write_raw` (the edge's
    writer, soap/envelope.py: it flushes lxml's buffer first, so the order is kept)."""
    async with xf.element(_tag(tag), nsmap=_NSMAP):
        directories.seek(0)
        while chunk := await _off_loop(directories.read, COPY_CHUNK):
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


def _record_notif_code(organization: Organization) -> tuple[str, str] | None:
    """`_notif_code` of the entry `organization_bytes` writes, read from the record itself."""
    if not organization.parent_id:
        return None
    for other in organization.other_ids:
        if other.assigning_authority_name == ns.OID_IDNATSTRUCT and other.code:
            return _text(other.code), _text(organization.entity_id)
    return None


def _notif_codes(response: CsdResponse) -> list[tuple[str, str]]:
    """(idNatStruct, entityID) of every EG of an answer, in answer order; read from its spool at flat memory
    (two strings per EG are kept), in a worker thread so that the event loop is not held by the parse."""
    if response.directories is not None:
        spooled = _spooled_elements(response.directories, "organization")
        return [code for code in map(_notif_code, spooled) if code is not None]
    return [code for code in map(_record_notif_code, response.document.organizations) if code is not None]


async def _write_notif(xf: Any, response: CsdResponse) -> None:
    """`TR-Notif-ListeEtablissementMajApresDate_Reponse`: one `etablissementReponseNotif` per EG of the
    answer's organisations — its `id_etablissement` (idNatStruct), then a `typeActivity` per champ d'activité
    of its changed offers (CsdResponse.activities; none when only something else changed) [INFER: the
    profile's schema has them 0..*, TRE_R227, and says no more] — then `result` = how many [INFER: the
    profile's schema says only xs:integer; PLATINES checks no value]."""
    codes = await _off_loop(_notif_codes, response)
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

    The same entries and directory order as `write_csd`, the bytes lxml's `etree.xmlfile` writes around them
    (`document_start` and the like); for the offline `translate` command, the comparison tool and tests. The
    cyclic garbage collector is paused meanwhile (bridge/gc_control.py).
    """
    parts = [document_start()]
    with gc_control.batch():
        for directory, entries in _entries(document):
            parts.append(directory_start(directory))
            parts.extend(entries)
            parts.append(directory_end(directory))
    parts.append(document_end())
    return b"".join(parts)


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
