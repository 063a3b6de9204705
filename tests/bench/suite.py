"""`make bench`: every figure of issue 13 measured in one run, each against its target, as one table.

Benchmark support (tests/bench/, never collected by pytest). Runs the benchmark modules' figure functions one
after the other at a scale that fits about a quarter of an hour on a 2-core machine (`--tiny`: seconds, for
the plumbing's smoke test), then prints the commit, the load average and the host-speed probe
(`python_speed`) at start and end, and one `targets.print_figures` table. A report: exits 0 whatever the
targets, 1 only when a benchmark broke (its row then says BROKEN and why). The one-million-offer target is
not run here: its row points to its own make target and the last recorded figure.

    python -m tests.bench.suite [--tiny]
        [--only translate,serve,collect,workers,compiled,decode,paging,national]
"""

from __future__ import annotations

import argparse
import gc
import importlib.util
import math
import os
import subprocess
import sys
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from tests.bench.targets import Figure, Goal, print_figures

COMMAND = "python -m tests.bench.suite"


@dataclass(frozen=True)
class Scale:
    """The sizes of one run: the full suite's, or `--tiny`'s."""

    translate_offers: int
    translate_rounds: int
    serve_offers: int
    serve_requests: int
    answer_offers: int
    collect_offers: int
    collect_latency_ms: float
    collect_rounds: int
    workers_rounds: int
    workers_round_s: float
    workers_warm_s: float
    workers_concurrency: int
    workers_offers: int
    decode_offers: int
    decode_pages: int
    decode_rounds: int
    paging_offers: int
    paging_rounds: int
    compiled_processes: int  # processes per variant of the compiled hot path (translate_rounds rounds each)


FULL = Scale(
    translate_offers=3000,
    translate_rounds=5,
    serve_offers=3000,
    serve_requests=100,
    answer_offers=50,
    collect_offers=12_000,
    collect_latency_ms=100.0,
    collect_rounds=2,
    workers_rounds=5,
    workers_round_s=8.0,
    workers_warm_s=2.0,
    workers_concurrency=10,
    workers_offers=2000,
    decode_offers=4000,
    decode_pages=10,
    decode_rounds=5,
    paging_offers=2000,
    paging_rounds=7,
    compiled_processes=3,
)
TINY = Scale(
    translate_offers=20,
    translate_rounds=1,
    serve_offers=60,
    serve_requests=3,
    answer_offers=5,
    collect_offers=60,
    collect_latency_ms=1.0,
    collect_rounds=1,
    workers_rounds=1,
    workers_round_s=0.5,
    workers_warm_s=0.2,
    workers_concurrency=2,
    workers_offers=60,
    decode_offers=60,
    decode_pages=2,
    decode_rounds=1,
    paging_offers=60,
    paging_rounds=1,
    compiled_processes=1,
)

# Target 4 (one million offers) takes most of an hour: the last figures the README records for it
# (README "Performance", the one-million table; every run in docs/performance-journal.md): keep them in step
# when `make bench-extract` is re-run.
NATIONAL_COMMAND = "make bench-extract SCALES=100000,1000000"
NATIONAL_RECORDED = (
    "last recorded (README Performance, 2026-12-07): compiled hot path; on the slower machine, main 6633b7a: "
    "2 019 CPU-s (785 own + 1 235 mapping workers, 1 549 s wall, the simulator's 522 CPU-s apart); on the "
    "earlier machine, 263dac6: 1 359 CPU-s (947 s wall), the lowest 41d6ca2: 1 254 CPU-s (873 s wall); the "
    "data path's floor (`--floor`, nothing mapped) 1 056 CPU-s on the slower machine, ~660 at 41d6ca2's "
    "speed: above 600 with a mapping that costs nothing"
)
NATIONAL_MEMORY = (
    "last recorded (README Performance, 2026-12-07): compiled hot path, main 6633b7a: bridge 167 MiB "
    "(VmHWM), with its 2 mapping workers and the resource tracker 262 MiB summed RSS, 216 MiB PSS (sampled); "
    "253-290 MiB RSS in every compiled run since 44bb465; 1.01x the 100 000-offer peak (8d06e83)"
)
MSGSPEC_NAMES = (
    *(f"{name} decoding of FHIR pages (issue 13 item 6)" for name in ("msgspec", "msgspec typed")),
    "msgspec decoding of a split search's pages (issue 13 item 6)",
)


def translate(scale: Scale) -> list[Figure]:
    from tests.bench.bench_translate import translation_figures

    return translation_figures(scale.translate_offers, 1, scale.translate_rounds)


def serve(scale: Scale) -> list[Figure]:
    from tests.bench.bench_translate import serving_figures

    return serving_figures(scale.serve_offers, scale.serve_requests, scale.answer_offers)


def collect(scale: Scale) -> list[Figure]:
    from bridge.config import Settings
    from tests.bench.bench_collect import collection_figures

    page_size = Settings().upstream_page_size
    return collection_figures(
        scale.collect_offers, scale.collect_latency_ms, scale.collect_rounds, 8, page_size
    )


def workers(scale: Scale) -> list[Figure]:
    from tests.bench.bench_workers import COMMAND as WORKERS_COMMAND
    from tests.bench.bench_workers import workers_figures

    if (os.cpu_count() or 1) < 2:
        why = "this machine has one core (serve refuses more workers than cores)"
        return [
            Figure.not_measured(
                "serve --workers 2 throughput", "×", Goal.AT_LEAST, 1.6, why, "", WORKERS_COMMAND
            )
        ]
    return workers_figures(
        scale.workers_rounds,
        scale.workers_round_s,
        scale.workers_warm_s,
        scale.workers_concurrency,
        scale.workers_offers,
    )


def compiled(scale: Scale) -> list[Figure]:
    from tests.bench.bench_compiled import COMMAND as COMPILED_COMMAND
    from tests.bench.bench_compiled import c_compiler, compiled_figures

    if c_compiler() is None:
        why = "no C compiler on this machine: the hot path cannot be compiled here (make compiled)"
        name = "compiled hot path (mypyc) ÷ interpreted: translation speed"
        return [Figure.not_measured(name, "×", Goal.AT_LEAST, 1.0, why, "", COMPILED_COMMAND)]
    return compiled_figures(
        scale.translate_offers,
        scale.compiled_processes,
        scale.translate_rounds,
        scale.serve_offers,
        scale.serve_requests,
        scale.answer_offers,
    )


def decode(scale: Scale) -> list[Figure]:
    if importlib.util.find_spec("msgspec") is None:
        why = "msgspec not installed (a dev dependency) — run `make install` to measure"
        detail = "benchmarks only: installed by the dev extra (README, Dependencies)"
        return [
            Figure.not_measured(
                name, "× orjson", Goal.AT_LEAST, 1.2, why, detail, "python -m tests.bench.bench_decode"
            )
            for name in MSGSPEC_NAMES
        ]
    from tests.bench.bench_decode import decode_figures

    return decode_figures(scale.decode_offers, scale.decode_pages, scale.decode_rounds)


def paging(scale: Scale) -> list[Figure]:
    from tests.bench.bench_paging import paging_figures

    return paging_figures(scale.paging_offers, 50, scale.paging_rounds)


def national(_: Scale) -> list[Figure]:
    return [
        Figure.not_measured(
            "one million offers: the bridge's own part (issue 13 item 4)",
            "s",
            Goal.AT_MOST,
            600,
            "about an hour: run its own make target",
            NATIONAL_RECORDED,
            NATIONAL_COMMAND,
        ),
        Figure.not_measured(
            "one million offers: bridge + mapping workers peak RSS (issue 13 item 4)",
            "MiB",
            Goal.AT_MOST,
            300,
            "about an hour: run its own make target",
            f"{NATIONAL_MEMORY}; target also 1M/100k ≤ 1.2×",
            NATIONAL_COMMAND,
        ),
    ]


# The parts, in the order they run.
PARTS: dict[str, Callable[[Scale], list[Figure]]] = {
    "translate": translate,
    "serve": serve,
    "collect": collect,
    "workers": workers,
    "compiled": compiled,
    "decode": decode,
    "paging": paging,
    "national": national,
}


def _commit() -> str:
    try:
        described = subprocess.run(
            ["git", "describe", "--always", "--dirty"], capture_output=True, text=True, check=True, timeout=10
        )
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return described.stdout.strip()


def _load() -> str:
    return " ".join(f"{value:.2f}" for value in os.getloadavg())


# The host-speed probe's work: 5 000 passes over 1 000 small dicts (a lookup, a len, additions), the kind of
# work the interpreter does in the mapping. Its CPU time tells how fast this host runs Python, so that the
# absolute figures (ms per request, CPU-seconds) of runs on different machines can be read side by side: the
# same code took 2.6x the CPU per offer-search on the machine of 2026-12-07 18:30 UTC as on the earlier one.
SPEED_PASSES = 5000


def python_speed(passes: int = SPEED_PASSES) -> float:
    """CPU seconds of the host-speed probe, the best of three."""
    data = [{"id": str(number), "value": number} for number in range(1000)]
    best = math.inf
    for _ in range(3):
        started = time.process_time()
        total = 0
        for _ in range(passes):
            for item in data:
                total += len(item.get("id", "")) + item["value"]
        best = min(best, time.process_time() - started)
    return best


def run(parts: list[str], scale: Scale) -> tuple[list[Figure], list[str]]:
    """Every part in turn: its rows, and the parts that broke (a BROKEN row each, with the error)."""
    figures: list[Figure] = []
    broken: list[str] = []
    for name in parts:
        started = time.monotonic()
        print(f"== {name}", flush=True)
        try:
            figures += PARTS[name](scale)
        except (Exception, SystemExit) as error:  # a report: one broken benchmark does not hide the others
            traceback.print_exc()
            broken.append(name)
            why = f"BROKEN: {type(error).__name__}: {str(error)[:200]}"
            figures.append(
                Figure.not_measured(f"{name} (benchmark broke)", "", Goal.AT_LEAST, 0, why, "", COMMAND)
            )
        print(f"== {name}: {time.monotonic() - started:.0f} s", flush=True)
        gc.collect()
    return figures, broken


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--only", help=f"comma-separated parts among {', '.join(PARTS)} (default: all)")
    parser.add_argument("--tiny", action="store_true", help="tiny scales: checks the plumbing in seconds")
    args = parser.parse_args(argv)
    parts = list(PARTS) if args.only is None else [p.strip() for p in args.only.split(",") if p.strip()]
    unknown = [p for p in parts if p not in PARTS]
    if unknown or not parts:
        parser.error(
            f"--only: unknown part(s) {', '.join(unknown) or '(none given)'}; known: {', '.join(PARTS)}"
        )
    scale = TINY if args.tiny else FULL
    began, load_start = time.monotonic(), _load()
    when = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    passes = SPEED_PASSES // 20 if args.tiny else SPEED_PASSES
    speed_start = python_speed(passes)
    figures, broken = run(parts, scale)
    speed_end = python_speed(passes)
    print()
    print(
        f"make bench ({COMMAND}{' --tiny' if args.tiny else ''}): commit {_commit()}, {when}, "
        f"{time.monotonic() - began:.0f} s; load average (1, 5, 15 min) at start {load_start}, "
        f"at end {_load()}; "
        f"{os.cpu_count()} cores, Python {sys.version.split()[0]}; host speed: the probe of {passes} passes "
        f"(tests/bench/suite.py python_speed) {speed_start:.2f} s of CPU at start, {speed_end:.2f} s at end"
    )
    print()
    print_figures(figures)
    if broken:
        print(f"\nbroken: {', '.join(broken)}", file=sys.stderr)
    return 1 if broken else 0


if __name__ == "__main__":
    raise SystemExit(main())
