"""The study finds an identity effect planted in one stage, and only there.

One tiny design (5 speakers x 1 text x the 8 on/off cells and the 3 transfer cells x 1 seed,
0.4 s) runs the real pipeline once. Each speaker is given a synthetic voice
(:mod:`bark_ablation.study.synthetic_voices`): the tiny set's decoded prompts all sound alike to
the speaker encoder, so they cannot stand for speakers. Each test scores the same generations
with or without an :class:`IdentityPlant`: the speaker's reference audio blended in (95 % of the
RMS) where the planted stage received that speaker's history, the other speaker's where it
received the other speaker's, voiceless noise where it received none. The planted size is
measured from the scores by :func:`planted_size`, apart from the statistics code, and must lie in
the planted stage's interval.

Measured on this design (CPU, tiny set, seed 0):

- no plant: main effects semantic +0.0038, coarse +0.0021, fine +0.0009, every Holm p 1;
- fine plant: planted +0.2586, fine +0.2577 [+0.2001, +0.3153], Holm p 0.0017; semantic and
  coarse Holm p 1; transfer index fine +0.386 (Holm p 0.018), semantic and coarse about 0;
- coarse plant: planted +0.2581, coarse +0.2592 [+0.1995, +0.3189], Holm p 0.0019;
- a weak plant (30 %): planted about 0, nothing found;
- blending ANOTHER utterance of the voice (identity rather than the recording) at 95 %: +0.16
  with an SD of 0.10 over these five voices, Holm p 0.16: these synthetic voices differ too
  unevenly for five speakers to show it (seven at 90 %: +0.14, Holm p 0.047).
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from bark_ablation.core.conditioning import ALL_CONDITIONINGS, TRANSFER_CELLS, Stage
from bark_ablation.core.errors import ParamsError
from bark_ablation.core.params import GenerationParams
from bark_ablation.study.analysis import MAIN_EFFECTS, analyse, score_runs
from bark_ablation.study.design import StudyDesign, run_design
from bark_ablation.study.planting import IdentityPlant, Unplanted, blend, planted_size
from bark_ablation.study.synthetic_voices import VOICES, voiceless

SPEAKERS = tuple(f"en_speaker_{i}" for i in range(5))
VOICE_NAMES = ("bass", "tenor", "breathy", "soprano", "child")
"""Five of the synthetic voices that differ most (bass and baritone are the closest pair)."""
TEXT = "Hello there, how are you?"
SEEDS = (0,)
MAX_DURATION_S = 0.4
SCORED_DURATION_S = 2.0
"""Every sample is repeated to 2 s before scoring: at 0.4 s the speaker encoder's 1.6 s window
is mostly padding."""
WEIGHT = 0.95
WEAK_WEIGHT = 0.3


@pytest.fixture(scope="module")
def design_run(tiny_models):
    design = StudyDesign.build(SPEAKERS, [TEXT], SEEDS, [*ALL_CONDITIONINGS, *TRANSFER_CELLS.values()])
    return run_design(design, GenerationParams(max_duration_s=MAX_DURATION_S), model_set=tiny_models)


@pytest.fixture(scope="module")
def references():
    """Speaker -> its synthetic voice's reference recording (2 s, 24 kHz)."""
    voices = {voice.name: voice for voice in VOICES}
    return {speaker: voices[name].utterance(0) for speaker, name in zip(SPEAKERS, VOICE_NAMES, strict=True)}


def plant(stage: str, weight: float = WEIGHT) -> IdentityPlant:
    return IdentityPlant(stage, weight, neutral=voiceless(), scored_duration_s=SCORED_DURATION_S)


@pytest.fixture(scope="module")
def study(design_run, references):
    """``study(plant or None)`` -> (StudyResult, PlantedSize or None), once per plant; every
    scoring shares one embedding cache, so only what a plant changes is embedded again."""
    embeddings: dict = {}
    results: dict = {}

    def scores_of(transform):
        return score_runs(design_run.runs, transform=transform, references=references, embedding_cache=embeddings)

    def result(planted):
        key = None if planted is None else (planted.stage, planted.weight)
        if key not in results:
            unplanted_scores = scores_of(Unplanted(SCORED_DURATION_S))[0]
            scores, _, per_score = scores_of(Unplanted(SCORED_DURATION_S) if planted is None else planted)
            outcome = analyse(scores, per_score, texts=[TEXT])
            outcome.reference_audio = dict(references)
            size = None if planted is None else planted_size(unplanted_scores, scores, planted)
            results[key] = (outcome, size)
        return results[key]

    return result


def surviving(estimates) -> list[str]:
    """Names of the estimates whose Holm-adjusted p is below 0.05."""
    return [e.name for e in estimates if e.survives]


def check_found(outcome, size, stage: str) -> None:
    """The study's answer is ``stage`` alone, and the planted size lies in its 95 % interval."""
    main = [e for e in outcome.effects if e.name in MAIN_EFFECTS]
    assert surviving(main) == [stage], f"surviving main effects {surviving(main)}, expected only {stage!r}"
    effect = next(e for e in main if e.name == stage)
    assert effect.ci_low <= size.mean <= effect.ci_high, (
        f"planted {size.mean:+.4f} outside {stage}'s interval [{effect.ci_low:+.4f}, {effect.ci_high:+.4f}]"
    )


@pytest.mark.parametrize("stage", ["fine", "coarse", "semantic"])
def test_a_planted_stage_is_the_only_one_found(study, stage):
    outcome, size = study(plant(stage))
    assert size.unit == "speaker" and len(size.per_unit) == len(SPEAKERS)
    check_found(outcome, size, stage)


@pytest.mark.parametrize("stage", ["fine", "coarse", "semantic"])
def test_the_transfer_index_finds_the_planted_stage_alone(study, stage):
    """The other speaker's voice follows the planted stage's 'o' history: only that stage's
    transfer index is positive and survives."""
    outcome, _ = study(plant(stage))
    index = {e.name.split()[0]: e for e in outcome.transfer}
    assert surviving(outcome.transfer) == [f"{stage} ({TRANSFER_CELLS[stage].id})"]
    assert index[stage].mean > 0.1


def test_the_report_names_the_planted_stage(study, design_run, tmp_path):
    from bark_ablation.output.staging import StagedDirectory
    from bark_ablation.study.report import write_report
    from bark_ablation.study.run_output import write_design_run

    outcome, _ = study(plant("fine"))
    run_dir = write_design_run(StagedDirectory(tmp_path / "run"), design_run, 1.0, outcome)
    write_report(run_dir, unit_reports=False)
    markdown = (run_dir / "report.md").read_text()
    assert "Stages whose history changes SECS (Holm-adjusted p < 0.05, across speakers): **fine**." in markdown


def test_without_a_plant_no_stage_is_found(study):
    """The tiny set carries no identity: no main effect and no transfer index survives."""
    outcome, _ = study(None)
    assert surviving([e for e in outcome.effects if e.name in MAIN_EFFECTS]) == []
    assert surviving(outcome.transfer) == []


def test_a_weak_plant_is_not_found(study):
    outcome, size = study(plant("fine", WEAK_WEIGHT))
    assert abs(size.mean) < study(plant("fine"))[1].mean / 5
    assert surviving([e for e in outcome.effects if e.name in MAIN_EFFECTS]) == []


def test_the_check_fails_when_asked_for_the_wrong_stage(study):
    """Known-bad: the fine plant's study checked for coarse, and checked against a planted size
    the interval does not hold."""
    outcome, size = study(plant("fine"))
    with pytest.raises(AssertionError, match="expected only 'coarse'"):
        check_found(outcome, size, "coarse")
    wrong_size = type(size)(size.mean + 1.0, size.per_unit, size.unit, size.changed)
    with pytest.raises(AssertionError, match="outside fine's interval"):
        check_found(outcome, wrong_size, "fine")


def test_the_plant_follows_whose_history_the_stage_received(design_run, references):
    fine = IdentityPlant("fine", 1.0, neutral=voiceless())
    run = design_run.runs[0]
    other = run.other_prompt.name
    for generation in run.generations:
        audio = fine(generation, {**references, other: references[other]})
        expected = {"f": references[run.prompt.name], "o": references[other], "-": voiceless()}[generation.cell[2]]
        level = np.sqrt(np.mean(generation.audio.astype(np.float64) ** 2))
        assert audio.shape == generation.audio.shape
        assert np.allclose(
            audio,
            np.resize(expected, audio.size)
            / np.sqrt(np.mean(np.resize(expected, audio.size).astype(np.float64) ** 2))
            * level,
            atol=1e-5,
        ), generation.cell


def test_unplanted_cells_pass_unchanged_without_a_neutral(design_run, references):
    fine = IdentityPlant("fine", 0.5)
    for generation in design_run.runs[0].generations:
        if generation.cell[2] == "-":
            assert fine(generation, references) is generation.audio


def test_blend_weight_one_is_the_reference_at_the_generation_s_level():
    audio = np.full(10, 0.5, dtype=np.float32)
    reference = np.array([1.0, -1.0, 1.0], dtype=np.float32)  # shorter: tiled
    assert np.allclose(blend(audio, reference, 1.0), 0.5 * np.resize(reference, 10))


def test_planted_size_needs_the_same_generations(study):
    outcome, _ = study(None)
    with pytest.raises(ParamsError, match="planted scores"):
        planted_size(outcome.scores, outcome.scores[1:], plant("fine"))


@pytest.mark.parametrize("weight", [0, -0.1, 1.5, math.nan, "0.3", True])
def test_a_bad_weight_is_refused_naming_the_field(weight):
    with pytest.raises(ParamsError, match="plant weight"):
        IdentityPlant(Stage.FINE, weight)


@pytest.mark.parametrize("stage", ["decode", 2, None])
def test_a_bad_stage_is_refused_naming_the_field(stage):
    with pytest.raises(ParamsError, match="plant stage"):
        IdentityPlant(stage, 0.3)


def test_a_stage_may_be_given_by_name():
    assert IdentityPlant("coarse", 1).stage is Stage.COARSE
