"""Glyphs fed to an image backbone: the per-sample transform reproduces the batch adaptation training used before
(bilinear upscale to ``image_size``, 1 → 3 channels, the backbone's normalisation), and the SmallCNN path is the
plain glyph tensor."""

from __future__ import annotations

import pytest
import torch
from torchvision.transforms import v2

from mslib.data.transforms import ToGlyphTensor, build_transform

IMAGE_BACKBONES = ("bninception", "resnet50", "googlenet")


def reference_adapt(x: torch.Tensor, backbone: str, size: int) -> torch.Tensor:
    """The batch adaptation of glyphs ``N×1×32×32`` that training applied before the transforms did it (the former
    ``mslib.train.adapt_input``, pinned against it before its removal), written out here."""
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
def test_glyph_transform_reproduces_the_batch_adaptation(backbone: str, size: int) -> None:
    x = glyph_batch()
    transform = build_transform(backbone, train=False, size=size, glyphs=True)
    got = torch.stack([transform(img) for img in x])
    assert got.dtype == torch.float32 and tuple(got.shape) == (5, 3, size, size)
    torch.testing.assert_close(got, reference_adapt(x, backbone, size), rtol=0, atol=1e-6)


def test_smallcnn_gets_the_glyph_as_it_is() -> None:
    img = (glyph_batch(1)[0, 0] * 255).to(torch.uint8).numpy()
    for train in (False, True):
        torch.manual_seed(0)
        got = build_transform("smallcnn", train=train, glyphs=True)(img)
        torch.manual_seed(0)
        steps = [ToGlyphTensor(), *([v2.RandomCrop(32, padding=2, padding_mode="edge")] if train else [])]
        assert torch.equal(got, v2.Compose(steps)(img)), "the SmallCNN input must stay bit-identical"


def test_training_data_carry_the_backbones_convention() -> None:
    """``mslib.run.trainer.datasets`` feeds glyphs to an image backbone through the transform: 3×size×size,
    normalised."""
    from mslib.run.config import TrainConfig
    from mslib.run.trainer import datasets

    cfg = TrainConfig(backbone="bninception", image_size=40, dataset_options={"classes": 8, "images_per_class": 4})
    sets = datasets(cfg)
    image, _ = sets["test"][0]
    raw = build_transform("smallcnn", train=False, glyphs=True)(sets["test"].images[0])
    assert tuple(image.shape) == (3, 40, 40)
    torch.testing.assert_close(image[None], reference_adapt(raw[None], "bninception", 40), rtol=0, atol=1e-6)
