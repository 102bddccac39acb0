"""Power of the study's two-sided one-sample t-tests, and the sample sizes it takes.

The tests are those of :mod:`bark_ablation.study.statistics`: the mean over units (replicates)
of a per-unit difference or factorial contrast is compared with 0. Effects and standard
deviations are in SECS units (cosine similarity, the same units as the per-unit values); ``n``,
units, texts and seeds are counts. Power comes from the noncentral t distribution
(``scipy.stats.nct``): with n units, the t statistic has n - 1 degrees of freedom and
noncentrality ``effect / (sd / sqrt(n))``, and the test rejects when ``|t|`` exceeds the
two-sided critical value. The normal approximation overstates power at the study's few units.

Conventions at sd == 0 follow :func:`~bark_ablation.study.statistics.t_estimate`: values all
equal to a non-zero effect are always rejected (power 1), all zero never (power 0).
"""

from __future__ import annotations

import math

from scipy import optimize, stats

ALPHA = 0.05
POWER = 0.8


def t_test_power(effect: float, sd: float, n: int, alpha: float = ALPHA) -> float:
    """Probability that the two-sided one-sample t-test at level ``alpha`` rejects mean == 0
    when ``n`` units' values have mean ``effect`` and standard deviation ``sd`` (SECS units).

    NaN when n < 2 or sd is not finite.
    """
    if n < 2 or not math.isfinite(sd) or sd < 0:
        return math.nan
    if sd == 0:
        return 1.0 if effect != 0 else 0.0
    df = n - 1
    noncentrality = abs(effect) / (sd / math.sqrt(n))  # the test is symmetric
    critical = stats.t.ppf(1 - alpha / 2, df)
    near = float(stats.nct.sf(critical, df, noncentrality))
    far = float(stats.nct.cdf(-critical, df, noncentrality))
    # scipy's nct returns NaN where the far tail underflows (e.g. df 4, noncentrality 10: it is
    # below 1e-16 there); it adds nothing to the power then.
    return min(1.0, near + (far if math.isfinite(far) else 0.0))


def minimum_detectable_effect(sd: float, n: int, *, alpha: float = ALPHA, power: float = POWER) -> float:
    """The smallest positive effect (SECS units) that ``n`` units with standard deviation ``sd``
    detect with probability ``power`` at level ``alpha``.

    NaN when n < 2 or sd is not finite; 0 when sd == 0.
    """
    if n < 2 or not math.isfinite(sd) or sd < 0:
        return math.nan
    if sd == 0:
        return 0.0
    if not alpha < power < 1:
        raise ValueError(f"power must lie between alpha ({alpha}) and 1, got {power}")
    upper = sd
    while t_test_power(upper, sd, n, alpha) < power:
        upper *= 2
    return float(
        optimize.brentq(
            lambda effect: t_test_power(effect, sd, n, alpha) - power, 0.0, upper, xtol=1e-12 * sd, rtol=1e-12
        )
    )


def _smallest(reaches, low: int, high: int) -> int | None:
    """The smallest k in [low, high] with reaches(k), for a monotone ``reaches``; None if none."""
    if not reaches(high):
        return None
    while low < high:
        middle = (low + high) // 2
        if reaches(middle):
            high = middle
        else:
            low = middle + 1
    return low


def units_needed(
    effect: float, sd: float, *, alpha: float = ALPHA, power: float = POWER, max_units: int = 100_000
) -> int | None:
    """The smallest number of units n >= 2 whose t-test detects ``effect`` (SECS units) with
    per-unit standard deviation ``sd`` with probability ``power`` at level ``alpha``; None if
    not within ``max_units``."""
    if max_units < 2 or not math.isfinite(sd):
        return None
    return _smallest(lambda n: t_test_power(effect, sd, n, alpha) >= power, 2, max_units)


def seeds_needed(
    effect: float,
    between_sd: float,
    within_sd: float,
    n_units: int,
    n_texts: int,
    *,
    alpha: float = ALPHA,
    power: float = POWER,
    max_seeds: int = 10_000,
) -> int | None:
    """The smallest number of seeds per (unit, text) at which ``n_units`` units detect ``effect``.

    Each unit's effect estimate averages its ``n_texts`` x seeds within-unit values, so its
    variance is ``between_sd**2 + within_sd**2 / (n_texts * seeds)``: ``between_sd`` is the
    spread of units' true effects and ``within_sd`` that of one (text, seed) value around its
    unit's effect (all SECS units). More seeds shrink only the second term, so None when
    ``between_sd`` alone keeps power below ``power`` (or not within ``max_seeds``).
    """
    if n_texts < 1 or n_units < 2:
        raise ValueError(f"need n_texts >= 1 and n_units >= 2, got {n_texts} and {n_units}")

    def unit_sd(seeds: int) -> float:
        return math.sqrt(between_sd**2 + within_sd**2 / (n_texts * seeds))

    if t_test_power(effect, between_sd, n_units, alpha) < power:  # the limit of infinitely many seeds
        return None
    return _smallest(lambda seeds: t_test_power(effect, unit_sd(seeds), n_units, alpha) >= power, 1, max_seeds)
