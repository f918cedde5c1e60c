"""Run records: one JSON file per training/evaluation run, ``results/<run-id>.json``, and the store that holds them.

A record holds everything needed to trust (or rebuild) a number in the book: all parameters, the metrics with the
iteration each comes from, the seed, the code hash and git commit, library versions, hardware, wall time and
throughput. The run id is a stable hash of the parameters and the code hash (:mod:`mslib.run.codehash`), so the
same run on the same code has the same file name: :class:`RunStore` (the results folder) finds an up-to-date
record, and a change to the code a run executes (a new code hash) makes old records stale instead of silently
reused.
In code a record is a :class:`RunRecord`; ``record.metric("R@1", split="test", model="final")`` reads one number.

A **record set** is a committed, read-only folder of records, ``results/sets/<name>/`` with a ``MANIFEST.json``
(:func:`pack_record_set`): the runs a book build made, kept in the repository so that a fresh clone reuses them
instead of training them again; it may also keep the final checkpoint of a run a chapter shows the network of
(``checkpoints/<run_id>.pt``). A store looks in its own folder first, then in each set (:func:`record_sets`);
``MSLIB_RECORD_SETS=none`` trains everything from scratch. A set's records obey the same rule as any record: only
a run with the same parameters and the same code hash is reused.
This module is storage only: training a run or loading its record is :func:`mslib.run.runs.train_or_load`.
"""

from __future__ import annotations

import json
import math
import os
import re
import shutil
import sys
import warnings
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from mslib import __version__
from mslib.files import atomic_write_text
from mslib.paths import results_dir as default_results_dir
from mslib.provenance import git_commit, hardware, notebook_context, stable_hash, versions

SCHEMA_VERSION = 1
RECORD_SETS_ENV = "MSLIB_RECORD_SETS"  # "none": no record set; "a,b": these sets, in this order; unset: every set
CHECKPOINT = "checkpoint.pt"  # a run folder's checkpoint, as mslib.run.trainer names it


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


# ----------------------------------------------------------------------------------------------- records
def run_id(params: Mapping[str, Any], code_hash: str) -> str:
    """The record's id: a stable hash of the (JSON-normalised) parameters and the code hash."""
    return stable_hash({"params": _plain(params, "params"), "code_hash": code_hash})


class MissingMetric(KeyError):
    """A metric a record does not hold; the message names the missing group, split or metric and what exists."""

    def __str__(self) -> str:
        return str(self.args[0])


@dataclass(frozen=True)
class RunRecord:
    """One run as ``results/<run_id>.json`` stores it: parameters, metrics by model group (``final``, ``selected``,
    ``official_best_test``; each with the ``iteration`` it comes from), seed, code hash and provenance, timings.

    ``label``, ``reused`` and ``record_set`` are not stored: :func:`mslib.run.runs.run_grid` sets the sweep's
    label, :func:`mslib.run.runs.train_or_load` says whether the record was loaded instead of trained, and
    :meth:`RunStore.find` names the record set it came from (``None``: the results folder itself).
    """

    run_id: str
    params: dict[str, Any]
    metrics: dict[str, Any]
    seed: int
    code_hash: str
    git_commit: str
    mslib_version: str
    versions: dict[str, Any]
    hardware: dict[str, Any]
    notebook: Any
    started: str
    finished: str
    wall_time_s: float
    images_per_second: float | None
    extra: dict[str, Any]
    schema: int = SCHEMA_VERSION
    label: Any = field(default=None, compare=False)
    reused: bool = field(default=False, compare=False)
    record_set: str | None = field(default=None, compare=False)

    def metric(self, name: str, *, split: str = "test", model: str = "final") -> float | None:
        """``metrics[model][split][name]``, e.g. ``record.metric("R@1", split="test", model="final")``; ``None``
        where the value was not finite (stored as ``null``). A missing group, split or metric is a
        :class:`MissingMetric` naming it and what the record has."""
        if model not in self.metrics:
            raise MissingMetric(f"run {self.run_id} has no model group {model!r}; it has {sorted(self.metrics)}")
        group = self.metrics[model]
        if split not in group or not isinstance(group[split], dict):
            splits = sorted(k for k, v in group.items() if isinstance(v, dict))
            raise MissingMetric(f"run {self.run_id}: group {model!r} has no split {split!r}; it has {splits}")
        if name not in group[split]:
            raise MissingMetric(f"run {self.run_id}: {model}/{split} has no metric {name!r}; "
                                f"it has {sorted(group[split])}")
        value = group[split][name]
        return None if value is None else float(value)

    def to_dict(self) -> dict[str, Any]:
        """The record as JSON types, the stored fields only (not ``label``/``reused``/``record_set``)."""
        return {f.name: getattr(self, f.name) for f in fields(self) if f.name not in _RUNTIME_FIELDS}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], where: str = "record") -> RunRecord:
        """A record from its JSON form (schema version 1); ``where`` names the source in error messages."""
        schema = data.get("schema")
        if schema != SCHEMA_VERSION:
            raise ValueError(f"{where} has record schema {schema!r}; this mslib reads schema {SCHEMA_VERSION}")
        stored = [f.name for f in fields(cls) if f.name not in _RUNTIME_FIELDS]
        missing = [name for name in stored if name not in data]
        if missing:
            raise ValueError(f"{where} is an incomplete run record: no {', '.join(missing)}")
        return cls(**{name: data[name] for name in stored})


_RUNTIME_FIELDS = ("label", "reused", "record_set")


def run_record(
    params: Mapping[str, Any],
    metrics: Mapping[str, Any],
    *,
    seed: int,
    started: datetime | float,
    finished: datetime | float,
    images_per_second: float | None = None,
    extra: Mapping[str, Any] | None = None,
    code: str,
) -> RunRecord:
    """A run record: parameters, metrics (each group with its ``iteration``), seed, provenance and timings.

    ``started``/``finished`` are datetimes or ``time.time()`` values; ``code`` is the code hash the run id uses
    (:func:`mslib.run.codehash.run_code_hash`). Metric values become plain floats (NaN -> ``null``).
    """
    t0, t1 = _timestamp(started), _timestamp(finished)
    if t1 < t0:
        raise ValueError(f"finished ({t1.isoformat()}) is before started ({t0.isoformat()})")
    plain_params = _plain(params, "params")
    ch = code
    return RunRecord(
        run_id=run_id(plain_params, ch), params=plain_params, metrics=_check_metrics(metrics), seed=int(seed),
        code_hash=ch, git_commit=git_commit(), mslib_version=__version__, versions=versions(),
        hardware=hardware(), notebook=notebook_context(), started=t0.isoformat(), finished=t1.isoformat(),
        wall_time_s=(t1 - t0).total_seconds(),
        images_per_second=None if images_per_second is None else _plain(float(images_per_second), "ips"),
        extra=_plain(dict(extra or {}), "extra"),
    )


def _matching(path: Path, params: Mapping[str, Any], code: str) -> RunRecord | None:
    """The record at ``path`` if it is the run of ``params`` on code ``code``; ``None`` if absent, of another run,
    or unreadable (then with a warning: the run is recomputed)."""
    if not path.is_file():
        return None
    try:
        rec = _read(path)
    except ValueError as err:
        warnings.warn(f"{err}; recomputing the run", stacklevel=3)
        return None
    return rec if rec.params == _plain(params, "params") and rec.code_hash == code else None


def _read(path: Path) -> RunRecord:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise ValueError(f"{path} is not valid JSON: {err}") from err
    if not isinstance(data, dict) or "run_id" not in data:
        raise ValueError(f"{path} is not a run record (no 'run_id')")
    return RunRecord.from_dict(data, where=str(path))


class RunStore:
    """The results folder (default ``results/``): run records ``<run_id>.json`` and run folders ``runs/<run_id>/``
    (checkpoint, log), and the committed record sets it also reads (default :func:`record_sets`). Storage only:
    :func:`mslib.run.runs.train_or_load` trains or loads through it; records are written to the results folder,
    never into a set."""

    def __init__(self, results_dir: str | os.PathLike | None = None, *,
                 sets: Sequence[str | os.PathLike] | None = None) -> None:
        self.results_dir = Path(results_dir) if results_dir is not None else default_results_dir()
        self.sets = [Path(s) for s in sets] if sets is not None else record_sets(self.results_dir)

    def path(self, run: str) -> Path:
        """Where the record of run id ``run`` is (or would be) stored."""
        return self.results_dir / f"{run}.json"

    def run_dir(self, params: Mapping[str, Any], code: str) -> Path:
        """The run folder (checkpoint, metrics log) of the run of ``params`` on code ``code``."""
        return self.run_folder(run_id(params, code))

    def run_folder(self, run: str) -> Path:
        """The run folder of run id ``run``: ``runs/<run>/``."""
        return self.results_dir / "runs" / run

    def write(self, record: RunRecord) -> Path:
        """Write ``<run_id>.json`` atomically (temp file + rename); a rerun replaces its own record."""
        if not isinstance(record, RunRecord):
            raise TypeError(f"write expects a RunRecord (build it with run_record), got {type(record).__name__}")
        if not record.run_id or "/" in record.run_id:
            raise ValueError(f"record has no valid run_id: {record.run_id!r}")
        text = json.dumps(_plain(record.to_dict(), "record"), indent=2, sort_keys=True, allow_nan=False) + "\n"
        return atomic_write_text(self.path(record.run_id), text)

    def checkpoint(self, params: Mapping[str, Any], code: str) -> Path | None:
        """The checkpoint of this exact run in its run folder, copied there first from the first set that keeps it
        (a set is read-only; training resumes from the run folder), or ``None`` if neither has one."""
        run = run_id(params, code)
        own = self.run_folder(run) / CHECKPOINT
        if not own.is_file():
            kept = [p for s in self.sets if (p := s / CHECKPOINTS / f"{run}.pt").is_file()]
            if not kept:
                return None
            own.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(kept[0], own)
        return own

    def find(self, params: Mapping[str, Any], code: str) -> RunRecord | None:
        """The record of this exact run (same parameters, same code hash) from the results folder, else from the
        first record set holding it (``record.record_set`` names the set), or ``None``. A file of an older or
        incomplete format is reported (a warning) and treated as missing, so the run is recomputed."""
        name = f"{run_id(params, code)}.json"
        for folder, set_name in [(self.results_dir, None), *((s, s.name) for s in self.sets)]:
            rec = _matching(folder / name, params, code)
            if rec is not None:
                return rec if set_name is None else replace(rec, record_set=set_name)
        return None

    def load_all(self, *, where: Mapping[str, Any] | None = None, code_hash: str | None = None) -> list[RunRecord]:
        """Every record of the results folder (oldest first; not the sets'); only those whose params contain
        ``where`` and, with ``code_hash``, only those made by that code (the up-to-date ones)."""
        if not self.results_dir.is_dir():
            return []
        want = _plain(dict(where or {}), "where")
        out = []
        for path in sorted(self.results_dir.glob("*.json")):
            if path.name.startswith("."):
                continue
            rec = _read(path)
            if code_hash is not None and rec.code_hash != code_hash:
                continue
            if any(rec.params.get(k) != v for k, v in want.items()):
                continue
            out.append(rec)
        return sorted(out, key=lambda r: (r.started, r.run_id))


# ----------------------------------------------------------------------------------------------- record sets
_SET_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")
MANIFEST = "MANIFEST.json"
CHECKPOINTS = "checkpoints"  # a set's folder of final checkpoints, <run_id>.pt


def record_sets(results_dir: str | os.PathLike) -> list[Path]:
    """The record sets a store reads after its own folder: ``results_dir/sets/<name>/``, in name order, or those
    ``MSLIB_RECORD_SETS`` names (comma-separated, in that order; ``none``: no set, so every run is trained)."""
    root = Path(results_dir) / "sets"
    chosen = os.environ.get(RECORD_SETS_ENV, "").strip()
    if chosen.lower() == "none":
        return []
    found = sorted(p for p in root.iterdir() if (p / MANIFEST).is_file()) if root.is_dir() else []
    if not chosen:
        return found
    names = [n.strip() for n in chosen.split(",") if n.strip()]
    unknown = [n for n in names if not (root / n / MANIFEST).is_file()]
    if unknown:
        raise ValueError(f"{RECORD_SETS_ENV} names record set(s) {', '.join(unknown)} that {root} does not hold; "
                         f"it holds: {', '.join(p.name for p in found) or 'none'} (or say 'none')")
    return [root / n for n in names]


def set_records(folder: str | os.PathLike) -> list[RunRecord]:
    """The records of one record set (or any folder of records), in run-id order, each naming its set."""
    folder = Path(folder)
    return [replace(_read(p), record_set=folder.name) for p in sorted(folder.glob("*.json")) if p.name != MANIFEST]


def set_checkpoints(folder: str | os.PathLike) -> list[str]:
    """The run ids whose final checkpoint a record set keeps (``checkpoints/<run_id>.pt``), sorted."""
    return sorted(p.stem for p in (Path(folder) / CHECKPOINTS).glob("*.pt"))


def set_manifest(records: Sequence[RunRecord], *, name: str, description: str,
                 checkpoints: Sequence[str] = ()) -> dict[str, Any]:
    """What a record set holds, in numbers: runs per code hash, per machine and per notebook (profile), run time,
    and the run ids whose checkpoint it keeps (the key only where it keeps one)."""
    def machine(r: RunRecord) -> str:
        hw = r.hardware
        return str(hw.get("gpu") or hw.get("cpu_model") or hw.get("processor", "?")) + f", {hw.get('cpu_count')} CPUs"

    def made_by(r: RunRecord) -> str:
        nb = r.notebook if isinstance(r.notebook, dict) else {}
        return f"{nb.get('notebook', '?')} ({nb.get('profile', '?')})"

    return {"name": name, "description": description, "runs": len(records),
            "code_hashes": dict(Counter(r.code_hash for r in records)),
            "machines": dict(Counter(machine(r) for r in records)),
            "made_by": dict(Counter(made_by(r) for r in records)),
            "commits": sorted({str(r.git_commit) for r in records}),
            "first_started": min((r.started for r in records), default=None),
            "last_finished": max((r.finished for r in records), default=None),
            "run_minutes": round(math.fsum(float(r.wall_time_s or 0.0) for r in records) / 60, 1),
            **({"checkpoints": sorted(checkpoints)} if checkpoints else {})}


def pack_record_set(store: RunStore, name: str, code: str, *, description: str,
                    checkpoints: Sequence[str] = ()) -> Path:
    """Copy the records of ``store``'s results folder made by code hash ``code`` that no other set of ``store``
    holds into the record set ``results/sets/<name>/`` (created, or added to), with the final checkpoints of the
    runs ``checkpoints`` names (run ids of records this set holds), and write its ``MANIFEST.json``
    (:func:`set_manifest`). Returns the set's folder."""
    if not _SET_NAME.fullmatch(name):
        raise ValueError(f"a record set's name is letters, digits, '.', '_' and '-', starting with a letter or "
                         f"digit, not {name!r}")
    folder = store.results_dir / "sets" / name
    elsewhere = {p.name for s in store.sets if s.resolve() != folder.resolve() for p in s.glob("*.json")}
    chosen = [r for r in store.load_all(code_hash=code) if f"{r.run_id}.json" not in elsewhere]
    if not chosen and not (folder / MANIFEST).is_file():
        raise ValueError(f"no record of code {code} in {store.results_dir} to pack (that another set lacks)")
    kept = _final_checkpoints(store, checkpoints, held={r.run_id for r in chosen} | {
        p.stem for p in folder.glob("*.json") if p.name != MANIFEST})
    folder.mkdir(parents=True, exist_ok=True)
    for record in chosen:
        shutil.copyfile(store.path(record.run_id), folder / f"{record.run_id}.json")
    for run, path in kept.items():
        (folder / CHECKPOINTS).mkdir(exist_ok=True)
        shutil.copyfile(path, folder / CHECKPOINTS / f"{run}.pt")
    manifest = set_manifest(set_records(folder), name=name, description=description,
                            checkpoints=set_checkpoints(folder))
    atomic_write_text(folder / MANIFEST, json.dumps(manifest, indent=2, sort_keys=True) + "\n")
    return folder


def _final_checkpoints(store: RunStore, runs: Sequence[str], *, held: set[str]) -> dict[str, Path]:
    """``run id -> runs/<id>/checkpoint.pt`` for each run named; an error names a run whose record the set will not
    hold or that has no checkpoint in ``store``."""
    paths = {run: store.run_folder(run) / CHECKPOINT for run in runs}
    for run, path in paths.items():
        if run not in held:
            raise ValueError(f"checkpoint of run {run!r}: the set would not hold its record (a current record of "
                             f"{store.results_dir} that no other set holds)")
        if not path.is_file():
            raise ValueError(f"checkpoint of run {run!r}: no {path}")
    return paths
