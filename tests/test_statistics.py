"""Statistics: CIs, paired differences and factorial effects recover effects built into
synthetic scores by hand; bad inputs are refused."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest

from bark_ablation.core.conditioning import ALL_CONDITIONINGS
from bark_ablation.study.statistics import (
    auc,
    bootstrap_estimate,
    cell_estimates,
    factorial_effects,
    paired_differences,
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
            x = {stage: (1 if char != "-" else -1) for stage, char in zip(("semantic", "coarse", "fine"), cell.id,
                                                                          strict=True)}
            scores[(cell.id, seed)] = (0.7 + semantic / 2 * x["semantic"] + coarse / 2 * x["coarse"]
                                       + fine / 2 * x["fine"] + semantic_x_coarse / 2 * x["semantic"] * x["coarse"]
                                       + seed_offset)
    return scores


def test_factorial_effects_recover_known_main_effects_and_interaction():
    effects = {e.name: e for e in factorial_effects(synthetic_scores(semantic=0.2, coarse=0.05,
                                                                     semantic_x_coarse=0.04, noise=0.01))}
    assert effects["semantic"].mean == pytest.approx(0.2)
    assert effects["coarse"].mean == pytest.approx(0.05)
    assert effects["fine"].mean == pytest.approx(0.0, abs=1e-12)
    assert effects["semantic x coarse"].mean == pytest.approx(0.04)
    assert effects["coarse x fine"].mean == pytest.approx(0.0, abs=1e-12)
    assert effects["semantic"].n == len(SEEDS)


def test_seed_offsets_cancel_in_paired_comparisons():
    differences = {e.name: e for e in paired_differences(synthetic_scores(fine=0.1, noise=0.05))}
    assert differences["sc- - scf"].mean == pytest.approx(-0.1)
    assert differences["sc- - scf"].ci_low == pytest.approx(-0.1) and differences["sc- - scf"].ci_high == pytest.approx(-0.1)
    cells = {e.name: e for e in cell_estimates(synthetic_scores(fine=0.1, noise=0.05))}
    assert cells["scf"].ci_high - cells["scf"].ci_low > 0.01  # unpaired: the seed noise shows


def test_bootstrap_interval_covers_the_mean_and_narrows_with_more_data():
    rng = np.random.default_rng(1)
    small = bootstrap_estimate("x", rng.normal(0.5, 0.1, 10))
    large = bootstrap_estimate("x", rng.normal(0.5, 0.1, 1000))
    assert small.ci_low < small.mean < small.ci_high
    assert large.ci_low < 0.5 < large.ci_high
    assert (large.ci_high - large.ci_low) < (small.ci_high - small.ci_low) / 3


def test_one_seed_has_no_interval_and_no_values_is_an_error():
    single = bootstrap_estimate("x", [0.8])
    assert single.mean == 0.8 and math.isnan(single.ci_low) and single.to_dict()["ci_low"] is None
    with pytest.raises(ValueError, match="x: no values"):
        bootstrap_estimate("x", [])


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
    estimate = bootstrap_estimate("d", differences)
    assert estimate.standardized == pytest.approx(0.2 / np.std(differences, ddof=1))
    assert bootstrap_estimate("flat", [0.0, 0.0]).standardized == 0.0
    assert bootstrap_estimate("one", [0.3]).to_dict()["standardized"] is None
