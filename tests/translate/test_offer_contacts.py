"""The offer's contacts and BAL MSS as the UE's typed elements (issue 11 item 3): offer_contact and
profile_mailbox on the whole-model fixture's RORHealthcareService (its ror-healthcareservice-contact and its
telecom), written valid against the official profile's schema and its nomenclature rules."""

from __future__ import annotations

from typing import Any

from lxml import etree

from bridge.csd.writer import document_to_bytes
from bridge.model import ExtensionNode, Facility
from bridge.translate import Mappings
from tests.translate.test_whole_model import answer

R200 = "1.2.250.1.213.3.3.1"  # TRE_R200-CanalCommunication
R283 = "1.2.250.1.213.1.1.4.344"  # TRE_R283-NiveauConfidentialite (NOS 2023-06-14)
R287 = "1.2.250.1.213.3.3.67"  # TRE_R287-NatureContact


def typed(facility: Facility, name: str) -> list[ExtensionNode]:
    return [e.content for e in facility.extensions if e.content is not None and e.content.name == name]


def child(node: ExtensionNode, *path: str) -> ExtensionNode:
    for name in path:
        (node,) = [c for c in node.children if c.name == name]
    return node


def test_the_offer_contact_is_the_ue_contact(mappings: Mappings) -> None:
    (unit,) = answer(mappings).facilities
    (contact,) = typed(unit, "contact")
    assert [c.name for c in contact.children] == [
        "name",
        "nature",
        "description",
        "confidentialityLevel",
        "contactPoint",
        "record",
    ]
    assert child(contact, "name").text == "Secrétariat de cardiologie"
    assert dict(child(contact, "nature").attributes) == {"code": "04", "codingScheme": R287}
    assert child(contact, "description").text == "Du lundi au vendredi"
    assert dict(child(contact, "confidentialityLevel").attributes) == {"code": "2", "codingScheme": R283}
    point = child(contact, "contactPoint")
    assert dict(child(point, "codedType").attributes) == {"code": "2", "codingScheme": R200}
    assert child(point, "equipment").text == "0102030405"
    level = child(point, "extension", "confidentialityLevel")
    assert dict(level.attributes) == {"code": "3", "codingScheme": R283}


def test_the_offer_telecom_is_the_ue_mailbox(mappings: Mappings) -> None:
    (unit,) = answer(mappings).facilities
    (mailbox,) = typed(unit, "mailBoxMSS")
    assert [c.name for c in mailbox.children] == ["contactPoint", "record"]
    point = child(mailbox, "contactPoint")
    assert dict(child(point, "codedType").attributes) == {"code": "3", "codingScheme": R200}
    assert child(point, "equipment").text == "cardio@chdesmonts.mssante.fr"
    assert dict(child(point, "extension", "confidentialityLevel").attributes)["code"] == "1"


def test_the_ue_contact_and_mailbox_follow_the_profile(mappings: Mappings, official_profile: Any) -> None:
    document = etree.fromstring(document_to_bytes(answer(mappings)))
    failures = official_profile.check(document)
    mine = [str(f) for f in failures if "/contact" in f.path or "mailBoxMSS" in f.path]
    assert mine == []
    assert (
        document.xpath(
            "count(//*[local-name()='facility']/*[local-name()='extension']/*[local-name()='mailBoxMSS'])"
        )
        == 1
    )
