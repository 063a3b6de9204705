"""mappings/codes/systems.csv against the NOS files of 2023-06-14 and ANS's identifier rule: every OID it
gives is the zip's (file recorded in `source`), every table of the zip it uses has one, and the identifier
authorities are the ones validation_identifiants.sch expects."""

from __future__ import annotations

import re

from tests.profile.harness import OfficialProfile
from tests.profile.systems import NOS_SOURCE, PROFILE_AUTHORITIES, filled, read, table_key


def test_every_nos_oid_of_systems_csv_is_the_zips(official_profile: OfficialProfile) -> None:
    nos = official_profile.nos
    _, _, rows = read()
    from_nos = [row for row in rows if row["source"].startswith(NOS_SOURCE.format(file=""))]
    assert len(from_nos) >= 40
    by_file = {table.file: table for table in nos.tables.values()}
    for row in from_nos:
        file = row["source"].removeprefix(NOS_SOURCE.format(file=""))
        assert file in by_file, row
        assert row["oid"] == by_file[file].oid, row
        assert table_key(row["name"]) == by_file[file].key, row
        assert row["confidence"] == "verified"


def test_every_table_the_zip_has_is_filled(official_profile: OfficialProfile) -> None:
    # Regenerating changes nothing: no row names a table of the zip without its OID.
    _, _, rows = read()
    assert filled(rows, official_profile.nos) == rows
    without = sorted(row["name"] for row in rows if not row["oid"])
    # Not in the NOS files of 2023-06-14 (newer tables), or not NOS at all.
    assert without == [
        "ADELI rang",
        "ADELI rang",
        "RPPS rang",
        "RPPS rang",
        "TRE_R316-AutreCategorieEtablissement",
        "TRE_R343-FonctionLieu",
        "TRE_R354-TypeIdentifiantRessourceOperationnelle",
        "UCUM",
        "identifiantOI",
    ]
    for name in without:
        key = table_key(name)
        assert key is None or key not in official_profile.nos.tables, name


def test_identifier_authorities_are_the_profiles(official_profile: OfficialProfile) -> None:
    rule = (official_profile.rules_dir / "validation_identifiants.sch").read_text("utf-8")
    expected = set(re.findall(r"assigningAuthorityName='([0-9.]+)'", rule))
    assert expected == {"1.2.250.1.71.4.2.2", "1.2.250.1.213.3.2", "1.3.2"}
    _, _, rows = read()
    by_name = {row["name"]: row["oid"] for row in rows if row["kind"] == "identifier"}
    assert by_name["idNatStruct"] == "1.2.250.1.71.4.2.2"
    for name, oid in PROFILE_AUTHORITIES.items():
        assert by_name[name] == oid
        assert oid in expected
