"""mslib.mining against plain loops, the official code's rule and pytorch-metric-learning's miners."""

from __future__ import annotations

import pytest
import torch
from pytorch_metric_learning import distances, miners

from mslib import mining
from mslib.similarity import clustered_embeddings, cosine, pair_masks
from tests import reference_losses as ref


def _loop_mask(sim, labels, ref_labels, epsilon, self_index=None):
    pos = torch.zeros(sim.shape, dtype=torch.bool)
    neg = torch.zeros(sim.shape, dtype=torch.bool)
    for i in range(sim.shape[0]):
        p, n = ref.ms_mined(sim, labels, ref_labels, i, epsilon, self_index)
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
    r_pos, r_neg = mining.ms_pair_mask(sim[:5], y[:5], y, epsilon=epsilon)  # rectangular: no self copies
    lp, ln = _loop_mask(sim[:5], y[:5], y, epsilon)
    assert torch.equal(r_pos, lp) and torch.equal(r_neg, ln)
    own = torch.tensor([0, -1, 2, -1, 4])  # rectangular with some self copies named by index
    r_pos, r_neg = mining.ms_pair_mask(sim[:5], y[:5], y, epsilon=epsilon, self_index=own)
    lp, ln = _loop_mask(sim[:5], y[:5], y, epsilon, own)
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


def _triplets(mask: torch.Tensor) -> set[tuple[int, int, int]]:
    return set(map(tuple, torch.nonzero(mask).tolist()))


@pytest.mark.parametrize("mode", ["all", "semihard", "hard"])
def test_triplet_mask_matches_loop(mode: str) -> None:
    x, y = clustered_embeddings(4, 3, 8, spread=2.0, seed=2)
    sim = cosine(x)
    got = _triplets(mining.triplet_mask(sim, y, mode=mode, margin=0.2))
    assert got == _loop_triplets(sim, y, mode, 0.2) and got


def test_semihard_matches_pml_miner() -> None:
    x, y = clustered_embeddings(5, 4, 16, spread=2.5, seed=1)
    cos = distances.CosineSimilarity()
    a, p, n = miners.TripletMarginMiner(margin=0.2, type_of_triplets="semihard", distance=cos)(x, y)
    ours = _triplets(mining.triplet_mask(cosine(x), y, mode="semihard", margin=0.2))
    assert set(zip(a.tolist(), p.tolist(), n.tolist(), strict=True)) == ours and ours


def _pair_sets(pairs) -> tuple[set, set]:
    return set(map(tuple, torch.nonzero(pairs[0]).tolist())), set(map(tuple, torch.nonzero(pairs[1]).tolist()))


@pytest.mark.parametrize("mode", ["semihard", "hard"])
@pytest.mark.parametrize("seed", range(3))
def test_triplet_margin_miner_keeps_the_pairs_of_mined_triplets(mode: str, seed: int) -> None:
    x, y = clustered_embeddings(4, 4, 8, spread=2.5, seed=seed)
    sim = cosine(x)
    got = _pair_sets(mining.TripletMarginMiner(margin=0.3, mode=mode).mine(sim, y))
    triplets = _loop_triplets(sim, y, mode, 0.3)
    assert got == ({(a, p) for a, p, _ in triplets}, {(a, n) for a, _, n in triplets})
    assert 0 < len(got[1]) < int(pair_masks(y)[1].sum()), "the batch should be partly mined"
    with pytest.raises(ValueError, match="unknown triplet miner mode"):
        mining.TripletMarginMiner(mode="easy")


def test_miners_on_embeddings_and_all_pairs() -> None:
    # called on embeddings (the PML habit) a miner mines their cosine similarities; AllPairs is the label masks
    x, y = clustered_embeddings(4, 3, 8, spread=2.0, seed=0)
    q, r = x * 3, x[:5] * 2
    for miner in (mining.MSMiner(0.1), mining.TripletMarginMiner(0.2), mining.AllPairs()):
        assert all(map(torch.equal, miner(q, y), miner.mine(cosine(x), y)))
        assert all(map(torch.equal, miner(q, y, r, y[:5]), miner.mine(cosine(x, x[:5]), y, y[:5])))
    assert all(map(torch.equal, mining.AllPairs().mine(cosine(x), y), pair_masks(y)))


def test_as_pairs_from_pml_indices() -> None:
    x, y = clustered_embeddings(4, 3, 8, spread=2.0, seed=1)
    got = mining.as_pairs(miners.MultiSimilarityMiner(0.1)(x, y), (12, 12))
    assert all(map(torch.equal, got, mining.ms_pair_mask(cosine(x), y, epsilon=0.1)))
    with pytest.raises(ValueError, match="not a pair set"):
        mining.as_pairs(miners.TripletMarginMiner()(x, y), (12, 12))


def test_bad_inputs() -> None:
    x, y = clustered_embeddings(3, 3, 8, seed=0)
    with pytest.raises(ValueError, match="2-D"):
        mining.ms_pair_mask(cosine(x)[0], y, epsilon=0.1)
    with pytest.raises(ValueError, match="unknown triplet mode"):
        mining.triplet_mask(cosine(x), y, mode="easy")
    with pytest.raises(ValueError, match="do not match"):
        mining.restrict(pair_masks(y), (torch.ones(2, 2, dtype=torch.bool),) * 2)
