"""A drift planted in one policy is recovered with the right sign and an interval that covers it;
its twins (a plant in the other direction, a policy that silently uses the prompt) fail the check.

The run (tests/longform/conftest.py) gives 5 speakers a synthetic voice each. The plant
(:class:`CarryOverFade`) blends that voice into every chunk of ``previous`` (95 % of the RMS),
with 25 % more of it replaced by voiceless noise for each chunk the semantic stage carried history
over, as the run recorded it. The planted size is measured from the scores by
:func:`planted_drift`, apart from the statistics code.

Measured (CPU, tiny set, seed 0, 4 chunks of 0.4 s): planted -0.100 SECS per chunk; recovered
-0.100 [-0.127, -0.073], Holm p 0.001; ``prompt`` +0.0005 [-0.005, +0.006]; the reversed plant
+0.104 [+0.080, +0.127].
"""

from __future__ import annotations

import pytest
from plant_design import PASSAGE, PLANT_PARAMS, SPEAKERS

from bark_ablation.core.checks import CheckFailure
from bark_ablation.core.errors import ParamsError
from bark_ablation.longform import generation
from bark_ablation.longform.generation import LongformDesign, run_longform
from bark_ablation.longform.identity_drift import analyse_drift
from bark_ablation.longform.planting import CarryOverFade, Unfaded, check_drift_recovered, planted_drift
from bark_ablation.longform.scoring import score_chunks
from bark_ablation.study.synthetic_voices import voiceless

STEP = 0.25


def fade(voices, step=STEP, follow="recorded"):
    return CarryOverFade(
        "semantic", step, "previous", sources=voices, neutral=voiceless(), base=0.0 if step > 0 else 0.75, follow=follow
    )


@pytest.fixture(scope="module")
def scoring(plant_run, voice_references):
    """``scoring(run, transform)`` -> scores; one embedding cache for every plant."""
    cache: dict = {}

    def scores_of(run, transform):
        return score_chunks(run, references=voice_references, transform=transform, embedding_cache=cache)[0]

    return scores_of


@pytest.fixture(scope="module")
def planted(plant_run, voice_references, scoring):
    """The size the plant should have: applied by the policy's promise, measured from the scores."""
    unplanted = scoring(plant_run, Unfaded())
    return planted_drift(unplanted, scoring(plant_run, fade(voice_references, follow="policy")), "previous")


def test_a_planted_fade_is_recovered_in_its_policy(plant_run, voice_references, scoring, planted):
    result = analyse_drift(scoring(plant_run, fade(voice_references)))
    assert planted.mean < -0.05 and planted.unit == "speaker" and len(planted.per_unit) == len(SPEAKERS)
    check_drift_recovered(result.get("previous"), planted)
    assert result.get("previous").slope.survives
    assert not result.get("prompt").slope.survives  # the other policy is untouched
    assert result.best.policy == "prompt"


def test_without_a_plant_no_policy_drifts(plant_run, scoring):
    result = analyse_drift(scoring(plant_run, Unfaded()))
    assert not any(d.slope.survives for d in result.drift)


def test_a_plant_in_the_other_direction_fails_the_check(plant_run, voice_references, scoring, planted):
    """Known-bad twin: the voice grows chunk by chunk instead of fading."""
    result = analyse_drift(scoring(plant_run, fade(voice_references, step=-STEP)))
    with pytest.raises(
        CheckFailure, match=r"policy 'previous': estimated slope \+0\.\d+ SECS/chunk has the wrong sign"
    ):
        check_drift_recovered(result.get("previous"), planted)


def test_a_policy_that_silently_uses_the_prompt_fails_the_check(
    tiny_models, voice_references, scoring, planted, monkeypatch
):
    """Known-bad twin: every stage given the prompt where ``previous`` promises the previous chunk."""
    monkeypatch.setattr(generation, "chunk_history", lambda policy, stage, prompt, previous: prompt)
    design = LongformDesign.build(SPEAKERS, [PASSAGE], [0], ["prompt", "previous"])
    broken = run_longform(design, PLANT_PARAMS, model_set=tiny_models)
    monkeypatch.undo()
    result = analyse_drift(scoring(broken, fade(voice_references)))
    with pytest.raises(CheckFailure, match=r"planted slope -0\.\d+ SECS/chunk outside|wrong sign"):
        check_drift_recovered(result.get("previous"), planted)


def test_the_check_refuses_another_policy_s_plant(plant_run, scoring, planted):
    result = analyse_drift(scoring(plant_run, Unfaded()))
    with pytest.raises(CheckFailure, match="checked against a plant in 'previous'"):
        check_drift_recovered(result.get("prompt"), planted)


def test_the_fade_follows_the_recorded_carry_over(plant_run, voice_references):
    plant = fade(voice_references)
    previous = plant_run.runs()[(SPEAKERS[0], 0, "previous", 0)]
    assert [plant.faded(c) for c in previous] == [0.0, 0.25, 0.5, 0.75]
    prompt_chunk = plant_run.runs()[(SPEAKERS[0], 0, "prompt", 0)][2]
    assert plant(prompt_chunk, voice_references).size == int(2.0 * prompt_chunk.sample_rate)  # scored as is


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"stage": "decode"}, "plant stage: must be one of semantic, coarse, fine"),
        ({"step": 1.5}, r"plant step: must be in \[-1, 1\]"),
        ({"weight": 0.0}, r"plant weight: must be in \(0, 1\]"),
        ({"follow": "hope"}, "plant follow: must be 'recorded' or 'policy'"),
    ],
)
def test_a_bad_plant_is_refused_by_name(voice_references, kwargs, message):
    arguments = {"stage": "semantic", "step": STEP, "policy": "previous", "sources": voice_references}
    with pytest.raises(ParamsError, match=message):
        CarryOverFade(**{**arguments, "neutral": voiceless(), **kwargs})


def test_the_planted_size_needs_the_same_chunks(plant_run, scoring):
    scores = scoring(plant_run, Unfaded())
    with pytest.raises(ParamsError, match="planted scores: must score the same chunks"):
        planted_drift(scores, scores[1:], "previous")


def test_a_plant_may_name_its_policy_by_id(voice_references):
    plant = CarryOverFade("semantic", STEP, "ppp", sources=voice_references, neutral=voiceless())
    assert plant.policy == "previous"
    with pytest.raises(ParamsError, match="policies: unknown policy 'later'"):
        CarryOverFade("semantic", STEP, "later", sources=voice_references, neutral=voiceless())
