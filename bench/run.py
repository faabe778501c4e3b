"""Run a benchmark: `python bench/run.py NAME [ARGS…]` calls bench/bench_NAME.py's `main(args)`.

Each benchmark prints a final JSON line of figures; record them in docs/benchmarks.md.
"""

from __future__ import annotations

import importlib
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
ALIASES = {"crashloop": ("eventlog", ["--only-crash"])}


def main() -> int:
    names = sorted(p.stem.removeprefix("bench_") for p in ROOT.glob("bench/bench_*.py"))
    if len(sys.argv) < 2:
        print(f"usage: python bench/run.py NAME [ARGS…]; NAME is one of {names}", file=sys.stderr)
        return 2
    name = sys.argv[1]
    module_name, extra = ALIASES.get(name, (name, []))
    if module_name not in names:
        print(f"no benchmark named {name!r}; NAME is one of {names}", file=sys.stderr)
        return 2
    sys.path.insert(0, str(ROOT))
    module = importlib.import_module(f"bench.bench_{module_name}")
    result = module.main(extra + sys.argv[2:])
    return result if isinstance(result, int) else 0


if __name__ == "__main__":
    raise SystemExit(main())
