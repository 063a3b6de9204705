"""The `ror-bridge` command line: serve, simulator, mappings check.

Builds settings from flags (then `BRIDGE_*` variables, then `--config FILE`) and hands them to
`bridge.app`; it never builds the bridge's parts itself.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

from pydantic import ValidationError

from bridge import __version__
from bridge.config import Settings, load_settings
from bridge.errors import ConfigurationError


def _settings(args: argparse.Namespace, **overrides: object) -> Settings:
    return load_settings(getattr(args, "config", None), **overrides)


def _serve(args: argparse.Namespace) -> int:
    import uvicorn

    from bridge.app import create_app

    settings = _settings(args, host=args.host, port=args.port, upstream_url=args.upstream)
    logging.basicConfig(
        level=settings.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    app = create_app(settings)
    where = "embedded ROR simulator (demo dataset)" if settings.is_demo else settings.upstream_url
    print(
        f"ror-bridge {__version__}: CSD endpoint http://{settings.host}:{settings.port}/csd", file=sys.stderr
    )
    print(f"  WSDL: http://{settings.host}:{settings.port}/csd?wsdl   upstream: {where}", file=sys.stderr)
    if settings.is_demo:
        print(f"  demo FHIR data: http://{settings.host}:{settings.port}/demo/fhir/metadata", file=sys.stderr)
    uvicorn.run(app, host=settings.host, port=settings.port, log_level=settings.log_level, proxy_headers=True)
    return 0


def _simulator(args: argparse.Namespace) -> int:
    from bridge.simulator.app import SimulatorConfig, run_simulator

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    print(
        f"ROR simulator: http://{args.host}:{args.port}/ws-diffusion-fhir/metadata "
        f"(scale {args.scale}, seed {args.seed})",
        file=sys.stderr,
    )
    run_simulator(SimulatorConfig(scale=args.scale, seed=args.seed), args.host, args.port)
    return 0


def _mappings_check(args: argparse.Namespace) -> int:
    from bridge.app import check_mappings

    settings = _settings(args, mappings_dir=args.mappings_dir)
    print(check_mappings(settings))
    return 0


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
    serve.set_defaults(handler=_serve)

    simulator = commands.add_parser("simulator", help="run the ROR national API simulator alone")
    simulator.add_argument("--host", default="127.0.0.1", help="listen address (default 127.0.0.1)")
    simulator.add_argument("--port", type=int, default=8090, help="listen port (default 8090)")
    simulator.add_argument("--scale", type=int, default=300, help="number of offers (default 300)")
    simulator.add_argument("--seed", type=int, default=1, help="dataset seed (default 1)")
    simulator.set_defaults(handler=_simulator)

    mappings = commands.add_parser("mappings", help="mapping tables")
    mappings_commands = mappings.add_subparsers(dest="mappings_command", required=True, metavar="ACTION")
    check = mappings_commands.add_parser("check", help="validate every mapping table and print its coverage")
    check.add_argument("--mappings-dir", type=Path, help="a deployment's own mappings directory")
    check.add_argument("--config", type=Path, metavar="FILE", help="TOML settings file")
    check.set_defaults(handler=_mappings_check)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        code: int = args.handler(args)
    except (ConfigurationError, ValidationError, FileNotFoundError) as error:
        print(f"ror-bridge: {error}", file=sys.stderr)
        return 2
    return code
