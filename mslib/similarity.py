"""Cosine similarity and the positive/negative pair masks every pair-based loss starts from.

The MS paper writes ``S_ij = <f(x_i), f(x_j)>`` for L2-normalised embeddings (Wang et al., CVPR 2019, Sec. 3).
``S`` may be square (a batch against itself) or rectangular (query rows against reference columns: cross-batch
memory, or embeddings all-gathered across GPUs). Self-pairs are excluded **by index** (:func:`self_columns`: the
diagonal of a square ``S``, ``self_index`` of a rectangular one), never by value, so exact duplicates of an anchor
remain positives.
"""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = [
    "check_embeddings", "check_sim", "clustered_embeddings", "cosine", "gram", "pair_masks", "reference_is_batch",
    "self_columns",
]


def _all_finite(x: Tensor) -> bool:
    """One reduction instead of an element-wise pass; the exact check only if the sum is not finite (overflow)."""
    with torch.no_grad():
        return bool(torch.isfinite(x.sum())) or bool(torch.isfinite(x).all())


def check_embeddings(x: Tensor, name: str = "embeddings") -> None:
    """Raise ``ValueError`` unless ``x`` is a finite 2-D tensor (rows = samples)."""
    if not isinstance(x, Tensor):
        raise ValueError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    if x.dim() != 2:
        raise ValueError(f"{name} must be 2-D (samples x dimensions), got shape {tuple(x.shape)}")
    if not _all_finite(x):
        raise ValueError(f"{name} contains NaN or Inf")


class _Gram(torch.autograd.Function):
    """``x xᵀ`` whose backward is one matrix product, ``(G + Gᵀ) x``, instead of autograd's two (``G x + Gᵀ x``)."""

    @staticmethod
    def forward(ctx, x: Tensor) -> Tensor:
        ctx.save_for_backward(x)
        return x @ x.T

    @staticmethod
    def backward(ctx, grad: Tensor) -> Tensor:
        (x,) = ctx.saved_tensors
        return (grad + grad.T) @ x  # differentiable ops: double backward still works


def gram(x: Tensor) -> Tensor:
    """``x xᵀ`` (the square similarity of already normalised rows) with a one-GEMM backward."""
    return _Gram.apply(x)


def cosine(x: Tensor, y: Tensor | None = None) -> Tensor:
    """Cosine similarity ``S = x̂ ŷᵀ`` of L2-normalised rows; ``y=None`` gives the square ``x̂ x̂ᵀ``."""
    check_embeddings(x, "x")
    xn = torch.nn.functional.normalize(x, dim=1)
    if y is None:
        return gram(xn)
    check_embeddings(y, "y")
    if y.shape[1] != x.shape[1]:
        raise ValueError(f"x and y must have the same dimension, got {x.shape[1]} and {y.shape[1]}")
    return xn @ torch.nn.functional.normalize(y, dim=1).T


def check_sim(sim: Tensor, labels: Tensor, ref_labels: Tensor | None = None) -> None:
    """Raise ``ValueError`` for a non-2-D or non-finite ``sim`` or labels whose lengths do not match it."""
    if not isinstance(sim, Tensor):
        raise ValueError(f"sim must be a torch.Tensor, got {type(sim).__name__}")
    if sim.dim() != 2:
        raise ValueError(f"sim must be a 2-D similarity matrix, got shape {tuple(sim.shape)}")
    if not isinstance(labels, Tensor) or labels.dim() != 1:
        raise ValueError("labels must be a 1-D tensor")
    if labels.shape[0] != sim.shape[0]:
        raise ValueError(f"labels has length {labels.shape[0]} but sim has {sim.shape[0]} rows")
    if ref_labels is None:
        if sim.shape[0] != sim.shape[1]:
            raise ValueError(f"sim of shape {tuple(sim.shape)} is rectangular: pass ref_labels for its columns")
    else:
        if not isinstance(ref_labels, Tensor) or ref_labels.dim() != 1:
            raise ValueError("ref_labels must be a 1-D tensor")
        if ref_labels.shape[0] != sim.shape[1]:
            raise ValueError(f"ref_labels has length {ref_labels.shape[0]} but sim has {sim.shape[1]} columns")
    if not _all_finite(sim):
        raise ValueError("sim contains NaN or Inf")


def self_columns(labels: Tensor, ref_labels: Tensor | None = None, self_index: Tensor | None = None) -> Tensor:
    """The column of each query's own copy in the reference, ``-1`` for none: the one square/rectangular rule.

    Self-pairs are excluded by index, never by value or identity. With ``m`` queries and ``R`` references:

    - ``self_index`` given: it is the answer (length ``m``, each ``-1`` or a column; a copy must share its query's
      label). A cross-batch memory holding the current batch passes where each query sits in it.
    - ``ref_labels is None``: the reference is the batch itself, query ``i`` is column ``i`` (the diagonal).
    - ``R != m``: no query has a copy in the reference.
    - ``R == m`` with ``ref_labels``: ambiguous, so ``ValueError``. Equal labels do not make the reference the batch
      (N-pair's anchors × positives is square, its diagonal holds real positives); pass ``ref_labels=None``, or
      ``self_index`` (``torch.arange(m)``: the diagonal; ``torch.full((m,), -1)``: no copies).
    """
    m = labels.shape[0]
    if self_index is not None:
        return _checked_self_index(labels, ref_labels, self_index)
    if ref_labels is None:
        return torch.arange(m, device=labels.device)
    if ref_labels.shape[0] != m:
        return torch.full((m,), -1, dtype=torch.long, device=labels.device)
    raise ValueError(f"sim is square ({m} x {m}) and ref_labels is given, so which column is each query's own copy "
                     "is ambiguous: pass self_index (torch.arange(m) if the reference is the batch itself, "
                     "torch.full((m,), -1) if it holds no copies), or ref_labels=None for the batch itself")


def _checked_self_index(labels: Tensor, ref_labels: Tensor | None, self_index: Tensor) -> Tensor:
    """``self_index`` after checking its shape, range and that each copy shares its query's label."""
    ref = labels if ref_labels is None else ref_labels
    if not isinstance(self_index, Tensor) or self_index.dtype.is_floating_point or self_index.dim() != 1:
        raise ValueError("self_index must be a 1-D integer tensor (the column of each query's own copy, -1 for none)")
    if self_index.shape[0] != labels.shape[0]:
        raise ValueError(f"self_index has length {self_index.shape[0]} but there are {labels.shape[0]} queries")
    if bool(((self_index < -1) | (self_index >= ref.shape[0])).any()):
        raise ValueError(f"self_index values must be -1 or a column in [0, {ref.shape[0]})")
    own = self_index >= 0
    if bool((ref[self_index.clamp(min=0)][own] != labels[own]).any()):
        raise ValueError("self_index names a reference column whose label differs from its query's")
    return self_index.long()


def reference_is_batch(labels: Tensor, ref_labels: Tensor | None = None, self_index: Tensor | None = None) -> bool:
    """Whether the reference is the query batch itself: :func:`self_columns` is the diagonal of a square ``S``."""
    own = self_columns(labels, ref_labels, self_index)
    n_refs = labels.shape[0] if ref_labels is None else ref_labels.shape[0]
    return n_refs == labels.shape[0] and torch.equal(own, torch.arange(n_refs, device=own.device))


def pair_masks(
    labels: Tensor, ref_labels: Tensor | None = None, *, self_index: Tensor | None = None
) -> tuple[Tensor, Tensor]:
    """Boolean ``(positive, negative)`` masks, rows = queries, columns = references.

    Positives share the query's label, except the query's own copy (:func:`self_columns`: the diagonal of a square
    ``S``, ``self_index`` of a rectangular one), which is no pair; negatives have another label.
    """
    ref = labels if ref_labels is None else ref_labels
    same = labels[:, None] == ref[None, :]
    neg = ~same
    own = self_columns(labels, ref_labels, self_index)
    same &= torch.arange(ref.shape[0], device=labels.device)[None, :] != own[:, None]
    return same, neg


def clustered_embeddings(
    n_classes: int, per_class: int, dim: int, spread: float = 1.0, seed: int = 0, dtype: torch.dtype = torch.float64
) -> tuple[Tensor, Tensor]:
    """A synthetic P×K batch: class centres on the unit sphere plus Gaussian noise of scale ``spread/sqrt(dim)``.

    Returns L2-normalised ``(embeddings, labels)`` with labels ``0..n_classes-1``, each repeated ``per_class``
    times in order. Larger ``spread`` means harder, more overlapping classes.
    """
    g = torch.Generator().manual_seed(seed)
    centres = torch.nn.functional.normalize(torch.randn(n_classes, dim, generator=g, dtype=dtype), dim=1)
    labels = torch.arange(n_classes).repeat_interleave(per_class)
    noise = torch.randn(n_classes * per_class, dim, generator=g, dtype=dtype) * spread / dim**0.5
    return torch.nn.functional.normalize(centres[labels] + noise, dim=1), labels
