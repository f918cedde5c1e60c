"""Omniglot-242 (``mslib.data.omniglot``): the vendored zips, the split, decoding, and every bad input.

The bad inputs are fixtures in the authors' exact zip layout (``make_omniglot_fixture``), each edited in one way;
the split and decoding tests read the committed ``data/omniglot/`` zips (so they cannot skip: the files are in git).
"""

from __future__ import annotations

import hashlib
import io
import shutil
import warnings
import zipfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from mslib.data import omniglot
from mslib.data.download import RemoteFile
from mslib.data.errors import (
    ChecksumError,
    CountMismatchError,
    DatasetError,
    DatasetNotFoundError,
    DuplicateEntryError,
    UnreadableImageError,
)
from mslib.data.loading import download_dataset
from mslib.data.omniglot import load_omniglot, make_omniglot_fixture, read_omniglot, verify_omniglot

ROOT = Path(__file__).resolve().parent.parent
VENDORED = ROOT / "data" / "omniglot"
SMALL1, SMALL2 = "images_background_small1.zip", "images_background_small2.zip"

Members = list[tuple[zipfile.ZipInfo, bytes]]


def _rewrite(path: Path, edit: Callable[[Members], Members]) -> None:
    """Rewrite zip ``path`` with its members (info, bytes) passed through ``edit``."""
    with zipfile.ZipFile(path) as zf:
        members = [(info, zf.read(info)) for info in zf.infolist()]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # zipfile warns on a duplicate name, which one test writes
        with zipfile.ZipFile(path, "w") as zf:
            for info, data in edit(members):
                zf.writestr(info, data)


def _add(name: str, data: bytes) -> Callable[[Members], Members]:
    return lambda members: members + [(zipfile.ZipInfo(name), data)]


def _png_of(members: Members, name: str) -> bytes:
    return next(data for info, data in members if info.filename == name)


@pytest.fixture
def fixture(tmp_path: Path) -> Path:
    return make_omniglot_fixture(tmp_path / "omniglot")


def _error(root: Path, kind: type[Exception] = DatasetError) -> str:
    with pytest.raises(kind) as info:
        read_omniglot(root, check_counts=False)
    return str(info.value)


# -- the real, vendored zips ------------------------------------------------------------------------------------------


def _characters_in_zips() -> list[tuple[str, str]]:
    """(alphabet, character) of every PNG in the vendored zips, read with zipfile alone (independent of mslib)."""
    found = set()
    for name in (SMALL1, SMALL2):
        with zipfile.ZipFile(VENDORED / name) as zf:
            found |= {tuple(n.split("/")[1:3]) for n in zf.namelist() if n.endswith(".png")}
    return sorted(found)


def test_the_vendored_zips_are_the_published_files() -> None:
    listed = dict(line.split()[::-1] for line in (VENDORED / "SHA256SUMS").read_text().splitlines())
    assert listed == omniglot.OMNIGLOT_SHA256
    for name, digest in listed.items():
        assert hashlib.sha256((VENDORED / name).read_bytes()).hexdigest() == digest
    assert "MIT" in (VENDORED / "LICENSE").read_text() and "Brenden Lake" in (VENDORED / "LICENSE").read_text()
    assert [(f.filename, f.urls, f.sha256, f.extract) for f in omniglot.OMNIGLOT_FILES] == [
        (name, (f"https://github.com/brendenlake/omniglot/raw/master/python/{name}",), digest, False)
        for name, digest in listed.items()]


def test_the_split_is_class_disjoint_with_the_documented_counts() -> None:
    train, test = load_omniglot("train"), load_omniglot("test")
    assert (len(train), train.num_classes, len(test), test.num_classes) == (2420, 121, 2420, 121)
    assert omniglot.OMNIGLOT_EXPECTED == {"all": (4840, 242), "train": (2420, 121), "test": (2420, 121)}
    assert train.name == test.name == "omniglot"
    assert set(train.characters).isdisjoint(test.characters)
    everything = [f"{a}/{c}" for a, c in _characters_in_zips()]
    assert len(everything) == 242 and sorted(train.characters + test.characters) == everything
    # the documented rule: characters sorted by (alphabet, character), default_rng(12345).permutation, first half train
    perm = np.random.default_rng(12345).permutation(242)
    assert train.characters == [everything[i] for i in sorted(perm[:121])]
    for ds in (train, test):
        assert np.array_equal(np.bincount(ds.labels), np.full(121, 20))
        assert ds.images.shape == (2420, 32, 32) and ds.images.dtype == np.uint8
    alphabets = {c.split("/")[0] for c in everything}
    assert len(alphabets) == 8 and {c.split("/")[0] for c in train.characters} == alphabets
    assert verify_omniglot() == {"train": {"images": 2420, "classes": 121}, "test": {"images": 2420, "classes": 121}}


def test_val_is_a_class_disjoint_share_of_the_training_characters() -> None:
    full = load_omniglot("train")
    train = load_omniglot("train", val_fraction=0.2, seed=3)
    val = load_omniglot("val", val_fraction=0.2, seed=3)
    assert val.num_classes == round(0.2 * 121) and train.num_classes + val.num_classes == 121
    assert set(train.characters).isdisjoint(val.characters)
    assert sorted(train.characters + val.characters) == full.characters
    assert len(train) + len(val) == 2420
    with pytest.raises(ValueError, match="val_fraction > 0"):
        load_omniglot("val")
    with pytest.raises(ValueError, match="unknown split"):
        load_omniglot("query")


def test_loading_is_deterministic() -> None:
    first = load_omniglot("test", image_size=24)
    omniglot._DECODED.clear()  # decode again, not the in-memory copy
    second = load_omniglot("test", image_size=24)
    assert np.array_equal(first.images, second.images) and np.array_equal(first.labels, second.labels)
    assert first.characters == second.characters


def test_a_decoded_image_is_pils_own_decode_and_resize(tmp_path: Path) -> None:
    X, y, characters = read_omniglot()
    X35, _, _ = read_omniglot(image_size=35)
    with zipfile.ZipFile(VENDORED / SMALL2) as zf:
        names = sorted(n for n in zf.namelist() if n.endswith(".png"))
        for name in (names[0], names[777], names[-1]):
            _, alphabet, character, file = name.split("/")
            index = characters.index(f"{alphabet}/{character}") * 20 + int(file[-6:-4]) - 1
            assert y[index] == characters.index(f"{alphabet}/{character}")
            with Image.open(io.BytesIO(zf.read(name))) as img:
                assert img.size == (105, 105)
                reference = 255 - np.asarray(img.convert("L").resize((32, 32), Image.Resampling.BOX))
                paper = np.asarray(img.convert("L"), dtype=np.float64)
            assert np.array_equal(X[index], reference), name
            # 105 = 3 x 35: BOX is then the plain 3 x 3 block mean (numpy), up to rounding
            block = 255 - paper.reshape(35, 3, 35, 3).mean(axis=(1, 3))
            assert np.abs(X35[index] - block).max() <= 0.5 + 1e-9, name
    assert X.mean() < 64  # ink bright on a dark background: most pixels are dark


# -- the download path ------------------------------------------------------------------------------------------------


def test_download_fetches_and_verifies_the_zips_without_extracting(tmp_path: Path) -> None:
    local = tuple(RemoteFile(f.filename, ((VENDORED / f.filename).as_uri(),), sha256=f.sha256, extract=False)
                  for f in omniglot.OMNIGLOT_FILES)
    placed = download_dataset("omniglot", tmp_path, sources=local, progress=False)
    assert placed == [tmp_path / SMALL1, tmp_path / SMALL2]
    assert sorted(p.name for p in tmp_path.iterdir()) == [SMALL1, SMALL2]  # nothing extracted
    assert verify_omniglot(tmp_path)["test"] == {"images": 2420, "classes": 121}
    wrong = (RemoteFile(SMALL1, ((VENDORED / SMALL2).as_uri(),), sha256=omniglot.OMNIGLOT_SHA256[SMALL1]),)
    with pytest.raises(ChecksumError, match=omniglot.OMNIGLOT_SHA256[SMALL1]):
        download_dataset("omniglot", tmp_path / "bad", sources=wrong, progress=False)
    assert not any((tmp_path / "bad").iterdir())


# -- every bad input names its file -----------------------------------------------------------------------------------


def test_the_fixture_loads_as_a_deliberate_subset(fixture: Path) -> None:
    X, y, characters = read_omniglot(fixture, check_counts=False)
    assert characters == [f"{a}/character{c:02d}" for a in ("Balinese", "Greek", "Tagalog") for c in (1, 2)]
    assert X.shape == (120, 32, 32) and np.array_equal(np.bincount(y), np.full(6, 20))
    train, test = (load_omniglot(s, root=fixture, check_counts=False) for s in ("train", "test"))
    assert train.num_classes == test.num_classes == 3 and set(train.characters).isdisjoint(test.characters)


def test_reading_never_writes(fixture: Path) -> None:
    before = {p: (p.stat().st_mtime_ns, p.read_bytes()) for p in fixture.rglob("*")}
    load_omniglot("train", root=fixture, check_counts=False)
    _rewrite(fixture / SMALL1, _add("images_background_small1/Greek/notes.txt", b"x"))
    before[fixture / SMALL1] = ((fixture / SMALL1).stat().st_mtime_ns, (fixture / SMALL1).read_bytes())
    _error(fixture)
    assert {p: (p.stat().st_mtime_ns, p.read_bytes()) for p in fixture.rglob("*")} == before


def test_a_zip_that_is_not_the_published_one_names_both_digests(tmp_path: Path, fixture: Path) -> None:
    with pytest.raises(ChecksumError, match=SMALL1) as info:
        read_omniglot(fixture)  # check_counts=True: the published files only
    found = hashlib.sha256((fixture / SMALL1).read_bytes()).hexdigest()
    assert found in str(info.value) and omniglot.OMNIGLOT_SHA256[SMALL1] in str(info.value)
    copy = tmp_path / "copy"
    shutil.copytree(VENDORED, copy)
    with open(copy / SMALL2, "ab") as f:
        f.write(b"\0")
    with pytest.raises(ChecksumError) as info:
        load_omniglot("train", root=copy)
    message = str(info.value)
    assert str(copy / SMALL2) in message and omniglot.OMNIGLOT_SHA256[SMALL2] in message
    assert hashlib.sha256((copy / SMALL2).read_bytes()).hexdigest() in message


def test_counts_other_than_the_published_ones(fixture: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    digests = {name: hashlib.sha256((fixture / name).read_bytes()).hexdigest() for name in (SMALL1, SMALL2)}
    monkeypatch.setattr(omniglot, "OMNIGLOT_SHA256", digests)  # the fixture passes as "published": only counts differ
    with pytest.raises(CountMismatchError, match=r"expected 4,840 images of 242 characters, found 120 of 6"):
        load_omniglot("train", root=fixture)


@pytest.mark.parametrize(("member", "why"), [
    ("images_background_small1/Greek/character01/notes.txt", "not named <id>_<drawer>.png"),
    ("images_background_small1/Greek/0101_01.png", "not at that depth"),
    ("images_background_small1/Greek/char1/0101_01.png", "not characterNN"),
    ("elsewhere/Greek/character01/0101_01.png", "not inside the folder images_background_small1/"),
    ("images_background_small1/Greek/character01/sub/0101_01.png", "not at that depth"),
    ("images_background_small1/Greek/character01/0101_21.png", "drawer 21, outside 01..20"),
])
def test_a_wrong_layout_names_the_zip_and_the_member(fixture: Path, member: str, why: str) -> None:
    _rewrite(fixture / SMALL1, _add(member, b"x"))
    message = _error(fixture)
    assert str(fixture / SMALL1) in message and repr(member) in message and why in message


def test_a_missing_png_names_the_folder_and_the_drawers(fixture: Path) -> None:
    folder = "images_background_small2/Tagalog/character02/"
    _rewrite(fixture / SMALL2, lambda ms: [(i, d) for i, d in ms if not (
        i.filename.startswith(folder) and i.filename[-6:-4] in ("05", "17"))])
    message = _error(fixture, DatasetNotFoundError)
    assert str(fixture / SMALL2) in message and folder in message and "18 of 20" in message
    assert "missing drawer(s) 05, 17;" in message


def test_an_empty_character_folder_is_named(fixture: Path) -> None:
    _rewrite(fixture / SMALL1, _add("images_background_small1/Greek/character03/", b""))
    message = _error(fixture, DatasetNotFoundError)
    assert "images_background_small1/Greek/character03/ is empty" in message and str(fixture / SMALL1) in message


def test_the_same_member_twice_in_a_zip(fixture: Path) -> None:
    with zipfile.ZipFile(fixture / SMALL1) as zf:
        name = next(n for n in zf.namelist() if n.endswith("_03.png"))
    _rewrite(fixture / SMALL1, lambda ms: ms + [(zipfile.ZipInfo(name), _png_of(ms, name))])
    message = _error(fixture, DuplicateEntryError)
    assert f"{fixture / SMALL1} holds member {name!r} twice" in message


def test_one_drawer_under_two_names(fixture: Path) -> None:
    folder = "images_background_small2/Tagalog/character01/"
    _rewrite(fixture / SMALL2, lambda ms: ms + [(zipfile.ZipInfo(folder + "9999_04.png"), b"png")])
    message = _error(fixture, DuplicateEntryError)
    assert "drawer 04 of images_background_small2/Tagalog/character01 twice" in message
    assert folder + "9999_04.png" in message and str(fixture / SMALL2) in message


def test_a_character_in_both_zips_with_different_files_names_both(fixture: Path) -> None:
    with zipfile.ZipFile(fixture / SMALL2) as zf:
        other = next(n for n in zf.namelist() if "/Tagalog/" in n and n.endswith(".png"))
        replacement = zf.read(other)
    greek = "images_background_small2/Greek/character02/"
    _rewrite(fixture / SMALL2, lambda ms: [(i, replacement if i.filename.startswith(greek) and
                                            i.filename.endswith("_07.png") else d) for i, d in ms])
    message = _error(fixture, DuplicateEntryError)
    assert "Greek/character02 is in two zips with different files: drawer 07" in message
    assert f"{fixture / SMALL1}:images_background_small1/Greek/character02/" in message
    assert f"{fixture / SMALL2}:{greek}" in message


def test_the_same_image_under_two_characters_names_both(fixture: Path) -> None:
    with zipfile.ZipFile(fixture / SMALL1) as zf:
        source = next(n for n in zf.namelist() if n.endswith(".png"))
        data = zf.read(source)
    target = "images_background_small2/Tagalog/character02/"
    _rewrite(fixture / SMALL2, lambda ms: [(i, data if i.filename.startswith(target) and
                                            i.filename.endswith("_11.png") else d) for i, d in ms])
    message = _error(fixture, DuplicateEntryError)
    assert "the same image twice" in message and f"{fixture / SMALL1}:{source}" in message
    assert f"{fixture / SMALL2}:{target}" in message


def test_an_undecodable_png_names_the_zip_and_the_member(fixture: Path) -> None:
    bad = "images_background_small1/Balinese/character01/"  # Greek is in both zips: it would differ from small2's
    _rewrite(fixture / SMALL1, lambda ms: [(i, b"not a png" if i.filename.startswith(bad) and
                                            i.filename.endswith("_09.png") else d) for i, d in ms])
    message = _error(fixture, UnreadableImageError)
    assert f"cannot decode {fixture / SMALL1}:{bad}" in message and "_09.png" in message


def test_a_missing_zip_or_root_is_named(fixture: Path, tmp_path: Path) -> None:
    (fixture / SMALL2).unlink()
    assert str(fixture / SMALL2) in _error(fixture, DatasetNotFoundError)
    assert str(tmp_path / "nowhere") in _error(tmp_path / "nowhere", DatasetNotFoundError)
    (fixture / SMALL2).write_bytes(b"not a zip")
    assert f"cannot open {fixture / SMALL2} as a zip" in _error(fixture)


def test_the_montage_shows_one_row_per_alphabet(fixture: Path) -> None:
    import matplotlib.pyplot as plt

    from mslib.data.plots import omniglot_montage

    X, y, characters = read_omniglot(fixture, check_counts=False, image_size=8)
    for by, tiles in (("character", [0, 20, 40, 60, 80, 100]), ("drawer", [0, 1, 40, 41, 80, 81])):
        fig = omniglot_montage(X, y, characters, per_row=2, by=by)
        ax = fig.axes[0]
        assert [t.get_text() for t in ax.texts] == ["Balinese", "Greek", "Tagalog"]
        canvas = ax.images[0].get_array()
        shown = [canvas[r * 10 : r * 10 + 8, c * 10 : c * 10 + 8] for r in range(3) for c in range(2)]
        assert all(np.array_equal(s, X[i]) for s, i in zip(shown, tiles, strict=True)), by
        plt.close(fig)
    with pytest.raises(ValueError, match="by must be"):
        omniglot_montage(X, y, characters, by="alphabet")
