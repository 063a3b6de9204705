"""The rows a directory maps, decided when spooled (issue 13 item 4): the spool's rows statement (and
`Spool.mapped`, for the change spools' own statements) filters the read-back's rows by the `maps` the spool
stored, without parsing a row again (before, every organisation row was parsed once to filter it and once
more to map it).

The spool is filled with the simulator's dataset; each table's own `select` on the parsed resources is the
reference the stored decision must equal.
"""

from __future__ import annotations

import orjson
import pytest

from bridge.model import Directory
from bridge.simulator.dataset import generate_dataset
from tests.test_extraction import MAPPINGS, filled_spool

SCALE = 300
SEED = 5


@pytest.mark.parametrize("directory", [Directory.ORGANIZATION, Directory.FACILITY])
def test_the_stored_decision_is_the_tables_select(
    directory: Directory, monkeypatch: pytest.MonkeyPatch
) -> None:
    dataset = list(generate_dataset(SCALE, SEED))
    tables = [
        t
        for t in MAPPINGS.entities.values()
        if t.kind.directory is directory and t.resource == "Organization"
    ]
    assert tables, "a table of organisations in the directory"
    assert all(t.select is not None for t in tables), "a `select`: the check filters something"
    expected = [
        f"Organization/{r['id']}"
        for r in dataset
        if r["resourceType"] == "Organization" and any(t.applies(r) for t in tables)
    ]
    with filled_spool(dataset) as spool:

        def no_parse(body: bytes) -> object:
            raise AssertionError("a row parsed to be filtered")

        monkeypatch.setattr(orjson, "loads", no_parse)  # anywhere, while the rows are filtered
        with spool.lock:
            every = list(spool.rows("Organization", directory))
            kept = [key for key, _, _ in spool.mapped(every, tables)]
            # the spool's own rows statement filters the same rows itself (`maps` in its WHERE clause): a row
            # no table maps is not even read
            filtered = list(spool.rows("Organization", directory, tables))
    assert 0 < len(kept) < len(every), "some organisations filtered out, some kept"
    assert sorted(kept) == sorted(expected)
    keys = [key for key, _, _ in every]
    assert kept == [key for key in keys if key in set(kept)], "in the rows' order"
    assert filtered == [row for row in every if row[0] in set(kept)], "the same rows, in the same order"


def test_the_rows_counted_are_the_rows_read_back() -> None:
    """`count_rows` (which decides whether a directory goes to the mapping workers) counts on the index what
    `rows` reads back sorted, for every type spooled, and nothing for a type not spooled."""
    dataset = list(generate_dataset(SCALE, SEED))
    with filled_spool(dataset) as spool:
        types = {str(r["resourceType"]) for r in dataset}
        assert len(types) >= 5, "the dataset spools several types: the check compares several counts"
        for resource_type in sorted(types):
            rows = list(spool.rows(resource_type))
            assert rows, resource_type
            assert spool.count_rows(resource_type) == len(rows), resource_type
        assert spool.count_rows("Patient") == 0
