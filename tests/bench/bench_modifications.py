"""`make bench-modifications`: the changes since a date over the whole directory — the bridge's peak memory
for change sets of different sizes (issue 6: complete at national scale, at constant memory).

For each scale, starts `ror-bridge simulator --open --scale N` and `ror-bridge serve --upstream URL` as two
processes on 127.0.0.1 (as bench_extract does), posts one SOAP 1.2 request whose date is older than every
record (so every entity changed): ITI-74 getModificationsRequest, or with `--function establishments` the
establishments-updated-since stored function (every EJ and EG then). Reads the answer to nowhere counting
its entities, and prints the bridge's peak RSS (VmHWM; and, sampled, with its child processes: the mapping
workers), the duration, the bytes; then RSS(largest) / RSS(smallest).
Not collected by pytest (no `test_` prefix).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path
from typing import Any

from bridge import ns
from tests.bench.bench_extract import DIRECTORIES, measure
from tests.bench.procs import PYTHON_BRIDGE, free_port, running

SINCE = "2000-01-01T00:00:00Z"  # before every record of the simulator: the whole directory changed
ITI74_BODY = (
    "<csd:getModificationsRequest><csd:lastModified>{since}</csd:lastModified></csd:getModificationsRequest>"
)
ESTABLISHMENTS_BODY = (
    '<csd:careServicesRequest xmlns:ror="urn:ror:csd:params" '
    'urn="urn:ror:csd:stored-function:establishments-updated-since">'
    "<csd:requestParams><ror:dateMiseAJour>{since}</ror:dateMiseAJour></csd:requestParams>"
    "</csd:careServicesRequest>"
)
FUNCTIONS = {
    "iti74": (ns.ACTION_ITI74_REQUEST, ITI74_BODY),
    "establishments": (ns.ACTION_ITI73_REQUEST, ESTABLISHMENTS_BODY),
}
REQUEST = """<?xml version="1.0" encoding="UTF-8"?>
<env:Envelope xmlns:env="http://www.w3.org/2003/05/soap-envelope" xmlns:wsa="http://www.w3.org/2005/08/addressing"
  xmlns:csd="urn:ihe:iti:csd:2013">
  <env:Header>
    <wsa:Action env:mustUnderstand="1">{action}</wsa:Action>
    <wsa:MessageID>urn:uuid:1c0a7e36-0f7e-4c55-9d7e-5b1a2d6f0e74</wsa:MessageID>
    <wsa:ReplyTo><wsa:Address>http://www.w3.org/2005/08/addressing/anonymous</wsa:Address></wsa:ReplyTo>
    <wsa:To env:mustUnderstand="1">http://127.0.0.1/csd</wsa:To>
  </env:Header>
  <env:Body>
    {body}
  </env:Body>
</env:Envelope>"""


def run(scale: int, seed: int, since: str, function: str, workdir: Path) -> dict[str, Any]:
    action, body = FUNCTIONS[function]
    request = REQUEST.format(action=action, body=body.format(since=since))
    sim_port, bridge_port = free_port(), free_port()
    upstream = f"http://127.0.0.1:{sim_port}/ws-diffusion-fhir"
    simulator = ["simulator", "--open", "--scale", str(scale), "--seed", str(seed), "--port", str(sim_port)]
    sim_log = workdir / f"simulator-{scale}.log"
    with running([*PYTHON_BRIDGE, *simulator], f"{upstream}/metadata", log=sim_log):
        env = {"BRIDGE_LOG_LEVEL": "info", "BRIDGE_UPSTREAM_DEADLINE_S": "3600"}
        serve = ["serve", "--upstream", upstream, "--port", str(bridge_port)]
        bridge_url = f"http://127.0.0.1:{bridge_port}"
        log = workdir / f"bridge-{scale}.log"
        with running([*PYTHON_BRIDGE, *serve], f"{bridge_url}/healthz", log=log, env=env) as bridge:
            figures = measure(
                bridge.pid,
                3600,
                "POST",
                f"{bridge_url}/csd",
                content=request.encode(),
                headers={"content-type": "application/soap+xml; charset=utf-8"},
            )
    return {"scale": scale, **figures}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--scales", default="10000,40000", help="comma-separated offer counts")
    parser.add_argument("--since", default=SINCE, help="lastModified (default: before every record)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--function", choices=tuple(FUNCTIONS), default="iti74")
    args = parser.parse_args(argv)
    scales = [int(s.replace("_", "")) for s in args.scales.split(",") if s.strip()]
    results = []
    with tempfile.TemporaryDirectory(prefix="bench-modifications-") as work:
        for scale in scales:
            print(f"{args.function} since {args.since} at scale {scale} …", file=sys.stderr, flush=True)
            figures = run(scale, args.seed, args.since, args.function, Path(work))
            results.append(figures)
            print(
                f"  {figures['duration_s']:.1f} s (first byte {figures['first_byte_s']:.1f} s), "
                f"{figures['bytes'] / 1e6:.1f} MB, {sum(figures['entities'].values())} entities, "
                f"bridge peak RSS {figures['rss_peak_mib']:.0f} MiB",
                file=sys.stderr,
                flush=True,
            )
    print(
        "| offers | duration | first byte | MB | organizations | services | facilities | providers "
        "| bridge RSS idle | bridge peak RSS (VmHWM) | bridge + child processes, peak (sampled) |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for f in results:
        counts = " | ".join(str(f["entities"][name]) for name in DIRECTORIES)
        print(
            f"| {f['scale']} | {f['duration_s']:.0f} s | {f['first_byte_s']:.1f} s | {f['bytes'] / 1e6:.0f} "
            f"| {counts} | {f['rss_idle_mib']:.0f} MiB | {f['rss_peak_mib']:.0f} MiB "
            f"| {f['tree_peak_mib']:.0f} MiB |"
        )
    if len(results) > 1:
        small, large = results[0], results[-1]
        ratio = large["rss_peak_mib"] / small["rss_peak_mib"]
        tree = large["tree_peak_mib"] / small["tree_peak_mib"]
        entities = sum(large["entities"].values()) / max(1, sum(small["entities"].values()))
        scales = f"RSS({large['scale']}) / RSS({small['scale']})"
        print(
            f"\n{scales} = {ratio:.2f} (bridge), {tree:.2f} (with children) for {entities:.1f}x the entities"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
