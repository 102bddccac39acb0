"""Re-scoring a finished run with another speaker encoder: its own encoder gives back its
statistics files byte for byte; another writes encoders/<name>/ and the report shows agreement;
the agreement itself on known answers, and a known-bad pair that disagrees."""

from __future__ import annotations

import json

import pytest
from wavlm_cache import tiny_wavlm_files

from bark_ablation import cli
from bark_ablation.core.errors import OutputError
from bark_ablation.models.cache_layout import write_hub_snapshot
from bark_ablation.study.rescoring import agreement, rescore
from bark_ablation.study.speaker_encoders import WAVLM_REPO

STATISTICS = ("secs.csv", "cells.csv", "differences.csv", "effects.csv", "transfer.csv", "speakers.csv")
RUN = ["run", "--prompts", "en_speaker_0", "en_speaker_1", "--text", "Hi there.", "--seeds", "0"]
RUN += ["--model-set", "tiny", "--max-duration", "0.4", "--quiet"]


@pytest.fixture(scope="module")
def study_run(tmp_path_factory, tiny_models):
    """2 speakers x the 8 cells x seed 0: the factorial, so every stage has an answer."""
    out = tmp_path_factory.mktemp("rescore") / "run"
    assert cli.main([*RUN, "--out", str(out)]) == 0
    return out


def test_rescoring_with_the_runs_own_encoder_gives_back_its_statistics(study_run):
    written = rescore(study_run, "resemblyzer")
    assert written == study_run / "encoders" / "resemblyzer"
    for name in STATISTICS:
        assert (written / name).read_bytes() == (study_run / name).read_bytes(), name
    found = agreement(*(json.loads((d / "study.json").read_text()) for d in (study_run, written)))
    assert found["spearman_rho"] == pytest.approx(1.0) and all(s["agree"] for s in found["stages"].values())


def test_another_encoder_writes_its_study_and_the_report_shows_the_agreement(study_run, hub_cache, tmp_path, capsys):
    write_hub_snapshot(hub_cache, WAVLM_REPO, tiny_wavlm_files(tmp_path))
    assert cli.main(["rescore", str(study_run), "--speaker-encoder", "wavlm-base-plus-sv"]) == 0
    printed = capsys.readouterr().out
    assert "wavlm-base-plus-sv against resemblyzer: Spearman rho of the 8 cell means" in printed
    rescored = json.loads((study_run / "encoders" / "wavlm-base-plus-sv" / "study.json").read_text())
    assert rescored["reference"]["speaker_encoder"]["name"] == "wavlm-base-plus-sv"
    assert "wavlm-base-plus-sv" in rescored["metric"] and len(rescored["scores"]) == 16
    assert cli.main(["report", str(study_run)]) == 0
    report = (study_run / "report.md").read_text()
    assert "## Speaker encoders" in report and "Every number above comes from `resemblyzer`" in report
    assert "| `wavlm-base-plus-sv` |" in report


def cell(name: str, mean: float) -> dict:
    return {"name": name, "mean": mean}


def effect(name: str, mean: float, p_adjusted: float) -> dict:
    return {"name": name, "mean": mean, "p_adjusted": p_adjusted}


def test_agreement_on_known_answers_and_a_pair_that_disagrees():
    cells = [cell(c, m) for c, m in (("scf", 0.9), ("sc-", 0.8), ("s--", 0.7), ("---", 0.6))]
    effects = [effect("semantic", 0.10, 0.001), effect("coarse", 0.01, 0.60), effect("fine", -0.05, 0.01)]
    study = {"cells": cells, "factorial_effects": effects}
    same = agreement(study, study)
    assert same["spearman_rho"] == pytest.approx(1.0) and all(s["agree"] for s in same["stages"].values())
    reversed_cells = [cell(c["name"], 1.5 - c["mean"]) for c in cells]
    flipped = [effect("semantic", 0.10, 0.001), effect("coarse", 0.04, 0.01), effect("fine", 0.05, 0.01)]
    other = agreement(study, {"cells": reversed_cells, "factorial_effects": flipped})
    assert other["spearman_rho"] == pytest.approx(-1.0)
    assert other["stages"]["semantic"]["agree"]
    assert other["stages"]["coarse"] == {"primary": "no effect", "other": "carries (+)", "agree": False}
    assert other["stages"]["fine"] == {"primary": "carries (-)", "other": "carries (+)", "agree": False}


def test_a_run_missing_a_sample_is_refused_and_leaves_nothing(study_run, tmp_path):
    import shutil

    broken = tmp_path / "broken"
    shutil.copytree(study_run, broken, ignore=shutil.ignore_patterns("encoders"))
    next((broken / "units").glob("*/audio/seed0_scf.wav")).unlink()
    with pytest.raises(OutputError, match=r"seed0_scf.wav: missing; the run directory is incomplete"):
        rescore(broken, "resemblyzer")


def test_shards_scored_by_different_encoders_do_not_merge(tmp_path):
    from bark_ablation.study.run_merge import MergeError, _check_same_encoder

    resemblyzer = {"reference": {"speaker_encoder": {"name": "resemblyzer", "version": "0.1.4"}}}
    wavlm = {"reference": {"speaker_encoder": {"name": "wavlm-base-plus-sv", "version": "transformers 5.24.0"}}}
    _check_same_encoder([tmp_path / "a", tmp_path / "b"], [resemblyzer, resemblyzer])
    with pytest.raises(MergeError, match=r"/b: speaker_encoder differs from .*/a's"):
        _check_same_encoder([tmp_path / "a", tmp_path / "b"], [resemblyzer, wavlm])
