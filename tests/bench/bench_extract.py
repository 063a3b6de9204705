"""`make bench-extract`: the streamed extraction at national scale — the bridge's peak memory and the time
(issue 6 item 3: 100 000 and 1 000 000 offers in the same run; `--scales` runs others).

For each scale, starts `ror-bridge simulator --open --scale N` and `ror-bridge serve --upstream URL` as two
processes on 127.0.0.1, downloads `GET /extraction` to nowhere, and prints the bridge's peak RSS (VmHWM of its
process; and, sampled every 0.2 s, the largest sum of the RSS of the bridge and its child processes: the
mapping workers and multiprocessing's resource tracker), the duration, the bytes and the entities per
directory; then RSS(largest) / RSS(smallest).
Not collected by pytest (no `test_` prefix).
"""

from __future__ import annotations

import argparse
import re
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

from tests.bench.procs import PYTHON_BRIDGE, TreeSampler, free_port, running, status_kib

DIRECTORIES = ("organization", "service", "facility", "provider")
# Each directory entry declares the namespace on itself (the writer writes standalone elements): nested
# references (facility/organizations/organization…) do not, so this marker counts entries only.
MARKERS = {name: f'<csd:{name} xmlns:csd="urn:ihe:iti:csd:2013"'.encode() for name in DIRECTORIES}
CARRY = max(len(marker) for marker in MARKERS.values())


def consume(response: httpx.Response, began: float) -> tuple[float, int, dict[str, int]]:
    """Read a streamed CSD answer to the end: (first byte after `began`, bytes, entities per directory)."""
    counts = dict.fromkeys(DIRECTORIES, 0)
    size = 0
    tail = b""
    first_byte_s: float | None = None
    for chunk in response.iter_raw():
        if first_byte_s is None:
            first_byte_s = time.monotonic() - began
        size += len(chunk)
        window = tail + chunk
        for name, marker in MARKERS.items():
            counts[name] += window.count(marker) - tail.count(marker)
        tail = window[-CARRY:]
    return first_byte_s or 0.0, size, counts


def run(
    scale: int, seed: int, source: str, region: str | None, workers: int | None, workdir: Path
) -> dict[str, Any]:
    sim_port, bridge_port = free_port(), free_port()
    upstream = f"http://127.0.0.1:{sim_port}/ws-diffusion-fhir"
    started = time.monotonic()
    simulator = ["simulator", "--open", "--scale", str(scale), "--seed", str(seed), "--port", str(sim_port)]
    sim_log = workdir / f"simulator-{scale}.log"
    with running([*PYTHON_BRIDGE, *simulator], f"{upstream}/metadata", log=sim_log):
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
        with running([*PYTHON_BRIDGE, *serve], f"{bridge_url}/healthz", log=log, env=env) as bridge:
            path = "/extraction" + (f"/{region}" if region else "")
            figures = measure(bridge.pid, 120, "GET", bridge_url + path)
    # The bridge logs when the whole offer was received and spooled (extraction.LogEvent.SPOOLED).
    spooled = re.search(
        r"extraction-spooled .* in ([0-9.]+) s", (workdir / f"bridge-{scale}.log").read_text()
    )
    return {
        "scale": scale,
        "source": source,
        "simulator_start_s": simulator_start_s,
        "fetch_s": float(spooled.group(1)) if spooled else float("nan"),
        **figures,
    }


def measure(pid: int, read_timeout_s: float, method: str, url: str, **request: Any) -> dict[str, Any]:
    """One streamed answer of the bridge process `pid`, read to the end: its timing, size and entities, and
    the bridge's memory (idle before, VmHWM after, and sampled with its child processes meanwhile)."""
    rss_idle_kib = status_kib(pid, "VmRSS")
    sampler = TreeSampler(pid)
    sampler.start()
    began = time.monotonic()
    try:
        with (
            httpx.Client(timeout=httpx.Timeout(read_timeout_s, connect=10)) as http,
            http.stream(method, url, **request) as response,
        ):
            if response.status_code != 200:
                raise RuntimeError(f"HTTP {response.status_code}: {response.read()[:2000]!r}")
            first_byte_s, size, counts = consume(response, began)
        duration_s = time.monotonic() - began
        peak_kib = status_kib(pid, "VmHWM")
    finally:
        sampler.stop()
    return {
        "first_byte_s": first_byte_s,
        "duration_s": duration_s,
        "bytes": size,
        "entities": counts,
        "rss_idle_mib": rss_idle_kib / 1024,
        "rss_peak_mib": peak_kib / 1024,
        "tree_peak_mib": sampler.peak_kib / 1024,
        "processes": sampler.most_processes,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--scales", default="100000,1000000", help="comma-separated offer counts")
    parser.add_argument("--source", default="auto", choices=("auto", "export", "search"))
    parser.add_argument("--region", help="a region code of mappings/regions.csv (default: national)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument(
        "--workers", type=int, help="BRIDGE_MAPPING_WORKERS of the bridge (default: the bridge's default)"
    )
    args = parser.parse_args(argv)
    scales = [int(s.replace("_", "")) for s in args.scales.split(",") if s.strip()]
    results = []
    with tempfile.TemporaryDirectory(prefix="bench-extract-") as work:
        for scale in scales:
            print(f"extracting {scale} offers ({args.source}) …", file=sys.stderr, flush=True)
            figures = run(scale, args.seed, args.source, args.region, args.workers, Path(work))
            results.append(figures)
            entities = figures["entities"]
            print(
                f"  {figures['duration_s']:.1f} s (first byte {figures['first_byte_s']:.1f} s, "
                f"offer fetched and spooled in {figures['fetch_s']:.1f} s), "
                f"{figures['bytes'] / 1e6:.1f} MB, {sum(entities.values())} entities, "
                f"bridge peak RSS {figures['rss_peak_mib']:.0f} MiB, with its "
                f"{figures['processes'] - 1} child processes {figures['tree_peak_mib']:.0f} MiB",
                file=sys.stderr,
                flush=True,
            )
    print(
        "| offers | source | duration | of which fetch + spool | first byte | MB | organizations | services "
        "| facilities | providers | bridge RSS idle | bridge peak RSS (VmHWM) "
        "| bridge + child processes peak RSS (sampled) |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for f in results:
        e = f["entities"]
        counts = " | ".join(str(e[name]) for name in DIRECTORIES)
        print(
            f"| {f['scale']} | {f['source']} | {f['duration_s']:.0f} s | {f['fetch_s']:.0f} s "
            f"| {f['first_byte_s']:.1f} s "
            f"| {f['bytes'] / 1e6:.0f} | {counts} "
            f"| {f['rss_idle_mib']:.0f} MiB | {f['rss_peak_mib']:.0f} MiB "
            f"| {f['tree_peak_mib']:.0f} MiB ({f['processes'] - 1} children) |"
        )
    if len(results) > 1:
        small, large = results[0], results[-1]
        ratio = large["rss_peak_mib"] / small["rss_peak_mib"]
        tree = large["tree_peak_mib"] / small["tree_peak_mib"]
        factor = large["scale"] / small["scale"]
        print(
            f"\nRSS({large['scale']}) / RSS({small['scale']}) = {ratio:.2f} (bridge), {tree:.2f} (bridge and "
            f"children) for {factor:.0f}x the offers"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
