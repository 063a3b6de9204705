"""The `ror-bridge` command line: serve, simulator, mappings check, translate, selftest, extract, compare.

Builds settings from flags (then `BRIDGE_*` variables, then `--config FILE`) and hands them to
`bridge.app`; it never builds the bridge's parts itself.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING

from pydantic import ValidationError

from bridge import __version__
from bridge.config import Settings, available_cores, env_name, load_settings
from bridge.errors import ConfigurationError

if TYPE_CHECKING:
    from bridge.app import ExtractionProgress


# The command-line flag of each setting that has one (error messages name both the variable and the flag).
FLAGS = {
    "host": "--host",
    "port": "--port",
    "upstream_url": "--upstream",
    "mappings_dir": "--mappings-dir",
    "extraction_source": "--source",
    "workers": "--workers",
}


class CliEvent(StrEnum):
    """What the command line logs (house style: events are enum members)."""

    LISTENING = "bridge-listening"


def _settings(args: argparse.Namespace, **overrides: object) -> Settings:
    return load_settings(getattr(args, "config", None), **overrides)


def describe_validation(error: ValidationError) -> str:
    """A settings error in the operator's words: the `BRIDGE_*` variable (and flag) and what is wrong."""
    lines = []
    for problem in error.errors():
        field = str(problem["loc"][0]) if problem.get("loc") else "?"
        where = env_name(field)
        if field in FLAGS:
            where += f" / {FLAGS[field]}"
        value = problem.get("input")
        shown = "" if "secret" in field or isinstance(value, dict) else f" (got {value!r})"
        message = str(problem.get("msg", "invalid")).removeprefix("Value error, ")
        lines.append(f"{where}: {message}{shown}")
    return "invalid setting: " + "; ".join(lines)


def _check_workers(settings: Settings) -> None:
    cores = available_cores()
    if settings.workers > cores:
        raise ConfigurationError(
            f"BRIDGE_WORKERS / --workers: {settings.workers} worker processes exceed the {cores} CPU "
            "core(s) this machine gives the bridge"
        )
    # Each worker has its own mapping-worker pool (the default shares the cores among the workers).
    pools = settings.mapping_workers
    if settings.workers > 1 and pools is not None and settings.workers * pools > cores:
        raise ConfigurationError(
            f"BRIDGE_MAPPING_WORKERS: {pools} mapping processes in each of {settings.workers} workers exceed "
            f"the {cores} CPU core(s) this machine gives the bridge (unset, the cores are shared out)"
        )


def _metrics_directory() -> Path | None:
    """Multiprocess metrics: a fresh directory of our own, or the operator's emptied of old values."""
    import os
    import tempfile

    from bridge.metrics import MULTIPROC_ENV

    given = os.environ.get(MULTIPROC_ENV)
    if given:
        for stale in Path(given).glob("*.db"):
            stale.unlink()
        return None
    created = Path(tempfile.mkdtemp(prefix="ror-bridge-metrics-"))
    os.environ[MULTIPROC_ENV] = str(created)
    return created


def _serve(args: argparse.Namespace) -> int:
    import os
    import shutil

    import orjson
    import uvicorn

    from bridge.logs import configure_logging, resolve_format

    overrides = {
        "host": args.host,
        "port": args.port,
        "upstream_url": args.upstream,
        "workers": args.workers,
        "log_format": args.log_format,
        "tls_cert": args.tls_cert,
        "tls_key": args.tls_key,
        "tls_client_ca": args.tls_client_ca,
    }
    settings = _settings(args, **overrides)
    _check_workers(settings)
    configure_logging(settings.log_level, settings.log_format)
    multiprocess = settings.workers > 1 or bool(os.environ.get("PROMETHEUS_MULTIPROC_DIR"))
    owned_metrics_dir = _metrics_directory() if multiprocess else None
    # Imported after the metrics directory is chosen: prometheus-client picks its mode at import.
    from bridge.app import WORKER_ARGS_ENV, create_app, uvicorn_options
    from bridge.listeners import Supervisor, balanced_listeners_supported, bind_listeners

    listeners = None
    try:
        tls = uvicorn_options(settings)  # the peer-aware protocol; HTTPS and client certificates when set
        # One process: the app is built (and a setting or table error stops the start) before the banner.
        app = create_app(settings) if settings.workers == 1 else None
        if settings.workers > 1 and balanced_listeners_supported():
            # One socket per worker (SO_REUSEPORT): the kernel spreads the connections over the workers.
            listeners = bind_listeners(settings.host, settings.port, settings.workers)
    except ConfigurationError as error:
        print(f"ror-bridge serve: {error.reason}", file=sys.stderr)
        return 2

    where = "embedded ROR simulator (demo dataset)" if settings.is_demo else settings.upstream_url
    base = f"http://{settings.host}:{settings.port}"
    banner = [
        f"ror-bridge {__version__}: CSD endpoint {base}/csd",
        f"  WSDL: {base}/csd?wsdl   upstream: {where}",
        f"  extraction: {base}/extraction[/REGION]",
        f"  metrics: {base}/metrics   health: {base}/healthz   readiness: {base}/readyz",
    ]
    if settings.is_demo:
        banner.append(f"  demo FHIR data: {base}/demo/fhir/metadata")
    if settings.tls_enabled:
        banner.append("  HTTPS (the URLs above with https://)")
    if settings.workers > 1:
        banner.append(f"  {settings.workers} worker processes; metrics summed across them")
    if resolve_format(settings.log_format) == "json":
        # stderr carries one JSON object per line: the banner is a log event too.
        logging.getLogger("bridge").info("%s %s", CliEvent.LISTENING, " | ".join(b.strip() for b in banner))
    else:
        print("\n".join(banner), file=sys.stderr)
    options = {
        "host": settings.host,
        "port": settings.port,
        "log_level": settings.log_level,
        "log_config": None,  # our handlers (bridge/logs.py), not uvicorn's
        "proxy_headers": True,
        "timeout_graceful_shutdown": settings.shutdown_grace_s,
        **tls,
    }
    if app is not None:
        from bridge.gc_control import freeze_start_up

        freeze_start_up()  # what start-up built stays: later collections walk requests' objects only
        uvicorn.run(app, **options)
        return 0
    config = getattr(args, "config", None)
    os.environ[WORKER_ARGS_ENV] = orjson.dumps(
        {
            "config": str(config) if config else None,
            "overrides": {k: str(v) if isinstance(v, Path) else v for k, v in overrides.items() if v},
        }
    ).decode()
    try:
        if listeners is not None:
            config = uvicorn.Config("bridge.app:worker_app", factory=True, **options)
            return Supervisor(config, listeners).run()
        uvicorn.run("bridge.app:worker_app", factory=True, workers=settings.workers, **options)
    finally:
        if owned_metrics_dir is not None:
            shutil.rmtree(owned_metrics_dir, ignore_errors=True)
    return 0


def _simulator(args: argparse.Namespace) -> int:
    from bridge.simulator.access_control import TOKEN_PATH, normalise_fingerprint
    from bridge.simulator.fault_injection import FaultSpecError, parse_faults
    from bridge.simulator.national_api import SimulatorConfig, run_simulator

    try:
        parse_faults(args.faults)
        certs = {}
        for item in args.client_cert:
            fingerprint, _, client_id = item.partition("=")
            certs[normalise_fingerprint(fingerprint)] = client_id or "bridge-demo"
    except (FaultSpecError, ValueError) as error:
        print(f"ror-bridge simulator: {error}", file=sys.stderr)
        return 2
    config = SimulatorConfig(
        scale=args.scale,
        seed=args.seed,
        open_access=args.open,  # the standalone simulator checks access unless --open (docs/architecture.md)
        strict=not args.lenient,
        max_results=args.max_results,
        next_link_ttl_s=args.next_ttl,
        client_certs=certs,
        token_ttl_s=args.token_ttl,
        tls_cert=args.tls_cert,
        tls_key=args.tls_key,
        tls_ca=args.tls_ca,
        faults=args.faults,
        latency_ms=args.latency_ms,
        render_cache=args.render_cache,
    )
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    scheme = "https" if args.tls_cert else "http"
    access = "open access" if args.open else f"token: {scheme}://{args.host}:{args.port}{TOKEN_PATH}"
    print(
        f"ROR simulator: {scheme}://{args.host}:{args.port}/ws-diffusion-fhir/metadata "
        f"(scale {args.scale}, seed {args.seed}; {access})",
        file=sys.stderr,
    )
    try:
        run_simulator(config, args.host, args.port)
    except ValueError as error:
        print(f"ror-bridge simulator: {error}", file=sys.stderr)
        return 2
    return 0


def _mappings_check(args: argparse.Namespace) -> int:
    from bridge.app import verify_mappings

    settings = _settings(args, mappings_dir=args.mappings_dir)
    try:
        report, problems = verify_mappings(settings, args.profile_schema)
    except ConfigurationError as error:
        print(f"ror-bridge: {error}", file=sys.stderr)
        print("mappings check: FAIL (the tables do not load; the reason is above, on stderr)")
        return 2
    print(report)
    for problem in problems:
        print(f"ror-bridge mappings check: {problem}", file=sys.stderr)
    if problems:
        print(f"mappings check: FAIL ({len(problems)} problem(s), listed on stderr)")
        return 2
    print("mappings check: OK (tables load, FHIR paths and region codes checked)")
    return 0


def _translate(args: argparse.Namespace) -> int:
    from bridge.app import translate_bundle

    settings = _settings(args, mappings_dir=args.mappings_dir)
    try:
        translation = translate_bundle(settings, args.bundle.read_bytes())
    except ValueError as error:
        print(f"ror-bridge translate: {args.bundle}: {error}", file=sys.stderr)
        return 2
    if args.output is None:
        sys.stdout.buffer.write(translation.document)
        sys.stdout.buffer.flush()
    else:
        args.output.write_bytes(translation.document)
    for note in translation.notes:
        print(f"ror-bridge translate: note: {note}", file=sys.stderr)
    print(f"ror-bridge translate: {translation.entities} CSD record(s)", file=sys.stderr)
    return 0


def _extract(args: argparse.Namespace) -> int:
    import asyncio
    import contextlib
    import os
    import tempfile
    import time

    from bridge.app import extract
    from bridge.errors import BridgeError, SenderError

    params = [("champActivite", code) for code in args.champ or ()]
    for item in args.param or ():
        name, equals, value = item.partition("=")
        if not equals:
            print(f"ror-bridge extract: --param takes NAME=VALUE, not {item!r}", file=sys.stderr)
            return 2
        params.append((name.strip(), value))
    overrides = {"upstream_url": args.upstream, "extraction_source": args.source}
    settings = _settings(args, **overrides)
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    interactive = sys.stderr.isatty() and not args.quiet
    shown_at, shown_phase = 0.0, ""
    sent = 0  # bytes of the document produced so far

    def show(progress: ExtractionProgress) -> None:
        nonlocal shown_at, shown_phase, sent
        sent = progress.bytes
        if args.quiet:
            return
        now = time.monotonic()
        if progress.phase == shown_phase and now - shown_at < (0.2 if interactive else 10.0):
            return
        shown_at, shown_phase = now, progress.phase
        line = _progress_line(progress)
        if interactive:
            print(f"\r{line[:160]:<160}", end="", file=sys.stderr, flush=True)
        else:
            print(line, file=sys.stderr, flush=True)

    temporary: Path | None = None
    try:
        if args.output is None:
            sink = sys.stdout.buffer
        else:
            # Written under a temporary name next to the target, renamed only once complete.
            descriptor, name = tempfile.mkstemp(
                prefix=f".{args.output.name}.", suffix=".part", dir=args.output.parent or Path()
            )
            temporary = Path(name)
            umask = os.umask(0)
            os.umask(umask)
            os.chmod(descriptor, 0o666 & ~umask)  # mkstemp makes it private; the result is an ordinary file
            sink = os.fdopen(descriptor, "wb")
        with contextlib.ExitStack() as stack:
            if args.output is not None:
                stack.enter_context(sink)
            progress = asyncio.run(
                extract(settings, sink, region=args.region, params=params, on_progress=show)
            )
            sink.flush()
        if temporary is not None:
            temporary.replace(args.output)
            temporary = None
    except BridgeError as error:
        if interactive:
            print(file=sys.stderr)
        print(f"ror-bridge extract: failed: {type(error).__name__}: {error.reason}", file=sys.stderr)
        if args.output is None and sent:
            print("ror-bridge extract: what was written to stdout is incomplete", file=sys.stderr)
        return 2 if isinstance(error, SenderError) else 1
    except KeyboardInterrupt:
        print("\nror-bridge extract: interrupted", file=sys.stderr)
        return 130
    finally:
        if temporary is not None:
            temporary.unlink(missing_ok=True)  # never leave a truncated document behind
    if interactive:
        print(file=sys.stderr)
    if not args.quiet:
        print(_summary(progress, args.output), file=sys.stderr)
    if not args.quiet and not any(progress.written.values()):  # a valid but empty document: say so
        where = f"region {args.region}" if args.region else "the national offer"
        criteria = " with these criteria" if params else ""
        print(
            f"ror-bridge extract: warning: the extraction is empty: no entity of {where}{criteria} was "
            "received from the upstream",
            file=sys.stderr,
        )
    return 0


def _progress_line(progress: ExtractionProgress) -> str:
    if progress.phase in ("starting", "fetching"):
        unit = "files" if progress.source == "export" else "pages"
        return (
            f"ror-bridge extract: fetching ({progress.source or '…'}): {progress.pages} {unit}, "
            f"{progress.received} resources received, {progress.spooled} kept, {progress.elapsed_s:.0f} s"
        )
    expected = sum(progress.expected.values()) or 1
    done = sum(progress.written.values())
    width = 30
    filled = min(width, width * done // expected)
    counts = " ".join(
        f"{d.value.removesuffix('Directory')} {progress.written[d]}/{progress.expected[d]}"
        for d in progress.written
    )
    bar = "#" * filled + "." * (width - filled)
    return (
        f"ror-bridge extract: [{bar}] {min(100, 100 * done // expected):3d}% "
        f"{counts}, {progress.bytes / 1e6:.1f} MB, {progress.elapsed_s:.0f} s"
    )


def _summary(progress: ExtractionProgress, output: Path | None) -> str:
    unit = "$export file(s)" if progress.source == "export" else "search page(s)"
    lines = [
        f"ror-bridge extract: {progress.request} from {progress.source}: {progress.pages} {unit}, "
        f"{progress.received} resources received, {progress.spooled} distinct",
        "  " + ", ".join(f"{directory.value} {count}" for directory, count in progress.written.items()),
        f"  {progress.bytes} bytes in {progress.elapsed_s:.1f} s -> {output or 'stdout'}",
    ]
    return "\n".join(lines)


def _selftest(args: argparse.Namespace) -> int:
    import yaml

    from bridge.compare.selftest import Outcome, csd_endpoint, load_scenarios, render_table, run_scenarios

    try:
        scenarios = load_scenarios(args.scenarios) if args.scenarios else load_scenarios()
    except (ValueError, OSError, yaml.YAMLError) as error:
        print(f"ror-bridge selftest: {error}", file=sys.stderr)
        return 2
    if args.only:
        scenarios = [s for s in scenarios if any(part in s.name for part in args.only)]
    target = csd_endpoint(args.target, args.region)
    print(f"ror-bridge selftest: {len(scenarios)} scenario(s) against {target}", file=sys.stderr)
    results = run_scenarios(target, scenarios, timeout_s=args.timeout)
    print(render_table(results))
    return 1 if any(r.outcome is Outcome.FAILED for r in results) else 0


def _compare(args: argparse.Namespace) -> int:
    import tempfile
    import time

    from bridge.compare import runs
    from bridge.compare.matching import Store, bound_sqlite_heap
    from bridge.compare.report_files import RunInfo, summary_table, write_reports
    from bridge.compare.rules import load_rules
    from bridge.errors import BridgeError
    from bridge.shipped import shipped_dir

    settings = _settings(args, mappings_dir=args.mappings_dir)
    interactive = sys.stderr.isatty() and not args.quiet
    shown_at = [0.0]

    def show(progress: runs.Progress) -> None:
        now = time.monotonic()
        if args.quiet or (now - shown_at[0] < (0.2 if interactive else 10.0) and progress.phase != "done"):
            return
        shown_at[0] = now
        width = 30
        filled = min(width, width * progress.done // progress.total) if progress.total else 0
        bar = "#" * filled + "." * (width - filled)
        done = (
            f"{progress.done}/{progress.total}"
            if args.mode != "documents"
            else f"{progress.done / 1e6:.0f} MB"
        )
        line = (
            f"ror-bridge compare {args.mode}: [{bar}] {done} {progress.phase}, "
            f"{progress.entities} entities, {progress.elapsed_s:.0f} s"
        )
        print(
            f"\r{line[:160]:<160}" if interactive else line, end="" if interactive else "\n", file=sys.stderr
        )

    try:
        rules = load_rules(settings.mappings_dir or shipped_dir("mappings"))
        bound_sqlite_heap()  # this process runs one comparison: SQLite's memory capped whatever the size
        with tempfile.TemporaryDirectory(prefix="ror-bridge-compare-", dir=args.work_dir) as work:
            store = Store(rules, Path(work) / "run.sqlite")
            try:
                if args.mode == "replay":
                    legacy, bridge = args.legacy, args.bridge
                    runs.replay(
                        store, args.requests, legacy, bridge, timeout_s=args.timeout, on_progress=show
                    )
                elif args.mode == "archive":
                    legacy, bridge = str(args.pairs), args.bridge
                    runs.archive(store, args.pairs, bridge, timeout_s=args.timeout, on_progress=show)
                elif args.mode == "documents":
                    legacy, bridge = str(args.legacy), str(args.bridge)
                    runs.documents(
                        store,
                        args.legacy,
                        args.bridge,
                        function=args.function,
                        region=args.region or "",
                        on_progress=show,
                    )
                else:
                    legacy, bridge = str(args.log), "shadow mode"
                    runs.shadow_log(store, args.log, on_progress=show)
                info = RunInfo(args.mode, legacy, bridge, args.min_parity)
                head = write_reports(store, info, args.out)
            finally:
                store.close()
    except BridgeError as error:
        if interactive:
            print(file=sys.stderr)
        print(f"ror-bridge compare {args.mode}: {error.reason}", file=sys.stderr)
        return 2
    if interactive:
        print(file=sys.stderr)
    if not args.quiet:
        print(summary_table(head), file=sys.stderr)
        print(f"ror-bridge compare: parity {head['parity']:.4f}; reports in {args.out}/", file=sys.stderr)
    if args.min_parity is not None and head["parity"] < args.min_parity:
        print(
            f"ror-bridge compare: parity {head['parity']:.4f} is below --min-parity {args.min_parity}",
            file=sys.stderr,
        )
        return 1
    return 0


def _add_compare(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    compare = commands.add_parser(
        "compare",
        help="legacy CSD answers side by side with the bridge's: report.html, report.json, junit.xml",
    )
    modes = compare.add_subparsers(dest="mode", required=True, metavar="MODE")

    def common(mode: argparse.ArgumentParser) -> None:
        mode.add_argument(
            "--out", type=Path, required=True, metavar="DIR", help="where the reports are written"
        )
        mode.add_argument(
            "--min-parity", type=float, metavar="P", help="exit 1 when the parity (0-1) is below P (CI gate)"
        )
        mode.add_argument("--mappings-dir", type=Path, help="a deployment's own mappings (its compare.yaml)")
        mode.add_argument(
            "--work-dir", type=Path, help="where the run's temporary store goes (default: temp dir)"
        )
        mode.add_argument("--quiet", action="store_true", help="no progress bar and no summary table")
        mode.add_argument("--config", type=Path, metavar="FILE", help="TOML settings file")
        mode.set_defaults(handler=_compare)

    replay = modes.add_parser("replay", help="send every CSD request of a folder to both services")
    replay.add_argument("--legacy", required=True, metavar="URL", help="the legacy CSD endpoint")
    replay.add_argument(
        "--bridge", required=True, metavar="URL", help="the bridge's CSD endpoint (…/csd[/REGION])"
    )
    replay.add_argument(
        "--requests", required=True, type=Path, metavar="DIR", help="folder of *.xml requests"
    )
    replay.add_argument("--timeout", type=float, default=120.0, help="seconds per answer (default 120)")
    common(replay)
    archive = modes.add_parser(
        "archive", help="archived legacy request/response pairs replayed against the bridge"
    )
    archive.add_argument(
        "--pairs", required=True, type=Path, metavar="DIR", help="NAME.request.xml + NAME.response.xml"
    )
    archive.add_argument(
        "--bridge", required=True, metavar="URL", help="the bridge's CSD endpoint (…/csd[/REGION])"
    )
    archive.add_argument("--timeout", type=float, default=120.0, help="seconds per answer (default 120)")
    common(archive)
    documents = modes.add_parser(
        "documents", help="two csd:CSD documents (e.g. a legacy extraction and GET /extraction)"
    )
    documents.add_argument("legacy", type=Path, metavar="LEGACY.xml")
    documents.add_argument("bridge", type=Path, metavar="BRIDGE.xml")
    documents.add_argument(
        "--function", default="extraction", help="label of the function (default extraction)"
    )
    documents.add_argument("--region", metavar="CODE", help="count every entity under this region")
    common(documents)
    shadow = modes.add_parser("shadow-log", help="summarise what shadow mode (BRIDGE_SHADOW_LOG) recorded")
    shadow.add_argument("log", type=Path, metavar="FILE")
    common(shadow)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ror-bridge",
        description="Bridge between legacy IHE CSD v2.4 SOAP clients and the national ROR FHIR API.",
    )
    parser.add_argument("--version", action="version", version=f"ror-bridge {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    serve = commands.add_parser("serve", help="run the bridge (default upstream: the embedded simulator)")
    serve.add_argument("--host", help="listen address (default 127.0.0.1, BRIDGE_HOST)")
    serve.add_argument("--port", type=int, help="listen port (default 8080, BRIDGE_PORT)")
    serve.add_argument(
        "--upstream",
        metavar="demo|URL",
        help="`demo` (default) or the national FHIR base (BRIDGE_UPSTREAM_URL)",
    )
    serve.add_argument(
        "--workers", type=int, metavar="N", help="worker processes on the port (default 1, BRIDGE_WORKERS)"
    )
    serve.add_argument(
        "--log-format", choices=("auto", "json", "text"), help="log lines (default auto, BRIDGE_LOG_FORMAT)"
    )
    serve.add_argument("--config", type=Path, metavar="FILE", help="TOML settings file")
    serve.add_argument(
        "--tls-cert", type=Path, metavar="PEM", help="server certificate: HTTPS (BRIDGE_TLS_CERT)"
    )
    serve.add_argument("--tls-key", type=Path, metavar="PEM", help="its private key (BRIDGE_TLS_KEY)")
    serve.add_argument(
        "--tls-client-ca",
        type=Path,
        metavar="PEM",
        help="CA bundle client certificates must chain to (BRIDGE_TLS_CLIENT_CA)",
    )
    serve.set_defaults(handler=_serve)

    simulator = commands.add_parser("simulator", help="run the ROR national API simulator alone")
    simulator.add_argument("--host", default="127.0.0.1", help="listen address (default 127.0.0.1)")
    simulator.add_argument("--port", type=int, default=8090, help="listen port (default 8090)")
    simulator.add_argument("--scale", type=int, default=300, help="number of offers (default 300)")
    simulator.add_argument("--seed", type=int, default=1, help="dataset seed (default 1)")
    simulator.add_argument(
        "--open", action="store_true", help="no access checks (no token, no Ror-* headers needed)"
    )
    simulator.add_argument(
        "--lenient",
        action="store_true",
        help="ignore unknown search parameters (default: 400 OperationOutcome)",
    )
    simulator.add_argument(
        "--max-results",
        type=int,
        default=10_000,
        metavar="N",
        help="results served per search; Bundle.total stays the real count (default 10000, as the ROR)",
    )
    simulator.add_argument(
        "--next-ttl",
        type=float,
        default=600,
        metavar="SECONDS",
        help="lifetime of a search's next links (default 600)",
    )
    simulator.add_argument(
        "--latency-ms", type=float, default=0, metavar="MS", help="latency added to every FHIR request"
    )
    simulator.add_argument(
        "--render-cache",
        type=int,
        default=0,
        metavar="N",
        help="resources kept serialised (built at start) for pages and $export files (default 0: none)",
    )
    simulator.add_argument(
        "--faults", default="", metavar="SPEC", help="fault spec, e.g. 'status(503)@p=0.1;next(loop)@n=3'"
    )
    simulator.add_argument(
        "--token-ttl", type=float, default=300, metavar="SECONDS", help="bearer token lifetime (default 300)"
    )
    simulator.add_argument(
        "--tls-cert", metavar="PEM", help="server certificate (turns TLS on, with --tls-key)"
    )
    simulator.add_argument("--tls-key", metavar="PEM", help="server private key")
    simulator.add_argument(
        "--tls-ca", metavar="PEM", help="CA of client certificates (mTLS at the token endpoint)"
    )
    simulator.add_argument(
        "--client-cert",
        action="append",
        default=[],
        metavar="SHA256[=CLIENT_ID]",
        help="allow a client certificate by fingerprint (default client bridge-demo); repeatable",
    )
    simulator.set_defaults(handler=_simulator)

    mappings = commands.add_parser("mappings", help="mapping tables")
    mappings_commands = mappings.add_subparsers(dest="mappings_command", required=True, metavar="ACTION")
    check = mappings_commands.add_parser("check", help="validate every mapping table and print its coverage")
    check.add_argument("--mappings-dir", type=Path, help="a deployment's own mappings directory")
    check.add_argument("--config", type=Path, metavar="FILE", help="TOML settings file")
    check.add_argument(
        "--profile-schema",
        type=Path,
        metavar="FILE",
        help="the official ROR CSD v2.4 schema to report coverage against "
        "(default: ../shared/reference/ror-v24/local/ next to a source checkout)",
    )
    check.set_defaults(handler=_mappings_check)

    translate = commands.add_parser(
        "translate", help="offline: a FHIR searchset or collection Bundle in, a CSD document out"
    )
    translate.add_argument("bundle", type=Path, metavar="BUNDLE.json", help="the FHIR Bundle (JSON)")
    translate.add_argument("-o", "--output", type=Path, metavar="FILE", help="write here instead of stdout")
    translate.add_argument("--mappings-dir", type=Path, help="a deployment's own mappings directory")
    translate.add_argument("--config", type=Path, metavar="FILE", help="TOML settings file")
    translate.set_defaults(handler=_translate)

    selftest = commands.add_parser(
        "selftest", help="run the conformance scenarios against a deployment of the bridge and print a table"
    )
    selftest.add_argument(
        "--target", required=True, metavar="URL", help="the bridge's base URL or its CSD endpoint (…/csd)"
    )
    selftest.add_argument("--region", metavar="CODE", help="test the regional endpoint /csd/CODE")
    selftest.add_argument("--scenarios", type=Path, metavar="FILE", help="a scenario catalogue of your own")
    selftest.add_argument("--only", action="append", metavar="TEXT", help="scenarios whose name has TEXT")
    selftest.add_argument("--timeout", type=float, default=60.0, help="seconds per request (default 60)")
    selftest.set_defaults(handler=_selftest)

    extract_command = commands.add_parser(
        "extract", help="write the national or a regional offer as one CSD document (as GET /extraction)"
    )
    extract_command.add_argument("--region", metavar="CODE", help="a legacy region of mappings/regions.csv")
    extract_command.add_argument(
        "--champ",
        action="append",
        metavar="CODE",
        help="champ d'activité (TRE_R227 code or system|code); repeatable: alternatives",
    )
    extract_command.add_argument(
        "--param",
        action="append",
        metavar="NAME=VALUE",
        help="any other offer-search criterion, e.g. categorieOrganisation=43 or departement=69; repeatable",
    )
    extract_command.add_argument(
        "-o", "--output", type=Path, metavar="FILE", help="write here, not to stdout"
    )
    extract_command.add_argument(
        "--upstream",
        metavar="demo|URL",
        help="`demo` (default) or the national FHIR base (BRIDGE_UPSTREAM_URL)",
    )
    extract_command.add_argument(
        "--source",
        choices=("auto", "export", "search"),
        help="$export, searches, or auto (default; BRIDGE_EXTRACTION_SOURCE)",
    )
    extract_command.add_argument("--quiet", action="store_true", help="no progress line and no summary")
    extract_command.add_argument("--config", type=Path, metavar="FILE", help="TOML settings file")
    extract_command.set_defaults(handler=_extract)
    _add_compare(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        code: int = args.handler(args)
    except ValidationError as error:
        print(f"ror-bridge: {describe_validation(error)}", file=sys.stderr)
        return 2
    except (ConfigurationError, FileNotFoundError) as error:
        print(f"ror-bridge: {error}", file=sys.stderr)
        return 2
    return code
