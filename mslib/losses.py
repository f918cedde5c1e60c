"""Pair-based losses as functions of the similarity matrix ``S`` (so General Pair Weighting applies directly).

Every loss is ``name(sim, labels, ref_labels=None, **hparams) -> scalar``: ``sim`` is square (the batch against
itself; the diagonal is not a pair) or rectangular (query rows × reference columns, with ``ref_labels``). All are
vectorised (masked log-sum-exp, sorting; no per-anchor Python loop, no ``m×R×R`` tensor). Symbols follow Wang et
al., CVPR 2019 ("the MS paper"): ``S`` similarity, ``α`` positive scale, ``β`` negative scale, ``λ`` threshold,
``ε`` mining margin, ``m`` number of anchors (rows). Chapter: *Theory: General Pair Weighting*.

:func:`build_loss` gives a :class:`PairLoss` module taking ``(embeddings, labels, pairs=None, ref_embeddings=None,
ref_labels=None)``: it L2-normalises, computes cosine similarities and calls the functional loss. Which pairs a
loss uses is an argument: ``pairs=`` (boolean masks, :class:`mslib.mining.Pairs`) on the functions, ``miner=``
(:mod:`mslib.mining`) on the module. Self-pairs follow :func:`mslib.similarity.self_columns` (``self_index=``).

The proxy and classification losses (Proxy-Anchor, Proxy-NCA, SoftTriple, ArcFace, CosFace, SphereFace, center,
triplet-center) are functions of the samples × proxies similarity; they live in :mod:`mslib.proxy_losses`, are
re-exported here and built by the same :func:`build_loss` (:func:`loss_names` lists every name). A cross-batch
memory for any pair loss is :class:`mslib.memory.CrossBatchMemory`.

Every loss is one row of :data:`LOSS_SPECS` (a :class:`LossSpec`): its function, closed-form GPW weights, PML test
oracle, source and chapter. Adding a loss is its function, its row, and its plain-loop reference in
``tests/reference_losses.py`` (the tests generated from the table then check it).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

import torch
from torch import Tensor

from mslib.mining import Miner, MSMiner, Pairs, as_pairs, hardest_pairs, mine_ms_pairs, restrict
from mslib.proxy_losses import (
    ProxyLoss,
    ProxySpec,
    arcface,
    center,
    cosface,
    kaiming_normal_fan_out,
    kaiming_uniform,
    loss_param_groups,
    proxy_anchor,
    proxy_nca,
    soft_triple,
    sphereface,
    triplet_center,
)
from mslib.similarity import check_embeddings, check_sim, cosine, pair_masks, reference_is_batch

__all__ = [
    "KINDS", "LOSS_SPECS", "LossSpec", "MS_PRESETS", "PairLoss", "ProxyLoss", "arcface", "binomial_deviance",
    "build_loss", "canonical_params", "center", "contrastive", "cosface", "generalized_lifted_structure",
    "lifted_structure", "loss_names", "loss_param_groups", "loss_spec", "multi_similarity",
    "multi_similarity_autograd", "npair", "proxy_anchor", "proxy_nca", "quadruplet", "soft_triple", "sphereface",
    "triplet", "triplet_center",
]

# Named MS hyperparameters (alpha, beta, lambda, epsilon); book/sources.md cites each.
MS_PRESETS: dict[str, dict[str, float]] = {
    "paper": dict(alpha=2.0, beta=50.0, lam=1.0, epsilon=0.1),  # as the paper states
    "official": dict(alpha=2.0, beta=40.0, lam=0.5, epsilon=0.1),  # as the official code runs
    "pml": dict(alpha=2.0, beta=50.0, lam=0.5, epsilon=0.1),  # pytorch-metric-learning's defaults (loss and miner)
}


def _fill(x: Tensor) -> Tensor:
    """A finite stand-in for -inf in log space: exp() of it is exactly 0 and gradients stay NaN-free."""
    return torch.tensor(torch.finfo(x.dtype).min / 2, dtype=x.dtype, device=x.device)


def _masked_lse(x: Tensor, mask: Tensor, add_one: bool = False) -> Tensor:
    """Row-wise ``log(Σ_{mask} e^x)`` (``log(1 + Σ ...)`` with ``add_one``); empty rows give ``fill`` (or 0)."""
    lse = torch.logsumexp(torch.where(mask, x, _fill(x)), dim=1)
    return torch.nn.functional.softplus(lse) if add_one else lse  # log(1 + e^lse) = log(1 + Σ e^x)


def _masks(
    sim: Tensor, labels: Tensor, ref_labels: Tensor | None, pairs: tuple[Tensor, Tensor] | None,
    self_index: Tensor | None,
) -> Pairs:
    """The label pairs of ``sim`` (self-pairs by :func:`mslib.similarity.self_columns`), restricted to ``pairs``."""
    check_sim(sim, labels, ref_labels)
    return restrict(pair_masks(labels, ref_labels, self_index=self_index), pairs)


def contrastive(
    sim: Tensor, labels: Tensor, ref_labels: Tensor | None = None, *, pos_margin: float = 1.0,
    neg_margin: float = 0.5, pairs: tuple[Tensor, Tensor] | None = None, self_index: Tensor | None = None,
) -> Tensor:
    """Contrastive loss (Hadsell et al. 2006) in similarity form; the MS paper's Sec. 3 form.

    ``L = (1/m) Σ_i [Σ_{j∈P_i} [pos_margin − S_ij]_+ + Σ_{j∈N_i} [S_ij − neg_margin]_+]``; with ``pos_margin=1``
    the positive term is the paper's ``−S_ij`` up to a constant and ``neg_margin`` is its ``λ``.
    ``pairs``: optional mined ``(positive, negative)`` masks.
    """
    pos, neg = _masks(sim, labels, ref_labels, pairs, self_index)
    zero = torch.zeros_like(sim)
    per = torch.where(pos, torch.relu(pos_margin - sim), zero) + torch.where(neg, torch.relu(sim - neg_margin), zero)
    return per.sum() / sim.shape[0]


def _sorted_rows(sim: Tensor, mask: Tensor) -> tuple[Tensor, Tensor]:
    """Per row: masked values sorted ascending (+inf padding, detached) and prefix sums with gradient."""
    inf = torch.tensor(float("inf"), dtype=sim.dtype, device=sim.device)
    keys, order = torch.sort(torch.where(mask, sim.detach(), inf), dim=1)
    vals = torch.where(torch.gather(mask, 1, order), torch.gather(sim, 1, order), torch.zeros_like(sim))
    prefix = torch.cat([torch.zeros_like(sim[:, :1]), vals.cumsum(dim=1)], dim=1)
    return keys.contiguous(), prefix


def triplet(
    sim: Tensor, labels: Tensor, ref_labels: Tensor | None = None, *, margin: float = 0.1, mode: str = "all",
    reduction: str = "nonzero", pairs: tuple[Tensor, Tensor] | None = None, self_index: Tensor | None = None,
) -> Tensor:
    """Triplet loss (Weinberger et al. 2006; Schroff et al. 2015) with the margin on similarities (MS paper, Sec. 3).

    Per triplet ``[S_an − S_ap + margin]_+``. ``mode``: ``all`` triplets, ``semihard`` (``0 < S_ap − S_an <
    margin``, FaceNet) or ``hard`` (per anchor the hardest positive and negative, "batch hard").
    ``reduction``: ``nonzero`` (mean over triplets with positive loss, as pytorch-metric-learning's
    ``AvgNonZeroReducer``), ``mean`` (over all triplets considered) or ``sum``. Computed by sorting each row,
    ``O(m·R log R)`` time and ``O(m·R)`` memory, not by enumerating triplets. ``pairs``: optional mined
    ``(positive, negative)`` masks; a triplet ``(a, p, n)`` needs both of its pairs.
    """
    pos, neg = _masks(sim, labels, ref_labels, pairs, self_index)
    zero = torch.zeros_like(sim)
    if mode == "all":
        keys, prefix = _sorted_rows(sim, pos)  # positives sorted per row
        x = sim + margin  # every negative n: Σ_{p: S_ap < S_an + margin} (S_an + margin − S_ap)
        c = torch.searchsorted(keys, x.detach().contiguous(), right=False)
        total = torch.where(neg, c * x - torch.gather(prefix, 1, c), zero).sum()
        active = torch.where(neg, c, torch.zeros_like(c)).sum()
        considered = (pos.sum(1) * neg.sum(1)).sum()
    elif mode == "semihard":
        keys, prefix = _sorted_rows(sim, neg)  # negatives sorted per row
        lo = torch.searchsorted(keys, (sim - margin).detach().contiguous(), right=True)
        hi = torch.searchsorted(keys, sim.detach().contiguous(), right=False)
        window = torch.gather(prefix, 1, hi) - torch.gather(prefix, 1, lo)  # Σ S_an over the semi-hard window
        total = torch.where(pos, window - (hi - lo) * (sim - margin), zero).sum()
        active = considered = torch.where(pos, hi - lo, torch.zeros_like(hi)).sum()
    elif mode == "hard":
        p, n, ok = hardest_pairs(sim, pos, neg)
        per = torch.relu(sim.gather(1, n[:, None]) - sim.gather(1, p[:, None]) + margin).squeeze(1)
        per = torch.where(ok, per, torch.zeros_like(per))
        total, active, considered = per.sum(), (per > 0).sum(), ok.sum()
    else:
        raise ValueError(f"unknown triplet mode {mode!r}; choose all, semihard or hard")
    if reduction == "sum":
        return total
    if reduction not in ("nonzero", "mean"):
        raise ValueError(f"unknown reduction {reduction!r}; choose nonzero, mean or sum")
    count = active if reduction == "nonzero" else considered
    return total / count.clamp(min=1).to(sim.dtype)


def quadruplet(
    sim: Tensor, labels: Tensor, ref_labels: Tensor | None = None, *, margin: float = 0.1, margin2: float = 0.05,
    pairs: tuple[Tensor, Tensor] | None = None, self_index: Tensor | None = None,
) -> Tensor:
    """Quadruplet loss (Chen et al., CVPR 2017) with similarities for the squared distances.

    ``L = mean_{(a,p,n)} [S_an − S_ap + α₁]_+ + mean_{(a,p,l,k)} [S_lk − S_ap + α₂]_+``: the triplet term
    (:func:`triplet`, ``reduction="mean"``) plus, for every positive pair, every negative pair ``(l, k)`` (row ``l``,
    column ``k`` of ``sim``) whose labels both differ from the anchor's. ``α₁ = margin``, ``α₂ = margin2``
    (Chen et al. take ``α₂ < α₁``; their sums become means here). Memory ``O(U·m·R)``, ``U`` classes in the rows.
    """
    first = triplet(sim, labels, ref_labels, margin=margin, reduction="mean", pairs=pairs, self_index=self_index)
    pos, neg = _masks(sim, labels, ref_labels, pairs, self_index)
    ref = labels if ref_labels is None else ref_labels
    classes, row_class = torch.unique(labels, return_inverse=True)
    away = (labels[None, :] != classes[:, None])[:, :, None] & (ref[None, None, :] != classes[:, None, None])
    allowed = (neg[None] & away).reshape(len(classes), -1)  # [u, (l, k)]: negative pairs avoiding class u
    keys, prefix = _sorted_rows(sim.reshape(1, -1).expand(len(classes), -1), allowed)
    a, p = torch.nonzero(pos, as_tuple=True)
    u, q = row_class[a], sim[a, p] - margin2  # a pair (l, k) is active when S_lk > q
    first_above = torch.searchsorted(keys[u], q.detach()[:, None].contiguous(), right=True).squeeze(1)
    total = allowed.sum(dim=1)[u]
    above = prefix[u, total] - prefix[u, first_above] - (total - first_above).to(sim.dtype) * q
    second = above.sum() / total.sum().clamp(min=1).to(sim.dtype)
    return first + second


def lifted_structure(
    sim: Tensor, labels: Tensor, ref_labels: Tensor | None = None, *, margin: float = 1.0,
    pairs: tuple[Tensor, Tensor] | None = None, self_index: Tensor | None = None,
) -> Tensor:
    """Lifted structured loss, the original form of Song et al. 2016 with ``−D`` replaced by ``S``.

    For every positive pair: ``J_ij = log(Σ_{k∈N_i} e^{S_ik} + Σ_{l∈N_j} e^{S_jl}) + margin − S_ij`` and
    ``L = (1/2|P̂|) Σ_{(i,j)∈P̂} [J_ij]_+²`` over unordered pairs (= the mean of ``[J_ij]_+²/2`` over ordered
    ones). When the reference is not the batch itself (:func:`mslib.similarity.reference_is_batch`) ``j`` has no row,
so only the anchor's negatives ``N_i`` enter.
    """
    pos, neg = _masks(sim, labels, ref_labels, pairs, self_index)
    lse = _masked_lse(sim, neg)  # log Σ_{k∈N_i} e^{S_ik}
    if reference_is_batch(labels, ref_labels, self_index):
        log_z = torch.logaddexp(lse[:, None], lse[None, :])
    else:
        log_z = lse[:, None].expand_as(sim)
    j = log_z + margin - sim
    per = torch.where(pos, torch.relu(j) ** 2 / 2, torch.zeros_like(sim))
    return per.sum() / pos.sum().clamp(min=1).to(sim.dtype)


def generalized_lifted_structure(
    sim: Tensor, labels: Tensor, ref_labels: Tensor | None = None, *, margin: float = 1.0, scale: float = 1.0,
    pairs: tuple[Tensor, Tensor] | None = None, self_index: Tensor | None = None,
) -> Tensor:
    """Generalised lifted structure loss (Hermans et al. 2017, p. 4): the per-anchor form the MS paper's GPW
    section analyses (its Table 1), with ``λ = margin``, on similarities scaled by ``s = scale``.

    ``L = (1/m) Σ_i (1/s) [log Σ_{k∈P_i} e^{s(λ−S_ik)} + log Σ_{k∈N_i} e^{s S_ik}]_+``; ``s = 1`` (the default)
    is the paper's form. As pytorch-metric-learning 2.9's ``GeneralizedLiftedStructureLoss`` (default
    ``MeanReducer``): an empty ``P_i`` or ``N_i`` makes its log-sum-exp 0 (not −∞), so an anchor without positives
    still pays ``[log Σ_{N_i} e^{S_ik}]_+``, and every anchor counts in ``m``. ``s`` sharpens the softmax over the
    anchor's pairs on cosines (as N-pair's scale); the ``1/s`` keeps the weights' sum per anchor at one.
    ``pairs``: optional mined ``(positive, negative)`` masks. Chapter: *Pair losses*.
    """
    if scale <= 0:
        raise ValueError(f"generalized_lifted_structure: scale must be > 0, got {scale}")
    pos, neg = _masks(sim, labels, ref_labels, pairs, self_index)
    zero = torch.zeros_like(sim[:, 0])
    lse_p = torch.where(pos.any(dim=1), _masked_lse(scale * (margin - sim), pos), zero)
    lse_n = torch.where(neg.any(dim=1), _masked_lse(scale * sim, neg), zero)
    return torch.relu(lse_p + lse_n).sum() / (scale * sim.shape[0])


def binomial_deviance(
    sim: Tensor, labels: Tensor, ref_labels: Tensor | None = None, *, alpha: float = 2.0, beta: float = 50.0,
    lam: float = 0.5, pairs: tuple[Tensor, Tensor] | None = None, self_index: Tensor | None = None,
) -> Tensor:
    """Binomial deviance (Yi et al. 2014) as in the MS paper's comparison (Sec. 3).

    ``L = (1/m) Σ_i [(1/|P_i|) Σ_{j∈P_i} log(1 + e^{−α(S_ij − λ)}) + (1/|N_i|) Σ_{j∈N_i} log(1 + e^{β(S_ij − λ)})]``;
    an empty ``P_i`` or ``N_i`` contributes 0.
    """
    pos, neg = _masks(sim, labels, ref_labels, pairs, self_index)
    zero = torch.zeros_like(sim)
    softplus, dt = torch.nn.functional.softplus, sim.dtype
    p = torch.where(pos, softplus(-alpha * (sim - lam)), zero).sum(1) / pos.sum(1).clamp(min=1).to(dt)
    n = torch.where(neg, softplus(beta * (sim - lam)), zero).sum(1) / neg.sum(1).clamp(min=1).to(dt)
    return (p + n).sum() / sim.shape[0]


def npair(
    sim: Tensor, labels: Tensor, ref_labels: Tensor | None = None, *, scale: float = 1.0, mode: str = "mc",
    pairs: tuple[Tensor, Tensor] | None = None, self_index: Tensor | None = None,
) -> Tensor:
    """N-pair loss (Sohn 2016), over every (anchor, positive) pair, on logits ``s·S``; ``mode`` is Sohn's form.

    ``mc`` (multi-class): ``L = mean_{(i,p)} log(1 + Σ_{n∈N_i} e^{s(S_in − S_ip)})``; ``ovo`` (one-vs-one):
    ``L = mean_{(i,p)} Σ_{n∈N_i} log(1 + e^{s(S_in − S_ip)})``, each negative a binary problem.
    ``s = scale`` (a temperature ``1/s``). Sohn uses unnormalised inner products (``sim = x xᵀ``, any scale); on
    cosine similarities ``s`` stands in for the squared embedding norm, and ``s = 1`` leaves the softmax over
    ``[-1, 1]`` nearly uniform. Sohn's batch of N anchors against their N positives is the rectangular case:
    ``sim`` = anchors × positives, ``ref_labels`` = the positives' labels. Chapters: *Pair losses*, *Recall@K*.
    """
    if not scale > 0:
        raise ValueError(f"npair scale must be > 0, got {scale}")
    if mode not in ("mc", "ovo"):
        raise ValueError(f"unknown npair mode {mode!r}; choose mc (multi-class) or ovo (one-vs-one)")
    pos, neg = _masks(sim, labels, ref_labels, pairs, self_index)
    if mode == "ovo":
        return _npair_ovo(scale * sim, pos, neg)
    logits = scale * sim
    lse = _masked_lse(logits, neg)
    zero = torch.zeros_like(sim)
    per = torch.where(pos, torch.logaddexp(zero, lse[:, None] - logits), zero)  # exact log(1 + e^x) for large s
    return per.sum() / pos.sum().clamp(min=1).to(sim.dtype)


def _npair_ovo(logits: Tensor, pos: Tensor, neg: Tensor) -> Tensor:
    """``mean_{(i,p)} Σ_{n∈N_i} log(1 + e^{l_in − l_ip})`` as an ``m × R × R`` tensor ``[i, p, n]``."""
    gap = logits[:, None, :] - logits[:, :, None]  # [i, p, n] = l_in − l_ip
    both = pos[:, :, None] & neg[:, None, :]
    per = torch.where(both, torch.logaddexp(torch.zeros_like(gap), gap), torch.zeros_like(gap))
    return per.sum() / pos.sum().clamp(min=1).to(logits.dtype)


def _ms_masks(
    sim: Tensor, labels: Tensor, ref_labels: Tensor | None, epsilon: float | None,
    pairs: tuple[Tensor, Tensor] | None, self_index: Tensor | None,
) -> Pairs:
    """The pairs MS weights: the label pairs mined by the paper's rule (``epsilon``), or restricted to ``pairs``."""
    check_sim(sim, labels, ref_labels)
    if epsilon is not None and pairs is not None:
        raise ValueError(f"multi_similarity mines its own pairs with epsilon={epsilon}; to weight the given pairs "
                         "pass epsilon=None")
    masks = pair_masks(labels, ref_labels, self_index=self_index)
    return restrict(masks, pairs) if epsilon is None else mine_ms_pairs(sim, *masks, epsilon=epsilon)


def _softplus_grad(x: Tensor) -> Tensor:
    """``d softplus(x)/dx = σ(x)``, taken as 1 above 20 as ``torch.nn.functional.softplus``'s own backward does."""
    return torch.where(x > 20, torch.ones_like(x), torch.sigmoid(x))


class _MultiSimilarity(torch.autograd.Function):
    """MS loss over given pair masks, forward and its closed-form backward (the GPW weights ``w⁺, w⁻``, Sec. 5.2).

    One dense ``m×R`` buffer holds ``e^{β(S_ik − max_k S_ik)}`` over the negatives of ``neg``; positives, a few per
    row in a P×K batch, are handled as an index list. The row shifts are the max (negatives) and min (positives)
    over the masks, exactly what ``torch.logsumexp`` would subtract; the masks come from the miner (for MS mining,
    :func:`mslib.mining.mine_ms_pairs`), so the backward re-derives no rule.
    """

    @staticmethod
    def forward(ctx, sim: Tensor, pos: Tensor, neg: Tensor, alpha: float, beta: float, lam: float) -> Tensor:
        m = sim.shape[0]
        s = sim.detach()
        prow, pcol = torch.nonzero(pos, as_tuple=True)
        inf = float("inf")
        e_neg = torch.where(neg, s, torch.full_like(s, -inf))
        max_neg = e_neg.amax(dim=1, keepdim=True)  # -inf for a row without negatives
        pos_val = s[prow, pcol]
        min_pos = torch.full((m,), inf, dtype=s.dtype, device=s.device).scatter_reduce_(
            0, prow, pos_val, reduce="amin", include_self=True)  # +inf for a row without positives
        shift_n = torch.where(torch.isfinite(max_neg), max_neg, torch.zeros_like(max_neg))
        e_neg.sub_(shift_n).mul_(beta).exp_()  # in [0, 1]; exactly 0 off the negatives
        shift_p = torch.where(torch.isfinite(min_pos), min_pos, torch.zeros_like(min_pos))
        e_pos = torch.exp(alpha * (shift_p[prow] - pos_val))  # finite: min_pos <= pos_val
        sum_n = e_neg.sum(dim=1)
        sum_p = torch.zeros_like(sum_n).index_add_(0, prow, e_pos)
        valid = (sum_p > 0) & (sum_n > 0)
        one = torch.ones_like(sum_n)
        lse_n = beta * (shift_n[:, 0] - lam) + torch.log(torch.where(valid, sum_n, one))
        lse_p = alpha * (lam - shift_p) + torch.log(torch.where(valid, sum_p, one))
        softplus = torch.nn.functional.softplus
        per = torch.where(valid, softplus(lse_p) / alpha + softplus(lse_n) / beta, torch.zeros_like(sum_n))
        # d loss / d S_ij = (σ(lse_n)/Σ_n) e_neg_ij / m  on negatives,  −(σ(lse_p)/Σ_p) e_pos_ij / m  on positives
        zero = torch.zeros_like(sum_n)
        c_n = torch.where(valid, _softplus_grad(lse_n) / torch.where(valid, sum_n, one), zero) / m
        c_p = torch.where(valid, _softplus_grad(lse_p) / torch.where(valid, sum_p, one), zero) / m
        ctx.save_for_backward(e_neg, c_n, prow, pcol, e_pos * c_p[prow])
        return per.sum() / m

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_out: Tensor) -> tuple[Tensor | None, ...]:
        if not ctx.needs_input_grad[0]:
            return None, None, None, None, None, None
        e_neg, c_n, prow, pcol, w_pos = ctx.saved_tensors
        grad = e_neg * (c_n * grad_out)[:, None]  # w⁻ (zero off the negatives)
        grad[prow, pcol] = -(w_pos * grad_out)  # −w⁺ on the positives (disjoint from the negatives)
        return grad, None, None, None, None, None


def multi_similarity(
    sim: Tensor, labels: Tensor, ref_labels: Tensor | None = None, *, alpha: float, beta: float, lam: float,
    epsilon: float | None, pairs: tuple[Tensor, Tensor] | None = None, self_index: Tensor | None = None,
) -> Tensor:
    """Multi-Similarity loss (Wang et al. 2019, Sec. 5), with the paper's pair mining (Sec. 5.1) when ``epsilon``.

    The loss of :func:`multi_similarity_autograd` (same value), with the closed-form backward (the GPW weights,
    :func:`mslib.gpw.multi_similarity_weights`; checked against autograd in ``tests/test_losses_fast.py``).
    ``epsilon=None`` and ``pairs=`` weight another miner's pairs. Presets: :data:`MS_PRESETS`.
    """
    if alpha <= 0 or beta <= 0:  # the row shifts below assume positive scales
        return multi_similarity_autograd(sim, labels, ref_labels, alpha=alpha, beta=beta, lam=lam, epsilon=epsilon,
                                         pairs=pairs, self_index=self_index)
    pos, neg = _ms_masks(sim, labels, ref_labels, epsilon, pairs, self_index)
    return _MultiSimilarity.apply(sim, pos, neg, float(alpha), float(beta), float(lam))


def multi_similarity_autograd(
    sim: Tensor,
    labels: Tensor,
    ref_labels: Tensor | None = None,
    *,
    alpha: float,
    beta: float,
    lam: float,
    epsilon: float | None,
    pairs: tuple[Tensor, Tensor] | None = None,
    self_index: Tensor | None = None,
) -> Tensor:
    """Multi-Similarity loss (Wang et al. 2019, Sec. 5) as masked log-sum-exps.

    ``L = (1/m) Σ_i {(1/α) log[1 + Σ_{k∈P̃_i} e^{−α(S_ik − λ)}]
                   + (1/β) log[1 + Σ_{k∈Ñ_i} e^{β(S_ik − λ)}]}``,
    ``P̃_i, Ñ_i`` the pairs mined by :func:`mslib.mining.mine_ms_pairs` with
    ``epsilon`` (all pairs for ``None``), or the given ``pairs``. An anchor with no
    positive or no negative left contributes 0 but counts in ``m``, as in the
    official code. Shown in ``notebooks/03_multi_similarity.ipynb``.
    """
    pos, neg = _ms_masks(sim, labels, ref_labels, epsilon, pairs, self_index)
    pos_term = _masked_lse(-alpha * (sim - lam), pos, add_one=True) / alpha
    neg_term = _masked_lse(beta * (sim - lam), neg, add_one=True) / beta
    valid = pos.any(dim=1) & neg.any(dim=1)
    per = torch.where(valid, pos_term + neg_term, torch.zeros_like(pos_term))
    return per.sum() / sim.shape[0]


_PER_CALL = ("pairs", "self_index", "norms")  # loss arguments that are not hyperparameters
KINDS = ("pair", "proxy", "classification")


@dataclass(frozen=True)
class LossSpec:
    """One loss: everything the package, the tests and the book look up by its name (a row of :data:`LOSS_SPECS`).

    ``fn``: the loss, ``fn(sim, labels, ...)``. ``kind``: ``pair`` (``S`` between samples, a :class:`PairLoss`),
    ``proxy`` or ``classification`` (``S`` between samples and learned class representatives, a
    :class:`mslib.proxy_losses.ProxyLoss` keeping them as ``proxy`` says). ``closed_form``: the name of its derived
    GPW weights in :mod:`mslib.gpw` (a name, as ``gpw`` imports this module), or ``None`` with ``no_closed_form``
    saying why. ``pml``: the pytorch-metric-learning 2.9 class its tests compare with (``None``: PML has none).
    ``source``: its paper's key in ``book/references.bib``; ``chapter``: the notebook that explains it. ``defaults``:
    the hyperparameters its checks run with, read from ``fn``'s signature; a row states only those ``fn`` has no
    default for (:func:`build_loss` still needs them given, or a preset). ``presets``: named settings for
    ``build_loss(name, preset=...)``.
    """

    name: str
    fn: Callable[..., Tensor]
    kind: str
    source: str
    chapter: str
    pml: str | None = None
    closed_form: str | None = None
    no_closed_form: str = ""
    proxy: ProxySpec | None = None
    defaults: Mapping[str, Any] = field(default_factory=dict)
    presets: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        where = f"LossSpec {self.name!r}"
        if self.kind not in KINDS:
            raise ValueError(f"{where}: kind must be one of {', '.join(KINDS)}, got {self.kind!r}")
        if (self.proxy is None) != (self.kind == "pair"):
            raise ValueError(f"{where}: a {self.kind} loss {'has no' if self.kind == 'pair' else 'needs a'} proxy=")
        if (self.closed_form is None) == (not self.no_closed_form):
            raise ValueError(f"{where}: give closed_form= (a function of mslib.gpw) or no_closed_form= (why none)")
        params = self.hyperparameters()
        signature = {k: p.default for k, p in params.items() if p.default is not p.empty}
        required = sorted(set(params) - set(signature))
        if sorted(self.defaults) != required:
            raise ValueError(f"{where}: defaults= states exactly the hyperparameters {self.fn.__name__} has no "
                             f"default for ({', '.join(required) or 'none'}), got {', '.join(sorted(self.defaults))}")
        object.__setattr__(self, "defaults", MappingProxyType({**signature, **self.defaults}))

    def hyperparameters(self) -> dict[str, inspect.Parameter]:
        """``fn``'s keyword-only parameters that are set when the loss is built (not per call)."""
        params = inspect.signature(self.fn).parameters.values()
        return {p.name: p for p in params if p.kind is p.KEYWORD_ONLY and p.name not in _PER_CALL}


def _table(*specs: LossSpec) -> dict[str, LossSpec]:
    table = {spec.name: spec for spec in specs}
    if len(table) != len(specs):
        raise ValueError("LOSS_SPECS: two rows have the same name")
    return table


_AUTOGRAD_ONLY = "not derived in mslib; mslib.gpw.proxy_weights gives its weights by autograd"

# Every loss, one row each. Pair losses first (the MS paper's comparison), then the proxy and classification losses.
LOSS_SPECS: dict[str, LossSpec] = _table(
    LossSpec("contrastive", contrastive, "pair", "hadsell2006dimensionality", "02_pair_losses",
             pml="ContrastiveLoss", closed_form="contrastive_weights"),
    LossSpec("triplet", triplet, "pair", "schroff2015facenet", "02_pair_losses",
             pml="TripletMarginLoss", closed_form="triplet_weights"),
    LossSpec("lifted_structure", lifted_structure, "pair", "song2016deep", "02_pair_losses",
             pml="LiftedStructureLoss", closed_form="lifted_structure_weights"),
    LossSpec("generalized_lifted_structure", generalized_lifted_structure, "pair", "hermans2017defense",
             "02_pair_losses", pml="GeneralizedLiftedStructureLoss",
             closed_form="generalized_lifted_structure_weights"),
    LossSpec("binomial_deviance", binomial_deviance, "pair", "yi2014deep", "02_pair_losses",
             closed_form="binomial_deviance_weights"),
    LossSpec("npair", npair, "pair", "sohn2016improved", "02_pair_losses", pml="NPairsLoss",
             closed_form="npair_weights"),
    LossSpec("multi_similarity", multi_similarity, "pair", "wang2019multi", "03_multi_similarity",
             pml="MultiSimilarityLoss", closed_form="multi_similarity_weights", defaults=MS_PRESETS["paper"],
             presets=MS_PRESETS),
    LossSpec("quadruplet", quadruplet, "pair", "chen2017beyond", "01_gpw", closed_form="quadruplet_weights"),
    # the authors' code trains the proxies at 100 × the network's rate (book/sources.md#src-pml)
    LossSpec("proxy_anchor", proxy_anchor, "proxy", "kim2020proxy", "09_beyond_pairs", pml="ProxyAnchorLoss",
             closed_form="proxy_anchor_weights", proxy=ProxySpec(init=kaiming_normal_fan_out, lr_factor=100.0)),
    LossSpec("proxy_nca", proxy_nca, "proxy", "movshovitz2017no", "09_beyond_pairs", pml="ProxyNCALoss",
             closed_form="proxy_nca_weights", proxy=ProxySpec()),
    # the authors' code: centres at 1e-2, the network at 1e-4 (book/sources.md#src-pml)
    LossSpec("soft_triple", soft_triple, "proxy", "qian2019softtriple", "09_beyond_pairs", pml="SoftTripleLoss",
             no_closed_form=_AUTOGRAD_ONLY, proxy=ProxySpec(name="fc", layout="columns", init=kaiming_uniform,
                                                            per_class="centers_per_class", lr_factor=100.0)),
    LossSpec("arcface", arcface, "classification", "deng2019arcface", "09_beyond_pairs", pml="ArcFaceLoss",
             no_closed_form=_AUTOGRAD_ONLY, proxy=ProxySpec(name="W", layout="columns")),
    LossSpec("cosface", cosface, "classification", "wang2018cosface", "09_beyond_pairs", pml="CosFaceLoss",
             no_closed_form=_AUTOGRAD_ONLY, proxy=ProxySpec(name="W", layout="columns")),
    LossSpec("sphereface", sphereface, "classification", "liu2017sphereface", "09_beyond_pairs",
             pml="SphereFaceLoss", no_closed_form=_AUTOGRAD_ONLY,
             proxy=ProxySpec(name="W", layout="columns", needs_norms=True)),
    LossSpec("triplet_center", triplet_center, "proxy", "he2018triplet", "09_beyond_pairs",
             no_closed_form=_AUTOGRAD_ONLY, proxy=ProxySpec(name="centers")),
    LossSpec("center", center, "classification", "wen2016discriminative", "09_beyond_pairs",
             no_closed_form=_AUTOGRAD_ONLY, proxy=ProxySpec(name="W", layout="columns", with_centers=True)),
)


class PairLoss(torch.nn.Module):
    """``forward(embeddings, labels, pairs=None, ref_embeddings=None, ref_labels=None, *, self_index=None)``.

    L2-normalises, takes cosine similarities (query × reference with ``ref_embeddings``: a cross-batch memory, or
    embeddings all-gathered across GPUs) and calls the loss on the pairs of ``miner`` (all pairs without one), or
    on ``pairs`` given per call, as pytorch-metric-learning's ``loss(embeddings, labels, miner(embeddings, labels))``.
    """

    def __init__(self, name: str, fn: Callable[..., Tensor], miner: Miner | None = None, **hparams: Any) -> None:
        super().__init__()
        self.name, self.fn, self.miner, self.hparams = name, fn, miner, hparams

    def forward(
        self, embeddings: Tensor, labels: Tensor, pairs: tuple[Tensor, ...] | None = None,
        ref_embeddings: Tensor | None = None, ref_labels: Tensor | None = None, *, self_index: Tensor | None = None,
    ) -> Tensor:
        sim = self._similarity(embeddings, labels, ref_embeddings, ref_labels)
        if pairs is not None:
            pairs = self._given_pairs(pairs, sim)
        elif self.miner is not None:
            check_sim(sim, labels, ref_labels)
            pairs = self.miner.mine(sim, labels, ref_labels, self_index=self_index)
        extra = {k: v for k, v in (("pairs", pairs), ("self_index", self_index)) if v is not None}
        return self.fn(sim, labels, ref_labels, **extra, **self.hparams)

    def _similarity(self, embeddings: Tensor, labels: Tensor, ref_embeddings: Tensor | None,
                    ref_labels: Tensor | None) -> Tensor:
        check_embeddings(embeddings)
        if (ref_embeddings is None) != (ref_labels is None):
            raise ValueError("pass ref_embeddings and ref_labels together")
        if labels.dim() != 1 or labels.shape[0] != embeddings.shape[0]:
            raise ValueError(f"labels must be 1-D of length {embeddings.shape[0]}, got shape {tuple(labels.shape)}")
        if ref_embeddings is None:
            return cosine(embeddings)
        check_embeddings(ref_embeddings, "ref_embeddings")
        return cosine(embeddings, ref_embeddings)

    def _given_pairs(self, pairs: tuple[Tensor, ...], sim: Tensor) -> Pairs:
        if isinstance(pairs, Tensor):
            raise ValueError("the third argument is the mined pairs (a miner's output); pass a reference as "
                             "ref_embeddings=..., ref_labels=...")
        if self.miner is not None:
            raise ValueError(f"this {self.name} loss mines its pairs with {self.miner}; do not pass pairs too")
        return as_pairs(pairs, tuple(sim.shape))

    def extra_repr(self) -> str:
        mining = [] if self.miner is None else [f"miner={self.miner}"]
        return ", ".join([self.name, *mining, *(f"{k}={v}" for k, v in self.hparams.items())])


def loss_names() -> list[str]:
    """Every name :func:`build_loss` takes (the keys of :data:`LOSS_SPECS`): the pair losses, then the proxy and
    classification losses."""
    return list(LOSS_SPECS)


def loss_spec(name: str) -> LossSpec:
    """The row of loss ``name``; ``ValueError`` listing every loss for an unknown name."""
    if name not in LOSS_SPECS:
        raise ValueError(f"unknown loss {name!r}; choose one of {', '.join(loss_names())}")
    return LOSS_SPECS[name]


def _check_hyperparameters(spec: LossSpec, hparams: dict[str, Any]) -> None:
    """``ValueError`` naming the loss and any unknown or missing hyperparameter of ``spec``."""
    known = spec.hyperparameters()
    unknown = sorted(set(hparams) - set(known))
    missing = sorted(k for k, p in known.items() if p.default is p.empty and k not in hparams)
    if unknown:
        raise ValueError(f"{spec.name} has no hyperparameter {', '.join(unknown)}; it takes {', '.join(known)}")
    if missing:
        presets = f" (or preset=, one of {', '.join(spec.presets)})" if spec.presets else ""
        raise ValueError(f"{spec.name} needs the hyperparameters {', '.join(missing)}{presets}")


def _preset(name: str, preset: str | None, hparams: dict[str, Any]) -> dict[str, Any]:
    """``hparams`` over the loss's named preset (its row's ``presets``; overrides win)."""
    if preset is None:
        return hparams
    presets = loss_spec(name).presets
    if not presets:
        with_presets = [n for n, spec in LOSS_SPECS.items() if spec.presets]
        raise ValueError(f"only {', '.join(with_presets)} has presets, not {name}")
    if preset not in presets:
        raise ValueError(f"unknown preset {preset!r}; choose one of {', '.join(presets)}")
    return {**presets[preset], **hparams}


def canonical_params(name: str, params: dict[str, Any]) -> dict[str, Any]:
    """The one spelling of ``build_loss(name, **params)``'s arguments: a ``preset`` is expanded into its values
    (overrides win), so ``{"preset": "pml"}`` and ``{"alpha": 2, "beta": 50, "lam": 0.5, "epsilon": 0.1}`` name
    the same run, and a run record states the numbers it ran with."""
    rest = {k: v for k, v in params.items() if k != "preset"}
    return _preset(name, params.get("preset"), rest)


def _miner(name: str, miner: Miner | None, ms_mining: float | None, hparams: dict[str, Any]) -> Miner | None:
    """The module's miner: ``miner``, or ``MSMiner(ms_mining)``; refused where MS mines through ``epsilon``."""
    if miner is not None and ms_mining is not None:
        raise ValueError("pass miner= or ms_mining=, not both (ms_mining=ε is miner=MSMiner(ε))")
    if ms_mining is not None:
        miner = MSMiner(ms_mining)
    if miner is not None and name == "multi_similarity" and hparams.get("epsilon") is not None:
        raise ValueError("multi_similarity mines through its own epsilon; pass epsilon=None to weight a miner's pairs")
    return miner


def build_loss(
    name: str, *, miner: Miner | None = None, ms_mining: float | None = None, preset: str | None = None,
    num_classes: int | None = None, embedding_dim: int | None = None, lr_factor: float | None = None,
    **hparams: Any,
) -> PairLoss | ProxyLoss:
    """The module for loss ``name`` (:func:`loss_names`) with its hyperparameters checked now (unknown or missing:
    ``ValueError``).

    Pair losses (``kind="pair"`` in :data:`LOSS_SPECS`) give a :class:`PairLoss`. ``miner``: a
    :class:`mslib.mining.Miner` choosing the pairs the loss sees; ``ms_mining=ε`` is shorthand for
    ``miner=MSMiner(ε)`` (the "mining only" ablations). A loss with ``presets`` in its row (``multi_similarity``:
    :data:`MS_PRESETS`) takes ``preset=`` with optional overrides. A pair loss has no parameters and ignores
    ``num_classes`` and ``embedding_dim``, so a trainer may pass them for every loss.

    Proxy and classification losses (the other kinds) give a :class:`mslib.proxy_losses.ProxyLoss` and need
    ``num_classes`` and ``embedding_dim`` (the training classes and the embedding size); ``lr_factor`` overrides
    the paper's learning-rate factor for their parameters. They take no miner or preset.
    """
    spec = loss_spec(name)  # unknown name: ValueError listing every loss
    if spec.kind != "pair":
        return _build_proxy_loss(spec, miner, ms_mining, preset, num_classes, embedding_dim, lr_factor, hparams)
    if lr_factor is not None:
        raise ValueError(f"{name} has no parameters, so no lr_factor")
    hparams = _preset(name, preset, hparams)
    _check_hyperparameters(spec, hparams)
    return PairLoss(name, spec.fn, miner=_miner(name, miner, ms_mining, hparams), **hparams)


def _build_proxy_loss(
    spec: LossSpec, miner: Miner | None, ms_mining: float | None, preset: str | None, num_classes: int | None,
    embedding_dim: int | None, lr_factor: float | None, hparams: dict[str, Any],
) -> ProxyLoss:
    """:func:`build_loss` for a proxy or classification loss: its sizes and hyperparameters checked."""
    name = spec.name
    if miner is not None or ms_mining is not None or preset is not None:
        raise ValueError(f"{name} compares samples with class proxies, not pairs: it takes no miner, ms_mining "
                         "or preset")
    for key, value in (("num_classes", num_classes), ("embedding_dim", embedding_dim)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} learns one proxy per class: build_loss needs {key}= a positive integer, "
                             f"got {value!r}")
    _check_hyperparameters(spec, hparams)
    return ProxyLoss(name, spec.fn, spec.proxy, num_classes, embedding_dim, lr_factor=lr_factor, **hparams)
