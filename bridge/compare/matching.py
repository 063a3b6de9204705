"""Matching and semantic diff of two sides' entities, on disk (SQLite): national documents in flat memory.

compare/ (side-by-side comparison). A run holds units (one request, one archived pair, one document pair, one
shadow record); each unit's legacy and bridge entities are matched by the rules' identifier order, their
fields diffed (codes through the crosswalks, references through the match), and the outcome kept for reports.
"""

from __future__ import annotations

import contextlib
import fnmatch
import functools
import re
import sqlite3
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from itertools import zip_longest
from pathlib import Path
from typing import Any

import orjson

from bridge.compare.entities import Entity
from bridge.compare.rules import ENTITY_ID, VIA, CompareRules

LEGACY, BRIDGE = 0, 1
EQUAL, DIFFERENT, ONLY_LEGACY, ONLY_BRIDGE = "equal", "different", "only_legacy", "only_bridge"
NO_REGION = "(none)"

_SCHEMA = """
CREATE TABLE unit (id INTEGER PRIMARY KEY, name TEXT, function TEXT, region TEXT,
                   legacy_status TEXT, bridge_status TEXT, problem TEXT);
CREATE TABLE entity (id INTEGER PRIMARY KEY, unit INT, side INT, kind TEXT, eid TEXT, region TEXT,
                     partner INT);
CREATE TABLE payload (id INTEGER PRIMARY KEY, fields BLOB, refs BLOB);
CREATE TABLE ident (entity INT, unit INT, side INT, kind TEXT, scheme TEXT, value TEXT);
CREATE TABLE outcome (unit INT, kind TEXT, region TEXT, status TEXT, legacy_eid TEXT, bridge_eid TEXT,
                      legacy_fields BLOB, bridge_fields BLOB, differences INT);
CREATE TABLE diff (unit INT, kind TEXT, region TEXT, entity TEXT, path TEXT, legacy TEXT, bridge TEXT);
"""


@dataclass(frozen=True, slots=True)
class Difference:
    path: str
    legacy: str | None
    bridge: str | None


@dataclass(frozen=True, slots=True)
class Counts:
    matched: int = 0
    equal: int = 0
    only_legacy: int = 0
    only_bridge: int = 0

    @property
    def parity(self) -> float:
        """equal / (matched + only_legacy + only_bridge); 1 when there is nothing to compare."""
        total = self.matched + self.only_legacy + self.only_bridge
        return self.equal / total if total else 1.0

    def as_json(self) -> dict[str, Any]:
        return {
            "matched": self.matched,
            "equal": self.equal,
            "different": self.matched - self.equal,
            "only_legacy": self.only_legacy,
            "only_bridge": self.only_bridge,
            "parity": round(self.parity, 6),
        }


@functools.lru_cache(maxsize=64)
def _pattern(patterns: tuple[str, ...]) -> re.Pattern[str] | None:
    compiled = [fnmatch.translate(p) for p in patterns]
    return re.compile("|".join(f"(?:{p})" for p in compiled)) if compiled else None


@functools.lru_cache(maxsize=64)
def _ignored_paths(patterns: tuple[str, ...]) -> dict[str, bool]:
    """Per rule set, whether each field path seen so far is ignored (bounded: cleared when full)."""
    return {}


def diff_fields(
    rules: CompareRules,
    legacy: Sequence[Sequence[str]],
    bridge: Sequence[Sequence[str]],
    references: Iterable[str] = (),
    translate: Callable[[str], str] = lambda value: value,
) -> list[Difference]:
    """The differing fields of two flattened entities: per path, values compared as a multiset (in order for
    the `ordered` paths); legacy values at reference paths are first translated to the bridge's entityIDs."""
    ignore = _pattern(rules.ignore)
    ignored = _ignored_paths(rules.ignore)
    ordered = _pattern(tuple(sorted(rules.ordered)))
    referring = set(references)
    by_path: dict[str, tuple[list[str], list[str]]] = {}
    for side, pairs in ((0, legacy), (1, bridge)):
        for path, value in pairs:
            if ignore is not None:
                skip = ignored.get(path)
                if skip is None:
                    if len(ignored) >= 4096:
                        ignored.clear()
                    skip = ignored[path] = ignore.fullmatch(path) is not None
                if skip:
                    continue
            if side == 0 and path in referring:
                value = translate(value)
            by_path.setdefault(path, ([], []))[side].append(value)
    differences: list[Difference] = []
    for path in sorted(by_path):
        left, right = by_path[path]
        if left == right:
            continue
        if ordered is not None and ordered.fullmatch(path):
            pairs_ = [(a, b) for a, b in zip_longest(left, right) if a != b]
        else:
            only_left = sorted((Counter(left) - Counter(right)).elements())
            only_right = sorted((Counter(right) - Counter(left)).elements())
            pairs_ = list(zip_longest(only_left, only_right))
        differences.extend(Difference(path, a, b) for a, b in pairs_)
    return differences


# SQLite's memory per run, whatever its size (issue 14, "flat memory"): the page cache of the store and of its
# temporary tables, and through it the sorters (SQLite sizes a sorter's in-memory run by the page cache, then
# spills sorted runs to temporary files: CREATE INDEX, GROUP BY and ORDER BY over millions of rows).
CACHE_KIB = 8192
TEMP_CACHE_KIB = 1024
# The process-wide ceiling `ror-bridge compare` sets (bound_sqlite_heap): past it SQLite recycles cache pages
# and spills sorters early instead of allocating more.
HEAP_LIMIT_MIB = 24


def bound_sqlite_heap(mib: int = HEAP_LIMIT_MIB) -> int:
    """Set SQLite's soft heap limit for the whole process (a command's own process only: every connection of
    the process shares it); the limit now in force, in bytes."""
    with contextlib.closing(sqlite3.connect(":memory:")) as db:
        return int(db.execute(f"PRAGMA soft_heap_limit={mib * 1024 * 1024}").fetchone()[0])


class Store:
    """One comparison run on disk (a temporary SQLite file; `:memory:` for a single small answer), in a
    bounded amount of memory: fixed page caches, no memory mapping, temporary tables and sorts on disk."""

    PRAGMAS = (
        "journal_mode=OFF",
        "synchronous=OFF",
        f"cache_size=-{CACHE_KIB}",
        f"temp.cache_size=-{TEMP_CACHE_KIB}",
        "mmap_size=0",  # pages read through the bounded cache, never a mapping that grows with the file
        "temp_store=FILE",
        "threads=0",  # sorters in this thread: no per-thread sort buffers
    )

    def __init__(self, rules: CompareRules, path: Path | str = ":memory:") -> None:
        self.rules = rules
        self.db = sqlite3.connect(str(path), isolation_level=None)
        for pragma in self.PRAGMAS:
            self.db.execute(f"PRAGMA {pragma}")
        self.db.executescript(_SCHEMA)
        self.db.execute("BEGIN")
        self._next_id = 0

    def close(self) -> None:
        self.db.commit()
        self.db.close()

    # --- filling
    def new_unit(self, name: str, function: str, region: str = "") -> int:
        cursor = self.db.execute(
            "INSERT INTO unit (name, function, region, legacy_status, bridge_status, problem) "
            "VALUES (?, ?, ?, '', '', '')",
            (name, function, region),
        )
        return int(cursor.lastrowid or 0)

    def set_status(self, unit: int, legacy: str, bridge: str, problem: str = "") -> None:
        self.db.execute(
            "UPDATE unit SET legacy_status=?, bridge_status=?, problem=? WHERE id=?",
            (legacy, bridge, problem, unit),
        )
        if problem:
            self.db.execute(
                "INSERT INTO diff VALUES "
                "(?, 'answer', '', (SELECT name FROM unit WHERE id=?), 'status', ?, ?)",
                (unit, unit, legacy, bridge),
            )

    def add(
        self, unit: int, side: int, entities: Iterable[Entity], on_entity: Callable[[], None] | None = None
    ) -> int:
        """Keep one side's entities of a unit (inserted in batches; ids assigned here)."""
        count = 0
        rows: list[tuple[Any, ...]] = []
        identifiers: list[tuple[Any, ...]] = []
        for entity in entities:
            self._next_id += 1
            rows.append(
                (
                    self._next_id,
                    unit,
                    side,
                    entity.kind,
                    entity.entity_id,
                    entity.region,
                    orjson.dumps(entity.fields),
                    orjson.dumps(sorted(entity.references)),
                )
            )
            identifiers.extend(
                (self._next_id, unit, side, entity.kind, scheme, value)
                for scheme, value in entity.identifiers
            )
            count += 1
            if len(rows) >= 1000:
                self._flush(rows, identifiers)
            if on_entity is not None:
                on_entity()
        self._flush(rows, identifiers)
        return count

    def _flush(self, rows: list[tuple[Any, ...]], identifiers: list[tuple[Any, ...]]) -> None:
        # Fields in their own table: matching walks the narrow entity rows only.
        self.db.executemany(
            "INSERT INTO entity (id, unit, side, kind, eid, region) VALUES (?, ?, ?, ?, ?, ?)",
            [row[:6] for row in rows],
        )
        self.db.executemany(
            "INSERT INTO payload VALUES (?, ?, ?)", [(row[0], row[6], row[7]) for row in rows]
        )
        self.db.executemany("INSERT INTO ident VALUES (?, ?, ?, ?, ?, ?)", identifiers)
        rows.clear()
        identifiers.clear()

    # --- matching and diffing
    def _match(self, unit: int) -> None:
        """One-to-one pairs, kind by kind, in each kind's `match` order; `via:` steps last, once every kind's
        own identifiers have been tried (they follow another kind's pairs)."""
        self.db.execute("CREATE INDEX IF NOT EXISTS ident_key ON ident (unit, kind, scheme, value, side)")
        self.db.execute("CREATE INDEX IF NOT EXISTS entity_unit ON entity (unit, side)")
        kinds = [row[0] for row in self.db.execute("SELECT DISTINCT kind FROM entity WHERE unit=?", (unit,))]
        via_steps: list[tuple[str, str]] = []
        for kind in kinds:
            for scheme in self.rules.match_order(kind):
                if scheme.startswith(VIA):
                    via_steps.append((kind, scheme[len(VIA) :]))
                    continue
                self._pair(
                    """SELECT l.entity AS lid, MIN(b.entity) AS bid
                       FROM ident l
                       JOIN ident b ON b.unit=l.unit AND b.kind=l.kind AND b.scheme=l.scheme
                                    AND b.value=l.value AND b.side=1
                       JOIN entity le ON le.id=l.entity AND le.partner IS NULL
                       JOIN entity be ON be.id=b.entity AND be.partner IS NULL
                       WHERE l.unit=? AND l.side=0 AND l.kind=? AND l.scheme=?
                       GROUP BY l.entity""",
                    (unit, kind, scheme),
                )
        if via_steps:
            self.db.execute("CREATE INDEX IF NOT EXISTS entity_eid ON entity (unit, side, kind, eid)")
        for kind, other in via_steps:
            # l (legacy, this kind) shares its entityID with lv (legacy, the other kind), matched to bv; the
            # bridge's entity of this kind under bv's entityID is l's partner.
            self._pair(
                """SELECT l.id AS lid, MIN(b.id) AS bid
                   FROM entity l
                   JOIN entity lv ON lv.unit=l.unit AND lv.side=0 AND lv.kind=? AND lv.eid=l.eid
                   JOIN entity bv ON bv.id=lv.partner
                   JOIN entity b ON b.unit=l.unit AND b.side=1 AND b.kind=l.kind AND b.eid=bv.eid
                                AND b.partner IS NULL
                   WHERE l.unit=? AND l.side=0 AND l.kind=? AND l.eid != '' AND l.partner IS NULL
                   GROUP BY l.id""",
                (other, unit, kind),
            )
        self.db.execute("DROP TABLE IF EXISTS temp.pairs")

    def _pair(self, candidates: str, parameters: tuple[Any, ...]) -> None:
        """Pair the unpaired: `candidates` selects (lid, bid), at most one bid per lid; each bid keeps its
        first lid; repeated until no candidate is left (a bid taken frees its other lids for their next)."""
        while True:
            self.db.execute("DROP TABLE IF EXISTS temp.pairs")
            self.db.execute(
                f"CREATE TEMP TABLE pairs AS SELECT MIN(lid) AS lid, bid FROM ({candidates}) GROUP BY bid",  # noqa: S608
                parameters,
            )
            found = self.db.execute("SELECT COUNT(*) FROM temp.pairs").fetchone()[0]
            if not found:
                break
            pairs = self.db.cursor()
            pairs.execute("SELECT lid, bid FROM temp.pairs")
            while batch := pairs.fetchmany(10_000):  # by primary key: a correlated UPDATE is far slower
                self.db.executemany("UPDATE entity SET partner=? WHERE id=?", [(b, a) for a, b in batch])
                self.db.executemany("UPDATE entity SET partner=? WHERE id=?", batch)

    def _region(self, unit_region: str, *regions: str) -> str:
        if unit_region:
            return unit_region
        for code in regions:
            if code:
                return self.rules.regions.get(code, code)
        return NO_REGION

    def settle(self, unit: int, on_entity: Callable[[], None] | None = None) -> Counts:
        """Match the unit's two sides, diff the matched pairs, record every outcome; its counts."""
        self._match(unit)
        unit_region = self.db.execute("SELECT region FROM unit WHERE id=?", (unit,)).fetchone()[0]
        self.db.execute("DROP TABLE IF EXISTS temp.idmap")
        self.db.execute(
            "CREATE TEMP TABLE idmap AS SELECT l.eid AS legacy, b.eid AS bridge FROM entity l "
            "JOIN entity b ON b.id=l.partner WHERE l.unit=? AND l.side=0 AND l.eid != ''",
            (unit,),
        )
        self.db.execute("CREATE INDEX temp.idmap_l ON idmap (legacy)")
        lookup = self.db.cursor()

        def translate(value: str) -> str:
            row = lookup.execute("SELECT bridge FROM temp.idmap WHERE legacy=?", (value,)).fetchone()
            return str(row[0]) if row else value

        counts = Counter[str]()
        reader = self.db.cursor()
        reader.execute(
            "SELECT l.kind, l.eid, l.region, lp.fields, lp.refs, b.eid, b.region, bp.fields FROM entity l "
            "JOIN entity b ON b.id=l.partner JOIN payload lp ON lp.id=l.id JOIN payload bp ON bp.id=b.id "
            "WHERE l.unit=? AND l.side=0 ORDER BY l.id",
            (unit,),
        )
        while rows := reader.fetchmany(500):
            for (
                kind,
                legacy_eid,
                legacy_region,
                legacy_fields,
                refs,
                bridge_eid,
                bridge_region,
                bridge_fields,
            ) in rows:
                region = self._region(unit_region, bridge_region, legacy_region)
                differences = diff_fields(
                    self.rules,
                    orjson.loads(legacy_fields),
                    orjson.loads(bridge_fields),
                    orjson.loads(refs),
                    translate,
                )
                status = DIFFERENT if differences else EQUAL
                counts[status] += 1
                self.db.execute(
                    "INSERT INTO outcome VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (
                        unit,
                        kind,
                        region,
                        status,
                        legacy_eid,
                        bridge_eid,
                        legacy_fields,
                        bridge_fields,
                        len(differences),
                    ),
                )
                self.db.executemany(
                    "INSERT INTO diff VALUES (?, ?, ?, ?, ?, ?, ?)",
                    [(unit, kind, region, bridge_eid, d.path, d.legacy, d.bridge) for d in differences],
                )
                if on_entity is not None:
                    on_entity()
        for side, status in ((LEGACY, ONLY_LEGACY), (BRIDGE, ONLY_BRIDGE)):
            reader.execute(
                "SELECT kind, eid, region, fields FROM entity JOIN payload USING (id) "
                "WHERE unit=? AND side=? AND partner IS NULL ORDER BY id",
                (unit, side),
            )
            while rows := reader.fetchmany(500):
                for kind, eid, region, fields in rows:
                    counts[status] += 1
                    legacy_eid, bridge_eid = (eid, None) if side == LEGACY else (None, eid)
                    legacy_fields, bridge_fields = (fields, None) if side == LEGACY else (None, fields)
                    self.db.execute(
                        "INSERT INTO outcome VALUES (?, ?, ?, ?, ?, ?, ?, ?, 0)",
                        (
                            unit,
                            kind,
                            self._region(unit_region, region),
                            status,
                            legacy_eid,
                            bridge_eid,
                            legacy_fields,
                            bridge_fields,
                        ),
                    )
        self.db.execute("DELETE FROM ident WHERE unit=?", (unit,))
        self.db.execute("DELETE FROM payload WHERE id IN (SELECT id FROM entity WHERE unit=?)", (unit,))
        self.db.execute("DELETE FROM entity WHERE unit=?", (unit,))
        return Counts(
            matched=counts[EQUAL] + counts[DIFFERENT],
            equal=counts[EQUAL],
            only_legacy=counts[ONLY_LEGACY],
            only_bridge=counts[ONLY_BRIDGE],
        )

    def add_outcome(
        self,
        unit: int,
        kind: str,
        region: str,
        status: str,
        legacy_eid: str | None,
        bridge_eid: str | None,
        differences: Sequence[Difference] = (),
        fields: tuple[Any, Any] = (None, None),
    ) -> None:
        """An outcome computed elsewhere (a shadow-mode record), kept as if settled here."""
        self.db.execute(
            "INSERT INTO outcome VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                unit,
                kind,
                region or NO_REGION,
                status,
                legacy_eid,
                bridge_eid,
                orjson.dumps(fields[0]) if fields[0] is not None else None,
                orjson.dumps(fields[1]) if fields[1] is not None else None,
                len(differences),
            ),
        )
        self.db.executemany(
            "INSERT INTO diff VALUES (?, ?, ?, ?, ?, ?, ?)",
            [
                (unit, kind, region or NO_REGION, bridge_eid or legacy_eid, d.path, d.legacy, d.bridge)
                for d in differences
            ],
        )

    # --- reading results
    def counts(self, where: str = "", parameters: Sequence[Any] = ()) -> Counts:
        totals = Counter[str]()
        query = "SELECT o.status, COUNT(*) FROM outcome o JOIN unit u ON u.id=o.unit"
        for status, count in self.db.execute(f"{query} {where} GROUP BY o.status", parameters):
            totals[status] = count
        return Counts(
            matched=totals[EQUAL] + totals[DIFFERENT],
            equal=totals[EQUAL],
            only_legacy=totals[ONLY_LEGACY],
            only_bridge=totals[ONLY_BRIDGE],
        )

    def counts_by(self, column: str) -> dict[str, Counts]:
        """Counts per function (`u.function`), kind (`o.kind`) or region (`o.region`)."""
        if column not in ("u.function", "o.kind", "o.region", "u.id"):
            raise ValueError(column)
        totals: dict[str, Counter[str]] = {}
        query = f"SELECT {column}, o.status, COUNT(*) FROM outcome o JOIN unit u ON u.id=o.unit"  # noqa: S608
        for value, status, count in self.db.execute(f"{query} GROUP BY 1, 2 ORDER BY 1"):
            totals.setdefault(str(value), Counter())[status] = count
        return {
            value: Counts(
                matched=c[EQUAL] + c[DIFFERENT],
                equal=c[EQUAL],
                only_legacy=c[ONLY_LEGACY],
                only_bridge=c[ONLY_BRIDGE],
            )
            for value, c in totals.items()
        }

    def units(self) -> list[dict[str, Any]]:
        rows = self.db.execute(
            "SELECT id, name, function, region, legacy_status, bridge_status, problem FROM unit ORDER BY id"
        )
        result = []
        per_unit = self.counts_by("u.id")
        differences_of = dict(self.db.execute("SELECT unit, COUNT(*) FROM diff GROUP BY unit").fetchall())
        for unit, name, function, region, legacy, bridge, problem in rows.fetchall():
            counts = per_unit.get(str(unit), Counts())
            differences = differences_of.get(unit, 0)
            result.append(
                {
                    "name": name,
                    "function": function,
                    "region": region,
                    "legacy_status": legacy,
                    "bridge_status": bridge,
                    "problem": problem,
                    "differences": differences,
                    **counts.as_json(),
                }
            )
        return result

    def top_fields(self, limit: int = 20) -> list[dict[str, Any]]:
        rows = self.db.execute(
            "SELECT kind, path, COUNT(*) FROM diff GROUP BY kind, path ORDER BY 3 DESC, 2 LIMIT ?", (limit,)
        )
        return [{"kind": kind, "path": path, "count": count} for kind, path, count in rows.fetchall()]

    def entity_ids(self, status: str) -> Iterator[str]:
        column = "legacy_eid" if status == ONLY_LEGACY else "bridge_eid"
        cursor = self.db.cursor()
        cursor.execute(f"SELECT {column} FROM outcome WHERE status=? ORDER BY rowid", (status,))  # noqa: S608
        while rows := cursor.fetchmany(1000):
            yield from (str(row[0]) for row in rows)

    def differences(self) -> Iterator[dict[str, Any]]:
        cursor = self.db.cursor()
        cursor.execute(
            "SELECT d.entity, d.kind, d.path, d.legacy, d.bridge, u.name, u.function, d.region FROM diff d "
            "JOIN unit u ON u.id=d.unit ORDER BY d.rowid"
        )
        while rows := cursor.fetchmany(1000):
            for entity, kind, path, legacy, bridge, unit, function, region in rows:
                yield {
                    "entity": entity,
                    "kind": kind,
                    "path": path,
                    "legacy": legacy,
                    "bridge": bridge,
                    "unit": unit,
                    "function": function,
                    "region": region,
                }

    def drill(self, limit: int) -> Iterator[dict[str, Any]]:
        """Up to `limit` entities with their fields side by side: differing and unmatched ones first."""
        self.db.execute("CREATE INDEX IF NOT EXISTS diff_entity ON diff (unit, entity)")
        cursor = self.db.cursor()
        cursor.execute(
            "SELECT o.rowid, o.kind, o.region, o.status, o.legacy_eid, o.bridge_eid, o.legacy_fields, "
            "o.bridge_fields, u.name, u.function FROM outcome o JOIN unit u ON u.id=o.unit "
            "ORDER BY CASE o.status WHEN 'equal' THEN 1 ELSE 0 END, o.rowid LIMIT ?",
            (limit,),
        )
        diffs = self.db.cursor()
        while rows := cursor.fetchmany(200):
            for (
                row,
                kind,
                region,
                status,
                legacy_eid,
                bridge_eid,
                legacy_fields,
                bridge_fields,
                unit,
                function,
            ) in rows:
                paths = sorted(
                    {
                        r[0]
                        for r in diffs.execute(
                            "SELECT path FROM diff d JOIN outcome o "
                            "ON o.unit=d.unit AND o.bridge_eid=d.entity WHERE o.rowid=?",
                            (row,),
                        )
                    }
                )
                yield {
                    "kind": kind,
                    "region": region,
                    "status": status,
                    "legacy_entity": legacy_eid,
                    "bridge_entity": bridge_eid,
                    "unit": unit,
                    "function": function,
                    "legacy": orjson.loads(legacy_fields) if legacy_fields else [],
                    "bridge": orjson.loads(bridge_fields) if bridge_fields else [],
                    "differing_paths": paths,
                }


def entity_key(rules: CompareRules, entity: Entity) -> str:
    """A readable name for an entity in logs: its entityID, else its first national identifier."""
    if entity.entity_id:
        return entity.entity_id
    others = [f"{scheme}:{value}" for scheme, value in entity.identifiers if scheme != ENTITY_ID]
    return others[0] if others else "(no identifier)"
