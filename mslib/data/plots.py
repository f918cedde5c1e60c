"""Figures and tables of the data chapter (the notebook only calls these)."""

from __future__ import annotations

from collections.abc import Sequence

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from mslib.data.registry import DATASETS, DatasetSpec


def glyph_montage(X: np.ndarray, y: np.ndarray, chars: Sequence[str], *, per_class: int = 1, columns: int = 16,
                  classes: Sequence[int] | None = None, title: bool = True) -> plt.Figure:
    """A grid of 32×32 tiles drawn as one image: one tile per class (``per_class=1``, ``columns`` per row, the
    character above each tile), or one row per class with its first ``per_class`` renderings."""
    classes = list(range(len(chars))) if classes is None else list(classes)
    size, gap = X.shape[-1], 2
    if per_class == 1:
        cols, rows = columns, int(np.ceil(len(classes) / columns))
        cells = [(n // cols, n % cols, np.flatnonzero(y == c)[0], c) for n, c in enumerate(classes)]
        label_h = 12 if title else 0
    else:
        cols, rows = per_class, len(classes)
        cells = [(n, j, i, c) for n, c in enumerate(classes) for j, i in enumerate(np.flatnonzero(y == c)[:per_class])]
        label_h = 0
    step_y, step_x = size + gap + label_h, size + gap
    canvas = np.full((rows * step_y, cols * step_x), 255, dtype=np.uint8)
    for r, col, i, _ in cells:
        canvas[r * step_y + label_h : r * step_y + label_h + size, col * step_x : col * step_x + size] = X[i]
    scale = 0.018
    labels_in = max(0.4, 0.09 * max(len(chars[c]) for c in classes)) if per_class > 1 else 0  # row labels' width
    fig, ax = plt.subplots(figsize=(canvas.shape[1] * scale + labels_in, canvas.shape[0] * scale))
    ax.imshow(canvas, cmap="gray", vmin=0, vmax=255, interpolation="nearest")
    ax.set_axis_off()
    if title and per_class == 1:
        for r, col, _, c in cells:
            ax.text(col * step_x + size / 2, r * step_y + label_h - 2, chars[c], ha="center", va="bottom", fontsize=8)
    if per_class > 1:
        ax.set_anchor("E")  # the extra width is on the left, for the row labels
        for n, c in enumerate(classes):
            ax.text(-4, n * step_y + size / 2, chars[c], ha="right", va="center", fontsize=10)
    fig.tight_layout(pad=0.2)
    return fig


def omniglot_montage(X: np.ndarray, y: np.ndarray, characters: Sequence[str], *, per_row: int = 12,
                     by: str = "character") -> plt.Figure:
    """Omniglot, one row per alphabet (its name on the left): its first ``per_row`` characters, drawer 01 of each
    (``by="character"``), or the first ``per_row`` drawers of its first character (``by="drawer"``).

    ``characters`` are ``"Alphabet/characterNN"`` names indexed by the class ids ``y``
    (:func:`mslib.data.omniglot.read_omniglot`); the tiles are drawn as :func:`glyph_montage` draws glyphs.
    """
    if by not in ("character", "drawer"):
        raise ValueError(f"by must be 'character' or 'drawer', not {by!r}")
    alphabets = sorted({c.split("/")[0] for c in characters})
    rows, row_of = [], []
    for a, alphabet in enumerate(alphabets):
        classes = [i for i, c in enumerate(characters) if c.split("/")[0] == alphabet]
        if by == "character":
            idx = [np.flatnonzero(y == c)[0] for c in classes[:per_row]]
        else:
            idx = list(np.flatnonzero(y == classes[0])[:per_row])
        rows += idx
        row_of += [a] * len(idx)
    names = [a.replace("_", " ") for a in alphabets]
    return glyph_montage(X[rows], np.array(row_of), names, per_class=per_row)


def _count_source(spec: DatasetSpec) -> str:
    """Where a split table row's counts come from: generated here, published, or this book's split of the files."""
    if spec.origin == "generated":
        return "generated here"
    return f"published ({spec.citation})" if spec.paper else f"split of the files ({spec.citation})"


def split_table(glyph_counts: dict[str, tuple[int, int]] | None = None) -> pd.DataFrame:
    """Zero-shot split sizes of the registry's datasets: the four benchmarks' published ones, Omniglot-242's as
    its split rule gives them, and the generated dataset (the embedded glyphs): ``glyph_counts`` replaces its
    counts."""
    rows = []
    for name, spec in DATASETS.items():
        generated = spec.origin == "generated"
        for split, (images, classes) in spec.expected.items():
            if generated and glyph_counts is not None:
                images, classes = glyph_counts[split]
            rows.append({"dataset": name, "split": split, "images": images,
                         "classes": classes if classes is not None else "3,985 (shared)",
                         "source": _count_source(spec)})
    return pd.DataFrame(rows).set_index(["dataset", "split"])
