"""Input transforms (``torchvision.transforms.v2``) for the two backbone conventions and the glyphs.

- ``"bninception"``: the official MS code / Cadene BN-Inception convention: BGR, 0–255 range, minus the mean
  [104, 117, 128] (B, G, R), std 1. Train: Resize(256) → RandomResizedCrop(227, scale=(0.16, 1)) → HFlip;
  test: Resize(256) → CenterCrop(227) (``book/sources.md#src-official-recipe``).
- ``"imagenet"``: torchvision's RGB, [0, 1], ImageNet mean/std; the same crops (Resize 256 at size 224).
- ``"glyphs"``: a ``1×32×32`` float tensor in [0, 1]; training adds a random ±2 px shift only (edge padding).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
from torchvision.transforms import v2

CONVENTIONS = ("bninception", "imagenet", "glyphs")
BNINCEPTION_MEAN_BGR = (104.0, 117.0, 128.0)
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class RGBToBGR255(torch.nn.Module):
    """``C×H×W`` RGB float in [0, 1] → BGR in [0, 255] minus the BN-Inception mean."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        mean = torch.tensor(BNINCEPTION_MEAN_BGR, dtype=x.dtype, device=x.device).view(3, 1, 1)
        return x.flip(-3) * 255.0 - mean


class ToGlyphTensor(torch.nn.Module):
    """uint8 array / tensor ``32×32`` (or ``1×32×32``) or a float tensor in [0, 1] → float ``1×32×32``."""

    def forward(self, x) -> torch.Tensor:
        if isinstance(x, np.ndarray):
            x = torch.from_numpy(x)
        elif not isinstance(x, torch.Tensor):
            x = torch.from_numpy(np.asarray(x.convert("L")))
        if x.dtype == torch.uint8:
            x = x.float() / 255.0
        return x.reshape(1, *x.shape[-2:]).float()


def build_transform(convention: str, train: bool, size: int = 227, resize: int | None = None) -> Callable:
    """The transform of ``convention`` (:data:`CONVENTIONS`); ``size`` is the crop (ignored for glyphs: 32).

    ``resize`` is the shorter side before cropping; by default ``round(size * 256 / 227)`` for BN-Inception (256 at
    227) and ``round(size * 256 / 224)`` for ImageNet (256 at 224). The official ResNet-50 recipe crops 227 after a
    resize to 256, so its config sets ``resize: 256`` (``book/sources.md#src-official-recipe``).
    """
    if convention == "glyphs":
        steps = [ToGlyphTensor()]
        if train:
            steps.append(v2.RandomCrop(32, padding=2, padding_mode="edge"))
        return v2.Compose(steps)
    if convention not in CONVENTIONS:
        raise ValueError(f"unknown convention {convention!r}; choose one of {', '.join(CONVENTIONS)}")
    if resize is None:
        resize = round(size * 256 / (227 if convention == "bninception" else 224))
    elif resize < size:
        raise ValueError(f"resize {resize} is smaller than the crop size {size}")
    crops = ([v2.Resize(resize), v2.RandomResizedCrop(size, scale=(0.16, 1.0)), v2.RandomHorizontalFlip()]
             if train else [v2.Resize(resize), v2.CenterCrop(size)])
    tail = ([RGBToBGR255()] if convention == "bninception"
            else [v2.Normalize(mean=list(IMAGENET_MEAN), std=list(IMAGENET_STD))])
    return v2.Compose([v2.ToImage(), v2.RGB(), *crops, v2.ToDtype(torch.float32, scale=True), *tail])
