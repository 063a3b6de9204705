"""The timeline of one `$export` collection: every request's send, answer headers and last byte, each file's
decode, with the client's and the simulator's CPU at each step (issue 13 item 3: where the wall time goes).

Benchmark support (tests/bench/, never collected by pytest). Starts `ror-bridge simulator --open --scale N
--latency-ms L --render-cache …` as bench_collect does, then collects the extraction's `$export` through
`FhirClient.export` `--rounds` times, printing one line per event (milliseconds since the kick-off) and a
summary per phase: kick-off, polling (until the manifest), downloads (manifest to the last file handed out).
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from bridge.fhir import bulk_export
from bridge.fhir.bulk_export import ExportStats
from bridge.fhir.client import FhirClient
from tests.bench.bench_collect import _plan
from tests.bench.procs import PYTHON_BRIDGE, cpu_seconds, free_port, running


@dataclass
class Timeline:
    """Events as (seconds since the start, client CPU, simulator CPU, what)."""

    simulator_pid: int
    started: float = field(default_factory=time.perf_counter)
    client_cpu0: float = field(default_factory=time.process_time)
    simulator_cpu0: float = 0.0
    events: list[tuple[float, float, float, str]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.restart()

    def restart(self) -> None:
        """The clock and both CPU counters start now; earlier events are dropped."""
        self.started, self.client_cpu0 = time.perf_counter(), time.process_time()
        self.simulator_cpu0 = cpu_seconds(self.simulator_pid)
        self.events.clear()

    def mark(self, what: str) -> None:
        self.events.append(
            (
                time.perf_counter() - self.started,
                time.process_time() - self.client_cpu0,
                cpu_seconds(self.simulator_pid) - self.simulator_cpu0,
                what,
            )
        )

    def at(self, prefix: str) -> tuple[float, float, float]:
        """The first event whose text starts with `prefix`: (seconds, client CPU, simulator CPU)."""
        for seconds, client, simulator, what in self.events:
            if what.startswith(prefix):
                return seconds, client, simulator
        raise LookupError(prefix)


def _kind(url: str, method: str = "GET") -> str:
    if "/$export-poll-status" in url:
        return "delete" if method == "DELETE" else "poll"
    if "/$export" in url:
        return "kick-off"
    if "/Binary/" in url:
        return "file " + url.rsplit("/", 1)[1][:8]
    return url


def _instrument(timeline: Timeline) -> Callable[[], None]:
    """Wrap the module's download and decode to mark their ends; returns the undo."""
    download, resources = bulk_export._download, bulk_export._file_resources

    async def timed_download(client: Any, url: str, deadline: Any) -> tuple[bytes, bool]:
        body = await download(client, url, deadline)
        timeline.mark(f"{_kind(url)} last byte ({len(body[0]) / 1e6:.2f} MB)")
        return body

    def timed_resources(body: bytes, ndjson: bool, url: str) -> list[Any]:
        timeline.mark(f"{_kind(url)} decode start")
        found = resources(body, ndjson, url)
        timeline.mark(f"{_kind(url)} decode end ({len(found)} resources)")
        return found

    bulk_export._download = timed_download
    bulk_export._file_resources = timed_resources

    def undo() -> None:
        bulk_export._download = download
        bulk_export._file_resources = resources

    return undo


async def one_export(base: str, simulator_pid: int, downloads: int, poll_interval_s: float) -> Timeline:
    timeline = Timeline(simulator_pid)

    async def on_request(request: httpx.Request) -> None:
        timeline.mark(f"{_kind(str(request.url), request.method)} sent")

    async def on_response(response: httpx.Response) -> None:
        timeline.mark(
            f"{_kind(str(response.request.url), response.request.method)} headers {response.status_code}"
        )

    undo = _instrument(timeline)
    try:
        async with FhirClient(
            base, headers={}, concurrency=downloads, export_downloads=downloads, deadline_s=3600
        ) as client:
            client.add_event_hooks(on_request, on_response)
            timeline.restart()  # the clock starts at the kick-off
            stats = ExportStats()
            resources = client.export(_plan().export, poll_interval_s=poll_interval_s, stats=stats)
            count = 0
            async for _ in resources:  # read to its end: the job is deleted before the last item returns
                count += 1
            timeline.mark(f"done: {count} resources, {stats.files} files, {stats.polls} polls")
    finally:
        undo()
    return timeline


def summary(timeline: Timeline) -> str:
    """Wall, client CPU and simulator CPU per phase."""
    manifest = next(e for e in timeline.events if e[3].startswith("poll headers 200"))
    first_poll = timeline.at("poll sent")
    end = timeline.events[-1]
    phases = [
        ("kick-off", (0.0, 0.0, 0.0), first_poll),
        ("polling", first_poll, manifest[:3]),
        ("downloads", manifest[:3], end[:3]),
    ]
    lines = []
    for name, start, stop in phases:
        lines.append(
            f"  {name:>9}: {stop[0] - start[0]:6.3f} s wall, client CPU {stop[1] - start[1]:6.3f} s, "
            f"simulator CPU {stop[2] - start[2]:6.3f} s"
        )
    lines.append(
        f"  {'total':>9}: {end[0]:6.3f} s wall, client CPU {end[1]:6.3f} s, simulator CPU {end[2]:6.3f} s"
    )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--scale", type=int, default=12_000)
    parser.add_argument("--latency-ms", type=float, default=100.0)
    parser.add_argument("--downloads", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--poll-interval-s", type=float, default=0.2)
    parser.add_argument("--quiet", action="store_true", help="the per-phase summary only")
    args = parser.parse_args()
    port = free_port()
    base = f"http://127.0.0.1:{port}/ws-diffusion-fhir"
    command = [
        *PYTHON_BRIDGE,
        "simulator",
        "--open",
        "--scale",
        str(args.scale),
        "--port",
        str(port),
        "--latency-ms",
        str(args.latency_ms),
        "--render-cache",
        str(args.scale * 10),
    ]
    with (
        tempfile.TemporaryDirectory() as work,
        running(command, f"{base}/metadata", log=Path(work) / "simulator.log") as simulator,
    ):
        _plan()
        for round_ in range(args.rounds):
            timeline = asyncio.run(one_export(base, simulator.pid, args.downloads, args.poll_interval_s))
            print(f"round {round_}:")
            if not args.quiet:
                for seconds, client, sim, what in timeline.events:
                    print(
                        f"  {seconds * 1000:8.1f} ms  client {client:6.3f} s  simulator {sim:6.3f} s  {what}"
                    )
            print(summary(timeline), flush=True)


if __name__ == "__main__":
    main()
