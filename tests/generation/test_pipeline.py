"""The pipeline: input validation before any stage runs, recorded parameters, restored global
state, and per-stage seeding."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from bark_ablation import GenerationParams, ParamsError, PromptError, generate, run_matrix
from bark_ablation.testing.matrix import REGRESSION_TEXT


@pytest.fixture
def short_params():
    return GenerationParams(max_duration_s=0.4)


@pytest.mark.parametrize(
    "kwargs, error, message",
    [
        (dict(text=""), ParamsError, "text"),
        (dict(seeds=[-3]), ParamsError, "seed"),
        (dict(seeds=[]), ParamsError, "seeds"),
        (dict(seeds=[1, 1]), ParamsError, "must not repeat"),
        (dict(conditionings=["xyz"]), ParamsError, "conditioning"),
        (dict(prompt="nobody"), PromptError, "name"),
    ],
)
def test_bad_input_is_rejected_before_any_stage_runs(tiny_models, monkeypatch, kwargs, error, message):
    import bark.generation

    def must_not_run(*args, **kw):
        raise AssertionError("a stage ran before the inputs were validated")

    monkeypatch.setattr(bark.generation, "generate_text_semantic", must_not_run)
    arguments = dict(text="Hello.", prompt="en_speaker_0", seeds=[0], conditionings=["scf"])
    arguments.update(kwargs)
    with pytest.raises(error, match=message):
        run_matrix(
            arguments.pop("text"),
            arguments.pop("prompt"),
            arguments.pop("seeds"),
            arguments.pop("conditionings"),
            model_set=tiny_models,
        )


def test_every_generation_records_its_parameters(tiny_models, short_params):
    generation = generate("Hello.", "en_speaker_0", "s-f", 3, short_params, model_set=tiny_models)
    assert generation.params == short_params
    assert (generation.cell, generation.seed, generation.prompt, generation.text) == (
        "s-f",
        3,
        "en_speaker_0",
        "Hello.",
    )
    assert set(generation.stage_seconds) == {"semantic", "coarse", "fine", "decode"}
    assert all(seconds > 0 for seconds in generation.stage_seconds.values())
    assert generation.summary()["cell"] == "s-f"


def test_parameters_reach_bark(tiny_models, short_params):
    longer = generate(
        "Hello.", "en_speaker_0", "---", 3, short_params.replace(max_duration_s=0.8), model_set=tiny_models
    )
    shorter = generate("Hello.", "en_speaker_0", "---", 3, short_params, model_set=tiny_models)
    assert (shorter.semantic.shape[0], longer.semantic.shape[0]) == (20, 40)  # 49.9 tokens per second


def test_kv_caching_gives_the_same_tokens(tiny_models, short_params):
    """Greedy (top_k=1), through the whole pipeline: equal coarse tokens give equal fine tokens
    and audio. Every cell, the reasons, and sampled agreement: tests/oracles/test_kv_cache.py."""
    greedy = short_params.replace(top_k=1)
    cached = generate(REGRESSION_TEXT, "en_speaker_0", "scf", 0, greedy, model_set=tiny_models)
    uncached = generate(
        REGRESSION_TEXT, "en_speaker_0", "scf", 0, greedy.replace(use_kv_caching=False), model_set=tiny_models
    )
    np.testing.assert_array_equal(cached.semantic, uncached.semantic)
    np.testing.assert_array_equal(cached.coarse, uncached.coarse)
    np.testing.assert_array_equal(cached.fine, uncached.fine)
    assert cached.audio.tobytes() == uncached.audio.tobytes()


def test_barks_model_registry_is_restored(tiny_models, short_params):
    import bark.generation

    sentinel = object()
    bark.generation.models["text"] = sentinel
    try:
        generate("Hello.", "en_speaker_0", "scf", 0, short_params, model_set=tiny_models)
        assert bark.generation.models == {"text": sentinel}
    finally:
        bark.generation.models.clear()


def test_callers_random_state_is_left_alone(tiny_models, short_params):
    torch.manual_seed(1234)
    expected = torch.rand(3)
    torch.manual_seed(1234)
    generate("Hello.", "en_speaker_0", "scf", 0, short_params, model_set=tiny_models)
    assert torch.equal(torch.rand(3), expected)


def test_stage_output_does_not_depend_on_what_ran_before(tiny_models, short_params):
    """Per-stage seeds: the same cell gives the same tokens whether or not other cells and
    other random draws happened first in the process."""
    first = generate(REGRESSION_TEXT, "en_speaker_6", "-c-", 5, short_params, model_set=tiny_models)
    torch.rand(1000)
    run_matrix("Something else entirely.", "en_speaker_0", [9], params=short_params, model_set=tiny_models)
    again = generate(REGRESSION_TEXT, "en_speaker_6", "-c-", 5, short_params, model_set=tiny_models)
    np.testing.assert_array_equal(first.fine, again.fine)
    assert first.audio.tobytes() == again.audio.tobytes()


def test_progress_callback_sees_every_cell(tiny_models, short_params):
    seen = []
    run_matrix(
        "Hello.",
        "en_speaker_0",
        [0, 1],
        ["scf", "---"],
        short_params,
        model_set=tiny_models,
        on_result=lambda g, i, n: seen.append((g.label, i, n)),
    )
    assert seen == [("seed0_scf", 1, 4), ("seed0_---", 2, 4), ("seed1_scf", 3, 4), ("seed1_---", 4, 4)]
