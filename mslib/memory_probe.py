"""The cross-batch memory seen through General Pair Weighting: how much weight the memory term adds to a batch.

With a memory (:class:`mslib.memory.CrossBatchMemory`, ``batch_loss=True``) the loss of a batch ``B`` is
``L(B, B) + w · L(B, M)``. Both terms are pair losses, so each gives every pair a GPW weight
``w_ij = |∂L/∂S_ij|`` (``notebooks/01_gpw.ipynb``, :func:`mslib.gpw.pair_weights`). :func:`memory_pull` sums those
weights per term: a loss that sums over pairs (contrastive) gives the memory term a weight mass that grows with
the number of memory pairs it sees, a loss that normalises per anchor (MS's log-sum-exp) does not.
:func:`memory_pull_of_run` measures it on a trained run's own training embeddings
(``notebooks/09_beyond_pairs.ipynb``). Embedding drift (the memory holds embeddings of older networks) is not
modelled: the probe's memory is embedded by the same network as the batch.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import Tensor

from mslib import gpw
from mslib.data import PKSampler
from mslib.run.config import TrainConfig
from mslib.run.trainer import datasets, embed_split

__all__ = ["memory_pull", "memory_pull_of_run"]


def memory_pull(loss: str, batch: Tensor, labels: Tensor, memory: Tensor, memory_labels: Tensor,
                **hparams: Any) -> dict[str, float]:
    """GPW weight mass of the batch term ``L(B, B)`` and of the memory term ``L(B, M)`` for pair loss ``loss``.

    ``batch`` ``(B, D)`` and ``memory`` ``(M, D)`` are unit embeddings; ``memory`` must not hold the batch's own
    rows. Returns, per term (``batch``, ``memory``): the summed positive and negative weights and the mean number of
    negatives per anchor with a non-zero weight; and ``memory / batch`` of the negative mass.
    """
    if memory.shape[0] == 0:
        raise ValueError("memory_pull needs a non-empty memory")
    terms = {"batch": gpw.pair_weights(loss, batch @ batch.T, labels, **hparams),
             "memory": gpw.pair_weights(loss, batch @ memory.T, labels, memory_labels, **hparams)}
    out: dict[str, float] = {}
    for term, w in terms.items():
        out[f"{term}: positive weight"] = float(w.pos.sum())
        out[f"{term}: negative weight"] = float(w.neg.sum())
        out[f"{term}: weighted negatives per anchor"] = float((w.neg > 0).sum(dim=1).double().mean())
    batch_neg = out["batch: negative weight"]
    out["memory / batch, negative weight"] = out["memory: negative weight"] / batch_neg if batch_neg else float("inf")
    return out


def memory_pull_of_run(cfg: TrainConfig, model: torch.nn.Module, memory_size: int, *,
                       seed: int = 0) -> dict[str, float]:
    """:func:`memory_pull` of ``cfg``'s loss on ``model``'s embeddings of ``cfg``'s training split: one P×K batch
    of ``cfg``'s sampler (``seed``) against ``memory_size`` other training images drawn at random (``seed``)."""
    train = datasets(cfg)["train"]
    emb, labels = embed_split(model, train, cfg)
    batch_idx = np.asarray(next(iter(PKSampler(train.labels, p=cfg.p, k=cfg.k, num_batches=1, seed=seed))))
    rest = np.setdiff1d(np.arange(len(labels)), batch_idx)
    if memory_size > len(rest):
        raise ValueError(f"memory_size {memory_size} exceeds the {len(rest)} training images outside the batch")
    mem_idx = np.random.default_rng(seed).choice(rest, size=memory_size, replace=False)
    b, m = torch.as_tensor(batch_idx), torch.as_tensor(mem_idx)
    return memory_pull(cfg.loss, emb[b].double(), labels[b], emb[m].double(), labels[m], **cfg.loss_params)
