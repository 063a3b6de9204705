"""Fills the NOS OIDs of mappings/codes/systems.csv from the NOS files of 2023-06-14 (ANS's zip, in place).

Part of the official-profile conformance harness. `python -m tests.profile.systems` rewrites the `oid`,
`source` and `confidence` of every `code` row whose table (TRE_Rnn, TRE_Gnn…) is in the zip, and of the
identifier authorities ANS's rule validation_identifiants.sch names; other rows are left as they are.
tests/profile/test_systems.py checks the file against the zip, so a hand edit that disagrees fails.
"""

from __future__ import annotations

import csv
import io
import re
import sys
from pathlib import Path

from tests.profile.nos import NosFiles

REPO = Path(__file__).resolve().parents[2]
SYSTEMS = REPO / "mappings" / "codes" / "systems.csv"
NOS_ZIP = (
    REPO.parent / "shared" / "reference" / "ror-v24" / "platines" / "2023-06-14_NOS-Fichiers_Publics.zip"
)
NOS_SOURCE = "NOS 2023-06-14 {file}"
_TABLE = re.compile(r"^(TRE|JDV)_[A-Z]+\d+")

# The assigningAuthorityName ANS's identifier rule (validation_identifiants.sch, pattern
# validite-idNat-Struct-TRLecture) expects on an EJ's otherID, by systems.csv `name`.
PROFILE_AUTHORITIES = {
    "FINESS": "1.2.250.1.213.3.2",  # otherID[@assigningAuthorityName='1.2.250.1.213.3.2']: 9 characters
    "SIRENE": "1.3.2",  # otherID[@assigningAuthorityName='1.3.2']: SIREN (9) or SIRET (14)
}
PROFILE_SOURCE = "ANS PLATINES rule validation_identifiants.sch (the profile's assigningAuthorityName)"


def table_key(name: str) -> str | None:
    """`TRE_R66-CategorieEtablissement` → `TRE_R66`; None for names that are not NOS tables."""
    match = _TABLE.match(name)
    return match.group(0) if match else None


def filled(rows: list[dict[str, str]], nos: NosFiles) -> list[dict[str, str]]:
    out = []
    for row in rows:
        row = dict(row)
        key = table_key(row["name"])
        table = nos.tables.get(key) if key and row["kind"] == "code" else None
        if table is not None:
            row.update(oid=table.oid, source=NOS_SOURCE.format(file=table.file), confidence="verified")
        elif row["kind"] == "identifier" and row["name"] in PROFILE_AUTHORITIES:
            row.update(oid=PROFILE_AUTHORITIES[row["name"]], source=PROFILE_SOURCE, confidence="verified")
        out.append(row)
    return out


def read(path: Path = SYSTEMS) -> tuple[list[str], list[str], list[dict[str, str]]]:
    """(comment lines, columns, rows) of systems.csv."""
    lines = path.read_text("utf-8").splitlines()
    comments = [line for line in lines if line.startswith("#")]
    reader = csv.DictReader(line for line in lines if not line.startswith("#"))
    return comments, list(reader.fieldnames or ()), list(reader)


def render(comments: list[str], columns: list[str], rows: list[dict[str, str]]) -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return "\n".join(comments) + "\n" + buffer.getvalue()


def main() -> int:
    comments, columns, rows = read()
    text = render(comments, columns, filled(rows, NosFiles(NOS_ZIP)))
    SYSTEMS.write_text(text, "utf-8")
    print(
        f"{SYSTEMS.relative_to(REPO)}: {sum(1 for r in rows if r['oid'])} → "
        f"{text.count(',verified')} rows with an OID",
        file=sys.stderr,
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
