"""The ROR v2.4 profile's restricted reading (restrictedOrganisation=true, RG_ALIM_015): restrict_document on
the whole-model answer, and the restricted-organisation section of mappings/access-profiles.yaml refused when
broken."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import pytest

from bridge.errors import MappingTableError
from bridge.model import ExtensionNode, Facility
from bridge.translate import Mappings
from bridge.translate.access_profiles import load_access_profiles, restrict_document
from tests.translate.test_whole_model import answer


def typed_names(facility: Facility) -> list[str]:
    return [e.content.name for e in facility.extensions if e.profile and e.content is not None]


def test_the_whole_model_ue_keeps_what_rg_alim_015_keeps(mappings: Mappings) -> None:
    plain = answer(mappings)
    restricted = restrict_document(mappings.access, plain)
    (unit,) = restricted.facilities
    (before,) = plain.facilities
    assert "location" in typed_names(before)
    assert "receptionType" in typed_names(before)
    # champ 01 (not médico-social): the organisation category goes too
    # (contact and BAL MSS are the OI's, every OI's: kept)
    assert typed_names(unit) == [
        "contact",
        "mailBoxMSS",
        "typeActivity",
        "careMode",
        "patientsType",
        "sensitiveUnit",
    ]
    # the lieu's address and the service's opening hours: present before, gone
    assert before.addresses
    assert unit.addresses == ()
    assert [len(s.operating_hours) for o in before.organizations for s in o.services] == [1]
    assert [len(s.operating_hours) for o in unit.organizations for s in o.services] == [0]
    # the EG's tariffs (the unqualified `tarif` tree) go, its other trees stay
    trees = {
        o.entity_id: [e.content.name for e in o.extensions if not e.profile and e.content is not None]
        for o in restricted.organizations
    }
    assert trees["urn:ror:idnatstruct:1690000002"] == ["detailAdresse", "commentaire", "regionSource"]
    # the services and providers are left as they are
    assert restricted.services == plain.services
    assert restricted.providers == plain.providers


def test_the_category_stays_in_the_medico_social_field(mappings: Mappings) -> None:
    plain = answer(mappings)
    (unit,) = plain.facilities
    champ_04 = ExtensionNode(
        "typeActivity", attributes=(("code", "04"), ("codingScheme", "1.2.250.1.213.3.3.17"))
    )
    extensions = tuple(
        replace(e, content=champ_04) if e.content is not None and e.content.name == "typeActivity" else e
        for e in unit.extensions
    )
    document = replace(plain, facilities=[replace(unit, extensions=extensions)])
    (restricted,) = restrict_document(mappings.access, document).facilities
    assert "facilityType" in typed_names(restricted)


@pytest.mark.parametrize(
    ("old", "new", "message"),
    [
        ("  trees: [tarif]", "  trees: [tarif, 'no tree']", "a list of extension element names"),
        ("  trees: [tarif]", "  branches: [tarif]", "unknown key"),
        ("      remove: facilityType", "      remove: facilityKind", "'facilityKind' is not an element"),
        ("id: restricted-ue-attributes", "id: p0-eg-crisis-elements", "duplicate id"),
    ],
)
def test_a_broken_restriction_stops_the_start(
    edited_access_table: Callable[[str, str], Path], old: str, new: str, message: str
) -> None:
    with pytest.raises(MappingTableError, match=r"access-profiles\.yaml") as error:
        load_access_profiles(edited_access_table(old, new))
    assert message in str(error.value)


def test_without_the_section_there_is_no_restriction(
    edited_access_table: Callable[[str, str], Path],
) -> None:
    target = edited_access_table("restricted-organisation:", "unused-section:")
    with pytest.raises(MappingTableError, match="top-level key"):
        load_access_profiles(target)
    path = target / "access-profiles.yaml"
    text = path.read_text(encoding="utf-8")
    path.write_text(text[: text.index("unused-section:")], encoding="utf-8")
    assert load_access_profiles(target).restriction is None
