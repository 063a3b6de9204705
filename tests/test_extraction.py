"""The streamed extraction against the ROR simulator over real HTTP: validity, completeness, sources, cap.

Each document is validated against xsd/ and (when ../shared is present) the official CSD 2014 schema; its
entity sets are checked against the simulator's own data (tests/expected.py) and its records against what
the `offer-search` stored function answers for the same scope.
"""

from __future__ import annotations

import asyncio
import logging
import multiprocessing
import os
import signal
import time
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures.process import BrokenProcessPool
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

import pytest
from lxml import etree
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from bridge.csd.writer import document_to_bytes
from bridge.errors import InvalidParameterError, UnknownRegionError
from bridge.fhir.client import FhirClient
from bridge.fhir.resilience import RetryPolicy
from bridge.model import CsdRequest, Directory, RequestForm, RequestParams, Resource, Transaction
from bridge.pipeline import Pipeline
from bridge.pipeline.cache import ExtractionCache
from bridge.pipeline.extraction import ExtractionRequest, Extractor, extraction_plan, extraction_request
from bridge.pipeline.progress import Progress, Source
from bridge.pipeline.spool import Spool
from bridge.shipped import shipped_dir
from bridge.simulator.dataset import generate_dataset
from bridge.simulator.national_api import SimulatorConfig, create_simulator_server
from bridge.translate import load_mappings
from tests.expected import entity_ids, expected_entities
from tests.profile.harness import OfficialProfile, assert_follows_profile
from tests.server import running_server

SCALE = 240
SEED = 5
DATASET = generate_dataset(SCALE, SEED)
MAPPINGS = load_mappings(shipped_dir("mappings"))
FAST = RetryPolicy(max_attempts=2, backoff_base_s=0.001, backoff_max_s=0.01)
REGION = "ocean-indien"  # two TRE_R30 codes (04, 06): the regional tag is an OR
REGION_CODES = ("04", "06")


@contextmanager
def filled_spool(resources: Iterable[Resource]) -> Iterator[Spool]:
    """A spool of the shipped tables holding `resources`, indexed (`finish`), closed on leaving."""
    spool = Spool(MAPPINGS)
    try:
        spool.add(list(resources))
        spool.finish()
        yield spool
    finally:
        spool.close()


@contextmanager
def simulator(**options: object) -> Iterator[str]:
    """The standalone simulator (open access) on 127.0.0.1; yields its FHIR base URL."""
    config = SimulatorConfig(scale=SCALE, seed=SEED, open_access=True, **options)  # type: ignore[arg-type]
    with running_server(create_simulator_server(config, DATASET)) as root:
        yield f"{root}/ws-diffusion-fhir"


def client(base: str, **options: object) -> FhirClient:
    settings: dict[str, object] = {"headers": {}, "page_size": 25, "retry": FAST, "seed": 1}
    settings.update(options)
    return FhirClient(base, **settings)  # type: ignore[arg-type]


async def extract(
    base: str,
    request: ExtractionRequest,
    source: Source = Source.SEARCH,
    *,
    progress: list[Progress] | None = None,
    **options: object,
) -> bytes:
    async with client(base, **options) as upstream:
        extractor = Extractor(MAPPINGS, upstream, source=source)
        chunks = [
            chunk
            async for chunk in extractor.stream(request, progress.append if progress is not None else None)
        ]
    return b"".join(chunks)


def national(*params: tuple[str, str]) -> ExtractionRequest:
    return extraction_request(MAPPINGS, None, params)


@pytest.fixture(scope="module")
def base() -> Iterator[str]:
    with simulator() as url:
        yield url


@pytest.fixture(scope="module")
def national_search(base: str) -> bytes:
    return asyncio.run(extract(base, national()))


def assert_once_and_equal(document: bytes, expected: dict[Directory, set[str]]) -> None:
    found = entity_ids(document)
    for directory in Directory:
        ids = found[directory]
        assert len(ids) == len(set(ids)), f"{directory.value}: an entity is repeated"
        assert set(ids) == expected[directory], directory.value


def test_the_document_validates_against_our_schema(
    national_search: bytes, our_csd_schema: etree.XMLSchema
) -> None:
    assert national_search.startswith(b"<?xml version='1.0' encoding='utf-8'?>\n<csd:CSD ")
    document = etree.fromstring(national_search)
    assert our_csd_schema.validate(document), our_csd_schema.error_log.last_error
    assert [etree.QName(child).localname for child in document] == [d.value for d in Directory]


def test_the_document_validates_against_the_official_schema(
    national_search: bytes, official_csd_schema: etree.XMLSchema
) -> None:
    document = etree.fromstring(national_search)
    assert official_csd_schema.validate(document), official_csd_schema.error_log.last_error


def test_the_document_follows_the_official_ror_profile(
    national_search: bytes, official_profile: OfficialProfile
) -> None:
    assert_follows_profile(official_profile, etree.fromstring(national_search))


def test_every_entity_of_the_national_offer_comes_exactly_once(national_search: bytes) -> None:
    expected = expected_entities(DATASET, MAPPINGS)
    filled = [v for d, v in expected.items() if d is not Directory.DEVICE]
    assert all(filled), "the dataset fills every directory"
    assert_once_and_equal(national_search, expected)


@pytest.mark.parametrize(
    ("region", "codes", "params", "champs"),
    [
        (REGION, REGION_CODES, (), None),
        (REGION, REGION_CODES, (("champActivite", "01"), ("champActivite", "04")), {"01", "04"}),
        (None, None, (("champActivite", "02"),), {"02"}),
    ],
    ids=["region", "region-two-champs", "national-one-champ"],
)
async def test_a_region_and_a_champ_filter_give_exactly_their_entities(
    base: str,
    region: str | None,
    codes: Sequence[str] | None,
    params: tuple[tuple[str, str], ...],
    champs: set[str] | None,
) -> None:
    document = await extract(base, extraction_request(MAPPINGS, region, params))
    expected = expected_entities(DATASET, MAPPINGS, region_codes=codes, champs=champs)
    everything = expected_entities(DATASET, MAPPINGS)
    assert expected[Directory.SERVICE], "the scope holds offers"
    assert expected[Directory.SERVICE] < everything[Directory.SERVICE], "the scope is a real restriction"
    assert_once_and_equal(document, expected)


async def test_the_records_are_those_offer_search_answers(base: str) -> None:
    # offer-search (no start/max) answers the same offers with the same include set: its CSD document is
    # the reference for every record of the extraction, byte for byte, organisations root first included.
    params = (("champActivite", "01"), ("champActivite", "03"))
    document = await extract(base, extraction_request(MAPPINGS, REGION, params))
    async with client(base) as upstream:
        spec = next(s for s in MAPPINGS.functions.values() if s.name == "offer-search")
        call = CsdRequest(
            transaction=Transaction.CARE_SERVICES,
            form=RequestForm.FUNCTION_URN_2014,
            function_urn=spec.urn,
            params=RequestParams(extra=params),
            region=REGION,
        )
        answer = await Pipeline(MAPPINGS, upstream).run(call)
    reference = document_to_bytes(answer.document)
    assert entity_ids(reference)[Directory.SERVICE], "the reference answer is not empty"
    assert document == reference


async def test_export_and_search_give_the_same_document(base: str, national_search: bytes) -> None:
    progress: list[Progress] = []
    exported = await extract(base, national(), Source.EXPORT, progress=progress)
    assert progress[-1].source is Source.EXPORT
    assert progress[-1].pages > 1, "several export files"
    assert exported == national_search


async def test_export_and_search_agree_on_a_filtered_region(base: str) -> None:
    request = extraction_request(MAPPINGS, REGION, (("champActivite", "04"),))
    assert extraction_plan(MAPPINGS, request).export.type_filters, "the export carries the filter"
    assert await extract(base, request, Source.EXPORT) == await extract(base, request)


async def test_a_search_over_the_result_cap_is_split_and_stays_complete(
    national_search: bytes, caplog: pytest.LogCaptureFixture
) -> None:
    # The national cap scaled down: 240 offers against a cap of 40 cross it several times.
    with simulator(max_results=40) as capped, caplog.at_level(logging.INFO, "bridge.fhir.client"):
        document = await extract(capped, national(), max_results=40)
    assert "upstream-truncation-split" in caplog.text
    assert document == national_search


async def test_duplicated_and_repeated_entries_are_written_once(national_search: bytes) -> None:
    # Pages repeat entries of the previous one (HAPI under concurrent writes): the spool keeps each once.
    with simulator(faults="duplicates") as faulty:
        document = await extract(faulty, national())
    assert document == national_search


async def test_heartbeats_keep_the_connection_alive_and_the_document_valid(
    our_csd_schema: etree.XMLSchema,
) -> None:
    request = extraction_request(MAPPINGS, "corse", ())
    with simulator(latency_ms=60) as slow:
        async with client(slow, page_size=5) as upstream:
            extractor = Extractor(MAPPINGS, upstream, source=Source.SEARCH, heartbeat_s=0.02)
            chunks = [chunk async for chunk in extractor.stream(request)]
    assert b"\n" in chunks[1:3], "whitespace was sent while the offer was being fetched"
    document = etree.fromstring(b"".join(chunks))
    assert our_csd_schema.validate(document), our_csd_schema.error_log.last_error
    assert entity_ids(b"".join(chunks))[Directory.SERVICE]


def _no_mapping_workers_left() -> bool:
    """Whether the mapping worker processes have all ended (they end shortly after their spool closed)."""
    deadline = time.monotonic() + 20
    while multiprocessing.active_children() and time.monotonic() < deadline:
        time.sleep(0.05)
    return not multiprocessing.active_children()


async def test_worker_processes_write_the_same_document_and_report_the_same_findings(
    base: str, national_search: bytes, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every directory mapped in two worker processes (threshold lowered to 1), a few batches ahead: the
    document is byte for byte the one mapped in-thread, and the findings the workers counted reach the
    bridge's own counters, as they would have in-thread."""
    monkeypatch.setattr("bridge.pipeline.workers.PARALLEL_FROM", 1)
    monkeypatch.setattr("bridge.pipeline.workers.BATCH_SIZE", 20)
    counted = {}
    documents = {}
    running: dict[int, int] = {0: 0, 2: 0}  # most worker processes seen while writing
    for workers in (0, 2):

        def watch(progress: Progress, workers: int = workers) -> None:
            if progress.phase == "writing":
                running[workers] = max(running[workers], len(multiprocessing.active_children()))

        mappings = load_mappings(shipped_dir("mappings"))
        async with client(base) as upstream:
            extractor = Extractor(mappings, upstream, source=Source.SEARCH, workers=workers)
            documents[workers] = b"".join([chunk async for chunk in extractor.stream(national(), watch)])
        counted[workers] = mappings.findings.counts()
    assert running == {0: 0, 2: 2}
    assert documents[2] == documents[0] == national_search
    assert counted[2] == counted[0]
    assert counted[0], "the synthetic data has findings (codes without OID…): the comparison means something"
    assert _no_mapping_workers_left()


async def test_a_mapping_worker_dying_aborts_the_document(monkeypatch: pytest.MonkeyPatch, base: str) -> None:
    """A worker killed while the directories are written: the stream raises after its first bytes (the edge
    then aborts the transfer), never ends the document, and leaves no process behind."""
    monkeypatch.setattr("bridge.pipeline.workers.PARALLEL_FROM", 1)
    monkeypatch.setattr("bridge.pipeline.workers.BATCH_SIZE", 5)
    killed: list[int] = []

    def kill_a_worker(progress: Progress) -> None:
        workers = multiprocessing.active_children()
        if progress.phase == "writing" and workers and not killed:
            killed.append(workers[0].pid or 0)
            os.kill(workers[0].pid or 0, signal.SIGKILL)

    chunks: list[bytes] = []

    async def read_all() -> None:
        async with client(base) as upstream:
            extractor = Extractor(MAPPINGS, upstream, source=Source.SEARCH, workers=2)
            async for chunk in extractor.stream(national(), kill_a_worker):
                chunks.append(chunk)

    with pytest.raises(BrokenProcessPool):
        await read_all()
    assert killed, "a worker was running while the document was written"
    document = b"".join(chunks)
    assert document.startswith(b"<?xml")
    assert b"<csd:organization " in document, "the first directory had begun"
    assert b"</csd:CSD>" not in document
    assert _no_mapping_workers_left()


async def test_auto_takes_export_when_the_capability_statement_announces_it(base: str) -> None:
    async with client(base) as upstream:
        assert await Extractor(MAPPINGS, upstream).choose_source() is Source.EXPORT


async def test_auto_takes_searches_when_export_is_not_announced() -> None:
    async def metadata(_: Request) -> JSONResponse:
        return JSONResponse({"resourceType": "CapabilityStatement", "rest": [{"mode": "server"}]})

    app = Starlette(routes=[Route("/fhir/metadata", metadata)])
    with running_server(app) as root:
        async with client(f"{root}/fhir") as upstream:
            assert await Extractor(MAPPINGS, upstream).choose_source() is Source.SEARCH


def test_an_unknown_region_and_unknown_or_paging_parameters_are_refused() -> None:
    with pytest.raises(UnknownRegionError):
        extraction_request(MAPPINGS, "atlantis", ())
    with pytest.raises(InvalidParameterError, match="does not accept 'colour'"):
        extraction_request(MAPPINGS, None, (("colour", "blue"),))
    with pytest.raises(InvalidParameterError, match="does not accept 'max'"):
        extraction_request(MAPPINGS, None, (("max", "10"),))
    with pytest.raises(InvalidParameterError, match="empty value"):
        extraction_request(MAPPINGS, None, (("champActivite", ""),))


def test_the_filter_uses_the_offer_search_parameter_and_a_stable_key() -> None:
    one = extraction_request(MAPPINGS, "IDF", (("champActivite", "04,01"),))
    other = extraction_request(MAPPINGS, "idf", (("champActivite", "01"), ("champActivite", "04")))
    assert one == other
    assert one.key == other.key
    assert one.key != extraction_request(MAPPINGS, "idf", ()).key
    plan = extraction_plan(MAPPINGS, one)
    params = dict(plan.query.params)
    champ = "https://mos.esante.gouv.fr/NOS/TRE_R227-ChampActivite/FHIR/TRE-R227-ChampActivite"
    assert params["service-type"] == f"{champ}|01,{champ}|04"
    assert params["_tag"] == "https://mos.esante.gouv.fr/NOS/TRE_R30-RegionOM/FHIR/TRE-R30-RegionOM|11"
    assert plan.export.types == ("HealthcareService",)
    (type_filter,) = plan.export.type_filters
    assert type_filter.startswith("HealthcareService?service-type=")
    assert "_tag=" in type_filter


def test_a_cached_document_is_committed_whole_or_not_at_all(tmp_path: Path) -> None:
    cache = ExtractionCache(tmp_path, max_age_s=60)
    request = national()
    entry = cache.open(request, datetime.now(UTC))
    assert entry is not None
    entry.write(b"<partial")
    assert cache.lookup(request) is None, "nothing is served while the document is being written"
    entry.discard()
    assert list(tmp_path.iterdir()) == []
    assert ExtractionCache(tmp_path, max_age_s=0).open(request, entry.date) is None, "0 = no cache"


def test_bridges_sharing_a_cache_directory_never_serve_each_other_s_documents(tmp_path: Path) -> None:
    request = national()
    production = ExtractionCache(tmp_path, max_age_s=60, scope="https://api-fhir.ror.esante.gouv.fr")
    sandbox = ExtractionCache(tmp_path, max_age_s=60, scope="https://bas-api-fhir.qualif.ror.esante.gouv.fr")
    entry = production.open(request, datetime.now(UTC))
    assert entry is not None
    entry.write(b"<csd:CSD/>")
    entry.commit()
    cached = production.lookup(request)
    assert cached is not None
    assert cached.path.read_bytes() == b"<csd:CSD/>"
    assert sandbox.lookup(request) is None


@pytest.mark.slow
async def test_the_real_10000_cap_is_crossed_and_the_offer_stays_complete(
    caplog: pytest.LogCaptureFixture,
) -> None:
    scale = 10_400
    dataset = generate_dataset(scale, SEED)
    config = SimulatorConfig(scale=scale, seed=SEED, open_access=True)
    with (
        running_server(create_simulator_server(config, dataset)) as root,
        caplog.at_level(logging.INFO, "bridge.fhir.client"),
    ):
        progress: list[Progress] = []
        document = await extract(f"{root}/ws-diffusion-fhir", national(), progress=progress, page_size=200)
    assert "upstream-truncation-split HealthcareService total=10400" in caplog.text
    assert progress[-1].pages > scale // 200
    assert_once_and_equal(document, expected_entities(dataset, MAPPINGS))
