"""Which FHIR resources feed each CSD record, from the entity tables: the change sets of ITI-74 and TR-Notif.

translate/: pure. Every transform says what it reads besides its own resource (transforms.Transform.reads);
with the ROR model's reference elements (REFERENCES) this gives, for each entity table, its feeds: paths of
reference steps from the entity's resource to another one, read for its content or for its entityID only.
From them come the upstream includes of a delta answer: from a changed resource back to the entities it
feeds (`back_params`) and from an entity to everything its record needs (`completion_params`).
"""

from __future__ import annotations

from collections.abc import Collection, Iterable
from dataclasses import dataclass

from bridge.errors import MappingTableError
from bridge.model import Directory
from bridge.translate.tables import EntityTable, Mappings, Rule
from bridge.translate.transforms import SOURCE, Read


@dataclass(frozen=True, slots=True)
class Link:
    """A Reference element of the ROR model: `source.element` points at a `target`; `param` is the national
    API's reference search parameter on it (what `_include` / `_revinclude` name), None when it has none."""

    source: str
    element: str
    target: str
    param: str | None


# The Reference elements the entity tables follow (FHIR R4 targets as the ROR profiles constrain them) and
# their search parameters in the national CapabilityStatement (ror-fhir-api §2.1). PractitionerRole.location
# has no search parameter there: a record reading it cannot have it included (written only when received).
REFERENCES: dict[tuple[str, str], Link] = {
    (link.source, link.element): link
    for link in (
        Link("Organization", "partOf", "Organization", "partof"),
        Link("HealthcareService", "providedBy", "Organization", "organization"),
        Link("HealthcareService", "location", "Location", "location"),
        Link("Location", "managingOrganization", "Organization", "organization"),
        Link("PractitionerRole", "practitioner", "Practitioner", "practitioner"),
        Link("PractitionerRole", "organization", "Organization", "organization"),
        Link("PractitionerRole", "healthcareService", "HealthcareService", "service"),
        Link("PractitionerRole", "location", "Location", None),
    )
}


@dataclass(frozen=True, slots=True)
class Step:
    """One step of a feed: along `link` forward (source → target) or backward (target → the sources whose
    element references it)."""

    link: Link
    forward: bool
    repeat: bool = False  # zero or more times (`partOf*`: up or down an organisation chain)

    @property
    def start(self) -> str:
        return self.link.source if self.forward else self.link.target

    @property
    def end(self) -> str:
        return self.link.target if self.forward else self.link.source

    def include(self, iterate: bool) -> tuple[str, str] | None:
        """The search parameter walking this step (None: the national API cannot)."""
        return _param(self.link, "_include" if self.forward else "_revinclude", iterate)

    def back(self, iterate: bool) -> tuple[str, str] | None:
        """The search parameter walking this step backwards (None: the national API cannot)."""
        return _param(self.link, "_revinclude" if self.forward else "_include", iterate)

    def __str__(self) -> str:
        text = self.link.element if self.forward else f"<{self.link.source}.{self.link.element}"
        return text + ("*" if self.repeat else "")


def _param(link: Link, name: str, iterate: bool) -> tuple[str, str] | None:
    if link.param is None:
        return None
    return (f"{name}:iterate" if iterate else name, f"{link.source}:{link.param}")


@dataclass(frozen=True, slots=True)
class Feed:
    """A path of resources an entity's record reads: `steps` from the entity's resource; `content` False
    when only the entityID of the resource reached is written (its national identifier: a change of it is a
    new entity, so such a feed never makes the record change)."""

    steps: tuple[Step, ...]
    content: bool
    rule: str  # the id of the rule reading it

    @property
    def end(self) -> str:
        return self.steps[-1].end

    def __str__(self) -> str:
        return ".".join(map(str, self.steps))


def feeds(table: EntityTable) -> tuple[Feed, ...]:
    """The feeds of an entity table, from its rules' transforms (MappingTableError: a step no Link names)."""
    found: dict[tuple[tuple[Step, ...], bool], Feed] = {}
    siblings: tuple[Step, ...] | None = None
    for rule in table.rules:
        for read in rule.transform.reads:
            steps = _steps(table, rule, read)
            found.setdefault((steps, read.content), Feed(steps, read.content, rule.id))
            if rule.target == "@entityID" and read.path == (SOURCE,):
                # The entityID is the referenced resource's: the engine merges the records of every resource
                # of the table naming the same one (the situations of one professional), so each reads the
                # others in full.
                source = rule.source.steps[0].field if rule.source is not None else ""
                siblings = _steps(table, rule, Read((SOURCE, f"<{table.resource}.{source}"), content=True))
                found.setdefault((siblings, True), Feed(siblings, True, rule.id))
    if siblings is not None:
        # What the other merged resources read, the merged record reads too.
        for (steps, content), feed in list(found.items()):
            if steps != siblings and steps[0] != siblings[0]:
                found.setdefault((siblings + steps, content), Feed(siblings + steps, content, feed.rule))
    return tuple(found.values())


# What a read of a resource for its entityID only (Read.content False) reads of it: its identifiers (the
# entityID, mappings/identities.yaml), its type with them (an organisation's kind: EJ, EG, OI or a v3 unité,
# transforms.organization_kind / is_unit_organization) and the Reference elements the tables walk on from it
# (REFERENCES: an organisation's partOf, up its chain).
IDENTITY_ELEMENTS = ("resourceType", "id", "identifier", "type")


def identity_reads(mappings: Mappings) -> dict[str, tuple[str, ...]]:
    """The resource types the entity tables reach through their feeds but never read the content of (every
    feed ending there reads the entityID only; a resource passed through on a longer path is walked by its
    references): each with the top-level elements read of it (IDENTITY_ELEMENTS and its REFERENCES
    elements). A batch's context needs no more of them (pipeline/spool.py: an organisation's context copy is
    a third of its size). A type some feed reads the content of is not named, nor a type no feed reaches."""
    content: dict[str, bool] = {}
    for table in mappings.entities.values():
        for feed in feeds(table):
            for number, step in enumerate(feed.steps, start=1):
                ends_here = feed.content and number == len(feed.steps)
                content[step.end] = content.get(step.end, False) or ends_here
    return {
        resource_type: IDENTITY_ELEMENTS
        + tuple(sorted({link.element for link in REFERENCES.values() if link.source == resource_type}))
        for resource_type, read in content.items()
        if not read
    }


def through_merge(table: EntityTable, feed: Feed) -> bool:
    """Whether the feed goes through the other resources merged into the same record (feeds of a table whose
    entityID is read from a reference)."""
    merge = merge_element(table)
    return (
        merge is not None
        and len(feed.steps) >= 2
        and feed.steps[0].forward
        and feed.steps[0].link.element == merge
        and not feed.steps[1].forward
        and feed.steps[1].link.element == merge
    )


def merge_element(table: EntityTable) -> str | None:
    """The Reference element whose target gives the table's entityID (its records merge per target), or
    None when the entityID is the resource's own."""
    for rule in table.rules:
        if rule.target == "@entityID" and rule.source is not None and rule.transform.reads:
            return rule.source.steps[0].field
    return None


def _steps(table: EntityTable, rule: Rule, read: Read) -> tuple[Step, ...]:
    where = table.resource
    steps: list[Step] = []
    for text in read.path:
        if text == SOURCE:
            if rule.source is None:
                raise MappingTableError(table.table, rule.id, None, "this transform reads its rule's source")
            text = rule.source.steps[0].field
        repeat = text.endswith("*")
        name = text.removesuffix("*")
        if name.startswith("<"):
            source, _, element = name[1:].partition(".")
            link = REFERENCES.get((source, element))
            step = Step(link, False, repeat) if link is not None and link.target == where else None
        else:
            link = REFERENCES.get((where, name))
            step = Step(link, True, repeat) if link is not None else None
        if step is not None and repeat and step.start != step.end:
            step = None  # only a link from a type to itself repeats
        if step is None:
            raise MappingTableError(
                table.table,
                rule.id,
                str(rule.source) if rule.source is not None else None,
                f"reads {text!r} from {where}, not a reference element of the ROR model (feeds.REFERENCES)",
            )
        steps.append(step)
        where = step.end
    return tuple(steps)


# How many times a repeated step is followed at most in the spool (an organisation chain is EJ > EG > pôle >
# service > UF > UE: five links).
MAX_REPEAT = 8


def unrolled(feed: Feed) -> list[tuple[Step, ...]]:
    """The feed's paths without repetition: each repeated step taken 0 to MAX_REPEAT times (empty paths left
    out: the entity itself)."""
    paths: list[tuple[Step, ...]] = [()]
    for step in feed.steps:
        if not step.repeat:
            paths = [(*path, step) for path in paths]
            continue
        plain = Step(step.link, step.forward)
        paths = [(*path, *([plain] * times)) for path in paths for times in range(MAX_REPEAT + 1)]
    return [path for path in dict.fromkeys(paths) if path]


def tables_of(mappings: Mappings, directories: Collection[Directory]) -> list[EntityTable]:
    """The entity tables writing into the directories, in the tables' order."""
    return [t for t in mappings.entities.values() if t.kind.directory in directories]


def changed_types(mappings: Mappings, directories: Collection[Directory]) -> set[str]:
    """The resource types whose change can change a record of the directories: the entities' own types and
    the ends of their content feeds. A delta function must search each for its changes."""
    out: set[str] = set()
    for table in tables_of(mappings, directories):
        out.add(table.resource)
        out.update(feed.end for feed in feeds(table) if feed.content)
    return out


def _add(params: list[tuple[str, str]], param: tuple[str, str] | None) -> None:
    if param is not None and param not in params:
        params.append(param)


def back_params(
    mappings: Mappings, directories: Collection[Directory], resource_type: str
) -> list[tuple[str, str]]:
    """The includes that bring, with the changed resources of a type, the entities whose content feeds end
    at that type (each feed walked backwards: the first step on the matches, the next ones `:iterate`)."""
    params: list[tuple[str, str]] = []
    for table in tables_of(mappings, directories):
        for feed in feeds(table):
            if feed.content and feed.end == resource_type:
                for depth, step in enumerate(reversed(feed.steps)):
                    _add(params, step.back(iterate=depth > 0 or step.repeat))
    return params


def completion_params(table: EntityTable, only: Feed | None = None) -> list[tuple[str, str]]:
    """The includes that bring, with entities of the table searched by `_id`, everything their records read
    (each feed walked forward: the first step on the matches, the next ones `:iterate`); `only`: one feed."""
    params: list[tuple[str, str]] = []
    for feed in feeds(table) if only is None else (only,):
        for depth, step in enumerate(feed.steps):
            _add(params, step.include(iterate=depth > 0 or step.repeat))
    return params


@dataclass(frozen=True, slots=True)
class ChainedSearch:
    """A search on the end type of a backward feed that finds what walking it would, by a parameter the
    national CapabilityStatement declares: `resource?param=<ids of the entities>` with `includes` (declared
    too) that bring the links back to the entities."""

    resource: str
    param: str
    includes: tuple[tuple[str, str], ...]


# Backward feeds the national API cannot walk with `_revinclude` (production declares it on HealthcareService
# and Location only; ror-serveur-prod, tests/simulator/test_national_surface.py), and the declared search that
# finds the same resources: the offers of an organisation and of every organisation below it are the
# HealthcareService whose `organization._id:above` is that organisation; their providing organisations and
# the chains above them (`_include`, declared everywhere) link them back to it.
OFFERS_BELOW = ChainedSearch(
    "HealthcareService",
    "organization._id:above",
    (("_include", "HealthcareService:organization"), ("_include:iterate", "Organization:partof")),
)
CHAINED: dict[str, ChainedSearch] = {"<Organization.partOf*.<HealthcareService.providedBy": OFFERS_BELOW}


def chained_search(feed: Feed) -> ChainedSearch | None:
    """The declared search replacing the feed's walk (CHAINED), or None: the feed is walked by includes."""
    return CHAINED.get(str(feed))


def chained_searches(table: EntityTable) -> list[ChainedSearch]:
    """The chained searches completing a table's entities (their feeds CHAINED names), each once."""
    found = [search for feed in feeds(table) if (search := chained_search(feed)) is not None]
    return list(dict.fromkeys(found))


def completion_searches(table: EntityTable) -> list[list[tuple[str, str]]]:
    """The completion includes of a table grouped into as few searches as possible such that no search walks
    a link both ways (`_include` and `_revinclude` of `Organization:partof` together would walk a whole
    organisation tree up and down). Feeds walked by a chained search instead (CHAINED) are left out."""
    groups: list[tuple[list[tuple[str, str]], set[tuple[str, bool]]]] = []
    for feed in feeds(table):
        if chained_search(feed) is not None:
            continue
        params = completion_params(table, feed)
        # Only `:iterate` both ways cascades (a non-iterate include applies to the matches alone).
        ways = {(value, name.startswith("_include")) for name, value in params if name.endswith(":iterate")}
        group = next((g for g in groups if not any((v, not f) in g[1] for v, f in ways)), None)
        if group is None:
            groups.append(([], set()))
            group = groups[-1]
        for param in params:
            _add(group[0], param)
        group[1].update(ways)
    return [params for params, _ in groups if params]


def describe(mappings: Mappings, directories: Iterable[Directory]) -> list[str]:
    """One line per feed of the directories' tables (the plan report and the README)."""
    lines = []
    for table in tables_of(mappings, frozenset(directories)):
        for feed in feeds(table):
            kind = "content" if feed.content else "entityID"
            lines.append(
                f"{table.kind.directory.value}: {table.resource}.{feed} → {feed.end} ({kind}, {feed.rule})"
            )
    return lines
