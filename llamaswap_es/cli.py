"""The `llamaswap-es` command line (placeholder until the foundation issue fills it in)."""

from __future__ import annotations

import sys

from llamaswap_es import __version__


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if args in (["--version"], ["-version"]):
        print(f"llamaswap-es {__version__}")
        return 0
    print("llamaswap-es: not implemented yet", file=sys.stderr)
    return 2
