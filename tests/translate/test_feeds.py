"""What each record reads (translate/feeds.py): the feeds of the shipped tables, the includes derived from
them, and — whatever the tables — that the declared reads cover every resource the engine actually reads.

The last tests map each entity of a simulated dataset alone while recording what the transforms look up
(Context.index, Context.offers_at): a transform that reads a resource without declaring it (Transform.reads)
would leave a change invisible to ITI-74; the test names the entity and the resource. And what they read of
the resources they read for an entityID only: an extraction's context holds no more of them
(pipeline/spool.py).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

import pytest

from bridge import hot_path
from bridge.errors import MappingTableError
from bridge.model import CsdRequest, Directory, FhirQuery, RequestForm, Resource, SearchResult, Transaction
from bridge.simulator.dataset import generate_dataset
from bridge.translate import Mappings, from_fhir_results, to_fhir_plan
from bridge.translate.delta import links
from bridge.translate.feeds import (
    MAX_REPEAT,
    REFERENCES,
    ChainedSearch,
    Step,
    back_params,
    chained_searches,
    completion_params,
    completion_searches,
    describe,
    feeds,
    identity_reads,
    unrolled,
)
from bridge.translate.tables import EntityTable
from bridge.translate.transforms import Context, Read

NOW = datetime(2026, 1, 10, tzinfo=UTC)


def test_the_shipped_tables_feeds(mappings: Mappings) -> None:
    lines = describe(mappings, Directory)
    content = sorted(line.split(" (")[0] for line in lines if "(content" in line)
    # An internal organisation's typeActivity / patientsType come from the offers anywhere below it; a unit
    # (an offer's UE) shows its lieu; a provider (one per professional) carries its professional, every
    # situation of it and each situation's offer (its name).
    assert content == [
        "facilityDirectory: HealthcareService.location → Location",
        "facilityDirectory: Organization.<Organization.partOf*.<HealthcareService.providedBy"
        " → HealthcareService",
        "providerDirectory: PractitionerRole.healthcareService → HealthcareService",
        "providerDirectory: PractitionerRole.practitioner → Practitioner",
        "providerDirectory: PractitionerRole.practitioner.<PractitionerRole.practitioner → PractitionerRole",
        "providerDirectory: PractitionerRole.practitioner.<PractitionerRole.practitioner.healthcareService"
        " → HealthcareService",
    ]
    # EntityID only: a parent, the EG up an offer's chain.
    assert "organizationDirectory: Organization.partOf → Organization (entityID, parent)" in lines
    assert (
        "facilityDirectory: HealthcareService.providedBy.partOf* → Organization (entityID, organizations)"
        in lines
    )


def test_includes_walk_the_feeds_back_and_forth(mappings: Mappings) -> None:
    everything = frozenset(Directory)
    assert back_params(mappings, everything, "Organization") == []  # read for entityIDs only
    assert back_params(mappings, everything, "Location") == [("_revinclude", "HealthcareService:location")]
    assert back_params(mappings, everything, "Practitioner") == [
        ("_revinclude", "PractitionerRole:practitioner")
    ]
    # A changed offer: the organisations above it (typeActivity), the situations in it and, through their
    # professional, the other situations of the same provider.
    assert back_params(mappings, everything, "HealthcareService") == [
        ("_include", "HealthcareService:organization"),
        ("_include:iterate", "Organization:partof"),
        ("_revinclude", "PractitionerRole:service"),
        ("_include:iterate", "PractitionerRole:practitioner"),
        ("_revinclude:iterate", "PractitionerRole:practitioner"),
    ]
    # Only the provider directory: the internal organisations' feed does not count.
    assert back_params(mappings, frozenset({Directory.PROVIDER}), "HealthcareService")[:1] == [
        ("_revinclude", "PractitionerRole:service")
    ]
    internal = mappings.entities["internal-organization"]
    # Up the chain by includes; down the tree (the offers below, their typeActivity) by the chained search
    # the national API declares, not by `_revinclude` on Organization (which it does not declare).
    assert completion_searches(internal) == [
        [("_include", "Organization:partof"), ("_include:iterate", "Organization:partof")],
    ]
    assert chained_searches(internal) == [
        ChainedSearch(
            "HealthcareService",
            "organization._id:above",
            (("_include", "HealthcareService:organization"), ("_include:iterate", "Organization:partof")),
        )
    ]


def _with_reads(table: EntityTable, rule_id: str, *reads: Read) -> EntityTable:
    rules = tuple(
        replace(rule, transform=replace(rule.transform, reads=reads)) if rule.id == rule_id else rule
        for rule in table.rules
    )
    return replace(table, rules=rules)


def test_a_read_the_ror_model_has_no_reference_for_is_refused(mappings: Mappings) -> None:
    unit = mappings.entities["unit"]
    with pytest.raises(
        MappingTableError, match=r"reads 'partOf' from HealthcareService, not a reference element"
    ):
        feeds(_with_reads(unit, "organizations", Read(("partOf",), content=True)))
    # A reverse step must end at the type it starts from.
    with pytest.raises(MappingTableError, match=r"reads '<Organization.partOf' from HealthcareService"):
        feeds(_with_reads(unit, "organizations", Read(("<Organization.partOf",), content=True)))
    assert ("Organization", "partOf") in REFERENCES


def test_a_repeated_step_walks_a_chain(mappings: Mappings) -> None:
    organization = mappings.entities["organization"]
    chain = _with_reads(organization, "parent", Read(("partOf*",), content=True))
    (feed,) = [f for f in feeds(chain) if f.rule == "parent"]
    assert str(feed) == "partOf*"
    assert completion_params(chain, feed) == [("_include:iterate", "Organization:partof")]
    assert [len(path) for path in unrolled(feed)] == list(range(1, MAX_REPEAT + 1))
    below = _with_reads(
        organization, "parent", Read(("<Organization.partOf*", "<HealthcareService.providedBy"), content=True)
    )
    # A changed offer: its organisation and every organisation above it read it.
    assert back_params(
        replace(mappings, entities={"o": below}), frozenset(Directory), "HealthcareService"
    ) == [
        ("_include", "HealthcareService:organization"),
        ("_include:iterate", "Organization:partof"),
    ]
    with pytest.raises(MappingTableError, match="not a reference element"):
        feeds(_with_reads(organization, "parent", Read(("partOf", "<HealthcareService.providedBy*"), False)))
    # Up the chain and down the tree are two completion searches: together they would walk the whole tree.
    both = _with_reads(
        organization,
        "parent",
        Read(("partOf*",), content=False),
        Read(("<Organization.partOf*", "<HealthcareService.providedBy"), content=True),
    )
    assert completion_searches(both) == [[("_include:iterate", "Organization:partof")]]
    assert [search.param for search in chained_searches(both)] == ["organization._id:above"]
    # A backward feed CHAINED does not name is still walked by includes (its own search).
    other = _with_reads(
        organization,
        "parent",
        Read(("partOf*",), content=False),
        Read(("<Organization.partOf",), content=True),
    )
    assert completion_searches(other) == [
        [("_include:iterate", "Organization:partof"), ("_revinclude", "Organization:partof")]
    ]
    assert chained_searches(other) == []


# --------------------------------------------------------------------------------------------------
# Declared reads ⊇ actual reads


class _Recording(Mapping[str, Any]):
    """A read-only mapping that notes the keys found through it (and, for offers_at, the offers given)."""

    def __init__(self, data: Mapping[str, Any], seen: set[str], values: bool = False) -> None:
        self._data, self._seen, self._values = data, seen, values

    def __getitem__(self, key: str) -> Any:
        value = self._data[key]
        self._note(key, value)
        return value

    def get(self, key: str, default: Any = None) -> Any:
        if key not in self._data:
            return default
        return self[key]

    def _note(self, key: str, value: Any) -> None:
        if self._values:
            self._seen.update(f"{r['resourceType']}/{r['id']}" for r in value)
        else:
            self._seen.add(key)

    def __iter__(self) -> Iterator[str]:
        return iter(self._data)

    def __len__(self) -> int:
        return len(self._data)


def _reachable(
    tables: list[EntityTable], start: dict[str, Any], index: dict[str, dict[str, Any]]
) -> set[str]:
    """The keys of every resource the tables' feeds reach from the entity's resource (a repeated step: its
    closure, none included)."""
    referrers: dict[tuple[str, str], list[str]] = {}
    for key, resource in index.items():
        for element, target in links(resource):
            referrers.setdefault((element, target), []).append(key)

    def one(keys: set[str], step: Step) -> set[str]:
        out: set[str] = set()
        for key in keys:
            if step.forward:
                out |= {t for e, t in links(index[key]) if e == step.link.element and t in index}
            else:
                out |= {
                    s for s in referrers.get((step.link.element, key), []) if s.startswith(f"{step.end}/")
                }
        return out

    reached: set[str] = set()
    for feed in (feed for table in tables for feed in feeds(table)):
        level = {f"{start['resourceType']}/{start['id']}"}
        for step in feed.steps:
            if step.repeat:
                closure, frontier = set(level), set(level)
                while frontier:
                    frontier = one(frontier, step) - closure
                    closure |= frontier
                level = closure
            else:
                level = one(level, step)
            reached |= level
    return reached


def _undeclared_reads(mappings: Mappings, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Each entity of a small simulated dataset mapped alone, with every resource received: what its
    mapping looked up beyond what its table's feeds reach from it."""
    dataset = generate_dataset(60, 7)
    resources: list[Resource] = list(dataset)
    index = {f"{r['resourceType']}/{r['id']}": dict(r) for r in resources}
    seen: set[str] = set()

    def recording_context(**fields: Any) -> Context:
        fields["index"] = _Recording(fields["index"], seen)
        for name in ("offers_at", "offers_under"):  # the engine's reverse indexes: Type/id → resources
            if name in fields:
                fields[name] = _Recording(fields[name], seen, values=True)
        return Context(**fields)

    monkeypatch.setattr("bridge.translate.engine.Context", recording_context)
    found: list[str] = []
    for key, resource, tables in _each_mapped_alone(mappings, resources, seen.clear):
        undeclared = seen - {key} - _reachable(tables, resource, index)
        names = "/".join(t.table for t in tables)
        found += [f"{names} reads {other} for {key}, undeclared" for other in sorted(undeclared)]
    return found


def _each_mapped_alone(
    mappings: Mappings, resources: list[Resource], before: Callable[[], None]
) -> Iterator[tuple[str, Resource, list[EntityTable]]]:
    """Each resource some table maps, mapped alone by the engine (ITI-74's plan, every resource received),
    `before` called first: its key, the resource and its tables, once mapped (more than 100 of them)."""
    plan = to_fhir_plan(
        mappings,
        CsdRequest(Transaction.MODIFICATIONS, RequestForm.MODIFICATIONS, last_modified=NOW),
        now=NOW,
    )
    received = [SearchResult(FhirQuery("all", ()), matches=resources)]
    checked = 0
    for resource in resources:
        tables = [t for t in mappings.entities.values() if t.resource == resource["resourceType"]]
        if not tables:
            continue
        key = f"{resource['resourceType']}/{resource['id']}"
        before()
        from_fhir_results(mappings, plan, received, now=NOW, selected=[key])
        yield key, resource, tables
        checked += 1
    assert checked > 100


# The engine instrumented by monkeypatching its Context: a compiled engine (bridge/hot_path.py) calls the
# class itself, and would record nothing (the first test would pass without checking anything).
INSTRUMENTED = pytest.mark.skipif(
    hot_path.STATE == "compiled",
    reason="instruments the engine by monkeypatching: interpreted hot path only (BRIDGE_HOT_PATH)",
)


@INSTRUMENTED
def test_declared_reads_cover_what_the_engine_reads(
    mappings: Mappings, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert _undeclared_reads(mappings, monkeypatch) == []


@INSTRUMENTED
def test_an_undeclared_read_is_found(mappings: Mappings, monkeypatch: pytest.MonkeyPatch) -> None:
    """The check above can fail: the internal organisation table without the declarations of its
    typeActivity and patientsType reads the offers below each organisation undeclared."""
    bare = _with_reads(
        _with_reads(mappings.entities["internal-organization"], "type-activity"), "patients-type"
    )
    entities = {**mappings.entities, "internal-organization": bare}
    found = _undeclared_reads(replace(mappings, entities=entities), monkeypatch)
    assert found
    assert all(" reads HealthcareService/" in line for line in found)
    assert all("entities/internal-organization.yaml" in line for line in found)


# --------------------------------------------------------------------------------------------------
# A read for the entityID only reads the identity elements only (feeds.identity_reads)


def test_the_shipped_tables_read_organisations_for_their_identity_only(mappings: Mappings) -> None:
    """Every feed reaching an organisation reads its entityID (an EG, an EJ, a parent), none its content; the
    offers, lieux, professionals and situations are read for content (a UE's address, a provider's RPPS)."""
    assert identity_reads(mappings) == {
        "Organization": ("resourceType", "id", "identifier", "type", "partOf")
    }
    # A table reading an organisation's content (its parent's, say) takes organisations out.
    organization = mappings.entities["organization"]
    reading = _with_reads(organization, "parent", Read(("partOf",), content=True))
    assert identity_reads(replace(mappings, entities={**mappings.entities, "organization": reading})) == {}


class _Elements(dict[str, Any]):
    """A resource that notes the names of the elements looked up in it (any iteration: all of them)."""

    def __init__(self, data: Mapping[str, Any], seen: dict[str, set[str]], key: str) -> None:
        super().__init__(data)
        self._seen, self._key = seen, key

    def _note(self, *names: str) -> None:
        self._seen.setdefault(self._key, set()).update(names)

    def __getitem__(self, name: str) -> Any:
        self._note(name)
        return super().__getitem__(name)

    def get(self, name: str, default: Any = None) -> Any:
        self._note(name)
        return super().get(name, default)

    def __contains__(self, name: object) -> bool:
        self._note(str(name))
        return super().__contains__(name)

    def __iter__(self) -> Iterator[str]:
        self._note(*dict.keys(self))
        return super().__iter__()

    def keys(self) -> Any:
        self._note(*dict.keys(self))
        return super().keys()

    def values(self) -> Any:
        self._note(*dict.keys(self))
        return super().values()

    def items(self) -> Any:
        self._note(*dict.keys(self))
        return super().items()


def _identity_overreads(mappings: Mappings, identity: Mapping[str, tuple[str, ...]]) -> list[str]:
    """Each entity of a small simulated dataset mapped alone, with every resource received, the resources of
    the `identity` types noting what is looked up in them: the elements read beyond `identity`'s, of any
    resource but the entity's own."""
    seen: dict[str, set[str]] = {}
    resources: list[Resource] = []
    for resource in generate_dataset(60, 7):
        key = f"{resource['resourceType']}/{resource['id']}"
        resources.append(_Elements(resource, seen, key) if resource["resourceType"] in identity else resource)
    found: list[str] = []
    for key, _, _ in _each_mapped_alone(mappings, resources, seen.clear):
        for other, names in sorted(seen.items()):
            extra = names - set(identity[other.partition("/")[0]])
            if other != key and extra:
                found.append(f"{key} reads {sorted(extra)} of {other}")
    return found


# The look-ups recorded through a dict subclass: compiled code may read a dict natively, past the overrides.
RECORDING = pytest.mark.skipif(
    hot_path.STATE == "compiled",
    reason="records look-ups through a dict subclass: interpreted hot path only (BRIDGE_HOT_PATH)",
)


@RECORDING
def test_an_identity_read_reads_no_more_than_the_identity_elements(mappings: Mappings) -> None:
    """What the engine actually looks up in an organisation when mapping another entity (a UE's EG, a
    provider's organisation, a parent facility up the chain) is among feeds.identity_reads': a batch's context
    holding only those elements of them gives the same document (tests/test_extraction_context.py)."""
    identity = identity_reads(mappings)
    assert identity, "the premise: some type is read for its identity only"
    assert _identity_overreads(mappings, identity) == []


@RECORDING
def test_an_identity_overread_is_found(mappings: Mappings) -> None:
    """The check above can fail: without `type` in the identity elements, the organisations' kind (EG or
    internal organisation, read up a UE's chain) is found read."""
    identity = {
        resource_type: tuple(name for name in names if name != "type")
        for resource_type, names in identity_reads(mappings).items()
    }
    found = _identity_overreads(mappings, identity)
    assert found
    # and an iteration counts as reading every element (no transform iterates an organisation today)
    seen: dict[str, set[str]] = {}
    assert list(_Elements({"id": "1", "name": "x"}, seen, "Organization/1")) == ["id", "name"]
    assert seen == {"Organization/1": {"id", "name"}}
    assert all(" of Organization/" in line for line in found)
    assert all(line.split(" reads ")[1].startswith("['type']") for line in found)
