"""Where cosine similarities ``S_ij`` fall before any training: random directions against untrained networks.

The MS loss compares every ``S_ij`` with the threshold ``λ`` (paper: 1, official code: 0.5;
``book/sources.md#src-paper``). Independent random unit vectors in ``d`` dimensions have ``S ≈ N(0, 1/d)``, but
an untrained network is not a random direction generator: ReLU features are non-negative and share a common
component, so its embeddings start close together. Chapter *Setup* measures both with the functions below.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch
from torch import Tensor

from mslib.conventions import INPUT_CONVENTIONS
from mslib.data.transforms import glyph_transform
from mslib.models import build_model

__all__ = ["MODES", "pair_similarities", "random_cosine_samples", "random_direction_similarities", "sample_batch",
           "similarity_summary", "untrained_embeddings", "untrained_similarity_study"]

MODES = ("train", "eval")


def pair_similarities(embeddings: Tensor) -> Tensor:
    """Cosine similarities ``S_ij`` of all pairs ``i < j`` of the rows of ``embeddings`` (normalised here), 1-D."""
    if embeddings.ndim != 2 or len(embeddings) < 2:
        raise ValueError(f"need a 2-D tensor of at least 2 embeddings, got shape {tuple(embeddings.shape)}")
    x = torch.nn.functional.normalize(embeddings, dim=1)
    i, j = torch.triu_indices(len(x), len(x), offset=1)
    return (x @ x.T)[i, j]


def random_direction_similarities(n: int, dim: int, *, seed: int = 0) -> Tensor:
    """``S_ij`` of all pairs of ``n`` directions drawn uniformly on the unit sphere of ``R^dim`` (float64)."""
    if n < 2 or dim < 1:
        raise ValueError(f"need n ≥ 2 vectors and dim ≥ 1, got n={n}, dim={dim}")
    generator = torch.Generator().manual_seed(seed)
    return pair_similarities(torch.randn(n, dim, generator=generator, dtype=torch.float64))


def sample_batch(dataset: Any, n: int, *, seed: int = 0) -> Tensor:
    """``n`` images of ``dataset`` (items ``(image, label)``) drawn without replacement, stacked into one batch."""
    if not 2 <= n <= len(dataset):
        raise ValueError(f"need 2 ≤ n ≤ {len(dataset)} images (the dataset's size), got n={n}")
    index = np.random.default_rng(seed).choice(len(dataset), size=n, replace=False)
    return torch.stack([dataset[int(i)][0] for i in index])


@torch.no_grad()
def untrained_embeddings(
    backbone: str,
    images: Tensor,
    *,
    mode: str,
    embedding_dim: int = 512,
    pooling: str = "max",
    image_size: int = 227,
    seed: int = 0,
) -> Tensor:
    """Embeddings of glyph ``images`` (``N×1×32×32`` in [0, 1]) by a freshly initialised ``backbone`` with its head.

    ``mode`` is ``"train"`` (BatchNorm normalises with the batch's statistics, as in the first training step) or
    ``"eval"`` (BatchNorm uses its initial running statistics, mean 0 and variance 1). Image backbones get the glyphs
    upscaled to ``image_size`` in their input convention, as training does
    (:func:`mslib.data.transforms.glyph_transform`).
    """
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    if images.ndim != 4 or images.shape[1] != 1:
        raise ValueError(f"images must be glyphs of shape N×1×H×W, got {tuple(images.shape)}")
    torch.manual_seed(seed)
    model = build_model(backbone, embedding_dim, pooling=pooling, in_channels=INPUT_CONVENTIONS[backbone].channels)
    model.train(mode == "train")
    transform = glyph_transform(backbone, train=False, size=image_size)
    return model(torch.stack([transform(image) for image in images]))


def similarity_summary(sims: Tensor, lam: float) -> dict[str, float]:
    """Mean, standard deviation, 5/50/95% quantiles and the share of pairs with ``S > λ`` (plain floats)."""
    s = sims.detach().double().flatten()
    if s.numel() == 0:
        raise ValueError("no similarities to summarise")
    q05, q50, q95 = torch.quantile(s, torch.tensor([0.05, 0.5, 0.95], dtype=s.dtype)).tolist()
    return {"mean": float(s.mean()), "std": float(s.std()), "q05": q05, "median": q50, "q95": q95,
            "share_above_lam": float((s > lam).double().mean())}


def random_cosine_samples(dims: Sequence[int], n: int, *, seed: int = 0) -> dict[int, np.ndarray]:
    """Chapter 00's random directions (``notebooks/00_setup.ipynb``): for each ``d`` of ``dims`` in turn, drawn
    from one generator seeded with ``seed``, the off-diagonal ``S_ij`` (both orders, ``n(n-1)`` values) of ``n``
    unit vectors uniform on the sphere of ``R^d`` (float64)."""
    if n < 2 or not dims or min(dims) < 1:
        raise ValueError(f"need n ≥ 2 vectors and dimensions ≥ 1, got n={n}, dims={list(dims)}")
    generator = torch.Generator().manual_seed(seed)
    off_diagonal = ~torch.eye(n, dtype=torch.bool)
    samples = {}
    for d in dims:
        x = torch.nn.functional.normalize(torch.randn(n, d, generator=generator, dtype=torch.float64), dim=1)
        samples[d] = (x @ x.T)[off_diagonal].numpy()
    return samples


def untrained_similarity_study(
    images: Tensor, networks: Mapping[str, Any], lam: float, *, seed: int = 0
) -> tuple[dict[str, dict[str, np.ndarray]], dict[tuple[str, str], dict[str, float]]]:
    """Chapter 00's untrained networks: for each ``name: TrainConfig`` of ``networks``, the pair similarities of
    random directions of its dimension and of its freshly initialised network's embeddings of ``images`` in each
    of :data:`MODES`. Returns ``(panels, rows)``: ``panels[title][group]`` the similarities (for
    :func:`mslib.viz.plot_similarity_panels`), ``rows[(name, group)]`` their :func:`similarity_summary` at ``lam``.
    """
    panels: dict[str, dict[str, np.ndarray]] = {}
    rows: dict[tuple[str, str], dict[str, float]] = {}
    for name, cfg in networks.items():
        title = f"{name}, d = {cfg.embedding_dim}"
        random_sims = random_direction_similarities(len(images), cfg.embedding_dim, seed=seed)
        panels[title] = {f"random directions, d = {cfg.embedding_dim}": random_sims.numpy()}
        rows[(name, "random directions")] = similarity_summary(random_sims, lam)
        for mode in MODES:
            emb = untrained_embeddings(cfg.backbone, images, mode=mode, embedding_dim=cfg.embedding_dim,
                                       pooling=cfg.pooling, image_size=cfg.image_size, seed=seed)
            sims = pair_similarities(emb)
            panels[title][f"untrained, {mode} mode"] = sims.numpy()
            rows[(name, f"{mode} mode")] = similarity_summary(sims, lam)
    return panels, rows
