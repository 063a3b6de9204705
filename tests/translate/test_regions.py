"""regions.csv: the legacy regional endpoints, their validation, and how they scope the FHIR plan."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from bridge.errors import MappingTableError, UnknownRegionError
from bridge.model import CsdRequest, OtherID, RequestForm, RequestParams, Transaction
from bridge.shipped import shipped_dir
from bridge.translate import Mappings, load_mappings, to_fhir_plan

# Every TRE_R30 region code (docs/glossary.md): each must be reachable through exactly one endpoint.
TRE_R30 = {
    "01",
    "02",
    "03",
    "04",
    "06",
    "11",
    "24",
    "27",
    "28",
    "32",
    "44",
    "52",
    "53",
    "75",
    "76",
    "84",
    "93",
    "94",
}


def request(region: str | None) -> CsdRequest:
    return CsdRequest(
        transaction=Transaction.CARE_SERVICES,
        form=RequestForm.FUNCTION_URN_2014,
        function_urn="urn:ror:csd:stored-function:internal-organization",
        params=RequestParams(other_ids=(OtherID("OI1", "https://oi.esante.gouv.fr"),)),
        region=region,
    )


def test_seventeen_legacy_rors_cover_every_region_once(mappings: Mappings) -> None:
    assert len(mappings.regions) == 17
    covered = [code for region in mappings.regions.values() for code in region.region_codes]
    assert sorted(covered) == sorted(TRE_R30)


def test_a_regional_request_is_scoped_by_region_source_tag(mappings: Mappings) -> None:
    national = to_fhir_plan(mappings, request(None))
    regional = to_fhir_plan(mappings, request("IDF"))  # codes are matched case-insensitively
    for before, after in zip(national.queries, regional.queries, strict=True):
        assert after.params == (*before.params, ("_tag", f"{mappings.region_tag_system}|11"))
    shared = to_fhir_plan(mappings, request("ocean-indien"))
    tag = dict(shared.queries[0].params)["_tag"]
    assert tag == f"{mappings.region_tag_system}|04,{mappings.region_tag_system}|06"


def test_unknown_region_is_refused(mappings: Mappings) -> None:
    with pytest.raises(UnknownRegionError, match="'atlantis'"):
        to_fhir_plan(mappings, request("atlantis"))


@pytest.mark.parametrize(
    ("row", "problem"),
    [
        ("idf2,Île-de-France bis,11,sourced,test,", "already covered"),
        ("Bad Code,X,12,sourced,test,", "use a-z"),
        ("x,X,1,sourced,test,", "not a TRE_R30 code"),
        ("x,X,12,maybe,test,", "sourced or inferred"),
        ("idf,X,12,sourced,test,", "duplicate region"),
    ],
)
def test_a_broken_regions_table_names_table_row_and_column(tmp_path: Path, row: str, problem: str) -> None:
    directory = tmp_path / "mappings"
    shutil.copytree(shipped_dir("mappings"), directory)
    with (directory / "regions.csv").open("a", encoding="utf-8") as table:
        table.write(row + "\n")
    with pytest.raises(MappingTableError) as caught:
        load_mappings(directory)
    assert caught.value.table == "regions.csv"
    assert caught.value.rule is not None
    assert caught.value.rule.startswith("row ")
    assert problem in str(caught.value)
