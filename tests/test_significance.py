"""mslib.run.significance against independent references: scipy's paired t-test and permutation test, plain loops
over sign patterns and resamples, closed testing for Holm, and Monte Carlo simulations of the t-test's power."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
from scipy import stats

from mslib.run import significance as sig


def sign_flip_loop(d):
    """Two-sided sign-flip p-value by a plain loop over every sign pattern (integer data: sums are exact)."""
    observed = abs(sum(d))
    patterns = list(itertools.product((1, -1), repeat=len(d)))
    return sum(abs(sum(s * x for s, x in zip(signs, d, strict=True))) >= observed - 1e-9
               for signs in patterns) / len(patterns)


def holm_closed_testing(p):
    """Holm's adjusted p-values as closed testing with Bonferroni tests of every intersection hypothesis: p̃_i is the
    largest, over the index sets S containing i, of min(1, |S| · min_{j in S} p_j)."""
    m = len(p)
    return [max(min(1.0, len(s) * min(p[j] for j in s))
                for size in range(1, m + 1) for s in itertools.combinations(range(m), size) if i in s)
            for i in range(m)]


def simulated_power(effect, sd, n, level, draws=20_000, seed=0):
    """Share of ``draws`` simulated designs (n normal differences) whose paired t statistic exceeds the two-sided
    critical value at ``level``: the t-test's power, without the noncentral t."""
    x = np.random.default_rng(seed).normal(effect, sd, size=(draws, n))
    t = x.mean(axis=1) / (x.std(axis=1, ddof=1) / math.sqrt(n))
    return float(np.mean(np.abs(t) > stats.t.ppf(1 - level / 2, n - 1)))


# ------------------------------------------------------------------ paired_test
@pytest.mark.parametrize(("n", "alpha"), [(2, 0.05), (3, 0.05), (5, 0.1), (12, 0.01)])
def test_t_test_and_interval_match_scipy_ttest_rel(n, alpha):
    rng = np.random.default_rng(n)
    baseline = rng.normal(60, 3, size=n)
    variant = baseline + rng.normal(0.8, 1.2, size=n)
    got = sig.paired_test(variant - baseline, alpha=alpha)
    want = stats.ttest_rel(variant, baseline)
    ci = want.confidence_interval(1 - alpha)
    assert got.n == n and got.alpha == alpha
    assert got.mean == pytest.approx(np.mean(variant - baseline), rel=1e-12)
    assert got.sd == pytest.approx(np.std(variant - baseline, ddof=1), rel=1e-12)
    assert got.t_p == pytest.approx(want.pvalue, rel=1e-9)
    assert got.mean - got.half_width == pytest.approx(ci.low, rel=1e-9, abs=1e-12)
    assert got.mean + got.half_width == pytest.approx(ci.high, rel=1e-9, abs=1e-12)


@pytest.mark.parametrize("seed", range(6))
def test_sign_flip_p_matches_a_plain_loop_and_scipy_permutation_test(seed):
    rng = np.random.default_rng(seed)
    n = 3 + seed  # 3 .. 8 seeds
    d = rng.integers(-4, 6, size=n).astype(float)  # integers: many signed sums tie with the observed one exactly
    if np.ptp(d) == 0:
        d[0] += 1
    got = sig.paired_test(d)
    assert got.sign_flip_p == pytest.approx(sign_flip_loop(d.tolist()), abs=1e-15)
    scipy_p = stats.permutation_test((d,), np.mean, permutation_type="samples", alternative="two-sided",
                                     n_resamples=np.inf).pvalue
    assert got.sign_flip_p == pytest.approx(scipy_p, abs=1e-12)
    assert got.sign_flip_method == f"exact: all 2^{n} = {2**n} sign patterns"


def test_sign_flip_p_cannot_go_below_two_over_two_to_the_n():
    """Three seeds all of one sign: the most extreme outcome the sign-flip test knows, p = 2/8."""
    got = sig.paired_test([1.1, 2.5, 0.4])
    assert got.sign_flip_p == sign_flip_loop([1.1, 2.5, 0.4]) == got.sign_flip_min_p == 0.25
    assert got.t_p < got.sign_flip_p
    assert sig.paired_test([1.0, 2.0, 1.5, 3.0, 2.2]).sign_flip_min_p == 2 / 32


def test_sign_flip_monte_carlo_beyond_the_exact_limit(monkeypatch):
    """With the exact limit lowered to 8 seeds, 12 seeds take the Monte Carlo path: within 4.5 binomial standard
    errors (+ the 1/(1 + draws) offset) of the exact loop over all 4,096 patterns, and reproducible by seed."""
    monkeypatch.setattr(sig, "EXACT_SIGN_FLIP_MAX_N", 8)
    d = [3, -1, 2, 2, -2, 1, 4, -3, 1, 0.5, 2, -1]
    exact = sign_flip_loop(d)
    got = sig.paired_test(d, draws=40_000, seed=5)
    assert got.sign_flip_method.startswith("Monte Carlo: 40000 random sign patterns")
    assert got.sign_flip_method.endswith("seed 5")
    assert abs(got.sign_flip_p - exact) <= 4.5 * math.sqrt(exact * (1 - exact) / 40_000) + 1 / 40_001
    assert 0.05 < exact < 0.95  # a p-value in the middle, where the Monte Carlo error is largest
    assert sig.paired_test(d, draws=40_000, seed=5) == got
    assert sig.paired_test(d, draws=40_000, seed=6).sign_flip_p != got.sign_flip_p


def test_bootstrap_percentiles_match_the_exact_bootstrap_distribution():
    """Five seeds have 5^5 = 3,125 equally likely resamples: the percentile bracket from 10,000 random ones lies
    between the exact distribution's 1.5% and 3.5% quantiles (low end) and 96.5% and 98.5% (high end), about six
    binomial standard errors of the empirical CDF either side."""
    d = np.array([0.3, 1.9, -0.7, 1.1, 2.6])
    means = np.sort([np.mean(d[list(idx)]) for idx in itertools.product(range(5), repeat=5)])
    got = sig.paired_test(d)
    assert np.quantile(means, 0.015) <= got.bootstrap_low <= np.quantile(means, 0.035)
    assert np.quantile(means, 0.965) <= got.bootstrap_high <= np.quantile(means, 0.985)
    assert got.bootstrap_method == "percentile bootstrap: 10000 resamples of the 5 seeds, seed 0"
    assert sig.paired_test(d, alpha=0.2).bootstrap_high < got.bootstrap_high


@pytest.mark.parametrize(
    ("diffs", "match"),
    [([1.3], "at least 2 seeds, got 1"), ([], "at least 2 seeds, got 0"), ([0.4, 0.4, 0.4], "zero variance"),
     ([1.0, float("nan"), 2.0], "NaN or Inf"), ([1.0, float("inf")], "NaN or Inf"), ([[1, 2], [3, 4]], "flat"),
     (["a", "b"], "must be numbers")],
)
def test_bad_differences_raise_naming_the_comparison(diffs, match):
    with pytest.raises(ValueError, match=rf"^lr 1e-4 vs 1e-5: .*{match}"):
        sig.paired_test(diffs, name="lr 1e-4 vs 1e-5")


# ------------------------------------------------------------------ holm
def test_holm_textbook_example_by_hand():
    # sorted: 0.005·4 = 0.02, 0.01·3 = 0.03, 0.03·2 = 0.06, 0.04·1 = 0.04 -> raised to 0.06 (step-down monotone)
    assert sig.holm([0.01, 0.04, 0.03, 0.005]) == pytest.approx([0.03, 0.06, 0.06, 0.02], abs=1e-15)
    assert sig.holm([0.5, 0.6]) == [1.0, 1.0]  # 2 · 0.5 capped at 1
    assert sig.holm([0.02]) == [0.02] and sig.holm([]) == []


@pytest.mark.parametrize("seed", range(8))
def test_holm_equals_closed_testing_and_is_monotone(seed):
    rng = np.random.default_rng(seed)
    m = 1 + seed % 6
    p = (rng.uniform(0, 0.2, size=m) ** (1 + seed % 3)).tolist()
    if seed == 7:
        p[0] = p[-1]  # a tie
    got = sig.holm(p)
    assert got == pytest.approx(holm_closed_testing(p), abs=1e-15)
    order = np.argsort(p, kind="stable")
    assert all(np.diff(np.asarray(got)[order]) >= 0)  # monotone in the raw p-values
    assert all(1 >= a >= r for a, r in zip(got, p, strict=True))  # capped, never below the raw p-value


@pytest.mark.parametrize("bad", [[0.1, float("nan")], [0.2, 1.5], [-0.01]])
def test_holm_rejects_values_that_are_not_p_values(bad):
    with pytest.raises(ValueError, match="not in \\[0, 1\\]"):
        sig.holm(bad)


# ------------------------------------------------------------------ power and the minimum detectable effect
@pytest.mark.parametrize(("n", "comparisons", "power"), [(3, 1, 0.8), (3, 6, 0.8), (5, 16, 0.8), (10, 5, 0.5)])
def test_mde_has_the_stated_power_in_a_monte_carlo_simulation(n, comparisons, power):
    """20,000 simulated designs at the MDE: the share the t-test separates is within 0.012 (about 4 binomial
    standard errors) of the requested power."""
    sd = 1.7
    mde = sig.minimum_detectable_effect(sd, n, power=power, comparisons=comparisons)
    assert simulated_power(mde, sd, n, 0.05 / comparisons) == pytest.approx(power, abs=0.012)


def test_power_at_the_old_resolution_matches_a_simulation_and_is_well_below_80_percent():
    """The old 'resolution' (a 95% half-width) with 3 seeds: a true difference of that size is separated with the
    probability power_at gives (checked by simulation), which is far from a reliable separation."""
    sd, n = 1.2, 3
    half_width = stats.t.ppf(0.975, n - 1) * sd / math.sqrt(n)
    power = sig.power_at(half_width, sd, n)
    assert simulated_power(half_width, sd, n, 0.05, seed=1) == pytest.approx(power, abs=0.012)
    assert power < 0.7 and sig.minimum_detectable_effect(sd, n) > 1.3 * half_width


@pytest.mark.parametrize(("alpha", "power", "comparisons"), [(0.05, 0.8, 1), (0.05, 0.9, 16), (0.01, 0.5, 3)])
def test_mde_approaches_the_normal_formula_for_large_n(alpha, power, comparisons):
    """For many seeds the t statistic is nearly normal: MDE ≈ (z_{1−a/2} + z_power) sd / sqrt(n), a = alpha/m."""
    sd, n = 2.0, 20_000
    a = alpha / comparisons
    normal = (stats.norm.ppf(1 - a / 2) + stats.norm.ppf(power)) * sd / math.sqrt(n)
    got = sig.minimum_detectable_effect(sd, n, alpha=alpha, power=power, comparisons=comparisons)
    assert got == pytest.approx(normal, rel=2e-3)


@pytest.mark.parametrize("n", [2, 3, 5, 30])
@pytest.mark.parametrize("comparisons", [1, 6, 16])
def test_power_at_inverts_the_mde_and_equals_the_level_at_zero(n, comparisons):
    mde = sig.minimum_detectable_effect(0.9, n, comparisons=comparisons)
    assert sig.power_at(mde, 0.9, n, comparisons=comparisons) == pytest.approx(0.8, abs=1e-9)
    assert sig.power_at(-mde, 0.9, n, comparisons=comparisons) == pytest.approx(0.8, abs=1e-9)  # two-sided
    assert sig.power_at(0.0, 0.9, n, comparisons=comparisons) == pytest.approx(0.05 / comparisons, rel=1e-9)
    assert sig.minimum_detectable_effect(1.8, n, comparisons=comparisons) == pytest.approx(2 * mde, rel=1e-9)
    powers = [sig.power_at(e, 0.9, n, comparisons=comparisons) for e in np.linspace(0, 2 * mde, 9)]
    assert all(np.diff(powers) > 0)


def test_mde_and_power_bad_input():
    assert math.isnan(sig.minimum_detectable_effect(1.0, 1)) and math.isnan(sig.power_at(1.0, 1.0, 1))
    with pytest.raises(ValueError, match="sd must be a positive"):
        sig.minimum_detectable_effect(0.0, 3)
    with pytest.raises(ValueError, match="sd must be a positive"):
        sig.power_at(1.0, float("nan"), 3)
    with pytest.raises(ValueError, match="power must lie strictly between"):
        sig.minimum_detectable_effect(1.0, 3, power=0.01, comparisons=2)
    with pytest.raises(ValueError, match="comparisons must be a positive integer"):
        sig.minimum_detectable_effect(1.0, 3, comparisons=0)
    with pytest.raises(ValueError, match="alpha must lie"):
        sig.power_at(1.0, 1.0, 3, alpha=1.0)


# ------------------------------------------------------------------ family_table, format_family
def family():
    rng = np.random.default_rng(3)
    return {"clear gain": [2.1, 2.6, 1.8], "clear loss": [-3.0, -3.4, -2.7], "noise": [0.4, -0.9, 0.3],
            "marginal": [1.0, 1.4, 0.9], "many seeds": list(rng.normal(0.5, 1.0, size=25))}


def test_family_table_rows_agree_with_the_single_functions():
    diffs = family()
    table = sig.family_table(diffs)
    assert list(table.index) == list(diffs) and table.attrs == {"alpha": 0.05, "power": 0.8, "comparisons": 5}
    tests = {name: sig.paired_test(d) for name, d in diffs.items()}
    adjusted = sig.holm([t.t_p for t in tests.values()])
    for (name, t), p_holm in zip(tests.items(), adjusted, strict=True):
        row = table.loc[name]
        assert (row["n"], row["difference"], row["ci"], row["t p"]) == (t.n, t.mean, t.half_width, t.t_p)
        assert (row["sign-flip p"], row["smallest sign-flip p"]) == (t.sign_flip_p, 2.0 ** (1 - t.n))
        assert row["Holm p"] == p_holm
        assert row["MDE"] == sig.minimum_detectable_effect(t.sd, t.n, comparisons=5)
        assert row["verdict"] == ("separated" if p_holm <= 0.05 else "not separated")
    assert set(table["verdict"]) == {"separated", "not separated"}


def test_holm_can_turn_a_nominal_separation_into_not_separated():
    table = sig.family_table(family())
    row = table.loc["marginal"]
    assert row["t p"] < 0.05 < row["Holm p"] and row["verdict"] == "not separated"


def test_a_single_comparison_is_separated_exactly_when_its_interval_excludes_zero():
    for d in ([2.1, 2.6, 1.8], [1.0, 1.6, 0.7], [0.4, -0.9, 0.3], [-1.2, -0.2, -0.9, -1.5]):
        row = sig.family_table({"x": d}).loc["x"]
        excludes_zero = abs(row["difference"]) > row["ci"]
        assert (row["verdict"] == "separated") == excludes_zero


def test_verdicts_against_the_claimed_signs():
    diffs = family()
    claims = {"clear gain": 1, "clear loss": 1, "noise": -1, "marginal": 1, "many seeds": -1}
    table = sig.family_table(diffs, expected=claims)
    assert table.loc["clear gain", "verdict"] == "reproduced"  # separated, as claimed
    assert table.loc["clear loss", "verdict"] == "not reproduced"  # separated, the other way
    assert table.loc["noise", "verdict"] == "not separated" == table.loc["marginal", "verdict"]
    flipped = sig.family_table(diffs, expected={k: -v for k, v in claims.items()})
    assert flipped.loc["clear loss", "verdict"] == "reproduced"
    assert flipped.loc["clear gain", "verdict"] == "not reproduced"
    assert list(table["expected"]) == list(claims.values())


def test_family_table_bad_input_names_the_comparison():
    with pytest.raises(ValueError, match="^one seed: a paired test needs at least 2 seeds"):
        sig.family_table({"fine": [1.0, 2.0], "one seed": [1.0]})
    with pytest.raises(ValueError, match="^broken run: .*NaN"):
        sig.family_table({"broken run": [1.0, float("nan"), 0.5]})
    with pytest.raises(ValueError, match="^same run twice: .*zero variance"):
        sig.family_table({"same run twice": [0.0, 0.0, 0.0]})
    with pytest.raises(ValueError, match=r"missing \['b'\], unknown \['c'\]"):
        sig.family_table({"a": [1, 2], "b": [2, 3]}, expected={"a": 1, "c": -1})
    with pytest.raises(ValueError, match="expected sign is \\+1 or -1"):
        sig.family_table({"a": [1, 2]}, expected={"a": 0})
    with pytest.raises(ValueError, match="at least one comparison"):
        sig.family_table({})


def test_family_table_marks_rows_without_a_test():
    diffs = {"a": [1.0, 2.0, 4.0], "b": [0.5, 1.5, 0.0], "one seed": [1.0], "identical": [0.0, 0.0, 0.0],
             "constant": [1.0, 1.0, 1.0]}
    table = sig.family_table(diffs, untestable="mark")
    assert table.loc["one seed", "verdict"] == "not tested (1 seed)"
    assert table.loc["identical", "verdict"] == "equal on every seed"
    assert table.loc["constant", "verdict"] == "not tested (no spread over seeds)"
    assert table.attrs["comparisons"] == 2  # the Holm family is the tested rows only
    tested = sig.family_table({k: diffs[k] for k in ("a", "b")})
    assert np.allclose(table.loc[["a", "b"], "Holm p"].astype(float), tested["Holm p"].astype(float))
    assert np.isnan(float(table.loc["one seed", "Holm p"])) and float(table.loc["constant", "difference"]) == 1.0
    out = sig.format_family(table)
    assert out.loc["one seed", "difference (points)"] == "+1.0" and out.loc["one seed", "p (t)"] == "–"
    with pytest.raises(ValueError, match="^broken: .*NaN"):
        sig.family_table({"broken": [1.0, float("nan")]}, untestable="mark")
    with pytest.raises(ValueError, match="'raise' or 'mark'"):
        sig.family_table(diffs, untestable="skip")


def test_format_family_cells():
    table = sig.family_table({"gain": [1.2, 0.8, 1.9], "loss": [-3.0, -3.2, -2.9]}, expected={"gain": 1, "loss": 1})
    out = sig.format_family(table)
    t = sig.paired_test([1.2, 0.8, 1.9])
    assert out.loc["gain", "difference (points)"] == f"+1.3 ± {t.half_width:.1f}" == "+1.3 ± 1.4"
    assert list(out.columns) == ["difference (points)", "seeds", "p (t)", "p (sign-flip)", "p (Holm, 2 comparisons)",
                                 "detectable at 80% power (points)", "claimed sign", "verdict"]
    assert out.loc["gain", "p (sign-flip)"] == "0.25" and out.loc["gain", "seeds"] == 3
    assert out.loc["gain", "p (t)"] == f"{t.t_p:.2g}" and len(out.loc["gain", "p (t)"].lstrip("0.")) == 2
    assert out.loc["loss", "difference (points)"].startswith("-3.0 ± ")
    assert out.loc["loss", "verdict"] == "not reproduced" and out.loc["loss", "claimed sign"] == "+"
    assert [sig._p(p) for p in (1.0, 0.5, 0.0312, 0.00084, 3.21e-5)] == ["1.0", "0.50", "0.031", "0.00084", "3.2e-05"]


def test_family_table_undecided_rows_are_tested_and_counted_but_not_decided():
    diffs = {"clear gain": [3.0, 3.2, 2.9, 3.1], "still rising": [-5.0, -5.5, -4.8, -5.2],
             "noise": [0.5, -0.4, 0.1, -0.2]}
    plain = sig.family_table(diffs)
    assert plain.loc["still rising", "verdict"] == "separated"  # what the row would say if it were decided
    table = sig.family_table(diffs, undecided={"still rising": "binomial still rising"})
    assert table.loc["still rising", "verdict"] == "not decided (binomial still rising)"
    assert table.attrs["comparisons"] == 3  # still in the Holm family: the other rows' adjustment is unchanged
    assert np.allclose(table["Holm p"].astype(float), plain["Holm p"].astype(float))
    assert list(table.loc[["clear gain", "noise"], "verdict"]) == ["separated", "not separated"]
    claimed = sig.family_table(diffs, expected=dict.fromkeys(diffs, 1), undecided={"still rising": "x still rising"})
    assert claimed.loc["still rising", "verdict"] == "not decided (x still rising)"  # not "not reproduced"
    with pytest.raises(ValueError, match=r"undecided names comparisons the family does not hold: \['typo'\]"):
        sig.family_table(diffs, undecided={"typo": "x still rising"})
    marked = sig.family_table({**diffs, "one seed": [1.0]}, untestable="mark", undecided={"one seed": "x"})
    assert marked.loc["one seed", "verdict"] == "not tested (1 seed)"  # no test: the untestable reason wins


def test_verdict_is_puts_every_written_verdict_in_exactly_one_kind():
    diffs = {"gain": [3.0, 3.2, 2.9, 3.1], "drop": [-5.0, -5.5, -4.8, -5.2], "noise": [0.5, -0.4, 0.1, -0.2],
             "rising": [-5.0, -5.5, -4.8, -5.1], "one seed": [1.0], "identical": [0.0, 0.0, 0.0],
             "constant": [1.0, 1.0, 1.0]}
    plain = sig.family_table(diffs, untestable="mark", undecided={"rising": "x still rising"})
    claimed = sig.family_table(diffs, untestable="mark", undecided={"rising": "x still rising"},
                               expected={**dict.fromkeys(diffs, 1), "drop": -1, "gain": -1})
    by_hand = {  # the verdict each row must be counted as, spelled out here, not taken from the module
        "plain": {"gain": "separated", "drop": "separated", "noise": "not separated", "rising": "not decided",
                  "one seed": "not tested", "identical": "equal on every seed", "constant": "not tested"},
        "claimed": {"gain": "not reproduced", "drop": "reproduced", "noise": "not separated", "rising": "not decided",
                    "one seed": "not tested", "identical": "equal on every seed", "constant": "not tested"}}
    for name, table in {"plain": plain, "claimed": claimed}.items():
        kinds = {kind: sig.verdict_is(table, kind) for kind in sig.VERDICTS}
        for row in table.index:
            matched = [kind for kind, mask in kinds.items() if mask[row]]
            assert matched == [by_hand[name][row]], (name, row, table.loc[row, "verdict"])
    assert sorted(sig.VERDICTS) == sorted({*by_hand["plain"].values(), *by_hand["claimed"].values()})
    with pytest.raises(ValueError, match="unknown verdict 'decided'"):
        sig.verdict_is(plain, "decided")
