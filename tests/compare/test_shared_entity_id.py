"""Issue 14 at one million offers: a csd:service of the ROR v2.4 profile carries no identifier but its
entityID, which it shares with its offer's UE facility. Re-keyed by a legacy system (its own entityIDs), it is
matched as that UE was matched (`via:` in compare.yaml), whatever the offer numbers look like."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from bridge.cli import main
from bridge.compare.rules import load_rules
from bridge.errors import CompareRulesError

REPO = Path(__file__).resolve().parents[2]
R207 = "1.2.250.1.213.3.3.8"
R211 = "1.2.250.1.213.3.3.12"
OFFRE = "https://ror.esante.gouv.fr/offre"
# 1 to 7 digits: the one-million-offer extraction is the first with 7-digit offer numbers
OFFERS = ["01/7", "01/100039", "01/1000205", "02/1000836", "976/9999999"]


def document(key: dict[str, str], *, dropped: str = "", codes: dict[str, str] | None = None) -> str:
    """A bare csd:CSD of UE facilities (coded TRE_R207, otherID = identifiant offre) and their activity
    services under the same entityID, written for this test."""
    codes = codes or {}
    units, services = [], []
    for offer in OFFERS:
        if offer == dropped:
            continue
        eid = key[offer]
        units.append(
            f"""<csd:facility entityID="{eid}">
  <csd:otherID code="{offer}" assigningAuthorityName="{OFFRE}"/>
  <csd:codedType code="4" codingScheme="{R207}">Unité élémentaire</csd:codedType>
  <csd:primaryName>Offre {offer}</csd:primaryName>
  <csd:organizations><csd:organization entityID="urn:test:eg"><csd:service entityID="{eid}"/>
  </csd:organization></csd:organizations>
</csd:facility>"""
        )
        services.append(
            f"""<csd:service entityID="{eid}">
  <csd:codedType code="{codes.get(offer, "055")}" codingScheme="{R211}">Activité</csd:codedType>
  <csd:record created="2020-01-01T00:00:00Z" updated="2024-01-01T00:00:00Z" status="Active"/>
</csd:service>"""
        )
    return f"""<csd:CSD xmlns:csd="urn:ihe:iti:csd:2013">
<csd:organizationDirectory/>
<csd:serviceDirectory>{"".join(services)}</csd:serviceDirectory>
<csd:facilityDirectory>{"".join(units)}</csd:facilityDirectory>
<csd:providerDirectory/>
</csd:CSD>"""


def bridge_id(offer: str) -> str:
    return "urn:ror:offre:" + offer.replace("/", "%2F")


def compare(tmp_path: Path, legacy: str, bridge: str, *extra: str) -> dict[str, object]:
    (tmp_path / "legacy.xml").write_text(legacy, "utf-8")
    (tmp_path / "bridge.xml").write_text(bridge, "utf-8")
    out = tmp_path / "out"
    status = main(
        [
            *("compare", "documents", str(tmp_path / "legacy.xml"), str(tmp_path / "bridge.xml")),
            *("--out", str(out), "--quiet", *extra),
        ]
    )
    assert status == 0
    report: dict[str, object] = json.loads((out / "report.json").read_text("utf-8"))
    return report


@pytest.mark.parametrize(
    "legacy_id",
    [
        lambda offer, index: "urn:legacy:offre:" + offer.replace("/", "%2F"),  # bench-compare's legacy copy
        lambda offer, index: f"urn:oid:1.2.250.1.999.1:{index}",  # a legacy ROR's own numbering
    ],
    ids=["prefix-rekeyed", "renumbered"],
)
def test_services_are_matched_through_the_ue_sharing_their_entity_id(
    tmp_path: Path, legacy_id: object
) -> None:
    assert callable(legacy_id)
    legacy_key = {offer: legacy_id(offer, index) for index, offer in enumerate(OFFERS)}
    bridge_key = {offer: bridge_id(offer) for offer in OFFERS}
    report = compare(
        tmp_path,
        document(legacy_key, dropped="02/1000836", codes={"01/1000205": "999"}),
        document(bridge_key),
    )
    entities = report["entities"]
    assert isinstance(entities, dict)
    # one offer dropped on the legacy side: its UE and its service only on the bridge's, nothing else
    assert entities["only_legacy"] == []
    assert entities["only_bridge"] == [bridge_key["02/1000836"]] * 2
    assert entities["matched"] == 2 * (len(OFFERS) - 1)
    by_kind = report["by_kind"]
    assert isinstance(by_kind, dict)
    assert by_kind["service"]["matched"] == len(OFFERS) - 1
    # the changed activity code is reported on the right service; the UEs' service references translate
    assert report["differences"] == [
        {
            "entity": bridge_key["01/1000205"],
            "kind": "service",
            "path": "service/codedType",
            "legacy": f"999 [{R211}]",
            "bridge": f"055 [{R211}]",
            "unit": "legacy.xml vs bridge.xml",
            "function": "extraction",
            "region": "(none)",
        }
    ]
    assert entities["equal"] == 2 * (len(OFFERS) - 1) - 1


def test_without_the_via_step_a_rekeyed_service_has_nothing_to_match_by(tmp_path: Path) -> None:
    mappings = tmp_path / "mappings"
    shutil.copytree(REPO / "mappings", mappings)
    rules = (mappings / "compare.yaml").read_text("utf-8")
    assert "service: [entityID, offre, via:internal-organization]" in rules
    (mappings / "compare.yaml").write_text(
        rules.replace("service: [entityID, offre, via:internal-organization]", "service: [entityID, offre]"),
        "utf-8",
    )
    legacy_key = {offer: f"urn:legacy:{index}" for index, offer in enumerate(OFFERS)}
    report = compare(
        tmp_path,
        document(legacy_key),
        document({offer: bridge_id(offer) for offer in OFFERS}),
        "--mappings-dir",
        str(mappings),
    )
    by_kind = report["by_kind"]
    assert isinstance(by_kind, dict)
    assert by_kind["service"]["matched"] == 0
    assert by_kind["internal-organization"]["matched"] == len(OFFERS)


@pytest.mark.parametrize(
    ("step", "message"),
    [
        ("via:", "via: names no kind"),
        ("via:service", "a kind cannot be matched via itself"),
    ],
)
def test_a_broken_via_step_is_a_clear_error(tmp_path: Path, step: str, message: str) -> None:
    mappings = tmp_path / "mappings"
    shutil.copytree(REPO / "mappings", mappings)
    (mappings / "compare.yaml").write_text(f"match:\n  service: [entityID, '{step}']\n", "utf-8")
    with pytest.raises(CompareRulesError, match=message):
        load_rules(mappings)
