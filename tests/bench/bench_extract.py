"""`make bench-extract`: the streamed extraction at national scale — the bridge's peak memory and the time
(issue 6 item 3: 100 000 and 1 000 000 offers in the same run; `--scales` runs others).

For each scale, starts `ror-bridge simulator --open --scale N` and `ror-bridge serve --upstream URL` as two
processes on 127.0.0.1, downloads `GET /extraction` to nowhere, and prints the bridge's peak RSS (VmHWM of its
process; and, sampled every 0.2 s, the largest sum of the RSS of the bridge and its child processes: the
mapping workers and multiprocessing's resource tracker; and of their PSS, which counts a page they share
once), the duration, the bytes and the entities per directory; then RSS(largest) / RSS(smallest).
CPU seconds (user + system, /proc/<pid>/stat, sampled with the memory) are the load-independent figures on a
shared machine: the bridge's own and its mapping workers' (issue 13 item 4: the bridge's part, download +
spool + map + write), split at the moment the bridge logs the offer spooled, and the simulator's apart (its
`$export` files are built as they are downloaded, inside the fetch phase). `--json` writes every figure.
`--floor` runs the bridge with a mapping that costs nothing (tests/bench/floor_serve.py): the data path's CPU.
Not collected by pytest (no `test_` prefix).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import resource
import signal
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from bridge.model import Directory
from tests.bench.procs import PYTHON_BRIDGE, TreeSampler, free_port, running, status_kib

DIRECTORIES = ("organization", "service", "facility", "provider")
# Each directory entry declares the namespace on itself (the writer writes standalone elements): nested
# references (facility/organizations/organization…) do not, so this marker counts entries only.
MARKERS = {name: f'<csd:{name} xmlns:csd="urn:ihe:iti:csd:2013"'.encode() for name in DIRECTORIES}
CARRY = max(len(marker) for marker in MARKERS.values())


# The directories' start tags (bridge/csd/writer.directory_start): when each arrives splits the write phase.
SECTIONS = {directory.value: f"<csd:{directory.value}>".encode() for directory in Directory}
SECTION_CARRY = max(len(tag) for tag in SECTIONS.values())


@dataclass
class Reading:
    """What a streamed CSD answer has delivered so far (kept when the transfer fails half-way): its first
    byte, bytes and entities per directory, when each directory started and the longest silence between two
    chunks (seconds after `began`)."""

    began: float
    first_byte_s: float | None = None
    size: int = 0
    counts: dict[str, int] = field(default_factory=lambda: dict.fromkeys(DIRECTORIES, 0))
    sections: dict[str, float] = field(default_factory=dict)
    last_s: float = 0.0
    longest_gap_s: float = 0.0
    longest_gap_from_s: float = 0.0
    _tail: bytes = b""

    def feed(self, chunk: bytes) -> None:
        now = time.monotonic() - self.began
        if self.first_byte_s is None:
            self.first_byte_s = now
        elif now - self.last_s > self.longest_gap_s:
            self.longest_gap_s, self.longest_gap_from_s = now - self.last_s, self.last_s
        self.last_s = now
        self.size += len(chunk)
        window = self._tail + chunk
        for name, marker in MARKERS.items():
            self.counts[name] += window.count(marker) - self._tail.count(marker)
        for name, tag in SECTIONS.items():
            if name not in self.sections and tag in window:
                self.sections[name] = now
        self._tail = window[-max(CARRY, SECTION_CARRY) :]


def consume(response: httpx.Response, reading: Reading) -> None:
    """Read a streamed CSD answer to the end into `reading`."""
    for chunk in response.iter_raw():
        reading.feed(chunk)


def run(
    scale: int,
    seed: int,
    source: str,
    region: str | None,
    workers: int | None,
    workdir: Path,
    read_timeout_s: float = 120,
    simulator_latency_ms: float = 0,
    floor: bool = False,
) -> dict[str, Any]:
    sim_port, bridge_port = free_port(), free_port()
    upstream = f"http://127.0.0.1:{sim_port}/ws-diffusion-fhir"
    started = time.monotonic()
    simulator = ["simulator", "--open", "--scale", str(scale), "--seed", str(seed), "--port", str(sim_port)]
    if simulator_latency_ms:
        simulator += ["--latency-ms", str(simulator_latency_ms)]
    sim_log = workdir / f"simulator-{scale}.log"
    with running([*PYTHON_BRIDGE, *simulator], f"{upstream}/metadata", log=sim_log) as sim:
        simulator_start_s = time.monotonic() - started
        env = {
            "BRIDGE_EXTRACTION_SOURCE": source,
            "BRIDGE_UPSTREAM_EXPORT_DEADLINE_S": "86400",
            "BRIDGE_LOG_LEVEL": "info",
        }
        if workers is not None:
            env["BRIDGE_MAPPING_WORKERS"] = str(workers)
        serve = ["serve", "--upstream", upstream, "--port", str(bridge_port)]
        bridge_url = f"http://127.0.0.1:{bridge_port}"
        log = workdir / f"bridge-{scale}.log"
        # `--floor`: the same bridge with a mapping that costs nothing (tests/bench/floor_serve.py)
        command = [sys.executable, "-m", "tests.bench.floor_serve"] if floor else list(PYTHON_BRIDGE)
        with running([*command, *serve], f"{bridge_url}/healthz", log=log, env=env) as bridge:
            path = "/extraction" + (f"/{region}" if region else "")
            load_start = os.getloadavg()[0]
            figures = measure(bridge.pid, read_timeout_s, "GET", bridge_url + path, simulator_pid=sim.pid)
            load_end = os.getloadavg()[0]
    # The bridge logs when the whole offer was received and spooled (extraction.LogEvent.SPOOLED).
    spooled = re.search(
        r"extraction-spooled .* in ([0-9.]+) s", (workdir / f"bridge-{scale}.log").read_text()
    )
    fetch_s = float(spooled.group(1)) if spooled else float("nan")
    samplers = figures.pop("_samplers")
    return {
        "scale": scale,
        "source": source,
        "floor": floor,
        "simulator_start_s": simulator_start_s,
        "fetch_s": fetch_s,
        "write_s": figures["duration_s"] - fetch_s,
        "load_average": [load_start, load_end],
        **figures,
        **split_cpu(samplers, figures["began"], fetch_s),
    }


def split_cpu(
    samplers: tuple[TreeSampler, TreeSampler | None], began: float, fetch_s: float
) -> dict[str, float]:
    """CPU seconds of the bridge (own, workers) and of the simulator before and after the offer was spooled
    (`fetch_s` after `began`): the fetch phase (download + spool) and the write phase (map + write)."""
    bridge, simulator = samplers
    own_fetch, workers_fetch = bridge.cpu_at(began + fetch_s)
    figures = {
        "bridge_fetch_cpu_s": own_fetch + workers_fetch,
        "bridge_write_cpu_s": bridge.own_cpu_s + bridge.descendants_cpu_s - own_fetch - workers_fetch,
    }
    if simulator is not None:
        sim_own, sim_children = simulator.cpu_at(began + fetch_s)
        figures["simulator_fetch_cpu_s"] = sim_own + sim_children
    return figures


INTERRUPTED = "interrupted (SIGINT)"


def measure(
    pid: int, read_timeout_s: float, method: str, url: str, simulator_pid: int | None = None, **request: Any
) -> dict[str, Any]:
    """One streamed answer of the bridge process `pid`, read to the end: its timing, size and entities, the
    bridge's memory (idle before, VmHWM after, and sampled with its child processes meanwhile) and the CPU
    seconds spent meanwhile by the bridge, its child processes, the simulator `simulator_pid` (when given)
    and this client."""
    rss_idle_kib = status_kib(pid, "VmRSS")
    sampler = TreeSampler(pid)
    watch: AbstractContextManager[TreeSampler | None] = (
        _sampling(TreeSampler(simulator_pid)) if simulator_pid is not None else nullcontext()
    )
    client_before = resource.getrusage(resource.RUSAGE_SELF)
    error = ""
    with watch as sim_sampler:
        sampler.start()
        began = time.monotonic()
        reading = Reading(began)
        try:
            with (
                httpx.Client(timeout=httpx.Timeout(read_timeout_s, connect=10)) as http,
                http.stream(method, url, **request) as response,
            ):
                if response.status_code != 200:
                    raise RuntimeError(f"HTTP {response.status_code}: {response.read()[:2000]!r}")
                consume(response, reading)
        except httpx.HTTPError as failure:  # the figures so far are kept, with the failure
            error = f"{type(failure).__name__} after {time.monotonic() - began:.0f} s: {failure}"
        except KeyboardInterrupt:  # SIGINT stops a long run and keeps its figures so far
            error = f"{INTERRUPTED} after {time.monotonic() - began:.0f} s"
        finally:
            duration_s = time.monotonic() - began
            peak_kib = status_kib(pid, "VmHWM")
            sampler.stop()
    client_after = resource.getrusage(resource.RUSAGE_SELF)
    client_cpu_s = (client_after.ru_utime - client_before.ru_utime) + (
        client_after.ru_stime - client_before.ru_stime
    )
    figures = {
        "began": began,
        "error": error,
        "first_byte_s": reading.first_byte_s or 0.0,
        "duration_s": duration_s,
        "bytes": reading.size,
        "entities": reading.counts,
        "sections": reading.sections,
        "longest_gap_s": reading.longest_gap_s,
        "longest_gap_from_s": reading.longest_gap_from_s,
        "last_chunk_s": reading.last_s,
        "rss_idle_mib": rss_idle_kib / 1024,
        "rss_peak_mib": peak_kib / 1024,
        "tree_peak_mib": sampler.peak_kib / 1024,
        "tree_peak_pss_mib": sampler.peak_pss_kib / 1024,
        "processes": sampler.most_processes,
        "processes_seen": sampler.processes_seen,
        "bridge_own_cpu_s": sampler.own_cpu_s,
        "bridge_workers_cpu_s": sampler.descendants_cpu_s,
        "bridge_cpu_s": sampler.own_cpu_s + sampler.descendants_cpu_s,
        "client_cpu_s": client_cpu_s,
        "_samplers": (sampler, sim_sampler),
    }
    if sim_sampler is not None:
        figures["simulator_cpu_s"] = sim_sampler.own_cpu_s + sim_sampler.descendants_cpu_s
        figures["simulator_peak_mib"] = sim_sampler.peak_kib / 1024
    return figures


@contextmanager
def _sampling(sampler: TreeSampler) -> Iterator[TreeSampler]:
    sampler.start()
    try:
        yield sampler
    finally:
        sampler.stop()


def offer_counts(text: str) -> list[int]:
    """`--scales`: comma-separated positive offer counts (`_` allowed as a thousands separator)."""
    try:
        counts = [int(part.replace("_", "")) for part in text.split(",") if part.strip()]
    except ValueError:
        counts = []
    if not counts or min(counts) < 1:
        raise argparse.ArgumentTypeError(f"expected offer counts such as 100000,1000000, got {text!r}")
    return counts


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument(
        "--scales", type=offer_counts, default="100000,1000000", help="comma-separated offer counts"
    )
    parser.add_argument("--source", default="auto", choices=("auto", "export", "search"))
    parser.add_argument("--region", help="a region code of mappings/regions.csv (default: national)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument(
        "--workers", type=int, help="BRIDGE_MAPPING_WORKERS of the bridge (default: the bridge's default)"
    )
    parser.add_argument(
        "--workdir",
        type=Path,
        help="keep the bridge's and the simulator's logs there (default: a temporary one)",
    )
    parser.add_argument("--json", type=Path, help="also write every figure to this file (JSON)")
    parser.add_argument(
        "--read-timeout",
        type=float,
        default=120,
        help="seconds without a byte of the answer before the download is given up (default 120)",
    )
    parser.add_argument(
        "--simulator-latency-ms",
        type=float,
        default=0,
        help="latency the simulator adds to every FHIR request (default 0; tests use it for a sure silence)",
    )
    parser.add_argument(
        "--floor",
        action="store_true",
        help="map nothing: each batch read, sent to the workers, parsed and freed, no entity written "
        "(tests/bench/floor_serve.py): the CPU of the data path alone",
    )
    args = parser.parse_args(argv)
    # A shell starts a background job with SIGINT ignored: take it back, so that `kill -INT` still stops a
    # long run with its figures so far.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    scales: list[int] = args.scales
    results = []
    with tempfile.TemporaryDirectory(prefix="bench-extract-") as temporary:
        work = args.workdir or Path(temporary)
        work.mkdir(parents=True, exist_ok=True)
        for scale in scales:
            print(f"extracting {scale} offers ({args.source}) …", file=sys.stderr, flush=True)
            figures = run(
                scale,
                args.seed,
                args.source,
                args.region,
                args.workers,
                work,
                args.read_timeout,
                args.simulator_latency_ms,
                args.floor,
            )
            results.append(figures)
            entities = figures["entities"]
            print(
                f"  {figures['duration_s']:.1f} s (first byte {figures['first_byte_s']:.1f} s, "
                f"offer fetched and spooled in {figures['fetch_s']:.1f} s), "
                f"{figures['bytes'] / 1e6:.1f} MB, {sum(entities.values())} entities, "
                f"bridge peak RSS {figures['rss_peak_mib']:.0f} MiB, with its "
                f"{figures['processes'] - 1} child processes {figures['tree_peak_mib']:.0f} MiB "
                f"(PSS {figures['tree_peak_pss_mib']:.0f} MiB); "
                f"CPU: bridge {figures['bridge_cpu_s']:.1f} s, simulator {figures['simulator_cpu_s']:.1f} s; "
                f"load average {figures['load_average'][0]:.1f} → {figures['load_average'][1]:.1f}",
                file=sys.stderr,
                flush=True,
            )
            if figures["error"]:
                print(f"  FAILED: {figures['error']}", file=sys.stderr, flush=True)
            if args.json is not None:  # after each scale: a long run's first figures survive its end
                args.json.write_text(json.dumps(results, indent=1) + "\n")
            if figures["error"].startswith(INTERRUPTED):
                break
    print(
        "| offers | source | duration | of which fetch + spool | first byte | MB | organizations | services "
        "| facilities | providers | bridge RSS idle | bridge peak RSS (VmHWM) "
        "| bridge + child processes peak RSS (sampled) | the same, PSS |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for f in results:
        e = f["entities"]
        counts = " | ".join(str(e[name]) for name in DIRECTORIES)
        print(
            f"| {f['scale']} | {f['source']} | {f['duration_s']:.0f} s | {f['fetch_s']:.0f} s "
            f"| {f['first_byte_s']:.1f} s "
            f"| {f['bytes'] / 1e6:.0f} | {counts} "
            f"| {f['rss_idle_mib']:.0f} MiB | {f['rss_peak_mib']:.0f} MiB "
            f"| {f['tree_peak_mib']:.0f} MiB ({f['processes'] - 1} children) "
            f"| {f['tree_peak_pss_mib']:.0f} MiB |"
        )
    print_cpu(results)
    print_sections(results)
    if len(results) > 1:
        small, large = results[0], results[-1]
        ratio = large["rss_peak_mib"] / small["rss_peak_mib"]
        tree = large["tree_peak_mib"] / small["tree_peak_mib"]
        tree_pss = large["tree_peak_pss_mib"] / small["tree_peak_pss_mib"]
        factor = large["scale"] / small["scale"]
        print(
            f"\nRSS({large['scale']}) / RSS({small['scale']}) = {ratio:.2f} (bridge), {tree:.2f} (bridge and "
            f"children; PSS {tree_pss:.2f}) for {factor:.0f}x the offers"
        )
    failed = [f"{f['scale']}: {f['error']}" for f in results if f["error"]]
    for failure in failed:
        print(f"\nFAILED at {failure}")
    return 1 if failed else 0


def print_sections(results: list[dict[str, Any]]) -> None:
    """Where the write phase went: when each directory's first byte arrived (seconds after the request), how
    long each took until the next one (or the end), and the longest silence between two chunks."""
    for f in results:
        sections = sorted(f["sections"].items(), key=lambda item: item[1])
        ends = [at for _, at in sections[1:]] + [f["last_chunk_s"]] * bool(sections)
        spans = ", ".join(
            f"{name} from {at:.0f} s for {end - at:.0f} s"
            for (name, at), end in zip(sections, ends, strict=True)
        )
        print(
            f"\n{f['scale']} offers, the directories: {spans or 'none started'}; last byte at "
            f"{f['last_chunk_s']:.0f} s; longest silence {f['longest_gap_s']:.0f} s from "
            f"{f['longest_gap_from_s']:.0f} s"
        )


def print_cpu(results: list[dict[str, Any]]) -> None:
    """The CPU table: wall time and CPU seconds per phase, the bridge apart from the simulator, and the
    bridge's part (issue 13 item 4) against its 600 s."""
    print(
        "\n| offers | load average (start → end) | wall: fetch + spool | wall: map + write | wall: total "
        "| bridge CPU: fetch + spool | bridge CPU: map + write | bridge CPU: own + workers = total "
        "| simulator CPU (of which in the fetch) | client CPU |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|")
    for f in results:
        start, end = f["load_average"]
        print(
            f"| {f['scale']} | {start:.1f} → {end:.1f} | {f['fetch_s']:.0f} s | {f['write_s']:.0f} s "
            f"| {f['duration_s']:.0f} s | {f['bridge_fetch_cpu_s']:.1f} s | {f['bridge_write_cpu_s']:.1f} s "
            f"| {f['bridge_own_cpu_s']:.1f} + {f['bridge_workers_cpu_s']:.1f} = {f['bridge_cpu_s']:.1f} s "
            f"| {f['simulator_cpu_s']:.1f} s ({f['simulator_fetch_cpu_s']:.1f} s) "
            f"| {f['client_cpu_s']:.1f} s |"
        )
    for f in results:
        # The target is set at one million offers; smaller scales say their figures only.
        verdict = ""
        part = "the bridge's part (download + spool + map + write"
        if f.get("floor"):  # no entity mapped: what the target would leave to the mapping, not a verdict
            part = "the data path's floor, nothing mapped (--floor: download + spool + read-back, parsed"
            if f["scale"] >= 1_000_000:
                left = 600 - f["bridge_cpu_s"]
                verdict = (
                    f" (the 600 s target leaves {left:.0f} CPU-seconds to the mapping)"
                    if left > 0
                    else ": above the 600 s target before anything is mapped"
                )
        elif f["scale"] >= 1_000_000:
            verdict = ": met" if f["bridge_cpu_s"] <= 600 else ": NOT met"
        print(
            f"\n{f['scale']} offers, {part}; issue 13 item 4: "
            f"≤ 600 s at one million): {f['bridge_cpu_s']:.0f} CPU-seconds{verdict}; wall as measured "
            f"{f['duration_s']:.0f} s = {f['fetch_s']:.0f} s fetch + spool (while the simulator spent "
            f"{f['simulator_fetch_cpu_s']:.0f} CPU-seconds building and serving its $export) + "
            f"{f['write_s']:.0f} s map + write"
        )


if __name__ == "__main__":
    raise SystemExit(main())
