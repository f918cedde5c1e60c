"""Backbones and the embedding head of the MS-loss recipe.

The paper (Wang et al., CVPR 2019) uses BN-Inception pretrained on ImageNet with a linear embedding layer
on top; the official code (``book/sources.md#src-official-recipe``) builds it as: BN-Inception features -> global
**max** pooling -> ``Linear(1024, 512)`` (kaiming-normal fan-out, bias 0) -> L2 normalisation, and freezes the BN
running statistics every iteration (which the paper does not state; Musgrave et al. 2020 list it among the
undisclosed details).

* :class:`BNInception` is state-dict compatible with Cadene's ``bn_inception-52deb4733.pth`` (the
  ``pretrainedmodels`` package's ``bninception.py``): same module names, shapes, pooling (``ceil_mode``) and branch
  order. Input convention: **BGR, 0-255, mean [104, 117, 128], std 1** (:mod:`mslib.conventions`).
* ResNet-50 and GoogLeNet come from torchvision (RGB, 0-1, ImageNet mean/std).
* :class:`SmallCNN` is the CPU default for the embedded 32x32 glyph images.

Pretrained weights are given as a local path or a name in :data:`PRETRAINED`; named weights are downloaded once into
``torch.hub.get_dir()/checkpoints``, checked against their sha256, and loaded with ``torch.load(weights_only=True)``.
"""

from __future__ import annotations

import os
import pickle
import zipfile
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from mslib.conventions import INPUT_CONVENTIONS, InputConvention
from mslib.data.download import verified_download, verify_checksum
from mslib.data.errors import ChecksumError as ChecksumError  # re-exported: mslib.models.ChecksumError

BACKBONES = tuple(INPUT_CONVENTIONS)


@dataclass(frozen=True)
class WeightsSpec:
    """A named pretrained file: its URL, sha256 (full, or the prefix torchvision puts in its file names)."""

    backbone: str
    url: str
    sha256: str

    @property
    def filename(self) -> str:
        return self.url.rsplit("/", 1)[-1]


PRETRAINED: dict[str, WeightsSpec] = {
    "bninception-imagenet": WeightsSpec(
        "bninception",
        "http://data.lip6.fr/cadene/pretrainedmodels/bn_inception-52deb4733.pth",
        "52deb473314542a5c2f87e9e6f26f4ca42fe863d15f986414dbae8c2dfdd2353",
    ),
    # torchvision publishes only the sha256 prefix in the file name (and checks just that prefix itself).
    "resnet50-imagenet": WeightsSpec("resnet50", "https://download.pytorch.org/models/resnet50-0676ba61.pth",
                                     "0676ba61"),
    "googlenet-imagenet": WeightsSpec("googlenet", "https://download.pytorch.org/models/googlenet-1378be20.pth",
                                      "1378be20"),
}


# ----------------------------------------------------------------------------------------------- BN-Inception
# (name, 1x1, 3x3 reduce, 3x3, double reduce, double 3x3, pool kind, pool proj); stride-2 blocks have no 1x1/proj.
_INCEPTION = [
    ("3a", 192, 64, 64, 64, 64, 96, "avg", 32),
    ("3b", 256, 64, 64, 96, 64, 96, "avg", 64),
    ("3c", 320, 0, 128, 160, 64, 96, "max_s2", 0),
    ("4a", 576, 224, 64, 96, 96, 128, "avg", 128),
    ("4b", 576, 192, 96, 128, 96, 128, "avg", 128),
    ("4c", 576, 160, 128, 160, 128, 160, "avg", 128),
    ("4d", 608, 96, 128, 192, 160, 192, "avg", 128),
    ("4e", 608, 0, 128, 192, 192, 256, "max_s2", 0),
    ("5a", 1056, 352, 192, 320, 160, 224, "avg", 128),
    ("5b", 1024, 352, 192, 320, 192, 224, "max_s1", 128),
]


class BNInception(nn.Module):
    """BN-Inception (Ioffe & Szegedy 2015) with Cadene's flat module names, so his ImageNet weights load strictly.

    :meth:`features` returns the 1024-channel map of ``inception_5b``; :meth:`forward` is Cadene's classifier
    (7x7 average pooling + ``last_linear``), kept so the 1000-class weights load with ``strict=True``.
    """

    out_channels = 1024

    def __init__(self, num_classes: int = 1000) -> None:
        super().__init__()
        self._conv_bn("conv1_7x7_s2", 3, 64, 7, stride=2, padding=3)
        self.pool1_3x3_s2 = nn.MaxPool2d(3, stride=2, ceil_mode=True)
        self._conv_bn("conv2_3x3_reduce", 64, 64, 1)
        self._conv_bn("conv2_3x3", 64, 192, 3, padding=1)
        self.pool2_3x3_s2 = nn.MaxPool2d(3, stride=2, ceil_mode=True)
        for name, cin, c1, c3r, c3, cdr, cd, pool, proj in _INCEPTION:
            p = f"inception_{name}"
            stride = 2 if pool == "max_s2" else 1
            if c1:
                self._conv_bn(f"{p}_1x1", cin, c1, 1)
            self._conv_bn(f"{p}_3x3_reduce", cin, c3r, 1)
            self._conv_bn(f"{p}_3x3", c3r, c3, 3, stride=stride, padding=1)
            self._conv_bn(f"{p}_double_3x3_reduce", cin, cdr, 1)
            self._conv_bn(f"{p}_double_3x3_1", cdr, cd, 3, padding=1)
            self._conv_bn(f"{p}_double_3x3_2", cd, cd, 3, stride=stride, padding=1)
            if pool == "avg":
                pool_layer: nn.Module = nn.AvgPool2d(3, stride=1, padding=1, ceil_mode=True, count_include_pad=True)
            elif pool == "max_s2":
                pool_layer = nn.MaxPool2d(3, stride=2, ceil_mode=True)
            else:
                pool_layer = nn.MaxPool2d(3, stride=1, padding=1, ceil_mode=True)
            setattr(self, f"{p}_pool", pool_layer)
            if proj:
                self._conv_bn(f"{p}_pool_proj", cin, proj, 1)
        self.global_pool = nn.AvgPool2d(7, stride=1, padding=0, ceil_mode=True, count_include_pad=True)
        self.last_linear = nn.Linear(1024, num_classes)

    def _conv_bn(self, name: str, cin: int, cout: int, k: int, stride: int = 1, padding: int = 0) -> None:
        setattr(self, name, nn.Conv2d(cin, cout, k, stride=stride, padding=padding))
        setattr(self, f"{name}_bn", nn.BatchNorm2d(cout, affine=True))

    def _cbr(self, name: str, x: torch.Tensor) -> torch.Tensor:
        return F.relu(getattr(self, f"{name}_bn")(getattr(self, name)(x)))

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """``(N, 3, H, W)`` BGR 0-255 mean-subtracted images -> ``(N, 1024, ~H/32, ~W/32)`` feature maps.

        As in Cadene's definition, the ``ceil_mode`` pools of the stride-2 blocks only line up with their strided
        convolutions for some sizes (224, 227, 64, 96, ... work; 80 does not): other sizes raise in ``torch.cat``.
        """
        x = self.pool1_3x3_s2(self._cbr("conv1_7x7_s2", x))
        x = self._cbr("conv2_3x3", self._cbr("conv2_3x3_reduce", x))
        x = self.pool2_3x3_s2(x)
        for name, _, c1, *_rest, proj in _INCEPTION:
            p = f"inception_{name}"
            branches = [self._cbr(f"{p}_1x1", x)] if c1 else []
            branches.append(self._cbr(f"{p}_3x3", self._cbr(f"{p}_3x3_reduce", x)))
            d = self._cbr(f"{p}_double_3x3_reduce", x)
            branches.append(self._cbr(f"{p}_double_3x3_2", self._cbr(f"{p}_double_3x3_1", d)))
            pooled = getattr(self, f"{p}_pool")(x)
            branches.append(self._cbr(f"{p}_pool_proj", pooled) if proj else pooled)
            x = torch.cat(branches, 1)
        return x

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.last_linear(self.global_pool(self.features(x)).flatten(1))


# ----------------------------------------------------------------------------------------------- other backbones
class SmallCNN(nn.Module):
    """The CPU default: 4 x (conv3x3-BN-ReLU), widths 16/32/64/64, 2x2 max-pool after the first three.

    The widths are half those of the design study (``book/sources.md``, 32/64/128/128), so that a training step
    costs less (``benchmarks/bench_training.py`` measures both) and the results chapters' runs can be long enough
    to converge on a 2-core CPU.
    """

    out_channels = 64

    def __init__(self, in_channels: int = 1, widths: tuple[int, ...] = (16, 32, 64, 64)) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        cin = in_channels
        for i, w in enumerate(widths):
            layers += [nn.Conv2d(cin, w, 3, padding=1, bias=False), nn.BatchNorm2d(w), nn.ReLU(inplace=True)]
            if i < len(widths) - 1:
                layers.append(nn.MaxPool2d(2))
            cin = w
        self.body = nn.Sequential(*layers)
        self.out_channels = widths[-1]

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)


class TorchvisionBackbone(nn.Module):
    """ResNet-50 (2048 channels) or GoogLeNet (1024 channels) from torchvision, cut before its pooling layer."""

    def __init__(self, name: str) -> None:
        super().__init__()
        import torchvision

        self.name = name
        if name == "resnet50":
            self.net = torchvision.models.resnet50(weights=None)
            self.out_channels = 2048
        elif name == "googlenet":
            self.net = torchvision.models.googlenet(weights=None, aux_logits=False, init_weights=True)
            self.out_channels = 1024
        else:  # pragma: no cover - guarded by build_model
            raise ValueError(name)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        n = self.net
        if self.name == "resnet50":
            x = n.maxpool(n.relu(n.bn1(n.conv1(x))))
            return n.layer4(n.layer3(n.layer2(n.layer1(x))))
        x = n._transform_input(x)
        x = n.maxpool1(n.conv1(x))
        x = n.maxpool2(n.conv3(n.conv2(x)))
        x = n.maxpool3(n.inception3b(n.inception3a(x)))
        x = n.inception4e(n.inception4d(n.inception4c(n.inception4b(n.inception4a(x)))))
        return n.inception5b(n.inception5a(n.maxpool4(x)))

    def load_pretrained(self, state: dict[str, torch.Tensor]) -> None:
        # torchvision's GoogLeNet file also holds the auxiliary classifiers, which this backbone drops.
        state = {k: v for k, v in state.items() if not k.startswith(("aux1.", "aux2."))}
        self.net.load_state_dict(state, strict=True)
        if self.name == "googlenet":
            self.net.transform_input = True  # as torchvision does for its ImageNet GoogLeNet weights


# ----------------------------------------------------------------------------------------------- embedding model
class EmbeddingModel(nn.Module):
    """backbone features -> global pooling -> Linear -> L2 norm: the official ``linear_norm`` head (unit vectors)."""

    def __init__(self, backbone: nn.Module, embedding_dim: int = 512, pooling: str = "max",
                 backbone_name: str = "") -> None:
        super().__init__()
        if pooling not in ("max", "avg"):
            raise ValueError(f"pooling must be 'max' or 'avg', got {pooling!r}")
        if embedding_dim < 1:
            raise ValueError(f"embedding_dim must be positive, got {embedding_dim}")
        self.backbone = backbone
        self.pooling = pooling
        self.backbone_name = backbone_name
        self.head = nn.Linear(backbone.out_channels, embedding_dim)
        nn.init.kaiming_normal_(self.head.weight, mode="fan_out")
        nn.init.zeros_(self.head.bias)

    @property
    def input_convention(self) -> InputConvention | None:
        """Colour space, value range, mean and std the backbone expects (:mod:`mslib.conventions`)."""
        return INPUT_CONVENTIONS.get(self.backbone_name)

    def pooled(self, x: torch.Tensor) -> torch.Tensor:
        """Globally pooled backbone features ``(N, C)`` (max pooling as the official code; avg optional)."""
        f = self.backbone.features(x)
        f = F.adaptive_max_pool2d(f, 1) if self.pooling == "max" else F.adaptive_avg_pool2d(f, 1)
        return f.flatten(1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.head(self.pooled(x)), dim=1)


def freeze_bn_stats(model: nn.Module) -> nn.Module:
    """Put every BatchNorm layer in eval mode, so its running mean/var stop updating; affine γ/β still train.

    ``model.train()`` undoes it, so call this after every ``model.train()``: the official code runs
    ``model.apply(set_bn_eval)`` every iteration (``book/sources.md#src-official-recipe``). The paper does not state it.
    """
    for m in model.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            m.eval()
    return model


def build_model(
    backbone: str,
    embedding_dim: int = 512,
    *,
    pretrained: str | os.PathLike | None = None,
    pooling: str = "max",
    in_channels: int = 3,
) -> EmbeddingModel:
    """An :class:`EmbeddingModel` on ``backbone`` (one of :data:`BACKBONES`).

    ``pretrained`` is a weights file or a name from :data:`PRETRAINED` (downloaded once and verified); it loads into
    the backbone with ``strict=True``. ``in_channels`` applies to ``smallcnn`` only (1 for the glyph images).
    """
    if backbone not in BACKBONES:
        raise ValueError(f"unknown backbone {backbone!r}; choose one of {BACKBONES}")
    if backbone != "smallcnn" and in_channels != 3:
        raise ValueError(f"{backbone} takes 3-channel images, got in_channels={in_channels}")
    if backbone == "bninception":
        net: nn.Module = BNInception()
    elif backbone == "smallcnn":
        net = SmallCNN(in_channels=in_channels)
    else:
        net = TorchvisionBackbone(backbone)
    if pretrained is not None:
        spec = PRETRAINED.get(str(pretrained))
        if spec is not None and spec.backbone != backbone:
            raise ValueError(f"pretrained weights {pretrained!r} are for {spec.backbone}, not {backbone}")
        state = load_weights(resolve_weights(pretrained))
        try:
            if isinstance(net, TorchvisionBackbone):
                net.load_pretrained(state)
            else:
                net.load_state_dict(state, strict=True)
        except RuntimeError as err:
            raise ValueError(f"weights {pretrained!r} do not fit the {backbone} backbone: {err}") from err
    return EmbeddingModel(net, embedding_dim, pooling=pooling, backbone_name=backbone)


# ----------------------------------------------------------------------------------------------- weights files
def download_weights(url: str, sha256: str, filename: str | None = None) -> Path:
    """``torch.hub.get_dir()/checkpoints/<filename>``, downloaded once and verified against ``sha256``.

    The download is :func:`mslib.data.download.verified_download`: an interrupted one keeps ``<filename>.part``
    and resumes on the next call, a checksum mismatch leaves no file. A cached file with the wrong checksum is a
    :class:`ChecksumError`, not a silent download: delete it to download again.
    """
    dest = Path(torch.hub.get_dir()) / "checkpoints" / (filename or url.rsplit("/", 1)[-1])
    if dest.exists():
        verify_checksum(dest, sha256=sha256, what=f"cached weights {dest} (delete the file to download again)")
        return dest
    return verified_download(url, dest, sha256=sha256, progress=False)


def resolve_weights(pretrained: str | os.PathLike) -> Path:
    """A local weights file, or the verified cached download of a name in :data:`PRETRAINED`."""
    spec = PRETRAINED.get(str(pretrained))
    if spec is not None:
        return download_weights(spec.url, spec.sha256, spec.filename)
    path = Path(pretrained).expanduser()
    if not path.is_file():
        raise ValueError(f"pretrained={str(pretrained)!r} is neither a file nor one of {sorted(PRETRAINED)}")
    return path


def load_weights(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """A state dict from ``path`` with ``torch.load(weights_only=True)``; anything else is a ``ValueError``."""
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, zipfile.BadZipFile, ValueError, OSError) as err:
        raise ValueError(f"{path} is not a PyTorch weights file loadable with weights_only=True: {err}") from err
    if isinstance(obj, dict) and isinstance(obj.get("state_dict"), dict):
        obj = obj["state_dict"]
    if not isinstance(obj, dict) or not obj or not all(
        isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in obj.items()
    ):
        raise ValueError(f"{path} does not hold a state dict (a non-empty mapping of names to tensors)")
    return obj
