"""Regression checks on generations, usable from any test suite (ours, or a fork's).

Each check raises :class:`CheckFailure` (an ``AssertionError``, so pytest reports it as a
failure) with a message that says what was compared, where it first differs and by how much.
Every check has a test that feeds it a known-bad input and shows that it fails.
"""

from __future__ import annotations

import numpy as np

from bark_ablation.core.conditioning import TOKEN_STAGE_NAMES
from bark_ablation.core.prompts import (
    COARSE_RATE_HZ,
    CODEBOOK_SIZE,
    N_COARSE_CODEBOOKS,
    N_FINE_CODEBOOKS,
    SEMANTIC_RATE_HZ,
    SEMANTIC_VOCAB_SIZE,
)

SAMPLES_PER_FRAME = 320
"""24 kHz audio samples per 75 Hz coarse/fine frame."""
FRAME_S = 1 / COARSE_RATE_HZ
"""One coarse frame, in seconds (13.3 ms): the tolerance of the duration check."""


class CheckFailure(AssertionError):
    """A regression check failed; the message says what drifted."""


def check_shapes(generation) -> None:
    """Dtypes and shapes of every stage.

    semantic: integer, (T_s,); coarse: integer, (2, T_c); fine: integer, (8, T_c);
    audio: float32, (T_c * 320,). T_s and T_c are > 0.
    """
    g = generation
    _integer("semantic", g.semantic)
    _integer("coarse", g.coarse)
    _integer("fine", g.fine)
    if g.semantic.ndim != 1 or g.semantic.shape[0] == 0:
        raise CheckFailure(f"semantic: expected shape (T_s > 0,), got {g.semantic.shape}")
    if g.coarse.ndim != 2 or g.coarse.shape[0] != N_COARSE_CODEBOOKS or g.coarse.shape[1] == 0:
        raise CheckFailure(f"coarse: expected shape ({N_COARSE_CODEBOOKS}, T_c > 0), got {g.coarse.shape}")
    if g.fine.shape != (N_FINE_CODEBOOKS, g.coarse.shape[1]):
        raise CheckFailure(
            f"fine: expected shape ({N_FINE_CODEBOOKS}, {g.coarse.shape[1]}) to match coarse, got {g.fine.shape}"
        )
    if g.audio.dtype != np.float32:
        raise CheckFailure(f"audio: expected dtype float32, got {g.audio.dtype}")
    expected = (g.coarse.shape[1] * SAMPLES_PER_FRAME,)
    if g.audio.shape != expected:
        raise CheckFailure(f"audio: expected shape {expected} (320 samples per frame), got {g.audio.shape}")
    if not np.isfinite(g.audio).all():
        raise CheckFailure(f"audio: {int((~np.isfinite(g.audio)).sum())} non-finite samples")


def check_token_ranges(generation) -> None:
    """Semantic tokens in [0, 10_000); coarse and fine codes in [0, 1024); fine rows 0-1 equal
    the coarse codes they were generated from."""
    _in_range("semantic", generation.semantic, SEMANTIC_VOCAB_SIZE)
    _in_range("coarse", generation.coarse, CODEBOOK_SIZE)
    _in_range("fine", generation.fine, CODEBOOK_SIZE)
    # Bark returns coarse codes as int64 and fine codes as int32: compare values only.
    assert_tokens_equal(
        generation.coarse,
        generation.fine[:N_COARSE_CODEBOOKS],
        "fine rows 0-1 vs the coarse codes",
        compare_dtype=False,
    )


def check_no_padding(fine: np.ndarray, *, padding: int = CODEBOOK_SIZE) -> None:
    """No code of the fine output, shape (8, T_c), still holds the value the fine stage pads its
    unwritten codebooks with (1024 in Bark): every frame was written by the model. The message
    names the first such frame and codebook and counts them all."""
    fine = np.asarray(fine)
    left = fine == padding
    if left.any():
        frames = np.flatnonzero(left.any(axis=0))
        codebook = int(np.argmax(left[:, frames[0]]))
        raise CheckFailure(
            f"fine: {int(left.sum())} code(s) in {frames.size} frame(s) still hold the padding value "
            f"{padding}; first at frame {int(frames[0])} ({frames[0] / COARSE_RATE_HZ:.3f} s), "
            f"codebook {codebook}"
        )


def check_durations(generation, *, tolerance_s: float = FRAME_S) -> None:
    """Semantic tokens / 49.9 Hz, coarse frames / 75 Hz and samples / 24 kHz agree within
    ``tolerance_s`` seconds (default: one coarse frame, 13.3 ms)."""
    g = generation
    durations = {
        "semantic": g.semantic.shape[-1] / SEMANTIC_RATE_HZ,
        "coarse": g.coarse.shape[-1] / COARSE_RATE_HZ,
        "fine": g.fine.shape[-1] / COARSE_RATE_HZ,
        "audio": g.audio.shape[-1] / g.sample_rate,
    }
    spread = max(durations.values()) - min(durations.values())
    if spread > tolerance_s:
        table = ", ".join(f"{k} {v:.4f} s" for k, v in durations.items())
        raise CheckFailure(
            f"durations disagree by {spread * 1000:.1f} ms (tolerance {tolerance_s * 1000:.1f} ms): {table}"
        )


def assert_tokens_equal(expected: np.ndarray, obtained: np.ndarray, what: str, *, compare_dtype: bool = True) -> None:
    """Exact equality of two token arrays (shape, values and, unless ``compare_dtype`` is
    false, dtype); the message locates the first difference and counts all of them."""
    expected, obtained = np.asarray(expected), np.asarray(obtained)
    if expected.shape != obtained.shape:
        raise CheckFailure(f"{what}: shape {obtained.shape} != expected {expected.shape}")
    if compare_dtype and expected.dtype != obtained.dtype:
        raise CheckFailure(f"{what}: dtype {obtained.dtype} != expected {expected.dtype}")
    differ = expected != obtained
    if differ.any():
        first = tuple(int(i) for i in np.argwhere(differ)[0])
        raise CheckFailure(
            f"{what}: {int(differ.sum())} of {differ.size} tokens differ "
            f"({differ.mean():.1%}); first at index {first}: expected {expected[first]}, "
            f"got {obtained[first]}"
        )


def assert_audio_identical(expected: np.ndarray, obtained: np.ndarray, what: str) -> None:
    """Bit-identical audio: same dtype, shape and bytes."""
    if expected.dtype != obtained.dtype or expected.shape != obtained.shape:
        raise CheckFailure(f"{what}: {obtained.dtype}{obtained.shape} != expected {expected.dtype}{expected.shape}")
    if expected.tobytes() != obtained.tobytes():
        differ = expected != obtained
        raise CheckFailure(
            f"{what}: {int(differ.sum())} of {differ.size} samples differ, max |difference| "
            f"{float(np.max(np.abs(expected.astype(np.float64) - obtained))):.3g}"
        )


def assert_same_generation(expected, obtained) -> None:
    """Determinism: identical tokens in every stage and bit-identical audio."""
    label = f"{obtained.cell} seed {obtained.seed}"
    for stage in TOKEN_STAGE_NAMES:
        assert_tokens_equal(getattr(expected, stage), getattr(obtained, stage), f"{label}: {stage}")
    assert_audio_identical(expected.audio, obtained.audio, f"{label}: audio")


def assert_differs(first: np.ndarray, second: np.ndarray, what: str) -> float:
    """The two arrays differ somewhere; returns the fraction of differing elements (arrays of
    different shapes count as entirely different)."""
    first, second = np.asarray(first), np.asarray(second)
    if first.shape != second.shape:
        return 1.0
    fraction = float(np.mean(first != second))
    if fraction == 0.0:
        raise CheckFailure(f"{what}: expected a difference, got identical arrays of shape {first.shape}")
    return fraction


def _integer(name: str, array: np.ndarray) -> None:
    if not np.issubdtype(array.dtype, np.integer):
        raise CheckFailure(f"{name}: expected an integer dtype, got {array.dtype}")


def _in_range(name: str, array: np.ndarray, upper: int) -> None:
    low, high = int(array.min()), int(array.max())
    if low < 0 or high >= upper:
        bad = int(((array < 0) | (array >= upper)).sum())
        raise CheckFailure(f"{name}: {bad} tokens outside [0, {upper}); values span [{low}, {high}]")
