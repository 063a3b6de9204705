"""`python -m tests.bench.bench_sim_export --scale N`: how long the simulator takes to produce its `$export`
of the national offer ("offre complète"), kick-off to manifest, then every file downloaded (issue 13 item 3).

Benchmark support (tests/bench/, never collected by pytest). Starts `ror-bridge simulator --open --scale N` as
its own process (`--simulator-path DIR` runs it from another checkout's directory, whose `bridge/` it then
imports, to time an older simulator in the same run), kicks off `$export?_type=HealthcareService`, polls
every 0.2 s, then downloads the files `--downloads` at a time with bare httpx and counts the resources.
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from pathlib import Path

import httpx
import orjson

from tests.bench.procs import PYTHON_BRIDGE, free_port, running


async def export(base: str, downloads: int) -> tuple[float, float, int, int]:
    """(seconds to the manifest, seconds to the last file, files, resources)."""
    async with httpx.AsyncClient(timeout=600) as http:
        started = time.perf_counter()
        kick_off = await http.get(
            f"{base}/$export",
            params={"_type": "HealthcareService", "includeAssociatedData": "_myCompleteExtract"},
            headers={"Prefer": "respond-async"},
        )
        poll = kick_off.headers["content-location"]
        while (answer := await http.get(poll)).status_code == 202:
            await asyncio.sleep(0.2)
        manifest = orjson.loads(answer.content)
        ready = time.perf_counter() - started
        urls = [item["url"] for item in manifest["output"]]
        slots = asyncio.Semaphore(downloads)

        async def fetch(url: str) -> int:
            async with slots:
                try:
                    answer = await http.get(url)
                except httpx.TransportError:  # a kept-alive connection the server closed meanwhile
                    answer = await http.get(url)
                return len(orjson.loads(answer.content).get("entry") or ())

        counts = await asyncio.gather(*(fetch(url) for url in urls))
        done = time.perf_counter() - started
        await http.delete(poll)
        return ready, done, len(urls), sum(counts)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--scale", type=int, default=100_000)
    parser.add_argument("--downloads", type=int, default=4, help="files downloaded at once")
    parser.add_argument("--simulator-path", help="a directory holding another checkout's bridge/ package")
    parser.add_argument("--log", help="keep the simulator's output in this file (default: a temporary one)")
    args = parser.parse_args()
    port = free_port()
    base = f"http://127.0.0.1:{port}/ws-diffusion-fhir"
    command = ["simulator", "--open", "--scale", str(args.scale), "--port", str(port)]
    with tempfile.TemporaryDirectory() as work:
        log = Path(args.log or f"{work}/simulator.log")
        with running([*PYTHON_BRIDGE, *command], f"{base}/metadata", log=log, cwd=args.simulator_path):
            ready, done, files, resources = asyncio.run(export(base, args.downloads))
    which = args.simulator_path or "this checkout"
    print(
        f"simulator ({which}) at {args.scale} offers: manifest after {ready:.1f} s, {files} files "
        f"({resources} resources) downloaded {args.downloads} at a time after {done:.1f} s"
    )


if __name__ == "__main__":
    main()
