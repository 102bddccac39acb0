"""The progress line over a whole study and the end summary: units and samples counted once,
read-back samples apart from generated ones, retries named."""

from __future__ import annotations

from types import SimpleNamespace

from bark_ablation.core.prompts import load_prompt
from bark_ablation.study.design import Unit
from bark_ablation.study.progress import StudyProgress

SPEAKERS = [load_prompt("en_speaker_0"), load_prompt("en_speaker_1")]
UNITS = [Unit(prompt, 0, "Hello.", None) for prompt in SPEAKERS]
PER_UNIT = 3


def sample(unit: Unit) -> SimpleNamespace:
    """What the progress line reads of a generation: whose unit it is."""
    return SimpleNamespace(prompt=unit.prompt.name, text=unit.text)


def test_the_line_counts_samples_and_units_over_the_whole_run(capsys):
    progress = StudyProgress(UNITS, PER_UNIT, show=True)
    for _ in range(PER_UNIT):
        progress(sample(UNITS[1]))
    progress(sample(UNITS[0]))
    line = capsys.readouterr().err.split("\r")[-1]
    assert "4/6" in line and "units 1/2" in line and "<" in line  # samples, units, the ETA
    progress.unit_retried(UNITS[0].id)
    assert "units 1/2, retried 1" in capsys.readouterr().err.split("\r")[-1]
    progress.close()
    assert progress.units_done == 1 and progress.generated == 4


def test_the_summary_separates_read_back_skipped_generated_and_retried():
    progress = StudyProgress(UNITS, PER_UNIT, {UNITS[0].id: PER_UNIT, UNITS[1].id: 1}, show=False, executor="ray")
    progress(sample(UNITS[1]))
    progress(sample(UNITS[1]))
    progress.unit_retried(UNITS[1].id)
    assert progress.record() == {
        "executor": "ray",
        "units": 2,
        "samples": 6,
        "resumed_samples": 4,
        "skipped_units": 1,
        "generated_samples": 2,
        "retried_units": {UNITS[1].id: 1},
    }
    assert progress.summary_line() == (
        "2 units, 6 samples; 4 read back from the interrupted run (units complete there, skipped: 1); "
        f"2 generated (ray); retried after their worker died: {UNITS[1].id} x1"
    )


def test_a_fresh_run_says_nothing_was_read_back_or_retried():
    progress = StudyProgress(UNITS, PER_UNIT, show=False)
    assert progress.summary_line() == "2 units, 6 samples; 0 generated (local); nothing retried"
