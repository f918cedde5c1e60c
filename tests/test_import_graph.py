"""The mslib package has no import cycle: its import graph, read with ``ast`` (module-level and function-level
imports both count), is acyclic. Built here from the source files, independently of :mod:`mslib.run.codehash`."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "mslib"


def modules(root: Path) -> dict[str, Path]:
    """Dotted module name -> file, for every ``*.py`` of the package at ``root``."""
    out = {}
    for path in sorted(root.rglob("*.py")):
        parts = [root.name, *path.relative_to(root).with_suffix("").parts]
        out[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return out


def imports(name: str, path: Path, known: dict[str, Path]) -> set[str]:
    """The package modules ``name`` imports anywhere in its source: ``import a.b`` -> ``a.b``; ``from a import x``
    -> ``a.x`` when that is a module, else ``a``; relative imports resolved from ``name``'s package; plus the
    packages above an imported module (their ``__init__`` runs first) that do not contain ``name`` itself."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name in known)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                base = f"{parent}.{base}" if base else parent
            for alias in node.names:
                target = f"{base}.{alias.name}"
                found.add(target if target in known else base)
    found = {m for m in found if m in known}
    # importing a.b.c runs the packages a and a.b first, unless the importer is inside them already
    ancestors = {".".join(name.split(".")[:i]) for i in range(1, name.count(".") + 1)}
    parents = {".".join(m.split(".")[:i]) for m in found for i in range(1, m.count(".") + 1)}
    return {m for m in found | (parents - ancestors) if m in known and m != name}


def graph(root: Path) -> dict[str, set[str]]:
    known = modules(root)
    return {name: imports(name, path, known) for name, path in known.items()}


def find_cycle(edges: dict[str, set[str]]) -> list[str] | None:
    """One cycle ``[a, b, ..., a]`` of the directed graph, or None (depth-first search, white/grey/black)."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(edges.get(node, ())):
            if state.get(nxt) == 1:
                return [*path[path.index(nxt):], nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        path.pop()
        state[node] = 2
        return None

    for start in sorted(edges):
        if start not in state and (cycle := visit(start)):
            return cycle
    return None


def test_mslib_has_no_import_cycle() -> None:
    edges = graph(PACKAGE)
    assert "mslib.run.trainer" in edges and "mslib.run.config" in edges["mslib.run.trainer"]
    cycle = find_cycle(edges)
    assert cycle is None, f"import cycle in mslib: {' -> '.join(cycle)}"


def test_the_trainer_imports_no_records_runs_or_plots() -> None:
    edges = graph(PACKAGE)
    reach, todo = set(), ["mslib.run.trainer"]
    while todo:
        for nxt in edges[todo.pop()] - reach:
            reach.add(nxt)
            todo.append(nxt)
    assert not reach & {"mslib.run.records", "mslib.run.runs", "mslib.viz", "mslib.data.plots", "mslib.paper"}


def test_the_graph_sees_function_level_and_relative_imports_and_names_a_cycle(tmp_path: Path) -> None:
    pkg = tmp_path / "pkg"
    (pkg / "sub").mkdir(parents=True)
    files = {"__init__.py": "", "a.py": "from pkg import b\n", "b.py": "def f():\n    from .sub import c\n",
             "sub/__init__.py": "", "sub/c.py": "import os\nfrom ..a import x\n", "d.py": "import pkg.sub.c\n"}
    for rel, text in files.items():
        (pkg / rel).write_text(text)
    edges = graph(pkg)
    # importing pkg.sub.c runs pkg/sub/__init__.py first: an edge to pkg.sub too (not to pkg, which holds them all)
    assert edges["pkg.b"] == {"pkg.sub.c", "pkg.sub"} and edges["pkg.d"] == {"pkg.sub.c", "pkg.sub"}
    assert edges["pkg.sub.c"] == {"pkg.a"}
    assert find_cycle(edges) == ["pkg.a", "pkg.b", "pkg.sub.c", "pkg.a"]
    (pkg / "sub" / "c.py").write_text("import os\n")
    assert find_cycle(graph(pkg)) is None
    # a cycle through a package's __init__: pkg.sub imports pkg.e, which imports a module inside pkg.sub
    (pkg / "sub" / "__init__.py").write_text("from pkg import e\n")
    (pkg / "e.py").write_text("from pkg.sub.c import os\n")
    assert find_cycle(graph(pkg)) == ["pkg.sub", "pkg.e", "pkg.sub"]


@pytest.mark.parametrize(("edges", "cycle"), [({"a": {"a"}}, ["a", "a"]), ({"a": {"b"}, "b": set()}, None)])
def test_find_cycle_on_small_graphs(edges: dict[str, set[str]], cycle: list[str] | None) -> None:
    assert find_cycle(edges) == cycle
