"""Proxy and classification losses as functions of the sample–proxy similarity ``S`` (``B × C``), so GPW applies.

Pair losses (:mod:`mslib.losses`) compare a sample with other samples; these compare it with learned class
representatives (proxies, class weights, centres): ``S_ic = <x̂_i, p̂_c>``, the cosine of sample ``i`` and the
representative of class ``c``. Every loss is ``name(sim, labels, **hparams) -> scalar`` with ``labels`` in
``[0, C)``; :class:`ProxyLoss` holds the representatives as an ``nn.Parameter`` in pytorch-metric-learning 2.9's
layout, name and initialisation (so weights move across), and takes ``(embeddings, labels)`` as every
:class:`mslib.losses.PairLoss` does. Hyperparameters carry PML's constructor names and defaults.

Training: the representatives are ``loss.parameters()``; :attr:`ProxyLoss.lr_factor` is the learning-rate factor
their papers use (Proxy-Anchor: 100), :func:`loss_param_groups` gives the optimizer's parameter groups.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from mslib.similarity import check_embeddings, cosine

__all__ = [
    "PROXY_LOSSES", "ProxyLoss", "ProxySpec", "check_proxy_sim", "loss_param_groups", "proxy_anchor", "proxy_nca",
]


def check_proxy_sim(sim: Tensor, labels: Tensor, per_class: int = 1) -> int:
    """Raise ``ValueError`` unless ``sim`` is a finite ``B × (C·per_class)`` matrix and ``labels`` are ``B``
    integers in ``[0, C)``; returns ``C``."""
    if not isinstance(sim, Tensor) or sim.dim() != 2:
        raise ValueError(f"sim must be a 2-D samples x proxies matrix, got {getattr(sim, 'shape', type(sim))}")
    if not isinstance(labels, Tensor) or labels.dim() != 1 or labels.dtype.is_floating_point:
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
    """Proxy-Anchor loss (Kim et al., CVPR 2020, eq. 4; PML ``ProxyAnchorLoss``, δ = ``margin``, α = ``alpha``).

    ``L = (1/|P⁺|) Σ_{c∈P⁺} log(1 + Σ_{i∈X_c⁺} e^{−α(S_ic − δ)}) + (1/C) Σ_c log(1 + Σ_{i∈X_c⁻} e^{α(S_ic + δ)})``:
    each proxy is an anchor over the batch (``X_c⁺``: the samples of class ``c``, ``X_c⁻``: the others), ``P⁺`` the
    classes present in the batch. As PML: a class absent from the batch adds 0 to the second sum but counts in
    ``C``; with one class the second sum is 0.
    """
    n_classes = check_proxy_sim(sim, labels)
    pos = torch.nn.functional.one_hot(labels, n_classes).bool()
    pos_terms = _column_lse_plus_one(-alpha * (sim - margin), pos)
    neg_terms = _column_lse_plus_one(alpha * (sim + margin), ~pos)
    with_pos = pos.any(dim=0).sum().clamp(min=1).to(sim.dtype)
    return pos_terms.sum() / with_pos + neg_terms.sum() / n_classes


def proxy_nca(sim: Tensor, labels: Tensor, *, softmax_scale: float = 1.0) -> Tensor:
    """Proxy-NCA loss (Movshovitz-Attias et al., ICCV 2017, eq. 4) as PML's ``ProxyNCALoss`` computes it.

    ``L = −(1/B) Σ_i log(e^{−s d²_{i y_i}} / Σ_c e^{−s d²_ic})``, ``d²_ic = ‖x̂_i − p̂_c‖² = 2 − 2 S_ic``,
    ``s = softmax_scale``: a softmax over all ``C`` proxies. The paper's denominator leaves out the sample's own
    proxy (``Σ_{c≠y_i}``); PML and we keep it. PML also drops a sample whose probability underflows to exactly 0;
    we compute ``log_softmax`` and keep every sample (no difference unless ``s`` is huge).
    """
    check_proxy_sim(sim, labels)
    logits = -softmax_scale * (2 - 2 * sim)
    return -torch.log_softmax(logits, dim=1).gather(1, labels[:, None]).mean()


@dataclass(frozen=True)
class ProxySpec:
    """How a loss keeps its class representatives: PML's parameter ``name`` and ``layout`` (``rows``: ``(C·K, D)``;
    ``columns``: ``(D, C·K)``), its ``init`` on that tensor, the representatives per class (``per_class``: a
    hyperparameter name or 1) and the paper's learning-rate factor for them."""

    fn: Callable[..., Tensor]
    name: str = "proxies"
    layout: str = "rows"
    init: Callable[[Tensor], Any] = torch.nn.init.normal_
    per_class: str | None = None
    lr_factor: float = 1.0


def _kaiming_normal_fan_out(w: Tensor) -> Any:
    return torch.nn.init.kaiming_normal_(w, mode="fan_out")  # PML ProxyAnchorLoss's default


def _kaiming_uniform(w: Tensor) -> Any:
    return torch.nn.init.kaiming_uniform_(w, a=math.sqrt(5))  # PML SoftTripleLoss's default


PROXY_LOSSES: dict[str, ProxySpec] = {
    "proxy_anchor": ProxySpec(proxy_anchor, init=_kaiming_normal_fan_out, lr_factor=100.0),  # Kim et al., Sec. 4.1
    "proxy_nca": ProxySpec(proxy_nca),
}


class ProxyLoss(torch.nn.Module):
    """``forward(embeddings, labels)``: the loss of the cosines between the embeddings and the class representatives.

    The representatives are the parameter PML names (``proxies``, ``W`` or ``fc``) in PML's layout, so
    ``ours.proxies.data.copy_(pml.proxies.data)`` (or ``load_state_dict``) moves weights either way.
    ``lr_factor``: multiply the model's learning rate by it for these parameters (:func:`loss_param_groups`).
    """

    def __init__(self, name: str, spec: ProxySpec, num_classes: int, embedding_dim: int, *,
                 lr_factor: float | None = None, **hparams: Any) -> None:
        super().__init__()
        per_class = int(hparams[spec.per_class]) if spec.per_class else 1
        rows = (num_classes * per_class, embedding_dim)
        shape = rows if spec.layout == "rows" else rows[::-1]
        weight = torch.nn.Parameter(torch.empty(shape))
        spec.init(weight.data)
        self.register_parameter(spec.name, weight)
        self.name, self.spec, self.hparams = name, spec, hparams
        self.num_classes, self.per_class = num_classes, per_class
        self.lr_factor = spec.lr_factor if lr_factor is None else float(lr_factor)

    def representatives(self) -> Tensor:
        """The class representatives as rows, ``(C·K, D)``, whatever PML's layout."""
        weight = getattr(self, self.spec.name)
        return weight if self.spec.layout == "rows" else weight.T

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
        return self.spec.fn(self.similarity(embeddings), labels, **self.hparams)

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
