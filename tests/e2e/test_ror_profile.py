"""End-to-end: the official ROR v2.4 profile's requests and operations over real HTTP.

ANS's PLATINES request templates (read from ../shared/reference/ror-v24/platines/ at test time, filled with
identifiers taken from the simulator dataset) are posted as SOAP 1.2 and SOAP 1.1, and sent by zeep built from
the served ROR WSDL (`?wsdl=ror`); the PLATINES XPath assertions on the answer envelope are evaluated with an
XPath 2.0 engine; errors come back as the profile's `erreur`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import elementpath
import httpx
import pytest
import zeep
import zeep.exceptions
from lxml import etree

from bridge import ns
from bridge.simulator.dataset import Dataset
from tests.e2e import deltas
from tests.e2e.conftest import RunningBridge, identifier
from tests.expected import answer_csd

SOAPUI = "http://eviware.com/soapui/config"
LECTURE = "C_Lecture_EG_Offre_complete_EJ_sans_date_sans_restrictionOI_profil1.xml"
NOTIF = "C_Notif_parametrable__conformite_au_schema.xml"
IDNATSTRUCT_SYSTEM = "urn:oid:1.2.250.1.71.4.2.2"
OI = "https://oi.esante.gouv.fr"
CHAMP_SYSTEM = "https://mos.esante.gouv.fr/NOS/TRE_R227-ChampActivite/FHIR/TRE-R227-ChampActivite"
EJ, EG, UE = 0, 1, 5  # Dataset.org_kind
C = {"csd": ns.CSD, "ror": ns.ROR, "s12": ns.SOAP12, "s11": ns.SOAP11}
OUR_XSD = Path(__file__).resolve().parents[2] / "xsd"
FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "ror-profile"


def fixture(name: str, **values: str) -> bytes:
    """A request file of tests/fixtures/ror-profile/ with its {placeholders} filled."""
    text = (FIXTURES / name).read_text(encoding="utf-8")
    for key, value in values.items():
        text = text.replace("{" + key + "}", value)
    assert "{" not in text, f"{name}: a placeholder is left"
    return text.encode("utf-8")


def reading(code: str, extra: str = "", authority: str = ns.OID_IDNATSTRUCT) -> bytes:
    return fixture("reading-establishment.xml", code=code, authority=authority, extra=extra)


def notif_request(params: str) -> bytes:
    return fixture("notif.xml", params=params)


# --------------------------------------------------------------------------------------------------
# The PLATINES projects: request templates, properties, assertions


@dataclass(frozen=True)
class Assertion:
    kind: str  # SoapUI assertion type, e.g. "XPath Match", "Simple NotContains"
    name: str
    path: str | None  # XPath Match: the XPath 2.0 expression
    content: str | None  # XPath Match: the expected value; Simple NotContains: the token


@dataclass(frozen=True)
class Step:
    """A PLATINES test step sending a request: its template, the properties it is filled from, its checks."""

    template: str
    properties: dict[str, str]
    assertions: tuple[Assertion, ...]


@dataclass(frozen=True)
class Project:
    templates: tuple[str, ...]  # the interface's request templates ("?" placeholders)
    steps: tuple[Step, ...]


def _text(element: etree._Element, local: str) -> str | None:
    found = element.find(f"{{{SOAPUI}}}{local}")
    return found.text if found is not None else None


def load_project(path: Path) -> Project:
    root = etree.parse(str(path)).getroot()
    templates = tuple(
        str(call.findtext(f"{{{SOAPUI}}}request"))
        for call in root.iter(f"{{{SOAPUI}}}call")
        if "Envelope" in (call.findtext(f"{{{SOAPUI}}}request") or "")
    )
    steps = []
    for case in root.iter(f"{{{SOAPUI}}}testCase"):
        properties: dict[str, str] = {}
        for step in case.iter(f"{{{SOAPUI}}}testStep"):
            config = step.find(f"{{{SOAPUI}}}config")
            if config is None:
                continue
            if step.get("type") == "properties":
                for prop in config.iter(f"{{{SOAPUI}}}property"):
                    properties[str(_text(prop, "name"))] = _text(prop, "value") or ""
            elif step.get("type") == "request":
                request = config.find(f"{{{SOAPUI}}}request")
                assert request is not None
                assertions = []
                for item in request.iter(f"{{{SOAPUI}}}assertion"):
                    configuration = item.find(f"{{{SOAPUI}}}configuration")
                    path = content = None
                    if configuration is not None:
                        path = configuration.findtext("path")
                        content = configuration.findtext("content") or configuration.findtext("token")
                    assertions.append(Assertion(str(item.get("type")), str(item.get("name")), path, content))
                template = str(request.findtext(f"{{{SOAPUI}}}request"))
                steps.append(Step(template, dict(properties), tuple(assertions)))
    return Project(templates, tuple(steps))


@pytest.fixture(scope="module")
def platines(reference_dir: Path) -> Path:
    folder = reference_dir / "ror-v24" / "platines"
    if not (folder / LECTURE).is_file() or not (folder / NOTIF).is_file():
        pytest.skip("the PLATINES projects are not in ../shared/reference/ror-v24/platines")
    return folder


@pytest.fixture(scope="module")
def lecture(platines: Path) -> Project:
    return load_project(platines / LECTURE)


@pytest.fixture(scope="module")
def notif(platines: Path) -> Project:
    return load_project(platines / NOTIF)


# --------------------------------------------------------------------------------------------------
# Demo identifiers from the simulator dataset


@dataclass(frozen=True)
class Demo:
    eg: int  # dataset index of an EG with at least one unité élémentaire under it
    eg_code: str  # its idNatStruct
    ej_code: str
    oi_code: str  # the OI identifier of a UE under it
    champ: str  # a champ d'activité of one of its offers
    since: datetime  # a date some establishments changed after, not all


def _organization(dataset: Dataset, index: int) -> dict[str, Any]:
    resource = dataset.build("Organization", index)
    assert isinstance(resource, dict)
    return resource


@pytest.fixture(scope="module")
def demo(bridge: RunningBridge) -> Demo:
    dataset = bridge.dataset
    for index in range(len(dataset.org_kind)):
        if int(dataset.org_kind[index]) != EG:
            continue
        low, high = dataset.subtree_range(index)
        units = [u for u in range(low, high) if int(dataset.org_kind[u]) == UE]
        first_offer, end_offer = dataset.offers_of_orgs(low, high)
        if not units or first_offer >= end_offer:
            continue
        champs = [
            coding["code"]
            for coding in dataset.build("HealthcareService", first_offer)["type"][0]["coding"]
            if coding["system"] == CHAMP_SYSTEM
        ]
        eg = _organization(dataset, index)
        ej = _organization(dataset, int(dataset.org_parent[index]))
        unit = _organization(dataset, units[0])
        # A date after which some establishments changed, not all of them.
        stamps = sorted(
            datetime.fromisoformat(str(_organization(dataset, i)["meta"]["lastUpdated"])).astimezone(UTC)
            for i in range(len(dataset.org_kind))
        )
        egs = all_eg_codes(dataset)
        since = next(s for s in reversed(stamps) if len(expected_egs(dataset, s)) * 2 >= len(egs) // 4)
        assert 0 < len(expected_egs(dataset, since)) < len(egs)
        return Demo(
            eg=index,
            eg_code=str(identifier(eg, IDNATSTRUCT_SYSTEM)),
            ej_code=str(identifier(ej, IDNATSTRUCT_SYSTEM)),
            oi_code=str(identifier(unit, OI)),
            champ=champs[0],
            since=since,
        )
    raise AssertionError("no EG with a unité élémentaire and offers in the demo dataset")


# --------------------------------------------------------------------------------------------------
# Filling the templates, posting them


_PLACEHOLDER = re.compile(r"\$\{(#Project|[^#{}]*)#([^{}]+)\}")


def fill_step(step: Step, project: dict[str, str]) -> bytes:
    """A test step's request with its `${step#property}` and `${#Project#property}` placeholders filled.

    As SoapUI expands them: a step property the step does not set is empty (the Lecture template names
    `dateRef`, `champActivite_code1`… in comments only); project properties are the demo values given.
    """

    def value(match: re.Match[str]) -> str:
        return project[match[2]] if match[1] == "#Project" else step.properties.get(match[2], "")

    text = step.template
    for _ in range(5):  # a step property may itself name a project property
        text = _PLACEHOLDER.sub(value, text)
    assert "${" not in text, text
    return text.encode()


def fill_template(template: str, keep: str | None, demo: Demo) -> bytes:
    """An interface template ("?" everywhere): `expression` dropped (a choice the bridge does not serve),
    only the `keep` reading of the function's choice kept, every "?" filled with demo values."""
    root = etree.fromstring(template.encode())
    readings = (ns.ROR_READ_ESTABLISHMENT, ns.ROR_READ_INTERNAL_ORGANIZATION)
    for element in list(root.iter()):
        if not isinstance(element.tag, str):
            continue
        local = etree.QName(element).localname
        parent = element.getparent()
        if parent is not None and (local == "expression" or (local in readings and local != keep)):
            parent.remove(element)
    for element in root.iter():
        if not isinstance(element.tag, str):
            continue
        local = etree.QName(element).localname
        if local == "id_etablissement":
            element.attrib.update({"code": demo.eg_code, "assigningAuthorityName": ns.OID_IDNATSTRUCT})
        elif local == "organisationID":
            element.attrib.update({"code": demo.oi_code, "assigningAuthorityName": OI})
        elif local == "dateRef":
            element.text = demo.since.isoformat()
        elif local == "typeActivity":
            element.attrib.update({"code": demo.champ, "codingScheme": "1.2.250.1.213.3.3.17"})
            element.text = None
        elif local == "supportedPatient":
            element.attrib.update({"code": "01", "codingScheme": "1.2.250.1.213.3.3.29"})
            element.text = None
        elif local == "restrictedOrganisation":
            element.text = "false"
    filled = etree.tostring(root)
    assert b'"?"' not in filled
    assert b">?<" not in filled
    return filled


def send(bridge: RunningBridge, body: bytes, envelope: str, path: str = "") -> httpx.Response:
    """POST a SOAP 1.2 request as it is, or turned into SOAP 1.1 (text/xml + SOAPAction)."""
    action = ns.ACTION_ROR_UPDATE if ns.ROR_NOTIF_REQUEST.encode() in body else ns.ACTION_ROR_SEARCH
    if envelope == "soap12":
        headers = {"Content-Type": f'application/soap+xml; charset=utf-8; action="{action}"'}
    else:
        body = body.replace(ns.SOAP12.encode(), ns.SOAP11.encode())
        headers = {"Content-Type": "text/xml; charset=utf-8", "SOAPAction": f'"{action}"'}
    return httpx.post(bridge.csd + path, content=body, headers=headers, timeout=120)


def body_of(response: httpx.Response) -> etree._Element:
    root = etree.fromstring(response.content)
    body = root.find(f"{{{ns.SOAP12}}}Body")
    if body is None:
        body = root.find(f"{{{ns.SOAP11}}}Body")
    assert body is not None
    return body[0]


def platines_envelope_assertions(project: Project) -> list[Assertion]:
    """The PLATINES XPath assertions that concern the answer envelope (result/facilityNumber), not the
    placement of the entities inside it."""
    found = [a for step in project.steps for a in step.assertions if a.path and "facilityNumber" in a.path]
    assert found, "the PLATINES project no longer has its facilityNumber assertion"
    return found


def check_platines_xpath(response: httpx.Response, assertions: list[Assertion]) -> None:
    """SoapUI's XPath Match: the XPath 2.0 expression over the whole answer gives the expected text."""
    root = etree.fromstring(response.content)
    for assertion in assertions:
        assert assertion.path is not None
        got = elementpath.select(root, assertion.path, parser=elementpath.XPath2Parser)
        value = got[0] if isinstance(got, list) and len(got) == 1 else got
        assert str(value) == assertion.content, f"{assertion.name}: {value}"


@pytest.fixture(scope="module")
def official_profile(reference_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> etree.XMLSchema:
    """The profile's official schema (offline copy) with the three elements its WSDL declares in
    urn:asip:ror:2015 (TR-Notif request and answer, erreur), as the WSDL's own types do."""
    xsd = reference_dir / "ror-v24" / "local" / "IHE_ProfilCSD-ExtensionROR_fr-v2.4.xsd"
    if not xsd.is_file():
        pytest.skip("the profile's local schema is not in ../shared/reference/ror-v24/local")
    wrapper = tmp_path_factory.mktemp("profile") / "ror-2015.xsd"
    wrapper.write_bytes(fixture("official-ror-2015.xsd", official=xsd.as_uri()))
    return etree.XMLSchema(etree.parse(str(wrapper)))


@pytest.fixture(scope="module")
def official_csd(reference_dir: Path) -> etree.XMLSchema:
    xsd = reference_dir / "ror-v24" / "local" / "IHE_ProfilCSD-ExtensionROR_fr-v2.4.xsd"
    if not xsd.is_file():
        pytest.skip("the profile's local schema is not in ../shared/reference/ror-v24/local")
    return etree.XMLSchema(etree.parse(str(xsd)))


@pytest.fixture(scope="module")
def our_profile() -> etree.XMLSchema:
    return etree.XMLSchema(etree.parse(str(OUR_XSD / "ror-operations.xsd")))


def check_reading_envelope(
    response: httpx.Response, our: etree.XMLSchema, official: etree.XMLSchema
) -> etree._Element:
    """careServicesResponse/result/facilityNumber + queryResult, valid against our schema; the envelope valid
    against the official one, its CSD content emptied (the entities' placement and the profile's fifth
    directory, deviceDirectory, belong to the answer shape, tested with it)."""
    assert response.status_code == 200, response.text[:2000]
    answer = body_of(response)
    our.assertValid(answer)
    assert [etree.QName(c).localname for c in answer] == ["result"]
    assert [etree.QName(c).localname for c in answer[0]] == ["facilityNumber", "queryResult"]
    envelope = etree.fromstring(etree.tostring(answer))
    query_result = envelope[0][1]
    for directory in list(query_result):
        query_result.remove(directory)
    for name in ("organization", "service", "facility", "provider", "device"):
        etree.SubElement(query_result, ns.qn(ns.CSD, f"{name}Directory"))
    official.assertValid(envelope)
    return answer


def ids_in(answer: etree._Element) -> set[str]:
    return {str(e) for e in answer.xpath("//csd:queryResult/*/*/@entityID", namespaces=C)}


def notif_codes(answer: etree._Element) -> list[str]:
    assert etree.QName(answer) == etree.QName(ns.ROR, ns.ROR_NOTIF_RESPONSE)
    entries = answer.findall(f"{{{ns.CSD}}}etablissementReponseNotif")
    assert answer.findtext(f"{{{ns.CSD}}}result") == str(len(entries))
    codes = []
    for entry in entries:
        (other,) = entry.findall(f"{{{ns.CSD}}}id_etablissement")
        assert other.get("assigningAuthorityName") == ns.OID_IDNATSTRUCT
        codes.append(str(other.get("code")))
    return codes


def expected_egs(dataset: Dataset, since: datetime) -> set[str]:
    """Oracle: the EG (organisation right under an EJ) on the chain of every entity ITI-74 reports
    (deltas.chain_starts), by idNatStruct."""
    starts = deltas.chain_starts(dataset, deltas.changes(dataset, since))
    egs = set()
    for org in starts:
        chain = [org]
        while int(dataset.org_parent[chain[-1]]) >= 0:
            chain.append(int(dataset.org_parent[chain[-1]]))
        if len(chain) >= 2:
            egs.add(chain[-2])
    return {str(identifier(_organization(dataset, i), IDNATSTRUCT_SYSTEM)) for i in egs}


def all_eg_codes(dataset: Dataset) -> set[str]:
    return {
        str(identifier(_organization(dataset, i), IDNATSTRUCT_SYSTEM))
        for i in range(len(dataset.org_kind))
        if int(dataset.org_kind[i]) == EG
    }


ENVELOPES = ["soap12", "soap11"]


# --------------------------------------------------------------------------------------------------
# TR_Lecture-OffresSanteEtablissement / TR_Lecture-OffreSanteOrganisationInterne


def test_the_platines_projects_hold_the_templates(lecture: Project, notif: Project) -> None:
    assert len(lecture.templates) == 2  # the interface's two operations
    assert len(notif.templates) == 2
    assert len(lecture.steps) == 1  # "Envoi de la requête"
    assert len(notif.steps) == 1  # "Envoi de la requête Notif"


@pytest.mark.parametrize("envelope", ENVELOPES)
def test_platines_establishment_reading(
    bridge: RunningBridge,
    lecture: Project,
    demo: Demo,
    envelope: str,
    our_csd_schema: etree.XMLSchema,
    official_csd: etree.XMLSchema,
) -> None:
    """PLATINES "Lecture EG sans filtre pour le Profil 1": the EG by idNatStruct, restrictionOI 0."""
    (step,) = lecture.steps
    request = fill_step(step, {"idNat_Struct": demo.eg_code})
    # ANS's request is valid against our schema as against the profile's.
    sent = etree.fromstring(request).find(f"{{{ns.SOAP12}}}Body")
    assert sent is not None
    our_csd_schema.assertValid(sent[0])
    official_csd.assertValid(sent[0])
    response = send(bridge, request, envelope)
    answer = check_reading_envelope(response, our_csd_schema, official_csd)
    check_platines_xpath(response, platines_envelope_assertions(lecture))
    entities = ids_in(answer)
    assert f"urn:ror:idnatstruct:{demo.eg_code}" in entities
    assert f"urn:ror:idnatstruct:{demo.ej_code}" in entities
    assert answer.xpath("count(//csd:serviceDirectory/csd:service)", namespaces=C) > 0


@pytest.mark.parametrize("keep", [ns.ROR_READ_ESTABLISHMENT, ns.ROR_READ_INTERNAL_ORGANIZATION])
@pytest.mark.parametrize("project", [LECTURE, NOTIF])
def test_platines_interface_templates_of_the_readings(
    bridge: RunningBridge,
    platines: Path,
    project: str,
    keep: str,
    demo: Demo,
    our_csd_schema: etree.XMLSchema,
    official_csd: etree.XMLSchema,
) -> None:
    """The interface's careServicesRequest template (both projects carry one), each reading of its choice,
    every optional parameter filled (dateRef, typeActivity, supportedPatient, restrictedOrganisation)."""
    loaded = load_project(platines / project)
    (template,) = [t for t in loaded.templates if "careServicesRequest" in t]
    response = send(bridge, fill_template(template, keep, demo), "soap12")
    answer = check_reading_envelope(response, our_csd_schema, official_csd)
    check_platines_xpath(response, platines_envelope_assertions(load_project(platines / LECTURE)))
    if keep == ns.ROR_READ_ESTABLISHMENT:
        # supportedPatient 01 matches no demo offer (the simulator's offers carry no TRE_R239 code): the
        # establishment and its EJ only.
        assert ids_in(answer) == {
            f"urn:ror:idnatstruct:{demo.eg_code}",
            f"urn:ror:idnatstruct:{demo.ej_code}",
        }
    else:
        # the organisation read is a v3 UE organisation: the profile's UEs are its offers (facilities coded
        # TRE_R207 #4, under their EG); it is no entity of its own
        assert answer.xpath("count(//csd:facility[csd:codedType/@code = '4'])", namespaces=C) >= 1
        assert answer.xpath("count(//csd:otherID[contains(@code, $c)])", namespaces=C, c=demo.oi_code) == 0


def test_reading_filters_narrow_the_offers(bridge: RunningBridge, demo: Demo) -> None:
    """typeActivity keeps the offers of that champ d'activité; dateRef the offers changed since (or whose
    organisation chain changed)."""

    def services(inner: str) -> set[str]:
        response = send(bridge, reading(demo.eg_code, inner), "soap12")
        assert response.status_code == 200, response.text[:2000]
        found = body_of(response).xpath("//csd:service/@entityID", namespaces=C)
        return {str(s) for s in found}

    everything = services("")
    assert everything
    champ = services(f'<csd:typeActivity code="{demo.champ}" codingScheme="1.2.250.1.213.3.3.17"/>')
    assert champ
    assert champ <= everything
    other = services('<csd:typeActivity code="99" codingScheme="1.2.250.1.213.3.3.17"/>')
    assert other == set()
    future_enough = services("<csd:dateRef>2026-01-01T00:00:00Z</csd:dateRef>")
    assert future_enough < everything


# --------------------------------------------------------------------------------------------------
# TR-Notif-ListeEtablissementsMajApresDate


@pytest.mark.parametrize("envelope", ENVELOPES)
def test_platines_notif(
    bridge: RunningBridge,
    notif: Project,
    envelope: str,
    our_profile: etree.XMLSchema,
    official_profile: etree.XMLSchema,
) -> None:
    """PLATINES "Notif avec paramètres utilisateur" as shipped (its dateRef default 2018-05-30T7:00:00,
    champ d'activité 04, public pris en charge 01): not a fault, schema-valid, no "error" in the answer."""
    (step,) = notif.steps
    request = fill_step(step, {"dateRef": "2018-05-30T7:00:00"})
    sent = etree.fromstring(request).find(f"{{{ns.SOAP12}}}Body")
    assert sent is not None
    # Only its dateRef default is not an xs:dateTime (one-digit hour): the bridge reads it all the same.
    for schema in (our_profile, official_profile):
        assert not schema.validate(sent[0])
        assert "dateRef" in str(schema.error_log.last_error)
        fixed = etree.fromstring(etree.tostring(sent[0]).replace(b"T7:", b"T07:"))
        schema.assertValid(fixed)
    response = send(bridge, request, envelope)
    assert response.status_code == 200, response.text[:2000]
    kinds = {a.kind for a in step.assertions}
    assert kinds == {"SOAP Fault Assertion", "Schema Compliance", "Simple NotContains"}
    (token,) = [a.content for a in step.assertions if a.kind == "Simple NotContains"]
    assert token
    assert token not in response.text  # PLATINES: case-sensitive "Not Contains"
    answer = body_of(response)
    our_profile.assertValid(answer)
    official_profile.assertValid(answer)
    codes = notif_codes(answer)
    assert codes
    assert len(codes) == len(set(codes))
    assert set(codes) <= all_eg_codes(bridge.dataset)


def test_notif_lists_exactly_the_changed_establishments(bridge: RunningBridge, demo: Demo) -> None:
    """Without filters, the EG of every changed organisation and offer (an offer also through its lieu or
    its professionals), against an oracle computed from the dataset."""
    date = f"<csd:dateRef>{demo.since.isoformat()}</csd:dateRef>"
    response = send(bridge, notif_request(date), "soap12")
    assert response.status_code == 200, response.text[:2000]
    codes = set(notif_codes(body_of(response)))
    assert codes == expected_egs(bridge.dataset, demo.since)
    assert codes < all_eg_codes(bridge.dataset), "the date must leave some establishments out"
    # A champ d'activité narrows the changed offers, never widens the list.
    filtered = notif_request(f'{date}<csd:typeActivity code="{demo.champ}" codingScheme="x"/>')
    narrowed = set(notif_codes(body_of(send(bridge, filtered, "soap12"))))
    assert narrowed <= codes


# --------------------------------------------------------------------------------------------------
# zeep, built from the served ROR WSDL


@pytest.fixture(scope="module")
def ror_client(bridge: RunningBridge) -> zeep.Client:
    return zeep.Client(f"{bridge.csd}?wsdl=ror")


def test_zeep_reads_an_establishment(ror_client: zeep.Client, demo: Demo) -> None:
    (service,) = ror_client.wsdl.services.values()
    assert service.name == "CareServicesRequest_Service"
    result = ror_client.service.careServicesRequest_Request(
        function={
            "urn": ns.ROR_READ_URN,
            "encapsulated": True,
            ns.ROR_READ_ESTABLISHMENT: {
                "etablissementDemandeLecture": {
                    "id_etablissement": {"code": demo.eg_code, "assigningAuthorityName": ns.OID_IDNATSTRUCT},
                    "restrictedOrganisation": False,
                }
            },
        }
    )
    assert isinstance(result.result.facilityNumber, int)
    organizations = {o.entityID for o in result.result.queryResult.organizationDirectory.organization}
    assert f"urn:ror:idnatstruct:{demo.eg_code}" in organizations


def test_zeep_reads_an_internal_organization(ror_client: zeep.Client, demo: Demo) -> None:
    result = ror_client.service.careServicesRequest_Request(
        function={
            "urn": ns.ROR_READ_URN,
            "encapsulated": True,
            ns.ROR_READ_INTERNAL_ORGANIZATION: {
                "organisationID": {"code": demo.oi_code, "assigningAuthorityName": OI}
            },
        }
    )
    # the v3 UE organisation read: its offers are the profile's UEs (facilities coded TRE_R207 #4), under
    # its EG
    facilities = result.result.queryResult.facilityDirectory.facility
    units = [f for f in facilities if any(c.code == "4" for c in f.codedType)]
    assert units
    held = {o.entityID for f in units for o in f.organizations.organization}
    assert held == {f"urn:ror:idnatstruct:{demo.eg_code}"}


def test_zeep_notif(ror_client: zeep.Client, bridge: RunningBridge, demo: Demo) -> None:
    operation = ror_client.service["TR-Notif-ListeEtablissementsMajApresDate_Demande"]
    result = operation(params={"dateRef": demo.since})
    codes = [entry.id_etablissement.code for entry in result.etablissementReponseNotif]
    assert result.result == len(codes) > 0
    assert set(codes) == expected_egs(bridge.dataset, demo.since)


@pytest.mark.parametrize(
    ("operation", "arguments", "code"),
    [
        (
            "careServicesRequest_Request",
            {
                "function": {
                    "urn": ns.ROR_READ_URN,
                    "encapsulated": True,
                    ns.ROR_READ_ESTABLISHMENT: {
                        "etablissementDemandeLecture": {
                            "id_etablissement": {"code": "1999999999", "assigningAuthorityName": "x"}
                        }
                    },
                }
            },
            "110",
        ),
        (
            "TR-Notif-ListeEtablissementsMajApresDate_Demande",
            {"params": {"dateRef": datetime(2999, 1, 1)}},
            "106",
        ),
    ],
)
def test_zeep_sees_the_profile_erreur(
    ror_client: zeep.Client, operation: str, arguments: dict[str, Any], code: str
) -> None:
    with pytest.raises(zeep.exceptions.Fault) as raised:
        ror_client.service[operation](**arguments)
    detail = raised.value.detail
    assert detail is not None
    erreur = detail.find(f"{{{ns.ROR}}}erreur")
    assert erreur is not None
    assert erreur.get("code") == code
    assert erreur.text == raised.value.message


# --------------------------------------------------------------------------------------------------
# Errors as the profile's erreur, plain posts

_UNKNOWN = "1999999999"
_ERRORS: dict[str, bytes] = {
    "unknown-establishment": reading(_UNKNOWN),
    "unknown-oi": fixture("reading-internal-organization.xml", code="99/NOPE", authority=OI),
    "reading-bad-date": reading(_UNKNOWN, "<csd:dateRef>hier</csd:dateRef>"),
    "restricted": reading(_UNKNOWN, "<csd:restrictedOrganisation>1</csd:restrictedOrganisation>"),
    "notif-no-date": notif_request(""),
    "notif-bad-date": notif_request("<csd:dateRef>30/05/2018</csd:dateRef>"),
}


@pytest.mark.parametrize("envelope", ENVELOPES)
@pytest.mark.parametrize(
    ("name", "subcode", "code"),
    [
        ("unknown-establishment", "UnknownEntity", "110"),
        ("unknown-oi", "UnknownEntity", "110"),
        ("reading-bad-date", "InvalidParameter", "106"),
        ("restricted", "UnknownEntity", "110"),  # served (restrict_document): the establishment is unknown
        ("notif-no-date", "InvalidParameter", "106"),
        ("notif-bad-date", "InvalidParameter", "106"),
    ],
)
def test_errors_are_the_profile_erreur(
    bridge: RunningBridge,
    envelope: str,
    name: str,
    subcode: str,
    code: str,
    official_profile: etree.XMLSchema,
) -> None:
    response = send(bridge, _ERRORS[name], envelope)
    assert response.status_code == (400 if envelope == "soap12" else 500)
    root = etree.fromstring(response.content)
    (erreur,) = root.xpath(
        "//*[local-name()='Fault']/*[local-name()='Detail' or local-name()='detail']/ror:erreur", namespaces=C
    )
    official_profile.assertValid(erreur)
    assert erreur.get("code") == code
    assert erreur.get("message") == subcode
    assert erreur.text
    # The existing fault codes and subcodes stay.
    assert root.xpath("string(//*[local-name()='error']/@subcode)") == subcode


def test_the_bridge_own_urns_stay_aliases(bridge: RunningBridge, demo: Demo) -> None:
    """The bridge's own establishment-offers URN answers the same records as the profile's reading."""
    own = fixture("establishment-offers-own-urn.xml", code=demo.eg_code, authority=ns.OID_IDNATSTRUCT)
    profile = reading(demo.eg_code)
    first = answer_csd(body_of(send(bridge, own, "soap12")))
    second = answer_csd(body_of(send(bridge, profile, "soap12")))
    assert etree.tostring(first, method="c14n2") == etree.tostring(second, method="c14n2")


# --------------------------------------------------------------------------------------------------
# Serving the ROR WSDL


@pytest.mark.parametrize("path", ["/csd", "/csd/ara"])
def test_ror_wsdl_is_served_next_to_the_ihe_one(bridge: RunningBridge, path: str) -> None:
    ror = httpx.get(f"{bridge.url}{path}?wsdl=ror")
    assert ror.status_code == 200
    root = etree.fromstring(ror.content)
    assert root.get("targetNamespace") == ns.ROR
    assert root.xpath("//*[local-name()='address']/@location") == [f"{bridge.url}{path}"]
    for location in root.xpath("//*[local-name()='import']/@schemaLocation"):
        assert str(location).startswith(f"{bridge.url}/csd/schemas/")
        assert httpx.get(str(location)).status_code == 200
    for name in ("ror-operations.xsd", "ror-profile.xsd", "csd.xsd", "xml.xsd"):
        assert httpx.get(f"{bridge.url}/csd/schemas/{name}").status_code == 200
    # ?wsdl and ?wsdl=ihe stay the IHE WSDL; anything else is a 404 naming the choices.
    for query in ("wsdl", "WSDL", "wsdl=ihe"):
        ihe = etree.fromstring(httpx.get(f"{bridge.url}{path}?{query}").content)
        assert ihe.get("targetNamespace") == ns.CSD
    assert httpx.get(f"{bridge.url}{path}?wsdl=ROR").status_code == 200
    wrong = httpx.get(f"{bridge.url}{path}?wsdl=nope")
    assert wrong.status_code == 404
    assert "?wsdl=ror" in wrong.text


@pytest.mark.parametrize("project", [LECTURE, NOTIF])
def test_platines_interface_templates_of_the_notif(
    bridge: RunningBridge,
    platines: Path,
    project: str,
    demo: Demo,
    our_profile: etree.XMLSchema,
    official_profile: etree.XMLSchema,
) -> None:
    """The interface's TR-Notif template (both projects carry one), every parameter filled."""
    (template,) = [t for t in load_project(platines / project).templates if ns.ROR_NOTIF_REQUEST in t]
    response = send(bridge, fill_template(template, None, demo), "soap12")
    assert response.status_code == 200, response.text[:2000]
    answer = body_of(response)
    our_profile.assertValid(answer)
    official_profile.assertValid(answer)
    # supportedPatient 01 matches no demo offer: the establishments of the changed organisations, lieux and
    # professionals remain (the filters narrow the changed offers only).
    assert set(notif_codes(answer)) <= expected_egs(bridge.dataset, demo.since)


def test_notif_bare_and_regional(bridge: RunningBridge, demo: Demo) -> None:
    """A bare TR-Notif (no envelope) is answered bare; /csd/{region} lists that region's establishments."""
    bare = fixture("notif-bare.xml", date=demo.since.isoformat())
    response = httpx.post(bridge.csd, content=bare, headers={"Content-Type": "application/xml"}, timeout=120)
    assert response.status_code == 200, response.text[:2000]
    national = set(notif_codes(etree.fromstring(response.content)))
    assert national == expected_egs(bridge.dataset, demo.since)
    regional = httpx.post(
        f"{bridge.csd}/ara", content=bare, headers={"Content-Type": "application/xml"}, timeout=120
    )
    assert regional.status_code == 200, regional.text[:2000]
    assert set(notif_codes(etree.fromstring(regional.content))) < national


@pytest.mark.parametrize("envelope", ENVELOPES)
def test_an_unreadable_profile_request_still_gets_the_erreur(bridge: RunningBridge, envelope: str) -> None:
    """The profile's soapAction in the headers is enough: malformed XML is answered with erreur 101."""
    broken = reading("1").replace(b"</soap:Body>", b"</soap:Bod>")
    response = send(bridge, broken, envelope)
    assert response.status_code == (400 if envelope == "soap12" else 500)
    erreur = etree.fromstring(response.content).find(f".//{{{ns.ROR}}}erreur")
    assert erreur is not None
    assert erreur.get("code") == "101"
    # Without the profile's action, the same fault has no erreur (an IHE client's).
    plain = httpx.post(bridge.csd, content=broken, headers={"Content-Type": "application/soap+xml"})
    assert etree.fromstring(plain.content).find(f".//{{{ns.ROR}}}erreur") is None
