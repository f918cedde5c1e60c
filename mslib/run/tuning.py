"""An equal tuning budget per loss: seeded random search on validation classes (the Reality Check's protocol, scaled).

Musgrave et al. (2020) tune every loss with the same number of trials on class-disjoint validation folds of the
training classes, select on validation MAP@R, then train the selected setting with more seeds and test it once
(``book/sources.md#src-reality-check``). This module is that search as plain seeded random search:

* :data:`SEARCH_SPACES`: per loss, the learning rate and the loss's own hyperparameters, each a :class:`Param`
  range (log-uniform for scales and rates). The ranges are this book's choice: they contain the loss
  hyperparameters of the paper, the official code, pytorch-metric-learning and chapter 06, and the CPU default
  learning rate (``tests/test_tuning.py`` checks it).
* :func:`sample_trials` draws ``n`` settings from a space with a seed; the first ``k`` of ``n`` trials are the
  trials of budget ``k``, so one search gives its whole budget curve (:func:`budget_curve`). The learning rate is
  stratified over its range (a shifted van der Corput sequence), the same for every loss searched with one seed.
* :func:`tune` trains every trial through :func:`mslib.run.runs.run_grid` (resumable, parallel) on the base
  setting, which must hold out validation classes (``val_fraction > 0``), and scores each trial by the final
  model's validation metric. With ``include_base`` trial 0 is the base setting itself (the defaults a chapter
  compares), so a search never ends below its starting point. The test classes play no part.
"""

from __future__ import annotations

import dataclasses
import math
import os
import zlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from mslib.losses import LOSS_SPECS
from mslib.run import trainer
from mslib.run.config import TrainConfig
from mslib.run.convergence import learning_curve
from mslib.run.records import RunStore
from mslib.run.runs import Fit, run_grid

__all__ = ["SEARCH_SPACES", "Param", "base_point", "best_trial", "budget_curve", "sample_trials", "search_space",
           "search_trials", "trial_config", "trial_configs", "tune", "van_der_corput"]


@dataclass(frozen=True)
class Param:
    """One searched setting: ``lr`` (the optimiser's) or a hyperparameter of the loss, drawn from
    ``[low, high]``, uniformly or (``log``) log-uniformly."""

    name: str
    low: float
    high: float
    log: bool = False

    def __post_init__(self) -> None:
        if not self.low < self.high or (self.log and self.low <= 0):
            raise ValueError(f"{self.name}: need low < high (and low > 0 on a log scale), got {self.low}, {self.high}")

    def draw(self, u: float) -> float:
        """The value at quantile ``u`` in [0, 1) of the range."""
        if self.log:
            return math.exp(math.log(self.low) + u * (math.log(self.high) - math.log(self.low)))
        return self.low + u * (self.high - self.low)


LR = Param("lr", 1e-4, 1e-2, log=True)
SEARCH_SPACES: dict[str, tuple[Param, ...]] = {
    "contrastive": (LR, Param("pos_margin", 0.5, 1.0), Param("neg_margin", 0.0, 0.8)),
    "triplet": (LR, Param("margin", 0.01, 0.5, log=True)),
    "generalized_lifted_structure": (LR, Param("margin", 0.2, 2.0), Param("scale", 1.0, 64.0, log=True)),
    "binomial_deviance": (LR, Param("alpha", 0.5, 20.0, log=True), Param("beta", 5.0, 100.0, log=True),
                          Param("lam", 0.0, 0.9)),
    "npair": (LR, Param("scale", 1.0, 64.0, log=True)),
    "multi_similarity": (LR, Param("alpha", 0.5, 20.0, log=True), Param("beta", 5.0, 100.0, log=True),
                         Param("lam", 0.0, 1.0), Param("epsilon", 0.01, 0.5, log=True)),
    "proxy_anchor": (LR, Param("margin", 0.0, 0.3), Param("alpha", 4.0, 64.0, log=True)),
    "proxy_nca": (LR, Param("softmax_scale", 1.0, 64.0, log=True)),
}


def search_space(loss: str, *, without: Iterable[str] = ()) -> tuple[Param, ...]:
    """:data:`SEARCH_SPACES` of ``loss`` less the settings named in ``without`` (e.g. MS's ``epsilon`` for MS
    without mining, whose ``epsilon`` stays None)."""
    if loss not in SEARCH_SPACES:
        raise ValueError(f"no search space for loss {loss!r}; spaces: {', '.join(SEARCH_SPACES)}")
    dropped = set(without)
    unknown = dropped - {p.name for p in SEARCH_SPACES[loss]}
    if unknown:
        raise ValueError(f"{loss}'s search space has no {', '.join(sorted(unknown))}")
    return tuple(p for p in SEARCH_SPACES[loss] if p.name not in dropped)


def van_der_corput(i: int) -> float:
    """Point ``i`` (0-based) of the base-2 van der Corput sequence: ``i``'s binary digits mirrored after the point
    (0, 1/2, 1/4, 3/4, 1/8, ...). Its first ``2^k`` points fall one in each interval ``[j/2^k, (j+1)/2^k)``."""
    u, scale = 0.0, 0.5
    while i:
        i, bit = divmod(i, 2)
        u += bit * scale
        scale /= 2
    return u


def sample_trials(space: Sequence[Param], n: int, seed: int = 0) -> list[dict[str, float]]:
    """``n`` settings drawn from ``space``, each setting from its own stream
    ``numpy.random.default_rng([seed, crc32(name)])``, in trial order.

    The first setting of a space (the learning rate, :data:`SEARCH_SPACES`) is stratified: trial ``i`` takes the
    quantile ``(van_der_corput(i) + shift) mod 1`` with one uniform ``shift``, so the first ``2^k`` trials fall one
    in each ``2^−k``-th of its range and a budget of four already spans it. The other settings are independent
    uniform draws. The same ``(space, seed)`` gives the same trials, budget ``k`` is the first ``k``, and a setting
    two spaces share draws the same values in both (with one seed every loss tries the same learning rates)."""
    if n < 1 or not space:
        raise ValueError(f"sample_trials needs n ≥ 1 and a non-empty space, got n={n}, {len(space)} settings")
    streams = {p.name: np.random.default_rng([seed, zlib.crc32(p.name.encode())]) for p in space}
    first, shift = space[0].name, float(streams[space[0].name].random())
    draws = {p.name: streams[p.name].random(n) for p in space[1:]}
    draws[first] = np.array([(van_der_corput(i) + shift) % 1.0 for i in range(n)])
    return [{p.name: p.draw(float(draws[p.name][i])) for p in space} for i in range(n)]


def base_point(base: TrainConfig, space: Sequence[Param]) -> dict[str, float]:
    """The values ``base`` runs the settings of ``space`` with (its ``lr``, its loss hyperparameters, or where it
    sets none, the loss's defaults): trial 0 of :func:`tune` with ``include_base``."""
    values = {**LOSS_SPECS[base.loss].defaults, **base.loss_params, "lr": base.lr}
    missing = [p.name for p in space if values.get(p.name) is None]
    if missing:
        raise ValueError(f"the base setting of {base.loss} has no value for {', '.join(missing)}")
    return {p.name: float(values[p.name]) for p in space}


def trial_config(base: TrainConfig, params: dict[str, float]) -> TrainConfig:
    """``base`` with a trial's settings: ``lr`` is the optimiser's, every other name a hyperparameter of the loss
    (on top of ``base.loss_params``)."""
    loss_params = {k: v for k, v in params.items() if k != "lr"}
    return dataclasses.replace(base, lr=float(params.get("lr", base.lr)),
                               loss_params={**base.loss_params, **loss_params})


def search_trials(base: TrainConfig, space: Sequence[Param], n_trials: int, *, seed: int = 0,
                  include_base: bool = False) -> list[dict[str, float]]:
    """The settings :func:`tune` tries: :func:`sample_trials`, after :func:`base_point` when ``include_base``."""
    drawn = n_trials - 1 if include_base else n_trials
    trials = [base_point(base, space)] if include_base else []
    return trials + (sample_trials(space, drawn, seed) if drawn else [])


def trial_configs(base: TrainConfig, space: Sequence[Param], n_trials: int, *, seed: int = 0,
                  include_base: bool = False) -> dict[str, TrainConfig]:
    """``{"trial i": config}`` of :func:`search_trials`; with ``include_base`` trial 0 is ``base`` as it is spelled
    (so its runs are the ones other chapters train with it). Train them in one :func:`run_grid` with other losses'
    trials to keep every worker busy; :func:`tune` then loads them."""
    trials = search_trials(base, space, n_trials, seed=seed, include_base=include_base)
    configs = {f"trial {i}": trial_config(base, params) for i, params in enumerate(trials)}
    if include_base:
        configs["trial 0"] = base
    return configs


def tune(base: TrainConfig, space: Sequence[Param], n_trials: int, *, seed: int = 0, metric: str = "MAP@R",
         include_base: bool = False, store: RunStore | None = None,
         code_paths: Sequence[str | os.PathLike] | None = None, jobs: int | None = None,
         fit: Fit = trainer.fit) -> pd.DataFrame:
    """Train ``n_trials`` settings of ``space`` on ``base`` and score each by its final model's validation
    ``metric``; one row per trial (its settings, ``score``, ``best so far``). The trials are
    :func:`sample_trials` with ``seed``, after ``base`` itself (:func:`base_point`) when ``include_base``."""
    if base.val_fraction <= 0 or not base.eval_every:
        raise ValueError("tune scores trials on validation classes: base needs val_fraction > 0 and eval_every > 0")
    trials = search_trials(base, space, n_trials, seed=seed, include_base=include_base)
    configs = trial_configs(base, space, n_trials, seed=seed, include_base=include_base)
    records = run_grid(configs, [base.seed], store=store, code_paths=code_paths, jobs=jobs, fit=fit)
    scores = [learning_curve(r.extra["evals"], "val", metric)[-1][1] for r in records]
    table = pd.DataFrame(trials, index=list(configs)).assign(score=scores)
    return table.assign(**{"best so far": budget_curve(scores)})


def budget_curve(scores: Sequence[float]) -> list[float]:
    """The best score after each trial (trials in their drawn order): the budget curve of a search."""
    if not scores:
        raise ValueError("budget_curve needs at least one score")
    return list(np.maximum.accumulate(np.asarray(scores, dtype=float)))


def best_trial(table: pd.DataFrame) -> dict[str, Any]:
    """The settings of the highest-scoring trial of a :func:`tune` table (the first of equal scores)."""
    row = table.loc[table["score"].idxmax()]
    return {k: float(v) for k, v in row.drop(["score", "best so far"]).items()}
