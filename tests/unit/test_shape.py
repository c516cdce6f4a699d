"""Modules stay small and functions short, so a newcomer can read one at a time: no module of
the production packages over 400 lines, no function over 60 lines except declarative tables
(a list of metrics, say), which are named here."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).parents[2]
PACKAGES = ("edge", "origin", "ring", "skyrelay")
MAX_MODULE_LINES = 400
MAX_FUNCTION_LINES = 60
# Functions that only declare data, one entry after another.
TABLES = frozenset({"edge/metrics.py:EdgeMetrics.__init__"})


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
