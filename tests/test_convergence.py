"""mslib.run.convergence on hand-made curves: plateau vs ramp, interpolation, truncation, bad input."""

import math

import numpy as np
import pandas as pd
import pytest

from mslib.run.convergence import (
    is_converged,
    iterations_to_converge,
    late_gain,
    learning_curve,
    truncate,
    value_at,
)

ITERS = list(range(0, 1600, 100))


def _saturating(tau: float, top: float = 0.8) -> list[tuple[int, float]]:
    """top · (1 − exp(−t/τ)): its gain over [0.75 T, T] is known in closed form."""
    return [(t, top * (1 - math.exp(-t / tau))) for t in ITERS]


def test_learning_curve_reads_evals_in_iteration_order_and_skips_other_splits():
    evals = [{"iteration": 200, "val": {"R@1": 0.5, "R@2": 0.6}},
             {"iteration": 0, "val": {"R@1": 0.1}},
             {"iteration": 100, "test": {"R@1": 0.9}},  # test only: no val point
             {"iteration": 100, "val": {"R@1": 0.3}, "test": {"R@1": 0.2}}]
    assert learning_curve(evals) == [(0, 0.1), (100, 0.3), (200, 0.5)]
    with pytest.raises(ValueError, match=r"iteration\(s\) \[100\] evaluated more than once on 'test'"):
        learning_curve(evals, split="test")


def test_learning_curve_split_and_metric():
    evals = [{"iteration": 0, "val": {"R@1": 0.1, "MAP@R": 0.01}, "test": {"R@1": 0.2}},
             {"iteration": 100, "val": {"R@1": 0.3, "MAP@R": 0.05}, "test": {"R@1": 0.4}}]
    assert learning_curve(evals, metric="MAP@R") == [(0, 0.01), (100, 0.05)]
    assert learning_curve(evals, split="test") == [(0, 0.2), (100, 0.4)]


@pytest.mark.parametrize("evals, message", [
    ([{"val": {"R@1": 0.1}}], "no 'iteration'|with an 'iteration'"),
    ([{"iteration": -1, "val": {"R@1": 0.1}}], "integer ≥ 0"),
    ([{"iteration": 1.5, "val": {"R@1": 0.1}}], "integer ≥ 0"),
    ([{"iteration": 0, "val": {"R@2": 0.1}}], "no metric 'R@1'.*R@2"),
    ([{"iteration": 0, "val": {"R@1": float("nan")}}], "not a finite number"),
    ([{"iteration": 0, "val": {"R@1": None}}], "not a finite number"),
    ([{"iteration": 0, "val": {"R@1": 0.1}}, {"iteration": 0, "val": {"R@1": 0.2}}], r"\[0\] evaluated more"),
    ([{"iteration": 0, "test": {"R@1": 0.1}}], "no evaluation on split 'val'"),
    ([], "no evaluation on split"),
])
def test_learning_curve_bad_input_names_the_problem(evals, message):
    with pytest.raises(ValueError, match=message):
        learning_curve(evals)


def test_value_at_interpolates_linearly_and_refuses_to_extrapolate():
    curve = [(0, 0.0), (100, 0.4), (300, 0.6)]
    assert value_at(curve, 100) == 0.4
    assert value_at(curve, 50) == pytest.approx(0.2)
    assert value_at(curve, 250) == pytest.approx(np.interp(250, [0, 100, 300], [0.0, 0.4, 0.6]))
    with pytest.raises(ValueError, match="outside the evaluated range"):
        value_at(curve, 301)


def test_late_gain_is_end_minus_interpolated_start_of_last_quarter():
    curve = _saturating(400.0)
    its, vals = zip(*curve, strict=True)
    # T = 1500: the window starts at 1125, between the evaluations at 1100 and 1200
    expected = vals[-1] - np.interp(1125, its, vals)
    assert late_gain(curve) == pytest.approx(expected, abs=1e-15)
    assert late_gain(curve, fraction=0.5) == pytest.approx(vals[-1] - np.interp(750, its, vals), abs=1e-15)
    # a falling curve has a negative gain
    assert late_gain([(t, -v) for t, v in curve]) == pytest.approx(-expected)


def test_plateau_is_converged_ramp_is_not():
    plateau = [(t, 0.7) for t in ITERS]
    ramp = [(t, 0.1 + 0.0004 * t) for t in ITERS]  # 0.04 per 100 iterations: 0.15 over the last 375
    assert late_gain(plateau) == 0.0
    assert is_converged(plateau, tolerance=0.005)
    assert late_gain(ramp) == pytest.approx(0.0004 * 375)
    assert not is_converged(ramp, tolerance=0.02)
    assert is_converged(ramp, tolerance=0.16)
    # the criterion is strict: a gain exactly at the tolerance is not converged
    assert not is_converged([(0, 0.0), (4, 0.25), (8, 0.5)], tolerance=0.25, fraction=0.5)


def test_truncation_is_the_prefix_up_to_an_evaluated_iteration():
    curve = _saturating(300.0)
    assert truncate(curve, 600) == curve[:7]
    with pytest.raises(ValueError, match="not an evaluated iteration"):
        truncate(curve, 650)


def test_iterations_to_converge_against_a_brute_force_scan():
    fast, slow = _saturating(150.0), _saturating(500.0)
    found = []
    for tolerance in (0.005, 0.01, 0.02, 0.05):
        for group in ([fast], [slow], [fast, slow]):
            expected = next((T for T in ITERS[1:]
                             if all(c[T // 100][1] - np.interp(0.75 * T, *zip(*c, strict=True)) < tolerance
                                    for c in group)), None)
            assert iterations_to_converge(group, tolerance, 0.25, sustained=False) == expected
            found.append(expected)
            later = [T for T in ITERS[1:] if all(c[S // 100][1] - np.interp(0.75 * S, *zip(*c, strict=True))
                                                 < tolerance for c in group for S in ITERS[T // 100:])]
            assert iterations_to_converge(group, tolerance) == (later[0] if later else None)
    assert None in found and len(set(found) - {None}) > 3  # both outcomes, several lengths
    assert iterations_to_converge({"fast": fast, "slow": slow}, 0.02) == iterations_to_converge([fast, slow], 0.02)


def test_iterations_to_converge_none_when_never_flat_and_sustained_by_default():
    ramp = [(t, 0.0004 * t) for t in ITERS]
    assert iterations_to_converge([ramp], 0.01) is None
    # rising 0.002 per iteration to 300, flat to 500, then rising 0.001 per iteration to the end
    stalled = [(t, 0.002 * min(t, 300) + 0.001 * max(t - 500, 0)) for t in ITERS]
    assert iterations_to_converge([stalled], 0.04, sustained=False) == 400  # window [300, 400] is flat
    assert iterations_to_converge([stalled], 0.04) is None  # still rising at the end
    # rising 0.001 per iteration to 800, then flat. At T = 100 the last quarter is 25 iterations, a gain of 0.025:
    # the smallest T is that short window; sustained: gain 0.001·(800 − 0.75 T) < 0.05 from T > 1000, i.e. 1100
    plateau_late = [(t, 0.001 * min(t, 800)) for t in ITERS]
    assert iterations_to_converge([plateau_late], 0.05, sustained=False) == 100
    assert iterations_to_converge([plateau_late], 0.05) == 1100


def test_iterations_to_converge_uses_iterations_every_curve_evaluated():
    a = [(t, 0.5) for t in range(0, 1600, 100)]
    b = [(t, 0.5) for t in range(0, 1600, 300)]
    assert iterations_to_converge([a, b], 0.01) == 300


@pytest.mark.parametrize("call, message", [
    (lambda: late_gain([(0, 0.1)]), "at least 2 evaluations"),
    (lambda: late_gain([(100, 0.1), (0, 0.2)]), "increase strictly"),
    (lambda: late_gain([(0, 0.1), (100, float("inf"))]), "finite"),
    (lambda: late_gain([(0, 0.1), (100, 0.2)], fraction=1.0), r"fraction must be in \(0, 1\)"),
    (lambda: late_gain([(800, 0.1), (1000, 0.2)]), "before the first evaluation"),
    (lambda: is_converged([(0, 0.1), (100, 0.2)], tolerance=0), "tolerance must be > 0"),
    (lambda: iterations_to_converge([], 0.01), "at least one curve"),
    (lambda: iterations_to_converge([[(0, 0.1), (100, 0.2)]], -1.0), "tolerance must be > 0"),
])
def test_bad_curves_and_settings_raise_clear_errors(call, message):
    with pytest.raises(ValueError, match=message):
        call()


def test_a_fits_evals_give_its_curve_and_a_shorter_constant_lr_run_is_its_truncation():
    from mslib.run.config import TrainConfig
    from mslib.run.trainer import fit

    def run(iterations: int):
        cfg = TrainConfig(dataset_options={"classes": 40, "images_per_class": 12}, iterations=iterations, p=4, k=3,
                          embedding_dim=16, val_fraction=0.25, eval_every=3, log_every=3, ks=[1, 2], lr=1e-3)
        return fit(cfg, progress=False)

    long, short = run(9), run(6)
    curve = learning_curve(long.evals)
    assert [it for it, _ in curve] == [0, 3, 6, 9]  # the periodic evaluations and the final model's
    assert [v for _, v in curve] == [e["val"]["R@1"] for e in long.evals]
    assert learning_curve(short.evals) == truncate(curve, 6)  # same batches, same constant LR: exactly equal


def test_mean_curve_is_numpys_pointwise_mean_and_refuses_other_iterations():
    from mslib.run.convergence import mean_curve

    a, b = _saturating(200.0), _saturating(600.0, top=0.6)
    got = mean_curve([a, b])
    np.testing.assert_allclose([v for _, v in got], np.mean([[v for _, v in a], [v for _, v in b]], axis=0))
    assert [it for it, _ in got] == ITERS
    with pytest.raises(ValueError, match="curve 1 is evaluated at .* a mean needs the same iterations"):
        mean_curve([a, a[:-1]])
    with pytest.raises(ValueError, match="at least one curve"):
        mean_curve([])


def test_convergence_table_against_a_plain_loop():
    from mslib.run.convergence import convergence_table

    flat, ramp = _saturating(100.0), [(t, 0.5 * t / 1500) for t in ITERS]  # ramp: gains 0.125 over the last quarter
    table = convergence_table({"flat": [flat, flat], "mixed": [flat, ramp]}, tolerance=0.01)
    assert list(table.index) == ["flat", "mixed"]
    assert table.loc["flat", "converged"] and table.loc["flat", "runs converged"] == 2
    mixed = table.loc["mixed"]
    gains = [late_gain(flat), late_gain(ramp)]
    assert mixed["runs"] == 2 and mixed["iterations"] == 1500 and mixed["runs converged"] == 1
    assert mixed["largest late gain, one run"] == pytest.approx(100 * max(gains))
    mean = [(t, (f + r) / 2) for (t, f), (_, r) in zip(flat, ramp, strict=True)]
    assert mixed["late gain, mean curve"] == pytest.approx(100 * late_gain(mean))
    assert not mixed["converged"]  # the mean curve gains about 6 points: still rising
    with pytest.raises(ValueError, match="tolerance must be > 0"):
        convergence_table({"flat": [flat]}, tolerance=0.0)


def test_convergence_counts_and_view_say_what_the_table_holds():
    from mslib.run.convergence import convergence_counts, convergence_table, convergence_view

    flat, ramp = _saturating(100.0), [(t, 0.5 * t / 1500) for t in ITERS]
    table = convergence_table({"flat": [flat, flat], "mixed": [flat, ramp], "ramp": [ramp]}, tolerance=0.01)
    counts = convergence_counts(table)
    assert counts == {"met": 1, "n": 3, "still-rising": "mixed, ramp", "runs": 5, "runs-converged": 3,
                      "max-gain": pytest.approx(100 * late_gain(ramp))}
    by_dataset = pd.concat({"glyphs": table.loc[["flat"]], "omniglot": table.loc[["ramp"]]}, names=["d", "loss"])
    assert convergence_counts(by_dataset)["still-rising"] == "ramp on omniglot"
    assert convergence_counts(table.loc[["flat"]])["still-rising"] == "none"
    assert "lengthened" not in counts
    longer = by_dataset.assign(iterations=[1500, 3000])
    assert convergence_counts(longer, base_iterations=1500)["lengthened"] == "ramp on omniglot (3,000 iterations)"
    assert convergence_counts(longer, base_iterations=3000)["lengthened"] == "none"
    assert list(convergence_view(table)["converged"]) == ["yes", "no", "no"]
    assert table["converged"].dtype == bool, "the view is a copy"


def test_curves_by_label_reads_records_and_names_a_run_without_evaluations():
    from types import SimpleNamespace

    from mslib.run.convergence import curves_by_label

    evals = [{"iteration": 0, "val": {"R@1": 0.1}}, {"iteration": 100, "val": {"R@1": 0.4}}]
    records = [SimpleNamespace(label="b", run_id="r1", extra={"evals": evals}),
               SimpleNamespace(label="a", run_id="r2", extra={"evals": evals[:1]}),
               SimpleNamespace(label="b", run_id="r3", extra={"evals": evals})]
    got = curves_by_label(records)
    assert list(got) == ["b", "a"] and got["b"] == [[(0, 0.1), (100, 0.4)]] * 2 and got["a"] == [[(0, 0.1)]]
    with pytest.raises(ValueError, match=r"run r4 \(c\) has no periodic evaluations"):
        curves_by_label([SimpleNamespace(label="c", run_id="r4", extra={})])


class SlowOrFastFit:
    """Stands in for trainer.fit: validation MAP@R = 0.5·(1 − exp(−t/τ)), τ = 100 for contrastive and 400 for
    triplet, so that at 600 iterations only contrastive has flattened (and triplet has by 2,400)."""

    def __init__(self) -> None:
        self.lengths: list[tuple[str, int, list[int]]] = []

    def __call__(self, cfg, **_):
        from mslib.run.trainer import FitResult
        tau = 100.0 if cfg.loss == "contrastive" else 400.0
        self.lengths.append((cfg.loss, cfg.iterations, list(cfg.milestones)))
        evals = [{"iteration": t, "val": {"MAP@R": 0.5 * (1 - math.exp(-t / tau)) + 0.01 * cfg.seed}}
                 for t in range(0, cfg.iterations + 1, cfg.eval_every)]
        return FitResult(config=cfg.to_dict(), history=[], evals=evals,
                         metrics={"final": {"iteration": cfg.iterations, "test": {"R@1": 0.0}}},
                         timing={"train_seconds": 1.0, "images_per_second": 80.0}, completed=True,
                         iteration=cfg.iterations, model=None)


def test_run_until_converged_lengthens_only_the_labels_still_rising(tmp_path):
    from mslib.run.config import TrainConfig
    from mslib.run.records import RunStore
    from mslib.run.runs import lengthened, run_until_converged

    base = TrainConfig(iterations=600, milestones=[400], val_fraction=0.25, eval_every=100, loss_params={})
    configs = {"fast": TrainConfig(**{**base.to_dict(), "loss": "contrastive"}),
               ("slow", "tuple label"): TrainConfig(**{**base.to_dict(), "loss": "triplet"})}
    fit = SlowOrFastFit()
    records = run_until_converged(configs, [0, 1], metric="MAP@R", tolerance=0.01, longer=(2, 4, 8), jobs=1,
                                  store=RunStore(tmp_path), fit=fit)
    # by hand, the gain over [0.75 T, T] is 0.5·(e^(−0.75 T/τ) − e^(−T/τ)): triplet 0.051 at T = 600, 0.028 at
    # 1,200, 0.0043 at 2,400 (converged: no 4,800); contrastive 0.0043 at 600
    assert [(r.label, r.seed, r.params["iterations"]) for r in records] == [
        ("fast", 0, 600), ("fast", 1, 600), (("slow", "tuple label"), 0, 2400), (("slow", "tuple label"), 1, 2400)]
    assert fit.lengths == [("contrastive", 600, [400])] * 2 + [("triplet", 600, [400])] * 2 + [
        ("triplet", 1200, [800])] * 2 + [("triplet", 2400, [1600])] * 2
    again = run_until_converged(configs, [0, 1], metric="MAP@R", tolerance=0.01, longer=(2, 4, 8), jobs=1,
                                store=RunStore(tmp_path), fit=fit)
    assert len(fit.lengths) == 8 and all(r.reused for r in again), "a second call loads every run"
    assert [r.params["iterations"] for r in again] == [r.params["iterations"] for r in records]
    once = run_until_converged(configs, [0, 1], metric="MAP@R", tolerance=0.01, longer=(2,), jobs=1,
                               store=RunStore(tmp_path), fit=fit)
    assert [r.params["iterations"] for r in once] == [600, 600, 1200, 1200], "still rising: its last length"
    assert lengthened(base, 3).iterations == 1800 and lengthened(base, 3).milestones == [1200]
    with pytest.raises(ValueError, match="integer ≥ 2"):
        lengthened(base, 1)


def test_run_until_converged_jointly_lengthens_every_label_while_one_still_rises(tmp_path):
    from mslib.run.config import TrainConfig
    from mslib.run.records import RunStore
    from mslib.run.runs import run_until_converged

    base = TrainConfig(iterations=600, milestones=[400], val_fraction=0.25, eval_every=100, loss_params={})
    configs = {"baseline": TrainConfig(**{**base.to_dict(), "loss": "contrastive"}),
               "variant": TrainConfig(**{**base.to_dict(), "loss": "triplet"})}
    fit = SlowOrFastFit()
    records = run_until_converged(configs, [0], metric="MAP@R", tolerance=0.01, longer=(2, 4, 8), jointly=True,
                                  jobs=1, store=RunStore(tmp_path), fit=fit)
    # the baseline has flattened at 600 but runs as long as the variant, which flattens at 2,400 (as above)
    assert [(r.label, r.params["iterations"]) for r in records] == [("baseline", 2400), ("variant", 2400)]
    assert [(loss, n) for loss, n, _ in fit.lengths] == [
        ("contrastive", 600), ("triplet", 600), ("contrastive", 1200), ("triplet", 1200),
        ("contrastive", 2400), ("triplet", 2400)]
    flat = run_until_converged({"baseline": configs["baseline"]}, [0], metric="MAP@R", tolerance=0.01,
                               jointly=True, jobs=1, store=RunStore(tmp_path), fit=fit)
    assert [r.params["iterations"] for r in flat] == [600], "nothing rising: nothing lengthened"


def test_criterion_reads_a_chapters_setting_in_points():
    from mslib.run.convergence import criterion, lengthening
    assert criterion({"metric": "MAP@R", "tolerance": 1.5, "fraction": 0.25}) == {
        "metric": "MAP@R", "tolerance": 0.015, "fraction": 0.25, "longer": ()}
    setting = {"metric": "R@1", "tolerance": 1.0, "fraction": 0.5, "longer": [2, 4]}
    assert criterion(setting) == {"metric": "R@1", "tolerance": 0.01, "fraction": 0.5, "longer": (2, 4)}
    assert lengthening(setting) == "2× and then 4×"
    assert lengthening({**setting, "longer": []}) == "never"
    with pytest.raises(ValueError, match="fraction must be in"):
        criterion({"metric": "MAP@R", "tolerance": 1.0, "fraction": 1.0})


def test_still_rising_and_undecided_comparisons_against_a_plain_loop():
    from types import SimpleNamespace

    from mslib.run.convergence import criterion, still_rising, undecided_comparisons

    def record(label, curve, memory=0):
        evals = [{"iteration": t, "val": {"MAP@R": v}} for t, v in curve]
        return SimpleNamespace(label=label, run_id=f"{label}-{memory}-{len(curve)}", extra={"evals": evals},
                               params={"memory_size": memory})

    flat, ramp = _saturating(100.0), [(t, 0.5 * t / 1500) for t in ITERS]  # ramp: 12.5 points over its last quarter
    nearly = [(t, v + 0.01 * t / 1500) for t, v in flat]  # 0.25 points over the last quarter: under 1 point
    records = [record("flat", flat), record("flat", nearly), record("mixed", flat), record("mixed", ramp),
               record("ramp", ramp), record("flat", ramp, memory=1)]
    crit = criterion({"metric": "MAP@R", "tolerance": 1.0, "fraction": 0.25})
    def mean(*curves):
        return [(t, float(np.mean([c[i][1] for c in curves]))) for i, (t, _) in enumerate(curves[0])]

    mean_gain = {"flat": late_gain(mean(flat, nearly, ramp)), "mixed": late_gain(mean(flat, ramp)),
                 "ramp": late_gain(ramp)}
    assert mean_gain["flat"] > 0.01 > late_gain(flat)  # the memory run, pooled by label, lifts flat over 1 point
    assert still_rising(records, crit) == [k for k, g in mean_gain.items() if g >= 0.01] == ["flat", "mixed", "ramp"]
    by_memory = still_rising(records, crit, by=lambda r: (r.label, r.params["memory_size"]))
    assert by_memory == [("mixed", 0), ("ramp", 0), ("flat", 1)]
    comparisons = {"mixed − flat": (("mixed", 0), ("flat", 0)), "flat memory": (("flat", 1), ("flat", 0)),
                   "both": (("ramp", 0), ("mixed", 0))}
    assert undecided_comparisons(comparisons, by_memory) == {"mixed − flat": "mixed, 0 still rising",
                                                             "flat memory": "flat, 1 still rising",
                                                             "both": "ramp, 0 and mixed, 0 still rising"}
    assert undecided_comparisons({"a − b": ("a", "b")}, ["ramp"]) == {}
    with pytest.raises(ValueError, match="has no periodic evaluations"):
        still_rising([SimpleNamespace(label="c", run_id="r4", extra={})], crit)
