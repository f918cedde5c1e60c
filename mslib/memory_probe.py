"""The cross-batch memory seen through General Pair Weighting: how much weight the memory term adds to a batch.

With a memory (:class:`mslib.memory.CrossBatchMemory`, ``batch_loss=True``) the loss of a batch ``B`` is
``L(B, B) + w · L(B, M)``. Both terms are pair losses, so each gives every pair a GPW weight
``w_ij = |∂L/∂S_ij|`` (``notebooks/01_gpw.ipynb``, :func:`mslib.gpw.pair_weights`). :func:`memory_pull` sums those
weights per term: a loss that sums over pairs (contrastive) gives the memory term a weight mass that grows with
the number of memory pairs it sees, a loss that normalises per anchor (MS's log-sum-exp) does not.
:func:`memory_pull_of_run` measures it on a trained run's own training embeddings
(``notebooks/09_beyond_pairs.ipynb``); its memory is embedded by the same network as the batch.

:func:`memory_drift` measures the other half: the memory holds embeddings written by older networks. It trains a
run with a memory as :func:`mslib.run.trainer.fit` does (the same updates: its final model is the record's) and,
after chosen updates, embeds the images behind the memory's rows again with the network of that moment.
:func:`memory_drifts` and :func:`memory_pulls` keep each measurement as a run record, so a chapter executed again
loads it.
"""

from __future__ import annotations

import copy
import multiprocessing
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor

from mslib import gpw
from mslib.data import PKSampler
from mslib.memory import CrossBatchMemory
from mslib.run.codehash import function_code_hash, run_code_hash
from mslib.run.config import TrainConfig
from mslib.run.records import RunStore, run_record
from mslib.run.runs import train_or_load
from mslib.run.trainer import (
    Run,
    build_run,
    datasets,
    embed_split,
    evaluate_split,
    torch_threads,
    train_iteration,
    train_loader,
)

__all__ = ["MemoryDrift", "memory_drift", "memory_drifts", "memory_pull", "memory_pull_of_run", "memory_pulls"]


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


@dataclass(frozen=True)
class MemoryDrift:
    """:func:`memory_drift`'s measurement: one row per probed update, and the final model's test metrics (to check
    against the run's record: the probe must have measured that run)."""

    probes: list[dict[str, float]]
    final_test: dict[str, float]


def memory_drift(cfg: TrainConfig, probe_at: Sequence[int]) -> MemoryDrift:
    """Train ``cfg`` (a run with a cross-batch memory) and measure, after each update ``t`` in ``probe_at``, how
    far the memory's embeddings are from the current network's.

    Each memory row ``m`` was written by the network of its own update; a copy of the network after update ``t``
    embeds the same augmented batch again (training mode, as it was written), giving ``m_t``. Per probe: the drift
    ``1 − cos(m, m_t)`` (mean over rows, and over the newest and the oldest batch), and the error the memory term
    sees in its similarities, ``|x·m − x·m_t|`` over the pairs of update ``t``'s batch ``x`` (embedded by the
    network after ``t``) with the memory. The run itself is untouched: the copies do not feed back, and the
    updates are :func:`mslib.run.trainer.fit`'s (same seed, sampler, augmentation draws and thread count).
    """
    batch = cfg.p * cfg.k
    if cfg.memory_size <= 0 or cfg.memory_size % batch:
        raise ValueError(f"memory_drift needs a memory of whole batches (a multiple of P·K = {batch}), "
                         f"not memory_size={cfg.memory_size}")
    probes = sorted({int(t) for t in probe_at})
    if not probes or probes[0] < 1 or probes[-1] > cfg.iterations:
        raise ValueError(f"probe_at must lie in 1..{cfg.iterations} (the run's updates), got {list(probe_at)}")
    with torch_threads(cfg.threads):
        run = build_run(cfg)
        memory = run.loss_fn
        assert isinstance(memory, CrossBatchMemory)
        window: deque[tuple[Tensor, Tensor]] = deque(maxlen=cfg.memory_size // batch)
        batches, rows = iter(train_loader(run)), []
        while run.state["iteration"] < cfg.iterations:
            images, labels = next(batches)
            active, start = int(memory.iteration) >= memory.start_iteration, int(memory.position)
            train_iteration(run, images, labels)
            if active:
                slots = (start + torch.arange(len(labels))) % memory.size
                window.append((images, memory.embedding_memory[slots].clone()))
            if run.state["iteration"] in probes and window:
                rows.append(_drift_row(run, window, images))
        return MemoryDrift(rows, evaluate_split(run.model, run.sets, "test", cfg))


def memory_drifts(configs: Mapping[str, TrainConfig], probe_at: Sequence[int], *, jobs: int = 1,
                  store: RunStore | None = None) -> dict[str, MemoryDrift]:
    """:func:`memory_drift` of every config (label → config), in up to ``jobs`` spawned processes (as
    :func:`mslib.run.runs.run_grid`'s workers: each run keeps its own thread count, so its numbers do not change).

    Each measurement is a run record of ``store`` (default ``results/``, and its committed record sets): its
    parameters are the run's settings plus the probe (``probe_at`` and the hash of the probe's functions), its code
    hash the trainer's, so a measurement of the same run, probes and code is loaded instead of trained again."""
    probe = {"memory_drift_at": sorted({int(t) for t in probe_at}),
             "probe_code": function_code_hash(memory_drift, _drift_row)}

    def measure(labels: Sequence[str]) -> dict[str, tuple[dict[str, float], dict[str, Any]]]:
        return {label: (d.final_test, {"probes": d.probes}) for label, d in _measure(configs, labels, probe_at,
                                                                                      jobs).items()}

    found = _recorded(configs, probe, measure, store)
    return {label: MemoryDrift(extra["probes"], test) for label, (test, extra) in found.items()}


def memory_pulls(configs: Mapping[str, TrainConfig], memory_size: int, *, seed: int = 0,
                 store: RunStore | None = None) -> dict[str, dict[str, float]]:
    """:func:`memory_pull_of_run` of every config's trained run (label → config), each kept as a run record of
    ``store`` as :func:`memory_drifts` keeps its own: a chapter executed again loads the measurement instead of
    training the run again for its model (a record set holds records, not checkpoints)."""
    measured_by = (memory_pull, memory_pull_of_run, gpw.pair_weights, gpw._split, gpw._spec)  # beyond the trainer
    probe = {"memory_pull_size": int(memory_size), "memory_pull_seed": int(seed),
             "probe_code": function_code_hash(*measured_by)}

    def measure(labels: Sequence[str]) -> dict[str, tuple[dict[str, float], dict[str, Any]]]:
        out = {}
        for label in labels:
            record, result = train_or_load(configs[label], store, need_model=True)
            pull = memory_pull_of_run(configs[label], result.model, memory_size, seed=seed)
            out[label] = (record.metrics["final"]["test"], {"pull": pull})
        return out

    return {label: extra["pull"] for label, (_, extra) in _recorded(configs, probe, measure, store).items()}


def _recorded(configs: Mapping[str, TrainConfig], probe: dict[str, Any],
              measure: Callable[[Sequence[str]], dict[str, tuple[dict[str, float], dict[str, Any]]]],
              store: RunStore | None) -> dict[str, tuple[dict[str, float], dict[str, Any]]]:
    """``(final test metrics, extra)`` of probe ``probe`` on each config's run: loaded from ``store``'s records
    (the run's settings plus ``probe``, the trainer's code hash) where kept, else ``measure(missing labels)``,
    written as records."""
    store = store if store is not None else RunStore()
    code = run_code_hash()
    params = {label: {**cfg.to_dict(), "probe": probe} for label, cfg in configs.items()}
    out = {label: (rec.metrics["final"]["test"], rec.extra) for label in configs
           if (rec := store.find(params[label], code)) is not None}
    started = time.time()
    for label, (test, extra) in measure([label for label in configs if label not in out]).items():
        cfg = configs[label]
        store.write(run_record(params[label], {"final": {"iteration": cfg.iterations, "test": test}},
                               seed=cfg.seed, started=started, finished=time.time(), code=code, extra=extra))
        out[label] = (test, extra)
    return {label: out[label] for label in configs}


def _measure(configs: Mapping[str, TrainConfig], labels: Sequence[str], probe_at: Sequence[int],
             jobs: int) -> dict[str, MemoryDrift]:
    """:func:`memory_drift` of ``configs[label]`` for each of ``labels``, in up to ``jobs`` spawned processes."""
    if jobs <= 1 or len(labels) <= 1:
        return {label: memory_drift(configs[label], probe_at) for label in labels}
    context = multiprocessing.get_context("spawn")  # not fork: torch's OpenMP pool does not survive a fork
    with ProcessPoolExecutor(max_workers=min(jobs, len(labels)), mp_context=context) as pool:
        futures = {label: pool.submit(memory_drift, configs[label], list(probe_at)) for label in labels}
        return {label: future.result() for label, future in futures.items()}


def _drift_row(run: Run, window: deque[tuple[Tensor, Tensor]], images: Tensor) -> dict[str, float]:
    """:func:`memory_drift`'s measurement at ``run``'s current update; ``window`` oldest batch first."""
    probe = copy.deepcopy(run.model).train()  # batch statistics, as the rows were written; the run's BN is untouched
    layout = torch.channels_last if run.cfg.channels_last else torch.contiguous_format
    with torch.no_grad():
        now = [probe(x.contiguous(memory_format=layout)) for x, _ in window]
        x = probe(images.contiguous(memory_format=layout))
    stored = [m.to(x.dtype) for _, m in window]
    drift = [1.0 - (m * m_t).sum(dim=1) for m, m_t in zip(stored, now, strict=True)]
    error = [(x @ m.T - x @ m_t.T).abs() for m, m_t in zip(stored, now, strict=True)]
    return {"iteration": float(run.state["iteration"]), "memory rows": float(sum(len(m) for m in stored)),
            "drift 1 − cos, mean": float(torch.cat(drift).mean()),
            "drift, newest batch": float(drift[-1].mean()), "drift, oldest batch": float(drift[0].mean()),
            "|ΔS| batch × memory, mean": float(torch.cat(error, dim=1).mean()),
            "|ΔS|, oldest batch": float(error[0].mean())}
