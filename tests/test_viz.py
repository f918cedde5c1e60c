"""mslib.viz: figure ids and files, the embedding map (t-SNE, PCA), the retrieval gallery, the plots."""

from __future__ import annotations

import json
import time
from pathlib import Path

import matplotlib.pyplot as plt
import matplotlib.text
import numpy as np
import pandas as pd
import pytest

from mslib import viz
from mslib.viz import (
    class_subset,
    embedding_2d,
    plot_embedding_2d,
    plot_random_cosines,
    plot_retrieval,
    plot_similarity_panels,
    plot_training,
    plot_with_ci,
    save_figure,
    set_style,
)


def test_writes_pdf_png_and_manifest(tmp_path: Path) -> None:
    fig, ax = plt.subplots()
    ax.plot([0, 1], [1, 0])
    entry = save_figure(fig, "fig-test-demo", params={"a": 1}, out_dir=tmp_path)
    assert (tmp_path / "fig-test-demo.pdf").read_bytes().startswith(b"%PDF")
    assert (tmp_path / "fig-test-demo.png").read_bytes().startswith(b"\x89PNG")
    manifest = json.loads((tmp_path / "MANIFEST.json").read_text())
    assert manifest == [entry] and entry["params"] == {"a": 1} and len(entry["params_hash"]) == 16

    # regenerating replaces the entry; another id is added beside it
    save_figure(fig, "fig-test-demo", params={"a": 2}, out_dir=tmp_path)
    save_figure(fig, "fig-test-other", params={}, out_dir=tmp_path)
    manifest = json.loads((tmp_path / "MANIFEST.json").read_text())
    assert [e["id"] for e in manifest] == ["fig-test-demo", "fig-test-other"]
    assert manifest[0]["params"] == {"a": 2} and manifest[0]["params_hash"] != entry["params_hash"]
    plt.close(fig)


@pytest.mark.parametrize("bad", ["setup-plot", "fig-Setup-plot", "fig_setup_plot", "fig-setup", "fig-a b"])
def test_rejects_ids_that_are_not_stable_labels(tmp_path: Path, bad: str) -> None:
    fig = plt.figure()
    with pytest.raises(ValueError, match="fig-<chapter>-<slug>"):
        save_figure(fig, bad, out_dir=tmp_path)
    plt.close(fig)


def test_similarity_panels_draw_every_group_and_threshold() -> None:
    from mslib.viz import plot_similarity_panels

    panels = {"a": {"x": [0.1, 0.2, 0.3], "y": [0.9, 0.95]}, "b": {"z": [-0.5, 0.0]}}
    fig = plot_similarity_panels(panels, {"λ": 0.5})
    ax_a, ax_b = fig.axes
    assert [t.get_text() for t in ax_a.get_legend().get_texts()] == ["x", "y"]
    assert len(ax_a.patches) == 2 * 80 and len(ax_b.patches) == 80  # one bar per bin and group
    assert [line.get_xdata()[0] for line in ax_b.lines] == [0.5]
    plt.close(fig)
    with pytest.raises(ValueError, match="at least one group"):
        plot_similarity_panels({"a": {}})


def _recording_glue(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, object, bool]]:
    import mslib.viz

    calls: list[tuple[str, object, bool]] = []
    monkeypatch.setattr(mslib.viz, "glue", lambda name, value, display=True: calls.append((name, value, display)))
    return calls


def test_publish_saves_glues_and_closes_under_one_id(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from mslib.viz import publish

    glued = _recording_glue(monkeypatch)
    fig, ax = plt.subplots()
    ax.plot([0, 1], [0, 1])
    assert publish(fig, "fig-test-published", params={"b": 3}, out_dir=tmp_path) is None  # a cell shows nothing
    assert (tmp_path / "fig-test-published.pdf").read_bytes().startswith(b"%PDF")
    assert (tmp_path / "fig-test-published.png").read_bytes().startswith(b"\x89PNG")
    manifest = json.loads((tmp_path / "MANIFEST.json").read_text())
    assert [(e["id"], e["params"]) for e in manifest] == [("fig-test-published", {"b": 3})]
    assert glued == [("fig-test-published", fig, False)]  # glued once, under the id, not displayed
    assert not plt.fignum_exists(fig.number), "publish must close the figure"


def test_publish_rejects_a_bad_id_and_still_closes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from mslib.viz import publish

    glued = _recording_glue(monkeypatch)
    fig = plt.figure()
    with pytest.raises(ValueError, match="fig-<chapter>-<slug>"):
        publish(fig, "fig_bad_id", out_dir=tmp_path)
    assert glued == [] and list(tmp_path.iterdir()) == []  # nothing glued, nothing written
    assert not plt.fignum_exists(fig.number)


def test_random_cosines_one_panel_per_dimension_with_its_normal_density() -> None:
    import numpy as np

    from mslib.viz import plot_random_cosines

    fig = plot_random_cosines({2: np.array([-0.5, 0.1, 0.7]), 64: np.array([0.0, 0.05])})
    assert [ax.get_title() for ax in fig.axes] == ["d = 2", "d = 64"]
    for ax, d in zip(fig.axes, (2, 64), strict=True):
        assert len(ax.patches) == 60  # the histogram's bins
        (curve,) = ax.lines
        centre = np.argmin(np.abs(curve.get_xdata()))
        assert curve.get_ydata()[centre] == pytest.approx(np.sqrt(d / (2 * np.pi)), rel=1e-3)  # N(0, 1/d) near 0
    plt.close(fig)
    with pytest.raises(ValueError, match="no dimensions"):
        plot_random_cosines({})


def _clusters(n_classes: int = 4, per_class: int = 15, dim: int = 16, seed: int = 0):
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(n_classes, dim)) * 5
    emb = np.repeat(centres, per_class, axis=0) + rng.normal(size=(n_classes * per_class, dim))
    return emb, np.repeat(np.arange(n_classes), per_class)


def test_tsne_map_is_deterministic_for_a_seed_and_keeps_clusters_apart() -> None:
    emb, labels = _clusters()
    xy = embedding_2d(emb, "tsne", seed=3, perplexity=10.0)
    assert xy.shape == (60, 2) and np.isfinite(xy).all()
    np.testing.assert_array_equal(xy, embedding_2d(emb, "tsne", seed=3, perplexity=10.0))
    assert not np.allclose(xy, embedding_2d(emb, "tsne", seed=3, perplexity=20.0))
    # well-separated classes: every point's nearest point in the map is of its own class
    dist = np.linalg.norm(xy[:, None] - xy[None], axis=-1) + np.diag(np.full(60, np.inf))
    assert (labels[dist.argmin(axis=1)] == labels).all()


def test_pca_map_matches_an_independent_svd_up_to_sign() -> None:
    from sklearn.decomposition import PCA

    emb, _ = _clusters(seed=1)
    xy = embedding_2d(emb, "pca")
    ref = PCA(n_components=2).fit_transform(emb)
    np.testing.assert_allclose(np.abs(xy), np.abs(ref), atol=1e-8)


@pytest.mark.parametrize(
    ("args", "kwargs", "match"),
    [((np.zeros((5, 3)), "umap"), {}, "method must be"),
     ((np.zeros((5, 3)), "pca"), {"perplexity": 2.0}, "PCA takes no parameters"),
     ((np.zeros((5, 3)), "tsne"), {"perplexity": 30.0}, "perplexity 30.0 must be below the 5 points"),
     ((np.zeros(5),), {}, "shape")],
)
def test_embedding_2d_rejects_bad_input(args, kwargs, match) -> None:
    with pytest.raises(ValueError, match=match):
        embedding_2d(*args, **kwargs)


def test_class_subset_keeps_whole_classes_drawn_with_the_seed() -> None:
    labels = np.array([3, 1, 4, 1, 5, 9, 2, 6, 5, 3, 5])
    keep = class_subset(labels, 3, seed=4)
    chosen = np.random.default_rng(4).choice(np.unique(labels), size=3, replace=False)
    assert keep.tolist() == [lab in set(chosen.tolist()) for lab in labels]
    assert class_subset(labels, 50, seed=0).all()


def test_retrieval_figure_titles_give_rank_similarity_and_correctness() -> None:
    labels = np.array([0, 0, 1, 1])
    fig = plot_retrieval(lambda i: np.full((4, 4), i / 4), labels, [0, 2], [[1, 2], [0, 3]],
                         similarities=[[0.9, 0.5], [0.4, 0.8]])
    titles = [[ax.get_title() for ax in row] for row in np.asarray(fig.axes).reshape(2, 3)]
    assert titles == [["query", "1: 0.90 ✓", "2: 0.50 ✗"], ["query", "1: 0.40 ✗", "2: 0.80 ✓"]]
    assert fig.axes[1].spines["top"].get_edgecolor() != fig.axes[2].spines["top"].get_edgecolor()
    plt.close(fig)


def _figures_at_book_size() -> dict[str, object]:
    """One figure from each plotting function that makes its own, with the book's style and typical inputs."""
    set_style()
    rng = np.random.default_rng(0)
    emb, labels = _clusters(n_classes=10, per_class=8)
    history = {"history": [{"iteration": i, "loss": 1 / (i + 1)} for i in range(5)],
               "evals": [{"iteration": i, "val": {"R@1": 0.1 * i}} for i in range(0, 5, 2)]}
    summary = pd.DataFrame({"R@1": [50.0, 60.0], "R@1 ci": [2.0, 3.0]}, index=["a long loss name", "b"])
    return {
        "random cosines": plot_random_cosines({d: rng.normal(size=50) / np.sqrt(d) for d in (2, 16, 64, 512)}),
        "training": plot_training(history),
        "embedding": plot_embedding_2d(emb, labels, seed=0, perplexity=10.0),
        "retrieval": plot_retrieval(lambda i: np.zeros((4, 4)), np.arange(8) % 2, np.arange(8),
                                    np.tile(np.arange(5), (8, 1)), np.full((8, 5), 0.5)),
        "with ci": plot_with_ci(summary),
        "similarity panels": plot_similarity_panels({"a": {"x": [0.1]}, "b": {"y": [0.2]}}, {"λ": 0.5}),
    }


def test_figures_fit_the_column_with_readable_text() -> None:
    """At most ~8 in wide (the book's column) and no text under 8 pt at that size."""
    for name, fig in _figures_at_book_size().items():
        assert fig.get_figwidth() <= 8.0, f"{name}: {fig.get_figwidth():.1f} in wide, more than the column"
        sizes = [t.get_fontsize() for t in fig.findobj(matplotlib.text.Text) if t.get_text() and t.get_visible()]
        assert sizes and min(sizes) >= 8, f"{name}: text of {min(sizes)} pt, below 8 pt"
        plt.close(fig)


def test_glue_page_seconds_glues_the_time_since_import(monkeypatch) -> None:
    """The page cost is the wall time since ``mslib.viz`` was imported: positive, and growing between two calls."""
    glued = []
    monkeypatch.setattr(viz, "glue", lambda key, value, display: glued.append((key, value, display)))
    viz.glue_page_seconds("a-page-seconds")
    time.sleep(0.05)
    viz.glue_page_seconds("a-page-seconds")
    (k1, v1, d1), (_, v2, _) = glued
    assert k1 == "a-page-seconds" and d1 is False
    assert 0 < v1 and v2 - v1 >= 0.05


def test_a_second_line_series_on_the_same_axes_is_in_view() -> None:
    """Two plot_with_ci calls on one axes (09's memory figure): the second series' top, error bar included, must
    not fall outside the limits the first call set."""
    import pandas as pd

    from mslib.viz import plot_with_ci

    low = pd.DataFrame({"R@1": [87.1, 84.7], "R@1 ci": [0.7, 4.9]}, index=[0, 1600])
    high = pd.DataFrame({"R@1": [89.1, 90.6], "R@1 ci": [0.3, 0.7]}, index=[0, 1600])
    fig, ax = plt.subplots()
    plot_with_ci(low, "R@1", ax=ax, kind="line")
    plot_with_ci(high, "R@1", ax=ax, kind="line")
    bottom, top = ax.get_ylim()
    assert top >= 90.6 + 0.7 and bottom <= 84.7 - 4.9, (bottom, top)
    plt.close(fig)


def test_learning_curves_shade_the_last_quarter_of_each_run_length():
    curves = {"short": [[(0, 0.1), (500, 0.2), (1000, 0.3)]] * 2,
              "long": [[(0, 0.1), (1000, 0.2), (2000, 0.4)], [(0, 0.3), (1000, 0.4), (2000, 0.6)]]}
    fig, ax = plt.subplots()
    viz.plot_learning_curves(ax, curves, fraction=0.25, metric="MAP@R")
    spans = sorted((p.get_x(), p.get_x() + p.get_width()) for p in ax.patches)
    assert spans == [(750.0, 1000.0), (1500.0, 2000.0)]
    np.testing.assert_allclose(ax.lines[1].get_ydata(), [20.0, 30.0, 50.0])  # the mean over seeds, in percent
    plt.close(fig)
