"""One plotting style and one way to save a figure.

A figure's id (``fig-<chapter>-<slug>``) is its public identity: the glue key, the MyST label and the file name
``figures/<id>.{pdf,png}``. :func:`save_figure` writes both files and records their provenance in
``figures/MANIFEST.json`` (one entry per id, replaced when the figure is regenerated). In a notebook,
:func:`publish` does all a figure needs: save it, glue it under its id for ``{glue:figure}``, close it.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import matplotlib.figure
import matplotlib.pyplot as plt
import numpy as np
import torch
from myst_nb import glue
from sklearn.manifold import TSNE
from torch import Tensor

from mslib import __version__, gpw
from mslib.files import atomic_write_text
from mslib.mining import ms_pair_mask
from mslib.paths import figures_dir
from mslib.provenance import git_commit, notebook_context, stable_hash
from mslib.similarity import pair_masks

FIG_ID = re.compile(r"^fig-[a-z0-9]+(-[a-z0-9]+)+$")


def set_style() -> None:
    """The book's plotting style (seaborn ``whitegrid``, colour-blind palette, PDF fonts embedded as Type 42)."""
    import seaborn as sns

    sns.set_theme(context="notebook", style="whitegrid", palette="colorblind")
    plt.rcParams.update({"pdf.fonttype": 42, "ps.fonttype": 42, "figure.dpi": 100, "savefig.bbox": "tight"})


def save_figure(
    fig: matplotlib.figure.Figure,
    fig_id: str,
    *,
    params: dict[str, Any] | None = None,
    out_dir: Path | None = None,
) -> dict[str, Any]:
    """Write ``<out_dir>/<fig_id>.pdf`` and ``.png`` and record them in ``MANIFEST.json``.

    ``fig_id`` must look like ``fig-<chapter>-<slug>`` (lowercase, hyphens). ``params`` defaults to the parameters
    the notebook runner passed to this execution. Returns the manifest entry.
    """
    if not FIG_ID.match(fig_id):
        raise ValueError(f"figure id {fig_id!r} must look like 'fig-<chapter>-<slug>' (lowercase, digits, hyphens)")
    out = Path(out_dir) if out_dir is not None else figures_dir()
    out.mkdir(parents=True, exist_ok=True)
    fig.savefig(out / f"{fig_id}.pdf")
    fig.savefig(out / f"{fig_id}.png", dpi=150)
    ctx = notebook_context()
    used = ctx["params"] if params is None else params
    entry = {
        "id": fig_id,
        "files": [f"{fig_id}.pdf", f"{fig_id}.png"],
        "notebook": ctx["notebook"],
        "profile": ctx["profile"],
        "params_file": ctx["params_file"],
        "params": used,
        "params_hash": stable_hash(used),
        "git_commit": git_commit(),
        "mslib_version": __version__,
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    manifest = out / "MANIFEST.json"
    entries = json.loads(manifest.read_text()) if manifest.exists() else []
    entries = [e for e in entries if e.get("id") != fig_id] + [entry]
    entries.sort(key=lambda e: e["id"])
    atomic_write_text(manifest, json.dumps(entries, indent=2) + "\n")
    return entry


_IMPORTED = time.perf_counter()  # a chapter's kernel imports this module in its first code cell


def glue_page_seconds(key: str) -> None:
    """Glue under ``key`` the seconds since this module was imported: in a chapter, the time its code took to run,
    measured where the book was built, so each page states its own cost."""
    glue(key, time.perf_counter() - _IMPORTED, display=False)


def publish(
    fig: matplotlib.figure.Figure,
    fig_id: str,
    *,
    params: dict[str, Any] | None = None,
    out_dir: Path | None = None,
) -> None:
    """Save ``fig`` under ``fig_id`` (:func:`save_figure`), glue it under the same id and close it.

    The one call a notebook makes per figure; ``{glue:figure} <fig_id>`` then places it in the book. The figure
    is closed even when saving fails, so a failing cell leaks no open figure. Returns None, so a cell ending in
    this call shows nothing on the page (the manifest entry is in ``MANIFEST.json``, :func:`save_figure`).
    """
    try:
        save_figure(fig, fig_id, params=params, out_dir=out_dir)
        glue(fig_id, fig, display=False)
    finally:
        plt.close(fig)


def plot_random_cosines(samples: dict[int, Any]) -> matplotlib.figure.Figure:
    """One panel per dimension ``d``: the histogram of sampled ``S_ij`` of random unit vectors against the density
    of ``N(0, 1/d)`` (``samples`` as :func:`mslib.diagnostics.random_cosine_samples` returns them)."""

    if not samples:
        raise ValueError("no dimensions to plot")
    cols = min(len(samples), 2)  # at most two panels a row: the book's column is ~8 in wide
    rows = -(-len(samples) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4 * cols, 2.8 * rows), squeeze=False)
    for ax in axes.flat[len(samples):]:
        ax.set_visible(False)
    grid = np.linspace(-1, 1, 400)
    for ax, (d, sims) in zip(axes.flat[: len(samples)], samples.items(), strict=True):
        ax.hist(sims, bins=60, range=(-1, 1), density=True, alpha=0.7, label="sampled pairs")
        ax.plot(grid, np.sqrt(d / (2 * np.pi)) * np.exp(-d * grid**2 / 2), lw=1.5, label=r"$\mathcal{N}(0, 1/d)$")
        ax.set_title(f"d = {d}")
        ax.set_xlabel(r"cosine similarity $S_{ij}$")
    for ax in axes[:, 0]:
        ax.set_ylabel("density")
    axes[0, 0].legend(loc="upper left", fontsize=8)
    fig.tight_layout()
    return fig


def plot_training(result: dict[str, Any]) -> matplotlib.figure.Figure:
    """Training loss and R@1 (validation; test too when tracked) against the iteration of a ``fit`` result."""
    hist = [h for h in result["history"] if h.get("event", "train") == "train"]
    fig, (ax_loss, ax_r1) = plt.subplots(1, 2, figsize=(8, 3.2))
    ax_loss.plot([h["iteration"] for h in hist], [h["loss"] for h in hist], lw=1.2)
    ax_loss.set(xlabel="iteration", ylabel="training loss", title="loss")
    for split, style in (("val", "-o"), ("test", "--s")):
        points = [(e["iteration"], 100 * e[split]["R@1"]) for e in result["evals"] if split in e]
        if points:
            xs, ys = zip(*points, strict=True)
            label = "validation (model selection)" if split == "val" else "test (official protocol)"
            ax_r1.plot(xs, ys, style, ms=3, label=label)
    ax_r1.set(xlabel="iteration", ylabel="R@1 (%)", title="Recall@1 during training")
    if ax_r1.lines:
        ax_r1.legend(fontsize=8)
    fig.tight_layout()
    return fig


TSNE_PARAMS: dict[str, Any] = {"perplexity": 30.0, "init": "pca", "metric": "cosine"}
"""The t-SNE settings of the embedding figure (``notebooks/05_training.ipynb``), stated in its caption."""


def class_subset(labels: Any, max_classes: int, seed: int) -> np.ndarray:
    """Boolean mask of the rows whose class is among ``max_classes`` classes drawn with ``seed`` (all if fewer)."""
    labels = np.asarray(labels)
    classes = np.unique(labels)
    chosen = np.random.default_rng(seed).choice(classes, size=min(max_classes, len(classes)), replace=False)
    return np.isin(labels, chosen)


def embedding_2d(embeddings: Any, method: str = "tsne", *, seed: int = 0, **params: Any) -> np.ndarray:
    """An ``(n, 2)`` map of the rows of ``embeddings``: scikit-learn's t-SNE (``method="tsne"``, settings
    :data:`TSNE_PARAMS` updated by ``params``, ``random_state=seed``) or the first two principal components
    (``"pca"``, no parameters)."""
    emb = np.asarray(embeddings, dtype=np.float64)
    if emb.ndim != 2 or len(emb) < 2:
        raise ValueError(f"embedding_2d needs an (n, d) array with n >= 2, got shape {emb.shape}")
    if method == "pca":
        if params:
            raise ValueError(f"PCA takes no parameters, got {sorted(params)}")
        centred = emb - emb.mean(axis=0)
        _, _, vt = np.linalg.svd(centred, full_matrices=False)
        return centred @ vt[:2].T
    if method != "tsne":
        raise ValueError(f"method must be 'tsne' or 'pca', not {method!r}")
    settings = {**TSNE_PARAMS, **params}
    if not 0 < settings["perplexity"] < len(emb):
        raise ValueError(f"t-SNE perplexity {settings['perplexity']} must be below the {len(emb)} points")
    return TSNE(n_components=2, random_state=seed, **settings).fit_transform(emb)


def plot_embedding_2d(
    embeddings: Any, labels: Any, *, max_classes: int = 10, seed: int = 0, method: str = "tsne", **params: Any
) -> matplotlib.figure.Figure:
    """The embeddings of ``max_classes`` randomly chosen classes (:func:`class_subset`) mapped to 2-D by
    :func:`embedding_2d` (``method``, ``seed``, ``params``), one colour per class."""
    labels = np.asarray(labels)
    keep = class_subset(labels, max_classes, seed)
    xy = embedding_2d(np.asarray(embeddings)[keep], method, seed=seed, **params)
    fig, ax = plt.subplots(figsize=(6, 4.6))
    for c in np.unique(labels[keep]):
        m = labels[keep] == c
        ax.scatter(xy[m, 0], xy[m, 1], s=12, alpha=0.8, label=str(c))
    name, axis = ("t-SNE", "t-SNE") if method == "tsne" else ("PCA", "PC")
    ax.set(xlabel=f"{axis} 1", ylabel=f"{axis} 2", xticks=[], yticks=[])
    ax.set_title(f"test embeddings of {len(np.unique(labels[keep]))} classes ({name})")
    ax.legend(fontsize=8, ncol=1, title="class", title_fontsize=8, loc="center left", bbox_to_anchor=(1.0, 0.5))
    fig.tight_layout()
    return fig


def _neighbour_title(rank: int, similarity: float | None, correct: bool) -> str:
    mark = "✓" if correct else "✗"
    return f"{rank}: {mark}" if similarity is None else f"{rank}: {similarity:.2f} {mark}"


def plot_retrieval(
    images: Any, labels: Any, queries: Any, neighbours: Any, similarities: Any = None
) -> matplotlib.figure.Figure:
    """Each row: a query image, then its nearest neighbours, framed green (✓) when of the query's class, red (✗)
    if not; each neighbour is titled with its rank and, when ``similarities`` is given, its similarity.

    ``images(i)`` returns image ``i`` as an H×W (grey) or H×W×3 array; ``neighbours[r]`` are the indices retrieved
    for ``queries[r]``, nearest first (e.g. from :func:`mslib.evaluate.retrieval_gallery`).
    """
    queries, neighbours, labels = np.asarray(queries), np.asarray(neighbours), np.asarray(labels)
    rows, cols = len(queries), neighbours.shape[1] + 1
    fig, axes = plt.subplots(rows, cols, figsize=(1.25 * cols, 1.4 * rows), squeeze=False)
    for r, q in enumerate(queries):
        for c, idx in enumerate([q, *neighbours[r]]):
            ax = axes[r, c]
            img = np.asarray(images(int(idx)))
            ax.imshow(img, cmap="gray" if img.ndim == 2 else None, vmin=0, vmax=1 if img.dtype != np.uint8 else 255)
            ax.set_xticks([])
            ax.set_yticks([])
            correct = bool(labels[idx] == labels[q])
            colour = "black" if c == 0 else ("tab:green" if correct else "tab:red")
            for spine in ax.spines.values():
                spine.set_edgecolor(colour)
                spine.set_linewidth(1 if c == 0 else 3)
            sim = None if similarities is None else float(np.asarray(similarities)[r, c - 1])
            ax.set_title("query" if c == 0 else _neighbour_title(c, sim, correct), fontsize=8)
    fig.tight_layout()
    return fig


def display_image(item: Any) -> Any:
    """A dataset image as an array ``imshow`` takes: a C×H×W tensor in [0, 1] (glyphs) or a PIL image."""

    if hasattr(item, "convert"):  # PIL
        return np.asarray(item.convert("RGB").resize((96, 96)))
    arr = np.asarray(item, dtype=np.float32)
    return arr[0] if arr.ndim == 3 and arr.shape[0] == 1 else arr.transpose(1, 2, 0) if arr.ndim == 3 else arr


def plot_with_ci(
    summary: Any, metric: str = "R@1", *, ax: Any = None, kind: str = "bar", xlabel: str = "",
    marks: dict[Any, str] | None = None, logx: bool = False,
) -> matplotlib.figure.Figure:
    """``summary`` (from :func:`mslib.run.stats.summarise`): mean ``metric`` per row with its 95% CI as error bars.

    ``kind="bar"``: one bar per row (categorical); ``"line"``: rows are numeric x values. A row with one seed has
    no error bar. ``marks`` labels x values (e.g. ``{50: "paper", 40: "official"}``) with a vertical line.
    """

    if ax is None:
        fig, ax = plt.subplots(figsize=(6, 3.4))
    else:
        fig = ax.figure
    mean = summary[metric].to_numpy(dtype=float)
    err = np.nan_to_num(summary[f"{metric} ci"].to_numpy(dtype=float), nan=0.0)
    ax.set_autoscaley_on(True)  # a second series on these axes rescales them (the clamp below had fixed the limits)
    if kind == "bar":
        pos = np.arange(len(summary))
        ax.bar(pos, mean, yerr=err, capsize=4, color=plt.rcParams["axes.prop_cycle"].by_key()["color"][0])
        ax.set_xticks(pos, [str(i) for i in summary.index], rotation=30, ha="right")
        ax.set_ylim(0.0, None)  # a bar's length is its value: the axis starts at zero
    elif kind == "line":
        xs = np.asarray(summary.index, dtype=float)
        ax.errorbar(xs, mean, yerr=err, fmt="-o", ms=4, capsize=4)
        if logx:
            ax.set_xscale("log", base=2)
        ax.set_xticks(xs, [f"{x:g}" for x in xs])
        for x, label in (marks or {}).items():
            ax.axvline(float(x), color="grey", ls=":", lw=1)
            ax.annotate(label, (float(x), 1.0), xycoords=("data", "axes fraction"), rotation=90, va="top",
                        ha="right", fontsize=8, color="dimgrey")
    else:
        raise ValueError(f"kind must be 'bar' or 'line', not {kind!r}")
    ax.relim()
    ax.autoscale_view(scalex=False)
    low, high = ax.get_ylim()
    ax.set_ylim(max(low, 0.0), min(high, 100.0))  # a percentage: an interval past 0 or 100 is clipped in view only
    ax.set(xlabel=xlabel, ylabel=f"{metric} (%)")
    fig.tight_layout()
    return fig


def plot_learning_curves(ax: Any, curves: dict[str, Any], *, fraction: float = 0.25, metric: str = "R@1") -> None:
    """On ``ax``: each label's mean curve over its runs (:func:`mslib.run.convergence.mean_curve`, in percent),
    with the last ``fraction`` of each run length shaded (where :func:`mslib.run.convergence.late_gain` is read)."""
    from mslib.run.convergence import mean_curve

    ends = set()
    for label, runs in curves.items():
        its, values = zip(*mean_curve(runs), strict=True)
        ax.plot(its, [100 * v for v in values], lw=1.3, label=label)
        ends.add(its[-1])
    for end in sorted(ends):
        ax.axvspan((1 - fraction) * end, end, color="grey", alpha=0.15, lw=0)
    ax.set(xlabel="iteration", ylabel=f"validation {metric} (%)")
    ax.set_ylim(0.0, None)


def plot_similarity_panels(
    panels: dict[str, dict[str, Any]], thresholds: dict[str, float] | None = None, *, bins: int = 80
) -> matplotlib.figure.Figure:
    """One panel per title: histograms (density) of the similarity samples ``{label: values}`` it holds.

    ``thresholds`` (e.g. ``{"λ official": 0.5}``) are drawn as labelled vertical lines in every panel. Chapter
    *Setup* uses it for random directions against untrained networks (:mod:`mslib.diagnostics`).
    """

    if not panels or any(not groups for groups in panels.values()):
        raise ValueError("every panel needs at least one group of similarities")
    fig, axes = plt.subplots(1, len(panels), figsize=(min(8.0, 4.6 * len(panels)), 3.2), squeeze=False)
    for ax, (title, groups) in zip(axes[0], panels.items(), strict=True):
        for label, values in groups.items():
            ax.hist(np.asarray(values, dtype=float), bins=bins, range=(-1, 1), density=True, alpha=0.55, label=label)
        for name, x in (thresholds or {}).items():
            ax.axvline(x, color="dimgrey", ls=":", lw=1)
            ax.annotate(name, (x, 1.0), xycoords=("data", "axes fraction"), rotation=90, va="top", ha="right",
                        fontsize=8, color="dimgrey")
        ax.set(title=title, xlabel=r"cosine similarity $S_{ij}$", xlim=(-1, 1.02))
        ax.set_yscale("log")
        ax.legend(fontsize=8, loc="upper left")
    axes[0][0].set_ylabel("density (log scale)")
    fig.tight_layout()
    return fig


# --- General Pair Weighting figures (chapters 01_gpw, 02_pair_losses, 03_multi_similarity; numerics: mslib.gpw) ---


def plot_agreement(ax: Any, auto: gpw.PairWeights, closed: gpw.PairWeights, title: str) -> float:
    """Scatter autograd against closed-form weights (positive and negative pairs); return the max abs difference."""
    for w_auto, w_closed, label, marker in ((auto.pos, closed.pos, "positive pairs", "o"),
                                            (auto.neg, closed.neg, "negative pairs", "x")):
        keep = (w_auto != 0) | (w_closed != 0)
        ax.scatter(w_closed[keep].numpy(), w_auto[keep].numpy(), s=12, marker=marker, label=label, alpha=0.7)
    top = float(max(auto.pos.max(), auto.neg.max(), closed.pos.max(), closed.neg.max(), 1e-12))
    ax.plot([0, top], [0, top], color="0.3", lw=0.8, ls="--")
    ax.set_xlabel(r"closed-form $w_{ij}$")
    ax.set_ylabel(r"autograd $|\partial L/\partial S_{ij}|$")
    ax.set_title(title)
    ax.legend(fontsize=8)
    return float((auto.grad - closed.grad).abs().max())


def sweep_pairs(name: str, sim: Tensor, labels: Tensor, **hparams: Any) -> tuple[int, int, int, int, bool]:
    """``(i, j_neg, j_pos, k_neg, active)`` for :func:`plot_weight_sweeps`: the negative pair ``(i, j_neg)`` of
    largest weight in the batch, anchor ``i``'s positive ``j_pos`` of largest weight and its other negative
    ``k_neg`` of largest weight; ``active``: whether ``w⁻_{i j_neg} > 0`` (no negative pair of the batch is active
    when it is ``False``)."""
    pos, neg = pair_masks(labels)
    w = gpw.pair_weights(name, sim, labels, **hparams)
    i, j_neg = divmod(int(torch.where(neg, w.neg, torch.full_like(w.neg, -1.0)).argmax()), sim.shape[1])
    j_pos = int(torch.where(pos[i], w.pos[i], torch.full_like(w.pos[i], -1.0)).argmax())
    others = neg[i].clone()
    others[j_neg] = False
    k_neg = int(torch.where(others, w.neg[i], torch.full_like(w.neg[i], -1.0)).argmax())
    return i, j_neg, j_pos, k_neg, bool(w.neg[i, j_neg] > 0)


def plot_weight_sweeps(
    axes: Sequence[Any], name: str, sim: Tensor, labels: Tensor, values: Sequence[float], **hparams: Any
) -> None:
    """Three panels for one loss: ``w⁻_ij`` and ``w⁺_ij`` against their own ``S_ij``; ``w⁻_ij`` against another
    negative's and a positive's similarity of the same anchor (the pairs of :func:`sweep_pairs`). A dotted line
    marks each moved similarity's value. When no negative pair of the batch is active, the middle and right
    panels place ``S_ij`` at the value of ``values`` where its own weight is largest (left panel), so they probe an
    active pair; the middle panel's title says so."""
    i, j_neg, j_pos, k_neg, active = sweep_pairs(name, sim, labels, **hparams)
    vals = np.asarray(values)
    own = gpw.weight_sweep(name, sim, labels, (i, j_neg), (i, j_neg), values, **hparams)
    probe = sim.detach().clone()
    if not active:
        probe[i, j_neg] = float(vals[int(np.argmax(own))])
        axes[1].set_title(f"inactive in the batch: $S_{{ij}}$ set to {float(probe[i, j_neg]):.2f}", fontsize=8)

    def sweep(pair: tuple[int, int], moved: tuple[int, int]) -> np.ndarray:
        return gpw.weight_sweep(name, probe, labels, pair, moved, values, **hparams)

    axes[0].plot(vals, own, label=r"$w^-_{ij}$")
    axes[0].plot(vals, sweep((i, j_pos), (i, j_pos)), label=r"$w^+_{ij}$")
    axes[0].set_xlabel(r"own similarity $S_{ij}$")
    axes[1].plot(vals, sweep((i, j_neg), (i, k_neg)), color="C2")
    axes[1].set_xlabel(r"another negative's $S_{ik}$")
    axes[2].plot(vals, sweep((i, j_neg), (i, j_pos)), color="C3")
    axes[2].set_xlabel(r"a positive's $S_{ik}$")
    for ax, at in zip(axes, [(i, j_neg), (i, k_neg), (i, j_pos)], strict=True):
        ax.axvline(float(sim[at]), color="0.5", linestyle=":", linewidth=1)
    axes[0].set_ylabel(f"{name}\nweight")
    axes[0].legend(fontsize=8)
    for ax in axes[1:]:
        ax.set_ylabel(r"$w^-_{ij}$")


def plot_ms_batch(axes: Sequence[Any], sim: Tensor, labels: Tensor, **hparams: Any) -> None:
    """Three heat maps of one batch: ``S``, the mined pairs (+1 positive, −1 negative), and ``log10(w⁺ + w⁻)``
    (autograd through the readable loss), with weight-0 pairs left blank (white): on a linear scale the negative
    weights, orders of magnitude below the positive ones, would not show."""
    from mslib.losses import multi_similarity_autograd

    pos, neg = ms_pair_mask(sim, labels, epsilon=hparams["epsilon"])
    w = gpw.pair_weights(multi_similarity_autograd, sim, labels, **hparams)
    total = (w.pos + w.neg).numpy()
    logw = np.where(total > 0, np.log10(np.where(total > 0, total, 1.0)), np.nan)
    panels = [(sim.numpy(), "similarity $S_{ij}$", "RdBu_r", (-1, 1)),
              ((pos.double() - neg.double()).numpy(), "mined: +1 positive, -1 negative", "PiYG", (-1, 1)),
              (logw, r"$\log_{10}(w^+_{ij} + w^-_{ij})$", "viridis", (None, None))]
    for ax, (data, title, cmap, (lo, hi)) in zip(axes, panels, strict=True):
        im = ax.imshow(data, cmap=cmap, vmin=lo, vmax=hi)
        ax.set_title(title, fontsize=9)
        ax.set_xlabel("reference j")
        ax.figure.colorbar(im, ax=ax, fraction=0.046)
    axes[0].set_ylabel("anchor i")


def plot_weight_trace(axes: Sequence[Any], traces: dict[str, Any]) -> None:
    """Two panels over training iterations, one line per loss (``traces``: label → a
    :func:`mslib.weight_trace.trace_weights` frame): the hard-negative share (the uniform share dotted) and the
    fraction of pairs with nonzero weight."""
    for n, (label, df) in enumerate(traces.items()):
        axes[0].plot(df["iteration"], df["hard share"], color=f"C{n}", label=label)
        axes[1].plot(df["iteration"], df["mined"], color=f"C{n}", label=label)
    first = next(iter(traces.values()))
    axes[0].plot(first["iteration"], first["uniform share"], color="0.5", linestyle=":", label="uniform weights")
    axes[0].set(xlabel="iteration", ylabel="share of $\\sum w^-$ on the hardest 10%", ylim=(0, 1))
    axes[1].set(xlabel="iteration", ylabel="fraction of pairs with $w > 0$", ylim=(0, 1.05))
    axes[0].legend(fontsize=8)


def plot_ms_hyperparameters(
    axes: Sequence[Any], sim: Tensor, labels: Tensor, base: dict[str, Any], betas: Sequence[float],
    lams: Sequence[float], epsilons: Sequence[float], values: Sequence[float],
) -> None:
    """``w⁻_ij`` against its own ``S_ij`` for several β and λ (no mining), and the mined fractions against ε."""
    _, neg = pair_masks(labels)
    j = int(torch.nonzero(neg[0])[0])
    nomine = {**base, "epsilon": None}
    for beta in betas:
        axes[0].plot(values, gpw.weight_sweep("multi_similarity", sim, labels, (0, j), (0, j), values,
                                              **{**nomine, "beta": beta}), label=f"β = {beta:g}")
    for lam in lams:
        axes[1].plot(values, gpw.weight_sweep("multi_similarity", sim, labels, (0, j), (0, j), values,
                                              **{**nomine, "lam": lam}), label=f"λ = {lam:g}")
    fractions = [gpw.ms_summary(sim, labels, **{**base, "epsilon": e}) for e in epsilons]
    axes[2].plot(epsilons, [f["positives mined"] for f in fractions], marker="o", label="positives")
    axes[2].plot(epsilons, [f["negatives mined"] for f in fractions], marker="x", label="negatives")
    for ax, xlabel in zip(axes, [r"own similarity $S_{ij}$"] * 2 + [r"mining margin $\epsilon$"], strict=True):
        ax.set_xlabel(xlabel)
        ax.legend(fontsize=8)
    axes[0].set_ylabel(r"$w^-_{ij}$")
    axes[2].set_ylabel("fraction of pairs mined")
