"""Speaker similarity: SECS, the cosine similarity of speaker embeddings; by default Resemblyzer's
(GE2E), other encoders by name (:mod:`bark_ablation.study.speaker_encoders`).

Resemblyzer ships its encoder weights inside the wheel, so the default works offline. Audio is
checked here (one channel, finite, not silent, long enough), then each encoder prepares it as it
needs (Resemblyzer: 16 kHz, volume-normalised, long silences stripped); an embedding is a
unit-norm vector (256 floats for Resemblyzer), so SECS is their dot product, in [-1, 1] (in
practice 0.5 .. 1; same-speaker pairs usually score above 0.8, which is why the suite calibrates
it on known voices instead of trusting a threshold).

A voice prompt's reference audio is the prompt itself, its fine codes decoded by the model
set's codec (:func:`prompt_reference_audio`), as the seed notebook did.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np

from bark_ablation.core.errors import ValidationError
from bark_ablation.core.implementation import ModelSet
from bark_ablation.core.prompts import VoicePrompt
from bark_ablation.implementations.registry import activated
from bark_ablation.study.speaker_encoders import DEFAULT_ENCODER, MIN_SPEECH_S, get_encoder

SILENCE_DBFS = -60.0
"""RMS level (dB re full scale) below which audio counts as silent."""


class AudioError(ValidationError):
    """Audio that cannot be scored: unreadable, empty, silent, or too short."""

    def __init__(self, source: str, rule: str):
        super().__init__(f"audio {source}", "samples", rule)


def load_audio(path: Path | str) -> tuple[np.ndarray, int]:
    """Read an audio file (WAV, FLAC, OGG: what soundfile reads) as float32 mono; ``(samples, Hz)``."""
    import soundfile

    try:
        audio, sample_rate = soundfile.read(str(path), dtype="float32", always_2d=True)
    except (OSError, RuntimeError, soundfile.LibsndfileError) as error:
        raise AudioError(str(path), f"unreadable ({error})") from None
    return audio.mean(axis=1, dtype=np.float32), int(sample_rate)


def embed(
    audio: np.ndarray,
    sample_rate: int,
    *,
    source: str = "array",
    device: str = "cpu",
    encoder: str = DEFAULT_ENCODER,
    allow_download: bool = False,
) -> np.ndarray:
    """Unit-norm speaker embedding of ``audio`` (samples at ``sample_rate`` Hz) by ``encoder``
    (:mod:`~bark_ablation.study.speaker_encoders`: ``resemblyzer``, 256 floats, by default).

    Raises :class:`AudioError` when the audio is empty, non-finite, silent (below
    :data:`SILENCE_DBFS`) or shorter than :data:`MIN_SPEECH_S`.
    """
    samples = np.asarray(audio, dtype=np.float32)
    if samples.ndim != 1 or samples.size == 0:
        raise AudioError(source, f"must be one non-empty channel, got shape {samples.shape}")
    if not np.all(np.isfinite(samples)):
        raise AudioError(source, "contains NaN or infinite samples")
    level = 20 * np.log10(max(float(np.sqrt(np.mean(samples.astype(np.float64) ** 2))), 1e-12))
    if level < SILENCE_DBFS:
        raise AudioError(source, f"is silent (RMS {level:.0f} dBFS < {SILENCE_DBFS:.0f} dBFS)")
    if samples.size < MIN_SPEECH_S * sample_rate:
        raise AudioError(source, f"is {samples.size / sample_rate:.2f} s long; needs at least {MIN_SPEECH_S} s")
    return get_encoder(encoder, device, allow_download=allow_download).embed(samples, sample_rate)


def cached_embedding(
    cache: dict[bytes, np.ndarray],
    audio: np.ndarray,
    sample_rate: int,
    *,
    source: str,
    device: str = "cpu",
    encoder: str = DEFAULT_ENCODER,
) -> np.ndarray:
    """:func:`embed`, remembered in ``cache`` (a dict the caller keeps) under a digest of the
    samples, the rate, the device and the encoder: audio already embedded is not embedded again."""
    samples = np.ascontiguousarray(audio, dtype=np.float32)
    key = hashlib.blake2b(
        samples.tobytes() + sample_rate.to_bytes(4, "little") + f"{device}|{encoder}".encode(), digest_size=16
    ).digest()
    if key not in cache:
        cache[key] = embed(samples, sample_rate, source=source, device=device, encoder=encoder)
    return cache[key]


def secs(reference: np.ndarray, other: np.ndarray) -> float:
    """Cosine similarity of two embeddings (both unit norm from :func:`embed`)."""
    return float(np.dot(reference, other) / (np.linalg.norm(reference) * np.linalg.norm(other)))


def score_files(
    reference: Path | str,
    others: list[Path | str],
    *,
    device: str = "cpu",
    encoder: str = DEFAULT_ENCODER,
    allow_download: bool = False,
) -> list[float]:
    """SECS of each file in ``others`` against ``reference``, embedded by ``encoder``."""
    options = {"device": device, "encoder": encoder, "allow_download": allow_download}
    reference_embedding = embed(*load_audio(reference), source=str(reference), **options)
    return [secs(reference_embedding, embed(*load_audio(path), source=str(path), **options)) for path in others]


def prompt_reference_audio(prompt: VoicePrompt, model_set: ModelSet) -> np.ndarray:
    """The prompt's fine codes decoded by ``model_set``'s codec: float32 at 24 kHz."""
    with activated(model_set) as runner:
        return runner.decode(np.asarray(prompt.fine, dtype=np.int64))
