"""A planted drift: validating the long-form statistics against a fade of known size.

Real drift arises because each chunk copies its voice from the chunk before it, and a copy of a
copy loses a little more of the speaker every time. :class:`CarryOverFade` plants exactly that
at the audio level: a chunk whose ``stage`` received the previous chunk's history ``d`` chunks
in a row (:attr:`~bark_ablation.longform.generation.ChunkGeneration.carried`, recorded from
what the plan actually ran) has the speaker's voice blended in with ``step * d`` of it replaced
by voiceless noise; a chunk whose stage received the prompt (d = 0) gets the whole voice. The
blend is strong (``weight`` of the RMS), so the model's own audio moves SECS little.

Under ``previous`` (or any policy carrying ``stage`` over) the voice thus fades chunk by chunk;
under ``prompt`` it does not. The size of the plant in SECS units is measured from the scores
alone by :func:`planted_drift` (per run, the slope over chunks of planted minus unplanted SECS,
averaged per unit, then across units), without the statistics code, and must lie in the
policy's drift interval (:func:`check_drift_recovered`).

``follow="policy"`` applies the fade by the depth the policy promises (chunk index where the
policy carries the stage, else 0) instead of the recorded one: the plant as it should land.
Comparing a run planted by its record with the size planted by the policy is what catches a
generation that silently conditions on the prompt where the policy says "previous chunk": its
record shows no carry-over, so no fade, and the recovery check fails. A negative ``step``
plants the voice growing instead of fading (the other known-bad twin).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal

import numpy as np

from bark_ablation.core.checks import CheckFailure
from bark_ablation.core.conditioning import STAGES, Stage
from bark_ablation.core.errors import ParamsError
from bark_ablation.longform.generation import ChunkGeneration
from bark_ablation.longform.identity_drift import PolicyDrift, run_slopes
from bark_ablation.longform.policies import Policy
from bark_ablation.longform.scoring import ChunkScore
from bark_ablation.study.planting import blend, repeated


@dataclass(frozen=True)
class CarryOverFade:
    """Fade the speaker's voice by ``step`` per chunk that ``stage`` carried history over.

    Attributes:
        stage: the stage whose carry-over fades the voice.
        step: fraction of the voice replaced by ``neutral`` per carried chunk, in [-1, 1]
            (negative: the voice grows instead; the fraction is clipped to [0, 1]).
        policy: the only policy the plant touches, by name or id (other policies' chunks are
            scored as they are, repeated to ``scored_duration_s``).
        sources: speaker -> audio of that speaker's voice (24 kHz).
        neutral: the voiceless audio that replaces the voice.
        weight: fraction of the scored audio's RMS that is the planted mix (0, 1].
        base: fraction of the voice replaced at depth 0 (so a negative step has room to grow).
        follow: ``"recorded"`` (the depth the run recorded) or ``"policy"`` (the depth the
            policy promises).
        scored_duration_s: every chunk is repeated to at least this many seconds before scoring.
    """

    stage: Stage
    step: float
    policy: str
    sources: Mapping[str, np.ndarray] = field(compare=False, repr=False)
    neutral: np.ndarray = field(compare=False, repr=False)
    weight: float = 0.95
    base: float = 0.0
    follow: Literal["recorded", "policy"] = "recorded"
    scored_duration_s: float = 2.0

    def __post_init__(self) -> None:
        stage = Stage(self.stage) if isinstance(self.stage, str) and self.stage in {s.value for s in STAGES} else None
        stage = self.stage if self.stage in STAGES else stage
        if stage is None:
            raise ParamsError("plant stage", f"must be one of {', '.join(s.value for s in STAGES)}, got {self.stage!r}")
        object.__setattr__(self, "stage", stage)
        if not -1.0 <= float(self.step) <= 1.0:
            raise ParamsError("plant step", f"must be in [-1, 1] (fraction of the voice per chunk), got {self.step!r}")
        if not 0.0 < float(self.weight) <= 1.0:
            raise ParamsError("plant weight", f"must be in (0, 1], got {self.weight!r}")
        object.__setattr__(self, "policy", Policy.parse(self.policy).name)  # "ppp" and "previous" alike
        if self.follow not in ("recorded", "policy"):
            raise ParamsError("plant follow", f"must be 'recorded' or 'policy', got {self.follow!r}")

    def depth(self, chunk: ChunkGeneration) -> int:
        """Chunks in a row ``stage`` carried history over, ending with ``chunk`` (by :attr:`follow`)."""
        if self.follow == "policy":
            return chunk.chunk if chunk.policy.carries(self.stage) else 0
        return chunk.carried[self.stage.value]

    def faded(self, chunk: ChunkGeneration) -> float:
        """Fraction of the voice replaced by noise in ``chunk``, in [0, 1]."""
        return float(np.clip(self.base + self.step * self.depth(chunk), 0.0, 1.0))

    def __call__(self, chunk: ChunkGeneration, references: Mapping[str, np.ndarray]) -> np.ndarray:
        audio = repeated(chunk.audio, self.scored_duration_s, chunk.sample_rate)
        if chunk.policy.name != self.policy:
            return audio
        if chunk.prompt not in self.sources:
            raise ParamsError("plant sources", f"no voice for speaker {chunk.prompt!r}")
        voice = repeated(self.sources[chunk.prompt], self.scored_duration_s, chunk.sample_rate)
        fade = self.faded(chunk)
        mix = voice if fade == 0 else blend(voice, self.neutral, fade)
        return blend(audio, mix, self.weight)


@dataclass(frozen=True)
class Unfaded:
    """The transform of a run scored like a planted one, with nothing planted: every chunk
    repeated to at least ``scored_duration_s`` seconds."""

    scored_duration_s: float = 2.0

    def __call__(self, chunk: ChunkGeneration, references: Mapping[str, np.ndarray]) -> np.ndarray:
        return repeated(chunk.audio, self.scored_duration_s, chunk.sample_rate)


@dataclass(frozen=True)
class PlantedDrift:
    """The size of a planted drift in SECS per chunk, measured on the scores: per run of the
    planted policy, the slope over chunks of (planted minus unplanted SECS), averaged per unit
    (speaker, or seed with one speaker), then across units (``mean``)."""

    policy: str
    mean: float
    per_unit: dict[str, float]
    unit: str


def planted_drift(unplanted: Sequence[ChunkScore], planted: Sequence[ChunkScore], policy: str) -> PlantedDrift:
    """How far a plant moved ``policy``'s slope, from the same chunks' scores without and with it.

    Raises :class:`ParamsError` when the two score lists do not hold the same chunks, or the
    policy has none.
    """

    def key(score: ChunkScore) -> tuple:
        return score.prompt, score.passage, score.policy, score.seed, score.chunk

    before = {key(s): s for s in unplanted}
    after = {key(s): s for s in planted}
    if before.keys() != after.keys():
        raise ParamsError("planted scores", "must score the same chunks as the unplanted ones")
    differences = [
        ChunkScore(*k, after[k].secs_prompt - before[k].secs_prompt, 0.0, 0.0) for k in before if k[2] == policy
    ]
    if not differences:
        raise ParamsError("plant policy", f"{policy!r}: the scores hold no chunk of that policy")
    speakers = list(dict.fromkeys(s.prompt for s in unplanted))
    unit = "speaker" if len(speakers) >= 2 else "seed"
    per_unit: dict[str, list[float]] = {}
    for (prompt, _, _, seed), (slope, _) in run_slopes(differences).items():
        per_unit.setdefault(prompt if unit == "speaker" else f"seed {seed}", []).append(slope)
    means = {name: float(np.mean(values)) for name, values in per_unit.items()}
    return PlantedDrift(policy, float(np.mean(list(means.values()))), means, unit)


def check_drift_recovered(drift: PolicyDrift, planted: PlantedDrift) -> None:
    """The policy's estimated slope has the planted sign, and its interval covers the planted size.

    Raises :class:`CheckFailure` saying which of the two failed, with both numbers.
    """
    slope = drift.slope
    if drift.policy != planted.policy:
        raise CheckFailure(f"drift of policy {drift.policy!r} checked against a plant in {planted.policy!r}")
    if np.sign(slope.mean) != np.sign(planted.mean):
        raise CheckFailure(
            f"policy {drift.policy!r}: estimated slope {slope.mean:+.4f} SECS/chunk has the wrong sign; "
            f"planted {planted.mean:+.4f}"
        )
    if not slope.ci_low <= planted.mean <= slope.ci_high:
        raise CheckFailure(
            f"policy {drift.policy!r}: planted slope {planted.mean:+.4f} SECS/chunk outside the estimate's "
            f"95 % interval [{slope.ci_low:+.4f}, {slope.ci_high:+.4f}] (mean {slope.mean:+.4f})"
        )
