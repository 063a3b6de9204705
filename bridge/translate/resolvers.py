"""The closed set of named resolvers that fill `{placeholders}` of a FHIR query plan from request parameters.

translate/: pure mapping engine. A table names a resolver; it never computes a value itself.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, tzinfo

from bridge.errors import InvalidParameterError
from bridge.model import RequestParams, Since
from bridge.translate.codes import OID_PREFIX, Systems
from bridge.translate.identity import FhirId, Identities

# IHE stored-function parameter names (docs/csd-wire-format.md §4) and how to tell one is present.
PARAMETERS: Mapping[str, Callable[[RequestParams], bool]] = {
    "id": lambda p: p.entity_id is not None,
    "otherID": lambda p: bool(p.other_ids),
    "primaryName": lambda p: p.primary_name is not None,
    "name": lambda p: p.name is not None,
    "commonName": lambda p: p.common_name is not None,
    "codedType": lambda p: bool(p.coded_types),
    "address": lambda p: bool(p.address_lines),
    "organizations": lambda p: bool(p.organizations),
    "record/@status": lambda p: p.record_status is not None,
    "record/@updated": lambda p: p.record_updated is not None,
    "start": lambda p: p.start is not None,
    "max": lambda p: p.max is not None,
}


def present_parameters(params: RequestParams) -> list[str]:
    """The parameter names a request carries: IHE names first, then its own (`extra`) names."""
    names = [name for name, present in PARAMETERS.items() if present(params)]
    names.extend(name for name, _ in params.extra if name not in names)
    return names


def fhir_escape(text: str) -> str:
    """A client's text as one FHIR search value: `\\`, `,` (OR), `|` (system|code) and `$` (composite) are
    escaped with a backslash (FHIR R4 search §3.1.1.4.7), so a request parameter can never add alternatives,
    a system or a composite part to the upstream query (issue 15, hostile input)."""
    return text.replace("\\", "\\\\").replace(",", "\\,").replace("|", "\\|").replace("$", "\\$")


@dataclass(frozen=True, slots=True)
class Lookup:
    """A national identifier to search by: its value and the FHIR systems it may be written under."""

    value: str
    systems: tuple[str, ...]  # () when unknown; several when the data spells the authority several ways

    @property
    def token(self) -> str:
        """FHIR token search value: `system|value` when exactly one system is known, else the bare value
        (`Organization?identifier=<value>` works without system, docs/ror-fhir-api.md §3.1)."""
        value = fhir_escape(self.value)
        return f"{self.systems[0]}|{value}" if len(self.systems) == 1 else value


OI_SYSTEM = "https://oi.esante.gouv.fr"
_REGION_PREFIX = re.compile(r"^[0-9]{2}/(?=.)")


def national_identifier(params: RequestParams, identities: Identities, systems: Systems) -> Lookup:
    """The organisation identifier of a request: `id/@entityID` issued by the bridge, else `otherID`."""
    if params.entity_id is not None:
        entity_id = params.entity_id.strip()
        try:
            found = identities.reverse(entity_id)
        except UnicodeDecodeError:
            found = None
        if found is None:
            raise InvalidParameterError(
                f"id/@entityID {entity_id!r} was not issued by this bridge: expected one of "
                + ", ".join(f"{s.prefix}…" for s in identities.schemes.values())
            )
        if isinstance(found, FhirId):
            raise InvalidParameterError(
                f"id/@entityID {entity_id!r} names an entity without national identifier; "
                "send its national identifier in requestParams/otherID instead"
            )
        systems_of_scheme = tuple(s for s in found.scheme.systems if s != "any")
        return Lookup(found.value, systems_of_scheme)
    if len(params.other_ids) > 1:
        raise InvalidParameterError(
            "requestParams carries several otherID; send exactly one national identifier"
        )
    if params.other_ids:
        other = params.other_ids[0]
        code = other.code.strip()
        if not code:
            raise InvalidParameterError("requestParams/otherID/@code is empty")
        authority = other.assigning_authority_name.strip()
        known = systems.identifier_systems(authority) if authority else None
        if known and OI_SYSTEM in known:
            # the ROR v2.4 profile writes an OI's identifier <région source>/<identifiantOI>
            # (transforms.regional_other_id): a client sends it back as it read it
            code = _REGION_PREFIX.sub("", code)
        return Lookup(code, known or ())
    raise InvalidParameterError(
        "missing national identifier: send requestParams/otherID/@code (with @assigningAuthorityName) "
        "or requestParams/id/@entityID"
    )


def entity_lookup(params: RequestParams, identities: Identities) -> Lookup | FhirId | None:
    """What an `id/@entityID` search parameter names: a national identifier, a FHIR id, or nothing."""
    if params.entity_id is None:
        return None
    entity_id = params.entity_id.strip()
    try:
        found = identities.reverse(entity_id)
    except UnicodeDecodeError:
        found = None
    if found is None:
        raise InvalidParameterError(f"id/@entityID {entity_id!r} was not issued by this bridge")
    if isinstance(found, FhirId):
        return found
    return Lookup(found.value, tuple(s for s in found.scheme.systems if s != "any"))


def _entity_identifier(p: RequestParams, i: Identities, s: Systems) -> str | None:
    found = entity_lookup(p, i)
    return found.token if isinstance(found, Lookup) else None


def _entity_fhir_id(p: RequestParams, i: Identities, s: Systems) -> str | None:
    found = entity_lookup(p, i)
    return found.id if isinstance(found, FhirId) else None


def _other_identifier(p: RequestParams, i: Identities, s: Systems) -> str | None:
    if not p.other_ids:
        return None
    if len(p.other_ids) > 1:
        raise InvalidParameterError("requestParams carries several otherID; send at most one")
    other = p.other_ids[0]
    authority = other.assigning_authority_name.strip()
    known = s.identifier_systems(authority) if authority else None
    return Lookup(other.code.strip(), known or ()).token


def _system_of_scheme(scheme: str, systems: Systems) -> str | None:
    """The FHIR system URL a CSD `codingScheme` names (the URL itself, or a NOS OID of codes/systems.csv)."""
    wanted = scheme.strip().removeprefix(OID_PREFIX)
    for row in systems.by_url.values():
        if row.kind == "code" and (
            row.system == scheme.strip() or (row.oid is not None and row.oid == wanted)
        ):
            return row.system
    return None


def _coded_type(p: RequestParams, i: Identities, s: Systems) -> str | None:
    """`system|code` of the requested codedType; None when the scheme is unknown (the bridge then filters)."""
    if not p.coded_types:
        return None
    if len(p.coded_types) > 1:
        raise InvalidParameterError("requestParams carries several codedType; send at most one")
    coded = p.coded_types[0]
    system = _system_of_scheme(coded.coding_scheme, s)
    return f"{system}|{fhir_escape(coded.code.strip())}" if system else None


def _name(p: RequestParams, i: Identities, s: Systems) -> str | None:
    # primaryName and name both narrow on the FHIR `name`; the bridge then tells them apart (select.py).
    text = p.primary_name if p.primary_name is not None else p.name
    return fhir_escape(text.strip()) if text is not None and text.strip() else None


# The request parameters that carry "changed since": IHE record/@updated, the ROR dateMiseAJour, and the
# ITI-74 getModificationsRequest/lastModified (the plan gives it typed, `RequestParams.since`).
SINCE_PARAMETERS = ("record/@updated", "dateMiseAJour", "lastModified", "dateRef")


def read_since(p: RequestParams, timezone: tzinfo) -> Since | None:
    """The "changed since" instant a request sends, typed once (a time without offset read in `timezone`,
    stated as sent), or None. InvalidParameterError for a text that is no ISO 8601 date."""
    if p.since is not None:
        return p.since
    when = p.record_updated
    for name in SINCE_PARAMETERS[1:]:
        if when is not None:
            break
        when = _extra_datetime(p, name)
    return Since.at(when, timezone, wall_clock=True) if when is not None else None


def _since(p: RequestParams) -> Since | None:
    # The plan reads it once (plan_queries); params it did not plan (a resolver called alone) are read here,
    # in UTC: the zone only matters to the future check and to ITI-74, never to how a search states it.
    return p.since if p.since is not None else read_since(p, UTC)


def _updated_since(p: RequestParams, i: Identities, s: Systems) -> str | None:
    since = _since(p)
    return f"ge{since.fhir_instant()}" if since is not None else None


def _required_since(p: RequestParams) -> Since:
    since = _since(p)
    if since is None:
        raise InvalidParameterError("send the date of the last update: dateMiseAJour or record/@updated")
    if p.record_updated is not None and extra_values(p, "dateMiseAJour"):
        raise InvalidParameterError("send dateMiseAJour or record/@updated, not both")
    return since


def _updated_since_required(p: RequestParams, i: Identities, s: Systems) -> str:
    return f"ge{_required_since(p).fhir_instant()}"


def _updated_filter_optional(p: RequestParams, i: Identities, s: Systems) -> str | None:
    # The ROR v2.4 reading's dateRef: only the offers changed since (or whose organisation chain changed).
    return _updated_filter(p, i, s) if _since(p) is not None else None


def _updated_filter(p: RequestParams, i: Identities, s: Systems) -> str:
    # ror-fhir-api §5 (B): the offer or its organisation chain changed since the date.
    instant = _required_since(p).fhir_instant()
    return f"(_lastUpdated ge {instant} or organization._lastUpdated:above ge {instant})"


def _extra_datetime(p: RequestParams, name: str) -> datetime | None:
    text = extra_value(p, name)
    if text is None:
        return None
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise InvalidParameterError(f"{name} {text!r} is not an ISO 8601 date or date-time") from None


def _address_line(component: str) -> Resolver:
    def resolve(p: RequestParams, i: Identities, s: Systems) -> str | None:
        values = [line.value.strip() for line in p.address_lines if (line.component or "") == component]
        return fhir_escape(values[0]) if values and values[0] else None

    return resolve


def extra_values(params: RequestParams, name: str) -> list[str]:
    """Every non-empty value of a stored function's own parameter (`RequestParams.extra`), in order."""
    return [value.strip() for key, value in params.extra if key == name and value.strip()]


def extra_value(params: RequestParams, name: str) -> str | None:
    values = extra_values(params, name)
    if len(values) > 1:
        raise InvalidParameterError(f"{name} is given {len(values)} times; send it once")
    return values[0] if values else None


def _codes(name: str, system: str) -> Resolver:
    """A coded ROR parameter: a bare code (of `system`) or `system|code`; repeats are OR (comma) [INFER]."""

    def resolve(p: RequestParams, i: Identities, s: Systems) -> str | None:
        values = extra_values(p, name)
        for value in values:
            if not re.fullmatch(r"[^,|\s]+(\|[^,|\s]+)?", value):
                raise InvalidParameterError(f"{name} {value!r} is not a code")
        return ",".join(v if "|" in v else f"{system}|{v}" for v in values) or None

    return resolve


def _number(p: RequestParams, name: str, *, integer: bool) -> float | None:
    text = extra_value(p, name)
    if text is None:
        return None
    try:
        number = float(int(text)) if integer else float(text.replace(",", "."))
    except ValueError:
        raise InvalidParameterError(f"{name} {text!r} is not a number") from None
    if number != number or number in (float("inf"), float("-inf")):
        raise InvalidParameterError(f"{name} {text!r} is not a number")
    return number


def _fmt(number: float) -> str:
    return str(int(number)) if number == int(number) else repr(number)


def _age_low(p: RequestParams, i: Identities, s: Systems) -> str | None:
    # ror-fhir-api §2.3: age-range-low/high are quantities queried as `le 35|https://unitsofmeasure.org|a`.
    age = _age(p)
    return None if age is None else f"le{_fmt(age)}|{UCUM}|a"


def _age_high(p: RequestParams, i: Identities, s: Systems) -> str | None:
    age = _age(p)
    return None if age is None else f"ge{_fmt(age)}|{UCUM}|a"


def _age(p: RequestParams) -> float | None:
    age = _number(p, "age", integer=False)
    if age is not None and not 0 <= age <= 150:
        raise InvalidParameterError(f"age {age} is out of range (0 to 150 years)")
    return age


def _distance(p: RequestParams) -> float | None:
    distance = _number(p, "distanceKm", integer=False)
    if distance is not None and not 0 < distance <= 1000:
        raise InvalidParameterError(f"distanceKm {distance} is out of range (0 to 1000 km)")
    return distance


def _commune(p: RequestParams, i: Identities, s: Systems) -> str | None:
    # A commune with a distance is a proximity search (near-insee-code), not a commune filter.
    if _distance(p) is not None:
        return None
    values = extra_values(p, "communeCog")
    for value in values:
        if not _COG.fullmatch(value):
            raise InvalidParameterError(f"communeCog {value!r} is not a COG commune code")
    return ",".join(f"{COMMUNE_SYSTEM}|{v}" for v in values) or None


def _near_commune(p: RequestParams, i: Identities, s: Systems) -> str | None:
    distance = _distance(p)
    commune = extra_value(p, "communeCog")
    if distance is None or commune is None:
        return None
    if not _COG.fullmatch(commune):
        raise InvalidParameterError(f"communeCog {commune!r} is not a COG commune code")
    return f"{commune}|{_fmt(distance)}|km"


def _near_point(p: RequestParams, i: Identities, s: Systems) -> str | None:
    latitude = _number(p, "latitude", integer=False)
    longitude = _number(p, "longitude", integer=False)
    if latitude is None and longitude is None:
        return None
    distance = _distance(p)
    if latitude is None or longitude is None or distance is None:
        raise InvalidParameterError("a search around a point needs latitude, longitude and distanceKm")
    if not (-90 <= latitude <= 90 and -180 <= longitude <= 180):
        raise InvalidParameterError(f"({latitude}, {longitude}) is not a WGS84 point")
    return f"{_fmt(latitude)}|{_fmt(longitude)}|{_fmt(distance)}|km"


def _postal_code(name: str, pattern: str) -> Resolver:
    def resolve(p: RequestParams, i: Identities, s: Systems) -> str | None:
        values = extra_values(p, name)
        for value in values:
            if not re.fullmatch(pattern, value):
                raise InvalidParameterError(f"{name} {value!r} is not valid")
        return ",".join(values) or None

    return resolve


def _capacity(p: RequestParams, i: Identities, s: Systems) -> str | None:
    number = _number(p, "capaciteDisponible", integer=True)
    if number is None:
        return None
    if number < 1:
        raise InvalidParameterError("capaciteDisponible is the minimum number of places: 1 or more")
    return f"ge{_fmt(number)}"


def _establishment(p: RequestParams, i: Identities, s: Systems) -> str:
    """The FINESS / idNatStruct / SIRET of an EJ or EG (exactly one), else its otherID or entityID."""
    given = [(name, value) for name in ESTABLISHMENT_PARAMETERS for value in extra_values(p, name)]
    if len(given) > 1:
        raise InvalidParameterError(
            "send exactly one of " + ", ".join(ESTABLISHMENT_PARAMETERS) + f" (got {len(given)})"
        )
    if given:
        return given[0][1]
    return national_identifier(p, i, s).value


UCUM = "http://unitsofmeasure.org"
# TRE_R13 commune system as written in the national API's query examples (ror-fhir-api §5 (A), (D)).
COMMUNE_SYSTEM = "https://mos.esante.gouv.fr/NOS/TRE_R13-CommuneOM/FHIR/TRE-R13-CommuneOM"
_COG = re.compile(r"[0-9][0-9AB][0-9]{3}")
ESTABLISHMENT_PARAMETERS = ("finess", "idNatStruct", "siret")
_NOS = "https://mos.esante.gouv.fr/NOS"

Resolver = Callable[[RequestParams, Identities, Systems], str | None]


RESOLVERS: Mapping[str, Resolver] = {
    # `system|value` (or the bare value) for token parameters such as Organization?identifier=
    "identifier": lambda p, i, s: national_identifier(p, i, s).token,
    # the bare value, for string-typed parameters such as HealthcareService?organization.identifier:above=
    "identifier_value": lambda p, i, s: fhir_escape(national_identifier(p, i, s).value),
    # Optional resolvers: None omits the [name, value] pair from the query (the parameter was not sent).
    "entity_identifier": _entity_identifier,
    "entity_fhir_id": _entity_fhir_id,
    "other_identifier": _other_identifier,
    "coded_type": _coded_type,
    "name": _name,
    "updated_since": _updated_since,
    "updated_since_required": _updated_since_required,
    "updated_filter": _updated_filter,
    "city": _address_line("city"),
    "postal_code": _address_line("postalCode"),
    "establishment": _establishment,
    # offer-search (ROR): codes of the national code lists (ror-fhir-api §5 (D))
    "activite_operationnelle": _codes(
        "activiteOperationnelle",
        f"{_NOS}/TRE_R211-ActiviteOperationnelle/FHIR/TRE-R211-ActiviteOperationnelle",
    ),
    "mode_prise_en_charge": _codes(
        "modePriseEnCharge", f"{_NOS}/TRE_R213-ModePriseEnCharge/FHIR/TRE-R213-ModePriseEnCharge"
    ),
    "modalite_accueil": _codes(
        "modaliteAccueil", f"{_NOS}/TRE_R338-ModaliteAccueil/FHIR/TRE-R338-ModaliteAccueil"
    ),
    "acte_specifique": _codes(
        "acteSpecifique", f"{_NOS}/TRE_R210-ActeSpecifique/FHIR/TRE-R210-ActeSpecifique"
    ),
    "champ_activite": _codes("champActivite", f"{_NOS}/TRE_R227-ChampActivite/FHIR/TRE-R227-ChampActivite"),
    "categorie_organisation": _codes(
        "categorieOrganisation", f"{_NOS}/TRE_R244-CategorieOrganisation/FHIR/TRE-R244-CategorieOrganisation"
    ),
    "public_pris_en_charge": _codes(
        "publicPrisEnCharge", f"{_NOS}/TRE_R239-PublicPrisEnCharge/FHIR/TRE-R239-PublicPrisEnCharge"
    ),
    # ROR v2.4 profile parameters (TR_Lecture, TR-Notif): typeActivity = champ d'activité (JDV_20 ⊂ TRE_R227),
    # supportedPatient = public pris en charge (JDV_J29 ⊂ TRE_R239), dateRef = changed since.
    "type_activity": _codes("typeActivity", f"{_NOS}/TRE_R227-ChampActivite/FHIR/TRE-R227-ChampActivite"),
    "supported_patient": _codes(
        "supportedPatient", f"{_NOS}/TRE_R239-PublicPrisEnCharge/FHIR/TRE-R239-PublicPrisEnCharge"
    ),
    "updated_filter_optional": _updated_filter_optional,
    "age_low": _age_low,
    "age_high": _age_high,
    "commune": _commune,
    "near_commune": _near_commune,
    "near_point": _near_point,
    "code_postal": _postal_code("codePostal", r"[0-9][0-9AB][0-9]{3}"),
    "departement": _postal_code("departement", r"[0-9][0-9AB]|97[1-8]"),
    "capacity": _capacity,
}
