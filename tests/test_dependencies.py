"""Every runtime dependency in pyproject.toml is used by the package (a declared dependency that
nothing imports is a cost every user pays for nothing).

Used means imported somewhere under llamaswap_es/ (a lazy import inside a function counts), or,
for a database driver that SQLAlchemy loads itself, named as the driver of a URL scheme the
package builds (`sqlite+aiosqlite`, `postgresql+psycopg`).
"""

from __future__ import annotations

import ast
import functools
import re
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "llamaswap_es"

IMPORT_NAMES = {"pyyaml": "yaml", "prometheus-client": "prometheus_client", "psycopg": "psycopg"}
"""Distributions whose import name is not their project name, lower-cased."""


def _declared() -> list[str]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    requirements = [*project["dependencies"], *project["optional-dependencies"]["postgres"]]
    return [re.split(r"[\[<>=;! ]", r, maxsplit=1)[0].strip().lower() for r in requirements]


@functools.cache
def _imported_and_driven() -> tuple[set[str], set[str]]:
    imported: set[str] = set()
    drivers: set[str] = set()
    for path in PACKAGE.rglob("*.py"):
        source = path.read_text(encoding="utf-8")
        for node in ast.walk(ast.parse(source)):
            if isinstance(node, ast.Import):
                imported.update(alias.name.split(".")[0] for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                imported.add(node.module.split(".")[0])
            elif isinstance(node, ast.Constant) and isinstance(node.value, str):
                drivers.update(re.findall(r"^[a-z]+\+([a-z0-9_]+)$", node.value))
    return imported, drivers


@pytest.mark.parametrize("distribution", _declared())
def test_each_declared_dependency_is_used(distribution: str) -> None:
    imported, drivers = _imported_and_driven()
    name = IMPORT_NAMES.get(distribution, distribution.replace("-", "_"))
    assert name in imported or name in drivers, (
        f"pyproject.toml declares {distribution}, but llamaswap_es neither imports {name} nor "
        "uses it as a database driver: remove it or give it its job"
    )
