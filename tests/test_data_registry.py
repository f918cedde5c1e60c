"""The dataset registry: every row complete, loading and verifying through it, a new dataset as one row."""

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
    DatasetSpec,
    dataset_spec,
    load_dataset,
    load_run_splits,
    verify_dataset,
)
from mslib.data.folder import read_folder
from mslib.data.loading import make_fixture

ROOT = Path(__file__).resolve().parent.parent
FILE_ROWS = [name for name, spec in DATASETS.items() if spec.reader is not None]


def test_every_row_is_complete() -> None:
    assert list(DATASETS) == ["glyphs", "cub200", "cars196", "sop", "inshop", "folder", "omniglot"]
    bib = (ROOT / "book" / "references.bib").read_text(encoding="utf-8")
    for name, spec in DATASETS.items():
        assert spec.name == name and spec.title and {"train", "val", "test"} <= set(spec.splits)
        assert (spec.reader is None) != (spec.loader is None)
        assert spec.manual or spec.download, name
        assert all(remote.md5 or remote.sha256 for remote in spec.download), name
        if spec.origin in ("generated", "own"):
            assert spec.default_root is None, name
        if spec.reader is not None and spec.origin in ("download", "manual"):
            assert spec.default_root is not None, f"{name}: a fetched files dataset needs its folder under data/"
        if spec.citation is not None:
            assert re.search(rf"@\w+\{{{re.escape(spec.citation)},", bib), spec.citation
        if spec.paper:
            assert spec.citation and spec.expected and spec.fixture and spec.reader, name
            assert set(spec.expected) == set(spec.verify_splits), name
        if spec.reader is not None:
            assert spec.fixture is not None, f"{name}: a files reader needs a miniature fixture for the tests"
    assert [n for n, s in DATASETS.items() if s.query_gallery] == ["inshop"]
    assert [n for n, s in DATASETS.items() if s.gray] == ["glyphs", "omniglot"]
    assert [n for n, s in DATASETS.items() if not s.pad_to_k] == ["folder"]


def test_a_row_missing_a_field_is_refused() -> None:
    spec = DATASETS["cub200"]
    for change, need in ((dict(reader=None), "exactly one of reader and loader"),
                         (dict(download=()), "download files exactly when origin is 'download'"),
                         (dict(splits=("train", "val")), "splits holding train, test"),
                         (dict(origin="stolen"), "origin one of generated, download, manual, own"),
                         (dict(query_gallery=True), "query and gallery splits")):
        with pytest.raises(ValueError, match=re.escape(need)):
            dataclasses.replace(spec, **change)
    with pytest.raises(TypeError):  # frozen
        spec.expected["train"] = (1, 1)


def test_unknown_name_lists_the_valid_ones(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(ValueError, match=re.escape("unknown dataset 'mnist'; valid names: " + ", ".join(DATASETS))):
        dataset_spec("mnist")
    assert data_main(["verify", "mnist"]) == 1 and "valid names: glyphs," in capsys.readouterr().err


@pytest.mark.parametrize("name", FILE_ROWS)
def test_verify_and_load_each_fixture_through_the_registry(tmp_path: Path, name: str) -> None:
    spec = DATASETS[name]
    root = make_fixture(name, tmp_path / name)
    records, _ = spec.reader(root)  # the reader itself: the reference for what verify and load report
    summary = verify_dataset(name, root, check_counts=False)
    assert tuple(summary) == spec.verify_splits
    for split in spec.verify_splits:
        paths, raw = records[split]
        assert summary[split] == {"images": len(paths), "classes": len(np.unique(raw))}
        ds = load_dataset(name, split, root=root, check_counts=False)
        assert ds.paths == list(paths) and ds[0][0].mode == "RGB"


@pytest.mark.parametrize("name", FILE_ROWS)
def test_run_splits_are_the_loaded_splits(tmp_path: Path, name: str) -> None:
    root = make_fixture(name, tmp_path / name)
    sets = load_run_splits(name, root=root, val_fraction=0.34, seed=1, backbone="resnet50", image_size=16,
                           check_counts=False)
    tests = ["query", "gallery"] if DATASETS[name].query_gallery else ["test"]
    assert sorted(sets) == sorted(["train", "val", *tests])
    for split, ds in sets.items():
        ref = load_dataset(name, split, root=root, val_fraction=0.34, seed=1, check_counts=False)
        assert ds.paths == ref.paths and ds.labels.tolist() == ref.labels.tolist()
        assert tuple(ds[0][0].shape) == (3, 16, 16)
    if DATASETS[name].expected:  # the trainer checks the published counts unless its dataset_options say not
        with pytest.raises(CountMismatchError, match="expected"):
            load_run_splits(name, root=root)
        unchecked = load_run_splits(name, root=root, options={"check_counts": False})
        assert len(unchecked["train"]) == len(sets["train"]) + len(sets["val"])


def test_run_splits_of_the_glyphs_and_the_trainers_datasets() -> None:
    from mslib.run.config import TrainConfig
    from mslib.run.trainer import datasets

    options = {"classes": 8, "images_per_class": 3, "cache": False}
    gray = load_run_splits("glyphs", options=options, backbone="smallcnn")
    assert sorted(gray) == ["test", "train"] and tuple(gray["test"][0][0].shape) == (1, 32, 32)
    up = load_run_splits("glyphs", options=options, val_fraction=0.25, backbone="resnet50", image_size=20)
    assert sorted(up) == ["test", "train", "val"] and tuple(up["val"][0][0].shape) == (3, 20, 20)
    ref = load_dataset("glyphs", "val", val_fraction=0.25, **options)
    assert up["val"].labels.tolist() == ref.labels.tolist() and np.array_equal(up["val"].images, ref.images)
    cfg = TrainConfig(dataset="glyphs", dataset_options=options, val_fraction=0.25, backbone="resnet50", image_size=20)
    sets = datasets(cfg)
    assert sorted(sets) == sorted(up) and all(np.array_equal(sets[s].images, up[s].images) for s in sets)
    with pytest.raises(TypeError, match="unexpected options for glyphs: csv; glyphs takes glyph_seed"):
        load_run_splits("glyphs", options={"csv": "x.csv"})


def test_trainer_reads_a_folder_root_and_csv_option(tmp_path: Path) -> None:
    from mslib.run.config import TrainConfig
    from mslib.run.trainer import datasets

    make_fixture("folder", tmp_path, classes=4, per_class=5)
    rows = [f"class_0{c}/img_0{i}.{'jpg' if i % 2 else 'png'},c{c},{'train' if c % 2 else 'test'}"
            for c in range(4) for i in range(5)]
    (tmp_path / "mine.csv").write_text("path,label,split\n" + "\n".join(rows) + "\n")
    cfg = TrainConfig(dataset="folder", data_root=str(tmp_path), dataset_options={"csv": "mine.csv"}, k=5)
    sets = datasets(cfg)
    assert sets["train"].class_names == ["c1", "c3"] and sets["test"].class_names == ["c0", "c2"]
    with pytest.raises(Exception, match="fewer than k=6"):
        datasets(dataclasses.replace(cfg, k=6))


def test_a_new_dataset_is_one_row(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                  capsys: pytest.CaptureFixture[str]) -> None:
    def read_toy(root: Path) -> tuple[dict, Path]:
        return read_folder(root / "images")

    row = DatasetSpec("toy", "A toy", ("train", "val", "test"), None, "manual", reader=read_toy,
                      manual="copy the toy images to {root}/images", default_root="toy",
                      fixture=lambda root: make_fixture("folder", root / "images").parent)
    monkeypatch.setitem(DATASETS, "toy", row)
    root = make_fixture("toy", tmp_path)
    assert verify_dataset("toy", root)["train"]["classes"] == 4
    assert len(load_dataset("toy", "test", root=root)) == 24
    assert data_main(["download", "toy", "--root", str(tmp_path)]) == 1
    assert f"copy the toy images to {tmp_path}/images" in capsys.readouterr().err
    assert data_main(["list"]) == 0 and "toy      absent" in capsys.readouterr().out


def test_tables_and_estimates_read_the_registry() -> None:
    from mslib.data.plots import split_table
    from mslib.reproduce import evaluation_images

    table = split_table()
    assert sorted({d for d, _ in table.index}) == sorted(n for n, s in DATASETS.items() if s.expected)
    assert table.loc[("inshop", "query"), "images"] == DATASETS["inshop"].expected["query"][0]
    assert split_table({"train": (7, 2), "test": (9, 3)}).loc[("glyphs", "test"), "images"] == 9
    assert evaluation_images("inshop") == 14218 + 12612 and evaluation_images("cub200") == 5924
    with pytest.raises(ValueError, match="no published split sizes for dataset 'folder'"):
        evaluation_images("folder")


def test_no_dataset_name_branches_in_the_package() -> None:
    names = "|".join(DATASETS)
    pattern = re.compile(rf'[=!]= "({names})"|"({names})" (not )?in\b')
    hits = [f"{p.relative_to(ROOT)}:{n}" for p in sorted((ROOT / "mslib").rglob("*.py"))
            for n, line in enumerate(p.read_text(encoding="utf-8").splitlines(), 1) if pattern.search(line)]
    assert hits == []


def test_a_readers_error_gets_its_rows_advice_once_in_read_records(tmp_path: Path) -> None:
    """The readers never read the registry: their errors name the file; ``read_records`` appends the row's advice."""
    from mslib.data.datasets import read_cub200
    from mslib.data.errors import DatasetNotFoundError
    from mslib.data.loading import read_records
    from mslib.data.registry import fetch_advice

    root = make_fixture("cub200", tmp_path / "cub200")
    (root / "CUB_200_2011" / "image_class_labels.txt").unlink()
    with pytest.raises(DatasetNotFoundError, match=r"image_class_labels\.txt not found$") as direct:
        read_cub200(root)
    with pytest.raises(DatasetNotFoundError) as loaded:
        read_records("cub200", root)
    assert str(loaded.value) == f"{direct.value}; {fetch_advice('cub200')}"
    assert str(loaded.value).count("python -m mslib data download cub200") == 1
