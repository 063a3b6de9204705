"""The national-scale check of the ROR simulator (issue 3 item 2): start `ror-bridge simulator --scale N` as a
real process on 127.0.0.1, then print its start time, its peak memory (VmHWM) and the latency of typical
requests. Exit status 1 when it needs more than 2 GiB or more than a minute to start.

Run with `make sim-scale` (one million offers) or `python -m tests.simulator.scale --scale N`.
"""

from __future__ import annotations

import argparse
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import httpx

MEMORY_LIMIT = 2 * 1024**3
START_LIMIT_S = 60.0
BASE_PATH = "/ws-diffusion-fhir"
INC = [
    ("_include", "HealthcareService:organization"),
    ("_include:iterate", "Organization:partof"),
    ("_include", "HealthcareService:location"),
    ("_revinclude", "PractitionerRole:service"),
    ("_include", "PractitionerRole:practitioner"),
]  # the ANS "offre complète" include set (ror-fhir-api.md §5)
FINESS = "https://finess.esante.gouv.fr"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _peak_rss(pid: int) -> int:
    """VmHWM of a Linux process, bytes (the peak resident set size)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError("no VmHWM in /proc: the scale check needs Linux")


def _timed(call: Callable[[], httpx.Response], repeat: int) -> tuple[float, float, httpx.Response]:
    """Median and max wall time of `repeat` calls, milliseconds, and the last response."""
    times = []
    response: httpx.Response | None = None
    for _ in range(repeat):
        start = time.perf_counter()
        response = call()
        times.append((time.perf_counter() - start) * 1000)
        response.raise_for_status()
    assert response is not None
    return statistics.median(times), max(times), response


def run(scale: int, seed: int, repeat: int) -> dict[str, Any]:
    """Start the simulator, measure, stop it; the figures."""
    port = _free_port()
    command = [sys.executable, "-m", "bridge", "simulator", "--scale", str(scale), "--seed", str(seed)]
    command += ["--port", str(port), "--open"]
    started = time.perf_counter()
    # The server's log is dropped (an unread pipe would fill up and block it).
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}{BASE_PATH}"
    figures: dict[str, Any] = {"scale": scale}
    try:
        with httpx.Client(timeout=120) as http:
            while True:
                if process.poll() is not None:
                    raise RuntimeError(
                        f"the simulator exited ({process.returncode}): run {' '.join(command)}"
                    )
                try:
                    if http.get(f"{base}/metadata").status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                if time.perf_counter() - started > 10 * START_LIMIT_S:
                    raise RuntimeError("the simulator did not start")
                time.sleep(0.1)
            figures["start_s"] = time.perf_counter() - started
            figures["counts"] = {
                rtype: http.get(f"{base}/{rtype}", params={"_count": "0"}).json()["total"]
                for rtype in (
                    "Organization",
                    "HealthcareService",
                    "Location",
                    "PractitionerRole",
                    "Practitioner",
                )
            }
            offer = http.get(f"{base}/HealthcareService", params={"_count": "1"}).json()["entry"][0][
                "resource"
            ]
            org = http.get(f"{base}/{offer['providedBy']['reference']}").json()
            while "partOf" in org:
                org = http.get(f"{base}/{org['partOf']['reference']}").json()
            finess = next(i["value"] for i in org["identifier"] if i["system"] == FINESS)
            region = offer["meta"]["tag"][0]["code"]
            offer_ident = offer["identifier"][0]["value"]
            cases: dict[str, tuple[str, list[tuple[str, str]]]] = {
                "read HealthcareService": (f"HealthcareService/{offer['id']}", []),
                "identifier": ("HealthcareService", [("identifier", offer_ident)]),
                "EJ subtree, offre complète": (
                    "HealthcareService",
                    [("organization.identifier:above", finess), *INC],
                ),
                "_lastUpdated delta (200/page), offre complète": (
                    "HealthcareService",
                    [("_lastUpdated", "ge2025-10-01"), ("_count", "200"), *INC],
                ),
                "_filter delta (organisation chain)": (
                    "HealthcareService",
                    [
                        (
                            "_filter",
                            "(_lastUpdated ge 2025-12-01 or organization._lastUpdated:above ge 2025-12-01)",
                        )
                    ],
                ),
                "region _tag, 200/page, truncated": (
                    "HealthcareService",
                    [("_tag", region), ("_count", "200")],
                ),
                "whole national search (total only)": ("HealthcareService", [("_count", "0")]),
                "characteristic AND + age _filter": (
                    "HealthcareService",
                    [
                        ("characteristic", offer["characteristic"][0]["coding"][0]["code"]),
                        ("_filter", "age-range-low le 35 and age-range-high ge 35"),
                    ],
                ),
                "location.near 2 km": ("HealthcareService", [("location.near", "48.80|2.13|2|km")]),
                "location.near-insee-code 2 km": (
                    "HealthcareService",
                    [("location.near-insee-code", "78646|2|km")],
                ),
                "Organization name:contains (1st call builds the index)": (
                    "Organization",
                    [("name:contains", "hospitalier 12"), ("_count", "50")],
                ),
                "Location address-city:contains, 200/page": (
                    "Location",
                    [("address-city:contains", "versa"), ("_count", "200")],
                ),
                "_sort=-_lastUpdated, 200/page": (
                    "HealthcareService",
                    [("_sort", "-_lastUpdated"), ("_count", "200")],
                ),
            }
            latencies: dict[str, tuple[float, float]] = {}
            last: dict[str, Any] = {}
            for name, (path, params) in cases.items():
                median, worst, response = _timed(
                    partial(http.get, f"{base}/{path}", params=tuple(params)), repeat
                )
                latencies[name] = (median, worst)
                last[name] = response.json()
            truncated = last["region _tag, 200/page, truncated"]
            next_url = next(link["url"] for link in truncated["link"] if link["relation"] == "next")
            median, worst, _ = _timed(lambda: http.get(next_url), repeat)
            latencies["next page (_getpages)"] = (median, worst)
            figures["latency_ms"] = latencies
            figures["region_total"] = truncated["total"]
        figures["peak_rss_bytes"] = _peak_rss(process.pid)
    finally:
        process.terminate()
        process.wait(timeout=30)
    return figures


def report(figures: dict[str, Any]) -> list[str]:
    """Printable lines; the limits broken (empty when all hold)."""
    print(f"scale {figures['scale']}: {figures['counts']}")
    print(
        f"start (process launch to first /metadata answer): {figures['start_s']:.1f} s "
        f"(limit {START_LIMIT_S:.0f} s)"
    )
    rss = figures["peak_rss_bytes"]
    print(f"peak resident memory (VmHWM): {rss / 1024**2:.0f} MiB (limit {MEMORY_LIMIT / 1024**2:.0f} MiB)")
    total = figures["region_total"]
    print(f"region search total: {total} (served: {'the first 10000' if total > 10_000 else 'all'})")
    print("request latency, median / max ms:")
    for name, (median, worst) in figures["latency_ms"].items():
        print(f"  {name:<56} {median:8.1f} {worst:8.1f}")
    broken = []
    if rss > MEMORY_LIMIT:
        broken.append("memory")
    if figures["start_s"] > START_LIMIT_S:
        broken.append("start time")
    return broken


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--scale", type=int, default=1_000_000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--repeat", type=int, default=5, help="calls per request kind (default 5)")
    args = parser.parse_args(argv)
    broken = report(run(args.scale, args.seed, args.repeat))
    if broken:
        print(f"FAILED: {', '.join(broken)} over the limit", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
