"""Run one benchmark: `python bench/run.py NAME` imports bench/bench_NAME.py and calls main()."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print("usage: python bench/run.py NAME   (runs bench/bench_NAME.py)", file=sys.stderr)
        return 2
    path = Path(__file__).resolve().parent / f"bench_{argv[1]}.py"
    if not path.is_file():
        print(f"no benchmark named {argv[1]!r}: {path} does not exist", file=sys.stderr)
        return 2
    sys.path.insert(0, str(path.parent.parent))
    spec = importlib.util.spec_from_file_location(f"bench_{argv[1]}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    result = module.main()
    return result if isinstance(result, int) else 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv))
