"""A study split by unit (`run --shard I/N`) and merged gives one run's statistics, byte for byte.

2 speakers x 2 texts x the 8 cells and `ocf` (another speaker's semantic history, so each unit's
"other speaker" must follow the whole study's rotation, not the shard's) x seed 0, 0.4 s, tiny
set: one run, and shards 1/3 (units 0 and 3), 2/3 (unit 1 alone: a one-unit shard whose only
text is the study's second) and 3/3 (unit 2) merged.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from bark_ablation import cli

STATISTICS = ("secs.csv", "cells.csv", "differences.csv", "effects.csv", "transfer.csv", "speakers.csv")
SPEAKERS = ("en_speaker_0", "en_speaker_1")
UNITS = ["en_speaker_0_t0", "en_speaker_0_t1", "en_speaker_1_t0", "en_speaker_1_t1"]
TEXTS = Path(__file__).resolve().parents[2] / "examples" / "study-texts.txt"
ARGS = [
    "run",
    "--prompts",
    *SPEAKERS,
    "--texts-file",
    str(TEXTS),
    "--seeds",
    "0",
    "--cells=scf,sc-,s-f,s--,-cf,-c-,--f,---,ocf",
    "--model-set",
    "tiny",
    "--max-duration",
    "0.4",
    "--quiet",
]


@pytest.fixture(scope="module")
def runs(tmp_path_factory, tiny_models):
    root = tmp_path_factory.mktemp("shards")
    assert cli.main([*ARGS, "--out", str(root / "whole")]) == 0
    for index in (1, 2, 3):
        assert cli.main([*ARGS, "--shard", f"{index}/3", "--out", str(root / f"shard{index}")]) == 0
    shards = [str(root / f"shard{index}") for index in (2, 3, 1)]  # any order
    assert cli.main(["merge", *shards, "--out", str(root / "merged")]) == 0
    return root


def test_a_shard_holds_every_n_th_unit_and_says_which_part_it_is(runs):
    shards = [json.loads((runs / f"shard{i}" / "summary.json").read_text()) for i in (1, 2, 3)]
    assert [[u["id"] for u in s["units"]] for s in shards] == [[UNITS[0], UNITS[3]], [UNITS[1]], [UNITS[2]]]
    assert shards[1]["shard"] == {"index": 2, "count": 3, "design_units": UNITS}  # one unit, the study layout
    assert [u["other_prompt"] for u in shards[0]["units"]] == ["en_speaker_1", "en_speaker_0"]  # the study's rotation
    scores = json.loads((runs / "shard2" / "study.json").read_text())["scores"]
    assert {s["text_index"] for s in scores} == {1}  # the study's text numbers, not the shard's


@pytest.mark.parametrize("name", STATISTICS)
def test_merged_shards_give_one_run_s_statistics_byte_for_byte(runs, name):
    assert (runs / "merged" / name).read_bytes() == (runs / "whole" / name).read_bytes()


def test_merged_shards_hold_one_run_s_units_and_references(runs):
    whole, merged = runs / "whole", runs / "merged"
    assert sorted(p.name for p in (merged / "audio").iterdir()) == sorted(p.name for p in (whole / "audio").iterdir())
    for path in (whole / "audio").iterdir():
        assert (merged / "audio" / path.name).read_bytes() == path.read_bytes()
    for unit in (whole / "units").iterdir():
        for wav in (unit / "audio").iterdir():
            assert (merged / "units" / unit.name / "audio" / wav.name).read_bytes() == wav.read_bytes()
        for tokens in (unit / "tokens").iterdir():  # .npz stamps the time: compare the arrays
            a, b = np.load(tokens), np.load(merged / "units" / unit.name / "tokens" / tokens.name)
            assert all(np.array_equal(a[k], b[k]) for k in ("semantic", "coarse", "fine"))
    summary = json.loads((merged / "summary.json").read_text())
    assert "shard" not in summary and [m["shard"] for m in summary["merged_from"]] == ["2/3", "3/3", "1/3"]
    assert [u["id"] for u in summary["units"]] == UNITS
    assert summary["generations"] == 4 * 9


def test_the_merged_study_renders_its_report(runs):
    assert cli.main(["report", str(runs / "merged")]) == 0


def test_a_missing_shard_is_named_and_nothing_is_written(runs, capsys):
    out = runs / "incomplete"
    assert cli.main(["merge", str(runs / "shard1"), str(runs / "shard1"), "--out", str(out)]) == cli.EXIT_USAGE
    assert "units: unit en_speaker_0_t0 is also in" in capsys.readouterr().err and not out.exists()
    assert cli.main(["merge", str(runs / "shard1"), str(runs / "shard3"), "--out", str(out)]) == cli.EXIT_USAGE
    assert (
        "units en_speaker_0_t1 of the study are in none of the shards given (3 of 4 units)" in capsys.readouterr().err
    )
    assert not out.exists()


def test_shards_of_different_studies_are_refused_by_field(runs, capsys, tmp_path):
    other = tmp_path / "other"
    shutil.copytree(runs / "shard2", other)  # unit 1: with shard 1's units, no unit twice
    summary = json.loads((other / "summary.json").read_text())
    summary["seeds"] = [1]
    (other / "summary.json").write_text(json.dumps(summary))
    assert cli.main(["merge", str(runs / "shard1"), str(other), "--out", str(tmp_path / "m")]) == cli.EXIT_USAGE
    assert f"{other}: seeds: [1], but" in capsys.readouterr().err and not (tmp_path / "m").exists()


@pytest.mark.parametrize(
    "shard, message",
    [
        ("3/2", "--shard: must be I/N with 1 <= I <= N, got '3/2'"),
        ("0/2", "--shard: must be I/N with 1 <= I <= N"),
        ("half", "--shard: must be I/N (this job's part I of N, from 1), got 'half'"),
        ("1/5", "--shard: 1/5: the study has 4 units (speakers x texts), so at most 4 shards; got 5"),
    ],
)
def test_a_bad_shard_is_refused_by_name_before_anything_runs(tmp_path, capsys, shard, message):
    out = tmp_path / "run"
    assert cli.main([*ARGS, "--shard", shard, "--out", str(out)]) == cli.EXIT_USAGE
    assert message in capsys.readouterr().err and not out.exists()


REPO = Path(__file__).resolve().parents[2]
SLURM = REPO / "examples" / "slurm"


@pytest.mark.bark_slow
def test_the_slurm_example_runs_an_array_and_merges_it(tmp_path):
    """examples/slurm/*.sbatch under bash as SLURM would start them (the array variables set), on
    the tiny set and two cells; the scripts' own defaults name the real study."""
    env = {
        **os.environ,
        "BARK_ABLATION": str(Path(sys.executable).parent / "bark-ablation"),
        "OUT": str(tmp_path / "study"),
        "MODEL_SET": "tiny",
        "DEVICE": "cpu",
        "PROMPTS": "en_speaker_0 en_speaker_1",
        "SEEDS": "0",
        "EXTRA": "--cells=scf,--- --max-duration 0.4",
        "SLURM_ARRAY_TASK_COUNT": "2",
    }
    for task in range(1, 3):
        done = subprocess.run(
            ["bash", str(SLURM / "study.sbatch")],
            cwd=REPO,
            env={**env, "SLURM_ARRAY_TASK_ID": str(task)},
            capture_output=True,
            text=True,
            timeout=600,
        )
        assert done.returncode == 0, done.stderr
    done = subprocess.run(["bash", str(SLURM / "merge.sbatch")], cwd=REPO, env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    summary = json.loads((tmp_path / "study" / "all" / "summary.json").read_text())
    assert len(summary["units"]) == 2 * 2 and len(summary["merged_from"]) == 2  # speakers x texts
    assert (tmp_path / "study" / "all" / "report.html").is_file()


def test_the_slurm_example_refuses_to_run_outside_an_array():
    env = {k: v for k, v in os.environ.items() if not k.startswith("SLURM_")}
    done = subprocess.run(["bash", str(SLURM / "study.sbatch")], cwd=REPO, env=env, capture_output=True, text=True)
    assert done.returncode != 0 and "submit as an array job: sbatch --array=1-N" in done.stderr


def test_the_one_shard_of_a_one_shard_run_merges_alone(tmp_path):
    """SLURM's --array=1-1: shard 1/1 holds every unit, and merge takes it alone."""
    argv = ["run", "--prompts", *SPEAKERS, "--text", "Hi there.", "--seeds", "0", "--cells=scf,---"]
    argv += ["--model-set", "tiny", "--max-duration", "0.4", "--quiet", "--shard", "1/1"]
    assert cli.main([*argv, "--out", str(tmp_path / "shard")]) == 0
    assert cli.main(["merge", str(tmp_path / "shard"), "--out", str(tmp_path / "all")]) == 0
    summary = json.loads((tmp_path / "all" / "summary.json").read_text())
    assert [u["id"] for u in summary["units"]] == [f"{s}_t0" for s in SPEAKERS]
    with pytest.raises(SystemExit):
        cli.main(["merge", "--out", str(tmp_path / "none")])
