"""mslib.gpw: the derived (closed-form) pair weights equal autograd's |∂L/∂S_ij| to 1e-10 in float64."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from mslib import gpw, losses
from mslib.losses import LOSS_SPECS
from mslib.mining import MSMiner, TripletMarginMiner
from mslib.similarity import clustered_embeddings, cosine, pair_masks
from tests.test_losses import CASES, _name

CLOSED_FORM_CASES = [case for case in CASES if LOSS_SPECS[_name(case)].closed_form is not None]


@pytest.mark.parametrize("case", CLOSED_FORM_CASES)
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


@pytest.mark.parametrize(("name", "hp"), [
    ("triplet", dict(margin=0.2)),
    ("contrastive", dict(pos_margin=0.9, neg_margin=0.3)),
    ("binomial_deviance", dict(alpha=2.0, beta=10.0, lam=0.4)),
    ("multi_similarity", dict(alpha=2.0, beta=10.0, lam=0.3, epsilon=None)),
])
@pytest.mark.parametrize("miner", [MSMiner(0.1), TripletMarginMiner(0.3)], ids=["ms", "semihard"])
def test_closed_form_on_a_miners_pairs_equals_autograd(name: str, hp: dict, miner) -> None:
    x, y = clustered_embeddings(5, 4, 16, spread=2.5, seed=4)
    sim = cosine(x)
    pairs = miner.mine(sim, y)
    auto = gpw.pair_weights(name, sim, y, pairs=pairs, **hp)
    closed = gpw.closed_form_weights(name, sim, y, pairs=pairs, **hp)
    torch.testing.assert_close(closed.grad, auto.grad, rtol=0, atol=1e-10)
    unmined = gpw.pair_weights(name, sim, y, **hp)
    assert float((auto.grad - unmined.grad).abs().max()) > 1e-6, "the miner must change the weights here"
    assert bool((auto.grad[~(pairs.pos | pairs.neg)] == 0).all())


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
    ("generalized_lifted_structure", {}, {"S": False, "N": True, "P": False}),  # the paper's Table 1 row
    ("lifted_structure", {}, {"S": False, "N": True, "P": True}),  # Song's hinge per positive pair brings in P
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


def test_generalized_lifted_closed_form_is_a_softmax_by_loop() -> None:
    # w⁻_ik = e^{S_ik} / Σ_{l∈N_i} e^{S_il} / m for an anchor whose hinge is active, written per pair
    x, y = clustered_embeddings(4, 3, 8, spread=2.0, seed=2)
    sim = cosine(x)
    w = gpw.pair_weights("generalized_lifted_structure", sim, y, margin=1.0)
    pos, neg = pair_masks(y)
    m = len(y)
    for i in range(m):
        N = torch.nonzero(neg[i]).flatten().tolist()
        P = torch.nonzero(pos[i]).flatten().tolist()
        zn = sum(np.exp(float(sim[i, k])) for k in N)
        zp = sum(np.exp(-float(sim[i, k])) for k in P)
        for j in N:
            assert abs(float(w.neg[i, j]) - np.exp(float(sim[i, j])) / zn / m) < 1e-12
        for j in P:
            assert abs(float(w.pos[i, j]) - np.exp(-float(sim[i, j])) / zp / m) < 1e-12


def test_table1_comparison() -> None:
    paper = {"a": {"S": True, "N": False, "P": False}, "b": {"S": False, "N": True, "P": False}}
    measured = {"A": {"S": True, "N": False, "P": False}, "B": {"S": False, "N": True, "P": True},
                "extra": {"S": False, "N": False, "P": True}}
    out = gpw.table1_comparison(measured, {"A": "a", "B": "b", "extra": None}, paper)
    assert list(out["agrees"]) == ["yes", "no", "–"]
    cols = ["S", "N", "P", "paper S", "paper N", "paper P"]
    assert list(out.loc["B", cols]) == ["no", "yes", "yes", "no", "yes", "no"]
    assert list(out.loc["extra", ["paper S", "paper N", "paper P"]]) == ["–"] * 3
    with pytest.raises(ValueError, match="without a paper_rows entry"):
        gpw.table1_comparison(measured, {"A": "a"}, paper)
    with pytest.raises(ValueError, match="not in the paper's table"):
        gpw.table1_comparison(measured, {"A": "a", "B": "zzz", "extra": None}, paper)
    derived = {"A": {"S": True, "N": False, "P": False}, "B": {"S": False, "N": True, "P": False},
               "extra": {"S": False, "N": False, "P": True}}
    out = gpw.table1_comparison(measured, {"A": "a", "B": "b", "extra": None}, paper, derived)
    assert list(out["derived = measured"]) == ["yes", "no", "yes"]
    assert list(out.loc["B", ["derived S", "derived N", "derived P"]]) == ["no", "yes", "no"]


def test_paper_table1_rows_are_reproduced() -> None:
    # the measured rows of the forms the paper analyses agree with mslib.paper.PAPER_TABLE1 on every row
    from mslib.paper import PAPER_TABLE1

    hp = {"triplet": {"reduction": "sum", "margin": 0.2}, "multi_similarity": losses.MS_PRESETS["official"]}
    x, y = clustered_embeddings(6, 4, 32, spread=2.0, seed=0)
    measured = {name: gpw.similarity_dependence(name, cosine(x), y, **hp.get(name, {})) for name in PAPER_TABLE1}
    out = gpw.table1_comparison(measured, {n: n for n in PAPER_TABLE1}, PAPER_TABLE1)
    assert (out["agrees"] == "yes").all(), out
