"""Complete paging: `_offset` fallback, expired cursors, duplicates, truncation split, ordered partitions."""

from __future__ import annotations

import asyncio
import itertools
import random
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from starlette.requests import Request
from starlette.responses import Response

from bridge.errors import IncompleteResultError
from bridge.fhir.cap_windows import EPOCH, MAX_PARTS, WHOLE, sample, split, sub_windows
from bridge.fhir.client import FhirClient
from bridge.fhir.resilience import RetryPolicy
from bridge.fhir.validation import SampledValidator
from bridge.model import FhirQuery
from tests.fhir.scripted import Scripted, SearchServer, fhir, resources

QUERY = FhirQuery("Organization", ())
FAST = RetryPolicy(max_attempts=2, backoff_base_s=0.001)


def client_for(scripted: Scripted, **kwargs: Any) -> FhirClient:
    return FhirClient(scripted.base, headers={}, page_size=10, retry=FAST, **kwargs)


def ids(found: list[dict[str, Any]]) -> list[str]:
    return [r["id"] for r in found]


async def test_next_links_are_followed_to_the_end(scripted: Scripted) -> None:
    data = resources(35)
    scripted.fhir_handler = SearchServer(scripted, data)
    async with client_for(scripted) as client:
        result = await client.search(QUERY)
    assert ids(result.matches) == ids(data)
    assert (result.total, result.pages) == (35, 4)


async def test_without_next_links_a_total_is_paged_with_count_and_offset(scripted: Scripted) -> None:
    data = resources(35)
    server = SearchServer(scripted, data)
    server.next_links = False
    scripted.fhir_handler = server
    async with client_for(scripted) as client:
        result = await client.search(QUERY)
    assert ids(result.matches) == ids(data)
    offsets = [dict(r.params).get("_offset") for r in scripted.requests]
    assert offsets == [None, "10", "20", "30"]


async def test_a_server_that_ignores_offset_gives_an_error_naming_what_is_missing(scripted: Scripted) -> None:
    async def first_page_only(request: Request) -> Response:
        entries = [{"resource": r, "search": {"mode": "match"}} for r in resources(10)]
        return fhir({"resourceType": "Bundle", "type": "searchset", "total": 25, "entry": entries})

    scripted.fhir_handler = first_page_only
    async with client_for(scripted) as client:
        with pytest.raises(IncompleteResultError, match="announced 25 results but 10 were received"):
            await client.search(QUERY)


async def test_an_expired_cursor_is_resumed_without_losing_or_repeating_entries(scripted: Scripted) -> None:
    data = resources(35)
    server = SearchServer(scripted, data)
    server.expire_once = {20}  # the third page's cursor has expired (410) when the client reaches it
    scripted.fhir_handler = server
    async with client_for(scripted) as client:
        result = await client.search(QUERY)
    assert ids(result.matches) == ids(data)
    cursors = [dict(r.params).get("cursor") for r in scripted.requests]
    assert cursors == [None, "10", "20", None, "10", "20", "30"]  # the search was run again from the start


async def test_duplicate_entries_across_pages_are_received_once(scripted: Scripted) -> None:
    data = resources(6)

    async def repeating(request: Request) -> Response:
        second = "page" in request.query_params
        page = data[2:6] if second else data[:3]  # "r0002" is on both pages
        bundle: dict[str, Any] = {
            "resourceType": "Bundle",
            "type": "searchset",
            "total": 6,
            "entry": [{"resource": r, "search": {"mode": "match"}} for r in page],
        }
        if not second:
            bundle["link"] = [{"relation": "next", "url": f"{scripted.base}/Organization?page=2"}]
        return fhir(bundle)

    scripted.fhir_handler = repeating
    async with client_for(scripted) as client:
        result = await client.search(QUERY)
    assert ids(result.matches) == ids(data)


async def test_a_truncated_search_is_split_by_last_updated_until_complete(scripted: Scripted) -> None:
    data = resources(120)
    server = SearchServer(scripted, data, cap=50)  # the national cap, scaled down
    scripted.fhir_handler = server
    async with client_for(scripted, max_results=50) as client:
        result = await client.search(QUERY)
    assert sorted(ids(result.matches)) == ids(data)
    assert len(ids(result.matches)) == 120
    assert result.total == 120
    assert ids(result.matches) == sorted(ids(result.matches))  # windows come back in time order
    windowed = [r for r in scripted.requests if any(name == "_lastUpdated" for name, _ in r.params)]
    assert windowed, "the query was split into _lastUpdated windows"


async def test_a_truncated_search_in_no_date_order_is_cut_at_its_first_page_dates(scripted: Scripted) -> None:
    """The ordered walk (`search`) splits as the unordered one: windows cut at the truncated page's dates,
    walked without `_count=0` probes and handed out in time order, every match once."""
    data = resources(300)
    random.Random(17).shuffle(data)
    scripted.fhir_handler = SearchServer(scripted, data, cap=100)
    async with FhirClient(scripted.base, headers={}, page_size=20, retry=FAST, max_results=100) as client:
        result = await client.search(QUERY)  # windows of 40 results: at most half the cap, no probe needed
    found = ids(result.matches)
    assert sorted(found) == sorted(ids(data))
    assert len(found) == len(set(found)) == 300
    assert not [r for r in scripted.requests if ("_count", "0") in r.params]
    stamps = [r["meta"]["lastUpdated"] for r in result.matches]
    windows = [stamps[i : i + 20] for i in range(0, 300, 20)]
    assert max(windows[0]) < min(windows[-1]), "windows come back in time order"


async def test_a_truncation_that_cannot_be_split_is_an_error(scripted: Scripted) -> None:
    same_instant = datetime(2024, 1, 1, tzinfo=UTC)
    data = [dict(r, meta={"lastUpdated": same_instant.isoformat()}) for r in resources(60)]
    scripted.fhir_handler = SearchServer(scripted, data, cap=50)
    async with client_for(scripted, max_results=50) as client:
        with pytest.raises(IncompleteResultError, match="cannot be split further"):
            await client.search(QUERY)


async def test_exactly_the_cap_received_is_treated_as_possibly_truncated(scripted: Scripted) -> None:
    data = resources(50)

    async def capped_without_total(request: Request) -> Response:
        found = SearchServer(scripted, data).matching(list(request.query_params.multi_items()))
        entries = [{"resource": r, "search": {"mode": "match"}} for r in found[:50]]
        return fhir({"resourceType": "Bundle", "type": "searchset", "entry": entries})

    scripted.fhir_handler = capped_without_total
    async with FhirClient(scripted.base, headers={}, page_size=200, retry=FAST, max_results=50) as client:
        result = await client.search(QUERY)
    assert sorted(ids(result.matches)) == ids(data)
    assert len(scripted.requests) > 1  # the first answer was not trusted as complete


async def test_partitions_stream_in_order_with_bounded_concurrency(scripted: Scripted) -> None:
    data = resources(60)
    server = SearchServer(scripted, data)

    async def slow(request: Request) -> Response:
        await asyncio.sleep(0.02)
        return await server(request)

    scripted.fhir_handler = slow
    origin = datetime(2024, 1, 1, tzinfo=UTC)
    bounds = [(origin + timedelta(minutes=m)).strftime("%Y-%m-%dT%H:%M:%SZ") for m in range(0, 61, 10)]
    queries = [
        FhirQuery("Organization", (("_lastUpdated", f"ge{lo}"), ("_lastUpdated", f"lt{hi}")))
        for lo, hi in itertools.pairwise(bounds)
    ]
    seen: list[tuple[int, str]] = []
    async with FhirClient(scripted.base, headers={}, page_size=4, retry=FAST, concurrency=2) as client:
        async for index, page in client.iter_partitioned(queries):
            seen.extend((index, r["id"]) for r in page.matches)
    assert [rid for _, rid in seen] == ids(data)
    assert [index for index, _ in seen] == sorted(index for index, _ in seen)
    assert scripted.max_in_flight == 2  # concurrent, and never more than the bound


async def test_partitions_do_not_run_ahead_of_a_slow_consumer(scripted: Scripted) -> None:
    data = resources(60)
    scripted.fhir_handler = SearchServer(scripted, data)
    origin = datetime(2024, 1, 1, tzinfo=UTC)
    bounds = [(origin + timedelta(minutes=m)).strftime("%Y-%m-%dT%H:%M:%SZ") for m in range(0, 61, 10)]
    queries = [
        FhirQuery("Organization", (("_lastUpdated", f"ge{lo}"), ("_lastUpdated", f"lt{hi}")))
        for lo, hi in itertools.pairwise(bounds)
    ]
    async with FhirClient(scripted.base, headers={}, page_size=2, retry=FAST, concurrency=2) as client:
        pages = client.iter_partitioned(queries)
        await anext(pages)
        await asyncio.sleep(0.3)  # ample time for unbounded producers to fetch all 30 pages
        fetched_while_waiting = len(scripted.requests)
        rest = [page async for _, page in pages]
    # Two partitions alive, each with one page queued and one waiting to be queued, plus the page handed out.
    assert fetched_while_waiting <= 5
    assert sum(len(p.matches) for p in rest) == 58


async def test_sampled_validation_counts_defects_and_never_rejects_data(scripted: Scripted) -> None:
    good = {"resourceType": "Organization", "id": "good", "name": "CH"}
    bad = {"resourceType": "Organization", "id": "bad", "active": "not-a-boolean"}

    async def two(request: Request) -> Response:
        entries = [{"resource": r, "search": {"mode": "match"}} for r in (good, bad)]
        return fhir({"resourceType": "Bundle", "type": "searchset", "total": 2, "entry": entries})

    scripted.fhir_handler = two
    validator = SampledValidator(1.0, seed=1)
    async with client_for(scripted, validator=validator) as client:
        result = await client.search(QUERY)
        await validator.drain()
    assert ids(result.matches) == ["good", "bad"]
    assert (validator.validated, validator.failures) == (2, 1)


async def test_validation_sampling_follows_the_rate(scripted: Scripted) -> None:
    scripted.fhir_handler = SearchServer(scripted, resources(100))
    validator = SampledValidator(0.25, seed=3)
    async with client_for(scripted, validator=validator) as client:
        await client.search(QUERY)
        await validator.drain()
    assert 10 <= validator.validated <= 45
    assert validator.failures == 0


def test_windows_are_sized_from_the_total_and_cover_the_axis_exactly() -> None:
    start, end = datetime(2019, 1, 1, tzinfo=UTC), datetime(2026, 1, 1, tzinfo=UTC)
    parts = split((start, end), 40_000, 10_000)
    assert len(parts) == 8  # 40 000 results, parts of about half the cap each
    assert (parts[0][0], parts[-1][1]) == (start, end)
    assert all(a[1] == b[0] for a, b in itertools.pairwise(parts))
    assert all(lo < hi for lo, hi in parts)
    assert len(split((start, end))) == 2  # no total: halves
    assert len(split((start, end), 10**9, 10_000)) == MAX_PARTS
    assert len(split((start, start + timedelta(milliseconds=3)), 10**9, 10_000)) == 3
    whole = split(WHOLE)
    assert (whole[0], whole[1][0], whole[-1][1]) == ((None, EPOCH), EPOCH, None)
    assert len(whole) == 3
    sized = split(WHOLE, 40_000, 10_000)
    assert len(sized) == 2 + 8
    assert all(a[1] == b[0] for a, b in itertools.pairwise(sized))


def _dated(moments: list[datetime]) -> list[dict[str, Any]]:
    return [{"meta": {"lastUpdated": m.isoformat(timespec="milliseconds")}} for m in moments]


def test_a_page_samples_its_window_unless_it_is_ordered_by_date() -> None:
    start = datetime(2024, 1, 1, tzinfo=UTC)
    moments = [start + timedelta(minutes=i) for i in range(40)]
    shuffled = random.Random(3).sample(moments, len(moments))
    assert sample(_dated(shuffled)) == tuple(shuffled)
    assert sample(_dated(moments)) == ()  # ascending: the first results of the window, not a sample
    assert sample(_dated(moments[::-1])) == ()  # descending
    with_ties = sorted(moments + moments)  # ascending with ties: still no descent
    assert sample(_dated(with_ties)) == ()
    assert sample(_dated([start] * 40)) == ()  # one date: nothing to cut at
    assert sample([*_dated(shuffled), {"id": "no-meta"}]) == ()
    assert sample([*_dated(shuffled), {"meta": {"lastUpdated": "2024-01-01T00:00:00"}}]) == ()  # no zone
    assert sample([*_dated(shuffled), {"meta": {"lastUpdated": "yesterday"}}]) == ()


def test_windows_are_cut_at_the_quantiles_of_a_sample() -> None:
    """Dates crowded into one burst hour of a seven-year span: equal spans of time leave most windows empty
    and one holding nearly everything; cut at a sample's quantiles, every window holds a fair share."""
    rng = random.Random(5)
    start, end = datetime(2019, 1, 1, tzinfo=UTC), datetime(2026, 1, 1, tzinfo=UTC)
    burst = datetime(2025, 6, 1, tzinfo=UTC)
    dates = [
        burst + timedelta(seconds=rng.randrange(3600))
        if rng.random() < 0.8
        else start + timedelta(seconds=rng.randrange(int((end - start).total_seconds())))
        for _ in range(4_000)
    ]

    def held(parts: list[tuple[datetime, datetime]]) -> list[int]:
        return [sum(lo <= d < hi for d in dates) for lo, hi in parts]

    even = split((start, end), 4_000, 10_000, 500)
    cut = split((start, end), 4_000, 10_000, 500, tuple(rng.sample(dates, 200)))
    for parts in (even, cut):
        assert len(parts) == 8
        assert (parts[0][0], parts[-1][1]) == (start, end)
        assert all(a[1] == b[0] and a[0] < a[1] for a, b in itertools.pairwise(parts))
        assert sum(held(parts)) == 4_000
    assert max(held(even)) > 3_000
    assert max(held(cut)) < 2 * 500
    assert min(held(cut)) > 500 // 3
    # Too few dates for the parts asked: equal spans of time, as without a sample.
    assert split((start, end), 4_000, 10_000, 500, tuple(dates[:15])) == even


def test_only_parts_cut_at_a_sample_and_within_max_parts_may_skip_their_probes() -> None:
    rng = random.Random(9)
    start = datetime(2024, 1, 1, tzinfo=UTC)
    dates = tuple(start + timedelta(seconds=rng.randrange(10**6)) for _ in range(200))
    parts, sized = sub_windows(WHOLE, 10_000, "first-page", 12_000, 750, dates)
    assert sized
    assert len(parts) == 2 + 16
    assert (parts[0], parts[-1][1]) == ((None, EPOCH), None)
    assert all(a[1] == b[0] for a, b in itertools.pairwise(parts))
    assert sub_windows(WHOLE, 10_000, "first-page", 12_000, 750)[1] is False  # no sample
    # A million results in at most MAX_PARTS parts: each holds more than `per_part`, its total is asked first.
    many, sized = sub_windows(WHOLE, 10_000, "first-page", 1_000_000, 5_000, dates)
    assert len(many) == 2 + MAX_PARTS
    assert not sized
