"""`make bench-compare`: `ror-bridge compare documents` on two national-size extractions — peak RSS and
entities per second (issue 14; README "Comparison").

For each scale: writes the bridge's extraction of the demo dataset at that many offers (`ror-bridge extract`),
streams a legacy copy of it with differences (every entityID re-keyed, references with them; one entity in
1 000 dropped; one name in 50 altered; child order reversed), then runs `ror-bridge compare documents` as its
own process and reports its peak RSS (ru_maxrss), duration and entities per second. Not collected by pytest.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from lxml import etree

CSD = "urn:ihe:iti:csd:2013"
REFERENCES = ("organisation", "lieu", "offre", "parentFacility")


def rekey(value: str) -> str:
    return value.replace("urn:ror:", "urn:legacy:", 1) if value.startswith("urn:ror:") else value


def legacy_copy(bridge: Path, legacy: Path) -> tuple[int, int, int]:
    """Stream `bridge` into `legacy` with known differences; (entities written, dropped, names altered)."""
    written = dropped = altered = 0
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
                index = written + dropped
                if index % 1000 == 999:
                    dropped += 1
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
    return written, dropped, altered


def run(scale: int, workdir: Path) -> dict[str, float]:
    bridge, legacy, out = (
        workdir / f"bridge-{scale}.xml",
        workdir / f"legacy-{scale}.xml",
        workdir / f"out-{scale}",
    )
    env = {**os.environ, "BRIDGE_DEMO_SCALE": str(scale)}
    started = time.monotonic()
    subprocess.run(
        [sys.executable, "-m", "bridge", "extract", "-o", str(bridge), "--quiet"], check=True, env=env
    )
    size_mb, took = bridge.stat().st_size / 1e6, time.monotonic() - started
    print(f"  extraction of {scale} offers: {size_mb:.0f} MB in {took:.0f} s")
    written, dropped, altered = legacy_copy(bridge, legacy)
    print(f"  legacy copy: {written} entities ({dropped} dropped, {altered} names altered)")
    started = time.monotonic()
    command = [
        sys.executable,
        "-m",
        "bridge",
        "compare",
        "documents",
        str(legacy),
        str(bridge),
        "--out",
        str(out),
    ]
    child = subprocess.Popen([*command, "--quiet", "--work-dir", str(workdir)])
    _, status, usage = os.wait4(child.pid, 0)  # this process's own peak, not the extraction's
    child.returncode = os.waitstatus_to_exitcode(status)
    elapsed = time.monotonic() - started
    if child.returncode != 0:
        raise SystemExit(f"compare documents failed with exit status {child.returncode}")
    entities = written + (written + dropped)
    return {
        "scale": scale,
        "entities": entities,
        "seconds": elapsed,
        "entities_per_s": entities / elapsed,
        "peak_rss_mib": usage.ru_maxrss / 1024,
        "cpu_s": usage.ru_utime + usage.ru_stime,
        "bytes": legacy.stat().st_size + bridge.stat().st_size,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--scale", type=int, action="append", help="offers (repeatable; default 1000000)")
    parser.add_argument(
        "--workdir", type=Path, help="where the documents go (default: a temporary directory)"
    )
    args = parser.parse_args(argv)
    scales = args.scale or [1_000_000]
    with tempfile.TemporaryDirectory(prefix="bench-compare-", dir=args.workdir) as work:
        results = []
        for scale in scales:
            print(f"scale {scale}:", flush=True)
            result = run(scale, Path(work))
            results.append(result)
            print(
                f"  compare documents: {result['entities']:.0f} entities, {result['bytes'] / 1e6:.0f} MB in "
                f"{result['seconds']:.1f} s = {result['entities_per_s']:.0f} entities/s "
                f"({result['cpu_s']:.1f} s CPU = {result['entities'] / result['cpu_s']:.0f} entities per "
                "CPU-second); "
                f"peak RSS {result['peak_rss_mib']:.0f} MiB",
                flush=True,
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
