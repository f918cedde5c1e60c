"""The by-name API over the dataset registry (book chapter "Data"): everything that takes a dataset's name reads its
row of :data:`mslib.data.registry.DATASETS` here: :func:`load_dataset`, :func:`load_run_splits`,
:func:`verify_dataset`, :func:`download_dataset`, :func:`make_fixture`.

The layers, each importing only those below it (no import cycle): the readers, loaders and dataset classes
(:mod:`mslib.data.datasets`, :mod:`mslib.data.folder`, :mod:`mslib.data.omniglot`), the fetching
(:mod:`mslib.data.download`) and the fixture makers (:mod:`mslib.data.fixtures`); the registry of rows naming them
(:mod:`mslib.data.registry`); this module. A reader's error names the file and the line; :func:`read_records`
appends the row's advice, how to (re-)fetch the dataset (:func:`mslib.data.registry.fetch_advice`), in one place.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
from torch.utils.data import Dataset

from mslib.data.datasets import ImageListDataset, Records, _readable, _select, _shown
from mslib.data.download import RemoteFile, extract_archive, verified_download
from mslib.data.errors import CountMismatchError, DatasetError, DatasetNotFoundError, UnreadableImageError
from mslib.data.registry import DATASETS, DatasetSpec, dataset_spec, fetch_advice
from mslib.data.transforms import build_transform
from mslib.paths import data_dir


def dataset_root(name: str, root: str | Path | None = None) -> Path:
    """``root`` or ``data/<default_root>/``; raises :class:`DatasetNotFoundError` (with the fetch command) if absent.

    A dataset without a default folder (your own images, ``folder``) needs ``root``.
    """
    spec = dataset_spec(name)
    if root is None and spec.default_root is None:
        raise DatasetNotFoundError(f"{name}: no dataset root given and {name} has no default folder: pass "
                                   f"root=DIR (CLI --root DIR, config data_root: DIR); {fetch_advice(name)}")
    path = Path(root) if root is not None else data_dir() / str(spec.default_root)
    if not path.exists():
        raise DatasetNotFoundError(f"{name}: dataset root {path} does not exist; {fetch_advice(name)}, or pass "
                                   "root=<folder holding the extracted archive>")
    return path


def _check_counts(name: str, split: str, n_found: int, classes_found: int) -> None:
    """Raise :class:`CountMismatchError` unless ``split`` has the published image (and class) count."""
    n_images, n_classes = dataset_spec(name).expected[split]
    if n_found != n_images or (n_classes is not None and classes_found != n_classes):
        raise CountMismatchError(
            f"{name} {split}: expected {n_images:,} images"
            + (f" of {n_classes:,} classes" if n_classes is not None else "")
            + f", found {n_found:,} images of {classes_found:,} classes. The download is incomplete or not the "
            f"published archive: {fetch_advice(name)} (or pass check_counts=False / --no-count-check "
            "for a deliberate subset)"
        )


def check_split_counts(name: str, records: Records) -> None:
    """Raise :class:`CountMismatchError` unless every split has the published counts (the row's ``expected``)."""
    for split in dataset_spec(name).expected:
        paths, raw = records[split]
        _check_counts(name, split, len(paths), len(np.unique(raw)))


def _check_split_and_options(spec: DatasetSpec, split: str | None, options: dict[str, Any]) -> None:
    if split is not None and split not in spec.splits:
        raise ValueError(f"unknown split {split!r} for {spec.name}; valid splits: {', '.join(spec.splits)}")
    unknown = sorted(set(options) - set(spec.options))
    if unknown:
        raise TypeError(f"unexpected options for {spec.name}: {', '.join(unknown)}; {spec.name} takes "
                        + (", ".join(spec.options) if spec.options else "none"))


def _loader_root(spec: DatasetSpec, root: str | Path | None) -> Path | None:
    """An in-memory loader's root: ``root``, else ``data/<default_root>/`` (None where there is none)."""
    if root is not None:
        return Path(root)
    return data_dir() / spec.default_root if spec.default_root is not None else None


def read_records(name: str, root: str | Path | None = None, *, check_counts: bool = True,
                 **options: Any) -> tuple[Records, Path]:
    """A files dataset's records and image folder (its registry row's ``reader``), counts checked. A reader's
    :class:`DatasetError` (naming the file and the line) is raised again, same type and traceback, with the row's
    advice (:func:`mslib.data.registry.fetch_advice`) appended."""
    spec, base = dataset_spec(name), dataset_root(name, root)
    try:
        records, folder = spec.reader(base, **options)
    except DatasetError as err:  # the reader named the file and the line; the row knows how to re-fetch
        raise type(err)(f"{err}; {fetch_advice(name)}").with_traceback(err.__traceback__) from err.__cause__
    if check_counts:
        check_split_counts(name, records)
    return records, folder


def _class_names(records: Records, paths: Sequence[str], labels: np.ndarray, num_classes: int) -> list[str]:
    raw_of: dict[str, Any] = {}
    for split_paths, raw in records.values():
        raw_of.update(zip(split_paths, raw.tolist(), strict=True))
    names = [""] * num_classes
    for path, label in zip(paths, labels.tolist(), strict=True):
        names[label] = str(raw_of[path])
    return names


def image_list(name: str, records: Records, folder: Path, split: str, *, transform: Callable | None = None,
               val_fraction: float = 0.0, seed: int = 0, skip_unreadable: bool = False) -> ImageListDataset:
    """Split ``split`` of ``records`` (:func:`read_records`) as an :class:`ImageListDataset`."""
    if split not in records and split not in ("train", "val", "test"):
        raise ValueError(f"{name}: split {split!r} is not in this copy (it has {', '.join(records)}): query and "
                         "gallery need rows with split query/gallery")
    paths, labels = _select(records, split, val_fraction, seed)
    num_classes = len(np.unique(labels))
    if "query" in records and split in ("query", "gallery", "test"):  # In-Shop: one mapping for query and gallery
        num_classes = len(np.unique(np.concatenate([records["query"][1], records["gallery"][1]])))
    return ImageListDataset(name, split, folder, paths, labels, transform=transform, skip_unreadable=skip_unreadable,
                            num_classes=num_classes, class_names=_class_names(records, paths, labels, num_classes),
                            advice=fetch_advice(name))


def load_dataset(
    name: str,
    split: str,
    *,
    root: str | Path | None = None,
    transform: Callable | None = None,
    val_fraction: float = 0.0,
    seed: int = 0,
    check_counts: bool = True,
    skip_unreadable: bool = False,
    **options: Any,
) -> Dataset:
    """Dataset ``name`` (:data:`mslib.data.registry.DATASETS`), split ``train``/``val``/``test`` (In-Shop, and a
    ``folder`` CSV with query/gallery rows, also ``query``/``gallery``).

    Every returned dataset has ``.labels`` (int64, 0..C-1 per split), ``.num_classes``, ``len`` and
    ``ds[i] -> (image, label)``. ``val_fraction`` and ``seed`` choose the class-disjoint validation classes.
    ``check_counts`` compares the split sizes with the published ones (the row's ``expected``); ``skip_unreadable``
    scans the images and skips undecodable ones with a warning. ``options`` go to the row's reader or loader
    (its ``options``): glyphs ``glyph_seed``, ``images_per_class``, ``classes``, ``cache``, ``fonts``
    (:func:`mslib.data.glyphs.generate_glyphs`); folder ``csv``, ``split_seed`` (:func:`mslib.data.folder.read_folder`).
    """
    spec = dataset_spec(name)
    _check_split_and_options(spec, split, options)
    if spec.loader is not None:
        return spec.loader(split, root=_loader_root(spec, root), transform=transform, val_fraction=val_fraction,
                           seed=seed, **options)
    records, folder = read_records(name, root, check_counts=check_counts, **options)
    return image_list(name, records, folder, split, transform=transform, val_fraction=val_fraction, seed=seed,
                      skip_unreadable=skip_unreadable)


def check_images_per_class(ds: ImageListDataset, k: int) -> None:
    """Raise :class:`DatasetError` naming every class of ``ds`` with fewer than ``k`` images (and their folders):
    a P×K batch takes ``k`` images of each of its classes."""
    counts = np.bincount(ds.labels, minlength=ds.num_classes)
    small = []
    for label in np.flatnonzero((counts > 0) & (counts < k)).tolist():
        folders = sorted({str(ds.image_path(i).parent) for i in np.flatnonzero(ds.labels == label)[:50].tolist()})
        small.append(f"class {ds.class_names[label]!r} has {counts[label]} (in {', '.join(folders[:3])})")
    if small:
        raise DatasetError(f"{ds.name} {ds.split}: {len(small)} class(es) with fewer than k={k} images, the images "
                           f"per class of a P×K batch: {_shown(small)}. Add images to them, remove them, or lower k "
                           f"to {int(counts[counts > 0].min())} (--set k=...)")


def load_run_splits(name: str, *, root: str | Path | None = None, options: dict[str, Any] | None = None,
                    val_fraction: float = 0.0, seed: int = 0, backbone: str = "smallcnn", image_size: int = 227,
                    resize: int | None = None, k: int | None = None, check_counts: bool = True) -> dict[str, Dataset]:
    """A training run's splits: ``train``; ``val`` when ``val_fraction > 0``; ``test``, or ``query`` and
    ``gallery`` where the data has them (In-Shop, a folder CSV with query/gallery rows), with the backbone's
    transforms (:func:`mslib.data.transforms.build_transform`; glyph-like rows upscaled for image backbones).

    With ``k`` (images per class of a P×K batch) a row with ``pad_to_k=False`` (your own images) must give every
    training class at least ``k`` images (:func:`check_images_per_class`); the others are padded by the sampler.
    ``options`` go to the row's reader or loader, except ``check_counts`` and ``skip_unreadable``, which are
    :func:`load_dataset`'s (for the files rows; ``check_counts`` there overrides the argument).
    """
    spec, options = dataset_spec(name), dict(options or {})
    check_counts = bool(options.pop("check_counts", check_counts))
    skip_unreadable = bool(options.pop("skip_unreadable", False))
    _check_split_and_options(spec, None, options)
    tf = {train: build_transform(backbone, train=train, size=image_size, resize=resize, glyphs=spec.gray)
          for train in (True, False)}
    if spec.loader is not None:
        load = partial(spec.loader, root=_loader_root(spec, root), val_fraction=val_fraction, seed=seed, **options)
        tests = ("query", "gallery") if spec.query_gallery else ("test",)
    else:
        records, folder = read_records(name, root, check_counts=check_counts, **options)
        load = partial(image_list, name, records, folder, val_fraction=val_fraction, seed=seed,
                       skip_unreadable=skip_unreadable)
        tests = ("query", "gallery") if "query" in records else ("test",)
    sets = {"train": load("train", transform=tf[True])}
    for split in (["val"] if val_fraction > 0 else []) + list(tests):
        sets[split] = load(split, transform=tf[False])
    if k is not None and not spec.pad_to_k:
        check_images_per_class(sets["train"], k)
    return sets


def verify_dataset(name: str, root: str | Path | None = None, *, check_counts: bool = True,
                   check_images: bool = True, progress: bool = False, **options: Any) -> dict[str, dict[str, int]]:
    """Check a dataset on disk: list files, published counts, and (``check_images``) that every image decodes.

    Returns ``{split: {"images": n, "classes": c}}``; raises a :class:`DatasetError` naming what is wrong.
    ``options`` go to the row's reader or loader (as in :func:`load_dataset`).
    """
    spec = dataset_spec(name)
    _check_split_and_options(spec, None, options)
    if spec.loader is not None:
        summary = {}
        for split in spec.verify_splits:
            ds = spec.loader(split, root=_loader_root(spec, root), transform=None, val_fraction=0.0, seed=0,
                             **options)
            if check_counts and split in spec.expected:
                _check_counts(name, split, len(ds), ds.num_classes)
            summary[split] = {"images": len(ds), "classes": ds.num_classes}
        return summary
    records, folder = read_records(name, root, check_counts=check_counts, **options)
    splits = ("train", "query", "gallery") if "query" in records else ("train", "test")
    summary = {}
    missing, unreadable = [], []
    for split in splits:
        ds = image_list(name, records, folder, split)
        summary[split] = {"images": len(ds), "classes": int(len(np.unique(ds.labels)))}
        if check_images:
            items = range(len(ds))
            if progress:
                from tqdm.auto import tqdm

                items = tqdm(items, desc=f"{name} {split}", unit="img")
            for i in items:
                path = ds.image_path(i)
                if not path.is_file():
                    missing.append(path)
                elif not _readable(path):
                    unreadable.append(path)
    if missing:
        raise DatasetNotFoundError(f"{name}: {len(missing)} image file(s) missing, e.g. "
                                   + ", ".join(map(str, missing[:5])) + f"; {fetch_advice(name)}")
    if unreadable:
        raise UnreadableImageError(f"{name}: {len(unreadable)} image(s) cannot be decoded: "
                                   + ", ".join(map(str, unreadable[:5]))
                                   + f"; {fetch_advice(name)}, or load with skip_unreadable=True")
    return summary


def download_dataset(name: str, root: Path, *, progress: bool = True, keep_archives: bool = False,
                     sources: tuple[RemoteFile, ...] | None = None) -> list[Path]:
    """Fetch every file of ``name`` (its registry row's ``download``, or ``sources``) into ``root`` (verified,
    extracted); return the paths placed.

    A dataset without download files raises :class:`DatasetError` with its row's ``manual`` text: the
    hand-download steps (In-Shop), or where a generated or your own dataset comes from.
    """
    spec = dataset_spec(name)
    sources = sources if sources is not None else spec.download
    if not sources:
        raise DatasetError(str(spec.manual).format(root=root))
    root = Path(root)
    placed = []
    for remote in sources:
        path = verified_download(remote.urls, root / remote.filename, md5=remote.md5, sha256=remote.sha256,
                                 progress=progress)
        if remote.extract:
            placed += extract_archive(path, root)
            if not keep_archives:
                path.unlink()
        else:
            placed.append(path)
    return placed


def make_fixture(name: str, root: str | Path, **options: object) -> Path:
    """Write the miniature ``name`` layout (its registry row's ``fixture``, :mod:`mslib.data.fixtures`) under
    ``root`` (created if needed).

    ``options`` go to the maker (``make_cars(class_names=...)``, ``make_inshop(nested=...)``,
    ``make_folder_dataset(classes=...)``).
    """
    maker = dataset_spec(name).fixture
    if maker is None:
        raise ValueError(f"{name} has no miniature fixture; fixtures exist for "
                         + ", ".join(n for n, spec in DATASETS.items() if spec.fixture is not None))
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    return maker(root, **options)


__all__ = ["check_images_per_class", "check_split_counts", "dataset_root", "download_dataset", "image_list",
           "load_dataset", "load_run_splits", "make_fixture", "read_records", "verify_dataset"]
