"""Multiplicity: Holm's adjustment is the closed test of Bonferroni tests, checked against a
brute-force definition; Benjamini-Hochberg is scipy's; NaN p-values are left out of the family;
and, simulated on null SECS-like data, Holm keeps the family-wise error of the seven factorial
terms at 5 % where unadjusted tests make a false claim in ~30 % of studies."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats

from bark_ablation.study.coverage import benjamini_hochberg_rows, familywise_error_rate
from bark_ablation.study.statistics import Estimate, adjust_family, benjamini_hochberg, holm, holm_rows

p_values = st.floats(min_value=0.0, max_value=1.0, allow_nan=False)
p_lists = st.lists(st.one_of(p_values, st.sampled_from([0.0, 0.01, 0.05, 1.0])), min_size=1, max_size=7)


def closed_testing_bonferroni(p: list[float]) -> list[float]:
    """Adjusted p of each hypothesis by the definition: the largest Bonferroni p of every
    intersection hypothesis that contains it (all 2^m - 1 subsets)."""
    adjusted = [0.0] * len(p)
    for size in range(1, len(p) + 1):
        for subset in itertools.combinations(range(len(p)), size):
            bonferroni = min(1.0, size * min(p[j] for j in subset))
            for i in subset:
                adjusted[i] = max(adjusted[i], bonferroni)
    return adjusted


@settings(max_examples=300, deadline=None)
@given(p_lists)
def test_holm_is_closed_testing_with_bonferroni(p):
    assert list(holm(p)) == pytest.approx(closed_testing_bonferroni(p), rel=1e-12, abs=1e-15)


@settings(max_examples=200, deadline=None)
@given(p_lists)
def test_holm_is_monotone_capped_and_never_below_the_raw_p(p):
    adjusted = holm(p)
    order = np.argsort(p, kind="stable")
    assert np.all(np.diff(adjusted[order]) >= 0)
    assert np.all(adjusted <= 1.0) and np.all(adjusted >= np.asarray(p))


def test_holm_known_values():
    assert list(holm([0.01, 0.04, 0.03, 0.005])) == pytest.approx([0.03, 0.06, 0.06, 0.02])
    assert list(holm([0.5, 0.6])) == pytest.approx([1.0, 1.0])
    assert list(holm([0.02])) == [0.02]
    assert holm([]).shape == (0,)


def test_nan_p_values_stay_nan_and_do_not_count():
    for adjust in (holm, benjamini_hochberg):
        adjusted = adjust([0.01, math.nan, 0.04])
        assert math.isnan(adjusted[1])
        assert list(adjusted[[0, 2]]) == pytest.approx(list(adjust([0.01, 0.04])))
        assert np.isnan(adjust([math.nan, math.nan])).all()


@settings(max_examples=200, deadline=None)
@given(p_lists)
def test_benjamini_hochberg_is_scipys(p):
    assert list(benjamini_hochberg(p)) == pytest.approx(list(stats.false_discovery_control(p, method="bh")))


@settings(max_examples=100, deadline=None)
@given(st.lists(st.lists(p_values, min_size=7, max_size=7), min_size=1, max_size=5))
def test_vectorised_adjustments_equal_the_scalar_ones_row_by_row(rows):
    matrix = np.array(rows)
    for row, holm_row, bh_row in zip(rows, holm_rows(matrix), benjamini_hochberg_rows(matrix), strict=True):
        assert list(holm_row) == pytest.approx(list(holm(row)), rel=1e-12, abs=1e-15)
        assert list(bh_row) == pytest.approx(list(benjamini_hochberg(row)), rel=1e-12, abs=1e-15)


def test_adjust_family_returns_copies_with_the_adjusted_p():
    family = [Estimate(name, 0.1, 0.0, 0.2, 5, p_value=p) for name, p in (("a", 0.01), ("b", 0.04), ("c", 0.03))]
    holm_family = adjust_family(family)
    assert [e.p_adjusted for e in holm_family] == pytest.approx([0.03, 0.06, 0.06])
    assert [e.survives for e in holm_family] == [True, False, False]
    assert [e.p_adjusted for e in adjust_family(family, "bh")] == pytest.approx([0.03, 0.04, 0.04])
    assert all(math.isnan(e.p_adjusted) for e in family)  # the originals are untouched
    with pytest.raises(ValueError, match="unknown adjustment"):
        adjust_family(family, "bonferroni")


N_STUDIES = 20_000
SE = math.sqrt(0.05 * 0.95 / N_STUDIES)
"""Monte Carlo SE of a family-wise error rate near 5 %: 0.15 percentage points."""


@pytest.mark.parametrize("n_units", [5, 10])
@pytest.mark.parametrize("adjust", ["holm", "bh"])
def test_adjusted_tests_keep_the_familywise_error_at_alpha_under_the_null(adjust, n_units):
    """Under the complete null, BH's false discovery rate is its family-wise error rate, so both
    hold it at 5 %."""
    rate = familywise_error_rate(7, n_units, adjust=adjust, n_studies=N_STUDIES, seed=n_units)
    assert rate <= 0.05 + 2 * SE


@pytest.mark.parametrize("n_units", [5, 10])
def test_known_bad_twin_unadjusted_tests_make_false_claims_in_a_third_of_studies(n_units):
    rate = familywise_error_rate(7, n_units, adjust=None, n_studies=N_STUDIES, seed=n_units)
    assert rate > 0.2  # 1 - 0.95^7 = 0.30 for seven independent tests
    assert rate > 0.05 + 2 * SE  # the check above would catch it


def test_one_test_is_not_adjusted_and_its_error_is_alpha():
    rates = [familywise_error_rate(1, 10, adjust=adjust, n_studies=N_STUDIES, seed=1) for adjust in (None, "holm")]
    assert rates[0] == rates[1] and abs(rates[0] - 0.05) < 4 * SE
