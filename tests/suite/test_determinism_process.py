"""Determinism across processes: a fresh interpreter reproduces the in-process tokens and audio
bit for bit (same device class). Catches state that leaks within one process, such as a
random generator that is not reseeded per stage."""

from __future__ import annotations

import subprocess
import sys

import numpy as np

from bark_ablation.core import checks
from bark_ablation.core.conditioning import ALL_CONDITIONINGS
from bark_ablation.testing.matrix import REGRESSION_MAX_DURATION_S, REGRESSION_TEXT

PROMPT, SEED = "en_speaker_0", 1

CHILD = f"""
import sys, numpy as np, torch
torch.set_num_threads(int(sys.argv[3]))  # the parent's count: audio is promised per thread count too
from bark_ablation import GenerationParams, run_matrix
from bark_ablation.implementations.registry import get_model_set
run = run_matrix({REGRESSION_TEXT!r}, {PROMPT!r}, [{SEED}],
                 params=GenerationParams(max_duration_s={REGRESSION_MAX_DURATION_S}),
                 model_set=get_model_set("tiny", "cpu", implementation=sys.argv[2]))
arrays = {{}}
for g in run.generations:
    for part in ("semantic", "coarse", "fine", "audio"):
        arrays[f"{{g.cell}}/{{part}}"] = getattr(g, part)
np.savez(sys.argv[1], **arrays)
"""


def test_fresh_process_reproduces_every_cell(tmp_path, regression_matrix, model_set):
    if model_set.name != "tiny" or model_set.device != "cpu":
        import pytest

        pytest.skip("the child process builds the tiny set on CPU")
    out = tmp_path / "child.npz"
    import torch

    subprocess.run(
        [sys.executable, "-c", CHILD, str(out), model_set.implementation, str(torch.get_num_threads())],
        check=True,
        timeout=300,
    )
    run = regression_matrix(PROMPT, SEED)
    with np.load(out) as child:
        for cell in ALL_CONDITIONINGS:
            ours = run.get(cell, SEED)
            for part in ("semantic", "coarse", "fine"):
                checks.assert_tokens_equal(
                    getattr(ours, part), child[f"{cell.id}/{part}"], f"{cell.id} {part}, fresh process vs this one"
                )
            checks.assert_audio_identical(
                ours.audio, child[f"{cell.id}/audio"], f"{cell.id} audio, fresh process vs this one"
            )
