"""mslib.symbolic: the derived GPW weights equal the typed closed forms (symbolically), autograd through the
readable losses and mslib.gpw's closed forms (numerically, float64), and their symbols give the paper's Table 1."""

from __future__ import annotations

import dataclasses
import functools

import numpy as np
import pytest
import sympy as sp
import torch

from mslib import gpw, losses, symbolic
from mslib.paper import PAPER_TABLE1
from mslib.similarity import clustered_embeddings, cosine

PAIR_LOSSES = ["contrastive", "triplet", "lifted_structure", "generalized_lifted_structure", "binomial_deviance",
               "npair", "multi_similarity"]
PROXY = ["proxy_nca", "proxy_anchor"]
TOL = 1e-10


def _values(seed: int, shape: tuple[int, ...] = (5,)) -> np.ndarray:
    return np.random.default_rng(seed).uniform(-0.3, 0.9, shape)


@pytest.mark.parametrize("name", PAIR_LOSSES)
def test_derived_equals_closed_form_symbolically(name):
    assert all(symbolic.prove(name).values()), symbolic.prove(name)


@pytest.mark.parametrize("name", PROXY)
def test_proxy_derived_equals_closed_form_symbolically(name):
    assert all(symbolic.prove_proxy(name).values())


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("name", PAIR_LOSSES)
def test_derived_matches_autograd_and_gpw(name, seed):
    gaps = symbolic.numeric_check(name, _values(seed))
    assert gaps["autograd"] < TOL and gaps["closed form"] < TOL, gaps


def test_ms_without_mining_matches_autograd():
    hp = dict(alpha=2.0, beta=50.0, lam=1.0, epsilon=None)
    gaps = symbolic.numeric_check("multi_similarity", _values(3), hp)
    assert max(gaps.values()) < TOL, gaps


def test_ms_autograd_side_is_the_readable_loss(monkeypatch):
    """The autograd side must not go through the fast backward: breaking it changes nothing."""
    def broken(*args, **kwargs):
        raise AssertionError("the fast MS backward was used")
    fast = losses.LOSS_SPECS["multi_similarity"]
    broken = functools.wraps(fast.fn)(broken)  # the fast loss's signature, so the row stays valid
    monkeypatch.setitem(losses.LOSS_SPECS, "multi_similarity", dataclasses.replace(fast, fn=broken))
    monkeypatch.setattr(losses, "multi_similarity", broken)
    assert symbolic.numeric_check("multi_similarity", _values(4))["autograd"] < TOL


@pytest.mark.parametrize("seed", [0, 1])
@pytest.mark.parametrize("name", PROXY)
def test_proxy_derived_matches_autograd_and_gpw(name, seed):
    gaps = symbolic.numeric_check_proxy(name, _values(seed, (4, 3)))
    assert gaps["autograd"] < TOL and gaps["closed form"] < TOL, gaps


@pytest.mark.parametrize("name", PAIR_LOSSES)
def test_sign_condition(name):
    """∂L/∂S ≤ 0 on positives and ≥ 0 on negatives: the derived weights w = ∓∂L/∂S are ≥ 0."""
    d = symbolic.derive(name)
    subs = {symbolic.H[k]: v for k, v in symbolic._HP_NUMERIC[name].items() if k in symbolic.H}
    subs.update({g: 1 for g in (*symbolic.G_POS, *symbolic.G_NEG)})
    for seed in range(3):
        point = dict(zip(symbolic.PAIRS, _values(seed), strict=True))
        assert all(float(w.subs(subs).subs(point)) >= 0 for w in d.weights.values())


def test_a_changed_gpw_closed_form_is_reported(monkeypatch):
    original = gpw.binomial_deviance_weights

    def wrong(*args, **kwargs):
        w = original(*args, **kwargs)
        return gpw.PairWeights(1.01 * w.pos, w.neg, w.grad)
    monkeypatch.setattr(gpw, "binomial_deviance_weights", wrong)
    gaps = symbolic.numeric_check("binomial_deviance", _values(0))
    assert gaps["closed form"] > 1e-4 and gaps["autograd"] < TOL


def test_a_changed_symbolic_closed_form_is_reported():
    def wrong(name, pair):
        return (1 + sp.Rational(1, 100)) * symbolic.closed_form_expr(name, pair)
    assert not any(symbolic.prove("binomial_deviance", closed=wrong).values())


def test_derivation_keeps_the_hinge():
    """Off the active region the contrastive weight is 0: the derivation did not drop the Heaviside."""
    w = symbolic.derive("contrastive").weights[symbolic.NEG[0]]
    assert w.subs({symbolic.NEG[0]: 0.1, symbolic.H["neg_margin"]: 0.5}) == 0


def test_ms_weights_are_the_papers():
    """w⁺ = 1/(e^{α(S−λ)} + Σ_P e^{α(S−S_k)}) with every gate 1, typed here once more in the paper's layout."""
    a, lam = symbolic.H["alpha"], symbolic.H["lam"]
    p1, p2 = symbolic.POS
    paper = 1 / (sp.exp(a * (p1 - lam)) + sp.exp(a * (p1 - p1)) + sp.exp(a * (p1 - p2)))
    derived = symbolic.derive("multi_similarity", mining=False).weights[p1]
    assert sp.simplify(derived - paper) == 0


def test_ms_limits():
    lim = symbolic.ms_limits()
    n1, n2, n3 = symbolic.NEG
    b = symbolic.H["beta"]
    assert lim["beta -> oo, S_n1 hardest, above lambda"] == 1
    assert lim["beta -> oo, S_n1 below S_n2"] == 0
    softmax = sp.exp(b * n1) / (sp.exp(b * n1) + sp.exp(b * n2) + sp.exp(b * n3))
    assert sp.simplify(lim["lambda -> -oo"] - softmax) == 0
    assert lim["lambda -> +oo, w * exp(beta (lambda - S_n1))"] == 1


def _pair_batch():
    x, labels = clustered_embeddings(4, 3, 16, spread=2.0, seed=0)
    return cosine(x), labels


MEASURED_SETTINGS = {
    "contrastive": {}, "triplet": {"margin": 0.2, "reduction": "sum"}, "lifted_structure": {},
    "generalized_lifted_structure": {}, "binomial_deviance": {}, "npair": {},
    "multi_similarity": losses.MS_PRESETS["official"],
}


def test_table1_from_symbols_equals_perturbation_and_paper():
    derived = symbolic.table1()
    sim, labels = _pair_batch()
    for name, hp in MEASURED_SETTINGS.items():
        measured = gpw.similarity_dependence(name, sim, labels, **hp)
        assert {k: derived[name][k] for k in "SNP"} == measured, name
        if name in PAPER_TABLE1:
            assert {k: derived[name][k] for k in "SNP"} == PAPER_TABLE1[name], name


def test_ms_without_mining_loses_p():
    row = symbolic.table1(mining=False)["multi_similarity"]
    assert row["S"] and row["N"] and not row["P"]


def test_uses_reads_symbols():
    n1, n2 = symbolic.NEG[:2]
    p1 = symbolic.POS[0]
    assert symbolic.uses(sp.exp(n1 - n2), n1) == {"S": False, "own": True, "N": True, "P": False}
    assert symbolic.uses(sp.exp(n1) + p1, n1) == {"S": True, "own": True, "N": False, "P": True}


@pytest.mark.parametrize("name", PROXY)
def test_proxy_uses_equals_perturbation(name):
    x, labels = clustered_embeddings(5, 4, 16, spread=2.0, seed=0)
    proxies = torch.stack([x[labels == c].mean(dim=0) for c in range(5)])
    measured = gpw.proxy_similarity_dependence(name, cosine(x, proxies), labels)
    i, c = 2, 0  # a negative pair of the symbolic batch: sample 2 (class 1) against proxy 0
    derived = symbolic.uses_proxy(symbolic.derive_proxy(name).weights[symbolic.PROXY_S[i, c]], i, c)
    assert derived == measured


def test_proxy_nca_weight_moves_with_its_own_s_but_not_a_shift():
    """The measured and derived answer the 09 figure shows: Proxy-NCA's w⁻ rises with its own S_ic alone."""
    x, labels = clustered_embeddings(5, 4, 16, spread=2.0, seed=0)
    proxies = torch.stack([x[labels == c].mean(dim=0) for c in range(5)])
    dep = gpw.proxy_similarity_dependence("proxy_nca", cosine(x, proxies), labels)
    assert dep["own"] and not dep["S"]


def test_numeric_check_refuses_an_inactive_hinge():
    with pytest.raises(ValueError, match="inactive"):
        symbolic.numeric_check("lifted_structure", np.array([0.9, 0.9, -0.9, -0.9, -0.9]), {"margin": -1.0})


def test_unknown_names():
    with pytest.raises(ValueError, match="no symbolic loss"):
        symbolic.loss_expr("quadruplet")
    with pytest.raises(ValueError, match="no closed form"):
        symbolic.closed_form_expr("quadruplet", symbolic.NEG[0])
