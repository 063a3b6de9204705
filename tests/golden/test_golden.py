"""Golden cases: each recorded CSD request, through the real bridge, against a stand-in national API (real
HTTP on 127.0.0.1) serving the recorded answers, gives exactly the recorded FHIR calls and CSD response."""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from lxml import etree

from bridge import ns
from bridge.app import create_app
from bridge.config import load_settings
from bridge.shipped import shipped_dir
from bridge.translate import load_mappings
from tests.golden.manifest import GOLDEN, Call, Case, Upstream, canonical, fault_summary, load_manifest
from tests.profile.harness import (
    IHE_STORED_FUNCTION,
    LECTURE_PROJECT,
    OfficialProfile,
    assert_follows_profile,
)
from tests.server import running_server

MANIFEST = load_manifest()


@pytest.fixture(scope="module")
def upstream() -> Iterator[tuple[Upstream, str]]:
    stand_in = Upstream()
    with running_server(stand_in.app) as url:
        yield stand_in, f"{url}/ws-diffusion-fhir"


async def _post(upstream_url: str, body: bytes) -> httpx.Response:
    bridge = create_app(load_settings(upstream_url=upstream_url))
    async with bridge.router.lifespan_context(bridge):
        transport = httpx.ASGITransport(app=bridge)
        async with httpx.AsyncClient(transport=transport, base_url="http://bridge") as client:
            return await client.post("/csd", content=body, headers={"Content-Type": "application/xml"})


@pytest.mark.parametrize("case", MANIFEST.cases, ids=lambda c: c.name)
def test_golden_case(
    case: Case,
    upstream: tuple[Upstream, str],
    our_csd_schema: etree.XMLSchema,
    official_csd_schema: etree.XMLSchema,
) -> None:
    stand_in, url = upstream
    stand_in.case, stand_in.received = case, []
    response = asyncio.run(_post(url, case.request.read_bytes()))
    expected_calls: Counter[Call] = Counter(
        (c["resource"], tuple((k, v) for k, v in c["params"])) for c in case.calls()
    )
    assert Counter(stand_in.received) == expected_calls
    if case.expected_fault.is_file():
        assert fault_summary(response) == json.loads(case.expected_fault.read_text("utf-8"))
        return
    assert response.status_code == 200, response.text
    assert canonical(response.content) == case.expected_xml.read_bytes().strip()
    document = etree.fromstring(response.content)
    schemas = (our_csd_schema, official_csd_schema)
    if etree.QName(document).namespace == ns.ROR:  # the ROR v2.4 profile's TR-Notif answer
        schemas = (etree.XMLSchema(etree.parse(str(shipped_dir("xsd") / "ror-operations.xsd"))),)
    for schema in schemas:
        assert schema.validate(document), str(schema.error_log)


def test_manifest_lists_every_case_directory_once() -> None:
    names = [case.name for case in MANIFEST.cases]
    assert len(names) == len(set(names))
    assert sorted(names) == sorted(p.name for p in (GOLDEN / "cases").iterdir() if p.is_dir())
    for case in MANIFEST.cases:
        assert case.request.is_file()
        assert case.expected_xml.is_file() != case.expected_fault.is_file(), case.name


def test_every_stored_function_and_request_form_has_a_case() -> None:
    functions = {spec.name for spec in load_mappings(shipped_dir("mappings")).functions.values()}
    assert functions <= {case.function for case in MANIFEST.cases}
    requests = [case.request.read_text("utf-8") for case in MANIFEST.cases]
    assert any("<function uuid=" in text for text in requests)  # 2013
    assert any("<csd:function urn=" in text for text in requests)  # 2014
    assert any("<csd:careServicesRequest" in text and ' urn="' in text.split(">")[1] for text in requests)
    assert any(case.expected_fault.is_file() for case in MANIFEST.cases)
    assert any(
        Path(case.expected_xml).is_file() and 'encapsulated="false"' in r
        for case, r in zip(MANIFEST.cases, requests, strict=True)
    )


# The functions that are IHE ITI-73 searches (CSD 2014 stored functions): their answers are exempt from the
# TR_Lecture pattern's "an idNatStruct in the answer" only (tests/profile/harness.py, IHE_SEARCH_EXEMPT).
IHE_SEARCHES = frozenset(
    spec.name
    for spec in load_mappings(shipped_dir("mappings")).functions.values()
    if spec.urn.startswith(IHE_STORED_FUNCTION)
)


@pytest.mark.parametrize(
    "case", [c for c in MANIFEST.cases if not c.expected_fault.is_file()], ids=lambda c: c.name
)
def test_golden_answer_follows_the_official_ror_profile(
    case: Case, official_profile: OfficialProfile
) -> None:
    # The recorded answer is the bridge's (test_golden_case): ANS's v2.4 schema, Schematron rules and, for a
    # reading of one establishment's offer, the PLATINES Lecture project's XPath assertions.
    document = etree.parse(str(case.expected_xml)).getroot()
    project = LECTURE_PROJECT if case.function == "establishment-offers" else None
    ihe_search = case.function in IHE_SEARCHES
    assert_follows_profile(official_profile, document, project=project, ihe_search=ihe_search)


def test_the_ihe_searches_are_the_four_csd_2014_stored_functions() -> None:
    expected = {"facility-search", "organization-search", "provider-search", "service-search"}
    assert expected == IHE_SEARCHES
