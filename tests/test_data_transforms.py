"""Transforms: BN-Inception (BGR, 0-255, mean subtracted), torchvision ImageNet, glyphs (±2 px shift only), all
from the one table of input conventions."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from mslib.data.transforms import build_transform

# torchvision's ImageNet statistics, written out (an independent reference, not read from the library's table)
IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


def _image(color: tuple[int, int, int] = (10, 20, 30)) -> Image.Image:
    return Image.new("RGB", (300, 260), color)


def test_bninception_test_is_bgr_0_255_minus_mean() -> None:
    x = build_transform("bninception", train=False)(_image())
    assert tuple(x.shape) == (3, 227, 227) and x.dtype == torch.float32
    torch.testing.assert_close(x[:, 100, 100], torch.tensor([30 - 104.0, 20 - 117.0, 10 - 128.0]))


def test_bninception_train_crop_and_flip() -> None:
    torch.manual_seed(0)
    t = build_transform("bninception", train=True)
    shapes = {tuple(t(_image()).shape) for _ in range(5)}
    assert shapes == {(3, 227, 227)}
    crops = [s for s in t.transforms if type(s).__name__ == "RandomResizedCrop"]
    assert crops and crops[0].scale == (0.16, 1.0)
    assert any(type(s).__name__ == "RandomHorizontalFlip" for s in t.transforms)
    resize = [s for s in t.transforms if type(s).__name__ == "Resize"][0]
    assert resize.size == [256]


def test_imagenet_convention() -> None:
    x = build_transform("resnet50", train=False, size=224)(_image((255, 0, 128)))
    assert tuple(x.shape) == (3, 224, 224)
    expected = (torch.tensor([1.0, 0.0, 128 / 255]) - torch.tensor(IMAGENET_MEAN)) / torch.tensor(IMAGENET_STD)
    torch.testing.assert_close(x[:, 5, 5], expected, atol=1e-5, rtol=0)


def test_glyph_transform_shift_only() -> None:
    img = np.zeros((32, 32), dtype=np.uint8)
    img[10:20, 12:18] = 255
    test = build_transform("smallcnn", train=False, glyphs=True)(img)
    assert tuple(test.shape) == (1, 32, 32) and float(test.max()) == 1.0
    torch.testing.assert_close(build_transform("smallcnn", train=False, glyphs=True)(test), test)
    train = build_transform("smallcnn", train=True, glyphs=True)
    torch.manual_seed(0)
    for _ in range(20):
        out = train(test)
        assert tuple(out.shape) == (1, 32, 32)
        assert float(out.sum()) == float(test.sum()), "a pure shift keeps the ink (the glyph is away from the edge)"
        ys, xs = np.nonzero(out[0].numpy())
        assert 8 <= ys.min() <= 12 and 10 <= xs.min() <= 14


def test_unknown_backbone() -> None:
    with pytest.raises(ValueError, match="unknown backbone 'caffe'.*bninception, resnet50, googlenet, smallcnn"):
        build_transform("caffe", train=False)


def test_googlenet_and_resnet50_share_the_imagenet_convention() -> None:
    a = build_transform("googlenet", train=False, size=224)(_image((255, 0, 128)))
    assert torch.equal(a, build_transform("resnet50", train=False, size=224)(_image((255, 0, 128))))


def test_explicit_resize_before_the_crop() -> None:
    """The official ResNet-50 recipe: Resize(256) then a 227 crop in the ImageNet convention (default would be 259)."""
    def resize_of(t):
        return [s for s in t.transforms if type(s).__name__ == "Resize"][0].size

    assert resize_of(build_transform("resnet50", train=False, size=227)) == [259]
    for train in (True, False):
        t = build_transform("resnet50", train=train, size=227, resize=256)
        assert resize_of(t) == [256] and tuple(t(_image()).shape) == (3, 227, 227)
    with pytest.raises(ValueError, match="smaller than the crop"):
        build_transform("resnet50", train=False, size=227, resize=200)
