"""Golden regression: every cell x prompt x seed of the regression matrix against the golden
data of this model set and device class (tokens exactly, then audio by spectral features), and
every other generation profile's cases (bark_ablation.core.profiles) against theirs.

Create or refresh golden data with ``--bark-golden-force-regen`` (writes, then fails for review) or
``--bark-golden-regen-all`` (writes and passes). A device class without golden data is skipped."""

from __future__ import annotations

import pytest

from bark_ablation.core.conditioning import ALL_CONDITIONINGS
from bark_ablation.core.profiles import DEFAULT_PROFILE, PROFILES
from bark_ablation.pytest_plugin import profile_marks
from bark_ablation.testing.matrix import REGRESSION_PROMPTS, REGRESSION_SEEDS, regression_cases

CELLS = [pytest.param(c.id, id=c.id) for c in ALL_CONDITIONINGS]
PROMPTS = [pytest.param(p, id=p.replace("/", "-")) for p in REGRESSION_PROMPTS]
SEEDS = [pytest.param(s, id=f"seed{s}") for s in REGRESSION_SEEDS]


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("prompt", PROMPTS)
@pytest.mark.parametrize("cell", CELLS)
def test_matches_golden(regression_matrix, voice_prompts, golden_check, cell, prompt, seed):
    golden_check(regression_matrix(prompt, seed).get(cell, seed), voice_prompts[prompt])


@pytest.mark.parametrize(
    "profile, prompt, seed, cell",
    [
        pytest.param(name, prompt, seed, cell, id=f"{name}-{cell}", marks=profile_marks(name))
        for name in PROFILES
        if name != DEFAULT_PROFILE
        for prompt, seed, cell in regression_cases(name)
    ],
)
def test_profile_matches_golden(regression_matrix, voice_prompts, golden_check, profile, prompt, seed, cell):
    run = regression_matrix(prompt, seed, profile)
    golden_check(run.get(cell, seed), voice_prompts[prompt], model_set=run.model_set)
