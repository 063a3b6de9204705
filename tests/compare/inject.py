"""Builds a "legacy" side from one of the bridge's own answers, with known injected differences.

Each injection records what the comparison must report: the differences it causes (entity, kind, path,
legacy value, bridge value) and the entities it leaves on one side only. Changes that must NOT count
(child order, namespace prefixes, scheme spelled as OID or URL, a crosswalked code, re-keyed entityIDs)
record nothing.
"""

from __future__ import annotations

import copy
import random
from dataclasses import dataclass, field
from typing import Any

from lxml import etree

CSD = "urn:ihe:iti:csd:2013"
NS = {"csd": CSD}
R211_OID = "1.2.250.1.213.3.3.12"
R211_URL = (
    "https://mos.esante.gouv.fr/NOS/TRE_R211-ActiviteOperationnelle/FHIR/TRE-R211-ActiviteOperationnelle"
)
REFERENCE_ELEMENTS = ("organisation", "lieu", "offre", "parentFacility")


@dataclass
class Expected:
    differences: set[tuple[str, str, str, str | None, str | None]] = field(default_factory=set)
    only_legacy: set[str] = field(default_factory=set)
    only_bridge: set[str] = field(default_factory=set)
    equal_despite: list[str] = field(default_factory=list)  # what was changed without counting

    def parity(self, bridge_entities: int) -> float:
        matched = bridge_entities - len(self.only_bridge)
        different = len(
            {d[:2] for d in self.differences}
        )  # (entityID, kind): a UE and its service share an entityID
        total = matched + len(self.only_legacy) + len(self.only_bridge)
        return (matched - different) / total if total else 1.0


def entities(root: etree._Element) -> list[etree._Element]:
    return [
        e
        for d in root.iter()
        if isinstance(d.tag, str) and d.tag.startswith(f"{{{CSD}}}") and d.tag.endswith("Directory")
        for e in d
        if isinstance(e.tag, str)
    ]


def local(element: etree._Element) -> str:
    return etree.QName(element).localname


def csd_root(document: bytes) -> etree._Element:
    return etree.fromstring(document, etree.XMLParser(remove_blank_text=True))


def inject(
    document: bytes, seed: int = 5, *, crosswalk: tuple[str, str, str] | None = None
) -> tuple[bytes, Expected]:
    """The legacy side of `document` (any CSD answer) and what comparing it with `document` must find.

    crosswalk: (v3 code of R211 in the bridge's answer, legacy scheme, legacy code) of a test crosswalk row.
    """
    root = csd_root(document)
    expected = Expected()
    rng = random.Random(seed)
    all_entities = entities(root)
    by_kind: dict[str, list[etree._Element]] = {}
    for entity in all_entities:
        by_kind.setdefault(local(entity), []).append(entity)
    roots = {id(e) for e in all_entities}
    referenced = {
        value
        for element in root.iter()
        if isinstance(element.tag, str) and id(element) not in roots
        for value in [element.get("entityID")]
        if value
    } | {
        (element.text or "").strip()
        for element in root.iter()
        if isinstance(element.tag, str) and local(element) in REFERENCE_ELEMENTS
    }

    # 1. an entity removed (a provider nobody refers to, its professional's only role): only in the bridge
    rpps = [o.get("code") for p in by_kind.get("provider", []) for o in p.findall("csd:otherID", NS)]
    removable = [
        e
        for e in by_kind.get("provider", [])
        if e.get("entityID") not in referenced
        and all(rpps.count(o.get("code")) == 1 for o in e.findall("csd:otherID", NS))
    ]
    removed = removable[0] if removable else None
    if removed is not None:
        expected.only_bridge.add(removed.get("entityID", ""))
        removed.getparent().remove(removed)

    # 2. an entity added: a copy of a facility under new identifiers, only in the legacy side
    facilities = by_kind.get("facility", [])
    if facilities:
        source = facilities[-1]
        added = copy.deepcopy(source)
        added.set("entityID", "urn:legacy-only:facility:1")
        for other in added.findall("csd:otherID", NS):
            other.set("code", f"LEGACY-{other.get('code')}")
        source.addnext(added)
        expected.only_legacy.add("urn:legacy-only:facility:1")

    # 3. names and address lines altered (real differences)
    organizations = [e for e in by_kind.get("organization", []) if e.find("csd:primaryName", NS) is not None]
    if organizations:
        named = organizations[len(organizations) // 2]
        name = named.find("csd:primaryName", NS)
        expected.differences.add(
            (
                named.get("entityID", ""),
                "organization",
                "organization/primaryName",
                f"{name.text} (legacy)",
                name.text,
            )
        )
        name.text = f"{name.text} (legacy)"
    with_city = [
        e for e in facilities[:-1] if e.find("csd:address/csd:addressLine[@component='city']", NS) is not None
    ]
    if with_city:
        city_of = with_city[0]
        city = city_of.find("csd:address/csd:addressLine[@component='city']", NS)
        path = "facility/address/addressLine[@component=city]"
        if city.getparent().get("type"):
            path = f"facility/address[@type={city.getparent().get('type')}]/addressLine[@component=city]"
        expected.differences.add(
            (city_of.get("entityID", ""), kind_of(city_of), path, "LEGACYVILLE", city.text)
        )
        city.text = "LEGACYVILLE"

    # 4. a code changed (a real difference) and codes spelled otherwise (no difference)
    services = [
        e for e in by_kind.get("service", []) if e is not removed and e.find("csd:codedType", NS) is not None
    ]
    if services:
        changed = services[0]
        coded = changed.find("csd:codedType", NS)
        scheme = coded.get("codingScheme", "")
        expected.differences.add(
            (
                changed.get("entityID", ""),
                "service",
                "service/codedType",
                f"ZZZ [{scheme}]",
                f"{coded.get('code')} [{scheme}]",
            )
        )
        coded.set("code", "ZZZ")
    for service in services[1:]:
        for element in service.iter(f"{{{CSD}}}codedType"):
            if element.get("codingScheme") == R211_OID:
                element.set("codingScheme", f"urn:oid:{R211_OID}" if rng.random() < 0.5 else R211_URL)
    expected.equal_despite.append("R211 scheme spelled as its system URL or urn:oid:")
    if crosswalk is not None:
        v3_code, legacy_scheme, legacy_code = crosswalk
        hits = [c for s in services[1:] for c in s.findall("csd:codedType", NS) if c.get("code") == v3_code]
        for element in hits:
            element.set("code", legacy_code)
            element.set("codingScheme", legacy_scheme)
        expected.equal_despite.append(
            f"{len(hits)} code(s) {v3_code} written as their crosswalk {legacy_code}"
        )

    # 5. children reordered (no difference): every entity's children, and address lines, reversed
    for entity in entities(root):
        children = list(entity)
        for child in children:
            entity.remove(child)
        for child in reversed(children):
            entity.append(child)
        for address in entity.iter(f"{{{CSD}}}address"):
            lines = list(address)
            for line in lines:
                address.remove(line)
            for line in reversed(lines):
                address.append(line)
    expected.equal_despite.append("children reordered")

    # 6. every entityID re-keyed to another scheme, references with them (no difference)
    # A csd:service of the ROR v2.4 profile carries no identifier but its entityID, the one of its offer's
    # UE facility: re-keyed with it (one new entityID for both), it is matched as the UE is (`via:`).
    # A csd:device (an équipement) carries nothing but its entityID and is matched by it alone
    # (compare.yaml `match`: device: [entityID]): its entityID is kept, as the UEs' references to it.
    rekey: dict[str | None, str] = {}
    for e in entities(root):
        value = e.get("entityID")
        if local(e) == "device":
            continue
        if value and not value.startswith("urn:legacy-only") and value not in rekey:
            rekey[value] = f"urn:oid:1.2.250.1.999.1:{len(rekey)}"
    for element in root.iter():
        if not isinstance(element.tag, str):
            continue
        value = element.get("entityID")
        if value in rekey:
            element.set("entityID", rekey[value])
        if local(element) in REFERENCE_ELEMENTS and (element.text or "").strip() in rekey:
            element.text = rekey[(element.text or "").strip()]
    expected.equal_despite.append("entityIDs re-keyed")
    # 7. another namespace prefix (no difference)
    text = etree.tostring(root, encoding="unicode")
    text = (
        text.replace("xmlns:csd=", "xmlns:legacy=")
        .replace("<csd:", "<legacy:")
        .replace("</csd:", "</legacy:")
    )
    return text.encode("utf-8"), expected


R207_OID = (
    "1.2.250.1.213.3.3.8"  # compare.yaml `kinds`: a facility coded TRE_R207 is an internal-organization
)


def kind_of(entity: etree._Element) -> str:
    """The compare kind of an entity element (mappings/compare.yaml `kinds`)."""
    coded = entity.find("csd:codedType", NS)
    if local(entity) == "facility" and coded is not None and coded.get("codingScheme") == R207_OID:
        return "internal-organization"
    return local(entity)


def report_differences(report: dict[str, Any]) -> set[tuple[str, str, str, str | None, str | None]]:
    return {(d["entity"], d["kind"], d["path"], d["legacy"], d["bridge"]) for d in report["differences"]}
