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
# The entries of the CSD directories (2013/2014 schema, and the official ROR v2.4 profile's deviceDirectory).
ENTRY_ELEMENTS = ("organization", "service", "facility", "provider", "device")
# Bound of each look-up cache of the flattening (element names, schemes, codes): cleared when full.
CACHE_ENTRIES = 4096


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
    if not text:
        return ""
    collapsed = " ".join(text.split())
    # ASCII text is already NFC: most values (codes, dates, identifiers) skip the normalisation call
    return collapsed if collapsed.isascii() else unicodedata.normalize("NFC", collapsed)


def coded_value(scheme: str, code: str) -> str:
    return f"{code} [{scheme}]"


def _is_element(node: Any) -> bool:
    return isinstance(node.tag, str)


class _Flattener:
    def __init__(self, rules: CompareRules) -> None:
        self.rules = rules
        self.by_authority: dict[str, list[str]] = {}
        self.by_element: dict[str, list[str]] = {}
        for rule in rules.identifiers.values():
            for authority in {rules.scheme(s) for s in rule.other_id}:
                self.by_authority.setdefault(authority, []).append(rule.name)
            for element in rule.elements:
                self.by_element.setdefault(element, []).append(rule.name)
        # (scheme, code) -> the coded field's (scheme, code) key: a few thousand codes repeated millions of
        # times in an extraction; bounded (cleared when full) so memory stays flat whatever the input
        self._code_keys: dict[tuple[str, str], tuple[str, str]] = {}
        self._schemes: dict[str, str] = {}

    def code_key(self, scheme: str, code: str) -> tuple[str, str]:
        key = self._code_keys.get((scheme, code))
        if key is None:
            if len(self._code_keys) >= CACHE_ENTRIES:
                self._code_keys.clear()
            key = self._code_keys[(scheme, code)] = self.rules.code_key(scheme, code)
        return key

    def scheme(self, value: str) -> str:
        canonical = self._schemes.get(value)
        if canonical is None:
            if len(self._schemes) >= CACHE_ENTRIES:
                self._schemes.clear()
            canonical = self._schemes[value] = self.rules.scheme(value)
        return canonical

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
        key_attributes = rules.key_attributes
        for child in element:
            tag: Any = child.tag
            if not isinstance(tag, str):
                continue  # comments and processing instructions carry nothing
            name = _local(tag)
            attrib = child.attrib
            attributes: dict[str, str] = {_local(str(a)): str(v) for a, v in attrib.items()} if attrib else {}
            keys = ""
            if attributes and not key_attributes.isdisjoint(attributes):
                keys = "".join(
                    f"[@{a}={text_value(v)}]" for a, v in sorted(attributes.items()) if a in key_attributes
                )
            path = f"{prefix}/{name}{keys}"
            if name in rules.opaque:
                canonical = etree.canonicalize(
                    etree.tostring(child), strip_text=True, rewrite_prefixes=True, with_comments=False
                )
                fields.append((path, canonical))
                continue
            text = text_value(child.text) if len(child) == 0 and child.text else ""
            scheme_attribute = None
            if attributes and "code" in attributes:
                for candidate in CODE_ATTRIBUTES:
                    if candidate in attributes:
                        scheme_attribute = candidate
                        break
            if scheme_attribute is not None:
                scheme = attributes.pop(scheme_attribute)
                code = attributes.pop("code")
                # identifiers are unique values: only codes go through the (bounded) cache
                key = rules.code_key(scheme, code) if name == "otherID" else self.code_key(scheme, code)
                fields.append((path, f"{key[1]} [{key[0]}]"))
                if text:
                    fields.append((f"{path}/text()", text))
                if name == "otherID":
                    for identifier in self.by_authority.get(self.scheme(scheme), ()):
                        identifiers.append((identifier, code.strip()))
                if name in rules.region_elements and not region:
                    region.append(code.strip())
            elif text:
                fields.append((path, text))
                if name in rules.references:
                    references.add(path)
                for identifier in self.by_element.get(name, ()):
                    identifiers.append((identifier, text))
            for attribute, value in sorted(attributes.items()) if attributes else ():
                if attribute in key_attributes:
                    continue
                field_path = f"{path}/@{attribute}"
                fields.append((field_path, text_value(value)))
                if attribute == ENTITY_ID:
                    references.add(field_path)
            if len(child):
                self._walk(child, path, fields, identifiers, references, region)


_LOCAL_NAMES: dict[str, str] = {}


def _local(tag: str) -> str:
    """The local name of a Clark-notation name (cached: a document has few distinct element names)."""
    name = _LOCAL_NAMES.get(tag)
    if name is None:
        if len(_LOCAL_NAMES) >= CACHE_ENTRIES:
            _LOCAL_NAMES.clear()
        name = _LOCAL_NAMES[tag] = tag[tag.rfind("}") + 1 :]
    return name


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
    directories: dict[str, bool] = {}
    entries = sorted({*ENTRY_ELEMENTS, *(rule.element for rule in rules.kinds)})
    parser = etree.iterparse(
        source,
        events=("end",),
        tag=[f"{{{CSD}}}{name}" for name in entries],  # only candidate entries reach Python
        resolve_entities=False,
        no_network=True,
        huge_tree=True,
        remove_comments=True,
    )
    try:
        for _event, element in parser:
            parent = element.getparent()
            if parent is None:
                continue
            tag = parent.tag
            known = directories.get(tag)
            if known is None:
                known = directories[tag] = _is_directory(parent)
            if not known:
                continue
            yield flattener.entity(element)
            element.clear()
            while parent is not None and element.getprevious() is not None:
                del parent[0]
    except etree.XMLSyntaxError as error:
        name = source if isinstance(source, str | Path) else getattr(source, "name", "input")
        raise CompareInputError(f"{name}: not XML ({error})") from error
