"""Readers of the four benchmarks on fixtures in each archive's exact on-disk format, and the `data` CLI."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from mslib.data import (
    EXPECTED,
    CountMismatchError,
    DatasetError,
    DatasetNotFoundError,
    UnreadableImageError,
    load_dataset,
)
from mslib.data.cli import main as data_main


def _jpeg(path: Path, value: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (12, 10), (value % 256, 40, 200)).save(path, "JPEG")


def make_cub(root: Path) -> Path:
    """CUB_200_2011/{classes,images,image_class_labels}.txt + images/; classes 1,2,3 (train) and 101,102 (test)."""
    base = root / "CUB_200_2011"
    per_class = {1: 3, 2: 2, 3: 1, 101: 2, 102: 3}
    classes, images, labels = [], [], []
    i = 0
    for c, n in per_class.items():
        folder = f"{c:03d}.Bird_{c}"
        classes.append(f"{c} {folder}")
        for j in range(n):
            i += 1
            rel = f"{folder}/Bird_{c}_{j:04d}_{i}.jpg"
            _jpeg(base / "images" / rel, i)
            images.append(f"{i} {rel}")
            labels.append(f"{i} {c}")
    for fname, lines in (("classes.txt", classes), ("images.txt", images), ("image_class_labels.txt", labels)):
        (base / fname).write_text("\n".join(lines) + "\n")
    return root


def make_cars(root: Path) -> Path:
    """cars_annos.mat written with scipy (struct array ``annotations``) + car_ims/; classes 1,2 and 99,196."""
    from scipy.io import savemat

    dtype = [("relative_im_path", "O"), ("bbox_x1", "O"), ("bbox_y1", "O"), ("bbox_x2", "O"), ("bbox_y2", "O"),
             ("class", "O"), ("test", "O")]
    rows = []
    for i, c in enumerate([1, 1, 2, 99, 99, 196, 196, 196], start=1):
        rel = f"car_ims/{i:06d}.jpg"
        _jpeg(root / rel, i)
        rows.append((rel, np.array([[1]], dtype=np.uint8), np.array([[1]], dtype=np.uint8),
                     np.array([[10]], dtype=np.uint8), np.array([[9]], dtype=np.uint8),
                     np.array([[c]], dtype=np.uint8), np.array([[i % 2]], dtype=np.uint8)))
    ann = np.array([rows], dtype=dtype)
    names = np.array([[f"Car {c}" for c in range(1, 197)]], dtype=object)
    savemat(root / "cars_annos.mat", {"annotations": ann, "class_names": names})
    return root


def make_sop(root: Path) -> Path:
    """Stanford_Online_Products/Ebay_{train,test}.txt (header line) + <super>_final/ images."""
    base = root / "Stanford_Online_Products"
    header = "image_id class_id super_class_id path"
    train = [(1, 1, "bicycle"), (2, 1, "bicycle"), (3, 2, "bicycle"), (4, 5, "chair"), (5, 5, "chair")]
    test = [(6, 11319, "chair"), (7, 11319, "chair"), (8, 11320, "sofa"), (9, 22634, "sofa")]
    for fname, rows in (("Ebay_train.txt", train), ("Ebay_test.txt", test)):
        lines = [header]
        for image_id, cls, sup in rows:
            rel = f"{sup}_final/{cls}_{image_id}.JPG"
            _jpeg(base / rel, image_id)
            lines.append(f"{image_id} {cls} {['bicycle', 'chair', 'sofa'].index(sup) + 1} {rel}")
        (base / fname).write_text("\n".join(lines) + "\n")
    return root


def make_inshop(root: Path) -> Path:
    """Eval/list_eval_partition.txt (count line + header) + img/ images."""
    rows = [("id_00000001", "train"), ("id_00000001", "train"), ("id_00000004", "train"),
            ("id_00000002", "query"), ("id_00000002", "gallery"), ("id_00000007", "query"),
            ("id_00000007", "gallery"), ("id_00000007", "gallery")]
    lines = []
    for i, (item, status) in enumerate(rows):
        rel = f"img/WOMEN/Dresses/{item}/{i:02d}_1_front.jpg"
        _jpeg(root / rel, i)
        lines.append(f"{rel} {item} {status}")
    (root / "Eval").mkdir(parents=True, exist_ok=True)
    (root / "Eval" / "list_eval_partition.txt").write_text(
        f"{len(rows)}\nimage_name item_id evaluation_status\n" + "\n".join(lines) + "\n")
    return root


MAKERS = {"cub200": make_cub, "cars196": make_cars, "sop": make_sop, "inshop": make_inshop}
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
