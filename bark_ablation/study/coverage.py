"""Simulated coverage of the study's confidence intervals and family-wise error of its tests.

Each function simulates many studies at once (numpy arrays of shape studies x replicates), so a
table of tens of thousands of studies takes seconds. The scenarios' true means are computed
analytically from their distributions, not by simulation, so a coverage estimate has only its
own Monte Carlo error: its standard error is ``sqrt(c (1 - c) / n_studies)``, about 0.2
percentage points at c = 0.95 and 10,000 studies.

Scenarios (:data:`SCENARIOS`) model one replicate's value: a per-cell mean SECS, or a factorial
contrast of the 8 cells of the 2^3 design. SECS lies below 1 with a tail towards low similarity,
so Beta distributions with most of their mass near 1 stand in for it.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import numpy as np
from scipy import stats

from bark_ablation.study.statistics import CONFIDENCE, holm_rows

Sampler = Callable[[np.random.Generator, int, int], np.ndarray]
"""(rng, n_studies, n) -> values of shape (n_studies, n)."""

PERCENTILE_BOOTSTRAP_RESAMPLES = 2_000
_BOOTSTRAP_CHUNK_VALUES = 4_000_000
"""Resampled values drawn at once by the vectorised bootstrap (32 MB of float64)."""


@dataclass(frozen=True)
class Scenario:
    """How one replicate's value is drawn, and its true (population) mean."""

    name: str
    description: str
    true_mean: float
    sample: Sampler


def _design(k: int) -> np.ndarray:
    """Signs (+1 on, -1 off) of the 2^k cells, shape (2^k, k)."""
    return np.array(list(itertools.product((1, -1), repeat=k)), dtype=np.float64)


DESIGN = _design(3)
"""The 8 on/off cells of the 2^3 design: columns semantic, coarse, fine."""


def _beta_cells(a_on: float, b_on: float, a_off: float, b_off: float) -> tuple[np.ndarray, np.ndarray]:
    """Beta parameters of the 8 cells when the semantic stage moves them from (a_off, b_off)
    (off) to (a_on, b_on) (on)."""
    on = DESIGN[:, 0] > 0
    return np.where(on, a_on, a_off), np.where(on, b_on, b_off)


def _contrast_scenario(name: str, description: str, a: np.ndarray, b: np.ndarray) -> Scenario:
    signs = DESIGN[:, 0]
    true_mean = float(np.sum(a / (a + b) * signs) / 4)

    def sample(rng: np.random.Generator, n_studies: int, n: int) -> np.ndarray:
        cells = rng.beta(a, b, size=(n_studies, n, len(signs)))
        return cells @ signs / 4

    return Scenario(name, description, true_mean, sample)


def _beta_scenario(name: str, description: str, a: float, b: float) -> Scenario:
    return Scenario(name, description, a / (a + b), lambda rng, n_studies, n: rng.beta(a, b, size=(n_studies, n)))


SCENARIOS: dict[str, Scenario] = {
    scenario.name: scenario
    for scenario in (
        Scenario(
            "normal-null",
            "normal values, mean 0, sd 1",
            0.0,
            lambda rng, n_studies, n: rng.standard_normal((n_studies, n)),
        ),
        Scenario(
            "normal-effect",
            "normal values, mean 0.3, sd 1",
            0.3,
            lambda rng, n_studies, n: 0.3 + rng.standard_normal((n_studies, n)),
        ),
        _beta_scenario("secs-cell", "a per-unit mean SECS of one cell: Beta(45,5), mean 0.9, sd 0.042", 45, 5),
        _contrast_scenario(
            "secs-contrast-null",
            "the semantic main effect sum(y * x_s) / 4 of 8 cells drawn independently from "
            "Beta(9,1) (mean 0.9, skewed towards low SECS): true effect 0",
            *_beta_cells(9, 1, 9, 1),
        ),
        _contrast_scenario(
            "secs-contrast-effect",
            "the semantic main effect of 8 cells, Beta(9,1) (mean 0.9) with semantic "
            "conditioning on and Beta(8,2) (mean 0.8) off: true effect 0.1",
            *_beta_cells(9, 1, 8, 2),
        ),
        _beta_scenario(
            "secs-cell-strongly-skewed",
            "a per-unit mean SECS of one cell, strongly skewed: Beta(9,1), mean 0.9, sd 0.09 "
            "(the documented limit of the t-interval at n <= 5)",
            9,
            1,
        ),
    )
}

METHODS = ("t", "percentile-bootstrap")


def _t_intervals(values: np.ndarray, confidence: float) -> tuple[np.ndarray, np.ndarray]:
    n = values.shape[1]
    mean = values.mean(axis=1)
    half = stats.t.ppf((1 + confidence) / 2, n - 1) * values.std(axis=1, ddof=1) / np.sqrt(n)
    return mean - half, mean + half


def _percentile_bootstrap_intervals(
    values: np.ndarray, confidence: float, rng: np.random.Generator, n_resamples: int = PERCENTILE_BOOTSTRAP_RESAMPLES
) -> tuple[np.ndarray, np.ndarray]:
    n_studies, n = values.shape
    tail = (1 - confidence) / 2
    low, high = np.empty(n_studies), np.empty(n_studies)
    chunk = max(1, _BOOTSTRAP_CHUNK_VALUES // (n_resamples * n))
    for start in range(0, n_studies, chunk):
        block = values[start : start + chunk]
        index = rng.integers(0, n, size=(block.shape[0], n_resamples, n))
        means = np.take_along_axis(block[:, np.newaxis, :], index, axis=2).mean(axis=2)
        low[start : start + chunk], high[start : start + chunk] = np.quantile(means, [tail, 1 - tail], axis=1)
    return low, high


def interval_coverage(
    method: str, n: int, scenario: str, *, n_studies: int, seed: int, confidence: float = CONFIDENCE
) -> float:
    """Fraction of ``n_studies`` simulated studies of ``n`` replicates each whose nominal
    ``confidence`` interval for the mean contains the scenario's true mean.

    ``method`` is "t" (Student t-interval, as :func:`~bark_ablation.study.statistics.t_estimate`)
    or "percentile-bootstrap" (as :func:`~bark_ablation.study.statistics.percentile_bootstrap_estimate`,
    with :data:`PERCENTILE_BOOTSTRAP_RESAMPLES` resamples).
    """
    if method not in METHODS:
        raise ValueError(f"unknown interval method {method!r}: expected one of {METHODS}")
    if scenario not in SCENARIOS:
        raise ValueError(f"unknown scenario {scenario!r}: expected one of {sorted(SCENARIOS)}")
    if n < 2:
        raise ValueError(f"an interval needs at least 2 replicates, got n={n}")
    rng = np.random.default_rng(seed)
    chosen = SCENARIOS[scenario]
    values = chosen.sample(rng, n_studies, n)
    if method == "t":
        low, high = _t_intervals(values, confidence)
    else:
        low, high = _percentile_bootstrap_intervals(values, confidence, rng)
    return float(np.mean((low <= chosen.true_mean) & (chosen.true_mean <= high)))


def coverage_table(
    methods: Iterable[str], ns: Iterable[int], scenarios: Iterable[str], *, n_studies: int, seed: int
) -> list[dict]:
    """One row per (method, n, scenario): ``{"method", "n", "scenario", "coverage", "se",
    "n_studies"}``, where ``se`` is the coverage's Monte Carlo standard error."""
    rows = []
    for method, n, scenario in itertools.product(list(methods), list(ns), list(scenarios)):
        coverage = interval_coverage(method, n, scenario, n_studies=n_studies, seed=seed)
        rows.append(
            {
                "method": method,
                "n": n,
                "scenario": scenario,
                "coverage": coverage,
                "se": float(np.sqrt(coverage * (1 - coverage) / n_studies)),
                "n_studies": n_studies,
            }
        )
    return rows


def benjamini_hochberg_rows(p_values: np.ndarray) -> np.ndarray:
    """:func:`~bark_ablation.study.statistics.benjamini_hochberg` applied to each row of a 2-D
    array without NaN (vectorised, for simulations)."""
    p = np.asarray(p_values, dtype=np.float64)
    m = p.shape[-1]
    order = np.argsort(p, axis=-1, kind="stable")
    ranked = np.take_along_axis(p, order, axis=-1) * m / np.arange(1, m + 1)
    ranked = np.minimum(np.minimum.accumulate(ranked[..., ::-1], axis=-1)[..., ::-1], 1.0)
    adjusted = np.empty_like(ranked)
    np.put_along_axis(adjusted, order, ranked, axis=-1)
    return adjusted


_ROW_ADJUSTMENTS = {None: lambda p: p, "holm": holm_rows, "bh": benjamini_hochberg_rows}


def _factorial_contrasts(n_tests: int) -> np.ndarray:
    """Sign columns of the first ``n_tests`` factorial terms of the smallest 2^k design with at
    least that many terms (k = 3 and all seven terms for ``n_tests`` = 7), shape (2^k, n_tests)."""
    k = 1
    while 2**k - 1 < n_tests:
        k += 1
    design = _design(k)
    terms = [term for size in range(1, k + 1) for term in itertools.combinations(range(k), size)]
    return np.stack([design[:, list(term)].prod(axis=1) for term in terms[:n_tests]], axis=1)


def familywise_error_rate(
    n_tests: int, n_units: int, *, adjust: str | None, n_studies: int, seed: int, alpha: float = 0.05
) -> float:
    """Fraction of simulated null studies with at least one (adjusted) p-value below ``alpha``.

    Each study has ``n_units`` units; each unit draws the cells of a 2^k design (k = 3 for the
    study's seven terms) independently from Beta(9,1), SECS-like values with no effect of any
    stage. The family is ``n_tests`` factorial terms, each tested with a two-sided one-sample
    t-test of its per-unit contrast ``sum(y * x) / 2^(k-1)`` over the units; ``adjust`` is None
    (no adjustment), "holm" or "bh".
    """
    if adjust not in _ROW_ADJUSTMENTS:
        raise ValueError(f"unknown adjustment {adjust!r}: expected None, 'holm' or 'bh'")
    if n_units < 2:
        raise ValueError(f"a t-test needs at least 2 units, got n_units={n_units}")
    contrasts = _factorial_contrasts(n_tests)
    rng = np.random.default_rng(seed)
    cells = rng.beta(9, 1, size=(n_studies, n_units, contrasts.shape[0]))
    effects = cells @ contrasts / (contrasts.shape[0] / 2)  # (studies, units, tests)
    t = effects.mean(axis=1) / (effects.std(axis=1, ddof=1) / np.sqrt(n_units))
    p = 2 * stats.t.sf(np.abs(t), n_units - 1)
    adjusted = _ROW_ADJUSTMENTS[adjust](p)
    return float(np.mean((adjusted < alpha).any(axis=1)))


__all__ = [
    "METHODS",
    "SCENARIOS",
    "Scenario",
    "benjamini_hochberg_rows",
    "coverage_table",
    "familywise_error_rate",
    "interval_coverage",
]
