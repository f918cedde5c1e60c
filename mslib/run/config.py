"""The settings of a training run: :class:`TrainConfig`, built from a YAML file plus overrides in one way.

Every setting has a default (the CPU run on the embedded glyph dataset, ``notebooks/05_training.ipynb``);
``configs/*.yaml`` hold the paper's recipes. :meth:`TrainConfig.from_file` is the one way to read a file and apply
overrides on top of it: the command line (``python -m mslib train --config FILE --set KEY=VALUE``), the chapters
(:func:`mslib.reproduce.chapter_config`) and the scripts all use it. An unknown setting name is an error that
names it (a typo must not silently run the defaults).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from mslib.losses import canonical_params, loss_names
from mslib.models import BACKBONES

MS_PRESET = "pml"  # the MS hyperparameters a config does not set come from this preset (mslib.losses.MS_PRESETS)


@dataclass
class TrainConfig:
    """Every setting of a training run. Defaults: the CPU run on the embedded glyph dataset.

    ``threads`` (torch CPU intra-op threads, set by :func:`mslib.run.trainer.fit` for the run) is a setting like
    any other: the order of parallel reductions may depend on it, and rounding differences grow over training (the
    same run at 1 and 2 threads can end a point of R@1 apart), so a record states it and a sweep's runs keep it
    whatever the machine's core count or the number of runs beside them.
    """

    dataset: str = "glyphs"
    data_root: str | None = None
    dataset_options: dict[str, Any] = field(default_factory=dict)  # e.g. glyphs: {"classes": 40}
    backbone: str = "smallcnn"
    pretrained: str | None = None
    pooling: str = "avg"
    embedding_dim: int = 64
    image_size: int = 227  # input size for image backbones (glyphs are upscaled to it when needed)
    resize: int | None = None  # shorter side before the crop; None: the convention's rule (256 at 227 / 224)
    loss: str = "multi_similarity"
    loss_params: dict[str, Any] = field(default_factory=dict)  # multi_similarity: unset ones from MS_PRESET
    memory_size: int = 0  # cross-batch memory (XBM) of this many past embeddings; 0: none (mslib.memory)
    memory_start: int = 0  # the iteration from which the memory is filled and used
    memory_weight: float = 1.0  # w of w·L(batch, memory)
    memory_batch_loss: bool = False  # also add L(batch, batch), as the XBM authors' trainer does
    p: int = 16  # classes per batch
    k: int = 5  # images per class
    iterations: int = 600
    optimizer: str = "adam"  # adam | adamw | sgd
    lr: float = 1e-3
    weight_decay: float = 1e-5
    momentum: float = 0.9
    warmup_iterations: int = 0
    warmup_factor: float = 0.01
    milestones: list[int] = field(default_factory=list)
    gamma: float = 0.1
    freeze_bn: bool = False
    val_fraction: float = 0.0  # fraction of training classes held out for model selection
    eval_every: int = 200
    official_test_selection: bool = False  # also track the official protocol's best test R@1 (optimistic)
    ks: list[int] = field(default_factory=lambda: [1, 2, 4, 8])
    eval_batch_size: int = 256
    device: str = "cpu"
    amp: str | None = None  # None | "bf16" | "fp16" (CUDA only)
    channels_last: bool = True  # NHWC layout of images and conv weights (speed only; the small CNN: ~24% on a CPU)
    num_workers: int = 0
    threads: int = 1  # torch intra-op CPU threads of this run (fit sets them); a run's numbers may depend on it
    seed: int = 0
    checkpoint_every: int = 0  # 0: only at the end
    log_every: int = 20

    def __post_init__(self) -> None:
        if self.loss not in loss_names():
            raise ValueError(f"unknown loss {self.loss!r}; choose one of {', '.join(loss_names())}")
        params = {"preset": MS_PRESET, **self.loss_params} if self.loss == "multi_similarity" else self.loss_params
        self.loss_params = canonical_params(self.loss, params)  # one spelling per run: a preset's values
        if self.backbone not in BACKBONES:
            raise ValueError(f"unknown backbone {self.backbone!r}; choose one of {sorted(BACKBONES)}")
        if self.optimizer not in ("adam", "adamw", "sgd"):
            raise ValueError(f"unknown optimizer {self.optimizer!r}; choose adam, adamw or sgd")
        if self.amp not in (None, "bf16", "fp16"):
            raise ValueError(f"amp must be None, 'bf16' or 'fp16', not {self.amp!r}")
        if self.memory_size < 0 or self.memory_start < 0:
            raise ValueError(f"memory_size and memory_start must be ≥ 0 (got {self.memory_size}, {self.memory_start})")
        if self.p < 2 or self.k < 2:
            raise ValueError(f"a P×K batch needs p ≥ 2 classes and k ≥ 2 images per class (got p={self.p}, k={self.k})")
        if self.iterations < 1:
            raise ValueError("iterations must be ≥ 1")
        if isinstance(self.threads, bool) or not isinstance(self.threads, int) or self.threads < 1:
            raise ValueError(f"threads must be an integer ≥ 1 (torch CPU threads of the run), not {self.threads!r}")

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> TrainConfig:
        """Build a config, rejecting unknown keys by name (a typo must not silently run the defaults)."""
        _check_names(data, "")
        return cls(**data)

    @classmethod
    def from_file(cls, path: str | Path | None, overrides: Mapping[str, Any] | None = None) -> TrainConfig:
        """The settings of the YAML file ``path`` (None: the defaults) with ``overrides`` applied on top.

        The file must hold a mapping of setting names (an empty file is the defaults). Unknown names, in the file
        or in the overrides, are errors naming them and where they come from.
        """
        data = {} if path is None else _read_settings(Path(path))
        _check_names(data, f" in {path}")
        overrides = dict(overrides or {})
        _check_names(overrides, " in the overrides")
        return cls(**{**data, **overrides})

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def _check_names(data: Mapping[str, Any], where: str) -> None:
    """Reject setting names :class:`TrainConfig` does not have, naming them (and ``where`` they come from)."""
    names = {f.name for f in dataclasses.fields(TrainConfig)}
    unknown = sorted(set(data) - names)
    if unknown:
        raise ValueError(f"unknown training setting(s) {', '.join(map(str, unknown))}{where}; "
                         f"known: {', '.join(sorted(names))}")


def _read_settings(path: Path) -> dict[str, Any]:
    """The mapping a config file holds; a missing file or another YAML type is an error naming the file."""
    if not path.is_file():
        raise FileNotFoundError(f"no config file {path}")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as err:
        raise ValueError(f"{path} is not valid YAML: {err}") from err
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ValueError(f"{path} must hold a mapping of setting names to values, not a {type(data).__name__}")
    return data
