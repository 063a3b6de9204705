"""`ror-bridge extract` as a user runs it: real processes, the embedded or a standalone simulator."""

from __future__ import annotations

import re
from pathlib import Path

from lxml import etree

from bridge.model import Directory
from tests.expected import entity_ids
from tests.test_cli import cli, free_port, running

DEMO = {"BRIDGE_DEMO_SCALE": "150", "BRIDGE_DEMO_SEED": "4"}


def test_extract_writes_the_document_to_a_file_with_a_summary(
    tmp_path: Path, our_csd_schema: etree.XMLSchema
) -> None:
    target = tmp_path / "bretagne.xml"
    result = cli(
        "extract", "--region", "bretagne", "--champ", "01", "--champ", "04", "-o", str(target), env=DEMO
    )
    assert result.returncode == 0, result.stderr
    document = target.read_bytes()
    assert our_csd_schema.validate(etree.fromstring(document)), our_csd_schema.error_log.last_error
    found = entity_ids(document)
    assert found[Directory.SERVICE], "the region has offers of those champs"
    # The summary: the request, the source, and the counts per directory that the file holds.
    assert "region bretagne (champActivite=01, champActivite=04) from export" in result.stderr
    for directory in Directory:
        assert f"{directory.value} {len(found[directory])}" in result.stderr
    assert re.search(rf"\b{len(document)} bytes in [0-9.]+ s -> {re.escape(str(target))}", result.stderr)
    assert [p.name for p in tmp_path.iterdir()] == ["bretagne.xml"], "no temporary file is left"


def test_extract_writes_the_same_document_to_stdout_from_either_source(tmp_path: Path) -> None:
    target = tmp_path / "out.xml"
    to_file = cli("extract", "--region", "corse", "--source", "search", "-o", str(target), env=DEMO)
    to_stdout = cli("extract", "--region", "corse", "--source", "export", "--quiet", env=DEMO)
    assert to_file.returncode == 0, to_file.stderr
    assert to_stdout.returncode == 0, to_stdout.stderr
    assert to_stdout.stdout == target.read_text(encoding="utf-8")
    assert to_stdout.stderr == "", "--quiet prints neither progress nor summary"


def test_an_unknown_region_exits_2_and_writes_nothing(tmp_path: Path) -> None:
    target = tmp_path / "x.xml"
    result = cli("extract", "--region", "atlantis", "-o", str(target), env=DEMO)
    assert result.returncode == 2
    assert "unknown region 'atlantis'" in result.stderr
    assert list(tmp_path.iterdir()) == []


def test_an_unreachable_upstream_exits_1_with_the_reason(tmp_path: Path) -> None:
    target = tmp_path / "x.xml"
    result = cli("extract", "--upstream", f"http://127.0.0.1:{free_port()}/fhir", "-o", str(target))
    assert result.returncode == 1
    assert "ror-bridge extract: failed: UpstreamUnavailableError" in result.stderr
    assert list(tmp_path.iterdir()) == []


def test_a_failure_mid_document_removes_the_partial_file(tmp_path: Path) -> None:
    # The first search page is served, every next page is refused: the document had started in the
    # temporary file, which must not survive as if it were an extraction.
    port = free_port()
    base = f"http://127.0.0.1:{port}/ws-diffusion-fhir"
    faults = "status(400)@path=_getpages"
    with running(
        "simulator",
        "--open",
        "--scale",
        "120",
        "--port",
        str(port),
        "--faults",
        faults,
        ready_url=f"{base}/metadata",
    ):
        target = tmp_path / "x.xml"
        env = {"BRIDGE_UPSTREAM_PAGE_SIZE": "10", "BRIDGE_UPSTREAM_MAX_ATTEMPTS": "1"}
        result = cli("extract", "--upstream", base, "--source", "search", "-o", str(target), env=env)
    assert result.returncode == 1
    assert re.search(r"fetching \(search\): [1-9]\d* pages", result.stderr), (
        "a page came: the document started"
    )
    assert "failed: UpstreamStatusError" in result.stderr
    assert "HTTP 400" in result.stderr
    assert list(tmp_path.iterdir()) == [], "the partial document was removed"
