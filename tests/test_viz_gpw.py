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
    own_negative = gpw.weight_sweep("binomial_deviance", cosine(x), y, (0, 3), (0, 3), values)
    np.testing.assert_array_equal(axes[0].lines[0].get_ydata(), own_negative)  # anchor 0's first negative is 3
    fig2, axes2 = plt.subplots(1, 3)
    viz.plot_ms_hyperparameters(axes2, cosine(x), y, losses.MS_PRESETS["official"], [10, 50], [0.5], [0.0, 0.3],
                                values)
    assert [len(ax.lines) for ax in axes2] == [2, 1, 2]
    plt.close(fig)
    plt.close(fig2)
