"""Planted effects: validating the study's statistics against an identity effect of known size.

The study asks which stage's history moves SECS. On weights that carry no identity (the tiny
model set) its answer should be "none"; that it would find a real effect, in the right stage and
no other, needs an effect whose stage and size are known. :class:`IdentityPlant` makes one at
the audio level: every generation whose chosen stage received the speaker's own history has a
fraction of that speaker's reference audio blended in before it is scored, and nothing else
changes. Passed as the ``transform`` of :func:`~bark_ablation.study.analysis.score_runs` or
:func:`~bark_ablation.study.analysis.run_study`, it turns any run into a study with a known
answer: the planted stage's main effect, of the size :func:`planted_size` measures.

:func:`planted_size` measures that size without the statistics code: SECS of each changed
generation with and without the plant, differenced, averaged per unit (speaker, or seed with
one speaker) and then across units, as the study averages. A factorial main effect of a stage is
the mean over its "on" cells minus the mean over its "off" cells, so the planted stage's
estimate is the planted size plus whatever effect that stage had without the plant.

The blend is written here (a weighted sum of two RMS-normalised signals) because none of the
audio libraries the project uses (librosa, soundfile, Resemblyzer) has a mixer that levels each
input before weighting it; once both signals are at the same RMS the mix is one line of numpy.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from bark_ablation.core.conditioning import HistorySource, Stage
from bark_ablation.core.errors import ParamsError
from bark_ablation.generation.pipeline import SAMPLE_RATE, Generation, MatrixRun
from bark_ablation.study.similarity import embed, prompt_reference_audio, secs


@dataclass(frozen=True)
class IdentityPlant:
    """Blend the speaker's reference audio into every generation whose ``stage`` received the
    speaker's own history.

    Attributes:
        stage: the stage whose history "carries identity" (a :class:`Stage` or its name).
        weight: the fraction of the blend that is reference audio, 0 < weight <= 1 (1: the
            generation is replaced by the reference). Both signals are scaled to the same RMS
            before weighting, so a weight means the same for every speaker and generation.

    Calling the plant as ``plant(generation, references)`` returns the audio to score (float32,
    at the generation's sample rate, with the generation's RMS): the blend for a generation the
    plant applies to (:meth:`applies_to`), ``generation.audio`` unchanged for every other one,
    including cells whose stage got a control (random, shuffled or another speaker's) history.
    """

    stage: Stage
    weight: float

    def __post_init__(self) -> None:
        stage = self.stage
        if isinstance(stage, str) and not isinstance(stage, Stage):
            try:
                stage = Stage(stage)
            except ValueError:
                stage = None
        if not isinstance(stage, Stage):
            raise ParamsError("plant stage", f"must be one of {', '.join(s.value for s in Stage)}, "
                                             f"got {self.stage!r}")
        object.__setattr__(self, "stage", stage)
        weight = self.weight
        if isinstance(weight, bool) or not isinstance(weight, (int, float, np.floating, np.integer)):
            raise ParamsError("plant weight", f"must be a number in (0, 1], got {weight!r}")
        if not 0.0 < float(weight) <= 1.0:  # also rejects NaN
            raise ParamsError("plant weight", f"must be in (0, 1] (fraction of reference audio), got {weight!r}")
        object.__setattr__(self, "weight", float(weight))

    def applies_to(self, generation: Generation) -> bool:
        """Whether ``generation``'s :attr:`stage` received the speaker's own history."""
        return generation.conditioning.source(self.stage) is HistorySource.PROMPT

    def __call__(self, generation: Generation, references: Mapping[str, np.ndarray]) -> np.ndarray:
        if not self.applies_to(generation):
            return generation.audio
        if generation.prompt not in references:
            raise ParamsError("plant references", f"no reference audio for speaker {generation.prompt!r}")
        return blend(generation.audio, references[generation.prompt], self.weight)

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
        raise ParamsError("plant audio", f"needs two one-channel signals and a non-empty reference, got shapes "
                                         f"{samples.shape} and {source.shape}")
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
    """The size of a plant, measured on the audio: SECS units (cosine similarity, [-2, 2] for a
    difference).

    Attributes:
        mean: across units, the per-unit mean of SECS(planted) - SECS(unplanted) over the
            generations the plant changed: the "known planted size".
        per_unit: unit (speaker name, or ``"seed <n>"`` with one speaker) -> that unit's mean.
        unit: ``"speaker"`` (two or more speakers) or ``"seed"``, as in the study.
        changed: how many generations the plant changed.
        differences: (speaker, cell, seed, text) -> SECS(planted) - SECS(unplanted).
    """

    mean: float
    per_unit: dict[str, float]
    unit: str
    changed: int
    differences: dict[tuple[str, str, int, str], float] = field(default_factory=dict)


def planted_size(runs: MatrixRun | Sequence[MatrixRun], plant: IdentityPlant, *, device: str = "cpu",
                 references: Mapping[str, np.ndarray] | None = None) -> PlantedSize:
    """Measure how far ``plant`` moves SECS, with no statistics code: each changed generation is
    embedded with and without the plant and scored against its speaker's reference audio (the
    prompt decoded by the run's codec, as the study scores); the differences are averaged per
    unit and then across units.

    ``references`` (optional): speaker name -> reference audio already decoded for these runs
    (as :func:`~bark_ablation.study.analysis.score_runs` returns it), to decode each prompt once.

    Raises :class:`ParamsError` when the plant changes no generation of ``runs``.
    """
    runs = [runs] if isinstance(runs, MatrixRun) else list(runs)
    speakers = list(dict.fromkeys(run.prompt.name for run in runs))
    unit = "speaker" if len(speakers) >= 2 else "seed"
    given = dict(references or {})
    references = {}
    reference_embeddings: dict[str, np.ndarray] = {}
    by_unit: dict[str, list[float]] = {}
    differences: dict[tuple[str, str, int, str], float] = {}
    for run in runs:
        name = run.prompt.name
        if name not in references:
            references[name] = given[name] if name in given else prompt_reference_audio(run.prompt, run.model_set)
            reference_embeddings[name] = embed(references[name], SAMPLE_RATE, source=f"prompt {name!r} (decoded)",
                                               device=device)
        for generation in run.generations:
            if not plant.applies_to(generation):
                continue
            planted = plant(generation, references)
            before = secs(reference_embeddings[name], embed(generation.audio, generation.sample_rate,
                                                            source=generation.label, device=device))
            after = secs(reference_embeddings[name], embed(planted, generation.sample_rate,
                                                           source=f"{generation.label} (planted)", device=device))
            key = name if unit == "speaker" else f"seed {generation.seed}"
            by_unit.setdefault(key, []).append(after - before)
            differences[(name, generation.conditioning.id, generation.seed, run.text)] = after - before
    if not differences:
        raise ParamsError("plant stage", f"{plant.stage.value!r}: no generation of the runs received that stage's "
                                         f"history from its own speaker, so the plant changes nothing")
    per_unit = {key: float(np.mean(values)) for key, values in by_unit.items()}
    return PlantedSize(float(np.mean(list(per_unit.values()))), per_unit, unit, len(differences), differences)
