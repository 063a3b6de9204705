"""The disk spools of the changes since a date (pipeline/changes.py drives them): DeltaSpool (ITI-74) derives
from what changed the entities whose records read it for their content (the feeds of translate/feeds.py) and
the `_id` searches that complete them; ChainSpool (establishments-updated-since, TR-Notif) keeps the EJ and EG
on their organisation chains and the champs d'activité of their changed offers. Pipeline level.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Collection, Iterable, Iterator, Sequence
from typing import Any

import orjson

from bridge.model import CodedType, Directory, FhirQuery, Resource
from bridge.pipeline.spool import OFFER, ORGANIZATION, Row, Spool
from bridge.translate import FunctionSpec, Mappings
from bridge.translate.delta import feed_directories, in_region, links, resource_key
from bridge.translate.feeds import (
    MAX_REPEAT,
    OFFERS_BELOW,
    REFERENCES,
    Feed,
    Step,
    chained_searches,
    completion_searches,
    feeds,
    merge_element,
    tables_of,
    through_merge,
    unrolled,
)
from bridge.translate.paths import SourcePath
from bridge.translate.tables import EntityTable
from bridge.translate.transforms import CHAMP_ACTIVITE

# Entities searched again by `_id` per completion query (a URL of about a kilobyte).
IDS_PER_QUERY = 100


def _of_type(column: str, resource_type: str) -> tuple[str, tuple[str, str]]:
    """A condition that `column` holds a key of the type (a range on the primary-key order), its values."""
    return f"{column} >= ? AND {column} < ?", (f"{resource_type}/", f"{resource_type}0")


def _feed_sql(steps: Sequence[Step]) -> tuple[str, list[str]]:
    """The keys of the entities (of the path's first type) whose path reaches a changed resource."""
    joins: list[str] = []
    values: list[str] = []
    node = "e.key"
    for number, step in enumerate(steps):
        link = f"l{number}"
        here, there = (f"{link}.src", f"{link}.dst") if step.forward else (f"{link}.dst", f"{link}.src")
        kind, bounds = _of_type(there, step.end)
        joins.append(f"JOIN link {link} ON {here} = {node} AND {link}.element = ? AND {kind}")
        values += [step.link.element, *bounds]
        node = there
    start, bounds = _of_type("e.key", steps[0].start)
    sql = (
        f"SELECT DISTINCT e.key FROM resource e {' '.join(joins)} JOIN touched t ON t.key = {node}"  # noqa: S608
        f" WHERE {start}"
    )
    return sql, [*values, *bounds]


def _raw_bodies(db: sqlite3.Connection, keys: Sequence[str]) -> Iterator[tuple[str, bytes]]:
    """(key, stored JSON) of the spooled keys, a bounded number per statement."""
    for start in range(0, len(keys), 500):
        part = keys[start : start + 500]
        sql = f"SELECT key, body FROM resource WHERE key IN ({','.join('?' * len(part))})"  # noqa: S608
        for key, body in db.execute(sql, part):
            yield key, bytes(body)


def _bodies(db: sqlite3.Connection, keys: Sequence[str]) -> Iterator[tuple[str, Any]]:
    """(key, resource) of the spooled keys, a bounded number per statement."""
    for key, body in _raw_bodies(db, keys):
        yield key, orjson.loads(body)


def _select_column(db: sqlite3.Connection, sql: str, keys: Sequence[str], *first: str) -> Iterator[str]:
    """The one column of `sql` (its `IN ({marks})` takes `keys`, after the `first` values)."""
    for start in range(0, len(keys), 500):
        part = keys[start : start + 500]
        for (value,) in db.execute(sql.format(marks=",".join("?" * len(part))), (*first, *part)):
            yield str(value)


class DeltaSpool(Spool):
    """A Spool that also records which of its resources changed (`touched`: the matches of the delta
    searches, in the region) and every reference by element (`link`). `settle` derives the answer's
    entities (`changed`): those of the directories' tables whose own resource changed or whose record reads a
    changed resource for its content (translate/feeds.py); `rows` reads back those only, organisations root
    first by their depth among the changed ones (as the engine orders an answer), then by entityID."""

    def __init__(self, mappings: Mappings, spec: FunctionSpec, region_tags: Collection[str] | None) -> None:
        super().__init__(mappings)
        self._spec = spec
        self._region_tags = frozenset(region_tags) if region_tags is not None else None
        self._tables = tables_of(mappings, feed_directories(str(spec.delta), spec.directories))
        # The targets whose entityID a merged record takes (a provider: its Practitioner's), for the order.
        for table in self._tables:
            if (element := merge_element(table)) is not None:
                target = REFERENCES.get((table.resource, element))
                if target is not None:
                    self._entity_types = {*self._entity_types, target.target}
        with self.lock:
            self.db.execute("CREATE TABLE touched (key TEXT PRIMARY KEY)")
            # Per directory: an offer's record as a service and as its unité élémentaire facility differ.
            self.db.execute(
                "CREATE TABLE changed (key TEXT NOT NULL, directory TEXT NOT NULL,"
                " PRIMARY KEY (key, directory))"
            )
            self.db.execute(
                "CREATE TABLE link (src TEXT NOT NULL, element TEXT NOT NULL, dst TEXT NOT NULL,"
                " PRIMARY KEY (src, element, dst)) WITHOUT ROWID"
            )

    def add_page(self, matches: Sequence[Resource], includes: Sequence[Resource], *, changes: bool) -> int:
        """One page: spooled, its references kept, and (`changes`: a page of the delta searches) its matches
        in the region marked as changed."""
        fresh = self.add([*matches, *includes])
        touched = [
            (key,)
            for resource in matches
            if changes
            and (key := resource_key(resource)) is not None
            and in_region(resource, self._region_tags)
        ]
        references = [
            (key, element, target)
            for resource in (*matches, *includes)
            if (key := resource_key(resource)) is not None
            for element, target in links(resource)
        ]
        with self.lock:
            self.db.execute("BEGIN")
            self.db.executemany("INSERT OR IGNORE INTO touched (key) VALUES (?)", touched)
            self.db.executemany("INSERT OR IGNORE INTO link (src, element, dst) VALUES (?, ?, ?)", references)
            self.db.execute("COMMIT")
        return fresh

    def settle(self) -> list[FhirQuery]:
        """Once every delta page is in: the answer's entities (`changed`, per directory), and the searches
        that complete what their records read."""
        with self.lock:
            db = self.db
            db.execute("CREATE INDEX IF NOT EXISTS link_dst ON link (dst, element)")
            db.execute("BEGIN")
            for table in self._tables:
                kind, bounds = _of_type("key", table.resource)
                sql = f"SELECT key FROM touched WHERE {kind}"  # noqa: S608 (a fixed condition)
                found = [key for (key,) in db.execute(sql, bounds)]
                for feed in feeds(table):
                    if not feed.content or not self._follows(table, feed):
                        continue
                    for path in unrolled(feed):
                        sql, values = _feed_sql(path)
                        found += [key for (key,) in db.execute(sql, values)]
                directory = table.kind.directory.value
                db.executemany(
                    "INSERT OR IGNORE INTO changed (key, directory) VALUES (?, ?)",
                    [(key, directory) for key in self._kept(sorted(set(found)), table)],
                )
            db.execute("COMMIT")
            return list(self._completion())

    def _follows(self, table: EntityTable, feed: Feed) -> bool:
        """Whether a change along this feed changes the answer (every feed: the whole record changes)."""
        return True

    def completion_types(self) -> set[str]:
        """The resource types the completion searches can bring: the resources of the answer's tables and
        every resource their feeds reach (what the records read)."""
        types: set[str] = set()
        for table in tables_of(self._mappings, self._spec.directories):
            types.add(table.resource)
            for feed in feeds(table):
                for step in feed.steps:
                    types.update((step.start, step.end))
        return types

    def matched(self, resource_types: Collection[str]) -> dict[str, int]:
        """How many resources of each type the delta searches matched (each once)."""
        counts: dict[str, int] = {}
        with self.lock:
            for resource_type in resource_types:
                kind, bounds = _of_type("key", resource_type)
                sql = f"SELECT COUNT(*) FROM touched WHERE {kind}"  # noqa: S608 (a fixed condition)
                counts[resource_type] = int(self.db.execute(sql, bounds).fetchone()[0])
        return counts

    def _kept(self, keys: list[str], table: EntityTable) -> list[str]:
        """The keys whose resource the table maps (its `select`; a table with `each`: a resource with at least
        one part, e.g. a lieu with an équipement) and that carry the region's tag (any on the national
        endpoint)."""
        out: list[str] = []
        for body_of in _bodies(self.db, keys):
            key, resource = body_of
            if table.each is not None and not any(isinstance(p, dict) for p in table.each.select(resource)):
                continue  # no part: the table makes no record of it
            if in_region(resource, self._region_tags) and table.applies(resource):
                out.append(key)
        return out

    def _completion(self) -> Iterator[FhirQuery]:
        """Each answered entity again by `_id`, with everything its record reads, in as few searches as
        possible that never walk a link both ways (feeds.completion_searches)."""
        for table in tables_of(self._mappings, self._spec.directories):
            searches = [tuple(params) for params in completion_searches(table)]
            chained = chained_searches(table)
            sql = "SELECT DISTINCT key FROM changed WHERE directory = ? ORDER BY key"
            keys = [key for (key,) in self.db.execute(sql, (table.kind.directory.value,))]
            keys = [key for key in keys if key.startswith(f"{table.resource}/")]
            for start in range(0, len(keys), IDS_PER_QUERY):
                ids = ",".join(key.partition("/")[2] for key in keys[start : start + IDS_PER_QUERY])
                for params in searches or [()]:
                    yield FhirQuery(
                        table.resource, (("_id", ids), *params), purpose="the records of the changes"
                    )
                for search in chained:  # what a backward feed reads, by a declared chained parameter
                    yield FhirQuery(
                        search.resource,
                        ((search.param, ids), *search.includes),
                        purpose="what the records of the changes read below them",
                    )

    def context_keys(
        self,
        keys: Sequence[str],
        *,
        offers_at: bool,
        below: bool = False,
    ) -> list[str]:
        """What the records of `keys` (one resource type) read, sorted: every resource their tables' feeds
        reach in the spool (the extraction's fixed rule does not know the tables: `below` is not
        read); with `offers_at` (lieux: their devices), also the offers given at them and what those offers'
        records read, the UEs a client's access profile decides the devices' visibility by
        (workers.map_batch_views)."""
        reached = self._reached(keys)
        if offers_at:
            sql = "SELECT src FROM link WHERE element = ? AND dst IN ({marks})"
            offers = {k for k in _select_column(self.db, sql, keys, "location") if k.startswith(f"{OFFER}/")}
            reached |= offers | self._reached(sorted(offers))
        reached.difference_update(keys)
        return sorted(reached)

    def _reached(self, keys: Sequence[str]) -> set[str]:
        """Every resource the feeds of the tables of `keys`' types reach from them in the spool."""
        types = {key.partition("/")[0] for key in keys}
        reached: set[str] = set()
        for table in tables_of(self._mappings, self._spec.directories):
            if table.resource not in types:
                continue
            for feed in feeds(table):
                level = set(keys)
                for step in feed.steps:
                    level = self._follow(level, step)
                    reached |= level
        return reached

    def _follow(self, keys: set[str], step: Step) -> set[str]:
        """The resources one step (repeated: up to MAX_REPEAT times, or none) leads to from `keys`."""
        found: set[str] = set(keys) if step.repeat else set()
        frontier = set(keys)
        for _ in range(MAX_REPEAT if step.repeat else 1):
            here, there = ("src", "dst") if step.forward else ("dst", "src")
            sql = f"SELECT {there} FROM link WHERE element = ? AND {here} IN ({{marks}})"  # noqa: S608
            following = {
                key
                for key in _select_column(self.db, sql, sorted(frontier), step.link.element)
                if key.startswith(f"{step.end}/")
            }
            frontier = following - found
            found |= following
            if not frontier:
                break
        return found

    def rows(
        self, resource_type: str, directory: Directory | None = None, tables: Sequence[EntityTable] = ()
    ) -> Iterable[Row]:
        """The changed rows of a type for a directory (by merged entityID where a table merges records),
        those some of `tables` map kept by `mapped`."""
        return self.mapped(self._changed_rows(resource_type, directory), tables)

    def _changed_rows(self, resource_type: str, directory: Directory | None) -> sqlite3.Cursor:
        merge = next(
            (
                element
                for t in tables_of(self._mappings, self._spec.directories)
                if t.resource == resource_type
                and t.kind.directory is directory
                and (element := merge_element(t)) is not None
            ),
            None,
        )
        if merge is not None:  # the merged records' resources one after the other (one entityID)
            sql = (  # by the merged entityID (the target's), as the records come out of each batch
                "SELECT r.key, r.entity_id, r.body FROM changed c JOIN resource r ON r.key = c.key"
                " LEFT JOIN link m ON m.src = r.key AND m.element = ? LEFT JOIN resource t ON t.key = m.dst"
                " WHERE r.type = ? AND c.directory = ? ORDER BY t.entity_id, m.dst, r.entity_id, r.key"
            )
            return self.db.execute(sql, (merge, resource_type, str(directory and directory.value)))
        return self.db.execute(self.ROWS_SQL, (resource_type, str(directory and directory.value)))

    def count_rows(self, resource_type: str, directory: Directory | None = None) -> int:
        sql = f"SELECT COUNT(*) FROM ({self.ROWS_SQL})"  # noqa: S608 (a class constant, no input)
        values = (resource_type, str(directory and directory.value))
        return int(self.db.execute(sql, values).fetchone()[0])

    def finish(self) -> None:
        super().finish()
        with self.lock:
            self._rank()

    def _rank(self) -> None:
        """`answer_depth`: the organisations of the answer and their depth in it."""
        self.db.execute(
            "CREATE TEMP TABLE answer_depth AS WITH RECURSIVE"
            " org (key) AS (SELECT DISTINCT c.key FROM changed c JOIN resource r ON r.key = c.key"
            "  WHERE r.type = 'Organization' AND c.directory = 'organizationDirectory'),"
            " chain (key, depth) AS ("
            "  SELECT o.key, 0 FROM org o WHERE NOT EXISTS ("
            "   SELECT 1 FROM ref JOIN org p ON p.key = ref.dst WHERE ref.src = o.key)"
            "  UNION ALL"
            "  SELECT ref.src, chain.depth + 1 FROM chain JOIN ref ON ref.dst = chain.key"
            "  JOIN org c ON c.key = ref.src WHERE chain.depth < 64"
            ") SELECT key, MIN(depth) AS depth FROM chain GROUP BY key"
        )
        self.db.execute("CREATE UNIQUE INDEX answer_depth_key ON answer_depth (key)")

    ROWS_SQL = (
        "SELECT r.key, r.entity_id, r.body FROM changed c JOIN resource r ON r.key = c.key"
        " LEFT JOIN answer_depth d ON d.key = r.key WHERE r.type = ? AND c.directory = ?"
        " ORDER BY COALESCE(d.depth, 0), r.entity_id, r.key"
    )


# The organisations a changed entity's chain starts at (ChainSpool): a changed organisation; the
# organisations a changed entity of another type references (an offer's providedBy, a lieu's
# managingOrganization, a situation's organization).
_START_SQL = (
    "CREATE TABLE start AS"
    " SELECT key FROM changed WHERE key >= 'Organization/' AND key < 'Organization0'"
    " UNION SELECT l.dst FROM changed c JOIN link l ON l.src = c.key"
    "  WHERE NOT (c.key >= 'Organization/' AND c.key < 'Organization0')"
    "  AND l.dst >= 'Organization/' AND l.dst < 'Organization0'"
)
# The changed roots (an EJ: no partOf received): their children's readings hold them (ChainSpool).
_ROOTS = (
    "SELECT c.key FROM changed c WHERE c.key >= 'Organization/' AND c.key < 'Organization0'"
    " AND NOT EXISTS (SELECT 1 FROM link p WHERE p.src = c.key AND p.element = 'partOf')"
)
_ROOTS_SQL = _ROOTS + " ORDER BY c.key"
# Once the completion is in: the children of a changed root (an EJ: its EG) start chains too.
_CHILDREN_SQL = (
    "INSERT OR IGNORE INTO start SELECT l.src FROM link l"  # noqa: S608 (constants, no input)
    " WHERE l.element = 'partOf' AND l.src >= 'Organization/' AND l.src < 'Organization0'"
    " AND l.dst IN (" + _ROOTS + ")"
)


class ChainSpool(DeltaSpool):
    """Delta `organization-chains` (establishments-updated-since): the entities of every directory whose
    record changed (as for ITI-74), then the organisations their chains start at (_START_SQL), searched
    again with their ancestors. `rows` reads back the establishments on those chains (up `partOf` while the
    parent was received): of those organisations, the EJ (no parent among them) and EG (their parent is an
    EJ) [INFER], roots first, then by entityID. (Organisations on a `partOf` cycle, invalid data, have no
    root: none is written.)"""

    def _follows(self, table: EntityTable, feed: Feed) -> bool:
        """Not through the other resources of a merged record: an establishment's reading merges only its
        own (the situations of a professional in its offers), so a change elsewhere leaves it as it was."""
        return not through_merge(table, feed)

    def completion_types(self) -> set[str]:
        """The organisation chains' searches bring organisations only."""
        return {ORGANIZATION}

    def _completion(self) -> Iterator[FhirQuery]:
        self.db.execute(_START_SQL)
        self.db.execute("CREATE UNIQUE INDEX start_key ON start (key)")
        keys = [key for (key,) in self.db.execute("SELECT key FROM start ORDER BY key")]
        for start in range(0, len(keys), IDS_PER_QUERY):
            ids = ",".join(key.partition("/")[2] for key in keys[start : start + IDS_PER_QUERY])
            params = (("_id", ids), ("_include:iterate", "Organization:partof"))
            yield FhirQuery("Organization", params, purpose="the organisation chains of the changes")
        # The children of a changed EJ: the national API declares no search of an organisation's children
        # (no `_revinclude`, no `partof` on Organization); its offers below it (`organization._id:above`,
        # declared) bring the organisations they are provided by and their chains, so the EG that provide
        # an offer. [INFER] An EG without any offer is not found (and not reported) when only its EJ changed.
        roots = [key for (key,) in self.db.execute(_ROOTS_SQL)]
        for start in range(0, len(roots), IDS_PER_QUERY):
            ids = ",".join(key.partition("/")[2] for key in roots[start : start + IDS_PER_QUERY])
            below = ((OFFERS_BELOW.param, ids), *OFFERS_BELOW.includes)
            yield FhirQuery(OFFERS_BELOW.resource, below, purpose="the establishments below a changed EJ")

    def _rank(self) -> None:
        db = self.db
        db.execute(_CHILDREN_SQL)
        db.execute(
            "CREATE TEMP TABLE chain AS WITH RECURSIVE walk (key) AS ("
            " SELECT key FROM start"
            " UNION SELECT l.dst FROM walk JOIN link l ON l.src = walk.key AND l.element = 'partOf'"
            ") SELECT walk.key FROM walk JOIN resource r ON r.key = walk.key WHERE r.type = 'Organization'"
        )
        db.execute("CREATE UNIQUE INDEX chain_key ON chain (key)")
        db.execute(
            "CREATE TEMP TABLE answer_depth AS WITH RECURSIVE ranked (key, depth) AS ("
            " SELECT c.key, 0 FROM chain c WHERE NOT EXISTS ("
            "  SELECT 1 FROM link l JOIN chain p ON p.key = l.dst"
            "  WHERE l.src = c.key AND l.element = 'partOf')"
            " UNION ALL"
            " SELECT l.src, ranked.depth + 1 FROM ranked JOIN link l ON l.dst = ranked.key"
            " AND l.element = 'partOf' JOIN chain c ON c.key = l.src WHERE ranked.depth < 1"
            ") SELECT key, MIN(depth) AS depth FROM ranked GROUP BY key"
        )
        db.execute("CREATE UNIQUE INDEX answer_depth_key ON answer_depth (key)")

    ROWS_SQL = (  # the establishments, whatever the directory asked (organizationDirectory only)
        "SELECT r.key, r.entity_id, r.body FROM answer_depth d JOIN resource r ON r.key = d.key"
        " WHERE r.type = ? AND ? IS NOT NULL ORDER BY d.depth, r.entity_id, r.key"
    )

    def activities(self) -> dict[str, tuple[CodedType, ...]]:
        """EG entityID → the champs d'activité (HealthcareService.type, TRE_R227) of the offers under it that
        changed themselves (TR-Notif's etablissementReponseNotif/typeActivity [INFER]); after `finish`."""
        found: dict[str, dict[tuple[str, str], CodedType]] = {}
        with self.lock:
            rows = self.db.execute(_ACTIVITIES_SQL).fetchall()
        for entity_id, body in rows:
            for coding in _CHAMPS.select(orjson.loads(body)):
                if isinstance(coding, dict) and isinstance(code := coding.get("code"), str):
                    scheme = self._mappings.systems.scheme(str(coding.get("system")))
                    display = coding.get("display") if isinstance(coding.get("display"), str) else None
                    found.setdefault(str(entity_id), {}).setdefault(
                        (scheme, code), CodedType(code, scheme, display)
                    )
        return {eg: tuple(sorted(codes.values(), key=lambda c: c.code)) for eg, codes in found.items()}


_CHAMPS = SourcePath.parse(f"type.coding[system={CHAMP_ACTIVITE}]")
# (EG entityID, offer body) of each offer that changed itself and the EG on its chain (ChainSpool.activities).
_ACTIVITIES_SQL = (
    "WITH RECURSIVE up (offer, org) AS ("
    " SELECT c.key, l.dst FROM touched c JOIN link l ON l.src = c.key AND l.element = 'providedBy'"
    "  WHERE c.key >= 'HealthcareService/' AND c.key < 'HealthcareService0'"
    " UNION SELECT up.offer, l.dst FROM up JOIN link l ON l.src = up.org AND l.element = 'partOf'"
    ") SELECT DISTINCT e.entity_id, o.body FROM up JOIN answer_depth d ON d.key = up.org AND d.depth = 1"
    " JOIN resource e ON e.key = up.org JOIN resource o ON o.key = up.offer ORDER BY e.entity_id, o.key"
)
