"""Run records: one JSON file per training/evaluation run, ``results/<run-id>.json``.

A record holds everything needed to trust (or rebuild) a number in the book: all parameters, the metrics with the
iteration each comes from, the seed, the code hash and git commit, library versions, hardware, wall time and
throughput. The run id is a stable hash of the parameters and the code hash, so the same run on the same code has the
same file name: notebooks can call :func:`find_record` and skip training when an up-to-date record exists, and a
changed library or notebook (a new :func:`code_hash`) makes old records stale instead of silently reused.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import sys
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from mslib import __version__
from mslib.paths import atomic_write_text, project_root
from mslib.paths import results_dir as default_results_dir
from mslib.provenance import git_commit, hardware, notebook_context, stable_hash, versions

SCHEMA_VERSION = 1


# ----------------------------------------------------------------------------------------------- helpers
def _plain(obj: Any, where: str) -> Any:
    """``obj`` as plain JSON types: NumPy/tensor scalars -> Python numbers, NaN/Inf -> None, Path -> str."""
    if isinstance(obj, Mapping):
        return {str(k): _plain(v, f"{where}.{k}") for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_plain(v, f"{where}[{i}]") for i, v in enumerate(obj)]
    if isinstance(obj, bool) or obj is None or isinstance(obj, str):
        return obj
    if isinstance(obj, int):
        return int(obj)
    if isinstance(obj, float):
        return float(obj) if math.isfinite(obj) else None
    if isinstance(obj, os.PathLike):
        return os.fspath(obj)
    if isinstance(obj, np.generic):
        return _plain(obj.item(), where)
    if isinstance(obj, np.ndarray):
        return _plain(obj.tolist(), where)
    torch = sys.modules.get("torch")
    if torch is not None and isinstance(obj, torch.Tensor):
        return _plain(obj.item() if obj.numel() == 1 and obj.ndim == 0 else obj.tolist(), where)
    raise ValueError(f"{where} is not JSON-serialisable: {type(obj).__name__}")


def _timestamp(t: datetime | float) -> datetime:
    if isinstance(t, datetime):
        return t if t.tzinfo else t.replace(tzinfo=UTC)
    return datetime.fromtimestamp(float(t), tz=UTC)


def _check_metrics(metrics: Mapping[str, Any]) -> dict[str, Any]:
    """Metrics as ``{"iteration": i, "R@1": ...}`` or ``{name: {"iteration": i, ...}, ...}`` (e.g. final/selected)."""
    if not isinstance(metrics, Mapping) or not metrics:
        raise ValueError("metrics must be a non-empty mapping")
    plain = _plain(metrics, "metrics")
    nested = all(isinstance(v, dict) for v in plain.values())
    for name, group in plain.items() if nested else [("metrics", plain)]:
        it = group.get("iteration")
        if isinstance(it, bool) or not isinstance(it, int):
            raise ValueError(f"{name} must say which iteration its values come from (an integer 'iteration' key)")
    return plain


# ----------------------------------------------------------------------------------------------- hashing
def library_code_paths() -> list[Path]:
    """Every source file of the ``mslib`` package (subpackages such as ``mslib.data`` included)."""
    return sorted((Path(__file__).resolve().parent).rglob("*.py"))


def code_hash(paths: Iterable[str | os.PathLike] | None = None) -> str:
    """sha256 (16 hex digits) of the code behind a run: by default :func:`library_code_paths` (the one definition of
    "the library's code"); else the notebooks, files and folders given.

    Folders expand to every ``*.py`` file below them. A notebook contributes its cells' type and source only, so
    executing it (outputs, execution counts, metadata) does not change the hash, while editing a cell does. Files are
    keyed by their path relative to the project root, so two checkouts of the same code give the same hash.
    """
    files: list[Path] = []
    for p in library_code_paths() if paths is None else paths:
        p = Path(p)
        if p.is_dir():
            files.extend(sorted(p.rglob("*.py")))
        elif p.is_file():
            files.append(p)
        else:
            raise ValueError(f"code_hash: {p} does not exist")
    root = project_root()
    h = hashlib.sha256()
    for f in sorted(set(files), key=lambda q: q.resolve().as_posix()):
        try:
            name = f.resolve().relative_to(root.resolve()).as_posix()
        except ValueError:
            name = f.name
        if f.suffix == ".ipynb":
            nb = json.loads(f.read_text(encoding="utf-8"))
            cells = [(c.get("cell_type"), "".join(c.get("source", ""))) for c in nb.get("cells", [])]
            blob = json.dumps(cells).encode()
        else:
            blob = f.read_bytes()
        h.update(f"{name}\0{len(blob)}\0".encode())
        h.update(blob)
    return h.hexdigest()[:16]


def run_id(params: Mapping[str, Any], code_hash: str) -> str:
    """The record's id: a stable hash of the (JSON-normalised) parameters and the code hash."""
    return stable_hash({"params": _plain(params, "params"), "code_hash": code_hash})


# ----------------------------------------------------------------------------------------------- records
def run_record(
    params: Mapping[str, Any],
    metrics: Mapping[str, Any],
    *,
    seed: int,
    started: datetime | float,
    finished: datetime | float,
    images_per_second: float | None = None,
    extra: Mapping[str, Any] | None = None,
    code: str | None = None,
) -> dict[str, Any]:
    """A run record: parameters, metrics (each group with its ``iteration``), seed, provenance and timings.

    ``started``/``finished`` are datetimes or ``time.time()`` values; ``code`` is the :func:`code_hash` the run id
    uses (default: ``code_hash()``, the whole ``mslib`` package). Metric values become plain floats (NaN -> ``null``).
    """
    t0, t1 = _timestamp(started), _timestamp(finished)
    if t1 < t0:
        raise ValueError(f"finished ({t1.isoformat()}) is before started ({t0.isoformat()})")
    plain_params = _plain(params, "params")
    ch = code if code is not None else code_hash()
    return {
        "schema": SCHEMA_VERSION,
        "run_id": run_id(plain_params, ch),
        "params": plain_params,
        "metrics": _check_metrics(metrics),
        "seed": int(seed),
        "code_hash": ch,
        "git_commit": git_commit(),
        "mslib_version": __version__,
        "versions": versions(),
        "hardware": hardware(),
        "notebook": notebook_context(),
        "started": t0.isoformat(),
        "finished": t1.isoformat(),
        "wall_time_s": (t1 - t0).total_seconds(),
        "images_per_second": None if images_per_second is None else _plain(float(images_per_second), "ips"),
        "extra": _plain(dict(extra or {}), "extra"),
    }


def _dir(results_dir: str | os.PathLike | None) -> Path:
    return Path(results_dir) if results_dir is not None else default_results_dir()


def write_record(record: Mapping[str, Any], results_dir: str | os.PathLike | None = None) -> Path:
    """Write ``<results_dir>/<run_id>.json`` atomically (temp file + rename); a rerun replaces its own record."""
    rid = record.get("run_id")
    if not isinstance(rid, str) or not rid or "/" in rid:
        raise ValueError("record has no valid 'run_id' (build it with run_record)")
    text = json.dumps(_plain(record, "record"), indent=2, sort_keys=True, allow_nan=False) + "\n"
    return atomic_write_text(_dir(results_dir) / f"{rid}.json", text)


def _read(path: Path) -> dict[str, Any]:
    try:
        rec = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise ValueError(f"{path} is not valid JSON: {err}") from err
    if not isinstance(rec, dict) or "run_id" not in rec:
        raise ValueError(f"{path} is not a run record (no 'run_id')")
    return rec


def find_record(
    params: Mapping[str, Any], code_hash: str, results_dir: str | os.PathLike | None = None
) -> dict[str, Any] | None:
    """The record of this exact run (same parameters, same code hash), or ``None`` when there is none."""
    path = _dir(results_dir) / f"{run_id(params, code_hash)}.json"
    if not path.is_file():
        return None
    rec = _read(path)
    if rec.get("params") != _plain(params, "params") or rec.get("code_hash") != code_hash:
        return None
    return rec


def load_records(
    results_dir: str | os.PathLike | None = None,
    *,
    where: Mapping[str, Any] | None = None,
    code_hash: str | None = None,
) -> list[dict[str, Any]]:
    """All run records in ``results_dir`` (oldest first), optionally only those whose params contain ``where``
    and, with ``code_hash``, only those made by that code (the up-to-date ones)."""
    folder = _dir(results_dir)
    if not folder.is_dir():
        return []
    want = _plain(dict(where or {}), "where")
    out = []
    for path in sorted(folder.glob("*.json")):
        if path.name.startswith("."):
            continue
        rec = _read(path)
        if code_hash is not None and rec.get("code_hash") != code_hash:
            continue
        if any(rec.get("params", {}).get(k) != v for k, v in want.items()):
            continue
        out.append(rec)
    return sorted(out, key=lambda r: (r.get("started", ""), r["run_id"]))


METRIC_ORDER = ("R@", "MAP@R", "RP", "NMI")


def metrics_table(record: Mapping[str, Any], split: str = "test") -> Any:
    """One row per metric group of a record (final, selected, official_best_test): metrics ×100 and the iteration."""
    import pandas as pd

    rows = {}
    for group, values in record["metrics"].items():
        scores = values.get(split, {})
        row: dict[str, Any] = {"iteration": values.get("iteration")}
        for prefix in METRIC_ORDER:
            row.update({k: 100 * float(v) for k, v in scores.items() if k.startswith(prefix) and v is not None})
        rows[group] = row
    return pd.DataFrame.from_dict(rows, orient="index").rename_axis("model")


def write_table(df: Any, table_id: str, tables_dir: str | os.PathLike | None = None) -> Path:
    """Write ``results/tables/<table_id>.csv`` (``tab-<chapter>-<slug>``) for a numbered ``{csv-table}``."""
    if not table_id.startswith("tab-"):
        raise ValueError(f"table id {table_id!r} must look like 'tab-<chapter>-<slug>'")
    out = Path(tables_dir) if tables_dir is not None else default_results_dir() / "tables"
    return atomic_write_text(out / f"{table_id}.csv", df.to_csv(float_format="%.2f"))
