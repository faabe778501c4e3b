"""The `llamaswap-es` command line.

llama-swap's flags work in both spellings (`-config` and `--config`, `-flag=value` too) so that
switching is a change of one command. Without a subcommand the server runs; subcommands
(`check-config`, `replay`, `rebuild-projections`, `wol-proxy`) each register with one
`add_subcommand` line in `build_parser`.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections.abc import Callable

from llamaswap_es import __version__
from llamaswap_es.config import build_schedule, config_as_json, load_config
from llamaswap_es.deploy import systemd_unit
from llamaswap_es.errors import ConfigError, error_line
from llamaswap_es.paths import default_db_path
from llamaswap_es.projections import rebuild as rebuild_projections
from llamaswap_es.replay import cli as replay_cli
from llamaswap_es.runtime.policy_loader import load_policies
from llamaswap_es.web.serve_options import ServeOptions, parse_listen
from llamaswap_es.wol import command as wol_command

DEFAULT_LISTEN = "127.0.0.1:8080"
DEFAULT_TLS_LISTEN = "127.0.0.1:8443"
EXIT_USAGE = 2
_GO_BOOL_FLAG = re.compile(r"^--?(watch-config|version)=(.*)$")
_TRUE = {"1", "t", "T", "true", "TRUE", "True"}


def run_server(options: ServeOptions) -> int:
    """Run the server until it is stopped; returns the exit status."""
    from llamaswap_es.web.server import run_server as serve  # the web stack loads only to serve

    return serve(options)


# --------------------------------------------------------------------------------------------
# parsing


def _add_config_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "-config", "--config", dest="config_file", metavar="FILE",
        help="llama-swap config.yaml (none: the built-in demo models)",
    )  # fmt: skip
    parser.add_argument(
        "-config-dir", "--config-dir", dest="config_dir", metavar="DIR",
        help="also merge every *.yml/*.yaml in DIR, as llama-swap does",
    )  # fmt: skip


def _add_serve_flags(parser: argparse.ArgumentParser) -> None:
    _add_config_flags(parser)
    parser.add_argument(
        "-listen", "--listen", metavar="HOST:PORT", help=f"default {DEFAULT_LISTEN}"
    )
    parser.add_argument(
        "-watch-config", "--watch-config", action="store_true",
        help="reload when the configuration files change (polled every 2 s)",
    )  # fmt: skip
    parser.add_argument("-tls-cert-file", "--tls-cert-file", metavar="FILE", help="serve HTTPS")
    parser.add_argument("-tls-key-file", "--tls-key-file", metavar="FILE", help="its key")
    parser.add_argument("-version", "--version", action="store_true", help="print the version")
    parser.add_argument("--db", metavar="PATH", help=f"event log (default {default_db_path()})")
    parser.add_argument(
        "--log-format", choices=("text", "json"), default="text",
        help="proxy log lines: text (llama-swap's, with a timestamp; default) or json (one "
        "object per line: time, level, message, request_id, model)",
    )  # fmt: skip


Handler = Callable[[argparse.Namespace], int]


def add_subcommand(
    subparsers: argparse._SubParsersAction,
    name: str,
    help_text: str,
    configure: Callable[[argparse.ArgumentParser], None],
    handler: Handler,
) -> None:
    """Register a subcommand: its flags and the function that runs it."""
    sub = subparsers.add_parser(name, help=help_text, allow_abbrev=False)
    configure(sub)
    sub.set_defaults(handler=handler)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="llamaswap-es",
        description="An event-sourced, llama-swap-compatible model-swapping proxy.",
        allow_abbrev=False,
    )
    _add_serve_flags(parser)
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    add_subcommand(
        subparsers, "check-config", "validate a configuration", _add_config_flags, check_config
    )
    add_subcommand(
        subparsers, "config-schema", "print the configuration's JSON Schema",
        _add_schema_flags, config_schema,
    )  # fmt: skip
    add_subcommand(subparsers, "replay", replay_cli.HELP, replay_cli.configure, replay_cli.run)
    add_subcommand(
        subparsers, "rebuild-projections", "rebuild from the log", *rebuild_projections.SUBCOMMAND
    )
    add_subcommand(subparsers, "wol-proxy", wol_command.HELP, *wol_command.SUBCOMMAND)
    add_subcommand(
        subparsers, "systemd-unit", systemd_unit.HELP, systemd_unit.configure, systemd_unit.run
    )
    return parser


def _normalise_go_flags(argv: list[str]) -> list[str]:
    """Go's `-flag=true|false` for boolean flags → argparse's bare flag (or nothing)."""
    out = []
    for arg in argv:
        match = _GO_BOOL_FLAG.match(arg)
        if match:
            if match.group(2) in _TRUE:
                out.append("--" + match.group(1))
            continue
        out.append(arg)
    return out


def serve_options(args: argparse.Namespace) -> ServeOptions:
    """Checks llama-swap makes at start-up; raises ValueError with the message to show."""
    if bool(args.tls_cert_file) != bool(args.tls_key_file):
        raise ValueError("both -tls-cert-file and -tls-key-file must be provided for TLS")
    tls = bool(args.tls_cert_file)
    host, port = parse_listen(args.listen or (DEFAULT_TLS_LISTEN if tls else DEFAULT_LISTEN))
    return ServeOptions(
        config_file=args.config_file,
        config_dir=args.config_dir,
        listen_host=host,
        listen_port=port,
        watch_config=bool(args.watch_config),
        tls_cert_file=args.tls_cert_file,
        tls_key_file=args.tls_key_file,
        db_path=args.db,
        log_format=args.log_format,
    )


def _config_error(error: ConfigError) -> int:
    print(error_line(error.message), file=sys.stderr)
    if error.source:
        print(f"  file: {error.source}", file=sys.stderr)
    if error.key_path:
        print(f"  key:  {error.key_path}", file=sys.stderr)
    return EXIT_USAGE


def check_config(args: argparse.Namespace) -> int:
    """Load, validate and print the normalised configuration as JSON (keys masked)."""
    try:
        config = load_config(args.config_file, args.config_dir)
        build_schedule(config)  # a group naming no model would stop the server: say so now
    except ConfigError as error:
        return _config_error(error)
    for warning in config.warnings:  # accepted, but worth saying: on stderr, once each
        print(f"llamaswap-es: warning: {warning}", file=sys.stderr)
    print(json.dumps(config_as_json(config), indent=2, ensure_ascii=False))
    return 0


def _add_schema_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--update", action="store_true",
        help="rewrite the checked-in config-schema.json files instead of printing",
    )  # fmt: skip


def config_schema(args: argparse.Namespace) -> int:
    """Print config-schema.json (generated from the config models), or rewrite the copies."""
    from llamaswap_es.config.json_schema import schema_text, update_files

    if args.update:
        for path in update_files():
            print(f"wrote {path}")
        return 0
    sys.stdout.write(schema_text())
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(_normalise_go_flags(sys.argv[1:] if argv is None else argv))
    if args.version and getattr(args, "handler", None) is None:
        print(f"llamaswap-es {__version__}")
        return 0
    try:  # every command may run a reducer, or check a config that names a plugin's policy
        load_policies()
    except ValueError as error:  # PolicyLoadError, PolicyRegistryError: they name the plugin
        print(f"llamaswap-es: {error}", file=sys.stderr)
        return EXIT_USAGE
    if getattr(args, "handler", None) is not None:
        return args.handler(args)
    try:
        options = serve_options(args)
    except ValueError as error:
        print(error_line(error), file=sys.stderr)
        return EXIT_USAGE
    return run_server(options)
