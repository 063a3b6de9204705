"""The context of a facility batch of organisations holds only what its internal organisations read (issue 13
item 4): an EJ's or EG's subtree, which no facility maps, is not read back for it; and that context is parsed
with the cyclic collector paused (bridge/gc_control.py), as the mapping is. An organisation, which the tables
read for its entityID only, is in a context as its identity elements only, for the same documents.

Before, every organisation of the batch (EJ and EG included) pulled every organisation and offer below it, the
facility directory reading about twice the context of the others. The spool is filled with the simulator's
whole dataset and read back by the extraction's SpoolWriter (no mapping workers), spying on the context each
batch asks for.
"""

from __future__ import annotations

import gc
import json
from collections.abc import Sequence
from datetime import UTC, datetime

from bridge.model import Resource
from bridge.pipeline.progress import Progress
from bridge.pipeline.spool import Spool
from bridge.pipeline.workers import SpoolWriter
from bridge.simulator.dataset import generate_dataset
from bridge.translate.feeds import feeds, identity_reads
from bridge.translate.transforms import SELECTORS
from tests.test_extraction import MAPPINGS

SCALE = 600
SEED = 5
OFFER = "HealthcareService/"


class SpyingSpool(Spool):
    """A spool recording the keys and the context of each batch the read-back asks for with `below`."""

    def __init__(self) -> None:
        super().__init__(MAPPINGS)
        self.asked: list[tuple[list[str], list[str]]] = []
        self.batches: list[tuple[list[str], bool]] = []  # the keys of every batch, and its `below`
        self.collector_on: list[bool] = []  # gc.isenabled() at each read of stored resources

    def stored(self, keys: Sequence[str]) -> list[tuple[str, bytes]]:
        self.collector_on.append(gc.isenabled())
        return super().stored(keys)

    def context_keys(
        self,
        keys: Sequence[str],
        *,
        offers_at: bool,
        below: bool = False,
    ) -> list[str]:
        found = super().context_keys(keys, offers_at=offers_at, below=below)
        self.batches.append((list(keys), below))
        if below:
            self.asked.append((list(keys), found))
        return found


def _read_back(spool: SpyingSpool, resources: Sequence[Resource]) -> bytes:
    """The resources spooled, then read back by the extraction's SpoolWriter (no mapping workers): the
    document; the spool closed after."""
    try:
        spool.add(list(resources))
        spool.finish()
        writer = SpoolWriter(spool, MAPPINGS, datetime(2026, 1, 1, tzinfo=UTC), Progress())
        return b"".join(iter(writer.next_chunk, None))
    finally:
        spool.close()


def test_a_facility_batch_reads_the_offers_of_its_internal_organisations_only() -> None:
    dataset = generate_dataset(SCALE, SEED)
    resources = {f"{r['resourceType']}/{r['id']}": r for r in dataset}
    internal = {
        k
        for k, r in resources.items()
        if k.startswith("Organization/") and SELECTORS["internal-organization"](r)
    }
    # The offers under each internal organisation (providedBy, then partOf up the chain).
    allowed: set[str] = set()
    for key, resource in resources.items():
        if not key.startswith(OFFER):
            continue
        owner = str(resource["providedBy"]["reference"])
        while owner in resources:
            if owner in internal:
                allowed.add(key)
            parent = resources[owner].get("partOf")
            owner = str(parent["reference"]) if isinstance(parent, dict) else ""
    spool = SpyingSpool()
    assert gc.isenabled(), "the collector runs in the test process: the check below proves something"
    document = _read_back(spool, list(resources.values()))
    assert spool.asked, "the facility directory's organisations were read back with `below`"
    assert b"<csd:facility " in document
    read = {key for _, context in spool.asked for key in context if key.startswith(OFFER)}
    # Offers hang off EGs directly (simulator: 12 %): the old rule read them for the EG's row.
    offers_of_egs = {k for k in resources if k.startswith(OFFER)} - allowed
    assert offers_of_egs, "the dataset has offers no internal organisation holds: the check proves something"
    assert read <= allowed, f"{len(read - allowed)} offers read for no internal organisation"
    assert read, "the internal organisations' offers are still read (their typeActivity)"
    # Those offers are read for their own content (the internal organisation's feeds end there): their lieux
    # are no part of the context (issue 13 item 4: they were ~14 % of this directory's).
    lieux = {key for _, context in spool.asked for key in context if key.startswith("Location/")}
    assert not lieux, f"{len(lieux)} lieux read for the internal organisations"
    # workers 0: every read of stored resources is a batch's context, parsed with the batch where it is read
    assert spool.collector_on, "the context was read"
    assert not any(spool.collector_on), "the context was parsed with the cyclic collector running"


def test_only_the_organisations_a_directory_maps_are_read_back_for_it() -> None:
    """The organisation directory reads back the EJ / EG only, the facility directory the internal
    organisations only: a row no table maps makes no entity, so it is neither batched nor given a context
    (issue 13 item 4: before, both directories read back every organisation, six times the EJ / EG)."""
    dataset = generate_dataset(SCALE, SEED)
    organisations = {f"Organization/{r['id']}": r for r in dataset if r["resourceType"] == "Organization"}
    establishments = {k for k, r in organisations.items() if SELECTORS["establishment"](r)}
    internal = {k for k, r in organisations.items() if SELECTORS["internal-organization"](r)}
    assert establishments, "EJ / EG in the dataset: the check proves something"
    assert internal, "internal organisations in the dataset: the check proves something"
    assert len(establishments | internal) < len(organisations), "some organisation neither: the check counts"
    spool = SpyingSpool()
    _read_back(spool, dataset)
    read = [(key, below) for keys, below in spool.batches for key in keys if key in organisations]
    assert {key for key, below in read if not below} == establishments  # the organisation directory
    assert {key for key, below in read if below} == internal  # the facility directory
    assert len(read) == len(establishments) + len(internal), "each read back once"


def test_a_directory_whose_records_read_nothing_else_is_given_no_context() -> None:
    """A csd:service is its offer alone (entities/service.yaml: no feed, translate/feeds.py), so the service
    directory's batches read no context: each offer is asked for context once, by the facility directory
    (its UE reads its lieu and organisation chain), not a second time for its service (issue 13 item 4:
    that context was a fifth of the read-back's at 30 000 offers). The document's bytes are pinned by
    tests/test_extraction_bytes.py."""
    assert feeds(MAPPINGS.entities["service"]) == (), "the premise: a service reads nothing but its offer"
    assert feeds(MAPPINGS.entities["unit"]), "the premise: a UE reads other resources"
    dataset = generate_dataset(SCALE, SEED)
    offers = {f"{OFFER}{r['id']}" for r in dataset if r["resourceType"] == "HealthcareService"}
    spool = SpyingSpool()
    document = _read_back(spool, dataset)
    asked = [key for keys, _ in spool.batches for key in keys if key.startswith(OFFER)]
    assert sorted(asked) == sorted(offers), "each offer asked for context once: by its UE, not its service"
    services = document.split(b"<csd:serviceDirectory>")[1].split(b"</csd:serviceDirectory>")[0]
    assert services.count(b"<csd:service ") == len(offers), "every offer's service written all the same"


class ContextSpool(SpyingSpool):
    """A spool recording every context resource it hands over (`stored`); `whole`: each as received, as the
    spool did before it kept organisations' identity copies."""

    def __init__(self, *, whole: bool = False) -> None:
        super().__init__()
        if whole:
            self._identity_reads = {}
        self.handed: dict[str, bytes] = {}

    def stored(self, keys: Sequence[str]) -> list[tuple[str, bytes]]:
        found = super().stored(keys)
        self.handed.update(found)
        return found


def _views(spool: Spool, resources: Sequence[Resource], profiles: Sequence[int | None]) -> list[bytes]:
    """The resources read back once for several access profiles (SpoolWriter views): one document each."""
    try:
        spool.add(list(resources))
        spool.finish()
        views = [(profile, Progress()) for profile in profiles]
        writer = SpoolWriter(spool, MAPPINGS, datetime(2026, 1, 1, tzinfo=UTC), Progress(), views=views)
        return [b"".join(parts) for parts in zip(*iter(writer.next_chunks, None), strict=True)]
    finally:
        spool.close()


def test_an_organisation_is_in_a_context_as_its_identity_only() -> None:
    """The tables read an organisation for its entityID and kind only (the EG of a UE, a provider's
    organisation, a parent facility: feeds.identity_reads, held against what the engine looks up by
    tests/translate/test_feeds.py), so a batch's context holds its identity elements only, a third of it
    (issue 13 item 4: organisations were two thirds of the read-back's context). The offers, lieux and
    professionals are handed over whole; and every access profile's document is the same as with whole
    organisations."""
    identity = identity_reads(MAPPINGS)["Organization"]
    dataset = list(generate_dataset(SCALE, SEED))
    received = {f"{r['resourceType']}/{r['id']}": r for r in dataset}
    profiles: list[int | None] = [None, *sorted(MAPPINGS.access.rules)]
    assert len(profiles) > 2, "the premise: access profiles filter the documents too"
    spool = ContextSpool()
    documents = _views(spool, dataset, profiles)
    whole = ContextSpool(whole=True)
    assert _views(whole, dataset, profiles) == documents
    assert all(b"<csd:provider " in d and b"<csd:facility " in d for d in documents)
    organisations = {k: v for k, v in spool.handed.items() if k.startswith("Organization/")}
    others = {k: v for k, v in spool.handed.items() if not k.startswith("Organization/")}
    assert organisations, "organisations were handed over as context"
    assert others, "other resources were handed over as context"
    for key, body in organisations.items():
        kept = json.loads(body)
        assert kept == {name: received[key][name] for name in identity if name in received[key]}, key
    assert any("partOf" in json.loads(body) for body in organisations.values()), "chains walked"
    assert sum(map(len, organisations.values())) * 2 < sum(map(len, (whole.handed[k] for k in organisations)))
    for key, body in others.items():
        assert json.loads(body) == received[key], key
