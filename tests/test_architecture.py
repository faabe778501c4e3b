"""The core stays pure (ARCHITECTURE §3, §5): every module under llamaswap_es/core imports only
`llamaswap_es.events.types`, `llamaswap_es.config.schedule`, the matrix language in
`llamaswap_es.config.matrix_dsl`, other core modules and pure parts
of the standard library - no asyncio, aiohttp, sqlalchemy, time, random, os, datetime or I/O.
The imports are read from the source (ast), so a lazy import inside a function counts too."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

CORE = Path(__file__).resolve().parent.parent / "llamaswap_es" / "core"

ALLOWED_PROJECT = (
    "llamaswap_es.core",
    "llamaswap_es.events.types",
    "llamaswap_es.config.schedule",
    "llamaswap_es.config.matrix_dsl",
)
ALLOWED_STDLIB = {
    "__future__",
    "collections",
    "dataclasses",
    "enum",
    "functools",
    "hashlib",
    "heapq",
    "itertools",
    "json",
    "re",
    "typing",
    "bisect",
    "operator",
}


def _imports(path: Path) -> list[tuple[int, str]]:
    tree = ast.parse(path.read_text(), filename=str(path))
    found: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.extend((node.lineno, alias.name) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative import: inside the core package
                found.append((node.lineno, "llamaswap_es.core"))
            else:
                module = node.module or ""
                if module == "llamaswap_es":
                    found.extend((node.lineno, f"llamaswap_es.{a.name}") for a in node.names)
                else:
                    found.append((node.lineno, module))
        elif isinstance(node, ast.Call) and getattr(node.func, "id", None) in (
            "__import__",
            "open",
            "eval",
            "exec",
        ):
            found.append((node.lineno, f"<call {node.func.id}>"))
    return found


def _allowed(module: str) -> bool:
    if module.startswith("llamaswap_es"):
        return any(module == p or module.startswith(p + ".") for p in ALLOWED_PROJECT)
    return module.split(".")[0] in ALLOWED_STDLIB


MODULES = sorted(CORE.rglob("*.py"))


def test_core_modules_exist() -> None:
    assert len(MODULES) >= 10


@pytest.mark.parametrize("path", MODULES, ids=lambda p: p.name)
def test_core_imports_only_pure_modules(path: Path) -> None:
    bad = [f"line {line}: {module}" for line, module in _imports(path) if not _allowed(module)]
    assert not bad, f"{path.relative_to(CORE.parent.parent)} imports what the core may not: {bad}"


def test_the_checker_catches_forbidden_imports(tmp_path: Path) -> None:
    sample = tmp_path / "bad.py"
    sample.write_text(
        "import time\nfrom os import path\nimport asyncio.tasks\n"
        "from llamaswap_es.runtime import loop\nfrom llamaswap_es import web\n"
        "def f():\n    import random\n    return open('x')\n"
    )
    bad = [m for _, m in _imports(sample) if not _allowed(m)]
    assert bad == [
        "time",
        "os",
        "asyncio.tasks",
        "llamaswap_es.runtime",
        "llamaswap_es.web",
        "random",
        "<call open>",
    ]
