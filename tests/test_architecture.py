"""The core stays pure (ARCHITECTURE §3, §5): every module under llamaswap_es/core imports only
`llamaswap_es.events.types`, `llamaswap_es.config.schedule`, the matrix language in
`llamaswap_es.config.matrix_dsl`, other core modules and pure parts
of the standard library - no asyncio, aiohttp, sqlalchemy, time, random, os, datetime or I/O.
The imports are read from the source (ast), so a lazy import inside a function counts too.

And imports run one way across the whole package (CONVENTIONS): web -> runtime/projections ->
core -> config/events -> the bottom (perf, errors, ...), with no circles; see FLOORS below."""

from __future__ import annotations

import ast
from dataclasses import dataclass
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


# --------------------------------------------------------------------------------------------
# Imports run one way (CONVENTIONS): every module of the package is read (ast, lazy imports
# too), each import of a package module is an edge, and the suite fails on an edge that climbs
# to a higher floor or on a circle of edges, naming the file, the line and the import.
# `pytest tests/test_architecture.py` checks it; `python -m tests.test_architecture` prints the
# floor-to-floor picture.

PACKAGE = "llamaswap_es"
PACKAGE_DIR = CORE.parent

FLOORS: tuple[tuple[str, frozenset[str]], ...] = (
    ("command line", frozenset({"__main__", "cli"})),
    ("web", frozenset({"web", "wol"})),
    ("runtime/projections", frozenset({"runtime", "projections", "replay"})),
    ("core", frozenset({"core"})),
    ("config/events", frozenset({"config", "events"})),
    (
        "bottom",
        frozenset(
            {"", "perf", "errors", "paths", "redaction", "resources", "demo", "deploy"}
            | {"fake_upstream"}
        ),
    ),
)
"""Highest first. A module may import its own floor or any floor below; "" is the package's
`__init__` (`__version__`). `fake_upstream` is a separate program that imports nothing of ours."""

KNOWN_CIRCLES: tuple[frozenset[str], ...] = ()
"""Circles allowed for now (none: the policy registry ended the last one). An entry here fails
`test_known_circles_still_exist` once its circle is gone."""


@dataclass(frozen=True, slots=True)
class Edge:
    """One import: `source` (a module, read from `path`) imports `target` at `line`."""

    source: str
    target: str
    path: Path
    line: int
    type_only: bool = False
    """Under `if TYPE_CHECKING:`: never run, so it closes no circle (state and the policy that
    reads it name each other's types), but it must still respect the floors."""

    def __str__(self) -> str:
        return f"{self.path}:{self.line} ({self.source}) imports {self.target}"


def package_modules(package_dir: Path, package: str) -> dict[str, Path]:
    """Every module of the package by dotted name (a package by its `__init__`)."""
    modules: dict[str, Path] = {}
    for path in sorted(package_dir.rglob("*.py")):
        parts = [package, *path.relative_to(package_dir).with_suffix("").parts]
        if parts[-1] == "__init__":
            parts.pop()
        modules[".".join(parts)] = path
    return modules


def import_edges(package_dir: Path, package: str) -> list[Edge]:
    """Every import of one of the package's modules by another, with its file and line."""
    modules = package_modules(package_dir, package)
    root = package_dir.parent

    def known(name: str) -> str:
        while name not in modules:  # `from pkg.mod import function` names a module's attribute
            name = name.rpartition(".")[0]
        return name

    edges: list[Edge] = []
    for source, path in modules.items():
        here = source if path.name == "__init__.py" else source.rpartition(".")[0]
        tree = ast.parse(path.read_text(), filename=str(path))
        type_only = {
            id(inner)
            for block in ast.walk(tree)
            if isinstance(block, ast.If) and _is_type_checking(block.test)
            for statement in block.body
            for inner in ast.walk(statement)
        }
        for node in ast.walk(tree):
            names: list[str] = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    base = here.split(".")[: len(here.split(".")) - node.level + 1]
                    module = ".".join([*base, *([node.module] if node.module else [])])
                else:
                    module = node.module or ""
                names = [f"{module}.{alias.name}" for alias in node.names]
            for name in names:
                if name == package or name.startswith(package + "."):
                    target = known(name)
                    if target != source:
                        edges.append(
                            Edge(
                                source, target, path.relative_to(root), node.lineno,
                                type_only=id(node) in type_only,
                            )
                        )  # fmt: skip
    return edges


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def floor_of(module: str, package: str = PACKAGE) -> int | None:
    """The index of the module's floor in FLOORS (0 is the top); None if it has none."""
    top = module.removeprefix(package).removeprefix(".").split(".")[0]
    return next((i for i, (_, names) in enumerate(FLOORS) if top in names), None)


def upward_imports(edges: list[Edge], package: str = PACKAGE) -> list[str]:
    """The edges that climb: a module importing one on a higher floor."""
    bad = []
    for edge in edges:
        source, target = floor_of(edge.source, package), floor_of(edge.target, package)
        if source is not None and target is not None and target < source:
            bad.append(
                f"{edge}: the {FLOORS[source][0]} floor may not import the {FLOORS[target][0]} "
                "floor above it"
            )
    return bad


def import_circles(edges: list[Edge]) -> list[frozenset[str]]:
    """The sets of modules that import each other round a circle (strongly connected, > 1)."""
    graph: dict[str, set[str]] = {}
    for edge in edges:
        if edge.type_only:
            continue
        graph.setdefault(edge.source, set()).add(edge.target)
        graph.setdefault(edge.target, set())
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    circles: list[frozenset[str]] = []

    def visit(node: str) -> None:  # Tarjan; the package's depth is far below the recursion limit
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in sorted(graph[node]):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            members = set()
            while True:
                member = stack.pop()
                on_stack.discard(member)
                members.add(member)
                if member == node:
                    break
            if len(members) > 1:
                circles.append(frozenset(members))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return circles


def describe_circle(circle: frozenset[str], edges: list[Edge]) -> str:
    inside = [str(e) for e in edges if e.source in circle and e.target in circle]
    return "import circle among " + ", ".join(sorted(circle)) + ":\n    " + "\n    ".join(inside)


EDGES = import_edges(PACKAGE_DIR, PACKAGE)


def test_every_module_is_on_a_floor() -> None:
    modules = package_modules(PACKAGE_DIR, PACKAGE)
    homeless = sorted(m for m in modules if floor_of(m) is None)
    assert not homeless, f"put these in a floor of FLOORS (tests/test_architecture.py): {homeless}"


def test_no_import_climbs_to_a_higher_floor() -> None:
    bad = upward_imports(EDGES)
    assert not bad, "imports that run upward:\n" + "\n".join(bad)


def test_no_import_circles() -> None:
    new = [c for c in import_circles(EDGES) if c not in KNOWN_CIRCLES]
    assert not new, "\n".join(describe_circle(c, EDGES) for c in new)


def test_known_circles_still_exist() -> None:
    found = import_circles(EDGES)
    gone = [sorted(c) for c in KNOWN_CIRCLES if c not in found]
    assert not gone, f"these circles are gone: remove them from KNOWN_CIRCLES: {gone}"


def test_the_checker_catches_circles_and_upward_imports(tmp_path: Path) -> None:
    package = tmp_path / "llamaswap_es"
    for folder in ("core", "events", "web"):
        (package / folder).mkdir(parents=True)
        (package / folder / "__init__.py").write_text("")
    (package / "__init__.py").write_text("")
    (package / "events" / "reader.py").write_text(
        "def open_log():\n    from llamaswap_es.events.bundle import BundleReader\n"
    )
    (package / "events" / "bundle.py").write_text("from .reader import open_log\n")
    (package / "core" / "state.py").write_text("from llamaswap_es.web import app\n")
    (package / "web" / "app.py").write_text("from llamaswap_es.core import state\n")
    edges = import_edges(package, "llamaswap_es")

    assert upward_imports(edges) == [
        "llamaswap_es/core/state.py:1 (llamaswap_es.core.state) imports llamaswap_es.web.app: "
        "the core floor may not import the web floor above it"
    ]
    circles = import_circles(edges)
    assert sorted(sorted(c) for c in circles) == [
        ["llamaswap_es.core.state", "llamaswap_es.web.app"],
        ["llamaswap_es.events.bundle", "llamaswap_es.events.reader"],
    ]
    events_circle = next(c for c in circles if "llamaswap_es.events.reader" in c)
    assert describe_circle(events_circle, edges) == (
        "import circle among llamaswap_es.events.bundle, llamaswap_es.events.reader:\n"
        "    llamaswap_es/events/bundle.py:1 (llamaswap_es.events.bundle) imports "
        "llamaswap_es.events.reader\n"
        "    llamaswap_es/events/reader.py:2 (llamaswap_es.events.reader) imports "
        "llamaswap_es.events.bundle"
    )


def floor_picture(edges: list[Edge]) -> str:
    """Which top-level folder imports which, by floor: the picture the tests above enforce."""
    lines = []
    for floor, names in FLOORS:
        lines.append(f"{floor}:")
        for name in sorted(names):
            targets = sorted(
                {
                    e.target.removeprefix(PACKAGE).removeprefix(".").split(".")[0] or "(package)"
                    for e in edges
                    if e.source.removeprefix(PACKAGE).removeprefix(".").split(".")[0] == name
                }
                - {name}
            )
            lines.append(f"  {name or '(package)'} -> {', '.join(targets) or '-'}")
    return "\n".join(lines)


if __name__ == "__main__":
    print(floor_picture(EDGES))
    for problem in upward_imports(EDGES):
        print("UPWARD", problem)
    for circle in import_circles(EDGES):
        known = " (known: KNOWN_CIRCLES)" if circle in KNOWN_CIRCLES else ""
        print("CIRCLE" + known, describe_circle(circle, EDGES))


WEB = CORE.parent / "web"


def _door_violations(source: str) -> list[str]:
    """What in one web module goes around the scheduler's door: naming `RunLoop`, or reaching
    for a service's `.loop` (`SwapService.door` hands the loop out as a `SchedulerDoor`)."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Name) and node.id == "RunLoop":
            found.append(f"line {node.lineno}: RunLoop")
        elif isinstance(node, ast.alias) and node.name == "RunLoop":
            found.append("imports RunLoop")
        elif (
            isinstance(node, ast.Attribute)
            and node.attr == "loop"
            and isinstance(node.value, ast.Attribute)
            and node.value.attr == "service"
        ):
            found.append(f"line {node.lineno}: service.loop")
    return found


def test_web_talks_to_the_scheduler_only_through_its_door() -> None:
    """One door (issue 14): web/ submits inputs, awaits decisions and reads the committed view
    through `SchedulerDoor`; mypy holds it to that surface, this test to that type."""
    offenders = {
        path.name: found
        for path in sorted(WEB.glob("*.py"))
        if (found := _door_violations(path.read_text(encoding="utf-8")))
    }
    assert offenders == {}


def test_the_door_check_catches_a_way_around() -> None:
    around = "from llamaswap_es.runtime.loop import RunLoop\nx = ctx.service.loop.state\n"
    assert _door_violations(around) == ["imports RunLoop", "line 2: service.loop"]
