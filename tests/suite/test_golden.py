"""Golden regression: every cell x prompt x seed of the regression matrix against the golden
data of this model set and device class (tokens exactly, then audio by spectral features), and
every other generation profile's cases (bark_ablation.core.profiles) against theirs, and a 3-chunk long-form
passage under the ``prompt`` and ``previous`` policies (bark_ablation.longform) against its cases.

Create or refresh golden data with ``--bark-golden-force-regen`` (writes, then fails for review) or
``--bark-golden-regen-all`` (writes and passes). A device class without golden data is skipped."""

from __future__ import annotations

import pytest

from bark_ablation.core.conditioning import ALL_CONDITIONINGS
from bark_ablation.core.profiles import DEFAULT_PROFILE, PROFILES
from bark_ablation.longform.generation import LongformDesign, as_generation, run_longform
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


LONGFORM_PASSAGE = "When I was a young boy, my father took me into the city. We saw a band! Do you remember it?"
LONGFORM_PROMPT = REGRESSION_PROMPTS[0]
LONGFORM_SEED = REGRESSION_SEEDS[0]
LONGFORM_CASES = [("prompt", 0), ("prompt", 1), ("prompt", 2), ("previous", 1), ("previous", 2)]
"""The first chunk is one generation under both policies: recorded once, as ``prompt``'s."""


@pytest.fixture(scope="module")
def longform_run(model_set, generation_params):
    design = LongformDesign.build([LONGFORM_PROMPT], [LONGFORM_PASSAGE], [LONGFORM_SEED], ["prompt", "previous"])
    return run_longform(design, generation_params, model_set=model_set)


@pytest.mark.parametrize("policy, chunk", [pytest.param(p, c, id=f"{p}-c{c}") for p, c in LONGFORM_CASES])
def test_longform_chunk_matches_golden(longform_run, voice_prompts, golden_check, policy, chunk):
    chunks = longform_run.runs()[(LONGFORM_PROMPT, 0, policy, LONGFORM_SEED)]
    generated = chunks[chunk]
    # the history the chunk was conditioned on: the voice prompt, or the previous chunk's generation,
    # so that a changed earlier chunk makes the case stale, not a false regression
    carried = chunk > 0 and generated.policy.carried_stages
    history = chunks[chunk - 1].as_history(longform_run.model_set.implementation) if carried else None
    golden_check(
        as_generation(longform_run, generated),
        history or voice_prompts[LONGFORM_PROMPT],
        model_set=longform_run.model_set,
        case=f"longform-{policy}-c{chunk}",
        description=f"long-form chunk {chunk} of {LONGFORM_PASSAGE!r}, policy {policy} "
        f"({generated.policy.description}); stage histories: {dict(generated.sources)}",
    )
