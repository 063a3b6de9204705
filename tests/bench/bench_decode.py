"""`python -m tests.bench.bench_decode`: decoding real simulator search pages with orjson (what the bridge
uses) against msgspec, untyped and typed, then untyped on the pages of a split search, in the same run
(issue 13 item 6, upstream side).

Benchmark support (tests/bench/, never collected by pytest). msgspec is a dev dependency (benchmarks only),
not one of the bridge's: without it the benchmark says so and stops. Pages: the extraction's offer search
("offre complète" includes, `_count` 200) of an in-process simulator, whole (~1.7 MB a page: an
organisation's offers are neighbours and share their includes), and cut into `_lastUpdated` windows as a
search over the result cap is (each page's offers from many organisations, so more includes: ~3.3 MB a page
at 12 000 offers). Each decoder runs over the same bytes, rounds interleaved, and must give the same value.
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
import orjson

from bridge import gc_control
from bridge.fhir import cap_windows
from bridge.fhir.exchange import decode
from bridge.pipeline.extraction import extraction_request
from bridge.shipped import shipped_dir
from bridge.simulator.dataset import generate_dataset
from bridge.simulator.national_api import SimulatorConfig, create_simulator_app
from bridge.translate.loaders.directory import load_mappings
from tests.bench.suite import MSGSPEC_NAMES
from tests.bench.targets import Figure, Goal, median_ratio, print_figures

try:
    import msgspec
except ImportError:  # not a project dependency: measured, not adopted (docs/performance-journal.md)
    msgspec = None
else:

    class Entry(msgspec.Struct, omit_defaults=True):
        resource: dict[str, Any]
        fullUrl: str | None = None  # noqa: N815  # the FHIR element name
        search: dict[str, Any] | None = None

    class Bundle(msgspec.Struct, omit_defaults=True):
        resourceType: str  # noqa: N815
        type: str
        total: int | None = None
        link: list[dict[str, Any]] = []  # noqa: RUF012  # msgspec copies mutable defaults
        entry: list[Entry] = []  # noqa: RUF012


# Where orjson's document buffer (12 times the answer) passes glibc's 32 MiB ceiling for serving a block from
# the heap: each parse of a longer answer maps a fresh buffer and faults it in (docs/performance-journal.md).
ORJSON_MMAP_PAST = 32 * 1024 * 1024 // 12

# The windows the split search is cut into, about an eighth of the offers each, by `cap_windows` as the client
# cuts a search over the cap (at its first page's dates).
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
            matches = [e["resource"] for e in first["entry"] if e.get("search", {}).get("mode") == "match"]
            total = first["total"]
            for window in cap_windows.split(
                cap_windows.WHOLE, total, per_part=-(-total // WINDOWS), dates=cap_windows.sample(matches)
            ):
                if None not in window:  # before 1970 or after tomorrow: empty here, a page that holds nothing
                    await walk(http, [*cap_windows.windowed(plan.query, window).params, ("_count", "200")])

    asyncio.run(fetch())
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--scale", type=int, default=4000)
    parser.add_argument("--pages", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    if msgspec is None:
        raise SystemExit("msgspec is not installed (a dev dependency): make install")
    print_figures(decode_figures(args.scale, args.pages, args.rounds))


def decode_figures(scale: int, count: int, rounds: int) -> list[Figure]:
    """orjson against msgspec (untyped, typed) over `count` pages at `scale` offers, then untyped over `count`
    pages of the split search, as `Figure` rows."""
    assert msgspec is not None, "decode_figures needs msgspec"
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
        for name, figure in zip(("msgspec", "msgspec typed"), MSGSPEC_NAMES[:2], strict=True)
    ]
    return [*figures, _split_search_figure(scale, count, rounds, untyped.decode, command)]


def _split_search_figure(
    scale: int, count: int, rounds: int, untyped: Callable[[bytes], Any], command: str
) -> Figure:
    """msgspec (untyped) against the bridge's `decode` (orjson, the collector paused; msgspec under the same
    pause) over the pages of the split search, where orjson's buffer is mapped afresh at every parse."""
    bodies = pages(scale, count, windowed=True)
    gc.collect()
    for body in bodies:
        assert untyped(body) == decode(body)

    def paused(body: bytes) -> Any:
        with gc_control.batch():
            return untyped(body)

    past = sum(len(body) > ORJSON_MMAP_PAST for body in bodies)
    size = sum(len(b) for b in bodies)
    seconds = _timed({"orjson": decode, "msgspec": paused}, bodies, rounds)
    print(
        f"split search: {len(bodies)} pages, {size / 1e6:.1f} MB, {past} past {ORJSON_MMAP_PAST / 1e6:.1f} MB"
    )
    return Figure(
        name=MSGSPEC_NAMES[2],
        value=median_ratio(seconds["orjson"], seconds["msgspec"]),
        unit="× orjson",
        goal=Goal.AT_LEAST,
        target=1.2,
        baseline="the bridge's decode (orjson) of the same pages, the collector paused for both",
        detail=(
            f"{statistics.median(seconds['msgspec']) * 1000:.0f} ms vs "
            f"{statistics.median(seconds['orjson']) * 1000:.0f} ms for {size / 1e6:.1f} MB, "
            f"{len(bodies)} pages of {WINDOWS} `_lastUpdated` windows, {past} past "
            f"{ORJSON_MMAP_PAST / 1e6:.1f} MB; the object freed in each timing"
        ),
        command=command,
    )


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
