"""Glyphs fed to an image backbone: the per-sample transform reproduces the batch adaptation training used before
(bilinear upscale to ``image_size``, 1 → 3 channels, the backbone's normalisation), and the SmallCNN path is the
plain glyph tensor."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from mslib.train import TrainConfig, adapt_input

IMAGE_BACKBONES = ("bninception", "resnet50", "googlenet")


def reference_adapt(x: torch.Tensor, backbone: str, size: int) -> torch.Tensor:
    """The batch adaptation of glyphs ``N×1×32×32`` as ``mslib.train.adapt_input`` did it, written out here."""
    x = torch.nn.functional.interpolate(x, size=(size, size), mode="bilinear", align_corners=False)
    x = x.expand(-1, 3, -1, -1)
    if backbone == "bninception":  # BGR (equal channels: no reorder visible), 0–255, mean [104, 117, 128]
        return x * 255.0 - torch.tensor([104.0, 117.0, 128.0]).view(1, 3, 1, 1)
    mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    return (x - mean) / std


def glyph_batch(n: int = 5) -> torch.Tensor:
    g = torch.Generator().manual_seed(4)
    return torch.rand(n, 1, 32, 32, generator=g, dtype=torch.float32)


@pytest.mark.parametrize("backbone", IMAGE_BACKBONES)
@pytest.mark.parametrize("size", [64, 227])
def test_reference_is_todays_adapt_input(backbone: str, size: int) -> None:
    x = glyph_batch()
    cfg = TrainConfig(dataset="glyphs", backbone=backbone, image_size=size)
    got = adapt_input(x, cfg)
    assert got.dtype == torch.float32 and tuple(got.shape) == (5, 3, size, size)
    torch.testing.assert_close(got, reference_adapt(x, backbone, size), rtol=0, atol=0)
    assert float(np.abs(got.numpy()).max()) > 1.0, "normalised, not the raw [0, 1] glyph"
