"""Input transforms (``torchvision.transforms.v2``) of every backbone, built from one table:
:data:`mslib.conventions.INPUT_CONVENTIONS` (colour space, value scale, mean/std, channels).

- BN-Inception (the official MS code / Cadene convention): BGR, 0–255, minus the mean [104, 117, 128] (B, G, R),
  std 1. Train: Resize(256) → RandomResizedCrop(227, scale=(0.16, 1)) → HFlip; test: Resize(256) → CenterCrop(227)
  (``book/sources.md#src-official-recipe``).
- ResNet-50, GoogLeNet: torchvision's RGB, [0, 1], ImageNet mean/std; the same crops (Resize 256 at size 224).
- Glyphs: a ``1×32×32`` float tensor in [0, 1]; training adds a random ±2 px shift only (edge padding). The small
  CNN takes them as they are; an image backbone gets each glyph upscaled (bilinear) to the crop size, repeated on
  3 channels and normalised in its convention (``notebooks/00_setup.ipynb``, ``notebooks/05_training.ipynb``).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
from torchvision.transforms import v2

from mslib.conventions import INPUT_CONVENTIONS, InputConvention


class Normalize(torch.nn.Module):
    """``C×H×W`` float in [0, 1] (RGB, or gray) → the convention's colour order and scale, minus mean, over std."""

    def __init__(self, convention: InputConvention) -> None:
        super().__init__()
        self.convention = convention

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        c = self.convention
        if c.space == "BGR":
            x = x.flip(-3)
        if c.scale != 1.0:
            x = x * c.scale
        mean = torch.tensor(c.mean, dtype=x.dtype, device=x.device).view(-1, 1, 1)
        std = torch.tensor(c.std, dtype=x.dtype, device=x.device).view(-1, 1, 1)
        return (x - mean) / std


class ToGlyphTensor(torch.nn.Module):
    """uint8 array / tensor ``32×32`` (or ``1×32×32``) or a float tensor in [0, 1] → float ``1×32×32``."""

    def forward(self, x) -> torch.Tensor:
        if isinstance(x, np.ndarray):
            x = torch.from_numpy(x)
        elif not isinstance(x, torch.Tensor):
            x = torch.from_numpy(np.array(x.convert("L")))  # a copy: PIL's buffer is read-only
        if x.dtype == torch.uint8:
            x = x.float() / 255.0
        return x.reshape(1, *x.shape[-2:]).float()


class RandomShift(torch.nn.Module):
    """A random shift of a ``C×H×W`` tensor by up to ``pad`` pixels each way, the edges replicated.

    The same image, for the same draws from torch's global RNG (the top offset, then the left), as
    ``v2.RandomCrop((H, W), padding=pad, padding_mode="edge")`` (``tests/test_input_conventions.py``), without its
    per-call dispatch: the small CNN's batches are drawn one image at a time.
    """

    def __init__(self, pad: int = 2) -> None:
        super().__init__()
        if pad < 1:
            raise ValueError(f"pad must be ≥ 1 pixel, got {pad}")
        self.pad = pad

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        p, (h, w) = self.pad, x.shape[-2:]
        top = int(torch.randint(0, 2 * p + 1, size=()))
        left = int(torch.randint(0, 2 * p + 1, size=()))
        padded = torch.nn.functional.pad(x[None], (p, p, p, p), mode="replicate")[0]
        return padded[..., top:top + h, left:left + w]


class UpscaleGlyph(torch.nn.Module):
    """A ``1×h×w`` glyph → ``channels×size×size``: bilinear upscale (``align_corners=False``), gray repeated."""

    def __init__(self, size: int, channels: int) -> None:
        super().__init__()
        self.size, self.channels = size, channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        up = torch.nn.functional.interpolate(x[None], size=(self.size, self.size), mode="bilinear",
                                             align_corners=False)[0]
        return up.expand(self.channels, -1, -1)


def _convention(backbone: str) -> InputConvention:
    if backbone not in INPUT_CONVENTIONS:
        raise ValueError(f"unknown backbone {backbone!r}; choose one of {', '.join(INPUT_CONVENTIONS)}")
    return INPUT_CONVENTIONS[backbone]


def glyph_transform(backbone: str, train: bool, size: int = 227) -> Callable:
    """The glyphs for ``backbone``: as they are for the small CNN (``size`` ignored: 32), else upscaled to ``size``
    and normalised in the backbone's convention; training adds the ±2 px shift before any upscaling."""
    convention = _convention(backbone)
    steps: list[Callable] = [ToGlyphTensor()]
    if train:
        steps.append(RandomShift(2))
    if convention.space != "gray":
        steps += [UpscaleGlyph(size, convention.channels), Normalize(convention)]
    return v2.Compose(steps)


def build_transform(backbone: str, train: bool, size: int = 227, resize: int | None = None, *,
                    glyphs: bool = False) -> Callable:
    """The input transform of ``backbone`` (:data:`mslib.conventions.INPUT_CONVENTIONS`) for photos, or for the
    embedded glyphs with ``glyphs=True`` (:func:`glyph_transform`); ``size`` is the crop.

    ``resize`` is the shorter side before cropping; by default ``round(size * 256 / resize_at)``: 256 at 227 for
    BN-Inception, 256 at 224 for the torchvision backbones. The official ResNet-50 recipe crops 227 after a resize
    to 256, so its config sets ``resize: 256`` (``book/sources.md#src-official-recipe``). The small CNN reads
    glyph-like 32×32 gray tensors only: photos (your own images) are first resized (shorter side) and
    centre-cropped to 32×32, then read as glyphs.
    """
    convention = _convention(backbone)
    if glyphs:
        return glyph_transform(backbone, train, size)
    if convention.space == "gray":
        return v2.Compose([v2.Resize(32), v2.CenterCrop(32), glyph_transform(backbone, train, size)])
    if resize is None:
        resize = round(size * 256 / convention.resize_at)
    elif resize < size:
        raise ValueError(f"resize {resize} is smaller than the crop size {size}")
    crops = ([v2.Resize(resize), v2.RandomResizedCrop(size, scale=(0.16, 1.0)), v2.RandomHorizontalFlip()]
             if train else [v2.Resize(resize), v2.CenterCrop(size)])
    return v2.Compose([v2.ToImage(), v2.RGB(), *crops, v2.ToDtype(torch.float32, scale=True),
                       Normalize(convention)])
