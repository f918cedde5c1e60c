"""DDP with gathered embeddings equals single-process training on the concatenated batch (gloo, 2 processes)."""

from __future__ import annotations

import os
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
        all_emb, all_labels, offset = distributed.gather_embeddings(emb, y[rows])
        assert offset == rank * 12 and torch.equal(all_labels, y)
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
