"""The study's design: prompts x texts x cells x seeds, validated before anything runs."""

from __future__ import annotations

import pytest

from bark_ablation.core.errors import ParamsError
from bark_ablation.core.params import GenerationParams
from bark_ablation.study.design import StudyDesign, read_texts_file, run_design

PROMPTS = ("en_speaker_0", "en_speaker_1", "en_speaker_2")


def test_other_speakers_rotate_through_the_prompts_when_o_cells_need_them():
    design = StudyDesign.build(PROMPTS, ["Hi."], [0], ["scf", "sco"])
    assert [o.name for o in design.other_prompts] == ["en_speaker_1", "en_speaker_2", "en_speaker_0"]
    assert [u.other_prompt.name for u in design.units] == ["en_speaker_1", "en_speaker_2", "en_speaker_0"]


def test_no_o_cells_no_other_speaker():
    assert StudyDesign.build(PROMPTS, ["Hi."], [0], ["scf"]).other_prompts == (None, None, None)


def test_a_named_other_speaker_serves_every_prompt_and_must_not_be_one_of_them():
    design = StudyDesign.build(PROMPTS[:2], ["Hi."], [0], ["sco"], other_prompt="en_speaker_5")
    assert {o.name for o in design.other_prompts} == {"en_speaker_5"}
    with pytest.raises(ParamsError, match="other_prompt: 'en_speaker_1' is also a study prompt"):
        StudyDesign.build(PROMPTS, ["Hi."], [0], ["sco"], other_prompt="en_speaker_1")


def test_one_prompt_with_o_cells_needs_a_named_other_speaker():
    with pytest.raises(ParamsError, match="other_prompt: cells with an 'o'"):
        StudyDesign.build(PROMPTS[:1], ["Hi."], [0], ["sco"])


@pytest.mark.parametrize(
    "prompts, texts, message",
    [
        ([], ["Hi."], "prompts: must name at least one"),
        (["en_speaker_0", "en_speaker_0"], ["Hi."], "prompts: en_speaker_0 repeats en_speaker_0"),
        (PROMPTS, [], "texts: must give at least one"),
        (PROMPTS, ["Hi.", "Hi."], "texts: 'Hi.' repeats 'Hi.'"),
        (PROMPTS, ["  "], "text: must contain at least one non-whitespace character"),
    ],
)
def test_a_bad_design_names_the_field(prompts, texts, message):
    with pytest.raises(ParamsError, match=message.replace("(", r"\(").replace(")", r"\)")):
        StudyDesign.build(prompts, texts, [0], ["scf"])


def test_units_are_prompt_major_with_file_system_safe_ids():
    design = StudyDesign.build(["v2/en_speaker_0", "en_speaker_1"], ["One.", "Two."], [0, 1], ["scf", "---"])
    assert [u.id for u in design.units] == [
        "v2_en_speaker_0_t0",
        "v2_en_speaker_0_t1",
        "en_speaker_1_t0",
        "en_speaker_1_t1",
    ]
    assert design.n_generations == 2 * 2 * 2 * 2 and not design.is_single_unit


def test_texts_file_skips_comments_and_blank_lines(tmp_path):
    path = tmp_path / "texts.txt"
    path.write_text("# a comment\n\nFirst text.\n   Second text.  \n", encoding="utf-8")
    assert read_texts_file(path) == ["First text.", "Second text."]


@pytest.mark.parametrize(
    "content, message",
    [
        (b"# only comments\n\n", "holds no text"),
        (b"\xff\xfe bad bytes", "unreadable"),
        (None, "unreadable"),
    ],
)
def test_a_bad_texts_file_names_the_option(tmp_path, content, message):
    path = tmp_path / "texts.txt"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(ParamsError, match=f"--texts-file: {path}: {message}"):
        read_texts_file(path)


def test_run_design_counts_progress_over_the_whole_design(tiny_models):
    design = StudyDesign.build(PROMPTS[:2], ["Hi there."], [0], ["scf"])
    seen = []
    design_run = run_design(
        design,
        GenerationParams(max_duration_s=0.2),
        model_set=tiny_models,
        on_result=lambda generation, index, total: seen.append((generation.prompt, index, total)),
    )
    assert seen == [("en_speaker_0", 1, 2), ("en_speaker_1", 2, 2)]
    assert [run.prompt.name for run in design_run.runs] == list(PROMPTS[:2])
