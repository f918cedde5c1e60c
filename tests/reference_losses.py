"""Plain-loop references for every loss: one Python loop per anchor, pair, triplet or proxy, float64.

Written from the papers' formulas, independently of ``mslib.losses`` (no masks, no log-sum-exp tricks), so a
test comparing the two can fail. Slow: keep batches small (m ≤ 16). :data:`REFERENCES` keys them by loss name
(the keys of ``mslib.losses.LOSS_SPECS``; ``tests/test_loss_specs.py`` checks that every row has one).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor


def pairs(labels: Tensor, ref_labels: Tensor | None, i: int, self_index: Tensor | None = None
          ) -> tuple[list[int], list[int]]:
    """Positive and negative reference indices of anchor ``i``; its own copy (the diagonal without ``ref_labels``,
    else ``self_index[i]``, -1 for none) is no pair."""
    ref = labels if ref_labels is None else ref_labels
    own = i if ref_labels is None else (-1 if self_index is None else int(self_index[i]))
    pos, neg = [], []
    for j in range(len(ref)):
        if j == own:
            continue
        (pos if int(ref[j]) == int(labels[i]) else neg).append(j)
    return pos, neg


def contrastive(sim, labels, ref_labels=None, pos_margin=1.0, neg_margin=0.5, pair_lists=None, self_index=None):
    pair_lists = pair_lists or (lambda i: pairs(labels, ref_labels, i, self_index))
    total = sim.sum() * 0
    for i in range(sim.shape[0]):
        pos, neg = pair_lists(i)
        for j in pos:
            total = total + torch.relu(pos_margin - sim[i, j])
        for j in neg:
            total = total + torch.relu(sim[i, j] - neg_margin)
    return total / sim.shape[0]


def triplet(sim, labels, ref_labels=None, margin=0.1, mode="all", reduction="nonzero", self_index=None):
    terms = []
    for a in range(sim.shape[0]):
        pos, neg = pairs(labels, ref_labels, a, self_index)
        if mode == "hard":
            if pos and neg:
                p = min(pos, key=lambda k: float(sim[a, k].detach()))
                n = max(neg, key=lambda k: float(sim[a, k].detach()))
                terms.append(torch.relu(sim[a, n] - sim[a, p] + margin))
            continue
        for p in pos:
            for n in neg:
                gap = float((sim[a, p] - sim[a, n]).detach())
                if mode == "semihard" and not 0 < gap < margin:
                    continue
                terms.append(torch.relu(sim[a, n] - sim[a, p] + margin))
    total = sum(terms, sim.sum() * 0)
    if reduction == "sum":
        return total
    count = sum(1 for t in terms if float(t.detach()) > 0) if reduction == "nonzero" else len(terms)
    return total / max(count, 1)


def lifted_structure(sim, labels, ref_labels=None, margin=1.0, self_index=None):
    square = ref_labels is None
    losses = []
    for i in range(sim.shape[0]):
        pos, neg_i = pairs(labels, ref_labels, i, self_index)
        for j in pos:
            z = sum((torch.exp(sim[i, k]) for k in neg_i), sim.sum() * 0)
            if square:
                _, neg_j = pairs(labels, ref_labels, j)
                z = z + sum((torch.exp(sim[j, k]) for k in neg_j), sim.sum() * 0)
            if float(z.detach()) == 0:
                losses.append(sim.sum() * 0)
                continue
            losses.append(torch.relu(torch.log(z) + margin - sim[i, j]) ** 2 / 2)
    return sum(losses, sim.sum() * 0) / max(len(losses), 1)


def generalized_lifted_structure(sim, labels, ref_labels=None, margin=1.0, scale=1.0, self_index=None):
    """Per anchor ``(1/s)[log Σ_P e^{s(λ−S)} + log Σ_N e^{sS}]_+``; an empty sum's log taken as 0, mean over all
    anchors."""
    total = sim.sum() * 0
    for i in range(sim.shape[0]):
        pos, neg = pairs(labels, ref_labels, i, self_index)
        a = sim.sum() * 0
        if pos:
            a = a + torch.log(sum(torch.exp(scale * (margin - sim[i, k])) for k in pos))
        if neg:
            a = a + torch.log(sum(torch.exp(scale * sim[i, k]) for k in neg))
        total = total + torch.relu(a) / scale
    return total / sim.shape[0]


def binomial_deviance(sim, labels, ref_labels=None, alpha=2.0, beta=50.0, lam=0.5, self_index=None):
    total = sim.sum() * 0
    for i in range(sim.shape[0]):
        pos, neg = pairs(labels, ref_labels, i, self_index)
        if pos:
            total = total + sum(torch.log(1 + torch.exp(-alpha * (sim[i, j] - lam))) for j in pos) / len(pos)
        if neg:
            total = total + sum(torch.log(1 + torch.exp(beta * (sim[i, j] - lam))) for j in neg) / len(neg)
    return total / sim.shape[0]


def npair(sim, labels, ref_labels=None, scale=1.0, mode="mc", self_index=None):
    """Sohn 2016: per (anchor, positive) ``log(1 + Σ_n e^{s(S_an − S_ap)})`` (mc) or ``Σ_n log(1 + e^{...})`` (ovo)."""
    losses = []
    for i in range(sim.shape[0]):
        pos, neg = pairs(labels, ref_labels, i, self_index)
        for p in pos:
            terms = [torch.exp(scale * (sim[i, n] - sim[i, p])) for n in neg]
            if mode == "mc":
                losses.append(torch.log(1 + sum(terms, sim.sum() * 0)))
            else:
                losses.append(sum((torch.log(1 + t) for t in terms), sim.sum() * 0))
    return sum(losses, sim.sum() * 0) / max(len(losses), 1)


def quadruplet(sim, labels, ref_labels=None, margin=0.1, margin2=0.05, self_index=None):
    """Chen et al. 2017: the mean triplet term plus the mean over (a, p, l, k) of ``[S_lk − S_ap + α₂]_+``, ``(l, k)``
    a negative pair whose labels both differ from the anchor's."""
    first = triplet(sim, labels, ref_labels, margin, "all", "mean", self_index)
    ref = labels if ref_labels is None else ref_labels
    negative_pairs = [(lr, k) for lr in range(sim.shape[0]) for k in pairs(labels, ref_labels, lr, self_index)[1]]
    terms = []
    for a in range(sim.shape[0]):
        for p in pairs(labels, ref_labels, a, self_index)[0]:
            for lr, k in negative_pairs:
                if int(labels[lr]) != int(labels[a]) and int(ref[k]) != int(labels[a]):
                    terms.append(torch.relu(sim[lr, k] - sim[a, p] + margin2))
    return first + sum(terms, sim.sum() * 0) / max(len(terms), 1)


def ms_mined(sim, labels, ref_labels, i, epsilon, self_index=None):
    """Anchor ``i``'s mined positives and negatives by the paper's rule (all pairs for ``epsilon=None``)."""
    pos, neg = pairs(labels, ref_labels, i, self_index)
    if epsilon is None:
        return pos, neg
    min_pos = min((float(sim[i, k].detach()) for k in pos), default=math.inf)
    max_neg = max((float(sim[i, k].detach()) for k in neg), default=-math.inf)
    return ([j for j in pos if float(sim[i, j].detach()) - epsilon < max_neg],
            [j for j in neg if float(sim[i, j].detach()) + epsilon > min_pos])


def triplet_mined(sim, labels, i, margin, mode):
    """Anchor ``i``'s pairs in a mined triplet: ``semihard`` (``0 < S_ap − S_an < margin``) or batch-``hard``."""
    pos, neg = pairs(labels, None, i)
    s = [float(v) for v in sim[i].detach()]
    if mode == "hard":
        return ([min(pos, key=lambda k: s[k])], [max(neg, key=lambda k: s[k])]) if pos and neg else ([], [])
    return ([p for p in pos if any(0 < s[p] - s[n] < margin for n in neg)],
            [n for n in neg if any(0 < s[p] - s[n] < margin for p in pos)])


def multi_similarity(sim, labels, ref_labels=None, *, alpha, beta, lam, epsilon, pair_lists=None, self_index=None):
    """The official code's loop (``book/sources.md#src-official-loss``), self removed by index instead of by value;
    ``pair_lists(i)``: anchor ``i``'s pairs chosen by another miner (with ``epsilon=None``)."""
    pair_lists = pair_lists or (lambda i: ms_mined(sim, labels, ref_labels, i, epsilon, self_index))
    total = sim.sum() * 0
    for i in range(sim.shape[0]):
        pos, neg = pair_lists(i)
        if not pos or not neg:
            continue
        total = total + 1 / alpha * torch.log(1 + sum(torch.exp(-alpha * (sim[i, k] - lam)) for k in pos))
        total = total + 1 / beta * torch.log(1 + sum(torch.exp(beta * (sim[i, k] - lam)) for k in neg))
    return total / sim.shape[0]


# --- proxy losses: sim is samples × proxies (B × C), labels index the proxies ----------------------------------------

def proxy_anchor(sim, labels, margin=0.1, alpha=32.0):
    """Kim et al. 2020, eq. 4, one proxy at a time: classes with positives in the first mean, all in the second."""
    n, n_classes = sim.shape
    pos_total, neg_total, with_pos = sim.sum() * 0, sim.sum() * 0, 0
    for c in range(n_classes):
        members = [i for i in range(n) if int(labels[i]) == c]
        others = [i for i in range(n) if int(labels[i]) != c]
        if members:
            with_pos += 1
            pos_total = pos_total + torch.log(1 + sum(torch.exp(-alpha * (sim[i, c] - margin)) for i in members))
        if others:
            neg_total = neg_total + torch.log(1 + sum(torch.exp(alpha * (sim[i, c] + margin)) for i in others))
    return pos_total / max(with_pos, 1) + neg_total / n_classes


def proxy_nca(sim, labels, softmax_scale=1.0):
    """−log of the softmax probability of the own proxy, distances ``d² = 2 − 2S``, averaged over samples."""
    total = sim.sum() * 0
    for i in range(sim.shape[0]):
        weights = [torch.exp(-softmax_scale * (2 - 2 * sim[i, c])) for c in range(sim.shape[1])]
        total = total - torch.log(weights[int(labels[i])] / sum(weights))
    return total / sim.shape[0]


def _cross_entropy(logits, target):
    """−log(e^{logits[target]} / Σ_c e^{logits[c]}) of one sample's list of logits."""
    return -torch.log(torch.exp(logits[target]) / sum(torch.exp(v) for v in logits))


def soft_triple(sim, labels, centers_per_class=10, la=20.0, gamma=0.1, margin=0.01):
    """Qian et al. 2019: per class the softmax(S/γ)-weighted mean of its centres' S, then a margin softmax."""
    k, total = centers_per_class, sim.sum() * 0
    for i in range(sim.shape[0]):
        logits = []
        for c in range(sim.shape[1] // k):
            cols = [sim[i, c * k + j] for j in range(k)]
            z = sum(torch.exp(v / gamma) for v in cols)
            relaxed = sum(torch.exp(v / gamma) / z * v for v in cols)
            logits.append(la * (relaxed - (margin if c == int(labels[i]) else 0.0)))
        total = total + _cross_entropy(logits, int(labels[i]))
    return total / sim.shape[0]


def _margin_softmax(sim, labels, target_fn, scale, norms=None):
    total = sim.sum() * 0
    for i in range(sim.shape[0]):
        y = int(labels[i])
        s = scale * (1.0 if norms is None else norms[i])
        logits = [s * (target_fn(sim[i, c]) if c == y else sim[i, c]) for c in range(sim.shape[1])]
        total = total + _cross_entropy(logits, y)
    return total / sim.shape[0]


def arcface(sim, labels, margin=28.6, scale=64.0):
    """Deng et al. 2019: the target logit ``cos(θ + m)`` (``cos θ − m sin m`` once ``θ + m > π``), m in degrees."""
    m = math.radians(margin)

    def target(cos):
        theta = torch.acos(cos)
        return torch.cos(theta + m) if float(theta.detach()) + m <= math.pi else cos - m * math.sin(m)
    return _margin_softmax(sim, labels, target, scale)


def cosface(sim, labels, margin=0.35, scale=64.0):
    return _margin_softmax(sim, labels, lambda cos: cos - margin, scale)


def sphereface(sim, labels, margin=4, scale=1.0, norms=None):
    """Liu et al. 2017: ``ψ(θ) = (−1)^k cos(mθ) − 2k`` on ``θ ∈ [kπ/m, (k+1)π/m]``, by ``cos(m · acos S)``."""
    def target(cos):
        theta = torch.acos(cos)
        k = math.floor(float(theta.detach()) / (math.pi / margin))
        return (-1) ** k * torch.cos(margin * theta) - 2 * k
    return _margin_softmax(sim, labels, target, scale, norms)


def triplet_center(sim, labels, margin=0.1):
    """He et al. 2018 with ``D = 1 − S``: ``[D(x, c_y) + m − min_{c≠y} D(x, c)]_+``, averaged over samples."""
    total = sim.sum() * 0
    for i in range(sim.shape[0]):
        y = int(labels[i])
        others = [c for c in range(sim.shape[1]) if c != y]
        if others:
            nearest = max(others, key=lambda c: float(sim[i, c].detach()))
            total = total + torch.relu((1 - sim[i, y]) + margin - (1 - sim[i, nearest]))
    return total / sim.shape[0]


def center(sim, labels, lam=0.1, scale=16.0):
    """Wen et al. 2016 on the unit sphere: softmax over the first C columns + λ ½‖x̂ − ĉ_y‖² = λ(1 − S_{i, C+y})."""
    n_classes, total = sim.shape[1] // 2, sim.sum() * 0
    for i in range(sim.shape[0]):
        y = int(labels[i])
        total = total + _cross_entropy([scale * sim[i, c] for c in range(n_classes)], y)
        total = total + lam * (1 - sim[i, n_classes + y])
    return total / sim.shape[0]


REFERENCES = {  # loss name -> its plain loop
    "contrastive": contrastive,
    "triplet": triplet,
    "lifted_structure": lifted_structure,
    "generalized_lifted_structure": generalized_lifted_structure,
    "binomial_deviance": binomial_deviance,
    "npair": npair,
    "multi_similarity": multi_similarity,
    "quadruplet": quadruplet,
    "proxy_anchor": proxy_anchor,
    "proxy_nca": proxy_nca,
    "soft_triple": soft_triple,
    "arcface": arcface,
    "cosface": cosface,
    "sphereface": sphereface,
    "triplet_center": triplet_center,
    "center": center,
}
