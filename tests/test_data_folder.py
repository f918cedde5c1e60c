"""The ``folder`` dataset (your own images): the class-folder tree, the CSV form, and every bad input it names."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

from mslib.cli import data_main
from mslib.data import (
    DatasetError,
    DatasetNotFoundError,
    DuplicateEntryError,
    SplitMismatchError,
    UnreadableImageError,
    load_dataset,
    load_run_splits,
    verify_dataset,
)
from mslib.data.fixtures import make_folder_dataset


def _snapshot(root: Path) -> dict[Path, tuple[bytes, int]]:
    return {p: (p.read_bytes(), p.stat().st_mtime_ns) for p in sorted(root.rglob("*")) if p.is_file()}


def _fails(root: Path, error: type[Exception], match: str, **options) -> None:
    """Loading ``train`` of ``root`` raises ``error`` matching ``match``, and no file under ``root`` changed."""
    base = root if root.is_dir() else root.parent
    before = _snapshot(base)
    with pytest.raises(error, match=match):
        load_dataset("folder", "train", root=root, **options)
    assert _snapshot(base) == before


def _csv(path: Path, rows: list[str]) -> Path:
    path.write_text("path,label,split\n" + "\n".join(rows) + "\n")
    return path


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    return make_folder_dataset(tmp_path / "ds", classes=6, per_class=4, seed=1)


def test_tree_split_is_the_documented_seeded_class_disjoint_half(tree: Path) -> None:
    names = sorted(p.name for p in tree.iterdir())
    for split_seed in (0, 5):
        order = np.random.default_rng(split_seed).permutation(len(names))
        want_train = sorted(names[i] for i in order[:3])  # ⌈6/2⌉ train classes
        train = load_dataset("folder", "train", root=tree, split_seed=split_seed)
        test = load_dataset("folder", "test", root=tree, split_seed=split_seed)
        assert sorted(train.class_names) == want_train
        assert sorted(test.class_names) == sorted(set(names) - set(want_train))
        assert (len(train), train.num_classes, len(test), test.num_classes) == (12, 3, 12, 3)
        folders = [Path(p).parts[0] for p in train.paths]
        assert folders == [train.class_names[label] for label in train.labels]
    odd = make_folder_dataset(tree.parent / "odd", classes=5, per_class=2)
    assert load_dataset("folder", "train", root=odd).num_classes == 3  # ⌈5/2⌉
    img, label = train[0]
    assert img.mode == "RGB" and label == train.labels[0]
    assert {p.suffix for p in tree.rglob("*.*")} == {".png", ".jpg"}


def test_val_split_carves_training_classes(tree: Path) -> None:
    kw = dict(root=tree, val_fraction=0.34, seed=2)
    train, val = load_dataset("folder", "train", **kw), load_dataset("folder", "val", **kw)
    assert train.num_classes == 2 and val.num_classes == 1 and not set(train.class_names) & set(val.class_names)


def test_csv_form_relative_paths_query_gallery_and_the_three_ways_to_name_it(tmp_path: Path) -> None:
    images = make_folder_dataset(tmp_path / "imgs", classes=4, per_class=3)
    rows = [f"imgs/class_00/img_0{i}.{'jpg' if i % 2 else 'png'},cat,train" for i in range(3)]
    rows += [f"imgs/class_01/img_0{i}.{'jpg' if i % 2 else 'png'},dog,train" for i in range(3)]
    rows += ["imgs/class_02/img_00.png,owl,query", "imgs/class_02/img_01.jpg,owl,gallery",
             "imgs/class_02/img_02.png,owl,gallery", "imgs/class_03/img_00.png,eel,query",
             "imgs/class_03/img_01.jpg,eel,gallery"]
    table = _csv(tmp_path / "labels.csv", rows)
    assert images.parent == table.parent
    query = load_dataset("folder", "query", root=table)
    gallery = load_dataset("folder", "gallery", root=tmp_path, csv="labels.csv")
    assert query.paths == ["imgs/class_02/img_00.png", "imgs/class_03/img_00.png"]
    assert query.labels.tolist() == [1, 0] and gallery.labels.tolist() == [1, 1, 0]  # one mapping: eel 0, owl 1
    assert query.image_path(0) == tmp_path / "imgs/class_02/img_00.png" and query[0][0].mode == "RGB"
    train = load_dataset("folder", "train", root=table)
    assert train.class_names == ["cat", "dog"] and len(train) == 6
    sets = load_run_splits("folder", root=table, backbone="resnet50", image_size=16, k=3)
    assert sorted(sets) == ["gallery", "query", "train"] and tuple(sets["query"][0][0].shape) == (3, 16, 16)
    (tmp_path / "splits.csv").write_text(table.read_text())  # root/splits.csv is found by itself
    assert load_dataset("folder", "query", root=tmp_path).paths == query.paths
    assert verify_dataset("folder", table) == {"train": {"images": 6, "classes": 2},
                                               "query": {"images": 2, "classes": 2},
                                               "gallery": {"images": 3, "classes": 2}}
    with pytest.raises(DatasetNotFoundError, match=re.escape(str(tmp_path / "other.csv"))):
        load_dataset("folder", "train", root=tmp_path, csv="other.csv")


def test_csv_train_test_and_the_query_split_it_lacks(tmp_path: Path) -> None:
    make_folder_dataset(tmp_path, classes=4, per_class=2)
    rows = [f"class_0{c}/img_0{i}.{'jpg' if i else 'png'},c{c},{'train' if c < 2 else 'test'}"
            for c in range(4) for i in range(2)]
    table = _csv(tmp_path / "splits.csv", rows)
    assert len(load_dataset("folder", "test", root=tmp_path)) == 4
    with pytest.raises(ValueError, match="split 'query' is not in this copy"):
        load_dataset("folder", "query", root=table)


# -- bad inputs: each error names the file, the line or the folder; reading never writes ---------------------------

def test_empty_class_folder(tree: Path) -> None:
    (tree / "zebra").mkdir()
    _fails(tree, DatasetError, re.escape(f"1 empty class folder(s), holding no image: {tree / 'zebra'}"))


def test_class_with_one_image(tree: Path) -> None:
    for extra in sorted((tree / "class_03").iterdir())[1:]:
        extra.unlink()
    _fails(tree, DatasetError, re.escape(f"'class_03' ({tree / 'class_03'})") + r"; a class needs at least 2")


def test_unknown_extension_is_an_error_not_skipped(tree: Path) -> None:
    (tree / "class_01" / "notes.txt").write_text("x")
    (tree / "class_02" / "sub").mkdir()
    (tree / "class_02" / "sub" / "photo.heic").write_bytes(b"x")
    (tree / "class_02" / ".DS_Store").write_bytes(b"x")  # hidden files are ignored
    _fails(tree, DatasetError, r"2 file\(s\) that are not images .*"
           + re.escape(f"{tree / 'class_01' / 'notes.txt'}; {tree / 'class_02' / 'sub' / 'photo.heic'}"))
    (tree / "class_01" / "notes.txt").unlink()
    (tree / "class_02" / "sub" / "photo.heic").rename(tree / "class_02" / "sub" / "photo.png")  # a nested image
    assert "class_02/sub/photo.png" in (load_dataset("folder", "train", root=tree).paths
                                        + load_dataset("folder", "test", root=tree).paths)


def test_unreadable_image_is_named(tree: Path) -> None:
    ds = load_dataset("folder", "train", root=tree)
    bad = ds.image_path(1)
    bad.write_bytes(b"not a png")
    with pytest.raises(UnreadableImageError, match=re.escape(str(bad))):
        ds[1]
    with pytest.raises(UnreadableImageError, match=r"1 image\(s\) cannot be decoded: " + re.escape(str(bad))):
        verify_dataset("folder", tree)


def test_image_outside_class_folders_and_no_classes(tmp_path: Path, tree: Path) -> None:
    (tree / "README.md").write_text("my images")  # other files beside the class folders are not read
    assert load_dataset("folder", "train", root=tree).num_classes == 3
    (tree / "stray.jpg").write_bytes((tree / "class_00" / "img_01.jpg").read_bytes())
    _fails(tree, DatasetError, re.escape(f"1 image(s) directly in {tree}, in no class folder: {tree / 'stray.jpg'}"))
    (tmp_path / "empty").mkdir()
    _fails(tmp_path / "empty", DatasetNotFoundError, "no class folders in")


def test_too_few_classes_for_the_half_split(tmp_path: Path) -> None:
    root = make_folder_dataset(tmp_path, classes=3, per_class=2)
    _fails(root, DatasetError, r"holds 3 class folder\(s\) \(class_00, class_01, class_02\); the class-disjoint half "
           r"split needs at least 4")


def test_csv_duplicate_path_and_image_in_two_splits(tree: Path) -> None:
    rows = [f"class_0{c}/img_00.png,c{c},train" for c in range(2)] + [f"class_0{c}/img_02.png,c{c},train"
                                                                       for c in range(2)]
    rows += [f"class_0{c}/img_00.png,c{c},test" for c in (2, 3)] + [f"class_0{c}/img_02.png,c{c},test" for c in (2, 3)]
    table = _csv(tree / "splits.csv", rows + ["class_00/./img_00.png,c0,train"])
    _fails(tree, DuplicateEntryError, re.escape(f"{table} lists 1 image(s) twice: class_00/./img_00.png on "
                                                "splits.csv line 2 and 10. Each"))
    _csv(table, rows + ["class_02/img_02.png,c9,train"])
    _fails(tree, DuplicateEntryError, re.escape("class_02/img_02.png on splits.csv line 8 and 10 (in test and in "
                                                "train: an image in two splits)"))


def test_csv_label_in_train_and_test(tree: Path) -> None:
    rows = [f"class_0{c}/img_0{i}.{'jpg' if i % 2 else 'png'},c{c},train" for c in range(2) for i in range(2)]
    rows += [f"class_0{c}/img_0{i}.{'jpg' if i % 2 else 'png'},c{c},test" for c in (2, 3) for i in range(2)]
    _csv(tree / "splits.csv", rows + ["class_04/img_00.png,c1,test"])
    _fails(tree, SplitMismatchError, r"1 label\(s\) in train and in an evaluation split .*label 'c1' in train "
           r"\(splits.csv line 4\) and in test \(splits.csv line 10\)\..*class-disjoint")


def test_csv_missing_file_bad_rows_and_header(tree: Path) -> None:
    rows = [f"class_0{c}/img_0{i}.{'jpg' if i % 2 else 'png'},c{c},{'train' if c < 2 else 'test'}"
            for c in range(4) for i in range(2)]
    table = _csv(tree / "splits.csv", rows + ["class_05/gone.png,c3,test"])
    _fails(tree, DatasetNotFoundError, re.escape(f"{table} lists 1 file(s) that do not exist (paths are relative to "
                                                 f"{tree}): splits.csv line 10: class_05/gone.png"))
    _csv(table, rows + ["class_04/img_00.png,c3,validation", "class_04/img_01.jpg,c3"])
    _fails(tree, DatasetError, r"2 bad row\(s\): line 10: .*split 'validation'.*; line 11 has 2 field\(s\)")
    table.write_text("file,class,split\nclass_00/img_00.png,a,train\n")
    _fails(tree, DatasetError, re.escape(f"{table} line 1 must be a header holding the columns path,label,split"))
    _csv(table, rows + ["class_04/img_00.txt,c3,test"])
    (tree / "class_04" / "img_00.txt").write_text("x")
    _fails(tree, DatasetError, r"1 file\(s\) that are not images .*class_04/img_00.txt \(splits.csv line 10\)")


def test_csv_one_class_in_a_split_and_lonely_queries(tree: Path) -> None:
    train = [f"class_0{c}/img_0{i}.{'jpg' if i % 2 else 'png'},c{c},train" for c in range(2) for i in range(2)]
    _csv(tree / "splits.csv", train + ["class_02/img_00.png,c2,test", "class_02/img_01.jpg,c2,test"])
    _fails(tree, DatasetError, r"the test split of .*splits.csv has only 1 class \(c2\); retrieval needs at least 2")
    _csv(tree / "splits.csv", train + ["class_02/img_00.png,c2,query", "class_02/img_01.jpg,c2,gallery",
                                       "class_03/img_00.png,c3,query", "class_04/img_00.png,c4,gallery"])
    _fails(tree, SplitMismatchError, r"1 query label\(s\) with no gallery image: c3")
    _csv(tree / "splits.csv", train + ["class_02/img_00.png,c2,query", "class_02/img_01.jpg,c2,test"])
    _fails(tree, DatasetError, "the evaluation is either test, or query and gallery")


def test_fewer_than_k_images_names_class_and_folder(tree: Path) -> None:
    with pytest.raises(DatasetError) as info:
        load_run_splits("folder", root=tree, k=5)
    message = str(info.value)
    train = load_dataset("folder", "train", root=tree)
    assert "3 class(es) with fewer than k=5 images" in message
    for name in train.class_names:
        assert f"class {name!r} has 4 (in {tree / name})" in message
    assert sorted(load_run_splits("folder", root=tree, k=4)) == ["test", "train"]


def test_cli_verify_and_download_folder(tree: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert data_main(["verify", "folder", "--root", str(tree)]) == 0
    out = capsys.readouterr().out
    assert "folder train: 12 images, 3 classes" in out and "folder: OK" in out
    assert data_main(["verify", "folder", "--root", str(tree), "--option", "split_seed=3"]) == 0
    assert data_main(["verify", "folder", "--root", str(tree), "--option", "colour=red"]) == 1
    assert "unexpected options for folder: colour; folder takes csv, split_seed" in capsys.readouterr().err
    assert data_main(["verify", "folder"]) == 1
    assert "no dataset root given" in capsys.readouterr().err
    assert data_main(["download", "folder"]) == 0
    assert "nothing to download" in capsys.readouterr().out


def test_photos_of_any_size_batch_for_every_backbone(tmp_path: Path) -> None:
    """The small CNN reads 32×32 gray tensors: photos are resized and centre-cropped to it first."""
    from PIL import Image
    from torch.utils.data import DataLoader

    rng = np.random.default_rng(0)
    for c in range(4):
        for i, (w, h) in enumerate([(40, 30), (23, 61), (64, 64)]):
            (tmp_path / f"c{c}").mkdir(exist_ok=True)
            Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)).save(tmp_path / f"c{c}" / f"{i}.png")
    for backbone, shape in (("smallcnn", (3, 1, 32, 32)), ("resnet50", (3, 3, 24, 24))):
        sets = load_run_splits("folder", root=tmp_path, backbone=backbone, image_size=24, k=3)
        for split in ("train", "test"):
            images, _ = next(iter(DataLoader(sets[split], batch_size=3)))
            assert tuple(images.shape) == shape
