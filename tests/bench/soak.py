"""`make soak`: many concurrent legacy clients (every stored function of the conformance catalogue and ITI-74,
SOAP 1.1 and 1.2, client certificates, HTTPS) drive the bridge against the simulator (latency, random 503s).

Prints per round: requests, errors beyond the injected faults (every injected 503 must be retried: target 0),
latency percentiles, and the bridge's RSS; then the RSS growth from the end of the first round to the end of
the last (target: flat). `--tracemalloc` runs the bridge inside this process and prints where memory grew.

    python -m tests.bench.soak --clients 20 --rounds 3 --round-s 30
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import signal
import ssl
import statistics
import subprocess
import sys
import tempfile
import time
import tracemalloc
import uuid
from contextlib import ExitStack, suppress
from pathlib import Path

import httpx
import trustme
from cryptography import x509
from cryptography.hazmat.primitives import hashes

from bridge.compare.selftest import _capture, _fill, _wrap, load_scenarios
from tests.bench.procs import ROR_BRIDGE, cpu_seconds, free_port, rss_mib, started, stop, wait_ready

# The soak clients' ROR access profiles, in turn (client n has PROFILES[n % 4]): every answer is filtered.
PROFILES = (1, 0, 2, 3)


def _pki(directory: Path) -> tuple[trustme.CA, list[trustme.LeafCert], dict[str, str]]:
    ca = trustme.CA(organization_name="Soak CA")
    server = ca.issue_cert("127.0.0.1")
    server.cert_chain_pems[0].write_to_path(str(directory / "server.pem"))
    server.private_key_pem.write_to_path(str(directory / "server.key"))
    ca.cert_pem.write_to_path(str(directory / "ca.pem"))
    clients = []
    entries = []
    for profile in PROFILES:
        client = ca.issue_cert(f"soak-{profile}@clients.example", common_name=f"soak-client-{profile}")
        certificate = x509.load_pem_x509_certificate(client.cert_chain_pems[0].bytes())
        fingerprint = certificate.fingerprint(hashes.SHA256())
        entries.append(
            f"  - id: soak-client-{profile}\n"
            f'    fingerprints: ["{fingerprint.hex()}"]\n'
            f'    regions: ["*"]\n    functions: ["*"]\n    profile: {profile}\n'
        )
        clients.append(client)
    (directory / "clients.yaml").write_text("clients:\n" + "".join(entries), encoding="utf-8")
    env = {
        "BRIDGE_TLS_CERT": str(directory / "server.pem"),
        "BRIDGE_TLS_KEY": str(directory / "server.key"),
        "BRIDGE_TLS_CLIENT_CA": str(directory / "ca.pem"),
        "BRIDGE_CLIENTS_FILE": str(directory / "clients.yaml"),
        "BRIDGE_AUDIT_LOG": str(directory / "audit.jsonl"),
    }
    return ca, clients, env


def _requests(url: str, context: ssl.SSLContext) -> list[tuple[str, str]]:
    """(function, careServicesRequest) of every catalogue scenario answered 200, placeholders filled."""
    captured: dict[str, str] = {}
    found: list[tuple[str, str]] = []
    with httpx.Client(verify=context, timeout=120) as client:
        for scenario in load_scenarios():
            if scenario.expect.get("status", 200) != 200:
                continue
            request, missing = _fill(scenario.request, captured)
            if missing:
                continue
            body, headers = _wrap(scenario.envelope, request, f"urn:uuid:{uuid.uuid4()}")
            response = client.post(url, content=body, headers=headers)
            if response.status_code == 200:
                _capture(scenario, response, captured)
                found.append((scenario.function, request))
    since = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() - 2 * 86400))
    iti74 = (
        '<csd:getModificationsRequest xmlns:csd="urn:ihe:iti:csd:2013">'
        f"<csd:lastModified>{since}</csd:lastModified></csd:getModificationsRequest>"
    )
    body, headers = _wrap("soap12", iti74, f"urn:uuid:{uuid.uuid4()}")
    with httpx.Client(verify=context, timeout=120) as client:
        if client.post(url, content=body, headers=headers).status_code == 200:
            found.append(("ITI-74 modifications", iti74))
    return found


async def _round(
    url: str, contexts: list[ssl.SSLContext], requests: list[tuple[str, str]], clients: int, seconds: float
) -> tuple[list[float], list[str], float]:
    """Latencies of the answers, errors, and the round's length: `seconds`, then until every client's last
    request has ended (no request is started after `seconds`)."""
    latencies: list[float] = []
    errors: list[str] = []
    started = time.monotonic()
    stop = started + seconds

    async def client(number: int) -> None:
        rng = random.Random(number)  # load mix, not security
        async with httpx.AsyncClient(verify=contexts[number % len(contexts)], timeout=120) as http:
            while time.monotonic() < stop:
                function, request = rng.choice(requests)
                envelope = rng.choice(["soap12", "soap11"])
                body, headers = _wrap(envelope, request, f"urn:uuid:{uuid.uuid4()}")
                started = time.perf_counter()
                try:
                    response = await http.post(url, content=body, headers=headers)
                except httpx.HTTPError as error:
                    errors.append(f"{function}: {type(error).__name__}")
                    continue
                latencies.append(time.perf_counter() - started)
                if response.status_code != 200:
                    errors.append(f"{function} {envelope}: HTTP {response.status_code} {response.text[:200]}")

    await asyncio.gather(*(client(n) for n in range(clients)))
    return latencies, errors, time.monotonic() - started


# Beyond the shutdown grace: the lifespan's clean-up and the spool threads' current step.
STOP_MARGIN_S = 25.0


def _stop(process: subprocess.Popen[bytes], bound_s: float) -> None:
    """SIGTERM, then the time the bridge took to stop; killed (and said so) beyond `bound_s`."""
    took = stop(process, bound_s)
    if took is None:
        raise SystemExit(f"soak: the bridge did not stop within {bound_s:.0f} s of SIGTERM: killed")
    print(f"soak: the bridge stopped {took:.1f} s after SIGTERM", flush=True)


def _percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def _snapshot(pid: int, path: Path, number: int) -> tracemalloc.Snapshot:
    """Ask the traced bridge (tests/bench/traced_serve.py) for a tracemalloc snapshot and read it."""
    target = Path(f"{path}.{number}")
    os.kill(pid, signal.SIGUSR1)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        time.sleep(1)
        with suppress(OSError, EOFError, ValueError):
            return tracemalloc.Snapshot.load(str(target))
    raise SystemExit("soak: the bridge wrote no tracemalloc snapshot")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--round-s", type=float, default=30.0)
    parser.add_argument("--scale", type=int, default=2000, help="offers in the simulator")
    parser.add_argument("--latency-ms", type=int, default=30)
    parser.add_argument("--fault-rate", type=float, default=0.02, help="share of FHIR requests answered 503")
    parser.add_argument(
        "--render-cache",
        type=int,
        default=100_000,
        help="simulator resources kept serialised (0: rendered per page, the simulator's CPU then weighs on "
        "this machine as the national API's does not)",
    )
    parser.add_argument(
        "--tracemalloc", action="store_true", help="bridge under tracemalloc: print where memory grew"
    )
    parser.add_argument(
        "--no-release", action="store_true", help="bridge/memory.py switched off (the before of an A/B)"
    )
    args = parser.parse_args(argv)

    with ExitStack() as stack, tempfile.TemporaryDirectory(prefix="ror-soak-") as tmp:
        directory = Path(tmp)
        ca, client_certs, env = _pki(directory)
        contexts = []
        for client_cert in client_certs:
            contexts.append(ssl.create_default_context())
            ca.configure_trust(contexts[-1])
            client_cert.configure_cert(contexts[-1])
        context = contexts[0]  # profile 1: sees everything, captures the identifiers the requests use
        sim_port, bridge_port = free_port(), free_port()
        faults = f"status(503)@p={args.fault_rate}"
        simulator = stack.enter_context(started(
            [ROR_BRIDGE, "simulator", "--open", "--port", str(sim_port),
             "--scale", str(args.scale), "--latency-ms", str(args.latency_ms), "--faults", faults,
             "--render-cache", str(args.render_cache)],
        ))  # fmt: skip
        upstream = f"http://127.0.0.1:{sim_port}/ws-diffusion-fhir"
        wait_ready(f"{upstream}/metadata", simulator, seconds=120, verify=False)
        command = [ROR_BRIDGE]
        if args.tracemalloc or args.no_release:
            command = [sys.executable, "-m", "tests.bench.traced_serve"]
        snapshots = directory / "snapshot"
        extra = {"SOAK_SNAPSHOT": str(snapshots)} if args.tracemalloc else {}
        if args.no_release:
            extra["SOAK_NO_RELEASE"] = "1"
        # The soak does not test the graceful shutdown (tests/ops do): a short grace bounds the stop.
        grace_s = 5.0
        bridge = subprocess.Popen(
            [*command, "serve", "--port", str(bridge_port), "--upstream", upstream],
            env={
                **os.environ,
                **env,
                "BRIDGE_LOG_LEVEL": "warning",
                "BRIDGE_MAPPING_WORKERS": "0",
                "BRIDGE_SHUTDOWN_GRACE_S": str(grace_s),
                **extra,
            },
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        stack.callback(_stop, bridge, grace_s + STOP_MARGIN_S)
        pid = bridge.pid
        url = f"https://127.0.0.1:{bridge_port}/csd"
        wait_ready(f"https://127.0.0.1:{bridge_port}/healthz", bridge, seconds=120, verify=context)
        requests = _requests(url, context)
        functions = sorted({function for function, _ in requests})
        print(f"soak: {args.clients} clients, {len(requests)} requests of {len(functions)} functions "
              f"({', '.join(functions)}), SOAP 1.1 and 1.2 over mTLS, access profiles {PROFILES} in turn; "
              f"simulator {args.scale} offers, {args.latency_ms} ms, {faults}", flush=True)  # fmt: skip
        load = os.getloadavg()[0]
        print(f"soak: bridge RSS at start {rss_mib(pid):.0f} MiB; load average {load:.1f}", flush=True)
        rss: list[float] = []
        first_snapshot = None
        total_errors = 0
        for number in range(1, args.rounds + 1):
            cpu = (cpu_seconds(pid), cpu_seconds(simulator.pid))
            latencies, errors, elapsed = asyncio.run(
                _round(url, contexts, requests, args.clients, args.round_s)
            )
            rss.append(rss_mib(pid))
            bridge_cpu, simulator_cpu = cpu_seconds(pid) - cpu[0], cpu_seconds(simulator.pid) - cpu[1]
            total_errors += len(errors)
            print(
                f"round {number}: {len(latencies)} requests in {elapsed:.0f} s "
                f"({len(latencies) / elapsed:.1f}/s), "
                f"{len(errors)} errors, p50 {_percentile(latencies, 0.5):.2f} s, "
                f"p95 {_percentile(latencies, 0.95):.2f} s, p99 {_percentile(latencies, 0.99):.2f} s, "
                f"mean {statistics.fmean(latencies) if latencies else float('nan'):.2f} s, "
                f"RSS {rss[-1]:.0f} MiB; CPU bridge {bridge_cpu:.0f} s, simulator {simulator_cpu:.0f} s; "
                f"load average {os.getloadavg()[0]:.1f}",
                flush=True,
            )
            for error in errors[:5]:
                print(f"  error: {error}", flush=True)
            if args.tracemalloc and number == 1:
                first_snapshot = _snapshot(pid, snapshots, 1)
        print(f"soak: RSS growth from round 1 to round {args.rounds}: {rss[-1] - rss[0]:+.0f} MiB; "
              f"errors beyond the injected faults: {total_errors}", flush=True)  # fmt: skip
        if args.tracemalloc and first_snapshot is not None:
            growth = _snapshot(pid, snapshots, 2).compare_to(first_snapshot, "traceback")
            print("tracemalloc: where memory grew since round 1 (top 8)")
            for stat in growth[:8]:
                print(f"  {stat.size_diff / 1024:+.0f} KiB in {stat.count_diff:+d} blocks")
                for line in stat.traceback.format()[-8:]:
                    print(f"    {line}")
    return 1 if total_errors else 0


if __name__ == "__main__":
    raise SystemExit(main())
