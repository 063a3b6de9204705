"""`make bench` part `compiled`: the hot path compiled by mypyc against the same code interpreted (issue 13).

Benchmark support (tests/bench/, never collected by pytest). A copy of the bridge is compiled
(bridge/hot_path.py, a C compiler needed). The offre complète is translated in fresh processes run from that
copy, compiled and interpreted (`BRIDGE_HOT_PATH=interpreted`) in interleaved rounds, each process measuring
the physical limit too; then the offer-search is served by `ror-bridge serve` from that copy, compiled, then
interpreted. CPU seconds, as bench_translate measures them; both variants must write the same bytes.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import sysconfig
import tempfile
from pathlib import Path

from bridge import hot_path
from tests.bench.targets import Figure, Goal, median_ratio, print_figures

ROOT = Path(__file__).resolve().parents[2]
COMMAND = "python -m tests.bench.bench_compiled"
TRANSLATE_TARGET = 0.75
CPU_TARGET_MS = 35.0

# One process's translation rounds: the bridge's phases and the physical limit, as bench_translate takes them.
_ROUNDS = """
import hashlib, json, sys
from lxml import etree
from bridge import hot_path
from bridge.app import mappings_from
from bridge.config import load_settings
from tests.bench.bench_translate import bridge_phases, offre_complete, physical_limit
scale, rounds = int(sys.argv[1]), int(sys.argv[2])
bundle = offre_complete(scale, 1)
mappings = mappings_from(load_settings())
output, _ = bridge_phases(mappings, bundle)
root = etree.fromstring(output)
phases, limits = [], []
for _ in range(rounds):
    produced, timed = bridge_phases(mappings, bundle)
    assert produced == output, "the output changed between rounds"
    phases.append(timed)
    limits.append(physical_limit(bundle, root, output))
print(json.dumps({"state": hot_path.STATE, "sha256": hashlib.sha256(output).hexdigest(),
                  "entities": sum(len(d) for d in root), "phases": phases, "limits": limits}))
"""


def c_compiler() -> str | None:
    """The C compiler a build would run (this Python's CC, else cc), or None: no build possible here."""
    return shutil.which(str(sysconfig.get_config_var("CC") or "cc").split()[0]) or shutil.which("cc")


def compiled_copy(dest: Path) -> Path:
    """The bridge's package, tables and schemas copied into `dest` and compiled there; `dest` returned."""
    ignore = shutil.ignore_patterns("__pycache__", "*.so", hot_path.STAMP)
    for part in ("bridge", "mappings", "xsd"):
        shutil.copytree(ROOT / part, dest / part, ignore=ignore)
    build = "from bridge import hot_path; raise SystemExit(hot_path.main(['build']))"
    done = subprocess.run(
        [sys.executable, "-c", build], cwd=dest, env=_env(dest), capture_output=True, text=True, timeout=1800
    )
    if done.returncode != 0 or not done.stdout.strip().endswith("hot path: compiled"):
        raise SystemExit(f"the hot path did not build:\n{done.stdout[-2000:]}\n{done.stderr[-3000:]}")
    return dest


def _env(tree: Path, interpreted: bool = False) -> dict[str, str]:
    """The environment of a process run from `tree` (then this checkout, for `tests`)."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join((str(tree), str(ROOT)))
    env[hot_path.SWITCH] = "interpreted" if interpreted else "auto"
    return env


def _translate(tree: Path, scale: int, rounds: int, interpreted: bool) -> dict[str, object]:
    done = subprocess.run(
        [sys.executable, "-c", _ROUNDS, str(scale), str(rounds)],
        cwd=tree,
        env=_env(tree, interpreted),
        capture_output=True,
        text=True,
        timeout=1800,
    )
    if done.returncode != 0:
        raise SystemExit(f"a translation round failed:\n{done.stderr[-3000:]}")
    result: dict[str, object] = json.loads(done.stdout.splitlines()[-1])
    wanted = "interpreted (BRIDGE_HOT_PATH=interpreted)" if interpreted else "compiled"
    if result["state"] != wanted:
        raise SystemExit(f"the process ran {result['state']}, not {wanted}")
    return result


def _seconds(result: dict[str, object]) -> tuple[float, float, dict[str, float]]:
    """The median bridge time, the median limit and the median of each phase of one process's rounds."""
    phases: list[dict[str, float]] = result["phases"]  # type: ignore[assignment]
    limits: list[float] = result["limits"]  # type: ignore[assignment]
    bridge = statistics.median(sum(p.values()) for p in phases)
    medians = {name: statistics.median(p[name] for p in phases) for name in phases[0]}
    return bridge, statistics.median(limits), medians


def translation_figures(tree: Path, scale: int, processes: int, rounds: int) -> list[Figure]:
    compiled: list[tuple[float, float, dict[str, float]]] = []
    interpreted: list[tuple[float, float, dict[str, float]]] = []
    digests = set()
    entities = 0
    for n in range(processes):
        for variant in (False, True) if n % 2 == 0 else (True, False):
            result = _translate(tree, scale, rounds, variant)
            digests.add(result["sha256"])
            entities = int(result["entities"])  # type: ignore[call-overload]
            (interpreted if variant else compiled).append(_seconds(result))
    if len(digests) != 1:
        raise SystemExit("the compiled and the interpreted hot paths wrote different documents")
    bridge_c = statistics.median(c[0] for c in compiled)
    bridge_i = statistics.median(i[0] for i in interpreted)
    phase_text = ", ".join(
        f"{name} {statistics.median(c[2][name] for c in compiled):.2f} s" for name in compiled[0][2]
    )
    detail = (
        f"{processes} process(es) per variant of {rounds} round(s), interleaved; same document "
        f"(sha256 {next(iter(digests))[:12]}…)"
    )
    return [
        Figure(
            name=f"translation in process, {scale} offers, compiled hot path (physical limit ÷ bridge)",
            value=median_ratio([c[1] for c in compiled], [c[0] for c in compiled]),
            unit="",
            goal=Goal.AT_LEAST,
            target=TRANSLATE_TARGET,
            baseline="orjson parse + bare lxml xmlfile re-emitting the same bytes, in the same process",
            detail=(
                f"bridge {bridge_c:.2f} s CPU ({entities / bridge_c:.0f} entities/s) vs limit "
                f"{statistics.median(c[1] for c in compiled):.2f} s; phases {phase_text}; {detail}"
            ),
            command=COMMAND,
        ),
        Figure(
            name=f"compiled hot path (mypyc) ÷ interpreted: translation speed, {scale} offers",
            value=median_ratio([i[0] for i in interpreted], [c[0] for c in compiled]),
            unit="×",
            goal=Goal.AT_LEAST,
            target=1.0,
            baseline="the same code interpreted (BRIDGE_HOT_PATH=interpreted), fresh processes",
            detail=f"{bridge_c:.2f} vs {bridge_i:.2f} s CPU; {detail}",
            command=COMMAND,
        ),
    ]


def serving_figures(tree: Path, scale: int, requests: int, offers: int) -> list[Figure]:
    from tests.bench.bench_translate import serving_figures as serve

    rows = []
    for interpreted in (False, True):
        (figure,) = serve(scale, requests, offers, env=_env(tree, interpreted))
        rows.append(figure)
    compiled, interpreted_row = rows
    return [
        Figure(
            name=f"offer-search answering {offers} offers: bridge CPU per request, compiled hot path",
            value=compiled.value,
            unit="ms",
            goal=Goal.AT_MOST,
            target=CPU_TARGET_MS,
            baseline=f"{compiled.baseline}; interpreted, the same run: {interpreted_row.value:.1f} ms",
            detail=f"{compiled.detail} (interpreted: {interpreted_row.detail})",
            command=COMMAND,
        )
    ]


def compiled_figures(
    scale: int, processes: int, rounds: int, serve_scale: int, requests: int, offers: int
) -> list[Figure]:
    """Every figure of this part, from a fresh compiled copy (removed afterwards)."""
    with tempfile.TemporaryDirectory(prefix="bench-compiled-") as tmp:
        tree = compiled_copy(Path(tmp))
        return translation_figures(tree, scale, processes, rounds) + serving_figures(
            tree, serve_scale, requests, offers
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--scale", type=int, default=3000, help="offers translated")
    parser.add_argument("--processes", type=int, default=3, help="processes per variant, interleaved")
    parser.add_argument("--rounds", type=int, default=3, help="translations per process")
    parser.add_argument("--requests", type=int, default=100, help="offer-searches measured per variant")
    parser.add_argument("--offers", type=int, default=50, help="offers the offer-search answers")
    args = parser.parse_args()
    print_figures(
        compiled_figures(args.scale, args.processes, args.rounds, args.scale, args.requests, args.offers)
    )


if __name__ == "__main__":
    main()
