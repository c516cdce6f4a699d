"""The import graph of the production packages has no cycle, counting every import: at module
level, inside functions, and under ``TYPE_CHECKING``. A cycle means two modules know each
other's insides; the shared part belongs in a module both import."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).parents[2]
PACKAGES = ("edge", "origin", "ring", "skyrelay")
# Top-level folders installed under the one import name.
MAPPED = ("edge", "origin", "ring", "benchmarks")


def source_files(packages: tuple[str, ...] = PACKAGES) -> list[Path]:
    """Every source file once: not again through the links skyrelay/edge -> ../edge."""
    files = (p for pkg in packages for p in (ROOT / pkg).rglob("*.py"))
    return sorted(p for p in files if p.resolve() == p.absolute())


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    if parts[0] in MAPPED:
        parts.insert(0, "skyrelay")
    return ".".join(parts)


def imports_of(path: Path, known: set[str]) -> set[str]:
    """The project modules ``path`` imports (``from a import b`` counts ``a.b`` when ``b`` is a
    module, else ``a``)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names if alias.name in known)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            for alias in node.names:
                candidate = f"{node.module}.{alias.name}"
                if candidate in known:
                    found.add(candidate)
                elif node.module in known:
                    found.add(node.module)
    return found


def import_graph() -> dict[str, set[str]]:
    files = {module_name(p): p for p in source_files()}
    known = set(files)
    graph = {name: imports_of(path, known) - {name} for name, path in files.items()}
    # A package's __init__ importing its own modules is not a cycle with them.
    for name, targets in graph.items():
        if files[name].name != "__init__.py":
            continue
        graph[name] = {t for t in targets if not t.startswith(name + ".")}
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in sorted(graph.get(node, ())):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_no_module_imports_itself_back() -> None:
    assert cycles(import_graph()) == []


def test_the_cycle_finder_finds_cycles() -> None:
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert cycles(graph) == [["a", "b", "c"]]


def test_shared_packages_import_neither_tier() -> None:
    graph = import_graph()
    for name, targets in graph.items():
        if name.startswith(("skyrelay.protocol.", "skyrelay.link.", "skyrelay.client.")):
            tiers = {t for t in targets if t.startswith(("skyrelay.edge", "skyrelay.origin"))}
            assert not tiers, f"{name} imports {sorted(tiers)}"
