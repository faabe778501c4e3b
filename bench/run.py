"""Run a benchmark: `python bench/run.py NAME [ARGS…]` calls bench/bench_NAME.py's `main(args)`."""

from __future__ import annotations

import importlib
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def main() -> None:
    if len(sys.argv) < 2:
        names = sorted(p.stem.removeprefix("bench_") for p in ROOT.glob("bench/bench_*.py"))
        sys.exit(f"usage: python bench/run.py NAME [ARGS…]; NAME is one of {names}")
    sys.path.insert(0, str(ROOT))
    name = sys.argv[1]
    aliases = {"crashloop": ("eventlog", ["--only-crash"])}
    module_name, extra = aliases.get(name, (name, []))
    module = importlib.import_module(f"bench.bench_{module_name}")
    module.main(extra + sys.argv[2:])


if __name__ == "__main__":
    main()
