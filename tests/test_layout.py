"""The package's shape, read from its source: what imports what, how big
each module is, and who touches whose private names.

These read the AST of every ``trio_ws/**/*.py`` file (imports under
``if TYPE_CHECKING:`` and inside functions count too: a cycle mypy or a
reader has to untangle is a cycle). Checks the package does not meet yet are
marked ``xfail(strict=True)`` with the reason: once the restructure lands
they pass, pytest reports XPASS as a failure, and the mark must go.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "trio_ws"
MAX_LINES = 500


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(path): path for path in sorted(PACKAGE.rglob("*.py"))}


def parse(name: str) -> ast.Module:
    return ast.parse(MODULES[name].read_text(encoding="utf-8"), str(MODULES[name]))


def imported_modules(name: str) -> Iterator[tuple[str, list[str]]]:
    """(absolute module, names taken from it) for every import in module *name*."""
    is_package = MODULES[name].name == "__init__.py"
    package = name if is_package else name.rpartition(".")[0]
    for node in ast.walk(parse(name)):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name, []
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")
                anchor = anchor[: len(anchor) - (node.level - 1)]
                base = ".".join([*anchor, *([base] if base else [])])
            yield base, [alias.name for alias in node.names]


def import_graph() -> dict[str, set[str]]:
    """Module → the trio_ws modules it imports (a submodule named in ``from . import x``)."""
    graph: dict[str, set[str]] = {name: set() for name in MODULES}
    for name in MODULES:
        for target, names in imported_modules(name):
            for candidate in [f"{target}.{n}" for n in names] or [target]:
                if candidate in MODULES:
                    graph[name].add(candidate)
                elif target in MODULES:
                    graph[name].add(target)
    for name, targets in graph.items():
        targets.discard(name)
    return graph


def find_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """One cycle (as a path back to its start) per strongly connected group."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    groups: list[set[str]] = []

    def visit(node: str) -> None:  # Tarjan's algorithm
        index[node] = low[node] = len(index)
        stack.append(node)
        for target in sorted(graph[node]):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            group = set()
            while True:
                member = stack.pop()
                group.add(member)
                if member == node:
                    break
            if len(group) > 1:
                groups.append(group)

    for node in sorted(graph):
        if node not in index:
            visit(node)
    cycles = []
    for group in groups:
        start = min(group)
        path, seen = [start], {start}
        while True:  # walk inside the group until we come back
            step = sorted(t for t in graph[path[-1]] if t in group)
            back = [t for t in step if t == start]
            if back:
                cycles.append([*path, start])
                break
            nxt = next((t for t in step if t not in seen), step[0])
            path.append(nxt)
            seen.add(nxt)
    return cycles


def test_cycle_finder_finds_a_planted_cycle() -> None:
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a", "d"}, "d": set(), "e": {"d"}}
    assert find_cycles(graph) == [["a", "b", "c", "a"]]
    assert find_cycles({"a": {"b"}, "b": set()}) == []


def test_import_graph_sees_type_checking_and_submodule_imports() -> None:
    graph = import_graph()
    # client.py imports the connection module by name, core.deflate as a
    # submodule of a subpackage; the package's __init__ imports client.
    assert "trio_ws.connection" in graph["trio_ws.client"]
    assert "trio_ws.core.deflate" in graph["trio_ws.client"]
    assert "trio_ws.core.frames" in graph["trio_ws.connection"]
    assert "trio_ws.client" in graph["trio_ws"]


def test_no_import_cycles() -> None:
    assert find_cycles(import_graph()) == []


def wsproto_importers() -> set[str]:
    return {
        name
        for name in MODULES
        for target, _ in imported_modules(name)
        if target == "wsproto" or target.startswith("wsproto.")
    }


def test_only_the_core_imports_wsproto() -> None:
    assert "trio_ws.core.general" in wsproto_importers()  # the finder sees imports at all
    outside = {name for name in wsproto_importers() if not name.startswith("trio_ws.core")}
    assert outside == set()


@pytest.mark.parametrize("name", list(MODULES))
def test_no_module_is_over_500_lines(name: str) -> None:
    lines = len(MODULES[name].read_text(encoding="utf-8").splitlines())
    assert lines <= MAX_LINES, f"{name} has {lines} lines"


# ------------------------------------------------------------ private names


def is_private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def on_self(node: ast.Attribute) -> bool:
    return isinstance(node.value, ast.Name) and node.value.id in ("self", "cls")


def own_names(tree: ast.Module) -> set[str]:
    """Private names a module defines: functions, classes, globals, fields, attributes, slots."""
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Store):
            if on_self(node):
                names.add(node.attr)  # self._x = ...
        elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
            names.add(node.id)  # class-body fields and module globals
        elif isinstance(node, (ast.Assign, ast.AnnAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            if any(isinstance(t, ast.Name) and t.id == "__slots__" for t in targets):
                for item in ast.walk(node.value) if node.value else ():
                    if isinstance(item, ast.Constant) and isinstance(item.value, str):
                        names.add(item.value)
    return {name for name in names if is_private(name)}


def private_accesses(name: str) -> set[str]:
    """``module: what`` for each private name module *name* uses that it does not define.

    Reading ``obj._x`` counts unless this module defines ``_x`` (its own
    attribute, on ``self`` or on another object of a class it defines; a
    heuristic: a module whose own private has the same name as another's
    hides that use). Assigning ``obj._x = ...`` counts unless ``obj`` is
    ``self`` or ``cls``: that drives another object's state. ``from m
    import _x`` counts, whatever ``m`` is (Trio's and wsproto's privates are
    off limits too).
    """
    where = str(MODULES[name].relative_to(PACKAGE.parent))
    return private_accesses_in(parse(name), where) - EXEMPT


def private_accesses_in(tree: ast.Module, where: str) -> set[str]:
    """What :func:`private_accesses` finds in *tree*, the module at path *where*."""
    mine = own_names(tree)
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            source = "." * node.level + (node.module or "")
            found |= {f"from {source} import {a.name}" for a in node.names if is_private(a.name)}
        elif isinstance(node, ast.Import):
            found |= {a.name for a in node.names if any(map(is_private, a.name.split(".")))}
        elif isinstance(node, ast.Attribute) and is_private(node.attr):
            owner = node.value
            if node.attr in mine and (on_self(node) or isinstance(node.ctx, ast.Load)):
                continue
            found.add(f"{ast.unparse(owner)}.{node.attr}")
    return {f"{where}: {what}" for what in found}


#: Not state: typeshed's names for the types of zlib.compressobj() and
#: zlib.decompressobj(), which have no public name, used in annotations only.
EXEMPT = {
    "trio_ws/core/deflate.py: zlib._Compress",
    "trio_ws/core/deflate.py: zlib._Decompress",
    "trio_ws/core/inflater.py: zlib._Decompress",
}


def all_private_accesses() -> set[str]:
    return set().union(*(private_accesses(name) for name in MODULES))


def test_private_access_finder_tells_own_names_from_others() -> None:
    source = (
        "from .options import _Default\n"
        "class A:\n"
        "    __slots__ = ('_x',)\n"
        "    def f(self, other, request):\n"
        "        self._x = other._x  # both A's own\n"
        "        request._on_accept = self._y  # drives another's state; _y is not ours\n"
        "        return request._connection._log\n"
    )
    assert private_accesses_in(ast.parse(source), "planted.py") == {
        "planted.py: from .options import _Default",
        "planted.py: request._on_accept",
        "planted.py: self._y",
        "planted.py: request._connection",
        "planted.py: request._connection._log",
    }


def test_no_module_reaches_into_another_modules_privates() -> None:
    assert all_private_accesses() == set()
