"""Readers of the four benchmarks on fixtures in each archive's exact on-disk format, and the `data` CLI."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import numpy as np
import pytest

from mslib.cli import data_main
from mslib.data import (
    DATASETS,
    CountMismatchError,
    DatasetError,
    DatasetNotFoundError,
    DuplicateEntryError,
    SplitMismatchError,
    UnreadableImageError,
    load_dataset,
)
from mslib.data.fixtures import make_cars, make_cub, make_inshop, make_sop
from mslib.data.loading import make_fixture

# (train images, train classes, test images, test classes) of the fixtures above
FIXTURE_COUNTS = {"cub200": (6, 3, 5, 2), "cars196": (3, 2, 5, 2), "sop": (5, 3, 4, 3)}


@pytest.mark.parametrize("name", ["cub200", "cars196", "sop"])
def test_splits_counts_and_remapping(tmp_path: Path, name: str) -> None:
    root = make_fixture(name, tmp_path)
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
    monkeypatch.setitem(DATASETS, "cub200", dataclasses.replace(DATASETS["cub200"],
                                                                expected={"train": (6, 3), "test": (5, 2)}))
    assert len(load_dataset("cub200", "train", root=root)) == 6
    assert DATASETS["sop"].expected["test"] == (60502, 11316)


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
                      transform=build_transform("resnet50", train=False, size=8))
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
    from mslib.data.fixtures import layout

    with pytest.raises(ValueError, match="unknown dataset 'mnist'"):
        make_fixture("mnist", tmp_path)
    root = make_fixture("cars196", tmp_path / "cars")
    listing = layout(root, max_lines=3).splitlines()
    assert listing[:2] == ["cars/", "    car_ims/"]
    assert "... (5 more)" in listing[-2] and listing[-1] == "    cars_annos.mat"


# -- bad inputs that used to load silently (issue #10 §7); every failing read leaves the files as they were --------

def _snapshot(root: Path) -> dict[Path, tuple[bytes, int]]:
    return {p: (p.read_bytes(), p.stat().st_mtime_ns) for p in sorted(root.rglob("*")) if p.is_file()}


def _fails_untouched(root: Path, name: str, error: type[Exception], match: str, split: str = "train") -> None:
    """Loading ``split`` raises ``error`` matching ``match``, and no file under ``root`` changed."""
    before = _snapshot(root)
    with pytest.raises(error, match=match):
        load_dataset(name, split, root=root, check_counts=False)
    assert _snapshot(root) == before


def _lines(path: Path) -> list[str]:
    return path.read_text().splitlines()


def _write(path: Path, lines: list[str]) -> None:
    path.write_text("\n".join(lines) + "\n")


def test_sop_fixture_index_covers_both_splits(tmp_path: Path) -> None:
    base = make_sop(tmp_path) / "Stanford_Online_Products"
    info = [line.split()[3] for line in _lines(base / "Ebay_info.txt")[1:]]
    train = load_dataset("sop", "train", root=tmp_path, check_counts=False)
    test = load_dataset("sop", "test", root=tmp_path, check_counts=False)
    assert sorted(train.paths + test.paths) == sorted(info) and len(info) == len(set(info)) == 9


@pytest.mark.parametrize("fname", ["Ebay_train.txt", "Ebay_test.txt", "Ebay_info.txt"])
def test_sop_line_listed_twice(tmp_path: Path, fname: str) -> None:
    path = make_sop(tmp_path) / "Stanford_Online_Products" / fname
    lines = _lines(path)
    _write(path, lines + [lines[2]])  # line 3 again, as the last line
    image = lines[2].split()[3]
    _fails_untouched(tmp_path, "sop", DuplicateEntryError,
                     rf"{fname} lists 1 image path\(s\) twice: image path {image} on lines 3 and {len(lines) + 1}")


def test_sop_same_image_id_twice(tmp_path: Path) -> None:
    path = make_sop(tmp_path) / "Stanford_Online_Products" / "Ebay_train.txt"
    lines = _lines(path)
    _write(path, lines[:2] + [lines[2].replace(lines[2].split()[0], lines[1].split()[0], 1)] + lines[3:])
    _fails_untouched(tmp_path, "sop", DuplicateEntryError, r"Ebay_train.txt lists 1 image_id\(s\) twice: "
                     r"image_id 1 on lines 2 and 3")


def test_sop_image_or_class_in_both_splits(tmp_path: Path) -> None:
    base = make_sop(tmp_path) / "Stanford_Online_Products"
    train, test = _lines(base / "Ebay_train.txt"), _lines(base / "Ebay_test.txt")
    _write(base / "Ebay_test.txt", test + [train[1]])
    image = train[1].split()[3]
    _fails_untouched(tmp_path, "sop", SplitMismatchError,
                     rf"1 image\(s\) in two splits .*image {image} in train \(Ebay_train.txt line 2\) and in test "
                     rf"\(Ebay_test.txt line {len(test) + 1}\)")
    fields = test[1].split()  # a test image moved to a training class
    _write(base / "Ebay_test.txt", [test[0], " ".join([fields[0], "5", *fields[2:]])] + test[2:])
    _fails_untouched(tmp_path, "sop", SplitMismatchError,
                     r"class_id 5 in train \(Ebay_train.txt line 5\) and in test \(Ebay_test.txt line 2\)")


def test_sop_splits_must_agree_with_ebay_info(tmp_path: Path) -> None:
    base = make_sop(tmp_path) / "Stanford_Online_Products"
    info, test = base / "Ebay_info.txt", base / "Ebay_test.txt"
    original_test, original_info = _lines(test), _lines(info)
    _write(test, original_test[:-1])  # an indexed image dropped from both splits
    dropped = original_test[-1].split()[3]
    _fails_untouched(tmp_path, "sop", SplitMismatchError,
                     rf"Ebay_info.txt line 10 \({dropped}\) is in neither Ebay_train.txt nor Ebay_test.txt")
    _write(test, original_test)
    _write(info, original_info[:-1])  # a split entry missing from the index
    _fails_untouched(tmp_path, "sop", SplitMismatchError,
                     rf"Ebay_test.txt line 5 \({dropped}\) is not in Ebay_info.txt")
    fields = original_info[2].split()  # the index disagrees on a field (super_class_id)
    _write(info, original_info[:2] + [" ".join(fields[:2] + ["3", fields[3]])] + original_info[3:])
    _fails_untouched(tmp_path, "sop", SplitMismatchError, rf"Ebay_train.txt line 3 reads '{original_info[2]}' but "
                     rf"Ebay_info.txt line 3 reads '{' '.join(fields[:2] + ['3', fields[3]])}'")
    info.unlink()  # the index is optional: without it the two split files are read as they are
    assert len(load_dataset("sop", "test", root=tmp_path, check_counts=False)) == 4


def test_cub_every_indexed_image_is_used_once(tmp_path: Path) -> None:
    base = make_cub(tmp_path) / "CUB_200_2011"
    indexed = [line.split()[1] for line in _lines(base / "images.txt")]
    train = load_dataset("cub200", "train", root=tmp_path, check_counts=False)
    test = load_dataset("cub200", "test", root=tmp_path, check_counts=False)
    assert sorted(train.paths + test.paths) == sorted(indexed) and len(indexed) == len(set(indexed)) == 11
    assert (base / "train_test_split.txt").is_file()  # the classification split: present but not what splits


def test_cub_duplicates_and_unmatched_ids(tmp_path: Path) -> None:
    base = make_cub(tmp_path) / "CUB_200_2011"
    images, labels = _lines(base / "images.txt"), _lines(base / "image_class_labels.txt")
    _write(base / "images.txt", images + [images[3]])
    _fails_untouched(tmp_path, "cub200", DuplicateEntryError, r"images.txt lists 1 image_id\(s\) twice: image_id 4 "
                     r"on lines 4 and 12")
    _write(base / "images.txt", images + ["12 " + images[3].split()[1]])  # the same file under a new id
    _write(base / "image_class_labels.txt", labels + ["12 " + labels[3].split()[1]])
    _fails_untouched(tmp_path, "cub200", DuplicateEntryError, r"images.txt lists 1 image path\(s\) twice: image path "
                     rf"{images[3].split()[1]} on lines 4 and 12")
    _write(base / "images.txt", images)
    _write(base / "image_class_labels.txt", labels + [labels[0]])
    _fails_untouched(tmp_path, "cub200", DuplicateEntryError, r"image_class_labels.txt lists 1 image_id\(s\) twice")
    _write(base / "image_class_labels.txt", labels[:-1])
    _fails_untouched(tmp_path, "cub200", SplitMismatchError, r"list different image ids.*image_id 11 "
                     r"\(images.txt line 11\)")


def _rewrite_cars(path: Path, edit) -> None:
    from scipy.io import loadmat, savemat

    mat = loadmat(str(path))
    edit(mat)
    savemat(path, {k: v for k, v in mat.items() if not k.startswith("__")})


@pytest.mark.parametrize("n_names", [195, 197, 98])
def test_cars_class_name_table_must_match_class_ids(tmp_path: Path, n_names: int) -> None:
    root = make_cars(tmp_path, class_names=n_names)
    _fails_untouched(root, "cars196", SplitMismatchError,
                     rf"class_names has {n_names} entries but the annotations use class ids 1\.\.196")


def test_cars_published_table_loads_and_broken_mat_fails(tmp_path: Path) -> None:
    from scipy.io import loadmat

    root = make_cars(tmp_path)
    assert loadmat(str(root / "cars_annos.mat"), squeeze_me=True)["class_names"].shape == (196,)
    assert len(load_dataset("cars196", "test", root=root, check_counts=False)) == 5
    ann = root / "cars_annos.mat"
    _rewrite_cars(ann, lambda m: m["annotations"]["relative_im_path"].__setitem__(
        (0, 4), m["annotations"]["relative_im_path"][0, 1]))
    _fails_untouched(root, "cars196", DuplicateEntryError,
                     r"lists 1 image\(s\) twice .*car_ims/000002.jpg in annotations 2 and 5")
    _rewrite_cars(ann, lambda m: m.pop("class_names"))
    _fails_untouched(root, "cars196", DatasetError, r"cannot read .*cars_annos.mat.*'class_names'")


def test_inshop_nested_img_folder_reads_the_same(tmp_path: Path) -> None:
    flat, nested = make_inshop(tmp_path / "flat"), make_inshop(tmp_path / "nested", nested=True)
    assert (nested / "Img" / "img").is_dir() and not (nested / "img").exists()
    for split in ("train", "query", "gallery"):
        a = load_dataset("inshop", split, root=flat, check_counts=False)
        b = load_dataset("inshop", split, root=nested, check_counts=False)
        assert a.paths == b.paths and a.labels.tolist() == b.labels.tolist()
        assert b.image_path(0) == nested / "Img" / b.paths[0] and b[0][0].mode == "RGB"


def test_inshop_missing_files_name_every_candidate(tmp_path: Path) -> None:
    root = make_inshop(tmp_path)
    partition = root / "Eval" / "list_eval_partition.txt"
    partition.rename(root / "list_eval_partition.txt")  # the partition file at the root is accepted too
    assert len(load_dataset("inshop", "gallery", root=root, check_counts=False)) == 3
    (root / "list_eval_partition.txt").unlink()
    with pytest.raises(DatasetNotFoundError, match=re.escape(f"looked for {partition} and "
                                                             f"{root / 'list_eval_partition.txt'}")) as info:
        load_dataset("inshop", "train", root=root, check_counts=False)
    assert "cannot be downloaded automatically" in str(info.value)
    make_inshop(tmp_path)
    (root / "img").rename(root / "images")
    _fails_untouched(root, "inshop", DatasetNotFoundError,
                     re.escape(f"no image folder: looked for {root / 'img'} and {root / 'Img' / 'img'}"))


def test_inshop_missing_image_suggests_no_automatic_download(tmp_path: Path) -> None:
    root = make_inshop(tmp_path, nested=True)
    ds = load_dataset("inshop", "query", root=root, check_counts=False)
    ds.image_path(1).unlink()
    with pytest.raises(DatasetNotFoundError, match=re.escape(ds.paths[1])) as info:
        ds[1]
    message = str(info.value)
    assert "cannot be downloaded automatically" in message and "downloads nothing" in message
    assert "fetch it (again)" not in message and "re-fetch" not in message
    assert data_main(["download", "inshop", "--root", str(root)]) == 1  # what the message points to: steps only
    assert ds.image_path(0).is_file() and not ds.image_path(1).exists()


def _inshop_with(root: Path, extra: list[str]) -> None:
    """The fixture's partition file with ``extra`` rows appended and its count line updated."""
    path = root / "Eval" / "list_eval_partition.txt"
    lines = _lines(path)
    rows = lines[2:] + extra
    _write(path, [str(len(rows)), lines[1]] + rows)


def test_inshop_bad_partition_rows(tmp_path: Path) -> None:
    root = make_inshop(tmp_path)
    rows = _lines(root / "Eval" / "list_eval_partition.txt")[2:]
    image = rows[3].split()[0]  # a query image listed again as gallery
    _inshop_with(root, [f"{image} id_00000002 gallery"])
    _fails_untouched(root, "inshop", DuplicateEntryError,
                     rf"lists 1 image\(s\) twice: image {image} on lines 6 and 11")
    make_inshop(root)
    _inshop_with(root, [rows[0].split()[0].replace("00_", "99_") + " id_00000007 train"])
    _fails_untouched(root, "inshop", SplitMismatchError, r"item_id id_00000007 in train \(list_eval_partition.txt "
                     r"line 11\) and in query/gallery \(list_eval_partition.txt line 8\)")
    make_inshop(root)
    _inshop_with(root, ["img/WOMEN/Dresses/id_00000009/00_1_front.jpg id_00000009 val"])
    _fails_untouched(root, "inshop", DatasetError, r"evaluation_status must be one of train, query, gallery.*"
                     r"line 11: 'val'")
