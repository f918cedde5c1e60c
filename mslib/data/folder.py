"""Your own images as a dataset: the registry row ``folder`` (README.md, "Your own images"; chapter "Data").

:func:`read_folder` reads one of two forms from ``root``:

1. **A class-folder tree** ``root/<class>/<image>``: every image file a class folder holds (its subfolders
   included) belongs to that class, named by the folder. Files and folders whose names start with ``.``
   (``.DS_Store``, ``.git``) are ignored; other files directly in ``root`` (a README) are not read, but an *image*
   there is an error (it has no class). The zero-shot split is class-disjoint, a seeded half: the class names,
   sorted, are shuffled by ``numpy.random.default_rng(split_seed)``; the first ⌈C/2⌉ train, the other ⌊C/2⌋ test.
   Shuffled rather than the sorted order itself, since names often follow an order of their own (a taxonomy, a
   date) that would then decide which kinds of class are never trained on. ``split_seed`` (default 0) is not the
   run's seed, so every seed of a sweep is tested on the same classes.
2. **A CSV** with a header row holding the columns ``path,label,split`` (other columns are ignored): ``root`` itself
   when it is a file, else the option ``csv`` (a path relative to ``root``), else ``root/splits.csv`` when present.
   Paths are relative to the CSV's folder; ``split`` is ``train`` or ``test``, or ``train``, ``query`` and
   ``gallery`` (the test is then the queries searched against the gallery, as In-Shop's).

An image's extension must be one of :data:`IMAGE_SUFFIXES`: another file in a class folder (or in the CSV) is an
error listing it, not skipped, since a silently skipped file (a phone's ``.heic``) is an image its owner believes
is trained on. Decoding is checked by ``python -m mslib data verify folder --root DIR``, or when an image is loaded.
Other errors name the file, line or folder: an empty class folder, a class with fewer than 2 images (a query needs a
positive), a split of fewer than 2 classes, a path listed twice in the CSV (both lines; an image in two splits), a
listed file that does not exist, a label in both train and an evaluation split (zero-shot needs class-disjoint
splits), a query label with no gallery image. A class with fewer than ``k`` training images, the images per class
of a P×K batch, is an error of :func:`mslib.data.loading.load_run_splits` (the trainer knows ``k``). Reading
never writes.
"""

from __future__ import annotations

import csv as csv_module
import os
from collections import Counter
from pathlib import Path

import numpy as np

from mslib.data.datasets import Records, _shown
from mslib.data.errors import DatasetError, DatasetNotFoundError, DuplicateEntryError, SplitMismatchError

IMAGE_SUFFIXES = frozenset({".bmp", ".gif", ".jpeg", ".jpg", ".pgm", ".png", ".ppm", ".tif", ".tiff", ".webp"})
SPLIT_FILE = "splits.csv"
COLUMNS = ("path", "label", "split")
CSV_SPLITS = ("train", "test", "query", "gallery")

Entry = tuple[str, str, str, str]  # (path relative to the image folder, label, split, where: a folder or a CSV line)


def read_folder(root: Path, *, csv: str | Path | None = None, split_seed: int = 0) -> tuple[Records, Path]:
    """The records of your own images (a class-folder tree or a CSV, see the module) and the folder they are in."""
    root = Path(root)
    table = _table(root, csv)
    if table is not None:
        return _records(_read_csv(table), str(table)), table.parent
    return _records(_read_tree(root, split_seed), str(root)), root


def _table(root: Path, csv: str | Path | None) -> Path | None:
    """The CSV to read: ``root`` if it is a file, the option ``csv``, ``root/splits.csv``; None for a tree."""
    if root.is_file():
        return root
    if csv is not None:
        path = Path(csv) if Path(csv).is_absolute() else root / csv
        if not path.is_file():
            raise DatasetNotFoundError(f"folder: the CSV {path} (option csv) does not exist")
        return path
    return root / SPLIT_FILE if (root / SPLIT_FILE).is_file() else None


def _not_images(files: list[str]) -> DatasetError:
    return DatasetError(f"folder: {len(files)} file(s) that are not images (by extension; images are "
                        f"{' '.join(sorted(IMAGE_SUFFIXES))}): {_shown(files)}. Move them out of the dataset or "
                        "convert them (names starting with '.' are ignored)")


def _read_tree(root: Path, split_seed: int) -> list[Entry]:
    """Every image of ``root/<class>/``, class-disjoint half split by ``split_seed`` (module docstring)."""
    top = sorted(p for p in root.iterdir() if not p.name.startswith("."))
    stray = [str(p) for p in top if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES]
    if stray:
        raise DatasetError(f"folder: {len(stray)} image(s) directly in {root}, in no class folder: {_shown(stray)}. "
                           "Every image goes in root/<class>/<image>: move each into its class's folder")
    classes = [p for p in top if p.is_dir()]
    if not classes:
        raise DatasetNotFoundError(f"folder: no class folders in {root}: expected root/<class>/<image>, or a CSV "
                                   f"with the columns path,label,split ({root / SPLIT_FILE} or --root FILE.csv)")
    files = {c.name: sorted(f for f in c.rglob("*") if f.is_file()
                            and not any(part.startswith(".") for part in f.relative_to(c).parts)) for c in classes}
    empty = [str(root / name) for name, found in files.items() if not found]
    if empty:
        raise DatasetError(f"folder: {len(empty)} empty class folder(s), holding no image: {_shown(empty)}. "
                           "Add images or remove the folder")
    unknown = [str(f) for found in files.values() for f in found if f.suffix.lower() not in IMAGE_SUFFIXES]
    if unknown:
        raise _not_images(unknown)
    names = sorted(files)
    if len(names) < 4:
        raise DatasetError(f"folder: {root} holds {len(names)} class folder(s) ({', '.join(names)}); the "
                           "class-disjoint half split needs at least 4 (2 train, 2 test). Add classes, or give "
                           "the splits in a CSV path,label,split")
    order = np.random.default_rng(split_seed).permutation(len(names))
    train = {names[i] for i in order[: (len(names) + 1) // 2].tolist()}
    return [(f.relative_to(root).as_posix(), name, "train" if name in train else "test", str(root / name))
            for name in names for f in files[name]]


def _read_csv(table: Path) -> list[Entry]:
    """The rows of a CSV ``path,label,split`` (checked: fields, splits, duplicates, existence, extensions)."""
    with open(table, newline="", encoding="utf-8-sig") as fh:
        rows = list(csv_module.reader(fh))
    header = [h.strip().lower() for h in rows[0]] if rows else []
    if not set(COLUMNS) <= set(header):
        raise DatasetError(f"folder: {table} line 1 must be a header holding the columns {','.join(COLUMNS)}; "
                           f"it reads {','.join(rows[0]) if rows else '(empty file)'!r}")
    column = [header.index(c) for c in COLUMNS]
    entries, problems = [], []
    for number, fields in enumerate(rows[1:], start=2):
        if not any(f.strip() for f in fields):
            continue
        if len(fields) != len(header):
            problems.append(f"line {number} has {len(fields)} field(s), the header {len(header)}")
            continue
        path, label, split = (fields[i].strip() for i in column)
        if not path or not label or split not in CSV_SPLITS:
            problems.append(f"line {number}: path {path!r}, label {label!r}, split {split!r} (path and label must "
                            f"be given, split one of {', '.join(CSV_SPLITS)})")
            continue
        entries.append((path, label, split, f"{table.name} line {number}"))
    if problems:
        raise DatasetError(f"folder: {table}: {len(problems)} bad row(s): {_shown(problems)}")
    first: dict[str, tuple[str, str]] = {}
    repeats = []
    for path, _, split, where in entries:
        key = os.path.normpath(path)
        if key in first:
            where0, split0 = first[key]
            repeats.append(f"{path} on {where0} and {where.rsplit(' ', 1)[-1]}"
                           + (f" (in {split0} and in {split}: an image in two splits)" if split0 != split else ""))
        else:
            first[key] = (where, split)
    if repeats:
        raise DuplicateEntryError(f"folder: {table} lists {len(repeats)} image(s) twice: {_shown(repeats)}. Each "
                                  "image goes on one line, in one split")
    folder = table.parent
    missing = [f"{where}: {path}" for path, _, _, where in entries if not (folder / path).is_file()]
    if missing:
        raise DatasetNotFoundError(f"folder: {table} lists {len(missing)} file(s) that do not exist (paths are "
                                   f"relative to {folder}): {_shown(missing)}")
    unknown = [f"{path} ({where})" for path, _, _, where in entries if Path(path).suffix.lower() not in IMAGE_SUFFIXES]
    if unknown:
        raise _not_images(unknown)
    return entries


def _records(entries: list[Entry], source: str) -> Records:
    """Group ``entries`` by split, checking what zero-shot retrieval needs of the splits (module docstring)."""
    by_split: dict[str, list[Entry]] = {}
    for entry in entries:
        by_split.setdefault(entry[2], []).append(entry)
    evaluation = [s for s in ("test", "query", "gallery") if s in by_split]
    if "train" not in by_split or not evaluation:
        raise DatasetError(f"folder: {source} needs train images and test (or query and gallery) images; it has "
                           f"{', '.join(by_split) or 'none'}")
    if ("test" in by_split and len(evaluation) > 1) or ("query" in by_split) != ("gallery" in by_split):
        raise DatasetError(f"folder: {source} has {', '.join(evaluation)} rows: the evaluation is either test, or "
                           "query and gallery (both)")
    in_train = {}
    for _, label, _, where in by_split["train"]:
        in_train.setdefault(label, where)
    clashes, seen = [], set()
    for split in evaluation:
        for _, label, _, where in by_split[split]:
            if label in in_train and label not in seen:
                seen.add(label)
                clashes.append(f"label {label!r} in train ({in_train[label]}) and in {split} ({where})")
    if clashes:
        raise SplitMismatchError(f"folder: {len(clashes)} label(s) in train and in an evaluation split ({source}): "
                                 f"{_shown(clashes)}. Zero-shot retrieval needs class-disjoint splits (it tests on "
                                 "classes never trained on): give each label to train or to the evaluation, not both")
    if "query" in by_split:
        lonely = sorted({e[1] for e in by_split["query"]} - {e[1] for e in by_split["gallery"]})
        if lonely:
            raise SplitMismatchError(f"folder: {source}: {len(lonely)} query label(s) with no gallery image: "
                                     f"{_shown(lonely)}; a query needs its class in the gallery")
    groups = {"train": by_split["train"], "test": [e for s in evaluation for e in by_split[s]]}
    for split, group in groups.items():
        counts = Counter(e[1] for e in group)
        if len(counts) < 2:
            raise DatasetError(f"folder: the {split} split of {source} has only {len(counts)} class "
                               f"({', '.join(counts)}); retrieval needs at least 2 classes per split")
        where = {e[1]: e[3] for e in group}
        small = [f"{label!r} ({where[label]})" for label, n in sorted(counts.items()) if n < 2]
        if small:
            raise DatasetError(f"folder: {len(small)} class(es) of the {split} split of {source} with 1 image: "
                               f"{_shown(small)}; a class needs at least 2 (a query and its positive)")
    return {split: ([e[0] for e in group], np.array([e[1] for e in group])) for split, group in by_split.items()}
