"""mslib.gpw: the derived (closed-form) pair weights equal autograd's |∂L/∂S_ij| to 1e-10 in float64."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from mslib import gpw, losses
from mslib.similarity import clustered_embeddings, cosine, pair_masks
from tests.test_losses import CASES, _name


@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_closed_form_equals_autograd(case: str, seed: int) -> None:
    name, hp = _name(case), CASES[case]
    x, y = clustered_embeddings(5, 4, 16, spread=2.0 + seed, seed=seed)
    for sim, labels, ref_labels in ((cosine(x), y, None), (cosine(x[:7], x[3:]), y[:7], y[3:])):
        auto = gpw.pair_weights(name, sim, labels, ref_labels, **hp)
        closed = gpw.closed_form_weights(name, sim, labels, ref_labels, **hp)
        assert float(auto.grad.abs().max()) > 0
        torch.testing.assert_close(closed.grad, auto.grad, rtol=0, atol=1e-10)
        torch.testing.assert_close(closed.pos, auto.pos, rtol=0, atol=1e-10)
        torch.testing.assert_close(closed.neg, auto.neg, rtol=0, atol=1e-10)


def test_ms_closed_form_is_the_papers_formula_by_loop() -> None:
    # w⁻_ij = 1 / (e^{β(λ−S_ij)} + Σ_{k∈Ñ_i} e^{β(S_ik−S_ij)}) / m, written per pair
    x, y = clustered_embeddings(4, 4, 8, spread=2.5, seed=5)
    sim = cosine(x)
    a, b, lam = 2.0, 10.0, 0.3
    w = gpw.pair_weights("multi_similarity", sim, y, alpha=a, beta=b, lam=lam, epsilon=None)
    pos, neg = pair_masks(y)
    m = len(y)
    for i in range(m):
        P, N = torch.nonzero(pos[i]).flatten().tolist(), torch.nonzero(neg[i]).flatten().tolist()
        for j in N:
            others = sum(np.exp(b * float(sim[i, k] - sim[i, j])) for k in N)
            expect = 1 / (np.exp(b * (lam - float(sim[i, j]))) + others)
            assert abs(float(w.neg[i, j]) - expect / m) < 1e-12
        for j in P:
            others = sum(np.exp(a * float(sim[i, j] - sim[i, k])) for k in P)
            expect = 1 / (np.exp(a * (float(sim[i, j]) - lam)) + others)
            assert abs(float(w.pos[i, j]) - expect / m) < 1e-12


def test_weights_vanish_off_pairs() -> None:
    x, y = clustered_embeddings(4, 3, 8, spread=2.0, seed=0)
    w = gpw.pair_weights(losses.multi_similarity, cosine(x), y, alpha=2, beta=10, lam=0.3, epsilon=None)
    assert torch.equal(torch.diagonal(w.grad), torch.zeros(len(y), dtype=w.grad.dtype))
    assert bool((w.pos[~pair_masks(y)[0]] == 0).all()) and bool((w.neg[~pair_masks(y)[1]] == 0).all())


@pytest.mark.parametrize(("name", "hp", "expect"), [
    ("contrastive", {}, {"S": True, "N": False, "P": False}),
    ("binomial_deviance", {}, {"S": True, "N": False, "P": False}),
    ("triplet", {"reduction": "sum", "margin": 0.3}, {"S": False, "N": False, "P": True}),
    ("multi_similarity", losses.MS_PRESETS["official"], {"S": True, "N": True, "P": True}),
    ("multi_similarity", {**losses.MS_PRESETS["official"], "epsilon": None}, {"S": True, "N": True, "P": False}),
])
def test_similarity_dependence_probe(name: str, hp: dict, expect: dict) -> None:
    # the probe must tell these apart: an all-True or all-False answer would fail several rows
    x, y = clustered_embeddings(4, 4, 16, spread=2.0, seed=1)
    assert gpw.similarity_dependence(name, cosine(x), y, **hp) == expect


def test_weight_sweep_and_errors() -> None:
    x, y = clustered_embeddings(3, 3, 8, spread=2.0, seed=0)
    vals = np.linspace(-0.5, 0.9, 5)
    out = gpw.weight_sweep("binomial_deviance", cosine(x), y, (0, 5), (0, 5), vals)
    assert out.shape == (5,) and np.all(np.diff(out) > 0), "binomial w⁻ grows with its own S"
    with pytest.raises(ValueError, match="no closed form"):
        gpw.closed_form_weights("softmax", cosine(x), y)
