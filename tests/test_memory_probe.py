"""mslib.memory_probe: the memory term's GPW weight mass against hand-computed contrastive weights, the bound of
MS's per-anchor normalisation, and the probe on a run's own training embeddings."""

import pytest
import torch

from mslib.memory_probe import memory_pull, memory_pull_of_run
from mslib.models import build_model
from mslib.run.config import TrainConfig


def _unit(n: int, d: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.nn.functional.normalize(torch.randn(n, d, generator=g, dtype=torch.float64), dim=1)


def test_contrastive_mass_is_the_count_of_active_pairs_over_the_batch_size():
    batch, labels = _unit(12, 6, 0), torch.arange(4).repeat_interleave(3)
    memory, mem_labels = _unit(40, 6, 1), torch.arange(40) % 5
    got = memory_pull("contrastive", batch, labels, memory, mem_labels, pos_margin=1.0, neg_margin=0.2)
    s = batch @ memory.T
    neg = mem_labels[None, :] != labels[:, None]
    active = neg & (s > 0.2)  # d/dS [S − λ]_+ = 1 on each active negative, over m = 12 anchors
    assert got["memory: negative weight"] == pytest.approx(float(active.sum()) / 12, rel=1e-12)
    assert got["memory: weighted negatives per anchor"] == pytest.approx(float(active.sum(1).double().mean()))
    pos = ~neg  # d/dS [1 − S]_+ = 1 on every positive with S < 1
    assert got["memory: positive weight"] == pytest.approx(float((pos & (s < 1)).sum()) / 12, rel=1e-12)
    ratio = got["memory: negative weight"] / got["batch: negative weight"]
    assert got["memory / batch, negative weight"] == pytest.approx(ratio)


def test_a_doubled_memory_doubles_contrastives_pull_and_ms_stays_below_one_per_anchor():
    batch, labels = _unit(12, 6, 2), torch.arange(4).repeat_interleave(3)
    memory, mem_labels = _unit(60, 6, 3), torch.arange(60) % 6
    doubled, doubled_labels = torch.cat([memory, memory]), torch.cat([mem_labels, mem_labels])
    con = {m.shape[0]: memory_pull("contrastive", batch, labels, m, ml, pos_margin=1.0, neg_margin=0.0)
           for m, ml in [(memory, mem_labels), (doubled, doubled_labels)]}
    assert con[120]["memory: negative weight"] == pytest.approx(2 * con[60]["memory: negative weight"], rel=1e-12)
    ms = {"alpha": 2.0, "beta": 2.0, "lam": 0.5, "epsilon": None}  # a small β keeps the sums away from 1
    mass = [memory_pull("multi_similarity", batch, labels, m, ml, **ms)["memory: negative weight"]
            for m, ml in [(memory, mem_labels), (doubled, doubled_labels)]]
    assert all(0 < x < 1 for x in mass), "MS: an anchor's negative weights e^a / (1 + Σ e^a) sum to < 1"
    assert mass[1] < 1.1 * mass[0], "twice the memory pairs, about the same MS negative mass"


def test_the_probe_on_a_runs_training_embeddings_and_its_errors():
    cfg = TrainConfig(dataset_options={"classes": 40, "images_per_class": 12}, embedding_dim=16, p=4, k=3,
                      loss="contrastive", loss_params={"pos_margin": 1.0, "neg_margin": 0.5})
    model = build_model(cfg.backbone, cfg.embedding_dim, in_channels=1, pooling=cfg.pooling)
    got = memory_pull_of_run(cfg, model, 60, seed=1)
    assert got["batch: weighted negatives per anchor"] <= cfg.p * cfg.k - cfg.k
    assert got["memory: weighted negatives per anchor"] <= 60
    assert got == memory_pull_of_run(cfg, model, 60, seed=1), "seeded"
    with pytest.raises(ValueError, match="exceeds the 228 training images outside the batch"):
        memory_pull_of_run(cfg, model, 10_000)
    with pytest.raises(ValueError, match="non-empty memory"):
        memory_pull("contrastive", torch.eye(2, dtype=torch.float64), torch.tensor([0, 1]),
                    torch.zeros(0, 2, dtype=torch.float64), torch.zeros(0, dtype=torch.long))
