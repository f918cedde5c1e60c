"""The datasets: Glyphs-208 (embedded) and the paper's four benchmarks, read from their real on-disk layouts.

Zero-shot splits (``book/sources.md#src-datasets``): the first half of the classes train, the second half
test.
Labels are remapped to ``0..C-1`` per split (for In-Shop, query and gallery share one mapping so that they can be
compared). ``val_fraction > 0`` carves a class-disjoint validation split out of the training classes (seeded);
``"train"`` then excludes those classes.

On-disk layouts under ``data/<name>/`` (or ``root``):

- ``cub200``: ``CUB_200_2011/{images.txt, image_class_labels.txt, classes.txt, images/<class>/<file>.jpg}``
- ``cars196``: ``cars_annos.mat`` and ``car_ims/<file>.jpg``
- ``sop``: ``Stanford_Online_Products/{Ebay_train.txt, Ebay_test.txt, <super_class>_final/<file>.JPG}``
- ``inshop``: ``Eval/list_eval_partition.txt`` and ``img/<...>.jpg``
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from mslib.data.errors import (
    CountMismatchError,
    DatasetError,
    DatasetNotFoundError,
    UnreadableImageError,
    fetch_hint,
)
from mslib.paths import data_dir

DATASETS = ("glyphs", "cub200", "cars196", "sop", "inshop")
SPLITS: dict[str, tuple[str, ...]] = {
    "glyphs": ("train", "val", "test"),
    "cub200": ("train", "val", "test"),
    "cars196": ("train", "val", "test"),
    "sop": ("train", "val", "test"),
    "inshop": ("train", "val", "test", "query", "gallery"),
}
#: Published (images, classes) per split; ``None`` where no class count is published separately.
EXPECTED: dict[str, dict[str, tuple[int, int | None]]] = {
    "glyphs": {"train": (5200, 104), "test": (5200, 104)},
    "cub200": {"train": (5864, 100), "test": (5924, 100)},
    "cars196": {"train": (8054, 98), "test": (8131, 98)},
    "sop": {"train": (59551, 11318), "test": (60502, 11316)},
    "inshop": {"train": (25882, 3997), "query": (14218, None), "gallery": (12612, None)},
}
CITATIONS = {"glyphs": None, "cub200": "wah2011caltech", "cars196": "krause20133d", "sop": "song2016deep",
             "inshop": "liu2016deepfashion"}


def _check_name_split(name: str, split: str) -> None:
    if name not in SPLITS:
        raise ValueError(f"unknown dataset {name!r}; valid names: {', '.join(DATASETS)}")
    if split not in SPLITS[name]:
        raise ValueError(f"unknown split {split!r} for {name}; valid splits: {', '.join(SPLITS[name])}")


def dataset_root(name: str, root: str | Path | None = None) -> Path:
    """``root`` or ``data/<name>/``; raises :class:`DatasetNotFoundError` (with the fetch command) if absent."""
    path = Path(root) if root is not None else data_dir() / name
    if not path.is_dir():
        raise DatasetNotFoundError(f"{name}: dataset root {path} does not exist; fetch it with `{fetch_hint(name)}`"
                                   " or pass root=<folder holding the extracted archive>")
    return path


def _need(name: str, path: Path) -> Path:
    if not path.is_file():
        raise DatasetNotFoundError(f"{name}: {path} not found; fetch the dataset with `{fetch_hint(name)}`")
    return path


def _remap(raw: np.ndarray, classes: np.ndarray | None = None) -> np.ndarray:
    classes = np.unique(raw) if classes is None else classes
    return np.searchsorted(classes, raw).astype(np.int64)


# -- readers: each returns {base split: (relative image paths, raw class ids)} and the image folder ---------------

Records = dict[str, tuple[list[str], np.ndarray]]


def _split_by_class(paths: list[str], raw: np.ndarray, first_test: int) -> Records:
    train = raw < first_test
    return {
        "train": ([p for p, t in zip(paths, train, strict=True) if t], raw[train]),
        "test": ([p for p, t in zip(paths, train, strict=True) if not t], raw[~train]),
    }


def read_cub200(root: Path) -> tuple[Records, Path]:
    """CUB-200-2011: ``images.txt`` (``id path``) + ``image_class_labels.txt`` (``id class``); classes 1–100 train."""
    base = root / "CUB_200_2011" if (root / "CUB_200_2011").is_dir() else root
    images = dict(line.split(maxsplit=1) for line in _need("cub200", base / "images.txt").read_text().splitlines()
                  if line.strip())
    labels = dict(line.split() for line in _need("cub200", base / "image_class_labels.txt").read_text().splitlines()
                  if line.strip())
    if images.keys() != labels.keys():
        raise DatasetError(f"cub200: {base / 'images.txt'} and image_class_labels.txt list different image ids")
    ids = sorted(images, key=int)
    return _split_by_class([images[i].strip() for i in ids], np.array([int(labels[i]) for i in ids]), 101), \
        base / "images"


def read_cars196(root: Path) -> tuple[Records, Path]:
    """Cars196: ``cars_annos.mat`` (``annotations``: ``relative_im_path``, ``class`` 1–196); classes 1–98 train."""
    from scipy.io import loadmat

    path = _need("cars196", root / "cars_annos.mat")
    try:
        ann = loadmat(str(path), squeeze_me=True)["annotations"]
    except (ValueError, KeyError, OSError) as err:
        raise DatasetError(f"cars196: cannot read {path} ({err}); re-fetch it with `{fetch_hint('cars196')}`") from err
    ann = np.atleast_1d(ann)
    paths = [str(p) for p in ann["relative_im_path"]]
    raw = np.array([int(c) for c in ann["class"]])
    return _split_by_class(paths, raw, 99), root


def read_sop(root: Path) -> tuple[Records, Path]:
    """SOP: ``Ebay_{train,test}.txt``, one header line then ``image_id class_id super_class_id path``."""
    base = root / "Stanford_Online_Products" if (root / "Stanford_Online_Products").is_dir() else root
    out: Records = {}
    for split in ("train", "test"):
        path = _need("sop", base / f"Ebay_{split}.txt")
        lines = path.read_text().splitlines()
        if not lines or lines[0].split()[:2] != ["image_id", "class_id"]:
            raise DatasetError(f"sop: {path} does not start with the header 'image_id class_id super_class_id path'")
        rows = [line.split() for line in lines[1:] if line.strip()]
        out[split] = ([r[3] for r in rows], np.array([int(r[1]) for r in rows]))
    return out, base


def read_inshop(root: Path) -> tuple[Records, Path]:
    """In-Shop: ``list_eval_partition.txt``: a count line, a header line, then ``image_name item_id status``."""
    path = root / "Eval" / "list_eval_partition.txt"
    if not path.is_file():
        path = root / "list_eval_partition.txt"
    _need("inshop", path)
    lines = path.read_text().splitlines()
    if len(lines) < 2 or not lines[0].strip().isdigit() or lines[1].split()[:2] != ["image_name", "item_id"]:
        raise DatasetError(f"inshop: {path} must start with a count line and the header "
                           "'image_name item_id evaluation_status'")
    rows = [line.split() for line in lines[2:] if line.strip()]
    if int(lines[0]) != len(rows):
        raise CountMismatchError(f"inshop: {path} announces {int(lines[0])} images but lists {len(rows)}; "
                                 f"the file is truncated: re-fetch it (`{fetch_hint('inshop')}`)")
    out: Records = {}
    for split in ("train", "query", "gallery"):
        sel = [r for r in rows if r[2] == split]
        out[split] = ([r[0] for r in sel], np.array([int(r[1].split("_")[-1]) for r in sel]))
    return out, root


READERS: dict[str, Callable[[Path], tuple[Records, Path]]] = {
    "cub200": read_cub200, "cars196": read_cars196, "sop": read_sop, "inshop": read_inshop,
}


def check_split_counts(name: str, records: Records) -> None:
    """Raise :class:`CountMismatchError` unless every split has the published image and class counts."""
    for split, (n_images, n_classes) in EXPECTED[name].items():
        paths, raw = records[split]
        found_classes = len(np.unique(raw))
        if len(paths) != n_images or (n_classes is not None and found_classes != n_classes):
            raise CountMismatchError(
                f"{name} {split}: expected {n_images:,} images"
                + (f" of {n_classes:,} classes" if n_classes is not None else "")
                + f", found {len(paths):,} images of {found_classes:,} classes. The download is incomplete or not the "
                f"published archive: re-run `{fetch_hint(name)}` (or pass check_counts=False / --no-count-check "
                "for a deliberate subset)"
            )


def _val_classes(train_raw: np.ndarray, val_fraction: float, seed: int) -> np.ndarray:
    if not 0.0 <= val_fraction < 1.0:
        raise ValueError(f"val_fraction must be in [0, 1), got {val_fraction}")
    classes = np.unique(train_raw)
    if val_fraction == 0.0:
        return classes[:0]
    n_val = max(1, int(round(val_fraction * len(classes))))
    if n_val >= len(classes):
        raise ValueError(f"val_fraction={val_fraction} leaves no training classes (of {len(classes)})")
    return np.sort(np.random.default_rng(seed).choice(classes, size=n_val, replace=False))


def _select(records: Records, split: str, val_fraction: float, seed: int) -> tuple[list[str], np.ndarray]:
    """Relative paths and remapped labels of ``split`` (carving ``val`` out of ``train``)."""
    if split == "val" and val_fraction == 0.0:
        raise ValueError("split 'val' needs val_fraction > 0 (a class-disjoint part of the training classes)")
    if split in ("train", "val"):
        paths, raw = records["train"]
        val = _val_classes(raw, val_fraction, seed)
        keep = np.isin(raw, val) if split == "val" else ~np.isin(raw, val)
        return [p for p, k in zip(paths, keep, strict=True) if k], _remap(raw[keep])
    if split in ("query", "gallery", "test") and "query" in records:  # In-Shop: one mapping for query and gallery
        shared = np.unique(np.concatenate([records["query"][1], records["gallery"][1]]))
        if split == "test":
            paths = records["query"][0] + records["gallery"][0]
            raw = np.concatenate([records["query"][1], records["gallery"][1]])
        else:
            paths, raw = records[split]
        return list(paths), _remap(raw, shared)
    paths, raw = records[split]
    return list(paths), _remap(raw)


class ImageListDataset(Dataset):
    """Images loaded lazily with PIL (RGB) from ``folder / path``; ``transform`` applied to the PIL image."""

    def __init__(self, name: str, split: str, folder: Path, paths: Sequence[str], labels: np.ndarray, *,
                 transform: Callable | None = None, skip_unreadable: bool = False,
                 num_classes: int | None = None) -> None:
        self.name, self.split, self.folder, self.transform = name, split, Path(folder), transform
        self.paths = list(paths)
        self.labels = np.asarray(labels, dtype=np.int64)
        self.num_classes = int(num_classes if num_classes is not None else len(np.unique(self.labels)))
        if skip_unreadable:
            bad = [i for i, p in enumerate(self.paths) if not _readable(self.folder / p)]
            if bad:
                shown = ", ".join(str(self.folder / self.paths[i]) for i in bad[:5])
                warnings.warn(f"{name} {split}: skipping {len(bad)} unreadable image(s): {shown}"
                              + (" ..." if len(bad) > 5 else ""), stacklevel=2)
                keep = np.ones(len(self.paths), dtype=bool)
                keep[bad] = False
                self.paths = [p for p, k in zip(self.paths, keep, strict=True) if k]
                self.labels = self.labels[keep]

    def __len__(self) -> int:
        return len(self.paths)

    def image_path(self, index: int) -> Path:
        return self.folder / self.paths[index]

    def load_image(self, index: int):
        """The PIL RGB image ``index`` (no transform); clear errors for missing and undecodable files."""
        from PIL import Image

        path = self.image_path(index)
        if not path.is_file():
            raise DatasetNotFoundError(f"{self.name}: image {path} is missing; re-fetch with "
                                       f"`{fetch_hint(self.name)}` (or verify with `python -m mslib data verify "
                                       f"{self.name}`)")
        try:
            with Image.open(path) as img:
                return img.convert("RGB")
        except OSError as err:
            raise UnreadableImageError(f"{self.name}: cannot decode image {path} ({err}); re-fetch the dataset or "
                                       "load it with skip_unreadable=True to skip such files with a warning") from err

    def __getitem__(self, index: int) -> tuple[Any, int]:
        img = self.load_image(index)
        return (self.transform(img) if self.transform is not None else img), int(self.labels[index])

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name!r}, {self.split!r}, {len(self)} images, {self.num_classes} classes)"


def _readable(path: Path) -> bool:
    from PIL import Image

    try:
        with Image.open(path) as img:
            img.load()
        return True
    except OSError:
        return False


class GlyphDataset(Dataset):
    """Glyphs-208 images (uint8 ``[N, 32, 32]``); items are float tensors ``1×32×32`` in [0, 1] by default."""

    def __init__(self, images: np.ndarray, labels: np.ndarray, characters: Sequence[str], split: str, *,
                 transform: Callable | None = None) -> None:
        self.images, self.labels = images, np.asarray(labels, dtype=np.int64)
        self.characters, self.split, self.transform = list(characters), split, transform
        self.num_classes = len(self.characters)
        self.name = "glyphs"

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int) -> tuple[Any, int]:
        x = torch.from_numpy(self.images[index]).unsqueeze(0).float().div_(255.0)
        return (self.transform(x) if self.transform is not None else x), int(self.labels[index])

    def __repr__(self) -> str:
        return f"GlyphDataset({self.split!r}, {len(self)} images, {self.num_classes} classes)"


def _load_glyphs(split: str, transform: Callable | None, val_fraction: float, seed: int, *,
                 glyph_seed: int = 0, images_per_class: int = 50, classes: int | Sequence[str] | None = None,
                 cache: bool = True, fonts: str = "matplotlib") -> GlyphDataset:
    from mslib.data.glyphs import generate_glyphs, split_classes

    X, y, chars = generate_glyphs(glyph_seed, images_per_class, classes, cache, fonts=fonts)
    train_cls, test_cls = split_classes(len(chars))
    keep = np.isin(y, train_cls)
    records: Records = {"train": ([str(i) for i in np.flatnonzero(keep)], y[keep]),
                        "test": ([str(i) for i in np.flatnonzero(np.isin(y, test_cls))], y[np.isin(y, test_cls)])}
    if split == "val" and val_fraction == 0.0:
        raise ValueError("split 'val' needs val_fraction > 0 (a class-disjoint part of the training classes)")
    idx_str, labels = _select(records, split, val_fraction, seed)
    idx = np.array([int(i) for i in idx_str], dtype=np.int64)
    class_ids = np.unique(y[idx])
    return GlyphDataset(X[idx], labels, [chars[c] for c in class_ids], split, transform=transform)


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
    **glyph_options: Any,
) -> Dataset:
    """Dataset ``name`` (:data:`DATASETS`), split ``train``/``val``/``test`` (In-Shop also ``query``/``gallery``).

    Every returned dataset has ``.labels`` (int64, 0..C-1 per split), ``.num_classes``, ``len`` and
    ``ds[i] -> (image, label)``. ``val_fraction`` and ``seed`` choose the class-disjoint validation classes.
    ``check_counts`` compares the split sizes with the published ones (:data:`EXPECTED`); ``skip_unreadable`` scans
    the images and skips undecodable ones with a warning. ``glyph_options`` (glyphs only): ``glyph_seed``,
    ``images_per_class``, ``classes``, ``cache``, ``fonts`` (see :func:`mslib.data.glyphs.generate_glyphs`).
    """
    _check_name_split(name, split)
    if name == "glyphs":
        return _load_glyphs(split, transform, val_fraction, seed, **glyph_options)
    if glyph_options:
        raise TypeError(f"unexpected options for {name}: {', '.join(glyph_options)}")
    records, folder = READERS[name](dataset_root(name, root))
    if check_counts:
        check_split_counts(name, records)
    paths, labels = _select(records, split, val_fraction, seed)
    num_classes = None
    if name == "inshop" and split in ("query", "gallery", "test"):
        num_classes = len(np.unique(np.concatenate([records["query"][1], records["gallery"][1]])))
    return ImageListDataset(name, split, folder, paths, labels, transform=transform, skip_unreadable=skip_unreadable,
                            num_classes=num_classes)


def verify_dataset(name: str, root: str | Path | None = None, *, check_counts: bool = True,
                   check_images: bool = True, progress: bool = False) -> dict[str, dict[str, int]]:
    """Check a dataset on disk: list files, published counts, and (``check_images``) that every image decodes.

    Returns ``{split: {"images": n, "classes": c}}``; raises a :class:`DatasetError` naming what is wrong.
    """
    if name not in DATASETS:
        raise ValueError(f"unknown dataset {name!r}; valid names: {', '.join(DATASETS)}")
    if name == "glyphs":
        summary = {}
        for split in ("train", "test"):
            ds = load_dataset("glyphs", split)
            summary[split] = {"images": len(ds), "classes": ds.num_classes}
        return summary
    splits = [s for s in SPLITS[name] if s not in ("val", "test")] if name == "inshop" else ["train", "test"]
    summary = {}
    missing, unreadable = [], []
    for split in splits:
        ds = load_dataset(name, split, root=root, check_counts=check_counts)
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
                                   + ", ".join(map(str, missing[:5])) + f"; re-fetch with `{fetch_hint(name)}`")
    if unreadable:
        raise UnreadableImageError(f"{name}: {len(unreadable)} image(s) cannot be decoded: "
                                   + ", ".join(map(str, unreadable[:5]))
                                   + f"; re-fetch with `{fetch_hint(name)}` or load with skip_unreadable=True")
    return summary
