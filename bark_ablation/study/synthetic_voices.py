"""Distinct synthetic voices, for validating the study where no model carries identity.

The tiny model set's audio is noise-like and its decoded prompts all sound alike to the speaker
encoder (SECS 0.99 between any two), so an identity effect planted from them is no identity at
all. A :class:`SyntheticVoice` is a source-filter vowel chain: a glottal pulse train at the
voice's own pitch (with vibrato and a per-segment intonation step) through four formant
resonators whose frequencies are scaled by the voice's vocal-tract factor, one vowel every
120-250 ms. Voices differ in pitch and vocal tract, as speakers do; utterances of one voice
differ in their vowel sequence and intonation, as sentences do.

Written here because none of the project's libraries synthesises voiced sound (librosa offers
tones and chirps; espeak-ng, which :mod:`bark_ablation.study.metric_validation` uses, is an
optional system package). Deterministic: every random choice comes from a numpy ``Generator``
seeded by (voice, utterance).

What the voices give the speaker encoder (Resemblyzer): same-voice pairs score higher than
different-voice pairs on the whole, though the closest pair (bass and baritone) overlap and the
espeak-ng panel separates better; blended into the tiny set's output, a voice raises SECS against
another utterance of itself more than :func:`voiceless` noise does (measured:
docs/measurements.md#synthetic-voice-secs). Enough for a planted effect to be an effect of
identity; not a substitute for real voices.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import signal

SAMPLE_RATE = 24_000
"""Hz, Bark's output rate."""

VOWEL_FORMANTS_HZ: dict[str, tuple[float, float, float, float]] = {
    "a": (730, 1090, 2440, 3400),
    "i": (270, 2290, 3010, 3700),
    "u": (300, 870, 2240, 3300),
    "e": (530, 1840, 2480, 3500),
    "o": (570, 840, 2410, 3400),
    "ae": (660, 1720, 2410, 3500),
}
"""F1-F4 of six vowels for an adult male vocal tract (Peterson & Barney), Hz."""
FORMANT_BANDWIDTHS_HZ = (80.0, 100.0, 140.0, 200.0)
SEGMENT_S = (0.12, 0.25)
"""Shortest and longest vowel, seconds."""


@dataclass(frozen=True)
class SyntheticVoice:
    """A voice: ``f0_hz`` its mean pitch (Hz), ``tract_scale`` its formant frequencies relative
    to :data:`VOWEL_FORMANTS_HZ` (a shorter vocal tract: above 1)."""

    name: str
    f0_hz: float
    tract_scale: float
    source_tilt: float = 0.97
    """Pole of the glottal source's one-pole low-pass (closer to 1: a darker, softer voice)."""
    breath: float = 0.02
    """Aspiration noise, relative to the pulse train's amplitude."""

    def utterance(self, index: int, *, seconds: float = 2.0, sample_rate: int = SAMPLE_RATE) -> np.ndarray:
        """Utterance number ``index`` (its own vowel sequence and intonation): float32 samples
        at ``sample_rate`` Hz, ``seconds`` long, peak 0.5."""
        rng = np.random.default_rng([_stable_id(self.name), index])
        total = int(round(seconds * sample_rate))
        pieces = []
        produced = 0
        vowels = list(VOWEL_FORMANTS_HZ)
        while produced < total:
            length = min(int(rng.uniform(*SEGMENT_S) * sample_rate), total - produced)
            formants = np.asarray(VOWEL_FORMANTS_HZ[vowels[rng.integers(len(vowels))]]) * self.tract_scale
            pieces.append(self._vowel(length, formants, self.f0_hz * rng.uniform(0.9, 1.12), rng, sample_rate))
            produced += length
        audio = np.concatenate(pieces)
        return (0.5 * audio / max(float(np.abs(audio).max()), 1e-9)).astype(np.float32)

    def _vowel(
        self, length: int, formants: np.ndarray, pitch_hz: float, rng: np.random.Generator, sample_rate: int
    ) -> np.ndarray:
        time_s = np.arange(length) / sample_rate
        frequency = pitch_hz * (1 + 0.05 * np.sin(2 * np.pi * 5.0 * time_s))  # 5 Hz vibrato, +-5 %
        cycles = np.cumsum(frequency) / sample_rate
        pulses = np.diff(np.floor(cycles), prepend=0.0)  # one impulse per glottal cycle
        source = signal.lfilter(
            [1.0 - self.source_tilt], [1.0, -self.source_tilt], pulses
        ) + self.breath * rng.standard_normal(length)
        for centre, bandwidth in zip(formants, FORMANT_BANDWIDTHS_HZ, strict=True):
            radius = np.exp(-np.pi * bandwidth / sample_rate)
            angle = 2 * np.pi * min(centre, 0.45 * sample_rate) / sample_rate
            source = signal.lfilter([1 - radius], [1, -2 * radius * np.cos(angle), radius**2], source)
        return source * np.hanning(length) ** 0.3


def _stable_id(name: str) -> int:
    """A seed from ``name`` that is the same in every process (``hash`` of a str is not)."""
    return int.from_bytes(name.encode("utf-8")[:16].ljust(16, b"\0"), "little")


VOICES: tuple[SyntheticVoice, ...] = (
    SyntheticVoice("bass", 85.0, 0.85, 0.99, 0.01),
    SyntheticVoice("baritone", 110.0, 0.95, 0.97, 0.03),
    SyntheticVoice("tenor", 140.0, 1.05, 0.93, 0.02),
    SyntheticVoice("breathy", 170.0, 1.12, 0.95, 0.15),
    SyntheticVoice("alto", 200.0, 1.2, 0.9, 0.04),
    SyntheticVoice("soprano", 250.0, 1.3, 0.85, 0.02),
    SyntheticVoice("child", 300.0, 1.45, 0.9, 0.05),
)
"""Seven voices spread over pitch (85-300 Hz), vocal-tract scale (0.85-1.45), source tilt and breath."""


def voiceless(seconds: float = 2.0, *, sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """White noise (float32, ``sample_rate`` Hz, RMS 0.1), the same on every call: sound that
    is no one's voice, for the cells a plant gives no speaker."""
    rng = np.random.default_rng(20_241_126)
    return (0.1 * rng.standard_normal(int(round(seconds * sample_rate)))).astype(np.float32)
