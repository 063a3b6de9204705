"""`ror-bridge mappings check` reports coverage against the official profile's schema: the element walk agrees
with xmlschema's, every element is produced, carried in our extension, or not produced with a reason."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import xmlschema

from bridge.csd.schema_tree import csd_elements
from bridge.errors import MappingTableError
from bridge.shipped import shipped_dir
from bridge.translate import Mappings, load_mappings
from bridge.translate.profile_coverage import load_reasons, profile_coverage
from tests.profile.harness import OfficialProfile
from tests.test_cli import cli


def _xmlschema_paths(schema: xmlschema.XMLSchema11) -> list[str]:
    # An independent walk of the same tree, through xmlschema's components (a type is not re-entered on
    # its own path).
    found: list[str] = []

    def walk(element: Any, prefix: str, seen: tuple[int, ...]) -> None:
        content = getattr(element.type, "content", None)
        if content is None or not hasattr(content, "iter_elements") or id(element.type) in seen:
            return
        for child in content.iter_elements():
            if getattr(child, "local_name", None) is None:
                continue  # a wildcard (xs:any)
            path = f"{prefix}/{child.local_name}" if prefix else child.local_name
            found.append(path)
            walk(child, path, (*seen, id(element.type)))

    walk(schema.elements["CSD"], "", ())
    return found


@pytest.fixture(scope="module")
def mappings() -> Mappings:
    return load_mappings(shipped_dir("mappings"))


def test_the_element_walk_agrees_with_xmlschema(official_profile: OfficialProfile) -> None:
    ours = [e.path for e in csd_elements(official_profile.xsd_path)]
    theirs = _xmlschema_paths(xmlschema.XMLSchema11(official_profile.xsd_path))
    assert len(ours) == len(set(ours)) == 633
    assert sorted(ours) == sorted(theirs)
    assert "deviceDirectory/device" in ours
    assert "facilityDirectory/facility/extension/parentFacility" in ours


def test_every_official_element_is_produced_or_explained(
    official_profile: OfficialProfile, mappings: Mappings
) -> None:
    official = [e.path for e in csd_elements(official_profile.xsd_path)]
    ours = {e.path for e in csd_elements(shipped_dir("xsd") / "csd.xsd")}
    coverage = {
        c.path: c for c in profile_coverage(mappings, official, ours, load_reasons(mappings.directory))
    }
    assert [c.path for c in coverage.values() if c.status == "not produced" and not c.detail] == []
    assert coverage["organizationDirectory/organization/codedType"].status == "produced"
    assert "organization#coded-type" in coverage["organizationDirectory/organization/codedType"].detail
    # the profile's placement: the UE's lieu is its typed location; csd:geocode is not written (explained)
    location = coverage["facilityDirectory/facility/extension/location"]
    assert location.status == "produced"
    assert "unit#location" in location.detail
    assert coverage["facilityDirectory/facility/extension/parentFacility"].status == "produced"
    assert coverage["facilityDirectory/facility/geocode/latitude"].status == "not produced"
    assert "extension/location/geoCoordinates" in coverage["facilityDirectory/facility/geocode"].detail
    # a typed element of the profile's extension that a table fills (extension: {profile: contact})
    contact = coverage["organizationDirectory/organization/extension/contact"]
    assert contact.status == "produced"
    assert "organization#" in contact.detail
    # équipements: one csd:device per ror-location-equipment (entities/device.yaml); no otherID (explained)
    device = coverage["deviceDirectory/device"]
    assert device.status == "produced"
    assert "entities/device.yaml" in device.detail
    assert coverage["deviceDirectory/device/codedType"].status == "produced"
    assert coverage["deviceDirectory/device/extension/nbInService"].status == "produced"
    assert coverage["deviceDirectory/device/otherID"].status == "not produced"
    assert "no identifier in v3" in coverage["deviceDirectory/device/otherID"].detail
    # without reasons, the same gaps are reported as unexplained
    bare = profile_coverage(mappings, official, ours, {})
    assert sum(1 for c in bare if c.status == "not produced" and not c.detail) == sum(
        1 for c in coverage.values() if c.status == "not produced"
    )


def test_mappings_check_prints_the_profile_coverage(official_profile: OfficialProfile) -> None:
    # (the fixture skips the test when ../shared/reference/ror-v24/ is absent: the default schema is there)
    assert official_profile.xsd_path.is_file()
    result = cli("mappings", "check")
    assert result.returncode == 0, result.stderr
    line = next(x for x in result.stdout.splitlines() if x.startswith("profile-v24.yaml: official"))
    assert "633 elements under CSD" in line
    assert "(0 without a reason)" in line
    assert "  + deviceDirectory/device/codedType: device#coded-type" in result.stdout
    assert "  + organizationDirectory/organization/codedType: organization#coded-type" in result.stdout


def test_mappings_check_says_when_the_profile_schema_is_missing(tmp_path: Path) -> None:
    result = cli("mappings", "check", "--profile-schema", str(tmp_path / "none.xsd"))
    assert result.returncode == 0, result.stderr
    assert f"Official profile coverage skipped: {tmp_path / 'none.xsd'} not found" in result.stdout


def test_a_reasons_file_without_reasons_is_refused(tmp_path: Path) -> None:
    (tmp_path / "profile-v24.yaml").write_text("reasons: {}\n", encoding="utf-8")
    with pytest.raises(MappingTableError, match=r"profile-v24\.yaml"):
        load_reasons(tmp_path)
    (tmp_path / "profile-v24.yaml").write_text("reasons:\n  deviceDirectory: ''\n", encoding="utf-8")
    with pytest.raises(MappingTableError, match="needs a reason"):
        load_reasons(tmp_path)
