"""The datasets: Glyphs-208 (embedded), the paper's four benchmarks, read from their real on-disk layouts, and
your own images (:mod:`mslib.data.folder`): the readers, the loader of the glyphs and the dataset classes. Each is
named by a row of :data:`mslib.data.registry.DATASETS`; this module never reads the registry (the registry imports
it). :mod:`mslib.data.loading` (``load_dataset``, ``load_run_splits``, ``verify_dataset``) reads the row and adds
its advice, how to (re-)fetch the dataset, to the readers' errors, which name the file and the line.

Zero-shot splits (``book/sources.md#src-datasets``): the first half of the classes train, the second half
test. Labels are remapped to ``0..C-1`` per split (for In-Shop, query and gallery share one mapping so that they
can be compared). ``val_fraction > 0`` carves a class-disjoint validation split out of the training classes
(seeded); ``"train"`` then excludes those classes.

On-disk layouts under ``data/<name>/`` (or ``root``):

- ``cub200``: ``CUB_200_2011/{images.txt, image_class_labels.txt, images/<class>/<file>.jpg}``; the split is by
  class id, so every image of ``images.txt`` is used (``train_test_split.txt`` is the classification split and
  is not read).
- ``cars196``: ``cars_annos.mat`` (``annotations`` and the class-name table ``class_names``) and
  ``car_ims/<file>.jpg``; split by class id, every annotation used (its ``test`` field is not read).
- ``sop``: ``Stanford_Online_Products/{Ebay_train.txt, Ebay_test.txt, <super_class>_final/<file>.JPG}``;
  ``Ebay_info.txt``, the index of all images, is checked against the two split files when present.
- ``inshop``: ``Eval/list_eval_partition.txt`` (or ``list_eval_partition.txt`` at the root) and the images as
  ``img/<...>.jpg`` or, nested as in the official archive, ``Img/img/<...>.jpg``.

Reading checks what would otherwise load silently: an image (or id) listed twice in a list file (both line
numbers are named), an image or a class in two zero-shot splits, split files that disagree with the dataset's
own index, a class-name table whose length disagrees with the class ids. Reading never writes: an error leaves
every file as it was.
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
    DuplicateEntryError,
    SplitMismatchError,
    UnreadableImageError,
)


def _need(name: str, path: Path) -> Path:
    if not path.is_file():
        raise DatasetNotFoundError(f"{name}: {path} not found")
    return path


def _remap(raw: np.ndarray, classes: np.ndarray | None = None) -> np.ndarray:
    classes = np.unique(raw) if classes is None else classes
    return np.searchsorted(classes, raw).astype(np.int64)


# -- list files: rows with their line numbers, and the checks that name both lines of a problem ------------------

Row = tuple[int, list[str]]  # (1-based line number, whitespace-separated fields)
Group = tuple[str, Path, list[Row]]  # (split, list file, its rows)


def _shown(items: Sequence[str], n: int = 5) -> str:
    return "; ".join(items[:n]) + (f"; ... ({len(items) - n} more)" if len(items) > n else "")


def _rows(name: str, path: Path, fields: Sequence[str], *, header_lines: int = 0) -> tuple[list[str], list[Row]]:
    """The first ``header_lines`` lines of ``path`` and its other non-blank lines split into ``len(fields)`` fields."""
    lines = path.read_text().splitlines()
    rows = []
    for number, line in enumerate(lines[header_lines:], start=header_lines + 1):
        parts = line.split()
        if parts and len(parts) != len(fields):
            raise DatasetError(f"{name}: {path} line {number} has {len(parts)} field(s), expected {len(fields)} "
                               f"({' '.join(fields)}): {line.strip()!r}")
        if parts:
            rows.append((number, parts))
    return lines[:header_lines], rows


def _int_column(name: str, path: Path, rows: list[Row], column: int, field: str) -> np.ndarray:
    """Field ``column`` of every row as an int64 array; a non-integer names its line."""
    for number, parts in rows:
        if not parts[column].isdigit():
            raise DatasetError(f"{name}: {path} line {number}: {field} {parts[column]!r} is not a non-negative integer")
    return np.array([int(parts[column]) for _, parts in rows], dtype=np.int64)


def _check_unique(name: str, path: Path, rows: list[Row], column: int, what: str) -> None:
    """Raise :class:`DuplicateEntryError` naming both line numbers of every ``what`` (field ``column``) listed twice."""
    first: dict[str, int] = {}
    repeats = []
    for number, parts in rows:
        key = parts[column]
        if key in first:
            repeats.append(f"{what} {key} on lines {first[key]} and {number}")
        else:
            first[key] = number
    if repeats:
        raise DuplicateEntryError(f"{name}: {path} lists {len(repeats)} {what}(s) twice: {_shown(repeats)}. Each must "
                                  f"appear once: the file is corrupt or was edited")


def _check_disjoint(name: str, groups: Sequence[Group], column: int, what: str) -> None:
    """Raise :class:`SplitMismatchError` if a ``what`` (field ``column``) occurs in two of the zero-shot splits."""
    first: dict[str, tuple[str, Path, int]] = {}
    clashes = []
    for split, path, rows in groups:
        here: dict[str, int] = {}
        for number, parts in rows:
            here.setdefault(parts[column], number)
        for key, number in here.items():
            if key in first:
                split0, path0, number0 = first[key]
                clashes.append(f"{what} {key} in {split0} ({path0.name} line {number0}) and in {split} "
                               f"({path.name} line {number})")
            else:
                first[key] = (split, path, number)
    if clashes:
        folder = groups[0][1].parent
        raise SplitMismatchError(f"{name}: {len(clashes)} {what}(s) in two splits (list files in {folder}): "
                                 f"{_shown(clashes)}. The zero-shot splits are disjoint: the list files are corrupt "
                                 f"or were edited")


def _check_index(name: str, index: Path, index_rows: list[Row], groups: Sequence[Group], column: int) -> None:
    """The split files against the dataset's own index: each entry (field ``column``) in one split, same fields."""
    by_key = {parts[column]: (number, parts) for number, parts in index_rows}
    problems, used = [], set()
    for _, path, rows in groups:
        for number, parts in rows:
            key = parts[column]
            used.add(key)
            if key not in by_key:
                problems.append(f"{path.name} line {number} ({key}) is not in {index.name}")
            elif by_key[key][1] != parts:
                problems.append(f"{path.name} line {number} reads {' '.join(parts)!r} but {index.name} line "
                                f"{by_key[key][0]} reads {' '.join(by_key[key][1])!r}")
    neither = " nor ".join(path.name for _, path, _ in groups)
    problems += [f"{index.name} line {number} ({key}) is in neither {neither}"
                 for key, (number, _) in by_key.items() if key not in used]
    if problems:
        raise SplitMismatchError(f"{name}: the split files disagree with the dataset's index {index} "
                                 f"({len(problems)} entries): {_shown(problems)}. Every indexed image belongs to "
                                 f"exactly one split: the files are corrupt or were edited")


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
    images_path = _need("cub200", base / "images.txt")
    labels_path = _need("cub200", base / "image_class_labels.txt")
    _, image_rows = _rows("cub200", images_path, ("image_id", "path"))
    _, label_rows = _rows("cub200", labels_path, ("image_id", "class_id"))
    _check_unique("cub200", images_path, image_rows, 0, "image_id")
    _check_unique("cub200", images_path, image_rows, 1, "image path")
    _check_unique("cub200", labels_path, label_rows, 0, "image_id")
    _int_column("cub200", images_path, image_rows, 0, "image_id")
    classes = dict(zip((p[0] for _, p in label_rows),
                       _int_column("cub200", labels_path, label_rows, 1, "class_id").tolist(), strict=True))
    images = {parts[0]: parts[1] for _, parts in image_rows}
    unmatched = ([f"image_id {p[0]} ({images_path.name} line {n})" for n, p in image_rows if p[0] not in classes]
                 + [f"image_id {p[0]} ({labels_path.name} line {n})" for n, p in label_rows if p[0] not in images])
    if unmatched:
        raise SplitMismatchError(f"cub200: {images_path} and {labels_path} list different image ids, each id must be "
                                 f"in both: {_shown(unmatched)}")
    ids = sorted(images, key=int)
    return _split_by_class([images[i] for i in ids], np.array([classes[i] for i in ids]), 101), base / "images"


def _check_class_table(path: Path, raw: np.ndarray, names: np.ndarray) -> None:
    """Cars196: the class ids of the annotations are exactly ``1..len(class_names)`` at the ends."""
    if len(raw) and (raw.min() < 1 or raw.max() != len(names)):
        raise SplitMismatchError(
            f"cars196: {path}: the class-name table class_names has {len(names)} entries but the annotations use "
            f"class ids {raw.min()}..{raw.max()}; every id must lie in 1..{len(names)} and the largest must be "
            f"{len(names)}. The file is corrupt or not the published cars_annos.mat")


def read_cars196(root: Path) -> tuple[Records, Path]:
    """Cars196: ``cars_annos.mat`` (``annotations``: ``relative_im_path``, ``class`` 1–196; ``class_names``).

    Classes 1–98 train; the class ids must match the class-name table (:func:`_check_class_table`).
    """
    from scipy.io import loadmat

    path = _need("cars196", root / "cars_annos.mat")
    try:
        mat = loadmat(str(path), squeeze_me=True)
        ann = np.atleast_1d(mat["annotations"])
        names = np.atleast_1d(mat["class_names"])
    except (ValueError, KeyError, OSError) as err:
        raise DatasetError(f"cars196: cannot read {path} ({type(err).__name__}: {err}); it must hold the struct "
                           f"array 'annotations' and the cell array 'class_names'") from err
    paths = [str(p) for p in ann["relative_im_path"]]
    first: dict[str, int] = {}
    repeats = []
    for i, rel in enumerate(paths, start=1):
        if rel in first:
            repeats.append(f"{rel} in annotations {first[rel]} and {i}")
        first.setdefault(rel, i)
    if repeats:
        raise DuplicateEntryError(f"cars196: {path} lists {len(repeats)} image(s) twice (annotations counted from "
                                  f"1): {_shown(repeats)}")
    raw = np.array([int(c) for c in ann["class"]], dtype=np.int64)
    _check_class_table(path, raw, names)
    return _split_by_class(paths, raw, 99), root


SOP_FIELDS = ("image_id", "class_id", "super_class_id", "path")


def _sop_list(path: Path) -> list[Row]:
    """Rows of one of SOP's ``Ebay_*.txt`` files (header checked; images and image ids unique)."""
    header, rows = _rows("sop", path, SOP_FIELDS, header_lines=1)
    if not header or header[0].split() != list(SOP_FIELDS):
        raise DatasetError(f"sop: {path} does not start with the header '{' '.join(SOP_FIELDS)}'")
    _check_unique("sop", path, rows, 3, "image path")
    _check_unique("sop", path, rows, 0, "image_id")
    return rows


def read_sop(root: Path) -> tuple[Records, Path]:
    """SOP: ``Ebay_{train,test}.txt``, one header line then ``image_id class_id super_class_id path``.

    The two splits share no image and no class; with ``Ebay_info.txt`` (all 120,053 images) present, every image
    it lists is in exactly one split with the same fields.
    """
    base = root / "Stanford_Online_Products" if (root / "Stanford_Online_Products").is_dir() else root
    paths = {split: _need("sop", base / f"Ebay_{split}.txt") for split in ("train", "test")}
    groups = [(split, path, _sop_list(path)) for split, path in paths.items()]
    _check_disjoint("sop", groups, 3, "image")
    _check_disjoint("sop", groups, 1, "class_id")
    index = base / "Ebay_info.txt"
    if index.is_file():
        _check_index("sop", index, _sop_list(index), groups, 3)
    out: Records = {split: ([parts[3] for _, parts in rows], _int_column("sop", path, rows, 1, "class_id"))
                    for split, path, rows in groups}
    return out, base


INSHOP_FIELDS = ("image_name", "item_id", "evaluation_status")
INSHOP_STATUS = ("train", "query", "gallery")


def inshop_partition_candidates(root: Path) -> tuple[Path, ...]:
    """Where In-Shop's ``list_eval_partition.txt`` is looked for, in order."""
    return root / "Eval" / "list_eval_partition.txt", root / "list_eval_partition.txt"


def inshop_image_candidates(root: Path) -> tuple[Path, ...]:
    """Folders that may hold In-Shop's ``img/``: the root, or ``Img/`` as in the official archive's nesting."""
    return root, root / "Img"


def _inshop_image_folder(root: Path, rows: list[Row]) -> Path:
    top = Path(rows[0][1][0]).parts[0] if rows else "img"
    candidates = inshop_image_candidates(root)
    for folder in candidates:
        if (folder / top).is_dir():
            return folder
    raise DatasetNotFoundError(f"inshop: no image folder: looked for {' and '.join(str(c / top) for c in candidates)} "
                               f"(Img/img.zip unzipped at the root or inside Img/)")


def read_inshop(root: Path) -> tuple[Records, Path]:
    """In-Shop: ``list_eval_partition.txt``: a count line, a header line, then ``image_name item_id status``.

    Every image has one status (train, query or gallery); training items are disjoint from query/gallery items.
    """
    candidates = inshop_partition_candidates(root)
    path = next((p for p in candidates if p.is_file()), None)
    if path is None:
        raise DatasetNotFoundError(f"inshop: list_eval_partition.txt not found; looked for "
                                   f"{' and '.join(map(str, candidates))}")
    header, rows = _rows("inshop", path, INSHOP_FIELDS, header_lines=2)
    if len(header) < 2 or not header[0].strip().isdigit() or header[1].split() != list(INSHOP_FIELDS):
        raise DatasetError(f"inshop: {path} must start with a count line and the header '{' '.join(INSHOP_FIELDS)}'")
    if int(header[0]) != len(rows):
        raise CountMismatchError(f"inshop: {path} announces {int(header[0])} images but lists {len(rows)}; "
                                 f"the file is truncated or was edited")
    bad = [f"line {n}: {p[2]!r}" for n, p in rows if p[2] not in INSHOP_STATUS]
    bad += [f"line {n}: item_id {p[1]!r}" for n, p in rows if not (p[1].startswith("id_") and p[1][3:].isdigit())]
    if bad:
        raise DatasetError(f"inshop: {path}: evaluation_status must be one of {', '.join(INSHOP_STATUS)} and item_id "
                           f"'id_<digits>': {_shown(bad)}")
    _check_unique("inshop", path, rows, 0, "image")
    by_status = {s: [r for r in rows if r[1][2] == s] for s in INSHOP_STATUS}
    _check_disjoint("inshop", [("train", path, by_status["train"]),
                               ("query/gallery", path, by_status["query"] + by_status["gallery"])], 1, "item_id")
    out: Records = {s: ([p[0] for _, p in sel], np.array([int(p[1][3:]) for _, p in sel], dtype=np.int64))
                    for s, sel in by_status.items()}
    return out, _inshop_image_folder(root, rows)


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
    """Images loaded lazily with PIL (RGB) from ``folder / path``; ``transform`` applied to the PIL image.

    ``advice``: how to re-fetch the dataset, shown with a missing or undecodable image (whoever builds the dataset
    knows its registry row: :func:`mslib.data.loading.image_list`).
    """

    def __init__(self, name: str, split: str, folder: Path, paths: Sequence[str], labels: np.ndarray, *,
                 transform: Callable | None = None, skip_unreadable: bool = False,
                 num_classes: int | None = None, class_names: Sequence[str] | None = None,
                 advice: str = "fetch it again") -> None:
        self.name, self.split, self.folder, self.transform = name, split, Path(folder), transform
        self.advice = advice
        self.paths = list(paths)
        self.labels = np.asarray(labels, dtype=np.int64)
        self.num_classes = int(num_classes if num_classes is not None else len(np.unique(self.labels)))
        #: the raw class id or name of each label (``""`` for a shared In-Shop class absent from this split)
        self.class_names = list(class_names) if class_names is not None else [str(c) for c in range(self.num_classes)]
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
            raise DatasetNotFoundError(f"{self.name}: image {path} is missing; {self.advice} (or "
                                       f"check the whole copy with `python -m mslib data verify {self.name}`)")
        try:
            with Image.open(path) as img:
                return img.convert("RGB")
        except OSError as err:
            raise UnreadableImageError(f"{self.name}: cannot decode image {path} ({err}); {self.advice}, "
                                       "or load with skip_unreadable=True to skip such files with a warning") from err

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


def _load_glyphs(split: str, *, root: Path | None = None, transform: Callable | None = None,
                 val_fraction: float = 0.0, seed: int = 0, glyph_seed: int = 0, images_per_class: int = 50,
                 classes: int | Sequence[str] | None = None, cache: bool = True,
                 fonts: str = "matplotlib") -> GlyphDataset:
    """The glyphs' in-memory loader (registry row ``glyphs``; ``root`` is not used: the cache is ``data/glyphs/``)."""
    from mslib.data.glyphs import generate_glyphs, split_classes

    X, y, chars = generate_glyphs(glyph_seed, images_per_class, classes, cache, fonts=fonts)
    train_cls, test_cls = split_classes(len(chars))
    keep = np.isin(y, train_cls)
    records: Records = {"train": ([str(i) for i in np.flatnonzero(keep)], y[keep]),
                        "test": ([str(i) for i in np.flatnonzero(np.isin(y, test_cls))], y[np.isin(y, test_cls)])}
    idx_str, labels = _select(records, split, val_fraction, seed)
    idx = np.array([int(i) for i in idx_str], dtype=np.int64)
    class_ids = np.unique(y[idx])
    return GlyphDataset(X[idx], labels, [chars[c] for c in class_ids], split, transform=transform)


