"""CUDA: the same matrix on a GPU. Selected with ``pytest -m gpu``; each test skips with its
reason where torch sees no CUDA device. Tokens are compared only within the GPU's device
class (Bark runs under bf16 autocast and TF32 there), never against CPU results."""

from __future__ import annotations

import pytest

from bark_ablation.core import checks
from bark_ablation.core.conditioning import ALL_CONDITIONINGS
from bark_ablation.pytest_plugin import REGRESSION_TEXT

pytestmark = pytest.mark.gpu


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
