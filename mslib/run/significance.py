"""Honest statistics for paired seed comparisons: a test per comparison, a family correction, and power.

The results chapters compare a variant with a baseline by the per-seed differences ``d_1 .. d_n`` (variant −
baseline, in points of a metric in percent; a seed's two runs share the data order and the initialisation). The
functions here take those numbers and nothing else:

* :func:`paired_test`: is the mean difference separated from 0? The paired Student-t test (it assumes normally
  distributed differences) with its confidence interval; the exact sign-flip randomisation test (it assumes only
  that, under the null, each difference is as likely to be positive as negative); a percentile bootstrap interval.
* :func:`holm`: with several comparisons in one chapter (6, 16 and 5 in the results chapters) the chance that *some*
  true null comes out "separated" grows with their number. Holm's step-down adjustment keeps that family-wise error
  rate at ``alpha`` whatever the dependence between the comparisons.
* :func:`minimum_detectable_effect` and :func:`power_at`: how large a true mean difference must be for the design
  (n seeds, the differences' sd, the family's size) to separate it with a given probability, from the noncentral t
  distribution of the paired t statistic.

What this means for three seeds (the numbers are what these functions return; the chapters glue them):

* A 95% half-width ``h = t_{0.975, n-1} s / sqrt(n)`` is *not* the smallest difference the design separates: a true
  difference of exactly ``h`` (true sd ``s``) is separated only with probability ``power_at(h, s, 3)`` ≈ 0.61,
  because the noncentrality then equals the critical value. 80% power needs about 3.3 sd of the differences with
  3 seeds (``minimum_detectable_effect(1, 3)``; the half-width is 2.5 sd), and about 8 sd when the test runs at the
  Bonferroni level of a family of 6 comparisons.
* The sign-flip test over ``n`` seeds cannot give a p-value below ``2 / 2^n``: 0.25 with 3 seeds, 0.0625 with 5. On
  its own it separates nothing at 0.05 with fewer than 6 seeds; it is reported as a check on the t-test's
  normality assumption, not as the test that decides.
* The bootstrap's percentile interval from 3 values is too narrow (only 10 distinct resampled means); it is given
  for comparison with the t interval, named as what it is.

The decision (the verdict of :func:`family_table`) is the Holm-adjusted paired t p-value at ``alpha``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import optimize, stats

EXACT_SIGN_FLIP_MAX_N = 20  # up to 2^20 sign patterns enumerated; beyond, Monte Carlo
SIGN_FLIP_DRAWS = 100_000  # random sign patterns of the Monte Carlo sign-flip test (n > EXACT_SIGN_FLIP_MAX_N)
BOOTSTRAP_RESAMPLES = 10_000
MDE_POWER = 0.8  # the power at which family_table reports the minimum detectable effect
# The verdicts of family_table; a notebook counts them with verdict_is, never by spelling them out.
SEPARATED, NOT_SEPARATED = "separated", "not separated"
REPRODUCED, NOT_REPRODUCED = "reproduced", "not reproduced"
UNDECIDED = "not decided"  # written "not decided (<reason>)"
EQUAL_ON_EVERY_SEED = "equal on every seed"
NOT_TESTED = "not tested"  # written "not tested (<reason>)"
VERDICTS = (SEPARATED, NOT_SEPARATED, REPRODUCED, NOT_REPRODUCED, UNDECIDED, EQUAL_ON_EVERY_SEED, NOT_TESTED)
_CHUNK = 10_000  # sign patterns per Monte Carlo step


@dataclass(frozen=True)
class PairedTest:
    """One paired comparison (points of the metric): ``n`` seeds, the mean and sd (``n − 1`` denominator) of the
    per-seed differences; ``half_width`` of the two-sided ``1 − alpha`` Student-t interval ``mean ± half_width``
    (``t_{1−alpha/2, n−1} · sd / sqrt(n)``) and its two-sided p-value ``t_p``; the two-sided sign-flip p-value and
    how it was computed; the percentile bootstrap interval ``[bootstrap_low, bootstrap_high]`` at ``1 − alpha`` and
    how it was computed."""

    n: int
    mean: float
    sd: float
    alpha: float
    half_width: float
    t_p: float
    sign_flip_p: float
    sign_flip_method: str
    bootstrap_low: float
    bootstrap_high: float
    bootstrap_method: str

    @property
    def sign_flip_min_p(self) -> float:
        """The smallest p-value the exact sign-flip test can give with ``n`` seeds: ``2 / 2^n``."""
        return 2.0 ** (1 - self.n)


def _differences(diffs: Sequence[float], name: str) -> np.ndarray:
    """``diffs`` as a float64 vector; ValueError naming ``name`` for < 2 values, NaN/Inf or zero variance."""
    try:
        d = np.asarray(diffs, dtype=np.float64)
    except (TypeError, ValueError) as err:
        raise ValueError(f"{name}: the per-seed differences must be numbers, got {diffs!r}") from err
    if d.ndim != 1:
        raise ValueError(f"{name}: the per-seed differences must be a flat sequence, got shape {d.shape}")
    if d.size < 2:
        raise ValueError(f"{name}: a paired test needs at least 2 seeds, got {d.size} difference(s) {d.tolist()}")
    if not np.isfinite(d).all():
        raise ValueError(f"{name}: the per-seed differences contain NaN or Inf: {d.tolist()}")
    if np.ptp(d) == 0:
        raise ValueError(f"{name}: all {d.size} per-seed differences equal {d[0]:g}: zero variance, so the t-test is "
                         "undefined (are the variant's and the baseline's runs identical?)")
    return d


def _check_alpha(alpha: float) -> float:
    if not 0 < alpha < 1:
        raise ValueError(f"alpha must lie strictly between 0 and 1, got {alpha}")
    return float(alpha)


def _sign_flip_p(d: np.ndarray, rng: np.random.Generator, draws: int) -> tuple[float, str]:
    """Two-sided sign-flip p-value of the mean: the share of sign patterns ``s`` with ``|Σ s_i d_i| >= |Σ d_i|``
    (exact over all ``2^n`` for ``n <= EXACT_SIGN_FLIP_MAX_N``; else ``(1 + hits) / (1 + draws)`` random ones)."""
    n, observed = d.size, abs(math.fsum(d))
    tol = 1e-12 * float(np.abs(d).sum())  # sums that equal the observed one up to rounding count as "as extreme"
    if n <= EXACT_SIGN_FLIP_MAX_N:
        sums = np.zeros(1)
        for x in d:  # all 2^n signed sums, doubling per seed
            sums = np.concatenate([sums + x, sums - x])
        return float(np.mean(np.abs(sums) >= observed - tol)), f"exact: all 2^{n} = {2**n} sign patterns"
    hits = 0
    for start in range(0, draws, _CHUNK):
        signs = 1.0 - 2.0 * rng.integers(0, 2, size=(min(_CHUNK, draws - start), n))
        hits += int((np.abs(signs @ d) >= observed - tol).sum())
    return (1 + hits) / (1 + draws), f"Monte Carlo: {draws} random sign patterns, p = (1 + hits) / (1 + draws)"


def paired_test(diffs: Sequence[float], *, alpha: float = 0.05, seed: int = 0, draws: int = SIGN_FLIP_DRAWS,
                resamples: int = BOOTSTRAP_RESAMPLES, name: str = "paired comparison") -> PairedTest:
    """The paired tests of one comparison from its per-seed differences (points): see :class:`PairedTest`.

    The sign-flip test is exact for ``n <= EXACT_SIGN_FLIP_MAX_N`` (20) and a Monte Carlo over ``draws`` random
    sign patterns beyond; the bootstrap draws ``resamples`` resamples of the seeds. Both are seeded by ``seed``.
    ValueError naming ``name`` for fewer than 2 seeds, NaN/Inf, or differences that are all equal.
    """
    alpha = _check_alpha(alpha)
    d = _differences(diffs, name)
    n = d.size
    mean = math.fsum(d) / n
    sd = math.sqrt(math.fsum((d - mean) ** 2) / (n - 1))
    se = sd / math.sqrt(n)
    flip_rng, boot_rng = (np.random.default_rng(s) for s in np.random.SeedSequence(seed).spawn(2))
    flip_p, flip_method = _sign_flip_p(d, flip_rng, int(draws))
    means = d[boot_rng.integers(0, n, size=(int(resamples), n))].mean(axis=1)
    low, high = np.quantile(means, [alpha / 2, 1 - alpha / 2])
    return PairedTest(
        n=n, mean=mean, sd=sd, alpha=alpha, half_width=float(stats.t.ppf(1 - alpha / 2, n - 1) * se),
        t_p=float(2 * stats.t.sf(abs(mean) / se, n - 1)), sign_flip_p=flip_p,
        sign_flip_method=flip_method + (f", seed {seed}" if n > EXACT_SIGN_FLIP_MAX_N else ""),
        bootstrap_low=float(low), bootstrap_high=float(high),
        bootstrap_method=f"percentile bootstrap: {int(resamples)} resamples of the {n} seeds, seed {seed}")


def holm(pvalues: Sequence[float]) -> list[float]:
    """Holm's step-down adjusted p-values, in the input order: with ``p_(1) <= ... <= p_(m)``,
    ``p̃_(i) = max_{j <= i} min(1, (m − j + 1) p_(j))``. Rejecting where ``p̃ <= alpha`` keeps the family-wise error
    rate at ``alpha`` under any dependence (Holm 1979). ValueError for a p-value outside [0, 1] or NaN."""
    p = np.asarray(pvalues, dtype=np.float64)
    if p.ndim != 1:
        raise ValueError(f"holm: the p-values must be a flat sequence, got shape {p.shape}")
    bad = np.flatnonzero(~((p >= 0) & (p <= 1)))
    if bad.size:
        raise ValueError(f"holm: p-value {p[bad[0]]} at position {bad[0]} is not in [0, 1]")
    m = p.size
    order = np.argsort(p, kind="stable")
    adjusted = np.empty(m)
    adjusted[order] = np.minimum(1.0, np.maximum.accumulate((m - np.arange(m)) * p[order]))
    return adjusted.tolist()


def _level(alpha: float, comparisons: int) -> float:
    """The per-comparison level: ``alpha / comparisons`` (Bonferroni, which is Holm's first, strictest step)."""
    if int(comparisons) != comparisons or comparisons < 1:
        raise ValueError(f"comparisons must be a positive integer, got {comparisons}")
    return _check_alpha(alpha) / int(comparisons)


def _design(sd: float, n: int) -> None:
    if not (math.isfinite(sd) and sd > 0):
        raise ValueError(f"sd must be a positive finite number, got {sd}")
    if int(n) != n:
        raise ValueError(f"n must be a whole number of seeds, got {n}")


def _power(nc: float, df: int, crit: float) -> float:
    """P(|T| > crit) for T noncentral t with ``df`` degrees of freedom and noncentrality ``nc``. The lower tail
    P(T < −crit) is computed as P(T' > crit) with noncentrality ``−nc`` (``nct.cdf`` far in the tail can be NaN)."""
    return float(stats.nct.sf(crit, df, nc) + stats.nct.sf(crit, df, -nc))


def power_at(effect: float, sd: float, n: int, *, alpha: float = 0.05, comparisons: int = 1) -> float:
    """The probability that a two-sided paired t-test at level ``alpha / comparisons`` separates a true mean
    difference ``effect`` (points) from 0, with ``n`` seeds whose differences have true sd ``sd``: the noncentral t
    with ``n − 1`` degrees of freedom and noncentrality ``effect · sqrt(n) / sd``. NaN for ``n < 2``."""
    _design(sd, n)
    level = _level(alpha, comparisons)
    if n < 2:
        return float("nan")
    if not math.isfinite(effect):
        raise ValueError(f"effect must be finite, got {effect}")
    df = int(n) - 1
    return _power(abs(effect) * math.sqrt(n) / sd, df, float(stats.t.ppf(1 - level / 2, df)))


def minimum_detectable_effect(sd: float, n: int, *, alpha: float = 0.05, power: float = 0.8,
                              comparisons: int = 1) -> float:
    """The smallest true mean paired difference (points) that a two-sided paired t-test separates from 0 with
    probability ``power``: :func:`power_at` solved for the effect (Brent's method on the noncentrality).

    With ``comparisons > 1`` the test runs at ``alpha / comparisons``: Bonferroni, which is the first (strictest)
    step of Holm's procedure, so for the comparisons Holm tests later the true MDE is smaller (this one is an upper
    bound). ``sd`` is the true sd of the differences; plugging in an estimate from 3 seeds makes the MDE itself an
    estimate. NaN for ``n < 2``.
    """
    _design(sd, n)
    level = _level(alpha, comparisons)
    if not level < power < 1:
        raise ValueError(f"power must lie strictly between the test's level {level:g} and 1, got {power}")
    if n < 2:
        return float("nan")
    df = int(n) - 1
    crit = float(stats.t.ppf(1 - level / 2, df))

    def shortfall(nc: float) -> float:
        return _power(nc, df, crit) - power

    high = crit + float(stats.norm.ppf(power)) + 1.0
    while shortfall(high) < 0:
        high *= 2
    nc = optimize.brentq(shortfall, 0.0, high, xtol=1e-12, rtol=1e-12)
    return float(nc * sd / math.sqrt(n))


def _verdict(separated: bool, mean: float, claimed: int | None) -> str:
    if not separated:
        return NOT_SEPARATED
    if claimed is None:
        return SEPARATED
    return REPRODUCED if math.copysign(1, mean) == claimed else NOT_REPRODUCED


def _claims(names: list[str], expected: Mapping[str, int] | None) -> dict[str, int | None]:
    if expected is None:
        return dict.fromkeys(names)
    missing, extra = [n for n in names if n not in expected], [n for n in expected if n not in names]
    if missing or extra:
        raise ValueError(f"family_table: expected must give a sign for exactly the comparisons; missing {missing}, "
                         f"unknown {extra}")
    bad = {n: s for n, s in expected.items() if s not in (1, -1)}
    if bad:
        raise ValueError(f"family_table: an expected sign is +1 or -1, got {bad}")
    return {n: int(expected[n]) for n in names}


def _untested(diffs: Sequence[float], name: str) -> str | None:
    """Why a row cannot be tested (fewer than 2 seeds, or the same difference on every seed), else ``None``;
    NaN/Inf or non-numbers are still errors naming the comparison."""
    d = np.asarray(diffs, dtype=np.float64) if len(diffs) else np.zeros(0)
    if d.size and not np.isfinite(d).all():
        raise ValueError(f"{name}: the per-seed differences contain NaN or Inf: {d.tolist()}")
    if d.size < 2:
        return f"{NOT_TESTED} ({d.size} seed)"
    if np.ptp(d) == 0:
        return EQUAL_ON_EVERY_SEED if d[0] == 0 else f"{NOT_TESTED} (no spread over seeds)"
    return None


def family_table(diffs_by_name: Mapping[str, Sequence[float]], *, alpha: float = 0.05,
                 expected: Mapping[str, int] | None = None, seed: int = 0, untestable: str = "raise",
                 undecided: Mapping[str, str] | None = None) -> pd.DataFrame:
    """One row per comparison of a family (the rows given, e.g. one chapter's): ``n``, ``difference`` (mean, points),
    ``sd``, ``ci`` (the ``1 − alpha`` t half-width), ``t p``, ``sign-flip p`` and ``smallest sign-flip p``
    (:func:`paired_test`), ``Holm p`` (:func:`holm` of the t p-values over the family), ``MDE`` (the
    :func:`minimum_detectable_effect` at 80% power with ``comparisons`` = the family's size, the row's sd plugged
    in) and ``verdict``.

    The verdict is decided by the Holm-adjusted t p-value ``<= alpha``. Without ``expected``: ``"separated"`` or
    ``"not separated"``. With ``expected`` (the sign a cited source claims, +1 or −1 for every row), one scheme:

    * ``"reproduced"``: separated, in the claimed direction;
    * ``"not reproduced"``: separated in the *opposite* direction: the runs contradict the claim;
    * ``"not separated"``: the design cannot tell the difference from 0, whichever its sign.

    "Not separated" is kept apart from "not reproduced" because a difference the design cannot resolve is no
    evidence against the claim; calling it "not reproduced" would report a lack of power as a refutation.
    A row with fewer than 2 seeds or the same difference on every seed has no t-test: ``untestable="raise"`` (the
    default) makes it a ValueError naming the comparison; ``"mark"`` keeps it with NaN statistics and a verdict
    saying why (``"not tested (1 seed)"``; ``"equal on every seed"`` for identical runs), outside the Holm family
    (a chapter's small ``smoke`` profile).

    ``undecided`` (``{comparison: reason}``) names rows whose runs cannot answer the question asked, e.g. one side's
    learning curve still rises (:func:`mslib.run.convergence.undecided_comparisons`): such a row is still tested and
    counted in the Holm family (which only makes the other rows' adjustment stricter), but its verdict is
    ``"not decided (<reason>)"`` instead of a decision. ``table.attrs`` records ``alpha``, ``power`` and
    ``comparisons``.
    """
    if untestable not in ("raise", "mark"):
        raise ValueError(f"untestable must be 'raise' or 'mark', not {untestable!r}")
    names = list(diffs_by_name)
    if not names:
        raise ValueError("family_table needs at least one comparison")
    claims = _claims(names, expected)
    undecided = dict(undecided or {})
    unknown = [n for n in undecided if n not in diffs_by_name]
    if unknown:
        raise ValueError(f"family_table: undecided names comparisons the family does not hold: {unknown}")
    skipped = {n: why for n in names if untestable == "mark" and (why := _untested(diffs_by_name[n], str(n)))}
    tests = {name: paired_test(diffs_by_name[name], alpha=alpha, seed=seed, name=str(name))
             for name in names if name not in skipped}
    adjusted = dict(zip(tests, holm([t.t_p for t in tests.values()]), strict=True))
    m = len(tests)
    rows = {}
    for name in names:
        if name in skipped:
            d = np.asarray(diffs_by_name[name], dtype=np.float64)
            rows[name] = {"n": d.size, "difference": float(d.mean()) if d.size else math.nan, "sd": math.nan,
                          "ci": math.nan, "t p": math.nan, "sign-flip p": math.nan, "smallest sign-flip p": math.nan,
                          "Holm p": math.nan, "MDE": math.nan, "verdict": skipped[name]}
        else:
            t, p_holm = tests[name], adjusted[name]
            rows[name] = {"n": t.n, "difference": t.mean, "sd": t.sd, "ci": t.half_width, "t p": t.t_p,
                          "sign-flip p": t.sign_flip_p, "smallest sign-flip p": t.sign_flip_min_p, "Holm p": p_holm,
                          "MDE": minimum_detectable_effect(t.sd, t.n, alpha=alpha, power=MDE_POWER, comparisons=m),
                          "verdict": (f"{UNDECIDED} ({undecided[name]})" if name in undecided
                                      else _verdict(p_holm <= alpha, t.mean, claims[name]))}
        if expected is not None:
            rows[name]["expected"] = claims[name]
    table = pd.DataFrame.from_dict(rows, orient="index")
    table.attrs.update(alpha=alpha, power=MDE_POWER, comparisons=m)
    return table


def verdict_is(table: pd.DataFrame, verdict: str) -> pd.Series:
    """The rows of a :func:`family_table` whose verdict is ``verdict``, one of :data:`VERDICTS` (a boolean Series).
    :data:`UNDECIDED` and :data:`NOT_TESTED` match whatever reason follows them in brackets."""
    if verdict not in VERDICTS:
        raise ValueError(f"verdict_is: unknown verdict {verdict!r}; one of {VERDICTS}")
    written = table["verdict"].astype(str)
    if verdict in (UNDECIDED, NOT_TESTED):
        return written.str.startswith(f"{verdict} (")
    return written == verdict


def _p(p: float) -> str:
    """A p-value to 2 significant digits: ``0.031``, ``0.25``, ``1.0``, ``3.2e-05``."""
    return "–" if math.isnan(p) else f"{p:#.2g}"


def format_family(table: pd.DataFrame, digits: int = 1) -> pd.DataFrame:
    """A display/CSV table of a :func:`family_table`: ``difference ± ci`` (points, ``digits`` decimals), seeds,
    p-values to 2 significant digits, the MDE (points) and the verdict (and the claimed sign, when given)."""
    power, m = table.attrs.get("power", MDE_POWER), table.attrs.get("comparisons", len(table))
    out = pd.DataFrame({
        "difference (points)": [f"{d:+.{digits}f}" + ("" if math.isnan(h) else f" ± {h:.{digits}f}")
                                for d, h in zip(table["difference"], table["ci"], strict=True)],
        "seeds": table["n"].astype(int).to_list(),
        "p (t)": [_p(p) for p in table["t p"]],
        "p (sign-flip)": [_p(p) for p in table["sign-flip p"]],
        f"p (Holm, {m} comparisons)": [_p(p) for p in table["Holm p"]],
        f"detectable at {power:.0%} power (points)": ["–" if math.isnan(x) else f"{x:.{digits}f}"
                                                      for x in table["MDE"]],
        "verdict": table["verdict"].to_list(),
    }, index=table.index)
    if "expected" in table:
        out.insert(len(out.columns) - 1, "claimed sign", ["+" if s > 0 else "-" for s in table["expected"]])
    return out
