"""`make bench-workers`: `serve --workers 2` against `--workers 1` and against 2 workers sharing one socket;
uvloop + httptools against asyncio + h11.

Benchmark support (tests/bench/, issue 13 items 5 and 6). One simulator (no added latency) and five bridges
started once, side by side: `ror-bridge serve --workers 1` and `--workers 2` (uvicorn's defaults: uvloop and
httptools, installed with `uvicorn[standard]`), and under `uvicorn --factory bridge.app:worker_app` one worker
with `--loop uvloop --http httptools` and with `--loop asyncio --http h11`, and `--workers 2` (uvicorn's own
supervisor: the two workers accept from one shared socket, as `serve` did before bridge/listeners.py).
Each round measures every bridge in turn (interleaved, so the machine's load hits them alike): CONCURRENCY
clients posting the ITI-73 offer-search answering 50 offers for ROUND_S seconds after a warm-up; requests
per second counts 200 answers, any other answer stops the run. Measuring starts once every worker listens
(one socket each under `serve --workers N`). Each round line gives the cores used by each process over the
measured window: the simulator, the bridge (each worker apart) and this client. The simulator serves from
its render cache by default (it shares the machine's cores with the bridges; a national API does not):
`--render-cache 0` for the simulator rendering every resource. Prints `tests/bench/targets.Figure` rows:
medians of the per-round ratios.

    python -m tests.bench.bench_workers [--rounds 3] [--round-s 8] [--concurrency 10] [--render-cache N]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import resource
import statistics
import subprocess
import sys
import time
import uuid
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

import httpx
import orjson
from lxml import etree

from bridge import ns
from bridge.app import WORKER_ARGS_ENV
from bridge.compare.selftest import _wrap
from tests.bench.procs import (
    BIN,
    ROR_BRIDGE,
    cpu_seconds,
    descendants,
    free_port,
    listening_sockets,
    running,
    started,
    wait_ready,
)
from tests.bench.targets import Figure, Goal, median_ratio, print_figures

COMMAND = "python -m tests.bench.bench_workers"
# The offer-search of issue 13: one page of 50 offers (their organisations and lieux included).
OFFER_SEARCH = (
    '<csd:careServicesRequest xmlns:csd="urn:ihe:iti:csd:2013" xmlns:ror="urn:ror:csd:params" '
    'urn="urn:ror:csd:stored-function:offer-search" encapsulated="true">'
    "<csd:requestParams><csd:max>50</csd:max></csd:requestParams></csd:careServicesRequest>"
)
SHARED = "2 workers, one shared socket"
RENDER_CACHE = 100_000  # resources the simulator keeps serialised: all of them at the default 2 000 offers


@dataclass(frozen=True)
class Variant:
    """One bridge under test: its label and the command starting it on a port (`{port}`)."""

    label: str
    command: tuple[str, ...]
    listeners: int = 1  # sockets listening on its port once every worker is up


def variants(upstream: str) -> list[Variant]:
    serve = (ROR_BRIDGE, "serve", "--upstream", upstream, "--port", "{port}")
    factory = (
        str(BIN / "uvicorn"),
        "--factory",
        "bridge.app:worker_app",
        "--port",
        "{port}",
        "--log-level",
        "warning",
    )
    return [
        Variant("serve --workers 1", (*serve, "--workers", "1")),
        Variant("serve --workers 2", (*serve, "--workers", "2"), listeners=2),
        Variant("1 worker, uvloop + httptools", (*factory, "--loop", "uvloop", "--http", "httptools")),
        Variant("1 worker, asyncio + h11", (*factory, "--loop", "asyncio", "--http", "h11")),
        Variant(SHARED, (*factory, "--workers", "2")),
    ]  # fmt: skip


def _entities(answer: bytes) -> int:
    """The entities of an answer: the children of its CSD directories."""
    names = ("organizationDirectory", "serviceDirectory", "facilityDirectory", "providerDirectory")
    root = etree.fromstring(answer)
    return sum(len(directory) for name in names for directory in root.iter(f"{{{ns.CSD}}}{name}"))


async def _load(url: str, concurrency: int, seconds: float, warm_s: float) -> tuple[int, int]:
    """(answers in the measured window, entities of one answer) of `concurrency` clients in a closed loop."""
    counted = 0
    size = 0
    start = time.monotonic() + warm_s
    stop = start + seconds

    async def client() -> None:
        nonlocal counted, size
        async with httpx.AsyncClient(timeout=120) as http:
            while time.monotonic() < stop:
                body, headers = _wrap("soap12", OFFER_SEARCH, f"urn:uuid:{uuid.uuid4()}")
                response = await http.post(url, content=body, headers=headers)
                if response.status_code != 200:
                    raise SystemExit(f"bench_workers: HTTP {response.status_code} {response.text[:300]}")
                finished = time.monotonic()
                if start <= finished <= stop:
                    counted += 1
                    if not size:
                        size = _entities(response.content)

    await asyncio.gather(*(client() for _ in range(concurrency)))
    return counted, size


def _is_helper(pid: int) -> bool:
    """multiprocessing's resource tracker (a child of `serve --workers N`), not a worker."""
    try:
        return b"resource_tracker" in Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return True


async def _measured(
    url: str, concurrency: int, seconds: float, warm_s: float, pids: dict[str, int]
) -> tuple[int, int, dict[str, float]]:
    """`_load` after its warm-up, with the cores each process (and this client) used over the window."""
    await _load(url, concurrency, 0.0, warm_s)  # warm-up: its own connections, closed after
    before = {name: cpu_seconds(pid) for name, pid in pids.items()}
    client = _client_cpu()
    started_at = time.monotonic()
    counted, entities = await _load(url, concurrency, seconds, 0.0)
    wall = time.monotonic() - started_at
    cores = _cores(pids, before, wall)
    cores["client"] = (_client_cpu() - client) / wall
    return counted, entities, cores


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--round-s", type=float, default=8.0)
    parser.add_argument("--warm-s", type=float, default=2.0)
    parser.add_argument("--concurrency", type=int, default=10)
    parser.add_argument("--scale", type=int, default=2000, help="offers in the simulator")
    parser.add_argument(
        "--render-cache", type=int, default=RENDER_CACHE, help="the simulator's --render-cache (0: none)"
    )
    args = parser.parse_args(argv)
    if (os.cpu_count() or 1) < 2:
        print("bench_workers: needs at least 2 CPU cores (serve refuses more workers than cores)")
        return 2
    figures = workers_figures(
        args.rounds, args.round_s, args.warm_s, args.concurrency, args.scale, args.render_cache
    )
    return 0 if print_figures(figures) else 1


def _wait_listening(port: int, workers: int, child: subprocess.Popen[bytes], seconds: float = 180) -> None:
    """Until `workers` sockets listen on `port`: a connection made before a worker listens never reaches it
    (keep-alive: it stays on the worker that took it)."""
    deadline = time.monotonic() + seconds
    while listening_sockets(port) < workers:
        if child.poll() is not None or time.monotonic() > deadline:
            raise SystemExit(f"bench_workers: {workers} workers did not all listen on port {port}")
        time.sleep(0.2)


def _cores(pids: dict[str, int], before: dict[str, float], seconds: float) -> dict[str, float]:
    """The cores each process used since `before` (its CPU seconds), over `seconds` of wall time."""
    return {name: (cpu_seconds(pid) - before[name]) / seconds for name, pid in pids.items()}


# Two processes spinning for PROBE_S: the cores this benchmark can get on the machine right now. Linux's
# scheduler shares the CPU between sessions (autogroup) before processes: on a machine busy with other
# sessions' jobs, the whole benchmark gets its session's share, and a second worker no second core.
PROBE_S = 2.0
_SPIN = "import time\nend = time.monotonic() + {seconds}\nwhile time.monotonic() < end: pass"


def cores_available(seconds: float = PROBE_S) -> float:
    """The cores two busy processes of this session got over `seconds` (≈ 2.0 on an idle 2-core machine)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started_at = time.monotonic()
    code = _SPIN.format(seconds=seconds)
    spinners = [subprocess.Popen([sys.executable, "-c", code]) for _ in range(2)]
    for spinner in spinners:
        spinner.wait()
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    used = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return used / (time.monotonic() - started_at)


def _client_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def workers_figures(
    rounds: int,
    round_s: float,
    warm_s: float,
    concurrency: int,
    scale: int,
    render_cache: int = RENDER_CACHE,
) -> list[Figure]:
    """The rounds (each bridge in turn), then the three ratios as `Figure` rows."""
    with ExitStack() as stack:
        sim_port = free_port()
        upstream = f"http://127.0.0.1:{sim_port}/ws-diffusion-fhir"
        simulator = [ROR_BRIDGE, "simulator", "--open", "--port", str(sim_port), "--scale", str(scale)]
        simulator += ["--render-cache", str(render_cache)]
        sim = stack.enter_context(running(simulator, f"{upstream}/metadata", ready_s=180))
        environment = {
            "BRIDGE_LOG_LEVEL": "warning",
            "BRIDGE_UPSTREAM_URL": upstream,
            WORKER_ARGS_ENV: orjson.dumps({"config": None, "overrides": {"upstream_url": upstream}}).decode(),
        }
        urls: dict[str, str] = {}
        children: dict[str, subprocess.Popen[bytes]] = {}
        ports: dict[str, tuple[int, int]] = {}
        for variant in variants(upstream):
            port = free_port()
            command = [part.format(port=port) for part in variant.command]
            children[variant.label] = stack.enter_context(started(command, env=environment, stop_s=40))
            urls[variant.label] = f"http://127.0.0.1:{port}"
            ports[variant.label] = (port, variant.listeners)
        for label, url in urls.items():  # started side by side, then each waited for
            wait_ready(f"{url}/healthz", children[label], seconds=180)
            _wait_listening(*ports[label], children[label])
        probes = [cores_available()]
        print(f"cores available to this session: {probes[0]:.2f} of 2 (two busy processes)", flush=True)
        rates: dict[str, list[float]] = {label: [] for label in urls}
        splits: dict[str, list[float]] = {label: [] for label in urls}  # the busier worker's CPU share
        entities = 0
        for number in range(1, rounds + 1):
            for label, url in urls.items():
                workers = [pid for pid in descendants(children[label].pid) if not _is_helper(pid)]
                pids = {"simulator": sim.pid, **{f"worker {pid}": pid for pid in workers}}
                if not workers:  # one process: the bridge itself
                    pids["bridge"] = children[label].pid
                measured = asyncio.run(_measured(f"{url}/csd", concurrency, round_s, warm_s, pids))
                counted, entities, cores = measured
                rates[label].append(counted / round_s)
                used = " ".join(f"{name} {value:.2f}" for name, value in cores.items())
                print(f"  round {number} {label}: {counted / round_s:.1f}/s; cores: {used}", flush=True)
                if len(workers) == 2:
                    shares = [cores[f"worker {pid}"] for pid in workers]
                    splits[label].append(max(shares) / (sum(shares) or 1.0))
            line = ", ".join(f"{label} {values[-1]:.1f}/s" for label, values in rates.items())
            print(f"round {number}: {line}", flush=True)
        probes.append(cores_available())

    one, two = rates["serve --workers 1"], rates["serve --workers 2"]
    fast, plain = rates["1 worker, uvloop + httptools"], rates["1 worker, asyncio + h11"]
    where = (
        f"offer-search answering 50 offers ({entities} entities), concurrency {concurrency}, "
        f"simulator {scale} offers (render cache {render_cache}); medians of {rounds} interleaved rounds "
        f"of {round_s:g} s; two busy processes of this session got {probes[0]:.2f} cores before the rounds, "
        f"{probes[-1]:.2f} after"
    )
    own, shared = splits["serve --workers 2"], splits[SHARED]
    busier = "; the busier of the 2 workers used {:.0%} of their CPU (medians)"
    split = busier.format(statistics.median(own)) if own else ""
    split_shared = busier.format(statistics.median(shared)) if shared else ""
    both = f"{split}, {statistics.median(shared):.0%} with one shared socket" if own and shared else split
    return [
        Figure(
            name="serve --workers 2 throughput",
            value=median_ratio(two, one),
            unit="×",
            goal=Goal.AT_LEAST,
            target=1.6,
            baseline="serve --workers 1",
            detail=f"{statistics.median(two):.1f} vs {statistics.median(one):.1f} req/s; {where}{both}",
            command=COMMAND,
        ),
        Figure(
            name="uvloop + httptools throughput (1 worker)",
            value=median_ratio(fast, plain),
            unit="×",
            goal=Goal.AT_LEAST,
            target=1.0,
            baseline="asyncio + h11",
            detail=f"{statistics.median(fast):.1f} vs {statistics.median(plain):.1f} req/s; {where}",
            command=COMMAND,
        ),
        Figure(
            name="one socket per worker (2 workers) throughput",
            value=median_ratio(two, rates[SHARED]),
            unit="×",
            goal=Goal.AT_LEAST,
            target=1.0,
            baseline="2 workers sharing one socket (`uvicorn --factory bridge.app:worker_app --workers 2`)",
            detail=f"{statistics.median(two):.1f} vs {statistics.median(rates[SHARED]):.1f} req/s; {where}"
            f"{split}{split_shared.replace('; the busier', ', sharing one socket the busier')}",
            command=COMMAND,
        ),
    ]


if __name__ == "__main__":
    raise SystemExit(main())
