"""Omniglot-242: real handwritten characters, vendored in ``data/omniglot/`` (book chapter "Data").

The two zips are the Omniglot authors' own files (Lake et al. 2015, MIT licence; ``book/sources.md#src-omniglot``):
``images_background_small1.zip`` and ``images_background_small2.zip``, laid out as
``<zip stem>/<Alphabet>/<characterNN>/<id>_<drawer>.png`` (105×105 binary PNGs, 20 drawers per character). Greek
and Latin are in both zips with identical files; the union is 242 characters × 20 drawers = 4,840 images.

Reading goes straight from the zips (nothing is extracted or cached on disk, so reading never writes): checking and
decoding all 4,840 PNGs takes seconds on one core (chapter 04 states its own time), so there is no disk cache; the
decoded arrays are kept in memory for the process (read-only), keyed by the zips' sha256 and the image size.

Each image becomes ``uint8`` gray at ``image_size`` (32 by default): PIL's ``convert("L")``, a BOX (area-average)
resize, then inverted so that the ink is bright on a dark background, as in Glyphs-208.

Split (class-disjoint, zero-shot): the characters sorted by (alphabet, character) are permuted with
``np.random.default_rng(SPLIT_SEED)``; the first half trains (121 characters, 2,420 images), the rest test (121,
2,420). Every alphabet appears on both sides, as in Glyphs-208 and CUB (classes split in half).
"""

from __future__ import annotations

import hashlib
import io
import re
import zipfile
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from mslib.data.datasets import GlyphDataset, Records, _select
from mslib.data.download import RemoteFile, verify_checksum
from mslib.data.errors import (
    ChecksumError,
    CountMismatchError,
    DatasetError,
    DatasetNotFoundError,
    DuplicateEntryError,
    UnreadableImageError,
)
from mslib.files import file_digest
from mslib.paths import data_dir, project_root

NAME = "omniglot"
OMNIGLOT_COMMIT = "057f034"
OMNIGLOT_URL = "https://github.com/brendenlake/omniglot/raw/master/python/{}"
#: The published files and their sha256 (``data/omniglot/SHA256SUMS``), in reading order.
OMNIGLOT_SHA256: dict[str, str] = {
    "images_background_small1.zip": "f38eb80f801274ac2b4dff5b24289016bfaba4a7d5bb50deebf27104ad6cb8a4",
    "images_background_small2.zip": "3ccaa407515a8778e5d0861875af38b17e418f301ad5bb3b5a6b65d901a41c7f",
}
#: What ``download_dataset("omniglot", root, sources=OMNIGLOT_FILES)`` fetches: the zips, verified, not extracted.
OMNIGLOT_FILES: tuple[RemoteFile, ...] = tuple(
    RemoteFile(name, (OMNIGLOT_URL.format(name),), sha256=digest, extract=False)
    for name, digest in OMNIGLOT_SHA256.items())
#: Published (images, classes): the union of the two zips and the two halves of the split.
OMNIGLOT_EXPECTED: dict[str, tuple[int, int]] = {"all": (4840, 242), "train": (2420, 121), "test": (2420, 121)}
DRAWERS = 20
SPLIT_SEED = 12345
IMAGE_SIZE = 32

_FILE = re.compile(r"(?P<id>\d+)_(?P<drawer>\d{2})\.png")
_CHARACTER = re.compile(r"character\d{2}")
_LAYOUT = "<zip stem>/<Alphabet>/<characterNN>/<id>_<drawer>.png"
_ADVICE = ("restore the vendored copy with `git checkout -- data/omniglot` or fetch the zips again with "
           "download_dataset('omniglot', root, sources=OMNIGLOT_FILES) (mslib.data)")

Character = tuple[str, str]  # (alphabet, characterNN)
Files = dict[Character, dict[int, tuple[str, bytes]]]  # character -> drawer -> (member name, PNG bytes)


def omniglot_root(root: str | Path | None = None) -> Path:
    """``root``, else ``data/omniglot/`` of the data folder, else the vendored copy in the checkout."""
    if root is None:
        path = data_dir() / NAME
        path = path if path.is_dir() else project_root() / "data" / NAME
    else:
        path = Path(root)
    if not path.is_dir():
        raise DatasetNotFoundError(f"omniglot: dataset root {path} does not exist; {_ADVICE}")
    return path


def _layout_error(where: str, member: str, why: str) -> DatasetError:
    return DatasetError(f"omniglot: {where}: member {member!r} {why}; every file must be {_LAYOUT} (the authors' "
                        f"layout); the zip is not the published one, {_ADVICE}")


def _read_zip(path: Path, drawers: int) -> Files:
    """Every PNG of one zip by character and drawer, with the layout checked (names, drawers, empty folders)."""
    stem = path.stem
    try:
        zf = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError) as err:
        raise DatasetError(f"omniglot: cannot open {path} as a zip ({err}); {_ADVICE}") from err
    files: Files = {}
    folders: dict[Character, str] = {}
    seen: set[str] = set()
    with zf:
        for info in zf.infolist():
            name = info.filename
            if name in seen:
                raise DuplicateEntryError(f"omniglot: {path} holds member {name!r} twice; {_ADVICE}")
            seen.add(name)
            parts = name.rstrip("/").split("/")
            if parts[0] != stem:
                raise _layout_error(str(path), name, f"is not inside the folder {stem}/")
            if info.is_dir() and len(parts) > 3 or not info.is_dir() and len(parts) != 4:
                raise _layout_error(str(path), name, "is not at that depth")
            if len(parts) >= 3 and not _CHARACTER.fullmatch(parts[2]):
                raise _layout_error(str(path), name, f"has character folder {parts[2]!r}, not characterNN")
            if info.is_dir():
                if len(parts) == 3:
                    folders[(parts[1], parts[2])] = name
                continue
            match = _FILE.fullmatch(parts[3])
            if match is None:
                raise _layout_error(str(path), name, "is not named <id>_<drawer>.png (drawer: two digits)")
            drawer, key = int(match["drawer"]), (parts[1], parts[2])
            if not 1 <= drawer <= drawers:
                raise _layout_error(str(path), name, f"has drawer {drawer:02d}, outside 01..{drawers:02d}")
            folders.setdefault(key, f"{stem}/{key[0]}/{key[1]}/")
            here = files.setdefault(key, {})
            if drawer in here:
                raise DuplicateEntryError(f"omniglot: {path}: drawer {drawer:02d} of {stem}/{key[0]}/{key[1]} twice: "
                                          f"{here[drawer][0]} and {name}; {_ADVICE}")
            try:
                here[drawer] = (name, zf.read(info))
            except (zipfile.BadZipFile, OSError) as err:
                raise DatasetError(f"omniglot: {path}: cannot read member {name} ({err}); {_ADVICE}") from err
    for key, folder in sorted(folders.items()):
        missing = sorted(set(range(1, drawers + 1)) - set(files.get(key, {})))
        if len(missing) == drawers:
            raise DatasetNotFoundError(f"omniglot: {path}: character folder {folder} is empty (no PNG); {_ADVICE}")
        if missing:
            raise DatasetNotFoundError(f"omniglot: {path}: character folder {folder} has {drawers - len(missing)} "
                                       f"of {drawers} drawers, missing drawer(s) "
                                       f"{', '.join(f'{d:02d}' for d in missing)}; {_ADVICE}")
    return files


def _merge(zips: Sequence[tuple[Path, Files]]) -> Files:
    """The union of the zips' characters; a character in two zips must have byte-identical files there."""
    merged: Files = {}
    where: dict[Character, Path] = {}
    for path, files in zips:
        for key, by_drawer in files.items():
            if key not in merged:
                merged[key], where[key] = by_drawer, path
                continue
            for drawer in sorted(set(by_drawer) | set(merged[key])):
                a, b = merged[key].get(drawer), by_drawer.get(drawer)
                if a is None or b is None or a[1] != b[1]:
                    first, second = (f"{p}:{m[0] if m else '(absent)'}" for p, m in ((where[key], a), (path, b)))
                    raise DuplicateEntryError(
                        f"omniglot: character {key[0]}/{key[1]} is in two zips with different files: drawer "
                        f"{drawer:02d} is {first} and {second}; a character in both zips must be the same images; "
                        f"{_ADVICE}")
    return dict(sorted(merged.items()))


def _check_unique_images(files: Files, where: dict[str, Path]) -> None:
    """The same PNG (same bytes) under two characters or drawers is a copying error: name both."""
    first: dict[str, str] = {}
    for by_drawer in files.values():
        for name, data in by_drawer.values():
            digest = hashlib.sha256(data).hexdigest()
            if digest in first:
                raise DuplicateEntryError(f"omniglot: the same image twice: {where[first[digest]]}:{first[digest]} and "
                                          f"{where[name]}:{name} are byte-identical; {_ADVICE}")
            first[digest] = name


def decode_png(data: bytes, image_size: int = IMAGE_SIZE, *, what: str = "PNG") -> np.ndarray:
    """One Omniglot PNG as ``uint8 [image_size, image_size]``: gray, BOX-resized, inverted (ink bright on dark)."""
    from PIL import Image

    try:
        with Image.open(io.BytesIO(data)) as img:
            gray = img.convert("L")
    except (OSError, ValueError) as err:
        raise UnreadableImageError(f"omniglot: cannot decode {what} ({err}); {_ADVICE}") from err
    if gray.size != (image_size, image_size):
        gray = gray.resize((image_size, image_size), Image.Resampling.BOX)
    return 255 - np.asarray(gray, dtype=np.uint8)


_DECODED: dict[tuple, tuple[np.ndarray, np.ndarray, list[str]]] = {}


def read_omniglot(root: str | Path | None = None, *, image_size: int = IMAGE_SIZE, check_counts: bool = True,
                  drawers: int = DRAWERS) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """All characters of the two zips: images ``uint8 [N, s, s]`` and class ids ``0..C-1`` (both read-only), and the
    names ``"Alphabet/characterNN"`` of the classes.

    Images are in (alphabet, character, drawer) order. ``check_counts`` checks that the zips are the published ones
    (sha256) and the published counts (:data:`OMNIGLOT_EXPECTED`); off, any zips in the layout are read (a
    deliberate subset, e.g. :func:`make_omniglot_fixture`). Layout, drawers and duplicates are always checked.
    """
    if image_size < 1:
        raise ValueError(f"image_size must be positive, got {image_size}")
    base = omniglot_root(root)
    paths = [base / name for name in OMNIGLOT_SHA256]
    for path in paths:
        if not path.is_file():
            raise DatasetNotFoundError(f"omniglot: {path} not found; {_ADVICE}")
        if check_counts:
            try:
                verify_checksum(path, sha256=OMNIGLOT_SHA256[path.name], what=f"omniglot: {path}")
            except ChecksumError as err:
                raise ChecksumError(f"{err} (not the published zip); {_ADVICE}") from err
    key = (tuple(file_digest(p, "sha256") for p in paths), image_size, drawers)
    if key not in _DECODED:
        zips = [(path, _read_zip(path, drawers)) for path in paths]
        where = {name: path for path, files in zips for by_drawer in files.values() for name, _ in by_drawer.values()}
        files = _merge(zips)
        _check_unique_images(files, where)
        images = [decode_png(data, image_size, what=f"{where[name]}:{name}")
                  for by_drawer in files.values() for _, (name, data) in sorted(by_drawer.items())]
        X = np.stack(images) if images else np.zeros((0, image_size, image_size), np.uint8)
        y = np.repeat(np.arange(len(files), dtype=np.int64), [len(d) for d in files.values()])
        X.setflags(write=False)
        y.setflags(write=False)
        _DECODED[key] = (X, y, [f"{a}/{c}" for a, c in files])
    X, y, characters = _DECODED[key]
    if check_counts:
        _check_counts("all", len(X), len(characters))
    return X, y, list(characters)


def _check_counts(split: str, images: int, classes: int) -> None:
    n_images, n_classes = OMNIGLOT_EXPECTED[split]
    if (images, classes) != (n_images, n_classes):
        raise CountMismatchError(f"omniglot {split}: expected {n_images:,} images of {n_classes:,} characters, found "
                                 f"{images:,} of {classes:,}; {_ADVICE} (or pass check_counts=False for a "
                                 "deliberate subset)")


def split_classes(n_classes: int) -> tuple[np.ndarray, np.ndarray]:
    """Class-disjoint halves: ``default_rng(SPLIT_SEED).permutation(n_classes)``, first half train (both sorted)."""
    perm = np.random.default_rng(SPLIT_SEED).permutation(n_classes)
    return np.sort(perm[: n_classes // 2]), np.sort(perm[n_classes // 2 :])


def omniglot_records(y: np.ndarray) -> Records:
    """``{"train", "test"}`` as (image indices as strings, class ids), the form :func:`_select` takes."""
    train_cls, test_cls = split_classes(len(np.unique(y)))
    out: Records = {}
    for split, classes in (("train", train_cls), ("test", test_cls)):
        idx = np.flatnonzero(np.isin(y, classes))
        out[split] = ([str(i) for i in idx], y[idx])
    return out


class OmniglotDataset(GlyphDataset):
    """Omniglot images (uint8 ``[N, s, s]``); items are float tensors ``1×s×s`` in [0, 1], as for the glyphs."""

    def __init__(self, images: np.ndarray, labels: np.ndarray, characters: Sequence[str], split: str, *,
                 transform: Callable | None = None) -> None:
        super().__init__(images, labels, characters, split, transform=transform)
        self.name = NAME

    def __repr__(self) -> str:
        return f"OmniglotDataset({self.split!r}, {len(self)} images, {self.num_classes} classes)"


def load_omniglot(split: str, *, root: str | Path | None = None, transform: Callable | None = None,
                  val_fraction: float = 0.0, seed: int = 0, check_counts: bool = True,
                  image_size: int = IMAGE_SIZE) -> OmniglotDataset:
    """Split ``train``/``val``/``test`` of Omniglot-242 (``.labels`` 0..C-1, ``.num_classes``, ``.characters``).

    ``val`` is a class-disjoint share ``val_fraction`` of the training characters (seeded by ``seed``), which
    ``train`` then excludes. ``check_counts`` also checks the zips' sha256 (see :func:`read_omniglot`).
    """
    if split not in ("train", "val", "test"):
        raise ValueError(f"unknown split {split!r} for omniglot; valid splits: train, val, test")
    X, y, characters = read_omniglot(root, image_size=image_size, check_counts=check_counts)
    records = omniglot_records(y)
    if check_counts:
        for half, (idx, raw) in records.items():
            _check_counts(half, len(idx), len(np.unique(raw)))
    if split == "val" and val_fraction == 0.0:
        raise ValueError("split 'val' needs val_fraction > 0 (a class-disjoint part of the training classes)")
    idx_str, labels = _select(records, split, val_fraction, seed)
    idx = np.array([int(i) for i in idx_str], dtype=np.int64)
    return OmniglotDataset(X[idx], labels, [characters[c] for c in np.unique(y[idx])], split, transform=transform)


def verify_omniglot(root: str | Path | None = None, *, check_counts: bool = True) -> dict[str, dict[str, int]]:
    """Check the zips (sha256, layout, drawers, duplicates, every PNG decodes, counts); ``{split: {images, classes}}``.

    Raises a :class:`~mslib.data.errors.DatasetError` naming the file at the first problem.
    """
    summary = {}
    for split in ("train", "test"):
        ds = load_omniglot(split, root=root, check_counts=check_counts)
        summary[split] = {"images": len(ds), "classes": ds.num_classes}
    return summary


def _fixture_png(rng: np.random.Generator, size: int) -> bytes:
    from PIL import Image

    ink = rng.random((size, size)) > 0.3  # white paper (True), black ink (False), as in the real files
    buf = io.BytesIO()
    Image.fromarray(ink).convert("1").save(buf, "PNG")
    return buf.getvalue()


def _add(zf: zipfile.ZipFile, name: str, data: bytes) -> None:
    """A member with a fixed timestamp, so that a fixture's zips are the same bytes every time."""
    zf.writestr(zipfile.ZipInfo(name, date_time=(2015, 10, 20, 0, 0, 0)), data)


def make_omniglot_fixture(root: str | Path, *, alphabets: dict[str, Sequence[str]] | None = None,
                          characters: int = 2, drawers: int = DRAWERS, size: int = 12, seed: int = 0) -> Path:
    """Write the two zips in the authors' exact layout, with small random binary PNGs; return ``root``.

    ``alphabets`` maps each zip file name to its alphabets (default: Greek in both, as in the real zips, plus one
    alphabet of its own); each alphabet has ``characters`` characters of ``drawers`` drawers. A character in both zips
    gets the same bytes in both. Load it with ``check_counts=False`` (a deliberate subset: not the published sha256).
    """
    names = list(OMNIGLOT_SHA256)
    if alphabets is None:
        alphabets = {names[0]: ("Balinese", "Greek"), names[1]: ("Greek", "Tagalog")}
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    for name in names:
        stem = Path(name).stem
        with zipfile.ZipFile(root / name, "w") as zf:
            _add(zf, f"{stem}/", b"")
            for alphabet in sorted(set(alphabets.get(name, ()))):
                _add(zf, f"{stem}/{alphabet}/", b"")
                for c in range(1, characters + 1):
                    folder = f"{stem}/{alphabet}/character{c:02d}/"
                    _add(zf, folder, b"")
                    first_id = 100 * (sum(map(ord, alphabet)) % 90) + c  # one id per character, as the real files
                    for d in range(1, drawers + 1):
                        rng = np.random.default_rng([seed, sum(map(ord, alphabet)), c, d])
                        _add(zf, f"{folder}{first_id:04d}_{d:02d}.png", _fixture_png(rng, size))
    return root


__all__ = ["DRAWERS", "IMAGE_SIZE", "OMNIGLOT_EXPECTED", "OMNIGLOT_FILES", "OMNIGLOT_SHA256", "SPLIT_SEED",
           "OmniglotDataset", "decode_png", "load_omniglot", "make_omniglot_fixture", "omniglot_records",
           "omniglot_root", "read_omniglot", "split_classes", "verify_omniglot"]
