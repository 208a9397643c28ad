"""The package's layers: imports only point downward (cli > command families > tasks > models > io > core), and
no two modules import each other, directly or through others (imports inside functions count; imports under
``TYPE_CHECKING`` do not)."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
#: Layer of each sub-package (higher imports lower); every other ``xl/NAME.py`` is a command family's module.
#: ``xl.progress`` is a callback protocol that every layer may report to, like ``xl.errors``: it imports nothing of xl.
LAYERS = {"errors": 0, "config": 0, "progress": 0, "core": 0, "io": 1, "models": 2, "tasks": 3, "cli": 5, "__main__": 6}
FAMILY = 4


def _modules() -> dict[str, Path]:
    out = {}
    for path in (ROOT / "xl").rglob("*.py"):
        parts = list(path.relative_to(ROOT).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = path
    return out


def _layer(module: str) -> int:
    parts = module.split(".")
    return 0 if len(parts) == 1 else LAYERS.get(parts[1], FAMILY)


def _imports(path: Path, modules: dict[str, Path]) -> set[str]:
    tree = ast.parse(path.read_text())
    skipped: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            skipped.update(id(n) for n in ast.walk(node))
    found: set[str] = set()
    for node in ast.walk(tree):
        if id(node) in skipped:
            continue
        if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "xl":
            for alias in node.names:
                name = f"{node.module}.{alias.name}"
                found.add(name if name in modules else node.module)
        elif isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.split(".")[0] == "xl")
    return {m for m in found if m in modules and m != "xl"}


def _graph() -> dict[str, set[str]]:
    modules = _modules()
    return {name: _imports(path, modules) - {name} for name, path in modules.items()}


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    state: dict[str, int] = {}
    stack: list[str] = []
    cycles: list[list[str]] = []

    def visit(node: str) -> None:
        state[node] = 1
        stack.append(node)
        for target in sorted(graph.get(node, ())):
            if state.get(target) == 1:
                cycles.append([*stack[stack.index(target) :], target])
            elif target not in state:
                visit(target)
        stack.pop()
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            visit(node)
    return cycles


def test_imports_point_downward() -> None:
    graph = _graph()
    assert "xl.models.training" in graph and "xl.tasks.objects" in graph  # the walk sees the package
    upward = sorted(f"{a} -> {b}" for a, targets in graph.items() for b in targets if _layer(b) > _layer(a))
    assert upward == []


def test_no_import_cycles() -> None:
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == [["a", "b", "c", "a"]]  # the check finds one
    assert _cycles(_graph()) == []
