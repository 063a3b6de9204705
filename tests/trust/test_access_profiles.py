"""Answers filtered by the client's ROR access profile, over real HTTPS with client certificates (trustme):
four clients with profiles 0-3 ask the same stored function, ITI-74 and extraction; each answer passes the
"must not appear" reports of ANS's filtre_profilN.sch, and confidential contacts reach only the profiles
entitled to them. A bridge without allow-list answers unfiltered."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import httpx
import pytest
from lxml import etree

from bridge import ns
from bridge.simulator.dataset import K_EJ, generate_dataset
from tests.trust.conftest import SCALE, SEED, Factory, Pki, serving, write_clients

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"
SOAP12 = {"Content-Type": "application/soap+xml; charset=utf-8"}
NS = {"csd": ns.CSD}
ORGANIZATION_SEARCH = b"""<?xml version="1.0" encoding="UTF-8"?>
<env:Envelope xmlns:env="http://www.w3.org/2003/05/soap-envelope" xmlns:csd="urn:ihe:iti:csd:2013">
  <env:Body><csd:careServicesRequest>
    <csd:function urn="urn:ihe:iti:csd:2014:stored-function:organization-search">
      <csd:requestParams><csd:start>1</csd:start><csd:max>40</csd:max></csd:requestParams>
    </csd:function>
  </csd:careServicesRequest></env:Body>
</env:Envelope>"""
MODIFICATIONS = (FIXTURES / "e2e" / "modifications-soap12.xml").read_bytes()
NOTIF = (
    (FIXTURES / "ror-profile" / "notif.xml")
    .read_text(encoding="utf-8")
    .replace("{params}", "<csd:dateRef>2024-01-01T00:00:00Z</csd:dateRef>")
    .encode("utf-8")
)
PROFILES = (0, 1, 2, 3)
# Confidentiality levels (TRE_R283) of the contacts each profile sees on the simulator's EJ and EG, whose
# units the answers do not show as médico-social (so profile 3 keeps level 1 only, as when in doubt).
LEVELS = {None: {"1", "2", "3"}, 0: {"1"}, 1: {"1", "2", "3"}, 2: {"1", "2"}, 3: {"1"}}


def reading() -> bytes:
    """The ROR v2.4 profile's TR_Lecture of the dataset's first EJ (its offer, EG and units)."""
    dataset = generate_dataset(SCALE, SEED)
    index = next(i for i in range(dataset.count("Organization")) if int(dataset.org_kind[i]) == K_EJ)
    resource = dataset.build("Organization", index)
    code = next(i["value"] for i in resource["identifier"] if i["system"].endswith("1.2.250.1.71.4.2.2"))
    text = (FIXTURES / "ror-profile" / "reading-establishment.xml").read_text(encoding="utf-8")
    text = text.replace("{code}", code).replace("{authority}", ns.OID_IDNATSTRUCT).replace("{extra}", "")
    return text.encode("utf-8")


@pytest.fixture(scope="module")
def answers(pki: Pki, tmp_path_factory: pytest.TempPathFactory) -> dict[int | None, dict[str, bytes]]:
    """Every client's answers to the same four requests (one bridge with the allow-list, one without)."""
    from bridge.config import load_settings

    directory = tmp_path_factory.mktemp("profiles")
    leaves = {number: pki.client(f"sih-profile-{number}") for number in PROFILES}
    entries = "".join(
        f'  - id: sih-profile-{number}\n    fingerprints: ["{pki.fingerprint(leaf)}"]\n'
        f'    regions: ["*"]\n    functions: ["*"]\n    profile: {number}\n'
        for number, leaf in leaves.items()
    )
    clients = write_clients(directory / "clients.yaml", "clients:\n" + entries)
    common: dict[str, Any] = {
        "demo_scale": SCALE,
        "demo_seed": SEED,
        "tls_cert": pki.server_cert,
        "tls_key": pki.server_key,
        "mapping_workers": 0,
    }
    requests = {
        "reading": reading(),
        "organization-search": ORGANIZATION_SEARCH,
        "iti-74": MODIFICATIONS,
        "tr-notif": NOTIF,
    }
    out: dict[int | None, dict[str, bytes]] = {}

    def ask(url: str, http: httpx.Client) -> dict[str, bytes]:
        got = {}
        for name, body in requests.items():
            answer = http.post(f"{url}/csd", content=body, headers=SOAP12)
            assert answer.status_code == 200, (name, answer.text[:500])
            got[name] = answer.content
        extraction = http.get(f"{url}/extraction")
        assert extraction.status_code == 200
        got["extraction"] = extraction.content
        return got

    settings = load_settings(**common, tls_client_ca=pki.client_ca, clients_file=clients)
    with serving(settings) as (url, _):
        for number, leaf in leaves.items():
            with httpx.Client(verify=pki.context(leaf), timeout=60) as http:
                out[number] = ask(url, http)
    with serving(load_settings(**common)) as (url, _), httpx.Client(verify=pki.context(), timeout=60) as http:
        out[None] = ask(url, http)
    return out


def documents(answer: bytes) -> list[etree._Element]:
    """The csd:CSD documents of an answer (an extraction, or the directories inside a SOAP answer)."""
    root = etree.fromstring(answer)
    if root.tag == f"{{{ns.CSD}}}CSD":
        return [root]
    found = root.xpath("//csd:CSD | //csd:queryResult | //csd:getModificationsResponse", namespaces=NS)
    assert isinstance(found, list)
    assert found, answer[:300]
    return [element for element in found if isinstance(element, etree._Element)]


def xpath(node: etree._Element, path: str) -> list[Any]:
    found = node.xpath(path, namespaces=NS)
    assert isinstance(found, list)
    return found


def levels(answer: bytes) -> Counter[str]:
    return Counter(
        str(code)
        for document in documents(answer)
        for code in document.xpath(".//csd:contact/csd:confidentialityLevel/@code", namespaces=NS)  # type: ignore[union-attr]
    )


# Reports of the filtre_profilN files that check where an element is written, not what a profile may see:
# "sensitiveUnit only in a UE" (in all four files) — while the profile's schema requires sensitiveUnit in
# every facilityExtension. That contradiction is the placement's (issue 11), not the access filter's.
PLACEMENT_REPORTS = {".[*:extension/*:sensitiveUnit]/*:codedType[not(@code='4')]"}


@pytest.mark.parametrize("number", PROFILES)
@pytest.mark.parametrize("request_name", ["reading", "organization-search", "iti-74", "extraction"])
def test_each_profile_gets_answers_its_filter_rules_accept(
    official_profile: Any, answers: dict[int | None, dict[str, bytes]], number: int, request_name: str
) -> None:
    rules = official_profile.schematron(f"filtre_profil{number}.sch")
    for document in documents(answers[number][request_name]):
        reports = [
            f"{f.path}: {f.test}"
            for f in rules.validate(document)
            if f.kind == "report" and f.test not in PLACEMENT_REPORTS
        ]
        assert reports == [], reports[:5]


@pytest.mark.parametrize("number", [None, *PROFILES])
@pytest.mark.parametrize("request_name", ["reading", "organization-search", "iti-74", "extraction"])
def test_confidential_contacts_reach_only_the_profiles_entitled(
    answers: dict[int | None, dict[str, bytes]], number: int | None, request_name: str
) -> None:
    seen = levels(answers[number][request_name])
    assert set(seen) == LEVELS[number], seen
    # Filtering removes contacts, never the organisations: the same number of public contacts for everyone.
    assert seen["1"] == levels(answers[None][request_name])["1"] > 0


def test_the_unfiltered_answer_breaks_the_restricted_profiles_rules(
    official_profile: Any, answers: dict[int | None, dict[str, bytes]]
) -> None:
    """The test above can fail: the answer of a bridge without allow-list is refused by profile 0's rules."""
    rules = official_profile.schematron("filtre_profil0.sch")
    (document,) = documents(answers[None]["extraction"])
    assert any(f.kind == "report" and "contact" in f.test for f in rules.validate(document))


def test_entities_are_the_same_for_every_profile_but_the_providers(
    answers: dict[int | None, dict[str, bytes]],
) -> None:
    def ids(answer: bytes, directory: str) -> list[str]:
        return [
            str(i)
            for d in documents(answer)
            for i in d.xpath(f".//csd:{directory}/*/@entityID", namespaces=NS)  # type: ignore[union-attr]
        ]

    for request_name in ("reading", "organization-search", "iti-74", "extraction"):
        for directory in ("organizationDirectory", "serviceDirectory", "facilityDirectory"):
            expected = ids(answers[None][request_name], directory)
            for number in PROFILES:
                assert ids(answers[number][request_name], directory) == expected, (request_name, number)
    # TR-Notif lists the same establishments to every profile (organisations are never removed).
    notified = [
        etree.fromstring(answers[number]["tr-notif"]).xpath("//*[local-name()='id_etablissement']/@code")
        for number in (None, *PROFILES)
    ]
    assert notified[0]
    assert all(codes == notified[0] for codes in notified)
    # Profiles 1 and 2 see every professional; profile 0 those of ambulatory units (champ d'activité 05),
    # profile 3 those of médico-social or ambulatory ones (04, 05), by the champ of the offer each works in.
    # A provider is one professional (urn:ror:rpps:<RPPS>) with the UEs of the situations the answer shows
    # (ITI-74: the changed ones): its champs are those of these UEs' offers in the dataset.
    dataset = generate_dataset(SCALE, SEED)

    def champs(answer: bytes) -> dict[str, set[str]]:
        found: dict[str, set[str]] = {}
        for document in documents(answer):
            for provider in xpath(document, ".//csd:providerDirectory/csd:provider"):
                units = xpath(provider, "csd:facilities/csd:facility/@entityID")
                offers = [
                    dataset.identifier_index("HealthcareService", None, unquote(str(u).rsplit(":", 1)[-1]))
                    for u in units
                ]
                found[str(provider.get("entityID"))] = {
                    dataset.lists.champs.codes[int(dataset.offer_champ[index])].code
                    for indexes in offers
                    for index in indexes
                }
        return found

    for request_name in ("iti-74", "extraction"):
        everyone = ids(answers[None][request_name], "providerDirectory")
        assert everyone
        champ = champs(answers[None][request_name])
        assert all(champ[p] for p in everyone), "every provider's units are known"
        assert ids(answers[1][request_name], "providerDirectory") == everyone
        assert ids(answers[2][request_name], "providerDirectory") == everyone
        for number, allowed in ((0, {"05"}), (3, {"04", "05"})):
            expected = [p for p in everyone if champ[p] <= allowed]
            assert ids(answers[number][request_name], "providerDirectory") == expected, (request_name, number)
        ambulatory = [p for p in everyone if champ[p] == {"05"}]
        assert 0 < len(ambulatory) < len(everyone), "the test means something"


def test_the_extraction_mapping_workers_filter_by_the_profile_they_are_given(
    pki: Pki, make_settings: Factory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    answers: dict[int | None, dict[str, bytes]],
) -> None:  # fmt: skip
    """Every directory mapped in two worker processes (threshold lowered to 1): a contextvar does not cross
    processes, the profile is handed to them with each batch; the documents equal the in-thread ones."""
    monkeypatch.setattr("bridge.pipeline.workers.PARALLEL_FROM", 1)
    monkeypatch.setattr("bridge.pipeline.workers.BATCH_SIZE", 20)
    leaves = {number: pki.client(f"sih-workers-{number}") for number in (0, 1)}
    entries = "".join(
        f'  - id: sih-workers-{number}\n    fingerprints: ["{pki.fingerprint(leaf)}"]\n'
        f'    regions: ["*"]\n    functions: ["*"]\n    profile: {number}\n'
        for number, leaf in leaves.items()
    )
    clients = write_clients(tmp_path / "clients.yaml", "clients:\n" + entries)
    settings = make_settings(clients_file=clients, mapping_workers=2)
    got = {}
    with serving(settings) as (url, _):
        for number, leaf in leaves.items():
            with httpx.Client(verify=pki.context(leaf), timeout=120) as http:
                answer = http.get(f"{url}/extraction")
            assert answer.status_code == 200
            got[number] = answer.content
    for number in (0, 1):
        assert levels(got[number]) == levels(answers[number]["extraction"])
        assert got[number].count(b"<csd:provider ") == answers[number]["extraction"].count(b"<csd:provider ")
    assert set(levels(got[0])) == {"1"}
    assert set(levels(got[1])) == {"1", "2", "3"}
