"""`ror-bridge translate BUNDLE.json` as a user runs it: a real process, files in, a CSD document out."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest
from lxml import etree

from bridge import ns
from bridge.translate.transforms import is_unit_organization, organization_kind
from tests.profile.harness import OfficialProfile, assert_follows_profile
from tests.test_cli import cli

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "translate"
DIRECTORY_OF = {
    "Organization": "organizationDirectory",
    "HealthcareService": "serviceDirectory",
    "Location": "facilityDirectory",
    "PractitionerRole": "providerDirectory",
}


def counts(document: etree._Element) -> dict[str, int]:
    return {
        directory: len(document.findall(f"{{{ns.CSD}}}{directory}/*")) for directory in DIRECTORY_OF.values()
    }


def resource_counts(bundle: Path) -> Counter[str]:
    """Resources by type; organisations by their place in the ROR v2.4 profile (EJ / EG, OI, v3 UE)."""
    data = json.loads(bundle.read_text("utf-8"))
    found: Counter[str] = Counter()
    for entry in data["entry"]:
        resource = entry["resource"]
        found[resource["resourceType"]] += 1
        if resource["resourceType"] == "Organization":
            kind = "UE" if is_unit_organization(resource) else organization_kind(resource)
            found[f"Organization {kind}"] += 1
    return found


@pytest.mark.parametrize("name", ["searchset-offers.json", "collection-offers.json"])
def test_every_resource_of_a_bundle_becomes_one_record(
    name: str, our_csd_schema: etree.XMLSchema, official_csd_schema: etree.XMLSchema
) -> None:
    done = cli("translate", str(FIXTURES / name))
    assert done.returncode == 0, done.stderr
    document = etree.fromstring(done.stdout.encode("utf-8"))
    assert etree.QName(document) == etree.QName(ns.CSD, "CSD")
    assert our_csd_schema.validate(document), str(our_csd_schema.error_log)
    assert official_csd_schema.validate(document), str(official_csd_schema.error_log)
    by_type = resource_counts(FIXTURES / name)
    found = counts(document)
    # The profile's placement: EJ / EG are organisations; pôles, services, UFs and every offer (its UE) are
    # facilities, the lieu inside its UE; each offer's activity is a service; one provider per professional.
    assert found["organizationDirectory"] == by_type["Organization EJ"] + by_type["Organization EG"]
    assert found["serviceDirectory"] == by_type["HealthcareService"]
    assert found["facilityDirectory"] == by_type["Organization OI"] + by_type["HealthcareService"]
    assert 0 < found["providerDirectory"] <= by_type["Practitioner"]
    assert f"{sum(found.values())} CSD record(s)" in done.stderr
    for directory in DIRECTORY_OF.values():
        ids = [e.get("entityID") for e in document.iterfind(f"{{{ns.CSD}}}{directory}/*")]
        assert len(ids) == len(set(ids)), directory


def test_searchset_and_collection_of_the_same_resources_give_the_same_document() -> None:
    searchset = cli("translate", str(FIXTURES / "searchset-offers.json"))
    collection = cli("translate", str(FIXTURES / "collection-offers.json"))
    assert searchset.returncode == collection.returncode == 0
    assert searchset.stdout == collection.stdout


def test_output_file_and_next_link_note(tmp_path: Path) -> None:
    out = tmp_path / "page.xml"
    done = cli("translate", str(FIXTURES / "searchset-first-page.json"), "-o", str(out))
    assert done.returncode == 0, done.stderr
    assert done.stdout == ""
    assert "next link: only this page was translated" in done.stderr
    document = etree.parse(str(out)).getroot()
    assert (
        counts(document)["serviceDirectory"]
        == resource_counts(FIXTURES / "searchset-first-page.json")["HealthcareService"]
    )


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("transaction.json", "'transaction' is not one of searchset, collection"),
        ("truncated.json", "not JSON"),
    ],
)
def test_what_cannot_be_translated_is_said_with_exit_status_2(name: str, message: str) -> None:
    done = cli("translate", str(FIXTURES / name))
    assert done.returncode == 2
    assert message in done.stderr
    assert done.stdout == ""


def test_a_missing_file_is_exit_status_2(tmp_path: Path) -> None:
    done = cli("translate", str(tmp_path / "absent.json"))
    assert done.returncode == 2
    assert "absent.json" in done.stderr


def test_a_translated_bundle_follows_the_official_ror_profile(official_profile: OfficialProfile) -> None:
    done = cli("translate", str(FIXTURES / "searchset-offers.json"))
    assert done.returncode == 0, done.stderr
    assert_follows_profile(official_profile, etree.fromstring(done.stdout.encode("utf-8")))
