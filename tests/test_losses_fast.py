"""The fast paths: MS loss's closed-form backward (``_MultiSimilarity``) and the one-GEMM Gram backward.

Each is checked against autograd through the plain masked-log-sum-exp version and by ``gradcheck`` in float64.
"""

from __future__ import annotations

import pytest
import torch

from mslib import losses
from mslib.mining import AllPairs, MSMiner, TripletMarginMiner
from mslib.similarity import clustered_embeddings, cosine, gram

HP = {
    "mined": dict(alpha=2.0, beta=10.0, lam=0.3, epsilon=0.1),
    "official": losses.MS_PRESETS["official"],
    "paper": losses.MS_PRESETS["paper"],
    "unmined": dict(alpha=2.0, beta=10.0, lam=0.3, epsilon=None),
    "big-beta": dict(alpha=40.0, beta=400.0, lam=0.5, epsilon=0.3),  # e^{β(S−λ)} overflows without shifts
}


def _value_grad(fn, sim, *args, **kw):
    s = sim.detach().clone().requires_grad_(True)
    v = fn(s, *args, **kw)
    (g,) = torch.autograd.grad(v, s)
    return v.detach(), g


def _labelings():
    yield torch.arange(6).repeat_interleave(4)  # P×K
    yield torch.tensor([0, 0, 0, 1, 1, 1, 2, 2, 3] + [4] * 15)  # a lone anchor (3) and one large class
    yield torch.zeros(24, dtype=torch.long)  # one class: no negatives
    yield torch.arange(24)  # all different: no positives


@pytest.mark.parametrize("case", HP)
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_fast_ms_equals_autograd(case: str, seed: int) -> None:
    x, _ = clustered_embeddings(6, 4, 16, spread=1.0 + seed, seed=seed)
    x[5] = x[4]  # an exact duplicate positive (S = 1 off the diagonal)
    for y in _labelings():
        for sim, ql, rl in ((cosine(x), y, None), (cosine(x[:10], x[6:]), y[:10], y[6:])):
            v, g = _value_grad(losses.multi_similarity, sim, ql, rl, **HP[case])
            rv, rg = _value_grad(losses.multi_similarity_autograd, sim, ql, rl, **HP[case])
            assert torch.isfinite(v) and torch.isfinite(g).all()
            torch.testing.assert_close(v, rv, rtol=0, atol=1e-12)
            torch.testing.assert_close(g, rg, rtol=0, atol=1e-12)


MINERS = {"all": AllPairs(), "ms": MSMiner(0.1), "semihard": TripletMarginMiner(0.3),
          "hard": TripletMarginMiner(mode="hard")}


@pytest.mark.parametrize("miner", MINERS)
@pytest.mark.parametrize("seed", [0, 1])
def test_fast_ms_on_a_miners_pairs_equals_autograd(miner: str, seed: int) -> None:
    # the fast path weights exactly the masks it is given: values and gradients equal the autograd version's
    x, _ = clustered_embeddings(6, 4, 16, spread=1.5 + seed, seed=seed)
    hp = dict(alpha=2.0, beta=40.0, lam=0.5, epsilon=None)
    for y in _labelings():
        own = torch.arange(10) + 8  # queries 0..9 have their copies in columns 8..17 of the reference x[-8:] + x
        bank, bank_labels = torch.cat([x[-8:], x]), torch.cat([y[-8:], y])
        for sim, ql, rl, si in ((cosine(x), y, None, None), (cosine(x[:10], bank), y[:10], bank_labels, own)):
            pairs = MINERS[miner].mine(sim, ql, rl, self_index=si)
            v, g = _value_grad(losses.multi_similarity, sim, ql, rl, pairs=pairs, self_index=si, **hp)
            rv, rg = _value_grad(losses.multi_similarity_autograd, sim, ql, rl, pairs=pairs, self_index=si, **hp)
            assert torch.isfinite(v) and torch.isfinite(g).all()
            torch.testing.assert_close(v, rv, rtol=0, atol=1e-12)
            torch.testing.assert_close(g, rg, rtol=0, atol=1e-12)
            assert bool((g[~(pairs.pos | pairs.neg)] == 0).all()), "no gradient outside the given pairs"
            if y.unique().numel() == 6:  # the P×K batch keeps pairs under every miner
                assert float(v) > 0


@pytest.mark.parametrize("case", ["mined", "official", "unmined"])
def test_fast_ms_float32_batch_1000(case: str) -> None:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(1000, 512, generator=g)
    y = torch.arange(200).repeat_interleave(5)
    sim = cosine(x)
    v, gr = _value_grad(losses.multi_similarity, sim, y, **HP[case])
    rv, rg = _value_grad(losses.multi_similarity_autograd, sim, y, **HP[case])
    torch.testing.assert_close(v, rv, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(gr, rg, rtol=1e-4, atol=1e-9)


@pytest.mark.parametrize("case", HP)
def test_fast_ms_gradcheck(case: str) -> None:
    x, y = clustered_embeddings(3, 3, 6, spread=1.5, seed=5)
    sim = cosine(x).detach().requires_grad_(True)
    assert torch.autograd.gradcheck(lambda s: losses.multi_similarity(s, y, **HP[case]), (sim,), eps=1e-6, atol=1e-7)
    rect = cosine(x[:4], x[2:]).detach().requires_grad_(True)
    assert torch.autograd.gradcheck(lambda s: losses.multi_similarity(s, y[:4], y[2:], **HP[case]), (rect,),
                                    eps=1e-6, atol=1e-7)


def test_fast_ms_grad_output_scaling_and_nothing_mined() -> None:
    x, y = clustered_embeddings(4, 4, 16, spread=2.0, seed=3)
    sim = cosine(x).requires_grad_(True)
    (3.0 * losses.multi_similarity(sim, y, **HP["mined"])).backward()
    _, g = _value_grad(losses.multi_similarity_autograd, sim, y, **HP["mined"])
    torch.testing.assert_close(sim.grad, 3.0 * g, rtol=0, atol=1e-12)
    far, yf = clustered_embeddings(4, 3, 32, spread=0.05, seed=0)  # every positive above every negative + ε
    s = cosine(far).requires_grad_(True)
    v = losses.multi_similarity(s, yf, **HP["official"])
    v.backward()
    assert float(v.detach()) == 0.0 and torch.equal(s.grad, torch.zeros_like(s))


def test_gram_backward_and_double_backward() -> None:
    x = torch.randn(7, 5, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(gram, (x,))
    assert torch.autograd.gradgradcheck(gram, (x,))
    w = torch.randn(7, 7, dtype=torch.float64)
    (g1,) = torch.autograd.grad((gram(x) * w).sum(), x)
    (g2,) = torch.autograd.grad(((x @ x.T) * w).sum(), x)
    torch.testing.assert_close(g1, g2, rtol=0, atol=1e-12)
