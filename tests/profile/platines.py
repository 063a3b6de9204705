"""ANS's PLATINES SoapUI projects, read at test time: their assertions, with their names, as runnable checks.

Part of the official-profile conformance harness. Each `con:assertion` of a request step becomes one
`Assertion`: an XPath Match (an XPath 2.0 expression and its expected text), a Schematron assertion (the
.sch it names), a schema-compliance assertion, or a simple not-contains / not-a-SOAP-fault check.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import elementpath
from elementpath import XPathContext
from elementpath.xpath30 import XPath30Parser
from elementpath.xpath_nodes import XPathNode
from lxml import etree

CON = "http://eviware.com/soapui/config"
_NS = {"con": CON}


@dataclass(frozen=True)
class Assertion:
    project: str  # the SoapUI project file name
    name: str  # the assertion's name, as ANS wrote it (rule ids: RG_ALIM_018, RG_EXP_020…)
    type: str  # "XPath Match", "Assertion Schematron", "Schema Compliance", "Simple NotContains", …
    path: str = ""  # XPath Match: the expression (project properties substituted)
    expected: str = ""  # XPath Match: the expected text; NotContains: the token
    schematron: str = ""  # Assertion Schematron: the .sch file name


@dataclass(frozen=True)
class PlatinesFailure:
    project: str
    assertion: str
    path: str  # the node the assertion is about ("/" for document-wide expressions)
    message: str


def load_assertions(project: Path) -> list[Assertion]:
    """Every assertion of the project's request steps, in document order."""
    tree = etree.parse(str(project))
    properties = {
        str(p.findtext("con:name", namespaces=_NS)): p.findtext("con:value", default="", namespaces=_NS)
        for p in tree.getroot().iterfind("con:properties/con:property", _NS)
    }
    found = []
    for element in tree.iterfind(".//con:request/con:assertion", _NS):
        configuration = element.find("con:configuration", _NS)

        def text(name: str, configuration: Any = configuration) -> str:
            return "" if configuration is None else str(configuration.findtext(name, default=""))

        path = text("path")
        for name, value in properties.items():
            path = path.replace(f"${{#Project#{name}}}", value)
        found.append(
            Assertion(
                project=project.name,
                name=str(element.get("name")),
                type=str(element.get("type")),
                path=path,
                expected=text("content") or text("token"),
                schematron=text("schematronProperty"),
            )
        )
    return found


def run_xpath_match(assertion: Assertion, document: etree._Element) -> list[PlatinesFailure]:
    """SoapUI's XPath Match: the expression's value (each selected item) must equal the expected text.

    ANS's expressions mostly compute one string ("Résultat valide" or a diagnostic). For an expression that
    selects several nodes (RG_EXP_029: `//*:residentialType/@code`), every value must equal the expected one;
    one that selects nothing is reported as not applicable (no failure): the rule constrains values present.
    """
    parser = XPath30Parser()
    tree = elementpath.get_node_tree(document.getroottree())
    try:
        value = parser.parse(assertion.path).evaluate(XPathContext(tree))
    except elementpath.ElementPathError as error:
        return [PlatinesFailure(assertion.project, assertion.name, "/", f"cannot be evaluated: {error}")]
    items = value if isinstance(value, list) else [value]
    failures = []
    for item in items:
        text = str(item.string_value) if isinstance(item, XPathNode) else str(item)
        if text.strip() != assertion.expected.strip():
            where = _node_path(item)
            failures.append(
                PlatinesFailure(
                    assertion.project, assertion.name, where, f"{text!r} (expected {assertion.expected!r})"
                )
            )
    return failures


def _node_path(item: Any) -> str:
    from tests.profile.schematron import node_path

    return node_path(item) if isinstance(item, XPathNode) else "/"
