"""Pair-based losses as functions of the similarity matrix ``S`` (so General Pair Weighting applies directly).

Every loss is ``name(sim, labels, ref_labels=None, **hparams) -> scalar``: ``sim`` is square (the batch against
itself; the diagonal is not a pair) or rectangular (query rows × reference columns, with ``ref_labels``). All are
vectorised (masked log-sum-exp, sorting; no per-anchor Python loop, no ``m×R×R`` tensor). Symbols follow Wang et
al., CVPR 2019 ("the MS paper"): ``S`` similarity, ``α`` positive scale, ``β`` negative scale, ``λ`` threshold,
``ε`` mining margin, ``m`` number of anchors (rows). Chapter: *Theory: General Pair Weighting*.

:func:`build_loss` gives a ``torch.nn.Module`` taking ``(embeddings, labels, ref_embeddings=None,
ref_labels=None)``: it L2-normalises, computes cosine similarities and calls the functional loss.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor

from mslib.mining import hardest_pairs, mine_ms_pairs, ms_pair_mask, restrict
from mslib.similarity import check_embeddings, check_sim, cosine, pair_masks

__all__ = [
    "LOSSES", "MS_PRESETS", "PairLoss", "binomial_deviance", "build_loss", "contrastive",
    "generalized_lifted_structure", "lifted_structure", "multi_similarity", "multi_similarity_autograd", "npair",
    "triplet",
]

Pairs = tuple[Tensor, Tensor]

MS_PRESETS: dict[str, dict[str, float]] = {
    "paper": dict(alpha=2, beta=50, lam=1, epsilon=0.1),  # as the paper states
    "official": dict(alpha=2, beta=40, lam=0.5, epsilon=0.1),  # as the official code runs
}


def _fill(x: Tensor) -> Tensor:
    """A finite stand-in for -inf in log space: exp() of it is exactly 0 and gradients stay NaN-free."""
    return torch.tensor(torch.finfo(x.dtype).min / 2, dtype=x.dtype, device=x.device)


def _masked_lse(x: Tensor, mask: Tensor, add_one: bool = False) -> Tensor:
    """Row-wise ``log(Σ_{mask} e^x)`` (``log(1 + Σ ...)`` with ``add_one``); empty rows give ``fill`` (or 0)."""
    lse = torch.logsumexp(torch.where(mask, x, _fill(x)), dim=1)
    return torch.nn.functional.softplus(lse) if add_one else lse  # log(1 + e^lse) = log(1 + Σ e^x)


def _masks(sim: Tensor, labels: Tensor, ref_labels: Tensor | None, pairs: Pairs | None) -> Pairs:
    check_sim(sim, labels, ref_labels)
    return restrict(pair_masks(labels, ref_labels), pairs)


def contrastive(
    sim: Tensor, labels: Tensor, ref_labels: Tensor | None = None, *, pos_margin: float = 1.0,
    neg_margin: float = 0.5, pairs: Pairs | None = None,
) -> Tensor:
    """Contrastive loss (Hadsell et al. 2006) in similarity form; the MS paper's Sec. 3 form.

    ``L = (1/m) Σ_i [Σ_{j∈P_i} [pos_margin − S_ij]_+ + Σ_{j∈N_i} [S_ij − neg_margin]_+]``; with ``pos_margin=1``
    the positive term is the paper's ``−S_ij`` up to a constant and ``neg_margin`` is its ``λ``.
    ``pairs``: optional mined ``(positive, negative)`` masks.
    """
    pos, neg = _masks(sim, labels, ref_labels, pairs)
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
    reduction: str = "nonzero",
) -> Tensor:
    """Triplet loss (Weinberger et al. 2006; Schroff et al. 2015) with the margin on similarities (MS paper, Sec. 3).

    Per triplet ``[S_an − S_ap + margin]_+``. ``mode``: ``all`` triplets, ``semihard`` (``0 < S_ap − S_an <
    margin``, FaceNet) or ``hard`` (per anchor the hardest positive and negative, "batch hard").
    ``reduction``: ``nonzero`` (mean over triplets with positive loss, as pytorch-metric-learning's
    ``AvgNonZeroReducer``), ``mean`` (over all triplets considered) or ``sum``. Computed by sorting each row,
    ``O(m·R log R)`` time and ``O(m·R)`` memory, not by enumerating triplets.
    """
    pos, neg = _masks(sim, labels, ref_labels, None)
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


def lifted_structure(
    sim: Tensor, labels: Tensor, ref_labels: Tensor | None = None, *, margin: float = 1.0,
    pairs: Pairs | None = None,
) -> Tensor:
    """Lifted structured loss, the original form of Song et al. 2016 with ``−D`` replaced by ``S``.

    For every positive pair: ``J_ij = log(Σ_{k∈N_i} e^{S_ik} + Σ_{l∈N_j} e^{S_jl}) + margin − S_ij`` and
    ``L = (1/2|P̂|) Σ_{(i,j)∈P̂} [J_ij]_+²`` over unordered pairs (= the mean of ``[J_ij]_+²/2`` over ordered
    ones). Rectangular ``sim``: the reference ``j`` has no row, so only the anchor's negatives ``N_i`` enter.
    """
    pos, neg = _masks(sim, labels, ref_labels, pairs)
    lse = _masked_lse(sim, neg)  # log Σ_{k∈N_i} e^{S_ik}
    if sim.shape[0] == sim.shape[1] and (ref_labels is None or ref_labels is labels):
        log_z = torch.logaddexp(lse[:, None], lse[None, :])
    else:
        log_z = lse[:, None].expand_as(sim)
    j = log_z + margin - sim
    per = torch.where(pos, torch.relu(j) ** 2 / 2, torch.zeros_like(sim))
    return per.sum() / pos.sum().clamp(min=1).to(sim.dtype)


def generalized_lifted_structure(
    sim: Tensor, labels: Tensor, ref_labels: Tensor | None = None, *, margin: float = 1.0,
    pairs: Pairs | None = None,
) -> Tensor:
    """Generalised lifted structure loss (Hermans et al. 2017, p. 4): the per-anchor form the MS paper's GPW
    section analyses (its Table 1), with ``λ = margin``.

    ``L = (1/m) Σ_i [log Σ_{k∈P_i} e^{λ−S_ik} + log Σ_{k∈N_i} e^{S_ik}]_+``. As pytorch-metric-learning 2.9's
    ``GeneralizedLiftedStructureLoss`` (default ``MeanReducer``): an empty ``P_i`` or ``N_i`` makes its
    log-sum-exp 0 (not −∞), so an anchor without positives still pays ``[log Σ_{N_i} e^{S_ik}]_+``, and every
    anchor counts in ``m``. ``pairs``: optional mined ``(positive, negative)`` masks. Chapter: *Pair losses*.
    """
    pos, neg = _masks(sim, labels, ref_labels, pairs)
    zero = torch.zeros_like(sim[:, 0])
    lse_p = torch.where(pos.any(dim=1), _masked_lse(margin - sim, pos), zero)
    lse_n = torch.where(neg.any(dim=1), _masked_lse(sim, neg), zero)
    return torch.relu(lse_p + lse_n).sum() / sim.shape[0]


def binomial_deviance(
    sim: Tensor, labels: Tensor, ref_labels: Tensor | None = None, *, alpha: float = 2.0, beta: float = 50.0,
    lam: float = 0.5, pairs: Pairs | None = None,
) -> Tensor:
    """Binomial deviance (Yi et al. 2014) as in the MS paper's comparison (Sec. 3).

    ``L = (1/m) Σ_i [(1/|P_i|) Σ_{j∈P_i} log(1 + e^{−α(S_ij − λ)}) + (1/|N_i|) Σ_{j∈N_i} log(1 + e^{β(S_ij − λ)})]``;
    an empty ``P_i`` or ``N_i`` contributes 0.
    """
    pos, neg = _masks(sim, labels, ref_labels, pairs)
    zero = torch.zeros_like(sim)
    softplus, dt = torch.nn.functional.softplus, sim.dtype
    p = torch.where(pos, softplus(-alpha * (sim - lam)), zero).sum(1) / pos.sum(1).clamp(min=1).to(dt)
    n = torch.where(neg, softplus(beta * (sim - lam)), zero).sum(1) / neg.sum(1).clamp(min=1).to(dt)
    return (p + n).sum() / sim.shape[0]


def npair(
    sim: Tensor, labels: Tensor, ref_labels: Tensor | None = None, *, scale: float = 1.0,
    pairs: Pairs | None = None,
) -> Tensor:
    """Multi-class N-pair loss (Sohn 2016), over every (anchor, positive) pair, on logits ``s·S``.

    ``L = mean_{(i,p)} log(1 + Σ_{n∈N_i} e^{s(S_in − S_ip)})``, ``s = scale`` (a temperature ``1/s``). Sohn uses
    unnormalised inner products (``sim = x xᵀ``, any scale); on cosine similarities ``s`` stands in for the
    squared embedding norm, and ``s = 1`` leaves the softmax over ``[-1, 1]`` nearly uniform. Sohn's batch of N
    anchors against their N positives is the rectangular case: ``sim`` = anchors × positives, ``ref_labels`` =
    the positives' labels. Chapters: *Pair losses*, *Recall@K*.
    """
    if not scale > 0:
        raise ValueError(f"npair scale must be > 0, got {scale}")
    pos, neg = _masks(sim, labels, ref_labels, pairs)
    logits = scale * sim
    lse = _masked_lse(logits, neg)
    zero = torch.zeros_like(sim)
    per = torch.where(pos, torch.logaddexp(zero, lse[:, None] - logits), zero)  # exact log(1 + e^x) for large s
    return per.sum() / pos.sum().clamp(min=1).to(sim.dtype)


def _same_label_pairs(labels: Tensor, ref_labels: Tensor | None) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Index form of the label masks: ``(rows, cols)`` of every same-label entry (diagonal included when square)
    and ``(pos_rows, pos_cols)`` of the positive pairs (the diagonal removed by index when square)."""
    square = ref_labels is None or ref_labels is labels
    ref = labels if ref_labels is None else ref_labels
    rows, cols = torch.nonzero(labels[:, None] == ref[None, :], as_tuple=True)
    if not square:
        return rows, cols, rows, cols
    off = rows != cols
    return rows, cols, rows[off], cols[off]


def _softplus_grad(x: Tensor) -> Tensor:
    """``d softplus(x)/dx = σ(x)``, taken as 1 above 20 as ``torch.nn.functional.softplus``'s own backward does."""
    return torch.where(x > 20, torch.ones_like(x), torch.sigmoid(x))


class _MultiSimilarity(torch.autograd.Function):
    """MS loss forward and its closed-form backward (the GPW weights ``w⁺, w⁻`` of the paper, Sec. 5.2).

    One dense ``m×R`` buffer holds ``e^{β(S_ik − max_k S_ik)}`` over the (mined) negatives; positives, a few per row
    in a P×K batch, are handled as an index list. The row shifts of the log-sum-exp are the mining thresholds
    themselves (``max`` over negatives, ``min`` over positives): whenever a row keeps any mined pair, its extreme
    pair is kept too, so the shift is exactly the max that ``torch.logsumexp`` would subtract.
    """

    @staticmethod
    def forward(ctx, sim: Tensor, labels: Tensor, ref_labels: Tensor | None, alpha: float, beta: float, lam: float,
                epsilon: float | None) -> Tensor:
        m = sim.shape[0]
        s = sim.detach()
        rows, cols, prow, pcol = _same_label_pairs(labels, ref_labels)
        inf = float("inf")
        # negatives: every entry whose label differs; same-label entries (and the diagonal) are set to -inf
        e_neg = s.clone()
        e_neg[rows, cols] = -inf
        max_neg = e_neg.amax(dim=1, keepdim=True)  # -inf for a row without negatives
        pos_val = s[prow, pcol]
        min_pos = torch.full((m,), inf, dtype=s.dtype, device=s.device).scatter_reduce_(
            0, prow, pos_val, reduce="amin", include_self=True)  # +inf for a row without positives
        shift_n = torch.where(torch.isfinite(max_neg), max_neg, torch.zeros_like(max_neg))
        e_neg.sub_(shift_n).mul_(beta).exp_()  # in [0, 1]; exactly 0 off the negatives
        if epsilon is not None:  # same comparisons as mslib.mining.mine_ms_pairs, so the same pairs are kept
            e_neg.mul_(s + epsilon > min_pos[:, None])
            keep_pos = pos_val - epsilon < max_neg[prow, 0]
        else:
            keep_pos = torch.ones_like(pos_val, dtype=torch.bool)
        shift_p = torch.where(torch.isfinite(min_pos), min_pos, torch.zeros_like(min_pos))
        e_pos = torch.exp(alpha * (shift_p[prow] - pos_val)) * keep_pos  # finite: min_pos <= pos_val
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
            return None, None, None, None, None, None, None
        e_neg, c_n, prow, pcol, w_pos = ctx.saved_tensors
        grad = e_neg * (c_n * grad_out)[:, None]  # w⁻ (zero off the mined negatives)
        grad[prow, pcol] = -(w_pos * grad_out)  # −w⁺ on the positives (disjoint from the negatives)
        return grad, None, None, None, None, None, None


def multi_similarity(
    sim: Tensor, labels: Tensor, ref_labels: Tensor | None = None, *, alpha: float, beta: float, lam: float,
    epsilon: float | None,
) -> Tensor:
    """Multi-Similarity loss (Wang et al. 2019, Sec. 5), with the paper's pair mining (Sec. 5.1) when ``epsilon``.

    ``L = (1/m) Σ_i {(1/α) log[1 + Σ_{k∈P̃_i} e^{−α(S_ik − λ)}] + (1/β) log[1 + Σ_{k∈Ñ_i} e^{β(S_ik − λ)}]}``,
    ``P̃_i, Ñ_i`` the mined pairs (all pairs for ``epsilon=None``). An anchor with no (mined) positive or no
    (mined) negative contributes 0 but counts in ``m``, as in the official code; the result stays in the graph.
    Presets: ``MS_PRESETS["paper"]``, ``MS_PRESETS["official"]``. The backward pass is the closed form (the GPW
    weights, :func:`mslib.gpw.multi_similarity_weights`); it is checked against autograd in
    ``tests/test_losses_fast.py``. :func:`multi_similarity_autograd` is the plain masked-log-sum-exp version.
    """
    check_sim(sim, labels, ref_labels)
    if alpha <= 0 or beta <= 0:
        return multi_similarity_autograd(sim, labels, ref_labels, alpha=alpha, beta=beta, lam=lam, epsilon=epsilon)
    return _MultiSimilarity.apply(sim, labels, ref_labels, float(alpha), float(beta), float(lam), epsilon)


def multi_similarity_autograd(
    sim: Tensor, labels: Tensor, ref_labels: Tensor | None = None, *, alpha: float, beta: float, lam: float,
    epsilon: float | None,
) -> Tensor:
    """:func:`multi_similarity` written with autograd-tracked masked log-sum-exp (the reference for the fast path)."""
    check_sim(sim, labels, ref_labels)
    pos, neg = pair_masks(labels, ref_labels)
    if epsilon is not None:
        pos, neg = mine_ms_pairs(sim, pos, neg, epsilon=epsilon)
    pos_term = _masked_lse(-alpha * (sim - lam), pos, add_one=True) / alpha
    neg_term = _masked_lse(beta * (sim - lam), neg, add_one=True) / beta
    valid = pos.any(dim=1) & neg.any(dim=1)
    per = torch.where(valid, pos_term + neg_term, torch.zeros_like(pos_term))
    return per.sum() / sim.shape[0]


LOSSES: dict[str, Callable[..., Tensor]] = {
    "contrastive": contrastive,
    "triplet": triplet,
    "lifted_structure": lifted_structure,
    "generalized_lifted_structure": generalized_lifted_structure,
    "binomial_deviance": binomial_deviance,
    "npair": npair,
    "multi_similarity": multi_similarity,
}


class PairLoss(torch.nn.Module):
    """``forward(embeddings, labels, ref_embeddings=None, ref_labels=None)``: cosine similarities, then the loss.

    With ``ref_embeddings`` (a cross-batch memory, or embeddings all-gathered across GPUs) ``sim`` is
    query × reference and ``ref_labels`` is required; the diagonal is then not excluded. With ``ms_mining=ε`` the
    loss sees only the pairs the MS paper's mining rule keeps (Sec. 5.1): the "mining only" ablations.
    """

    def __init__(self, name: str, fn: Callable[..., Tensor], ms_mining: float | None = None, **hparams: Any) -> None:
        super().__init__()
        self.name, self.fn, self.ms_mining, self.hparams = name, fn, ms_mining, hparams

    def forward(
        self, embeddings: Tensor, labels: Tensor, ref_embeddings: Tensor | None = None,
        ref_labels: Tensor | None = None,
    ) -> Tensor:
        check_embeddings(embeddings)
        if (ref_embeddings is None) != (ref_labels is None):
            raise ValueError("pass ref_embeddings and ref_labels together")
        if labels.dim() != 1 or labels.shape[0] != embeddings.shape[0]:
            raise ValueError(f"labels must be 1-D of length {embeddings.shape[0]}, got shape {tuple(labels.shape)}")
        if ref_embeddings is None:
            sim = cosine(embeddings)
        else:
            check_embeddings(ref_embeddings, "ref_embeddings")
            sim = cosine(embeddings, ref_embeddings)
        if self.ms_mining is None:
            return self.fn(sim, labels, ref_labels, **self.hparams)
        check_sim(sim, labels, ref_labels)
        pairs = ms_pair_mask(sim, labels, ref_labels, epsilon=self.ms_mining)
        return self.fn(sim, labels, ref_labels, pairs=pairs, **self.hparams)

    def extra_repr(self) -> str:
        mining = [] if self.ms_mining is None else [f"ms_mining={self.ms_mining}"]
        return ", ".join([self.name, *mining, *(f"{k}={v}" for k, v in self.hparams.items())])


def build_loss(name: str, *, ms_mining: float | None = None, **hparams: Any) -> torch.nn.Module:
    """The module for ``LOSSES[name]``; ``multi_similarity`` also accepts ``preset="paper"|"official"``.

    ``ms_mining=ε`` restricts a loss with a ``pairs`` argument to the MS-mined pairs (MS itself mines through its
    own ``epsilon``).
    """
    if name not in LOSSES:
        raise ValueError(f"unknown loss {name!r}; choose one of {', '.join(LOSSES)}")
    if "preset" in hparams:
        if name != "multi_similarity":
            raise ValueError("only multi_similarity has presets")
        preset = hparams.pop("preset")
        if preset not in MS_PRESETS:
            raise ValueError(f"unknown preset {preset!r}; choose one of {', '.join(MS_PRESETS)}")
        hparams = {**MS_PRESETS[preset], **hparams}
    if ms_mining is not None and "pairs" not in inspect.signature(LOSSES[name]).parameters:
        hint = " (multi_similarity mines through its own epsilon)" if name == "multi_similarity" else ""
        raise ValueError(f"{name} takes no mined pairs, so ms_mining does not apply{hint}")
    return PairLoss(name, LOSSES[name], ms_mining=ms_mining, **hparams)
