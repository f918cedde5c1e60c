"""Readers of the four benchmarks on fixtures in each archive's exact on-disk format, and the `data` CLI."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from mslib.data import (
    EXPECTED,
    CountMismatchError,
    DatasetError,
    DatasetNotFoundError,
    UnreadableImageError,
    load_dataset,
)
from mslib.data.cli import main as data_main
from mslib.data.fixtures import MAKERS, make_cars, make_cub, make_inshop, make_sop

# (train images, train classes, test images, test classes) of the fixtures above
FIXTURE_COUNTS = {"cub200": (6, 3, 5, 2), "cars196": (3, 2, 5, 2), "sop": (5, 3, 4, 3)}


@pytest.mark.parametrize("name", ["cub200", "cars196", "sop"])
def test_splits_counts_and_remapping(tmp_path: Path, name: str) -> None:
    root = MAKERS[name](tmp_path)
    n_train, c_train, n_test, c_test = FIXTURE_COUNTS[name]
    train = load_dataset(name, "train", root=root, check_counts=False)
    test = load_dataset(name, "test", root=root, check_counts=False)
    assert (len(train), train.num_classes, len(test), test.num_classes) == FIXTURE_COUNTS[name]
    for ds, c in ((train, c_train), (test, c_test)):
        assert ds.labels.dtype == np.int64 and ds.labels.ndim == 1
        assert sorted(set(ds.labels.tolist())) == list(range(c))
        img, label = ds[0]
        assert img.mode == "RGB" and label == ds.labels[0]
    assert not set(train.paths) & set(test.paths)


def test_cub_split_is_by_class_id(tmp_path: Path) -> None:
    train = load_dataset("cub200", "train", root=make_cub(tmp_path), check_counts=False)
    assert all(p.split(".")[0] in ("001", "002", "003") for p in train.paths)
    assert train.labels.tolist() == [0, 0, 0, 1, 1, 2]


def test_inshop_query_gallery_share_labels(tmp_path: Path) -> None:
    root = make_inshop(tmp_path)
    query = load_dataset("inshop", "query", root=root, check_counts=False)
    gallery = load_dataset("inshop", "gallery", root=root, check_counts=False)
    train = load_dataset("inshop", "train", root=root, check_counts=False)
    assert (len(train), len(query), len(gallery)) == (3, 2, 3)
    assert query.labels.tolist() == [0, 1] and gallery.labels.tolist() == [0, 1, 1]
    assert query.num_classes == gallery.num_classes == 2 and train.num_classes == 2
    assert len(load_dataset("inshop", "test", root=root, check_counts=False)) == 5


def test_val_split_is_class_disjoint_and_seeded(tmp_path: Path) -> None:
    root = make_cub(tmp_path)
    kw = dict(root=root, check_counts=False, val_fraction=0.34, seed=3)
    train, val = load_dataset("cub200", "train", **kw), load_dataset("cub200", "val", **kw)
    assert len(train) + len(val) == 6 and not set(train.paths) & set(val.paths)
    assert val.num_classes == 1 and train.num_classes == 2
    assert load_dataset("cub200", "val", **kw).paths == val.paths
    with pytest.raises(ValueError, match="val_fraction > 0"):
        load_dataset("cub200", "val", root=root, check_counts=False)


def test_published_counts_are_checked(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = make_cub(tmp_path)
    with pytest.raises(CountMismatchError, match=r"expected 5,864 images.*python -m mslib data download cub200"):
        load_dataset("cub200", "train", root=root)
    monkeypatch.setitem(EXPECTED, "cub200", {"train": (6, 3), "test": (5, 2)})
    assert len(load_dataset("cub200", "train", root=root)) == 6
    assert EXPECTED["sop"]["test"] == (60502, 11316)


def test_unknown_names_and_splits() -> None:
    with pytest.raises(ValueError, match="valid names: glyphs, cub200, cars196, sop, inshop"):
        load_dataset("cub", "train")
    with pytest.raises(ValueError, match="valid splits: train, val, test"):
        load_dataset("cub200", "query")


def test_missing_root_and_files(tmp_path: Path) -> None:
    with pytest.raises(DatasetNotFoundError, match="python -m mslib data download sop"):
        load_dataset("sop", "train", root=tmp_path / "nowhere")
    root = make_cub(tmp_path)
    (root / "CUB_200_2011" / "image_class_labels.txt").unlink()
    with pytest.raises(DatasetNotFoundError, match=r"image_class_labels\.txt not found.*data download cub200"):
        load_dataset("cub200", "train", root=root, check_counts=False)


def test_missing_and_unreadable_images(tmp_path: Path) -> None:
    root = make_sop(tmp_path)
    ds = load_dataset("sop", "train", root=root, check_counts=False)
    ds.image_path(1).write_bytes(b"not a jpeg")
    ds.image_path(2).unlink()
    with pytest.raises(UnreadableImageError, match=str(ds.image_path(1).name)):
        ds[1]
    with pytest.raises(DatasetNotFoundError, match=str(ds.image_path(2).name)):
        ds[2]
    with pytest.warns(UserWarning, match="skipping 2 unreadable"):
        skipped = load_dataset("sop", "train", root=root, check_counts=False, skip_unreadable=True)
    assert len(skipped) == 3 and all(skipped[i][0].mode == "RGB" for i in range(3))


def test_corrupt_list_files(tmp_path: Path) -> None:
    root = make_inshop(tmp_path)
    path = root / "Eval" / "list_eval_partition.txt"
    path.write_text("\n".join(path.read_text().splitlines()[:-1]) + "\n")  # truncated
    with pytest.raises(CountMismatchError, match="announces 8 images but lists 7"):
        load_dataset("inshop", "train", root=root, check_counts=False)
    sop = make_sop(tmp_path / "sop") / "Stanford_Online_Products" / "Ebay_train.txt"
    sop.write_text("\n".join(sop.read_text().splitlines()[1:]))
    with pytest.raises(DatasetError, match="header"):
        load_dataset("sop", "train", root=tmp_path / "sop", check_counts=False)


def test_transform_is_applied(tmp_path: Path) -> None:
    from mslib.data.transforms import build_transform

    ds = load_dataset("cars196", "test", root=make_cars(tmp_path), check_counts=False,
                      transform=build_transform("imagenet", train=False, size=8))
    x, _ = ds[0]
    assert tuple(x.shape) == (3, 8, 8)


def test_cli_verify_fixture_and_broken_tree(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = make_cub(tmp_path)
    assert data_main(["verify", "cub200", "--root", str(root), "--no-count-check"]) == 0
    assert "cub200: OK" in capsys.readouterr().out
    assert data_main(["verify", "cub200", "--root", str(root)]) == 1
    assert "expected 5,864 images" in capsys.readouterr().err
    bad = next((root / "CUB_200_2011" / "images").rglob("*.jpg"))
    bad.write_bytes(b"\xff\xd8 truncated")
    assert data_main(["verify", "cub200", "--root", str(root), "--no-count-check"]) == 1
    err = capsys.readouterr().err
    assert "cannot be decoded" in err and bad.name in err
    assert data_main(["verify", "imagenet"]) == 1
    assert "valid names" in capsys.readouterr().err
    assert data_main(["download", "inshop", "--root", str(tmp_path / "inshop")]) == 1
    assert "list_eval_partition.txt" in capsys.readouterr().err


def test_mslib_dispatches_data() -> None:
    from mslib.__main__ import main

    assert main(["data", "list"]) == 0


def test_fixture_helpers(tmp_path: Path) -> None:
    from mslib.data.fixtures import layout, make_fixture

    with pytest.raises(ValueError, match="unknown dataset 'mnist'"):
        make_fixture("mnist", tmp_path)
    root = make_fixture("cars196", tmp_path / "cars")
    listing = layout(root, max_lines=3).splitlines()
    assert listing[:2] == ["cars/", "    car_ims/"]
    assert "... (5 more)" in listing[-2] and listing[-1] == "    cars_annos.mat"
