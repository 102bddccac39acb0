"""Spectral features of generated audio, computed with librosa: what golden comparisons measure.

Every function is pure: float32/float64 samples ``audio`` (shape ``(n_samples,)``) at
``sample_rate`` Hz in, numbers out. The analysis frame hop is one EnCodec frame
(:data:`HOP_LENGTH` = 320 samples = 13.3 ms at 24 kHz), so one spectrogram column lines up with
one coarse/fine token frame and a single changed token shows up in a column or two.

Scalar features (:func:`spectral_features`), each averaged over frames:

========================  ======  ==========================================================
name                      unit    what
========================  ======  ==========================================================
``duration_s``            s       ``n_samples / sample_rate``
``rms_db``                dB      mean frame RMS energy, ``20 log10(rms)`` re full scale 1.0
``centroid_hz``           Hz      mean spectral centroid
``bandwidth_hz``          Hz      mean spectral bandwidth (2nd order)
``rolloff_hz``            Hz      mean 85 % spectral roll-off frequency
``flatness``              1       mean spectral flatness (0 tonal .. 1 noise)
``mfcc_mean``             dB-ish  per-coefficient mean of 13 MFCCs (vector)
``mfcc_std``              dB-ish  per-coefficient standard deviation of 13 MFCCs (vector)
``voiced_fraction``       1       fraction of frames pYIN calls voiced
``f0_median_hz``          Hz      median f0 over voiced frames (NaN when none is voiced)
========================  ======  ==========================================================

Spectrogram distances (:func:`log_mel_distance`) compare two log-mel spectrograms
(:func:`log_mel_db`) column by column.
"""

from __future__ import annotations

from dataclasses import dataclass

import librosa
import numpy as np

HOP_LENGTH = 320
"""Analysis hop, samples: one EnCodec frame at 24 kHz (75 frames per second)."""
N_FFT = 1024
"""Analysis window, samples (42.7 ms at 24 kHz)."""
N_MELS = 64
"""Mel bands of the log-mel spectrogram."""
N_MFCC = 13
"""MFCC coefficients, including c0."""
AMIN = 1e-10
"""Power floor before taking dB (-100 dB), so silent bins give a finite value."""
F0_MIN_HZ = 65.0
"""Lowest f0 pYIN searches, Hz (C2)."""
F0_MAX_HZ = 1000.0
"""Highest f0 pYIN searches, Hz."""

SCALAR_FEATURES = (
    "duration_s",
    "rms_db",
    "centroid_hz",
    "bandwidth_hz",
    "rolloff_hz",
    "flatness",
    "voiced_fraction",
    "f0_median_hz",
)
VECTOR_FEATURES = ("mfcc_mean", "mfcc_std")


def _stft_kwargs() -> dict:
    return {"n_fft": N_FFT, "hop_length": HOP_LENGTH}


def spectral_features(audio: np.ndarray, sample_rate: int) -> dict[str, float | list[float]]:
    """The scalar and vector features of the module table, JSON-ready (floats and lists).

    Args:
        audio: samples, shape ``(n_samples,)``, nominally in [-1, 1].
        sample_rate: Hz.
    """
    y = np.asarray(audio, dtype=np.float32)
    if y.ndim != 1:
        raise ValueError(f"audio: must be one channel, shape (n_samples,); got shape {y.shape}")
    power = np.abs(librosa.stft(y, **_stft_kwargs())) ** 2
    rms = librosa.feature.rms(S=np.sqrt(power), frame_length=N_FFT)[0]
    mfcc = librosa.feature.mfcc(
        S=librosa.power_to_db(_mel_power(power, sample_rate), ref=1.0, amin=AMIN, top_db=None), n_mfcc=N_MFCC
    )
    f0, voiced, _ = librosa.pyin(
        y, fmin=F0_MIN_HZ, fmax=F0_MAX_HZ, sr=sample_rate, frame_length=2048, hop_length=HOP_LENGTH
    )
    magnitude = np.sqrt(power)
    return {
        "duration_s": y.shape[0] / sample_rate,
        "rms_db": float(np.mean(20 * np.log10(np.maximum(rms, np.sqrt(AMIN))))),
        "centroid_hz": float(np.mean(librosa.feature.spectral_centroid(S=magnitude, sr=sample_rate, n_fft=N_FFT))),
        "bandwidth_hz": float(np.mean(librosa.feature.spectral_bandwidth(S=magnitude, sr=sample_rate, n_fft=N_FFT))),
        "rolloff_hz": float(np.mean(librosa.feature.spectral_rolloff(S=magnitude, sr=sample_rate, n_fft=N_FFT))),
        "flatness": float(np.mean(librosa.feature.spectral_flatness(S=magnitude, amin=AMIN))),
        "mfcc_mean": [float(v) for v in mfcc.mean(axis=1)],
        "mfcc_std": [float(v) for v in mfcc.std(axis=1)],
        "voiced_fraction": float(np.mean(voiced)),
        "f0_median_hz": float(np.median(f0[voiced])) if voiced.any() else float("nan"),
    }


def _mel_power(power: np.ndarray, sample_rate: int) -> np.ndarray:
    return librosa.feature.melspectrogram(S=power, sr=sample_rate, n_mels=N_MELS)


def log_mel_db(audio: np.ndarray, sample_rate: int) -> np.ndarray:
    """Log-mel power spectrogram in dB re 1.0 (no top-dB clipping), shape ``(N_MELS, n_frames)``,
    one frame per :data:`HOP_LENGTH` samples."""
    y = np.asarray(audio, dtype=np.float32)
    power = np.abs(librosa.stft(y, **_stft_kwargs())) ** 2
    return librosa.power_to_db(_mel_power(power, sample_rate), ref=1.0, amin=AMIN, top_db=None)


@dataclass(frozen=True)
class LogMelDistance:
    """How far two log-mel spectrograms are apart, in dB, over their common frames.

    Attributes:
        mean_abs_db: mean |difference| over every band and frame: a global level change.
        max_frame_db: the largest per-frame mean |difference|: a local change (one token).
        worst_frame: index of that frame; times ``HOP_LENGTH / sample_rate`` gives seconds.
        frames_compared: common frames; a length mismatch is the duration check's business.
    """

    mean_abs_db: float
    max_frame_db: float
    worst_frame: int
    frames_compared: int


def log_mel_distance(golden_db: np.ndarray, obtained_db: np.ndarray) -> LogMelDistance:
    """Distance between two :func:`log_mel_db` spectrograms of shape ``(N_MELS, n_frames)``."""
    frames = min(golden_db.shape[1], obtained_db.shape[1])
    if frames == 0:
        return LogMelDistance(float("inf"), float("inf"), 0, 0)
    per_frame = np.mean(np.abs(golden_db[:, :frames] - obtained_db[:, :frames]), axis=0)
    worst = int(np.argmax(per_frame))
    return LogMelDistance(float(per_frame.mean()), float(per_frame[worst]), worst, frames)
