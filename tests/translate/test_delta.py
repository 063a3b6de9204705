"""Changes since a date: the ITI-74 plan (functions.yaml `modifications` with the includes derived from the
entity tables), the references a spool keeps, the organisation chain, the loader's checks of delta entries."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml

from bridge.errors import InvalidParameterError, MappingTableError
from bridge.model import (
    CsdRequest,
    Directory,
    FhirQuery,
    RequestForm,
    RequestParams,
    SearchResult,
    Transaction,
)
from bridge.shipped import shipped_dir
from bridge.translate import Mappings, from_fhir_results, load_mappings, to_fhir_plan
from bridge.translate.delta import ORGANIZATION_CHAINS, chain_parent, feed_directories, in_region, links
from bridge.translate.feeds import feeds
from bridge.translate.tables import MODIFICATIONS_URN

NOW = datetime(2026, 1, 10, 12, tzinfo=UTC)
TAG = "https://mos.esante.gouv.fr/NOS/TRE_R30-RegionOM/FHIR/TRE-R30-RegionOM"


def iti74(last_modified: datetime | None, region: str | None = None) -> CsdRequest:
    return CsdRequest(
        Transaction.MODIFICATIONS, RequestForm.MODIFICATIONS, last_modified=last_modified, region=region
    )


def resource(rtype: str, rid: str, region: str = "11", **fields: Any) -> dict[str, Any]:
    return {
        "resourceType": rtype,
        "id": rid,
        "meta": {"lastUpdated": "2025-12-01T10:00:00+01:00", "tag": [{"system": TAG, "code": region}]},
        **fields,
    }


def test_iti74_plan_is_the_modifications_entry(mappings: Mappings) -> None:
    # A naive lastModified is Paris time (request_timezone): 2025-06-01 00:00 is 2025-05-31 22:00 UTC.
    plan = to_fhir_plan(mappings, iti74(datetime(2025, 6, 1)), now=NOW)
    assert plan.function == MODIFICATIONS_URN
    assert plan.directories == frozenset(Directory)
    assert [q.resource_type for q in plan.queries] == [
        "Organization",
        "HealthcareService",
        "Location",
        "PractitionerRole",
        "Practitioner",
    ]
    since = "2025-05-31T22:00:00Z"
    assert all(q.params[0] == ("_lastUpdated", f"ge{since}") for q in plan.queries)
    # What changed, with the entities whose records read it for their content (translate/feeds.py): the
    # internal organisations above an offer, the situations in it and the other situations of their
    # professionals (one provider each); a lieu's units; a professional's situations and their siblings.
    assert [q.params[1:] for q in plan.queries] == [
        (),
        (
            ("_include", "HealthcareService:organization"),
            ("_include:iterate", "Organization:partof"),
            ("_revinclude", "PractitionerRole:service"),
            ("_include:iterate", "PractitionerRole:practitioner"),
            ("_revinclude:iterate", "PractitionerRole:practitioner"),
        ),
        (("_revinclude", "HealthcareService:location"),),
        (
            ("_include", "PractitionerRole:practitioner"),
            ("_revinclude:iterate", "PractitionerRole:practitioner"),
        ),
        (("_revinclude", "PractitionerRole:practitioner"),),
    ]
    spec = mappings.modifications
    assert spec is not None
    assert spec.delta == "entities"


def test_iti74_keeps_fractional_seconds_and_the_region(mappings: Mappings) -> None:
    when = datetime(2025, 6, 1, 8, 30, 10, 500000, tzinfo=UTC)
    plan = to_fhir_plan(mappings, iti74(when, region="idf"), now=NOW)
    assert plan.queries[0].params[0] == ("_lastUpdated", "ge2025-06-01T08:30:10.5Z")
    assert all(q.params[-1] == ("_tag", f"{TAG}|11") for q in plan.queries)


@pytest.mark.parametrize(
    "request_",
    [
        iti74(datetime(2026, 1, 11, tzinfo=UTC)),
        CsdRequest(
            Transaction.CARE_SERVICES,
            RequestForm.ROOT_URN_2016,
            function_urn="urn:ror:csd:stored-function:establishments-updated-since",
            params=RequestParams(extra=(("dateMiseAJour", "2026-02-01"),)),
        ),
    ],
    ids=["iti74", "establishments"],
)
def test_a_date_in_the_future_is_refused(mappings: Mappings, request_: CsdRequest) -> None:
    with pytest.raises(InvalidParameterError, match="in the future"):
        to_fhir_plan(mappings, request_, now=NOW)


def test_a_few_minutes_ahead_is_a_clock_difference_not_an_error(mappings: Mappings) -> None:
    to_fhir_plan(mappings, iti74(datetime(2026, 1, 10, 12, 3, tzinfo=UTC)), now=NOW)


def test_iti74_without_last_modified_is_refused(mappings: Mappings) -> None:
    with pytest.raises(InvalidParameterError, match="lastModified"):
        to_fhir_plan(mappings, iti74(None), now=NOW)


def test_links_are_the_top_level_references_by_element() -> None:
    role = resource(
        "PractitionerRole",
        "r1",
        practitioner={"reference": "Practitioner/p1"},
        healthcareService=[{"reference": "https://ror.example/fhir/HealthcareService/hs1/_history/2"}],
        location=[{"display": "no reference"}],
    )
    assert links(role) == [
        ("practitioner", "Practitioner/p1"),
        ("healthcareService", "HealthcareService/hs1"),
    ]
    assert links(resource("Organization", "ej")) == []


def test_a_regional_request_keeps_its_own_region() -> None:
    regional = (f"{TAG}|04", f"{TAG}|06")
    assert in_region(resource("Location", "l1", region="06"), regional)
    assert not in_region(resource("Organization", "o2", region="11"), regional)
    assert in_region(resource("Organization", "o2", region="11"), None)


def test_chain_parent() -> None:
    assert chain_parent(resource("Organization", "eg", partOf={"reference": "Organization/ej"})) == (
        "Organization/ej"
    )
    absolute = {"reference": "https://ror.example/fhir/Organization/eg/_history/3"}
    assert chain_parent(resource("Organization", "ue", partOf=absolute)) == "Organization/eg"
    offer = resource("HealthcareService", "hs", providedBy={"reference": "Organization/ue"})
    assert chain_parent(offer) == "Organization/ue"
    assert chain_parent(resource("Organization", "ej")) is None
    managed = {"reference": "Organization/eg"}
    assert chain_parent(resource("Location", "l", managingOrganization=managed)) is None


def test_the_engine_writes_the_selected_entities_only(mappings: Mappings) -> None:
    plan = to_fhir_plan(mappings, iti74(datetime(2025, 6, 1, tzinfo=UTC)), now=NOW)
    parent = resource(
        "Organization",
        "eg",
        identifier=[{"system": "urn:oid:1.2.250.1.71.4.2.2", "value": "1780000001"}],
        name="Site",
    )
    child = resource(
        "Organization",
        "ue",
        identifier=[{"system": "https://oi.esante.gouv.fr", "value": "OI1"}],
        name="UE",
        partOf={"reference": "Organization/eg"},
    )
    root = resource(
        "Organization",
        "ej",
        identifier=[{"system": "urn:oid:1.2.250.1.71.4.2.2", "value": "1780000000"}],
        name="Groupe",
    )
    parent["partOf"] = {"reference": "Organization/ej"}
    received = SearchResult(FhirQuery("Organization", ()), matches=[child, parent], includes=[root])
    document = from_fhir_results(mappings, plan, [received], now=NOW, selected=["Organization/eg"])
    assert [o.entity_id for o in document.organizations] == ["urn:ror:idnatstruct:1780000001"]
    assert document.organizations[0].parent_id == "urn:ror:idnatstruct:1780000000"  # resolved, not written
    assert document.facilities == []  # the OI received is not selected
    # an internal organisation selected is a facility (the profile's placement)
    document = from_fhir_results(mappings, plan, [received], now=NOW, selected=["Organization/ue"])
    assert [f.entity_id for f in document.facilities] == ["urn:ror:oi:OI1"]
    assert document.organizations == []


def _tables(tmp_path: Path, edit: Any) -> Path:
    source = shipped_dir("mappings")
    target = tmp_path / "mappings"
    for path in source.rglob("*"):
        if path.is_file():
            (target / path.relative_to(source)).parent.mkdir(parents=True, exist_ok=True)
            (target / path.relative_to(source)).write_bytes(path.read_bytes())
    data = yaml.safe_load((target / "functions.yaml").read_text("utf-8"))
    edit(data)
    (target / "functions.yaml").write_text(yaml.safe_dump(data, allow_unicode=True), "utf-8")
    return target


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda d: d.pop("modifications"), "modifications: required"),
        (
            lambda d: d["modifications"].update(delta="organization-chains", post="establishments"),
            "ITI-74 answers the changed",
        ),
        (lambda d: d["modifications"].update(delta="everything"), "unknown delta selection"),
        (lambda d: d["modifications"].update(directories=["serviceDirectory"]), "every directory"),
        (lambda d: d["modifications"].update(urn="urn:x"), "unknown key"),
        # The hand-written propagation list is gone: the change sets are derived from the entity tables.
        (
            lambda d: d["modifications"]["queries"][1].update(propagates=["Location"]),
            "unknown key",
        ),
        # A delta function must search the changes of every type its records read for their content.
        (
            lambda d: d["modifications"].update(queries=d["modifications"]["queries"][:4]),
            "the records read Practitioner for their content",
        ),
        (
            lambda d: d["functions"]["establishments-updated-since"].update(result="organizationDirectory"),
            "no start/max paging",
        ),
        (
            lambda d: d["functions"]["establishments-updated-since"].pop("post"),
            "delta organization-chains → post establishments",
        ),
        (lambda d: d["modifications"].update(post="establishments"), "a post step belongs to its delta"),
        (lambda d: d["functions"]["service-search"].update(post="establishments"), "belongs to its delta"),
        (lambda d: d["modifications"].update(post="everything"), "unknown step 'everything'"),
    ],
)
def test_the_loader_refuses_broken_delta_entries(tmp_path: Path, edit: Any, message: str) -> None:
    with pytest.raises(MappingTableError, match=message):
        load_mappings(_tables(tmp_path, edit))


def test_tr_notif_chains_leave_out_the_devices_whose_lieu_the_units_read(mappings: Mappings) -> None:
    """organization-chains decides what changed from every directory but deviceDirectory (feed_directories):
    sound only while every resource a device is made of (its lieu, the device table's one resource, no feed
    of its own) is read for its content by the unit table, so that a changed lieu reports its UEs' chains."""
    assert feed_directories(ORGANIZATION_CHAINS, {Directory.ORGANIZATION}) == frozenset(Directory) - {
        Directory.DEVICE
    }
    assert feed_directories("entities", {Directory.DEVICE}) == {Directory.DEVICE}
    devices = [t for t in mappings.entities.values() if t.kind.directory is Directory.DEVICE]
    assert devices
    units = [t for t in mappings.entities.values() if t.kind.directory is Directory.FACILITY]
    for device in devices:
        assert not feeds(device)  # made of its own resource only
        read = {
            feed.steps[-1].end
            for unit in units
            for feed in feeds(unit)
            if feed.content and len(feed.steps) == 1 and feed.steps[0].start == "HealthcareService"
        }
        assert device.resource in read, f"no unit reads {device.resource} for its content"
