"""The offer's compétences ressources as the UE's resourcesSkills (issue 11 item 3): offer_resource_skills on
the whole-model fixture's characteristic codings and on hand-made ones."""

from __future__ import annotations

from typing import Any

from bridge.model import ExtensionNode
from bridge.translate import Mappings
from tests.translate.test_transforms import run
from tests.translate.test_whole_model import answer

NOS = "https://mos.esante.gouv.fr/NOS/"
G15_OID, R94_OID, R243_OID = "1.2.250.1.71.1.2.7", "1.2.250.1.213.1.6.1.4", "1.2.250.1.213.3.3.37"


def parts(node: ExtensionNode) -> list[tuple[str, dict[str, str]]]:
    return [(c.name, dict(c.attributes)) for c in node.children if c.name != "record"]


def test_the_whole_model_offer_skills(mappings: Mappings) -> None:
    (unit,) = answer(mappings).facilities
    (skills,) = [
        e.content for e in unit.extensions if e.content is not None and e.content.name == "resourcesSkills"
    ]
    assert parts(skills) == [
        ("profession", {"code": "60", "codingScheme": G15_OID}),  # TRE_G15 through codes/profession.csv
        ("profession", {"code": "11", "codingScheme": R94_OID}),  # TRE_R94, as received
        ("specificSkills", {"code": "07", "codingScheme": R243_OID}),
    ]
    assert skills.children[-1].name == "record"


def coding(tre: str, code: str) -> dict[str, Any]:
    return {"coding": [{"system": f"{NOS}{tre}/FHIR/{tre.replace('_', '-')}", "code": code}]}


def test_parts_in_the_schema_order_and_other_characteristics_ignored(mappings: Mappings) -> None:
    values = [
        coding("TRE_R243-CompetenceSpecifique", "03"),
        coding("TRE_R213-ModePriseEnCharge", "07"),  # careMode: not a skill
        coding("TRE_R38-SpecialiteOrdinale", "SM26"),
        coding("TRE_G15-ProfessionSante", "10"),  # no row in codes/profession.csv: as received, reported
    ]
    offer = {"resourceType": "HealthcareService", "meta": {"lastUpdated": "2024-01-01T00:00:00+01:00"}}
    (node,) = run(mappings, "offer_resource_skills", values, offer, codes="profession")
    assert [name for name, _ in parts(node)] == ["profession", "medicalSpeciality", "specificSkills"]


def test_no_skill_no_element(mappings: Mappings) -> None:
    values = [coding("TRE_R213-ModePriseEnCharge", "07")]
    assert (
        run(
            mappings,
            "offer_resource_skills",
            values,
            {"resourceType": "HealthcareService"},
            codes="profession",
        )
        == []
    )
