"""The import graph of src/hiclip, read with ``ast``: acyclic, counting every import (deferred ones
inside functions too, which only hide a cycle), and only the CLI imports the CLI (docs/design.md §6)."""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src"
CLI_USERS = {"hiclip.cli", "hiclip.__main__", "hiclip.train.__main__"}  # the CLI, ``python -m hiclip`` / ``hiclip.train``
COMMAND_SIDE = "hiclip.commands."  # the commands' implementations (they take parsed arguments)
ARGV_PARSERS = {"hiclip.cli", "hiclip.cli_options", "hiclip.__main__", "hiclip.train.__main__"}


def _modules() -> dict[str, Path]:
    """{"hiclip.data.world": path, "hiclip.data": .../data/__init__.py, ...}"""
    out = {}
    for path in sorted((SRC / "hiclip").rglob("*.py")):
        parts = list(path.relative_to(SRC).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        out[".".join(parts)] = path
    return out


def _module_level(tree: ast.AST):
    """Import statements run when the module is imported: not those inside function bodies
    (class bodies and ``if`` / ``try`` blocks, ``if TYPE_CHECKING`` included, do count)."""
    for node in ast.iter_child_nodes(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
            continue
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            yield node
        else:
            yield from _module_level(node)


def _targets(node: ast.Import | ast.ImportFrom, name: str, is_pkg: bool, modules: dict) -> set[str]:
    """The hiclip modules an import statement in module ``name`` names."""
    if isinstance(node, ast.Import):
        return {a.name for a in node.names if a.name in modules}
    if node.level:
        package = name.split(".") if is_pkg else name.split(".")[:-1]
        base = ".".join(package[:len(package) - node.level + 1] + ([node.module] if node.module else []))
    else:
        base = node.module or ""
    found = {f"{base}.{a.name}" if f"{base}.{a.name}" in modules else base for a in node.names}
    return found & modules.keys()


def _import_nodes(tree: ast.AST, level_only: bool):
    """The import statements of a module: those run at import time, or all (deferred ones too)."""
    if level_only:
        return _module_level(tree)
    return (n for n in ast.walk(tree) if isinstance(n, (ast.Import, ast.ImportFrom)))


def _graph(level_only: bool) -> dict[str, set[str]]:
    modules = _modules()
    graph = {}
    for name, path in modules.items():
        tree = ast.parse(path.read_text(), str(path))
        nodes = _import_nodes(tree, level_only)
        is_pkg = path.name == "__init__.py"
        graph[name] = set().union(*(_targets(n, name, is_pkg, modules) for n in nodes)) - {name}
    return graph


def _find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle as [a, b, ..., a], or None (depth-first search with colours)."""
    state: dict[str, int] = {}  # 1: on the stack, 2: done
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


def test_graph_reader_sees_relative_and_absolute_imports():
    graph = _graph(level_only=True)
    assert "hiclip.checkpoint" in graph["hiclip.factory"]  # from . import checkpoint
    assert "hiclip.data.csvdata" in graph["hiclip.data.loader"]  # from hiclip.data import csvdata
    assert "hiclip.data.images" in graph["hiclip.eval.run"]  # from hiclip.data.images import ...
    assert "hiclip.train.config" in graph["hiclip.train"]  # from .config import TrainConfig (in __init__)


def test_cycle_finder_finds_a_planted_cycle():
    assert _find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == ["a", "b", "c", "a"]
    assert _find_cycle({"a": {"b"}, "b": set(), "c": {"a", "b"}}) is None


def test_deferred_imports_are_read_too():
    tree = ast.parse("import a\nclass K:\n    import b\ndef f():\n    from . import c\n    def g():\n        import d\n")
    names = lambda nodes: sorted(x.name for n in nodes for x in n.names)  # noqa: E731
    assert names(_import_nodes(tree, level_only=True)) == ["a", "b"]
    assert names(_import_nodes(tree, level_only=False)) == ["a", "b", "c", "d"]


def test_imports_are_acyclic_deferred_ones_included():
    cycle = _find_cycle(_graph(level_only=False))
    assert cycle is None, "import cycle (a deferred import only hides it): " + " -> ".join(cycle)


@pytest.mark.parametrize("module, allowed", [("hiclip.cli", CLI_USERS), ("hiclip.cli_options", ARGV_PARSERS)])
def test_library_code_never_imports_the_cli(module, allowed):
    users = {name for name, targets in _graph(level_only=False).items()
             if module in targets and not name.startswith(COMMAND_SIDE)}
    assert users <= allowed, f"library modules importing {module}: {sorted(users - allowed)}"


def test_only_the_command_line_side_uses_argparse():
    users = set()
    for name, path in _modules().items():
        for node in ast.walk(ast.parse(path.read_text())):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else (
                [node.module] if isinstance(node, ast.ImportFrom) else [])
            if "argparse" in names:
                users.add(name)
    users = {u for u in users if not u.startswith(COMMAND_SIDE)}
    assert "hiclip.cli" in users and users <= ARGV_PARSERS, sorted(users - ARGV_PARSERS)
