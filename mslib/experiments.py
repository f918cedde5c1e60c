"""Sweeps over training settings and seeds, resumable through run records, summarised as mean ± 95% CI.

:func:`run_grid` trains (or loads) every ``config × seed`` through :meth:`mslib.results.RunStore.train_or_load`,
so an interrupted sweep picks up the runs already recorded and a stale record (other parameters or code) is recomputed;
the runs not yet recorded train in ``jobs`` spawned worker processes (:func:`train_run`), each at its own
``TrainConfig.threads``, so a record does not depend on how many ran beside it.
:func:`summarise` turns the records into a table of means with a Student-t 95% confidence interval over seeds;
:func:`paired_differences` / :func:`compare_pairs` set variants against a baseline seed by seed (runs of one seed share
initialisation and batches), and :func:`resolution` is the smallest difference such a design separates from zero
(``notebooks/06_recall_tables.ipynb``, ``07_ablations.ipynb``, ``09_beyond_pairs.ipynb``).
:data:`LOSS_SETTINGS` is the loss comparison of the *Results* chapters. "Mining only" ablations need nothing
here: ``loss_params={"ms_mining": ε, ...}`` restricts any loss with mined pairs (see :func:`mslib.losses.build_loss`).
"""

from __future__ import annotations

import dataclasses
import math
import multiprocessing
import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path
from typing import Any

import pandas as pd
from scipy import stats

from mslib import distributed
from mslib.data.registry import is_paper_dataset
from mslib.paper import paper_row
from mslib.results import MissingMetric, RunRecord, RunStore, run_id
from mslib.train import TrainConfig, evaluations_on_test

__all__ = ["LOSS_SETTINGS", "METRICS", "NPAIR_SCALE", "ci95", "compare_pairs", "config_differences", "default_jobs",
           "format_differences", "format_summary", "images_processed", "paired_differences", "paper_runs_table",
           "provenance_line", "resolution", "run_grid", "run_minutes", "summarise", "train_run"]

METRICS = ("R@1", "R@2", "R@4", "R@8", "MAP@R", "RP")


# The loss comparison: one identical setting (TrainConfig defaults), only loss and loss_params change. Each loss in
# the form the MS paper compares (book/sources.md#src-table1 for lifted structure), on cosine similarities.
# Hyperparameters: contrastive as the MS paper's similarity form (positive margin 1, negative margin λ = 0.5);
# triplet with FaceNet's margin 0.2 on squared distances of unit vectors (= 0.1 on cosine) and semi-hard triplets;
# binomial deviance with α = 2, λ = 0.5 and β = 50 on negatives; N-pair on cosine logits scaled by NPAIR_SCALE
# (chosen by validation R@1 on held-out training classes, chapter 06); MS as TrainConfig runs it (preset pml).
NPAIR_SCALE = 8.0
LOSS_SETTINGS: dict[str, tuple[str, dict[str, Any]]] = {
    "contrastive": ("contrastive", {"pos_margin": 1.0, "neg_margin": 0.5}),
    "triplet (semi-hard)": ("triplet", {"margin": 0.1, "mode": "semihard"}),
    "lifted structure (generalised)": ("generalized_lifted_structure", {"margin": 1.0}),
    "binomial deviance": ("binomial_deviance", {"alpha": 2.0, "beta": 50.0, "lam": 0.5}),
    "N-pair (scaled cosine)": ("npair", {"scale": NPAIR_SCALE}),
    "MS (weighting only)": ("multi_similarity", {"preset": "pml", "epsilon": None}),
    "MS (mining + weighting)": ("multi_similarity", {"preset": "pml"}),
}


def default_jobs() -> int:
    """Worker processes of a sweep by default: the CPU cores this process may run on."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def run_grid(
    configs: Mapping[str, TrainConfig],
    seeds: Iterable[int],
    *,
    code_paths: Sequence[str | Path] | None = None,
    results_dir: str | Path | None = None,
    progress: bool = False,
    on_run: Callable[[str, int, bool], None] | None = None,
    jobs: int | None = None,
) -> list[RunRecord]:
    """Train or load every ``configs[label]`` with each seed; return the records, each with ``label`` and ``reused``.

    Every run goes through :meth:`mslib.results.RunStore.train_or_load`: a run whose record is up to date is
    loaded, not retrained, so rerunning an interrupted sweep computes only the missing runs (and an interrupted
    run resumes from its checkpoint). Configs equal after seeding (e.g. a baseline shared by two sweeps) train once.
    The runs not yet recorded train in ``jobs`` worker processes (default :func:`default_jobs`; ``1``: one by one
    in this process, with ``progress`` bars); each run uses its own ``TrainConfig.threads``, so its numbers do not
    depend on ``jobs``. Under ``torchrun`` the runs go one by one. Records come back in ``configs × seeds`` order.
    Workers are spawned (not forked), so a script that calls this with ``jobs > 1`` needs the usual
    ``if __name__ == "__main__":`` guard; a notebook kernel does not.
    ``on_run(label, seed, reused)`` is called (in this process) once per ``configs × seeds`` entry as its run ends.
    """
    seeds = [int(s) for s in seeds]
    if not seeds:
        raise ValueError("run_grid needs at least one seed")
    jobs = default_jobs() if jobs is None else jobs
    if isinstance(jobs, bool) or not isinstance(jobs, int) or jobs < 1:
        raise ValueError(f"run_grid: jobs must be an integer ≥ 1 (worker processes), not {jobs!r}")
    runs = [(label, seed, dataclasses.replace(cfg, seed=seed)) for label, cfg in configs.items() for seed in seeds]
    store = RunStore(results_dir)
    paths = [Path(p).resolve() for p in code_paths or []]
    if jobs == 1 or distributed.world_size() > 1 or int(os.environ.get("WORLD_SIZE", "1")) > 1:
        return _grid_serial(runs, store, paths, progress, on_run)
    return _grid_parallel(runs, store, paths, jobs, on_run)


def _grid_serial(runs: list[tuple[str, int, TrainConfig]], store: RunStore, paths: list[Path], progress: bool,
                 on_run: Callable[[str, int, bool], None] | None) -> list[RunRecord]:
    """:func:`run_grid` one run after another in this process."""
    out = []
    for label, seed, cfg in runs:
        record, _ = store.train_or_load(cfg, code_paths=paths, progress=progress)
        out.append(dataclasses.replace(record, label=label))
        if on_run is not None:
            on_run(label, seed, record.reused)
    return out


def train_run(cfg: TrainConfig, code_paths: list[Path], results_dir: Path) -> RunRecord:
    """One run of a parallel :func:`run_grid`, in a worker process: train it and write its record."""
    record, _ = RunStore(results_dir).train_or_load(cfg, code_paths=code_paths, progress=False)
    return record


def _grid_parallel(runs: list[tuple[str, int, TrainConfig]], store: RunStore, paths: list[Path], jobs: int,
                   on_run: Callable[[str, int, bool], None] | None) -> list[RunRecord]:
    """:func:`run_grid` with the runs not yet recorded trained in up to ``jobs`` spawned worker processes."""
    code = store.code_hash(paths)
    ids = [run_id(cfg.to_dict(), code) for _, _, cfg in runs]
    done: dict[str, RunRecord] = {}  # run id -> record (loaded, or trained now)
    pending: dict[str, tuple[str, int, TrainConfig]] = {}  # run id -> its first grid entry
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
    trained = _train_in_workers(pending, store, paths, jobs, on_run)
    out = []
    for i, (rid, (label, seed, _)) in enumerate(zip(ids, runs, strict=True)):
        first_training = rid in trained and ids.index(rid) == i
        record = trained[rid] if first_training else dataclasses.replace(trained.get(rid, done.get(rid)), reused=True)
        out.append(dataclasses.replace(record, label=label))
        if on_run is not None and not first_training and i not in notified:
            on_run(label, seed, True)
    return out


def _train_in_workers(pending: Mapping[str, tuple[str, int, TrainConfig]], store: RunStore, paths: list[Path],
                      jobs: int, on_run: Callable[[str, int, bool], None] | None) -> dict[str, RunRecord]:
    """Train ``pending`` (run id -> grid entry) in spawned processes; a failed run raises, naming it."""
    if len(pending) == 1:  # no worker to spawn for a single run
        ((rid, (label, seed, cfg)),) = pending.items()
        record = train_run(cfg, paths, store.results_dir)
        if on_run is not None:
            on_run(label, seed, record.reused)
        return {rid: record}
    if not pending:
        return {}
    trained = {}
    context = multiprocessing.get_context("spawn")  # not fork: torch's OpenMP pool does not survive a fork
    pool = ProcessPoolExecutor(max_workers=min(jobs, len(pending)), mp_context=context)
    try:
        futures = {pool.submit(train_run, cfg, paths, store.results_dir): rid
                   for rid, (_, _, cfg) in pending.items()}
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


def ci95(values: Sequence[float]) -> tuple[float, float]:
    """Mean and half-width of the two-sided 95% Student-t confidence interval (``nan`` half-width for n = 1)."""
    n = len(values)
    if n == 0:
        raise ValueError("ci95 needs at least one value")
    mean = math.fsum(values) / n
    if n == 1:
        return float(mean), float("nan")
    sd = math.sqrt(math.fsum((v - mean) ** 2 for v in values) / (n - 1))
    return float(mean), float(stats.t.ppf(0.975, n - 1) * sd / math.sqrt(n))


def _percent(record: RunRecord, name: str, split: str, group: str) -> float | None:
    """``100 · record.metric(...)``; ``None`` where the record lacks it or it was not finite."""
    try:
        value = record.metric(name, split=split, model=group)
    except MissingMetric:
        return None
    return None if value is None else 100.0 * value


def _key(record: RunRecord, by: str | Callable[[RunRecord], Any]) -> Any:
    """The grouping key of ``record``: ``by(record)``, the record's ``label``/``seed``/..., or a ``params`` key."""
    if callable(by):
        return by(record)
    if by in {f.name for f in dataclasses.fields(RunRecord)}:
        return getattr(record, by)
    if by not in record.params:
        raise KeyError(f"summarise: {by!r} is neither a record field nor a parameter of run {record.run_id}")
    return record.params[by]


def summarise(
    records: Sequence[RunRecord],
    by: str | Callable[[RunRecord], Any] = "label",
    *,
    metrics: Sequence[str] = METRICS,
    group: str = "final",
    split: str = "test",
) -> Any:
    """Per value of ``by`` (a record field, a ``params`` key, or a function): ``<metric>`` mean, ``<metric> ci``
    (95% Student-t half-width over seeds; NaN when n = 1) and ``n`` (number of seeds). Metrics in percent.

    Rows keep the order in which their key first appears. Two records of the same key and seed are an error (the
    mean would count one run twice).
    """
    groups: dict[Any, list[RunRecord]] = {}
    for rec in records:
        groups.setdefault(_key(rec, by), []).append(rec)
    rows = {}
    for k, recs in groups.items():
        seeds = [r.seed for r in recs]
        if len(set(seeds)) != len(seeds):
            raise ValueError(f"summarise: {k!r} has two records with the same seed ({sorted(seeds)})")
        row: dict[str, Any] = {}
        for m in metrics:
            values = [v for v in (_percent(r, m, split, group) for r in recs) if v is not None]
            mean, half = ci95(values) if values else (float("nan"), float("nan"))
            row[m], row[f"{m} ci"] = mean, half
        row["n"] = len(recs)
        rows[k] = row
    return pd.DataFrame.from_dict(rows, orient="index")


def _by_seed(records: Sequence[RunRecord], key: Any, metric: str, split: str, model: str) -> dict[int, float]:
    """``{seed: 100 · metric}`` of one group's records; a seed twice or a missing value is an error naming it."""
    out: dict[int, float] = {}
    for r in records:
        value = _percent(r, metric, split, model)
        if value is None:
            raise ValueError(f"paired_differences: {key!r} seed {r.seed} has no finite {model}/{split} {metric}")
        if int(r.seed) in out:
            raise ValueError(f"paired_differences: {key!r} has two records with seed {r.seed}")
        out[int(r.seed)] = value
    return out


def paired_differences(
    records: Sequence[RunRecord],
    baseline: Any,
    *,
    metric: str = "R@1",
    by: str | Callable[[RunRecord], Any] = "label",
    split: str = "test",
    model: str = "final",
) -> Any:
    """Each variant (value of ``by``) against ``baseline``, paired by seed: ``difference`` (mean of the per-seed
    differences variant − baseline, in points of the metric in percent), ``ci`` (95% Student-t half-width,
    n − 1 degrees of freedom; NaN for n = 1), ``n`` (seeds), ``excludes 0`` and ``per seed`` (the differences).

    A seed's two runs share the data order and initialisation, so the seed-to-seed spread common to both cancels:
    the paired interval is narrower than the two means' intervals. Variants and baseline must have the same seeds.
    """
    groups: dict[Any, list[RunRecord]] = {}
    for rec in records:
        groups.setdefault(_key(rec, by), []).append(rec)
    if baseline not in groups:
        raise KeyError(f"paired_differences: no records of the baseline {baseline!r}; there are {list(groups)}")
    base = _by_seed(groups.pop(baseline), baseline, metric, split, model)
    rows = {}
    for key, recs in groups.items():
        values = _by_seed(recs, key, metric, split, model)
        if sorted(values) != sorted(base):
            raise ValueError(f"paired_differences: {key!r} has seeds {sorted(values)}, the baseline {baseline!r} "
                             f"{sorted(base)}; a paired comparison needs the same seeds")
        diffs = [values[s] - base[s] for s in sorted(base)]
        mean, half = ci95(diffs)
        rows[key] = {"difference": mean, "ci": half, "n": len(diffs),
                     "excludes 0": bool(abs(mean) > half), "per seed": tuple(diffs)}
    return pd.DataFrame.from_dict(rows, orient="index", columns=["difference", "ci", "n", "excludes 0", "per seed"])


def resolution(differences: Any) -> float:
    """The smallest difference every comparison of a :func:`paired_differences` table separates from 0: the
    largest 95% half-width among its rows (points; NaN if some row has a single seed)."""
    if len(differences) == 0:
        raise ValueError("resolution needs at least one paired comparison")
    halves = [float(h) for h in differences["ci"]]
    return float("nan") if any(math.isnan(h) for h in halves) else max(halves)


def compare_pairs(records: Sequence[RunRecord], comparisons: Mapping[Any, tuple[Any, Any]], **kwargs: Any) -> Any:
    """:func:`paired_differences` of chosen pairs: ``{name: (variant, baseline)}`` (labels, or values of ``by``)
    -> one row per name. ``kwargs`` go to :func:`paired_differences` (``metric``, ``by``, ...)."""
    by = kwargs.get("by", "label")
    rows = {}
    for name, (variant, baseline) in comparisons.items():
        pair = [r for r in records if _key(r, by) in (variant, baseline)]
        table = paired_differences(pair, baseline, **kwargs)
        if variant not in table.index:
            raise KeyError(f"compare_pairs: {name!r} names variant {variant!r}, which has no records")
        rows[name] = table.loc[variant]
    return pd.DataFrame(rows).T.astype({"difference": float, "ci": float, "n": int, "excludes 0": bool})


def format_differences(differences: Any, digits: int = 1) -> Any:
    """A display/CSV table of a :func:`paired_differences` (or :func:`compare_pairs`) table: ``difference ± ci``
    (points), the seeds, and whether the 95% interval excludes 0."""
    def cell(mean: float, half: float) -> str:
        return f"{mean:+.{digits}f} (n=1, no CI)" if math.isnan(half) else f"{mean:+.{digits}f} ± {half:.{digits}f}"

    return pd.DataFrame({"difference (points)": [cell(m, h) for m, h in zip(differences["difference"],
                                                                              differences["ci"], strict=True)],
                         "seeds": differences["n"].astype(int).to_list(),
                         "interval excludes 0": ["yes" if x else "no" for x in differences["excludes 0"]]},
                        index=differences.index)


def run_minutes(records: Sequence[RunRecord]) -> float:
    """Minutes of run time behind ``records``, each distinct run once (its record's ``wall_time_s``)."""
    runs = {r.run_id: float(r.wall_time_s or 0.0) for r in records}
    return math.fsum(runs.values()) / 60


def format_summary(summary: Any, metrics: Sequence[str] = METRICS, digits: int = 1) -> Any:
    """A display/CSV table of ``mean ± ci`` strings (``mean (n=1, no CI)`` for one seed) plus the seed count."""
    def cell(mean: float, half: float, n: int) -> str:
        if math.isnan(mean):
            return "–"
        if n < 2 or math.isnan(half):
            return f"{mean:.{digits}f} (n=1, no CI)"
        return f"{mean:.{digits}f} ± {half:.{digits}f}"

    out = pd.DataFrame(index=summary.index)
    for m in metrics:
        out[m] = [cell(r[m], r[f"{m} ci"], int(r["n"])) for _, r in summary.iterrows()]
    out["seeds"] = summary["n"].astype(int)
    return out


def config_differences(cfg: TrainConfig, reference: Mapping[str, Any], keys: Sequence[str]) -> list[str]:
    """Human-readable ``key: ours vs reference`` for each of ``keys`` where ``cfg`` differs from ``reference``."""
    ours = cfg.to_dict()
    return [f"{k}: {ours[k]} here vs {reference[k]}" for k in keys if str(ours[k]) != str(reference[k])]


def provenance_line(records: Sequence[RunRecord]) -> str:
    """One line behind a table: runs, seeds, code hash, commit, torch, hardware, training time, reuse."""
    if not records:
        return "no run records"
    seeds = sorted({int(r.seed) for r in records})
    codes = sorted({str(r.code_hash) for r in records})
    commits = sorted({str(r.git_commit or "unknown")[:12] for r in records})
    torch_v = sorted({str(r.versions.get("torch")) for r in records})
    hw = records[0].hardware
    threads = sorted({str(r.params.get("threads", hw.get("torch_threads", "?"))) for r in records})
    where = hw.get("gpu") or f"{hw.get('processor', '?')} CPU, {'/'.join(threads)} torch thread(s) per run"
    wall = math.fsum(float(r.wall_time_s or 0.0) for r in records)
    reused = sum(bool(r.reused) for r in records)
    return (f"{len(records)} runs (seeds {', '.join(map(str, seeds))}; {reused} loaded from records, "
            f"{len(records) - reused} trained now) · code {', '.join(codes)} · commit {', '.join(commits)} · "
            f"torch {', '.join(torch_v)} · {where} · {wall / 60:.1f} min of run time in total · "
            f"records: results/<run_id>.json")


def images_processed(cfg: TrainConfig, test_images: int) -> tuple[int, int]:
    """``(test evaluations, images processed)`` by a run of ``cfg``: training batches plus test evaluations.

    The evaluations are :func:`mslib.train.fit`'s own count (:func:`mslib.train.evaluations_on_test`: the final
    model, the validation-selected one, the official schedule's periodic ones). A basis for time estimates, not a
    measurement.
    """
    evaluations = evaluations_on_test(cfg)
    return evaluations, cfg.iterations * cfg.p * cfg.k + evaluations * test_images


def _paper_run_row(r: RunRecord, fresh: bool) -> dict[str, Any]:
    """One row of :func:`paper_runs_table`: our final test metrics, the official protocol's, the paper's R@1."""
    params = r.params
    final = {m: _percent(r, m, "test", "final") for m in METRICS}
    best = _percent(r, "R@1", "test", "official_best_test")
    # the paper's MS rows are BN-Inception runs: another backbone has no published number to stand beside
    row = paper_row(params["dataset"], params["embedding_dim"]) if params.get("backbone") == "bninception" else None
    return {
        "dataset": params["dataset"], "dim": params["embedding_dim"], "iterations": params["iterations"],
        **{f"{m} (final)": round(v, 1) for m, v in final.items() if v is not None},
        "R@1 (official protocol: best on test)": round(best, 1) if best is not None else "–",
        "paper R@1": f"{row.metrics['R@1']} {row.tag}" if row else "not published",
        "status": "current code" if fresh else "stale (older code)",
        "commit": str(r.git_commit or "unknown")[:12],
        "wall (min)": round(float(r.wall_time_s or 0.0) / 60, 1),
    }


def paper_runs_table(records: Sequence[RunRecord], current: Iterable[str], *, show_stale: bool = False) -> Any:
    """Paper-profile runs (a dataset of the paper: :func:`mslib.data.registry.is_paper_dataset`) of ``records``
    beside the paper's R@1 for the same dataset, dimension and backbone (BN-Inception); only records whose code
    hash is in ``current`` unless ``show_stale``. One "not run yet" row if none."""
    current = set(current)
    out = {}
    for r in records:
        fresh = r.code_hash in current
        if is_paper_dataset(r.params.get("dataset")) and (fresh or show_stale):
            out[r.run_id] = _paper_run_row(r, fresh)
    if not out:
        return pd.DataFrame({"status": ["not run yet"]}, index=pd.Index(["–"], name="run id"))
    return pd.DataFrame.from_dict(out, orient="index").rename_axis("run id")
