"""mslib.run.tuning: seeded random search (draws, prefixes, ranges), the search spaces against the losses and the
book's settings, and tune() through run_grid with a stand-in fit."""

import math
from pathlib import Path

import numpy as np
import pytest
import torch

from mslib.experiments import LOSS_SETTINGS
from mslib.losses import LOSS_SPECS, MS_PRESETS
from mslib.run.config import TrainConfig
from mslib.run.records import RunStore
from mslib.run.trainer import FitResult
from mslib.run.tuning import (
    SEARCH_SPACES,
    Param,
    base_point,
    best_trial,
    budget_curve,
    sample_trials,
    search_space,
    trial_config,
    tune,
    van_der_corput,
)


def test_trials_are_seeded_prefix_stable_and_inside_their_ranges():
    space = search_space("multi_similarity")
    trials = sample_trials(space, 400, seed=3)
    assert trials == sample_trials(space, 400, seed=3) and trials != sample_trials(space, 400, seed=4)
    assert sample_trials(space, 25, seed=3) == trials[:25], "budget k is the first k trials of a larger budget"
    rates = [t["lr"] for t in sample_trials(search_space("triplet"), 400, seed=3)]
    assert rates == [t["lr"] for t in trials], "every loss tries the same learning rates under one seed"
    assert len({t["alpha"] for t in trials}) == 400


def test_van_der_corput_by_its_definition():
    # i = sum_j b_j 2^j  ->  sum_j b_j 2^-(j+1), written out from i's binary string
    for i in range(200):
        bits = bin(i)[2:][::-1]
        assert van_der_corput(i) == sum(int(b) / 2 ** (j + 1) for j, b in enumerate(bits))
    assert [van_der_corput(i) for i in range(4)] == [0.0, 0.5, 0.25, 0.75]


def test_the_learning_rate_is_stratified_so_a_small_budget_spans_its_range():
    space = search_space("multi_similarity")
    lr = space[0]
    for seed in range(20):
        trials = sample_trials(space, 16, seed=seed)
        quantiles = [(math.log(t["lr"]) - math.log(lr.low)) / (math.log(lr.high) - math.log(lr.low)) for t in trials]
        for k in (1, 2, 4, 8, 16):  # the first k trials: one per k-th of the range (after the shift, mod 1)
            shift = quantiles[0]
            strata = sorted(int(((q - shift) % 1.0) * k + 1e-9) for q in quantiles[:k])
            assert strata == list(range(k)), (seed, k)
        others = np.array([t["beta"] for t in trials])  # the other settings are not stratified with it
        assert len(set(np.round(others, 12))) == 16
    for p in space:
        values = np.array([t[p.name] for t in trials])
        assert values.min() >= p.low and values.max() <= p.high
        scale = np.log(values) if p.log else values
        lo, hi = (math.log(p.low), math.log(p.high)) if p.log else (p.low, p.high)
        # uniform on its scale: mean at the middle (sd of the mean of 400 uniforms: (hi − lo) / sqrt(12 · 400))
        assert abs(scale.mean() - (lo + hi) / 2) < 4 * (hi - lo) / math.sqrt(12 * 400), p.name


def test_every_space_names_the_losses_own_hyperparameters_and_contains_the_books_settings():
    for loss, space in SEARCH_SPACES.items():
        names = [p.name for p in space]
        assert names[0] == "lr" and len(set(names)) == len(names), loss
        assert set(names[1:]) <= set(LOSS_SPECS[loss].defaults), f"{loss}: {names[1:]} not all its hyperparameters"
        lr = space[0]
        assert lr.low <= TrainConfig().lr <= lr.high
    settings = [(name, params) for name, params in LOSS_SETTINGS.values()]
    settings += [("multi_similarity", preset) for preset in MS_PRESETS.values()]
    settings += [(loss, spec.defaults) for loss, spec in LOSS_SPECS.items() if loss in SEARCH_SPACES]
    for loss, params in settings:
        for p in SEARCH_SPACES[loss]:
            value = params.get(p.name)
            if isinstance(value, int | float) and not isinstance(value, bool):
                assert p.low <= value <= p.high, f"{loss} {p.name}={value} outside [{p.low}, {p.high}]"


def test_space_and_param_errors_name_the_problem():
    assert [p.name for p in search_space("multi_similarity", without=["epsilon"])] == ["lr", "alpha", "beta", "lam"]
    with pytest.raises(ValueError, match="no search space for loss 'arcface'"):
        search_space("arcface")
    with pytest.raises(ValueError, match="has no gamma"):
        search_space("contrastive", without=["gamma"])
    with pytest.raises(ValueError, match="low > 0 on a log scale"):
        Param("scale", 0.0, 1.0, log=True)
    with pytest.raises(ValueError, match="n ≥ 1"):
        sample_trials(search_space("triplet"), 0)


def test_trial_config_sets_the_rate_and_the_losss_hyperparameters():
    base = TrainConfig(loss="contrastive", loss_params={"pos_margin": 1.0, "neg_margin": 0.5})
    cfg = trial_config(base, {"lr": 3e-4, "neg_margin": 0.3})
    assert cfg.lr == 3e-4 and cfg.loss_params == {"pos_margin": 1.0, "neg_margin": 0.3}
    assert base.lr == TrainConfig().lr, "the base is not changed"


class ScoringFit:
    """Stands in for trainer.fit: the validation MAP@R at the end is a known function of the trial's settings."""

    def __call__(self, cfg: TrainConfig, **_) -> FitResult:
        score = 0.5 - abs(math.log10(cfg.lr) + 3) / 10 - abs(cfg.loss_params["neg_margin"] - 0.4)
        evals = [{"iteration": 0, "val": {"MAP@R": 0.1}}, {"iteration": cfg.iterations, "val": {"MAP@R": score}}]
        return FitResult(config=cfg.to_dict(), history=[], evals=evals,
                         metrics={"final": {"iteration": cfg.iterations, "test": {"R@1": 0.0}}},
                         timing={"train_seconds": 1.0, "images_per_second": 80.0}, completed=True,
                         iteration=cfg.iterations, model=torch.nn.Identity())


def test_tune_scores_each_trial_on_validation_and_its_budget_curve_rises(tmp_path: Path):
    base = TrainConfig(loss="contrastive", loss_params={}, iterations=5, val_fraction=0.25, eval_every=5)
    space = search_space("contrastive")
    table = tune(base, space, 12, seed=1, store=RunStore(tmp_path), jobs=1, fit=ScoringFit())
    trials = sample_trials(space, 12, seed=1)
    expected = [0.5 - abs(math.log10(t["lr"]) + 3) / 10 - abs(t["neg_margin"] - 0.4) for t in trials]
    np.testing.assert_allclose(table["score"], expected)
    np.testing.assert_allclose(table["best so far"], np.maximum.accumulate(expected))
    assert best_trial(table) == pytest.approx(trials[int(np.argmax(expected))])
    assert budget_curve([0.2, 0.1, 0.3]) == [0.2, 0.2, 0.3]
    with pytest.raises(ValueError, match="val_fraction > 0"):
        tune(TrainConfig(iterations=5), space, 2, store=RunStore(tmp_path), jobs=1, fit=ScoringFit())


def test_include_base_makes_trial_0_the_base_setting_and_the_draws_follow(tmp_path: Path):
    base = TrainConfig(loss="contrastive", loss_params={"pos_margin": 1.0, "neg_margin": 0.5}, lr=2e-3,
                       iterations=5, val_fraction=0.25, eval_every=5)
    space = search_space("contrastive")
    assert base_point(base, space) == {"lr": 2e-3, "pos_margin": 1.0, "neg_margin": 0.5}
    table = tune(base, space, 4, seed=1, include_base=True, store=RunStore(tmp_path), jobs=1, fit=ScoringFit())
    drawn = sample_trials(space, 3, seed=1)
    assert list(table.index) == ["trial 0", "trial 1", "trial 2", "trial 3"]
    rows = table.drop(columns=["score", "best so far"]).to_dict("records")
    for row, expected in zip(rows, [base_point(base, space), *drawn], strict=True):
        assert row == pytest.approx(expected)
    base_score = 0.5 - abs(math.log10(2e-3) + 3) / 10 - abs(0.5 - 0.4)
    assert table["score"].iloc[0] == pytest.approx(base_score)
    records = RunStore(tmp_path).load_all()
    assert any(r.params == base.to_dict() for r in records), "trial 0 is the base run itself, as spelled"
    assert (table["best so far"] >= base_score - 1e-12).all(), "a search that starts at the base never ends below it"
    lifted = TrainConfig(loss="generalized_lifted_structure", loss_params={"margin": 0.7})
    assert base_point(lifted, search_space("generalized_lifted_structure")) == {"lr": 1e-3, "margin": 0.7,
                                                                                "scale": 1.0}  # its default
    without = TrainConfig(loss="multi_similarity", loss_params={"preset": "pml", "epsilon": None})
    with pytest.raises(ValueError, match="no value for epsilon"):
        base_point(without, search_space("multi_similarity"))
