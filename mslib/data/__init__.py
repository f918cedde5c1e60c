"""Datasets, downloads, the P×K sampler and transforms (book chapter "Data").

``load_dataset(name, split)`` is the one entry point, ``load_run_splits(name, ...)`` a training run's splits
(:mod:`mslib.data.loading`, the by-name API), and :data:`DATASETS` (:mod:`mslib.data.registry`) the one table of
datasets: ``"glyphs"`` (the embedded offline
default, Glyphs-208), the paper's four benchmarks ``"cub200"``, ``"cars196"``, ``"sop"``, ``"inshop"`` read from
``data/<name>/``, and ``"folder"``, your own images (:mod:`mslib.data.folder`).
"""

from __future__ import annotations

from mslib.data.datasets import GlyphDataset, ImageListDataset
from mslib.data.errors import (
    ChecksumError,
    CountMismatchError,
    DatasetError,
    DatasetNotFoundError,
    DuplicateEntryError,
    SplitMismatchError,
    UnreadableImageError,
)
from mslib.data.loading import (
    dataset_root,
    download_dataset,
    load_dataset,
    load_run_splits,
    make_fixture,
    verify_dataset,
)
from mslib.data.registry import DATASETS, DatasetSpec, dataset_spec
from mslib.data.sampler import PKSampler

__all__ = [
    "DATASETS", "ChecksumError", "CountMismatchError", "DatasetError", "DatasetNotFoundError", "DatasetSpec",
    "DuplicateEntryError", "GlyphDataset", "ImageListDataset", "PKSampler", "SplitMismatchError",
    "UnreadableImageError", "dataset_root", "dataset_spec", "download_dataset", "load_dataset", "load_run_splits",
    "make_fixture", "verify_dataset",
]
