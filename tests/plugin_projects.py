"""Projects for pytester sessions that exercise the plugin: an enabled one (this suite's own
setting), and a foreign one, a project of someone else's with bark-ablation merely installed.

The foreign project has its own ``slow`` and ``gpu`` markers, an offline-tolerant test, and a test
that records the session state a plugin could change (torch's thread count, the Hugging Face
offline switch, the numba cache, whether ``socket`` is patched, whether torch was imported before
any test ran). :func:`run_foreign_project` runs it in a subprocess (thread counts and imports are
per process) and returns each test's outcome with that state.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from bark_ablation.pytest_plugin import ENABLE_LINE

PLUGIN = "bark_ablation.pytest_plugin"
"""The plugin's name as pytest knows it (its ``pytest11`` entry point): ``-p no:`` + this disables it."""


def enable_plugin(pytester: pytest.Pytester) -> None:
    """Make ``pytester``'s project enable the plugin the documented way (the one line of its pytest
    configuration), naming the plugin in its conftest as this repository does, so the inner
    session has it even where the entry point is not installed."""
    pytester.makeini(f"[pytest]\n{ENABLE_LINE}\n")
    pytester.makeconftest(f'pytest_plugins = ("{PLUGIN}",)')


class RecordingParser:
    """Stands in for pytest's parser and its option groups in a call of the plugin's
    ``pytest_addoption``: records each option's names and help, and the ini keys (no pytest
    internals, so it reads the same under every pytest release)."""

    def __init__(self):
        self.options: list[str] = []
        self.help: dict[str, str] = {}
        self.ini_keys: list[str] = []

    def getgroup(self, name: str, description: str = "") -> RecordingParser:
        return self

    def addoption(self, *names: str, **settings) -> None:
        self.options.extend(names)
        self.help.update(dict.fromkeys(names, settings.get("help", "")))

    def addini(self, name: str, *args, **settings) -> None:
        self.ini_keys.append(name)


def unprefixed_names(parser: RecordingParser, markers) -> list[str]:
    """What a plugin adds without its prefix: options not ``--bark-*``, ini keys and markers not
    ``bark_*`` (markers named ``marker NAME``)."""
    return (
        [name for name in parser.options if not name.startswith("--bark-")]
        + [f"ini {name}" for name in parser.ini_keys if not name.startswith("bark_")]
        + [f"marker {name}" for name in markers if not name.startswith("bark_")]
    )


FOREIGN_INI = """\
[pytest]
markers =
    slow: this project's own slow tests
    gpu: this project's own GPU tests
"""

FOREIGN_TESTS = """\
import json
import os
import socket
import sys

import pytest

TORCH_IMPORTED_AT_COLLECTION = "torch" in sys.modules


def test_a_records_the_session_state():
    import numba
    import torch

    state = {
        "torch_imported_before_tests": TORCH_IMPORTED_AT_COLLECTION,
        "torch_threads": torch.get_num_threads(),
        "HF_HUB_OFFLINE": os.environ.get("HF_HUB_OFFLINE"),
        "numba_cache_dir": numba.config.CACHE_DIR,
        "socket_patched": socket.getaddrinfo.__module__ != "socket",
    }
    with open(os.environ["FOREIGN_STATE_FILE"], "w") as file:
        json.dump(state, file)


def test_plain():
    assert sum([1, 2]) == 3


@pytest.mark.slow
def test_its_own_slow_marker():
    pass


@pytest.mark.gpu
def test_its_own_gpu_marker():
    pass


def test_offline_tolerant():
    # A numeric address: resolved here, without a packet; a plugin's guard would refuse it.
    try:
        socket.getaddrinfo("192.0.2.1", 80, flags=socket.AI_NUMERICHOST)
    except OSError:
        pass


@pytest.mark.bark_slow
def test_marked_bark_slow():
    pass
"""


_VERBOSE_LINE = re.compile(
    r"^(?:test_foreign\.py::(?P<name>\w+) (?P<outcome>PASSED|FAILED|SKIPPED|ERROR)\b"
    r"|\[gw\d+\] \[\s*\d+%\] (?P<xoutcome>PASSED|FAILED|SKIPPED|ERROR) test_foreign\.py::(?P<xname>\w+))"
)
"""A test's line in ``pytest -v`` output, in one process or from a pytest-xdist worker."""


@dataclass(frozen=True)
class ForeignSession:
    """What one run of the foreign project showed: ``outcomes`` (test name -> passed, failed,
    skipped), ``state`` (what ``test_a_records_the_session_state`` saw) and pytest's exit code."""

    outcomes: dict[str, str]
    state: dict
    exit_code: int
    output: str = field(default="", compare=False, repr=False)

    def differences(self, other: ForeignSession) -> list[str]:
        """One line per outcome, state entry or exit code in which the two sessions differ."""
        lines = [
            f"{name}: {self.outcomes.get(name)} vs {other.outcomes.get(name)}"
            for name in sorted({*self.outcomes, *other.outcomes})
            if self.outcomes.get(name) != other.outcomes.get(name)
        ]
        lines += [
            f"{key}: {self.state.get(key)!r} vs {other.state.get(key)!r}"
            for key in sorted({*self.state, *other.state})
            if self.state.get(key) != other.state.get(key)
        ]
        if self.exit_code != other.exit_code:
            lines.append(f"exit code: {self.exit_code} vs {other.exit_code}")
        return lines


def make_foreign_project(directory: Path, *, enabled: bool = False) -> Path:
    """Write the foreign project into ``directory``; ``enabled`` adds the one line."""
    (directory / "tox.ini").write_text(FOREIGN_INI + (f"{ENABLE_LINE}\n" if enabled else ""), encoding="utf-8")
    (directory / "test_foreign.py").write_text(FOREIGN_TESTS, encoding="utf-8")
    return directory


SESSION_VARIABLES = ("HF_HUB_OFFLINE", "NUMBA_CACHE_DIR")
"""Variables this suite's own enabled session sets (besides ``PYTEST_*`` and ``BARK_ABLATION_*``),
which a new session must not inherit from it."""


def run_pytest(directory: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """pytest in ``directory`` in a new interpreter, as a project's own CI would start it: every
    installed plugin autoloaded, no cache provider, and this environment without what this suite's
    session set (pytest's, xdist's and bark-ablation's variables, :data:`SESSION_VARIABLES`),
    plus ``env``."""
    inherited = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("PYTEST_", "BARK_ABLATION_")) and key not in SESSION_VARIABLES
    }
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", *args],
        cwd=directory,
        env={**inherited, **(env or {})},
        capture_output=True,
        text=True,
        timeout=600,
    )


def run_foreign_project(directory: Path, *args: str) -> ForeignSession:
    """Run the project in ``directory`` with :func:`run_pytest`, with ``OMP_NUM_THREADS=2``:
    torch's default thread count is then 2 on any machine with two cores or more (torch caps it at
    the core count), told apart from the plugin's 1."""
    state_file = directory / "state.json"
    state_file.unlink(missing_ok=True)
    process = run_pytest(directory, "-v", *args, env={"OMP_NUM_THREADS": "2", "FOREIGN_STATE_FILE": str(state_file)})
    outcomes = {
        match["name"] or match["xname"]: (match["outcome"] or match["xoutcome"]).lower()
        for match in map(_VERBOSE_LINE.match, process.stdout.splitlines())
        if match
    }
    state = json.loads(state_file.read_text()) if state_file.exists() else {}
    return ForeignSession(outcomes, state, process.returncode, process.stdout + process.stderr)
