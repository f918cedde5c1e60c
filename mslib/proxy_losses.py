"""Proxy and classification losses as functions of the sample–proxy similarity ``S`` (``B × C``), so GPW applies.

Pair losses (:mod:`mslib.losses`) compare a sample with other samples; these compare it with learned class
representatives (proxies, class weights, centres): ``S_ic = <x̂_i, p̂_c>``, the cosine of sample ``i`` and the
representative of class ``c``. Every loss is ``name(sim, labels, **hparams) -> scalar`` with ``labels`` in
``[0, C)``; :class:`ProxyLoss` holds the representatives as an ``nn.Parameter`` in pytorch-metric-learning 2.9's
layout, name and initialisation (so weights move across), and takes ``(embeddings, labels)`` as every
:class:`mslib.losses.PairLoss` does. Hyperparameters carry PML's constructor names and defaults.

Training: the representatives are ``loss.parameters()``; :attr:`ProxyLoss.lr_factor` is the learning-rate factor
their authors' code uses (Proxy-Anchor and SoftTriple: 100; ``book/sources.md#src-pml``), and
:func:`loss_param_groups` gives the optimizer's parameter groups. Each loss's row (its :class:`ProxySpec`, closed
form, PML class, source) is in :data:`mslib.losses.LOSS_SPECS`.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from mslib.similarity import check_embeddings, cosine

__all__ = [
    "ProxyLoss", "ProxySpec", "arcface", "center", "check_proxy_sim", "cosface", "kaiming_normal_fan_out",
    "kaiming_uniform", "loss_param_groups", "proxy_anchor", "proxy_nca", "soft_triple", "sphereface", "triplet_center",
]


def check_proxy_sim(sim: Tensor, labels: Tensor, per_class: int = 1) -> int:
    """Raise ``ValueError`` unless ``sim`` is a finite ``B × (C·per_class)`` matrix and ``labels`` are ``B``
    integers in ``[0, C)``; returns ``C``."""
    if not isinstance(sim, Tensor) or sim.dim() != 2:
        raise ValueError(f"sim must be a 2-D samples x proxies matrix, got {getattr(sim, 'shape', type(sim))}")
    integer = isinstance(labels, Tensor) and not labels.dtype.is_floating_point and labels.dtype != torch.bool
    if not integer or labels.dim() != 1:
        raise ValueError("labels must be a 1-D integer tensor of class indices")
    if labels.shape[0] != sim.shape[0]:
        raise ValueError(f"labels has length {labels.shape[0]} but sim has {sim.shape[0]} rows")
    if sim.shape[1] % per_class:
        raise ValueError(f"sim has {sim.shape[1]} columns, not a multiple of {per_class} proxies per class")
    n_classes = sim.shape[1] // per_class
    if labels.numel() and bool(((labels < 0) | (labels >= n_classes)).any()):
        bad = labels[(labels < 0) | (labels >= n_classes)]
        raise ValueError(f"labels must be class indices in [0, {n_classes}) (num_classes={n_classes}), "
                         f"got {sorted(set(bad.tolist()))[:5]}")
    with torch.no_grad():
        if not bool(torch.isfinite(sim).all()):
            raise ValueError("sim contains NaN or Inf")
    return n_classes


def _column_lse_plus_one(x: Tensor, mask: Tensor) -> Tensor:
    """Per column ``log(1 + Σ_{i∈mask} e^{x_ic})``; exactly 0 for a column with an empty mask."""
    fill = torch.tensor(torch.finfo(x.dtype).min / 2, dtype=x.dtype, device=x.device)
    lse = torch.logsumexp(torch.where(mask, x, fill), dim=0)
    zero = torch.zeros_like(lse)
    return torch.where(mask.any(dim=0), torch.logaddexp(zero, lse), zero)  # softplus would round above 20


def proxy_anchor(sim: Tensor, labels: Tensor, *, margin: float = 0.1, alpha: float = 32.0) -> Tensor:
    """Proxy-Anchor loss (Kim et al., CVPR 2020; PML ``ProxyAnchorLoss``, δ = ``margin``, α = ``alpha``).

    ``L = (1/|P⁺|) Σ_{c∈P⁺} log(1 + Σ_{i∈X_c⁺} e^{−α(S_ic − δ)}) + (1/C) Σ_c log(1 + Σ_{i∈X_c⁻} e^{α(S_ic + δ)})``:
    each proxy is an anchor over the batch (``X_c⁺``: the samples of class ``c``, ``X_c⁻``: the others), ``P⁺`` the
    classes present in the batch. As PML: a class absent from the batch has no positive term and is not in
    ``|P⁺|``, but its proxy still pushes every sample away (second sum); with one class the second sum is 0.
    Weights: :func:`mslib.gpw.proxy_anchor_weights`.
    """
    n_classes = check_proxy_sim(sim, labels)
    pos = torch.nn.functional.one_hot(labels, n_classes).bool()
    pos_terms = _column_lse_plus_one(-alpha * (sim - margin), pos)
    neg_terms = _column_lse_plus_one(alpha * (sim + margin), ~pos)
    with_pos = pos.any(dim=0).sum().clamp(min=1).to(sim.dtype)
    return pos_terms.sum() / with_pos + neg_terms.sum() / n_classes


def proxy_nca(sim: Tensor, labels: Tensor, *, softmax_scale: float = 1.0) -> Tensor:
    """Proxy-NCA loss (Movshovitz-Attias et al., ICCV 2017) as PML's ``ProxyNCALoss`` computes it.

    ``L = −(1/B) Σ_i log(e^{−s d²_{i y_i}} / Σ_c e^{−s d²_ic})``, ``d²_ic = ‖x̂_i − p̂_c‖² = 2 − 2 S_ic``,
    ``s = softmax_scale``: a softmax over all ``C`` proxies. The paper's denominator leaves out the sample's own
    proxy (``Σ_{c≠y_i}``); PML and we keep it. PML also drops a sample whose probability underflows to exactly 0;
    we compute ``log_softmax`` and keep every sample (no difference unless ``s`` is huge). Weights:
    :func:`mslib.gpw.proxy_nca_weights`.
    """
    check_proxy_sim(sim, labels)
    logits = -softmax_scale * (2 - 2 * sim)
    return -torch.log_softmax(logits, dim=1).gather(1, labels[:, None]).mean()


def soft_triple(
    sim: Tensor, labels: Tensor, *, centers_per_class: int = 10, la: float = 20.0, gamma: float = 0.1,
    margin: float = 0.01,
) -> Tensor:
    """SoftTriple loss (Qian et al., ICCV 2019; PML ``SoftTripleLoss``), ``K = centers_per_class``.

    ``sim`` is ``B × C·K``, column ``c·K + k`` the ``k``-th centre of class ``c``. Per class the relaxed similarity
    ``S'_ic = Σ_k softmax_k(S_ick/γ) S_ick``; then ``L = mean_i −log softmax_c(λ(S'_ic − δ[c = y_i]))_{y_i}``,
    ``λ = la``, ``δ = margin``. As PML, without the paper's regulariser that merges similar centres.
    """
    n_classes = check_proxy_sim(sim, labels, per_class=centers_per_class)
    per_centre = sim.reshape(sim.shape[0], n_classes, centers_per_class)
    relaxed = (torch.softmax(per_centre / gamma, dim=2) * per_centre).sum(dim=2)
    target = torch.nn.functional.one_hot(labels, n_classes).to(sim.dtype)
    return torch.nn.functional.cross_entropy(la * (relaxed - margin * target), labels)


def _target_logits(sim: Tensor, labels: Tensor, target: Tensor, scale: Tensor | float) -> Tensor:
    """Cross-entropy over ``scale · S`` with the target column ``S_{i y_i}`` replaced by ``target``."""
    mask = torch.nn.functional.one_hot(labels, sim.shape[1]).to(sim.dtype)
    own = sim.gather(1, labels[:, None])
    logits = sim + mask * (target[:, None] - own)
    return torch.nn.functional.cross_entropy(logits * scale, labels)


def arcface(sim: Tensor, labels: Tensor, *, margin: float = 28.6, scale: float = 64.0) -> Tensor:
    """ArcFace (Deng et al., CVPR 2019; PML ``ArcFaceLoss``): the target logit ``s cos(θ + m)``.

    ``margin`` in degrees as PML (28.6° ≈ the paper's m = 0.5 rad), ``scale`` = s. Where ``θ + m > π`` the target
    is ``cos θ − m sin m`` instead (PML's choice, keeping the logit decreasing in ``θ``).
    """
    check_proxy_sim(sim, labels)
    m = math.radians(margin)
    cos = sim.gather(1, labels[:, None]).squeeze(1)
    theta = torch.acos(cos.clamp(-1, 1))
    target = torch.where(theta <= math.pi - m, torch.cos(theta + m), cos - m * math.sin(m))
    return _target_logits(sim, labels, target, scale)


def cosface(sim: Tensor, labels: Tensor, *, margin: float = 0.35, scale: float = 64.0) -> Tensor:
    """CosFace / large-margin cosine loss (Wang et al., CVPR 2018; PML ``CosFaceLoss``): target logit
    ``s(cos θ − m)``, ``m = margin``, ``s = scale``."""
    check_proxy_sim(sim, labels)
    return _target_logits(sim, labels, sim.gather(1, labels[:, None]).squeeze(1) - margin, scale)


def _cos_multiple_angle(cos: Tensor, m: int) -> Tensor:
    """``cos(mθ)`` as a polynomial of ``c = cos θ``: ``Σ_n (−1)^n C(m, 2n) c^{m−2n} (1 − c²)^n`` (smooth at ±1)."""
    return sum((-1) ** n * math.comb(m, 2 * n) * cos ** (m - 2 * n) * (1 - cos**2) ** n for n in range(m // 2 + 1))


def sphereface(
    sim: Tensor, labels: Tensor, *, margin: int = 4, scale: float = 1.0, norms: Tensor | None = None
) -> Tensor:
    """SphereFace / A-Softmax (Liu et al., CVPR 2017; PML ``SphereFaceLoss``): target ``ψ(θ) = (−1)^k
    cos(mθ) − 2k`` for ``θ ∈ [kπ/m, (k+1)π/m]``, ``m = margin`` (an integer).

    Logits are ``scale · ‖x_i‖ · ψ`` (other classes ``cos θ``): the embedding norms ``norms`` are an input (the
    module passes them; ``None`` takes them as 1). Normalised class weights, as the paper.
    """
    check_proxy_sim(sim, labels)
    m = int(margin)
    cos = sim.gather(1, labels[:, None]).squeeze(1)
    with torch.no_grad():
        k = torch.floor(torch.acos(cos.clamp(-1, 1)) / (math.pi / m))
    target = (-1) ** k * _cos_multiple_angle(cos, m) - 2 * k
    factor = scale if norms is None else scale * norms[:, None]
    return _target_logits(sim, labels, target, factor)


def triplet_center(sim: Tensor, labels: Tensor, *, margin: float = 0.1) -> Tensor:
    """Triplet-center loss (He et al., CVPR 2018) on the unit sphere, ``sim`` = samples × centres.

    ``L = mean_i [max_{c≠y_i} S_ic − S_{i y_i} + m]_+``: He et al.'s ``D = ½‖x − c‖²`` is ``1 − S`` for unit
    vectors, so the own centre must beat the nearest other centre by ``m = margin``. The paper sums over the
    batch and adds a softmax loss; here the mean, alone (add a classification loss for their total). One class:
    no other centre, 0.
    """
    n_classes = check_proxy_sim(sim, labels)
    if n_classes == 1:
        return sim.sum() * 0
    own = torch.nn.functional.one_hot(labels, n_classes).bool()
    nearest_other = torch.where(own, torch.full_like(sim, -torch.inf), sim).amax(dim=1)
    return torch.relu(nearest_other - sim.gather(1, labels[:, None]).squeeze(1) + margin).mean()


def center(sim: Tensor, labels: Tensor, *, lam: float = 0.1, scale: float = 16.0) -> Tensor:
    """Center loss (Wen et al., ECCV 2016) on the unit sphere: softmax plus the pull to the class centre.

    ``sim`` is ``B × 2C``: columns ``0..C−1`` the cosines to the softmax weights ``W``, columns ``C..2C−1`` to the
    centres. ``L = −mean_i log softmax_c(s S_ic)_{y_i} + λ mean_i ½‖x̂_i − ĉ_{y_i}‖²``, ``½‖x̂ − ĉ‖² = 1 − S``,
    ``λ = lam``, ``s = scale``. Wen et al. use unnormalised features, a biased softmax and their own centre update
    (rate α); here the centres learn by gradient, and ``lam``, ``scale`` are mslib's defaults, not the paper's.
    """
    n_classes = check_proxy_sim(sim, labels, per_class=2)
    softmax = torch.nn.functional.cross_entropy(scale * sim[:, :n_classes], labels)
    to_centre = 1 - sim[:, n_classes:].gather(1, labels[:, None]).squeeze(1)
    return softmax + lam * to_centre.mean()


@dataclass(frozen=True)
class ProxySpec:
    """How a loss keeps its class representatives: PML's parameter ``name`` and ``layout`` (``rows``: ``(C·K, D)``;
    ``columns``: ``(D, C·K)``), its ``init`` on that tensor, the representatives per class (``per_class``: a
    hyperparameter name or 1) and the paper's learning-rate factor for them. Part of a loss's row of
    :data:`mslib.losses.LOSS_SPECS`."""

    name: str = "proxies"
    layout: str = "rows"
    init: Callable[[Tensor], Any] = torch.nn.init.normal_
    per_class: str | None = None
    lr_factor: float = 1.0
    needs_norms: bool = False
    with_centers: bool = False  # a second set, ``centers`` (C, D), whose cosines follow the first set's columns


def kaiming_normal_fan_out(w: Tensor) -> Any:
    """PML ``ProxyAnchorLoss``'s initialisation of its proxies."""
    return torch.nn.init.kaiming_normal_(w, mode="fan_out")


def kaiming_uniform(w: Tensor) -> Any:
    """PML ``SoftTripleLoss``'s initialisation of its centres."""
    return torch.nn.init.kaiming_uniform_(w, a=math.sqrt(5))


def _per_class(fn: Callable[..., Tensor], spec: ProxySpec, hparams: dict[str, Any]) -> int:
    """Representatives per class: 1, or the loss's ``spec.per_class`` hyperparameter (given or its default)."""
    if spec.per_class is None:
        return 1
    value = hparams.get(spec.per_class, inspect.signature(fn).parameters[spec.per_class].default)
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{spec.per_class} must be a positive integer, got {value!r}")
    return value


class ProxyLoss(torch.nn.Module):
    """``forward(embeddings, labels)``: the loss of the cosines between the embeddings and the class representatives.

    The representatives are the parameter PML names (``proxies``, ``W`` or ``fc``) in PML's layout, so
    ``ours.proxies.data.copy_(pml.proxies.data)`` (or ``load_state_dict``) moves weights either way. Losses PML
    lacks: ``triplet_center`` keeps ``centers`` ``(C, D)``; ``center`` keeps ``W`` ``(D, C)`` and ``centers``.
    ``lr_factor``: multiply the model's learning rate by it for these parameters (:func:`loss_param_groups`).
    """

    def __init__(self, name: str, fn: Callable[..., Tensor], spec: ProxySpec, num_classes: int, embedding_dim: int,
                 *, lr_factor: float | None = None, **hparams: Any) -> None:
        super().__init__()
        per_class = _per_class(fn, spec, hparams)
        rows = (num_classes * per_class, embedding_dim)
        shape = rows if spec.layout == "rows" else rows[::-1]
        weight = torch.nn.Parameter(torch.empty(shape))
        spec.init(weight.data)
        self.register_parameter(spec.name, weight)
        if spec.with_centers:
            self.centers = torch.nn.Parameter(torch.nn.init.normal_(torch.empty(num_classes, embedding_dim)))
        self.name, self.fn, self.spec, self.hparams = name, fn, spec, hparams
        self.num_classes, self.per_class = num_classes, per_class
        self.lr_factor = spec.lr_factor if lr_factor is None else float(lr_factor)

    def representatives(self) -> Tensor:
        """The class representatives as rows, ``(C·K, D)`` (then the ``centers``, if any), whatever PML's layout."""
        weight = getattr(self, self.spec.name)
        rows = weight if self.spec.layout == "rows" else weight.T
        return torch.cat([rows, self.centers]) if self.spec.with_centers else rows

    def similarity(self, embeddings: Tensor) -> Tensor:
        """``S = x̂ p̂ᵀ``, ``B × C·K``, cast to the embeddings' dtype (as PML's ``cast_types``)."""
        check_embeddings(embeddings)
        reps = self.representatives().to(embeddings.dtype)
        if reps.shape[1] != embeddings.shape[1]:
            raise ValueError(f"embeddings have dimension {embeddings.shape[1]} but {self.name} was built with "
                             f"embedding_dim={reps.shape[1]}")
        return cosine(embeddings, reps)

    def forward(self, embeddings: Tensor, labels: Tensor) -> Tensor:
        if not isinstance(labels, Tensor) or labels.dim() != 1 or labels.shape[0] != embeddings.shape[0]:
            got = tuple(labels.shape) if isinstance(labels, Tensor) else type(labels).__name__
            raise ValueError(f"labels must be 1-D of length {embeddings.shape[0]}, got {got}")
        extra = {"norms": embeddings.norm(dim=1)} if self.spec.needs_norms else {}
        return self.fn(self.similarity(embeddings), labels, **extra, **self.hparams)

    def extra_repr(self) -> str:
        return ", ".join([self.name, f"num_classes={self.num_classes}", f"lr_factor={self.lr_factor}",
                          *(f"{k}={v}" for k, v in self.hparams.items())])


def loss_param_groups(loss: torch.nn.Module, lr: float) -> list[dict[str, Any]]:
    """The optimizer parameter groups of a loss's own parameters: ``[{"params": ..., "lr": lr · lr_factor}]``, or
    ``[]`` for a loss without parameters (every pair loss)."""
    params = [p for p in loss.parameters() if p.requires_grad]
    if not params:
        return []
    return [{"params": params, "lr": lr * float(getattr(loss, "lr_factor", 1.0))}]
