"""`python -m tests.bench.bench_decode`: decoding real simulator search pages with orjson against msgspec,
untyped and typed, and the bridge's own `decode` against orjson on the pages of a split search, in the same
run (issue 13 item 6, upstream side).

Benchmark support (tests/bench/, never collected by pytest). Pages: the extraction's offer search ("offre
complète" includes, `_count` 200) of an in-process simulator, whole (~1.7 MB a page: an organisation's
offers are neighbours and share their includes), and cut into `_lastUpdated` windows as a search over the
result cap is (each page's offers from many organisations, so more includes: ~3.3 MB a page at 12 000
offers). Each decoder runs over the same bytes, rounds interleaved, and must give the same Python value.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import statistics
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import urlencode

import httpx
import msgspec
import orjson

from bridge import gc_control
from bridge.fhir.exchange import LARGE_ANSWER, decode
from bridge.pipeline.extraction import extraction_request
from bridge.shipped import shipped_dir
from bridge.simulator.dataset import generate_dataset
from bridge.simulator.national_api import SimulatorConfig, create_simulator_app
from bridge.translate.loaders.directory import load_mappings
from tests.bench.targets import Figure, Goal, median_ratio, print_figures


class Entry(msgspec.Struct, omit_defaults=True):
    resource: dict[str, Any]
    fullUrl: str | None = None  # noqa: N815  # the FHIR element name
    search: dict[str, Any] | None = None


class Bundle(msgspec.Struct, omit_defaults=True):
    resourceType: str  # noqa: N815
    type: str
    total: int | None = None
    link: list[dict[str, Any]] = []  # msgspec copies mutable defaults
    entry: list[Entry] = []


# The windows the split search is cut into, about an eighth of the offers each: the first page's dates cut at
# their quantiles, as `cap_windows` cuts a search over the cap.
WINDOWS = 8


def pages(scale: int, count: int, *, windowed: bool = False) -> list[bytes]:
    """`count` pages of the national offer search, as the simulator serves them: the whole search, or
    (`windowed`) its `_lastUpdated` windows one after the other."""
    plan = extraction_request(load_mappings(shipped_dir("mappings")), None, ()).plan
    assert plan is not None
    config = SimulatorConfig(scale=scale, render_cache=scale * 10)
    app = create_simulator_app(config, generate_dataset(scale, 1))
    search = [*plan.query.params, ("_count", "200")]
    found: list[bytes] = []

    async def walk(http: httpx.AsyncClient, params: list[tuple[str, str]]) -> None:
        url: str | None = "/HealthcareService?" + urlencode(params)
        while url is not None and len(found) < count:
            body = (await http.get(url)).content
            found.append(body)
            links = orjson.loads(body).get("link") or ()
            url = next((link["url"] for link in links if link["relation"] == "next"), None)

    async def fetch() -> None:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://sim") as http:
            if not windowed:
                await walk(http, search)
                return
            first = orjson.loads((await http.get("/HealthcareService?" + urlencode(search))).content)
            dates = sorted(
                e["resource"]["meta"]["lastUpdated"]
                for e in first.get("entry") or ()
                if e.get("search", {}).get("mode") == "match"
            )
            cuts = [dates[len(dates) * i // WINDOWS] for i in range(1, WINDOWS)]
            for start, end in zip(["1970-01-01T00:00:00Z", *cuts], [*cuts, None], strict=True):
                window = [("_lastUpdated", f"ge{start}")] + ([("_lastUpdated", f"lt{end}")] if end else [])
                await walk(http, [*search, *window])

    asyncio.run(fetch())
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--scale", type=int, default=4000)
    parser.add_argument("--pages", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    print_figures(decode_figures(args.scale, args.pages, args.rounds))


def decode_figures(scale: int, count: int, rounds: int) -> list[Figure]:
    """orjson against msgspec (untyped, typed) over `count` pages at `scale` offers, then the bridge's
    `decode` against orjson over `count` pages of the split search, as `Figure` rows."""
    untyped = msgspec.json.Decoder()
    typed = msgspec.json.Decoder(Bundle)
    decoders: dict[str, Callable[[bytes], Any]] = {
        "orjson": orjson.loads,
        "msgspec": untyped.decode,
        "msgspec typed": typed.decode,
    }
    bodies = pages(scale, count)
    gc.collect()  # the simulator and its dataset are gone: the heap is the decoders' alone
    size = sum(len(b) for b in bodies)
    for body in bodies[:1]:
        assert untyped.decode(body) == orjson.loads(body)
        resources = [e["resource"] for e in orjson.loads(body)["entry"]]
        assert [e.resource for e in typed.decode(body).entry] == resources
    seconds = _timed(decoders, bodies, rounds)
    command = f"python -m tests.bench.bench_decode --scale {scale} --pages {count}"
    print(f"{len(bodies)} pages, {size / 1e6:.1f} MB, medians of {rounds} interleaved rounds")
    figures = [
        Figure(
            name=figure,
            value=median_ratio(seconds["orjson"], seconds[name]),
            unit="× orjson",
            goal=Goal.AT_LEAST,
            target=1.2,
            baseline="orjson.loads of the same pages",
            detail=(
                f"{statistics.median(seconds[name]) * 1000:.0f} ms vs "
                f"{statistics.median(seconds['orjson']) * 1000:.0f} ms for {size / 1e6:.1f} MB"
            ),
            command=command,
        )
        for name, figure in zip(("msgspec", "msgspec typed"), DECODE_FIGURES[:2], strict=True)
    ]
    return [*figures, _split_search_figure(scale, count, rounds, command)]


def _split_search_figure(scale: int, count: int, rounds: int, command: str) -> Figure:
    """The bridge's `decode` (msgspec past LARGE_ANSWER bytes, orjson below) against orjson alone, over the
    pages of the split search (item 6: adopted because it wins there)."""
    bodies = pages(scale, count, windowed=True)
    gc.collect()
    for body in bodies:
        assert decode(body) == orjson.loads(body)
    large = sum(len(body) > LARGE_ANSWER for body in bodies)
    size = sum(len(b) for b in bodies)
    seconds = _timed({"orjson": _orjson_paused, "bridge": decode}, bodies, rounds)
    print(f"split search: {len(bodies)} pages, {size / 1e6:.1f} MB, {large} past {LARGE_ANSWER / 1e6:.1f} MB")
    return Figure(
        name=SPLIT_SEARCH_FIGURE,
        value=median_ratio(seconds["orjson"], seconds["bridge"]),
        unit="× orjson",
        goal=Goal.AT_LEAST,
        target=1.0,
        baseline="orjson.loads of the same pages, the collector paused as `decode` pauses it",
        detail=(
            f"{statistics.median(seconds['bridge']) * 1000:.0f} ms vs "
            f"{statistics.median(seconds['orjson']) * 1000:.0f} ms for {size / 1e6:.1f} MB, "
            f"{len(bodies)} pages of {WINDOWS} `_lastUpdated` windows, {large} past "
            f"{LARGE_ANSWER / 1e6:.1f} MB (parsed by msgspec); the object freed in each timing"
        ),
        command=command,
    )


SPLIT_SEARCH_FIGURE = "the bridge's decode of a split search's pages (msgspec past 2.8 MB; issue 13 item 6)"
# Every row `decode_figures` gives, in its order (tests/test_bench_suite.py).
DECODE_FIGURES = (
    *(f"{name} decoding of FHIR pages (issue 13 item 6)" for name in ("msgspec", "msgspec typed")),
    SPLIT_SEARCH_FIGURE,
)


def _orjson_paused(body: bytes) -> Any:
    """What `decode` was before msgspec: orjson alone, under the same pause of the collector."""
    with gc_control.batch():
        return orjson.loads(body)


def _timed(
    decoders: dict[str, Callable[[bytes], Any]], bodies: list[bytes], rounds: int
) -> dict[str, list[float]]:
    """Seconds per round for each decoder over every body (each result freed at once), rounds interleaved."""
    seconds: dict[str, list[float]] = {name: [] for name in decoders}
    for round_ in range(rounds):
        order = list(decoders) if round_ % 2 == 0 else list(reversed(decoders))
        for name in order:
            gc.collect()
            started = time.perf_counter()
            for body in bodies:
                decoders[name](body)
            seconds[name].append(time.perf_counter() - started)
    return seconds


if __name__ == "__main__":
    main()
