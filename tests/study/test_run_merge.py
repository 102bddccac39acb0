"""Merging seed shards of one study: the merge equals one run over all seeds, and shards that
are not parts of one study are refused by name, writing nothing."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest

from bark_ablation import cli
from bark_ablation.study.run_merge import MergeError, merge_runs

RUN = [
    "run",
    "--prompt",
    "en_speaker_0",
    "--text",
    "Hello there.",
    "--max-duration",
    "0.4",
    "--quiet",
    "--model-set",
    "tiny",
]


def run(out, *seeds, extra=()):
    assert cli.main([*RUN, "--seeds", *map(str, seeds), "--out", str(out), *extra]) == 0
    return out


@pytest.fixture(scope="module")
def shards_and_whole(tmp_path_factory, cli_run):
    """Shards of seed 0 and of seed 1, and the session's run over both seeds (same arguments)."""
    root = tmp_path_factory.mktemp("merge")
    return run(root / "a", 0), run(root / "b", 1), cli_run[0], root


def rows(path):
    with path.open(newline="") as stream:
        return list(csv.reader(stream))


def test_merged_shards_equal_one_run_over_all_seeds(shards_and_whole):
    a, b, whole, root = shards_and_whole
    merged = merge_runs([b, a], root / "merged")
    for name in ("cells.csv", "differences.csv", "effects.csv"):
        assert rows(merged / name) == rows(whole / name), name
    assert sorted(rows(merged / "secs.csv")) == sorted(rows(whole / "secs.csv"))
    for path in sorted((whole / "audio").iterdir()) + sorted((whole / "tokens").iterdir()):
        if path.suffix == ".npz":
            with np.load(path) as ours, np.load(merged / "tokens" / path.name) as theirs:
                assert all(np.array_equal(ours[k], theirs[k]) for k in ("semantic", "coarse", "fine")), path.name
        else:
            assert (merged / "audio" / path.name).read_bytes() == path.read_bytes(), path.name
    summary = json.loads((merged / "summary.json").read_text())
    assert summary["seeds"] == [0, 1] and len(summary["generations"]) == 16
    assert [m["seeds"] for m in summary["merged_from"]] == [[1], [0]]
    assert "merged from:" in (merged / "summary.md").read_text()


def test_report_reads_a_merged_run(shards_and_whole, capsys):
    a, b, _, root = shards_and_whole
    out = root / "merged-cli"
    assert cli.main(["merge", str(a), str(b), "--out", str(out)]) == 0
    assert "seeds 0, 1, 16 generations" in capsys.readouterr().out
    assert cli.main(["report", str(out)]) == 0
    assert "seeds (n = 2): 0, 1" in (out / "report.md").read_text()


def test_repeated_seed_is_refused_and_nothing_is_written(shards_and_whole, tmp_path):
    a, _, whole, _ = shards_and_whole
    with pytest.raises(MergeError, match=rf"{whole.name}: seeds: seed 0 is also in .*a"):
        merge_runs([a, whole], tmp_path / "out")
    assert list(tmp_path.iterdir()) == []


def test_shards_of_another_study_are_refused_by_field(shards_and_whole, tmp_path, tiny_models):
    a, _, _, _ = shards_and_whole
    longer = run(tmp_path / "longer", 1, extra=["--no-study"])
    summary = json.loads((longer / "summary.json").read_text())
    summary["params"]["max_duration_s"] = 0.5
    (longer / "summary.json").write_text(json.dumps(summary))
    with pytest.raises(MergeError, match=r"longer: params: .*'max_duration_s': 0.5.*shards of one study must agree"):
        merge_runs([a, longer], tmp_path / "out")
    summary["params"]["max_duration_s"] = 0.4
    implementation = summary["model_set"]["implementation"]
    summary["versions"][implementation] = "9.9.9"
    (longer / "summary.json").write_text(json.dumps(summary))
    with pytest.raises(MergeError, match=rf"longer: versions.{implementation}: '9.9.9', but"):
        merge_runs([a, longer], tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_a_shard_without_its_study_or_summary_is_named(shards_and_whole, tmp_path):
    a, _, _, _ = shards_and_whole
    with pytest.raises(MergeError, match=r"nothing/summary.json: missing"):
        merge_runs([a, tmp_path / "nothing"], tmp_path / "out")
    with pytest.raises(MergeError, match="at least two"):
        merge_runs([a], tmp_path / "out")
