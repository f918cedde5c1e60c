"""mslib.evaluate against independent references: brute-force NumPy, pytorch-metric-learning, hand-computed NMI."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from mslib import evaluate as ev


def clustered(n_classes: int, per_class, dim: int = 16, spread: float = 0.8, seed: int = 0):
    """L2-normalised clustered data; ``per_class`` is an int or a list of class sizes (1 = lone class)."""
    rng = np.random.default_rng(seed)
    sizes = [per_class] * n_classes if isinstance(per_class, int) else list(per_class)
    centres = rng.normal(size=(len(sizes), dim))
    x = np.concatenate([c + spread * rng.normal(size=(s, dim)) for c, s in zip(centres, sizes, strict=True)])
    y = np.repeat(np.arange(len(sizes)), sizes)
    perm = rng.permutation(len(y))
    x = x[perm] / np.linalg.norm(x[perm], axis=1, keepdims=True)
    return x.astype(np.float32), y[perm].astype(np.int64)


# ------------------------------------------------------------------ brute-force references (written independently)
def brute_ranking(q, r, same_set):
    """Reference order: float64 similarities, self removed by index, stable sort (ties by reference index)."""
    sim = q.astype(np.float64) @ r.astype(np.float64).T
    order = np.argsort(-sim, axis=1, kind="stable")
    if same_set:
        order = np.array([[j for j in row if j != i] for i, row in enumerate(order)])
    return sim, order


def brute_recall(q, ql, r, rl, ks, same_set, lone_policy="exclude"):
    _, order = brute_ranking(q, r, same_set)
    out = {}
    for k in ks:
        scores = []
        for i in range(len(q)):
            n_rel = sum(1 for j in range(len(r)) if rl[j] == ql[i] and not (same_set and j == i))
            if n_rel == 0:
                if lone_policy == "miss":
                    scores.append(0.0)
                continue
            scores.append(float(any(rl[j] == ql[i] for j in order[i, :k])))
        out[k] = sum(scores) / len(scores)
    return out


def brute_map_rp(q, ql, r, rl, same_set):
    _, order = brute_ranking(q, r, same_set)
    aps, rps = [], []
    for i in range(len(q)):
        R = sum(1 for j in range(len(r)) if rl[j] == ql[i] and not (same_set and j == i))
        if R == 0:
            continue
        hits, ap = 0, 0.0
        for rank, j in enumerate(order[i, :R], start=1):
            if rl[j] == ql[i]:
                hits += 1
                ap += hits / rank
        aps.append(ap / R)
        rps.append(hits / R)
    return float(np.mean(aps)), float(np.mean(rps))


# ------------------------------------------------------------------ Recall@K
@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("lone_policy", ["exclude", "miss"])
def test_recall_single_set_matches_bruteforce_with_lone_classes(seed, lone_policy):
    sizes = [5] * 20 + [1, 1, 1] + [2, 7]  # three lone classes
    x, y = clustered(len(sizes), sizes, seed=seed)
    ks = (1, 2, 4, 8, 16)
    got = ev.recall_at_k(x, y, ks=ks, lone_queries=lone_policy)
    want = brute_recall(x, y, x, y, ks, same_set=True, lone_policy=lone_policy)
    assert got.keys() == want.keys()
    for k in ks:
        assert got[k] == pytest.approx(want[k], abs=1e-12)
    if lone_policy == "exclude":
        assert got[16] < 1.0 or want[16] == 1.0


@pytest.mark.parametrize("seed", [0, 3])
def test_recall_rectangular_query_gallery_matches_bruteforce(seed):
    xq, yq = clustered(12, 4, seed=seed)
    rng = np.random.default_rng(seed)  # gallery around the query classes' means
    xg = np.concatenate([xq[yq == c].mean(0) + 0.5 * rng.normal(size=(6, xq.shape[1])) for c in range(10)])
    yg = np.repeat(np.arange(10), 6)  # classes 10, 11 have no gallery item -> lone queries
    xg = (xg / np.linalg.norm(xg, axis=1, keepdims=True)).astype(np.float32)
    ks = (1, 2, 4, 8)
    for policy in ("exclude", "miss"):
        got = ev.recall_at_k(xq, yq, xg, yg, ks=ks, lone_queries=policy)
        want = brute_recall(xq, yq, xg, yg, ks, same_set=False, lone_policy=policy)
        for k in ks:
            assert got[k] == pytest.approx(want[k], abs=1e-12)


def test_blocked_search_equals_one_block():
    x, y = clustered(15, 6, seed=4)
    ks = (1, 2, 4, 8)
    assert ev.recall_at_k(x, y, ks=ks, block_size=7) == ev.recall_at_k(x, y, ks=ks, block_size=10_000)
    s1, i1 = ev.knn(x, x, 10, same_set=True, block_size=5)
    s2, i2 = ev.knn(x, x, 10, same_set=True, block_size=1000)
    np.testing.assert_array_equal(i1, i2)
    np.testing.assert_allclose(s1, s2)


def test_self_excluded_by_index_but_exact_duplicate_kept():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(6, 8))
    x[1] = x[0]  # an exact duplicate of query 0, in another image of the same class
    x = (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)
    y = np.array([0, 0, 1, 2, 3, 4])  # query 0's only positive is its duplicate
    sims, idx = ev.knn(x, x, 5, same_set=True)
    assert not (idx == np.arange(6)[:, None]).any()
    assert idx[0, 0] == 1 and idx[1, 0] == 0
    assert sims[0, 0] == pytest.approx(1.0, abs=1e-6)
    # Classes 1..4 are lone -> excluded; queries 0 and 1 are hits: by-value removal would have dropped them.
    assert ev.recall_at_k(x, y, ks=(1,)) == {1: 1.0}
    assert ev.recall_at_k(x, y, ks=(1,), lone_queries="miss") == {1: pytest.approx(2 / 6)}


def test_ties_do_not_crash_and_lie_between_tie_rules():
    """Many exact ties (one-hot embeddings): result between pessimistic and optimistic (official ``>``) tie rules."""
    rng = np.random.default_rng(1)
    n, dim = 60, 4
    x = np.eye(dim, dtype=np.float32)[rng.integers(0, dim, size=n)]
    y = rng.integers(0, 6, size=n)
    ks = (1, 2, 4, 8)
    got = ev.recall_at_k(x, y, ks=ks)
    sim = x.astype(np.float64) @ x.T.astype(np.float64)
    np.fill_diagonal(sim, -np.inf)
    for k in ks:
        opt, pes, n_valid = 0, 0, 0
        for i in range(n):
            pos = [j for j in range(n) if j != i and y[j] == y[i]]
            if not pos:
                continue
            n_valid += 1
            best_pos = max(sim[i, pos])
            neg = [j for j in range(n) if j != i and y[j] != y[i]]
            n_better = sum(sim[i, j] > best_pos for j in neg)
            n_tied = sum(sim[i, j] == best_pos for j in neg)
            opt += n_better < k  # official rule: ties count as hits
            pes += n_better + n_tied < k  # every tied negative ranked first
        assert pes / n_valid - 1e-12 <= got[k] <= opt / n_valid + 1e-12
    _, idx = ev.knn(x, x, 8, same_set=True)
    assert not (idx == np.arange(n)[:, None]).any()
    assert all(len(set(row)) == len(row) for row in idx)


# ------------------------------------------------------------------ MAP@R and R-Precision
@pytest.mark.parametrize("seed", [0, 1])
def test_map_at_r_and_r_precision_match_bruteforce(seed):
    sizes = [3, 4, 5, 6, 8, 10, 1, 2] * 3
    x, y = clustered(len(sizes), sizes, spread=1.0, seed=seed)
    want_map, want_rp = brute_map_rp(x, y, x, y, same_set=True)
    assert ev.map_at_r(x, y) == pytest.approx(want_map, abs=1e-12)
    assert ev.r_precision(x, y) == pytest.approx(want_rp, abs=1e-12)


def _pml_calculator():
    pml = pytest.importorskip("pytorch_metric_learning.utils.accuracy_calculator")
    return pml.AccuracyCalculator(
        include=("precision_at_1", "mean_average_precision_at_r", "r_precision"),
        exclude=(), k="max_bin_count", device=torch.device("cpu"),
    )


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_against_pytorch_metric_learning_single_set(seed):
    sizes = [4, 5, 6, 7, 9, 1, 3] * 4  # includes lone classes: PML leaves them out, as our default does
    x, y = clustered(len(sizes), sizes, spread=0.9, seed=seed)
    pml = _pml_calculator().get_accuracy(x, y, x, y, ref_includes_query=True)
    ours = ev.evaluate_embeddings(x, y, ks=(1,), with_nmi=False)
    assert ours["R@1"] == pytest.approx(pml["precision_at_1"], abs=1e-9)
    assert ours["MAP@R"] == pytest.approx(pml["mean_average_precision_at_r"], abs=1e-9)
    assert ours["RP"] == pytest.approx(pml["r_precision"], abs=1e-9)
    assert ours["lone_queries"] == 4


def test_against_pytorch_metric_learning_query_gallery():
    rng = np.random.default_rng(5)
    centres = rng.normal(size=(15, 16))
    yq = rng.integers(0, 15, size=90)
    yg = np.concatenate([np.arange(13), rng.integers(0, 13, size=110)])  # classes 13, 14: no gallery item
    xq = centres[yq] + 0.9 * rng.normal(size=(90, 16))
    xg = centres[yg] + 0.9 * rng.normal(size=(len(yg), 16))
    xq = (xq / np.linalg.norm(xq, axis=1, keepdims=True)).astype(np.float32)
    xg = (xg / np.linalg.norm(xg, axis=1, keepdims=True)).astype(np.float32)
    pml = _pml_calculator().get_accuracy(xq, yq, xg, yg, ref_includes_query=False)
    ours = ev.evaluate_embeddings(xq, yq, xg, yg, ks=(1,), with_nmi=False)
    assert ours["R@1"] == pytest.approx(pml["precision_at_1"], abs=1e-9)
    assert ours["MAP@R"] == pytest.approx(pml["mean_average_precision_at_r"], abs=1e-9)
    assert ours["RP"] == pytest.approx(pml["r_precision"], abs=1e-9)
    assert ours["lone_queries"] == int(np.isin(yq, [13, 14]).sum())


# ------------------------------------------------------------------ one-pass scan: any K, blocks, both paths
def test_large_k_recall_matches_bruteforce():
    """K from 1 to beyond the reference set (the SOP-style Recall@1000 of a small set), single set and gallery."""
    sizes = [2, 3, 5, 8, 13, 1, 1] * 6
    x, y = clustered(len(sizes), sizes, spread=1.2, seed=11)
    n = len(y)
    ks = (1, 10, 50, 100, n - 2, n - 1, n, n + 50)
    for policy in ("exclude", "miss"):
        got = ev.recall_at_k(x, y, ks=ks, lone_queries=policy)
        want = brute_recall(x, y, x, y, ks, same_set=True, lone_policy=policy)
        for k in ks:
            assert got[k] == pytest.approx(want[k], abs=1e-12)
    got = ev.recall_at_k(x[:90], y[:90], x[90:], y[90:], ks=ks)
    want = brute_recall(x[:90], y[:90], x[90:], y[90:], ks, same_set=False)
    for k in ks:
        assert got[k] == pytest.approx(want[k], abs=1e-12)


@pytest.mark.parametrize("block_size", [1, 7, 64, 97, 10_000])
def test_block_boundaries_match_bruteforce(block_size):
    """N = 151 is a multiple of none of the block sizes; self exclusion must use the block's row offset."""
    sizes = [4, 6, 9, 1, 3] * 6 + [13]
    x, y = clustered(len(sizes), sizes, spread=1.0, seed=12)
    assert len(y) == 151
    ks = (1, 2, 4, 8, 32)
    out = ev.evaluate_embeddings(x, y, ks=ks, with_nmi=False, block_size=block_size)
    want = brute_recall(x, y, x, y, ks, same_set=True)
    want_map, want_rp = brute_map_rp(x, y, x, y, same_set=True)
    for k in ks:
        assert out[f"R@{k}"] == pytest.approx(want[k], abs=1e-12)
    assert out["MAP@R"] == pytest.approx(want_map, abs=1e-12)
    assert out["RP"] == pytest.approx(want_rp, abs=1e-12)


def test_block_rows_follow_the_byte_budget(monkeypatch):
    """Blocks sized by BLOCK_BYTES (not block_size) give the same numbers; rows never exceed block_size."""
    x, y = clustered(20, 7, seed=13)
    ks = (1, 2, 4, 8, 100)
    want = ev.evaluate_embeddings(x, y, ks=ks, with_nmi=False)
    assert ev._block_rows(3153, 8192) == max(ev.MIN_BLOCK_ROWS, ev.BLOCK_BYTES // (4 * 3153))
    assert ev._block_rows(10**9, 8192) == ev.MIN_BLOCK_ROWS and ev._block_rows(10**9, 5) == 5
    monkeypatch.setattr(ev, "BLOCK_BYTES", 4 * len(y) * 9)  # 9 rows per block
    monkeypatch.setattr(ev, "MIN_BLOCK_ROWS", 1)
    assert ev._block_rows(len(y), 8192) == 9
    assert ev.evaluate_embeddings(x, y, ks=ks, with_nmi=False) == want


@pytest.mark.parametrize("sparse_share", [0.0, 1.0])
def test_dense_and_sparse_positive_paths_match_bruteforce(monkeypatch, sparse_share):
    """The best same-class similarity by a dense class mask (0.0) or by gathering the positives (1.0)."""
    monkeypatch.setattr(ev, "SPARSE_POSITIVES", sparse_share)
    sizes = [5] * 12 + [1, 1, 30]
    x, y = clustered(len(sizes), sizes, spread=1.1, seed=14)
    ks = (1, 2, 4, 8, 16)
    for policy in ("exclude", "miss"):
        got = ev.recall_at_k(x, y, ks=ks, block_size=17, lone_queries=policy)
        want = brute_recall(x, y, x, y, ks, same_set=True, lone_policy=policy)
        for k in ks:
            assert got[k] == pytest.approx(want[k], abs=1e-12)
    xg, yg = x[:40], y[:40]  # a gallery without some query classes
    got = ev.recall_at_k(x[40:], y[40:], xg, yg, ks=ks, block_size=17)
    want = brute_recall(x[40:], y[40:], xg, yg, ks, same_set=False)
    for k in ks:
        assert got[k] == pytest.approx(want[k], abs=1e-12)


def test_self_excluded_by_index_when_tied_with_a_duplicate(monkeypatch):
    """An exact duplicate of query 0 in another row is a neighbour (tied with the excluded self at 1.0) in every
    metric: as a positive (rows 0, 1) it is a hit at rank 1; as a negative (rows 2, 3) it ranks above the positives."""
    rng = np.random.default_rng(2)
    x = rng.normal(size=(10, 8))
    x[1] = x[0]
    x[3] = x[2]
    x = (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)
    y = np.array([0, 0, 1, 2, 1, 2, 3, 3, 4, 4])
    for block_size in (1, 3, 100):
        for sparse_share in (0.0, 1.0):
            monkeypatch.setattr(ev, "SPARSE_POSITIVES", sparse_share)
            out = ev.evaluate_embeddings(x, y, ks=(1, 2), with_nmi=False, block_size=block_size)
            scan = ev._scan(x, y, x, y, True, rank_limit=2, top=True, block_size=block_size)
            rank, ap, rp, counts = scan.rank, scan.ap, scan.rp, scan.counts
            assert rank[0] == 0 and rank[1] == 0 and ap[0] == ap[1] == 1.0 and rp[0] == rp[1] == 1.0
            assert rank[2] >= 1 and rank[3] >= 1  # the other-class duplicate comes first
            want = brute_recall(x, y, x, y, (1, 2), same_set=True)
            want_map, want_rp = brute_map_rp(x, y, x, y, same_set=True)
            assert out["R@1"] == pytest.approx(want[1]) and out["R@2"] == pytest.approx(want[2])
            assert out["MAP@R"] == pytest.approx(want_map) and out["RP"] == pytest.approx(want_rp)
            np.testing.assert_array_equal(counts, [1, 1, 1, 1, 1, 1, 1, 1, 1, 1])


def test_ties_follow_the_official_strict_rule():
    """Recall@K counts a tie with the best positive as a hit (the official ``>`` test), exactly."""
    rng = np.random.default_rng(3)
    n, dim = 50, 3
    x = np.eye(dim, dtype=np.float32)[rng.integers(0, dim, size=n)]
    y = rng.integers(0, 5, size=n)
    ks = (1, 2, 4, 8)
    sim = x.astype(np.float64) @ x.T.astype(np.float64)
    np.fill_diagonal(sim, -np.inf)
    for block_size in (4, 1000):
        got = ev.recall_at_k(x, y, ks=ks, block_size=block_size)
        for k in ks:
            hits = []
            for i in range(n):
                pos = [j for j in range(n) if j != i and y[j] == y[i]]
                if pos:
                    hits.append(sum(sim[i, j] > max(sim[i, pos]) for j in range(n) if j != i) < k)
            assert got[k] == pytest.approx(np.mean(hits), abs=1e-12)


def test_map_rp_query_gallery_and_blocks_match_bruteforce():
    xq, yq = clustered(14, 5, spread=1.0, seed=15)
    xg, yg = clustered(14, [3, 4, 5, 6, 7, 8, 9, 2, 3, 4, 5, 6, 1, 1], spread=1.0, seed=15)
    want_map, want_rp = brute_map_rp(xq, yq, xg, yg, same_set=False)
    for block_size in (3, 8192):
        assert ev.map_at_r(xq, yq, xg, yg, block_size) == pytest.approx(want_map, abs=1e-12)
        assert ev.r_precision(xq, yq, xg, yg, block_size) == pytest.approx(want_rp, abs=1e-12)


def brute_rank(q, ql, r, rl, same_set):
    """Per query, the number of references strictly more similar than its best same-class one (float64); -1: lone."""
    sim = q.astype(np.float64) @ r.astype(np.float64).T
    if same_set:
        np.fill_diagonal(sim, -np.inf)
    out = []
    for i in range(len(q)):
        pos = [j for j in range(len(r)) if rl[j] == ql[i] and not (same_set and j == i)]
        out.append(int((sim[i] > sim[i, pos].max()).sum()) if pos else -1)
    return np.array(out)


@pytest.fixture
def grouped_top_k(monkeypatch):
    """Use the grouped top-k search (:func:`mslib.evaluate._top`) on the short rows of the tests."""
    monkeypatch.setattr(ev, "TOP_MIN_COLUMNS", 64)


@pytest.mark.parametrize("rank_limit", [1, 3, 10_000])
def test_scan_ranks_from_the_top_k_or_the_count_match_bruteforce(rank_limit, grouped_top_k):
    """Ranks below ``rank_limit`` are exact whether read off the block's top max(R) (``rank_limit`` <= R, here 1
    and 3 with R = 3) or counted over the whole row (10,000); above it they are at least ``rank_limit``."""
    x, y = clustered(150, 4, dim=8, spread=1.5, seed=21)  # 600 items: the grouped top-k search is used
    assert 3 * ev.TOP_GROUP_SIZE * ev.TOP_MIN_SHRINK <= len(y) and len(y) >= ev.TOP_MIN_COLUMNS
    want = brute_rank(x, y, x, y, same_set=True)
    for block_size in (7, 8192):
        scan = ev._scan(x, y, x, y, True, rank_limit=rank_limit, top=True, block_size=block_size)
        exact = want < rank_limit
        np.testing.assert_array_equal(scan.rank[exact], want[exact])
        assert (scan.rank[~exact] >= rank_limit).all()
    assert (~(want < 1)).any() and (want >= 3).any()  # both sides of the limits occur


def test_grouped_top_k_equals_torch_topk(grouped_top_k):
    """:func:`_top` (candidates from the groups with the largest maxima) against ``torch.topk`` on the whole row:
    random rows, rows whose top values all fall in one group, -inf entries, and columns past the last whole group."""
    g = torch.Generator().manual_seed(0)
    n = 16 * 40 + 7  # 40 groups of 16 columns and 7 tail columns
    s = torch.randn(12, n, generator=g)
    s[1, ::40] += 10.0  # all of group 0 on top: the top 5 lie in one group
    s[2, -7:] += 10.0  # the tail columns on top
    s[3, :100] = float("-inf")
    s[4] = torch.randn(n, generator=g).round()  # many exact ties: the values must still agree
    for k in (1, 5, 10):
        assert k * ev.TOP_GROUP_SIZE * ev.TOP_MIN_SHRINK <= n and n >= ev.TOP_MIN_COLUMNS
        values, idx = ev._top(s, k)
        want = torch.topk(s, k, dim=1)
        torch.testing.assert_close(values, want.values, rtol=0, atol=0)
        torch.testing.assert_close(s.gather(1, idx), values, rtol=0, atol=0)  # indices point at those values
        tie_free = torch.arange(12) != 4
        torch.testing.assert_close(idx[tie_free], want.indices[tie_free], rtol=0, atol=0)


def test_count_above_matches_a_plain_count():
    g = torch.Generator().manual_seed(1)
    s = torch.randn(6, 1000, generator=g)
    best = s[:, 3].clone()
    best[0] = float("-inf")
    want = (s > best[:, None]).sum(dim=1)
    assert torch.equal(ev._count_above(s.clone(), best), want) and want[0] == 1000


def test_grouped_top_k_metrics_match_bruteforce(grouped_top_k):
    """Recall@K, MAP@R and RP with the grouped top-k search in use (600 items, R = 3) against the brute force."""
    x, y = clustered(150, 4, dim=8, spread=1.5, seed=22)
    xq, yq = clustered(40, 2, dim=8, spread=1.5, seed=23)
    for args, same in (((x, y), True), ((xq, yq % 150, x, y), False)):
        out = ev.evaluate_embeddings(*args, ks=(1, 2, 4), with_nmi=False, block_size=64)
        q, ql, r, rl = (*args, *args) if same else args
        want = brute_recall(q, ql, r, rl, (1, 2, 4), same_set=same)
        want_map, want_rp = brute_map_rp(q, ql, r, rl, same_set=same)
        assert [out[f"R@{k}"] for k in (1, 2, 4)] == pytest.approx([want[k] for k in (1, 2, 4)], abs=1e-12)
        assert out["MAP@R"] == pytest.approx(want_map, abs=1e-12) and out["RP"] == pytest.approx(want_rp, abs=1e-12)


def test_device_cpu_equals_the_default_and_bad_devices_raise():
    x, y = clustered(150, 4, dim=8, spread=1.5, seed=24)
    want = ev.evaluate_embeddings(x, y, ks=(1, 2, 4, 8), with_nmi=False)
    assert ev.evaluate_embeddings(x, y, ks=(1, 2, 4, 8), with_nmi=False, device="cpu") == want
    assert ev.evaluate_embeddings(x, y, ks=(1, 2, 4, 8), with_nmi=False, device=torch.device("cpu")) == want
    assert ev.recall_at_k(x, y, ks=(1, 8), device="cpu") == {1: want["R@1"], 8: want["R@8"]}
    assert ev.map_at_r(x, y, device="cpu") == want["MAP@R"] and ev.r_precision(x, y, device="cpu") == want["RP"]
    with pytest.raises(ValueError, match="device must be 'cpu' or 'cuda'"):
        ev.recall_at_k(x, y, device="meta")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="cuda.is_available"):
            ev.evaluate_embeddings(x, y, with_nmi=False, device="cuda")


def test_read_only_and_torch_inputs():
    x, y = clustered(8, 4, seed=16)
    want = ev.evaluate_embeddings(x, y, with_nmi=False)
    x_ro = x.copy()
    x_ro.setflags(write=False)
    assert ev.evaluate_embeddings(x_ro, y, with_nmi=False) == want
    assert ev.evaluate_embeddings(torch.from_numpy(x), torch.from_numpy(y), with_nmi=False) == want


# ------------------------------------------------------------------ NMI
def test_nmi_score_hand_computed_contingency():
    # Contingency [[2,1,0],[0,1,2]]: H(U)=ln2, H(V)=ln3, I = 2/3 ln2 -> NMI = (2/3 ln2) / ((ln2+ln3)/2)
    true = [0, 0, 0, 1, 1, 1]
    pred = [5, 5, 7, 7, 9, 9]
    expected = (2 / 3 * math.log(2)) / ((math.log(2) + math.log(3)) / 2)
    assert ev.nmi_score(true, pred) == pytest.approx(expected, rel=1e-12)
    assert ev.nmi_score([0, 0, 1, 1], [0, 1, 0, 1]) == pytest.approx(0.0, abs=1e-12)  # independent
    assert ev.nmi_score([0, 0, 1, 1, 2], [3, 3, 1, 1, 0]) == pytest.approx(1.0)  # same partition, renamed
    assert ev.nmi_score([1, 1, 1], [0, 0, 0]) == 1.0  # sklearn's convention for one cluster each


def test_nmi_score_matches_sklearn():
    metrics = pytest.importorskip("sklearn.metrics")
    rng = np.random.default_rng(0)
    for _ in range(5):
        a = rng.integers(0, 7, size=200)
        b = np.where(rng.random(200) < 0.6, a, rng.integers(0, 9, size=200))
        assert ev.nmi_score(a, b) == pytest.approx(metrics.normalized_mutual_info_score(a, b), abs=1e-12)


def test_nmi_kmeans_recovers_separated_clusters_and_is_seeded():
    # Three tight clusters: a random k-means init lands one seed per cluster with probability 2/9, so keep the best of
    # 20 restarts; the result is deterministic for a fixed seed.
    x, y = clustered(3, 40, spread=0.05, seed=2)
    assert ev.nmi(x, y, seed=0, nredo=20) == pytest.approx(1.0, abs=1e-9)
    assert ev.nmi(x, y, seed=0) == ev.nmi_score(y, ev.kmeans_labels(x, 3, seed=0))
    x2, y2 = clustered(8, 20, spread=1.5, seed=3)
    assert ev.nmi(x2, y2, seed=1) == ev.nmi(x2, y2, seed=1)


# ------------------------------------------------------------------ all metrics, bad input
def test_evaluate_embeddings_consistent_with_single_metrics():
    x, y = clustered(10, [5] * 9 + [1], seed=7)
    out = ev.evaluate_embeddings(x, y, ks=(1, 2, 4, 8))
    assert set(out) == {"R@1", "R@2", "R@4", "R@8", "MAP@R", "RP", "NMI", "queries", "lone_queries"}
    rec = ev.recall_at_k(torch.from_numpy(x), torch.from_numpy(y))
    assert [out[f"R@{k}"] for k in (1, 2, 4, 8)] == [rec[k] for k in (1, 2, 4, 8)]
    assert out["MAP@R"] == ev.map_at_r(x, y) and out["RP"] == ev.r_precision(x, y)
    assert out["queries"] == 46 and out["lone_queries"] == 1
    assert all(type(v) in (float, int) for v in out.values())


@pytest.mark.parametrize(
    ("args", "match"),
    [
        ((np.full((4, 3), np.nan, np.float32), np.arange(4)), "NaN or Inf"),
        ((np.array([[1.0, np.inf], [0, 1]], np.float32), np.arange(2)), "NaN or Inf"),
        ((np.eye(4, dtype=np.float32), np.arange(3)), "3 entries but there are 4"),
        ((np.zeros((0, 4), np.float32), np.arange(0)), "empty"),
        ((np.eye(4, dtype=np.float32), np.arange(4), np.eye(3, dtype=np.float32), np.arange(3)), "dimension"),
        ((np.eye(4, dtype=np.float32), np.arange(4), np.eye(4, dtype=np.float32), np.arange(5)), "ref_labels"),
        ((np.eye(4, dtype=np.float32), np.arange(4), np.zeros((0, 4), np.float32), np.arange(0)), "ref is empty"),
        ((np.eye(4, dtype=np.float32), np.linspace(0, 1, 4)), "integer"),
    ],
)
def test_bad_input_raises_value_error(args, match):
    with pytest.raises(ValueError, match=match):
        ev.recall_at_k(*args)
    with pytest.raises(ValueError, match=match):
        ev.evaluate_embeddings(*args)


def test_bad_options_raise():
    x, y = clustered(3, 3)
    with pytest.raises(ValueError, match="ks"):
        ev.recall_at_k(x, y, ks=(0, 1))
    with pytest.raises(ValueError, match="lone_queries"):
        ev.recall_at_k(x, y, lone_queries="ignore")
    with pytest.raises(ValueError, match="ref_labels given without ref"):
        ev.recall_at_k(x, y, None, y)
    with pytest.raises(ValueError, match="single-item"):
        ev.recall_at_k(x[:1], y[:1])
    with pytest.raises(ValueError, match="NaN"):
        ev.nmi(np.full((3, 2), np.nan), [0, 1, 2])


# ------------------------------------------------------------------ typed results: RetrievalMetrics, PerQuery
def brute_per_query(q, ql, r, rl, same_set):
    """Per query by a plain loop (float64, stable order): 1-based rank of the first positive under the official
    strict rule (1 + references strictly more similar than the best positive; 0: lone), AP@R, R-Precision, R."""
    sim, order = brute_ranking(q, r, same_set)
    first, aps, rps, rs = [], [], [], []
    for i in range(len(q)):
        pos = [j for j in range(len(r)) if rl[j] == ql[i] and not (same_set and j == i)]
        rs.append(len(pos))
        if not pos:
            first.append(0)
            aps.append(np.nan)
            rps.append(np.nan)
            continue
        best = max(sim[i, j] for j in pos)
        first.append(1 + sum(sim[i, j] > best for j in range(len(r)) if not (same_set and j == i)))
        hits, ap = 0, 0.0
        for rank, j in enumerate(order[i, : len(pos)], start=1):
            if rl[j] == ql[i]:
                hits += 1
                ap += hits / rank
        aps.append(ap / len(pos))
        rps.append(hits / len(pos))
    return np.array(first), np.array(aps), np.array(rps), np.array(rs)


def seeded_cases():
    """(args, kwargs) of a few seeded evaluations: single sets with lone classes, a query/gallery split."""
    for seed in (0, 1, 2):
        sizes = [4, 5, 6, 7, 9, 1, 3] * 4
        x, y = clustered(len(sizes), sizes, spread=0.9, seed=seed)
        yield (x, y), {"ks": (1, 2, 4, 8)}
        yield (x, y), {"ks": (8, 1, 100), "with_nmi": False, "lone_queries": "miss", "block_size": 7}
        yield (x[:60], y[:60], x[60:], y[60:]), {"ks": (1, 4, 16), "seed": seed}


@pytest.mark.parametrize("case", range(9))
def test_retrieval_metrics_is_evaluate_embeddings_and_matches_bruteforce(case):
    args, kw = list(seeded_cases())[case]
    typed = ev.retrieval_metrics(*args, **kw)
    flat = ev.evaluate_embeddings(*args, **kw)
    assert typed.to_dict() == flat and list(typed.to_dict()) == list(flat)  # same values, same key order
    nmi_key = ["NMI"] if kw.get("with_nmi", True) else []
    assert list(flat) == [*(f"R@{k}" for k in kw["ks"]), "MAP@R", "RP", *nmi_key, "queries", "lone_queries"]
    assert [type(v) for v in typed.to_dict().values()] == [type(v) for v in flat.values()]
    q, ql, r, rl = (*args, *args) if len(args) == 2 else args
    policy = kw.get("lone_queries", "exclude")
    want = brute_recall(q, ql, r, rl, kw["ks"], same_set=len(args) == 2, lone_policy=policy)
    assert list(typed.recall) == list(kw["ks"])
    assert typed.recall == pytest.approx(want, abs=1e-12)
    if policy == "exclude":
        want_map, want_rp = brute_map_rp(q, ql, r, rl, same_set=len(args) == 2)
        assert (typed.map_at_r, typed.r_precision) == pytest.approx((want_map, want_rp), abs=1e-12)
    assert typed.queries == len(q) and (typed.nmi is None) == (not kw.get("with_nmi", True))
    if typed.nmi is not None:
        assert typed.nmi == ev.nmi(q, ql, seed=kw.get("seed", 0))


def test_retrieval_metrics_against_pytorch_metric_learning():
    sizes = [4, 5, 6, 7, 9, 1, 3] * 4
    x, y = clustered(len(sizes), sizes, spread=0.9, seed=4)
    pml = _pml_calculator().get_accuracy(x, y, x, y, ref_includes_query=True)
    got = ev.retrieval_metrics(x, y, ks=(1,), with_nmi=False)
    assert got.recall[1] == pytest.approx(pml["precision_at_1"], abs=1e-9)
    assert got.map_at_r == pytest.approx(pml["mean_average_precision_at_r"], abs=1e-9)
    assert got.r_precision == pytest.approx(pml["r_precision"], abs=1e-9)
    assert got.lone_queries == 4


def test_retrieval_metrics_round_trip_through_a_record_dict():
    import json

    x, y = clustered(10, [5] * 9 + [1], seed=7)
    for kw in ({}, {"with_nmi": False}):
        m = ev.retrieval_metrics(x, y, ks=(1, 2, 4, 8), **kw)
        assert ev.RetrievalMetrics.from_dict(m.to_dict()) == m
        assert ev.RetrievalMetrics.from_dict(json.loads(json.dumps(m.to_dict()))) == m
    stored = {"R@1": None, "MAP@R": 0.5, "RP": 0.25, "queries": 3, "lone_queries": 3}  # NaN is stored as null
    back = ev.RetrievalMetrics.from_dict(stored)
    assert math.isnan(back.recall[1]) and back.nmi is None and back.queries == 3
    with pytest.raises(ValueError, match=r"unknown keys \['R@x'\], missing \['lone_queries'\]"):
        ev.RetrievalMetrics.from_dict({"R@1": 0.5, "R@x": 1.0, "MAP@R": 0.5, "RP": 0.5, "queries": 3})
    with pytest.raises(ValueError, match=r"missing \['R@K'\]"):
        ev.RetrievalMetrics.from_dict({"MAP@R": 0.5, "RP": 0.5, "queries": 3, "lone_queries": 0})


@pytest.mark.parametrize("block_size", [5, 8192])
def test_per_query_results_match_a_plain_loop(block_size):
    sizes = [4, 6, 9, 1, 3] * 6 + [13]
    x, y = clustered(len(sizes), sizes, spread=1.0, seed=12)
    xg, yg = clustered(14, [3, 4, 5, 6, 7, 8, 9, 2, 3, 4, 5, 6, 1, 1], spread=1.0, seed=15)
    xq, yq = clustered(16, 3, spread=1.0, seed=16)  # classes 14, 15 have no gallery item: lone
    for args, same in (((x, y), True), ((xq, yq, xg, yg), False)):
        q, ql, r, rl = (*args, *args) if same else args
        got = ev.per_query_results(*args, block_size=block_size)
        first, ap, rp, rs = brute_per_query(q, ql, r, rl, same)
        np.testing.assert_array_equal(got.first_positive, first)
        np.testing.assert_array_equal(got.r, rs)
        np.testing.assert_array_equal(got.lone, rs == 0)
        np.testing.assert_allclose(got.ap_at_r, ap, rtol=0, atol=1e-12)  # NaN where lone, on both sides
        np.testing.assert_allclose(got.r_precision, rp, rtol=0, atol=1e-12)
        assert got.lone.any() and (got.first_positive > 8).any()  # lone queries and deep ranks both occur


def test_per_query_ranks_follow_the_official_tie_rule():
    rng = np.random.default_rng(3)
    x = np.eye(3, dtype=np.float32)[rng.integers(0, 3, size=50)]  # one-hot: many exact ties
    y = rng.integers(0, 5, size=50)
    want = brute_rank(x, y, x, y, same_set=True)
    np.testing.assert_array_equal(ev.per_query_results(x, y, block_size=4).first_positive, want + 1)


@pytest.mark.parametrize("lone_policy", ["exclude", "miss"])
def test_per_query_means_are_the_aggregate_metrics(lone_policy, grouped_top_k):
    """The averages of the per-query results are the aggregate metrics (grouped top-k search in use)."""
    x, y = clustered(150, [4] * 140 + [1] * 10, dim=8, spread=1.5, seed=22)
    ks = (1, 2, 4, 8, 100)
    per = ev.per_query_results(x, y, block_size=64)
    agg = ev.retrieval_metrics(x, y, ks=ks, with_nmi=False, block_size=64, lone_queries=lone_policy)
    assert per.metrics(ks, lone_queries=lone_policy) == agg
    if lone_policy == "exclude":
        assert np.nanmean(per.ap_at_r) == pytest.approx(agg.map_at_r, abs=1e-12)
        assert np.nanmean(per.r_precision) == pytest.approx(agg.r_precision, abs=1e-12)
        assert np.mean(per.first_positive[~per.lone] <= 4) == pytest.approx(agg.recall[4], abs=1e-12)


# ------------------------------------------------------------------ embed
def test_embed_eval_mode_order_and_dtypes():
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(12, 6), torch.nn.BatchNorm1d(6),
                                torch.nn.Dropout(0.5))
    images = torch.randn(10, 3, 2, 2)
    labels = torch.arange(10) % 3
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(images, labels), batch_size=4)
    model.train()
    emb, lab = ev.embed(model, loader)
    assert model.training  # mode restored
    assert emb.dtype == torch.float32 and lab.dtype == torch.int64 and emb.shape == (10, 6)
    model.eval()
    with torch.no_grad():
        expected = model(images)
    torch.testing.assert_close(emb, expected)
    torch.testing.assert_close(lab, labels)
    dict_loader = [{"image": images[:5], "label": labels[:5]}, {"image": images[5:], "label": labels[5:]}]
    emb2, _ = ev.embed(model, dict_loader)
    torch.testing.assert_close(emb2, expected)
    with pytest.raises(ValueError, match="no batches"):
        ev.embed(model, [])


def test_retrieval_examples_match_a_plain_loop() -> None:
    from mslib.evaluate import retrieval_examples

    emb = np.random.default_rng(3).normal(size=(30, 6)).astype(np.float32)  # continuous values: no ties
    queries, neighbours = retrieval_examples(emb, 4, 5, seed=7)
    assert queries.tolist() == np.random.default_rng(7).choice(30, size=4, replace=False).tolist()
    assert len(set(queries.tolist())) == 4 and neighbours.shape == (4, 5)
    for q, row in zip(queries, neighbours, strict=True):
        sims = {j: float(emb[q].astype(np.float64) @ emb[j]) for j in range(30) if j != q}
        assert row.tolist() == sorted(sims, key=sims.get, reverse=True)[:5]
    with pytest.raises(ValueError, match="n_queries"):
        retrieval_examples(emb, 31)


def test_retrieval_gallery_matches_a_plain_loop() -> None:
    from mslib.evaluate import retrieval_gallery

    rng = np.random.default_rng(5)
    emb = rng.normal(size=(40, 8))
    emb = (emb / np.linalg.norm(emb, axis=1, keepdims=True)).astype(np.float32)
    labels = np.arange(40) % 4
    gallery = retrieval_gallery(emb, labels, 8, 5, seed=2)
    assert gallery.queries.tolist() == np.random.default_rng(2).choice(40, size=8, replace=False).tolist()
    assert gallery.neighbours.shape == gallery.similarities.shape == gallery.correct.shape == (8, 5)
    for r, q in enumerate(gallery.queries):
        cosines = {j: float(np.dot(emb[q].astype(np.float64), emb[j])) for j in range(40) if j != q}
        ranked = sorted(cosines, key=cosines.get, reverse=True)[:5]
        assert gallery.neighbours[r].tolist() == ranked
        np.testing.assert_allclose(gallery.similarities[r], [cosines[j] for j in ranked], atol=1e-6)
        assert gallery.correct[r].tolist() == [labels[j] == labels[q] for j in ranked]
    with pytest.raises(ValueError, match="39 labels for 40 embeddings"):
        retrieval_gallery(emb, labels[:-1], 8)
