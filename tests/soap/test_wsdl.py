"""Tests of the served WSDL and schemas (bridge/soap/wsdl.py, xsd/): address and schemaLocation
rewriting, both SOAP bindings, refusal of path traversal, offline compilation of the schema set, the
historical request forms, and zeep loading the WSDL offline and building valid ITI-73 / ITI-74 messages."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest
import xmlschema
import zeep
import zeep.wsa
from lxml import etree

from bridge import ns
from bridge.shipped import shipped_dir
from bridge.soap.wsdl import ROR_WSDL_FILE, render_wsdl, schema_file

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "csd"
REQUESTS = FIXTURES / "requests"
SERVICE_URL = "http://bridge.example.fr:8080/csd/ara"
SCHEMA_BASE = "http://bridge.example.fr:8080/csd/schemas/"
NS = {"wsdl": ns.WSDL, "soap": ns.WSDL_SOAP11, "soap12": ns.WSDL_SOAP12, "xs": ns.XSD, "wsam": ns.WSAM}
PORTS = {"CareServicesDiscoverySoap12": ns.WSDL_SOAP12, "CareServicesDiscoverySoap11": ns.WSDL_SOAP11}
OPERATIONS = {
    "FindMatchingCareServices": (ns.ACTION_ITI73_REQUEST, ns.ACTION_ITI73_RESPONSE),
    "QueryForUpdatedServices": (ns.ACTION_ITI74_REQUEST, ns.ACTION_ITI74_RESPONSE),
}


def parse(data: bytes) -> etree._Element:
    return etree.fromstring(data, etree.XMLParser(resolve_entities=False, no_network=True))


def wsdl_root(service_url: str = SERVICE_URL, schema_base: str = SCHEMA_BASE) -> etree._Element:
    return parse(render_wsdl(service_url, schema_base))


# --------------------------------------------------------------------------------------------------
# render_wsdl


def test_both_port_addresses_are_the_url_the_client_used() -> None:
    root = wsdl_root()
    ports = root.findall("wsdl:service/wsdl:port", NS)
    assert {port.get("name") for port in ports} == set(PORTS)
    for port in ports:
        address = port.find(ns.qn(PORTS[port.get("name", "")], "address"))
        assert address is not None
        assert address.get("location") == SERVICE_URL


def test_schema_import_points_at_the_served_schema() -> None:
    imports = wsdl_root().findall("wsdl:types/xs:schema/xs:import", NS)
    assert [(i.get("namespace"), i.get("schemaLocation")) for i in imports] == [
        (ns.CSD, SCHEMA_BASE + "csd.xsd")
    ]


def test_each_rendering_starts_from_the_pristine_template() -> None:
    first = wsdl_root("http://a.example/csd", "http://a.example/csd/schemas/")
    second = wsdl_root("http://b.example/csd/idf", "http://b.example/csd/schemas/")
    assert {a.get("location") for a in first.iterfind(".//soap12:address", NS)} == {"http://a.example/csd"}
    assert {a.get("location") for a in second.iterfind(".//soap12:address", NS)} == {
        "http://b.example/csd/idf"
    }
    assert {a.get("location") for a in second.iterfind(".//soap:address", NS)} == {"http://b.example/csd/idf"}


def test_url_with_xml_special_characters_is_escaped_not_injected() -> None:
    hostile = 'http://h.example/csd?a=1&b="2"<x/>'
    root = wsdl_root(hostile, SCHEMA_BASE)
    assert {a.get("location") for a in root.iterfind(".//soap:address", NS)} == {hostile}


def test_both_bindings_with_document_literal_and_soap_actions() -> None:
    root = wsdl_root()
    bindings = {b.get("name"): b for b in root.findall("wsdl:binding", NS)}
    assert set(bindings) == {"CareServicesDiscoverySoap12Binding", "CareServicesDiscoverySoap11Binding"}
    for name, soap_ns in (
        ("CareServicesDiscoverySoap12Binding", ns.WSDL_SOAP12),
        ("CareServicesDiscoverySoap11Binding", ns.WSDL_SOAP11),
    ):
        binding = bindings[name]
        assert binding.get("type") == "csd:CareServicesDiscovery"
        protocol = binding.find(ns.qn(soap_ns, "binding"))
        assert protocol is not None
        assert protocol.get("style") == "document"
        operations = {op.get("name"): op for op in binding.findall("wsdl:operation", NS)}
        assert set(operations) == set(OPERATIONS)
        for op_name, (request_action, _) in OPERATIONS.items():
            soap_operation = operations[op_name].find(ns.qn(soap_ns, "operation"))
            assert soap_operation is not None
            assert soap_operation.get("soapAction") == request_action
            bodies = operations[op_name].findall(f"*/{{{soap_ns}}}body")
            assert [body.get("use") for body in bodies] == ["literal", "literal"]


def test_port_type_carries_the_ws_addressing_actions() -> None:
    root = wsdl_root()
    (port_type,) = root.findall("wsdl:portType", NS)
    assert port_type.get("name") == "CareServicesDiscovery"
    wsam_action = ns.qn(ns.WSAM, "Action")
    for op_name, (request_action, response_action) in OPERATIONS.items():
        operation = port_type.find(f"wsdl:operation[@name='{op_name}']", NS)
        assert operation is not None
        messages = {etree.QName(child).localname: child.get(wsam_action) for child in operation}
        assert messages == {"documentation": None, "input": request_action, "output": response_action}


# --------------------------------------------------------------------------------------------------
# schema_file


def test_schema_file_serves_the_shipped_schemas() -> None:
    xsd = shipped_dir("xsd")
    assert schema_file("csd.xsd") == (xsd / "csd.xsd").read_bytes()
    assert schema_file("xml.xsd") == (xsd / "xml.xsd").read_bytes()


@pytest.mark.parametrize(
    "name",
    [
        "../pyproject.toml",
        "../xsd/csd.xsd",
        "..%2Fcsd.xsd",
        "sub/../csd.xsd",
        "..\\csd.xsd",
        "/etc/passwd",
        str(Path(__file__)),
        "csd.wsdl",
        "README.md",
        "missing.xsd",
        ".xsd",
        "",
        "csd.xsd\x00.png",
    ],
)
def test_schema_file_refuses_anything_else(name: str) -> None:
    with pytest.raises(FileNotFoundError):
        schema_file(name)


def test_main_schema_imports_xml_xsd_relatively() -> None:
    root = parse(schema_file("csd.xsd"))
    imports = {i.get("namespace"): i.get("schemaLocation") for i in root.iterfind("xs:import", NS)}
    assert imports == {ns.XML: "xml.xsd"}


# --------------------------------------------------------------------------------------------------
# The schema set: offline compilation and the request forms


def test_schema_compiles_offline_with_xmlschema() -> None:
    schema = xmlschema.XMLSchema(str(shipped_dir("xsd") / "csd.xsd"))
    assert {"CSD", "careServicesRequest", "careServicesResponse"} <= {
        etree.QName(name).localname for name in schema.elements
    }


@pytest.mark.parametrize(
    "fixture",
    ["2013-function-uuid.xml", "2014-function-urn.xml", "2016-root-urn.xml", "iti74-request.xml"],
)
def test_historical_request_forms_are_valid(fixture: str, our_csd_schema: etree.XMLSchema) -> None:
    document = etree.parse(str(REQUESTS / fixture))
    assert our_csd_schema.validate(document), str(our_csd_schema.error_log)
    assert xmlschema.XMLSchema(str(shipped_dir("xsd") / "csd.xsd")).is_valid(str(REQUESTS / fixture))


def test_request_with_a_badly_typed_parameter_is_refused(our_csd_schema: etree.XMLSchema) -> None:
    assert not our_csd_schema.validate(etree.parse(str(REQUESTS / "invalid-param-type.xml")))


def test_error_response_is_valid_against_ours_and_the_official_schema(
    our_csd_schema: etree.XMLSchema, official_csd_schema: etree.XMLSchema
) -> None:
    document = etree.parse(str(FIXTURES / "response-error.xml"))
    for schema in (our_csd_schema, official_csd_schema):
        assert schema.validate(document), str(schema.error_log)
    # The 2016 @code and @id on the response: ours accepts them, the 2014 revision does not.
    document.getroot().attrib.update({"code": "404", "id": "tx-42"})
    assert our_csd_schema.validate(document), str(our_csd_schema.error_log)
    assert not official_csd_schema.validate(document)
    document.getroot().set("code", "not-an-integer")
    assert not our_csd_schema.validate(document)


def test_iti74_request_is_valid_against_the_official_schema(official_csd_schema: etree.XMLSchema) -> None:
    assert official_csd_schema.validate(etree.parse(str(REQUESTS / "iti74-request.xml")))


# --------------------------------------------------------------------------------------------------
# zeep, offline


@pytest.fixture
def local_wsdl(tmp_path: Path) -> Path:
    """The rendered WSDL and the served schemas in one directory, importing csd.xsd from there."""
    for name in ("csd.xsd", "xml.xsd", "ror-profile.xsd", "ror-v24.xsd"):
        (tmp_path / name).write_bytes(schema_file(name))
    path = tmp_path / "csd.wsdl"
    path.write_bytes(render_wsdl(SERVICE_URL, f"{tmp_path}/"))
    return path


def body_child(envelope: etree._Element) -> etree._Element:
    body = envelope.find(ns.qn(ns.SOAP12, "Body"))
    assert body is not None
    assert len(body) == 1
    return body[0]


def test_zeep_loads_the_wsdl_with_both_operations_on_both_ports(local_wsdl: Path) -> None:
    client = zeep.Client(str(local_wsdl))
    (service,) = client.wsdl.services.values()
    assert service.name == "CareServicesDiscoveryService"
    assert set(service.ports) == set(PORTS)
    for port in service.ports.values():
        assert set(port.binding._operations) == set(OPERATIONS)
        assert port.binding_options["address"] == SERVICE_URL
    # The first port, the one `client.service` binds to, speaks SOAP 1.2 (the IHE binding).
    assert etree.QName(client.service._binding.name).localname == "CareServicesDiscoverySoap12Binding"


def test_zeep_builds_a_valid_iti73_request_with_ws_addressing(
    local_wsdl: Path, our_csd_schema: etree.XMLSchema
) -> None:
    client = zeep.Client(str(local_wsdl), plugins=[zeep.wsa.WsAddressingPlugin()])
    envelope = client.create_message(
        client.service,
        "FindMatchingCareServices",
        function={
            "urn": "urn:ihe:iti:csd:2014:stored-function:facility-search",
            "encapsulated": True,
            "requestParams": {
                # An unbounded choice: zeep takes the parameters as a list of one-key dicts.
                "_value_1": [
                    {"otherID": {"code": "750712184", "assigningAuthorityName": "1.2.250.1.71.4.2.2"}},
                    {"max": 10},
                ]
            },
        },
    )
    request = body_child(envelope)
    assert request.tag == ns.qn(ns.CSD, "careServicesRequest")
    function = request.find(ns.qn(ns.CSD, "function"))
    assert function is not None
    assert function.get("urn") == "urn:ihe:iti:csd:2014:stored-function:facility-search"
    other_id = function.find(f"{{{ns.CSD}}}requestParams/{{{ns.CSD}}}otherID")
    assert other_id is not None
    assert dict(other_id.attrib) == {"code": "750712184", "assigningAuthorityName": "1.2.250.1.71.4.2.2"}
    assert not other_id.text  # no invented text value
    assert our_csd_schema.validate(etree.ElementTree(request)), str(our_csd_schema.error_log)

    header = envelope.find(ns.qn(ns.SOAP12, "Header"))
    assert header is not None
    actions = [action.text for action in header.iterfind(ns.qn(ns.WSA, "Action"))]
    # zeep applies WS-Addressing by itself once the WSDL declares wsam:Action; the explicit plugin
    # adds a second set of the same headers (zeep 4.3 behaviour), all with the ITI-73 action.
    assert actions
    assert set(actions) == {ns.ACTION_ITI73_REQUEST}


def test_zeep_sends_one_action_without_the_explicit_plugin(local_wsdl: Path) -> None:
    client = zeep.Client(str(local_wsdl))
    envelope = client.create_message(
        client.service,
        "FindMatchingCareServices",
        urn="urn:ror:csd:stored-function:offer-search",
        requestParams={"_value_1": [{"start": 1}]},
    )
    header = envelope.find(ns.qn(ns.SOAP12, "Header"))
    assert header is not None
    assert [action.text for action in header.iterfind(ns.qn(ns.WSA, "Action"))] == [ns.ACTION_ITI73_REQUEST]
    request = body_child(envelope)
    assert request.get("urn") == "urn:ror:csd:stored-function:offer-search"
    assert [child.tag for child in request] == [ns.qn(ns.CSD, "requestParams")]


def test_zeep_builds_a_valid_iti74_request_on_the_soap11_port(
    local_wsdl: Path, our_csd_schema: etree.XMLSchema, official_csd_schema: etree.XMLSchema
) -> None:
    client = zeep.Client(str(local_wsdl))
    service = client.bind("CareServicesDiscoveryService", "CareServicesDiscoverySoap11")
    envelope = client.create_message(
        service, "QueryForUpdatedServices", lastModified=datetime(2024, 1, 1, 12, 0, tzinfo=UTC)
    )
    assert envelope.tag == ns.qn(ns.SOAP11, "Envelope")
    body = envelope.find(ns.qn(ns.SOAP11, "Body"))
    assert body is not None
    (request,) = body
    assert request.tag == ns.qn(ns.CSD, "getModificationsRequest")
    for schema in (our_csd_schema, official_csd_schema):
        assert schema.validate(etree.ElementTree(request)), str(schema.error_log)
    header = envelope.find(ns.qn(ns.SOAP11, "Header"))
    assert header is not None
    assert header.findtext(ns.qn(ns.WSA, "Action")) == ns.ACTION_ITI74_REQUEST


# --------------------------------------------------------------------------------------------------
# The ROR v2.4 profile's WSDL (xsd/ror.wsdl, served at ?wsdl=ror)

ROR_URL = "http://bridge.example.fr:8080/csd/ara"


def ror_root() -> etree._Element:
    return parse(render_wsdl(ROR_URL, SCHEMA_BASE, ROR_WSDL_FILE))


def _qname(element: etree._Element, value: str | None) -> str:
    """A QName attribute value (`prefix:local` or `local` in the default namespace) in Clark notation."""
    assert value is not None
    prefix, _, local = value.rpartition(":")
    namespace = element.nsmap.get(prefix or None)
    return f"{{{namespace}}}{local}" if namespace else local


def wire_contract(root: etree._Element) -> dict[str, object]:
    """What a client generated from a WSDL depends on: names, elements, soapActions, SOAP version."""
    messages = {
        m.get("name"): [(p.get("name"), _qname(p, p.get("element"))) for p in m.findall("wsdl:part", NS)]
        for m in root.findall("wsdl:message", NS)
    }
    port_types = {
        pt.get("name"): {
            op.get("name"): {
                child.tag.split("}")[1] + (f"/{child.get('name')}" if child.get("name") else ""): _qname(
                    child, child.get("message")
                ).split("}")[-1]
                for child in op
                if isinstance(child.tag, str) and child.tag != ns.qn(ns.WSDL, "documentation")
            }
            for op in pt.findall("wsdl:operation", NS)
        }
        for pt in root.findall("wsdl:portType", NS)
    }
    bindings = {}
    for binding in root.findall("wsdl:binding", NS):
        soap = binding.find("soap12:binding", NS)
        assert soap is not None, "SOAP 1.2 binding"
        operations = {}
        for op in binding.findall("wsdl:operation", NS):
            action = op.find("soap12:operation", NS)
            assert action is not None
            bodies = [b.get("use") for b in op.iter(ns.qn(ns.WSDL_SOAP12, "body"))]
            faults = sorted(str(f.get("name")) for f in op.findall("wsdl:fault", NS))
            operations[op.get("name")] = (action.get("soapAction"), bodies, faults)
        bindings[binding.get("name")] = (
            soap.get("style"),
            soap.get("transport"),
            _qname(binding, binding.get("type")).split("}")[-1],
            operations,
        )
    services = {
        s.get("name"): {
            p.get("name"): _qname(p, p.get("binding")).split("}")[-1] for p in s.findall("wsdl:port", NS)
        }
        for s in root.findall("wsdl:service", NS)
    }
    return {
        "targetNamespace": root.get("targetNamespace"),
        "messages": messages,
        "portTypes": port_types,
        "bindings": bindings,
        "services": services,
    }


def test_ror_wsdl_has_the_official_wire_contract(reference_dir: Path) -> None:
    """Same target namespace, messages (parts and elements), portType (inputs, outputs, faults), SOAP 1.2
    document/literal binding with the same soapActions, service and port names as ANS's ROR-v2.4.wsdl."""
    official = reference_dir / "ror-v24" / "official" / "ROR-v2.4.wsdl"
    if not official.is_file():
        pytest.skip("ROR-v2.4.wsdl is not in ../shared/reference/ror-v24/official")
    ours = wire_contract(ror_root())
    theirs = wire_contract(parse(official.read_bytes()))
    assert ours == theirs
    binding = ours["bindings"]["CareServicesRequest_Binding"]  # type: ignore[index]
    assert binding[3]["careServicesRequest_Request"][0] == ns.ACTION_ROR_SEARCH
    assert binding[3]["TR-Notif-ListeEtablissementsMajApresDate_Demande"][0] == ns.ACTION_ROR_UPDATE


def test_ror_wsdl_address_and_schema_imports() -> None:
    root = ror_root()
    (address,) = root.findall("wsdl:service/wsdl:port/soap12:address", NS)
    assert address.get("location") == ROR_URL
    imports = root.findall("wsdl:types/xs:schema/xs:import", NS)
    assert [(i.get("namespace"), i.get("schemaLocation")) for i in imports] == [
        (ns.ROR, SCHEMA_BASE + "ror-operations.xsd"),
        (ns.CSD, SCHEMA_BASE + "csd.xsd"),
    ]
    # Our rendering of the IHE WSDL is unchanged by the second template.
    assert wsdl_root().get("targetNamespace") == ns.CSD


def test_ror_schemas_compile_offline_with_both_engines() -> None:
    directory = shipped_dir("xsd")
    etree.XMLSchema(etree.parse(str(directory / "ror-operations.xsd")))
    schema = xmlschema.XMLSchema(str(directory / "ror-operations.xsd"))
    assert {etree.QName(name).localname for name in schema.elements} == {
        ns.ROR_NOTIF_REQUEST,
        ns.ROR_NOTIF_RESPONSE,
        "erreur",
    }


def test_zeep_loads_the_ror_wsdl_offline(tmp_path: Path) -> None:
    for name in ("csd.xsd", "xml.xsd", "ror-profile.xsd", "ror-v24.xsd", "ror-operations.xsd"):
        (tmp_path / name).write_bytes(schema_file(name))
    path = tmp_path / "ror.wsdl"
    path.write_bytes(render_wsdl(ROR_URL, f"{tmp_path}/", ROR_WSDL_FILE))
    client = zeep.Client(str(path))
    (service,) = client.wsdl.services.values()
    (port,) = service.ports.values()
    assert port.binding_options["address"] == ROR_URL
    assert set(port.binding._operations) == {
        "careServicesRequest_Request",
        "TR-Notif-ListeEtablissementsMajApresDate_Demande",
    }
    envelope = client.create_message(
        client.service,
        "TR-Notif-ListeEtablissementsMajApresDate_Demande",
        params={"dateRef": datetime(2024, 1, 1, tzinfo=UTC)},
    )
    body = body_child(envelope)
    assert body.tag == ns.qn(ns.ROR, ns.ROR_NOTIF_REQUEST)
    etree.XMLSchema(etree.parse(str(tmp_path / "ror-operations.xsd"))).assertValid(body)
