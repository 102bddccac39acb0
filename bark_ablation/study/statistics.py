"""Statistics of a study: per-cell means with t confidence intervals, paired differences
against full conditioning, and the 2^3 factorial effects of each stage's conditioning, with
p-values adjusted within each family.

The replicate. A score's key is ``(cell id, replicate)``; the replicate is the unit every
comparison is paired on and the sample the intervals speak about. With several speakers the
replicates are the speakers (:mod:`bark_ablation.study.analysis` first averages each speaker's
cells over its texts and seeds); with one speaker they are seeds, so the inference is about that
speaker. A replicate's cells are paired (within a seed they share stage results: same text,
prompt and stage seeds), so differences and effects are computed per replicate first, then
summarised over replicates.

Why t-intervals. Each summary is a Student t-interval on the per-replicate values
(:func:`t_estimate`): exact when those values are normal, and close for contrasts (differences
between cells, factorial effects), which add and subtract several cells and so come out nearly
symmetric even when SECS itself is skewed towards 1. Contract: in simulated studies
(:mod:`bark_ablation.study.coverage`; n = 3, 5, 10, 30 replicates) the nominal 95 % interval
covers the true mean in 93-97 % of studies for normal values, SECS-like cell means and factorial
contrasts (``tests/study/test_coverage.py``). The percentile bootstrap the study used before
covers too little at these n (:func:`percentile_bootstrap_estimate`, kept as the known-bad twin
of that check) (measured: docs/measurements.md#interval-coverage).

The limit. Per-cell means of strongly skewed values at small n are covered less well (Beta(9,1)
values: mean 0.9, a long tail towards low similarity). Read such a cell's interval at n <= 5 as
roughly a 90 % interval; the contrasts, which carry the study's claims, are not affected
(measured: docs/measurements.md#interval-coverage).

Multiplicity. "This stage's conditioning carries speaker identity" is a confirmatory claim
about each stage (and interaction) separately, so the error to control is the family-wise one:
the chance of any false claim in the family. The p-values of each family -- the paired
differences against full conditioning, the seven factorial terms -- are adjusted with Holm's
step-down method (:func:`holm`), which controls the family-wise error rate at ``ALPHA`` under
any dependence and is uniformly more powerful than Bonferroni. Benjamini-Hochberg
(:func:`benjamini_hochberg`, false discovery rate) is available for exploratory use.

Factorial effects over the on/off cells, with x_s, x_c, x_f = +1 (history on) or -1 (off):
``effect(term) = sum_cells(y * prod_{stage in term} x_stage) / 4``. A main effect is then
``mean(y | stage on) - mean(y | stage off)``; a two-way interaction is half the change of one
stage's effect when the other is switched on; the three-way term likewise.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass

import numpy as np
from scipy import stats

from bark_ablation.core.conditioning import ALL_CONDITIONINGS, FULL, STAGES, Conditioning

CONFIDENCE = 0.95
ALPHA = 0.05
"""Family-wise error rate that :attr:`Estimate.survives` tests the adjusted p-value against."""
N_RESAMPLES = 9_999
BOOTSTRAP_SEED = 0
"""Seed of the percentile bootstrap's resampling, so its CIs are reproducible."""

FACTORIAL_TERMS: tuple[tuple[str, ...], ...] = tuple(
    term for size in (1, 2, 3) for term in itertools.combinations([s.value for s in STAGES], size)
)
"""("semantic",), ("coarse",), ("fine",), ("semantic", "coarse"), ..., all three."""


@dataclass(frozen=True)
class Estimate:
    """A mean over replicates with its CI (NaN bounds when fewer than 2 replicates).

    ``standardized`` is the mean over the standard deviation of the per-replicate values
    (ddof 1): for paired differences and factorial effects, Cohen's d_z. NaN with fewer than 2
    replicates, 0 when every value is 0, infinite when every replicate gives the same non-zero
    value. ``p_value`` is the two-sided one-sample t-test of mean == 0 (NaN where no test is
    made, e.g. for per-cell means); ``p_adjusted`` is that p-value adjusted within its family
    (NaN until adjusted); ``sd`` the standard deviation of the replicate values (ddof 1).
    """

    name: str
    mean: float
    ci_low: float
    ci_high: float
    n: int
    standardized: float = math.nan
    p_value: float = math.nan
    p_adjusted: float = math.nan
    sd: float = math.nan

    @property
    def survives(self) -> bool:
        """Whether the family-adjusted p-value is below :data:`ALPHA` (False when NaN)."""
        return bool(self.p_adjusted < ALPHA)

    def to_dict(self) -> dict:
        return {
            key: (None if isinstance(value, float) and not math.isfinite(value) else value)
            for key, value in asdict(self).items()
        }


def _values(name: str, values: Sequence[float]) -> np.ndarray:
    data = np.asarray(values, dtype=np.float64).reshape(-1)
    if data.size == 0:
        raise ValueError(f"{name}: no values to estimate from")
    return data


def _standardized(mean: float, spread: float) -> float:
    return mean / spread if spread > 0 else (0.0 if mean == 0 else math.copysign(math.inf, mean))


def t_estimate(
    name: str, values: Sequence[float], *, confidence: float = CONFIDENCE, test_zero: bool = True
) -> Estimate:
    """Mean of ``values`` with a Student t-interval at ``confidence`` and, when ``test_zero``,
    the two-sided one-sample t-test of mean == 0.

    One value: NaN interval, p-value, sd and standardized. All values equal: the interval is
    [mean, mean] and the p-value 1.0 when they are 0, else 0.0 (the t statistic is 0/0 or
    infinite). Raises ValueError, naming ``name``, when there are no values.
    """
    data = _values(name, values)
    n = int(data.size)
    mean = float(data.mean())
    if n < 2:
        return Estimate(name, mean, math.nan, math.nan, n)
    if np.all(data == data[0]):  # exactly: the float mean of equal values may differ from them
        mean = float(data[0])
        p_value = (1.0 if mean == 0 else 0.0) if test_zero else math.nan
        return Estimate(name, mean, mean, mean, n, _standardized(mean, 0.0), p_value=p_value, sd=0.0)
    spread = float(data.std(ddof=1))
    standardized = _standardized(mean, spread)
    result = stats.ttest_1samp(data, 0.0)
    interval = result.confidence_interval(confidence)
    return Estimate(
        name,
        mean,
        float(interval.low),
        float(interval.high),
        n,
        standardized,
        p_value=float(result.pvalue) if test_zero else math.nan,
        sd=spread,
    )


def percentile_bootstrap_estimate(
    name: str,
    values: Sequence[float],
    *,
    confidence: float = CONFIDENCE,
    n_resamples: int = N_RESAMPLES,
    seed: int = BOOTSTRAP_SEED,
) -> Estimate:
    """Mean of ``values`` with a percentile bootstrap CI at ``confidence`` (no p-value).

    The study no longer uses it: at the study's few replicates the percentile bootstrap's
    interval is too narrow, because resampling n values reproduces the spread with divisor n
    rather than n - 1 and ignores the t distribution's tails (measured:
    docs/measurements.md#interval-coverage). It stays as the known-bad twin
    of the coverage test (:mod:`bark_ablation.study.coverage`).
    """
    data = _values(name, values)
    n = int(data.size)
    mean = float(data.mean())
    if n < 2:
        return Estimate(name, mean, math.nan, math.nan, n)
    spread = float(data.std(ddof=1))
    standardized = _standardized(mean, spread)
    if spread == 0:
        return Estimate(name, mean, mean, mean, n, standardized, sd=spread)
    result = stats.bootstrap(
        (data,),
        np.mean,
        confidence_level=confidence,
        n_resamples=n_resamples,
        method="percentile",
        rng=np.random.default_rng(seed),
    )
    return Estimate(
        name,
        mean,
        float(result.confidence_interval.low),
        float(result.confidence_interval.high),
        n,
        standardized,
        sd=spread,
    )


bootstrap_estimate = percentile_bootstrap_estimate
"""The former name of :func:`percentile_bootstrap_estimate`."""


def holm(p_values: Sequence[float]) -> np.ndarray:
    """Holm-Bonferroni step-down adjusted p-values, in the order given.

    With the m finite p-values sorted ascending, p_(1) <= ... <= p_(m), the adjusted value of
    p_(i) is ``max_{j <= i} min(1, (m - j + 1) * p_(j))``: monotone in the p-values, capped at
    1. NaN inputs stay NaN and do not count toward the family size m. Rejecting where the
    adjusted value is below alpha controls the family-wise error rate at alpha under any
    dependence between the tests (it is the closed test of Bonferroni tests).

    Written here because scipy has no Holm adjustment (``scipy.stats.false_discovery_control``
    offers only Benjamini-Hochberg and Benjamini-Yekutieli) and statsmodels' ``multipletests``
    would pull pandas and patsy into the dependencies for a dozen lines.
    """
    p = np.asarray(p_values, dtype=np.float64).reshape(-1)
    adjusted = np.full(p.shape, np.nan)
    finite = np.flatnonzero(~np.isnan(p))
    if finite.size:
        adjusted[finite] = holm_rows(p[finite][np.newaxis, :])[0]
    return adjusted


def holm_rows(p_values: np.ndarray) -> np.ndarray:
    """:func:`holm` applied to each row of a 2-D array without NaN (vectorised, for simulations)."""
    p = np.asarray(p_values, dtype=np.float64)
    m = p.shape[-1]
    order = np.argsort(p, axis=-1, kind="stable")
    ranked = np.take_along_axis(p, order, axis=-1) * (m - np.arange(m))
    ranked = np.minimum(np.maximum.accumulate(ranked, axis=-1), 1.0)
    adjusted = np.empty_like(ranked)
    np.put_along_axis(adjusted, order, ranked, axis=-1)
    return adjusted


def benjamini_hochberg(p_values: Sequence[float]) -> np.ndarray:
    """Benjamini-Hochberg adjusted p-values (false discovery rate), in the order given, from
    ``scipy.stats.false_discovery_control``. NaN inputs stay NaN and do not count toward the
    family size."""
    p = np.asarray(p_values, dtype=np.float64).reshape(-1)
    adjusted = np.full(p.shape, np.nan)
    finite = np.flatnonzero(~np.isnan(p))
    if finite.size:
        adjusted[finite] = stats.false_discovery_control(p[finite], method="bh")
    return adjusted


ADJUSTMENTS = {"holm": holm, "bh": benjamini_hochberg}


def adjust_family(estimates: Sequence[Estimate], method: str = "holm") -> list[Estimate]:
    """Copies of ``estimates`` with ``p_adjusted`` filled: their ``p_value`` adjusted as one
    family by ``method`` ("holm": family-wise error rate; "bh": false discovery rate)."""
    if method not in ADJUSTMENTS:
        raise ValueError(f"unknown adjustment {method!r}: expected one of {sorted(ADJUSTMENTS)}")
    adjusted = ADJUSTMENTS[method]([e.p_value for e in estimates])
    return [dataclasses.replace(e, p_adjusted=float(p)) for e, p in zip(estimates, adjusted, strict=True)]


Scores = Mapping[tuple[str, int], float]
"""(cell id, replicate) -> score (SECS)."""


def seeds_of(scores: Scores) -> list[int]:
    """The replicates present in ``scores``, sorted."""
    return sorted({seed for _, seed in scores})


def cell_estimates(scores: Scores) -> list[Estimate]:
    """Per cell, in first-seen order: mean score over replicates with its t-interval (no test:
    a cell's mean SECS is not compared with 0)."""
    cells = list(dict.fromkeys(cell for cell, _ in scores))
    return [
        t_estimate(cell, [scores[(cell, seed)] for seed in seeds_of(scores) if (cell, seed) in scores], test_zero=False)
        for cell in cells
    ]


def paired_differences(scores: Scores, reference: str = FULL.id) -> list[Estimate]:
    """Per cell other than ``reference``: mean of (cell - reference) over replicates that have
    both, with its t-interval and t-test; the p-values are Holm-adjusted as one family."""
    cells = [cell for cell in dict.fromkeys(cell for cell, _ in scores) if cell != reference]
    estimates = []
    for cell in cells:
        differences = [
            scores[(cell, seed)] - scores[(reference, seed)]
            for seed in seeds_of(scores)
            if (cell, seed) in scores and (reference, seed) in scores
        ]
        if differences:
            estimates.append(t_estimate(f"{cell} - {reference}", differences))
    return adjust_family(estimates, "holm")


def factorial_effects(scores: Scores) -> list[Estimate]:
    """Main effects and interactions of the 2^3 design, from replicates that have all 8 cells,
    with t-intervals and t-tests; the seven p-values are Holm-adjusted as one family.

    Raises ValueError when no replicate has all eight on/off cells.
    """
    complete = [seed for seed in seeds_of(scores) if all((cell.id, seed) in scores for cell in ALL_CONDITIONINGS)]
    if not complete:
        raise ValueError("factorial effects need all 8 on/off cells for at least one seed")
    effects = []
    for term in FACTORIAL_TERMS:
        per_seed = [
            sum(scores[(cell.id, seed)] * _sign(cell, term) for cell in ALL_CONDITIONINGS) / 4 for seed in complete
        ]
        effects.append(t_estimate(" x ".join(term), per_seed))
    return adjust_family(effects, "holm")


def _sign(cell: Conditioning, term: tuple[str, ...]) -> int:
    return math.prod(1 if cell.conditions(stage) else -1 for stage in STAGES if stage.value in term)


def auc(positives: Sequence[float], negatives: Sequence[float]) -> float:
    """Area under the ROC curve: the probability that a random positive scores above a random
    negative (ties count half), from the Mann-Whitney U statistic."""
    if len(positives) == 0 or len(negatives) == 0:
        raise ValueError("auc: needs at least one positive and one negative score")
    u = stats.mannwhitneyu(positives, negatives, alternative="two-sided").statistic
    return float(u / (len(positives) * len(negatives)))
