"""mslib.mining against plain loops, the official code's rule and pytorch-metric-learning's miners."""

from __future__ import annotations

import pytest
import torch
from pytorch_metric_learning import distances, miners

from mslib import mining
from mslib.similarity import clustered_embeddings, cosine, pair_masks
from tests import reference_losses as ref


def _loop_mask(sim, labels, ref_labels, epsilon):
    pos = torch.zeros(sim.shape, dtype=torch.bool)
    neg = torch.zeros(sim.shape, dtype=torch.bool)
    for i in range(sim.shape[0]):
        p, n = ref.ms_mined(sim, labels, ref_labels, i, epsilon)
        pos[i, p], neg[i, n] = True, True
    return pos, neg


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("epsilon", [0.0, 0.1, 0.3])
def test_ms_mask_matches_loop(seed: int, epsilon: float) -> None:
    x, y = clustered_embeddings(4, 4, 8, spread=2.0, seed=seed)
    sim = cosine(x)
    pos, neg = mining.ms_pair_mask(sim, y, epsilon=epsilon)
    lp, ln = _loop_mask(sim, y, None, epsilon)
    assert torch.equal(pos, lp) and torch.equal(neg, ln)
    assert 0 < int(neg.sum()) < int(pair_masks(y)[1].sum()), "the test batch should be partly mined"
    r_pos, r_neg = mining.ms_pair_mask(sim[:5], y[:5], y, epsilon=epsilon)  # rectangular: no diagonal rule
    lp, ln = _loop_mask(sim[:5], y[:5], y, epsilon)
    assert torch.equal(r_pos, lp) and torch.equal(r_neg, ln)


def test_ms_mask_matches_official_code_without_duplicates() -> None:
    # official: pos_ = sim[i][same label]; pos_ = pos_[pos_ < 1 - 1e-5] (self removed BY VALUE)
    x, y = clustered_embeddings(5, 4, 16, spread=2.0, seed=3)
    sim = cosine(x)
    pos, neg = mining.ms_pair_mask(sim, y, epsilon=0.1)
    for i in range(len(y)):
        same = y == y[i]
        pos_ = sim[i][same]
        pos_ = pos_[pos_ < 1 - 1e-5]
        neg_ = sim[i][~same]
        assert sorted(sim[i][neg[i]].tolist()) == sorted(neg_[neg_ + 0.1 > pos_.min()].tolist())
        assert sorted(sim[i][pos[i]].tolist()) == sorted(pos_[pos_ - 0.1 < neg_.max()].tolist())


@pytest.mark.parametrize("seed", range(3))
def test_ms_mask_matches_pml_miner(seed: int) -> None:
    x, y = clustered_embeddings(5, 4, 16, spread=2.5, seed=seed)
    a1, p, a2, n = miners.MultiSimilarityMiner(epsilon=0.1)(x, y)
    pos, neg = mining.ms_pair_mask(cosine(x), y, epsilon=0.1)
    assert set(zip(a1.tolist(), p.tolist(), strict=True)) == set(map(tuple, torch.nonzero(pos).tolist()))
    assert set(zip(a2.tolist(), n.tolist(), strict=True)) == set(map(tuple, torch.nonzero(neg).tolist()))


def _loop_triplets(sim, labels, mode, margin):
    out = set()
    for a in range(len(labels)):
        pos, neg = ref.pairs(labels, None, a)
        if mode == "hard":
            if pos and neg:
                out.add((a, min(pos, key=lambda k: float(sim[a, k])), max(neg, key=lambda k: float(sim[a, k]))))
            continue
        for p in pos:
            for n in neg:
                if mode == "all" or 0 < float(sim[a, p] - sim[a, n]) < margin:
                    out.add((a, p, n))
    return out


@pytest.mark.parametrize("mode", ["all", "semihard", "hard"])
def test_triplet_indices_match_loop(mode: str) -> None:
    x, y = clustered_embeddings(4, 3, 8, spread=2.0, seed=2)
    sim = cosine(x)
    a, p, n = mining.triplet_indices(sim, y, mode=mode, margin=0.2)
    got = set(zip(a.tolist(), p.tolist(), n.tolist(), strict=True))
    assert got == _loop_triplets(sim, y, mode, 0.2) and got


def test_semihard_matches_pml_miner() -> None:
    x, y = clustered_embeddings(5, 4, 16, spread=2.5, seed=1)
    cos = distances.CosineSimilarity()
    a, p, n = miners.TripletMarginMiner(margin=0.2, type_of_triplets="semihard", distance=cos)(x, y)
    ours = mining.triplet_indices(cosine(x), y, mode="semihard", margin=0.2)
    assert {tuple(t) for t in torch.stack([a, p, n], 1).tolist()} == {tuple(t) for t in torch.stack(ours, 1).tolist()}


def test_bad_inputs() -> None:
    x, y = clustered_embeddings(3, 3, 8, seed=0)
    with pytest.raises(ValueError, match="2-D"):
        mining.ms_pair_mask(cosine(x)[0], y, epsilon=0.1)
    with pytest.raises(ValueError, match="unknown triplet mode"):
        mining.triplet_mask(cosine(x), y, mode="easy")
    with pytest.raises(ValueError, match="do not match"):
        mining.restrict(pair_masks(y), (torch.ones(2, 2, dtype=torch.bool),) * 2)
