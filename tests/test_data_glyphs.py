"""Glyphs-208: the frozen class list, font availability rules, deterministic cached generation, the split."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from mslib.data import glyphs, load_dataset


@pytest.fixture
def tmp_data(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("MSLIB_DATA_DIR", str(tmp_path))
    return tmp_path


def test_class_list_is_frozen() -> None:
    chars = glyphs.CHARACTERS
    assert len(chars) == 208 and len(set(chars)) == 208
    assert chars[:3] == ("A", "B", "C") and chars[-1] == "●"
    for dropped in "lcosvwxz0ΑΟ∀∩♦○":
        assert dropped not in chars


def test_fonts_are_matplotlibs_23_faces() -> None:
    paths = glyphs.font_paths()
    assert [p.name for p in paths] == list(glyphs.MATPLOTLIB_FACES) and len(paths) == 23
    assert not any("LastResort" in p.name or "Display" in p.name or "cmex" in p.name for p in paths)
    with pytest.raises(ValueError, match="unknown font set"):
        glyphs.font_paths("system")


def test_bakoma_cmaps_are_filtered_by_glyph_name() -> None:
    paths = glyphs.font_paths()
    names = [p.name for p in paths]
    a_faces = {names[i] for i in glyphs.available_faces("a", paths)}
    assert "cmsy10.ttf" not in a_faces  # cmsy10 maps 'a' to turnstileright
    assert "cmmi10.ttf" in a_faces  # math italic keeps the letters
    assert "cmsy10.ttf" in {names[i] for i in glyphs.available_faces("A", paths)}
    counts = {ch: len(glyphs.available_faces(ch, paths)) for ch in "Aa1ℓ∅●"}
    assert counts["A"] == 23 and counts["a"] == 22 and counts["1"] == 21 and counts["ℓ"] == 8
    assert min(counts.values()) >= glyphs.MIN_FACES


def test_generation_is_deterministic_and_cached(tmp_data: Path) -> None:
    X, y, chars = glyphs.generate_glyphs(seed=0, images_per_class=3, classes=["A", "ψ", "⇒"], cache=True)
    assert X.shape == (9, 32, 32) and X.dtype == np.uint8 and y.dtype == np.int64
    assert y.tolist() == [0, 0, 0, 1, 1, 1, 2, 2, 2] and chars == ["A", "ψ", "⇒"]
    files = list((tmp_data / "glyphs").glob("*.npz"))
    assert len(files) == 1
    with np.load(files[0]) as data:
        assert str(data["sha256"]) == glyphs.glyphs_sha256(X) and str(data["recipe"]) == glyphs.RECIPE_VERSION
    X2, _, _ = glyphs.generate_glyphs(seed=0, images_per_class=3, classes=["A", "ψ", "⇒"], cache=False)
    np.testing.assert_array_equal(X, X2)
    X3, _, _ = glyphs.generate_glyphs(seed=1, images_per_class=3, classes=["A", "ψ", "⇒"], cache=False)
    assert not np.array_equal(X, X3)
    # a class's images depend only on (seed, code point), not on which other classes are generated
    Xa, _, _ = glyphs.generate_glyphs(seed=0, images_per_class=3, classes=["⇒"], cache=False)
    np.testing.assert_array_equal(Xa, X[6:])
    assert X.std() > 10 and (X > 128).any()


def test_corrupt_cache_is_regenerated(tmp_data: Path) -> None:
    X, _, _ = glyphs.generate_glyphs(images_per_class=2, classes=2)
    path = glyphs.cache_path(0, 2, 2)
    with np.load(path) as data:
        arrays = dict(data)
    arrays["X"] = arrays["X"].copy()
    arrays["X"][0, 0, 0] ^= 1
    np.savez_compressed(path, **arrays)
    X2, _, _ = glyphs.generate_glyphs(images_per_class=2, classes=2)
    np.testing.assert_array_equal(X, X2)


def test_split_half_and_half() -> None:
    train, test = glyphs.split_classes(208)
    assert len(train) == len(test) == 104 and not set(train) & set(test)
    assert set(train) | set(test) == set(range(208))
    assert np.array_equal(train, np.sort(np.random.default_rng(12345).permutation(208)[:104]))


def test_load_dataset_glyphs(tmp_data: Path) -> None:
    opts = dict(images_per_class=2, classes=10)
    train = load_dataset("glyphs", "train", **opts)
    test = load_dataset("glyphs", "test", **opts)
    assert len(train) == len(test) == 10 and train.num_classes == test.num_classes == 5
    assert not set(train.characters) & set(test.characters)
    x, label = train[0]
    assert isinstance(x, torch.Tensor) and x.shape == (1, 32, 32) and x.dtype == torch.float32
    assert 0.0 <= float(x.min()) and float(x.max()) <= 1.0 and label == 0
    assert train.labels.tolist() == [0, 0, 1, 1, 2, 2, 3, 3, 4, 4]
    tr = load_dataset("glyphs", "train", val_fraction=0.4, seed=1, **opts)
    va = load_dataset("glyphs", "val", val_fraction=0.4, seed=1, **opts)
    assert tr.num_classes == 3 and va.num_classes == 2 and not set(tr.characters) & set(va.characters)
    with pytest.raises(ValueError, match="valid splits: train, val, test"):
        load_dataset("glyphs", "gallery")
    with pytest.raises(ValueError, match="not Glyphs-208 classes"):
        glyphs.generate_glyphs(classes=["l"], cache=False)
