"""GPW weights during training: where a loss puts its negative weight on real training batches.

On every probed iteration the embeddings the training step itself computes (captured by a forward hook, before
the update) give ``S``, and ``mslib.gpw``'s closed-form weights of the run's loss on that ``S`` give two numbers:

- **hard share**: the share of the total negative weight ``Σ w⁻`` that falls on each anchor's hardest negatives,
  its ``⌈q·|N_i|⌉`` negatives of highest ``S_ik`` (``q = 0.1``: the hardest 10 %), summed over anchors. A loss that
  weights negatives uniformly gets the **uniform share** ``Σ_i ⌈q|N_i|⌉ / Σ_i |N_i|``;
- **mined**: the fraction of all pairs (positive and negative) whose weight is exactly nonzero.

Chapter ``03_multi_similarity`` (figure ``fig-ms-weight-trace``).
"""

from __future__ import annotations

import math
import time
from typing import Any

import pandas as pd
import torch
from torch import Tensor

from mslib import gpw
from mslib.run.config import TrainConfig
from mslib.run.trainer import build_run, torch_threads, train_iteration, train_loader
from mslib.similarity import cosine, pair_masks

__all__ = ["hard_mask", "hard_share", "mined_fraction", "trace_summary", "trace_weights", "uniform_share"]


def hard_mask(sim: Tensor, neg: Tensor, fraction: float = 0.1) -> Tensor:
    """Per row, the ``⌈fraction·|N_i|⌉`` negatives of highest similarity (ties broken by column order)."""
    if not 0 < fraction <= 1:
        raise ValueError(f"fraction must be in (0, 1], got {fraction}")
    counts = torch.ceil(fraction * neg.sum(dim=1).to(torch.float64)).long()
    order = torch.argsort(torch.where(neg, sim, torch.full_like(sim, -math.inf)), dim=1, descending=True, stable=True)
    rank = torch.empty_like(order).scatter_(1, order, torch.arange(sim.shape[1]).expand_as(order).contiguous())
    return neg & (rank < counts[:, None])


def hard_share(w_neg: Tensor, sim: Tensor, neg: Tensor, fraction: float = 0.1) -> float:
    """``Σ_{hard} w⁻ / Σ w⁻`` (:func:`hard_mask`); ``nan`` when the batch has no negative weight at all."""
    total = float(w_neg[neg].sum())
    if total == 0:
        return math.nan
    return float(w_neg[hard_mask(sim, neg, fraction)].sum()) / total


def uniform_share(neg: Tensor, fraction: float = 0.1) -> float:
    """The hard share of equal weights on every negative: ``Σ_i ⌈q|N_i|⌉ / Σ_i |N_i|``."""
    n = neg.sum(dim=1).to(torch.float64)
    return float(torch.ceil(fraction * n).sum() / n.sum())


def mined_fraction(w: gpw.PairWeights, pos: Tensor, neg: Tensor) -> float:
    """Fraction of the pairs (positive and negative) whose weight is exactly nonzero."""
    nonzero = ((w.pos > 0) & pos) | ((w.neg > 0) & neg)
    return float(nonzero.sum()) / float((pos | neg).sum())


def trace_weights(cfg: TrainConfig, *, every: int = 10, fraction: float = 0.1) -> pd.DataFrame:
    """Train ``cfg`` for ``cfg.iterations`` updates and, before the update of every ``every``-th iteration (from
    0), record the batch's ``loss``, ``hard share``, ``uniform share``, ``mined`` and ``total w-`` of the run's
    pair loss (closed-form weights in float64 on the step's own embeddings), at ``cfg.threads`` torch threads.
    One row per probed iteration; ``seconds``: the wall time of the whole run, in ``DataFrame.attrs``."""
    if every < 1:
        raise ValueError(f"every must be ≥ 1, got {every}")
    start = time.perf_counter()
    with torch_threads(cfg.threads):
        rows = _trace(cfg, every, fraction)
    out = pd.DataFrame(rows)
    out.attrs["seconds"] = time.perf_counter() - start
    return out


def _trace(cfg: TrainConfig, every: int, fraction: float) -> list[dict[str, Any]]:
    run = build_run(cfg)
    captured: list[Tensor] = []
    hook = run.net.register_forward_hook(lambda module, args, out: captured.append(out.detach()))
    rows = []
    try:
        for iteration, (images, labels) in enumerate(train_loader(run)):
            captured.clear()
            loss, _ = train_iteration(run, images, labels)
            if iteration % every == 0:
                rows.append({"iteration": iteration, "loss": float(loss),
                             **_batch_numbers(cfg, captured[0], labels, fraction)})
            if run.state["iteration"] >= cfg.iterations:
                break
    finally:
        hook.remove()
    return rows


def _batch_numbers(cfg: TrainConfig, embeddings: Tensor, labels: Tensor, fraction: float) -> dict[str, Any]:
    labels = labels.to(embeddings.device)
    sim = cosine(embeddings.double())
    w = gpw.closed_form_weights(cfg.loss, sim, labels, **cfg.loss_params)
    pos, neg = pair_masks(labels)
    return {"hard share": hard_share(w.neg, sim, neg, fraction), "uniform share": uniform_share(neg, fraction),
            "mined": mined_fraction(w, pos, neg), "total w-": float(w.neg.sum())}


def trace_summary(traces: dict[str, pd.DataFrame]) -> pd.DataFrame:
    """Per loss (``traces``: label → :func:`trace_weights` frame): the hard share at the first probe and its mean over
    the probes of the second half of the run, the uniform share, the mined fraction at the first and last probe,
    and the run's seconds."""
    rows = {}
    for label, df in traces.items():
        late = df[df["iteration"] >= df["iteration"].max() / 2]
        rows[label] = {"hard share, first": float(df["hard share"].iloc[0]),
                       "hard share, second half": float(late["hard share"].mean()),
                       "uniform share": float(df["uniform share"].mean()),
                       "mined, first": float(df["mined"].iloc[0]), "mined, last": float(df["mined"].iloc[-1]),
                       "seconds": float(df.attrs.get("seconds", float("nan")))}
    return pd.DataFrame(rows).T
