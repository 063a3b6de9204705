"""`ror-bridge compare documents`: the bridge's extraction against a legacy side built from it with
known injected differences, and the IHE Connectathon CSD documents: exactly the injected differences,
nothing else."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from lxml import etree

from bridge.cli import main
from tests.compare.inject import R211_URL, entities, inject, local, report_differences

CONNECTATHON = "csd/openhie-openinfoman/b3cf8ef/resources/service_directories"
REPO = Path(__file__).resolve().parents[2]


def run(*args: str) -> int:
    return main(["compare", *args, "--quiet"])


def test_the_report_finds_exactly_the_injected_differences(extraction: Path, tmp_path: Path) -> None:
    legacy, expected = inject(extraction.read_bytes())
    (tmp_path / "legacy.xml").write_bytes(legacy)
    assert (
        run("documents", str(tmp_path / "legacy.xml"), str(extraction), "--out", str(tmp_path / "out")) == 0
    )
    report = json.loads((tmp_path / "out" / "report.json").read_text("utf-8"))
    bridge_entities = len(entities(etree.parse(str(extraction)).getroot()))
    assert expected.differences
    assert expected.only_legacy
    assert expected.only_bridge
    assert report_differences(report) == expected.differences
    assert set(report["entities"]["only_legacy"]) == expected.only_legacy
    assert set(report["entities"]["only_bridge"]) == expected.only_bridge
    matched = report["entities"]["matched"]
    assert matched == bridge_entities - len(expected.only_bridge)
    assert report["entities"]["equal"] == matched - len({d[:2] for d in expected.differences})
    denominator = matched + len(report["entities"]["only_legacy"]) + len(report["entities"]["only_bridge"])
    assert report["parity"] == pytest.approx(report["entities"]["equal"] / denominator, abs=1e-6)
    assert report["parity"] == pytest.approx(expected.parity(bridge_entities), abs=1e-6)
    assert sum(k["matched"] for k in report["by_kind"].values()) == matched
    assert sum(r["matched"] for r in report["by_region"].values()) == matched
    assert {t["path"] for t in report["top_fields"]} == {d[2] for d in expected.differences}
    junit = etree.parse(str(tmp_path / "out" / "junit.xml")).getroot()
    failed = {c.get("name") for c in junit.iter("testcase") if c.find("failure") is not None}
    # facilities are internal organisations and UEs (coded TRE_R207) in the ROR v2.4 profile's placement
    kinds = ("organization", "internal-organization", "service", "provider")
    assert failed == {f"kind {k}" for k in kinds}
    assert (tmp_path / "out" / "report.html").stat().st_size > 0


def test_min_parity_gates_with_exit_status_1(extraction: Path, tmp_path: Path) -> None:
    legacy, _ = inject(extraction.read_bytes())
    (tmp_path / "legacy.xml").write_bytes(legacy)
    out = str(tmp_path / "out")
    assert (
        run("documents", str(tmp_path / "legacy.xml"), str(extraction), "--out", out, "--min-parity", "1")
        == 1
    )
    assert (
        run("documents", str(tmp_path / "legacy.xml"), str(extraction), "--out", out, "--min-parity", "0.9")
        == 0
    )
    assert run("documents", str(extraction), str(extraction), "--out", out, "--min-parity", "1") == 0
    assert json.loads((tmp_path / "out" / "report.json").read_text("utf-8"))["parity"] == 1.0


def test_a_crosswalked_code_counts_as_equal(extraction: Path, tmp_path: Path) -> None:
    """A region's crosswalk row: the bridge's v3 code and the legacy code it crosswalks to are equal."""
    mappings = tmp_path / "mappings"
    shutil.copytree(REPO / "mappings", mappings)
    root = etree.parse(str(extraction)).getroot()
    codes = [
        c.get("code")
        for e in entities(root)
        if local(e) == "service"
        for c in e.findall("{urn:ihe:iti:csd:2013}codedType")
    ]
    v3 = max(set(codes), key=codes.count)
    (mappings / "codes" / "test-activity.csv").write_text(
        "source_code,code,coding_scheme,display,note\n"
        f"{v3},L-{v3},urn:legacy:activity,legacy activity,test\n",
        "utf-8",
    )
    rules = (mappings / "compare.yaml").read_text("utf-8")
    rules = rules.replace(
        "crosswalks:\n",
        f'crosswalks:\n  - table: codes/test-activity.csv\n    source_systems: ["{R211_URL}"]\n',
    )
    (mappings / "compare.yaml").write_text(rules, "utf-8")
    legacy, expected = inject(extraction.read_bytes(), crosswalk=(v3, "urn:legacy:activity", f"L-{v3}"))
    assert any(
        f"written as their crosswalk L-{v3}" in note and not note.startswith("0 ")
        for note in expected.equal_despite
    )
    (tmp_path / "legacy.xml").write_bytes(legacy)
    args = ["documents", str(tmp_path / "legacy.xml"), str(extraction), "--out", str(tmp_path / "out")]
    assert run(*args, "--mappings-dir", str(mappings)) == 0
    report = json.loads((tmp_path / "out" / "report.json").read_text("utf-8"))
    assert report_differences(report) == expected.differences
    # Without the row the same codes are differences: the test can fail.
    assert run(*args) == 0
    plain = json.loads((tmp_path / "out" / "report.json").read_text("utf-8"))
    extra = report_differences(plain) - expected.differences
    assert extra
    assert all(d[2] == "service/codedType" and d[3] == f"L-{v3} [urn:legacy:activity]" for d in extra)


@pytest.mark.parametrize("name", ["Facilities", "Organizations", "Providers", "Services"])
def test_connectathon_documents(reference_dir: Path, tmp_path: Path, name: str) -> None:
    """IHE Connectathon CSD documents (read in place): prefixes and child order do not count; an altered
    Practice address line, a removed entity and a code altered are found, each once."""
    source = reference_dir / CONNECTATHON / f"CSD-{name}-Connectathon-20150120.xml"
    if not source.is_file():
        pytest.skip(f"{source} is not present")
    root = etree.parse(str(source), etree.XMLParser(remove_blank_text=True)).getroot()
    items = entities(root)
    expected: set[tuple[str, str, str, str | None, str | None]] = set()
    removed = items[-1]
    removed.getparent().remove(removed)
    first = items[0]
    kind = local(first)
    coded = first.find("{urn:ihe:iti:csd:2013}codedType")
    if coded is not None:
        scheme = coded.get("codingScheme")
        expected.add(
            (
                first.get("entityID"),
                kind,
                f"{kind}/codedType",
                f"X-1 [{scheme}]",
                f"{coded.get('code')} [{scheme}]",
            )
        )
        coded.set("code", "X-1")
    for entity in items[:-1]:
        children = list(entity)
        for child in children:
            entity.remove(child)
        entity.extend(reversed(children))
    text = etree.tostring(root, encoding="unicode").replace(
        'xmlns="urn:ihe:iti:csd:2013"', 'xmlns:c="urn:ihe:iti:csd:2013"'
    )
    text = text.replace("<", "<c:").replace("<c:/", "</c:").replace("</c:c:", "</c:").replace("<c:?", "<?")
    (tmp_path / "legacy.xml").write_text(text, "utf-8")
    assert run("documents", str(tmp_path / "legacy.xml"), str(source), "--out", str(tmp_path / "out")) == 0
    report = json.loads((tmp_path / "out" / "report.json").read_text("utf-8"))
    assert report_differences(report) == expected
    assert report["entities"]["only_bridge"] == [removed.get("entityID")]
    assert report["entities"]["only_legacy"] == []
    assert report["entities"]["matched"] == len(items) - 1
    assert report["entities"]["equal"] == len(items) - 1 - len(expected)


def test_input_that_is_not_xml_is_a_clear_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "a.xml").write_text("<CSD><organizationDirectory>", "utf-8")
    (tmp_path / "b.xml").write_text("not xml at all", "utf-8")
    assert (
        run("documents", str(tmp_path / "a.xml"), str(tmp_path / "b.xml"), "--out", str(tmp_path / "o")) == 2
    )
    assert "not XML" in capsys.readouterr().err
    assert (
        run("documents", str(tmp_path / "missing.xml"), str(tmp_path / "b.xml"), "--out", str(tmp_path / "o"))
        == 2
    )
