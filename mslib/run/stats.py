"""Statistics over seeds: means with a Student-t 95% confidence interval, paired differences between variants.

:func:`summarise` turns run records into a table of means with a Student-t 95% confidence interval over seeds;
:func:`paired_differences` / :func:`compare_pairs` set variants against a baseline seed by seed (runs of one seed
share initialisation and batches); :mod:`mslib.run.significance` tests a family of such comparisons (Holm) and
gives each its minimum detectable effect (``notebooks/06_recall_tables.ipynb``, ``07_ablations.ipynb``,
``09_beyond_pairs.ipynb``).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import pandas as pd
from scipy import stats

from mslib.run.records import MissingMetric, RunRecord

METRICS = ("R@1", "R@2", "R@4", "R@8", "MAP@R", "RP")


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


def percent(record: RunRecord, name: str, split: str = "test", group: str = "final") -> float | None:
    """``100 · record.metric(name, split=split, model=group)``; ``None`` where the record lacks it or it was not
    finite."""
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
            values = [v for v in (percent(r, m, split, group) for r in recs) if v is not None]
            mean, half = ci95(values) if values else (float("nan"), float("nan"))
            row[m], row[f"{m} ci"] = mean, half
        row["n"] = len(recs)
        rows[k] = row
    return pd.DataFrame.from_dict(rows, orient="index")


def _by_seed(records: Sequence[RunRecord], key: Any, metric: str, split: str, model: str) -> dict[int, float]:
    """``{seed: 100 · metric}`` of one group's records; a seed twice or a missing value is an error naming it."""
    out: dict[int, float] = {}
    for r in records:
        value = percent(r, metric, split, model)
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
