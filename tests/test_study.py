"""The study end to end on the tiny set (plumbing, no claim about identity): run with controls,
SECS and statistics written as JSON and CSV, and a report that renders with every image and
audio element resolving."""

from __future__ import annotations

import csv
import json
import re
import shutil

import pytest

from bark_ablation import cli
from bark_ablation.core.conditioning import ALL_CONDITIONINGS, CONTROLS
from bark_ablation.study.report_check import check_page, find_chromium
from bark_ablation.study.analysis import analyse, run_study

SEEDS = (0, 1)
"""Two seeds: the fewest that give every estimate an interval."""
MAX_DURATION_S = 0.4
"""Audio per sample: enough for a speaker embedding, and the study's cost is per second generated."""
needs_chromium = pytest.mark.skipif(find_chromium() is None,
                                    reason="needs Chromium (Debian package chromium; .ci/run installs it)")


@pytest.fixture(scope="module")
def study_dir(tmp_path_factory, tiny_models):
    out = tmp_path_factory.mktemp("study") / "run"
    assert cli.main(["run", "--prompt", "en_speaker_0", "--text", "Hello there, how are you?", "--seeds",
                     *map(str, SEEDS), "--with-controls", "--other-prompt", "en_speaker_3",
                     "--max-duration", str(MAX_DURATION_S), "--out", str(out), "--quiet"]) == 0
    return out


@pytest.fixture(scope="module")
def report_page(study_dir):
    assert cli.main(["report", str(study_dir)]) == 0
    return study_dir / "report.html"


def read_csv(path):
    with path.open() as stream:
        return list(csv.DictReader(stream))


def test_scores_cover_every_cell_and_seed(study_dir):
    rows = read_csv(study_dir / "secs.csv")
    cells = [c.id for c in ALL_CONDITIONINGS] + [c.id for c in CONTROLS.values()]
    assert {(r["cell"], int(r["seed"])) for r in rows} == {(c, s) for c in cells for s in SEEDS}
    assert all(-1 <= float(r["secs"]) <= 1 for r in rows)
    assert (study_dir / "audio" / "reference.wav").is_file()


def test_statistics_are_written_as_json_and_csv(study_dir):
    study = json.loads((study_dir / "study.json").read_text())
    assert len(study["cells"]) == 15 and all(c["n"] == len(SEEDS) for c in study["cells"])
    assert {d["name"] for d in study["differences_vs_full"]} == {f"{c} - scf" for c in
                                                                 [*(c.id for c in ALL_CONDITIONINGS[1:]),
                                                                  *(c.id for c in CONTROLS.values())]}
    assert [e["name"] for e in study["factorial_effects"]][:3] == ["semantic", "coarse", "fine"]
    for estimate in study["cells"] + study["factorial_effects"]:
        assert estimate["ci_low"] <= estimate["mean"] <= estimate["ci_high"]
    assert [r["name"] for r in read_csv(study_dir / "effects.csv")] == [e["name"] for e in study["factorial_effects"]]
    assert study["seconds_per_score"] > 0


def test_study_is_deterministic(study_dir, tiny_models, voice_prompts):
    from bark_ablation.core.params import GenerationParams
    from bark_ablation.generation.pipeline import run_matrix

    """A second run of one seed's eight cells scores what the study wrote, and the analysis of
    the written scores is the same twice."""
    run = run_matrix("Hello there, how are you?", voice_prompts["en_speaker_0"], SEEDS[-1:], ALL_CONDITIONINGS,
                     GenerationParams(max_duration_s=MAX_DURATION_S), model_set=tiny_models)
    again = run_study(run)
    written = {(r["cell"], int(r["seed"])): float(r["secs"]) for r in read_csv(study_dir / "secs.csv")}
    assert set(again.scores) == {(c.id, SEEDS[-1]) for c in ALL_CONDITIONINGS}
    for key, score in again.scores.items():
        assert score == pytest.approx(written[key], abs=1e-6), key
    assert [e.to_dict() for e in analyse(written).effects] == [e.to_dict() for e in analyse(written).effects]


def test_report_has_the_table_chart_effects_and_a_player_per_sample(study_dir, report_page):
    page = report_page.read_text()
    assert "has random weights" in page  # the tiny set makes no claim
    assert page.count("<audio") == 15 * len(SEEDS) + 1
    for source in re.findall(r"<audio[^>]* src='([^']+)'", page):
        assert (study_dir / source).is_file(), source
    assert "data:image/png;base64," in page and "https://" not in page and "http://" not in page
    markdown = (study_dir / "report.md").read_text()
    assert "| `scf` |" in markdown and "| semantic |" in markdown
    assert (study_dir / "figures" / "secs.png").read_bytes()[:4] == b"\x89PNG"


@needs_chromium
def test_report_renders_in_headless_chromium(report_page):
    result = check_page(report_page)
    assert result.ok, result
    assert result.images == 1 + 15 and result.audio == result.audio_ok == 15 * len(SEEDS) + 1


@needs_chromium
def test_render_check_catches_a_missing_audio_file(report_page, tmp_path):
    """Known-bad page: one WAV removed from a copy of the run."""
    copy = tmp_path / "copy"
    shutil.copytree(report_page.parent, copy)
    (copy / "audio" / "seed1_s-f.wav").unlink()
    result = check_page(copy / "report.html")
    assert not result.ok and result.audio_broken == ["audio/seed1_s-f.wav"]


def test_report_of_a_run_without_a_study_names_the_missing_file(tmp_path, capsys, tiny_models):
    out = tmp_path / "plain"
    assert cli.main(["run", "--prompt", "en_speaker_0", "--text", "Hi there.", "--seeds", "0", "--cells", "scf",
                     "--max-duration", "0.4", "--no-study", "--out", str(out), "--quiet"]) == 0
    assert not (out / "study.json").exists()
    assert cli.main(["report", str(out)]) == cli.EXIT_USAGE
    assert f"{out / 'study.json'}: missing" in capsys.readouterr().err
