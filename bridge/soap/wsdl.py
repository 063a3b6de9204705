"""Serving the WSDLs and the schemas they import (`GET /csd?wsdl[=ror]`, `GET /csd/schemas/{file}`).

Part of the inbound edge (bridge/soap/). The shipped xsd/csd.wsdl (IHE) and xsd/ror.wsdl (the official ROR
v2.4 profile) are parsed once; each answer is a copy with every port address set to the URL the client used
and the schema imports made absolute.
"""

from __future__ import annotations

import copy
import re
from functools import cache
from typing import Final

from lxml import etree

from bridge import ns
from bridge.shipped import shipped_dir

WSDL_FILE: Final = "csd.wsdl"
ROR_WSDL_FILE: Final = "ror.wsdl"
MAIN_SCHEMA: Final = "csd.xsd"
# `GET /csd?wsdl=…` values: the IHE WSDL (also plain `?wsdl`) or the ROR v2.4 profile's.
WSDL_FILES: Final = {"": WSDL_FILE, "ihe": WSDL_FILE, "ror": ROR_WSDL_FILE}

# A served schema name: one plain file name ending in .xsd, nothing that could leave the directory.
_SCHEMA_NAME: Final = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*\.xsd")

_ADDRESSES: Final = (ns.qn(ns.WSDL_SOAP12, "address"), ns.qn(ns.WSDL_SOAP11, "address"))
_SCHEMA_IMPORT: Final = ns.qn(ns.XSD, "import")


@cache
def _template(name: str) -> etree._ElementTree:
    parser = etree.XMLParser(resolve_entities=False, no_network=True, remove_blank_text=False)
    return etree.parse(str(shipped_dir("xsd") / name), parser)


def render_wsdl(service_url: str, schema_base_url: str, wsdl_file: str = WSDL_FILE) -> bytes:
    """The WSDL `wsdl_file` with every port at `service_url` and its schemas imported from `schema_base_url`.

    `schema_base_url` ends with a slash (e.g. `http://host:8080/csd/schemas/`); the schemas import one
    another by relative locations (csd.xsd → xml.xsd, ror-profile.xsd; ror-operations.xsd → csd.xsd), so a
    client resolves them next to the first.
    """
    tree = copy.deepcopy(_template(wsdl_file))  # the cached template itself is never changed
    root = tree.getroot()
    types = root.find(ns.qn(ns.WSDL, "types"))
    if types is not None:
        for schema_import in types.iter(_SCHEMA_IMPORT):
            location = schema_import.get("schemaLocation")
            if location and "/" not in location:
                schema_import.set("schemaLocation", schema_base_url + location)
    for service in root.iterfind(ns.qn(ns.WSDL, "service")):
        for port in service.iterfind(ns.qn(ns.WSDL, "port")):
            for address in port:
                if address.tag in _ADDRESSES:
                    address.set("location", service_url)
    return etree.tostring(tree, xml_declaration=True, encoding="UTF-8")


def schema_file(name: str) -> bytes:
    """The bytes of the shipped schema `name` (a `*.xsd` file of xsd/); FileNotFoundError otherwise."""
    if not _SCHEMA_NAME.fullmatch(name):
        raise FileNotFoundError(f"no schema named {name!r}")
    directory = shipped_dir("xsd")
    available = {path.name: path for path in directory.glob("*.xsd") if path.is_file()}
    path = available.get(name)
    if path is None:
        raise FileNotFoundError(f"no schema named {name!r}")
    return path.read_bytes()
