"""`make bench-collect`: a national collection through `FhirClient` — partitioned searches and the `$export`
source — each as a speed-up over a sequential `next`-link walk of the same searches, in the same run.

Benchmark support (tests/bench/, never collected by pytest; issue 13 item 3). Starts `ror-bridge simulator
--open --scale N --latency-ms L` as its own process on 127.0.0.1, then per round: (1) the extraction's offer
search (the "offre complète" include set) walked by `FhirClient.iter_pages_unordered`, which splits it into
`_lastUpdated` windows under the 10 000-result cap and walks them concurrently; every search it sends (first
pages, probes) is recorded; (2) the same searches walked one request at a time by a bare httpx loop following
next links, each page parsed with orjson (the baseline); (3) the same offer as `$export` through
`FhirClient.export` (kick-off, polls, every file). Each source must deliver the same resources (checked).
The simulator keeps every resource serialised (`--render-cache`, built at start) unless told otherwise, so
that its own Python building resources on one core is not what is measured: a real server answers
concurrent requests in parallel.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import statistics
import sys
import tempfile
import time
from collections.abc import Coroutine
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from bridge import gc_control
from bridge.config import Settings
from bridge.fhir.bulk_export import ExportStats
from bridge.fhir.client import PAUSED_PAGES, FhirClient
from bridge.fhir.searchset import Repeats
from bridge.pipeline.extraction import ExtractionPlan, extraction_request
from bridge.shipped import shipped_dir
from bridge.translate.loaders.directory import load_mappings
from tests.bench.procs import PYTHON_BRIDGE, cpu_seconds, free_port, running
from tests.bench.targets import Figure, Goal, median_ratio, print_figures

TARGET = 4.0
PAGING_MARK = "_getpages="


@dataclass
class Run:
    """One collection: seconds, requests sent, pages or files, and the distinct resources received."""

    seconds: float
    requests: int
    pages: int
    keys: set[str]
    client_cpu_s: float = 0.0
    simulator_cpu_s: float = 0.0


def _key(resource: dict[str, object]) -> str:
    return f"{resource['resourceType']}/{resource['id']}"


@functools.cache
def _plan() -> ExtractionPlan:
    """The extraction's plan (its offer search and `$export`), the tables loaded once: loading them is not
    part of a collection's CPU (measured from the first round on, `_measured`)."""
    plan = extraction_request(load_mappings(shipped_dir("mappings")), None, ()).plan
    assert plan is not None
    return plan


def _client(base: str, concurrency: int, page_size: int) -> FhirClient:
    return FhirClient(
        base,
        headers={},
        page_size=page_size,
        concurrency=concurrency,
        export_downloads=concurrency,
        deadline_s=3600,
        timeout_s=120,
    )


async def partitioned(base: str, concurrency: int, page_size: int, searches: list[str]) -> Run:
    """The offer search walked by the client; `searches` gets every search URL it sent (not next links)."""
    query = _plan()
    requests = 0

    async def on_request(request: httpx.Request) -> None:
        nonlocal requests
        requests += 1
        if PAGING_MARK not in str(request.url):
            searches.append(str(request.url))

    async def on_response(_: httpx.Response) -> None:
        return None

    keys: set[str] = set()
    pages = 0
    held: set[str] = set()  # the searches (windows) whose first page held resources
    async with _client(base, concurrency, page_size) as client:
        client.add_event_hooks(on_request, on_response)
        started = time.perf_counter()
        async for page in client.iter_pages_unordered([query.query]):
            pages += 1
            keys.update(_key(r) for r in (*page.matches, *page.includes))
            held.add(str(httpx.URL(page.url)))
        run = Run(time.perf_counter() - started, requests, pages, keys)
    # A window found empty cost the walk a request, as a probe did: the baseline knows better (`sequential`).
    searches[:] = [url for url in searches if "_lastUpdated" not in url or url in held]
    return run


async def sequential(searches: list[str]) -> Run:
    """The baseline: each search, then its next links, one request at a time, each page parsed as the client
    does (`searchset.Repeats`: the includes already handed out left out, the rest by orjson, the collector
    paused while parsing and over spans of pages). The client's `_count=0` total
    probes and the windows it found empty are left out: the baseline walks only the windows that hold
    results, as a sequential walker that knew them would (it still pays the truncated first page)."""
    keys: set[str] = set()
    requests = pages = 0
    cap = Settings().upstream_max_results  # read once: settings built per page cost the baseline ~5 ms a page
    spans = gc_control.Spans(PAUSED_PAGES)  # the collector paused over spans of pages, as the client does
    repeats = Repeats()  # the includes handed out, left out of later pages, as the client does
    async with httpx.AsyncClient(timeout=120) as http:
        started = time.perf_counter()
        for first in searches:
            if "_count=0" in first:
                continue
            url: str | None = first
            while url is not None:
                spans.step()
                page = repeats.decode((await http.get(url)).content, url)
                requests += 1
                if isinstance(page.total, int) and page.total >= cap:
                    break  # a truncated probe: the client split it into windows, walked on their own
                pages += 1
                repeats.remember(page)
                keys.update(_key(r) for r in (*page.matches, *page.includes))
                url = page.next_link
        spans.close()
        return Run(time.perf_counter() - started, requests, pages, keys)


async def exported(base: str, concurrency: int, page_size: int) -> Run:
    """The same offer as `$export`: kick-off, polls, every file, the job deleted."""
    plan = _plan()
    requests = 0

    async def on_request(_: httpx.Request) -> None:
        nonlocal requests
        requests += 1

    async def on_response(_: httpx.Response) -> None:
        return None

    keys: set[str] = set()
    async with _client(base, concurrency, page_size) as client:
        client.add_event_hooks(on_request, on_response)
        started = time.perf_counter()
        stats = ExportStats()
        resources = client.export(plan.export, poll_interval_s=0.2, stats=stats)
        async with contextlib.aclosing(resources):
            async for resource in resources:
                keys.add(_key(resource))
        return Run(time.perf_counter() - started, requests, stats.files, keys)


def _measured(simulator_pid: int, collection: Coroutine[Any, Any, Run]) -> Run:
    """Run one collection in its own event loop; its CPU seconds, this process's (`process_time`: every
    thread) and the simulator process's (/proc), are written into the returned `Run`."""
    _plan()
    client, simulator = time.process_time(), cpu_seconds(simulator_pid)
    run = asyncio.run(collection)
    run.client_cpu_s = time.process_time() - client
    run.simulator_cpu_s = cpu_seconds(simulator_pid) - simulator
    return run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--scale", type=int, default=40_000, help="offers in the simulator's dataset")
    parser.add_argument("--latency-ms", type=float, default=100.0, help="added to every upstream request")
    parser.add_argument("--rounds", type=int, default=1, help="rounds (medians of per-round ratios)")
    parser.add_argument("--concurrency", type=int, default=8, help="upstream requests in flight")
    parser.add_argument("--page-size", type=int, default=Settings().upstream_page_size)
    parser.add_argument(
        "--render-cache",
        type=int,
        default=-1,
        help="resources the simulator keeps serialised, built at start (default: all of them; 0: none)",
    )
    args = parser.parse_args()
    figures = collection_figures(
        args.scale, args.latency_ms, args.rounds, args.concurrency, args.page_size, args.render_cache
    )
    print_figures(figures)


def collection_figures(
    scale: int, latency_ms: float, rounds: int, concurrency: int, page_size: int, render_cache: int = -1
) -> list[Figure]:
    """The rounds against one simulator process, then each source's speed-up as a `Figure` row;
    `render_cache` < 0: the simulator keeps every resource serialised."""
    port = free_port()
    base = f"http://127.0.0.1:{port}/ws-diffusion-fhir"
    command = f"python -m tests.bench.bench_collect --scale {scale} --latency-ms {latency_ms:g}"
    simulator = [
        "simulator",
        "--open",
        "--scale",
        str(scale),
        "--port",
        str(port),
        "--latency-ms",
        str(latency_ms),
        "--render-cache",
        str(scale * 10 if render_cache < 0 else render_cache),
    ]
    runs: dict[str, list[Run]] = {"search": [], "sequential": [], "export": []}
    with tempfile.TemporaryDirectory() as work:
        started = time.perf_counter()
        with running(
            [*PYTHON_BRIDGE, *simulator], f"{base}/metadata", log=Path(work) / "simulator.log"
        ) as simulator_process:
            ready_s = time.perf_counter() - started
            print(f"simulator at {scale} offers ready in {ready_s:.1f} s", flush=True)
            for round_ in range(rounds):
                searches: list[str] = []
                search = _measured(simulator_process.pid, partitioned(base, concurrency, page_size, searches))
                baseline = _measured(simulator_process.pid, sequential(searches))
                export = _measured(simulator_process.pid, exported(base, concurrency, page_size))
                if not search.keys == baseline.keys == export.keys:
                    sys.exit(
                        f"round {round_}: the sources disagree: {len(search.keys)} resources by search, "
                        f"{len(baseline.keys)} sequentially, {len(export.keys)} by $export"
                    )
                for name, run in (("search", search), ("sequential", baseline), ("export", export)):
                    runs[name].append(run)
                    print(
                        f"round {round_} {name:>10}: {run.seconds:7.2f} s, {run.requests} requests, "
                        f"{run.pages} pages/files, {len(run.keys)} resources; CPU: client "
                        f"{run.client_cpu_s:.2f} s, simulator {run.simulator_cpu_s:.2f} s",
                        flush=True,
                    )
    sequential_s = [r.seconds for r in runs["sequential"]]
    setting = (
        f"{scale} offers, {latency_ms:g} ms per request, concurrency and $export downloads "
        f"{concurrency}, _count {page_size}, simulator render cache "
        f"{'all' if render_cache < 0 else render_cache}, {rounds} round(s)"
    )
    print(setting)
    return [
        Figure(
            name=f"collection by {name} (issue 13 item 3)",
            value=median_ratio(sequential_s, [r.seconds for r in runs[name]]),
            unit="×",
            goal=Goal.AT_LEAST,
            target=TARGET,
            baseline="sequential next-link walk of the same searches",
            detail=(
                f"{statistics.median(r.seconds for r in runs[name]):.1f} s vs "
                f"{statistics.median(sequential_s):.1f} s ({setting})"
            ),
            command=command,
        )
        for name in ("search", "export")
    ]


if __name__ == "__main__":
    main()
