"""The spool's SQLite layout (issue 13 item 4): the read-back's walks of the references read covering indexes
only, the context copy comes before the body in a row, and the file has the spool's page size.

The spool is filled with the simulator's dataset; the statements checked are the ones `context_keys` really
runs for every directory's batches (SQLite's trace callback), each explained by SQLite itself.
"""

from __future__ import annotations

import re
import sqlite3
from collections.abc import Iterator

import pytest

from bridge.model import Directory
from bridge.pipeline.spool import SPOOL_PAGE_BYTES, Spool
from bridge.simulator.dataset import generate_dataset
from tests.test_extraction import filled_spool

SCALE = 300
SEED = 5


@pytest.fixture(scope="module")
def spool() -> Iterator[Spool]:
    with filled_spool(generate_dataset(SCALE, SEED)) as filled:
        yield filled


def _ref_reads(db: sqlite3.Connection, statement: str) -> list[str]:
    """The plan's lines reading the `ref` table or its indexes."""
    plan = db.execute(f"EXPLAIN QUERY PLAN {statement}").fetchall()
    return [detail for *_, detail in plan if " ref " in f" {detail} "]


def test_the_walks_of_the_references_read_covering_indexes(spool: Spool) -> None:
    statements: list[str] = []
    with spool.lock:
        spool.db.set_trace_callback(statements.append)
        try:
            for resource_type, directory in (
                ("Organization", Directory.ORGANIZATION),
                ("Organization", Directory.FACILITY),
                ("HealthcareService", Directory.FACILITY),
                ("PractitionerRole", Directory.PROVIDER),
                ("Location", Directory.DEVICE),
            ):
                keys = [key for key, _, _ in spool.rows(resource_type, directory)][:50]
                assert keys, f"rows of {resource_type} to walk from"
                spool.context_keys(
                    keys,
                    offers_at=resource_type == "Location",
                    below=resource_type == "Organization" and directory is Directory.FACILITY,
                )
        finally:
            spool.db.set_trace_callback(None)
        walks = [s for s in statements if "FROM ref" in s]
        shapes = {re.sub(r"'[^']*'", "?", re.sub(r"IN \([^)]*\)", "IN (…)", s)) for s in walks}
        assert len(shapes) >= 4, f"the targets, offers at, below and ancestors: {shapes}"
        for statement in walks:
            reads = _ref_reads(spool.db, statement)
            assert reads, statement
            for detail in reads:
                assert "COVERING INDEX" in detail, f"{detail} in: {statement[:160]}"


def test_the_context_copy_comes_before_the_body(spool: Spool) -> None:
    # SQLite reads a row's columns in order: a column after the body would cost the body's overflow pages.
    with spool.lock:
        columns = [name for _, name, *_ in spool.db.execute("PRAGMA table_info(resource)")]
        (page_size,) = spool.db.execute("PRAGMA page_size").fetchone()
    assert columns[-1] == "body"
    assert columns.index("context") < columns.index("body")
    assert page_size == SPOOL_PAGE_BYTES
