"""The study end to end on the tiny set (plumbing, no claim about identity): run with controls,
SECS and statistics written as JSON and CSV, and a report that renders with every image and
audio element resolving."""

from __future__ import annotations

import csv
import json
import re
import shutil

import numpy as np
import pytest

from bark_ablation import cli
from bark_ablation.core.conditioning import ALL_CONDITIONINGS
from bark_ablation.study.analysis import analyse, run_study
from bark_ablation.study.report_check import check_page, find_chromium

STUDY_CELLS = (*(c.id for c in ALL_CONDITIONINGS), "ocf", "sof", "sco", "ooo")
"""The 8 on/off cells and the other-speaker controls the identity-transfer index reads (every
control runs in test_controls.py; `--with-controls` is checked in test_cli.py)."""
N_CELLS = len(STUDY_CELLS)
N_REFERENCES = 2
"""The prompt's reference audio and the other speaker's (en_speaker_3), each with a player."""
SEEDS = (0, 1)
"""Two seeds: the fewest that give every estimate an interval."""
MAX_DURATION_S = 0.4
"""Audio per sample: enough for a speaker embedding, and the study's cost is per second generated."""
needs_chromium = pytest.mark.skipif(
    find_chromium() is None, reason="needs Chromium (Debian package chromium; .ci/run installs it)"
)


@pytest.fixture(scope="module")
def study_dir(tmp_path_factory, tiny_models):
    out = tmp_path_factory.mktemp("study") / "run"
    assert (
        cli.main(
            [
                "run",
                "--prompt",
                "en_speaker_0",
                "--text",
                "Hello there, how are you?",
                "--seeds",
                *map(str, SEEDS),
                "--cells=" + ",".join(STUDY_CELLS),
                "--other-prompt",
                "en_speaker_3",
                "--max-duration",
                str(MAX_DURATION_S),
                "--out",
                str(out),
                "--quiet",
                "--model-set",
                "tiny",
            ]
        )
        == 0
    )
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
    assert {(r["cell"], int(r["seed"])) for r in rows} == {(c, s) for c in STUDY_CELLS for s in SEEDS}
    assert all(-1 <= float(r["secs"]) <= 1 for r in rows)
    assert (study_dir / "audio" / "reference.wav").is_file()


def test_statistics_are_written_as_json_and_csv(study_dir):
    study = json.loads((study_dir / "study.json").read_text())
    assert len(study["cells"]) == N_CELLS and all(c["n"] == len(SEEDS) for c in study["cells"])
    assert {d["name"] for d in study["differences_vs_full"]} == {f"{c} - scf" for c in STUDY_CELLS[1:]}
    assert [e["name"] for e in study["factorial_effects"]][:3] == ["semantic", "coarse", "fine"]
    for estimate in study["cells"] + study["factorial_effects"]:
        assert estimate["ci_low"] <= estimate["mean"] <= estimate["ci_high"]
    assert [r["name"] for r in read_csv(study_dir / "effects.csv")] == [e["name"] for e in study["factorial_effects"]]
    assert study["seconds_per_score"] > 0
    assert study["unit"] == "seed" and study["n"] == {"speakers": 1, "texts": 1, "seeds": len(SEEDS)}
    for family in (study["differences_vs_full"], study["factorial_effects"], study["identity_transfer"]):
        assert all(0 <= e["p_value"] <= e["p_adjusted"] <= 1 for e in family)
    assert [e["name"] for e in study["identity_transfer"]] == ["semantic (ocf)", "coarse (sof)", "fine (sco)"]
    assert study["identity_transfer_ceiling"]["name"] == "all stages (ooo)"
    assert set(study["power"]) == {"semantic", "coarse", "fine"}
    assert (study_dir / "audio" / "reference_en_speaker_3.wav").is_file()


def test_study_is_deterministic(study_dir, tiny_models, voice_prompts):
    from bark_ablation.core.params import GenerationParams
    from bark_ablation.generation.pipeline import run_matrix

    """A second run of one seed's eight cells scores what the study wrote, and the analysis of
    the written scores is the same twice."""
    run = run_matrix(
        "Hello there, how are you?",
        voice_prompts["en_speaker_0"],
        SEEDS[-1:],
        ALL_CONDITIONINGS,
        GenerationParams(max_duration_s=MAX_DURATION_S),
        model_set=tiny_models,
    )
    again = run_study(run)
    written = {(r["cell"], int(r["seed"])): float(r["secs"]) for r in read_csv(study_dir / "secs.csv")}
    assert set(again.score_map()) == {(c.id, SEEDS[-1]) for c in ALL_CONDITIONINGS}
    for key, score in again.score_map().items():
        assert score == pytest.approx(written[key], abs=1e-6), key
    assert [e.to_dict() for e in analyse(written).effects] == [e.to_dict() for e in analyse(written).effects]


def test_report_has_the_table_chart_effects_and_a_player_per_sample(study_dir, report_page):
    page = report_page.read_text()
    assert "has random weights" in page  # the tiny set makes no claim
    assert page.count("<audio") == N_CELLS * len(SEEDS) + N_REFERENCES
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
    assert result.images == 1 + N_CELLS and result.audio == result.audio_ok == N_CELLS * len(SEEDS) + N_REFERENCES


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
    assert (
        cli.main(
            [
                "run",
                "--prompt",
                "en_speaker_0",
                "--text",
                "Hi there.",
                "--seeds",
                "0",
                "--cells",
                "scf",
                "--max-duration",
                "0.4",
                "--no-study",
                "--out",
                str(out),
                "--quiet",
                "--model-set",
                "tiny",
            ]
        )
        == 0
    )
    assert not (out / "study.json").exists()
    assert cli.main(["report", str(out)]) == cli.EXIT_USAGE
    assert f"{out / 'study.json'}: missing" in capsys.readouterr().err


MULTI_PROMPTS = ("en_speaker_0", "en_speaker_3")
MULTI_TEXTS = ("Hello there, how are you?", "The quick brown fox.")
MULTI_CELLS = tuple(c.id for c in ALL_CONDITIONINGS)
"""The 8 on/off cells; the transfer cells run in the single-speaker study above and in
test_planted_effect.py."""


@pytest.fixture(scope="module")
def multi_study_dir(tmp_path_factory, tiny_models):
    """Two speakers x two texts (from a file) x the 8 on/off cells x one seed."""
    root = tmp_path_factory.mktemp("multi")
    texts = root / "texts.txt"
    texts.write_text("# texts, one per line\n" + "\n".join(MULTI_TEXTS) + "\n\n", encoding="utf-8")
    out = root / "study"
    assert (
        cli.main(
            [
                "run",
                "--prompts",
                *MULTI_PROMPTS,
                "--texts-file",
                str(texts),
                "--seeds",
                "0",
                "--cells=" + ",".join(MULTI_CELLS),
                "--max-duration",
                str(MAX_DURATION_S),
                "--out",
                str(out),
                "--quiet",
                "--model-set",
                "tiny",
            ]
        )
        == 0
    )
    assert cli.main(["report", str(out)]) == 0
    return out


def test_multi_speaker_study_has_a_unit_directory_per_speaker_and_text(multi_study_dir):
    summary = json.loads((multi_study_dir / "summary.json").read_text())
    assert summary["kind"] == "study" and summary["texts"] == list(MULTI_TEXTS)
    assert [u["id"] for u in summary["units"]] == [f"{p}_t{t}" for p in MULTI_PROMPTS for t in (0, 1)]
    assert [p["other_prompt"] for p in summary["prompts"]] == [None, None]  # no o cells, no other speaker
    assert summary["generations"] == len(MULTI_PROMPTS) * len(MULTI_TEXTS) * len(MULTI_CELLS)
    for unit in summary["units"]:
        unit_dir = multi_study_dir / unit["directory"]
        unit_summary = json.loads((unit_dir / "summary.json").read_text())
        assert (
            unit_summary["prompt"]["name"] == unit["prompt"] and unit_summary["text"] == MULTI_TEXTS[unit["text_index"]]
        )
        assert len(list((unit_dir / "audio").glob("seed0_*.wav"))) == len(MULTI_CELLS)
        assert (unit_dir / "report.html").is_file() and (unit_dir / "audio" / "reference.wav").is_file()
    rows = read_csv(multi_study_dir / "secs.csv")
    assert len(rows) == summary["generations"] and all(r["secs_other"] == "" for r in rows)  # no o cells


def test_multi_speaker_study_pools_over_speakers(multi_study_dir):
    study = json.loads((multi_study_dir / "study.json").read_text())
    assert study["unit"] == "speaker" and study["n"] == {"speakers": 2, "texts": 2, "seeds": 1}
    assert all(e["n"] == len(MULTI_PROMPTS) for e in study["factorial_effects"])
    assert study["identity_transfer"] == []  # no transfer cells ran
    assert set(study["per_speaker_effects"]) == set(MULTI_PROMPTS)
    per_speaker = {s: {e["name"]: e for e in effects} for s, effects in study["per_speaker_effects"].items()}
    for term in ("semantic", "coarse", "fine"):
        pooled = next(e for e in study["factorial_effects"] if e["name"] == term)
        assert per_speaker[MULTI_PROMPTS[0]][term]["n"] == len(MULTI_TEXTS)  # within a speaker: texts x seeds
        # the pooled effect is the mean of the per-speaker effects (a balanced design)
        assert pooled["mean"] == pytest.approx(np.mean([per_speaker[s][term]["mean"] for s in MULTI_PROMPTS]))
    assert {"speaker", "name", "p_adjusted"} <= set(read_csv(multi_study_dir / "speakers.csv")[0])


def test_multi_speaker_report_leads_with_the_pooled_answer(multi_study_dir):
    markdown = (multi_study_dir / "report.md").read_text()
    sections = re.findall(r"^## (.+)$", markdown, flags=re.MULTILINE)
    assert sections[:2] == ["The answer: each stage's main effect on SECS", "Per speaker"]
    assert "speakers (n = 2)" in markdown and "texts (n = 2)" in markdown and "seeds (n = 1)" in markdown
    assert "unit of replication: **the speaker**" in markdown
    assert "Stages whose history changes SECS (Holm-adjusted p < 0.05, across speakers):" in markdown
    assert (multi_study_dir / "figures" / "forest.png").read_bytes()[:4] == b"\x89PNG"
    assert "## Power" in markdown
    page = (multi_study_dir / "report.html").read_text()
    for link in re.findall(r"href='([^']+)'", page):
        assert (multi_study_dir / link).is_file(), link
    for source in re.findall(r"<audio[^>]* src='([^']+)'", page):
        assert (multi_study_dir / source).is_file(), source


@needs_chromium
def test_multi_speaker_report_renders_in_headless_chromium(multi_study_dir):
    result = check_page(multi_study_dir / "report.html")
    assert result.ok, result
    assert result.images == 2 and result.audio == result.audio_ok == len(MULTI_PROMPTS)


def test_a_multi_speaker_study_cannot_be_merged_as_a_shard(multi_study_dir, tmp_path):
    from bark_ablation.study.run_merge import MergeError, merge_runs

    with pytest.raises(MergeError, match="kind: a multi-speaker study"):
        merge_runs([multi_study_dir, multi_study_dir], tmp_path / "merged")
    assert not (tmp_path / "merged").exists()
