"""Modules stay small and functions short, so a newcomer can read one at a time: no module of
the production packages over 400 lines, no function over 60 lines except declarative tables
(a list of metrics, say), which are named here. And every pure module has a unit test module
named after it."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).parents[2]
PACKAGES = ("edge", "origin", "ring", "skyrelay")
MAX_MODULE_LINES = 400
MAX_FUNCTION_LINES = 60
# Functions that only declare data, one entry after another.
TABLES = frozenset({"edge/metrics.py:EdgeMetrics.__init__"})
# Imports that make a module do I/O (or drive something that does): it is not pure.
IO_MODULES = frozenset(
    {
        "asyncio",
        "aiohttp",
        "aiohttp_sse",
        "aiocache",
        "socket",
        "ssl",
        "subprocess",
        "os",
        "signal",
        "sqlite3",
        "shutil",
        "threading",
        "multiprocessing",
        "selectors",
        "uvloop",
    }
)


def sources() -> list[Path]:
    """Every source file once: not again through the links skyrelay/edge -> ../edge."""
    files = (p for pkg in PACKAGES for p in (ROOT / pkg).rglob("*.py"))
    return sorted(p for p in files if p.resolve() == p.absolute())


def functions(tree: ast.AST, prefix: str = "") -> list[tuple[str, int]]:
    """(qualified name, lines) of every function, methods included."""
    found: list[tuple[str, int]] = []
    for node in ast.iter_child_nodes(tree):
        if isinstance(node, ast.ClassDef):
            found += functions(node, f"{prefix}{node.name}.")
        elif isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            assert node.end_lineno is not None
            found.append((f"{prefix}{node.name}", node.end_lineno - node.lineno + 1))
            found += functions(node, f"{prefix}{node.name}.")
    return found


def test_no_module_is_over_400_lines() -> None:
    long = {
        str(p.relative_to(ROOT)): n
        for p in sources()
        if (n := len(p.read_text().splitlines())) > MAX_MODULE_LINES
    }
    assert long == {}


def test_no_function_is_over_60_lines_but_declarative_tables() -> None:
    long = {}
    for path in sources():
        name = str(path.relative_to(ROOT))
        for function, lines in functions(ast.parse(path.read_text())):
            if lines > MAX_FUNCTION_LINES and f"{name}:{function}" not in TABLES:
                long[f"{name}:{function}"] = lines
    assert long == {}


def test_the_tables_named_here_still_exist() -> None:
    names = {
        f"{p.relative_to(ROOT)}:{function}"
        for p in sources()
        for function, _ in functions(ast.parse(p.read_text()))
    }
    assert names >= TABLES


def imported_roots(tree: ast.AST) -> set[str]:
    roots: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            roots |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            roots.add(node.module.split(".")[0])
    return roots


def has_logic(tree: ast.AST) -> bool:
    """A function that is neither a dunder nor an interface stub: declarations need no test."""
    for node in ast.walk(tree):
        if isinstance(node, ast.ClassDef) and any(
            isinstance(b, ast.Name) and b.id == "Protocol" for b in node.bases
        ):
            node.body = []  # an interface: its stubs are checked by mypy, not tests
    return any(
        isinstance(node, ast.FunctionDef) and not node.name.startswith("__")
        for node in ast.walk(tree)
    )


def test_every_pure_module_has_a_unit_test_named_after_it() -> None:
    untested = []
    for path in sources():
        if path.name.startswith("__"):
            continue
        tree = ast.parse(path.read_text())
        if imported_roots(tree) & IO_MODULES or not has_logic(tree):
            continue
        if any(isinstance(n, ast.AsyncFunctionDef) for n in ast.walk(tree)):
            continue
        names = (f"test_{path.stem}.py", f"test_{path.parent.name}_{path.stem}.py")
        if not any((ROOT / "tests" / "unit" / name).exists() for name in names):
            untested.append(str(path.relative_to(ROOT)))
    assert untested == []
