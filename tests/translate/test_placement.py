"""The ROR CSD v2.4 profile's placement through the engine (issue 11 item 2): one provider per professional,
the OI identifier as the profile writes it (and read back), a lieu matched alone answered by its UEs.

Real parts: the shipped tables, the engine, the CSD writer and ANS's official schema; hand-written resources.
"""

from __future__ import annotations

from typing import Any

from lxml import etree

from bridge.csd.writer import document_to_bytes
from bridge.model import Directory, FhirQuery, OtherID, QueryPlan, RequestParams, SearchResult
from bridge.translate import Mappings, from_fhir_results
from bridge.translate.findings import Finding
from bridge.translate.resolvers import national_identifier

from .conftest import NOW

TAG = "https://mos.esante.gouv.fr/NOS/TRE_R30-RegionOM/FHIR/TRE-R30-RegionOM"
SD = "https://interop.esante.gouv.fr/ig/fhir/ror/StructureDefinition/"
R207 = "https://mos.esante.gouv.fr/NOS/TRE_R207-TypeOrganisationInterne/FHIR/TRE-R207-TypeOrganisationInterne"
R211 = "https://mos.esante.gouv.fr/NOS/TRE_R211-ActiviteOperationnelle/FHIR/TRE-R211-ActiviteOperationnelle"
R23 = "https://mos.esante.gouv.fr/NOS/TRE_R23-ModeExercice/FHIR/TRE-R23-ModeExercice"
OI = "https://oi.esante.gouv.fr"
ALL = QueryPlan("urn:test", (FhirQuery("HealthcareService", ()),), frozenset(Directory))


def resource(rtype: str, rid: str, **fields: Any) -> dict[str, Any]:
    return {
        "resourceType": rtype,
        "id": rid,
        "meta": {"lastUpdated": "2025-12-01T10:00:00+01:00", "tag": [{"system": TAG, "code": "28"}]},
        **fields,
    }


def offer(rid: str, number: str, provider: str) -> dict[str, Any]:
    return resource(
        "HealthcareService",
        rid,
        identifier=[{"system": "https://ror.example/offre", "value": f"28/{number}"}],
        name=f"Offre {number}",
        providedBy={"reference": f"Organization/{provider}"},
        specialty=[{"coding": [{"system": R211, "code": "087"}]}],
    )


def role(rid: str, service: str) -> dict[str, Any]:
    mode = {"url": f"{SD}ror-practitionerrole-unit-exercise-mode"}
    mode["valueCodeableConcept"] = {"coding": [{"system": R23, "code": "S"}]}  # type: ignore[assignment]
    return resource(
        "PractitionerRole",
        rid,
        practitioner={"reference": "Practitioner/p-1"},
        organization={"reference": "Organization/uf"},
        healthcareService=[{"reference": f"HealthcareService/{service}"}],
        extension=[mode],
    )


def establishment() -> list[dict[str, Any]]:
    ej = resource("Organization", "ej", identifier=[{"system": "urn:oid:1.2.250.1.71.4.2.2", "value": "1"}])
    eg = resource(
        "Organization",
        "eg",
        identifier=[{"system": "urn:oid:1.2.250.1.71.4.2.2", "value": "2"}],
        name="Site",
        partOf={"reference": "Organization/ej"},
    )
    ej["name"] = "Groupe"
    uf = resource(
        "Organization",
        "uf",
        identifier=[{"system": OI, "value": "OI-UF"}],
        type=[{"coding": [{"system": R207, "code": "3"}]}],
        name="UF",
        partOf={"reference": "Organization/eg"},
    )
    return [ej, eg, uf]


def test_the_situations_of_one_professional_make_one_provider(
    mappings: Mappings, official_csd_schema: etree.XMLSchema
) -> None:
    practitioner = resource(
        "Practitioner",
        "p-1",
        identifier=[{"system": "urn:oid:1.2.250.1.71.4.2.1", "value": "10000000001"}],
        name=[{"family": "MARTIN", "given": ["Anne"]}],
    )
    received = [
        *establishment(),
        offer("hs-1", "1", "uf"),
        offer("hs-2", "2", "eg"),
        role("pr-1", "hs-1"),
        role("pr-2", "hs-2"),
        practitioner,
    ]
    result = SearchResult(
        FhirQuery("HealthcareService", ()), matches=received[3:5], includes=received[:3] + received[5:]
    )
    document = from_fhir_results(mappings, ALL, [result], now=NOW)
    (provider,) = document.providers
    assert provider.entity_id == "urn:ror:rpps:10000000001"
    # each situation in its own providerExtension (the profile's holds exactly one operationalStatus)
    assert [e.content.name for e in provider.extensions if e.content] == ["operationalStatus"] * 2
    assert [f.entity_id for f in provider.facilities] == ["urn:ror:offre:28%2F1", "urn:ror:offre:28%2F2"]
    assert [o.entity_id for o in provider.organizations] == ["urn:ror:idnatstruct:2"]  # the UF's EG
    xml = etree.fromstring(document_to_bytes(document))
    extensions = xml.findall(".//{*}provider/{*}extension")
    assert [len(e.findall("{*}operationalStatus")) for e in extensions] == [1, 1]
    assert official_csd_schema.validate(xml), official_csd_schema.error_log
    # the UE under the UF names it as parent facility; the UE provided by its EG names none
    units = {f.entity_id: f for f in document.facilities}
    parents = {
        eid: [
            dict(e.content.attributes)["entityID"] for e in f.extensions if e.content.name == "parentFacility"
        ]
        for eid, f in units.items()
        if f.extensions and all(e.content is not None for e in f.extensions)
    }
    assert parents["urn:ror:offre:28%2F1"] == ["urn:ror:oi:OI-UF"]
    assert parents["urn:ror:offre:28%2F2"] == []
    assert parents["urn:ror:oi:OI-UF"] == []  # right under its EG


def test_an_internal_organisation_identifier_is_written_and_read_as_the_profile_writes_it(
    mappings: Mappings,
) -> None:
    found = from_fhir_results(
        mappings, ALL, [SearchResult(FhirQuery("Organization", ()), matches=establishment())], now=NOW
    )
    (uf,) = found.facilities
    assert uf.other_ids == (OtherID("28/OI-UF", OI),)
    # a client sends it back as it read it: the région source prefix is dropped for the OI authority only
    params = RequestParams(other_ids=(OtherID("28/OI-UF", OI),))
    assert national_identifier(params, mappings.identities, mappings.systems).value == "OI-UF"
    offer_id = RequestParams(other_ids=(OtherID("28/123", "https://ror.example/offre"),))
    assert national_identifier(offer_id, mappings.identities, mappings.systems).value == "28/123"
    # without région source tag the identifier is written as received, and reported
    untagged = establishment()[2]
    untagged["meta"] = {"lastUpdated": "2025-12-01T10:00:00+01:00"}
    found = from_fhir_results(
        mappings, ALL, [SearchResult(FhirQuery("Organization", ()), matches=[untagged])], now=NOW
    )
    assert found.facilities[0].other_ids == (OtherID("OI-UF", OI),)
    assert mappings.findings.count(Finding.INCOMPLETE_TYPED_ELEMENT, "identifier without région source") == 1


def test_a_lieu_matched_alone_is_answered_by_its_units(mappings: Mappings) -> None:
    # an IHE facility-search: lieux match, their offers come by _revinclude; the UEs are the facilities
    lieu = resource("Location", "loc-1", name="Bâtiment A")
    given = offer("hs-1", "1", "eg")
    given["location"] = [{"reference": "Location/loc-1"}]
    elsewhere = offer("hs-9", "9", "eg")
    elsewhere["location"] = [{"reference": "Location/loc-9"}]
    query = FhirQuery("Location", ())
    plan = QueryPlan("urn:test", (query,), frozenset({Directory.FACILITY}), result=Directory.FACILITY)
    result = SearchResult(query, matches=[lieu], includes=[given, elsewhere, *establishment()[:2]])
    document = from_fhir_results(mappings, plan, [result], now=NOW)
    assert [f.entity_id for f in document.facilities] == ["urn:ror:offre:28%2F1"]
