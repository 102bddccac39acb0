"""Fixtures shared by the golden-store, drift and golden-workflow tests (tiny set, CPU)."""

from __future__ import annotations

import pytest

from bark_ablation.generation.pipeline import run_matrix
from bark_ablation.pytest_plugin import REGRESSION_TEXT

pytest_plugins = ("pytester",)

CLI_RUN_TEXT = "Hello there."


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


@pytest.fixture(scope="session")
def cli_run(tmp_path_factory, tiny_models):
    """``(out, stdout)`` of one ``bark-ablation run`` on the tiny set: en_speaker_0, "Hello there.",
    seeds 0 and 1, all 8 cells, 0.4 s of audio, with the study. Shared read-only by the CLI and
    merge tests (the merge is compared with exactly this run over both seeds)."""
    import contextlib
    import io

    from bark_ablation import cli

    out = tmp_path_factory.mktemp("cli-run") / "run"
    stdout = io.StringIO()
    with contextlib.redirect_stdout(stdout):
        status = cli.main(["run", "--prompt", "en_speaker_0", "--text", CLI_RUN_TEXT, "--seeds", "0", "1",
                           "--max-duration", "0.4", "--quiet", "--model-set", "tiny", "--out", str(out)])
    assert status == 0
    return out, stdout.getvalue()
