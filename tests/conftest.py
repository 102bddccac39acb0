"""Fixtures shared by the golden-store, drift and golden-workflow tests (tiny set, CPU)."""

from __future__ import annotations

import pytest

from bark_ablation.generation.pipeline import run_matrix
from bark_ablation.testing.matrix import REGRESSION_TEXT
from bark_ablation.testing.scheduling import shared_file_scheduler

pytest_plugins = ("pytester",)

CLI_RUN_TEXT = "Hello there."

SHARED_WORKER_FILES = {
    "tests/suite/test_golden.py": "regression matrices",
    "tests/suite/test_matrix_regression.py": "regression matrices",
    "tests/suite/test_cli.py": "cli run",
    "tests/study/test_run_merge.py": "cli run",
    "tests/longform/test_chunk_scoring.py": "long-form plant run",
    "tests/longform/test_drift_planting.py": "long-form plant run",
}
"""Test files that run on one xdist worker because they read the same session fixtures, which
are then built once: the regression matrices (the plugin's ``regression_matrix``; measured on 2
cores: 62.7 s in one process against 55.5 s + 51.4 s when ``--dist loadfile`` put the two files
on two workers), :func:`cli_run`, and the long-form run planted drifts are scored on
(``plant_run`` of tests/longform/conftest.py, about 20 s)."""


@pytest.hookimpl(tryfirst=True)
def pytest_xdist_make_scheduler(config, log):
    """``--dist loadfile`` with the files of :data:`SHARED_WORKER_FILES` as one unit of work
    (:func:`bark_ablation.testing.scheduling.shared_file_scheduler`)."""
    return shared_file_scheduler(config, log, SHARED_WORKER_FILES)


@pytest.fixture(scope="session")
def tiny_generations(tiny_models, generation_params, voice_prompts):
    """``{cell: Generation}`` for cells ``scf`` and ``---`` of en_speaker_0, seed 0, on the tiny
    set (whatever ``--bark-model-set`` says), 1 s of audio."""
    run = run_matrix(
        REGRESSION_TEXT, voice_prompts["en_speaker_0"], [0], ["scf", "---"], generation_params, model_set=tiny_models
    )
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
        status = cli.main(
            [
                "run",
                "--prompt",
                "en_speaker_0",
                "--text",
                CLI_RUN_TEXT,
                "--seeds",
                "0",
                "1",
                "--max-duration",
                "0.4",
                "--quiet",
                "--model-set",
                "tiny",
                "--out",
                str(out),
            ]
        )
    assert status == 0
    return out, stdout.getvalue()
