"""`iter_pages_unordered`: complete beyond the cap, pages in arrival order, includes kept, memory bounded."""

from __future__ import annotations

import asyncio
import gc
import random
from contextlib import aclosing
from datetime import UTC, datetime
from typing import Any

import orjson
import pytest
from starlette.requests import Request
from starlette.responses import Response

from bridge.errors import IncompleteResultError, UpstreamStatusError
from bridge.fhir.cap_windows import WHOLE, sample, split
from bridge.fhir.client import FhirClient
from bridge.fhir.resilience import RetryPolicy
from bridge.fhir.searchset import Repeats, Searchset
from bridge.model import FhirQuery
from tests.fhir.scripted import Scripted, SearchServer, fhir, resources

QUERY = FhirQuery("Organization", ())
FAST = RetryPolicy(max_attempts=2, backoff_base_s=0.001)


def client_for(scripted: Scripted, **kwargs: Any) -> FhirClient:
    return FhirClient(scripted.base, headers={}, page_size=10, retry=FAST, **kwargs)


async def test_a_search_over_the_cap_is_split_and_every_match_comes_once(scripted: Scripted) -> None:
    data = resources(230)
    scripted.fhir_handler = SearchServer(scripted, data, cap=50)
    async with client_for(scripted, max_results=50, concurrency=3) as client:
        pages = [page async for page in client.iter_pages_unordered([QUERY])]
    found = [r["id"] for page in pages for r in page.matches]
    assert sorted(found) == [r["id"] for r in data]
    assert len(found) == len(set(found)) == 230
    windowed = [r for r in scripted.requests if any(name == "_lastUpdated" for name, _ in r.params)]
    assert windowed, "the query was split into _lastUpdated windows"
    assert scripted.max_in_flight <= 3


async def test_an_include_already_handed_out_comes_again_only_when_it_changed(scripted: Scripted) -> None:
    # A parent included by three pages: handed out with the first, left out of the second (the same bytes:
    # the consumer has it), handed out again with the third, where it changed. iter_pages hands each include
    # out once, by key.
    parent = {"resourceType": "Organization", "id": "parent", "name": "before"}
    changed = {**parent, "name": "after"}

    async def three_pages(request: Request) -> Response:
        page = int(request.query_params.get("cursor", "0"))
        entries = [
            {"resource": r, "search": {"mode": "match"}} for r in resources(6)[2 * page : 2 * page + 2]
        ]
        entries.append({"resource": changed if page == 2 else parent, "search": {"mode": "include"}})
        bundle: dict[str, Any] = {"resourceType": "Bundle", "type": "searchset", "total": 6, "entry": entries}
        if page < 2:
            bundle["link"] = [{"relation": "next", "url": f"{scripted.base}/Organization?cursor={page + 1}"}]
        return fhir(bundle)

    scripted.fhir_handler = three_pages
    async with client_for(scripted) as client:
        pages = [page async for page in client.iter_pages_unordered([QUERY])]
        ordered = [page async for page in client.iter_pages(QUERY)]
    assert [[r["name"] for r in p.includes] for p in pages] == [["before"], [], ["after"]]
    assert [[r["id"] for r in p.matches] for p in pages] == [
        ["r0000", "r0001"],
        ["r0002", "r0003"],
        ["r0004", "r0005"],
    ]
    assert [[r["id"] for r in p.includes] for p in ordered] == [["parent"], [], []]


async def test_the_truncated_first_page_hides_no_include_from_the_windows(scripted: Scripted) -> None:
    # The whole search's first page is over the cap: decoded for its total and dates, never handed out. Its
    # includes (every parent) come again on the windows' pages, which must hand each out once.
    data = resources(230)
    server = SearchServer(scripted, data, cap=50)
    parents = [{"resourceType": "Organization", "id": f"parent-{n}", "name": f"P{n}"} for n in range(3)]
    sent = [0]  # include entries the server sent

    async def with_parents(request: Request) -> Response:
        answer = await server(request)
        bundle = orjson.loads(bytes(answer.body))
        if bundle.get("resourceType") == "Bundle":
            used = sorted({int(e["resource"]["id"][1:]) % 3 for e in bundle["entry"]})
            bundle["entry"] += [{"resource": parents[n], "search": {"mode": "include"}} for n in used]
            sent[0] += len(used)
        return fhir(bundle, status=answer.status_code)

    scripted.fhir_handler = with_parents
    async with client_for(scripted, max_results=50, concurrency=3) as client:
        pages = [page async for page in client.iter_pages_unordered([QUERY])]
    included = sorted(r["id"] for page in pages for r in page.includes)
    assert included == ["parent-0", "parent-1", "parent-2"], "each parent once: none hidden, none repeated"
    assert sorted(r["id"] for page in pages for r in page.matches) == sorted(r["id"] for r in data)
    assert sent[0] > 3, "the windows' pages repeated parents the walk had handed out: it left them out"


async def test_a_failure_reaches_the_consumer_and_stops_the_walks(scripted: Scripted) -> None:
    server = SearchServer(scripted, resources(60), cap=50)

    async def failing_window(request: Request) -> Response:
        if any(
            value.startswith("ge")
            for name, value in request.query_params.multi_items()
            if name == "_lastUpdated"
        ):
            return fhir({"resourceType": "OperationOutcome", "issue": []}, status=400)
        return await server(request)

    scripted.fhir_handler = failing_window
    async with client_for(scripted, max_results=50) as client:
        with pytest.raises(UpstreamStatusError):
            async for _ in client.iter_pages_unordered([QUERY]):
                pass
        await asyncio.sleep(0.05)
        after = len(scripted.requests)
        await asyncio.sleep(0.1)
    assert len(scripted.requests) == after  # no walk kept running after the failure


async def test_a_truncation_that_cannot_be_split_is_an_error(scripted: Scripted) -> None:
    data = [dict(r, meta={"lastUpdated": "2024-01-01T00:00:00.000+00:00"}) for r in resources(60)]
    scripted.fhir_handler = SearchServer(scripted, data, cap=50)
    async with client_for(scripted, max_results=50) as client:
        with pytest.raises(IncompleteResultError, match="cannot be split further"):
            async for _ in client.iter_pages_unordered([QUERY]):
                pass


async def test_walks_do_not_run_ahead_of_a_slow_consumer(scripted: Scripted) -> None:
    server = SearchServer(scripted, resources(200), cap=50)
    served: list[bool] = []  # per page served: does it carry matches of a walk (not a truncated probe)?

    async def counting(request: Request) -> Response:
        response = await server(request)
        bundle = orjson.loads(bytes(response.body))
        served.append(bool(bundle.get("entry")) and bundle["total"] < 50)
        return response

    scripted.fhir_handler = counting
    async with FhirClient(
        scripted.base, headers={}, page_size=5, retry=FAST, concurrency=2, max_results=50
    ) as client:
        pages = client.iter_pages_unordered([QUERY])
        first = await anext(pages)
        await asyncio.sleep(0.3)  # ample time for unbounded walks to fetch all 40 pages
        pages_while_waiting = sum(served)
        rest = [first, *[page async for page in pages]]
    # Two walks, each holding one page, one page queued, one handed out: never the whole answer.
    assert pages_while_waiting <= 4
    found = [r["id"] for page in rest for r in page.matches]
    assert len(found) == len(set(found)) == 200


def full_pages(scripted: Scripted) -> list[list[tuple[str, str]]]:
    """The params of every request that asked for resources (not a `_count=0` total probe)."""
    return [r.params for r in scripted.requests if ("_count", "0") not in r.params]


async def test_windows_are_sized_from_totals_and_probed_before_any_page(scripted: Scripted) -> None:
    """Issue 13 item 3: after the first page, sub-windows are sized from `Bundle.total` and their totals asked
    with `_count=0`; no other page is fetched only to learn it is truncated, and empty windows are skipped."""
    data = resources(230)  # one minute apart from 2024-01-01: 230 minutes of a 56-year axis
    server = SearchServer(scripted, data, cap=50)
    scripted.fhir_handler = server
    async with client_for(scripted, max_results=50, concurrency=4) as client:
        pages = [page async for page in client.iter_pages_unordered([QUERY])]
    found = [r["id"] for page in pages for r in page.matches]
    assert sorted(found) == [r["id"] for r in data]
    assert len(found) == len(set(found))
    walked = full_pages(scripted)
    over_cap = [p for p in walked if len(server.matching(p)) >= 50]
    assert over_cap == [walked[0]], "only the first page finds the search truncated"
    size = client.window_size(230)
    assert all(len(server.matching(p)) <= 2 * size for p in walked[1:]), "windows sized from the total"
    assert all(server.matching(p) for p in walked), "no empty window is walked"
    probes = [r.params for r in scripted.requests if ("_count", "0") in r.params]
    assert probes, "sub-window totals are probed"
    assert scripted.max_in_flight <= 4


async def walk_capped(
    scripted: Scripted, data: list[dict[str, Any]], *, cap: int, page_size: int
) -> tuple[SearchServer, FhirClient, list[str]]:
    """QUERY over `data` behind a server that truncates at `cap`, walked unordered by 4 walks: the server,
    the (closed) client and the ids of the matches in arrival order."""
    server = SearchServer(scripted, data, cap=cap)
    scripted.fhir_handler = server
    async with FhirClient(
        scripted.base, headers={}, page_size=page_size, retry=FAST, max_results=cap, concurrency=4
    ) as client:
        found = [r["id"] async for page in client.iter_pages_unordered([QUERY]) for r in page.matches]
    return server, client, found


async def test_windows_cut_at_the_first_page_dates_are_walked_without_probes(scripted: Scripted) -> None:
    """Issue 13 item 3: a server that does not order its results by date makes the truncated first page a
    sample of the dates; the windows are cut at its quantiles and walked at once, without `_count=0` probes
    (which cost a round trip each before any page), and each holds about the share the total asks for."""
    rng = random.Random(11)
    data = resources(400)  # 400 minutes, then shuffled: the server's order is unrelated to the dates
    rng.shuffle(data)
    server, client, found = await walk_capped(scripted, data, cap=200, page_size=40)
    size = client.window_size(400)  # 80: 5 windows, at most half the cap each
    assert sorted(found) == sorted(r["id"] for r in data)
    assert len(found) == len(set(found))
    assert not [r for r in scripted.requests if ("_count", "0") in r.params], "no probe"
    walked = full_pages(scripted)
    over_cap = [p for p in walked if len(server.matching(p)) >= 200]
    assert over_cap == [walked[0]], "only the first page finds the search truncated"
    held = [len(server.matching(p)) for p in walked[1:] if not any(n == "cursor" for n, _ in p)]
    assert sum(held) == 400
    assert max(held) <= 2 * size, "the quantiles give every window about its share"


async def test_a_window_the_sample_misjudged_is_split_again_from_its_own_page(scripted: Scripted) -> None:
    """A first page that is not a fair sample (its matches all from one corner of the time axis, in no date
    order) leaves a window over the cap: met at that window's own first page, it is split again (from its
    total, by equal spans and probes); nothing is lost."""
    rng = random.Random(13)
    corner = resources(60, start=datetime(2020, 1, 1, tzinfo=UTC))
    rest = resources(340, start=datetime(2024, 1, 1, tzinfo=UTC))
    for index, resource in enumerate(rest):
        resource["id"] = f"s{index:04d}"
    rng.shuffle(corner)
    rng.shuffle(rest)
    server, _, found = await walk_capped(scripted, [*corner, *rest], cap=100, page_size=20)
    assert sorted(found) == sorted(r["id"] for r in [*corner, *rest])
    over_cap = [p for p in full_pages(scripted) if len(server.matching(p)) >= 100]
    assert len(over_cap) >= 2, "a window cut from the biased sample met the cap and was split again"


async def test_a_sample_biased_by_the_server_order_costs_one_page_not_a_page_a_round(
    scripted: Scripted,
) -> None:
    """A server whose order follows the dates in part (as an insertion order may) passes the sample check
    with a first page of the earliest results: every window but the last is nearly empty and the last holds
    the rest. That window, met at the cap, is split as without a sample (equal spans, probed), not again from
    its own equally biased page, which would peel a few results a round."""
    rng = random.Random(19)
    dated = resources(600)
    data = [
        r for _, r in sorted(((i + rng.uniform(0, 20), r) for i, r in enumerate(dated)), key=lambda p: p[0])
    ]
    first_page = data[:25]
    assert sample(first_page), "the biased page passes for a sample"
    server, _, found = await walk_capped(scripted, data, cap=100, page_size=25)
    assert sorted(found) == sorted(r["id"] for r in data)
    over_cap = [p for p in full_pages(scripted) if len(server.matching(p)) >= 100]
    assert len(over_cap) == 2, "the first page, then the one window the biased sample left too large"


async def test_a_server_refusing_count_zero_is_still_walked_completely(scripted: Scripted) -> None:
    server = SearchServer(scripted, resources(120), cap=50)

    async def no_count_zero(request: Request) -> Response:
        if request.query_params.get("_count") == "0":
            return fhir({"resourceType": "OperationOutcome", "issue": []}, status=400)
        return await server(request)

    scripted.fhir_handler = no_count_zero
    async with client_for(scripted, max_results=50) as client:
        pages = [page async for page in client.iter_pages_unordered([QUERY])]
        ordered = await client.search(QUERY)
        first_split = split(WHOLE, 120, 50, client.window_size(120))
    found = sorted(r["id"] for page in pages for r in page.matches)
    assert found == [r["id"] for r in resources(120)]
    assert [r["id"] for r in ordered.matches] == found  # time order, each once
    probes = [r for r in scripted.requests if r.params.count(("_count", "0"))]
    # One round of probes (the first split's parts, sent at once), then none: neither for later splits nor
    # for the second search.
    assert len(probes) == len(first_split)


def test_window_size_gives_every_walk_a_share_within_half_the_cap() -> None:
    client = FhirClient("http://upstream.invalid", headers={}, page_size=200, concurrency=8)
    assert client.window_size(40_000) == 2_500  # 16 windows: twice the walks run side by side
    assert client.window_size(1_000_000) == 5_000  # at most half the national cap
    assert client.window_size(1_000) == 400  # at least two pages
    assert client.window_size(None) == 5_000


async def test_walks_fetch_ahead_but_decode_one_page_at_a_time(
    scripted: Scripted, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Issue 13 item 3: the walks keep fetching while the consumer holds a page, but their answers wait as
    bytes; only the page handed out is decoded (eight decoded 2 MB pages waiting made the collector walk
    them again and again)."""
    server = SearchServer(scripted, resources(200), cap=50)
    served: list[bool] = []
    decoded: list[bool] = []  # per Bundle decoded: a walked page (not a truncated one, not a probe)?

    def walked(bundle: Any) -> bool:
        return bool(bundle.get("entry")) and bundle["total"] < 50

    async def counting(request: Request) -> Response:
        response = await server(request)
        served.append(walked(orjson.loads(bytes(response.body))))
        return response

    decode = Repeats.decode

    def counted(repeats: Repeats, body: bytes, url: str) -> Searchset:
        decoded.append(walked(orjson.loads(body)))
        return decode(repeats, body, url)

    monkeypatch.setattr(Repeats, "decode", counted)
    scripted.fhir_handler = counting
    async with FhirClient(
        scripted.base, headers={}, page_size=5, retry=FAST, concurrency=4, max_results=50
    ) as client:
        pages = client.iter_pages_unordered([QUERY])
        first = await anext(pages)
        await asyncio.sleep(0.3)  # ample time for every walk to fetch its next page
        fetched, decoded_while_waiting = sum(served), sum(decoded)
        rest = [first, *[page async for page in pages]]
    assert fetched >= 3, "the other walks fetched their pages meanwhile"
    assert decoded_while_waiting == 1, "only the page handed out is decoded"
    found = [r["id"] for page in rest for r in page.matches]
    assert len(found) == len(set(found)) == 200
    assert sum(decoded) == sum(served)  # every page decoded once, when its turn came


async def test_windows_are_walked_as_soon_as_their_own_probe_answers(scripted: Scripted) -> None:
    """A slow `_count=0` probe holds back its own window only: the others are walked meanwhile."""
    data = resources(230)
    server = SearchServer(scripted, data, cap=50)
    slow_probe_answered: list[float] = []
    pages_asked: list[float] = []

    async def one_slow_probe(request: Request) -> Response:
        params = list(request.query_params.multi_items())
        if ("_count", "0") in params and not slow_probe_answered:
            slow_probe_answered.append(0.0)
            await asyncio.sleep(0.5)
            slow_probe_answered[0] = asyncio.get_running_loop().time()
        elif ("_count", "0") not in params and any(name == "_lastUpdated" for name, _ in params):
            pages_asked.append(asyncio.get_running_loop().time())
        return await server(request)

    scripted.fhir_handler = one_slow_probe
    async with client_for(scripted, max_results=50, concurrency=4) as client:
        pages = [page async for page in client.iter_pages_unordered([QUERY])]
    found = sorted(r["id"] for page in pages for r in page.matches)
    assert found == [r["id"] for r in data]
    assert pages_asked
    assert min(pages_asked) < slow_probe_answered[0], "windows are walked before every probe is back"


async def test_the_collector_is_back_after_a_walk_finished_or_abandoned(scripted: Scripted) -> None:
    """The walk pauses the collector over spans of pages (gc_control.Spans); it never leaves it paused."""
    assert gc.isenabled()
    scripted.fhir_handler = SearchServer(scripted, resources(100), cap=50)
    async with client_for(scripted, max_results=50, concurrency=2) as client:
        pages = [page async for page in client.iter_pages_unordered([QUERY])]
        assert gc.isenabled()
        walk = client.iter_pages_unordered([QUERY])
        async with aclosing(walk):
            await anext(walk)
            assert not gc.isenabled(), "paused while a span of pages is handed out"
        assert gc.isenabled()
    assert sum(len(page.matches) for page in pages) == 100
