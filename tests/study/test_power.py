"""Power of the one-sample t-test from the noncentral t: consistent with itself (the minimum
detectable effect, units needed), with a Monte Carlo of the test the study runs, and with the
limit more seeds cannot pass; the normal approximation fails the same Monte Carlo check at the
study's few units (the known-bad twin)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from bark_ablation.study.power import minimum_detectable_effect, seeds_needed, t_test_power, units_needed

N_STUDIES = 20_000
TOLERANCE = 0.015
"""About 5 Monte Carlo SEs of a rejection rate near 0.8 over 20,000 studies (SE 0.28 points)."""


def assert_rejection_rate(effect: float, sd: float, n: int, expected: float, *, seed: int) -> None:
    """Simulate N_STUDIES studies of n normal values (mean ``effect``, sd ``sd``), run the
    two-sided one-sample t-test at 5 % on each, and compare the rejection rate with ``expected``."""
    values = np.random.default_rng(seed).normal(effect, sd, size=(N_STUDIES, n))
    t = values.mean(axis=1) / (values.std(axis=1, ddof=1) / math.sqrt(n))
    rate = float(np.mean(2 * stats.t.sf(np.abs(t), n - 1) < 0.05))
    assert abs(rate - expected) <= TOLERANCE, f"simulated rejection rate {rate:.4f}, expected {expected:.4f}"


@pytest.mark.parametrize("n", [2, 3, 5, 10, 30, 200])
@pytest.mark.parametrize("sd", [0.01, 1.0])
def test_power_at_the_minimum_detectable_effect_is_the_target(n, sd):
    effect = minimum_detectable_effect(sd, n)
    assert effect > 0
    assert t_test_power(effect, sd, n) == pytest.approx(0.8, abs=1e-9)
    assert t_test_power(-effect, sd, n) == pytest.approx(0.8, abs=1e-9)
    assert minimum_detectable_effect(sd, n, power=0.9) > effect


def test_power_grows_with_units_and_effect_and_is_alpha_without_effect():
    by_units = [t_test_power(0.05, 0.1, n) for n in (2, 3, 5, 10, 30, 100)]
    by_effect = [t_test_power(effect, 0.1, 5) for effect in (0.0, 0.02, 0.05, 0.1, 0.2)]
    assert by_units == sorted(by_units) and by_effect == sorted(by_effect)
    assert by_effect[0] == pytest.approx(0.05)
    assert t_test_power(10.0, 0.1, 100_000) == 1.0  # far beyond where scipy's nct tail underflows


@pytest.mark.parametrize("effect, sd", [(0.05, 0.1), (0.02, 0.03), (0.5, 1.0), (1.0, 0.5)])
def test_units_needed_is_the_first_n_that_reaches_the_power(effect, sd):
    n = units_needed(effect, sd)
    assert t_test_power(effect, sd, n) >= 0.8
    assert n == 2 or t_test_power(effect, sd, n - 1) < 0.8


def test_units_needed_none_beyond_the_cap_and_edge_cases():
    assert units_needed(0.001, 1.0, max_units=1_000) is None
    assert units_needed(0.0, 1.0) is None
    assert units_needed(0.1, 0.0) == 2
    assert math.isnan(minimum_detectable_effect(1.0, 1)) and math.isnan(minimum_detectable_effect(math.nan, 5))
    assert minimum_detectable_effect(0.0, 5) == 0.0
    assert math.isnan(t_test_power(0.1, 1.0, 1))


@pytest.mark.parametrize("n", [3, 5, 10])
def test_simulated_rejection_rate_at_the_minimum_detectable_effect_is_the_target(n):
    assert_rejection_rate(minimum_detectable_effect(1.0, n), 1.0, n, 0.8, seed=n)


def test_known_bad_twin_the_normal_approximation_overstates_power_at_five_units():
    n = 5
    normal_mde = (stats.norm.ppf(0.975) + stats.norm.ppf(0.8)) / math.sqrt(n)  # 1.25 sd, vs 1.68 from nct
    with pytest.raises(AssertionError, match="simulated rejection rate"):
        assert_rejection_rate(normal_mde, 1.0, n, 0.8, seed=n)
    assert_rejection_rate(normal_mde, 1.0, n, t_test_power(normal_mde, 1.0, n), seed=n)  # ~0.56, as nct says


def test_seeds_needed_reaches_the_power_through_the_unit_variance():
    effect, between, within, n_units, n_texts = 0.05, 0.02, 0.1, 10, 3
    seeds = seeds_needed(effect, between, within, n_units, n_texts)
    assert seeds is not None

    def unit_sd(s):
        return math.sqrt(between**2 + within**2 / (n_texts * s))

    assert t_test_power(effect, unit_sd(seeds), n_units) >= 0.8
    assert seeds == 1 or t_test_power(effect, unit_sd(seeds - 1), n_units) < 0.8
    assert seeds_needed(effect, between, within, n_units, 1) >= seeds  # fewer texts, more seeds


def test_seeds_needed_is_none_when_units_differ_too_much():
    effect, n_units = 0.05, 5
    between = 0.05  # even with exact unit effects, 5 units at d = 1 have power < 0.8
    assert t_test_power(effect, between, n_units) < 0.8
    assert seeds_needed(effect, between, 0.1, n_units, 3) is None
    assert seeds_needed(effect, 0.01, 0.1, n_units, 3) is not None
    with pytest.raises(ValueError, match="n_units >= 2"):
        seeds_needed(effect, 0.01, 0.1, 1, 3)
