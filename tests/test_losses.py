"""mslib.losses against plain loops (tests/reference_losses.py) and pytorch-metric-learning 2.9, in float64.

Tolerances: values and gradients 1e-10 against the loops (same float64 arithmetic, different order of sums);
1e-9 against PML (it goes through embeddings, distances and reducers of its own).
"""

from __future__ import annotations

import pytest
import torch
from pytorch_metric_learning import distances, miners, reducers
from pytorch_metric_learning import losses as pml_losses
from pytorch_metric_learning.utils import loss_and_miner_utils as lmu

from mslib import losses
from mslib.losses import LOSS_SPECS
from mslib.mining import AllPairs, MSMiner, TripletMarginMiner, ms_pair_mask
from mslib.similarity import clustered_embeddings, cosine
from tests import reference_losses as ref

PAIR_LOSSES = [name for name, spec in LOSS_SPECS.items() if spec.kind == "pair"]
# every pair loss of the table at its defaults (so a new row runs every test below), then the chosen settings:
# a bare name replaces its row's defaults, "name-variant" adds a case
CASES = {name: dict(LOSS_SPECS[name].defaults) for name in PAIR_LOSSES}
CASES |= {
    "contrastive": dict(pos_margin=0.9, neg_margin=0.3),
    "triplet-all": dict(margin=0.2),
    "triplet-all-mean": dict(margin=0.2, reduction="mean"),
    "triplet-semihard": dict(margin=0.3, mode="semihard"),
    "triplet-hard-sum": dict(margin=0.2, mode="hard", reduction="sum"),
    "lifted_structure": dict(margin=0.5),
    "generalized_lifted_structure": dict(margin=0.5),
    "generalized_lifted_structure-big-margin": dict(margin=1.5),
    "generalized_lifted_structure-scaled": dict(margin=0.5, scale=8.0),
    "binomial_deviance": dict(alpha=2.0, beta=10.0, lam=0.4),
    "npair": dict(),
    "npair-scaled": dict(scale=16.0),
    "npair-ovo": dict(mode="ovo"),
    "npair-ovo-scaled": dict(mode="ovo", scale=16.0),
    "multi_similarity": dict(alpha=2.0, beta=10.0, lam=0.3, epsilon=0.1),
    "multi_similarity-official": losses.MS_PRESETS["official"],
    "multi_similarity-paper": losses.MS_PRESETS["paper"],
    "multi_similarity-nomining": dict(alpha=2.0, beta=10.0, lam=0.3, epsilon=None),
    "quadruplet": dict(margin=0.2, margin2=0.1),
    "quadruplet-wide": dict(margin=0.5, margin2=0.4),
}


def _name(case: str) -> str:
    return case.split("-")[0]


def _batch(seed: int, n_classes: int = 4, per_class: int = 3, dim: int = 8, spread: float = 2.0):
    return clustered_embeddings(n_classes, per_class, dim, spread=spread, seed=seed)


def _grad(fn, sim, *args, **kw):
    s = sim.detach().clone().requires_grad_(True)
    value = fn(s, *args, **kw)
    (g,) = torch.autograd.grad(value, s)
    return value.detach(), g


@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("seed", [0, 1])
def test_square_matches_plain_loops(case: str, seed: int) -> None:
    x, y = _batch(seed)
    sim = cosine(x)
    hp = CASES[case]
    v, g = _grad(LOSS_SPECS[_name(case)].fn, sim, y, **hp)
    rv, rg = _grad(ref.REFERENCES[_name(case)], sim, y, **hp)
    assert v.dtype == torch.float64
    torch.testing.assert_close(v, rv, rtol=0, atol=1e-10)
    torch.testing.assert_close(g, rg, rtol=0, atol=1e-10)
    assert float(v) > 0, "a random batch should give a positive loss (else the test proves little)"


@pytest.mark.parametrize("case", CASES)
def test_rectangular_matches_plain_loops(case: str) -> None:
    x, y = _batch(3, n_classes=4, per_class=4)
    q, r = x[:6], x[4:]  # overlapping query and reference rows, as with a memory bank
    sim = cosine(q, r)
    hp = CASES[case]
    v, g = _grad(LOSS_SPECS[_name(case)].fn, sim, y[:6], y[4:], **hp)
    rv, rg = _grad(ref.REFERENCES[_name(case)], sim, y[:6], y[4:], **hp)
    torch.testing.assert_close(v, rv, rtol=0, atol=1e-10)
    torch.testing.assert_close(g, rg, rtol=0, atol=1e-10)


@pytest.mark.parametrize("case", CASES)
def test_memory_holding_the_batch_matches_plain_loops(case: str) -> None:
    # a cross-batch memory that holds (stale) copies of the queries in rows 2..9: self_index names them
    x, y = _batch(4, n_classes=4, per_class=4)
    q, ql = x[:8], y[:8]
    stale = q + 0.3 * torch.randn(q.shape, generator=torch.Generator().manual_seed(0), dtype=q.dtype)
    bank, bank_labels = torch.cat([x[8:10], stale, x[10:]]), torch.cat([y[8:10], ql, y[10:]])
    own = torch.arange(8) + 2
    hp = CASES[case]
    v, g = _grad(LOSS_SPECS[_name(case)].fn, cosine(q, bank), ql, bank_labels, self_index=own, **hp)
    rv, rg = _grad(ref.REFERENCES[_name(case)], cosine(q, bank), ql, bank_labels, self_index=own, **hp)
    torch.testing.assert_close(v, rv, rtol=0, atol=1e-10)
    torch.testing.assert_close(g, rg, rtol=0, atol=1e-10)
    without = LOSS_SPECS[_name(case)].fn(cosine(q, bank), ql, bank_labels, **hp)  # the copies counted as positives
    if _name(case) != "triplet" or "hard" not in case:  # batch-hard never picks a copy: the easiest positive
        assert float(without) != pytest.approx(float(v), rel=1e-9), "the self copies must make a difference here"


@pytest.mark.parametrize("case", CASES)
def test_gradcheck(case: str) -> None:
    x, y = _batch(5, n_classes=3, per_class=3, dim=6)
    sim = cosine(x).detach().requires_grad_(True)
    hp = CASES[case]
    assert torch.autograd.gradcheck(lambda s: LOSS_SPECS[_name(case)].fn(s, y, **hp), (sim,), eps=1e-6, atol=1e-7)


# --- pytorch-metric-learning 2.9: the constructor calls whose semantics match ours -------------------------------

def _pml(name: str, **kwargs):
    """Loss ``name``'s PML oracle: the class its row of the table names (``pml``), built with ``kwargs``."""
    return getattr(pml_losses, LOSS_SPECS[name].pml)(**kwargs)


def _pml_cases(alpha=2.0, beta=10.0, lam=0.4, eps=0.1, m=0.2):
    """case -> (mslib loss name, ours on (S, labels), the PML loss, the PML miner or None)."""
    cos = distances.CosineSimilarity
    return {
        # MS: MultiSimilarityLoss(alpha, beta, base=λ) + MultiSimilarityMiner(ε), default MeanReducer over all rows
        "ms+miner": ("multi_similarity",
                     lambda s, y: losses.multi_similarity(s, y, alpha=alpha, beta=beta, lam=lam, epsilon=eps),
                     _pml("multi_similarity", alpha=alpha, beta=beta, base=lam), miners.MultiSimilarityMiner(eps)),
        "ms": ("multi_similarity",
               lambda s, y: losses.multi_similarity(s, y, alpha=alpha, beta=beta, lam=lam, epsilon=None),
               _pml("multi_similarity", alpha=alpha, beta=beta, base=lam), None),
        # contrastive: cosine distance, SumReducer (sum over pairs); ours divides that sum by m
        "contrastive": ("contrastive", lambda s, y: losses.contrastive(s, y, pos_margin=0.9, neg_margin=0.3) * len(y),
                        _pml("contrastive", pos_margin=0.9, neg_margin=0.3, distance=cos(),
                             reducer=reducers.SumReducer()), None),
        # triplet: TripletMarginLoss with cosine, default AvgNonZeroReducer == our reduction="nonzero"
        "triplet-all": ("triplet", lambda s, y: losses.triplet(s, y, margin=m),
                        _pml("triplet", margin=m, distance=cos()), None),
        "triplet-semihard": ("triplet", lambda s, y: losses.triplet(s, y, margin=m, mode="semihard"),
                             _pml("triplet", margin=m, distance=cos()),
                             miners.TripletMarginMiner(margin=m, type_of_triplets="semihard", distance=cos())),
        "triplet-hard": ("triplet", lambda s, y: losses.triplet(s, y, margin=m, mode="hard"),
                         _pml("triplet", margin=m, distance=cos()), miners.BatchHardMiner(distance=cos())),
        # lifted: LiftedStructureLoss(neg_margin=0, pos_margin=margin) with cosine, default MeanReducer over pos pairs
        "lifted": ("lifted_structure", lambda s, y: losses.lifted_structure(s, y, margin=0.5),
                   _pml("lifted_structure", neg_margin=0, pos_margin=0.5, distance=cos()), None),
        # generalised lifted: GeneralizedLiftedStructureLoss(neg_margin=0, pos_margin=λ), MeanReducer over anchors
        "generalized-lifted": ("generalized_lifted_structure",
                               lambda s, y: losses.generalized_lifted_structure(s, y, margin=0.5),
                               _pml("generalized_lifted_structure", neg_margin=0, pos_margin=0.5, distance=cos()),
                               None),
        "generalized-lifted+ms-miner": (
            "generalized_lifted_structure",
            lambda s, y: losses.generalized_lifted_structure(s, y, margin=1.0,
                                                             pairs=ms_pair_mask(s.detach(), y, epsilon=eps)),
            _pml("generalized_lifted_structure", neg_margin=0, pos_margin=1.0, distance=cos()),
            miners.MultiSimilarityMiner(eps)),
    }


PML_ELSEWHERE = {"npair"}  # NPairsLoss takes one (anchor, positive) per label: test_npair_matches_pml_* below


def test_every_pml_oracle_of_the_table_is_compared() -> None:
    # a row naming a PML class (LossSpec.pml) has a comparison here, and every comparison's loss names one
    oracles = {name for name in PAIR_LOSSES if LOSS_SPECS[name].pml is not None}
    assert {name for name, *_ in _pml_cases().values()} | PML_ELSEWHERE == oracles


@pytest.mark.parametrize("case", list(_pml_cases()))
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_matches_pytorch_metric_learning(case: str, seed: int) -> None:
    _, ours, pml_loss, miner = _pml_cases()[case]
    x, y = clustered_embeddings(5, 4, 16, spread=2.5, seed=seed)
    x = (x * 3).requires_grad_(True)  # not unit length: both sides must normalise
    v = ours(cosine(x), y)
    (g,) = torch.autograd.grad(v, x)
    x2 = x.detach().clone().requires_grad_(True)
    v2 = pml_loss(x2, y, miner(x2, y) if miner is not None else None)
    (g2,) = torch.autograd.grad(v2, x2)
    assert float(v.detach()) > 0
    torch.testing.assert_close(v.detach(), v2.detach(), rtol=0, atol=1e-9)
    torch.testing.assert_close(g, g2, rtol=0, atol=1e-9)


def _pml_npair(x: torch.Tensor, y: torch.Tensor, distance) -> tuple[torch.Tensor, torch.Tensor]:
    x2 = x.detach().clone().requires_grad_(True)
    v = _pml("npair", distance=distance)(x2, y)
    (g,) = torch.autograd.grad(v, x2)
    return v.detach(), g


@pytest.mark.parametrize("scale", [1.0, 4.0, 32.0])
def test_npair_matches_pml_on_its_pairs(scale: float) -> None:
    # NPairsLoss picks one (anchor, positive) per label and takes a cross-entropy over the anchors x positives
    # matrix; on that rectangle (ref_labels = the positives' labels) our npair is Sohn's multi-class N-pair.
    # Scale s on cosine = PML's unnormalised dot product of embeddings normalised to length √s.
    x, y = clustered_embeddings(6, 2, 16, spread=2.0, seed=4)
    x = (x * 3).requires_grad_(True)
    a, p = lmu.convert_to_pos_pairs_with_unique_labels(None, y)
    no_copies = torch.full((len(a),), -1)  # anchors x positives: the diagonal holds real positives
    v = losses.npair(cosine(x[a], x[p]), y[a], y[p], scale=scale, self_index=no_copies)
    (g,) = torch.autograd.grad(v, x)
    if scale == 1.0:  # PML's default distance normalises: unit cosine, no scale
        v2, g2 = _pml_npair(x, y, distances.DotProductSimilarity())
        torch.testing.assert_close(v.detach(), v2, rtol=0, atol=1e-9)
        torch.testing.assert_close(g, g2, rtol=0, atol=1e-9)
    xs = (torch.nn.functional.normalize(x, dim=1) * scale**0.5).detach().requires_grad_(True)
    v3, g3 = _pml_npair(xs, y, distances.DotProductSimilarity(normalize_embeddings=False))
    (g3x,) = torch.autograd.grad(torch.nn.functional.normalize(x, dim=1) * scale**0.5, x, g3)  # chain to x
    torch.testing.assert_close(v.detach(), v3, rtol=0, atol=1e-9)
    torch.testing.assert_close(g, g3x, rtol=0, atol=1e-9)


def test_npair_on_inner_products_matches_pml_and_loop() -> None:
    # Sohn's form: unnormalised inner products S = x xᵀ (PML: DotProductSimilarity(normalize_embeddings=False))
    x, y = clustered_embeddings(5, 2, 8, spread=2.0, seed=6)
    g0 = torch.Generator().manual_seed(0)
    x = (x * (0.5 + 2 * torch.rand(len(x), 1, generator=g0, dtype=x.dtype))).requires_grad_(True)  # varied norms
    a, p = lmu.convert_to_pos_pairs_with_unique_labels(None, y)
    sim = x[a] @ x[p].T
    no_copies = torch.full((len(a),), -1)
    v = losses.npair(sim, y[a], y[p], self_index=no_copies)
    (g,) = torch.autograd.grad(v, x)
    v2, g2 = _pml_npair(x, y, distances.DotProductSimilarity(normalize_embeddings=False))
    torch.testing.assert_close(v.detach(), v2, rtol=0, atol=1e-9)
    torch.testing.assert_close(g, g2, rtol=0, atol=1e-9)
    rv = ref.npair(sim, y[a], y[p])  # the loop takes a given ref_labels as having no self copies
    torch.testing.assert_close(v.detach(), rv.detach(), rtol=0, atol=1e-10)


def test_npair_scale_is_a_temperature() -> None:
    x, y = _batch(1)
    sim = cosine(x)
    torch.testing.assert_close(losses.npair(sim, y, scale=8.0), losses.npair(8.0 * sim, y), rtol=0, atol=1e-12)
    with pytest.raises(ValueError, match="scale must be > 0"):
        losses.npair(sim, y, scale=0.0)


def test_npair_modes() -> None:
    # mc is the default, unchanged; ovo sums a binary loss per negative: Σ log(1 + t) ≥ log(1 + Σ t), equal with one
    x, y = _batch(2)
    sim = cosine(x)
    mc, ovo = losses.npair(sim, y, mode="mc"), losses.npair(sim, y, mode="ovo")
    assert torch.equal(losses.npair(sim, y), mc)
    assert torch.equal(losses.build_loss("npair")(x, y), losses.build_loss("npair", mode="mc")(x, y))
    assert float(ovo) > float(mc) + 1e-3
    two = torch.tensor([0, 0, 1])  # anchors 0 and 1 have one negative each; anchor 2 has no positive
    torch.testing.assert_close(losses.npair(sim[:3, :3], two, mode="ovo"), losses.npair(sim[:3, :3], two),
                               rtol=0, atol=1e-15)
    with pytest.raises(ValueError, match="unknown npair mode 'all'"):
        losses.npair(sim, y, mode="all")


@pytest.mark.parametrize("labels", [[0, 0, 0, 1, 1, 1, 2, 2, 3], [0, 0, 0, 0, 1, 1, 1, 1, 1], [0] * 9])
def test_generalized_lifted_counts_anchors_as_pml(labels: list[int]) -> None:
    # anchors without positives (label 3) or without negatives (one class): PML takes the empty log-sum-exp as 0
    # and averages over every anchor; so do we
    x, _ = clustered_embeddings(3, 3, 8, spread=2.0, seed=7)
    y = torch.tensor(labels)
    x = x.requires_grad_(True)
    v = losses.generalized_lifted_structure(cosine(x), y, margin=0.7)
    (g,) = torch.autograd.grad(v, x)
    x2 = x.detach().clone().requires_grad_(True)
    pml = pml_losses.GeneralizedLiftedStructureLoss(neg_margin=0, pos_margin=0.7, distance=distances.CosineSimilarity())
    v2 = pml(x2, y)
    (g2,) = torch.autograd.grad(v2, x2)
    assert float(v.detach()) > 0
    torch.testing.assert_close(v.detach(), v2.detach(), rtol=0, atol=1e-9)
    torch.testing.assert_close(g, g2, rtol=0, atol=1e-9)


def test_generalized_lifted_rectangular_matches_pml() -> None:
    x, y = clustered_embeddings(4, 4, 16, spread=2.0, seed=3)
    q, r, ql, rl = x[:7], x[5:], y[:7], y[5:]
    q = q.clone().requires_grad_(True)
    v = losses.generalized_lifted_structure(cosine(q, r), ql, rl, margin=1.0)
    (g,) = torch.autograd.grad(v, q)
    q2 = q.detach().clone().requires_grad_(True)
    pml = pml_losses.GeneralizedLiftedStructureLoss(neg_margin=0, pos_margin=1.0, distance=distances.CosineSimilarity())
    v2 = pml(q2, ql, ref_emb=r, ref_labels=rl)
    (g2,) = torch.autograd.grad(v2, q2)
    torch.testing.assert_close(v.detach(), v2.detach(), rtol=0, atol=1e-9)
    torch.testing.assert_close(g, g2, rtol=0, atol=1e-9)


def test_generalized_lifted_scale_sharpens_it_and_must_be_positive() -> None:
    x, y = _batch(1)
    sim = cosine(x).double()
    # as s grows, (1/s)·log Σ e^{s·a} tends to max a: the hinge of the hardest positive and negative
    big = losses.generalized_lifted_structure(sim, y, margin=0.5, scale=1e4)
    same = y[:, None] == y[None, :]
    pos, neg = same & ~torch.eye(len(y), dtype=torch.bool), ~same
    hardest = [max(0.5 - float(sim[i, k]) for k in range(len(y)) if pos[i, k])
               + max(float(sim[i, k]) for k in range(len(y)) if neg[i, k]) for i in range(len(y))]
    assert abs(float(big) - sum(max(h, 0.0) for h in hardest) / len(y)) < 1e-3
    with pytest.raises(ValueError, match="scale must be > 0"):
        losses.generalized_lifted_structure(sim, y, scale=0.0)


def test_generalized_lifted_is_not_songs_form() -> None:
    # the two lifted losses are different functions of S (the generalised one is per anchor, no squared hinge)
    x, y = _batch(0)
    sim = cosine(x)
    a = losses.generalized_lifted_structure(sim, y, margin=1.0)
    b = losses.lifted_structure(sim, y, margin=1.0)
    assert abs(float(a) - float(b)) > 1e-3


# --- edge cases --------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("case", CASES)
def test_anchor_without_positive_single_class_and_two_classes(case: str) -> None:
    name, hp = _name(case), CASES[case]
    x, _ = clustered_embeddings(3, 3, 8, spread=2.0, seed=7)
    for y in (torch.tensor([0, 0, 0, 1, 1, 1, 2, 2, 3]),  # anchor 8 has no positive
              torch.zeros(9, dtype=torch.long),  # one class: no negatives at all
              torch.tensor([0, 0, 0, 0, 1, 1, 1, 1, 1])):  # two classes
        v, g = _grad(LOSS_SPECS[name].fn, cosine(x), y, **hp)
        rv, rg = _grad(ref.REFERENCES[name], cosine(x), y, **hp)
        assert torch.isfinite(v) and torch.isfinite(g).all()
        torch.testing.assert_close(v, rv, rtol=0, atol=1e-10)
        torch.testing.assert_close(g, rg, rtol=0, atol=1e-10)


@pytest.mark.parametrize("case", CASES)
def test_near_duplicate_embeddings(case: str) -> None:
    x, y = _batch(8)
    x = x.clone()
    x[1] = x[0] + 1e-9  # near duplicate of an anchor: S ≈ 1 but still a positive pair (by index, not by value)
    x[2] = x[0]  # exact duplicate
    sim = cosine(x)
    v, g = _grad(LOSS_SPECS[_name(case)].fn, sim, y, **CASES[case])
    rv, rg = _grad(ref.REFERENCES[_name(case)], sim, y, **CASES[case])
    assert torch.isfinite(g).all()
    torch.testing.assert_close(v, rv, rtol=0, atol=1e-10)
    torch.testing.assert_close(g, rg, rtol=0, atol=1e-10)


def test_ms_mining_keeps_nothing_gives_connected_zero() -> None:
    # classes far apart: every positive above every negative + ε, so mining keeps no pair
    x, y = clustered_embeddings(4, 3, 32, spread=0.05, seed=0)
    sim = cosine(x).requires_grad_(True)
    v = losses.multi_similarity(sim, y, **losses.MS_PRESETS["official"])
    assert float(v.detach()) == 0.0 and v.requires_grad
    v.backward()
    assert torch.equal(sim.grad, torch.zeros_like(sim))
    module = losses.build_loss("multi_similarity", preset="paper")
    xe = x.clone().requires_grad_(True)
    out = module(xe, y)
    out.backward()
    assert float(out.detach()) == 0.0 and torch.equal(xe.grad, torch.zeros_like(xe))


# --- bad input and the module interface --------------------------------------------------------------------------

@pytest.mark.parametrize("name", PAIR_LOSSES)
def test_bad_input_raises_value_error(name: str) -> None:
    hp = CASES["multi_similarity"] if name == "multi_similarity" else {}
    x, y = _batch(0)
    sim = cosine(x)
    fn = LOSS_SPECS[name].fn
    bad_nan, bad_inf = sim.clone(), sim.clone()
    bad_nan[0, 1], bad_inf[2, 3] = float("nan"), float("inf")
    with pytest.raises(ValueError, match="NaN or Inf"):
        fn(bad_nan, y, **hp)
    with pytest.raises(ValueError, match="NaN or Inf"):
        fn(bad_inf, y, **hp)
    with pytest.raises(ValueError, match="labels has length"):
        fn(sim, y[:-1], **hp)
    with pytest.raises(ValueError, match="2-D"):
        fn(sim[0], y, **hp)
    with pytest.raises(ValueError, match="rectangular"):
        fn(sim[:, :-1], y, **hp)
    with pytest.raises(ValueError, match="ref_labels has length"):
        fn(sim[:, :-1], y, y, **hp)
    module = losses.build_loss(name, **hp)
    xe = x.clone()
    xe[0, 0] = float("nan")
    with pytest.raises(ValueError, match="embeddings contains NaN"):
        module(xe, y)
    with pytest.raises(ValueError, match="labels must be 1-D"):
        module(x, y[:-1])


@pytest.mark.parametrize("case", CASES)
def test_module_matches_functional_with_and_without_reference(case: str) -> None:
    name, hp = _name(case), CASES[case]
    x, y = _batch(2)
    module = losses.build_loss(name, **hp)
    torch.testing.assert_close(module(x * 2, y), LOSS_SPECS[name].fn(cosine(x), y, **hp), rtol=0, atol=1e-12)
    memory, memory_labels = _batch(9, per_class=4)  # 16 references for 12 queries
    torch.testing.assert_close(module(x, y, ref_embeddings=memory, ref_labels=memory_labels),
                               LOSS_SPECS[name].fn(cosine(x, memory), y, memory_labels, **hp), rtol=0, atol=1e-12)
    # a memory holding the batch itself (rows 3..14): its copies are excluded by self_index, as the square loss does
    bank, bank_labels = torch.cat([memory[:3], x, memory[3:]]), torch.cat([memory_labels[:3], y, memory_labels[3:]])
    own = torch.arange(len(y)) + 3
    got = module(x, y, ref_embeddings=bank, ref_labels=bank_labels, self_index=own)
    torch.testing.assert_close(got, LOSS_SPECS[name].fn(cosine(x, bank), y, bank_labels, self_index=own, **hp),
                               rtol=0, atol=1e-12)


def test_registry_presets_and_errors() -> None:
    assert set(PAIR_LOSSES) == {"contrastive", "triplet", "lifted_structure", "generalized_lifted_structure",
                                "binomial_deviance", "npair", "multi_similarity", "quadruplet"}
    assert losses.MS_PRESETS == {"paper": dict(alpha=2, beta=50, lam=1, epsilon=0.1),
                                 "official": dict(alpha=2, beta=40, lam=0.5, epsilon=0.1),
                                 "pml": dict(alpha=2, beta=50, lam=0.5, epsilon=0.1)}
    pml = pml_losses.MultiSimilarityLoss()  # "pml" is pytorch-metric-learning's defaults
    assert (pml.alpha, pml.beta, pml.base, miners.MultiSimilarityMiner().epsilon) == (2, 50, 0.5, 0.1)
    assert losses.build_loss("multi_similarity", preset="official", beta=30).hparams["beta"] == 30
    with pytest.raises(ValueError, match="unknown loss"):
        losses.build_loss("softmax")
    with pytest.raises(ValueError, match="unknown preset"):
        losses.build_loss("multi_similarity", preset="nope")
    with pytest.raises(ValueError, match="only multi_similarity has presets, not contrastive"):
        losses.build_loss("contrastive", preset="official")
    with pytest.raises(ValueError, match="unknown triplet mode"):
        losses.triplet(cosine(_batch(0)[0]), _batch(0)[1], mode="easy")
    with pytest.raises(TypeError):
        losses.multi_similarity(cosine(_batch(0)[0]), _batch(0)[1], alpha=2, beta=50, lam=1)  # epsilon required


# ------------------------------------------------------------------------------------ hyperparameters at build time
@pytest.mark.parametrize("name", PAIR_LOSSES)
def test_build_loss_names_unknown_and_missing_hyperparameters(name: str) -> None:
    with pytest.raises(ValueError, match=f"{name} has no hyperparameter gamma, nope"):
        losses.build_loss(name, nope=1, gamma=2, **(CASES[name] if name == "multi_similarity" else {}))
    with pytest.raises(ValueError, match=f"{name} has no hyperparameter pairs"):  # pairs are per call, not built in
        losses.build_loss(name, pairs=None, **(CASES[name] if name == "multi_similarity" else {}))
    if name == "multi_similarity":
        with pytest.raises(ValueError, match="multi_similarity needs the hyperparameters epsilon, lam"):
            losses.build_loss(name, alpha=2.0, beta=50.0)
    else:  # every other loss has defaults for all its hyperparameters
        losses.build_loss(name)(*_batch(0))


# ------------------------------------------------------------------------------------ "mining only" (ms_mining)
@pytest.mark.parametrize("name", ["binomial_deviance", "lifted_structure", "generalized_lifted_structure",
                                  "contrastive", "npair", "triplet"])
def test_ms_mining_option_uses_exactly_the_mined_pairs(name: str) -> None:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(24, 8, generator=g, dtype=torch.float64)
    labels = torch.arange(6).repeat_interleave(4)
    sim = torch.nn.functional.normalize(x, dim=1) @ torch.nn.functional.normalize(x, dim=1).T
    # the mining rule written out independently: keep negative if S + eps > min positive, positive if S - eps < max neg
    same = labels[:, None] == labels[None, :]
    pos, neg = same & ~torch.eye(24, dtype=torch.bool), ~same
    min_pos = torch.where(pos, sim, torch.inf).amin(1, keepdim=True)
    max_neg = torch.where(neg, sim, -torch.inf).amax(1, keepdim=True)
    want = (pos & (sim - 0.1 < max_neg), neg & (sim + 0.1 > min_pos))
    assert not torch.equal(want[1], neg), "the batch must make mining drop some negatives"
    fn = LOSS_SPECS[name].fn
    hp = {"margin": 0.3} if name == "triplet" else {}  # triplets violating a margin ≤ ε are all MS-mined
    mined = losses.build_loss(name, ms_mining=0.1, **hp)(x, labels)
    assert mined.item() == pytest.approx(fn(sim, labels, pairs=want, **hp).item(), rel=1e-12)
    assert mined.item() != pytest.approx(fn(sim, labels, **hp).item(), rel=1e-6)
    # a huge margin keeps every pair: the unmined loss
    unmined = fn(sim, labels, **hp).item()
    assert losses.build_loss(name, ms_mining=10.0, **hp)(x, labels).item() == pytest.approx(unmined, rel=1e-12)


def test_ms_mining_is_refused_where_it_conflicts() -> None:
    with pytest.raises(ValueError, match="own epsilon"):
        losses.build_loss("multi_similarity", preset="official", ms_mining=0.1)
    with pytest.raises(ValueError, match="not both"):
        losses.build_loss("contrastive", ms_mining=0.1, miner=AllPairs())
    x, y = _batch(0)
    with pytest.raises(ValueError, match="pass epsilon=None"):
        losses.multi_similarity(cosine(x), y, **losses.MS_PRESETS["official"], pairs=ms_pair_mask(cosine(x), y,
                                                                                                   epsilon=0.1))


def test_ms_miner_equals_ms_epsilon_bit_for_bit() -> None:
    # MS with epsilon=None on MSMiner(ε)'s pairs is MS with epsilon=ε: the same masks reach the same code
    x, y = _batch(1, n_classes=5, per_class=4, dim=16)
    hp = losses.MS_PRESETS["official"]
    x1, x2 = x.clone().requires_grad_(True), x.clone().requires_grad_(True)
    a = losses.build_loss("multi_similarity", **hp)(x1, y)
    b = losses.build_loss("multi_similarity", **{**hp, "epsilon": None}, ms_mining=hp["epsilon"])(x2, y)
    a.backward()
    b.backward()
    assert torch.equal(a, b) and torch.equal(x1.grad, x2.grad)


# ------------------------------------------------------------------------------------ miners as an argument
def test_ms_weighting_with_a_triplet_miner_matches_plain_loop() -> None:
    x, y = _batch(2, n_classes=4, per_class=4, dim=8, spread=2.5)
    sim = cosine(x)
    hp = dict(alpha=2.0, beta=10.0, lam=0.3, epsilon=None)
    for miner in (TripletMarginMiner(margin=0.3), TripletMarginMiner(mode="hard")):
        mined = miner.mine(sim, y)
        v, g = _grad(losses.multi_similarity, sim, y, pairs=mined, **hp)
        rv, rg = _grad(ref.multi_similarity, sim, y, **hp,
                       pair_lists=lambda i, m=miner: ref.triplet_mined(sim, y, i, m.margin, m.mode))
        torch.testing.assert_close(v, rv, rtol=0, atol=1e-10)
        torch.testing.assert_close(g, rg, rtol=0, atol=1e-10)
        assert float(v) != pytest.approx(float(losses.multi_similarity(sim, y, **hp)), rel=1e-6), "mining changed it"
        module = losses.build_loss("multi_similarity", miner=miner, **hp)
        torch.testing.assert_close(module(x, y), v, rtol=0, atol=1e-12)


def test_contrastive_with_the_ms_miner_matches_plain_loop() -> None:
    x, y = _batch(3, n_classes=4, per_class=4, dim=8, spread=2.5)
    sim = cosine(x)
    v, g = _grad(losses.contrastive, sim, y, pairs=MSMiner(0.1).mine(sim, y), pos_margin=0.9, neg_margin=0.3)
    rv, rg = _grad(ref.contrastive, sim, y, pos_margin=0.9, neg_margin=0.3,
                   pair_lists=lambda i: ref.ms_mined(sim, y, None, i, 0.1))
    torch.testing.assert_close(v, rv, rtol=0, atol=1e-10)
    torch.testing.assert_close(g, rg, rtol=0, atol=1e-10)
    assert float(v) != pytest.approx(float(losses.contrastive(sim, y, pos_margin=0.9, neg_margin=0.3)), rel=1e-6)


def test_pml_habit_loss_of_miner_output() -> None:
    # loss(embeddings, labels, miner(embeddings, labels)): our miners, and PML's (a1, p, a2, n) pair indices
    x, y = _batch(4, n_classes=5, per_class=4, dim=16)
    loss = losses.build_loss("binomial_deviance")
    want = losses.build_loss("binomial_deviance", ms_mining=0.1)(x, y)
    assert float(want) != pytest.approx(float(loss(x, y)), rel=1e-6)
    torch.testing.assert_close(loss(x, y, MSMiner(0.1)(x, y)), want, rtol=0, atol=0)
    torch.testing.assert_close(loss(x, y, miners.MultiSimilarityMiner(0.1)(x, y)), want, rtol=0, atol=1e-12)
    with pytest.raises(ValueError, match="pass a reference as ref_embeddings"):
        loss(x, y, x)  # the old positional reference
    with pytest.raises(ValueError, match="use mslib.mining.TripletMarginMiner"):
        loss(x, y, miners.TripletMarginMiner()(x, y))  # triplets are not a pair set
    with pytest.raises(ValueError, match="do not pass pairs too"):
        losses.build_loss("binomial_deviance", ms_mining=0.1)(x, y, MSMiner(0.1)(x, y))


def test_canonical_params_expands_a_preset_so_one_run_has_one_spelling() -> None:
    explicit = {"alpha": 2.0, "beta": 50.0, "lam": 0.5, "epsilon": 0.1}  # PML's defaults, written out
    assert losses.canonical_params("multi_similarity", {"preset": "pml"}) == explicit
    assert losses.canonical_params("multi_similarity", {"preset": "pml", "alpha": 2}) == explicit
    assert losses.canonical_params("multi_similarity", {"preset": "official", "epsilon": None}) == {
        "alpha": 2.0, "beta": 40.0, "lam": 0.5, "epsilon": None}
    assert losses.canonical_params("contrastive", {"pos_margin": 1.0}) == {"pos_margin": 1.0}
    with pytest.raises(ValueError, match="only multi_similarity has presets"):
        losses.canonical_params("contrastive", {"preset": "pml"})
    with pytest.raises(ValueError, match="unknown preset 'nope'"):
        losses.canonical_params("multi_similarity", {"preset": "nope"})
