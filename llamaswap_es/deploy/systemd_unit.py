"""`llamaswap-es systemd-unit`: the unit file shipped with the package, filled in for this install.

The template (`llamaswap-es.service` beside this module) is what docs/deploy.md explains:
`Type=notify` (READY=1 after recovery, WATCHDOG=1 while the run loop turns, STOPPING=1),
`Restart=on-failure`, `WatchdogSec=`, `KillMode=process`. This command puts in the command line
of the `llamaswap-es` that runs it (so a venv or pipx install works as is), with absolute paths
for the files given, and `User=` or a user unit's target.
"""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path

from llamaswap_es.resources import package_file

HELP = "print a systemd unit file for this install (see docs/deploy.md)"
TEMPLATE = "llamaswap-es.service"


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", metavar="FILE", help="the config.yaml the service serves")
    parser.add_argument("--config-dir", metavar="DIR", help="also merge *.yaml in DIR")
    parser.add_argument("--listen", metavar="HOST:PORT", help="default 127.0.0.1:8080")
    parser.add_argument("--db", metavar="PATH", help="the event log (default: the user's)")
    who = parser.add_mutually_exclusive_group()
    who.add_argument("--user", metavar="NAME", help="run as this user (a system unit)")
    who.add_argument(
        "--user-unit", action="store_true",
        help="a unit for `systemctl --user` (WantedBy=default.target, no User=)",
    )  # fmt: skip


def server_command() -> list[str]:
    """How to start this install's server: its `llamaswap-es` script when it sits beside the
    interpreter (a venv, pipx), else `python -m llamaswap_es` with this interpreter."""
    python = Path(sys.executable).absolute()
    script = python.parent / "llamaswap-es"
    return [str(script)] if script.is_file() else [str(python), "-m", "llamaswap_es"]


def systemd_quote(argv: list[str]) -> str:
    """A command line for `ExecStart=`: shell-style quoting, and `%` doubled (systemd's
    specifier character)."""
    return " ".join(shlex.quote(arg) for arg in argv).replace("%", "%%")


def unit_text(
    argv: list[str], *, user: str | None = None, user_unit: bool = False, template: str = ""
) -> str:
    text = template or package_file("deploy", TEMPLATE).read_text(encoding="utf-8")
    return (
        text.replace("{{exec_start}}", systemd_quote(argv))
        .replace("{{user_line}}", f"User={user}\n" if user else "")
        .replace("{{wanted_by}}", "default.target" if user_unit else "multi-user.target")
    )


def run(args: argparse.Namespace) -> int:
    argv = server_command()
    for flag, value in (("--config", args.config), ("--config-dir", args.config_dir)):
        if value:
            argv += [flag, str(Path(value).expanduser().absolute())]
    if args.listen:
        argv += ["--listen", args.listen]
    if args.db:
        argv += ["--db", str(Path(args.db).expanduser().absolute())]
    sys.stdout.write(unit_text(argv, user=args.user, user_unit=args.user_unit))
    return 0
