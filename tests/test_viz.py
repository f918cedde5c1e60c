"""mslib.viz.save_figure: stable ids, both file formats, one manifest entry per id."""

from __future__ import annotations

import json
from pathlib import Path

import matplotlib.pyplot as plt
import pytest

from mslib.viz import save_figure


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
    entry = publish(fig, "fig-test-published", params={"b": 3}, out_dir=tmp_path)
    assert (tmp_path / "fig-test-published.pdf").read_bytes().startswith(b"%PDF")
    assert (tmp_path / "fig-test-published.png").read_bytes().startswith(b"\x89PNG")
    manifest = json.loads((tmp_path / "MANIFEST.json").read_text())
    assert manifest == [entry] and entry["id"] == "fig-test-published" and entry["params"] == {"b": 3}
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
