"""The plugin starts beside the pytest plugins a project commonly has, with no clash of names.

pytest refuses to start when two plugins add the same option (``ValueError: option names
{...} already added``), so a clash breaks every session of the environment, ``pytest --help``
included. The neighbours are listed in ``tests/neighbour_plugins.txt``; CI's neighbours lane
installs them (newest releases) and runs this module. Where one is missing the comparison skips,
naming it and the command that installs them; the known-bad twin runs everywhere.
"""

from __future__ import annotations

import importlib.metadata
import re
from pathlib import Path

import pytest
from plugin_projects import run_pytest

from bark_ablation.pytest_plugin import ENABLE_LINE

NEIGHBOURS_FILE = Path(__file__).resolve().parents[1] / "neighbour_plugins.txt"
NEIGHBOURS = [
    line.split("#", 1)[0].strip()
    for line in NEIGHBOURS_FILE.read_text(encoding="utf-8").splitlines()
    if line.split("#", 1)[0].strip()
]


def missing_neighbours() -> list[str]:
    missing = []
    for name in NEIGHBOURS:
        try:
            importlib.metadata.distribution(name)
        except importlib.metadata.PackageNotFoundError:
            missing.append(name)
    return missing


@pytest.fixture
def neighbours_installed():
    missing = missing_neighbours()
    if missing:
        pytest.skip(
            f"needs the neighbour plugins {', '.join(missing)}: "
            f"pip install -r tests/neighbour_plugins.txt (CI's neighbours lane does)"
        )


def registered_plugins(directory: Path) -> str:
    """``pytest -VV``'s list of registered third-party plugins."""
    return run_pytest(directory, "-VV").stdout


@pytest.mark.parametrize("enabled", [False, True], ids=["installed", "enabled"])
def test_help_starts_beside_the_common_plugins(neighbours_installed, tmp_path, enabled):
    if enabled:
        (tmp_path / "pytest.ini").write_text(f"[pytest]\n{ENABLE_LINE}\n", encoding="utf-8")
    help_run = run_pytest(tmp_path, "--help")
    assert help_run.returncode == 0, help_run.stderr[-3000:]
    assert "--bark-model-set" in help_run.stdout and "bark_enable" in help_run.stdout
    plugins = registered_plugins(tmp_path)
    unregistered = [name for name in ["bark-ablation", *NEIGHBOURS] if not re.search(rf"^\s+{name}-\d", plugins, re.M)]
    assert not unregistered, f"not loaded, so not compared: {unregistered}\n{plugins}"


def test_a_session_runs_beside_them_enabled(neighbours_installed, tmp_path):
    """Not only --help: an enabled session with all of them loaded runs its tests, each under the
    network guard (in refuse mode, so that the refusals do not fail the session). pytest-socket
    puts ``socket.socket.connect`` back after every test, asked or not, which removed the guard's check of connections from the second test on and crashed the
    session's end; the guard now wraps again before each test (NetworkGuard.reassert)."""
    (tmp_path / "pytest.ini").write_text(f"[pytest]\n{ENABLE_LINE}\n", encoding="utf-8")
    (tmp_path / "test_one.py").write_text(
        "import socket\n\n"
        "import pytest\n\n"
        "def assert_guarded():\n"
        "    # Refuse mode answers as an offline machine; unguarded, the numeric look-up succeeds and\n"
        "    # connect fails on the closed socket (EBADF) with another message: no packet either way.\n"
        "    with pytest.raises(OSError, match='network guard'):\n"
        "        socket.getaddrinfo('192.0.2.1', 80, flags=socket.AI_NUMERICHOST)\n"
        "    sock = socket.socket()\n"
        "    sock.close()\n"
        "    with pytest.raises(OSError, match='network guard'):\n"
        "        sock.connect(('192.0.2.1', 9))\n\n"
        "def test_guarded():\n"
        "    assert_guarded()\n\n"
        "def test_model_set_option(pytestconfig):\n"
        "    assert_guarded()\n"
        "    assert pytestconfig.getoption('--bark-model-set') == 'tiny'\n",
        encoding="utf-8",
    )
    result = run_pytest(
        tmp_path, "-q", "--timeout=120", "--splits=1", "--group=1", env={"BARK_ABLATION_NETWORK_GUARD": "refuse"}
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "2 passed" in result.stdout
    assert "network guard (refuse mode): 2 test(s) tried to reach a non-loopback host (4 attempt(s)" in result.stdout


def test_a_clashing_option_is_caught(tmp_path):
    """Known-bad twin: a plugin that adds an option a neighbour already has (pytest-benchmark's
    --benchmark-disable, installed with the suite) stops ``pytest --help``: the check above can fail."""
    (tmp_path / "clashing_plugin.py").write_text(
        "def pytest_addoption(parser):\n    parser.addoption('--benchmark-disable', action='store_true')\n",
        encoding="utf-8",
    )
    result = run_pytest(tmp_path, "-p", "clashing_plugin", "--help")
    assert result.returncode != 0
    assert "--benchmark-disable" in result.stderr or "benchmark_disable" in result.stderr, result.stderr
