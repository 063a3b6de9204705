"""The public NOS files of 2023-06-14 (ANS's zip in ../shared/reference/ror-v24/platines/), read in place.

Part of the official-profile conformance harness: gives every TRE / JDV table's OID and concepts, and renders
a table as the SVS `RetrieveValueSetResponse` document that ANS's Schematron rules load with
`doc('TRE_….xml')`.
Nothing of the zip is written into the repository; the documents are built in memory.
"""

from __future__ import annotations

import re
import zipfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from lxml import etree

SVS = "urn:ihe:iti:svs:2008"
# TRE_R30, JDV_J185, TRE_G07, ASS_X09…: the table's key, before its descriptive name.
_KEY = re.compile(r"^((?:TRE|JDV|ASS|PUB)_[A-Z]+\d*)")


@dataclass(frozen=True)
class Concept:
    code: str
    code_system: str  # the OID of the TRE a JDV concept comes from; the table's own OID for a TRE
    label: str


@dataclass(frozen=True)
class NosTable:
    key: str  # "TRE_R30"
    file: str  # "TRE_R30-RegionOM.tabs", as in the zip
    oid: str  # the table's own OID
    kind: str  # TRE, JDV, ASS, PUB
    description: str
    concepts: tuple[Concept, ...]

    @property
    def name(self) -> str:
        """The file name without `.tabs`: `TRE_R30-RegionOM`."""
        return self.file.removesuffix(".tabs")

    def svs_document(self) -> etree._ElementTree:
        """The table as an SVS RetrieveValueSetResponse (the shape ANS's rules read)."""
        root = etree.Element(etree.QName(SVS, "RetrieveValueSetResponse"), nsmap={None: SVS})  # type: ignore[dict-item]
        value_set = etree.SubElement(
            root, etree.QName(SVS, "ValueSet"), id=self.oid, displayName=self.name, version="2023-06-14"
        )
        concepts = etree.SubElement(value_set, etree.QName(SVS, "ConceptList"))
        for concept in self.concepts:
            etree.SubElement(
                concepts,
                etree.QName(SVS, "Concept"),
                code=concept.code,
                codeSystem=concept.code_system,
                displayName=concept.label,
            )
        return etree.ElementTree(root)


def _decode(data: bytes) -> str:
    # The NOS files are a mix of UTF-8 and ISO-8859-1 (their historical encoding): UTF-8 when it decodes.
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return data.decode("iso-8859-1")


def _parse(file: str, text: str) -> NosTable:
    lines = [line for line in text.splitlines() if line.strip()]
    if len(lines) < 3 or not lines[0].startswith("<OID>"):
        raise ValueError(f"{file}: not a NOS .tabs file (no <OID> header)")
    oid, kind, _name, description, *_ = lines[1].split(";")
    concepts = []
    for line in lines[3:]:
        fields = line.split(";")
        if line.startswith("<") or len(fields) < 3:
            continue
        concepts.append(Concept(code=fields[1], code_system=fields[0], label=fields[2]))
    match = _KEY.match(file)
    if match is None:
        raise ValueError(f"{file}: no table key (TRE_…, JDV_…) in the file name")
    return NosTable(
        key=match.group(1),
        file=file,
        oid=oid,
        kind=kind,
        description=description,
        concepts=tuple(concepts),
    )


class NosFiles:
    """Every table of the zip, by key (`TRE_R30`) and by file name."""

    def __init__(self, zip_path: Path) -> None:
        self.path = zip_path
        self.tables: dict[str, NosTable] = {}
        # table key → the codes add_codes gave it beyond the 2023-06-14 file (the harness reports them)
        self.added: dict[str, frozenset[str]] = {}
        with zipfile.ZipFile(zip_path) as archive:
            for info in archive.infolist():
                if info.filename.endswith(".tabs"):
                    table = _parse(info.filename, _decode(archive.read(info)))
                    self.tables[table.key] = table

    def add_codes(self, codes: Mapping[str, Sequence[str]]) -> None:
        """Adds codes (by table key) that the 2023-06-14 tables lack: real codes published since, which a
        dataset may carry. A table the 2023 files do not have is not one the rules read: skipped."""
        for key, more in codes.items():
            table = self.tables.get(key)
            if table is None:
                continue
            known = {concept.code for concept in table.concepts}
            added = tuple(Concept(code, table.oid, "") for code in dict.fromkeys(more) if code not in known)
            if added:
                self.tables[key] = replace(table, concepts=table.concepts + added)
                self.added[key] = self.added.get(key, frozenset()) | {c.code for c in added}

    def find(self, reference: str) -> NosTable | None:
        """The table a name designates: `TRE_R69-FinessAgregatStatutJuridiqueNiv2.xml` → TRE_R69.

        ANS's rules name some tables by an older descriptive name (R69, R237, R330, R331, R335); the key
        before the first dash identifies the table in every NOS release.
        """
        match = _KEY.match(Path(reference).name)
        return self.tables.get(match.group(1)) if match else None

    def by_oid(self, oid: str) -> list[NosTable]:
        return [table for table in self.tables.values() if table.oid == oid]
