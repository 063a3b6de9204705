"""`python -m tests.bench.bench_decode`: decoding real simulator search pages with orjson (what the bridge
uses) against msgspec, untyped and typed, in the same run (issue 13 item 6, upstream side).

Benchmark support (tests/bench/, never collected by pytest). msgspec is a dev dependency (benchmarks only),
not one of the bridge's: without it the benchmark says so and stops. Pages:
the extraction's offer search ("offre complète" includes, `_count` 200) of an in-process simulator; each
decoder runs over the same bytes, rounds interleaved, and must give the same Python value.
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

from bridge.pipeline.extraction import extraction_request
from bridge.shipped import shipped_dir
from bridge.simulator.dataset import generate_dataset
from bridge.simulator.national_api import SimulatorConfig, create_simulator_app
from bridge.translate.loaders.directory import load_mappings
from tests.bench.targets import Figure, Goal, median_ratio, print_figures

try:
    import msgspec
except ImportError:  # not a project dependency: measured, not adopted (README, Performance)
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


def pages(scale: int, count: int) -> list[bytes]:
    """`count` pages of the national offer search, as the simulator serves them."""
    plan = extraction_request(load_mappings(shipped_dir("mappings")), None, ()).plan
    assert plan is not None
    config = SimulatorConfig(scale=scale, render_cache=scale * 10)
    app = create_simulator_app(config, generate_dataset(scale, 1))
    found: list[bytes] = []

    async def fetch() -> None:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://sim") as http:
            url: str | None = "/HealthcareService?" + urlencode([*plan.query.params, ("_count", "200")])
            while url is not None and len(found) < count:
                body = (await http.get(url)).content
                found.append(body)
                links = orjson.loads(body).get("link") or ()
                url = next((link["url"] for link in links if link["relation"] == "next"), None)

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
    """orjson against msgspec (untyped, typed) over `count` pages at `scale` offers, as `Figure` rows."""
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
    seconds: dict[str, list[float]] = {name: [] for name in decoders}
    for round_ in range(rounds):
        order = list(decoders) if round_ % 2 == 0 else list(reversed(decoders))
        for name in order:
            gc.collect()
            started = time.perf_counter()
            for body in bodies:
                decoders[name](body)
            seconds[name].append(time.perf_counter() - started)
    command = f"python -m tests.bench.bench_decode --scale {scale} --pages {count}"
    print(f"{len(bodies)} pages, {size / 1e6:.1f} MB, medians of {rounds} interleaved rounds")
    return [
        Figure(
            name=f"{name} decoding of FHIR pages (issue 13 item 6)",
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
        for name in ("msgspec", "msgspec typed")
    ]


if __name__ == "__main__":
    main()
