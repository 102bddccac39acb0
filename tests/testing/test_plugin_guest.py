"""Installed is not enabled: a project that has not opted in runs exactly as without the plugin.

The plugin loads into every pytest session of an environment where bark-ablation is installed (its
``pytest11`` entry point). A foreign project (:mod:`plugin_projects`: its own ``slow`` and ``gpu``
markers, an offline-tolerant test, a test that records torch's thread count and the other state a
plugin could change) must get the same outcomes and the same state with the plugin installed as
with it disabled (``-p no:...``). The same project with the one line ``bark_enable = true`` gets the
suite's behaviour. A test double that reinstates the plugin's old behaviour (acting in every
session) fails the comparison: the check can fail.
"""

from __future__ import annotations

import pytest
from plugin_projects import (
    PLUGIN,
    RecordingParser,
    enable_plugin,
    make_foreign_project,
    run_foreign_project,
    unprefixed_names,
)

from bark_ablation import pytest_plugin

ALWAYS_ENABLED_DOUBLE = f'''\
"""Test double: the plugin as it was before the opt-in, acting in every session it loads into."""
import {PLUGIN} as _plugin

_plugin.is_enabled = lambda config: True
from {PLUGIN} import *  # noqa: F401,F403 (its hooks and fixtures, registered under this module's name)
'''

FOREIGN_TESTS = (
    "test_a_records_the_session_state",
    "test_plain",
    "test_its_own_slow_marker",
    "test_its_own_gpu_marker",
    "test_offline_tolerant",
    "test_marked_bark_slow",
)


@pytest.fixture(scope="module")
def foreign_project(tmp_path_factory):
    """The foreign project, not enabled (module scope: each run starts an interpreter and imports
    torch, about 3 s, and the runs below share the project)."""
    return make_foreign_project(tmp_path_factory.mktemp("foreign"))


RUN_MODES = {"one-process": (), "xdist-worker": ("-n", "1")}
"""How the foreign project runs: in one process, and in a pytest-xdist worker (where the plugin,
enabled, gives each worker its own numba cache)."""


@pytest.fixture(scope="module")
def disabled_session(foreign_project):
    """``disabled_session(mode)``: the foreign project with the plugin disabled, run in a
    :data:`RUN_MODES` mode once per module: the reference every other run is held to."""
    sessions = {}

    def get(mode: str):
        if mode not in sessions:
            sessions[mode] = run_foreign_project(foreign_project, *RUN_MODES[mode], "-p", f"no:{PLUGIN}")
        return sessions[mode]

    return get


@pytest.mark.parametrize("mode", RUN_MODES)
def test_the_foreign_project_passes_alone(disabled_session, mode):
    """The reference itself: every test of the foreign project passes without the plugin."""
    reference = disabled_session(mode)
    assert reference.outcomes == dict.fromkeys(FOREIGN_TESTS, "passed"), reference.output
    assert not reference.state["socket_patched"]


@pytest.mark.parametrize("mode", RUN_MODES)
def test_installed_but_not_enabled_changes_nothing(foreign_project, disabled_session, mode):
    installed = run_foreign_project(foreign_project, *RUN_MODES[mode])
    assert installed.differences(disabled_session(mode)) == []
    assert installed.state["torch_imported_before_tests"] is False  # loading the plugin imports no torch


def test_the_old_always_on_behaviour_fails_the_check(foreign_project, disabled_session):
    """Known-bad twin: the plugin acting in every session (as before the opt-in) is caught, on its
    guard, its thread count, its skips, its Hub switch and its numba caches (in an xdist worker)."""
    reference = disabled_session("xdist-worker")
    double_module = foreign_project / "always_enabled_double.py"
    double_module.write_text(ALWAYS_ENABLED_DOUBLE, encoding="utf-8")
    try:
        double = run_foreign_project(
            foreign_project, *RUN_MODES["xdist-worker"], "-p", f"no:{PLUGIN}", "-p", "always_enabled_double"
        )
    finally:
        double_module.unlink()
    differences = double.differences(reference)
    assert differences, "the always-on double changed nothing: the comparison cannot fail"
    assert "test_offline_tolerant: failed vs passed" in differences
    assert "test_marked_bark_slow: skipped vs passed" in differences
    if reference.state["torch_threads"] != 1:  # one core: torch's default is the plugin's
        assert f"torch_threads: 1 vs {reference.state['torch_threads']}" in differences
    assert "HF_HUB_OFFLINE: '1' vs None" in differences
    assert any(line.startswith("numba_cache_dir:") and "gw0" in line for line in differences), differences
    assert "torch_imported_before_tests: True vs False" in differences


def test_the_one_line_enables_the_suite(tmp_path):
    """The same project with `bark_enable = true`: the guard (its offline-tolerant test fails,
    the guard's error not being an OSError), one torch thread, the Hub offline, the skips by
    bark_* markers; its own slow and gpu markers stay its own."""
    enabled = run_foreign_project(make_foreign_project(tmp_path, enabled=True))
    assert enabled.outcomes == {
        **dict.fromkeys(FOREIGN_TESTS, "passed"),
        "test_offline_tolerant": "failed",
        "test_marked_bark_slow": "skipped",
    }, enabled.output
    assert enabled.state["torch_threads"] == pytest_plugin.DEFAULT_TORCH_THREADS
    assert enabled.state["HF_HUB_OFFLINE"] == "1"
    assert enabled.state["socket_patched"] is True
    assert enabled.exit_code == pytest.ExitCode.TESTS_FAILED


SESSION_OPTION_VALUES = {"--bark-torch-threads": ["2"]}


@pytest.fixture
def restore_torch_threads():
    """An in-process session that enabled the plugin sets this process's torch thread count."""
    import torch

    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


@pytest.mark.parametrize(
    "option, value",
    [(option, SESSION_OPTION_VALUES.get(option, [])) for option in pytest_plugin.SESSION_OPTIONS]
    + [("--bark-torch-threads", ["0"])],
)
def test_a_session_option_without_the_opt_in_says_how_to_opt_in(pytester, restore_torch_threads, option, value):
    pytester.makepyfile(test_one="def test_one():\n    pass\n")
    pytester.makeconftest(f'pytest_plugins = ("{PLUGIN}",)')
    result = pytester.runpytest_inprocess(option, *value)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([f"*{option}: changes the test session*add `bark_enable = true`*"])
    enable_plugin(pytester)
    result = pytester.runpytest_inprocess(option, *value, "--bark-allow-network")
    assert result.ret == pytest.ExitCode.OK


def test_every_name_the_plugin_adds_is_prefixed():
    """Options start with --bark-, ini keys and markers with bark_: none can be a project's own
    --shard or slow marker, nor another plugin's (test_plugin_neighbours starts them side by side)."""
    parser = RecordingParser()
    pytest_plugin.pytest_addoption(parser)
    assert parser.options and unprefixed_names(parser, pytest_plugin.MARKERS) == []
    assert set(pytest_plugin.SESSION_OPTIONS) <= set(parser.options)


def test_the_prefix_check_catches_unprefixed_names():
    """Known-bad twin of the check above: the names the plugin had before are caught."""

    def old_addoption(parser):
        parser.getgroup("bark-ablation").addoption("--run-slow", action="store_true")
        parser.getgroup("bark-ablation").addoption("--bark-device")

    parser = RecordingParser()
    old_addoption(parser)
    assert unprefixed_names(parser, {"slow": "", "bark_gpu": ""}) == ["--run-slow", "marker slow"]
