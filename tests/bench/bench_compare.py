"""`make bench-compare`: `ror-bridge compare documents` on two national-size extractions — peak RSS and
entities per second, as ratios to a bare lxml iterparse pass over the same files (issue 14; README
"Comparison").

For each scale: the bridge's extraction of the demo dataset at that many offers (`ror-bridge extract`) and a
legacy copy streamed from it with differences (every entityID re-keyed, references with them; one entity in
1 000 dropped, chosen by entityID; one name in 50 altered; child order reversed), both cached in --cache
(reused when present: the 1 000 000-offer extraction alone takes ~45 minutes). Then, each in its own
process, timed, its peak RSS read from wait4: the baseline (`--baseline-pass`: lxml iterparse of both files,
each entity cleared once seen) and `ror-bridge compare documents`. Prints both, their ratios, and the peak
RSS of every scale against the smallest one (flat memory: ~1×). Rates are per CPU-second (the machine is
shared; wall-clock shown too).
Not collected by pytest.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import time
import zlib
from pathlib import Path
from typing import Any

import orjson
from lxml import etree

CSD = "urn:ihe:iti:csd:2013"
REFERENCES = ("organisation", "lieu", "offre", "parentFacility")
ENTRIES = ("organization", "service", "facility", "provider", "device")
DEFAULT_CACHE = Path("build/bench-compare")


# A csd:device (an équipement) carries nothing but its entityID and is matched by it alone (compare.yaml
# `match`: device: [entityID]): its entityID, and the UEs' references to it, are kept.
DEVICE_PREFIX = "urn:ror:equipement:"


def rekey(value: str) -> str:
    if value.startswith(DEVICE_PREFIX):
        return value
    return value.replace("urn:ror:", "urn:legacy:", 1) if value.startswith("urn:ror:") else value


def dropped(entity_id: str, every: int = 1000) -> bool:
    """One entity in `every` is left out of the legacy copy, chosen by its entityID: an offer's UE facility
    and its activity service (same entityID) go together, as no service could be matched without its UE."""
    return zlib.crc32(entity_id.encode("utf-8")) % every == every - 1


def legacy_copy(bridge: Path, legacy: Path, every: int = 1000) -> tuple[int, int, int]:
    """Stream `bridge` into `legacy` with known differences; (entities written, dropped, names altered)."""
    written = left_out = altered = 0
    with etree.xmlfile(str(legacy), encoding="utf-8") as out:
        out.write_declaration()
        with out.element(f"{{{CSD}}}CSD", nsmap={"csd": CSD}):
            directory: str | None = None
            context = out
            stack = None
            for event, element in etree.iterparse(str(bridge), events=("start", "end"), huge_tree=True):
                parent = element.getparent()
                name = etree.QName(element).localname
                if (
                    event == "start"
                    and name.endswith("Directory")
                    and parent is not None
                    and parent.getparent() is None
                ):
                    directory = name
                    stack = context.element(element.tag)
                    stack.__enter__()
                    continue
                if event == "end" and name == directory and stack is not None:
                    stack.__exit__(None, None, None)
                    directory, stack = None, None
                    element.clear()
                    continue
                if event != "end" or parent is None or etree.QName(parent).localname != directory:
                    continue
                index = written + left_out
                if dropped(element.get("entityID", ""), every):
                    left_out += 1
                else:
                    for node in element.iter():
                        if node.get("entityID"):
                            node.set("entityID", rekey(node.get("entityID", "")))
                        if (
                            isinstance(node.tag, str)
                            and etree.QName(node).localname in REFERENCES
                            and node.text
                        ):
                            node.text = rekey(node.text.strip())
                    name_element = element.find(f"{{{CSD}}}primaryName")
                    if name_element is not None and index % 50 == 7:
                        name_element.text = f"{name_element.text} (legacy)"
                        altered += 1
                    children = list(element)
                    for child in children:
                        element.remove(child)
                    element.extend(reversed(children))
                    out.write(element)
                    written += 1
                element.clear()
                while element.getprevious() is not None:
                    del parent[0]
    return written, left_out, altered


def baseline_pass(paths: list[Path]) -> dict[str, int]:
    """The floor: lxml iterparse of each file, every directory entry counted and cleared (nothing kept)."""
    counts: dict[str, int] = {}
    for path in paths:
        entities = 0
        for _, element in etree.iterparse(
            str(path), events=("end",), tag=[f"{{{CSD}}}{name}" for name in ENTRIES], huge_tree=True
        ):
            parent = element.getparent()
            if parent is None or not etree.QName(parent).localname.endswith("Directory"):
                continue
            entities += 1
            element.clear()
            while element.getprevious() is not None:
                del parent[0]
        counts[str(path)] = entities
    return counts


def cached_documents(scale: int, cache: Path) -> tuple[Path, Path]:
    """The bridge's extraction at `scale` offers and its legacy copy, made once (renamed only when whole)."""
    cache.mkdir(parents=True, exist_ok=True)
    # legacy-v2: entities dropped by entityID (legacy-N.xml, dropped by position, orphaned 1 000 services)
    bridge, legacy = cache / f"bridge-{scale}.xml", cache / f"legacy-v2-{scale}.xml"
    if not bridge.exists():
        part = bridge.with_suffix(".xml.part")
        started = time.monotonic()
        env = {**os.environ, "BRIDGE_DEMO_SCALE": str(scale)}
        subprocess.run(
            [sys.executable, "-m", "bridge", "extract", "-o", str(part), "--quiet"], check=True, env=env
        )
        part.rename(bridge)
        print(
            f"  extraction of {scale} offers: {bridge.stat().st_size / 1e6:.0f} MB in "
            f"{time.monotonic() - started:.0f} s",
            flush=True,
        )
    if not legacy.exists():
        part = legacy.with_suffix(".xml.part")
        written, left_out, altered = legacy_copy(bridge, part)
        part.rename(legacy)
        print(f"  legacy copy: {written} entities ({left_out} dropped, {altered} names altered)", flush=True)
    return legacy, bridge


def measured(command: list[str]) -> tuple[float, float, float, bytes]:
    """Run `command` as a child: (seconds, CPU seconds, peak RSS MiB of that child alone, its stdout)."""
    started = time.monotonic()
    child = subprocess.Popen(command, stdout=subprocess.PIPE)
    assert child.stdout is not None
    output = child.stdout.read()
    _, status, usage = os.wait4(child.pid, 0)
    child.returncode = os.waitstatus_to_exitcode(status)
    if child.returncode != 0:
        raise SystemExit(f"{' '.join(command[:5])} … failed with exit status {child.returncode}")
    return time.monotonic() - started, usage.ru_utime + usage.ru_stime, usage.ru_maxrss / 1024, output


def compare_documents(legacy: Path, bridge: Path, out: Path, work: Path) -> tuple[float, float, float]:
    """`ror-bridge compare documents` in its own process: (seconds, CPU seconds, peak RSS MiB)."""
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    try:
        seconds, cpu, rss, _ = measured(
            [
                *(sys.executable, "-m", "bridge", "compare", "documents", str(legacy), str(bridge)),
                *("--out", str(out), "--quiet", "--work-dir", str(work)),
            ]
        )
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return seconds, cpu, rss


def floor_rss(cache: Path) -> float:
    """The command's own floor: peak RSS of `compare documents` on two empty csd:CSD documents."""
    cache.mkdir(parents=True, exist_ok=True)
    empty = cache / "empty.xml"
    empty.write_text(f'<?xml version="1.0" encoding="UTF-8"?>\n<csd:CSD xmlns:csd="{CSD}"/>\n')
    return compare_documents(empty, empty, cache / "out-empty", cache / "work-empty")[2]


def run(scale: int, cache: Path) -> dict[str, Any]:
    legacy, bridge = cached_documents(scale, cache)
    out = cache / f"out-{scale}"
    base_s, base_cpu, base_rss, counted = measured(
        [sys.executable, "-m", "tests.bench.bench_compare", "--baseline-pass", str(legacy), str(bridge)]
    )
    per_file = orjson.loads(counted)
    entities = sum(per_file.values())
    seconds, cpu, rss = compare_documents(legacy, bridge, out, cache / f"work-{scale}")
    report = orjson.loads((out / "report.json").read_bytes())
    totals = {k: len(v) if isinstance(v, list) else v for k, v in report["entities"].items()}
    totals["parity"] = report["parity"]
    legacy_n, bridge_n = per_file[str(legacy)], per_file[str(bridge)]
    # What the legacy copy injected, seen from the report: dropped entities only on the bridge side.
    consistent = (
        totals["matched"] == legacy_n
        and totals["only_legacy"] == 0
        and totals["only_bridge"] == bridge_n - legacy_n
    )
    return {
        "scale": scale,
        "entities": entities,
        "bytes": legacy.stat().st_size + bridge.stat().st_size,
        "baseline_s": base_s,
        "baseline_cpu_s": base_cpu,
        "baseline_rss_mib": base_rss,
        "seconds": seconds,
        "cpu_s": cpu,
        "peak_rss_mib": rss,
        "totals": totals,
        "consistent": consistent,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--scale", type=int, action="append", help="offers (repeatable)")
    parser.add_argument("--scales", help="offers, comma-separated (default 10000,100000,1000000)")
    parser.add_argument("--cache", type=Path, default=DEFAULT_CACHE, help="where the documents are kept")
    parser.add_argument("--baseline-pass", nargs="+", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.baseline_pass:
        sys.stdout.buffer.write(orjson.dumps(baseline_pass(args.baseline_pass)))
        return 0
    scales = [*(args.scale or []), *(int(s) for s in (args.scales or "").split(",") if s.strip())]
    scales = sorted(set(scales or [10_000, 100_000, 1_000_000]))
    floor = floor_rss(args.cache)
    print(f"the command's floor (compare documents on two empty documents): peak RSS {floor:.0f} MiB")
    results = []
    for scale in scales:
        print(f"scale {scale} offers:", flush=True)
        r = run(scale, args.cache)
        results.append(r)
        t = r["totals"]
        print(
            f"  {r['entities']} entities (both sides), {r['bytes'] / 1e6:.0f} MB\n"
            f"  baseline (lxml iterparse, cleared): {r['baseline_s']:.1f} s, "
            f"{r['baseline_cpu_s']:.1f} s CPU = "
            f"{r['entities'] / r['baseline_cpu_s']:.0f} entities per CPU-second; "
            f"peak RSS {r['baseline_rss_mib']:.0f} MiB\n"
            f"  compare documents: {r['seconds']:.1f} s, {r['cpu_s']:.1f} s CPU = "
            f"{r['entities'] / r['cpu_s']:.0f} entities per CPU-second "
            f"({r['entities'] / r['seconds']:.0f} per wall-clock second) = "
            f"{r['baseline_cpu_s'] / r['cpu_s']:.3f}× the baseline's rate; "
            f"peak RSS {r['peak_rss_mib']:.0f} MiB "
            f"= {r['peak_rss_mib'] / r['baseline_rss_mib']:.2f}× the baseline's, "
            f"{r['peak_rss_mib'] - floor:.0f} MiB above the command's floor\n"
            f"  report: matched {t['matched']}, equal {t['equal']}, different {t['different']}, "
            f"only legacy {t['only_legacy']}, only bridge {t['only_bridge']}, parity {t['parity']:.4f} "
            f"({'as injected' if r['consistent'] else 'NOT AS INJECTED'})",
            flush=True,
        )
    smallest = results[0]
    curve = ", ".join(
        f"{r['scale']}: {r['peak_rss_mib'] / smallest['peak_rss_mib']:.2f}× "
        f"(entities {r['entities'] / smallest['entities']:.0f}×)"
        for r in results
    )
    print(f"peak RSS against the {smallest['scale']}-offer run: {curve}", flush=True)
    return 0 if all(r["consistent"] for r in results) else 1


if __name__ == "__main__":
    raise SystemExit(main())
