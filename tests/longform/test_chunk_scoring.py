"""SECS per chunk: against the prompt's reference and against the run's first chunk."""

from __future__ import annotations

import numpy as np
import pytest

from bark_ablation.longform.planting import Unfaded
from bark_ablation.longform.scoring import score_chunks
from bark_ablation.study.similarity import prompt_reference_audio


@pytest.fixture(scope="module")
def scored(plant_run, voice_references):
    return score_chunks(plant_run, references=voice_references, transform=Unfaded())


def test_one_score_per_chunk_in_the_run_s_order(plant_run, scored):
    scores, _, per_score = scored
    assert [(s.prompt, s.policy, s.chunk) for s in scores] == [
        (c.prompt, c.policy.name, c.chunk) for c in plant_run.chunks
    ]
    assert per_score > 0
    assert all(s.duration_s == pytest.approx(c.duration_s) for s, c in zip(scores, plant_run.chunks, strict=True))


def test_the_first_chunk_scores_one_against_itself_and_alike_under_every_policy(scored):
    scores, _, _ = scored
    firsts = [s for s in scores if s.chunk == 0]
    assert all(s.secs_first == pytest.approx(1.0, abs=1e-5) for s in firsts)
    for speaker in {s.prompt for s in firsts}:
        assert len({s.secs_prompt for s in firsts if s.prompt == speaker}) == 1


def test_later_chunks_are_scored_against_the_first_not_themselves(scored):
    later = [s for s in scored[0] if s.chunk > 0]
    assert all(-1.0 <= s.secs_first < 1.0 - 1e-4 for s in later)


def test_the_references_given_are_the_ones_scored_against(plant_run, voice_references, scored):
    scores, references, _ = scored
    assert references.keys() == voice_references.keys()
    decoded, _, _ = score_chunks(plant_run, transform=Unfaded())  # default: the prompt decoded by the codec
    assert [s.secs_prompt for s in decoded] != [s.secs_prompt for s in scores]


def test_by_default_the_reference_is_the_prompt_decoded_by_the_run_s_codec(plant_run):
    _, references, _ = score_chunks(plant_run, transform=Unfaded())
    prompt = plant_run.design.prompts[0]
    assert np.array_equal(references[prompt.name], prompt_reference_audio(prompt, plant_run.model_set))
