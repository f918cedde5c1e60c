"""The notebook runner: papermill executes ``notebooks/*.ipynb`` into ``executed/``; Jupyter Book only renders.

    python -m mslib.notebooks run [--profile smoke|default|paper] [-p NAME VALUE]... [NOTEBOOK...]
    python -m mslib.notebooks list
    python -m mslib.notebooks strip [NOTEBOOK...]

Parameters come from the notebook's own ``parameters`` cell (the ``default`` profile), overridden by
``params/<profile>/<notebook>.yaml`` when it exists, then by ``-p``. Unlike papermill, which only warns,
an undeclared parameter name (or a value of the wrong type) is an error. A notebook is executed into a
temporary file and moved into ``executed/`` only when every cell succeeded; on failure the partial output is
kept as ``executed/<name>.failed.ipynb`` for debugging and any older ``executed/<name>.ipynb`` is removed,
so the book build fails instead of rendering stale results.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import nbformat
import yaml

from mslib.files import atomic_write_text
from mslib.paths import project_root

PROFILES = ("smoke", "default", "paper")
KERNEL = "python3"


class NotebookError(RuntimeError):
    """A notebook could not be run: bad parameters or a failing cell. The message names the notebook."""


def notebooks_dir(root: Path | None = None) -> Path:
    return (root or project_root()) / "notebooks"


def list_notebooks(root: Path | None = None) -> list[str]:
    """Names (file stems) of the committed notebooks, in chapter order."""
    return sorted(p.stem for p in notebooks_dir(root).glob("*.ipynb"))


def resolve_notebook(name: str, root: Path | None = None) -> Path:
    """``00_setup``, ``00_setup.ipynb`` or ``notebooks/00_setup.ipynb`` → the notebook's path."""
    stem = Path(name).name.removesuffix(".ipynb")
    path = notebooks_dir(root) / f"{stem}.ipynb"
    if not path.is_file():
        known = ", ".join(list_notebooks(root)) or "none"
        raise NotebookError(f"no notebook named {name!r} in {notebooks_dir(root)} (known: {known})")
    return path


def declared_parameters(path: Path) -> dict[str, dict[str, Any]]:
    """The parameters the notebook's ``parameters`` cell declares, as papermill infers them."""
    import papermill

    return dict(papermill.inspect_notebook(str(path)))


def profile_parameters(name: str, profile: str, root: Path | None = None) -> tuple[dict[str, Any], Path | None]:
    """Parameters of ``params/<profile>/<name>.yaml`` (empty for ``default`` or when the file is absent)."""
    if profile not in PROFILES:
        raise NotebookError(f"unknown profile {profile!r}; choose one of {', '.join(PROFILES)}")
    path = (root or project_root()) / "params" / profile / f"{name}.yaml"
    if profile == "default" or not path.is_file():
        return {}, None
    data = yaml.safe_load(path.read_text()) or {}
    if not isinstance(data, dict):
        raise NotebookError(f"{path} must hold a mapping of parameter names to values, not {type(data).__name__}")
    return data, path


def parse_cli_value(text: str) -> Any:
    """``-p`` values are YAML scalars (``3``, ``0.1``, ``true``, ``[1, 2]``); ``None`` means Python's None."""
    if text in ("None", "null", "~"):
        return None
    return yaml.safe_load(text)


_TYPES: dict[str, tuple[type, ...]] = {
    "int": (int,), "float": (int, float), "str": (str,), "bool": (bool,), "list": (list, tuple),
    "dict": (dict,), "tuple": (list, tuple),
}


def _type_ok(value: Any, type_name: str) -> bool:
    """Does ``value`` fit the declared annotation (``int``, ``float | None``, ...)? Unknown annotations pass."""
    optional = type_name.startswith("Optional[")
    options = [t.strip() for t in type_name.removeprefix("Optional[").removesuffix("]").split("|")]
    if optional:
        options.append("None")
    if value is None:
        return "None" in options or type_name == "None"
    checks = [_TYPES[o] for o in options if o in _TYPES]
    if not checks or len(checks) < len([o for o in options if o != "None"]):
        return True  # an annotation we do not model: papermill decides
    if isinstance(value, bool) and not any(bool in c for c in checks):
        return False  # True is an int in Python, but not a valid int parameter
    return any(isinstance(value, c) for c in checks)


def check_parameters(name: str, params: dict[str, Any], declared: dict[str, dict[str, Any]]) -> None:
    """Raise :class:`NotebookError` for names the notebook does not declare or values of the wrong type."""
    unknown = sorted(set(params) - set(declared))
    if unknown:
        raise NotebookError(
            f"{name}: unknown parameter(s) {', '.join(unknown)}; the notebook declares: "
            f"{', '.join(sorted(declared)) or 'none'}"
        )
    for key, value in params.items():
        type_name = declared[key].get("inferred_type_name") or "None"
        if not _type_ok(value, type_name):
            raise NotebookError(f"{name}: parameter {key}={value!r} does not match its declared type {type_name}")


def _defaults(declared: dict[str, dict[str, Any]]) -> dict[str, Any]:
    import ast

    out = {}
    for key, info in declared.items():
        try:
            out[key] = ast.literal_eval(info["default"])
        except (ValueError, SyntaxError):
            out[key] = info["default"]
    return out


def _hide_injected_cell(path: Path, meta: dict[str, Any]) -> None:
    """Tag papermill's injected-parameters cell ``hide-input`` and store the run's provenance in metadata."""
    nb = nbformat.read(path, as_version=4)
    for cell in nb.cells:
        tags = cell.metadata.setdefault("tags", [])
        if "injected-parameters" in tags and "hide-input" not in tags:
            tags.append("hide-input")
    nb.metadata["mslib"] = meta
    nbformat.write(nb, path)


def run_notebook(
    name: str,
    profile: str = "default",
    overrides: dict[str, Any] | None = None,
    *,
    root: Path | None = None,
    progress: bool = True,
    log_output: bool = False,
    timeout: int | None = None,
) -> Path:
    """Execute one notebook with ``profile`` parameters plus ``overrides``; return ``executed/<name>.ipynb``."""
    import papermill
    from papermill.exceptions import PapermillExecutionError

    from mslib.provenance import git_commit

    root = root or project_root()
    src = resolve_notebook(name, root)
    name = src.stem
    declared = declared_parameters(src)
    params, params_file = profile_parameters(name, profile, root)
    params = {**params, **(overrides or {})}
    check_parameters(name, params, declared)
    effective = {**_defaults(declared), **params}

    out_dir = root / "executed"
    out_dir.mkdir(parents=True, exist_ok=True)
    final = out_dir / f"{name}.ipynb"
    partial = out_dir / f".{name}.partial.ipynb"
    failed = out_dir / f"{name}.failed.ipynb"
    env_backup = dict(os.environ)
    os.environ.update({
        "MSLIB_ROOT": str(root),
        "MSLIB_NOTEBOOK": name,
        "MSLIB_PROFILE": profile,
        "MSLIB_PARAMS_FILE": str(params_file.relative_to(root)) if params_file else "",
        "MSLIB_PARAMS_JSON": json.dumps(effective, default=str),
        # the venv's kernelspec first, whatever a user-level python3 kernel points at
        "JUPYTER_PATH": os.pathsep.join(filter(None, [str(Path(sys.prefix) / "share" / "jupyter"),
                                                      os.environ.get("JUPYTER_PATH")])),
    })
    start = time.time()
    try:
        papermill.execute_notebook(
            str(src), str(partial), parameters=params, kernel_name=KERNEL, cwd=str(src.parent),
            progress_bar=progress, log_output=log_output, execution_timeout=timeout,
        )
    except PapermillExecutionError as err:
        final.unlink(missing_ok=True)
        if partial.exists():
            os.replace(partial, failed)
        raise NotebookError(
            f"{name}: cell {err.cell_index} (execution count {err.exec_count}) raised "
            f"{err.ename}: {err.evalue}\n  failed output kept in {failed.relative_to(root)}"
        ) from err
    except BaseException:
        final.unlink(missing_ok=True)
        partial.unlink(missing_ok=True)
        raise
    finally:
        os.environ.clear()
        os.environ.update(env_backup)
    meta = {
        "profile": profile,
        "params_file": str(params_file.relative_to(root)) if params_file else None,
        "parameters": effective,
        "git_commit": git_commit(root),
        "seconds": round(time.time() - start, 1),
    }
    _hide_injected_cell(partial, meta)
    os.replace(partial, final)
    failed.unlink(missing_ok=True)
    return final


def strip_notebook(path: Path) -> bool:
    """Remove outputs and execution counts, set kernelspec ``python3``; return whether the file changed."""
    nb = nbformat.read(path, as_version=4)
    before = nbformat.writes(nb)
    for cell in nb.cells:
        if cell.cell_type == "code":
            cell.outputs = []
            cell.execution_count = None
        cell.metadata.pop("execution", None)
    nb.metadata["kernelspec"] = {"name": KERNEL, "display_name": "Python 3", "language": "python"}
    nb.metadata.pop("papermill", None)
    nb.metadata.pop("widgets", None)
    after = nbformat.writes(nb)
    if after != before:
        atomic_write_text(path, after)
    return after != before


def _parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m mslib.notebooks", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="execute notebooks into executed/")
    run.add_argument("names", nargs="*", help="notebooks to run (default: all)")
    run.add_argument("--profile", default="default", choices=PROFILES)
    run.add_argument("-p", "--parameter", nargs=2, action="append", default=[], metavar=("NAME", "VALUE"))
    run.add_argument("--log-output", action="store_true", help="stream cell output to the terminal")
    run.add_argument("--no-progress", action="store_true")
    run.add_argument("--timeout", type=int, default=None, help="seconds per cell")
    sub.add_parser("list", help="list notebooks and their profiles")
    strip = sub.add_parser("strip", help="remove outputs from committed notebooks")
    strip.add_argument("names", nargs="*")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = _parse_args(argv)
    root = project_root()
    try:
        if args.command == "list":
            for name in list_notebooks(root):
                have = [p for p in PROFILES if p == "default" or (root / "params" / p / f"{name}.yaml").is_file()]
                print(f"{name:28s} profiles: {', '.join(have)}")
            return 0
        if args.command == "strip":
            for name in args.names or list_notebooks(root):
                path = resolve_notebook(name, root)
                print(f"{'stripped' if strip_notebook(path) else 'clean   '} {path.relative_to(root)}")
            return 0
        names = [resolve_notebook(n, root).stem for n in args.names] or list_notebooks(root)
        overrides = {k: parse_cli_value(v) for k, v in args.parameter}
        for i, name in enumerate(names, 1):
            print(f"[{i}/{len(names)}] {name} (profile {args.profile})", flush=True)
            start = time.time()
            out = run_notebook(name, args.profile, overrides, root=root, progress=not args.no_progress,
                               log_output=args.log_output, timeout=args.timeout)
            print(f"      ok in {time.time() - start:.1f}s -> {out.relative_to(root)}", flush=True)
    except NotebookError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
