"""Training: the official recipe's loop, made resumable and seeded.

One :class:`TrainConfig` holds every setting (the book's notebooks and ``python -m mslib train --config`` build
it). :func:`fit` runs an iteration-based loop like the official code (P×K batches, the official warm-up +
multi-step learning-rate timing when a config sets them, optional frozen BN statistics), evaluates on a
class-disjoint validation split of the training classes for model selection (Reality-Check style), and evaluates
the test set once with the selected and with the final model. The official protocol's "best test R@1 over the
periodic test evaluations" (before update 0 and every ``eval_every`` updates, never the final model, as the
official loop) is available, clearly labelled, for comparison with the paper only
(``book/sources.md#src-official-recipe``, ``book/sources.md#src-deviations``). Under ``torchrun``, ``p × k`` is
the global batch (:mod:`mslib.distributed`). Checkpoints hold the model, optimizer, scheduler, sampler position and
every process's RNG states, so a run killed mid-way and resumed ends with the same numbers (CPU, ``num_workers=0``).
"""

from __future__ import annotations

import copy
import dataclasses
import json
import os
import random
import sys
import time
from bisect import bisect_right
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader

BACKBONE_CONVENTION = {"smallcnn": "glyphs", "bninception": "bninception", "resnet50": "imagenet",
                       "googlenet": "imagenet"}


@dataclass
class TrainConfig:
    """Every setting of a training run. Defaults: the CPU run on the embedded glyph dataset."""

    dataset: str = "glyphs"
    data_root: str | None = None
    dataset_options: dict[str, Any] = field(default_factory=dict)  # e.g. glyphs: {"classes": 40}
    backbone: str = "smallcnn"
    pretrained: str | None = None
    pooling: str = "avg"
    embedding_dim: int = 64
    image_size: int = 227  # input size for image backbones (glyphs are upscaled to it when needed)
    resize: int | None = None  # shorter side before the crop; None: the convention's rule (256 at 227 / 224)
    loss: str = "multi_similarity"
    loss_params: dict[str, Any] = field(default_factory=lambda: {"alpha": 2.0, "beta": 50.0, "lam": 0.5,
                                                                 "epsilon": 0.1})
    p: int = 16  # classes per batch
    k: int = 5  # images per class
    iterations: int = 600
    optimizer: str = "adam"  # adam | adamw | sgd
    lr: float = 1e-3
    weight_decay: float = 1e-5
    momentum: float = 0.9
    warmup_iterations: int = 0
    warmup_factor: float = 0.01
    milestones: list[int] = field(default_factory=list)
    gamma: float = 0.1
    freeze_bn: bool = False
    val_fraction: float = 0.0  # fraction of training classes held out for model selection
    eval_every: int = 200
    official_test_selection: bool = False  # also track the official protocol's best test R@1 (optimistic)
    ks: list[int] = field(default_factory=lambda: [1, 2, 4, 8])
    eval_batch_size: int = 256
    device: str = "cpu"
    amp: str | None = None  # None | "bf16" | "fp16" (CUDA only)
    channels_last: bool = False
    num_workers: int = 0
    seed: int = 0
    checkpoint_every: int = 0  # 0: only at the end
    log_every: int = 20

    def __post_init__(self) -> None:
        if self.backbone not in BACKBONE_CONVENTION:
            raise ValueError(f"unknown backbone {self.backbone!r}; choose one of {sorted(BACKBONE_CONVENTION)}")
        if self.optimizer not in ("adam", "adamw", "sgd"):
            raise ValueError(f"unknown optimizer {self.optimizer!r}; choose adam, adamw or sgd")
        if self.amp not in (None, "bf16", "fp16"):
            raise ValueError(f"amp must be None, 'bf16' or 'fp16', not {self.amp!r}")
        if self.p < 2 or self.k < 2:
            raise ValueError(f"a P×K batch needs p ≥ 2 classes and k ≥ 2 images per class (got p={self.p}, k={self.k})")
        if self.iterations < 1:
            raise ValueError("iterations must be ≥ 1")

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainConfig:
        """Build a config, rejecting unknown keys by name (a typo must not silently run the defaults)."""
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - names)
        if unknown:
            raise ValueError(f"unknown training setting(s) {', '.join(unknown)}; known: {', '.join(sorted(names))}")
        return cls(**data)

    @classmethod
    def from_yaml(cls, path: str | Path) -> TrainConfig:
        import yaml

        data = yaml.safe_load(Path(path).read_text()) or {}
        return cls.from_dict(data)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


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


def build_optimizer(model: torch.nn.Module, cfg: TrainConfig) -> torch.optim.Optimizer:
    """Adam (the official CUB recipe, L2 through ``weight_decay``), AdamW or SGD with momentum."""
    params = [p for p in model.parameters() if p.requires_grad]
    if cfg.optimizer == "adam":
        return torch.optim.Adam(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    if cfg.optimizer == "adamw":
        return torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    return torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)


def save_checkpoint(path: Path, state: dict[str, Any]) -> None:
    """Write atomically: a killed process never leaves a truncated checkpoint in place of a good one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    torch.save(state, tmp)
    os.replace(tmp, path)


def datasets(cfg: TrainConfig) -> dict[str, Any]:
    """The run's splits (train, val when ``val_fraction``, test or In-Shop's query/gallery) with their transforms."""
    from mslib.data import load_dataset
    from mslib.data.transforms import build_transform

    convention = "glyphs" if cfg.dataset == "glyphs" else BACKBONE_CONVENTION[cfg.backbone]
    kwargs: dict[str, Any] = {"root": cfg.data_root, "val_fraction": cfg.val_fraction, "seed": cfg.seed,
                              **cfg.dataset_options}
    train_tf = build_transform(convention, train=True, size=cfg.image_size, resize=cfg.resize)
    test_tf = build_transform(convention, train=False, size=cfg.image_size, resize=cfg.resize)
    sets = {"train": load_dataset(cfg.dataset, "train", transform=train_tf, **kwargs)}
    if cfg.val_fraction > 0:
        sets["val"] = load_dataset(cfg.dataset, "val", transform=test_tf, **kwargs)
    if cfg.dataset == "inshop":
        sets["query"] = load_dataset(cfg.dataset, "query", transform=test_tf, **kwargs)
        sets["gallery"] = load_dataset(cfg.dataset, "gallery", transform=test_tf, **kwargs)
    else:
        sets["test"] = load_dataset(cfg.dataset, "test", transform=test_tf, **kwargs)
    return sets


def adapt_input(x: torch.Tensor, cfg: TrainConfig) -> torch.Tensor:
    """Feed 1-channel 32×32 glyphs to an image backbone: upscale to ``image_size`` and map to its convention."""
    if cfg.dataset != "glyphs" or cfg.backbone == "smallcnn":
        return x
    x = torch.nn.functional.interpolate(x, size=(cfg.image_size, cfg.image_size), mode="bilinear",
                                        align_corners=False).expand(-1, 3, -1, -1)
    if BACKBONE_CONVENTION[cfg.backbone] == "bninception":  # BGR, 0–255, mean [104, 117, 128]
        mean = torch.tensor([104.0, 117.0, 128.0], device=x.device).view(1, 3, 1, 1)
        return x * 255.0 - mean
    mean = torch.tensor([0.485, 0.456, 0.406], device=x.device).view(1, 3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225], device=x.device).view(1, 3, 1, 1)
    return (x - mean) / std


class _Adapted(torch.nn.Module):
    """The model as evaluation sees it: input adaptation + model (so ``evaluate.embed`` needs no special case)."""

    def __init__(self, model: torch.nn.Module, cfg: TrainConfig) -> None:
        super().__init__()
        self.model, self.cfg = model, cfg

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(adapt_input(x, self.cfg))


def embed_split(model: torch.nn.Module, dataset: Any, cfg: TrainConfig) -> tuple[torch.Tensor, torch.Tensor]:
    """Embeddings and labels of one split, in dataset order (input adaptation included)."""
    from mslib.evaluate import embed

    device = torch.device(cfg.device)
    loader = DataLoader(dataset, batch_size=cfg.eval_batch_size, shuffle=False, num_workers=cfg.num_workers,
                        pin_memory=device.type == "cuda", generator=torch.Generator())
    amp = cfg.amp if device.type == "cuda" and cfg.amp else False
    return embed(_Adapted(model, cfg), loader, device=device, amp=amp)


def _evaluate(model: torch.nn.Module, sets: dict[str, Any], which: str, cfg: TrainConfig) -> dict[str, float]:
    from mslib.evaluate import evaluate_embeddings

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
    """One update on this process's share of a P×K batch; return the loss ``L`` of the global batch.

    Under ``torchrun`` the embeddings of every process are gathered first (:mod:`mslib.distributed`), so ``L``
    is the loss of the global batch and the update equals the single-process one; ``amp_dtype`` runs the forward
    under autocast, the loss in float32 (float64 embeddings stay float64).
    """
    from mslib import distributed

    with torch.autocast(images.device.type, dtype=amp_dtype or torch.bfloat16, enabled=amp_dtype is not None):
        embeddings = net(images)
    embeddings, labels, _ = distributed.gather_embeddings(embeddings, labels)
    if embeddings.dtype in (torch.float16, torch.bfloat16):
        embeddings = embeddings.float()
    loss = loss_fn(embeddings, labels)
    if not torch.isfinite(loss):
        raise FloatingPointError(f"loss became {loss.item()} at iteration {iteration}; lower the lr or check data")
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


def fit(
    cfg: TrainConfig,
    *,
    run_dir: str | Path | None = None,
    resume: bool = True,
    progress: bool = True,
    stop_after: int | None = None,
    on_log: Callable[[dict[str, Any]], None] | None = None,
) -> dict[str, Any]:
    """Train, evaluate, and return ``{"config", "history", "evals", "metrics", "timing"}``.

    ``run_dir`` holds ``checkpoint.pt`` and ``metrics.jsonl``; with ``resume`` an existing checkpoint there is
    continued exactly. ``stop_after`` ends the loop after that many iterations without the final evaluation
    (it simulates an interrupted run, for tests and for splitting long runs).
    """
    from tqdm import tqdm

    from mslib import distributed
    from mslib.data import PKSampler
    from mslib.data.sampler import check_global_batch
    from mslib.losses import build_loss
    from mslib.models import build_model, freeze_bn_stats

    device = torch.device(cfg.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("device 'cuda' was asked for, but torch sees no CUDA device")
    rank, world = distributed.rank(), distributed.world_size()
    check_global_batch(cfg.p, world)  # p × k is the global batch: each process takes p / world of its classes
    seed_everything(cfg.seed)  # the same initial model on every process
    sets = datasets(cfg)
    in_channels = 1 if cfg.backbone == "smallcnn" else 3
    model = build_model(cfg.backbone, cfg.embedding_dim, pretrained=cfg.pretrained, pooling=cfg.pooling,
                        in_channels=in_channels).to(device)
    if cfg.channels_last and device.type == "cuda":
        model = model.to(memory_format=torch.channels_last)
    net = model  # what the training step calls: the model, or its DDP wrapper under torchrun
    if distributed.is_distributed():
        net = _distributed_model(model, cfg, device)
        model = net.module
    loss_fn = build_loss(cfg.loss, **cfg.loss_params)
    optimizer = build_optimizer(model, cfg)
    scheduler = build_scheduler(optimizer, cfg)
    use_amp = cfg.amp is not None and device.type == "cuda"
    amp_dtype = (torch.bfloat16 if cfg.amp == "bf16" else torch.float16) if use_amp else None
    scaler = torch.amp.GradScaler("cuda", enabled=use_amp and cfg.amp == "fp16")
    # one global P×K sampler, the same seed on every process; each process takes its share of the classes
    sampler = PKSampler(sets["train"].labels, cfg.p, cfg.k, num_batches=cfg.iterations, seed=cfg.seed,
                        rank=rank, world_size=world)
    if rank:  # augmentation draws: the processes embed different images, so give them different streams
        seed_everything(_process_seed(cfg.seed, rank))

    state: dict[str, Any] = {"iteration": 0, "history": [], "evals": [], "best": None, "best_state": None,
                             "train_seconds": 0.0, "images": 0}
    run_path = Path(run_dir) if run_dir is not None else None
    ckpt = run_path / "checkpoint.pt" if run_path else None
    if ckpt is not None and resume and ckpt.exists():
        saved = torch.load(ckpt, map_location=device, weights_only=False)
        if saved["config"] != cfg.to_dict():
            raise ValueError(f"{ckpt} belongs to a run with other settings; use another run_dir or resume=False")
        model.load_state_dict(saved["model"])
        optimizer.load_state_dict(saved["optimizer"])
        scheduler.load_state_dict(saved["scheduler"])
        scaler.load_state_dict(saved["scaler"])
        sampler.load_state_dict(saved["sampler"])
        rngs = saved.get("rng_by_rank") or [saved["rng"]]
        if rank < len(rngs):
            _set_rng_state(rngs[rank])
        else:  # resumed with more processes than saved: a fresh stream for this one
            seed_everything(_process_seed(cfg.seed + saved["state"]["iteration"], rank))
        state = saved["state"]

    def checkpoint() -> None:
        if ckpt is None:
            return
        rngs = distributed.gather_objects(_rng_state())  # every process's RNG (a collective: all processes call it)
        if rank != 0:
            return
        save_checkpoint(ckpt, {
            "config": cfg.to_dict(), "model": model.state_dict(), "optimizer": optimizer.state_dict(),
            "scheduler": scheduler.state_dict(), "scaler": scaler.state_dict(),
            "sampler": sampler.state_dict(state["iteration"]),
            "rng": rngs[0], "rng_by_rank": rngs, "state": state,
        })

    def log(entry: dict[str, Any]) -> None:
        if run_path is not None and rank == 0:
            run_path.mkdir(parents=True, exist_ok=True)
            with open(run_path / "metrics.jsonl", "a") as fh:
                fh.write(json.dumps(entry) + "\n")
        if on_log is not None:
            on_log(entry)

    def periodic_eval(iteration: int, *, official: bool = True) -> None:
        """Validation (model selection) and, on the official schedule only, the official protocol's test eval."""
        entry: dict[str, Any] = {"iteration": iteration}
        if "val" in sets:
            entry["val"] = _evaluate(model, sets, "val", cfg)
            if state["best"] is None or entry["val"]["R@1"] > state["best"]["val"]["R@1"]:
                state["best"] = entry
                state["best_state"] = copy.deepcopy(model.state_dict())
        if cfg.official_test_selection and official:
            entry["test"] = _evaluate(model, sets, "test", cfg)
        if len(entry) > 1:
            state["evals"].append(entry)
            log({"event": "eval", **entry})

    if "metrics" in state:  # a completed run: nothing to train, return what it measured (and its model)
        return _result(cfg, state, model)

    # a private generator: creating the loader's iterator must not draw from the global RNG, which the
    # checkpoint restores (otherwise a resumed run would see other augmentations than an uninterrupted one)
    loader = DataLoader(sets["train"], batch_sampler=sampler, num_workers=cfg.num_workers,
                        pin_memory=device.type == "cuda",
                        generator=torch.Generator().manual_seed(_process_seed(cfg.seed, rank)))
    start_iteration = state["iteration"]
    if start_iteration == 0 and (cfg.official_test_selection or "val" in sets):
        periodic_eval(0)  # the official code evaluates before the first update, then every eval_every updates
    end = cfg.iterations if stop_after is None else min(cfg.iterations, stop_after)
    bar = tqdm(total=end, initial=start_iteration, disable=not progress, desc="train", mininterval=2.0)
    iteration = start_iteration
    started = time.perf_counter()
    batches = iter(loader)
    while iteration < end:
        images, labels = next(batches)
        net.train()
        if cfg.freeze_bn:
            freeze_bn_stats(model)
        images = adapt_input(images.to(device, non_blocking=True), cfg)
        labels = labels.to(device, non_blocking=True)
        if cfg.channels_last and device.type == "cuda":
            images = images.contiguous(memory_format=torch.channels_last)
        lr = float(optimizer.param_groups[0]["lr"])  # this update's learning rate (official timing)
        loss = train_step(net, loss_fn, optimizer, images, labels, scaler=scaler, amp_dtype=amp_dtype,
                          iteration=iteration)
        scheduler.step()
        iteration += 1
        state["iteration"] = iteration
        state["images"] += images.shape[0] * world  # the global batch
        bar.update(1)
        if iteration % cfg.log_every == 0 or iteration == cfg.iterations:
            entry = {"event": "train", "iteration": iteration, "loss": float(loss), "lr": lr}
            state["history"].append(entry)
            log(entry)
            bar.set_postfix(loss=f"{entry['loss']:.4f}")
        if cfg.eval_every and iteration % cfg.eval_every == 0 and iteration < cfg.iterations:
            periodic_eval(iteration)  # the official loop's schedule: never after the last update
        if cfg.checkpoint_every and iteration % cfg.checkpoint_every == 0:
            state["train_seconds"] += time.perf_counter() - started
            started = time.perf_counter()
            checkpoint()
    bar.close()
    state["train_seconds"] += time.perf_counter() - started
    if iteration < cfg.iterations:  # interrupted on purpose (stop_after): keep the state, skip the final eval
        checkpoint()
        return {"config": cfg.to_dict(), "history": state["history"], "evals": state["evals"], "metrics": {},
                "completed": False, "iteration": iteration}

    metrics: dict[str, Any] = {"final": {"iteration": iteration, "test": _evaluate(model, sets, "test", cfg)}}
    if "val" in sets:
        periodic_eval(iteration, official=False)  # validation may select the final model; no extra test eval
        best = state["best"]
        final_state = copy.deepcopy(model.state_dict())
        model.load_state_dict(state["best_state"])
        metrics["selected"] = {"iteration": best["iteration"], "selected_by": "validation R@1",
                               "val": best["val"], "test": _evaluate(model, sets, "test", cfg)}
        model.load_state_dict(final_state)
    if cfg.official_test_selection:
        metrics["official_best_test"] = official_best_test(state["evals"])
    state["metrics"] = metrics
    state["best_state"] = None  # the selected model's test numbers are in metrics; keep the checkpoint small
    checkpoint()
    return _result(cfg, state, model)


def official_best_test(evals: list[dict[str, Any]]) -> dict[str, Any]:
    """The official protocol's number: the best test R@1 over the periodic test evaluations (test-set selection).

    Those evaluations follow the official loop: before update 0 and after every ``eval_every`` updates, never after
    the last one (the official ``iteration == max_iter`` branch is unreachable), so the final model is not a
    candidate. Ties keep the earliest, as the official strict ``>`` does. Optimistic: the test set picks the model.
    """
    tested = [e for e in evals if "test" in e]
    if not tested:
        raise ValueError("no periodic test evaluation to select from (official_test_selection needs them)")
    best = max(tested, key=lambda e: e["test"]["R@1"])  # the first maximum
    return {"iteration": best["iteration"], "test": best["test"],
            "evaluated_at": [e["iteration"] for e in tested],
            "note": ("best test R@1 over the official schedule's test evaluations (before update 0 and every "
                     "eval_every updates; the final model is not evaluated, as in the official loop): "
                     "test-set model selection, optimistic")}


def _result(cfg: TrainConfig, state: dict[str, Any], model: torch.nn.Module) -> dict[str, Any]:
    timing = {"train_seconds": state["train_seconds"],
              "images_per_second": state["images"] / max(state["train_seconds"], 1e-9)}
    return {"config": cfg.to_dict(), "history": state["history"], "evals": state["evals"],
            "metrics": state["metrics"], "timing": timing, "completed": True, "iteration": state["iteration"],
            "model": model}


def train_or_load(
    cfg: TrainConfig,
    *,
    code_paths: list[str | Path] | None = None,
    results_dir: str | Path | None = None,
    need_model: bool = False,
    progress: bool = False,
    on_log: Callable[[dict[str, Any]], None] | None = None,
) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """Return ``(record, result)`` for ``cfg``: reuse an up-to-date run record, or train and write one.

    A record is reused only when its parameters and the hash of the code that made it (every ``mslib`` source file plus
    ``code_paths``, e.g. the calling notebook) match, so a stale record is recomputed, never shown. The run's
    checkpoint lives in ``results/runs/<run_id>/`` so an interrupted run resumes, and ``need_model`` returns the
    trained model (from that checkpoint, without retraining, when it is still there).
    """
    from mslib import results
    from mslib.paths import results_dir as default_results_dir

    paths = [*results.library_code_paths(), *(code_paths or [])]
    code = results.code_hash(paths)
    params = cfg.to_dict()
    out_dir = Path(results_dir) if results_dir is not None else default_results_dir()
    record = results.find_record(params, code, out_dir)
    run_dir = out_dir / "runs" / results.run_id(params, code)
    if record is not None and (not need_model or (run_dir / "checkpoint.pt").exists()):
        result = fit(cfg, run_dir=run_dir, progress=progress) if need_model else None
        return record, result
    started = time.time()
    result = fit(cfg, run_dir=run_dir, progress=progress, on_log=on_log)
    record = results.run_record(
        params, result["metrics"], seed=cfg.seed, started=started, finished=time.time(),
        images_per_second=result["timing"]["images_per_second"],
        extra={"history": result["history"], "evals": result["evals"], "timing": result["timing"]}, code=code,
    )
    from mslib import distributed

    if distributed.rank() == 0:  # under torchrun every process has the same record; one writes it
        results.write_record(record, out_dir)
    return record, result


def main(argv: list[str] | None = None) -> int:
    """``python -m mslib train --config FILE [--set KEY=VALUE ...]``: train, evaluate, write a run record."""
    import argparse

    import yaml

    from mslib import distributed

    parser = argparse.ArgumentParser(prog="python -m mslib train", description=main.__doc__)
    parser.add_argument("--config", help="YAML file of TrainConfig settings (see configs/)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="override one setting (YAML value), e.g. --set iterations=100 --set device=cpu")
    parser.add_argument("--results-dir", default=None, help="where the run record goes (default results/)")
    parser.add_argument("--no-progress", action="store_true")
    args = parser.parse_args(argv)
    data = yaml.safe_load(Path(args.config).read_text()) if args.config else {}
    for item in args.set:
        key, sep, value = item.partition("=")
        if not sep:
            parser.error(f"--set needs KEY=VALUE, got {item!r}")
        data[key] = yaml.safe_load(value)
    try:
        cfg = TrainConfig.from_dict(data or {})
    except (ValueError, TypeError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    from mslib.data.errors import DatasetError
    from mslib.data.sampler import check_global_batch

    distributed.init_from_env()
    try:
        check_global_batch(cfg.p, distributed.world_size())  # p × k is the global batch, shared by the processes
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    try:
        record, _ = train_or_load(cfg, results_dir=args.results_dir, progress=not args.no_progress)
    except (DatasetError, RuntimeError) as err:  # missing/corrupt data, no CUDA: the message says what to do
        print(f"error: {err}", file=sys.stderr)
        return 1
    if distributed.rank() == 0:
        for group, values in record["metrics"].items():
            test = values.get("test", {})
            shown = ", ".join(f"{k} {100 * v:.2f}" for k, v in test.items() if k.startswith(("R@", "MAP", "RP", "NMI")))
            print(f"{group:20s} (iteration {values['iteration']}): {shown}")
        print(f"record: {record['run_id']}.json in {args.results_dir or 'results/'}")
    return 0
