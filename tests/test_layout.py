"""The shape of the code, checked: no import circle, files a person can read in one sitting, every exception in
errors.py, and no untyped ``dict[str, Any]`` in a signature that another room calls."""

from __future__ import annotations

import ast
import importlib
import inspect
import pkgutil
import re
from pathlib import Path

import cortex

SRC = Path(cortex.__file__).parent
MAX_LINES = 400


def _modules() -> list[str]:
    return sorted(m.name for m in pkgutil.walk_packages([str(SRC)], prefix="cortex."))


def test_the_import_graph_has_no_circle() -> None:
    import grimp  # import-linter's graph builder

    graph = grimp.build_graph("cortex", include_external_packages=False)
    modules = sorted(graph.modules)
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    circles: list[list[str]] = []

    def visit(v: str) -> None:  # Tarjan's strongly connected components
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph.find_modules_directly_imported_by(v)):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                circles.append(sorted(component))

    for m in modules:
        if m not in index:
            visit(m)
    assert circles == []


def test_no_source_file_is_over_400_lines() -> None:
    long = {str(p.relative_to(SRC)): n for p in SRC.rglob("*.py") if (n := len(p.read_text().splitlines())) > MAX_LINES}
    assert long == {}


def test_every_exception_class_lives_in_errors() -> None:
    elsewhere = []
    for name in _modules():
        if name in ("cortex.__main__", "cortex.errors"):
            continue
        module = importlib.import_module(name)
        for attr, obj in vars(module).items():
            if inspect.isclass(obj) and issubclass(obj, BaseException) and obj.__module__ == name:
                elsewhere.append(f"{name}.{attr}")
    assert elsewhere == []


ANY_DICT = re.compile(r"dict\[str, Any\]")


def _room(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else parts[0]


def test_no_untyped_dict_crosses_a_room() -> None:
    """A public function or method whose signature has ``dict[str, Any]`` is used only inside its own room."""
    untyped: dict[tuple[str, str], str] = {}  # (module, function) -> room
    trees: dict[str, ast.Module] = {}
    for path in SRC.rglob("*.py"):
        module = "cortex." + ".".join(path.relative_to(SRC).with_suffix("").parts).removesuffix(".__init__")
        tree = ast.parse(path.read_text())
        trees[module] = tree
        for node in ast.walk(tree):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and not node.name.startswith("_"):
                annotations = [a.annotation for a in node.args.args + node.args.kwonlyargs if a.annotation]
                text = " ".join(ast.unparse(a) for a in [*annotations, node.returns] if a is not None)
                if ANY_DICT.search(text):
                    untyped[(module, node.name)] = _room(module)
    crossing = []
    for module, tree in trees.items():
        aliases: dict[str, str] = {}  # local name -> module, for `from cortex.x import y` where y is a module
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("cortex"):
                for alias in node.names:
                    room = untyped.get((node.module, alias.name))
                    if room is not None and room != _room(module):
                        crossing.append(f"{module} imports {node.module}.{alias.name}")
                    if f"{node.module}.{alias.name}" in trees:
                        aliases[alias.asname or alias.name] = f"{node.module}.{alias.name}"
        for node in ast.walk(tree):
            if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id in aliases:
                target = aliases[node.value.id]
                room = untyped.get((target, node.attr))
                if room is not None and room != _room(module):
                    crossing.append(f"{module} calls {target}.{node.attr}")
    assert crossing == [], "\n".join(crossing)
