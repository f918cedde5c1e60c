"""Under torchrun ``p × k`` is the global batch: DDP with gathered embeddings and a shared P×K sampler equals
single-process training on that batch (gloo, 2 processes): gradients, batches, loss, updates, and ``fit`` itself."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from mslib.losses import build_loss

WORLD = 2
LOSSES = [("multi_similarity", {"preset": "official"}), ("multi_similarity", {"alpha": 2, "beta": 50, "lam": 0.5,
                                                                                "epsilon": None}),
          ("contrastive", {}), ("binomial_deviance", {})]


def _data() -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(3)
    labels = torch.arange(6).repeat_interleave(4)[torch.randperm(24, generator=g)]  # 6 classes × 4, shuffled
    return torch.randn(24, 10, generator=g, dtype=torch.float64), labels


def _model() -> torch.nn.Module:
    torch.manual_seed(0)
    return torch.nn.Linear(10, 8).double()


def _worker(rank: int, init_file: str, out_dir: str, name: str, hparams: dict) -> None:
    from mslib import distributed

    os.environ.update(WORLD_SIZE=str(WORLD), RANK=str(rank))
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=WORLD)
    try:
        x, y = _data()
        rows = slice(rank * 12, (rank + 1) * 12)  # each process holds half of the global batch
        model = torch.nn.parallel.DistributedDataParallel(_model())
        emb = model(x[rows])
        all_emb, all_labels = distributed.gather_embeddings(emb, y[rows])
        assert torch.equal(all_labels, y), "labels gathered in rank order: the global batch"
        torch.testing.assert_close(all_emb, _model()(x), rtol=0, atol=1e-12)
        loss = build_loss(name, **hparams)(all_emb, all_labels)
        loss.backward()
        torch.save({"loss": loss.detach(), "grads": [p.grad for p in model.parameters()]},
                   Path(out_dir) / f"rank{rank}.pt")
    finally:
        dist.destroy_process_group()


@pytest.mark.parametrize(("name", "hparams"), LOSSES, ids=lambda v: v if isinstance(v, str) else "")
def test_ddp_loss_and_gradients_equal_single_process(tmp_path: Path, name: str, hparams: dict) -> None:
    if not dist.is_available():
        pytest.skip("torch.distributed is not available")
    mp.start_processes(_worker, args=(str(tmp_path / "init"), str(tmp_path), name, hparams), nprocs=WORLD,
                       join=True, start_method="spawn")
    x, y = _data()
    model = _model()
    loss = build_loss(name, **hparams)(model(x), y)
    loss.backward()
    for rank in range(WORLD):
        got = torch.load(tmp_path / f"rank{rank}.pt")
        torch.testing.assert_close(got["loss"], loss.detach(), rtol=0, atol=1e-12)
        for g, p in zip(got["grads"], model.parameters(), strict=True):
            torch.testing.assert_close(g, p.grad, rtol=1e-10, atol=1e-12)  # float64


# ---------------------------------------------------------------- one global P×K batch: sampler + step + update
STEP_LABELS = torch.arange(8).repeat_interleave(torch.tensor([3, 5, 6, 4, 2, 7, 5, 5]))  # classes of 2 and 3 padded
P, K, STEPS, SEED = 4, 3, 3, 5
OPTIMIZERS = ("sgd", "adam")


def _step_data() -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    return torch.randn(len(STEP_LABELS), 10, generator=g, dtype=torch.float64), STEP_LABELS


def _optimizer(name: str, model: torch.nn.Module) -> torch.optim.Optimizer:
    if name == "adam":
        return torch.optim.Adam(model.parameters(), lr=1e-2, weight_decay=5e-4)
    return torch.optim.SGD(model.parameters(), lr=0.5, momentum=0.9, weight_decay=5e-4)


def _run_steps(net: torch.nn.Module, sampler, optimizer_name: str) -> dict:
    """STEPS updates with :func:`mslib.run.trainer.train_step`: the batches, losses and parameters after each update."""
    from mslib.run.trainer import train_step

    x, y = _step_data()
    model = net.module if hasattr(net, "module") else net
    optimizer = _optimizer(optimizer_name, model)
    loss_fn = build_loss("multi_similarity", preset="official")
    out: dict = {"batches": [], "losses": [], "params": []}
    for batch in sampler:
        out["batches"].append(list(batch))
        out["losses"].append(train_step(net, loss_fn, optimizer, x[batch], y[batch]))
        out["params"].append([p.detach().clone() for p in model.parameters()])
    return out


def _step_worker(rank: int, init_file: str, out_dir: str) -> None:
    from mslib.data import PKSampler

    os.environ.update(WORLD_SIZE=str(WORLD), RANK=str(rank))
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=WORLD)
    try:
        for name in OPTIMIZERS:
            sampler = PKSampler(STEP_LABELS.numpy(), P, K, num_batches=STEPS, seed=SEED, rank=rank, world_size=WORLD)
            out = _run_steps(torch.nn.parallel.DistributedDataParallel(_model()), sampler, name)
            torch.save(out, Path(out_dir) / f"steps-{name}-{rank}.pt")
    finally:
        dist.destroy_process_group()


@pytest.fixture(scope="module")
def step_runs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("steps")
    mp.start_processes(_step_worker, args=(str(out / "init"), str(out)), nprocs=WORLD, join=True,
                       start_method="spawn")
    return out


@pytest.mark.parametrize("optimizer_name", OPTIMIZERS)
def test_global_batch_loss_and_update_equal_single_process(step_runs: Path, optimizer_name: str) -> None:
    """2 gloo processes, each with its P/2 classes of the same sampler: batches, loss and every update equal the
    single-process run on the whole P×K batch (float64; loss to 1e-12, parameters to rtol 1e-10 / atol 1e-12).
    DDP averages gradients over processes; the gathered loss makes that average the global batch's gradient."""
    from mslib.data import PKSampler

    single = _run_steps(_model(), PKSampler(STEP_LABELS.numpy(), P, K, num_batches=STEPS, seed=SEED),
                        optimizer_name)
    ranks = [torch.load(step_runs / f"steps-{optimizer_name}-{r}.pt") for r in range(WORLD)]
    for step in range(STEPS):
        assert [i for r in ranks for i in r["batches"][step]] == single["batches"][step], "shares = global batch"
        assert all(len(r["batches"][step]) == P // WORLD * K for r in ranks)
        for r in ranks:
            torch.testing.assert_close(r["losses"][step], single["losses"][step], rtol=0, atol=1e-12)
            for got, want in zip(r["params"][step], single["params"][step], strict=True):
                torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-12)
    moved = [(a - b).abs().max() for a, b in zip(single["params"][-1], _model().parameters(), strict=True)]
    assert max(moved) > 1e-3, "the updates are not trivially zero"


# ---------------------------------------------------------------- the same through fit() under a process group
def _fit_config(**overrides: object):
    from mslib.run.config import TrainConfig

    base = dict(dataset_options={"classes": 24, "images_per_class": 8}, iterations=4, p=4, k=3, embedding_dim=16,
                val_fraction=0.0, eval_every=0, log_every=1, checkpoint_every=2, ks=[1], optimizer="sgd", lr=0.05,
                milestones=[2], freeze_bn=True)
    return TrainConfig(**{**base, **overrides})


def _test_transform_only(build: Callable) -> Callable:
    """``build_transform`` that always returns the test transform: augmentation draws differ between 1 and 2
    processes by design."""
    return lambda convention, train, *args, **kwargs: build(convention, False, *args, **kwargs)


def _no_augmentation() -> None:
    from mslib.data import loading

    loading.build_transform = _test_transform_only(loading.build_transform)


def _fit_worker(rank: int, init_file: str, out_dir: str) -> None:
    from mslib.run.trainer import fit

    os.environ.update(WORLD_SIZE=str(WORLD), RANK=str(rank))
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=WORLD)
    try:
        _no_augmentation()
        errors = {}
        for name, cfg in {"odd_p": _fit_config(p=3), "bn_cpu": _fit_config(freeze_bn=False)}.items():
            try:
                fit(cfg, progress=False)
            except (ValueError, RuntimeError) as err:
                errors[name] = str(err)
        result = fit(_fit_config(), run_dir=Path(out_dir) / "run", progress=False)
        saved = torch.load(Path(out_dir) / "run" / "checkpoint.pt", weights_only=False)
        torch.save({"errors": errors, "history": result.history, "model": result.model.state_dict(),
                    "rng_by_rank": len(saved["rng_by_rank"])}, Path(out_dir) / f"fit{rank}.pt")
    finally:
        dist.destroy_process_group()


def test_fit_under_two_processes_equals_single_process(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """fit() in 2 gloo processes (frozen BN, no augmentation) logs the same losses and LRs and ends with the same
    model as one process with the same config (float32: 1e-5)."""
    from mslib.data import loading
    from mslib.run.trainer import fit

    mp.start_processes(_fit_worker, args=(str(tmp_path / "init"), str(tmp_path)), nprocs=WORLD, join=True,
                       start_method="spawn")
    monkeypatch.setattr(loading, "build_transform", _test_transform_only(loading.build_transform))
    single = fit(_fit_config(), progress=False)
    for rank in range(WORLD):
        got = torch.load(tmp_path / f"fit{rank}.pt", weights_only=False)
        assert "p=3" in got["errors"]["odd_p"] and "world size 2" in got["errors"]["odd_p"]
        assert "freeze_bn" in got["errors"]["bn_cpu"]
        assert got["rng_by_rank"] == WORLD, "the checkpoint keeps every process's RNG state"
        assert [h["lr"] for h in got["history"]] == [h["lr"] for h in single.history]
        losses = torch.tensor([h["loss"] for h in got["history"]])
        torch.testing.assert_close(losses, torch.tensor([h["loss"] for h in single.history]), rtol=0, atol=1e-5)
        for (name, a), b in zip(got["model"].items(), single.model.state_dict().values(), strict=True):
            torch.testing.assert_close(a, b, rtol=0, atol=1e-5, msg=f"{name} differs")
