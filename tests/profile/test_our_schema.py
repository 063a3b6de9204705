"""Our own schema (xsd/csd.xsd + xsd/ror-v24.xsd) speaks the ROR CSD v2.4 profile's wire contract: every
element path of ANS's schema is in ours, a profile-shaped answer validates against both (and passes ANS's
rules), the same defects are refused by both, and the two deliberate differences are the documented ones."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
import xmlschema
from lxml import etree

from bridge.csd.schema_tree import csd_elements
from tests.profile.harness import LECTURE_PROJECT, OfficialProfile

REPO = Path(__file__).resolve().parents[2]
SAMPLE = REPO / "tests" / "fixtures" / "profile" / "profile-shaped-answer.xml"
C = {"c": "urn:ihe:iti:csd:2013"}


def _sample() -> etree._Element:
    return etree.parse(str(SAMPLE)).getroot()


def _ours_valid(our_csd_schema: etree.XMLSchema, document: etree._Element) -> bool:
    return bool(our_csd_schema.validate(document))


def test_every_element_path_of_the_profile_is_in_our_schema(official_profile: OfficialProfile) -> None:
    official = [e.path for e in csd_elements(official_profile.xsd_path)]
    ours = {e.path for e in csd_elements(REPO / "xsd" / "csd.xsd")}
    assert [path for path in official if path not in ours] == []
    # ours has only the IHE altitude of a geocode beyond the profile's tree
    assert sorted(p.rpartition("/")[2] for p in ours - set(official)) == ["altitude"] * 3


def test_a_profile_shaped_answer_validates_against_both_and_passes_ans_rules(
    official_profile: OfficialProfile, our_csd_schema: etree.XMLSchema
) -> None:
    document = _sample()
    assert official_profile.check(document, project=LECTURE_PROJECT) == []
    assert our_csd_schema.validate(document), our_csd_schema.error_log
    assert xmlschema.XMLSchema(str(REPO / "xsd" / "csd.xsd")).is_valid(document)


def _rename(path: str, name: str) -> Callable[[etree._Element], None]:
    def change(root: etree._Element) -> None:
        (element,) = root.xpath(path, namespaces=C)
        element.tag = f"{{urn:ihe:iti:csd:2013}}{name}"

    return change


def _remove(path: str) -> Callable[[etree._Element], None]:
    def change(root: etree._Element) -> None:
        (element,) = root.xpath(path, namespaces=C)
        element.getparent().remove(element)

    return change


def _move_first(path: str) -> Callable[[etree._Element], None]:
    def change(root: etree._Element) -> None:
        (element,) = root.xpath(path, namespaces=C)
        element.getparent().insert(0, element)

    return change


FACILITY_EXT = "//c:facility/c:extension"
MUTATIONS = {
    "unknown typed element": _rename(f"{FACILITY_EXT}/c:careMode", "careModes"),
    "typed elements out of order": _move_first(f"{FACILITY_EXT}/c:sensitiveUnit"),
    "contact point extension's record before its level": _move_first("//c:contactPoint/c:extension/c:record"),
    "lieu without its commune": _remove(f"{FACILITY_EXT}/c:location/c:cityNumber"),
    "lieu of an EG without its record": _remove("//c:organization[c:parent]/c:extension/c:location/c:record"),
    "device without codedType": _remove("//c:device/c:codedType"),
    "queryResult without CSD content": _remove("//c:queryResult/c:organizationDirectory"),
}


@pytest.mark.parametrize("name", list(MUTATIONS))
def test_both_schemas_refuse_the_same_defects(
    name: str, official_profile: OfficialProfile, our_csd_schema: etree.XMLSchema
) -> None:
    document = _sample()
    MUTATIONS[name](document)
    assert official_profile.schema_failures(document) != []
    assert not _ours_valid(our_csd_schema, document)


def test_the_documented_differences(
    official_profile: OfficialProfile, our_csd_schema: etree.XMLSchema
) -> None:
    # 1. An element the profile requires in an entity extension is optional in ours (xsd/README.md).
    document = _sample()
    _remove(f"{FACILITY_EXT}/c:careMode")(document)
    assert official_profile.schema_failures(document) != []
    assert _ours_valid(our_csd_schema, document)
    # 2. Ours also accepts the bridge's earlier extension form: one child in urn:ror:csd:extension.
    document = _sample()
    (extension,) = document.xpath("//c:service/c:extension", namespaces=C)
    etree.SubElement(extension, "{urn:ror:csd:extension}nomOffre").text = "Neurologie"
    extension.insert(0, extension[-1])
    assert official_profile.schema_failures(document) != []
    assert _ours_valid(our_csd_schema, document)
