"""The `ror-bridge` command line: serve, simulator, mappings check, translate, selftest, extract.

Builds settings from flags (then `BRIDGE_*` variables, then `--config FILE`) and hands them to
`bridge.app`; it never builds the bridge's parts itself.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from pydantic import ValidationError

from bridge import __version__
from bridge.config import Settings, load_settings
from bridge.errors import ConfigurationError

if TYPE_CHECKING:
    from bridge.app import ExtractionProgress


def _settings(args: argparse.Namespace, **overrides: object) -> Settings:
    return load_settings(getattr(args, "config", None), **overrides)


def _serve(args: argparse.Namespace) -> int:
    import uvicorn

    from bridge.app import create_app, uvicorn_options

    settings = _settings(
        args,
        host=args.host,
        port=args.port,
        upstream_url=args.upstream,
        tls_cert=args.tls_cert,
        tls_key=args.tls_key,
        tls_client_ca=args.tls_client_ca,
    )
    logging.basicConfig(
        level=settings.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    try:
        tls = uvicorn_options(settings)  # the peer-aware protocol; HTTPS and client certificates when set
        app = create_app(settings)
    except ConfigurationError as error:
        print(f"ror-bridge serve: {error.reason}", file=sys.stderr)
        return 2
    where = "embedded ROR simulator (demo dataset)" if settings.is_demo else settings.upstream_url
    print(
        f"ror-bridge {__version__}: CSD endpoint http://{settings.host}:{settings.port}/csd", file=sys.stderr
    )
    print(f"  WSDL: http://{settings.host}:{settings.port}/csd?wsdl   upstream: {where}", file=sys.stderr)
    print(f"  extraction: http://{settings.host}:{settings.port}/extraction[/REGION]", file=sys.stderr)
    if settings.is_demo:
        print(f"  demo FHIR data: http://{settings.host}:{settings.port}/demo/fhir/metadata", file=sys.stderr)
    if settings.tls_enabled:
        print("  HTTPS (the URLs above with https://)", file=sys.stderr)
    uvicorn.run(
        app, host=settings.host, port=settings.port, log_level=settings.log_level, proxy_headers=True, **tls
    )
    return 0


def _simulator(args: argparse.Namespace) -> int:
    from bridge.simulator.access import TOKEN_PATH, normalise_fingerprint
    from bridge.simulator.app import SimulatorConfig, run_simulator
    from bridge.simulator.faults import FaultSpecError, parse_faults

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
    from bridge.app import check_mappings

    settings = _settings(args, mappings_dir=args.mappings_dir)
    print(check_mappings(settings))
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
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        code: int = args.handler(args)
    except (ConfigurationError, ValidationError, FileNotFoundError) as error:
        print(f"ror-bridge: {error}", file=sys.stderr)
        return 2
    return code
