"""mslib.run.stats (Student-t intervals, summaries, paired differences), mslib.run.runs.run_grid (resumable,
staleness-aware sweeps) and the book's designs in mslib.experiments."""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from scipy import stats

from mslib.experiments import LOSS_SETTINGS, NPAIR_SCALE
from mslib.losses import LOSS_SPECS, build_loss
from mslib.run.config import TrainConfig
from mslib.run.records import RunRecord, RunStore
from mslib.run.runs import run_grid
from mslib.run.stats import ci95, format_summary, summarise
from mslib.run.trainer import FitResult


@pytest.mark.parametrize("n", [2, 3, 5, 10])
def test_ci95_matches_scipy_t_interval(n: int) -> None:
    values = np.random.default_rng(n).normal(80, 2, size=n)
    lo, hi = stats.t.interval(0.95, df=n - 1, loc=values.mean(), scale=stats.sem(values))
    mean, half = ci95(list(values))
    assert mean == pytest.approx(values.mean(), rel=1e-12)
    assert half == pytest.approx((hi - lo) / 2, rel=1e-10)


def test_ci95_of_one_value_has_no_interval_and_of_none_is_an_error() -> None:
    mean, half = ci95([71.5])
    assert mean == 71.5 and math.isnan(half)
    with pytest.raises(ValueError):
        ci95([])


def record(**fields: object) -> RunRecord:
    """A run record with placeholder provenance and the given fields."""
    base = dict(run_id="r", params={}, metrics={}, seed=0, code_hash="c0de", git_commit="0123456789abcdef",
                mslib_version="0", versions={"torch": "2"}, hardware={}, notebook=None, started="", finished="",
                wall_time_s=600.0, images_per_second=None, extra={})
    return RunRecord(**{**base, **fields})


def _record(label: object, seed: int, r1: float, mapr: float = 0.3) -> RunRecord:
    return record(label=label, seed=seed, params={"loss": label, "seed": seed},
                  metrics={"final": {"iteration": 10, "test": {"R@1": r1, "MAP@R": mapr}}})


def test_summarise_means_intervals_and_order() -> None:
    recs = [_record("b", 0, 0.80), _record("a", 0, 0.50), _record("b", 1, 0.90), _record("b", 2, 0.85)]
    table = summarise(recs, metrics=["R@1", "MAP@R"])
    assert list(table.index) == ["b", "a"]
    assert table.loc["b", "R@1"] == pytest.approx(85.0)
    lo, hi = stats.t.interval(0.95, df=2, loc=85.0, scale=stats.sem([80.0, 90.0, 85.0]))
    assert table.loc["b", "R@1 ci"] == pytest.approx((hi - lo) / 2)
    assert table.loc["a", "n"] == 1 and math.isnan(table.loc["a", "R@1 ci"])
    shown = format_summary(table, metrics=["R@1"])
    assert shown.loc["a", "R@1"] == "50.0 (n=1, no CI)"
    assert shown.loc["b", "R@1"] == f"85.0 ± {(hi - lo) / 2:.1f}"
    by_param = summarise(recs, by="loss", metrics=["R@1"])
    assert list(by_param.index) == ["b", "a"]
    with pytest.raises(KeyError, match="'dim' is neither a record field nor a parameter"):
        summarise(recs, by="dim")


def test_summarise_refuses_a_run_counted_twice() -> None:
    with pytest.raises(ValueError, match="same seed"):
        summarise([_record("a", 0, 0.5), _record("a", 0, 0.6)])


def test_loss_settings_build() -> None:
    for label, (name, params) in LOSS_SETTINGS.items():
        assert LOSS_SPECS[name].kind == "pair", label
        build_loss(name, **params)


def test_loss_settings_are_the_compared_forms() -> None:
    # the comparison uses the lifted structure form the paper analyses and a scaled N-pair (unit cosine with s = 1
    # leaves N-pair's softmax near uniform)
    names = [name for name, _ in LOSS_SETTINGS.values()]
    assert "generalized_lifted_structure" in names and "lifted_structure" not in names
    (npair,) = [params for name, params in LOSS_SETTINGS.values() if name == "npair"]
    assert npair["scale"] == NPAIR_SCALE > 1


# ------------------------------------------------------------------------------------ resumable sweeps
class CountingFit:
    """Stands in for mslib.run.trainer.fit (run_grid's ``fit=``): records which (loss, seed) ran; can fail on the
    n-th call."""

    def __init__(self, fail_on: int | None = None) -> None:
        self.calls: list[tuple[str, int]] = []
        self.fail_on = fail_on

    def __call__(self, cfg: TrainConfig, **kwargs) -> FitResult:
        if self.fail_on is not None and len(self.calls) + 1 == self.fail_on:
            raise KeyboardInterrupt("simulated interruption")
        self.calls.append((cfg.loss, cfg.seed))
        r1 = 0.5 + 0.01 * cfg.seed + (0.1 if cfg.loss == "multi_similarity" else 0.0)
        return FitResult(config=cfg.to_dict(), history=[], evals=[],
                         metrics={"final": {"iteration": cfg.iterations, "test": {"R@1": r1}}},
                         timing={"train_seconds": 1.0, "images_per_second": 80.0}, completed=True,
                         iteration=cfg.iterations, model=torch.nn.Identity())


CONFIGS = {"ms": TrainConfig(loss="multi_similarity", iterations=5),
           "contrastive": TrainConfig(loss="contrastive", loss_params={}, iterations=5)}


@pytest.fixture()
def sweep(tmp_path: Path):
    code = tmp_path / "chapter.py"
    code.write_text("VERSION = 1\n")
    results = tmp_path / "results"

    def run(fake: CountingFit) -> list[RunRecord]:
        return run_grid(CONFIGS, seeds=[0, 1], store=RunStore(results), code_paths=[code], jobs=1, fit=fake)

    return run, code, results


def test_rerun_reuses_every_record(sweep) -> None:
    run, _, results = sweep
    first = CountingFit()
    recs = run(first)
    assert sorted(first.calls) == sorted([("multi_similarity", 0), ("multi_similarity", 1), ("contrastive", 0),
                                          ("contrastive", 1)])
    assert not any(r.reused for r in recs) and len(list(results.glob("*.json"))) == 4
    assert [r.label for r in recs] == ["ms", "ms", "contrastive", "contrastive"]
    second = CountingFit()
    again = run(second)
    assert second.calls == [] and all(r.reused for r in again)
    assert [r.run_id for r in again] == [r.run_id for r in recs]
    assert again == recs, "the loaded records equal the written ones (label and reuse aside)"
    table = summarise(again, metrics=["R@1"])
    assert table.loc["ms", "R@1"] == pytest.approx(60.5) and table.loc["contrastive", "n"] == 2


def test_deleting_one_record_recomputes_only_that_run(sweep) -> None:
    run, _, results = sweep
    recs = run(CountingFit())
    victim = next(r for r in recs if r.label == "contrastive" and r.seed == 1)
    (results / f"{victim.run_id}.json").unlink()
    fake = CountingFit()
    again = run(fake)
    assert fake.calls == [("contrastive", 1)]
    assert [r.reused for r in again] == [r.run_id != victim.run_id for r in again]


def test_interrupted_sweep_resumes_with_the_missing_runs(sweep) -> None:
    run, _, _ = sweep
    with pytest.raises(KeyboardInterrupt):
        run(CountingFit(fail_on=3))
    fake = CountingFit()
    recs = run(fake)
    assert fake.calls == [("contrastive", 0), ("contrastive", 1)]
    assert [r.reused for r in recs] == [True, True, False, False]


def test_changed_code_makes_every_record_stale(sweep) -> None:
    run, code, _ = sweep
    old = run(CountingFit())
    code.write_text("VERSION = 2\n")
    fake = CountingFit()
    new = run(fake)
    assert len(fake.calls) == 4 and not any(r.reused for r in new)
    assert {r.code_hash for r in new}.isdisjoint({r.code_hash for r in old})


def test_run_grid_needs_a_seed() -> None:
    with pytest.raises(ValueError, match="seed"):
        run_grid(CONFIGS, seeds=[])


def test_real_tiny_sweep_end_to_end(tmp_path: Path) -> None:
    cfg = TrainConfig(dataset_options={"classes": 16, "images_per_class": 8}, iterations=3, p=4, k=2,
                      embedding_dim=8, ks=[1, 2], log_every=1)
    recs = run_grid({"ms": cfg}, seeds=[0], store=RunStore(tmp_path))
    assert recs[0].params["iterations"] == 3 and 0.0 <= recs[0].metric("R@1") <= 1.0
    assert run_grid({"ms": cfg}, seeds=[0], store=RunStore(tmp_path))[0].reused


def test_provenance_line_counts_runs_and_reuse(sweep) -> None:
    from mslib.experiments import provenance_line

    run, _, _ = sweep
    run(CountingFit())
    line = provenance_line(run(CountingFit()))
    assert line.startswith("4 runs (seeds 0, 1; 4 loaded from records, 0 trained now)")
    assert provenance_line([]) == "no run records"


def test_provenance_line_names_its_sets_and_renders_its_paths_in_markdown(sweep) -> None:
    import dataclasses
    import re

    from mslib.experiments import provenance_line

    run, _, _ = sweep
    recs = run(CountingFit())
    one = provenance_line([dataclasses.replace(r, reused=True, record_set="set-a") for r in recs])
    two = provenance_line([dataclasses.replace(r, reused=True, record_set=f"set-{i % 2}")
                           for i, r in enumerate(recs)])
    assert "(4 from the committed record set set-a)" in one
    assert "(4 from the committed record sets set-0, set-1)" in two
    # every <...> sits inside a code span, so Markdown cannot take it for an HTML tag
    outside_code = re.sub(r"`[^`]*`", "", one)
    assert "<" not in outside_code and "`results/sets/<set>/<run_id>.json`" in one
    assert "results/sets" not in provenance_line(recs)


def test_plot_with_ci_draws_error_bars_only_where_there_is_an_interval() -> None:
    import matplotlib

    matplotlib.use("Agg")
    from mslib import viz

    recs = [_record("a", 0, 0.5), _record("a", 1, 0.6), _record("b", 0, 0.7)]
    summary = summarise(recs, metrics=["R@1"])
    fig = viz.plot_with_ci(summary, "R@1")
    from matplotlib.container import BarContainer

    bars = next(c for c in fig.axes[0].containers if isinstance(c, BarContainer))
    assert [round(b.get_height(), 6) for b in bars] == [55.0, 70.0]
    segments = bars.errorbar.lines[2][0].get_segments()
    lengths = [abs(s[1][1] - s[0][1]) for s in segments]
    assert lengths[0] == pytest.approx(2 * summary.loc["a", "R@1 ci"]) and lengths[1] == 0.0
    numeric = summarise([_record(2.0, 0, 0.5), _record(8.0, 0, 0.6)], metrics=["R@1"])
    fig = viz.plot_with_ci(numeric, "R@1", kind="line", marks={2.0: "paper"}, logx=True)
    assert list(fig.axes[0].lines[0].get_xdata()) == [2.0, 8.0]
    with pytest.raises(ValueError, match="kind"):
        viz.plot_with_ci(numeric, "R@1", kind="pie")
    viz.plt.close("all")


def test_images_processed_counts_the_official_evaluations() -> None:
    from mslib.experiments import images_processed

    cfg = TrainConfig(iterations=3000, p=16, k=5, eval_every=200, official_test_selection=True)
    # before training, after 200, 400, ..., 2800 (fit skips the periodic one at the last iteration), and the final
    assert images_processed(cfg, 5924) == (16, 3000 * 80 + 16 * 5924)
    assert images_processed(TrainConfig(iterations=600), 100) == (1, 600 * 80 + 100)
    # with validation the selected model is tested too (the count fit runs: test_train checks it against fit)
    assert images_processed(TrainConfig(iterations=600, val_fraction=0.2), 100) == (2, 600 * 80 + 2 * 100)


def _paper_record(run_id: str, dataset: str, code: str, r1: float) -> RunRecord:
    return record(run_id=run_id, code_hash=code,
                  params={"dataset": dataset, "embedding_dim": 512, "iterations": 3000, "backbone": "bninception"},
                  metrics={"final": {"iteration": 3000, "test": {"R@1": r1}},
                           "official_best_test": {"iteration": 2400, "test": {"R@1": r1 + 0.01}}})


def test_paper_runs_table_fills_from_fresh_records_only() -> None:
    from mslib.experiments import paper_runs_table

    glyph = record(run_id="g", code_hash="new", params={"dataset": "glyphs", "embedding_dim": 64, "iterations": 600},
                   metrics={"final": {"iteration": 600, "test": {"R@1": 0.9}}})
    empty = paper_runs_table([glyph], current={"new"})
    assert list(empty["status"]) == ["not run yet"]
    recs = [_paper_record("r1", "cub200", "new", 0.651), _paper_record("r2", "cars196", "old", 0.83),
            glyph]
    table = paper_runs_table(recs, current={"new"})
    assert list(table.index) == ["r1"]
    assert table.loc["r1", "R@1 (final)"] == 65.1 and table.loc["r1", "paper R@1"] == "65.7 [P]"
    assert table.loc["r1", "R@1 (official protocol: best on test)"] == 66.1
    stale = paper_runs_table(recs, current={"new"}, show_stale=True)
    assert stale.loc["r2", "status"] == "stale (older code)" and stale.loc["r2", "paper R@1"] == "84.1 [S2]"
    resnet = _paper_record("r3", "cub200", "new", 0.6)
    resnet.params["backbone"] = "resnet50"
    assert paper_runs_table([resnet], current={"new"}).loc["r3", "paper R@1"] == "not published"


# ------------------------------------------------------------------------------------ paired differences
def test_paired_differences_match_scipys_paired_t_test() -> None:
    from mslib.run.stats import paired_differences

    rng = np.random.default_rng(7)
    seeds = [3, 0, 1, 2, 4]
    base = rng.uniform(0.5, 0.7, size=5)
    shift = {"small": 0.004, "large": 0.05}
    noise = {k: rng.normal(0, 0.01, size=5) for k in shift}
    recs = [_record("base", s, b) for s, b in zip(seeds, base, strict=True)]
    for k in shift:  # listed in another seed order than the baseline: pairing is by seed, not position
        recs += [_record(k, s, b + shift[k] + e) for s, b, e in reversed(list(zip(seeds, base, noise[k],
                                                                                  strict=True)))]
    table = paired_differences(recs, "base")
    assert list(table.index) == ["small", "large"]
    for k in shift:
        variant, reference = 100 * (base + shift[k] + noise[k]), 100 * base
        test = stats.ttest_rel(variant, reference)
        lo, hi = test.confidence_interval(0.95)
        assert table.loc[k, "difference"] == pytest.approx(np.mean(variant - reference), rel=1e-9)
        assert table.loc[k, "ci"] == pytest.approx((hi - lo) / 2, rel=1e-9)
        assert table.loc[k, "excludes 0"] == bool(test.pvalue < 0.05) and table.loc[k, "n"] == 5
    assert not table.loc["small", "excludes 0"] and table.loc["large", "excludes 0"]
    unpaired = max(summarise(recs, metrics=["R@1"])["R@1 ci"])
    assert max(table["ci"]) < unpaired, "the shared seeds' spread cancels in the paired interval"


def test_paired_differences_need_the_baselines_seeds() -> None:
    from mslib.run.stats import paired_differences

    recs = [_record("base", 0, 0.5), _record("base", 1, 0.6), _record("v", 0, 0.55), _record("w", 0, 0.5),
            _record("w", 2, 0.6)]
    with pytest.raises(ValueError, match=r"'v' has seeds \[0\], the baseline 'base' \[0, 1\]"):
        paired_differences(recs, "base")
    with pytest.raises(KeyError, match="no records of the baseline 'MS'"):
        paired_differences(recs, "MS")
    one = paired_differences(recs[:3] + [_record("v", 1, 0.62)], "base")
    assert one.loc["v", "per seed"] == pytest.approx((5.0, 2.0)) and one.loc["v", "n"] == 2


def test_compare_pairs_takes_each_comparison_against_its_own_baseline() -> None:
    from mslib.run.stats import compare_pairs, run_minutes

    r1 = {("a", 0): 0.50, ("a", 1): 0.60, ("a+", 0): 0.53, ("a+", 1): 0.64, ("b", 0): 0.70, ("b", 1): 0.79}
    recs = [dataclasses.replace(_record(k, s, v), run_id=f"{k}{s}") for (k, s), v in r1.items()]
    table = compare_pairs(recs, {"mining on a": ("a+", "a"), "b over a": ("b", "a")})
    assert list(table.index) == ["mining on a", "b over a"]
    assert table.loc["mining on a", "per seed"] == pytest.approx((3.0, 4.0))
    assert table.loc["b over a", "difference"] == pytest.approx(19.5)
    half = stats.t.ppf(0.975, 1) * np.std([3.0, 4.0], ddof=1) / math.sqrt(2)
    assert table.loc["mining on a", "ci"] == pytest.approx(half)
    assert list(table["excludes 0"]) == [False, True]
    with pytest.raises(KeyError, match="'c'"):
        compare_pairs(recs, {"c": ("c", "a")})
    # a run shared by two labels counts once
    assert run_minutes([*recs, dataclasses.replace(recs[0], label="again")]) == pytest.approx(6 * 600 / 60)


def test_ms_config_is_the_base_with_the_ms_loss_and_changes() -> None:
    from mslib.experiments import ms_config

    base = TrainConfig(loss="contrastive", loss_params={}, iterations=7)
    assert ms_config(base) == TrainConfig(iterations=7), "no change: the TrainConfig default (MS, preset pml)"
    assert ms_config(base, epsilon=None).loss_params == {"alpha": 2.0, "beta": 50.0, "lam": 0.5, "epsilon": None}
    assert ms_config(base, beta=10.0).loss_params["beta"] == 10.0 and base.loss == "contrastive"


def test_proxy_defaults_are_the_pml_defaults() -> None:
    """Proxy-Anchor's α = 32, δ = 0.1 and SoftTriple's λ = 20, γ = 0.1, K = 10 (book/sources.md#src-pml)."""
    from mslib.experiments import proxy_defaults

    assert proxy_defaults("proxy_anchor") == "margin=0.1, alpha=32.0"
    assert proxy_defaults("soft_triple") == "centers_per_class=10, la=20.0, gamma=0.1, margin=0.01"
    with pytest.raises(KeyError):
        proxy_defaults("contrastive")


# ------------------------------------------------------------------------------------ chapter 06's designs
def test_loss_configs_change_only_the_loss() -> None:
    from mslib.experiments import loss_configs

    base = TrainConfig(iterations=7, seed=3)
    configs = loss_configs(base)
    assert list(configs) == list(LOSS_SETTINGS)
    for label, cfg in configs.items():
        name, params = LOSS_SETTINGS[label]
        assert cfg.loss == name
        differing = {k for k, v in cfg.to_dict().items() if v != base.to_dict()[k]}
        assert differing <= {"loss", "loss_params"}, (label, differing)


def test_tuning_configs_are_the_comparison_and_the_proxies_with_their_own_spaces() -> None:
    from mslib.experiments import PROXY_SETTINGS, loss_configs, tuning_configs

    base = TrainConfig(iterations=7, seed=3, val_fraction=0.25)
    grid = tuning_configs(base)
    assert list(grid) == [*LOSS_SETTINGS, *PROXY_SETTINGS]
    assert {label: cfg for label, (cfg, _) in grid.items() if label in LOSS_SETTINGS} == loss_configs(base)
    for label, (cfg, space) in grid.items():
        names = [p.name for p in space]
        assert names[0] == "lr" and set(names[1:]) <= set(LOSS_SPECS[cfg.loss].defaults), label
        differing = {k for k, v in cfg.to_dict().items() if v != base.to_dict()[k]}
        assert differing <= {"loss", "loss_params"}, (label, differing)
    assert "epsilon" not in [p.name for p in grid["MS (weighting only)"][1]]  # ε stays unset: no mining
    assert "epsilon" in [p.name for p in grid["MS (mining + weighting)"][1]]
    assert "scale" in [p.name for p in grid["lifted structure (generalised)"][1]]
    assert grid["Proxy-NCA"][0].loss == "proxy_nca" and grid["Proxy-NCA"][0].loss_params == {}


def test_on_datasets_changes_only_the_data() -> None:
    from mslib.experiments import on_datasets

    base = TrainConfig(dataset_options={"classes": 40}, data_root=None, iterations=7)
    bases = on_datasets(base, {"omniglot": {"image_size": 32}})
    assert list(bases) == ["glyphs", "omniglot"] and bases["glyphs"] is base
    other = bases["omniglot"]
    assert other.dataset == "omniglot" and other.dataset_options == {"image_size": 32}
    differing = {k for k, v in other.to_dict().items() if v != base.to_dict()[k]}
    assert differing == {"dataset", "dataset_options"}
    with pytest.raises(ValueError, match="'glyphs', the chapter's own dataset"):
        on_datasets(base, {"glyphs": {}})


def test_with_data_moves_a_variant_to_another_dataset_and_changes_nothing_else() -> None:
    from mslib.experiments import on_datasets, with_data

    base = TrainConfig(dataset_options={"classes": 40}, iterations=7)
    there = on_datasets(base, {"omniglot": {"image_size": 32}})["omniglot"]
    variant = dataclasses.replace(base, loss="contrastive", loss_params={"pos_margin": 0.9}, lr=3e-4)
    moved = with_data(variant, there)
    assert moved == dataclasses.replace(there, loss="contrastive", loss_params={"pos_margin": 0.9}, lr=3e-4)
    differing = {k for k, v in moved.to_dict().items() if v != variant.to_dict()[k]}
    assert differing == {"dataset", "dataset_options"}
    assert with_data(base, base) == base


def test_paired_family_is_one_holm_family_over_the_datasets() -> None:
    from mslib.experiments import paired_family
    from mslib.run.significance import holm

    r1 = {"a": {("base", 0): 0.50, ("base", 1): 0.60, ("base", 2): 0.55, ("v", 0): 0.53, ("v", 1): 0.64,
                ("v", 2): 0.56},
          "b": {("base", 0): 0.70, ("base", 1): 0.72, ("base", 2): 0.71, ("v", 0): 0.60, ("v", 1): 0.65,
                ("v", 2): 0.61}}
    runs = {ds: [_record(k, s, v) for (k, s), v in values.items()] for ds, values in r1.items()}
    family = paired_family(runs, "base")
    assert list(family.index) == ["a: v", "b: v"]
    diffs = {ds: [100 * (values[("v", s)] - values[("base", s)]) for s in range(3)] for ds, values in r1.items()}
    for ds, d in diffs.items():
        assert family.loc[f"{ds}: v", "difference"] == pytest.approx(np.mean(d))
    p = [stats.ttest_rel(np.array(d), np.zeros(3)).pvalue for d in diffs.values()]
    assert list(family["Holm p"]) == pytest.approx(holm(p))
    assert family.attrs["comparisons"] == 2
    one_seed = paired_family({"a": [_record("base", 0, 0.5), _record("v", 0, 0.6)]}, "base")
    assert one_seed.loc["a: v", "verdict"] == "not tested (1 seed)"


def test_paired_family_leaves_a_comparison_with_a_still_rising_label_undecided() -> None:
    from mslib.experiments import paired_family
    from mslib.run.convergence import criterion

    def run(label: str, seed: int, r1: float, slope: float) -> RunRecord:  # validation MAP@R: flat, or rising
        evals = [{"iteration": t, "val": {"MAP@R": 0.4 + slope * t / 1000}} for t in range(0, 1001, 100)]
        return dataclasses.replace(_record(label, seed, r1), run_id=f"{label}{seed}", extra={"evals": evals})

    def runs_of(label: str, r1: list[float], slope: float) -> list[RunRecord]:
        return [run(label, seed, value, slope) for seed, value in enumerate(r1)]

    runs = {"a": [*runs_of("base", [0.50, 0.51, 0.52], 0.0), *runs_of("fast", [0.70, 0.72, 0.71], 0.0),
                  *runs_of("slow", [0.30, 0.27, 0.29], 0.08)],  # slow rises 2 points over its last quarter
            "b": [*runs_of("base", [0.50, 0.50, 0.50], 0.08), *runs_of("fast", [0.60, 0.62, 0.61], 0.0)]}
    crit = criterion({"metric": "MAP@R", "tolerance": 1.0, "fraction": 0.25})
    family = paired_family(runs, "base", convergence=crit)
    assert family.loc["a: fast", "verdict"] == "separated"
    assert family.loc["a: slow", "verdict"] == "not decided (slow still rising)"
    assert family.loc["b: fast", "verdict"] == "not decided (base still rising)"  # the baseline rises there
    plain = paired_family(runs, "base")
    assert list(plain["verdict"]) == ["separated"] * 3  # without the criterion each row would be decided
    assert np.allclose(family["Holm p"].astype(float), plain["Holm p"].astype(float))
