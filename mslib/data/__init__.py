"""Datasets, downloads, the P×K sampler and transforms (book chapter "Data").

``load_dataset(name, split)`` is the one entry point: ``"glyphs"`` (the embedded offline default, Glyphs-208) and
the paper's four benchmarks ``"cub200"``, ``"cars196"``, ``"sop"``, ``"inshop"`` read from ``data/<name>/``.
"""

from __future__ import annotations

from mslib.data.datasets import (
    DATASETS,
    EXPECTED,
    SPLITS,
    GlyphDataset,
    ImageListDataset,
    dataset_root,
    load_dataset,
)
from mslib.data.errors import (
    ChecksumError,
    CountMismatchError,
    DatasetError,
    DatasetNotFoundError,
    DuplicateEntryError,
    SplitMismatchError,
    UnreadableImageError,
)
from mslib.data.sampler import PKSampler

__all__ = [
    "DATASETS", "EXPECTED", "SPLITS", "ChecksumError", "CountMismatchError", "DatasetError",
    "DatasetNotFoundError", "DuplicateEntryError", "GlyphDataset", "ImageListDataset", "PKSampler",
    "SplitMismatchError", "UnreadableImageError", "dataset_root", "load_dataset",
]
