"""Streams the entities out of any CSD answer or document, and flattens each into comparable fields.

compare/ (side-by-side comparison). Reads with lxml `iterparse`, clearing each entity once flattened, so a
document of several GB is read in flat memory; the wrapper does not matter (SOAP envelope,
careServicesResponse, result/queryResult, getModificationsResponse, or a bare csd:CSD).
"""

from __future__ import annotations

import unicodedata
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any
from urllib.parse import unquote

from lxml import etree

from bridge.compare.rules import ENTITY_ID, CompareRules
from bridge.errors import CompareInputError
from bridge.ns import CSD

CODE_ATTRIBUTES = ("codingScheme", "assigningAuthorityName")


@dataclass(frozen=True, slots=True)
class Entity:
    """One CSD entity: its kind, its entityID, the identifiers it can be matched by, and its fields."""

    kind: str
    entity_id: str
    region: str
    identifiers: tuple[tuple[str, str], ...]  # (identifier name, value), including ("entityID", …)
    fields: tuple[tuple[str, str], ...]  # (path, value); a path repeats for repeated children
    references: frozenset[str]  # paths whose values name another entity


def text_value(text: str | None) -> str:
    """Whitespace-collapsed, NFC-normalised text (how two texts are compared)."""
    return unicodedata.normalize("NFC", " ".join((text or "").split()))


def coded_value(scheme: str, code: str) -> str:
    return f"{code} [{scheme}]"


def _is_element(node: Any) -> bool:
    return isinstance(node.tag, str)


class _Flattener:
    def __init__(self, rules: CompareRules) -> None:
        self.rules = rules

    def kind(self, element: etree._Element) -> str:
        name = etree.QName(element).localname
        for rule in self.rules.kinds:
            if rule.element != name:
                continue
            if not rule.coded:
                return rule.name
            wanted = {self.rules.scheme(s) for s in rule.coded}
            for child in element:
                if (
                    _is_element(child)
                    and etree.QName(child).localname == "codedType"
                    and self.rules.scheme(child.get("codingScheme", "")) in wanted
                ):
                    return rule.name
        return name

    def entity(self, element: etree._Element) -> Entity:
        name = etree.QName(element).localname
        entity_id = (element.get(ENTITY_ID) or "").strip()
        fields: list[tuple[str, str]] = []
        identifiers: list[tuple[str, str]] = []
        references: set[str] = set()
        region: list[str] = []
        if entity_id:
            identifiers.append((ENTITY_ID, entity_id))
            for rule in self.rules.identifiers.values():
                for prefix in rule.entity_id_prefixes:
                    if entity_id.startswith(prefix):
                        identifiers.append((rule.name, unquote(entity_id[len(prefix) :])))
        for attribute, value in sorted(element.attrib.items()):
            local = etree.QName(attribute).localname
            if local != ENTITY_ID:
                fields.append((f"{name}/@{local}", text_value(str(value))))
        self._walk(element, name, fields, identifiers, references, region)
        return Entity(
            kind=self.kind(element),
            entity_id=entity_id,
            region=region[0] if region else "",
            identifiers=tuple(dict.fromkeys(identifiers)),
            fields=tuple(fields),
            references=frozenset(references),
        )

    def _walk(
        self,
        element: etree._Element,
        prefix: str,
        fields: list[tuple[str, str]],
        identifiers: list[tuple[str, str]],
        references: set[str],
        region: list[str],
    ) -> None:
        rules = self.rules
        for child in element:
            if not _is_element(child):
                continue  # comments and processing instructions carry nothing
            name = etree.QName(child).localname
            keys = "".join(
                f"[@{etree.QName(a).localname}={text_value(str(v))}]"
                for a, v in sorted(child.attrib.items())
                if etree.QName(a).localname in rules.key_attributes
            )
            path = f"{prefix}/{name}{keys}"
            if name in rules.opaque:
                canonical = etree.canonicalize(
                    etree.tostring(child), strip_text=True, rewrite_prefixes=True, with_comments=False
                )
                fields.append((path, canonical))
                continue
            attributes = {etree.QName(a).localname: str(v) for a, v in child.attrib.items()}
            scheme_attribute = next((a for a in CODE_ATTRIBUTES if a in attributes), None)
            text = text_value(child.text) if len(child) == 0 else ""
            if "code" in attributes and scheme_attribute is not None:
                scheme = attributes.pop(scheme_attribute)
                code = attributes.pop("code")
                key = rules.code_key(scheme, code)
                fields.append((path, coded_value(key[0], key[1])))
                if text:
                    fields.append((f"{path}/text()", text))
                if name == "otherID":
                    canonical = rules.scheme(scheme)
                    for rule in rules.identifiers.values():
                        if canonical in {rules.scheme(s) for s in rule.other_id}:
                            identifiers.append((rule.name, code.strip()))
                if name in rules.region_elements and not region:
                    region.append(code.strip())
            elif text:
                fields.append((path, text))
                if name in rules.references:
                    references.add(path)
                for rule in rules.identifiers.values():
                    if name in rule.elements:
                        identifiers.append((rule.name, text))
            for attribute, value in sorted(attributes.items()):
                if attribute in rules.key_attributes:
                    continue
                field_path = f"{path}/@{attribute}"
                fields.append((field_path, text_value(value)))
                if attribute == ENTITY_ID:
                    references.add(field_path)
            self._walk(child, path, fields, identifiers, references, region)


def _is_directory(element: etree._Element | None) -> bool:
    if element is None or not isinstance(element.tag, str):
        return False
    qname = etree.QName(element)
    return qname.namespace == CSD and qname.localname.endswith("Directory")


def iter_entities(source: str | Path | IO[bytes], rules: CompareRules) -> Iterator[Entity]:
    """Every entity of every csd:*Directory in the source, in document order, in flat memory.

    Raises CompareInputError when the source is not XML.
    """
    if isinstance(source, str | Path):
        with Path(source).open("rb") as stream:
            yield from iter_entities(stream, rules)
        return
    flattener = _Flattener(rules)
    parser = etree.iterparse(
        source, events=("end",), resolve_entities=False, no_network=True, huge_tree=True, remove_comments=True
    )
    try:
        for _event, element in parser:
            parent = element.getparent()
            if not _is_directory(parent):
                continue
            yield flattener.entity(element)
            element.clear()
            while parent is not None and element.getprevious() is not None:
                del parent[0]
    except etree.XMLSyntaxError as error:
        name = source if isinstance(source, str | Path) else getattr(source, "name", "input")
        raise CompareInputError(f"{name}: not XML ({error})") from error
