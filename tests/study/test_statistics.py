"""Statistics: t-intervals, paired differences and factorial effects recover effects built
into synthetic scores by hand; tests and their family adjustment; bad inputs are refused."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
from scipy import stats

from bark_ablation.core.conditioning import ALL_CONDITIONINGS
from bark_ablation.study.statistics import (
    Estimate,
    auc,
    cell_estimates,
    factorial_effects,
    paired_differences,
    percentile_bootstrap_estimate,
    t_estimate,
)

SEEDS = range(6)


def synthetic_scores(semantic=0.0, coarse=0.0, fine=0.0, semantic_x_coarse=0.0, noise=0.0):
    """y = 0.7 + sum(effect / 2 * x) + interaction / 2 * x_s * x_c (+ seed noise shared by cells),
    with x = +1 on / -1 off: then each main effect is exactly the effect given."""
    rng = np.random.default_rng(0)
    scores = {}
    for seed in SEEDS:
        seed_offset = noise * rng.standard_normal()
        for cell in ALL_CONDITIONINGS:
            x = {
                stage: (1 if char != "-" else -1)
                for stage, char in zip(("semantic", "coarse", "fine"), cell.id, strict=True)
            }
            scores[(cell.id, seed)] = (
                0.7
                + semantic / 2 * x["semantic"]
                + coarse / 2 * x["coarse"]
                + fine / 2 * x["fine"]
                + semantic_x_coarse / 2 * x["semantic"] * x["coarse"]
                + seed_offset
            )
    return scores


# The absent effects are zero up to rounding, so scipy warns that their t-test is meaningless.
@pytest.mark.filterwarnings("ignore:Precision loss occurred in moment calculation")
def test_factorial_effects_recover_known_main_effects_and_interaction():
    effects = {
        e.name: e
        for e in factorial_effects(synthetic_scores(semantic=0.2, coarse=0.05, semantic_x_coarse=0.04, noise=0.01))
    }
    assert effects["semantic"].mean == pytest.approx(0.2)
    assert effects["coarse"].mean == pytest.approx(0.05)
    assert effects["fine"].mean == pytest.approx(0.0, abs=1e-12)
    assert effects["semantic x coarse"].mean == pytest.approx(0.04)
    assert effects["coarse x fine"].mean == pytest.approx(0.0, abs=1e-12)
    assert effects["semantic"].n == len(SEEDS)


def test_seed_offsets_cancel_in_paired_comparisons():
    differences = {e.name: e for e in paired_differences(synthetic_scores(fine=0.1, noise=0.05))}
    assert differences["sc- - scf"].mean == pytest.approx(-0.1)
    assert differences["sc- - scf"].ci_low == pytest.approx(-0.1) and differences["sc- - scf"].ci_high == pytest.approx(
        -0.1
    )
    cells = {e.name: e for e in cell_estimates(synthetic_scores(fine=0.1, noise=0.05))}
    assert cells["scf"].ci_high - cells["scf"].ci_low > 0.01  # unpaired: the seed noise shows


@pytest.mark.parametrize("estimate", [t_estimate, percentile_bootstrap_estimate])
def test_interval_covers_the_mean_and_narrows_with_more_data(estimate):
    rng = np.random.default_rng(1)
    small = estimate("x", rng.normal(0.5, 0.1, 10))
    large = estimate("x", rng.normal(0.5, 0.1, 1000))
    assert small.ci_low < small.mean < small.ci_high
    assert large.ci_low < 0.5 < large.ci_high
    assert (large.ci_high - large.ci_low) < (small.ci_high - small.ci_low) / 3


@pytest.mark.parametrize("estimate", [t_estimate, percentile_bootstrap_estimate])
def test_one_seed_has_no_interval_and_no_values_is_an_error(estimate):
    single = estimate("x", [0.8])
    assert single.mean == 0.8 and math.isnan(single.ci_low) and single.to_dict()["ci_low"] is None
    assert math.isnan(single.p_value) and math.isnan(single.sd) and single.to_dict()["p_value"] is None
    with pytest.raises(ValueError, match="x: no values"):
        estimate("x", [])


def test_factorial_effects_need_all_eight_cells():
    scores = {key: value for key, value in synthetic_scores().items() if key[0] != "-c-"}
    with pytest.raises(ValueError, match="need all 8 on/off cells"):
        factorial_effects(scores)


def test_auc_separates_and_fails_on_chance():
    assert auc([0.9, 0.95, 0.92], [0.5, 0.6, 0.7]) == 1.0
    assert auc([0.5, 0.6], [0.9, 0.95]) == 0.0
    rng = np.random.default_rng(2)
    assert abs(auc(rng.random(400), rng.random(400)) - 0.5) < 0.06
    with pytest.raises(ValueError, match="at least one positive and one negative"):
        auc([], [0.1])


def test_every_term_is_reported_once():
    names = [e.name for e in factorial_effects(synthetic_scores())]
    expected = [" x ".join(t) for n in (1, 2, 3) for t in itertools.combinations(["semantic", "coarse", "fine"], n)]
    assert names == expected


def test_standardized_effect_is_cohens_dz():
    differences = [0.1, 0.2, 0.3, 0.2]
    estimate = t_estimate("d", differences)
    assert estimate.standardized == pytest.approx(0.2 / np.std(differences, ddof=1))
    assert estimate.sd == pytest.approx(np.std(differences, ddof=1))
    assert t_estimate("flat", [0.0, 0.0]).standardized == 0.0
    assert t_estimate("same", [0.2, 0.2]).standardized == math.inf
    assert t_estimate("one", [0.3]).to_dict()["standardized"] is None


def test_t_estimate_is_the_student_interval_and_test():
    values = [0.12, -0.03, 0.25, 0.08, 0.16]
    estimate = t_estimate("e", values)
    n, mean, sd = len(values), np.mean(values), np.std(values, ddof=1)
    half = stats.t.ppf(0.975, n - 1) * sd / math.sqrt(n)
    assert (estimate.ci_low, estimate.ci_high) == (pytest.approx(mean - half), pytest.approx(mean + half))
    t = mean / (sd / math.sqrt(n))
    assert estimate.p_value == pytest.approx(2 * stats.t.sf(abs(t), n - 1))
    assert math.isnan(estimate.p_adjusted) and not estimate.survives
    narrow = t_estimate("e", values, confidence=0.5)
    assert estimate.ci_low < narrow.ci_low < narrow.ci_high < estimate.ci_high
    assert math.isnan(t_estimate("e", values, test_zero=False).p_value)


def test_equal_values_give_a_point_interval_and_a_definite_test():
    zero, shifted = t_estimate("z", [0.0, 0.0, 0.0]), t_estimate("s", [0.1, 0.1, 0.1])
    assert (zero.ci_low, zero.ci_high, zero.p_value, zero.sd) == (0.0, 0.0, 1.0, 0.0)
    assert (shifted.ci_low, shifted.ci_high, shifted.p_value) == (0.1, 0.1, 0.0)


def test_cells_are_not_tested_and_comparisons_are_holm_adjusted_per_family():
    scores = synthetic_scores(semantic=0.2, noise=0.01)
    rng = np.random.default_rng(3)
    scores = {key: value + 0.01 * rng.standard_normal() for key, value in scores.items()}
    assert all(math.isnan(e.p_value) and math.isnan(e.p_adjusted) for e in cell_estimates(scores))
    for family in (paired_differences(scores), factorial_effects(scores)):
        p = np.array([e.p_value for e in family])
        order = np.argsort(p)
        expected = np.minimum(np.maximum.accumulate(p[order] * (len(p) - np.arange(len(p)))), 1.0)
        assert [family[i].p_adjusted for i in order] == pytest.approx(list(expected))
    effects = {e.name: e for e in factorial_effects(scores)}
    assert effects["semantic"].survives and not effects["fine"].survives


def test_to_dict_has_the_test_fields_and_none_for_non_finite():
    row = Estimate("x", 0.1, 0.0, 0.2, 5, math.inf, p_value=0.01, p_adjusted=math.nan, sd=0.05).to_dict()
    assert row == {
        "name": "x",
        "mean": 0.1,
        "ci_low": 0.0,
        "ci_high": 0.2,
        "n": 5,
        "standardized": None,
        "p_value": 0.01,
        "p_adjusted": None,
        "sd": 0.05,
    }
