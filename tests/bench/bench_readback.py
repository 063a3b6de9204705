"""The extraction's read-back alone (issue 13 item 4): a spool filled in process from the simulator's dataset,
then written back by `SpoolWriter`, its CPU seconds, what its batches read, and the document's digest.

`python -m tests.bench.bench_readback --scale 10000 [--workers 2] [--batch-size N] [--profile]`. No HTTP,
no fetch: the spool is filled straight from `generate_dataset` (national, every resource), so the figures are
the read-back's (context SQL, parse, map, write, the collector) and the digest must not move when the
read-back is made cheaper. CPU = this process's `process_time` plus its reaped mapping workers'. Not collected
by pytest (no `test_` prefix).
"""

from __future__ import annotations

import argparse
import cProfile
import gc
import hashlib
import json
import pstats
import resource
import sys
import time
from collections import Counter
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bridge import gc_control
from bridge.pipeline import workers
from bridge.pipeline.progress import Progress
from bridge.pipeline.spool import Spool
from bridge.simulator.dataset import generate_dataset
from bridge.translate import load_mappings

MAPPINGS = Path(__file__).resolve().parents[2] / "mappings"
# A fixed `now`: the document's dates must not move between runs (the digest compares them).
NOW = datetime(2026, 1, 1, tzinfo=UTC)
SPOOL_STEP = 500


def fill(scale: int, seed: int, spool: Spool) -> int:
    """The dataset's resources spooled as the extraction spools pages; returns how many."""
    held: list[Any] = []
    added = 0
    for resource_ in generate_dataset(scale, seed):
        held.append(resource_)
        if len(held) >= SPOOL_STEP:
            added += spool.add(held)
            held = []
    added += spool.add(held)
    spool.finish()
    return added


def children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def run(args: argparse.Namespace) -> dict[str, Any]:
    mappings = load_mappings(MAPPINGS)
    gc_control.freeze_start_up()
    if args.batch_size:
        workers.BATCH_SIZE = args.batch_size
    if args.parallel_from is not None:
        workers.PARALLEL_FROM = args.parallel_from
    spool = Spool(mappings)
    began = time.process_time()
    spooled = fill(args.scale, args.seed, spool)
    spool_cpu = time.process_time() - began
    stats: Counter[str] = Counter()
    context_keys = Spool.context_keys

    def counted(self: Spool, keys: Sequence[str], **options: Any) -> list[str]:
        began = time.process_time()
        found = context_keys(self, keys, **options)
        stats["context_keys_cpu_ms"] += round(1000 * (time.process_time() - began))
        stats["batches"] += 1
        stats["rows"] += len(keys)
        stats["context keys"] += len(found)
        return found

    Spool.context_keys = counted  # type: ignore[method-assign]
    collections: Counter[str] = Counter()
    collecting: list[float] = []

    def record(phase: str, info: dict[str, int]) -> None:
        # the collections of this process: how many per generation, their CPU and what they freed
        if phase == "start":
            collections[f"gen{info['generation']}"] += 1
            collecting.append(time.process_time())
        elif collecting:
            collections["collector_cpu_ms"] += round(1000 * (time.process_time() - collecting.pop()))
            collections["collected"] += info["collected"]

    gc.callbacks.append(record)
    writer = workers.SpoolWriter(spool, mappings, NOW, Progress(request="bench"), workers=args.workers)
    digest = hashlib.sha256()
    size = 0
    profiler = cProfile.Profile() if args.profile else None
    children_before = children_cpu()
    began = time.process_time()
    wall = time.monotonic()
    if profiler is not None:
        profiler.enable()
    while (chunk := writer.next_chunk()) is not None:
        digest.update(chunk)
        size += len(chunk)
    if profiler is not None:
        profiler.disable()
    own = time.process_time() - began
    wall = time.monotonic() - wall
    if spool._pool is not None:  # the workers reaped, so that their CPU is counted
        spool._pool.shutdown(wait=True)
    gc.callbacks.remove(record)
    spool.close()
    figures = {
        "scale": args.scale,
        "workers": args.workers,
        "batch_size": workers.BATCH_SIZE,
        "spooled": spooled,
        "spool_cpu_s": round(spool_cpu, 2),
        "readback_cpu_s": round(own, 2),
        "workers_cpu_s": round(children_cpu() - children_before, 2),
        "wall_s": round(wall, 2),
        "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        # the largest peak of a reaped child: a mapping worker's (0 without workers)
        "worker_peak_rss_mib": round(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024, 1),
        "bytes": size,
        "sha256": digest.hexdigest(),
        **dict(stats),
        **dict(collections),
    }
    if profiler is not None:
        pstats.Stats(profiler, stream=sys.stderr).sort_stats("tottime").print_stats(30)
    return figures


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--scale", type=int, default=10_000, help="offers of the simulator's dataset")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--workers", type=int, default=0, help="mapping worker processes (0: in process)")
    parser.add_argument("--parallel-from", type=int, default=None, help="workers.PARALLEL_FROM for this run")
    parser.add_argument("--batch-size", type=int, default=0, help="workers.BATCH_SIZE for this run")
    parser.add_argument("--profile", action="store_true", help="cProfile of the read-back, on stderr")
    args = parser.parse_args(argv)
    if args.scale < 1:
        parser.error("--scale must be at least 1")
    print(json.dumps(run(args)))


if __name__ == "__main__":
    main()
