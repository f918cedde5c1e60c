"""The code hash a run record is keyed by: the code a run executes, not the whole package.

:func:`run_code_paths` finds that code from the import graph: :mod:`mslib.run.trainer` and every ``mslib`` module it
imports, transitively (module- and function-level imports, read with ``ast``, never executed), with the packages'
``__init__`` files that importing them runs. Plotting and prose helpers (``mslib.viz``, ``mslib.data.plots``,
``mslib.paper``, ``mslib.reproduce``, ...) are outside it unless the trainer imports them, so editing a figure does
not make the records stale, while editing a loss does. A module counts by what it executes
(:func:`code_of_module`: its syntax tree without docstrings, so comments, docstrings and layout do not count).
:func:`run_code_hash` adds any ``code_paths`` a caller names (a script with its own ``fit``, say; a notebook
contributes its code cells only). :func:`code_hash` hashes any files, folders and notebooks, and
:func:`function_code_hash` single functions (a probe keyed by the functions it runs is not made stale by an edit
elsewhere in their module). The run id (:func:`mslib.run.records.run_id`) hashes the parameters with it.
"""

from __future__ import annotations

import ast
import hashlib
import inspect
import json
import os
import textwrap
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

TRAINER = "mslib.run.trainer"  # the module whose import closure is "the code a run executes"


def package_root() -> Path:
    """The folder of the ``mslib`` package this module belongs to."""
    return Path(__file__).resolve().parent.parent


def package_modules(root: Path) -> dict[str, Path]:
    """Every module of the package at ``root`` (named after the folder, e.g. ``mslib``): dotted name -> file."""
    modules = {}
    for path in sorted(root.rglob("*.py")):
        parts = [root.name, *path.relative_to(root).with_suffix("").parts]
        if parts[-1] == "__init__":
            parts.pop()
        modules[".".join(parts)] = path
    return modules


def _with_parents(name: str) -> list[str]:
    """``a.b.c`` -> ``[a, a.b, a.b.c]``: importing a module first runs its packages' ``__init__``."""
    parts = name.split(".")
    return [".".join(parts[: i + 1]) for i in range(len(parts))]


def direct_imports(module: str, modules: dict[str, Path]) -> set[str]:
    """The package modules that ``module``'s source imports anywhere (top level or inside functions)."""
    path = modules[module]
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: from the package, one level up per extra dot
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, *([base] if base else [])])
            names = [base, *(f"{base}.{alias.name}" for alias in node.names)]
        else:
            continue
        for name in names:
            found.update(m for m in _with_parents(name) if m in modules)
    found.discard(module)
    return found


def imported_modules(module: str = TRAINER, *, root: Path | None = None) -> list[str]:
    """``module``, its packages and every package module they import, transitively (sorted names)."""
    modules = package_modules(root or package_root())
    if module not in modules:
        raise ValueError(f"no module {module!r} in the package at {root or package_root()}")
    seen: set[str] = set()
    todo = [m for m in _with_parents(module) if m in modules]
    while todo:
        name = todo.pop()
        if name not in seen:
            seen.add(name)
            todo.extend(direct_imports(name, modules) - seen)
    return sorted(seen)


def run_code_paths(root: Path | None = None) -> list[Path]:
    """The source files of the code a run executes: :func:`imported_modules` of :data:`TRAINER`."""
    modules = package_modules(root or package_root())
    return [modules[name] for name in imported_modules(TRAINER, root=root)]


def _without_docstrings(tree: ast.AST) -> ast.AST:
    """``tree`` with the docstring of every module, class and function removed (a body left empty gets ``pass``)."""
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)) and node.body:
            first = node.body[0]
            if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant) and isinstance(
                    first.value.value, str):
                node.body = node.body[1:] or [ast.Pass()]
    return tree


def code_of_module(path: Path) -> bytes:
    """What a ``.py`` file executes, as bytes: its syntax tree (:func:`ast.dump`, no line numbers) without
    docstrings. Comments, docstrings, blank lines and line breaks leave it unchanged; any change to code does not.
    (The dump's form belongs to the Python version, so a new Python makes records stale: the safe side.)"""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    return ast.dump(_without_docstrings(tree), include_attributes=False).encode()


def code_hash(paths: Iterable[str | os.PathLike], *, base: Path | None = None) -> str:
    """sha256 (16 hex digits) of the notebooks, files and folders ``paths``.

    Folders expand to every ``*.py`` file below them. A ``.py`` file contributes :func:`code_of_module` (docstring
    and comment edits do not change the hash). A notebook contributes its code cells' source only, so executing it
    (outputs, execution counts, metadata) or editing its prose does not change the hash, while editing code does.
    Files are keyed by their path relative to ``base`` (default: the folder holding the package, the
    repository), so two checkouts of the same code give the same hash.
    """
    files: list[Path] = []
    for p in map(Path, paths):
        if p.is_dir():
            files.extend(sorted(p.rglob("*.py")))
        elif p.is_file():
            files.append(p)
        else:
            raise ValueError(f"code_hash: {p} does not exist")
    base = (base or package_root().parent).resolve()
    h = hashlib.sha256()
    for f in sorted(set(files), key=lambda q: q.resolve().as_posix()):
        resolved = f.resolve()
        name = resolved.relative_to(base).as_posix() if resolved.is_relative_to(base) else f.name
        if f.suffix == ".ipynb":
            nb = json.loads(f.read_text(encoding="utf-8"))
            cells = ["".join(c.get("source", "")) for c in nb.get("cells", []) if c.get("cell_type") == "code"]
            blob = json.dumps(cells).encode()
        elif f.suffix == ".py":
            blob = code_of_module(f)
        else:
            blob = f.read_bytes()
        h.update(f"{name}\0{len(blob)}\0".encode())
        h.update(blob)
    return h.hexdigest()[:16]


def function_code_hash(*functions: Callable[..., object]) -> str:
    """sha256 (16 hex digits) of what ``functions`` execute: each one's syntax tree without docstrings (as
    :func:`code_of_module`), keyed by its module and qualified name. Editing another function of the same module
    leaves it unchanged; editing one of ``functions`` (not its docstring or comments) changes it. Callees are not
    followed: list every function the keyed result depends on beyond the code already in the key."""
    h = hashlib.sha256()
    for f in functions:
        tree = ast.parse(textwrap.dedent(inspect.getsource(f)))
        blob = ast.dump(_without_docstrings(tree), include_attributes=False).encode()
        h.update(f"{f.__module__}.{f.__qualname__}\0{len(blob)}\0".encode())
        h.update(blob)
    return h.hexdigest()[:16]


def run_code_hash(code_paths: Sequence[str | os.PathLike] | None = None, *, root: Path | None = None) -> str:
    """The hash a run is keyed by: :func:`run_code_paths` of the package at ``root`` (default: this ``mslib``) plus
    ``code_paths`` (e.g. the calling notebook)."""
    root = root or package_root()
    return code_hash([*run_code_paths(root), *(code_paths or [])], base=root.parent)
