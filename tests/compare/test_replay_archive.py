"""`ror-bridge compare replay` and `archive` against the real bridge and a fake legacy service that answers
the bridge's own answers with known injected differences: per request, exactly those differences."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest
from lxml import etree

from bridge.cli import main
from bridge.compare.runs import request_headers
from tests.compare.inject import inject, report_differences

ORGANIZATION_SEARCH = b"""<csd:careServicesRequest xmlns:csd="urn:ihe:iti:csd:2013">
  <csd:function urn="urn:ihe:iti:csd:2014:stored-function:organization-search">
    <csd:requestParams><csd:max>25</csd:max></csd:requestParams>
  </csd:function>
</csd:careServicesRequest>"""


FACILITY_SEARCH_SOAP12 = b"""<env:Envelope xmlns:env="http://www.w3.org/2003/05/soap-envelope"
    xmlns:wsa="http://www.w3.org/2005/08/addressing" xmlns:csd="urn:ihe:iti:csd:2013">
  <env:Header>
    <wsa:Action env:mustUnderstand="1">urn:ihe:iti:csd:2013:GetCareServicesRequest</wsa:Action>
    <wsa:MessageID>urn:uuid:5b0c7a2e-3f4d-4c1b-9a6e-0d2f8e1c7b02</wsa:MessageID>
  </env:Header>
  <env:Body><csd:careServicesRequest>
    <csd:function urn="urn:ihe:iti:csd:2014:stored-function:facility-search" encapsulated="true">
      <csd:requestParams><csd:max>30</csd:max></csd:requestParams>
    </csd:function>
  </csd:careServicesRequest></env:Body>
</env:Envelope>"""
MODIFICATIONS = b"""<csd:getModificationsRequest xmlns:csd="urn:ihe:iti:csd:2013">
  <csd:lastModified>2000-01-01T00:00:00Z</csd:lastModified>
</csd:getModificationsRequest>"""


@pytest.fixture
def requests(tmp_path: Path) -> Path:
    """Three request shapes: bare ITI-74 (every directory), SOAP 1.2 facility-search, bare org search."""
    folder = tmp_path / "requests"
    folder.mkdir()
    (folder / "modifications.xml").write_bytes(MODIFICATIONS)
    (folder / "facility-search-soap12.xml").write_bytes(FACILITY_SEARCH_SOAP12)
    (folder / "organization-search.xml").write_bytes(ORGANIZATION_SEARCH)
    return folder


def expected_for(
    bridge_url: str, folder: Path
) -> dict[str, set[tuple[str, str, str, str | None, str | None]]]:
    expected = {}
    for path in sorted(folder.glob("*.xml")):
        body = path.read_bytes()
        answer = httpx.post(f"{bridge_url}/csd", content=body, headers=request_headers(body), timeout=60)
        assert answer.status_code == 200, answer.text[:300]
        expected[path.name] = inject(answer.content)[1].differences
    return expected


def by_unit(report: dict[str, object]) -> dict[str, set[tuple[str, str, str, str | None, str | None]]]:
    units: dict[str, set[tuple[str, str, str, str | None, str | None]]] = {}
    for unit in report["units"]:  # type: ignore[attr-defined]
        units[unit["name"]] = report_differences(
            {"differences": [d for d in report["differences"] if d["unit"] == unit["name"]]}  # type: ignore[index]
        )
    return units


def test_replay_finds_the_injected_differences_of_each_request(
    bridge_url: str, legacy_url: str, requests: Path, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    args = [
        "compare",
        "replay",
        "--legacy",
        legacy_url,
        "--bridge",
        f"{bridge_url}/csd",
        "--requests",
        str(requests),
    ]
    assert main([*args, "--out", str(out), "--quiet"]) == 0
    report = json.loads((out / "report.json").read_text("utf-8"))
    expected = expected_for(bridge_url, requests)
    assert any(expected.values())
    assert by_unit(report) == expected
    functions = {u["name"]: u["function"] for u in report["units"]}
    assert functions == {
        "modifications.xml": "modifications",
        "facility-search-soap12.xml": "facility-search",
        "organization-search.xml": "organization-search",
    }
    assert set(report["by_function"]) == set(functions.values())
    assert all(u["matched"] > 0 for u in report["units"])
    junit = etree.parse(str(out / "junit.xml")).getroot()
    assert {c.get("name") for c in junit.iter("testcase")} == set(functions)
    assert main([*args, "--out", str(out), "--quiet", "--min-parity", "1"]) == 1


def test_an_unreachable_legacy_service_is_reported_per_request(
    bridge_url: str, requests: Path, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    args = ["compare", "replay", "--legacy", "http://127.0.0.1:9/csd", "--bridge", f"{bridge_url}/csd"]
    assert main([*args, "--requests", str(requests), "--out", str(out), "--quiet"]) == 0
    report = json.loads((out / "report.json").read_text("utf-8"))
    assert all(u["problem"].startswith("legacy: unreachable") for u in report["units"])
    assert report["entities"]["matched"] == 0
    failures = etree.parse(str(out / "junit.xml")).getroot().findall(".//failure")
    assert len(failures) == 3


def test_archive_replays_archived_pairs_against_the_bridge(
    bridge_url: str, requests: Path, tmp_path: Path
) -> None:
    pairs = tmp_path / "pairs"
    pairs.mkdir()
    expected = {}
    for path in sorted(requests.glob("*.xml")):
        name = path.stem
        body = path.read_bytes()
        answer = httpx.post(f"{bridge_url}/csd", content=body, headers=request_headers(body), timeout=60)
        legacy, injected = inject(answer.content)
        (pairs / f"{name}.request.xml").write_bytes(body)
        (pairs / f"{name}.response.xml").write_bytes(legacy)
        expected[name] = injected.differences
    (pairs / "lost.request.xml").write_bytes(ORGANIZATION_SEARCH)  # its answer was never archived
    out = tmp_path / "out"
    assert (
        main(
            ["compare", "archive", "--pairs", str(pairs), "--bridge", f"{bridge_url}/csd", "--out", str(out)]
        )
        == 0
    )
    report = json.loads((out / "report.json").read_text("utf-8"))
    units = by_unit(report)
    lost = units.pop("lost")
    assert lost == {("lost", "answer", "status", "missing", "")}
    assert units == expected
    problems = {u["name"]: u["problem"] for u in report["units"]}
    assert problems["lost"] == "legacy: no lost.response.xml next to lost.request.xml"


def test_an_empty_folder_is_a_clear_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert (
        main(
            [
                "compare",
                "archive",
                "--pairs",
                str(tmp_path),
                "--bridge",
                "http://127.0.0.1:9/csd",
                "--out",
                str(tmp_path / "o"),
            ]
        )
        == 2
    )
    assert "no NAME.request.xml" in capsys.readouterr().err
