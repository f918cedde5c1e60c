"""Cosine similarity and the positive/negative pair masks every pair-based loss starts from.

The MS paper writes ``S_ij = <f(x_i), f(x_j)>`` for L2-normalised embeddings (Wang et al., CVPR 2019, Sec. 3).
``S`` may be square (a batch against itself) or rectangular (query rows against reference columns: cross-batch
memory, or embeddings all-gathered across GPUs). Self-pairs are excluded **by index** (the diagonal, only when the
reference is the query batch itself), never by value, so exact duplicates of an anchor remain positives.
"""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["check_embeddings", "check_sim", "clustered_embeddings", "cosine", "gram", "pair_masks"]


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


def pair_masks(labels: Tensor, ref_labels: Tensor | None = None) -> tuple[Tensor, Tensor]:
    """Boolean ``(positive, negative)`` masks, rows = queries, columns = references.

    With ``ref_labels=None`` (or ``ref_labels is labels``) the reference is the batch itself and the diagonal
    ``(i, i)`` is removed from the positives by index; a rectangular reference keeps every same-label column.
    """
    square = ref_labels is None or ref_labels is labels
    ref = labels if ref_labels is None else ref_labels
    same = labels[:, None] == ref[None, :]
    neg = ~same
    if square:
        same = same & ~torch.eye(len(labels), dtype=torch.bool, device=labels.device)
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
