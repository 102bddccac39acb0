"""WAV files of generated audio."""

from __future__ import annotations

from pathlib import Path
from typing import BinaryIO

import numpy as np
from scipy.io import wavfile


def write_wav(path: Path | BinaryIO, audio: np.ndarray, sample_rate: int) -> None:
    """Write ``audio`` (samples, full scale 1.0) at ``sample_rate`` Hz as float32 mono PCM
    (lossless for Bark's float32 output) to a path or binary stream."""
    wavfile.write(path, sample_rate, np.asarray(audio, dtype=np.float32))
