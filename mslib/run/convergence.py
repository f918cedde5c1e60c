"""When is a run converged? Learning curves from a run's periodic evaluations and a stated criterion.

A comparison of losses at a fixed iteration count measures partly how fast each loss learns. The results chapters
therefore state a criterion and check their own runs against it (``notebooks/06_recall_tables.ipynb``):

    A run of ``T`` iterations counts as **converged** when its validation metric ``m`` (chapter 06: MAP@R, since
    validation R@1 on few held-out classes sits near its ceiling) gains less than a tolerance ``τ`` over the last
    quarter of its iterations: ``late_gain(curve) = m(T) − m((1 − f)·T) < τ`` with ``f = 1/4``.

* The curve ``m`` is known only at the evaluated iterations (:func:`mslib.run.protocol.eval_iterations`, plus the final
  model's validation at ``T`` that :func:`mslib.run.trainer.final_metrics` appends). ``m((1 − f)·T)`` between two
  evaluations is **linearly interpolated** between its neighbours (exact when ``(1 − f)·T`` is evaluated).
* The gain is signed: a curve that falls over its last quarter has a negative gain and counts as converged (it is
  no longer improving; whether it overfits is another question).
* The tolerance is in the metric's own units: :mod:`mslib.evaluate` gives fractions, so ``τ = 0.01`` is 1 point.
* A single evaluation is noisy (the validation split is a sample of classes); the criterion compares two of them,
  so a gain of the order of the evaluation noise says little either way.

:func:`iterations_to_converge` picks a length for several runs (e.g. the losses of one chapter) from their curves:
the smallest evaluated ``T`` at which every curve, truncated at ``T`` as if the run had been ``T`` long, counts as
converged. The truncation is exact only when a run's learning rate at each update does not depend on the run's
length (a constant learning rate; the P×K batch sequence of a seed is the same for every length,
:class:`mslib.data.PKSampler`): a schedule placed at a fraction of the run (milestones at 2/3 of ``T``) anneals
earlier in a shorter run, so its truncated curve is not what that shorter run would measure.

:func:`convergence_table` applies the criterion to a chapter's own runs, as they are (no truncation): per label
(one loss), to the mean curve of its seeds (:func:`mean_curve`, less noisy than one run) and to each run
(:func:`curves_by_label` reads them from run records); ``notebooks/06_recall_tables.ipynb`` shows it.
:func:`still_rising` names the labels whose mean curve fails it, and :func:`undecided_comparisons` the comparisons
that involve one: the chapters test those but leave them *not decided*
(:func:`mslib.run.significance.family_table`'s ``undecided``), since no chapter compares losses on runs its own
curves show still rising.
"""

from __future__ import annotations

import math
from bisect import bisect_left
from collections.abc import Callable, Collection, Hashable, Mapping, Sequence
from itertools import pairwise
from typing import Any

import pandas as pd

Curve = list[tuple[int, float]]

__all__ = ["Curve", "convergence_table", "criterion", "curves_by_label", "is_converged", "iterations_to_converge",
           "late_gain", "learning_curve", "lengthening", "mean_curve", "still_rising", "truncate",
           "undecided_comparisons", "value_at"]


def learning_curve(evals: Sequence[Mapping[str, Any]], split: str = "val", metric: str = "R@1") -> Curve:
    """``[(iteration, metric), ...]`` in iteration order from a run's periodic evaluations (``FitResult.evals`` or a
    record's ``extra["evals"]``: entries ``{"iteration": i, "val": {"R@1": ...}, ...}``).

    Entries without ``split`` (e.g. a test-only evaluation) are skipped; an entry whose ``split`` lacks ``metric``,
    a non-integer or negative iteration, a repeated iteration or a non-finite value is an error naming the entry.
    """
    curve: Curve = []
    for n, entry in enumerate(evals):
        if not isinstance(entry, Mapping) or "iteration" not in entry:
            raise ValueError(f"evals[{n}] is not an evaluation entry with an 'iteration': {entry!r}")
        it = entry["iteration"]
        if isinstance(it, bool) or not isinstance(it, int) or it < 0:
            raise ValueError(f"evals[{n}]: iteration must be an integer ≥ 0, not {it!r}")
        if split not in entry:
            continue
        if not isinstance(entry[split], Mapping) or metric not in entry[split]:
            have = sorted(entry[split]) if isinstance(entry[split], Mapping) else entry[split]
            raise ValueError(f"evals[{n}] (iteration {it}): split {split!r} has no metric {metric!r}; it has {have}")
        value = entry[split][metric]
        if value is None or not math.isfinite(float(value)):
            raise ValueError(f"evals[{n}] (iteration {it}): {split} {metric} is not a finite number: {value!r}")
        curve.append((it, float(value)))
    curve.sort()
    repeated = sorted({a for (a, _), (b, _) in pairwise(curve) if a == b})
    if repeated:
        raise ValueError(f"evals: iteration(s) {repeated} evaluated more than once on {split!r}")
    if not curve:
        raise ValueError(f"evals: no evaluation on split {split!r} (a run needs val_fraction > 0 for 'val')")
    return curve


def _check_curve(curve: Sequence[tuple[int, float]]) -> None:
    if len(curve) < 2:
        raise ValueError(f"a learning curve needs at least 2 evaluations, got {len(curve)}")
    its = [it for it, _ in curve]
    if any(b <= a for a, b in pairwise(its)):
        raise ValueError(f"a learning curve's iterations must increase strictly, got {its}")
    if not all(math.isfinite(v) for _, v in curve):
        raise ValueError("a learning curve's values must be finite numbers")


def criterion(setting: Mapping[str, Any]) -> dict[str, Any]:
    """A chapter's ``convergence`` parameter (``{"metric", "tolerance" in points, "fraction", "longer"}``) as the
    keyword arguments of :func:`mslib.run.runs.run_until_converged`: ``metric``, ``tolerance`` in the metric's
    units (0.01 = 1 point), ``fraction`` and ``longer`` (the factors a still-rising run is lengthened by; none
    when absent)."""
    tolerance, fraction = float(setting["tolerance"]) / 100, float(setting["fraction"])
    _check_settings(tolerance, fraction)
    return {"metric": str(setting["metric"]), "tolerance": tolerance, "fraction": fraction,
            "longer": tuple(int(f) for f in setting.get("longer", ()))}


def lengthening(setting: Mapping[str, Any]) -> str:
    """The ``longer`` factors of a chapter's ``convergence`` parameter in words, for its prose: ``"2×"``,
    ``"2× and then 4×"``, ``"never"``."""
    return " and then ".join(f"{f}×" for f in criterion(setting)["longer"]) or "never"


def _check_settings(tolerance: float, fraction: float) -> None:
    if not tolerance > 0:
        raise ValueError(f"tolerance must be > 0 (in the metric's units: 0.01 = 1 point of R@1), got {tolerance!r}")
    if not 0 < fraction < 1:
        raise ValueError(f"fraction must be in (0, 1), got {fraction!r}")


def value_at(curve: Sequence[tuple[int, float]], iteration: float) -> float:
    """The curve at ``iteration``: the evaluation there, else linear interpolation between its two neighbours.
    Outside the evaluated range is an error (no extrapolation)."""
    _check_curve(curve)
    first, last = curve[0][0], curve[-1][0]
    if not first <= iteration <= last:
        raise ValueError(f"iteration {iteration} is outside the evaluated range [{first}, {last}]")
    i = max(bisect_left([it for it, _ in curve], iteration), 1)  # curve[i - 1] < iteration <= curve[i]
    (a, va), (b, vb) = curve[i - 1], curve[i]
    return va + (vb - va) * (iteration - a) / (b - a)


def late_gain(curve: Sequence[tuple[int, float]], fraction: float = 0.25) -> float:
    """``m(T) − m((1 − fraction)·T)``: the metric's gain over the last ``fraction`` of a run's ``T`` iterations,
    ``T`` the curve's last evaluated iteration, ``m((1 − fraction)·T)`` linearly interpolated (:func:`value_at`).

    Iterations count from 0, so the curve must reach back to ``(1 − fraction)·T`` (an error otherwise).
    """
    if not 0 < fraction < 1:
        raise ValueError(f"fraction must be in (0, 1), got {fraction!r}")
    _check_curve(curve)
    end, value = curve[-1]
    start = (1 - fraction) * end
    if start < curve[0][0]:
        raise ValueError(f"the last {fraction:g} of {end} iterations starts at {start:g}, before the first "
                         f"evaluation (iteration {curve[0][0]})")
    return value - value_at(curve, start)


def is_converged(curve: Sequence[tuple[int, float]], *, tolerance: float, fraction: float = 0.25) -> bool:
    """The criterion: ``late_gain(curve, fraction) < tolerance`` (``tolerance`` in the metric's units, > 0)."""
    _check_settings(tolerance, fraction)
    return late_gain(curve, fraction) < tolerance


def truncate(curve: Sequence[tuple[int, float]], iteration: int) -> Curve:
    """The curve's evaluations up to and including ``iteration``: the curve of a run ``iteration`` long (exact only
    for a learning rate that does not depend on the run's length; see the module docstring)."""
    if not any(it == iteration for it, _ in curve):
        raise ValueError(f"iteration {iteration} is not an evaluated iteration of the curve")
    return [(it, v) for it, v in curve if it <= iteration]


def iterations_to_converge(curves: Mapping[str, Sequence[tuple[int, float]]] | Sequence[Sequence[tuple[int, float]]],
                           tolerance: float, fraction: float = 0.25, *, sustained: bool = True) -> int | None:
    """The smallest evaluated ``T`` at which every curve, truncated at ``T``, counts as converged
    (:func:`is_converged`), and (``sustained``, the default) keeps counting as converged at every later candidate up
    to the curves' end; ``None`` when no ``T`` qualifies. Candidates are the iterations ``T > 0`` evaluated on every
    curve.

    ``sustained=False`` returns the first qualifying ``T`` alone. That can be a very short run (at small ``T`` the
    last quarter spans few iterations: between the evaluations at 0 and 100 it is a quarter of their difference, so
    a slow start passes) or a momentary stall of a curve that rises again later. Exact only for a constant learning
    rate (module docstring).
    """
    _check_settings(tolerance, fraction)
    listed = list(curves.values()) if isinstance(curves, Mapping) else list(curves)
    if not listed:
        raise ValueError("iterations_to_converge needs at least one curve")
    for curve in listed:
        _check_curve(curve)
    common = sorted(set.intersection(*({it for it, _ in c} for c in listed)) - {0})
    ok = [T for T in common
          if all(min(it for it, _ in c) <= (1 - fraction) * T
                 and is_converged(truncate(c, T), tolerance=tolerance, fraction=fraction) for c in listed)]
    if not sustained:
        return ok[0] if ok else None
    passing = set(ok)
    for i, T in enumerate(common):
        if all(t in passing for t in common[i:]):
            return T
    return None


def mean_curve(curves: Sequence[Sequence[tuple[int, float]]]) -> Curve:
    """The pointwise mean of curves evaluated at the same iterations (e.g. one loss's seeds); curves evaluated at
    different iterations are an error naming them (a mean over differently placed points would mix schedules)."""
    if not curves:
        raise ValueError("mean_curve needs at least one curve")
    its = [it for it, _ in curves[0]]
    for n, curve in enumerate(curves):
        if [it for it, _ in curve] != its:
            raise ValueError(f"curve {n} is evaluated at {[it for it, _ in curve]}, curve 0 at {its}: "
                             "a mean needs the same iterations")
    return [(it, math.fsum(c[i][1] for c in curves) / len(curves)) for i, it in enumerate(its)]


def curves_by_label(records: Sequence[Any], *, split: str = "val", metric: str = "R@1",
                    by: Callable[[Any], Hashable] | None = None) -> dict[Any, list[Curve]]:
    """``{label: [curve of each run]}`` from run records (:class:`mslib.run.records.RunRecord`: ``label`` and the
    periodic evaluations in ``extra["evals"]``), labels in their first order (:func:`learning_curve`). ``by`` keys
    the runs by ``by(record)`` instead of ``str(record.label)`` (a chapter's tuple labels, or a parameter)."""
    curves: dict[Any, list[Curve]] = {}
    for record in records:
        evals = (record.extra or {}).get("evals")
        if not evals:
            raise ValueError(f"run {record.run_id} ({record.label}) has no periodic evaluations: a learning curve "
                             "needs val_fraction > 0 and eval_every > 0")
        key = str(record.label) if by is None else by(record)
        curves.setdefault(key, []).append(learning_curve(evals, split, metric))
    return curves


def still_rising(records: Sequence[Any], crit: Mapping[str, Any],
                 by: Callable[[Any], Hashable] | None = None) -> list[Any]:
    """The labels (or ``by`` keys, :func:`curves_by_label`) whose mean validation curve over their runs fails the
    criterion at the length they were run: ``crit`` is :func:`criterion`'s reading of a chapter's ``convergence``
    parameter (``metric``, ``tolerance``, ``fraction``). A comparison involving one of them measures partly how
    fast it learns (:func:`undecided_comparisons`)."""
    curves = curves_by_label(records, metric=crit["metric"], by=by)
    return [key for key, runs in curves.items()
            if not is_converged(mean_curve(runs), tolerance=crit["tolerance"], fraction=crit["fraction"])]


def undecided_comparisons(comparisons: Mapping[str, tuple[Any, ...]], rising: Collection[Any]) -> dict[str, str]:
    """``{comparison: "<side> still rising"}`` for each ``{name: (variant, baseline)}`` (or any tuple of the keys
    a comparison rests on) one of whose sides is in ``rising`` (:func:`still_rising`): the ``undecided`` rows of
    :func:`mslib.run.significance.family_table`, which no chapter decides (a still-rising run ranks losses partly
    by how fast they learn)."""
    def name(side: Any) -> str:
        return ", ".join(map(str, side)) if isinstance(side, tuple) else str(side)

    out = {}
    for comparison, sides in comparisons.items():
        rising_sides = [name(side) for side in sides if side in rising]
        if rising_sides:
            out[comparison] = " and ".join(rising_sides) + " still rising"
    return out


def convergence_table(curves: Mapping[str, Sequence[Sequence[tuple[int, float]]]], *, tolerance: float,
                      fraction: float = 0.25) -> pd.DataFrame:
    """The criterion on each label's runs as they are: the late gain of the label's mean curve (:func:`mean_curve`)
    and whether it is below ``tolerance``, the largest late gain of a single run and how many runs are below it.

    Gains are in points (100 × the metric's units); ``tolerance`` is in the metric's units (0.01 = 1 point).
    """
    _check_settings(tolerance, fraction)
    rows = {}
    for label, runs in curves.items():
        gains = [late_gain(c, fraction) for c in runs]
        mean_gain = late_gain(mean_curve(runs), fraction)
        rows[label] = {"runs": len(runs), "iterations": runs[0][-1][0], "late gain, mean curve": 100 * mean_gain,
                       "largest late gain, one run": 100 * max(gains),
                       "runs converged": sum(g < tolerance for g in gains), "converged": mean_gain < tolerance}
    return pd.DataFrame.from_dict(rows, orient="index")


def _row_name(index: Any) -> str:
    """A table row's name in prose: ``"loss on dataset"`` for a ``(dataset, loss)`` row, else the label."""
    return " on ".join(map(str, reversed(index))) if isinstance(index, tuple) else str(index)


def convergence_counts(table: pd.DataFrame, base_iterations: int | None = None) -> dict[str, Any]:
    """What a chapter states about a :func:`convergence_table` (its glue values): ``met`` of ``n`` labels meet the
    criterion, ``still-rising`` names the others (``"none"``), ``max-gain`` is the largest mean-curve late gain
    (points), ``runs-converged`` of ``runs`` single runs meet it on their own; with ``base_iterations``,
    ``lengthened`` names the labels run longer than that, with their length (:func:`mslib.run.runs.run_until_converged`;
    ``"none"``)."""
    met = table["converged"].astype(bool)
    counts = {"met": int(met.sum()), "n": len(table),
              "still-rising": ", ".join(_row_name(i) for i in table.index[~met]) or "none",
              "max-gain": float(table["late gain, mean curve"].max()), "runs": int(table["runs"].sum()),
              "runs-converged": int(table["runs converged"].sum())}
    if base_iterations is not None:
        longer = table["iterations"] > base_iterations
        counts["lengthened"] = ", ".join(f"{_row_name(i)} ({int(n):,} iterations)"
                                         for i, n in table.loc[longer, "iterations"].items()) or "none"
    return counts


def convergence_view(table: pd.DataFrame) -> pd.DataFrame:
    """A :func:`convergence_table` for the page: ``converged`` as yes / no."""
    return table.replace({"converged": {True: "yes", False: "no"}})
