"""General Pair Weighting (GPW, Wang et al. 2019, Sec. 3): a pair-based loss is a pair-weighting scheme.

By the chain rule ``∂L/∂θ = Σ_ij (∂L/∂S_ij) (∂S_ij/∂θ)`` (MS paper, Sec. 3), so training with ``L`` is training
with the weighted sum ``Σ_ij w_ij S_ij`` whose weights ``w_ij = |∂L/∂S_ij|`` are frozen at the current ``S``.
:func:`pair_weights` finds them by autograd; :func:`closed_form_weights` gives each loss's derivation (for the MS
loss the paper's eqs. 13-14), the function its row of :data:`mslib.losses.LOSS_SPECS` names, so the book can show
that the two agree. Closed forms build ``m×R×R`` tensors where it keeps them readable: they are for checking and
plotting small batches, not for training.
The derivations themselves, by SymPy on a symbolic batch, and the proof that they equal these closed forms:
:mod:`mslib.symbolic`; the weights on real training batches: :mod:`mslib.weight_trace`.
Chapters: ``01_gpw``, ``02_pair_losses``, ``03_multi_similarity``; their figures are drawn by :mod:`mslib.viz`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any, NamedTuple

import numpy as np
import torch
from torch import Tensor

from mslib.losses import LOSS_SPECS, LossSpec, loss_spec, multi_similarity
from mslib.mining import ms_pair_mask, restrict, triplet_mask
from mslib.proxy_losses import check_proxy_sim
from mslib.similarity import check_sim, pair_masks, reference_is_batch

__all__ = [
    "PairWeights", "closed_form_proxy_weights", "closed_form_weights",
    "ms_summary", "pair_weights", "proxy_similarity_dependence", "proxy_weights", "similarity_dependence",
    "surrogate_gap", "table1_comparison", "weight_sweep",
]


class PairWeights(NamedTuple):
    """``pos``/``neg``: ``|∂L/∂S_ij|`` on positive/negative pairs (0 elsewhere); ``grad``: signed ``∂L/∂S``."""

    pos: Tensor
    neg: Tensor
    grad: Tensor


def _split(grad: Tensor, labels: Tensor, ref_labels: Tensor | None) -> PairWeights:
    pos, neg = pair_masks(labels, ref_labels)
    zero = torch.zeros_like(grad)
    return PairWeights(torch.where(pos, grad.abs(), zero), torch.where(neg, grad.abs(), zero), grad)


def pair_weights(
    loss_fn: str | Callable[..., Tensor], sim: Tensor, labels: Tensor, ref_labels: Tensor | None = None,
    **hparams: Any,
) -> PairWeights:
    """GPW weights by autograd: ``w_ij = |∂L/∂S_ij|`` of ``loss_fn(sim, labels, ref_labels, **hparams)`` (a pair
    loss's name or function)."""
    fn = _spec(loss_fn, pair=True).fn if isinstance(loss_fn, str) else loss_fn
    s = sim.detach().clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(fn(s, labels, ref_labels, **hparams), s)
    return _split(grad, labels, ref_labels)


def _spec(name: str, pair: bool) -> LossSpec:
    """The row of loss ``name``, refused (``ValueError``) unless it is a pair loss (``pair``) or a proxy one."""
    spec = loss_spec(name)
    if (spec.kind == "pair") != pair:
        raise ValueError(f"{name} is a {spec.kind} loss: use {'proxy' if pair else 'pair'}_weights")
    return spec


def _closed_form(name: str, pair: bool) -> Callable[..., PairWeights]:
    """The closed-form weights function that loss ``name``'s row names (a function of this module)."""
    spec = LOSS_SPECS.get(name)
    if spec is None or spec.closed_form is None or (spec.kind == "pair") != pair:
        known = [n for n, s in LOSS_SPECS.items() if s.closed_form is not None and (s.kind == "pair") == pair]
        why = f" ({spec.no_closed_form})" if spec is not None and spec.no_closed_form else ""
        raise ValueError(f"no closed form for {name!r}{why}; known: {', '.join(known)}")
    return globals()[spec.closed_form]


def _rows(sim: Tensor) -> Tensor:
    return torch.tensor(float(sim.shape[0]), dtype=sim.dtype)


def contrastive_weights(sim, labels, ref_labels=None, *, pos_margin=1.0, neg_margin=0.5, pairs=None):
    """``w⁺ = [S_ij < pos_margin]/m``, ``w⁻ = [S_ij > neg_margin]/m``: a pair counts fully or not at all."""
    pos, neg = _masks(labels, ref_labels, pairs)
    m = _rows(sim)
    grad = -(pos & (sim < pos_margin)).to(sim.dtype) / m + (neg & (sim > neg_margin)).to(sim.dtype) / m
    return _split(grad, labels, ref_labels)


def _masks(labels, ref_labels, pairs):
    return restrict(pair_masks(labels, ref_labels), pairs)


def triplet_weights(sim, labels, ref_labels=None, *, margin=0.1, mode="all", reduction="nonzero", pairs=None):
    """Each active triplet ``(a,p,n)`` adds ``1/T`` to ``w⁻_an`` and to ``w⁺_ap``; ``T`` is set by ``reduction``."""
    t = triplet_mask(sim, labels, ref_labels, mode=mode, margin=margin, pairs=pairs)
    violation = sim[:, None, :] - sim[:, :, None] + margin  # [a, p, n] = S_an − S_ap + margin
    active = (t & (violation > 0)).to(sim.dtype)
    count = {"nonzero": active.sum(), "mean": t.sum().to(sim.dtype), "sum": torch.ones((), dtype=sim.dtype)}
    total = count[reduction].clamp(min=1)
    grad = (active.sum(dim=1) - active.sum(dim=2)) / total
    return _split(grad, labels, ref_labels)


def quadruplet_weights(sim, labels, ref_labels=None, *, margin=0.1, margin2=0.05, pairs=None):
    """The triplet term's weights (``reduction="mean"``) plus, per active quadruplet ``(a,p,l,k)``, ``1/T₂`` on
    ``w⁺_ap`` and on ``w⁻_lk``: the second term weights a negative pair by how many positive pairs it beats."""
    first = triplet_weights(sim, labels, ref_labels, margin=margin, reduction="mean", pairs=pairs).grad
    pos, neg = _masks(labels, ref_labels, pairs)
    ref = labels if ref_labels is None else ref_labels
    away = (labels[None, :] != labels[:, None])[:, :, None] & (ref[None, None, :] != labels[:, None, None])  # [a,l,k]
    quad = pos[:, :, None, None] & (neg[None] & away)[:, None]  # [a, p, l, k]
    active = (quad & (sim[None, None] - sim[:, :, None, None] + margin2 > 0)).to(sim.dtype)
    t2 = quad.sum().to(sim.dtype).clamp(min=1)
    return _split(first + (active.sum(dim=(0, 1)) - active.sum(dim=(2, 3))) / t2, labels, ref_labels)


def lifted_structure_weights(sim, labels, ref_labels=None, *, margin=1.0, pairs=None):
    """``w⁺_ij = [J_ij]_+/Q``; ``w⁻_ik = e^{S_ik} Σ_{j∈P_i} ([J_ij]_+ + [J_ji]_+)/(Q Z_ij)`` (square ``S``)."""
    pos, neg = _masks(labels, ref_labels, pairs)
    e = torch.where(neg, sim.exp(), torch.zeros_like(sim))
    s = e.sum(dim=1)
    square = reference_is_batch(labels, ref_labels)
    z = s[:, None] + s[None, :] if square else s[:, None].expand_as(sim)
    q = pos.sum().to(sim.dtype).clamp(min=1)
    r = torch.where(pos, torch.relu(torch.log(z) + margin - sim), torch.zeros_like(sim))
    back = (r + r.T) if square else r
    coeff = torch.where(pos, back / z, torch.zeros_like(sim)).sum(dim=1, keepdim=True) / q
    grad = -r / q + e * coeff
    return _split(grad, labels, ref_labels)


def binomial_deviance_weights(sim, labels, ref_labels=None, *, alpha=2.0, beta=50.0, lam=0.5, pairs=None):
    """``w⁺ = α σ(α(λ−S_ij)) / (m|P_i|)``, ``w⁻ = β σ(β(S_ij−λ)) / (m|N_i|)``: each pair by its own S only."""
    pos, neg = _masks(labels, ref_labels, pairs)
    m, dt = _rows(sim), sim.dtype
    wp = alpha * torch.sigmoid(alpha * (lam - sim)) / pos.sum(1, keepdim=True).clamp(min=1).to(dt) / m
    wn = beta * torch.sigmoid(beta * (sim - lam)) / neg.sum(1, keepdim=True).clamp(min=1).to(dt) / m
    grad = torch.where(neg, wn, torch.zeros_like(sim)) - torch.where(pos, wp, torch.zeros_like(sim))
    return _split(grad, labels, ref_labels)


def generalized_lifted_structure_weights(sim, labels, ref_labels=None, *, margin=1.0, scale=1.0, pairs=None):
    """For an anchor with a positive hinge: ``w⁺_ik = e^{−sS_ik}/(m Σ_{l∈P_i} e^{−sS_il})``,
    ``w⁻_ik = e^{sS_ik}/(m Σ_{l∈N_i} e^{sS_il})``: a softmax over the anchor's negatives (N), none over its own S
    (``s = scale``; the loss's ``1/s`` cancels the ``s`` of the chain rule)."""
    pos, neg = _masks(labels, ref_labels, pairs)
    m, zero = _rows(sim), torch.zeros_like(sim)
    big = torch.tensor(torch.finfo(sim.dtype).max, dtype=sim.dtype)
    sim = scale * sim
    margin = scale * margin
    lse_p = torch.logsumexp(torch.where(pos, margin - sim, -big), dim=1)
    lse_n = torch.logsumexp(torch.where(neg, sim, -big), dim=1)
    lse_p = torch.where(pos.any(1), lse_p, torch.zeros_like(lse_p))  # an empty set's term is 0 (PML's convention)
    lse_n = torch.where(neg.any(1), lse_n, torch.zeros_like(lse_n))
    active = (lse_p + lse_n > 0)[:, None]
    wp = torch.where(pos & active, torch.exp(margin - sim - lse_p[:, None]), zero) / m
    wn = torch.where(neg & active, torch.exp(sim - lse_n[:, None]), zero) / m
    return _split(wn - wp, labels, ref_labels)


def npair_weights(sim, labels, ref_labels=None, *, scale=1.0, mode="mc", pairs=None):
    """With ``r_ipn = e^{s(S_in−S_ip)}`` and ``z_ip = Σ_{n∈N_i} r_ipn``, ``Q`` the (anchor, positive) pairs:
    ``mc``: ``w⁺_ip = s z_ip/((1+z_ip)Q)``, ``w⁻_in = s Σ_p r_ipn/((1+z_ip)Q)`` (a softmax over the negatives);
    ``ovo``: ``w⁺_ip = s Σ_n σ_ipn/Q``, ``w⁻_in = s Σ_p σ_ipn/Q``, ``σ_ipn = r_ipn/(1+r_ipn)`` (each pair alone)."""
    pos, neg = _masks(labels, ref_labels, pairs)
    q = pos.sum().to(sim.dtype).clamp(min=1)
    ratio = torch.exp(scale * (sim[:, None, :] - sim[:, :, None])) * (pos[:, :, None] & neg[:, None, :])  # [i,p,n]
    if mode == "ovo":
        sig = ratio / (1 + ratio)
        wp, wn = scale * sig.sum(dim=2) / q, scale * sig.sum(dim=1) / q
        return _split(torch.where(neg, wn, torch.zeros_like(sim)) - torch.where(pos, wp, torch.zeros_like(sim)),
                      labels, ref_labels)
    z = ratio.sum(dim=2)
    wp = torch.where(pos, scale * z / (1 + z), torch.zeros_like(sim)) / q
    wn = scale * (ratio / (1 + z)[:, :, None]).sum(dim=1) / q
    return _split(wn - wp, labels, ref_labels)


def multi_similarity_weights(sim, labels, ref_labels=None, *, alpha, beta, lam, epsilon, pairs=None):
    """The MS paper's weights (Sec. 5.2) over mined pairs ``P̃_i, Ñ_i`` (by ``epsilon``, or ``pairs``), divided by ``m``:

    ``w⁺_ij = 1 / (e^{α(S_ij−λ)} + Σ_{k∈P̃_i} e^{α(S_ij−S_ik)})``,
    ``w⁻_ij = 1 / (e^{β(λ−S_ij)} + Σ_{k∈Ñ_i} e^{β(S_ik−S_ij)})``.
    """
    check_sim(sim, labels, ref_labels)
    if epsilon is None:
        pos, neg = _masks(labels, ref_labels, pairs)
    else:
        pos, neg = ms_pair_mask(sim, labels, ref_labels, epsilon=epsilon)
    valid = (pos.any(1) & neg.any(1))[:, None]
    m = _rows(sim)
    diff = sim[:, :, None] - sim[:, None, :]  # [i, j, k] = S_ij − S_ik
    sum_p = (torch.exp(alpha * diff) * pos[:, None, :]).sum(dim=2)
    sum_n = (torch.exp(-beta * diff) * neg[:, None, :]).sum(dim=2)
    wp = 1 / (torch.exp(alpha * (sim - lam)) + sum_p) / m
    wn = 1 / (torch.exp(beta * (lam - sim)) + sum_n) / m
    zero = torch.zeros_like(sim)
    grad = torch.where(neg & valid, wn, zero) - torch.where(pos & valid, wp, zero)
    return _split(grad, labels, ref_labels)


def closed_form_weights(
    name: str, sim: Tensor, labels: Tensor, ref_labels: Tensor | None = None, **hparams: Any
) -> PairWeights:
    """The derived (not autograd) ``PairWeights`` of pair loss ``name``: the function its row of
    :data:`mslib.losses.LOSS_SPECS` names (``closed_form``)."""
    weights = _closed_form(name, pair=True)
    check_sim(sim, labels, ref_labels)
    return weights(sim.detach(), labels, ref_labels, **hparams)


# --- sample–proxy weights: S is B × C (embeddings × proxies), the positive pair of sample i is (i, y_i) --------

def _split_proxy(grad: Tensor, labels: Tensor) -> PairWeights:
    pos = torch.nn.functional.one_hot(labels, grad.shape[1]).bool()
    zero = torch.zeros_like(grad)
    return PairWeights(torch.where(pos, grad.abs(), zero), torch.where(~pos, grad.abs(), zero), grad)


def proxy_weights(loss_fn: str | Callable[..., Tensor], sim: Tensor, labels: Tensor, **hparams: Any) -> PairWeights:
    """Sample–proxy weights by autograd: ``w_ic = |∂L/∂S_ic|`` of a proxy loss (``pos``: ``c = y_i``)."""
    fn = _spec(loss_fn, pair=False).fn if isinstance(loss_fn, str) else loss_fn
    s = sim.detach().clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(fn(s, labels, **hparams), s)
    return _split_proxy(grad, labels)


def proxy_anchor_weights(sim: Tensor, labels: Tensor, *, margin: float = 0.1, alpha: float = 32.0) -> PairWeights:
    """Proxy-Anchor (Kim et al. 2020): per proxy ``c`` a softmax over the batch, with a 1 in the denominator:

    ``w⁺_ic = α e^{−α(S_ic−δ)} / (|P⁺| (1 + Σ_{j∈X_c⁺} e^{−α(S_jc−δ)}))``,
    ``w⁻_ic = α e^{α(S_ic+δ)} / (C (1 + Σ_{j∈X_c⁻} e^{α(S_jc+δ)}))``: each weight uses its own ``S`` and the
    other samples' similarities to the same proxy.
    """
    n_classes = sim.shape[1]
    pos = torch.nn.functional.one_hot(labels, n_classes).bool()
    zero = torch.zeros_like(sim)
    e_pos = torch.where(pos, torch.exp(-alpha * (sim - margin)), zero)
    e_neg = torch.where(~pos, torch.exp(alpha * (sim + margin)), zero)
    n_pos = pos.any(dim=0).sum().clamp(min=1).to(sim.dtype)
    wp = alpha * e_pos / (1 + e_pos.sum(dim=0, keepdim=True)) / n_pos
    wn = alpha * e_neg / (1 + e_neg.sum(dim=0, keepdim=True)) / n_classes
    return _split_proxy(wn - wp, labels)


def proxy_nca_weights(sim: Tensor, labels: Tensor, *, softmax_scale: float = 1.0) -> PairWeights:
    """Proxy-NCA (PML's form): with ``p_ic = softmax_c(2s S_ic)``, ``w⁺_ii = 2s(1 − p_{i y_i})/B`` and
    ``w⁻_ic = 2s p_ic/B``: a softmax over the sample's proxies, so every weight sees all of its row."""
    pos = torch.nn.functional.one_hot(labels, sim.shape[1]).to(sim.dtype)
    prob = torch.softmax(2 * softmax_scale * sim, dim=1)
    return _split_proxy(2 * softmax_scale * (prob - pos) / sim.shape[0], labels)


def closed_form_proxy_weights(name: str, sim: Tensor, labels: Tensor, **hparams: Any) -> PairWeights:
    """The derived sample–proxy ``PairWeights`` of proxy loss ``name``: the function its row of
    :data:`mslib.losses.LOSS_SPECS` names (``closed_form``)."""
    weights = _closed_form(name, pair=False)
    check_proxy_sim(sim, labels)
    return weights(sim.detach(), labels, **hparams)


def proxy_similarity_dependence(
    name: str, sim: Tensor, labels: Tensor, *, deltas: Sequence[float] = (-0.3, -0.1, 0.1, 0.3), tol: float = 1e-6,
    **hparams: Any,
) -> dict[str, bool]:
    """Which similarities a **negative** sample–proxy weight ``w⁻_ic`` of proxy loss ``name`` uses (by perturbation).

    The probed weight is the largest ``w⁻_ic``. ``S``: it changes when every similarity shifts by the same δ (the
    pair's own S against a fixed threshold, as :func:`similarity_dependence`); ``own``: it changes when its own
    ``S_ic`` alone moves (a softmax weight does, through its relation to the others, while ``S`` stays "no"); along
    the sample's row, ``N-row`` (another negative proxy ``S_id``) and ``P-row`` (its own proxy ``S_{i y_i}``); along
    the proxy's column, ``N-col`` (a sample of another class, ``S_jc``) and ``P-col`` (a sample of class ``c``).
    Every entry of each kind is moved by every δ (one entry alone can be too far from the others to move the weight
    beyond ``tol``); "changes": by more than ``tol`` × the weight itself. The same keys, read off the
    derived formulas: :func:`mslib.symbolic.uses_proxy`.
    """
    check_proxy_sim(sim, labels)
    sim = sim.detach()
    base = proxy_weights(name, sim, labels, **hparams).neg
    i, c = divmod(int(base.argmax()), sim.shape[1])
    y = labels.tolist()
    probes = {
        "N-row": [(i, d) for d in range(sim.shape[1]) if d not in (c, y[i])],
        "P-row": [(i, y[i])],
        "N-col": [(j, c) for j in range(len(y)) if j != i and y[j] != c],
        "P-col": [(j, c) for j in range(len(y)) if y[j] == c],
    }

    def changes(s: Tensor) -> bool:
        return bool((proxy_weights(name, s, labels, **hparams).neg[i, c] - base[i, c]).abs() > tol * base[i, c])

    out = {"S": any(changes(sim + d) for d in deltas), "own": any(changes(_moved(sim, (i, c), d)) for d in deltas)}
    for key, entries in probes.items():
        out[key] = any(changes(_moved(sim, e, d)) for e in entries for d in deltas)
    return out


def _moved(sim: Tensor, entry: tuple[int, int], delta: float) -> Tensor:
    out = sim.clone()
    out[entry] += delta
    return out


def similarity_dependence(
    name: str, sim: Tensor, labels: Tensor, *, deltas: Sequence[float] = (-0.3, -0.1, 0.1, 0.3),
    max_probes: int = 3, tol: float = 1e-9, **hparams: Any,
) -> dict[str, bool]:
    """Which similarities the **negative**-pair weights ``w⁻_ij`` of loss ``name`` use, found by perturbation.

    - ``S`` (self): some ``w⁻_ij`` changes when every similarity is shifted by the same δ (differences unchanged);
    - ``N`` (negative-relative): some ``w⁻_ij`` changes when another negative ``S_ik`` of anchor ``i`` changes;
    - ``P`` (positive-relative): some ``w⁻_ij`` changes when a positive ``S_ik`` of anchor ``i`` changes.
    Weights are autograd weights (:func:`pair_weights`); "changes" means by more than ``tol`` × the largest weight.
    """
    check_sim(sim, labels)
    sim = sim.detach()
    base = pair_weights(name, sim, labels, **hparams).neg
    scale = tol * max(float(base.abs().max()), 1e-300)
    pos, neg = pair_masks(labels)

    def changed(new: Tensor, row: int | None = None, skip: int | None = None) -> bool:
        diff = (new - base).abs()
        if row is not None:
            diff = diff[row].clone()
            if skip is not None:
                diff[skip] = 0
        return bool(diff.max() > scale)

    out = {"S": any(changed(pair_weights(name, sim + d, labels, **hparams).neg) for d in deltas)}
    for key, mask in (("N", neg), ("P", pos)):
        found = False
        for i in range(sim.shape[0]):
            for k in torch.nonzero(mask[i]).flatten()[:max_probes].tolist():
                for d in deltas:
                    s = sim.clone()
                    s[i, k] += d
                    found = changed(pair_weights(name, s, labels, **hparams).neg, i, k)
                    if found:
                        break
                if found:
                    break
            if found:
                break
        out[key] = found
    return out


def table1_comparison(
    measured: Mapping[str, Mapping[str, bool]], paper_rows: Mapping[str, str | None],
    paper: Mapping[str, Mapping[str, bool]], derived: Mapping[str, Mapping[str, bool]] | None = None,
) -> Any:
    """The measured S/N/P table beside the paper's Table 1 (chapter ``02_pair_losses``).

    ``measured``: per row label, :func:`similarity_dependence`'s answer; ``paper_rows``: the label's key in
    ``paper`` (``mslib.paper.PAPER_TABLE1``), or ``None`` for a row the paper does not have. Columns: the
    measured ``S``, ``N``, ``P``, the paper's ``paper S/N/P`` and ``agrees`` ("yes"/"no"; "–" without a paper
    row). Every label needs a ``paper_rows`` entry and every named key must exist in ``paper``. ``derived``
    (optional, per label: :func:`mslib.symbolic.uses` of the derived weight) adds ``derived S/N/P`` and
    ``derived = measured``.
    """
    import pandas as pd

    missing = [label for label in measured if label not in paper_rows]
    unknown = [key for key in paper_rows.values() if key is not None and key not in paper]
    if missing or unknown:
        raise ValueError(f"table1_comparison: rows without a paper_rows entry {missing}; "
                         f"keys not in the paper's table {unknown}")
    yes = {True: "yes", False: "no"}
    rows = {}
    for label, got in measured.items():
        key = paper_rows[label]
        row = {c: yes[bool(got[c])] for c in "SNP"}
        ref = paper.get(key) if key is not None else None
        row.update({f"paper {c}": yes[bool(ref[c])] if ref else "–" for c in "SNP"})
        row["agrees"] = "–" if ref is None else yes[all(bool(got[c]) == bool(ref[c]) for c in "SNP")]
        if derived is not None:
            row.update({f"derived {c}": yes[bool(derived[label][c])] for c in "SNP"})
            row["derived = measured"] = yes[all(bool(derived[label][c]) == bool(got[c]) for c in "SNP")]
        rows[label] = row
    return pd.DataFrame.from_dict(rows, orient="index")


def weight_sweep(
    name: str, sim: Tensor, labels: Tensor, pair: tuple[int, int], moved: tuple[int, int], values: Sequence[float],
    **hparams: Any,
) -> np.ndarray:
    """``|∂L/∂S|`` at ``pair`` while ``S[moved]`` takes each of ``values`` (``moved == pair``: its own S)."""
    out = []
    for v in values:
        s = sim.detach().clone()
        s[moved] = v
        out.append(float(pair_weights(name, s, labels, **hparams).grad[pair].abs()))
    return np.asarray(out)


def ms_summary(sim: Tensor, labels: Tensor, **hparams: Any) -> dict[str, float]:
    """Loss value, fraction of positive/negative pairs mined, and total positive/negative weight of an MS batch."""
    pos, neg = pair_masks(labels)
    eps = hparams.get("epsilon")
    kept = ms_pair_mask(sim, labels, epsilon=eps) if eps is not None else (pos, neg)
    w = pair_weights("multi_similarity", sim, labels, **hparams)
    return {
        "loss": float(multi_similarity(sim, labels, **hparams)),
        "positives mined": float(kept[0].sum() / pos.sum()),
        "negatives mined": float(kept[1].sum() / neg.sum()),
        "total w+": float(w.pos.sum()),
        "total w-": float(w.neg.sum()),
    }


def surrogate_gap(name: str, x: Tensor, labels: Tensor, **hparams: Any) -> float:
    """``max |∇_x L − ∇_x Σ_ij w̃_ij S_ij|`` at embeddings ``x``, ``S = cosine(x)``, with ``w̃`` the **closed-form**
    signed weights of :func:`closed_form_weights` (``−w⁺`` on positives, ``+w⁻`` on negatives), frozen: GPW's
    weighted-sum surrogate has the loss's gradient at the current ``S`` (chapter ``01_gpw``). Autograd runs
    through the readable loss (``multi_similarity_autograd`` for MS). Rounding-small where ``L`` is differentiable
    in ``S``; the weights must be recomputed after every step."""
    from mslib.losses import multi_similarity_autograd
    from mslib.similarity import cosine

    fn = multi_similarity_autograd if name == "multi_similarity" else loss_spec(name).fn
    x = x.detach().clone().requires_grad_(True)
    sim = cosine(x)
    (g_loss,) = torch.autograd.grad(fn(sim, labels, **hparams), x, retain_graph=True)
    w = closed_form_weights(name, sim.detach(), labels, **hparams).grad
    (g_sur,) = torch.autograd.grad((w * sim).sum(), x)
    return float((g_loss - g_sur).abs().max())
