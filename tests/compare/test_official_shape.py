"""The official ROR CSD v2.4 answer shape (careServicesResponse/result/facilityNumber + queryResult, internal
organisations as csd:facility coded TRE_R207 with extension/parentFacility, typed extension elements, a
deviceDirectory) compared with the same entities as a bare csd:CSD under other entityIDs."""

from __future__ import annotations

import json
from pathlib import Path

from bridge.cli import main

R207 = "1.2.250.1.213.3.3.8"
R207_URL = (
    "https://mos.esante.gouv.fr/NOS/TRE_R207-TypeOrganisationInterne/FHIR/TRE-R207-TypeOrganisationInterne"
)


def directories(ids: dict[str, str], *, device_code: str, unit_name: str, r207: str) -> str:
    """The project's own small v2.4-shaped content (written for this test, not taken from a sample)."""
    return f"""
<csd:organizationDirectory>
  <csd:organization entityID="{ids["eg"]}">
    <csd:otherID code="690000001" assigningAuthorityName="https://finess.esante.gouv.fr"/>
    <csd:codedType code="EG" codingScheme="urn:ror:csd:organization-kind">Entité géographique</csd:codedType>
    <csd:primaryName>Hôpital de test</csd:primaryName>
    <csd:record created="2020-01-01T00:00:00Z" updated="2024-01-01T00:00:00Z" status="Active"/>
  </csd:organization>
</csd:organizationDirectory>
<csd:serviceDirectory/>
<csd:facilityDirectory>
  <csd:facility entityID="{ids["pole"]}">
    <csd:otherID code="OI0001" assigningAuthorityName="https://oi.esante.gouv.fr"/>
    <csd:codedType code="1" codingScheme="{r207}">Pôle</csd:codedType>
    <csd:primaryName>Pôle de test</csd:primaryName>
    <csd:extension><csd:parentFacility entityID="{ids["eg"]}"/></csd:extension>
    <csd:record created="2020-01-01T00:00:00Z" updated="2024-01-01T00:00:00Z" status="Active"/>
  </csd:facility>
  <csd:facility entityID="{ids["uf"]}">
    <csd:otherID code="OI0002" assigningAuthorityName="https://oi.esante.gouv.fr"/>
    <csd:codedType code="3" codingScheme="{r207}">Unité fonctionnelle</csd:codedType>
    <csd:primaryName>{unit_name}</csd:primaryName>
    <csd:extension>
      <csd:parentFacility entityID="{ids["pole"]}"/>
      <csd:location><csd:name>Bâtiment A</csd:name></csd:location>
    </csd:extension>
    <csd:record created="2020-01-01T00:00:00Z" updated="2024-01-01T00:00:00Z" status="Active"/>
  </csd:facility>
</csd:facilityDirectory>
<csd:providerDirectory/>
<csd:deviceDirectory>
  <csd:device entityID="{ids["device"]}">
    <csd:codedType code="{device_code}" codingScheme="1.2.250.1.213.3.3.999">Équipement</csd:codedType>
    <csd:record created="2020-01-01T00:00:00Z" updated="2024-01-01T00:00:00Z" status="Active"/>
  </csd:device>
</csd:deviceDirectory>"""


def test_the_official_answer_shape_is_compared_like_any_csd(tmp_path: Path) -> None:
    legacy_ids = {
        "eg": "urn:legacy:1",
        "pole": "urn:legacy:2",
        "uf": "urn:legacy:3",
        "device": "urn:legacy:dev",
    }
    bridge_ids = {"eg": "urn:ror:finess:690000001", "pole": "urn:ror:oi:OI0001", "uf": "urn:ror:oi:OI0002",
                  "device": "urn:legacy:dev"}  # fmt: skip
    legacy = f"""<s:Envelope xmlns:s="http://www.w3.org/2003/05/soap-envelope"><s:Body>
<csd:careServicesResponse xmlns:csd="urn:ihe:iti:csd:2013"><csd:result>
<csd:facilityNumber>2</csd:facilityNumber><csd:queryResult>
{directories(legacy_ids, device_code="E1", unit_name="UF de test", r207=R207)}
</csd:queryResult></csd:result></csd:careServicesResponse></s:Body></s:Envelope>"""
    bridge = f"""<csd:CSD xmlns:csd="urn:ihe:iti:csd:2013">
{directories(bridge_ids, device_code="E2", unit_name="UF  de   test", r207=R207_URL)}
</csd:CSD>"""
    (tmp_path / "legacy.xml").write_text(legacy, "utf-8")
    (tmp_path / "bridge.xml").write_text(bridge, "utf-8")
    out = tmp_path / "out"
    assert (
        main(
            [
                "compare",
                "documents",
                str(tmp_path / "legacy.xml"),
                str(tmp_path / "bridge.xml"),
                "--out",
                str(out),
                "--quiet",
            ]
        )
        == 0
    )
    report = json.loads((out / "report.json").read_text("utf-8"))
    assert set(report["by_kind"]) == {"organization", "internal-organization", "device"}
    assert (
        report["by_kind"]["internal-organization"]["matched"] == 2
    )  # by identifiant OI, parentFacility translated
    assert report["entities"]["matched"] == 4
    assert report["differences"] == [
        {
            "entity": "urn:legacy:dev",
            "kind": "device",
            "path": "device/codedType",
            "legacy": "E1 [1.2.250.1.213.3.3.999]",
            "bridge": "E2 [1.2.250.1.213.3.3.999]",
            "unit": "legacy.xml vs bridge.xml",
            "function": "extraction",
            "region": "(none)",
        }
    ]
    assert report["parity"] == 0.75
