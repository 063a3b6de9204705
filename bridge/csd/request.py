"""Normalises an ITI-73 careServicesRequest (2013, 2014 and 2016 forms) or ITI-74 request into a CsdRequest.

Part of csd/ (the CSD vocabulary, inbound half). Sources: csd-wire-format §3.1, §3.3, §3.4 and §4;
architecture.md §2 "Accepted request shapes on the CSD endpoints".
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone

from lxml import etree

from bridge import ns
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

# xs:dateTime (XML Schema part 2 §3.2.7) with any number of fractional digits, optionally without the
# time part (a date alone is read as midnight: legacy clients send `lastModified` as a date).
_DATETIME = re.compile(
    r"(?P<year>-?\d{4,})-(?P<month>\d{2})-(?P<day>\d{2})"
    r"(?:T(?P<hour>\d{2}):(?P<minute>\d{2}):(?P<second>\d{2})(?:\.(?P<fraction>\d+))?)?"
    r"(?P<tz>Z|[+-]\d{2}:\d{2})?"
)
# The longest value a request may carry in one element or attribute (a name, an identifier, a URN): far above
# any real one, low enough that a hostile value is refused before it reaches a query, a log or a fault.
MAX_VALUE_CHARS = 1024
_INTEGER = re.compile(r"[+-]?\d+")  # xs:int lexical space (no "1_000", no "1e3")

# Parameters RequestParams has a field for (csd-wire-format §4); every other leaf goes to `extra`.
_KNOWN_PARAMS = frozenset(
    {
        "id",
        "otherID",
        "primaryName",
        "name",
        "commonName",
        "codedType",
        "address",
        "organizations",
        "record",
        "start",
        "max",
    }
)


def parse_xs_datetime(text: str) -> datetime:
    """Parse an xs:dateTime (or xs:date, as midnight); raise ValueError when it is not one.

    `Z` and `±hh:mm` give an aware datetime; no offset keeps it naive (the translate part decides
    which timezone applies, from a mapping table). Fractional digits beyond microseconds are dropped.
    """
    match = _DATETIME.fullmatch(text.strip())
    if match is None:
        raise ValueError(f"{text!r} is not an xs:dateTime")
    year, month, day = int(match["year"]), int(match["month"]), int(match["day"])
    hour = int(match["hour"] or 0)
    minute = int(match["minute"] or 0)
    second = int(match["second"] or 0)
    micro = int((match["fraction"] or "0")[:6].ljust(6, "0"))
    tzinfo: timezone | None = None
    if match["tz"] == "Z":
        tzinfo = UTC
    elif match["tz"]:
        sign = -1 if match["tz"][0] == "-" else 1
        tz_hours, tz_minutes = int(match["tz"][1:3]), int(match["tz"][4:6])
        if tz_hours > 14 or tz_minutes > 59 or (tz_hours == 14 and tz_minutes):
            raise ValueError(f"{text!r}: timezone offset out of range")
        tzinfo = timezone(sign * timedelta(hours=tz_hours, minutes=tz_minutes))
    # XML Schema part 2 §3.2.7: 24:00:00 is the first instant of the next day.
    end_of_day = hour == 24 and minute == 0 and second == 0 and micro == 0
    value = datetime(year, month, day, 0 if end_of_day else hour, minute, second, micro, tzinfo=tzinfo)
    return value + timedelta(days=1) if end_of_day else value


def _local(element: etree._Element) -> str:
    return etree.QName(element).localname


def _children(element: etree._Element) -> Iterator[etree._Element]:
    """Element children in document order; matched by local name (sloppy clients drop namespaces)."""
    for child in element:
        if isinstance(child.tag, str):
            yield child


def _child(element: etree._Element, local: str) -> etree._Element | None:
    for child in _children(element):
        if _local(child) == local:
            return child
    return None


def _bounded(value: str, where: str) -> str:
    if len(value) > MAX_VALUE_CHARS:
        raise InvalidParameterError(f"{where} is longer than {MAX_VALUE_CHARS} characters ({len(value)})")
    return value


def _text(element: etree._Element) -> str | None:
    value = _bounded((element.text or "").strip(), _local(element))
    return value or None


def _attr(element: etree._Element, name: str) -> str | None:
    value = _bounded((element.get(name) or "").strip(), f"{_local(element)}/@{name}")
    return value or None


def _xs_boolean(value: str, what: str) -> bool:
    # XML Schema part 2 §3.2.2: true/false/1/0, whitespace collapsed. Case is tolerated: legacy
    # generators write "True".
    folded = value.strip().lower()
    if folded in ("true", "1"):
        return True
    if folded in ("false", "0"):
        return False
    raise InvalidParameterError(f"{what} must be an xs:boolean (true, false, 1 or 0), got {value!r}")


def _encapsulated(element: etree._Element) -> bool | None:
    value = element.get("encapsulated")
    if value is None:
        return None  # absent in most OIM test docs although the XSD requires it (csd-wire-format §3.4)
    return _xs_boolean(value, "@encapsulated")


def _integer(element: etree._Element, name: str) -> int | None:
    text = _text(element)
    if text is None:
        return None
    if not _INTEGER.fullmatch(text):
        raise InvalidParameterError(f"parameter {name!r} must be an integer, got {text!r}")
    return int(text)


def _entity_id(element: etree._Element) -> str | None:
    """`id/@entityID`, or the older `@oid` (→ urn:oid:) and `@urn` (csd-wire-format §3.4)."""
    entity_id = _attr(element, "entityID")
    if entity_id:
        return entity_id
    oid = _attr(element, "oid")
    if oid:
        return oid if oid.lower().startswith("urn:oid:") else f"urn:oid:{oid}"
    return _attr(element, "urn") or _text(element)


def _leaves(element: etree._Element) -> Iterator[etree._Element]:
    """`element` itself if it has no element child, else its leaf descendants in document order."""
    children = list(_children(element))
    if not children:
        yield element
        return
    for child in children:
        yield from _leaves(child)


def _params(container: etree._Element | None) -> RequestParams:
    """requestParams → RequestParams. Empty elements are absent parameters: the 2016 stored-function
    templates send every parameter element empty (csd-wire-format §3.4 b)."""
    if container is None:
        return RequestParams()
    entity_id: str | None = None
    other_ids: list[OtherID] = []
    names: dict[str, str | None] = {"primaryName": None, "name": None, "commonName": None}
    coded_types: list[CodedType] = []
    address_lines: list[AddressLine] = []
    organizations: list[str] = []
    record_status: str | None = None
    record_updated: datetime | None = None
    start: int | None = None
    maximum: int | None = None
    extra: list[tuple[str, str]] = []

    for param in _children(container):
        local = _local(param)
        if (param.get(ns.qn(ns.XSI, "nil")) or "").strip() in ("1", "true"):
            # A nil element has no value: an absent parameter. Apache Axis 1.4 stubs send the xs:any
            # members of requestParams they were not given as <_any2 xsi:nil="true"/> (README "Interop lab").
            continue
        if local == "id":
            entity_id = entity_id or _entity_id(param)
        elif local == "otherID":
            # Schema: attributes only; OIM-ecosystem clients put the code as text (csd-wire-format §5).
            code = _attr(param, "code") or _text(param)
            authority = _attr(param, "assigningAuthorityName")
            if code:
                other_ids.append(OtherID(code=code, assigning_authority_name=authority or ""))
            elif authority:
                raise InvalidParameterError("parameter 'otherID' has an assigningAuthorityName but no code")
        elif local in names:
            names[local] = names[local] or _text(param)
        elif local == "codedType":
            code = _attr(param, "code")
            if code:
                coded_types.append(
                    CodedType(
                        code=code, coding_scheme=_attr(param, "codingScheme") or "", display=_text(param)
                    )
                )
        elif local == "address":
            for line in _children(param):
                value = _text(line)
                if _local(line) == "addressLine" and value:
                    address_lines.append(AddressLine(value=value, component=_attr(line, "component")))
        elif local == "organizations":
            for organization in _children(param):
                org_id = _entity_id(organization) if _local(organization) == "organization" else None
                if org_id:
                    organizations.append(org_id)
        elif local == "record":
            record_status = _attr(param, "status")
            updated = _attr(param, "updated")
            if updated:
                try:
                    record_updated = parse_xs_datetime(updated)
                except ValueError:
                    raise InvalidParameterError(
                        f"parameter 'record/@updated' must be an xs:dateTime, got {updated!r}"
                    ) from None
        elif local == "start":
            start = _integer(param, "start")
        elif local == "max":
            maximum = _integer(param, "max")
        else:
            extra.extend((_local(leaf), _text(leaf) or "") for leaf in _leaves(param))

    return RequestParams(
        entity_id=entity_id,
        other_ids=tuple(other_ids),
        primary_name=names["primaryName"],
        name=names["name"],
        common_name=names["commonName"],
        coded_types=tuple(coded_types),
        address_lines=tuple(address_lines),
        organizations=tuple(organizations),
        record_status=record_status,
        record_updated=record_updated,
        start=start,
        max=maximum,
        extra=tuple(extra),
    )


# ---------------------------------------------------------------------------------------------------
# The official ROR v2.4 profile (shared/reference/ror-v24/): TR_Lecture children of csd:function and the
# TR-Notif operation. Their parameters keep the profile's names in RequestParams.extra (functions.yaml
# declares them); the identifier goes to other_ids like an IHE otherID.

# PLATINES's own TR-Notif default dateRef is "2018-05-30T7:00:00": a one-digit hour is read as two.
_ONE_DIGIT_HOUR = re.compile(r"(T)(\d)(:)")


def _profile_datetime(element: etree._Element, where: str) -> str | None:
    """An xs:dateTime parameter of the profile, as an ISO 8601 string (None when empty)."""
    text = _text(element)
    if text is None:
        return None
    try:
        value = parse_xs_datetime(text)
    except ValueError:
        try:
            value = parse_xs_datetime(_ONE_DIGIT_HOUR.sub(r"\g<1>0\g<2>\g<3>", text, count=1))
        except ValueError:
            raise InvalidParameterError(f"{where} must be an xs:dateTime, got {text!r}") from None
    return value.isoformat()


def _profile_id(element: etree._Element, where: str) -> OtherID:
    code = _attr(element, "code") or _text(element)
    if code is None:
        raise InvalidParameterError(f"{where}/@code is required (the national identifier)")
    return OtherID(code=code, assigning_authority_name=_attr(element, "assigningAuthorityName") or "")


def _profile_params(container: etree._Element, where: str, identifier: str | None) -> RequestParams:
    """The children of etablissementDemandeLecture / TR_Lecture-OffreSanteOrganisationInterne / params.

    `identifier` names the identifier element (required when given); dateRef, typeActivity, supportedPatient
    and restrictedOrganisation are kept under their profile names. Any other element is refused: the
    parameters combine with AND, ignoring one would widen the answer.
    """
    other_ids: list[OtherID] = []
    extra: list[tuple[str, str]] = []
    for child in _children(container):
        local = _local(child)
        if identifier is not None and local == identifier:
            other_ids.append(_profile_id(child, f"{where}/{local}"))
        elif local == "dateRef":
            when = _profile_datetime(child, f"{where}/dateRef")
            if when is not None:
                extra.append(("dateRef", when))
        elif local in ("typeActivity", "supportedPatient"):
            code = _attr(child, "code")
            if code is None:
                raise InvalidParameterError(f"{where}/{local}/@code is required")
            extra.append((local, code))
        elif local == "restrictedOrganisation" and identifier == "id_etablissement":
            value = _text(child)
            if value is not None:
                flag = _xs_boolean(value, f"{where}/restrictedOrganisation")
                extra.append(("restrictedOrganisation", "true" if flag else "false"))
        else:
            raise InvalidParameterError(f"{where} does not accept {local!r}")
    if identifier is not None and len(other_ids) != 1:
        raise InvalidParameterError(f"{where} needs exactly one {identifier} (got {len(other_ids)})")
    return RequestParams(other_ids=tuple(other_ids), extra=tuple(extra))


def _profile_read(function: etree._Element, child: etree._Element, region: str | None) -> CsdRequest:
    """function[@urn]/TR_Lecture-OffresSanteEtablissement or TR_Lecture-OffreSanteOrganisationInterne."""
    selector = _local(child)
    if selector == ns.ROR_READ_ESTABLISHMENT:
        container = _child(child, "etablissementDemandeLecture")
        if container is None:
            raise InvalidParameterError(f"{selector} has no etablissementDemandeLecture")
        params = _profile_params(container, f"{selector}/etablissementDemandeLecture", "id_etablissement")
    else:
        params = _profile_params(child, selector, "organisationID")
    return CsdRequest(
        transaction=Transaction.CARE_SERVICES,
        form=RequestForm.ROR_PROFILE,
        function_urn=_attr(function, "urn"),
        encapsulated=_encapsulated(function),
        params=params,
        region=region,
        selector=selector,
    )


def _profile_notif(root: etree._Element, region: str | None) -> CsdRequest:
    """TR-Notif-ListeEtablissementsMajApresDate_Demande/params: dateRef (required), typeActivity*,
    supportedPatient*."""
    params_element = _child(root, "params")
    where = f"{ns.ROR_NOTIF_REQUEST}/params"
    if params_element is None:
        raise InvalidParameterError(f"{ns.ROR_NOTIF_REQUEST} has no params element")
    params = _profile_params(params_element, where, None)
    if not any(name == "dateRef" for name, _ in params.extra):
        raise InvalidParameterError(f"{where}/dateRef is required (xs:dateTime)")
    return CsdRequest(
        transaction=Transaction.ROR_NOTIF,
        form=RequestForm.ROR_PROFILE,
        params=params,
        region=region,
        selector=ns.ROR_NOTIF_REQUEST,
    )


_PROFILE_READS = frozenset({ns.ROR_READ_ESTABLISHMENT, ns.ROR_READ_INTERNAL_ORGANIZATION})


def _care_services(root: etree._Element, region: str | None) -> CsdRequest:
    """ITI-73: the 2016 root @urn form, else the 2014 function/@urn, else the 2013 function/@uuid form."""
    if root.get("urn") is not None:
        urn = _attr(root, "urn")
        if urn is None:
            raise UnsupportedRequestError("careServicesRequest/@urn is empty: name a stored function")
        return CsdRequest(
            transaction=Transaction.CARE_SERVICES,
            form=RequestForm.ROOT_URN_2016,
            function_urn=urn,
            encapsulated=_encapsulated(root),
            params=_params(_child(root, "requestParams")),
            request_id=_attr(root, "id"),
            region=region,
        )
    function = _child(root, "function")
    if function is not None and sum(1 for c in _children(root) if _local(c) == "function") > 1:
        raise UnsupportedRequestError("careServicesRequest holds several function elements: send one")
    if function is not None:
        first = next(_children(function), None)
        if first is not None and _local(first) in _PROFILE_READS:
            return _profile_read(function, first, region)
        urn = _attr(function, "urn")
        uuid = _attr(function, "uuid")
        if urn is not None:
            form, function_urn = RequestForm.FUNCTION_URN_2014, urn
        elif uuid is not None:
            form = RequestForm.FUNCTION_UUID_2013
            function_urn = uuid if uuid.lower().startswith("urn:uuid:") else f"urn:uuid:{uuid}"
        else:
            raise UnsupportedRequestError("careServicesRequest/function has neither @urn nor @uuid")
        # The function's one xs:any child is requestParams in practice (csd-wire-format §3.4 a).
        return CsdRequest(
            transaction=Transaction.CARE_SERVICES,
            form=form,
            function_urn=function_urn,
            encapsulated=_encapsulated(function),
            params=_params(next(_children(function), None)),
            region=region,
        )
    if _child(root, "expression") is not None:
        raise UnsupportedRequestError(
            "ad-hoc XQuery expressions are not supported by this service; call a stored function instead "
            "(careServicesRequest/function/@urn or careServicesRequest/@urn)"
        )
    raise UnsupportedRequestError(
        "careServicesRequest names no stored function: expected @urn with requestParams, or a function child"
    )


def _modifications(root: etree._Element, region: str | None) -> CsdRequest:
    """ITI-74: lastModified is required; missing or unparsable is the client's error (DHIS2 answers 400,
    csd-wire-format §3.3), not "everything since 1970" as OpenInfoMan does."""
    element = _child(root, "lastModified")
    if element is None:
        raise InvalidParameterError(
            "getModificationsRequest has no lastModified element (xs:dateTime required)"
        )
    text = _text(element)
    if text is None:
        raise InvalidParameterError("getModificationsRequest/lastModified is empty (xs:dateTime required)")
    try:
        last_modified = parse_xs_datetime(text)
    except ValueError:
        raise InvalidParameterError(
            f"getModificationsRequest/lastModified must be an xs:dateTime, got {text!r}"
        ) from None
    return CsdRequest(
        transaction=Transaction.MODIFICATIONS,
        form=RequestForm.MODIFICATIONS,
        last_modified=last_modified,
        region=region,
    )


def parse_request(body: etree._Element, *, region: str | None = None) -> CsdRequest:
    """Normalise the request element (SOAP Body child or bare root) into a CsdRequest.

    The root must be `careServicesRequest` or `getModificationsRequest` in the CSD namespace or in no
    namespace; children are matched by local name.
    """
    name = etree.QName(body)
    if name.namespace == ns.ROR and name.localname == ns.ROR_NOTIF_REQUEST:
        return _profile_notif(body, region)
    if name.namespace in (ns.CSD, None):
        if name.localname == "careServicesRequest":
            return _care_services(body, region)
        if name.localname == "getModificationsRequest":
            return _modifications(body, region)
    raise UnsupportedRequestError(
        f"unsupported request element {body.tag}: expected csd:careServicesRequest (ITI-73), "
        f"csd:getModificationsRequest (ITI-74) or {{{ns.ROR}}}{ns.ROR_NOTIF_REQUEST} (ROR v2.4 profile)"
    )
