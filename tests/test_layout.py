"""The package's module graph: no module imports, even for type checking,
one that imports it back (directly or around a longer loop)."""

from __future__ import annotations

import ast
from pathlib import Path

import trio_ws

PACKAGE = Path(trio_ws.__file__).parent


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path, name: str) -> set[str]:
    """The trio_ws modules that *path* (module *name*) imports, anywhere in it."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                module = ".".join([*base, node.module] if node.module else base)
            else:
                module = node.module or ""
            found.add(module)
            # "from . import keepalive" imports a module, not a name.
            found.update(f"{module}.{alias.name}" for alias in node.names)
    return found


def _graph() -> dict[str, set[str]]:
    paths = {_module_name(path): path for path in PACKAGE.rglob("*.py")}
    graph = {}
    for name, path in paths.items():
        # A package's __init__ re-exports its modules: importing it is not a
        # dependency of theirs on each other, so packages are left out.
        if path.name != "__init__.py":
            graph[name] = {
                other
                for other in _imports(path, name)
                if other in paths and other != name and paths[other].name != "__init__.py"
            }
    return graph


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """One loop for each module that can reach itself, shortest first found."""
    loops = []
    for start in sorted(graph):
        paths = [[start]]
        seen = {start}
        while paths:
            path = paths.pop(0)
            for nxt in sorted(graph[path[-1]]):
                if nxt == start:
                    loops.append([*path, start])
                    paths = []
                    break
                if nxt not in seen:
                    seen.add(nxt)
                    paths.append([*path, nxt])
    return loops


def test_the_checker_finds_a_loop() -> None:
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert _cycles(graph) == [["a", "b", "c", "a"], ["b", "c", "a", "b"], ["c", "a", "b", "c"]]


def test_relative_imports_are_resolved() -> None:
    graph = _graph()
    assert "trio_ws.core.frames" in graph["trio_ws.connection"]
    assert "trio_ws.keepalive" in graph["trio_ws.connection"]  # "from . import keepalive"


def test_no_import_cycles() -> None:
    assert _cycles(_graph()) == []
