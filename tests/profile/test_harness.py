"""The official-profile harness itself: it passes a conforming answer, fails a known-bad one with the exact
rule ids, assertion names and node paths, and reads ANS's files (schema, rules, NOS tables, PLATINES) as
they are."""

from __future__ import annotations

from copy import deepcopy
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import xmlschema
from lxml import etree

from tests.profile.harness import (
    CONFORMANCE_RULES,
    EXCLUDED_RULES,
    IHE_SEARCH_EXEMPT,
    LECTURE_PROJECT,
    NOTIF_PROJECT,
    USER_ATTRIBUTE_ASSERTION,
    NewerCode,
    OfficialProfile,
    newer_codes_report,
    simulator_codes,
    summary,
)
from tests.profile.schematron import Schematron

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "profile"
CSD = "urn:ihe:iti:csd:2013"
EMPTY_DIRECTORIES = (
    "<organizationDirectory/><serviceDirectory/><facilityDirectory/><providerDirectory/><deviceDirectory/>"
)


def _xml(text: str) -> etree._Element:
    return etree.fromstring(text.encode())


def _answer(csd_content: str, number: int) -> etree._Element:
    return _xml(
        f'<careServicesResponse xmlns="{CSD}"><result><facilityNumber>{number}</facilityNumber>'
        f"<queryResult>{csd_content}</queryResult></result></careServicesResponse>"
    )


def _ej(coding_scheme: str, code: str) -> str:
    return (
        '<organizationDirectory><organization entityID="urn:ror:idnatstruct:1750000001">'
        '<otherID code="1750000001" assigningAuthorityName="1.2.250.1.71.4.2.2"/>'
        f'<codedType code="{code}" codingScheme="{coding_scheme}"/>'
        '<primaryName>EJ</primaryName><record created="2020-01-01T00:00:00" updated="2021-01-01T00:00:00"'
        ' status="Active"/></organization></organizationDirectory>'
        "<serviceDirectory/><facilityDirectory/><providerDirectory/><deviceDirectory/>"
    )


def _eg(coding_scheme: str, code: str) -> str:
    return (
        '<organizationDirectory><organization entityID="urn:ror:idnatstruct:1750000002">'
        '<otherID code="1750000002" assigningAuthorityName="1.2.250.1.71.4.2.2"/>'
        f'<codedType code="{code}" codingScheme="{coding_scheme}"/>'
        '<primaryName>EG</primaryName><parent entityID="urn:ror:idnatstruct:1750000001"/>'
        '<record created="2020-01-01T00:00:00" updated="2021-01-01T00:00:00" status="Active"/>'
        "</organization></organizationDirectory>"
        "<serviceDirectory/><facilityDirectory/><providerDirectory/><deviceDirectory/>"
    )


def test_an_empty_profile_answer_passes_every_check(official_profile: OfficialProfile) -> None:
    document = _answer(EMPTY_DIRECTORIES, 0)
    skip = [a.name for a in official_profile.assertions[LECTURE_PROJECT] if a.name.startswith("RG_ALIM_018")]
    assert (
        official_profile.check(document, project=LECTURE_PROJECT, skip=[*skip, USER_ATTRIBUTE_ASSERTION])
        == []
    )


def test_the_nomenclature_rule_accepts_a_nos_code_and_refuses_a_fhir_url(
    official_profile: OfficialProfile,
) -> None:
    # TRE_R72 (statut juridique) is one of the two tables the rule allows for an EJ's codedType.
    r72 = official_profile.nos.tables["TRE_R72"]
    good = _answer(_ej(r72.concepts[0].code_system, r72.concepts[0].code), 0)
    assert official_profile.check(good) == []
    url = "https://mos.esante.gouv.fr/NOS/TRE_R72-FinessStatutJuridique/FHIR/TRE-R72-FinessStatutJuridique"
    bad = official_profile.check(_answer(_ej(url, "ZZ"), 0))
    path = (
        "/careServicesResponse/result[1]/queryResult[1]/organizationDirectory[1]/organization[1]/codedType[1]"
    )
    assert [(f.rule, f.path, f.message.split(" — ")[1].split(" :")[0]) for f in bad] == [
        ("validation_elements_nomenclatures.sch#conformite-nomenclatures", path, "Mauvais OID"),
        ("validation_elements_nomenclatures.sch#conformite-nomenclatures", path, "Code nomenclature inconnu"),
    ]


def test_todays_bridge_answer_fails_with_the_exact_rules(official_profile: OfficialProfile) -> None:
    # establishment-offers as the bridge answered it on 2026-12-05 (before the profile's shape): known bad.
    document = etree.parse(str(FIXTURES / "bridge-establishment-offers-2026-12-05.xml")).getroot()
    failures = official_profile.check(document, project=LECTURE_PROJECT)
    assert summary(failures) == {
        ("xsd", "SCHEMAV_ELEMENT_CONTENT"): 1,
        ("schematron", "validation_elements_nomenclatures.sch#conformite-nomenclatures"): 13,
        (
            "platines",
            f"{LECTURE_PROJECT}: RG_ALIM_018, RG_EXP_001 : Objet du contrôle : "
            "La réponse contient au moins une UE par EG ouverte",
        ): 1,
        (
            "platines",
            f"{LECTURE_PROJECT}: RG_ALIM_019 : Objet du contrôle : "
            "Le nombre de réponses annoncé dans le résultat est valide",
        ): 1,
        (
            "platines",
            f"{LECTURE_PROJECT}: RG_ALIM_018 : Objet du contrôle : "
            "La réponse doit contenir 1 EJ, 1 EG et 1 UE",
        ): 1,
    }
    xsd = failures[0]
    assert xsd.path == "/csd:careServicesResponse/csd:result/csd:CSD"
    assert "facilityNumber" in xsd.message
    schematron = [(f.path, f.message.split(" — ")[1]) for f in failures if f.check == "schematron"]
    csd = "/careServicesResponse/result[1]/CSD[1]"
    ej = f"{csd}/organizationDirectory[1]/organization[1]/codedType[1]"
    assert any(p == ej and m.startswith("Mauvais OID : https://mos.esante.gouv.fr/") for p, m in schematron)
    # a lieu written as a facility coded TRE_R343 where the profile has TRE_R207 internal organisations
    lieu = f"{csd}/facilityDirectory[1]/facility[1]/codedType[1]"
    assert any(p == lieu and m.startswith("Code nomenclature inconnu : 002.") for p, m in schematron)
    platines = [f.message for f in failures if f.check == "platines"]
    assert "'Absence de nombre de résultat' (expected 'Résultat valide')" in platines


def test_the_schema_is_the_profile_with_the_wsdl_elements(official_profile: OfficialProfile) -> None:
    notif = _xml(
        '<TR-Notif-ListeEtablissementMajApresDate_Reponse xmlns="urn:asip:ror:2015"'
        ' xmlns:c="urn:ihe:iti:csd:2013"><c:etablissementReponseNotif>'
        '<c:id_etablissement code="1750000001" assigningAuthorityName="1.2.250.1.71.4.2.2"/>'
        "</c:etablissementReponseNotif><c:result>1</c:result></TR-Notif-ListeEtablissementMajApresDate_Reponse>"
    )
    assert official_profile.schema_failures(notif) == []
    wrong = _xml(
        '<TR-Notif-ListeEtablissementMajApresDate_Reponse xmlns="urn:asip:ror:2015"><x/>'
        "</TR-Notif-ListeEtablissementMajApresDate_Reponse>"
    )
    assert [f.rule for f in official_profile.schema_failures(wrong)] == ["SCHEMAV_ELEMENT_CONTENT"]


def test_lxml_and_xmlschema_11_agree_on_the_profile_schema(official_profile: OfficialProfile) -> None:
    # Why lxml (XSD 1.0) may validate a schema marked vc:minVersion="1.1": see OfficialProfile.schema.
    assert len(xmlschema.XMLSchema10(official_profile.xsd_path).elements) == 0  # 1.0 + versioning skips it
    xsd11 = xmlschema.XMLSchema11(official_profile.xsd_path)
    documents = [
        _answer(EMPTY_DIRECTORIES, 0),
        _answer(_ej("1.2.250.1.213.1.6.1.8", "01"), 0),
        etree.parse(str(FIXTURES / "bridge-establishment-offers-2026-12-05.xml")).getroot(),
        _xml(
            f'<CSD xmlns="{CSD}"><organizationDirectory/><serviceDirectory/><facilityDirectory/>'
            "<providerDirectory/></CSD>"
        ),
        _xml(f'<CSD xmlns="{CSD}">{EMPTY_DIRECTORIES}</CSD>'),
    ]
    verdicts = [(official_profile.schema_failures(d) == [], xsd11.is_valid(d)) for d in documents]
    assert verdicts == [(True, True), (True, True), (False, False), (False, False), (True, True)]


def test_the_excluded_rules_fail_on_every_element(official_profile: OfficialProfile) -> None:
    # Proof that EXCLUDED_RULES are unsatisfiable (and still in ANS's file as described): run unmodified.
    raw = Schematron(official_profile.rules_dir / "validation_identifiants.sch", official_profile._table)
    for pattern, context in EXCLUDED_RULES["validation_identifiants.sch"]:
        assert any(p.id == pattern and p.rules[0].context == context for p in raw.patterns)
    document = _answer(_ej("1.2.250.1.213.1.6.1.8", "01"), 0)
    failures = raw.validate(document)
    elements = sum(1 for _ in document.iter())
    assert [f.path for f in failures if f.test == "facilityDirectory/*:facility/*:otherID"] == [
        f.path for f in failures
    ]
    assert len(failures) == elements


def test_every_rule_file_and_the_corrected_contexts_compile(official_profile: OfficialProfile) -> None:
    names = sorted(p.name for p in official_profile.rules_dir.glob("*.sch"))
    assert len(names) == 12
    document = _answer(EMPTY_DIRECTORIES, 0)
    for name in names:
        # read as UTF-8 (their ISO-8859-1 origin converted): no mojibake of the French messages
        text = (official_profile.rules_dir / name).read_text("utf-8")
        assert "Ã" not in text
        assert "é" in text or "è" in text or "à" in text, name
        rules = official_profile.schematron(name)
        assert rules.query_binding == "xslt2"
        # no rule context or let fails to evaluate on an empty answer (the access-profile rules included)
        assert [f for f in rules.validate(document) if "fails" in f.message or "cannot" in f.message] == []
    corrected = official_profile.schematron(
        "validation_nomenclatures_ressources_opérationnelles.sch"
    ).corrected
    assert len(corrected) == 7
    assert all(before.replace("/*", "/*:").replace("/*::", "/*:") == after for before, after in corrected)


def test_nos_tables_are_read_with_their_encoding_and_oids(official_profile: OfficialProfile) -> None:
    nos = official_profile.nos
    assert len(nos.tables) == 285
    assert nos.tables["TRE_R30"].oid == "1.2.250.1.213.2.25"
    assert any(c.label == "Auvergne-Rhône-Alpes" for c in nos.tables["TRE_R30"].concepts)  # ISO-8859-1 file
    assert nos.tables["JDV_J185"].concepts[0].label == "Définitive"  # UTF-8 file
    # ANS's rules name tables by older descriptive names: the key finds them
    found = nos.find("TRE_R69-FinessAgregatStatutJuridiqueNiv2.xml")
    assert found is not None
    assert found.file == "TRE_R69-FinessSousEnsembleAgregatStatutJuridique.tabs"
    assert nos.find("COMPLETER AVEC NOM DE LA TABLE") is None


def test_platines_assertions_are_read_with_their_names(official_profile: OfficialProfile) -> None:
    lecture = official_profile.assertions[LECTURE_PROJECT]
    assert [a.type for a in lecture].count("XPath Match") == 5
    assert sorted(a.schematron for a in lecture if a.schematron) == sorted(
        [
            "validation_elements_nomenclatures.sch",
            "validation_metadonnees.sch",
            "validation_identifiants.sch",
            "validation_conformite_UE.sch",
            "filtre_profil1.sch",
        ]
    )
    assert {a.schematron for a in lecture if a.schematron} - {"filtre_profil1.sch"} <= set(CONFORMANCE_RULES)
    notif = official_profile.assertions[NOTIF_PROJECT]
    assert [a.type for a in notif] == ["SOAP Fault Assertion", "Schema Compliance", "Simple NotContains"]


@pytest.mark.parametrize("code", ["02", "03"])
def test_rg_exp_029_single_room_only(official_profile: OfficialProfile, code: str) -> None:
    """RG_EXP_029 checks the tariff supplement's type of habitation (harness correction 3); a capacité
    d'habitation's type (residentialCapactity, any TRE_R242 code) is not its subject."""
    rule = next(a for a in official_profile.assertions[LECTURE_PROJECT] if a.name.startswith("RG_EXP_029"))
    document = _xml(
        f'<CSD xmlns="{CSD}"><x><surchargePriceResidential><residentialType code="{code}" codingScheme="s"/>'
        '</surchargePriceResidential><residentialCapactity><residentialType code="06" codingScheme="s"/>'
        "</residentialCapactity></x></CSD>"
    )
    failures = official_profile.platines_failures(
        document,
        LECTURE_PROJECT,
        skip=[a.name for a in official_profile.assertions[LECTURE_PROJECT] if a is not rule],
    )
    assert [(f.path, f.message) for f in failures] == (
        []
        if code == "02"
        else [("/CSD/x[1]/surchargePriceResidential[1]/residentialType[1]/@code", "'03' (expected '02')")]
    )


def test_rg_exp_029_as_ans_wrote_it_also_selects_capacities() -> None:
    """The defect corrected: ANS's own XPath selects a capacité d'habitation's residentialType too."""
    from tests.profile.harness import CORRECTED_ASSERTIONS

    (original,) = CORRECTED_ASSERTIONS
    document = _xml(
        f'<CSD xmlns="{CSD}"><residentialCapactity><residentialType code="06" codingScheme="s"/>'
        "</residentialCapactity></CSD>"
    )
    assert document.xpath(original.replace("*:", "*[local-name()='").replace("/@", "']/@")) == ["06"]


@pytest.mark.parametrize(
    ("code", "expected"),
    [
        ("75/UE-1", []),
        ("99/UE-1", ["L'identifiant OI doit commencer par un code région."]),
        ("75-UE-1", ["L'identifiant OI doit contenir un slash.", "L'identifiant OI doit commencer par"]),
    ],
)
def test_the_identifier_rules_run_once_the_shadowing_rule_is_dropped(
    official_profile: OfficialProfile, code: str, expected: list[str]
) -> None:
    document = etree.parse(str(FIXTURES / "profile-shaped-answer.xml")).getroot()
    (other_id,) = document.xpath("//c:facility/c:otherID", namespaces={"c": CSD})
    other_id.set("code", code)
    failures = official_profile.schematron_failures(document, ["validation_identifiants.sch"])
    messages = [f.message.split(" — ")[1] for f in failures]
    assert len(messages) == len(expected)
    for message, start in zip(messages, expected, strict=True):
        assert message.startswith(start), message
    assert all(
        f.path == "/careServicesResponse/result[1]/queryResult[1]/facilityDirectory[1]/facility[1]/otherID[1]"
        for f in failures
    )


IDNAT_EXPECTED = "Un identifiant avec l'OID '1.2.250.1.71.4.2.2' est attendu."


def test_a_tr_lecture_answer_without_its_establishment_fails_the_identifier_rule(
    official_profile: OfficialProfile,
) -> None:
    """The TR_Lecture pattern's "an idNatStruct in the answer" fires on a reading whose facilities come
    without their establishment, and not on a conforming one; only an IHE search is exempt from it
    (IHE_SEARCH_EXEMPT), and from nothing else of the pattern."""
    document = etree.parse(str(FIXTURES / "profile-shaped-answer.xml")).getroot()
    assert official_profile.check(document) == []
    # its unit identified as the bridge writes an offer's identifier, its establishments' idNatStructs gone
    (facility_id,) = document.xpath("//c:facility/c:otherID", namespaces={"c": CSD})
    facility_id.set("assigningAuthorityName", "https://ror.esante.gouv.fr/offre")
    for other_id in document.xpath(
        "//c:organization/c:otherID[@assigningAuthorityName='1.2.250.1.71.4.2.2']", namespaces={"c": CSD}
    ):
        other_id.getparent().remove(other_id)
    failures = official_profile.schematron_failures(document, ["validation_identifiants.sch"])
    rule, test = IHE_SEARCH_EXEMPT
    assert [(f.rule, f.message) for f in failures] == [(rule, f"{test} — {IDNAT_EXPECTED}")]
    assert [f.rule for f in official_profile.check(document)].count(rule) == 1  # held to it by default
    assert rule not in [f.rule for f in official_profile.check(document, ihe_search=True)]
    # the exemption is that one assertion: a bad OI identifier still fails in an IHE search's answer
    facility_id.set("code", "99/UE-1")
    exempt = [f.message.split(" — ")[1] for f in official_profile.check(document, ihe_search=True)]
    assert any(m.startswith("L'identifiant OI doit commencer par un code région.") for m in exempt)
    assert IDNAT_EXPECTED not in exempt


def test_the_harness_command_reports_each_file(tmp_path: Path) -> None:
    from tests.profile.harness import main

    good, bad = (
        FIXTURES / "profile-shaped-answer.xml",
        FIXTURES / "bridge-establishment-offers-2026-12-05.xml",
    )
    assert main([str(good), "--project", "lecture"]) == 0
    assert main([str(good), str(bad)]) == 1
    # an IHE facility-search's recorded answer: only its TR_Lecture idNatStruct assertion fails
    search = Path(__file__).resolve().parents[1] / "golden" / "cases" / "facility-search-2014-city-paged"
    assert main([str(search / "expected.xml")]) == 1
    assert main([str(search / "expected.xml"), "--ihe-search"]) == 0


@pytest.fixture(scope="module")
def nos_2023_only(reference_dir: Path) -> OfficialProfile:
    """The profile with the NOS files of 2023-06-14 alone (no newer codes)."""
    return OfficialProfile(reference_dir)


def test_the_newer_codes_are_real_additions_to_the_2023_tables(
    official_profile: OfficialProfile, nos_2023_only: OfficialProfile
) -> None:
    added = official_profile.nos.added
    assert "606" in added["TRE_R66"]
    assert "1045" in added["TRE_R210"]
    assert "481" in added["TRE_R211"]
    for key, codes in added.items():
        before = {concept.code for concept in nos_2023_only.nos.tables[key].concepts}
        assert codes <= set(simulator_codes()[key]), key
        assert not codes & before, key
    assert nos_2023_only.nos.added == {}
    assert "TRE_R343" not in official_profile.nos.tables  # a list of a table no 2023 rule reads adds nothing


def test_a_newer_code_is_accepted_and_reported_a_code_in_neither_list_is_refused(
    official_profile: OfficialProfile, nos_2023_only: OfficialProfile
) -> None:
    r66 = official_profile.nos.tables["TRE_R66"]
    path = "/careServicesResponse/result[1]/queryResult[1]/organizationDirectory[1]/organization[1]"
    path += "/codedType[1]"

    def unknown(failures: list[Any]) -> list[tuple[str, str]]:
        return [(f.path, f.message.split(" — ")[1].split(". ")[0]) for f in failures]

    # 606 (DAC) is in the simulator's TRE_R66 list, not in the 2023-06-14 file: accepted, and reported
    newer = _answer(_eg(r66.oid, "606"), 0)
    assert unknown(nos_2023_only.check(newer)) == [(path, "Code nomenclature inconnu : 606")]
    assert official_profile.check(newer) == []
    assert official_profile.newer_codes_in(newer) == [NewerCode("TRE_R66", "606", path)]
    assert "606" in official_profile.accepted_newer["TRE_R66"]
    # a code in neither list is still refused, and is no newer code
    assert "999" not in simulator_codes()["TRE_R66"]
    assert "999" not in {c.code for c in r66.concepts}
    neither = _answer(_eg(r66.oid, "999"), 0)
    assert unknown(official_profile.check(neither)) == [(path, "Code nomenclature inconnu : 999")]
    assert official_profile.newer_codes_in(neither) == []
    # a 2023 code is accepted and not reported as newer
    known = _answer(_eg(r66.oid, nos_2023_only.nos.tables["TRE_R66"].concepts[0].code), 0)
    assert official_profile.check(known) == []
    assert official_profile.newer_codes_in(known) == []
    # the same newer code with the OID of another table is not counted as a newer code of TRE_R66
    r72 = official_profile.nos.tables["TRE_R72"]
    assert official_profile.newer_codes_in(_answer(_eg(r72.oid, "606"), 0)) == []


def test_the_harness_command_lists_the_newer_codes(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], official_profile: OfficialProfile
) -> None:
    from tests.profile.harness import main

    answer = tmp_path / "answer.xml"
    answer.write_bytes(etree.tostring(_answer(_eg(official_profile.nos.tables["TRE_R66"].oid, "606"), 0)))
    assert main([str(answer)]) == 0
    out = capsys.readouterr().out
    assert "0 failure(s)" in out
    assert "[newer code] TRE_R66 606 at /careServicesResponse/" in out
    assert main([str(answer), "--nos-2023-only"]) == 1
    assert "Code nomenclature inconnu : 606" in capsys.readouterr().out


def test_the_runs_summary_gathers_the_newer_codes_of_every_test_process(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """`make test` runs pytest-xdist workers, each with its own official_profile: a worker hands its codes to
    the controller when its session ends (tests/conftest.py), the controller's summary is their union."""
    from tests import conftest

    monkeypatch.setattr(conftest, "_FROM_WORKERS", {})
    # a worker's side: its own profiles' codes, into the output xdist carries to the controller
    monkeypatch.setattr(conftest, "_PROFILES", [SimpleNamespace(accepted_newer={"TRE_R212": {"190", "189"}})])
    worker = SimpleNamespace(config=SimpleNamespace(workeroutput={}))
    conftest.pytest_sessionfinish(worker)  # type: ignore[arg-type]
    assert worker.config.workeroutput == {"accepted_newer": {"TRE_R212": ["189", "190"]}}
    # the controller's side: each worker that goes down (one without a profile, one that crashed)
    monkeypatch.setattr(conftest, "_PROFILES", [])
    for node in (
        SimpleNamespace(workeroutput=worker.config.workeroutput),
        SimpleNamespace(workeroutput={"accepted_newer": {"TRE_R212": ["191", "190"], "TRE_R66": ["606"]}}),
        SimpleNamespace(workeroutput={}),
        SimpleNamespace(),
    ):
        conftest.pytest_testnodedown(node, None)
    assert newer_codes_report(conftest._accepted_newer()) == [
        "TRE_R212: 3 code(s) newer than the NOS files of 2023-06-14: 189, 190, 191",
        "TRE_R66: 1 code(s) newer than the NOS files of 2023-06-14: 606",
    ]


def test_a_test_whose_value_is_the_documents_is_computed_once_per_document(
    official_profile: OfficialProfile, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`//*:otherID/@assigningAuthorityName='…'` (the TR_Lecture pattern's "an idNatStruct in the answer")
    walks the whole answer: evaluated once per document instead of once per context node, with the same
    failures, and again for the next document."""
    from tests.profile import schematron

    test = "//*:otherID/@assigningAuthorityName='1.2.250.1.71.4.2.2'"
    rules = official_profile.schematron("validation_identifiants.sch")
    calls: list[str] = []
    evaluate = schematron.Schematron._evaluate

    def counted(self: Schematron, expression: str, *args: Any) -> Any:
        calls.append(expression)
        return evaluate(self, expression, *args)

    monkeypatch.setattr(schematron.Schematron, "_evaluate", counted)
    document = etree.parse(str(FIXTURES / "profile-shaped-answer.xml")).getroot()
    # no idNatStruct (the unit identified as the bridge writes an offer's identifier, its establishments'
    # gone): the assert fails at every context node
    (facility,) = document.xpath("//c:facility", namespaces={"c": CSD})
    facility.find(f"{{{CSD}}}otherID").set("assigningAuthorityName", "https://ror.esante.gouv.fr/offre")
    for _ in range(2):  # three facilities: the rule's three context nodes (each one's otherID)
        facility.addnext(deepcopy(facility))
    for other_id in document.xpath("//*[@assigningAuthorityName='1.2.250.1.71.4.2.2']"):
        other_id.getparent().remove(other_id)
    cached = rules.validate(document)
    assert calls.count(test) == 1
    calls.clear()
    with monkeypatch.context() as plain:  # every test evaluated at every node, as before
        plain.setattr(schematron, "_DOCUMENT_PATH", schematron.re.compile("(?!)"))
        uncached = rules.validate(document)
    nodes = calls.count(test)
    assert nodes > 1
    assert cached == uncached
    assert sum(f.test == test for f in cached) == nodes  # one failure per context node, as before
    assert nodes == 3
    # the next document is another: its own value (with its idNatStruct, the assert holds)
    calls.clear()
    conforming = etree.parse(str(FIXTURES / "profile-shaped-answer.xml")).getroot()
    assert not any(f.test == test for f in rules.validate(conforming))
    assert calls.count(test) == 1
