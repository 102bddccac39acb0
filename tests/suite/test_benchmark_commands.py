"""The README's benchmark commands measure something. The CPU command is read from README.md and
run as written, in a fresh process from the repository root (the project's pytest configuration
applies), with its storage and a JSON copy sent to tmp_path; the JSON and the run it saves must
hold statistics for every stage (bark_ablation.bench.benchmark_check).

The known-bad twin is the same command with pytest-xdist active (``--dist loadfile``, what
pyproject's addopts once held): pytest-benchmark disables every benchmark, the tests still pass,
nothing is saved, and the checker must fail.

Each run costs a fresh process (torch, the plugin, the tiny workload: about 10 s of CPU on a
2-core AMD EPYC), and the whole command times five stages for 5 rounds after a warm-up (about
30 s there), so both runs are marked ``slow`` (CI's slow lane runs them). The default suite keeps
the static check that no README benchmark command and no addopts turn xdist on.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from bark_ablation.bench.benchmark_check import BenchmarkCheckError, check_benchmarks
from bark_ablation.bench.benchmarking import BENCHMARK_STAGES

REPO = Path(__file__).resolve().parents[2]
README_SECTION = "## Benchmarks and GPU runners"
ONE_STAGE = ("-k", "test_cpu_stage and semantic")


def readme_benchmark_commands() -> list[list[str]]:
    """The pytest command lines of the README's benchmark block, split as a shell would."""
    text = (REPO / "README.md").read_text(encoding="utf-8")
    section = text.split(README_SECTION, 1)[1]
    block = section.split("```bash", 1)[1].split("```", 1)[0]
    return [shlex.split(line, comments=True) for line in block.splitlines() if "-m pytest" in line]


def readme_cpu_command() -> list[str]:
    """The README's CPU benchmark command, with this interpreter for ``.venv/bin/python``."""
    cpu = [argv for argv in readme_benchmark_commands() if "bark_gpu" not in argv]
    assert len(cpu) == 1, f"README {README_SECTION!r}: expected one CPU benchmark command, found {cpu}"
    assert cpu[0][:3] == [".venv/bin/python", "-m", "pytest"], cpu[0]
    return [sys.executable, *cpu[0][1:]]


def run_benchmark_command(argv: list[str], tmp_path: Path) -> tuple[subprocess.CompletedProcess, Path, Path]:
    """Run ``argv`` from the repository root with its benchmark storage and a JSON copy in
    ``tmp_path``: ``(process, json path, storage dir)``. The environment is this one without
    pytest's and xdist's variables (``PYTEST_XDIST_WORKER`` alone disables pytest-benchmark) and
    without ``BARK_ABLATION_RUN_SLOW``: the command runs as a user's shell would run it."""
    storage, json_path = tmp_path / "storage", tmp_path / "run.json"
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith("PYTEST_") and key != "BARK_ABLATION_RUN_SLOW"
    }
    process = subprocess.run(
        [*argv, f"--benchmark-storage={storage}", f"--benchmark-json={json_path}", "-p", "no:cacheprovider"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert process.returncode == 0, (
        f"{shlex.join(argv)} exited {process.returncode}:\n{process.stdout[-3000:]}\n{process.stderr[-3000:]}"
    )
    return process, json_path, storage


def saved_runs(storage: Path) -> list[Path]:
    """The runs ``--benchmark-autosave`` saved under ``storage`` (``<machine>/NNNN_*.json``)."""
    return sorted(storage.glob("*/[0-9][0-9][0-9][0-9]_*.json"))


def saved_run(storage: Path) -> Path:
    saved = saved_runs(storage)
    assert len(saved) == 1, f"--benchmark-autosave: expected one saved run under {storage}, found {saved}"
    return saved[0]


def xdist_options(argv: list[str]) -> list[str]:
    """The options in ``argv`` that make pytest-xdist active (and with it switch every benchmark
    off): ``-n``/``--numprocesses``, ``--dist`` (any mode, even without ``-n``), ``-d``,
    ``--tx``, ``-p xdist``."""
    found = []
    for index, arg in enumerate(argv):
        name = arg.split("=", 1)[0]
        if (
            name in ("-n", "--numprocesses", "--dist", "-d", "--distload", "--tx")
            or (arg.startswith("-n") and arg[2:].isdigit())
            or (arg == "-p" and argv[index + 1 : index + 2] == ["xdist"])
        ):
            found.append(arg)
    return found


def test_no_readme_benchmark_command_and_no_addopts_turn_xdist_on(pytestconfig):
    commands = readme_benchmark_commands()
    assert len(commands) == 3 and all("--benchmark-enable" in argv for argv in commands)
    for where, argv in [("pyproject.toml addopts", pytestconfig.getini("addopts")), *(("README", a) for a in commands)]:
        assert not xdist_options(argv), (
            f"{where}: {' '.join(argv)}: {xdist_options(argv)} make pytest-xdist "
            "active, and pytest-benchmark then times nothing"
        )
    assert xdist_options(["-n", "2", "--dist", "loadfile", "-p", "xdist", "-n2"]) == ["-n", "--dist", "-p", "-n2"]


def test_gpu_workflow_checks_the_file_it_times_against_the_file_it_compares_with():
    yaml = pytest.importorskip("yaml")
    steps = yaml.safe_load((REPO / ".github/workflows/gpu.yml").read_text(encoding="utf-8"))["jobs"]["gpu"]["steps"]
    [bench] = [step for step in steps if "--benchmark-enable" in step.get("run", "")]
    [check] = [step for step in steps if "bark_ablation.bench.benchmark_check" in step.get("run", "")]
    [split] = [step for step in steps if "--splits=" in step.get("run", "")]
    assert (
        "--ignore=tests/suite/test_benchmarks.py" in split["run"]
        and "tests/suite/test_benchmarks.py --benchmark-enable" in bench["run"]
    )
    assert bench["if"] == "matrix.group == 1"  # the benchmarks run whole, in one job
    argv = shlex.split(bench["run"].replace("\\\n", " "), comments=True)
    assert not xdist_options(argv), f"gpu.yml: {xdist_options(argv)} make pytest-benchmark time nothing"
    [json_file] = re.findall(r"--benchmark-json=(\S+)", bench["run"])
    [compared] = re.findall(r"--benchmark-compare=(\S+)", bench["run"])
    assert f"run={json_file}" in check["run"] and f"--baseline {compared}" in check["run"]
    assert check["if"] == "${{ !cancelled() && matrix.group == 1 }}"  # also after a failed or regressed run


@pytest.mark.bark_slow
def test_the_same_command_under_xdist_times_nothing_and_fails_the_check(tmp_path):
    process, json_path, storage = run_benchmark_command(
        [*readme_cpu_command(), *ONE_STAGE, "--dist", "loadfile"], tmp_path
    )
    assert "1 passed" in process.stdout  # the tests pass: only the checker notices
    assert "Benchmarks are automatically disabled because xdist plugin is active" in process.stderr
    assert saved_runs(storage) == []
    with pytest.raises(BenchmarkCheckError, match="missing: the run wrote no benchmark file"):
        check_benchmarks(json_path, stages=("semantic",))


@pytest.mark.bark_slow
def test_readme_cpu_command_times_and_saves_every_stage(tmp_path):
    _, json_path, storage = run_benchmark_command(readme_cpu_command(), tmp_path)
    for path in (json_path, saved_run(storage)):
        timed = check_benchmarks(path)
        assert sorted(b["params"]["stage"] for b in timed) == sorted(BENCHMARK_STAGES)
