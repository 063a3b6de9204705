"""The element tree of an XML schema's `CSD` document, walked from its declarations (no instance needed).

csd/: CSD vocabulary. `ror-bridge mappings check` compares it, for the official ROR CSD v2.4 profile schema
(`IHE_ProfilCSD-ExtensionROR_fr-v2.4.xsd`), with what the mapping tables produce.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from lxml import etree

from bridge.errors import MappingTableError

XS = "http://www.w3.org/2001/XMLSchema"
_OWNERS = (f"{{{XS}}}complexType", f"{{{XS}}}element", f"{{{XS}}}group")
_SAFE = etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False)


@dataclass(frozen=True, slots=True)
class SchemaElement:
    path: str  # "facilityDirectory/facility/extension/typeActivity", from the CSD root (excluded)
    type: str  # the declared type's local name, "" when anonymous or built in
    documentation: str  # the declaration's xs:documentation (the profile names nomenclatures there)


def csd_elements(schema_path: Path, root: str = "CSD") -> list[SchemaElement]:
    """Every element the schema allows under its top-level `root` element, depth first in declaration order.

    Named complex types are followed through `xs:extension` bases and model groups; a type met again on its
    own path (a recursive structure) is not entered twice.
    """
    try:
        tree = etree.parse(str(schema_path), _SAFE)
    except (OSError, etree.XMLSyntaxError) as error:
        raise MappingTableError(str(schema_path), None, "", f"cannot read the schema: {error}") from error
    schema = tree.getroot()
    parts = [schema]  # the schema and the files it includes (same namespace), one level deep
    for include in schema.iterfind(f"{{{XS}}}include"):
        location = schema_path.parent / str(include.get("schemaLocation"))
        try:
            parts.append(etree.parse(str(location), _SAFE).getroot())
        except (OSError, etree.XMLSyntaxError) as error:
            raise MappingTableError(str(location), None, "", f"cannot read the schema: {error}") from error
    kinds = (f"{{{XS}}}complexType", f"{{{XS}}}simpleType")
    types = {t.get("name"): t for part in parts for t in part if t.tag in kinds}
    groups = {g.get("name"): g for part in parts for g in part.iterfind(f"{{{XS}}}group")}
    top = next((e for e in schema.iterfind(f"{{{XS}}}element") if e.get("name") == root), None)
    if top is None:
        raise MappingTableError(str(schema_path), None, root, f"no top-level element {root!r}")
    found: list[SchemaElement] = []

    def local(qname: str | None) -> str:
        return (qname or "").rpartition(":")[2]

    def content_of(declaration: etree._Element) -> etree._Element | None:
        inline = declaration.find(f"{{{XS}}}complexType")
        if inline is not None:
            return inline
        return types.get(local(declaration.get("type")))

    def walk_type(complex_type: etree._Element, prefix: str, seen: tuple[str, ...]) -> None:
        for child in complex_type.iter(
            f"{{{XS}}}element", f"{{{XS}}}extension", f"{{{XS}}}group", f"{{{XS}}}complexType"
        ):
            if child is complex_type or child.tag == f"{{{XS}}}complexType":
                continue
            # only the declarations of this type's own content model, not of nested anonymous types
            owner = next((a for a in child.iterancestors() if a.tag in _OWNERS), None)
            if owner is not complex_type:
                continue
            if child.tag == f"{{{XS}}}extension":
                base = types.get(local(child.get("base")))
                if base is not None and base.tag == f"{{{XS}}}complexType":
                    walk_type(base, prefix, seen)
            elif child.tag == f"{{{XS}}}group" and child.get("ref"):
                group = groups.get(local(child.get("ref")))
                if group is not None:
                    walk_type(group, prefix, seen)
            elif child.tag == f"{{{XS}}}element":
                walk_element(child, prefix, seen)

    elements = {e.get("name"): e for part in parts for e in part.iterfind(f"{{{XS}}}element")}

    def walk_element(declaration: etree._Element, prefix: str, seen: tuple[str, ...]) -> None:
        name = declaration.get("name") or local(declaration.get("ref"))
        if declaration.get("ref") and name in elements:
            declaration = elements[name]  # a reference to a global element: its declaration
        path = f"{prefix}/{name}" if prefix else name
        type_name = local(declaration.get("type"))
        notes = declaration.iterfind(f"{{{XS}}}annotation/{{{XS}}}documentation")
        text = " ".join(" ".join(" ".join(str(t) for t in d.itertext()) for d in notes).split())
        found.append(SchemaElement(path, type_name if type_name in types else "", text))
        content = content_of(declaration)
        if content is None or content.tag != f"{{{XS}}}complexType":
            return
        key = type_name or path
        if key in seen:
            return
        walk_type(content, path, (*seen, key))

    content = content_of(top)
    if content is not None:
        walk_type(content, "", (local(top.get("type")),))
    return found
