"""Training: the official recipe's loop, made resumable and seeded.

One :class:`~mslib.run.config.TrainConfig` holds every setting (the book's notebooks and
``python -m mslib train --config`` build it with :meth:`~mslib.run.config.TrainConfig.from_file`). :func:`fit`
runs an iteration-based loop like the official code (P×K batches, the official warm-up + multi-step learning-rate
timing when a config sets them, optional frozen BN statistics), evaluates on a
class-disjoint validation split of the training classes for model selection (Reality-Check style), and evaluates
the test set once with the selected and with the final model. The official protocol's "best test R@1 over the
periodic test evaluations" (before update 0 and every ``eval_every`` updates, never the final model, as the
official loop) is available, clearly labelled, for comparison with the paper only
(``book/sources.md#src-official-recipe``, ``book/sources.md#src-deviations``). Under ``torchrun``, ``p × k`` is
the global batch (:mod:`mslib.distributed`). Checkpoints hold the model, optimizer, scheduler, sampler position and
every process's RNG states, so a run killed mid-way and resumed ends with the same numbers (CPU, ``num_workers=0``).

The pieces of :func:`fit`: :func:`build_run` (a :class:`Run`), :func:`train_until` (:func:`train_iteration`, which
calls :func:`train_step`, the one update; :func:`periodic_eval` on the schedule of :mod:`mslib.run.protocol`),
:func:`final_metrics`, :func:`load_checkpoint` / :func:`write_checkpoint`; it returns a :class:`FitResult`. The
evaluation protocol (schedule, model selection, the official protocol's number) is :mod:`mslib.run.protocol`; run
records are :mod:`mslib.run.records`, "train or load" and sweeps :mod:`mslib.run.runs`, the command line
:mod:`mslib.cli`.
"""

from __future__ import annotations

import copy
import json
import random
import time
from bisect import bisect_right
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader
from tqdm import tqdm

from mslib import distributed
from mslib.conventions import INPUT_CONVENTIONS
from mslib.data import PKSampler, load_run_splits
from mslib.data.sampler import check_global_batch
from mslib.evaluate import embed, evaluate_embeddings
from mslib.files import atomic_write
from mslib.losses import build_loss, loss_param_groups
from mslib.memory import CrossBatchMemory
from mslib.models import build_model, freeze_bn_stats
from mslib.run.config import TrainConfig
from mslib.run.protocol import SELECTED_BY, eval_iterations, improves_selection, official_best_test


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch (CPU and CUDA)."""
    random.seed(seed)
    np.random.seed(seed)  # noqa: NPY002 - third-party code may draw from the legacy global RNG
    torch.manual_seed(seed)


def _rng_state() -> dict[str, Any]:
    state = {"python": random.getstate(), "numpy": np.random.get_state(),  # noqa: NPY002
             "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict[str, Any]) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])  # noqa: NPY002
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def lr_factor(iteration: int, cfg: TrainConfig) -> float:
    """The official WarmupMultiStepLR factor at scheduler step ``iteration``: linear warm-up from
    ``warmup_factor``, then ×γ at each milestone (``book/sources.md#src-official-recipe``)."""
    factor = 1.0
    if iteration < cfg.warmup_iterations:
        alpha = iteration / cfg.warmup_iterations
        factor = cfg.warmup_factor * (1 - alpha) + alpha
    return factor * cfg.gamma ** bisect_right(sorted(cfg.milestones), iteration)


def lr_at_update(update: int, cfg: TrainConfig) -> float:
    """The LR factor of update ``update`` (0-based), timed as the official code: ``lr_factor(update + 1)``.

    The official loop calls ``scheduler.step()`` *before* ``optimizer.step()`` (torch 1.1 semantics; the
    scheduler's constructor already took step 0), so update t runs at the scheduler's step t + 1: a milestone m
    takes effect from update m − 1, and warm-up starts at ``lr_factor(1)``, not at ``warmup_factor``.
    """
    return lr_factor(update + 1, cfg)


def build_scheduler(optimizer: torch.optim.Optimizer, cfg: TrainConfig) -> torch.optim.lr_scheduler.LambdaLR:
    """The schedule, stepped after each ``optimizer.step()``: update t runs at ``lr · lr_at_update(t)``."""
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda t: lr_at_update(t, cfg))


def build_optimizer(model: torch.nn.Module, cfg: TrainConfig,
                    loss_fn: torch.nn.Module | None = None) -> torch.optim.Optimizer:
    """Adam (the official CUB recipe, L2 through ``weight_decay``), AdamW or SGD with momentum; a loss's own
    parameters (proxies, class weights, centres) train too, at ``lr × lr_factor`` (:func:`loss_param_groups`)."""
    params: list[Any] = [p for p in model.parameters() if p.requires_grad]
    groups = loss_param_groups(loss_fn, cfg.lr) if loss_fn is not None else []
    if groups:  # only then the list-of-groups form, so a pair loss's optimizer (and its state) stays as it was
        params = [{"params": params}, *groups]
    if cfg.optimizer == "adam":
        return torch.optim.Adam(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    if cfg.optimizer == "adamw":
        return torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    return torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)


def build_training_loss(cfg: TrainConfig, num_classes: int) -> torch.nn.Module:
    """``cfg.loss`` built for ``num_classes`` training classes, inside a cross-batch memory when ``memory_size``."""
    loss_fn = build_loss(cfg.loss, num_classes=num_classes, embedding_dim=cfg.embedding_dim, **cfg.loss_params)
    if cfg.memory_size <= 0:
        return loss_fn
    return CrossBatchMemory(loss_fn, cfg.memory_size, cfg.embedding_dim, start_iteration=cfg.memory_start,
                            weight=cfg.memory_weight, batch_loss=cfg.memory_batch_loss)


def save_checkpoint(path: Path, state: dict[str, Any]) -> None:
    """Write atomically: a killed process never leaves a truncated checkpoint in place of a good one."""
    atomic_write(path, lambda tmp: torch.save(state, tmp))


def datasets(cfg: TrainConfig) -> dict[str, Any]:
    """The run's splits (train, val when ``val_fraction``, test or query/gallery) with their transforms
    (:func:`mslib.data.load_run_splits`: the backbone's input convention, glyphs upscaled for image backbones)."""
    return load_run_splits(cfg.dataset, root=cfg.data_root, options=cfg.dataset_options, val_fraction=cfg.val_fraction,
                           seed=cfg.seed, backbone=cfg.backbone, image_size=cfg.image_size, resize=cfg.resize, k=cfg.k)


def embed_split(model: torch.nn.Module, dataset: Any, cfg: TrainConfig) -> tuple[torch.Tensor, torch.Tensor]:
    """Embeddings and labels of one split, in dataset order."""
    device = torch.device(cfg.device)
    loader = DataLoader(dataset, batch_size=cfg.eval_batch_size, shuffle=False, num_workers=cfg.num_workers,
                        pin_memory=device.type == "cuda", generator=torch.Generator())
    amp = cfg.amp if device.type == "cuda" and cfg.amp else False
    return embed(model, loader, device=device, amp=amp)


def evaluate_split(model: torch.nn.Module, sets: dict[str, Any], which: str, cfg: TrainConfig) -> dict[str, float]:
    """Retrieval metrics of split ``which`` (``"test"`` on In-Shop: its queries against its gallery)."""
    if which == "test" and "gallery" in sets:
        q, ql = embed_split(model, sets["query"], cfg)
        g, gl = embed_split(model, sets["gallery"], cfg)
        return evaluate_embeddings(q, ql, g, gl, ks=tuple(cfg.ks), seed=cfg.seed)
    emb, labels = embed_split(model, sets[which], cfg)
    return evaluate_embeddings(emb, labels, ks=tuple(cfg.ks), seed=cfg.seed)


def train_step(
    net: torch.nn.Module,
    loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    optimizer: torch.optim.Optimizer,
    images: torch.Tensor,
    labels: torch.Tensor,
    *,
    scaler: torch.amp.GradScaler | None = None,
    amp_dtype: torch.dtype | None = None,
    iteration: int = 0,
) -> torch.Tensor:
    """One update on this process's share of a P×K batch; return the loss ``L``.

    Under ``torchrun`` the embeddings of every process are gathered first
    (:mod:`mslib.distributed`), so ``L`` is the loss of the global batch and the
    update equals the single-process one; ``amp_dtype`` runs the forward under
    autocast, the loss in float32 (float64 embeddings stay float64).
    Shown in ``notebooks/05_training.ipynb``.
    """
    device, autocast = images.device.type, amp_dtype is not None
    with torch.autocast(device, dtype=amp_dtype or torch.bfloat16, enabled=autocast):
        embeddings = net(images)
    embeddings, labels = distributed.gather_embeddings(embeddings, labels)
    if embeddings.dtype in (torch.float16, torch.bfloat16):
        embeddings = embeddings.float()
    loss = loss_fn(embeddings, labels)
    if not torch.isfinite(loss):
        raise FloatingPointError(
            f"loss became {loss.item()} at iteration {iteration}; lower the lr or check data"
        )
    optimizer.zero_grad(set_to_none=True)
    if scaler is None:
        loss.backward()
        optimizer.step()
    else:
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()
    return loss.detach()


def _process_seed(seed: int, rank: int) -> int:
    """The seed of process ``rank``'s augmentation RNG: ``seed`` on rank 0 (a single process), distinct elsewhere."""
    return seed if rank == 0 else int(np.random.SeedSequence([seed, rank]).generate_state(1)[0])


def _distributed_model(model: torch.nn.Module, cfg: TrainConfig, device: torch.device) -> torch.nn.Module:
    """DDP around ``model``; BatchNorm in training mode is synchronised so its statistics are the global batch's."""
    has_bn = any(isinstance(m, torch.nn.modules.batchnorm._BatchNorm) for m in model.modules())
    if has_bn and not cfg.freeze_bn:
        if device.type != "cuda":
            raise RuntimeError("under torchrun on CPU, BatchNorm would use per-process batch statistics "
                               "(SyncBatchNorm needs CUDA), so the update would not be the global batch's: "
                               "set freeze_bn: true or train on CUDA")
        model = torch.nn.SyncBatchNorm.convert_sync_batchnorm(model)
    return torch.nn.parallel.DistributedDataParallel(model)  # single-device module: DDP infers the device


@dataclass
class Run:
    """Everything a training run holds: its settings, data, model (``net``: the model or its DDP wrapper),
    loss, optimizer, schedule, P×K sampler, and ``state`` (iteration, logs, evaluations, best model, timing)."""

    cfg: TrainConfig
    device: torch.device
    rank: int
    world: int
    sets: dict[str, Any]
    model: torch.nn.Module
    net: torch.nn.Module
    loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LambdaLR
    scaler: torch.amp.GradScaler
    sampler: PKSampler
    amp_dtype: torch.dtype | None
    run_dir: Path | None = None
    on_log: Callable[[dict[str, Any]], None] | None = None
    state: dict[str, Any] = field(default_factory=lambda: {"iteration": 0, "history": [], "evals": [], "best": None,
                                                           "best_state": None, "train_seconds": 0.0, "images": 0})

    @property
    def checkpoint(self) -> Path | None:
        return self.run_dir / "checkpoint.pt" if self.run_dir is not None else None


def _build_model(cfg: TrainConfig, device: torch.device) -> tuple[torch.nn.Module, torch.nn.Module]:
    """``(model, net)``: the embedding model and what the training step calls (its DDP wrapper under torchrun)."""
    model = build_model(cfg.backbone, cfg.embedding_dim, pretrained=cfg.pretrained, pooling=cfg.pooling,
                        in_channels=INPUT_CONVENTIONS[cfg.backbone].channels).to(device)
    if cfg.channels_last:
        model = model.to(memory_format=torch.channels_last)
    if not distributed.is_distributed():
        return model, model
    net = _distributed_model(model, cfg, device)
    return net.module, net


def build_run(cfg: TrainConfig, *, run_dir: str | Path | None = None,
              on_log: Callable[[dict[str, Any]], None] | None = None) -> Run:
    """A fresh run of ``cfg``: seeded model, data, loss, optimizer, official LR schedule and the global P×K sampler."""
    device = torch.device(cfg.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("device 'cuda' was asked for, but torch sees no CUDA device")
    rank, world = distributed.rank(), distributed.world_size()
    check_global_batch(cfg.p, world)  # p × k is the global batch: each process takes p / world of its classes
    seed_everything(cfg.seed)  # the same initial model on every process
    sets = datasets(cfg)
    model, net = _build_model(cfg, device)
    # after the model: a proxy loss draws its initial weights from the global RNG (pair losses draw nothing)
    loss_fn = build_training_loss(cfg, len(set(sets["train"].labels))).to(device)
    optimizer = build_optimizer(model, cfg, loss_fn)
    use_amp = cfg.amp is not None and device.type == "cuda"
    amp_dtype = (torch.bfloat16 if cfg.amp == "bf16" else torch.float16) if use_amp else None
    scaler = torch.amp.GradScaler("cuda", enabled=use_amp and cfg.amp == "fp16")
    # one global P×K sampler, the same seed on every process; each process takes its share of the classes
    sampler = PKSampler(sets["train"].labels, cfg.p, cfg.k, num_batches=cfg.iterations, seed=cfg.seed,
                        rank=rank, world_size=world)
    if rank:  # augmentation draws: the processes embed different images, so give them different streams
        seed_everything(_process_seed(cfg.seed, rank))
    return Run(cfg=cfg, device=device, rank=rank, world=world, sets=sets, model=model, net=net, loss_fn=loss_fn,
               optimizer=optimizer, scheduler=build_scheduler(optimizer, cfg), scaler=scaler, sampler=sampler,
               amp_dtype=amp_dtype, run_dir=Path(run_dir) if run_dir is not None else None, on_log=on_log)


def load_checkpoint(run: Run, path: Path) -> None:
    """Continue ``run`` exactly where the checkpoint at ``path`` left it (model, optimizer, schedule, sampler, RNGs)."""
    saved = torch.load(path, map_location=run.device, weights_only=False)
    if saved["config"] != run.cfg.to_dict():
        raise ValueError(f"{path} belongs to a run with other settings; use another run_dir or resume=False")
    run.model.load_state_dict(saved["model"])
    run.loss_fn.load_state_dict(saved["loss"])
    run.optimizer.load_state_dict(saved["optimizer"])
    run.scheduler.load_state_dict(saved["scheduler"])
    run.scaler.load_state_dict(saved["scaler"])
    run.sampler.load_state_dict(saved["sampler"])
    rngs = saved.get("rng_by_rank") or [saved["rng"]]
    if run.rank < len(rngs):
        _set_rng_state(rngs[run.rank])
    else:  # resumed with more processes than saved: a fresh stream for this one
        seed_everything(_process_seed(run.cfg.seed + saved["state"]["iteration"], run.rank))
    run.state = saved["state"]


def write_checkpoint(run: Run) -> None:
    """Save ``run`` to its checkpoint (rank 0 writes every process's RNG state; all processes must call this)."""
    if run.checkpoint is None:
        return
    rngs = distributed.gather_objects(_rng_state())  # a collective: every process calls it
    if run.rank != 0:
        return
    save_checkpoint(run.checkpoint, {
        "config": run.cfg.to_dict(), "model": run.model.state_dict(), "loss": run.loss_fn.state_dict(),
        "optimizer": run.optimizer.state_dict(),
        "scheduler": run.scheduler.state_dict(), "scaler": run.scaler.state_dict(),
        "sampler": run.sampler.state_dict(run.state["iteration"]),
        "rng": rngs[0], "rng_by_rank": rngs, "state": run.state,
    })


def _log(run: Run, entry: dict[str, Any]) -> None:
    """Append ``entry`` to ``metrics.jsonl`` in the run folder (rank 0) and pass it to ``on_log``."""
    if run.run_dir is not None and run.rank == 0:
        run.run_dir.mkdir(parents=True, exist_ok=True)
        with open(run.run_dir / "metrics.jsonl", "a") as fh:
            fh.write(json.dumps(entry) + "\n")
    if run.on_log is not None:
        run.on_log(entry)


def periodic_eval(run: Run, iteration: int, *, official: bool = True) -> None:
    """Validation (model selection: keep the best val R@1) and, on the official schedule only, the official
    protocol's test evaluation."""
    cfg, state = run.cfg, run.state
    entry: dict[str, Any] = {"iteration": iteration}
    if "val" in run.sets:
        entry["val"] = evaluate_split(run.model, run.sets, "val", cfg)
        if improves_selection(state["best"], entry):
            state["best"] = entry
            state["best_state"] = copy.deepcopy(run.model.state_dict())
    if cfg.official_test_selection and official:
        entry["test"] = evaluate_split(run.model, run.sets, "test", cfg)
    if len(entry) > 1:
        state["evals"].append(entry)
        _log(run, {"event": "eval", **entry})


def train_iteration(run: Run, images: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, float]:
    """One update of ``run`` on a P×K batch (:func:`train_step`, then the LR schedule); ``(loss, its lr)``."""
    cfg, device = run.cfg, run.device
    run.net.train()
    if cfg.freeze_bn:
        freeze_bn_stats(run.model)
    images = images.to(device, non_blocking=True)
    labels = labels.to(device, non_blocking=True)
    if cfg.channels_last:
        images = images.contiguous(memory_format=torch.channels_last)
    lr = float(run.optimizer.param_groups[0]["lr"])  # this update's learning rate (official timing)
    loss = train_step(run.net, run.loss_fn, run.optimizer, images, labels, scaler=run.scaler,
                      amp_dtype=run.amp_dtype, iteration=run.state["iteration"])
    run.scheduler.step()
    run.state["iteration"] += 1
    run.state["images"] += images.shape[0] * run.world  # the global batch
    return loss, lr


def train_loader(run: Run) -> DataLoader:
    """The P×K batches of ``run``'s sampler. A private generator: creating the iterator must not draw from the
    global RNG, which the checkpoint restores (a resumed run must see the augmentations of an uninterrupted one)."""
    return DataLoader(run.sets["train"], batch_sampler=run.sampler, num_workers=run.cfg.num_workers,
                      pin_memory=run.device.type == "cuda",
                      generator=torch.Generator().manual_seed(_process_seed(run.cfg.seed, run.rank)))


def train_until(run: Run, end: int, *, progress: bool) -> None:
    """Train ``run`` up to ``end`` updates: log every ``log_every``, evaluate on :func:`eval_iterations`, and
    checkpoint every ``checkpoint_every`` updates."""
    cfg, state = run.cfg, run.state
    schedule = eval_iterations(cfg)
    loader = train_loader(run)
    if state["iteration"] == 0 and 0 in schedule:
        periodic_eval(run, 0)  # the official code evaluates before the first update, then every eval_every updates
    bar = tqdm(total=end, initial=state["iteration"], disable=not progress, desc="train", mininterval=2.0)
    started = time.perf_counter()
    batches = iter(loader)
    while state["iteration"] < end:
        loss, lr = train_iteration(run, *next(batches))
        iteration = state["iteration"]
        bar.update(1)
        if iteration % cfg.log_every == 0 or iteration == cfg.iterations:
            entry = {"event": "train", "iteration": iteration, "loss": float(loss), "lr": lr}
            state["history"].append(entry)
            _log(run, entry)
            bar.set_postfix(loss=f"{entry['loss']:.4f}")
        if iteration in schedule:
            periodic_eval(run, iteration)
        if cfg.checkpoint_every and iteration % cfg.checkpoint_every == 0:
            state["train_seconds"] += time.perf_counter() - started
            started = time.perf_counter()
            write_checkpoint(run)
    bar.close()
    state["train_seconds"] += time.perf_counter() - started


def _selected_test(run: Run) -> dict[str, Any]:
    """The validation-selected model's test metrics; the run's model is left as it was (the final one)."""
    best = run.state["best"]
    final_state = copy.deepcopy(run.model.state_dict())
    run.model.load_state_dict(run.state["best_state"])
    test = evaluate_split(run.model, run.sets, "test", run.cfg)
    run.model.load_state_dict(final_state)
    return {"iteration": best["iteration"], "selected_by": SELECTED_BY, "val": best["val"], "test": test}


def final_metrics(run: Run) -> dict[str, Any]:
    """Test metrics of the final model, of the validation-selected one (with validation) and the official
    protocol's best periodic test evaluation (with ``official_test_selection``)."""
    cfg, sets = run.cfg, run.sets
    iteration = run.state["iteration"]
    metrics: dict[str, Any] = {"final": {"iteration": iteration, "test": evaluate_split(run.model, sets, "test", cfg)}}
    if "val" in sets:
        periodic_eval(run, iteration, official=False)  # validation may select the final model; no extra test eval
        metrics["selected"] = _selected_test(run)
    if cfg.official_test_selection:
        metrics["official_best_test"] = official_best_test(run.state["evals"])
    return metrics


@dataclass
class FitResult:
    """What :func:`fit` returns: the settings, logged losses/LRs, periodic evaluations, metrics by model group
    (``final``, ``selected``, ``official_best_test``; empty until ``completed``), timing and the trained model."""

    config: dict[str, Any]
    history: list[dict[str, Any]]
    evals: list[dict[str, Any]]
    metrics: dict[str, Any]
    timing: dict[str, float]
    completed: bool
    iteration: int
    model: torch.nn.Module


def _result(run: Run) -> FitResult:
    state = run.state
    timing = {"train_seconds": state["train_seconds"],
              "images_per_second": state["images"] / max(state["train_seconds"], 1e-9)}
    return FitResult(run.cfg.to_dict(), state["history"], state["evals"], state.get("metrics", {}), timing,
                     "metrics" in state, state["iteration"], run.model)


def fit(
    cfg: TrainConfig,
    *,
    run_dir: str | Path | None = None,
    resume: bool = True,
    progress: bool = True,
    stop_after: int | None = None,
    on_log: Callable[[dict[str, Any]], None] | None = None,
) -> FitResult:
    """Train, evaluate, and return a :class:`FitResult`.

    ``run_dir`` holds ``checkpoint.pt`` and ``metrics.jsonl``; with ``resume`` an existing checkpoint there is
    continued exactly (a completed run is returned with its model, untrained further). ``stop_after`` ends the loop
    after that many iterations without the final evaluation (``completed`` false: it simulates an interrupted run,
    for tests and for splitting long runs). The run uses ``cfg.threads`` torch CPU threads (the caller's setting is
    restored after), so its numbers do not depend on the machine's core count or on runs beside it.
    """
    with torch_threads(cfg.threads):
        return _fit(cfg, run_dir=run_dir, resume=resume, progress=progress, stop_after=stop_after, on_log=on_log)


@contextmanager
def torch_threads(n: int) -> Iterator[None]:
    """Run the block with ``n`` torch intra-op CPU threads, then restore the previous count."""
    previous = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def _fit(cfg: TrainConfig, *, run_dir: str | Path | None, resume: bool, progress: bool, stop_after: int | None,
         on_log: Callable[[dict[str, Any]], None] | None) -> FitResult:
    """:func:`fit`'s body, at the thread count :func:`fit` set."""
    run = build_run(cfg, run_dir=run_dir, on_log=on_log)
    if run.checkpoint is not None and resume and run.checkpoint.exists():
        load_checkpoint(run, run.checkpoint)
    if "metrics" in run.state:  # a completed run: nothing to train
        return _result(run)
    train_until(run, cfg.iterations if stop_after is None else min(cfg.iterations, stop_after), progress=progress)
    if run.state["iteration"] == cfg.iterations:
        run.state["metrics"] = final_metrics(run)
        run.state["best_state"] = None  # the selected model's test numbers are in metrics; keep the checkpoint small
    write_checkpoint(run)
    return _result(run)

