"""Control histories (random, shuffled, other speaker): valid for Bark, deterministic, and
actually different from the prompt; the pipeline runs them as cells."""

from __future__ import annotations

import numpy as np
import pytest

from bark_ablation.core import checks
from bark_ablation.core.conditioning import CONTROLS, STAGES, HistorySource, Stage
from bark_ablation.core.controls import stage_history
from bark_ablation.core.errors import ParamsError
from bark_ablation.core.prompts import CODEBOOK_SIZE, SEMANTIC_VOCAB_SIZE
from bark_ablation.generation.pipeline import run_matrix
from bark_ablation.testing.matrix import REGRESSION_TEXT


@pytest.fixture(scope="module")
def prompt(voice_prompts):
    return voice_prompts["en_speaker_0"]


@pytest.mark.parametrize("stage", STAGES)
def test_random_history_has_the_prompts_lengths_and_valid_ranges(prompt, stage):
    history = stage_history(HistorySource.RANDOM, stage, prompt, seed=0)
    assert history.semantic.shape == prompt.semantic.shape and history.fine.shape == prompt.fine.shape
    assert 0 <= history.semantic.min() and history.semantic.max() < SEMANTIC_VOCAB_SIZE
    assert 0 <= history.fine.min() and history.fine.max() < CODEBOOK_SIZE
    np.testing.assert_array_equal(history.fine[:2], history.coarse)
    assert np.mean(history.semantic == prompt.semantic) < 0.01


@pytest.mark.parametrize("stage", STAGES)
def test_shuffled_history_permutes_frames_and_keeps_codebooks_aligned(prompt, stage):
    history = stage_history(HistorySource.SHUFFLED, stage, prompt, seed=0)
    assert sorted(history.semantic) == sorted(prompt.semantic)
    assert not np.array_equal(history.semantic, prompt.semantic)
    frames_before = {tuple(column) for column in prompt.fine.T}
    assert {tuple(column) for column in history.fine.T} == frames_before
    np.testing.assert_array_equal(history.fine[:2], history.coarse)


@pytest.mark.parametrize("source", [HistorySource.RANDOM, HistorySource.SHUFFLED])
def test_control_draws_are_deterministic_and_differ_between_seeds_and_stages(prompt, source):
    first = stage_history(source, Stage.SEMANTIC, prompt, seed=3)
    assert first.fingerprint == stage_history(source, Stage.SEMANTIC, prompt, seed=3).fingerprint
    assert first.fingerprint != stage_history(source, Stage.SEMANTIC, prompt, seed=4).fingerprint
    assert first.fingerprint != stage_history(source, Stage.COARSE, prompt, seed=3).fingerprint


def test_other_speaker_cells_need_another_speakers_prompt(prompt, tiny_models, generation_params):
    with pytest.raises(ParamsError, match="other_prompt: cells ooo give a stage another speaker's history"):
        run_matrix(REGRESSION_TEXT, prompt, [0], ["ooo"], generation_params, model_set=tiny_models)
    with pytest.raises(ParamsError, match="must be another speaker's prompt"):
        run_matrix(REGRESSION_TEXT, prompt, [0], ["ooo"], generation_params, model_set=tiny_models, other_prompt=prompt)


@pytest.fixture(scope="module")
def control_run(prompt, voice_prompts, tiny_models, generation_params):
    return run_matrix(
        REGRESSION_TEXT,
        prompt,
        [0],
        ["scf", *CONTROLS.values()],
        generation_params,
        model_set=tiny_models,
        other_prompt=voice_prompts["en_speaker_3"],
    )


@pytest.mark.parametrize("name", list(CONTROLS))
def test_every_control_runs_through_bark_and_passes_the_checks(control_run, name):
    generation = control_run.get(CONTROLS[name], 0)
    checks.check_shapes(generation)
    checks.check_token_ranges(generation)
    checks.check_durations(generation)


@pytest.mark.parametrize(
    "name, first_changed_stage",
    [
        ("random-semantic", "semantic"),
        ("shuffled-semantic", "semantic"),
        ("other-speaker-semantic", "semantic"),
        ("other-speaker-coarse-fine", "coarse"),
        ("random-all", "semantic"),
        ("other-speaker", "semantic"),
    ],
)
def test_a_control_changes_its_stage_and_nothing_upstream(control_run, name, first_changed_stage):
    full, control = control_run.get("scf", 0), control_run.get(CONTROLS[name], 0)
    stages = ["semantic", "coarse", "fine"]
    for stage in stages[: stages.index(first_changed_stage)]:
        checks.assert_tokens_equal(getattr(full, stage), getattr(control, stage), f"{name}: {stage}")
    checks.assert_differs(
        getattr(full, first_changed_stage), getattr(control, first_changed_stage), f"{name}: {first_changed_stage}"
    )


def test_other_speaker_is_recorded(control_run):
    assert control_run.get("ooo", 0).other_prompt == "en_speaker_3"
    assert control_run.get("rcf", 0).other_prompt is None
    assert control_run.get("ooo", 0).summary()["other_prompt"] == "en_speaker_3"
