"""mappings/compare.yaml: loaded and validated (also by `ror-bridge mappings check`), scheme spellings and
crosswalk rows made comparable, field-level diff rules (ignore, order, multiset)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from bridge.cli import main
from bridge.compare.matching import Difference, diff_fields
from bridge.compare.rules import load_rules
from bridge.errors import CompareRulesError

REPO = Path(__file__).resolve().parents[2]
R207_URL = (
    "https://mos.esante.gouv.fr/NOS/TRE_R207-TypeOrganisationInterne/FHIR/TRE-R207-TypeOrganisationInterne"
)


@pytest.fixture
def mappings(tmp_path: Path) -> Path:
    shutil.copytree(REPO / "mappings", tmp_path / "mappings")
    return tmp_path / "mappings"


def test_the_shipped_rules_load_and_mappings_check_reports_them(capsys: pytest.CaptureFixture[str]) -> None:
    rules = load_rules(REPO / "mappings")
    assert rules.match_order("organization")[0] == "entityID"
    assert main(["mappings", "check"]) == 0
    assert "compare.yaml:" in capsys.readouterr().out


def test_an_oid_and_its_system_url_name_the_same_scheme() -> None:
    rules = load_rules(REPO / "mappings")
    assert rules.scheme(R207_URL) == rules.scheme("urn:oid:1.2.250.1.213.3.3.8") == "1.2.250.1.213.3.3.8"
    assert rules.code_key(R207_URL, "3") == rules.code_key("1.2.250.1.213.3.3.8", "3")
    assert rules.code_key(R207_URL, "3") != rules.code_key(R207_URL, "4")


def test_a_v3_code_equals_its_v24_crosswalk(mappings: Path) -> None:
    rules = load_rules(REPO / "mappings")
    # contact-point.csv: FHIR `phone` -> TRE_R200 #2 (téléphone fixe, OID 1.2.250.1.213.3.3.1)
    r200 = "1.2.250.1.213.3.3.1"
    assert rules.code_key("http://hl7.org/fhir/contact-point-system", "phone") == rules.code_key(r200, "2")
    assert rules.code_key(r200, "6") != rules.code_key(r200, "2")


def test_field_diff_ignores_order_and_ignored_paths_but_not_values() -> None:
    rules = load_rules(REPO / "mappings")
    legacy = [("facility/record/@updated", "2020"), ("facility/name", "B"), ("facility/name", "A")]
    bridge = [("facility/record/@updated", "2024"), ("facility/name", "A"), ("facility/name", "B")]
    assert diff_fields(rules, legacy, bridge) == []
    assert diff_fields(rules, legacy, [*bridge[:2], ("facility/name", "C")]) == [
        Difference("facility/name", "B", "C")
    ]
    assert (
        diff_fields(
            rules,
            [("a/parent/@entityID", "urn:legacy:1")],
            [("a/parent/@entityID", "urn:ror:1")],
            {"a/parent/@entityID"},
            {"urn:legacy:1": "urn:ror:1"}.get,
        )
        == []
    )


@pytest.mark.parametrize(
    ("broken", "message"),
    [
        ("match:\n  organization: [entityID, nowhere]\n", "'nowhere' is not an identifier"),
        ("shadow:\n  default: both\n", "neither `legacy` nor `bridge`"),
        ("crosswalks:\n  - table: codes/missing.csv\n", "no table codes/missing.csv"),
        ("surprise: 1\n", "unknown keys ['surprise']"),
    ],
)
def test_a_broken_rules_table_is_a_clear_error(
    mappings: Path, broken: str, message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    (mappings / "compare.yaml").write_text(broken, "utf-8")
    with pytest.raises(CompareRulesError, match=message.replace("[", r"\[").replace("]", r"\]")):
        load_rules(mappings)
    assert main(["mappings", "check", "--mappings-dir", str(mappings)]) == 2
    assert "compare.yaml" in capsys.readouterr().err
