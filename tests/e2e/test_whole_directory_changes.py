"""Changes since before the directory's oldest change (a first synchronisation): the completion skipped; and
identical change sets waiting for a slot computed once (pipeline/coalesce.py).

When the delta searches matched every resource of every type the answer's records read (as many as each
type's `Bundle.total`), the `_id` completion would only read them again (pipeline/changes.py). Real HTTP on
127.0.0.1 against the simulator, whose every request is recorded: the answer is byte for byte the one the
completion gives (the bridge forced to run it), and the completion still runs whenever the delta is partial
or regional.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from lxml import etree
from starlette.types import Receive, Scope, Send

from bridge import ns
from bridge.app import create_app
from bridge.config import load_settings
from bridge.simulator.dataset import EPOCH_UTC, Dataset, generate_dataset
from bridge.simulator.national_api import SimulatorConfig, create_simulator_app, mount_simulator
from tests.e2e import deltas
from tests.expected import answer_csd
from tests.server import running_server

SCALE = 300
SEED = 5
FIRST_SYNC = "2000-01-01T00:00:00Z"
ESTABLISHMENTS = "urn:ror:csd:stored-function:establishments-updated-since"


class Recorder:
    """The simulator, every request's query string recorded."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.queries: list[str] = []

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            self.queries.append(scope["query_string"].decode())
        await self.app(scope, receive, send)

    def completions(self) -> int:
        """How many `_id` searches (the completion's) were received."""
        return sum(1 for query in self.queries if query.startswith("_id="))


@pytest.fixture(scope="module")
def dataset() -> Dataset:
    return generate_dataset(SCALE, SEED)


@pytest.fixture(scope="module")
def simulator(dataset: Dataset) -> Iterator[tuple[str, Recorder]]:
    recorder = Recorder(
        mount_simulator(create_simulator_app(SimulatorConfig(scale=SCALE, seed=SEED), dataset))
    )
    with running_server(recorder) as url:
        yield url, recorder


@pytest.fixture(scope="module")
def bridge_url(simulator: tuple[str, Recorder]) -> Iterator[str]:
    app = create_app(load_settings(upstream_url=f"{simulator[0]}/ws-diffusion-fhir", upstream_page_size=50))
    with running_server(app) as url:
        yield url


def soap12(body: str, action: str = ns.ACTION_ITI74_REQUEST) -> bytes:
    return f"""<soap:Envelope xmlns:soap="{ns.SOAP12}" xmlns:wsa="{ns.WSA}" xmlns:csd="{ns.CSD}">
  <soap:Header><wsa:Action>{action}</wsa:Action>
    <wsa:MessageID>urn:uuid:0f8e1c52-7d3b-4d7e-9a51-3c2f4b6a8e10</wsa:MessageID></soap:Header>
  <soap:Body>{body}</soap:Body></soap:Envelope>""".encode()


def modifications(since: str) -> bytes:
    return soap12(
        f"<csd:getModificationsRequest><csd:lastModified>{since}</csd:lastModified></csd:getModificationsRequest>"
    )


def establishments(since: str) -> bytes:
    return soap12(
        f'<csd:careServicesRequest xmlns:ror="urn:ror:csd:params" urn="{ESTABLISHMENTS}" encapsulated="true">'
        f"<csd:requestParams><ror:dateMiseAJour>{since}</ror:dateMiseAJour></csd:requestParams>"
        "</csd:careServicesRequest>",
        ns.ACTION_ITI73_REQUEST,
    )


def answer(recorder: Recorder, url: str, body: bytes) -> tuple[bytes, int]:
    """The answer without its own MessageID (fresh per answer), and the completion searches it took."""
    before = recorder.completions()
    response = httpx.post(url, content=body, headers={"Content-Type": "application/soap+xml"}, timeout=300)
    assert response.status_code == 200, response.text[:2000]
    content = re.sub(rb"<wsa:MessageID>[^<]*</wsa:MessageID>", b"", response.content)
    return content, recorder.completions() - before


def forced_completion(monkeypatch: pytest.MonkeyPatch) -> None:
    async def never(*_: Any) -> bool:
        return False

    monkeypatch.setattr("bridge.pipeline.changes._matched_everything", never)


@pytest.mark.parametrize("request_of", [modifications, establishments], ids=["iti74", "establishments"])
def test_a_first_synchronisation_skips_the_completion_and_answers_the_same(
    simulator: tuple[str, Recorder], bridge_url: str, monkeypatch: pytest.MonkeyPatch, request_of: Any
) -> None:
    _, recorder = simulator
    skipped, searches = answer(recorder, f"{bridge_url}/csd", request_of(FIRST_SYNC))
    assert searches == 0
    assert any(query.startswith("_count=1") for query in recorder.queries), "the totals were asked"
    forced_completion(monkeypatch)
    completed, searches = answer(recorder, f"{bridge_url}/csd", request_of(FIRST_SYNC))
    assert searches > 0
    assert skipped == completed


def test_the_first_synchronisation_holds_every_change(
    simulator: tuple[str, Recorder], bridge_url: str, dataset: Dataset
) -> None:
    """The oracle of tests/e2e/deltas.py: every entity of the directory, each once."""
    content, searches = answer(simulator[1], f"{bridge_url}/csd", modifications(FIRST_SYNC))
    assert searches == 0
    csd = answer_csd(etree.fromstring(content))
    expected = deltas.expected_modifications(dataset, datetime(2000, 1, 1, tzinfo=UTC))
    assert EPOCH_UTC.year > 2000, "the dataset's changes all come after the first synchronisation's date"
    for directory in csd:
        name = etree.QName(directory).localname
        ids = [str(entity.get("entityID")) for entity in directory]
        assert len(ids) == len(set(ids))
        assert set(ids) == expected.get(name, set()), name


def test_a_partial_change_set_runs_the_completion(simulator: tuple[str, Recorder], bridge_url: str) -> None:
    _, searches = answer(simulator[1], f"{bridge_url}/csd", modifications("2025-11-15T00:00:00Z"))
    assert searches > 0


def test_a_regional_change_set_runs_the_completion(simulator: tuple[str, Recorder], bridge_url: str) -> None:
    """A region's delta is tagged: its totals are not the directory's, the completion always runs."""
    _, searches = answer(simulator[1], f"{bridge_url}/csd/ocean-indien", modifications(FIRST_SYNC))
    assert searches > 0


def test_identical_change_sets_waiting_for_a_slot_are_computed_once(dataset: Dataset) -> None:
    """One slot (BRIDGE_CHANGES_MAX_CONCURRENT=1), held by a first synchronisation on a slow upstream: three
    identical ITI-74 requests arriving meanwhile get one computation's answer, each complete, the same as the
    one computed alone afterwards."""
    config = SimulatorConfig(scale=SCALE, seed=SEED, latency_ms=150)
    recorder = Recorder(mount_simulator(create_simulator_app(config, dataset)))
    since = "2025-11-15T00:00:00Z"
    with running_server(recorder) as simulator_url:
        settings = load_settings(
            upstream_url=f"{simulator_url}/ws-diffusion-fhir", upstream_page_size=50, changes_max_concurrent=1
        )
        with running_server(create_app(settings)) as bridge, ThreadPoolExecutor(4) as pool:
            blocker = pool.submit(answer, recorder, f"{bridge}/csd", modifications(FIRST_SYNC))
            deadline = time.monotonic() + 60
            while not any(query.startswith("_lastUpdated=ge2000") for query in recorder.queries):
                assert time.monotonic() < deadline, "the first synchronisation did not start"
                time.sleep(0.02)
            waiting = [pool.submit(answer, recorder, f"{bridge}/csd", modifications(since)) for _ in range(3)]
            shared = [future.result()[0] for future in waiting]
            blocker.result()
            searches = sum(
                1 for query in recorder.queries if query.startswith(f"_lastUpdated=ge{since[:10]}")
            )
            alone, _ = answer(recorder, f"{bridge}/csd", modifications(since))
    assert searches == 5, "one computation: one search per resource type of the delta"
    assert shared == [alone] * 3
    assert b"<csd:service " in alone or b"<csd:organization " in alone
