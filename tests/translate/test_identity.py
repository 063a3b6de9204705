"""entityIDs: priority order, stability, percent-encoding, and reversibility (property test)."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from bridge.shipped import shipped_dir
from bridge.translate import Mappings, load_mappings
from bridge.translate.identity import FhirId, NationalIdentifier, encode

OI = "https://oi.esante.gouv.fr"
IDNAT = "urn:oid:1.2.250.1.71.4.2.2"

# Loaded once: hypothesis does not allow function-scoped fixtures in @given tests.
IDENTITIES = load_mappings(shipped_dir("mappings")).identities
texts = st.text(alphabet=st.characters(blacklist_categories=("Cs",)), min_size=1, max_size=40)


def test_priority_oi_then_idnatstruct_then_finess_then_fhir_id(mappings: Mappings) -> None:
    ids = mappings.identities
    both = {
        "resourceType": "Organization",
        "id": "x",
        "identifier": [{"system": IDNAT, "value": "3921"}, {"system": OI, "value": "OI-1"}],
    }
    assert ids.derive(both) == ("urn:ror:oi:OI-1", True)
    eg = {
        "resourceType": "Organization",
        "id": "x",
        "identifier": [
            {"system": "http://finess.esante.gouv.fr", "value": "920000123"},
            {"system": IDNAT, "value": "3921"},
        ],
    }
    assert ids.derive(eg) == ("urn:ror:idnatstruct:3921", True)
    finess = {
        "resourceType": "Organization",
        "id": "x",
        "identifier": [
            {"system": "https://sirene.fr", "value": "1"},
            {"system": "http://finess.esante.gouv.fr", "value": "92"},
        ],
    }
    assert ids.derive(finess) == ("urn:ror:finess:92", True)
    bare = {
        "resourceType": "Organization",
        "id": "abc-1",
        "identifier": [{"system": "https://sirene.fr", "value": "1"}],
    }
    assert ids.derive(bare) == ("urn:ror:fhir:Organization/abc-1", False)


def test_offer_takes_its_identifier_whatever_the_system(mappings: Mappings) -> None:
    offer = {"resourceType": "HealthcareService", "id": "9", "identifier": [{"value": "ZZZ"}]}
    assert mappings.identities.derive(offer) == ("urn:ror:offre:ZZZ", True)


def test_unsafe_characters_are_percent_encoded(mappings: Mappings) -> None:
    org = {"resourceType": "Organization", "id": "x", "identifier": [{"system": OI, "value": "OI UE/2:é%"}]}
    assert mappings.identities.derive(org)[0] == "urn:ror:oi:OI%20UE%2F2%3A%C3%A9%25"
    assert encode("A-z_0.9~") == "A-z_0.9~"


def test_derivation_is_stable_across_loads_and_ignores_the_fhir_id(mappings: Mappings) -> None:
    org = {"resourceType": "Organization", "id": "x", "identifier": [{"system": OI, "value": "OI-42"}]}
    moved = {**org, "id": "another-server-id"}
    assert mappings.identities.derive(org) == IDENTITIES.derive(moved) == ("urn:ror:oi:OI-42", True)


@given(value=texts, scheme=st.sampled_from(["oi", "idnatstruct", "finess", "offre"]))
def test_derive_then_reverse_gives_back_the_identifier(value: str, scheme: str) -> None:
    identities = IDENTITIES
    system = {"oi": OI, "idnatstruct": IDNAT, "finess": "https://finess.esante.gouv.fr", "offre": "urn:x"}[
        scheme
    ]
    resource_type = "HealthcareService" if scheme == "offre" else "Organization"
    resource = {"resourceType": resource_type, "id": "1", "identifier": [{"system": system, "value": value}]}
    entity_id, national = identities.derive(resource)
    assert national
    assert entity_id.isascii()
    assert " " not in entity_id
    back = identities.reverse(entity_id)
    assert isinstance(back, NationalIdentifier)
    assert back.scheme.name == scheme
    assert back.value == value


@given(logical_id=st.from_regex(r"[A-Za-z0-9\-.]{1,64}", fullmatch=True))
def test_fhir_id_fallback_reverses_too(logical_id: str) -> None:
    entity_id = IDENTITIES.fallback("Organization", logical_id)
    assert IDENTITIES.reverse(entity_id) == FhirId("Organization", logical_id)


def test_foreign_entity_ids_do_not_reverse(mappings: Mappings) -> None:
    assert mappings.identities.reverse("urn:uuid:4e8bbeb9-f5f5-11e2-b778-0800200c9a66") is None
    assert mappings.identities.reverse("urn:ror:oi:") is None
    assert mappings.identities.reverse("urn:ror:fhir:Organization") is None
