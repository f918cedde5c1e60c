"""Train or load: one run (:func:`train_or_load`) and sweeps over settings and seeds (:func:`run_grid`).

A run is keyed by its parameters and the code it executes (:func:`mslib.run.codehash.run_code_hash`): an
up-to-date record in the :class:`~mslib.run.records.RunStore` is loaded, not retrained; a stale one (other
parameters or code) is recomputed, never shown. ``fit`` is the seam for the training loop (default
:func:`mslib.run.trainer.fit`): tests pass a stand-in instead of patching a module. ``notebooks/05_training.ipynb``
trains one run this way; ``06_recall_tables``, ``07_ablations`` and ``09_beyond_pairs`` run sweeps.
"""

from __future__ import annotations

import dataclasses
import multiprocessing
import os
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path
from typing import Any

from mslib import distributed
from mslib.run import trainer
from mslib.run.codehash import run_code_hash
from mslib.run.config import TrainConfig
from mslib.run.convergence import convergence_table, curves_by_label
from mslib.run.records import RunRecord, RunStore, run_id, run_record

Fit = Callable[..., trainer.FitResult]  # trainer.fit's signature: fit(cfg, *, run_dir, progress, on_log) -> FitResult
OnRun = Callable[[str, int, bool], None]


def train_or_load(
    cfg: TrainConfig,
    store: RunStore | None = None,
    *,
    fit: Fit = trainer.fit,
    code_paths: Sequence[str | os.PathLike] | None = None,
    need_model: bool = False,
    progress: bool = False,
    on_log: Callable[[dict[str, Any]], None] | None = None,
) -> tuple[RunRecord, trainer.FitResult | None]:
    """``(record, result)`` for ``cfg``: reuse an up-to-date record of ``store`` (default: ``results/``;
    ``record.reused``, ``result`` None unless ``need_model``), or train with ``fit`` (resuming
    ``runs/<run_id>/checkpoint.pt``) and write the record.

    A record is reused only when its parameters and the hash of the code that made it (the trainer's code plus
    ``code_paths``, e.g. a script with its own ``fit``) match. ``need_model`` also returns the trained model, from the
    checkpoint without retraining when the run folder or a record set has it (:meth:`RunStore.checkpoint`). Under
    ``torchrun`` only rank 0 writes the record.
    """
    store = store if store is not None else RunStore()
    code, params = run_code_hash(code_paths), cfg.to_dict()
    record, run_dir = store.find(params, code), store.run_dir(params, code)
    if record is not None and (not need_model or store.checkpoint(params, code) is not None):
        result = fit(cfg, run_dir=run_dir, progress=progress) if need_model else None
        return dataclasses.replace(record, reused=True), result
    started = time.time()
    result = fit(cfg, run_dir=run_dir, progress=progress, on_log=on_log)
    record = run_record(params, result.metrics, seed=cfg.seed, started=started, finished=time.time(),
                        images_per_second=result.timing["images_per_second"], code=code,
                        extra={"history": result.history, "evals": result.evals, "timing": result.timing})
    if distributed.rank() == 0:  # under torchrun every process has the same record; one writes it
        store.write(record)
    return record, result


def default_jobs() -> int:
    """Worker processes of a sweep by default: the CPU cores this process may run on."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def run_grid(
    configs: Mapping[str, TrainConfig],
    seeds: Iterable[int],
    *,
    store: RunStore | None = None,
    code_paths: Sequence[str | os.PathLike] | None = None,
    progress: bool = False,
    on_run: OnRun | None = None,
    jobs: int | None = None,
    fit: Fit = trainer.fit,
) -> list[RunRecord]:
    """Train or load every ``configs[label]`` with each seed; return the records, each with ``label`` and ``reused``.

    Every run goes through :func:`train_or_load` on ``store`` (default ``results/``): a run whose record is up to
    date is loaded, not retrained, so rerunning an interrupted sweep computes only the missing runs (and an
    interrupted run resumes from its checkpoint). Configs equal after seeding (e.g. a baseline shared by two sweeps)
    train once. The runs not yet recorded train in ``jobs`` worker processes (default :func:`default_jobs`; ``1``:
    one by one in this process, with ``progress`` bars); each run uses its own ``TrainConfig.threads``, so its
    numbers do not depend on ``jobs``. Under ``torchrun`` the runs go one by one. Records come back in
    ``configs × seeds`` order. Workers are spawned (not forked), so a script that calls this with ``jobs > 1``
    needs the usual ``if __name__ == "__main__":`` guard; a notebook kernel does not. ``fit`` reaches the workers
    by pickling (a module-level function; the default is the one meant for them: stand-ins are for ``jobs=1``).
    ``on_run(label, seed, reused)`` is called (in this process) once per ``configs × seeds`` entry as its run ends.
    """
    seeds = [int(s) for s in seeds]
    if not seeds:
        raise ValueError("run_grid needs at least one seed")
    jobs = default_jobs() if jobs is None else jobs
    if isinstance(jobs, bool) or not isinstance(jobs, int) or jobs < 1:
        raise ValueError(f"run_grid: jobs must be an integer ≥ 1 (worker processes), not {jobs!r}")
    runs = [(label, seed, dataclasses.replace(cfg, seed=seed)) for label, cfg in configs.items() for seed in seeds]
    store = store if store is not None else RunStore()
    paths = [Path(p).resolve() for p in code_paths or []]
    if jobs == 1 or distributed.world_size() > 1 or int(os.environ.get("WORLD_SIZE", "1")) > 1:
        return _grid_serial(runs, store, paths, progress, on_run, fit)
    return _grid_parallel(runs, store, paths, jobs, on_run, fit)


def lengthened(cfg: TrainConfig, factor: int) -> TrainConfig:
    """``cfg`` run ``factor`` times as long: its iterations and its learning-rate milestones × ``factor`` (the same
    schedule, stretched; evaluations stay every ``eval_every`` updates)."""
    if isinstance(factor, bool) or not isinstance(factor, int) or factor < 2:
        raise ValueError(f"lengthened: factor must be an integer ≥ 2, not {factor!r}")
    return dataclasses.replace(cfg, iterations=cfg.iterations * factor,
                               milestones=[m * factor for m in cfg.milestones])


def run_until_converged(configs: Mapping[Any, TrainConfig], seeds: Iterable[int], *, metric: str, tolerance: float,
                        fraction: float = 0.25, longer: Sequence[int] = (2,), jointly: bool = False,
                        **grid: Any) -> list[RunRecord]:
    """:func:`run_grid`, then each label whose runs still rise by the convergence criterion (the mean over seeds of
    their validation ``metric`` gains ``tolerance`` or more over the last ``fraction`` of the iterations,
    :func:`mslib.run.convergence.convergence_table`) again at ``factor`` × the length (:func:`lengthened`), for
    each ``factor`` of ``longer`` in turn while it still rises. Returns each label's runs at its last length, in
    ``configs × seeds`` order; a label still rising at the longest length keeps it (its convergence table shows it).
    ``jointly``: the labels are one comparison at one length, so all of them are lengthened while any still rises
    (e.g. a run with a memory and its baseline without). ``grid`` goes to :func:`run_grid` (``jobs``, ``store``,
    ...). Chapter 06 explains the criterion."""
    seeds = [int(s) for s in seeds]
    by_label = {label: [] for label in configs}
    for record in run_grid(configs, seeds, **grid):
        by_label[record.label].append(record)
    rising = dict(configs)
    for factor in longer:
        curves = curves_by_label([r for label in rising for r in by_label[label]], metric=metric)
        table = convergence_table(curves, tolerance=tolerance, fraction=fraction)
        rising = {label: configs[label] for label in rising if not table.loc[str(label), "converged"]}
        rising = dict(configs) if jointly and rising else rising
        if not rising:
            break
        by_label.update({label: [] for label in rising})
        for record in run_grid({label: lengthened(cfg, factor) for label, cfg in rising.items()}, seeds, **grid):
            by_label[record.label].append(record)
    return [r for records in by_label.values() for r in records]


GridEntry = tuple[str, int, TrainConfig]  # (label, seed, the seeded config)


def _grid_serial(runs: list[GridEntry], store: RunStore, paths: list[Path], progress: bool,
                 on_run: OnRun | None, fit: Fit) -> list[RunRecord]:
    """:func:`run_grid` one run after another in this process."""
    out = []
    for label, seed, cfg in runs:
        record, _ = train_or_load(cfg, store, fit=fit, code_paths=paths, progress=progress)
        out.append(dataclasses.replace(record, label=label))
        if on_run is not None:
            on_run(label, seed, record.reused)
    return out


def train_run(cfg: TrainConfig, code_paths: list[Path], store: RunStore, fit: Fit = trainer.fit) -> RunRecord:
    """One run of a parallel :func:`run_grid`, in a worker process: train it and write its record."""
    record, _ = train_or_load(cfg, store, fit=fit, code_paths=code_paths, progress=False)
    return record


def _grid_parallel(runs: list[GridEntry], store: RunStore, paths: list[Path], jobs: int, on_run: OnRun | None,
                   fit: Fit) -> list[RunRecord]:
    """:func:`run_grid` with the runs not yet recorded trained in up to ``jobs`` spawned worker processes."""
    code = run_code_hash(paths)
    ids = [run_id(cfg.to_dict(), code) for _, _, cfg in runs]
    done: dict[str, RunRecord] = {}  # run id -> record (loaded, or trained now)
    pending: dict[str, GridEntry] = {}  # run id -> its first grid entry
    notified: set[int] = set()  # grid entries whose on_run was called
    for i, (rid, (label, seed, cfg)) in enumerate(zip(ids, runs, strict=True)):
        if rid in done or rid in pending:
            continue
        record = store.find(cfg.to_dict(), code)
        if record is None:
            pending[rid] = (label, seed, cfg)
            continue
        done[rid] = dataclasses.replace(record, reused=True)
        if on_run is not None:
            on_run(label, seed, True)
            notified.add(i)
    trained = _train_in_workers(pending, store, paths, jobs, on_run, fit)
    out = []
    for i, (rid, (label, seed, _)) in enumerate(zip(ids, runs, strict=True)):
        first_training = rid in trained and ids.index(rid) == i
        record = trained[rid] if first_training else dataclasses.replace(trained.get(rid, done.get(rid)), reused=True)
        out.append(dataclasses.replace(record, label=label))
        if on_run is not None and not first_training and i not in notified:
            on_run(label, seed, True)
    return out


def _train_in_workers(pending: Mapping[str, GridEntry], store: RunStore, paths: list[Path], jobs: int,
                      on_run: OnRun | None, fit: Fit) -> dict[str, RunRecord]:
    """Train ``pending`` (run id -> grid entry) in spawned processes; a failed run raises, naming it."""
    if len(pending) == 1:  # no worker to spawn for a single run
        ((rid, (label, seed, cfg)),) = pending.items()
        record = train_run(cfg, paths, store, fit)
        if on_run is not None:
            on_run(label, seed, record.reused)
        return {rid: record}
    if not pending:
        return {}
    trained = {}
    context = multiprocessing.get_context("spawn")  # not fork: torch's OpenMP pool does not survive a fork
    pool = ProcessPoolExecutor(max_workers=min(jobs, len(pending)), mp_context=context)
    try:
        futures = {pool.submit(train_run, cfg, paths, store, fit): rid for rid, (_, _, cfg) in pending.items()}
        for future in as_completed(futures):
            label, seed, _ = pending[futures[future]]
            try:
                record = future.result()
            except Exception as err:
                raise RuntimeError(f"run_grid: run {label!r} with seed {seed} failed in its worker process: "
                                   f"{type(err).__name__}: {err}") from err
            trained[futures[future]] = record
            if on_run is not None:
                on_run(label, seed, record.reused)
    finally:  # after an error or an interrupt: the runs not started are dropped, the running ones end (recorded)
        pool.shutdown(wait=True, cancel_futures=True)
    return trained
