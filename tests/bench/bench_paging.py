"""`make bench`: pages/s of `FhirClient.search` against the simulator, as a ratio to a bare httpx loop.

Both walk the same pages of the same search over real HTTP on 127.0.0.1, in the same run, at 0 and 50 ms of
simulated latency (issue 4 §8). Not collected by pytest (no `test_` prefix): speed is measured here, never
asserted in tests.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time

import httpx
import orjson

from bridge.fhir.client import FhirClient
from bridge.model import FhirQuery
from bridge.simulator.dataset import generate_dataset
from bridge.simulator.national_api import SimulatorConfig, create_simulator_app, mount_simulator
from tests.server import running_server

QUERY = FhirQuery("HealthcareService", ())


async def bare_loop(http: httpx.AsyncClient, base: str, page_size: int) -> int:
    """The floor: one keep-alive httpx client following next links, each page parsed with orjson."""
    pages = 0
    url: str | None = f"{base}/HealthcareService?_count={page_size}"
    while url is not None:
        bundle = orjson.loads((await http.get(url)).content)
        pages += 1
        url = next((link["url"] for link in bundle.get("link", ()) if link["relation"] == "next"), None)
    return pages


async def timed(walk: str, base: str, page_size: int) -> tuple[int, float]:
    """Pages walked and seconds taken; the client (TLS context, pool) is built outside the timed part."""
    if walk == "bare":
        async with httpx.AsyncClient(timeout=60) as http:
            started = time.perf_counter()
            pages = await bare_loop(http, base, page_size)
            return pages, time.perf_counter() - started
    async with FhirClient(base, headers={}, page_size=page_size) as client:
        started = time.perf_counter()
        pages = (await client.search(QUERY)).pages
        return pages, time.perf_counter() - started


def measure(base: str, page_size: int, rounds: int) -> tuple[float, float, float, int]:
    """Median pages/s of the bare loop and of the client, and the median of the per-round ratios.

    Rounds interleave the two walks, in alternating order, so that load changes on the machine hit both
    alike; each walk runs in its own event loop with a new client, so each opens its own connection.
    """
    rates: dict[str, list[float]] = {"bare": [], "client": []}
    pages = 0
    for round_ in range(rounds):
        for walk in ("bare", "client") if round_ % 2 == 0 else ("client", "bare"):
            pages, seconds = asyncio.run(timed(walk, base, page_size))
            rates[walk].append(pages / seconds)
    ratios = [o / b for o, b in zip(rates["client"], rates["bare"], strict=True)]
    return (
        statistics.median(rates["bare"]),
        statistics.median(rates["client"]),
        statistics.median(ratios),
        pages,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--scale", type=int, default=2000, help="offers in the dataset")
    parser.add_argument("--page-size", type=int, default=50)
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args()
    dataset = generate_dataset(args.scale, 1)
    print(f"scale {args.scale}, _count {args.page_size}, medians of {args.rounds} rounds, 127.0.0.1 HTTP/1.1")
    print("ratio = FhirClient pages/s ÷ bare httpx pages/s, same pages, same run (1.00 = no overhead)")
    print(f"{'latency':>8} {'pages':>6} {'bare httpx p/s':>15} {'FhirClient p/s':>15} {'ratio':>6}")
    for latency_ms in (0.0, 50.0):
        config = SimulatorConfig(scale=args.scale, latency_ms=latency_ms)
        with running_server(mount_simulator(create_simulator_app(config, dataset))) as root:
            figures = measure(f"{root}/ws-diffusion-fhir", args.page_size, args.rounds)
        bare, ours, ratio, pages = figures
        print(f"{latency_ms:>6.0f}ms {pages:>6} {bare:>15.1f} {ours:>15.1f} {ratio:>6.2f}")


if __name__ == "__main__":
    main()
