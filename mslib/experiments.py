"""Sweeps over training settings and seeds, resumable through run records, summarised as mean ± 95% CI.

:func:`run_grid` trains (or loads) every ``config × seed`` through :func:`mslib.train.train_or_load`, so an
interrupted sweep picks up the runs already recorded and a stale record (other parameters or code) is recomputed.
:func:`summarise` turns the records into a table of means with a Student-t 95% confidence interval over seeds.
:data:`LOSS_SETTINGS` is the loss comparison of the *Results* chapters. "Mining only" ablations need nothing
here: ``loss_params={"ms_mining": ε, ...}`` restricts any loss with mined pairs (see :func:`mslib.losses.build_loss`).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from mslib.train import TrainConfig

__all__ = ["LOSS_SETTINGS", "METRICS", "NPAIR_SCALE", "ci95", "config_differences", "format_summary",
           "images_processed", "paper_runs_table", "provenance_line", "run_grid", "summarise"]

METRICS = ("R@1", "R@2", "R@4", "R@8", "MAP@R", "RP")


# The loss comparison: one identical setting (TrainConfig defaults), only loss and loss_params change. Each loss in
# the form the MS paper compares (book/sources.md#src-table1 for lifted structure), on cosine similarities.
# Hyperparameters: contrastive as the MS paper's similarity form (positive margin 1, negative margin λ = 0.5);
# triplet with FaceNet's margin 0.2 on squared distances of unit vectors (= 0.1 on cosine) and semi-hard triplets;
# binomial deviance with α = 2, λ = 0.5 and β = 50 on negatives; N-pair on cosine logits scaled by NPAIR_SCALE
# (chosen by validation R@1 on held-out training classes, chapter 06); MS as TrainConfig runs it (α 2, β 50, λ 0.5,
# ε 0.1).
NPAIR_SCALE = 8.0
LOSS_SETTINGS: dict[str, tuple[str, dict[str, Any]]] = {
    "contrastive": ("contrastive", {"pos_margin": 1.0, "neg_margin": 0.5}),
    "triplet (semi-hard)": ("triplet", {"margin": 0.1, "mode": "semihard"}),
    "lifted structure (generalised)": ("generalized_lifted_structure", {"margin": 1.0}),
    "binomial deviance": ("binomial_deviance", {"alpha": 2.0, "beta": 50.0, "lam": 0.5}),
    "N-pair (scaled cosine)": ("npair", {"scale": NPAIR_SCALE}),
    "MS (weighting only)": ("multi_similarity", {"alpha": 2.0, "beta": 50.0, "lam": 0.5, "epsilon": None}),
    "MS (mining + weighting)": ("multi_similarity", {"alpha": 2.0, "beta": 50.0, "lam": 0.5, "epsilon": 0.1}),
}


def run_grid(
    configs: Mapping[str, TrainConfig],
    seeds: Iterable[int],
    *,
    code_paths: Sequence[str | Path] | None = None,
    results_dir: str | Path | None = None,
    progress: bool = False,
    on_run: Callable[[str, int, bool], None] | None = None,
) -> list[dict[str, Any]]:
    """Train or load every ``configs[label]`` with each seed; return the records, each with ``label`` and ``reused``.

    Runs go one by one through :func:`mslib.train.train_or_load`: a run whose record
    is up to date is loaded, not retrained, so rerunning an interrupted sweep computes only the missing runs (and an
    interrupted run resumes from its checkpoint). Configs equal after seeding (e.g. a baseline shared by two
    sweeps) train once.
    ``on_run(label, seed, reused)`` is called after each run.
    """
    from mslib import train

    seeds = list(seeds)
    if not seeds:
        raise ValueError("run_grid needs at least one seed")
    out = []
    for label, cfg in configs.items():
        for seed in seeds:
            record, result = train.train_or_load(dataclasses.replace(cfg, seed=int(seed)),
                                                 code_paths=list(code_paths or []), results_dir=results_dir,
                                                 progress=progress)
            reused = result is None
            out.append({**record, "label": label, "reused": reused})
            if on_run is not None:
                on_run(label, int(seed), reused)
    return out


def ci95(values: Sequence[float]) -> tuple[float, float]:
    """Mean and half-width of the two-sided 95% Student-t confidence interval (``nan`` half-width for n = 1)."""
    from scipy import stats

    n = len(values)
    if n == 0:
        raise ValueError("ci95 needs at least one value")
    mean = math.fsum(values) / n
    if n == 1:
        return float(mean), float("nan")
    sd = math.sqrt(math.fsum((v - mean) ** 2 for v in values) / (n - 1))
    return float(mean), float(stats.t.ppf(0.975, n - 1) * sd / math.sqrt(n))


def _metric(record: Mapping[str, Any], group: str, split: str, name: str) -> float | None:
    value = record["metrics"].get(group, {}).get(split, {}).get(name)
    return None if value is None else 100.0 * float(value)


def summarise(
    records: Sequence[Mapping[str, Any]],
    by: str | Callable[[Mapping[str, Any]], Any] = "label",
    *,
    metrics: Sequence[str] = METRICS,
    group: str = "final",
    split: str = "test",
) -> Any:
    """Per value of ``by`` (a record key, a ``params`` key, or a function): ``<metric>`` mean, ``<metric> ci``
    (95% Student-t half-width over seeds; NaN when n = 1) and ``n`` (number of seeds). Metrics in percent.

    Rows keep the order in which their key first appears. Two records of the same key and seed are an error (the
    mean would count one run twice).
    """
    import pandas as pd

    def key(rec: Mapping[str, Any]) -> Any:
        if callable(by):
            return by(rec)
        return rec[by] if by in rec else rec["params"][by]

    groups: dict[Any, list[Mapping[str, Any]]] = {}
    for rec in records:
        groups.setdefault(key(rec), []).append(rec)
    rows = {}
    for k, recs in groups.items():
        seeds = [r["seed"] for r in recs]
        if len(set(seeds)) != len(seeds):
            raise ValueError(f"summarise: {k!r} has two records with the same seed ({sorted(seeds)})")
        row: dict[str, Any] = {}
        for m in metrics:
            values = [v for v in (_metric(r, group, split, m) for r in recs) if v is not None]
            mean, half = ci95(values) if values else (float("nan"), float("nan"))
            row[m], row[f"{m} ci"] = mean, half
        row["n"] = len(recs)
        rows[k] = row
    return pd.DataFrame.from_dict(rows, orient="index")


def format_summary(summary: Any, metrics: Sequence[str] = METRICS, digits: int = 1) -> Any:
    """A display/CSV table of ``mean ± ci`` strings (``mean (n=1, no CI)`` for one seed) plus the seed count."""
    import pandas as pd

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


def provenance_line(records: Sequence[Mapping[str, Any]]) -> str:
    """One line behind a table: runs, seeds, code hash, commit, torch, hardware, training time, reuse."""
    if not records:
        return "no run records"
    seeds = sorted({int(r["seed"]) for r in records})
    codes = sorted({str(r.get("code_hash")) for r in records})
    commits = sorted({str(r.get("git_commit", "unknown"))[:12] for r in records})
    torch_v = sorted({str(r.get("versions", {}).get("torch")) for r in records})
    hw = records[0].get("hardware", {})
    where = hw.get("gpu") or f"{hw.get('processor', '?')} CPU, {hw.get('torch_threads', '?')} threads"
    wall = math.fsum(float(r.get("wall_time_s") or 0.0) for r in records)
    reused = sum(bool(r.get("reused")) for r in records)
    return (f"{len(records)} runs (seeds {', '.join(map(str, seeds))}; {reused} loaded from records, "
            f"{len(records) - reused} trained now) · code {', '.join(codes)} · commit {', '.join(commits)} · "
            f"torch {', '.join(torch_v)} · {where} · {wall / 60:.1f} min of run time in total · "
            f"records: results/<run_id>.json")


def images_processed(cfg: TrainConfig, test_images: int) -> tuple[int, int]:
    """``(test evaluations, images processed)`` by a run of ``cfg``: training batches plus test evaluations.

    Evaluations: the final one, plus (with ``official_test_selection``) one before training and one every
    ``eval_every`` iterations, as :func:`mslib.train.fit` does. A basis for time estimates, not a measurement.
    """
    evaluations = 1
    if cfg.official_test_selection and cfg.eval_every:
        evaluations += 1 + (cfg.iterations - 1) // cfg.eval_every
    return evaluations, cfg.iterations * cfg.p * cfg.k + evaluations * test_images


def paper_runs_table(records: Sequence[Mapping[str, Any]], current: Iterable[str], *,
                     show_stale: bool = False) -> Any:
    """Paper-profile runs (dataset not ``glyphs``) of ``records`` beside the paper's R@1 for the same dataset,
    dimension and backbone (BN-Inception); only records whose code hash is in ``current`` unless ``show_stale``.
    One "not run yet" row if none."""
    import pandas as pd

    from mslib.paper import paper_row

    current = set(current)
    out = {}
    for r in records:
        params, metrics = r["params"], r["metrics"]
        fresh = r.get("code_hash") in current
        if params.get("dataset") == "glyphs" or not (fresh or show_stale):
            continue
        final = metrics.get("final", {}).get("test", {})
        best = metrics.get("official_best_test", {}).get("test", {})
        # the paper's MS rows are BN-Inception runs: another backbone has no published number to stand beside
        bninception = params.get("backbone") == "bninception"
        row = paper_row(params["dataset"], params["embedding_dim"]) if bninception else None
        out[r["run_id"]] = {
            "dataset": params["dataset"], "dim": params["embedding_dim"], "iterations": params["iterations"],
            **{f"{m} (final)": round(100 * final[m], 1) for m in METRICS if final.get(m) is not None},
            "R@1 (official protocol: best on test)": round(100 * best["R@1"], 1) if "R@1" in best else "–",
            "paper R@1": f"{row.metrics['R@1']} {row.tag}" if row else "not published",
            "status": "current code" if fresh else "stale (older code)",
            "commit": str(r.get("git_commit", "unknown"))[:12],
            "wall (min)": round(float(r.get("wall_time_s") or 0.0) / 60, 1),
        }
    if not out:
        return pd.DataFrame({"status": ["not run yet"]}, index=pd.Index(["–"], name="run id"))
    return pd.DataFrame.from_dict(out, orient="index").rename_axis("run id")
