"""Retrieval evaluation: embeddings -> Recall@K, MAP@R, R-Precision and NMI.

Recall@K is the metric of the MS-loss paper's result tables (Wang et al., CVPR 2019): a query is a *hit* at K when at
least one of its K nearest neighbours (cosine similarity = inner product of L2-normalised embeddings) has the query's
class. MAP@R and R-Precision follow Musgrave et al., "A Metric Learning Reality Check" (ECCV 2020, Sec. 3.2); NMI is
the clustering score many DML papers report (k-means with k = number of classes).

All metrics are fractions in ``[0, 1]`` (the book multiplies by 100 when it prints the paper's percentages).

Conventions (see ``book/sources.md#src-official-eval`` for the official code's evaluation):

* **Self-exclusion by index.** When ``ref`` is ``None`` the query set is the reference set, and each query's own row
  is removed from its neighbours *by index*. The official code removes it by value (the second-largest same-class
  similarity), which also drops exact duplicates; here an exact duplicate in another image is a legitimate neighbour.
  On data without duplicates both rules give the same numbers (``book/sources.md#src-official-eval``).
* **Lone queries.** A query whose class has no other item in the reference set can never be a hit. The official code
  crashes on such a class (``IndexError``). Here they are, by default (``lone_queries="exclude"``), left out of every
  average, as pytorch-metric-learning's ``AccuracyCalculator`` does; their number is reported by
  :func:`evaluate_embeddings` as ``"lone_queries"``. ``lone_queries="miss"`` counts them as misses (score 0) instead.
* **One pass.** Recall@K (for every K), MAP@R and R-Precision come from one blocked pass over the similarities:
  each block of query rows ``S = q_block @ ref.T`` (``torch.mm``, float32) is scanned while it is in cache, so the
  cost stays close to that of the GEMM itself, for any K (no per-query heap of K neighbours). Per block: the best
  same-class similarity (a gather of the same-class columns), the top max(R) (``torch.topk`` on the candidates of
  :func:`_top`, a small share of the row) and, only when some K exceeds max(R), a rank count fused into one pass
  (:func:`_count_above`); when every K <= max(R) the ranks are read off the top max(R).
* **Device.** ``device="cuda"`` runs the blocked products and the per-block scan on a GPU (inputs moved once, larger
  blocks, per-query results moved back; MAP@R/RP finish on the CPU with the same code). The metrics are those of the
  CPU path up to the GEMM's rounding: the ranks are identical unless two similarities differ by a rounding error.
* **Ties.** A query's *rank* is the number of references strictly more similar than its most similar same-class
  reference, and it is a hit at K when ``rank < K``: the official code's strict ``>`` rule, under which a negative
  *exactly* as similar as the best positive does not push it down (the optimistic tie rule). MAP@R and R-Precision
  read the top R in ``torch.topk`` order (on :func:`_top`'s candidates), which among exactly equal similarities is
  an implementation detail. With
  continuous embeddings exact ties are measure-zero; the tests check agreement with a stable brute-force ranking on
  tie-free data and that tied data gives a value between the pessimistic and the optimistic tie rule. :func:`knn`
  (used to show retrieval examples) ranks in faiss's order (``IndexFlatIP``, exact inner products in float32).
* **Typed results.** :func:`retrieval_metrics` returns a :class:`RetrievalMetrics`; :func:`evaluate_embeddings` its
  flat dict (what run records store); :func:`per_query_results` the per-query values behind the averages.
* **Memory.** Blocks hold at most ``block_size`` query rows and about ``BLOCK_BYTES`` of similarities (but at least
  ``MIN_BLOCK_ROWS`` rows: 62 MiB for SOP's 60,502 references), so the full N x N similarity matrix is never held.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

LONE_POLICIES = ("exclude", "miss")
BLOCK_BYTES = 16 * 2**20  # float32 similarities per block: small enough to be scanned while (mostly) in cache
MIN_BLOCK_ROWS = 256  # fewer query rows per torch.mm lose GEMM efficiency (a block exceeds BLOCK_BYTES past 16k refs)
SPARSE_POSITIVES = 0.25  # gather the same-class similarities when they are at most this share of a block
CUDA_BLOCK_BYTES = 2**30  # on a GPU, large blocks: fewer launches and host round trips
TOP_GROUP_SIZE = 16  # columns per strided group in the top-k candidate search (_top)
TOP_MIN_SHRINK = 4  # search candidates only when they are at most a quarter of the row
TOP_MIN_COLUMNS = 4096  # ... and the row is long enough to repay the extra steps (measured: 12,000 yes, 1,500 no)
CPU = torch.device("cpu")
NEG_INF = float("-inf")


# ----------------------------------------------------------------------------------------------- inputs
def _embeddings(x: Any, name: str) -> np.ndarray:
    """``x`` as a C-contiguous float32 (N, D) array; ValueError for empty, non-2-D or non-finite input."""
    if isinstance(x, torch.Tensor):
        x = x.detach().to("cpu", torch.float32).numpy()
    arr = np.ascontiguousarray(np.asarray(x, dtype=np.float32))
    if arr.ndim != 2:
        raise ValueError(f"{name} must be a 2-D (N, D) array, got shape {arr.shape}")
    if arr.shape[0] == 0 or arr.shape[1] == 0:
        raise ValueError(f"{name} is empty (shape {arr.shape})")
    if not np.isfinite(arr).all():
        bad = int((~np.isfinite(arr)).any(axis=1).sum())
        raise ValueError(f"{name} contains NaN or Inf values (in {bad} of {arr.shape[0]} rows)")
    return arr


def _labels(y: Any, n: int, name: str) -> np.ndarray:
    if isinstance(y, torch.Tensor):
        y = y.detach().cpu().numpy()
    arr = np.asarray(y)
    if arr.ndim != 1:
        raise ValueError(f"{name} must be 1-D, got shape {arr.shape}")
    if arr.shape[0] != n:
        raise ValueError(f"{name} has {arr.shape[0]} entries but there are {n} embeddings")
    if not np.issubdtype(arr.dtype, np.integer):
        raise ValueError(f"{name} must hold integer class ids, got dtype {arr.dtype}")
    return arr.astype(np.int64)


def _prepare(query, query_labels, ref, ref_labels):
    q = _embeddings(query, "query")
    ql = _labels(query_labels, q.shape[0], "query_labels")
    if ref is None:
        if ref_labels is not None:
            raise ValueError("ref_labels given without ref")
        return q, ql, q, ql, True
    if ref_labels is None:
        raise ValueError("ref given without ref_labels")
    r = _embeddings(ref, "ref")
    rl = _labels(ref_labels, r.shape[0], "ref_labels")
    if r.shape[1] != q.shape[1]:
        raise ValueError(f"query has dimension {q.shape[1]} but ref has dimension {r.shape[1]}")
    return q, ql, r, rl, False


def _check_ks(ks: Iterable[int]) -> tuple[int, ...]:
    ks = tuple(int(k) for k in ks)
    if not ks or min(ks) < 1:
        raise ValueError(f"ks must be a non-empty sequence of positive integers, got {ks}")
    return ks


def _check_lone(lone_queries: str) -> None:
    if lone_queries not in LONE_POLICIES:
        raise ValueError(f"lone_queries must be one of {LONE_POLICIES}, got {lone_queries!r}")


# ----------------------------------------------------------------------------------------------- search
def knn(
    query: np.ndarray, ref: np.ndarray, k: int, *, same_set: bool, block_size: int = 8192
) -> tuple[np.ndarray, np.ndarray]:
    """Exact top-``k`` inner-product neighbours of each query row in ``ref`` (faiss ``IndexFlatIP``).

    When ``same_set`` the query set is the reference set and row ``i`` never appears among query ``i``'s neighbours
    (removed by index). ``k`` is clipped to the number of available references. Returns ``(similarities, indices)``
    of shape ``(n_query, k)``, most similar first, searched ``block_size`` queries at a time.
    """
    import faiss

    n_avail = ref.shape[0] - int(same_set)
    k = min(int(k), n_avail)
    if k < 1:
        raise ValueError("the reference set has no item to search (a single-item set cannot be its own reference)")
    index = faiss.IndexFlatIP(ref.shape[1])
    index.add(ref)
    k_search = k + int(same_set)
    sims = np.empty((query.shape[0], k), dtype=np.float32)
    idx = np.empty((query.shape[0], k), dtype=np.int64)
    for start in range(0, query.shape[0], block_size):
        stop = min(start + block_size, query.shape[0])
        s, i = index.search(query[start:stop], k_search)
        if same_set:
            own = np.arange(start, stop)[:, None]
            is_self = i == own
            # Drop the query's own column; when it is not among the k+1 (exact ties), drop the last column instead.
            no_self = ~is_self.any(axis=1)
            is_self[no_self, -1] = True
            keep = ~is_self
            s = s[keep].reshape(stop - start, k)
            i = i[keep].reshape(stop - start, k)
        sims[start:stop], idx[start:stop] = s, i
    return sims, idx


def _average(per_query: np.ndarray, lone: np.ndarray, lone_queries: str) -> float:
    if lone_queries == "miss":
        return float(np.where(lone, 0.0, per_query).mean())
    if lone.all():
        return float("nan")
    return float(per_query[~lone].mean())


# ----------------------------------------------------------------------------------------------- one-pass scan
def _tensor(x: np.ndarray, device: torch.device = CPU) -> torch.Tensor:
    """``x`` as a tensor on ``device``: on the CPU a zero-copy view of the (possibly read-only) array, which the scan
    never writes to; elsewhere one copy."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # "The given NumPy array is not writable"
        return torch.from_numpy(x).to(device)


def _device(device: str | torch.device | None) -> torch.device:
    """The scan's device: the CPU for ``None``; ValueError for an unknown or unavailable device."""
    dev = torch.device("cpu" if device is None else device)
    if dev.type not in ("cpu", "cuda"):
        raise ValueError(f"device must be 'cpu' or 'cuda' (or None for the CPU), got {device!r}")
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {device!r} was requested but torch.cuda.is_available() is False")
    return dev


def _block_rows(n_ref: int, block_size: int, device: torch.device = CPU) -> int:
    """Query rows per block: at most ``block_size``; about ``BLOCK_BYTES`` (on CUDA ``CUDA_BLOCK_BYTES``) of
    similarities, or ``MIN_BLOCK_ROWS``."""
    budget = CUDA_BLOCK_BYTES if device.type == "cuda" else BLOCK_BYTES
    return max(1, min(int(block_size), max(MIN_BLOCK_ROWS, budget // (4 * n_ref))))


@dataclass(frozen=True)
class _ClassIndex:
    """Query ``i``'s same-class references are ``order[start[i]:start[i] + length[i]]`` (itself included when
    the query set is the reference set); ``counts`` is R, the number of them other than the query itself."""

    order: np.ndarray
    start: np.ndarray
    length: np.ndarray
    counts: np.ndarray


def _class_index(ql: np.ndarray, rl: np.ndarray, same_set: bool) -> _ClassIndex:
    """The class bookkeeping of the scan: references sorted by class (stable), each query's run of them."""
    order = np.argsort(rl, kind="stable")
    classes, first, size = np.unique(rl[order], return_index=True, return_counts=True)
    pos = np.minimum(np.searchsorted(classes, ql), len(classes) - 1)
    length = np.where(classes[pos] == ql, size[pos], 0)
    return _ClassIndex(order, first[pos], length, length - int(same_set))


def _best_positive(s: torch.Tensor, cls: _ClassIndex, start: int, ql_t: torch.Tensor,
                   rl_t: torch.Tensor) -> torch.Tensor:
    """Each block row's largest same-class similarity (-inf when it has none): a gather of the few same-class
    columns, or a dense class mask when they exceed ``SPARSE_POSITIVES`` of the block."""
    b, n_ref = s.shape
    lens = cls.length[start:start + b]
    total = int(lens.sum())
    if total > SPARSE_POSITIVES * b * n_ref:
        same_cls = ql_t[start:start + b, None] == rl_t[None, :]
        return torch.where(same_cls, s, NEG_INF).amax(dim=1)
    row_of = np.repeat(np.arange(b), lens)
    offset = np.arange(total) - np.repeat(np.cumsum(lens) - lens, lens)
    cols = cls.order[np.repeat(cls.start[start:start + b], lens) + offset]
    row_t = _tensor(row_of, s.device)
    vals = s[row_t, _tensor(cols, s.device)]
    return torch.full((b,), NEG_INF, device=s.device).scatter_reduce_(0, row_t, vals, "amax")


def _count_above(s: torch.Tensor, best: torch.Tensor) -> torch.Tensor:
    """Per row, the number of entries of ``s`` strictly greater than ``best`` (int64), in one fused pass that
    OVERWRITES ``s`` with the 0/1 comparison; float32 sums of 0/1 are exact below 2**24 columns."""
    if s.shape[1] >= 2**24:
        return torch.gt(s, best[:, None]).sum(dim=1)
    return torch.gt(s, best[:, None], out=s).sum(dim=1).to(torch.int64)


def _top(s: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The ``k`` largest entries of each row, largest first: ``(values, column indices)`` as ``torch.topk``.

    Found among candidates: the columns are dealt into strided groups (group ``j`` holds columns ``j``, ``j + g``,
    ``j + 2g``, ...); the ``k`` groups with the largest maxima hold every top-``k`` value, so ``topk`` runs on them
    (and the few columns past the last whole group) instead of the whole row. Same values as ``torch.topk``; which
    of several exactly equal entries is picked is, as in ``torch.topk``, an implementation detail.
    """
    b, n = s.shape
    g = n // TOP_GROUP_SIZE
    if n < TOP_MIN_COLUMNS or k * TOP_GROUP_SIZE * TOP_MIN_SHRINK > n:
        return torch.topk(s, k, dim=1)
    grouped = s[:, : g * TOP_GROUP_SIZE].unflatten(1, (TOP_GROUP_SIZE, g))  # (b, members, groups)
    groups = torch.topk(grouped.amax(dim=1), k, dim=1).indices  # (b, k)
    members = torch.arange(TOP_GROUP_SIZE, device=s.device)[None, :, None] * g
    cand_cols = (members + groups[:, None, :]).flatten(1)  # (b, members * k)
    tail = torch.arange(g * TOP_GROUP_SIZE, n, device=s.device).expand(b, -1)
    cand_cols = torch.cat([cand_cols, tail], dim=1)
    values, picked = torch.topk(s.gather(1, cand_cols), k, dim=1)
    return values, cand_cols.gather(1, picked)


def _ap_rp(nn_labels: np.ndarray, query_labels: np.ndarray, r: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-query AP@R and R-Precision (Musgrave et al. 2020, Sec. 3.2) from the labels of the top-max(R) neighbours."""
    kmax = nn_labels.shape[1]
    ranks = np.arange(1, kmax + 1)
    rel = (nn_labels == query_labels[:, None]) & (ranks[None, :] <= r[:, None])
    hits = np.cumsum(rel, axis=1)
    r_safe = np.maximum(r, 1).astype(np.float64)
    return (rel * hits / ranks[None, :]).sum(axis=1) / r_safe, rel.sum(axis=1) / r_safe


@dataclass(frozen=True)
class _ScanSetup:
    """What every block of :func:`_scan` reads: labels (NumPy, and tensors on the scan's device), the class
    bookkeeping, which outputs are wanted (``rank_limit``, ``top``) and the number of searchable references."""

    ql: np.ndarray
    rl: np.ndarray
    ql_t: torch.Tensor
    rl_t: torch.Tensor
    cls: _ClassIndex
    rank_limit: int
    top: bool
    n_avail: int


@dataclass(frozen=True)
class _ScanOut:
    """Per-query outputs of :func:`_scan`, on the CPU (see its docstring)."""

    rank: np.ndarray
    ap: np.ndarray | None
    rp: np.ndarray | None
    counts: np.ndarray


def _scan_block(s: torch.Tensor, start: int, setup: _ScanSetup, out: _ScanOut) -> None:
    """Fill ``out``'s rows ``start:start + len(s)`` from the block ``s`` of similarities (which it overwrites)."""
    stop = start + s.shape[0]
    counts = out.counts[start:stop]
    best = _best_positive(s, setup.cls, start, setup.ql_t, setup.rl_t) if setup.rank_limit else None
    k = min(max(int(counts.max()), 1), setup.n_avail)
    if setup.top:
        values, idx = _top(s, k)
        out.ap[start:stop], out.rp[start:stop] = _ap_rp(setup.rl[idx.cpu().numpy()], setup.ql[start:stop], counts)
    if setup.rank_limit and setup.top and setup.rank_limit <= k:  # every rank that matters is among the top k
        out.rank[start:stop] = (values > best[:, None]).sum(dim=1).cpu().numpy()
    elif setup.rank_limit:
        out.rank[start:stop] = _count_above(s, best).cpu().numpy()


def _scan(q: np.ndarray, ql: np.ndarray, r: np.ndarray, rl: np.ndarray, same_set: bool, *, rank_limit: int,
          top: bool, block_size: int, device: torch.device = CPU) -> _ScanOut:
    """One blocked pass over ``S = q @ r.T`` on ``device``: ``rank``, ``ap``, ``rp``, ``counts`` per query.

    ``rank`` (when ``rank_limit`` > 0) is the number of references strictly more similar than the query's most
    similar same-class reference, exact below ``rank_limit`` (at least ``rank_limit`` otherwise; ``int64`` max for
    lone queries): a hit at K <= ``rank_limit`` is ``rank < K``. ``ap``/``rp`` (when ``top``) are AP@R and
    R-Precision from the block's top max(R) (:func:`_top`). ``counts`` is R, the number of same-class references.
    With ``same_set`` the query's own column is set to -inf by index before anything reads the block. Inputs go to
    ``device`` once; each block's per-query results come back to the CPU.
    """
    n_q, n_ref = q.shape[0], r.shape[0]
    if n_ref - int(same_set) < 1:
        raise ValueError("the reference set has no item to search (a single-item set cannot be its own reference)")
    cls = _class_index(ql, rl, same_set)
    qt = _tensor(q, device)
    rt = qt if same_set else _tensor(r, device)
    setup = _ScanSetup(ql, rl, _tensor(ql, device), _tensor(rl, device), cls, rank_limit, top,
                       n_ref - int(same_set))
    out = _ScanOut(np.full(n_q, np.iinfo(np.int64).max, dtype=np.int64), np.zeros(n_q) if top else None,
                   np.zeros(n_q) if top else None, cls.counts)
    rows = _block_rows(n_ref, block_size, device)
    buf = torch.empty(min(rows, n_q), n_ref, device=device)
    for start in range(0, n_q, rows):
        s = buf[: min(rows, n_q - start)]
        torch.mm(qt[start:start + s.shape[0]], rt.T, out=s)
        if same_set:
            s.diagonal(start).fill_(NEG_INF)
        _scan_block(s, start, setup, out)
    out.rank[cls.counts <= 0] = np.iinfo(np.int64).max
    return out


def _recalls(rank: np.ndarray, ks: Sequence[int], lone: np.ndarray, lone_queries: str) -> dict[int, float]:
    return {k: _average((rank < k).astype(np.float64), lone, lone_queries) for k in ks}


# ----------------------------------------------------------------------------------------------- metrics
def recall_at_k(
    query: Any,
    query_labels: Any,
    ref: Any = None,
    ref_labels: Any = None,
    ks: Sequence[int] = (1, 2, 4, 8),
    block_size: int = 8192,
    *,
    lone_queries: str = "exclude",
    device: str | torch.device | None = None,
) -> dict[int, float]:
    """Recall@K of the MS-loss paper's result tables, as fractions: ``{k: share of queries hit within top k}``.

    ``query``/``ref`` are L2-normalised ``(N, D)`` embeddings (tensor or array); with ``ref=None`` the query set is
    its own reference set, self excluded by index (CUB, Cars, SOP); pass ``ref``/``ref_labels`` for a separate
    gallery (In-Shop). Lone queries (no same-class reference) are excluded from the average by default, or counted
    as misses with ``lone_queries="miss"``; ties count as hits (the official strict ``>`` rule, module docstring).
    One blocked pass serves every K; its cost does not grow with K. ``device`` (``None``: the CPU) runs the pass
    on a GPU with ``"cuda"`` (module docstring).
    """
    ks = _check_ks(ks)
    _check_lone(lone_queries)
    dev = _device(device)
    q, ql, r, rl, same = _prepare(query, query_labels, ref, ref_labels)
    out = _scan(q, ql, r, rl, same, rank_limit=max(ks), top=False, block_size=block_size, device=dev)
    return _recalls(out.rank, ks, out.counts <= 0, lone_queries)


def _map_rp(query, query_labels, ref, ref_labels, block_size, lone_queries, device) -> tuple[float, float]:
    _check_lone(lone_queries)
    dev = _device(device)
    q, ql, r, rl, same = _prepare(query, query_labels, ref, ref_labels)
    out = _scan(q, ql, r, rl, same, rank_limit=0, top=True, block_size=block_size, device=dev)
    lone = out.counts <= 0
    return _average(out.ap, lone, lone_queries), _average(out.rp, lone, lone_queries)


def map_at_r(
    query: Any, query_labels: Any, ref: Any = None, ref_labels: Any = None, block_size: int = 8192, *,
    lone_queries: str = "exclude", device: str | torch.device | None = None,
) -> float:
    """MAP@R (Musgrave et al. 2020): mean over queries of ``(1/R) sum_{i<=R} P(i) rel(i)``, R = #same-class refs."""
    return _map_rp(query, query_labels, ref, ref_labels, block_size, lone_queries, device)[0]


def r_precision(
    query: Any, query_labels: Any, ref: Any = None, ref_labels: Any = None, block_size: int = 8192, *,
    lone_queries: str = "exclude", device: str | torch.device | None = None,
) -> float:
    """R-Precision (Musgrave et al. 2020): mean over queries of (#same-class items in the top R) / R."""
    return _map_rp(query, query_labels, ref, ref_labels, block_size, lone_queries, device)[1]


# ----------------------------------------------------------------------------------------------- clustering
def _entropy(counts: np.ndarray) -> float:
    p = counts[counts > 0] / counts.sum()
    return float(-(p * np.log(p)).sum())


def nmi_score(labels_true: Any, labels_pred: Any) -> float:
    """Normalised mutual information ``I(U;V) / ((H(U) + H(V)) / 2)`` (arithmetic mean, sklearn's default).

    Two labelings with one cluster each (both entropies 0) score 1.0, as in scikit-learn.
    """
    u = np.asarray(labels_true).ravel()
    v = np.asarray(labels_pred).ravel()
    if u.shape != v.shape:
        raise ValueError(f"labelings have different lengths: {u.shape[0]} and {v.shape[0]}")
    if u.size == 0:
        raise ValueError("labelings are empty")
    _, ui = np.unique(u, return_inverse=True)
    _, vi = np.unique(v, return_inverse=True)
    table = np.zeros((ui.max() + 1, vi.max() + 1), dtype=np.float64)
    np.add.at(table, (ui, vi), 1.0)
    hu, hv = _entropy(table.sum(axis=1)), _entropy(table.sum(axis=0))
    if table.shape[0] == table.shape[1] == 1:
        return 1.0
    n = table.sum()
    nz = table > 0
    outer = np.outer(table.sum(axis=1), table.sum(axis=0))
    mi = float((table[nz] / n * np.log(table[nz] * n / outer[nz])).sum())
    denom = (hu + hv) / 2
    return 0.0 if denom <= 0 else float(max(mi, 0.0) / denom)


def kmeans_labels(embeddings: Any, n_clusters: int, seed: int = 0, niter: int = 20, nredo: int = 1) -> np.ndarray:
    """faiss k-means (random init, ``niter`` Lloyd iterations, best of ``nredo`` runs, seeded): each row's cluster."""
    import faiss

    x = _embeddings(embeddings, "embeddings")
    if not 1 <= n_clusters <= x.shape[0]:
        raise ValueError(f"n_clusters must be between 1 and the number of rows ({x.shape[0]}), got {n_clusters}")
    km = faiss.Kmeans(x.shape[1], int(n_clusters), niter=niter, nredo=nredo, seed=int(seed), verbose=False,
                      min_points_per_centroid=1,  # small test sets are fine; silence faiss's warning
                      max_points_per_centroid=max(256, x.shape[0]))
    km.train(x)
    _, assign = km.index.search(x, 1)
    return assign[:, 0].astype(np.int64)


def nmi(embeddings: Any, labels: Any, seed: int = 0, nredo: int = 1) -> float:
    """NMI between the classes and a faiss k-means clustering with k = number of classes (seeded).

    One k-means run (``nredo=1``, 20 iterations) as pytorch-metric-learning's ``FaissKMeans``; k-means can stop in a
    local minimum, so NMI is itself a noisy score.
    """
    x = _embeddings(embeddings, "embeddings")
    y = _labels(labels, x.shape[0], "labels")
    return nmi_score(y, kmeans_labels(x, len(np.unique(y)), seed=seed, nredo=nredo))


# ----------------------------------------------------------------------------------------------- all at once
_COUNTS = ("queries", "lone_queries")


@dataclass(frozen=True)
class RetrievalMetrics:
    """The metrics of one evaluation: ``recall`` (Recall@K by K, the paper's tables), ``map_at_r`` and
    ``r_precision`` (Musgrave et al. 2020), ``nmi`` (``None`` when not computed), all fractions in ``[0, 1]``; and the
    counts: ``queries`` and ``lone_queries`` (queries without a same-class reference, module docstring).

    :meth:`to_dict` is the flat dict run records store (``{"R@1", ..., "MAP@R", "RP", "NMI", "queries",
    "lone_queries"}``, the output of :func:`evaluate_embeddings`); :meth:`from_dict` reads it back.
    """

    recall: dict[int, float]
    map_at_r: float
    r_precision: float
    queries: int
    lone_queries: int
    nmi: float | None = None

    def to_dict(self) -> dict[str, float | int]:
        """The flat dict of a run record, in its key order: ``R@K`` (in ``recall``'s order), ``MAP@R``, ``RP``,
        ``NMI`` (only when computed), ``queries``, ``lone_queries``."""
        out: dict[str, float | int] = {f"R@{k}": v for k, v in self.recall.items()}
        out["MAP@R"], out["RP"] = self.map_at_r, self.r_precision
        if self.nmi is not None:
            out["NMI"] = self.nmi
        out["queries"], out["lone_queries"] = self.queries, self.lone_queries
        return out

    @classmethod
    def from_dict(cls, flat: Mapping[str, Any]) -> RetrievalMetrics:
        """The inverse of :meth:`to_dict`; a metric stored as ``None`` (a record's ``null`` for NaN) becomes NaN.
        ValueError for an unknown key or a missing one."""
        def value(key: str) -> float:
            return float("nan") if flat[key] is None else float(flat[key])

        recall_keys = [k for k in flat if k.startswith("R@") and k[2:].isdigit()]
        unknown = [k for k in flat if k not in recall_keys and k not in ("MAP@R", "RP", "NMI", *_COUNTS)]
        missing = [k for k in ("MAP@R", "RP", *_COUNTS) if k not in flat] + ([] if recall_keys else ["R@K"])
        if unknown or missing:
            raise ValueError(f"not a retrieval-metrics dict: unknown keys {unknown}, missing {missing}")
        return cls(recall={int(k[2:]): value(k) for k in recall_keys}, map_at_r=value("MAP@R"),
                   r_precision=value("RP"), queries=int(flat["queries"]), lone_queries=int(flat["lone_queries"]),
                   nmi=value("NMI") if "NMI" in flat else None)


def retrieval_metrics(
    query: Any,
    query_labels: Any,
    ref: Any = None,
    ref_labels: Any = None,
    ks: Sequence[int] = (1, 2, 4, 8),
    *,
    with_nmi: bool = True,
    seed: int = 0,
    block_size: int = 8192,
    lone_queries: str = "exclude",
    device: str | torch.device | None = None,
) -> RetrievalMetrics:
    """Every metric from one blocked pass, as a :class:`RetrievalMetrics`.

    Metrics are plain Python floats in ``[0, 1]``. NMI clusters the query set (as pytorch-metric-learning does).
    ``lone_queries`` counts queries with no same-class reference (see the module docstring). ``device``
    (``None``: the CPU) runs the retrieval pass on a GPU with ``"cuda"``; NMI's k-means stays on the CPU (faiss).
    """
    ks = _check_ks(ks)
    _check_lone(lone_queries)
    dev = _device(device)
    q, ql, r, rl, same = _prepare(query, query_labels, ref, ref_labels)
    scan = _scan(q, ql, r, rl, same, rank_limit=max(ks), top=True, block_size=block_size, device=dev)
    lone = scan.counts <= 0
    return RetrievalMetrics(recall=_recalls(scan.rank, ks, lone, lone_queries),
                            map_at_r=_average(scan.ap, lone, lone_queries),
                            r_precision=_average(scan.rp, lone, lone_queries),
                            queries=int(q.shape[0]), lone_queries=int(lone.sum()),
                            nmi=nmi(q, ql, seed=seed) if with_nmi else None)


def evaluate_embeddings(
    query: Any,
    query_labels: Any,
    ref: Any = None,
    ref_labels: Any = None,
    ks: Sequence[int] = (1, 2, 4, 8),
    *,
    with_nmi: bool = True,
    seed: int = 0,
    block_size: int = 8192,
    lone_queries: str = "exclude",
    device: str | torch.device | None = None,
) -> dict[str, float | int]:
    """:func:`retrieval_metrics` as the flat dict run records store: ``{"R@1", ..., "MAP@R", "RP", "NMI",
    "queries", "lone_queries"}`` (:meth:`RetrievalMetrics.to_dict`)."""
    return retrieval_metrics(query, query_labels, ref, ref_labels, ks, with_nmi=with_nmi, seed=seed,
                             block_size=block_size, lone_queries=lone_queries, device=device).to_dict()


@dataclass(frozen=True)
class PerQuery:
    """Per-query retrieval results (row ``i`` is query ``i``), for the gallery and for looking behind an average.

    ``first_positive``: the rank (1 = most similar) of the query's most similar same-class reference, ``1 +`` the
    number of references strictly more similar (the official tie rule, module docstring), so the query is a hit at
    K when ``first_positive <= K``; 0 for a lone query. ``ap_at_r`` and ``r_precision``: AP@R and R-Precision (NaN
    for a lone query); ``r``: R, the number of same-class references (the query itself not counted).
    """

    first_positive: np.ndarray
    ap_at_r: np.ndarray
    r_precision: np.ndarray
    r: np.ndarray

    @property
    def lone(self) -> np.ndarray:
        """Which queries have no same-class reference."""
        return self.r <= 0

    def metrics(self, ks: Sequence[int] = (1, 2, 4, 8), *, lone_queries: str = "exclude") -> RetrievalMetrics:
        """The averages over the queries, as :func:`retrieval_metrics` computes them (without NMI)."""
        ks = _check_ks(ks)
        _check_lone(lone_queries)
        lone = self.lone
        recall = {k: _average(((self.first_positive <= k) & ~lone).astype(np.float64), lone, lone_queries)
                  for k in ks}
        return RetrievalMetrics(recall=recall, map_at_r=_average(self.ap_at_r, lone, lone_queries),
                                r_precision=_average(self.r_precision, lone, lone_queries),
                                queries=len(self.r), lone_queries=int(lone.sum()))


def per_query_results(
    query: Any, query_labels: Any, ref: Any = None, ref_labels: Any = None, *, block_size: int = 8192,
    device: str | torch.device | None = None,
) -> PerQuery:
    """Each query's first-positive rank, AP@R, R-Precision and R (:class:`PerQuery`), from one blocked pass.

    Inputs as :func:`recall_at_k`. Every rank is exact, so each block row is also counted in full
    (:func:`_count_above`): slower than the aggregate path of :func:`retrieval_metrics`, which only needs ranks up
    to max(K).
    """
    dev = _device(device)
    q, ql, r, rl, same = _prepare(query, query_labels, ref, ref_labels)
    scan = _scan(q, ql, r, rl, same, rank_limit=r.shape[0] + 1, top=True, block_size=block_size, device=dev)
    lone = scan.counts <= 0
    return PerQuery(first_positive=np.where(lone, -1, scan.rank) + 1, ap_at_r=np.where(lone, np.nan, scan.ap),
                    r_precision=np.where(lone, np.nan, scan.rp), r=np.asarray(scan.counts, dtype=np.int64))


# ----------------------------------------------------------------------------------------------- embedding
def _split_batch(batch: Any) -> tuple[torch.Tensor, torch.Tensor]:
    if isinstance(batch, dict):
        return batch.get("image", batch.get("images")), batch.get("label", batch.get("labels"))
    if isinstance(batch, (list, tuple)) and len(batch) >= 2:
        return batch[0], batch[1]
    raise ValueError("a loader batch must be (images, labels, ...) or a dict with 'image' and 'label'")


def embed(
    model: torch.nn.Module, loader: Iterable[Any], device: str | torch.device = "cpu", amp: bool | str = False
) -> tuple[torch.Tensor, torch.Tensor]:
    """Embeddings ``(N, D)`` float32 and labels ``(N,)`` int64 of every batch, in loader order, on the CPU.

    Runs in eval mode under ``torch.inference_mode`` and restores the model's previous mode. On CUDA the inputs use
    ``channels_last`` and ``amp`` (``True``/``"bf16"`` or ``"fp16"``) turns on autocast; on the CPU both are ignored.
    """
    device = torch.device(device)
    cuda = device.type == "cuda"
    was_training = model.training
    model.eval()
    dtype = torch.float16 if amp == "fp16" else torch.bfloat16
    feats: list[torch.Tensor] = []
    labels: list[torch.Tensor] = []
    try:
        with torch.inference_mode():
            for batch in loader:
                x, y = _split_batch(batch)
                x = x.to(device, non_blocking=cuda)
                if cuda and x.ndim == 4:
                    x = x.contiguous(memory_format=torch.channels_last)
                with torch.autocast(device_type="cuda", dtype=dtype, enabled=cuda and bool(amp)):
                    out = model(x)
                feats.append(out.float().cpu())
                labels.append(torch.as_tensor(y).long().cpu())
    finally:
        model.train(was_training)
    if not feats:
        raise ValueError("the loader yielded no batches")
    emb, lab = torch.cat(feats), torch.cat(labels)
    if emb.ndim != 2 or emb.shape[0] != lab.shape[0]:
        raise ValueError(f"model outputs {tuple(emb.shape)} do not match {lab.shape[0]} labels")
    return emb, lab


def retrieval_examples(
    embeddings: np.ndarray, n_queries: int, n_neighbours: int = 5, *, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """Retrieval examples for a figure (``notebooks/05_training.ipynb``): ``n_queries`` distinct queries drawn
    with ``seed`` from the rows of ``embeddings``, and each one's ``n_neighbours`` nearest other rows (inner
    product, most similar first; :func:`knn` over the whole set). Returns ``(queries, neighbours)``."""
    emb = np.asarray(embeddings)
    if not 1 <= n_queries <= len(emb):
        raise ValueError(f"n_queries must be between 1 and the {len(emb)} embeddings, not {n_queries}")
    _, neighbours = knn(emb, emb, n_neighbours, same_set=True)
    queries = np.random.default_rng(seed).choice(len(emb), size=n_queries, replace=False)
    return queries, neighbours[queries]


@dataclass(frozen=True)
class RetrievalGallery:
    """Retrieval examples for a figure: query rows, their nearest other rows (most similar first), the cosine
    similarity of each neighbour to its query and whether it is of the query's class."""

    queries: np.ndarray  # (n_queries,) row indices
    neighbours: np.ndarray  # (n_queries, n_neighbours) row indices, rank 1 first
    similarities: np.ndarray  # (n_queries, n_neighbours) S_qj
    correct: np.ndarray  # (n_queries, n_neighbours) bool: labels[j] == labels[q]


def retrieval_gallery(
    embeddings: np.ndarray, labels: np.ndarray, n_queries: int, n_neighbours: int = 5, *, seed: int = 0
) -> RetrievalGallery:
    """:func:`retrieval_examples` with each neighbour's similarity (inner product of the unit embeddings, the
    cosine ``S_qj``) and correctness, for the gallery of ``notebooks/05_training.ipynb``."""
    emb, labels = np.asarray(embeddings), np.asarray(labels)
    if len(labels) != len(emb):
        raise ValueError(f"{len(labels)} labels for {len(emb)} embeddings")
    queries, neighbours = retrieval_examples(emb, n_queries, n_neighbours, seed=seed)
    similarities = np.einsum("qd,qkd->qk", emb[queries], emb[neighbours])
    return RetrievalGallery(queries, neighbours, similarities, labels[neighbours] == labels[queries][:, None])
