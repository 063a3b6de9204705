"""ITI-74 getModificationsRequest and establishments-updated-since end to end, beyond the result cap.

Real HTTP on 127.0.0.1: a ROR simulator with a lowered result cap (the national API truncates at 10 000;
here at CAP so that the default run crosses it quickly) and the bridge pointed at it, driven by zeep built
from the served WSDL and by hand-written requests. Every answer must hold exactly the entities the simulator's
dataset says changed (tests/e2e/deltas.py, computed from its arrays), each once, in four directories,
validated against our schema and the official CSD 2014 schema.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pytest
import zeep
from lxml import etree
from zeep.plugins import HistoryPlugin

from bridge import ns
from bridge.app import create_app
from bridge.config import load_settings
from bridge.simulator.dataset import Dataset, generate_dataset
from bridge.simulator.national_api import SimulatorConfig, create_simulator_app, mount_simulator
from tests.e2e import deltas
from tests.expected import answer_csd
from tests.profile.harness import OfficialProfile, assert_follows_profile
from tests.server import running_server

SCALE = 2000
SEED = 11
CAP = 100  # the simulator truncates searches here; the bridge is told the same (upstream_max_results)
PAGE = 50
NATIONAL_SINCE = datetime(2025, 11, 15, tzinfo=UTC)
# Older, so that one legacy region's own deltas cross the cap too; ocean-indien covers two TRE_R30 codes.
REGION = "ocean-indien"
REGION_CODES = ("04", "06")
REGIONAL_SINCE = datetime(2024, 6, 1, tzinfo=UTC)
C = {"csd": ns.CSD, "s12": ns.SOAP12, "s11": ns.SOAP11, "wsa": ns.WSA, "f": ns.FAULT}
DIRECTORIES = (
    "organizationDirectory",
    "serviceDirectory",
    "facilityDirectory",
    "providerDirectory",
    "deviceDirectory",
)
ESTABLISHMENTS = "urn:ror:csd:stored-function:establishments-updated-since"


@pytest.fixture(scope="module")
def dataset() -> Dataset:
    return generate_dataset(SCALE, SEED)


def _simulator(dataset: Dataset, **config: Any) -> Any:
    settings = SimulatorConfig(scale=SCALE, seed=SEED, max_results=CAP, **config)
    return mount_simulator(create_simulator_app(settings, dataset))


def _bridge(simulator_url: str, **settings: Any) -> Any:
    options: dict[str, Any] = {
        "upstream_url": f"{simulator_url}/ws-diffusion-fhir",
        "upstream_max_results": CAP,
        "upstream_page_size": PAGE,
        **settings,
    }
    return create_app(load_settings(**options))


@pytest.fixture(scope="module")
def simulator_url(dataset: Dataset) -> Iterator[str]:
    with running_server(_simulator(dataset)) as url:
        yield url


@pytest.fixture(scope="module")
def bridge_url(simulator_url: str) -> Iterator[str]:
    with running_server(_bridge(simulator_url)) as url:
        yield url


def soap12(body: str, message_id: str = "urn:uuid:9d5e8c1a-54b0-4c3e-8f36-0c7b0e3d6a11") -> bytes:
    return f"""<soap:Envelope xmlns:soap="{ns.SOAP12}" xmlns:wsa="{ns.WSA}" xmlns:csd="{ns.CSD}">
  <soap:Header>
    <wsa:Action soap:mustUnderstand="1">{ns.ACTION_ITI74_REQUEST}</wsa:Action>
    <wsa:MessageID>{message_id}</wsa:MessageID>
  </soap:Header>
  <soap:Body>{body}</soap:Body>
</soap:Envelope>""".encode()


def modifications(last_modified: str) -> str:
    return (
        f"<csd:getModificationsRequest><csd:lastModified>{last_modified}</csd:lastModified>"
        "</csd:getModificationsRequest>"
    )


def establishments(date_text: str, encapsulated: str | None = None) -> str:
    attribute = f' encapsulated="{encapsulated}"' if encapsulated is not None else ""
    return f"""<csd:careServicesRequest xmlns:csd="{ns.CSD}" xmlns:ror="urn:ror:csd:params"
  urn="{ESTABLISHMENTS}"{attribute}>
  <csd:requestParams><ror:dateMiseAJour>{date_text}</ror:dateMiseAJour></csd:requestParams>
</csd:careServicesRequest>"""


def post(url: str, body: bytes, content_type: str = "application/soap+xml; charset=utf-8") -> httpx.Response:
    return httpx.post(url, content=body, headers={"Content-Type": content_type}, timeout=300)


def check_csd(
    csd: etree._Element, schemas: tuple[etree.XMLSchema, ...], expected: dict[str, set[str]]
) -> dict[str, list[str]]:
    """The four directories, in order, each entity once, exactly the expected sets; valid for every schema."""
    for schema in schemas:
        schema.assertValid(etree.ElementTree(csd))
    assert [etree.QName(child).localname for child in csd] == list(DIRECTORIES)
    found = {}
    for directory in csd:
        name = etree.QName(directory).localname
        ids = [str(e.get("entityID")) for e in directory]
        assert len(ids) == len(set(ids)), f"{name}: an entity written twice"
        assert set(ids) == expected[name], name
        found[name] = ids
    return found


def fault(response: httpx.Response) -> tuple[str, str, str]:
    root = etree.fromstring(response.content)
    code = root.xpath("string(//s12:Code/s12:Value)", namespaces=C).rpartition(":")[2]
    subcode = root.xpath("string(//s12:Subcode/s12:Value)", namespaces=C).rpartition(":")[2]
    reason = root.xpath("string(//s12:Reason/s12:Text)", namespaces=C)
    return code, subcode, reason


def paris_today() -> Any:
    return datetime.now(ZoneInfo("Europe/Paris")).date()


def test_national_changes_beyond_the_cap_through_zeep(
    bridge_url: str,
    dataset: Dataset,
    our_csd_schema: etree.XMLSchema,
    official_csd_schema: etree.XMLSchema,
) -> None:
    expected = deltas.expected_modifications(dataset, NATIONAL_SINCE)
    # The Organization search alone matches more than the cap: the answer is complete only if split.
    assert deltas.searched(dataset, NATIONAL_SINCE, "Organization") > CAP
    assert all(v for d, v in expected.items() if d != "deviceDirectory"), (
        "every directory must have changes, or the case proves little"
    )
    history = HistoryPlugin()
    client = zeep.Client(f"{bridge_url}/csd?wsdl", plugins=[history])
    result = client.service.QueryForUpdatedServices(lastModified=NATIONAL_SINCE)
    sent_id = history.last_sent["envelope"].findtext(f".//{{{ns.WSA}}}MessageID")
    received = history.last_received["envelope"]
    assert received.findtext(f".//{{{ns.WSA}}}RelatesTo") == sent_id
    assert received.findtext(f".//{{{ns.WSA}}}Action") == ns.ACTION_ITI74_RESPONSE
    answer = received.xpath("s12:Body/csd:getModificationsResponse", namespaces=C)
    assert len(answer) == 1
    for schema in (our_csd_schema, official_csd_schema):
        schema.assertValid(etree.ElementTree(answer[0]))
    (csd,) = answer[0]
    check_csd(csd, (our_csd_schema, official_csd_schema), expected)
    # zeep turned the answer into objects through the served schema too.
    assert {o.entityID for o in result.organizationDirectory.organization} == expected[
        "organizationDirectory"
    ]
    # Closures are Inactive records, the others Active.
    changed = deltas.changes(dataset, NATIONAL_SINCE)
    closed = deltas.closed_offers(dataset, changed.services, paris_today())
    assert closed, "the case must hold closed offers"
    inactive = csd.xpath(
        "csd:serviceDirectory/csd:service[csd:record/@status='Inactive']/@entityID", namespaces=C
    )
    assert set(inactive) == closed
    assert set(csd.xpath("//csd:record/@status", namespaces=C)) == {"Active", "Inactive"}


def test_regional_changes_beyond_the_cap(
    bridge_url: str,
    dataset: Dataset,
    our_csd_schema: etree.XMLSchema,
    official_csd_schema: etree.XMLSchema,
) -> None:
    """A legacy regional endpoint covering two région source codes; SOAP 1.1, naive lastModified (Paris)."""
    expected = deltas.expected_modifications(dataset, REGIONAL_SINCE, REGION_CODES)
    assert deltas.searched(dataset, REGIONAL_SINCE, "Organization", REGION_CODES) > CAP
    assert len(expected["serviceDirectory"]) > CAP
    naive = REGIONAL_SINCE.astimezone(ZoneInfo("Europe/Paris")).replace(tzinfo=None).isoformat()
    body = f"""<s:Envelope xmlns:s="{ns.SOAP11}" xmlns:csd="{ns.CSD}"><s:Body>{modifications(naive)}</s:Body>
</s:Envelope>""".encode()
    response = httpx.post(
        f"{bridge_url}/csd/{REGION}",
        content=body,
        headers={"Content-Type": "text/xml; charset=utf-8", "SOAPAction": f'"{ns.ACTION_ITI74_REQUEST}"'},
        timeout=300,
    )
    assert response.status_code == 200, response.text
    (csd,) = etree.fromstring(response.content).xpath(
        "s11:Body/csd:getModificationsResponse/csd:CSD", namespaces=C
    )
    check_csd(csd, (our_csd_schema, official_csd_schema), expected)
    national = deltas.expected_modifications(dataset, REGIONAL_SINCE)
    assert expected["serviceDirectory"] < national["serviceDirectory"]


def test_nothing_changed_gives_four_empty_directories_bare(
    bridge_url: str, our_csd_schema: etree.XMLSchema, official_csd_schema: etree.XMLSchema
) -> None:
    """After the dataset's last change (2025): no entity, four directories; a bare request answered bare."""
    body = (
        f'<csd:getModificationsRequest xmlns:csd="{ns.CSD}"><csd:lastModified>2026-06-01</csd:lastModified>'
    )
    response = post(
        f"{bridge_url}/csd", (body + "</csd:getModificationsRequest>").encode(), "application/xml"
    )
    assert response.status_code == 200, response.text
    root = etree.fromstring(response.content)
    assert root.tag == f"{{{ns.CSD}}}getModificationsResponse"
    (csd,) = root
    check_csd(csd, (our_csd_schema, official_csd_schema), {d: set() for d in DIRECTORIES})


def test_an_iti74_answer_follows_the_official_ror_profile(
    bridge_url: str, official_profile: OfficialProfile
) -> None:
    """The ITI-74 answer (bare getModificationsResponse) against ANS's v2.4 schema and Schematron rules."""
    body = f'<csd:getModificationsRequest xmlns:csd="{ns.CSD}">{_last_modified(NATIONAL_SINCE)}'
    response = post(
        f"{bridge_url}/csd", (body + "</csd:getModificationsRequest>").encode(), "application/xml"
    )
    assert response.status_code == 200, response.text
    assert_follows_profile(official_profile, etree.fromstring(response.content))


def _last_modified(since: datetime) -> str:
    return f"<csd:lastModified>{since.isoformat()}</csd:lastModified>"


@pytest.mark.parametrize(
    ("region", "since", "encapsulated", "parent"),
    [(None, NATIONAL_SINCE, "true", "result"), (REGION, REGIONAL_SINCE, "false", "Body")],
    ids=["national-encapsulated", "regional-bare"],
)
def test_establishments_updated_since_beyond_the_cap(
    bridge_url: str,
    dataset: Dataset,
    region: str | None,
    since: datetime,
    encapsulated: str,
    parent: str,
    our_csd_schema: etree.XMLSchema,
    official_csd_schema: etree.XMLSchema,
) -> None:
    """TR-Notif-ListeEtablissementMajApresDate: the EJ and EG of every change, lieux and professionals too."""
    codes = REGION_CODES if region else None
    expected = deltas.expected_establishments(dataset, since, codes)
    assert deltas.searched(dataset, since, "Organization", codes) > CAP
    # Nationally, some establishments changed only through a lieu or a professional of one of their offers
    # (regionally, with the older date, every establishment changed through an organisation or offer too).
    without = deltas.expected_establishments(dataset, since, codes, lieux_and_professionals=False)
    assert without < expected if region is None else without <= expected
    body = establishments(since.isoformat(), encapsulated)
    url = f"{bridge_url}/csd" + (f"/{region}" if region else "")
    response = post(
        url, soap12(body).replace(ns.ACTION_ITI74_REQUEST.encode(), ns.ACTION_ITI73_REQUEST.encode())
    )
    assert response.status_code == 200, response.text
    (found,) = etree.fromstring(response.content).xpath("//csd:CSD | //csd:queryResult", namespaces=C)
    assert etree.QName(found.getparent()).localname == parent  # careServicesResponse/result, or bare
    csd = answer_csd(found.getroottree().getroot())
    check_csd(
        csd,
        (our_csd_schema, official_csd_schema),
        {
            "organizationDirectory": expected,
            "serviceDirectory": set(),
            "facilityDirectory": set(),
            "providerDirectory": set(),
            "deviceDirectory": set(),
        },
    )


@pytest.mark.parametrize(
    ("body", "words"),
    [
        ("<csd:getModificationsRequest/>", "lastModified"),
        (modifications("yesterday"), "'yesterday'"),
        (modifications((datetime.now(UTC) + timedelta(days=2)).isoformat()), "future"),
    ],
    ids=["missing", "invalid", "future"],
)
def test_bad_last_modified_is_a_sender_fault(bridge_url: str, body: str, words: str) -> None:
    response = post(f"{bridge_url}/csd", soap12(body))
    assert response.status_code == 400
    code, subcode, reason = fault(response)
    assert (code, subcode) == ("Sender", "InvalidParameter")
    assert words in reason
    assert b"getModificationsResponse" not in response.content


def test_an_establishments_date_in_the_future_is_a_sender_fault(bridge_url: str) -> None:
    future = (datetime.now(UTC) + timedelta(days=1)).isoformat()
    body = establishments(future)
    response = post(f"{bridge_url}/csd", body.encode(), "application/xml")
    assert response.status_code == 400
    assert fault(response)[:2] == ("Sender", "InvalidParameter")


def test_upstream_failure_midway_is_a_receiver_fault_never_a_partial_answer(dataset: Dataset) -> None:
    """Every later page of every search fails (400: not retried): the first pages came, the answer did not."""
    broken = _simulator(dataset, faults='outcome(400,"simulated failure")@path=_getpagesoffset')
    with running_server(broken) as simulator, running_server(_bridge(simulator)) as bridge:
        response = post(f"{bridge}/csd", soap12(modifications(NATIONAL_SINCE.isoformat())))
    assert response.status_code == 500
    code, subcode, reason = fault(response)
    assert (code, subcode) == ("Receiver", "UpstreamStatus")
    assert "simulated failure" in reason
    assert b"getModificationsResponse" not in response.content
    assert b"organizationDirectory" not in response.content


def test_establishments_larger_than_a_batch_many_times_over(
    simulator_url: str, dataset: Dataset, monkeypatch: pytest.MonkeyPatch
) -> None:
    """establishments-updated-since, written from its spool 3 organisations at a time (well over a hundred
    batches): every EJ and EG of the changes, each once, each EJ before the EG under it."""
    monkeypatch.setattr("bridge.pipeline.workers.BATCH_SIZE", 3)
    expected = deltas.expected_establishments(dataset, NATIONAL_SINCE)
    assert len(expected) > 100 * 3
    body = soap12(establishments(NATIONAL_SINCE.isoformat()))
    body = body.replace(ns.ACTION_ITI74_REQUEST.encode(), ns.ACTION_ITI73_REQUEST.encode())
    with running_server(_bridge(simulator_url)) as bridge:
        response = post(f"{bridge}/csd", body)
    assert response.status_code == 200, response.text[:2000]
    csd = answer_csd(etree.fromstring(response.content))
    empty: set[str] = set()
    check_csd(csd, (), {"organizationDirectory": expected, **dict.fromkeys(DIRECTORIES[1:], empty)})
    assert_parents_first(csd, expect_children=True)


def assert_parents_first(csd: etree._Element, *, expect_children: bool = False) -> None:
    """Each organisation whose parent is in the answer comes after it (the engine's order: roots first)."""
    organizations = csd.xpath("csd:organizationDirectory/csd:organization", namespaces=C)
    position = {o.get("entityID"): index for index, o in enumerate(organizations)}
    children = 0
    for index, organization in enumerate(organizations):
        parent = organization.find("csd:parent", C)
        if parent is not None and parent.get("entityID") in position:
            children += 1
            assert position[parent.get("entityID")] < index, "a parent comes before its child"
    assert children > 0 or not expect_children


@pytest.mark.parametrize("workers", [0, 2], ids=["in-thread", "two-worker-processes"])
def test_iti74_larger_than_a_batch_many_times_over(
    simulator_url: str, dataset: Dataset, monkeypatch: pytest.MonkeyPatch, workers: int
) -> None:
    """The spooled ITI-74 answer, mapped and written 7 entities at a time (a few hundred batches), in the
    request's thread or in two worker processes (every directory, whatever its size): every change, each
    once, organisations root first."""
    monkeypatch.setattr("bridge.pipeline.workers.BATCH_SIZE", 7)
    monkeypatch.setattr("bridge.pipeline.workers.PARALLEL_FROM", 1)
    expected = deltas.expected_modifications(dataset, NATIONAL_SINCE)
    assert sum(map(len, expected.values())) > 50 * 7
    with running_server(_bridge(simulator_url, mapping_workers=workers)) as bridge:
        response = post(f"{bridge}/csd", soap12(modifications(NATIONAL_SINCE.isoformat())))
    assert response.status_code == 200, response.text[:2000]
    csd = answer_csd(etree.fromstring(response.content))
    check_csd(csd, (), expected)
    assert_parents_first(csd)


@pytest.mark.slow
def test_national_changes_at_the_real_10000_cap(
    our_csd_schema: etree.XMLSchema, official_csd_schema: etree.XMLSchema
) -> None:
    """At the national API's own cap: 40 000 offers, a delta whose offer search matches more than 10 000."""
    scale, since = 40_000, datetime(2025, 1, 1, tzinfo=UTC)
    data = generate_dataset(scale, SEED)
    expected = deltas.expected_modifications(data, since)
    # The HealthcareService _lastUpdated search alone matches over 10 000 (10 754).
    assert len(deltas.changes(data, since, lieux_and_professionals=False).services) > 10_000
    simulator = mount_simulator(create_simulator_app(SimulatorConfig(scale=scale, seed=SEED), data))
    # About 73 000 changed entities, written from the spool.
    with (
        running_server(simulator) as sim,
        running_server(_bridge(sim, upstream_max_results=10_000, upstream_page_size=200)) as bridge,
    ):
        started = time.perf_counter()
        response = post(f"{bridge}/csd", soap12(modifications(since.isoformat())))
        elapsed = time.perf_counter() - started
    assert response.status_code == 200, response.text[:2000]
    csd = answer_csd(etree.fromstring(response.content))
    check_csd(csd, (our_csd_schema, official_csd_schema), expected)
    print(f"ITI-74 at scale {scale}: {sum(map(len, expected.values()))} entities in {elapsed:.1f} s")
