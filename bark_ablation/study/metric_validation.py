"""Validation of the speaker-similarity metric on known voices.

A panel of distinct synthetic voices (Debian's ``espeak-ng``: different accents crossed with
different voice variants) each reads the same sentences; same-voice pairs must score above
different-voice pairs. The figure of merit is the AUC of same- vs different-voice SECS
(1.0: every same-voice pair above every different-voice pair; 0.5: chance).
"""

from __future__ import annotations

import itertools
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from bark_ablation.study.similarity import embed, load_audio, secs
from bark_ablation.study.speaker_encoders import DEFAULT_ENCODER
from bark_ablation.study.statistics import auc

PANEL_VOICES = (
    "en-us+m1",
    "en-gb-scotland+f2",
    "en+croak",
    "en-029+m3",
    "en-us+f4",
    "en+klatt3",
    "en+grandma",
    "en+Andy",
)
"""espeak-ng voices: accent + variant. Chosen to differ in accent, sex and timbre."""
PANEL_SENTENCES = (
    "The quick brown fox jumps over the lazy dog.",
    "When I was a young boy, my father took me into the city.",
    "She sells sea shells by the sea shore every morning.",
    "Please call Stella and ask her to bring these things with her from the store.",
)
MIN_AUC = 0.95


@dataclass(frozen=True)
class MetricValidation:
    """Same- vs different-voice SECS over a panel."""

    auc: float
    same_mean: float
    different_mean: float
    n_same: int
    n_different: int

    def to_dict(self) -> dict:
        return dict(self.__dict__)


def espeak_available() -> str | None:
    """Path of ``espeak-ng``, or None."""
    return shutil.which("espeak-ng")


def synthesize_panel(directory: Path, voices=PANEL_VOICES, sentences=PANEL_SENTENCES) -> dict[tuple[str, int], Path]:
    """WAV per (voice, sentence index), written by espeak-ng into ``directory``."""
    executable = espeak_available()
    if executable is None:
        raise RuntimeError("espeak-ng not found (Debian package espeak-ng)")
    paths = {}
    for voice in voices:
        for index, sentence in enumerate(sentences):
            path = Path(directory) / f"{voice.replace('+', '_')}_{index}.wav"
            subprocess.run([executable, "-v", voice, "-w", str(path), sentence], check=True, capture_output=True)
            paths[(voice, index)] = path
    return paths


def validate(embeddings: dict[tuple[str, int], np.ndarray]) -> MetricValidation:
    """AUC and means of same- vs different-speaker pair scores; keys are (speaker, utterance)."""
    same, different = [], []
    for a, b in itertools.combinations(sorted(embeddings), 2):
        (same if a[0] == b[0] else different).append(secs(embeddings[a], embeddings[b]))
    return MetricValidation(
        auc(same, different), float(np.mean(same)), float(np.mean(different)), len(same), len(different)
    )


def validate_on_panel(
    directory: Path, voices=PANEL_VOICES, sentences=PANEL_SENTENCES, *, encoder: str = DEFAULT_ENCODER
) -> MetricValidation:
    """Synthesize the panel into ``directory``, embed every file with ``encoder``, and :func:`validate`."""
    paths = synthesize_panel(directory, voices, sentences)
    return validate({key: embed(*load_audio(path), source=str(path), encoder=encoder) for key, path in paths.items()})
