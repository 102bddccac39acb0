"""Checks that a benchmark run measured something: a pytest-benchmark JSON file must hold
statistics for every stage of :data:`~bark_ablation.bench.benchmarking.BENCHMARK_STAGES`, and,
when the run was compared with a saved one, that saved run must hold every stage benchmark too.

pytest-benchmark 5.3.1 enforces neither. Under pytest-xdist (``-n N``, or any ``--dist`` other
than ``no``, even without ``-n``) it disables every benchmark: each test runs once, passes, and
no JSON is written (``--benchmark-json``, ``--benchmark-autosave``). ``--benchmark-compare`` with
no saved run only warns ("Can't compare ..."); ``--benchmark-compare-fail`` then fails the run
with a usage error, but only when some benchmark ran; and a saved run whose benchmark names
differ from this run's compares nothing and passes.

Command line (exit status 0 when every rule holds, 1 with one line per problem)::

    python -m bark_ablation.bench.benchmark_check RUN.json [--baseline SAVED.json]
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from bark_ablation.bench.benchmarking import BENCHMARK_STAGES
from bark_ablation.core.errors import BarkAblationError


class BenchmarkCheckError(BarkAblationError):
    """A pytest-benchmark JSON file (``path``) breaks a rule of this module; ``problems`` holds
    one line per broken rule, each naming the benchmark or stage and the field."""

    def __init__(self, path: Path | str, problems: Sequence[str]):
        self.path = Path(path)
        self.problems = list(problems)
        lines = "\n".join(f"  - {problem}" for problem in self.problems)
        super().__init__(f"benchmark file {self.path}: {len(self.problems)} problem(s):\n{lines}")


def load_benchmark_json(path: Path | str) -> list[dict[str, Any]]:
    """The ``benchmarks`` list of a pytest-benchmark JSON file (``--benchmark-json`` output or a
    file saved under ``.benchmarks/``)."""
    path = Path(path)
    if not path.is_file():
        raise BenchmarkCheckError(
            path,
            [
                "missing: the run wrote no benchmark file (pytest-benchmark writes none when every "
                "benchmark is disabled: --benchmark-disable without --benchmark-enable, or pytest-xdist "
                "active through -n or --dist)"
            ],
        )
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise BenchmarkCheckError(path, [f"not JSON ({error})"]) from None
    benchmarks = data.get("benchmarks") if isinstance(data, dict) else None
    if not isinstance(benchmarks, list) or not all(isinstance(entry, dict) for entry in benchmarks):
        raise BenchmarkCheckError(path, ["benchmarks: must be a list of objects (pytest-benchmark's layout)"])
    return benchmarks


def stats_problem(benchmark: dict[str, Any]) -> str | None:
    """Why ``benchmark`` has no usable statistics, or None when it has: ``stats.rounds`` at
    least 1 and ``stats.median`` a positive, finite number of seconds."""
    name = benchmark.get("fullname") or benchmark.get("name") or "<unnamed>"
    stats = benchmark.get("stats")
    if not isinstance(stats, dict):
        return f"benchmark {name!r}: stats: missing (the benchmark was not timed)"
    rounds, median = stats.get("rounds"), stats.get("median")
    if not isinstance(rounds, int) or rounds < 1:
        return f"benchmark {name!r}: stats.rounds: must be an integer >= 1, got {rounds!r}"
    if isinstance(median, bool) or not isinstance(median, (int, float)) or not (math.isfinite(median) and median > 0):
        return f"benchmark {name!r}: stats.median: must be a positive, finite number of seconds, got {median!r}"
    return None


def benchmark_stage(benchmark: dict[str, Any]) -> str | None:
    """The stage a benchmark times: its ``params.stage`` (the ``stage`` parametrization of
    ``tests/suite/test_benchmarks.py``), else ``extra_info.stage``; None for other benchmarks."""
    for field in ("params", "extra_info"):
        value = benchmark.get(field)
        if isinstance(value, dict) and isinstance(value.get("stage"), str):
            return value["stage"]
    return None


def _model_set(benchmark: dict[str, Any]) -> str:
    extra = benchmark.get("extra_info")
    return str(extra.get("model_set")) if isinstance(extra, dict) else "None"


def check_benchmarks(path: Path | str, stages: Sequence[str] = BENCHMARK_STAGES) -> list[dict[str, Any]]:
    """Raise :class:`BenchmarkCheckError` listing every problem of the file at ``path``: each
    benchmark without statistics (:func:`stats_problem`), each stage of ``stages`` that no
    benchmark with statistics times, and, per model set (``extra_info.model_set``) that has
    stage benchmarks, each stage it lacks. Returns the stage benchmarks when none is found."""
    benchmarks = load_benchmark_json(path)
    problems = [problem for problem in map(stats_problem, benchmarks) if problem]
    timed = [b for b in benchmarks if stats_problem(b) is None and benchmark_stage(b) in stages]
    for stage in stages:
        if not any(benchmark_stage(b) == stage for b in timed):
            problems.append(
                f"stage {stage!r}: no benchmark with statistics times it (expected one with params.stage == {stage!r})"
            )
    model_sets = sorted({_model_set(b) for b in timed})
    if len(model_sets) > 1:  # the GPU run: every stage on each full-size set
        for model_set in model_sets:
            covered = {benchmark_stage(b) for b in timed if _model_set(b) == model_set}
            problems.extend(
                f"model set {model_set!r}: stage {stage!r}: no benchmark with statistics times it"
                for stage in stages
                if stage not in covered
            )
    if problems:
        raise BenchmarkCheckError(path, problems)
    return timed


def check_compared(path: Path | str, baseline: Path | str, stages: Sequence[str] = BENCHMARK_STAGES) -> int:
    """Raise :class:`BenchmarkCheckError` unless the run at ``path`` passes :func:`check_benchmarks`
    and every one of its stage benchmarks has a benchmark of the same ``fullname`` with
    statistics in ``baseline`` (the saved run it was compared with; pytest-benchmark pairs
    benchmarks by ``fullname`` and skips the unpaired ones without a word). Returns how many
    stage benchmarks were paired."""
    timed = check_benchmarks(path, stages)
    saved = {b.get("fullname"): b for b in load_benchmark_json(baseline)}
    problems = []
    for benchmark in timed:
        name = benchmark.get("fullname")
        if name not in saved:
            problems.append(f"benchmark {name!r}: not in the baseline {baseline}: nothing to compare its median with")
        elif (problem := stats_problem(saved[name])) is not None:
            problems.append(f"baseline {baseline}: {problem}")
    if problems:
        raise BenchmarkCheckError(path, problems)
    return len(timed)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bark_ablation.bench.benchmark_check",
        description="Fail unless a pytest-benchmark JSON file holds statistics for every stage "
        "(and, with --baseline, unless the saved run holds every stage benchmark too).",
    )
    parser.add_argument("run", type=Path, help="pytest-benchmark JSON of the run (--benchmark-json)")
    parser.add_argument("--baseline", type=Path, help="the saved run it was compared with (--benchmark-compare=FILE)")
    parser.add_argument(
        "--stages",
        nargs="+",
        default=list(BENCHMARK_STAGES),
        help=f"stages that must be timed (default: {' '.join(BENCHMARK_STAGES)})",
    )
    args = parser.parse_args(argv)
    try:
        if args.baseline is None:
            timed = len(check_benchmarks(args.run, args.stages))
            print(f"{args.run}: {timed} stage benchmark(s) with statistics, every stage timed")
        else:
            timed = check_compared(args.run, args.baseline, args.stages)
            print(f"{args.run}: {timed} stage benchmark(s) with statistics, each compared with {args.baseline}")
    except BenchmarkCheckError as error:
        print(error, file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
