"""The benchmark checker (bark_ablation.bench.benchmark_check) on pytest-benchmark JSON files
written here in pytest-benchmark's layout: it passes a run that timed every stage and names each
missing stage, each benchmark without statistics and each stage benchmark a baseline lacks."""

from __future__ import annotations

import json
import math

import pytest

from bark_ablation.bench.benchmark_check import BenchmarkCheckError, check_benchmarks, check_compared, main
from bark_ablation.bench.benchmarking import BENCHMARK_STAGES


def stage_benchmark(stage: str, model_set: str = "tiny", median: float | None = 0.25) -> dict:
    """One entry of pytest-benchmark's ``benchmarks`` list, as ``test_cpu_stage`` writes it."""
    prefix = "" if model_set == "tiny" else f"{model_set}-"
    test = "test_cpu_stage" if model_set == "tiny" else "test_gpu_stage"
    entry = {
        "group": None,
        "name": f"{test}[{prefix}{stage}]",
        "fullname": f"tests/suite/test_benchmarks.py::{test}[{prefix}{stage}]",
        "params": {"stage": stage},
        "extra_info": {"stage": stage, "model_set": model_set},
        "options": {},
    }
    if median is not None:
        entry["stats"] = {
            "min": median,
            "max": median,
            "mean": median,
            "stddev": 0.0,
            "rounds": 5,
            "median": median,
            "iterations": 1,
        }
    return entry


def write_run(path, benchmarks: list[dict]):
    path.write_text(
        json.dumps(
            {
                "machine_info": {},
                "commit_info": {},
                "benchmarks": benchmarks,
                "datetime": "2026-01-01T00:00:00",
                "version": "5.3.1",
            }
        ),
        encoding="utf-8",
    )
    return path


def full_run(model_sets=("tiny",)) -> list[dict]:
    return [stage_benchmark(stage, model_set) for model_set in model_sets for stage in BENCHMARK_STAGES]


def problems_of(path, **kwargs) -> list[str]:
    with pytest.raises(BenchmarkCheckError) as raised:
        check_benchmarks(path, **kwargs)
    assert str(path) in str(raised.value)
    return raised.value.problems


def test_a_run_that_timed_every_stage_passes(tmp_path):
    throughput = {
        "name": "test_study_throughput[suno-bark]",
        "fullname": "t::test_study_throughput[suno-bark]",
        "params": {},
        "extra_info": {},
        "stats": {"rounds": 3, "median": 1.5},
    }
    run = write_run(tmp_path / "run.json", [*full_run(), throughput])
    timed = check_benchmarks(run)
    assert [b["params"]["stage"] for b in timed] == list(BENCHMARK_STAGES)


def test_no_file_is_what_a_run_under_xdist_leaves(tmp_path):
    assert problems_of(tmp_path / "never-written.json") == [
        "missing: the run wrote no benchmark file (pytest-benchmark writes none when every benchmark is "
        "disabled: --benchmark-disable without --benchmark-enable, or pytest-xdist active through -n or --dist)"
    ]


def test_each_missing_stage_is_named(tmp_path):
    run = write_run(tmp_path / "run.json", [b for b in full_run() if b["params"]["stage"] not in ("fine", "cell")])
    assert problems_of(run) == [
        "stage 'fine': no benchmark with statistics times it (expected one with params.stage == 'fine')",
        "stage 'cell': no benchmark with statistics times it (expected one with params.stage == 'cell')",
    ]


@pytest.mark.parametrize(
    "stats, problem",
    [
        (None, "stats: missing (the benchmark was not timed)"),
        ({"rounds": 0, "median": 0.1}, "stats.rounds: must be an integer >= 1, got 0"),
        ({"rounds": 5, "median": math.nan}, "stats.median: must be a positive, finite number of seconds, got nan"),
        ({"rounds": 5, "median": 0.0}, "stats.median: must be a positive, finite number of seconds, got 0.0"),
        ({"rounds": 5}, "stats.median: must be a positive, finite number of seconds, got None"),
    ],
)
def test_each_benchmark_without_statistics_is_named_with_the_field(tmp_path, stats, problem):
    benchmarks = full_run()
    if stats is None:
        del benchmarks[1]["stats"]
    else:
        benchmarks[1]["stats"] = stats
    name = "tests/suite/test_benchmarks.py::test_cpu_stage[coarse]"
    assert problems_of(write_run(tmp_path / "run.json", benchmarks)) == [
        f"benchmark {name!r}: {problem}",
        "stage 'coarse': no benchmark with statistics times it (expected one with params.stage == 'coarse')",
    ]


def test_every_model_set_of_a_gpu_run_needs_every_stage(tmp_path):
    benchmarks = [
        b
        for b in full_run(("bark-random", "bark-small-random"))
        if b["name"] != "test_gpu_stage[bark-small-random-decode]"
    ]
    assert problems_of(write_run(tmp_path / "run.json", benchmarks)) == [
        "model set 'bark-small-random': stage 'decode': no benchmark with statistics times it"
    ]


@pytest.mark.parametrize(
    "text, problem",
    [
        ("{not json", "not JSON"),
        ('{"benchmarks": {}}', "benchmarks: must be a list of objects (pytest-benchmark's layout)"),
    ],
)
def test_a_file_that_is_not_a_benchmark_run_is_named(tmp_path, text, problem):
    path = tmp_path / "run.json"
    path.write_text(text, encoding="utf-8")
    assert problems_of(path)[0].startswith(problem)


def test_compared_needs_every_stage_benchmark_in_the_baseline(tmp_path):
    run = write_run(tmp_path / "run.json", full_run())
    assert check_compared(run, write_run(tmp_path / "same.json", full_run())) == len(BENCHMARK_STAGES)
    renamed = full_run()
    renamed[0]["fullname"] = "tests/test_old_benchmarks.py::test_cpu_stage[semantic]"
    del renamed[4]["stats"]
    baseline = write_run(tmp_path / "baseline.json", renamed)
    with pytest.raises(BenchmarkCheckError) as raised:
        check_compared(run, baseline)
    assert raised.value.problems == [
        f"benchmark 'tests/suite/test_benchmarks.py::test_cpu_stage[semantic]': not in the baseline {baseline}: "
        "nothing to compare its median with",
        f"baseline {baseline}: benchmark 'tests/suite/test_benchmarks.py::test_cpu_stage[cell]': stats: missing "
        "(the benchmark was not timed)",
    ]


def test_command_line_exit_status_and_messages(tmp_path, capsys):
    run = write_run(tmp_path / "run.json", full_run())
    assert main([str(run), "--baseline", str(run)]) == 0
    assert "5 stage benchmark(s) with statistics, each compared with" in capsys.readouterr().out
    assert main([str(tmp_path / "missing.json")]) == 1
    assert "missing: the run wrote no benchmark file" in capsys.readouterr().err
    assert main([str(run), "--stages", "semantic", "vocoder"]) == 1
    assert "stage 'vocoder': no benchmark with statistics times it" in capsys.readouterr().err
