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
from bridge.model import Directory, FhirQuery, QueryPlan, SearchResult
from bridge.simulator.dataset import generate_dataset
from bridge.translate import Mappings, from_fhir_results
from bridge.translate.findings import Finding
from bridge.translate.transforms import reference_key

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
    roles_with_practitioner = sum(
        1
        for r in resources
        if r["resourceType"] == "PractitionerRole"
        and reference_key(r["practitioner"]["reference"]) in received
    )
    assert len(document.organizations) == counts["Organization"]
    assert len(document.services) == counts["HealthcareService"]
    assert len(document.facilities) == counts["Location"]
    assert len(document.providers) == roles_with_practitioner
    entity_ids = [
        e.entity_id
        for e in (*document.organizations, *document.services, *document.facilities, *document.providers)
    ]
    assert len(entity_ids) == len(set(entity_ids))
    # only the roles (identifier 0..1, absent in the simulated data) fall back on their FHIR id
    fallbacks = {d for (f, d) in mappings.findings.counts() if f is Finding.FHIR_ID_ENTITY}
    assert fallbacks <= {"PractitionerRole"}
    # every offer given at a lieu appears once under that facility
    at_facilities = [s.entity_id for f in document.facilities for o in f.organizations for s in o.services]
    offers_with_location = [
        s for s in resources if s["resourceType"] == "HealthcareService" and s.get("location")
    ]
    assert len(at_facilities) == sum(len(s["location"]) for s in offers_with_location)

    xml = etree.fromstring(document_to_bytes(document))
    for schema in (our_csd_schema, official_csd_schema):
        assert schema.validate(xml), schema.error_log
