"""The whole simulated national dataset through every entity table: each resource becomes one entity, the
answer validates against both CSD schemas, and entityIDs come from national identifiers where the IG has one.

Real parts: the ROR simulator's generator (bridge/simulator) feeds the engine, no hand-made expectations.
"""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime

import pytest
from lxml import etree

from bridge.csd.writer import document_to_bytes
from bridge.model import Directory, ExtensionNode, FhirQuery, QueryPlan, SearchResult
from bridge.simulator import vocab
from bridge.simulator.dataset import generate_dataset
from bridge.translate import Mappings, from_fhir_results
from bridge.translate.findings import Finding
from bridge.translate.transforms import is_unit_organization, organization_kind, reference_key
from tests.profile.harness import OfficialProfile, assert_follows_profile

NOW = datetime(2024, 6, 1, tzinfo=UTC)
QUERY = FhirQuery("Organization", (), "every resource")


@pytest.mark.parametrize("seed", [1, 5])
def test_every_simulated_resource_becomes_one_valid_entity(
    mappings: Mappings, our_csd_schema: etree.XMLSchema, official_csd_schema: etree.XMLSchema, seed: int
) -> None:
    dataset = generate_dataset(30, seed)
    resources = list(dataset)
    result = SearchResult(query=QUERY, matches=resources, pages=1)
    document = from_fhir_results(
        mappings, QueryPlan("urn:test", (QUERY,), frozenset(Directory)), [result], now=NOW
    )

    counts = Counter(str(r["resourceType"]) for r in resources)
    received = {f"{r['resourceType']}/{r['id']}" for r in resources}
    practitioners = {
        reference_key(r["practitioner"]["reference"])
        for r in resources
        if r["resourceType"] == "PractitionerRole"
        and reference_key(r["practitioner"]["reference"]) in received
    }
    kinds = Counter(
        "UE" if is_unit_organization(r) else organization_kind(r)
        for r in resources
        if r["resourceType"] == "Organization"
    )
    # the profile's placement: EJ and EG are organisations; pôles, services, UFs and every offer (the UE)
    # are facilities; the offer's activity is a service; one provider per professional
    assert len(document.organizations) == kinds["EJ"] + kinds["EG"]
    assert len(document.services) == counts["HealthcareService"]
    assert len(document.facilities) == kinds["OI"] + counts["HealthcareService"]
    assert len(document.providers) == len(practitioners)
    for directory in (document.organizations, document.services, document.facilities, document.providers):
        entity_ids = [e.entity_id for e in directory]
        assert len(entity_ids) == len(set(entity_ids))
    # only the roles (identifier 0..1, absent in the simulated data) fall back on their FHIR id
    fallbacks = {d for (f, d) in mappings.findings.counts() if f is Finding.FHIR_ID_ENTITY}
    assert fallbacks <= {"PractitionerRole"}
    # every UE lists its offer's activity once, under its EG
    units = [f for f in document.facilities if any(c.code == "4" for c in f.coded_types)]
    assert len(units) == counts["HealthcareService"]
    assert all([s.entity_id for o in f.organizations for s in o.services] == [f.entity_id] for f in units)

    xml = etree.fromstring(document_to_bytes(document))
    for schema in (our_csd_schema, official_csd_schema):
        assert schema.validate(xml), schema.error_log


def _node(extension: ExtensionNode | None, *names: str) -> ExtensionNode:
    node = extension
    for name in names:
        assert node is not None
        matches = [c for c in node.children if c.name == name]
        assert matches, (name, node)
        node = matches[0]
    assert node is not None
    return node


def test_a_simulated_offer_is_a_unit_with_its_lieu_as_location(
    mappings: Mappings, our_csd_schema: etree.XMLSchema, official_csd_schema: etree.XMLSchema
) -> None:
    """The profile's placement: an offer is the UE facility; its lieu (RORLocation) is the UE's typed
    `location` — name, status, address, coordinates, commune (TRE_R13) — not a facility of its own."""
    dataset = generate_dataset(60, 23)
    resources = list(dataset)
    offer = next(r for r in resources if r["resourceType"] == "HealthcareService" and r.get("location"))
    lieu = dataset.resources["Location"][reference_key(offer["location"][0]["reference"]).partition("/")[2]]
    query = FhirQuery("HealthcareService", (), "offers")
    plan = QueryPlan("urn:test", (query,), frozenset(Directory))
    result = SearchResult(query=query, matches=[offer], includes=[lieu], pages=1)
    document = from_fhir_results(mappings, plan, [result], now=NOW)
    (unit,) = document.facilities
    assert [c.code for c in unit.coded_types] == ["4"]
    (location,) = [
        e.content for e in unit.extensions if e.content is not None and e.content.name == "location"
    ]
    assert _node(location, "name").text == lieu["name"]
    cog = next(e for e in lieu["extension"] if e["url"] == vocab.EXT_COMMUNE_COG)
    city = _node(location, "cityNumber")
    assert city.attributes == (
        ("code", cog["valueCodeableConcept"]["coding"][0]["code"]),
        ("codingScheme", "1.2.250.1.213.2.23"),
    )
    assert _node(location, "geoCoordinates", "latitude").text == str(lieu["position"]["latitude"])
    assert _node(location, "address").children
    assert [c.name for c in location.children][-1] == "record"
    xml = etree.fromstring(document_to_bytes(document))
    for schema in (our_csd_schema, official_csd_schema):
        assert schema.validate(xml), schema.error_log


def test_a_simulated_dataset_follows_the_official_ror_profile(
    mappings: Mappings, official_profile: OfficialProfile
) -> None:
    """Every simulated resource mapped into one document, against ANS's v2.4 schema and Schematron rules."""
    resources = list(generate_dataset(30, 5))
    result = SearchResult(query=QUERY, matches=resources, pages=1)
    document = from_fhir_results(
        mappings, QueryPlan("urn:test", (QUERY,), frozenset(Directory)), [result], now=NOW
    )
    assert_follows_profile(official_profile, etree.fromstring(document_to_bytes(document)))
