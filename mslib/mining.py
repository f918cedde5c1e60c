"""Which pairs a loss sees: miners return :class:`Pairs`, boolean ``(positive, negative)`` masks over ``S``.

Mining is kept apart from weighting (how much each pair counts, see :mod:`mslib.losses`): every loss takes
``pairs=`` and every :class:`mslib.losses.PairLoss` a ``miner=``, so "MS weighting with a triplet miner" or
"contrastive with MS mining" is one argument, and a mining rule is written once, here. A miner is called like a
pytorch-metric-learning miner, ``miner(embeddings, labels)``, or on a similarity matrix, ``miner.mine(sim,
labels)``. Masks are computed without gradient: they select pairs, they carry no weight.
Chapters: ``notebooks/03_multi_similarity.ipynb`` (MS mining), ``notebooks/07_ablations.ipynb`` (mining only).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import torch
from torch import Tensor

from mslib.similarity import check_sim, cosine, pair_masks

__all__ = [
    "AllPairs", "MSMiner", "Miner", "Pairs", "TripletMarginMiner", "as_pairs", "hardest_pairs", "mine_ms_pairs",
    "ms_pair_mask", "restrict", "triplet_mask",
]


class Pairs(NamedTuple):
    """Boolean masks of the positive and negative pairs a loss may use (rows = queries, columns = references)."""

    pos: Tensor
    neg: Tensor


def mine_ms_pairs(sim: Tensor, pos: Tensor, neg: Tensor, *, epsilon: float) -> Pairs:
    """MS pair mining (Wang et al. 2019, Sec. 5.1) of the label pairs ``pos``, ``neg``.

    Keep a negative ``(i, j)`` if ``S_ij + ε > min_{k∈P_i} S_ik`` and a positive
    ``(i, j)`` if ``S_ij − ε < max_{k∈N_i} S_ik``: an anchor with no positive keeps
    no negative and vice versa. Shown in ``notebooks/03_multi_similarity.ipynb``.
    """
    inf = torch.tensor(float("inf"), dtype=sim.dtype, device=sim.device)
    min_pos = torch.where(pos, sim, inf).amin(dim=1, keepdim=True)
    max_neg = torch.where(neg, sim, -inf).amax(dim=1, keepdim=True)
    return Pairs(pos & (sim - epsilon < max_neg), neg & (sim + epsilon > min_pos))


def ms_pair_mask(
    sim: Tensor,
    labels: Tensor,
    ref_labels: Tensor | None = None,
    *,
    epsilon: float,
    self_index: Tensor | None = None,
) -> Pairs:
    """:func:`mine_ms_pairs` of the label pairs of ``sim`` (inputs checked;
    self-pairs by ``self_index``). Shown in ``notebooks/03_multi_similarity.ipynb``."""
    check_sim(sim, labels, ref_labels)
    pos, neg = pair_masks(labels, ref_labels, self_index=self_index)
    return mine_ms_pairs(sim, pos, neg, epsilon=epsilon)


def restrict(masks: tuple[Tensor, Tensor], pairs: tuple[Tensor, Tensor] | None) -> Pairs:
    """Intersect ``(positive, negative)`` label masks with optional mined masks ``pairs`` (None keeps all)."""
    if pairs is None:
        return Pairs(*masks)
    if pairs[0].shape != masks[0].shape or pairs[1].shape != masks[1].shape:
        raise ValueError(f"mined masks of shape {tuple(pairs[0].shape)} do not match sim {tuple(masks[0].shape)}")
    return Pairs(masks[0] & pairs[0].bool(), masks[1] & pairs[1].bool())


def as_pairs(pairs: tuple[Tensor, ...], shape: tuple[int, int]) -> Pairs:
    """Mined pairs as :class:`Pairs`: two boolean masks, or pytorch-metric-learning's ``(a1, p, a2, n)`` indices."""
    if len(pairs) == 4 and all(isinstance(t, Tensor) and t.dim() == 1 for t in pairs):
        a1, p, a2, n = pairs
        pos = torch.zeros(shape, dtype=torch.bool, device=a1.device)
        neg = torch.zeros(shape, dtype=torch.bool, device=a1.device)
        pos[a1, p], neg[a2, n] = True, True
        return Pairs(pos, neg)
    if len(pairs) == 2 and all(isinstance(t, Tensor) and t.shape == shape for t in pairs):
        return Pairs(pairs[0].bool(), pairs[1].bool())
    raise ValueError(f"mined pairs must be two {shape} masks (a miner's Pairs) or (anchor, positive, anchor, "
                     "negative) index tensors; triplets (a, p, n) are not a pair set: use "
                     "mslib.mining.TripletMarginMiner, which gives the pairs of the mined triplets")


class Miner:
    """A mining rule: :meth:`mine` gives the :class:`Pairs` of a similarity matrix; calling it on embeddings (the
    pytorch-metric-learning habit) mines their cosine similarities."""

    def mine(
        self, sim: Tensor, labels: Tensor, ref_labels: Tensor | None = None, *, self_index: Tensor | None = None
    ) -> Pairs:
        """The pairs of ``sim`` (query rows × reference columns) this rule keeps."""
        raise NotImplementedError

    def __call__(
        self, embeddings: Tensor, labels: Tensor, ref_embeddings: Tensor | None = None,
        ref_labels: Tensor | None = None, *, self_index: Tensor | None = None,
    ) -> Pairs:
        sim = cosine(embeddings) if ref_embeddings is None else cosine(embeddings, ref_embeddings)
        return self.mine(sim.detach(), labels, ref_labels, self_index=self_index)


@dataclass(frozen=True)
class AllPairs(Miner):
    """No mining: every positive and negative pair."""

    def mine(
        self, sim: Tensor, labels: Tensor, ref_labels: Tensor | None = None, *, self_index: Tensor | None = None
    ) -> Pairs:
        check_sim(sim, labels, ref_labels)
        return Pairs(*pair_masks(labels, ref_labels, self_index=self_index))


@dataclass(frozen=True)
class MSMiner(Miner):
    """The MS paper's pair mining with margin ``epsilon`` (:func:`mine_ms_pairs`)."""

    epsilon: float

    def mine(
        self, sim: Tensor, labels: Tensor, ref_labels: Tensor | None = None, *, self_index: Tensor | None = None
    ) -> Pairs:
        return ms_pair_mask(sim, labels, ref_labels, epsilon=self.epsilon, self_index=self_index)


@dataclass(frozen=True)
class TripletMarginMiner(Miner):
    """The pairs of mined triplets: ``semihard`` ones, ``0 < S_ap − S_an < margin`` (FaceNet), or per anchor the
    ``hard``\\ est positive and negative (batch hard). A pair is kept if it is in some mined triplet."""

    margin: float = 0.1
    mode: str = "semihard"

    def __post_init__(self) -> None:
        if self.mode not in ("semihard", "hard"):
            raise ValueError(f"unknown triplet miner mode {self.mode!r}; choose semihard or hard")

    @torch.no_grad()
    def mine(
        self, sim: Tensor, labels: Tensor, ref_labels: Tensor | None = None, *, self_index: Tensor | None = None
    ) -> Pairs:
        check_sim(sim, labels, ref_labels)
        pos, neg = pair_masks(labels, ref_labels, self_index=self_index)
        if self.mode == "hard":
            p, n, ok = hardest_pairs(sim, pos, neg)
            rows = torch.arange(sim.shape[0], device=sim.device)
            hard_pos, hard_neg = torch.zeros_like(pos), torch.zeros_like(neg)
            hard_pos[rows[ok], p[ok]], hard_neg[rows[ok], n[ok]] = True, True
            return Pairs(hard_pos, hard_neg)
        # a positive needs a negative in (S_ap − margin, S_ap); a negative a positive in (S_an, S_an + margin)
        return Pairs(pos & (_count_between(sim, neg, sim - self.margin, sim) > 0),
                     neg & (_count_between(sim, pos, sim, sim + self.margin) > 0))


def _count_between(sim: Tensor, mask: Tensor, lo: Tensor, hi: Tensor) -> Tensor:
    """Per entry ``(i, j)``: how many ``k`` in ``mask[i]`` have ``lo_ij < S_ik < hi_ij`` (by sorting each row)."""
    keys = torch.sort(torch.where(mask, sim, torch.full_like(sim, float("inf"))), dim=1).values
    below_hi = torch.searchsorted(keys, hi.contiguous(), right=False)
    up_to_lo = torch.searchsorted(keys, lo.contiguous(), right=True)
    return below_hi - up_to_lo


@torch.no_grad()
def triplet_mask(
    sim: Tensor, labels: Tensor, ref_labels: Tensor | None = None, *, mode: str = "all", margin: float = 0.1,
    pairs: tuple[Tensor, Tensor] | None = None,
) -> Tensor:
    """Boolean ``(m, R, R)`` mask ``[a, p, n]`` of the triplets a triplet loss uses (similarity form).

    ``all``: every triplet of (mined) ``pairs``; ``semihard`` (Schroff et al. 2015): ``0 < S_ap − S_an < margin``;
    ``hard``: per anchor only the hardest positive (min ``S_ap``) and hardest negative (max ``S_an``).
    Memory is ``m·R²`` bytes (16 MiB at 256×256); the losses themselves never build it (they sort instead).
    """
    check_sim(sim, labels, ref_labels)
    pos, neg = restrict(pair_masks(labels, ref_labels), pairs)
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
