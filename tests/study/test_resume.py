"""An interrupted run resumes to the same bytes: the statistics files of a resumed run equal an
uninterrupted run's, whether it was interrupted in-process or killed with SIGKILL at a moment
hypothesis chooses. 2 speakers x 1 text x the 8 cells x seeds 0 and 1 (32 samples), 0.4 s, tiny set.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from hypothesis import HealthCheck, Phase, example, given, settings
from hypothesis import strategies as st

from bark_ablation import cli
from bark_ablation.study import resume
from bark_ablation.study.resume import partial_path

STATISTICS = ("secs.csv", "cells.csv", "differences.csv", "effects.csv", "transfer.csv", "speakers.csv")
ARGS = [
    "run",
    "--prompts",
    "en_speaker_0",
    "en_speaker_1",
    "--text",
    "Hello there.",
    "--seeds",
    "0",
    "1",
    "--model-set",
    "tiny",
    "--max-duration",
    "0.4",
    "--quiet",
]
SAMPLES = 2 * 8 * 2
KILLED_ARGS = [*ARGS[:2], ARGS[2], *ARGS[4:]]
"""The killed runs': one speaker (16 samples, the single-run layout), each a process of its own."""
KILLED_SAMPLES = 8 * 2


@pytest.fixture(scope="module")
def whole(tmp_path_factory, tiny_models):
    out = tmp_path_factory.mktemp("whole") / "run"
    assert cli.main([*ARGS, "--out", str(out)]) == 0
    return out


def same_as_whole(out: Path, whole: Path) -> None:
    for name in STATISTICS:  # speakers.csv only with two or more speakers
        assert (out / name).is_file() == (whole / name).is_file(), name
        if (whole / name).is_file():
            assert (out / name).read_bytes() == (whole / name).read_bytes(), name
    assert (whole / "secs.csv").is_file()
    for wav in sorted(whole.rglob("*.wav")):
        assert (out / wav.relative_to(whole)).read_bytes() == wav.read_bytes(), wav
    assert not partial_path(out).exists() and not list(out.rglob("*.tmp")) and not (out / "resume.json").exists()


def test_an_interrupted_run_keeps_its_samples_and_resumes_to_the_same_bytes(whole, tmp_path, monkeypatch, capsys):
    out = tmp_path / "run"
    written = []
    original = resume.SampleWriter.__call__

    def interrupt_after_eleven(self, generation, index=0, total=0):
        if len(written) == 11:
            raise KeyboardInterrupt
        original(self, generation, index, total)
        written.append(generation.label)

    monkeypatch.setattr(resume.SampleWriter, "__call__", interrupt_after_eleven)
    assert cli.main([*ARGS, "--out", str(out)]) == cli.EXIT_INTERRUPTED
    err = capsys.readouterr().err
    assert f"11 samples kept in {partial_path(out)}" in err and f"--resume {out}" in err and not out.exists()
    monkeypatch.undo()
    assert cli.main([*ARGS, "--resume", str(out)]) == 0
    out_text = capsys.readouterr().out
    assert (
        f"2 units, {SAMPLES} samples; 11 read back from the interrupted run (units complete there, skipped: 0); "
        f"{SAMPLES - 11} generated (local); nothing retried" in out_text
    )
    execution = json.loads((out / "summary.json").read_text())["execution"]
    assert execution == {
        "executor": "local",
        "units": 2,
        "samples": SAMPLES,
        "resumed_samples": 11,
        "skipped_units": 0,
        "generated_samples": SAMPLES - 11,
        "retried_units": {},
    }
    same_as_whole(out, whole)


def test_resuming_with_other_arguments_is_refused_naming_the_option(tmp_path, capsys, monkeypatch):
    out = tmp_path / "run"
    interrupted = {"n": 0}
    original = resume.SampleWriter.__call__

    def interrupt_after_two(self, generation, index=0, total=0):
        if interrupted["n"] == 2:
            raise KeyboardInterrupt
        original(self, generation, index, total)
        interrupted["n"] += 1

    monkeypatch.setattr(resume.SampleWriter, "__call__", interrupt_after_two)
    assert cli.main([*ARGS, "--out", str(out)]) == cli.EXIT_INTERRUPTED
    monkeypatch.undo()
    capsys.readouterr()
    changed = [*ARGS[:7], "0", *ARGS[9:]]  # --seeds 0 instead of 0 1
    assert cli.main([*changed, "--resume", str(out)]) == cli.EXIT_USAGE
    assert "--seeds: differs from the interrupted run's ([0, 1] there, [0] now)" in capsys.readouterr().err
    assert cli.main([*ARGS, "--semantic-temp", "0.5", "--resume", str(out)]) == cli.EXIT_USAGE
    assert "--semantic-temp: differs from the interrupted run's (0.7 there, 0.5 now)" in capsys.readouterr().err
    assert cli.main([*ARGS, "--out", str(out)]) == cli.EXIT_USAGE  # a new run would overwrite the kept samples
    assert f"an interrupted run of it is at {partial_path(out)}" in capsys.readouterr().err
    assert partial_path(out).is_dir() and not out.exists()


def test_there_is_nothing_to_resume_where_no_run_was_interrupted(tmp_path, capsys):
    assert cli.main([*ARGS, "--resume", str(tmp_path / "never")]) == cli.EXIT_USAGE
    err = capsys.readouterr().err
    assert f"--resume {tmp_path / 'never'}: nothing to resume" in err and "the run was never started" in err
    assert list(tmp_path.iterdir()) == []


@pytest.fixture(scope="module")
def whole_in_a_process(tmp_path_factory):
    """The uninterrupted run as the killed ones run: the console script in its own process (torch's
    default threads there, not the test session's one; SECS moves in its 7th digit with the thread
    count, so processes are compared with processes)."""
    out = tmp_path_factory.mktemp("whole-process") / "run"
    command = [str(Path(sys.executable).parent / "bark-ablation"), *KILLED_ARGS, "--out", str(out)]
    done = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    return out


@pytest.mark.bark_slow
@settings(
    max_examples=1,  # and the explicit example: each is two processes of a real run
    deadline=None,
    phases=[Phase.explicit, Phase.reuse, Phase.generate],  # no shrinking: each example is a run
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(samples=st.integers(min_value=0, max_value=KILLED_SAMPLES - 1), delay=st.floats(min_value=0.0, max_value=0.3))
@example(samples=0, delay=0.0)  # as soon as the partial directory appears
def test_a_run_killed_at_any_moment_resumes_to_the_same_bytes(whole_in_a_process, tmp_path_factory, samples, delay):
    """SIGKILL once ``samples`` samples are on disk plus ``delay`` seconds (mid-write, possibly):
    complete files or none, and the resumed run equals the uninterrupted one."""
    out = tmp_path_factory.mktemp("killed") / "run"
    command = [str(Path(sys.executable).parent / "bark-ablation"), *KILLED_ARGS]
    process = subprocess.Popen([*command, "--out", str(out)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 300
    while process.poll() is None and time.monotonic() < deadline:
        if partial_path(out).is_dir() and len(list(partial_path(out).rglob("tokens/*.npz"))) >= samples:
            time.sleep(delay)
            break
        time.sleep(0.01)
    if process.poll() is None:
        os.kill(process.pid, signal.SIGKILL)
    process.wait()
    if out.exists():  # it finished before the kill
        same_as_whole(out, whole_in_a_process)
        return
    done = subprocess.run([*command, "--resume", str(out)], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    same_as_whole(out, whole_in_a_process)
