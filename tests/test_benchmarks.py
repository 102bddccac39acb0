"""Stage benchmarks (pytest-benchmark). Off by default (the suite runs with --benchmark-disable,
so each benchmark runs once as a smoke test); time them with::

    pytest tests/test_benchmarks.py --benchmark-enable --benchmark-autosave          # CPU, tiny set
    pytest -m gpu tests/test_benchmarks.py --benchmark-enable --benchmark-autosave   # CUDA, full size
    pytest ... --bark-implementation transformers                                     # Hugging Face's port

and compare saved runs with ``--benchmark-compare`` / ``pytest-benchmark compare``.
"""

from __future__ import annotations

import pytest
import torch

from bark_ablation.bench.benchmarking import (
    BENCHMARK_STAGES,
    StageWorkload,
    benchmark_params,
    extra_info,
    reset_peak_memory,
    spread,
)
from bark_ablation.pytest_plugin import REGRESSION_TEXT
from bark_ablation.models.random_model_sets import RANDOM_ARCHITECTURES, block_parameter_count

ROUNDS = 5
WARMUP_ROUNDS = 1


def run_benchmark(benchmark, workload: StageWorkload, stage: str):
    reset_peak_memory(workload.model_set.device)
    result = benchmark.pedantic(workload.call(stage), rounds=ROUNDS, warmup_rounds=WARMUP_ROUNDS, iterations=1)
    median = benchmark.stats.stats.median if benchmark.stats else None
    benchmark.extra_info.update(extra_info(workload, stage, median))
    if benchmark.stats:
        benchmark.extra_info["spread"] = spread(benchmark.stats.stats.data)
    return result


@pytest.fixture(scope="module")
def implementation(request):
    """``--bark-implementation`` (default: the installed ``bark`` module's). Benchmark names do
    not carry it, so the same benchmark saved by two implementations' runs (tox envs) compares."""
    return request.config.getoption("--bark-implementation")


@pytest.fixture(scope="module")
def tiny_workload(implementation, voice_prompts):
    from bark_ablation.implementations.registry import get_model_set

    model_set = get_model_set("tiny", "cpu", implementation=implementation)
    return StageWorkload(model_set, voice_prompts["en_speaker_6"], REGRESSION_TEXT, benchmark_params(2.0))


@pytest.mark.parametrize("stage", BENCHMARK_STAGES)
def test_cpu_stage(benchmark, tiny_workload, stage):
    result = run_benchmark(benchmark, tiny_workload, stage)
    info = benchmark.extra_info
    assert info["tokens"] > 0 and info["floor_s"] > 0 and info["peak_memory_bytes"] > 0
    if stage == "semantic":
        assert result.shape == tiny_workload.semantic.shape  # early stop off: the same work every round


def test_semantic_work_is_fixed_by_the_duration_cap(tiny_workload):
    assert tiny_workload.work("semantic")["tokens"] == 100  # 2 s: Bark stops after the first token past the cap
    assert tiny_workload.work("coarse")["tokens"] == 2 * int(100 * 75 / 49.9)


@pytest.mark.parametrize("name, published_millions", [("bark-random", 300), ("bark-small-random", 80)])
def test_random_sets_match_the_published_sizes(name, published_millions):
    assert block_parameter_count(RANDOM_ARCHITECTURES[name]) / 1e6 == pytest.approx(published_millions, rel=0.1)


@pytest.fixture(scope="module", params=list(RANDOM_ARCHITECTURES))
def gpu_workload(request, implementation, voice_prompts):
    from bark_ablation.implementations.registry import get_model_set

    model_set = get_model_set(request.param, "cuda", implementation=implementation)
    return StageWorkload(model_set, voice_prompts["en_speaker_6"], REGRESSION_TEXT, benchmark_params(5.0))


@pytest.mark.gpu
@pytest.mark.parametrize("stage", BENCHMARK_STAGES)
def test_gpu_stage(benchmark, gpu_workload, stage):
    run_benchmark(benchmark, gpu_workload, stage)
    assert benchmark.extra_info["device_name"] != "cpu"


def test_floor_counts_every_weight_a_pass_reads_but_not_embedding_tables(tiny_workload):
    text = tiny_workload.model_set.models["text"]["model"]
    total = sum(p.numel() * 4 for p in text.parameters())
    embeddings = sum(m.weight.numel() * 4 for m in text.modules() if isinstance(m, torch.nn.Embedding))
    assert tiny_workload.weight_bytes("semantic") == total - embeddings
    fine = tiny_workload.model_set.models["fine"]
    heads = sum(h.weight.numel() * 4 for h in fine.lm_heads)  # tied to wtes[1:], read as heads
    assert tiny_workload.weight_bytes("fine") >= heads
    assert tiny_workload.floor_s("cell", 1e9) == pytest.approx(
        sum(tiny_workload.floor_s(s, 1e9) for s in ("semantic", "coarse", "fine", "decode")))
