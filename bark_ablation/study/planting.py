"""Planted effects: validating the study's statistics against an identity effect of known size.

The study asks which stage's history moves SECS. On weights that carry no identity (the tiny
model set) its answer should be "none"; that it would find a real effect, in the right stage and
no other, needs an effect whose stage and size are known. :class:`IdentityPlant` makes one at
the audio level: every generation whose chosen stage received some speaker's history has a
fraction of *that* speaker's voice blended in before it is scored (the speaker's own voice for
the on/off cells, the other speaker's for ``o`` cells, nothing for random or shuffled
histories), and nothing else changes. Passed as the ``transform`` of
:func:`~bark_ablation.study.analysis.score_runs` or :func:`~bark_ablation.study.analysis.run_study`,
it turns any run into a study with a known answer: the planted stage's main effect, of the size
:func:`planted_size` measures, and a positive identity-transfer index for that stage alone.

Where the model set carries no identity (tiny), the voices come from
:mod:`bark_ablation.study.synthetic_voices`: ``sources`` holds one utterance per speaker to blend
in, and the study scores against another utterance of the same voice (``references`` of
:func:`~bark_ablation.study.analysis.score_runs`), so what is planted is a voice, not a waveform.

:func:`planted_size` measures the size from the scores alone, without the statistics code: per
generation the plant changed, SECS with the plant minus SECS without, averaged per unit (speaker,
or seed with one speaker) and then across units, as the study averages. A factorial main effect
of a stage is the mean over its "on" cells minus the mean over its "off" cells, so the planted
stage's estimate is the planted size plus whatever effect that stage had without the plant.

The blend is written here (a weighted sum of two RMS-normalised signals) because none of the
audio libraries the project uses (librosa, soundfile, Resemblyzer) has a mixer that levels each
input before weighting it; once both signals are at the same RMS the mix is one line of numpy.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from bark_ablation.core.conditioning import STAGES, Conditioning, HistorySource, Stage
from bark_ablation.core.errors import ParamsError
from bark_ablation.generation.pipeline import Generation
from bark_ablation.study.analysis import Score


@dataclass(frozen=True)
class IdentityPlant:
    """Blend a speaker's voice into every generation whose ``stage`` received that speaker's history.

    Attributes:
        stage: the stage whose history "carries identity" (a :class:`Stage` or its name).
        weight: the fraction of the blend that is the voice, 0 < weight <= 1 (1: the generation
            is replaced). Both signals are scaled to the same RMS before weighting, so a weight
            means the same for every speaker and generation.
        sources: speaker (prompt name) -> audio of that speaker's voice to blend in
            (:data:`SAMPLE_RATE` Hz); None: the scoring references passed to the call.
        neutral: audio blended in, at the same weight, into every generation the plant gives no
            speaker's voice (no history, random or shuffled tokens), e.g.
            :func:`~bark_ablation.study.synthetic_voices.voiceless` noise; then every cell is
            mostly planted sound and the model's own small effects shrink alike. None: those
            generations pass unchanged.
        scored_duration_s: when set, every generation (planted or not) is repeated to at least
            this many seconds before scoring, so that the speaker encoder's 1.6 s windows see
            audio rather than padding; planted and unplanted cells are then scored alike.

    Calling the plant as ``plant(generation, references)`` returns the audio to score (float32,
    at the generation's sample rate, with the generation's RMS).
    """

    stage: Stage
    weight: float
    sources: Mapping[str, np.ndarray] | None = field(default=None, compare=False, repr=False)
    neutral: np.ndarray | None = field(default=None, compare=False, repr=False)
    scored_duration_s: float | None = None

    def __post_init__(self) -> None:
        stage = self.stage
        if isinstance(stage, str) and not isinstance(stage, Stage):
            try:
                stage = Stage(stage)
            except ValueError:
                stage = None
        if stage not in STAGES:
            raise ParamsError("plant stage", f"must be one of {', '.join(s.value for s in STAGES)}, got {self.stage!r}")
        object.__setattr__(self, "stage", stage)
        weight = self.weight
        if isinstance(weight, bool) or not isinstance(weight, (int, float, np.floating, np.integer)):
            raise ParamsError("plant weight", f"must be a number in (0, 1], got {weight!r}")
        if not 0.0 < float(weight) <= 1.0:  # also rejects NaN
            raise ParamsError("plant weight", f"must be in (0, 1] (fraction of the voice), got {weight!r}")
        object.__setattr__(self, "weight", float(weight))
        if self.scored_duration_s is not None and not 0 < self.scored_duration_s <= 60:
            raise ParamsError("plant scored_duration_s", f"must be in (0, 60] seconds, got {self.scored_duration_s!r}")

    def voice_of(self, conditioning: Conditioning, prompt: str, other_prompt: str | None) -> str | None:
        """Whose voice the plant blends into a generation of ``conditioning``: ``prompt`` when
        :attr:`stage` received the speaker's own history, ``other_prompt`` when it received the
        other speaker's, None otherwise (no history, random or shuffled tokens)."""
        source = conditioning.source(self.stage)
        if source is HistorySource.PROMPT:
            return prompt
        if source is HistorySource.OTHER_SPEAKER:
            return other_prompt
        return None

    def applies_to(self, generation: Generation) -> bool:
        """Whether the plant blends a voice into ``generation``."""
        return self.voice_of(generation.conditioning, generation.prompt, generation.other_prompt) is not None

    def __call__(self, generation: Generation, references: Mapping[str, np.ndarray]) -> np.ndarray:
        audio = generation.audio
        if self.scored_duration_s is not None:
            audio = repeated(audio, self.scored_duration_s, generation.sample_rate)
        speaker = self.voice_of(generation.conditioning, generation.prompt, generation.other_prompt)
        if speaker is None:
            return audio if self.neutral is None else blend(audio, self.neutral, self.weight)
        voices = self.sources if self.sources is not None else references
        if speaker not in voices:
            raise ParamsError("plant sources", f"no voice for speaker {speaker!r}")
        return blend(audio, voices[speaker], self.weight)

    @property
    def label(self) -> str:
        """``"fine, weight 0.3"``: for messages and test ids."""
        return f"{self.stage.value}, weight {self.weight:g}"


def blend(audio: np.ndarray, reference: np.ndarray, weight: float) -> np.ndarray:
    """``(1 - weight) * audio/rms(audio) + weight * ref/rms(ref)``, rescaled to ``audio``'s RMS.

    ``reference`` is cropped to ``audio``'s length, or tiled when shorter; both must be at the same
    sample rate. Float32 out, as long as ``audio``. A silent input contributes silence.
    """
    samples = np.asarray(audio, dtype=np.float64)
    source = np.asarray(reference, dtype=np.float64)
    if samples.ndim != 1 or source.ndim != 1 or source.size == 0:
        raise ParamsError(
            "plant audio",
            f"needs two one-channel signals and a non-empty reference, got shapes {samples.shape} and {source.shape}",
        )
    fitted = np.resize(source, samples.size)  # crops, or repeats from the start when shorter
    level = _rms(samples)
    mixed = (1.0 - weight) * _unit_rms(samples) + weight * _unit_rms(fitted)
    return (_unit_rms(mixed) * level).astype(np.float32)


def _rms(samples: np.ndarray) -> float:
    return float(np.sqrt(np.mean(np.square(samples)))) if samples.size else 0.0


def _unit_rms(samples: np.ndarray) -> np.ndarray:
    level = _rms(samples)
    return samples / level if level > 0 else samples


@dataclass(frozen=True)
class PlantedSize:
    """The size of a plant, measured on the scores: SECS units.

    Attributes:
        mean: across units, the per-unit change of SECS (planted minus unplanted) averaged over
            the on/off cells whose planted stage received the speaker's history, minus the same
            average over those whose stage received none: how far the plant moves that stage's
            main effect, the "known planted size".
        per_unit: unit (speaker name, or ``"seed <n>"`` with one speaker) -> that unit's mean.
        unit: ``"speaker"`` (two or more speakers) or ``"seed"``, as in the study.
        changed: how many generations entered the difference.
    """

    mean: float
    per_unit: dict[str, float]
    unit: str
    changed: int


def planted_size(unplanted: Sequence[Score], planted: Sequence[Score], plant: IdentityPlant) -> PlantedSize:
    """How far ``plant`` moved its stage's main effect, from the scores of the same generations
    without and with it (no statistics code): per unit, the mean change of SECS over the on/off
    cells whose :attr:`IdentityPlant.stage` received the speaker's history minus the mean change
    over those whose stage received none; then the mean over units.

    Raises :class:`ParamsError` when the plant changed no generation, or the two score lists do
    not hold the same generations.
    """

    def key(score: Score) -> tuple:
        return score.prompt, score.text_index, score.cell, score.seed

    before = {key(s): s.secs for s in unplanted}
    after = {key(s): s.secs for s in planted}
    if before.keys() != after.keys():
        raise ParamsError("planted scores", "must score the same generations as the unplanted ones")
    speakers = list(dict.fromkeys(s.prompt for s in unplanted))
    unit = "speaker" if len(speakers) >= 2 else "seed"
    changes: dict[str, dict[HistorySource, list[float]]] = {}
    for key_ in before:
        prompt, _, cell, seed = key_
        source = Conditioning.from_id(cell).source(plant.stage)
        if source not in (HistorySource.PROMPT, HistorySource.NONE):
            continue  # controls are not on/off cells
        name = prompt if unit == "speaker" else f"seed {seed}"
        changes.setdefault(name, {HistorySource.PROMPT: [], HistorySource.NONE: []})[source].append(
            after[key_] - before[key_]
        )
    per_unit = {
        name: float(np.mean(by_source[HistorySource.PROMPT]) - np.mean(by_source[HistorySource.NONE]))
        for name, by_source in changes.items()
        if all(by_source.values())
    }
    if not per_unit:
        raise ParamsError(
            "plant stage",
            f"{plant.stage.value!r}: no unit has cells with and without that stage's "
            f"history, so the plant's size is undefined",
        )
    return PlantedSize(
        float(np.mean(list(per_unit.values()))),
        per_unit,
        unit,
        sum(len(v) for by_source in changes.values() for v in by_source.values()),
    )


@dataclass(frozen=True)
class Unplanted:
    """The transform of a study scored like a planted one, with nothing planted: every
    generation repeated to at least ``scored_duration_s`` seconds (as :class:`IdentityPlant`
    does with that attribute), so the two studies differ by the plant alone."""

    scored_duration_s: float

    def __call__(self, generation: Generation, references: Mapping[str, np.ndarray]) -> np.ndarray:
        return repeated(generation.audio, self.scored_duration_s, generation.sample_rate)


def repeated(audio: np.ndarray, seconds: float, sample_rate: int) -> np.ndarray:
    """``audio`` repeated from its start until it is at least ``seconds`` long (samples at
    ``sample_rate`` Hz); unchanged when it already is."""
    return np.resize(audio, max(audio.size, int(round(seconds * sample_rate))))
