"""mslib.weight_trace: the hard-negative share and the mined fraction, by hand and on a short training run."""

from __future__ import annotations

import math

import pytest
import torch

from mslib import gpw, weight_trace
from mslib.run.config import TrainConfig
from mslib.similarity import pair_masks


def test_hard_share_by_hand():
    # one anchor (row 0) with 10 negatives: ⌈0.1 · 10⌉ = 1 hardest (S = 0.9, weight 3) out of a total weight of 12
    sim = torch.tensor([[0.5, 0.9, 0.1, 0.2, 0.3, 0.4, 0.0, -0.1, -0.2, -0.3, -0.4]], dtype=torch.float64)
    neg = torch.ones_like(sim, dtype=torch.bool)
    neg[0, 0] = False
    w = torch.tensor([[9.0, 3.0, 1, 1, 1, 1, 1, 1, 1, 1, 1]], dtype=torch.float64)
    assert weight_trace.hard_share(w, sim, neg) == pytest.approx(3 / 12)
    assert weight_trace.uniform_share(neg) == pytest.approx(1 / 10)
    # 11 negatives: ⌈1.1⌉ = 2 hardest per anchor
    assert weight_trace.hard_mask(sim, torch.ones_like(neg)).sum() == 2


def test_hard_share_per_anchor_and_edge_cases():
    sim = torch.tensor([[0.0, 0.8, 0.1], [0.3, 0.0, 0.9]], dtype=torch.float64)
    neg = torch.tensor([[False, True, True], [True, False, True]])
    w = torch.tensor([[0.0, 1.0, 1.0], [2.0, 0.0, 0.0]], dtype=torch.float64)
    # hardest of row 0: column 1 (w 1); of row 1: column 2 (w 0): share 1 / 4
    assert weight_trace.hard_share(w, sim, neg) == pytest.approx(1 / 4)
    assert math.isnan(weight_trace.hard_share(torch.zeros_like(w), sim, neg))
    with pytest.raises(ValueError, match="fraction"):
        weight_trace.hard_mask(sim, neg, 0.0)


def test_mined_fraction_contrastive():
    sim = torch.tensor([[0.0, 0.95, 0.2, 0.7], [0.95, 0.0, 0.4, 0.6], [0.2, 0.4, 0.0, 0.1], [0.7, 0.6, 0.1, 0.0]],
                       dtype=torch.float64)
    labels = torch.tensor([0, 0, 1, 1])
    w = gpw.closed_form_weights("contrastive", sim, labels, pos_margin=1.0, neg_margin=0.5)
    pos, neg = pair_masks(labels)
    # all 4 positive pairs are below 1; negatives above 0.5: (0,3), (1,3) and their transposes: 8 of 12 pairs
    assert weight_trace.mined_fraction(w, pos, neg) == pytest.approx(8 / 12)


def test_trace_on_a_short_run():
    cfg = TrainConfig(dataset_options={"classes": 40, "images_per_class": 12}, iterations=5, p=4, k=3,
                      embedding_dim=16, loss="binomial_deviance", loss_params={"alpha": 2.0, "beta": 50.0, "lam": 0.5})
    trace = weight_trace.trace_weights(cfg, every=2)
    assert list(trace["iteration"]) == [0, 2, 4]
    assert trace["hard share"].between(0, 1).all() and trace["mined"].between(0, 1).all()
    assert trace["uniform share"].tolist() == pytest.approx([1 / 9] * 3)  # 9 negatives per anchor: ⌈0.9⌉ = 1
    assert (trace["mined"] == 1).all()  # binomial deviance weights every pair (a sigmoid is never 0)
    assert trace.attrs["seconds"] > 0


def test_trace_summary():
    import pandas as pd

    df = pd.DataFrame({"iteration": [0, 10, 20, 30], "hard share": [0.1, 0.2, 0.4, 0.6], "uniform share": [0.1] * 4,
                       "mined": [1.0, 0.9, 0.8, 0.5]})
    row = weight_trace.trace_summary({"x": df}).loc["x"]
    assert row["hard share, first"] == pytest.approx(0.1)
    assert row["hard share, second half"] == pytest.approx(0.5)  # iterations 20 and 30 (≥ 30 / 2)
    assert row["mined, last"] == pytest.approx(0.5)
