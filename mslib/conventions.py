"""What each backbone expects as input (colour space, value scale, mean/std, channels, resize rule).

The one table of input conventions: :mod:`mslib.data.transforms` builds every backbone's inputs from it and
:mod:`mslib.models` reads each backbone's channel count from it. It imports nothing of mslib, so the models and the
data package can both use it without depending on each other (chapter ``04_data``;
``book/sources.md#src-official-recipe``).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class InputConvention:
    """What a backbone expects as input: colour ``space`` (``"BGR"``, ``"RGB"`` or ``"gray"``), value ``scale``
    (255: 0–255, 1: 0–1), per-channel ``mean``/``std`` in that scale (``x = (scale · v − mean) / std``), the channel
    count, and ``resize_at``: the crop size at which the shorter side is resized to 256 before cropping."""

    space: str
    scale: float
    mean: tuple[float, ...]
    std: tuple[float, ...]
    channels: int
    resize_at: int | None = None


_IMAGENET = InputConvention("RGB", 1.0, (0.485, 0.456, 0.406), (0.229, 0.224, 0.225), 3, resize_at=224)
INPUT_CONVENTIONS: dict[str, InputConvention] = {
    "bninception": InputConvention("BGR", 255.0, (104.0, 117.0, 128.0), (1.0, 1.0, 1.0), 3, resize_at=227),
    "resnet50": _IMAGENET,
    "googlenet": _IMAGENET,
    "smallcnn": InputConvention("gray", 1.0, (0.0,), (1.0,), 1),  # the 32×32 glyphs as they are, in [0, 1]
}
