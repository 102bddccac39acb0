"""Fixtures shared by the golden-store, drift and golden-workflow tests (tiny set, CPU)."""

from __future__ import annotations

import pytest

from bark_ablation.pipeline import run_matrix
from bark_ablation.pytest_plugin import REGRESSION_TEXT

pytest_plugins = ("pytester",)


@pytest.fixture(scope="session")
def tiny_generations(tiny_models, generation_params, voice_prompts):
    """``{cell: Generation}`` for cells ``scf`` and ``---`` of en_speaker_0, seed 0, on the tiny
    set (whatever ``--model-set`` says), 1 s of audio."""
    run = run_matrix(REGRESSION_TEXT, voice_prompts["en_speaker_0"], [0], ["scf", "---"],
                     generation_params, model_set=tiny_models)
    return {generation.cell: generation for generation in run.generations}


@pytest.fixture(scope="session")
def tiny_generation(tiny_generations):
    """Cell ``scf`` of :func:`tiny_generations`."""
    return tiny_generations["scf"]
