"""Which pairs or triplets a loss sees: MS pair mining (the ε rule) and triplet mining (semi-hard, batch-hard).

Mining is kept apart from weighting (how much each pair counts, see :mod:`mslib.losses`), so the book's ablations
"weighting only / mining only / both" are one argument each. Masks are computed without gradient: they select
pairs, they carry no weight.
"""

from __future__ import annotations

import torch
from torch import Tensor

from mslib.similarity import check_sim, pair_masks

__all__ = ["ms_pair_mask", "restrict", "triplet_indices", "triplet_mask"]


@torch.no_grad()
def ms_pair_mask(
    sim: Tensor, labels: Tensor, ref_labels: Tensor | None = None, *, epsilon: float
) -> tuple[Tensor, Tensor]:
    """MS pair mining (Wang et al. 2019, Sec. 5.1): boolean ``(positive, negative)`` masks of kept pairs.

    Keep a negative ``(i, j)`` if ``S_ij + ε > min_{k∈P_i} S_ik`` and a positive ``(i, j)`` if
    ``S_ij − ε < max_{k∈N_i} S_ik``. An anchor with no positive keeps no negative and vice versa.
    """
    check_sim(sim, labels, ref_labels)
    return mine_ms_pairs(sim, *pair_masks(labels, ref_labels), epsilon=epsilon)


@torch.no_grad()
def mine_ms_pairs(sim: Tensor, pos: Tensor, neg: Tensor, *, epsilon: float) -> tuple[Tensor, Tensor]:
    """:func:`ms_pair_mask` given the label masks (no input checks)."""
    inf = torch.tensor(float("inf"), dtype=sim.dtype, device=sim.device)
    min_pos = torch.where(pos, sim, inf).amin(dim=1, keepdim=True)
    max_neg = torch.where(neg, sim, -inf).amax(dim=1, keepdim=True)
    return pos & (sim - epsilon < max_neg), neg & (sim + epsilon > min_pos)


def restrict(
    masks: tuple[Tensor, Tensor], pairs: tuple[Tensor, Tensor] | None
) -> tuple[Tensor, Tensor]:
    """Intersect ``(positive, negative)`` label masks with optional mined masks ``pairs`` (None keeps all)."""
    if pairs is None:
        return masks
    if pairs[0].shape != masks[0].shape or pairs[1].shape != masks[1].shape:
        raise ValueError(f"mined masks of shape {tuple(pairs[0].shape)} do not match sim {tuple(masks[0].shape)}")
    return masks[0] & pairs[0].bool(), masks[1] & pairs[1].bool()


@torch.no_grad()
def triplet_mask(
    sim: Tensor, labels: Tensor, ref_labels: Tensor | None = None, *, mode: str = "all", margin: float = 0.1
) -> Tensor:
    """Boolean ``(m, R, R)`` mask ``[a, p, n]`` of the triplets a triplet loss uses (similarity form).

    ``all``: every valid triplet; ``semihard`` (Schroff et al. 2015): ``0 < S_ap − S_an < margin``;
    ``hard``: per anchor only the hardest positive (min ``S_ap``) and hardest negative (max ``S_an``).
    Memory is ``m·R²`` bytes (16 MiB at 256×256); the losses themselves never build it (they sort instead).
    """
    check_sim(sim, labels, ref_labels)
    pos, neg = pair_masks(labels, ref_labels)
    valid = pos[:, :, None] & neg[:, None, :]
    if mode == "all":
        return valid
    if mode == "semihard":
        diff = sim[:, :, None] - sim[:, None, :]
        return valid & (diff > 0) & (diff < margin)
    if mode == "hard":
        p, n, ok = hardest_pairs(sim, pos, neg)
        out = torch.zeros_like(valid)
        rows = torch.arange(sim.shape[0], device=sim.device)[ok]
        out[rows, p[ok], n[ok]] = True
        return out
    raise ValueError(f"unknown triplet mode {mode!r}; choose all, semihard or hard")


def hardest_pairs(sim: Tensor, pos: Tensor, neg: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Per anchor: index of the hardest positive (lowest S), of the hardest negative (highest S), and validity."""
    inf = torch.tensor(float("inf"), dtype=sim.dtype, device=sim.device)
    p = torch.where(pos, sim.detach(), inf).argmin(dim=1)
    n = torch.where(neg, sim.detach(), -inf).argmax(dim=1)
    return p, n, pos.any(dim=1) & neg.any(dim=1)


def triplet_indices(
    sim: Tensor, labels: Tensor, ref_labels: Tensor | None = None, *, mode: str = "all", margin: float = 0.1
) -> tuple[Tensor, Tensor, Tensor]:
    """``(anchor, positive, negative)`` index tensors of :func:`triplet_mask` (same modes and memory)."""
    a, p, n = torch.nonzero(triplet_mask(sim, labels, ref_labels, mode=mode, margin=margin), as_tuple=True)
    return a, p, n
