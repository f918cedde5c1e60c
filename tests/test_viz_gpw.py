"""The GPW figures (moved from mslib.gpw to mslib.viz) draw what they claim from gpw's numbers."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np

from mslib import gpw, losses, viz
from mslib.similarity import clustered_embeddings, cosine


def test_plot_agreement_returns_the_largest_difference() -> None:
    x, y = clustered_embeddings(4, 3, 8, spread=2.0, seed=0)
    auto = gpw.pair_weights("binomial_deviance", cosine(x), y)
    shifted = gpw.PairWeights(auto.pos, auto.neg, auto.grad.clone())
    shifted.grad[0, 5] += 0.25
    fig, ax = plt.subplots()
    assert viz.plot_agreement(ax, auto, auto, "same") == 0.0
    assert viz.plot_agreement(ax, auto, shifted, "shifted") == 0.25
    plt.close(fig)


def test_weight_sweep_panels_plot_gpw_weight_sweep() -> None:
    x, y = clustered_embeddings(3, 3, 8, spread=2.0, seed=1)
    values = np.linspace(-0.5, 0.9, 4)
    fig, axes = plt.subplots(1, 3)
    viz.plot_weight_sweeps(axes, "binomial_deviance", cosine(x), y, values)
    i, j, _, _, active = viz.sweep_pairs("binomial_deviance", cosine(x), y)
    own_negative = gpw.weight_sweep("binomial_deviance", cosine(x), y, (i, j), (i, j), values)
    np.testing.assert_array_equal(axes[0].lines[0].get_ydata(), own_negative)
    assert active and y[i] != y[j]
    fig2, axes2 = plt.subplots(1, 3)
    viz.plot_ms_hyperparameters(axes2, cosine(x), y, losses.MS_PRESETS["official"], [10, 50], [0.5], [0.0, 0.3],
                                values)
    assert [len(ax.lines) for ax in axes2] == [2, 1, 2]
    plt.close(fig)
    plt.close(fig2)


def test_sweep_pairs_picks_the_heaviest_negative_and_flags_an_inactive_batch() -> None:
    x, y = clustered_embeddings(4, 3, 8, spread=2.0, seed=0)
    sim = cosine(x)
    w = gpw.pair_weights("generalized_lifted_structure", sim, y)
    i, j, p, k, active = viz.sweep_pairs("generalized_lifted_structure", sim, y)
    assert active and float(w.neg[i, j]) == float(w.neg.max()) and y[p] == y[i] and p != i and y[k] != y[i]
    # contrastive with a negative margin above every similarity: no negative is active
    *_, active = viz.sweep_pairs("contrastive", sim, y, neg_margin=1.5)
    assert not active
    fig, axes = plt.subplots(1, 3)
    viz.plot_weight_sweeps(axes, "contrastive", sim, y, np.linspace(-0.5, 1.0, 5), neg_margin=1.5)
    assert "inactive" in axes[1].get_title()
    plt.close(fig)


def test_plot_weight_trace_draws_one_line_per_loss() -> None:
    import pandas as pd

    df = pd.DataFrame({"iteration": [0, 5], "hard share": [0.2, 0.5], "uniform share": [0.1, 0.1],
                       "mined": [1.0, 0.5]})
    fig, axes = plt.subplots(1, 2)
    viz.plot_weight_trace(axes, {"a": df, "b": df})
    assert len(axes[0].lines) == 3 and len(axes[1].lines) == 2  # two losses and the uniform share
    plt.close(fig)
