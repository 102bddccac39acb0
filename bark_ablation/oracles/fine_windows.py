"""The window layout of Bark's fine stage, computed from its stated rule, and checks against it.

Bark's fine model is non-causal and reads 1024 frames at a time, so ``generate_fine`` works on
one input array and slides a window over it:

* the input holds ``H`` history frames (the last at most 512 frames of the prompt's fine codes;
  ``H = 0`` without a fine history), then the ``T`` coarse frames, whose codebooks 2-7 hold the
  padding value 1024, then padding frames up to 1024 frames in all when ``H + T < 1024``;
* it runs ``max(0, ceil((T - (1024 - H)) / 512)) + 1`` windows; window ``k`` reads input frames
  ``[start, start + 1024)`` with ``start = min(512 k, L - 1024)`` (``L``: input frames) and
  writes codebooks 2-7 of frames ``[fill_start, start + 1024)`` with
  ``fill_start = min(H + 512 k, L - 512)``; a later window overwrites what an earlier one wrote;
* the output is input frames ``[H, H + T)``.

Nothing here calls or copies Bark's code: the layout is computed from the rule above, so a test
can hold what Bark actually did (observed with hooks) against it. Positions are frames at 75 Hz.
"Input frames" index the model's input array (history first); "output frames" index the fine
codes returned (input frame minus ``H``). Ranges are half-open ``[lo, hi)``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from bark_ablation.core.checks import CheckFailure

WINDOW_FRAMES = 1024
"""Frames the fine model reads per window (its block size)."""
STRIDE_FRAMES = 512
"""Frames between the starts of consecutive windows (also the offset of each window's fill)."""
MAX_HISTORY_FRAMES = 512
"""At most this many frames of the prompt's fine codes precede the coarse frames."""
N_GIVEN_CODEBOOKS = 2
"""Codebooks 0-1 come from the coarse stage; the fine stage writes codebooks 2-7."""
N_CODEBOOKS = 8
PADDING = 1024
"""Value of the codebooks still to be written (Bark's ``CODEBOOK_SIZE``)."""


@dataclass(frozen=True)
class FineWindow:
    """One window of the fine stage, in input frames.

    Attributes:
        index: 0 for the first window.
        start: first input frame the model reads.
        fill_start: first input frame whose codebooks 2-7 it writes.
        stop: one past the last input frame it reads and writes (``start + window``).
    """

    index: int
    start: int
    fill_start: int
    stop: int


@dataclass(frozen=True)
class FineWindowLayout:
    """Where each window of the fine stage reads and writes, for one coarse and history length.

    Attributes:
        coarse_frames: ``T``, coarse (and output) frames.
        history_frames: ``H``, fine history frames before them in the input.
        input_frames: ``L = max(H + T, window)``, frames of the model's input array.
        window_frames, stride_frames: the rule's constants (1024 and 512 in Bark).
        windows: the windows, in the order they run.
    """

    coarse_frames: int
    history_frames: int
    input_frames: int
    window_frames: int
    stride_frames: int
    windows: tuple[FineWindow, ...]

    def output_fill(self, window: FineWindow) -> tuple[int, int]:
        """Output frames ``[lo, hi)`` whose codebooks 2-7 ``window`` writes (clipped to ``[0, T)``;
        frames of the end padding are not output)."""
        lo = window.fill_start - self.history_frames
        hi = min(window.stop - self.history_frames, self.coarse_frames)
        return max(lo, 0), max(hi, 0)

    def final_writer(self) -> np.ndarray:
        """Index of the window whose write of each output frame is the last, shape (T,);
        -1 for a frame no window writes."""
        writer = np.full(self.coarse_frames, -1, dtype=np.int64)
        for window in self.windows:
            lo, hi = self.output_fill(window)
            writer[lo:hi] = window.index
        return writer

    def spans(self) -> tuple[tuple[int, int, int], ...]:
        """``(window index, lo, hi)`` for each run of output frames with the same final writer."""
        writer = self.final_writer()
        cuts = [0, *(np.flatnonzero(np.diff(writer)) + 1).tolist(), self.coarse_frames]
        return tuple((int(writer[lo]), lo, hi) for lo, hi in zip(cuts[:-1], cuts[1:]) if hi > lo)

    @property
    def boundaries(self) -> tuple[int, ...]:
        """Output frames where the final writer changes: the first frame of every span but the
        first. A window boundary in this sense is where one window's output hands over to the
        next one's."""
        return tuple(lo for _, lo, _ in self.spans()[1:])

    def windows_reading(self, output_frame: int) -> tuple[int, ...]:
        """Indices of the windows whose input includes ``output_frame``."""
        frame = output_frame + self.history_frames
        return tuple(w.index for w in self.windows if w.start <= frame < w.stop)

    def describe(self) -> str:
        """One line: T, H, and each window's read and (output) write ranges."""
        parts = []
        for window in self.windows:
            lo, hi = self.output_fill(window)
            parts.append(
                f"window {window.index}: reads input {window.start}-{window.stop - 1}, writes output {lo}-{hi - 1}"
            )
        return (
            f"T = {self.coarse_frames} frames, H = {self.history_frames} history frames, "
            f"{len(self.windows)} windows ({'; '.join(parts)})"
        )


def fine_history_frames(prompt_fine_frames: int | None, *, max_history: int = MAX_HISTORY_FRAMES) -> int:
    """Frames of fine history the fine stage prepends: ``min(max_history, frames of the prompt's
    fine codes)``, 0 without a fine history (``None``)."""
    return 0 if prompt_fine_frames is None else min(max_history, int(prompt_fine_frames))


def fine_window_layout(
    coarse_frames: int, history_frames: int, *, window_frames: int = WINDOW_FRAMES, stride_frames: int = STRIDE_FRAMES
) -> FineWindowLayout:
    """The layout of Bark's fine stage for ``coarse_frames`` (T > 0) and ``history_frames``
    (H >= 0, already capped at 512), from the rule in the module docstring. ``window_frames`` and
    ``stride_frames`` exist so that a test can build a wrong layout (stride 511 or 513) and show
    that the checks notice."""
    if coarse_frames <= 0 or history_frames < 0:
        raise ValueError(f"need coarse_frames > 0 and history_frames >= 0, got {coarse_frames}, {history_frames}")
    t, h, w, s = coarse_frames, history_frames, window_frames, stride_frames
    n_input = max(h + t, w)
    n_windows = max(0, math.ceil((t - (w - h)) / s)) + 1
    windows = tuple(
        FineWindow(k, start, min(h + k * s, n_input - s), start + w)
        for k, start in ((k, min(k * s, n_input - w)) for k in range(n_windows))
    )
    return FineWindowLayout(t, h, n_input, w, s, windows)


def check_rows_match_coarse(coarse: np.ndarray, fine: np.ndarray, layout: FineWindowLayout) -> None:
    """Fine codebooks 0-1 equal the coarse codes, checked span by span between window
    boundaries, so that a failure names the boundary and the first differing frame.

    ``coarse``: (2, T); ``fine``: (8, T) or longer/shorter (a length mismatch fails first).
    """
    coarse, fine = np.asarray(coarse), np.asarray(fine)
    if fine.ndim != 2 or fine.shape[1] != coarse.shape[1] or fine.shape[0] < N_GIVEN_CODEBOOKS:
        raise CheckFailure(
            f"fine codes: shape {fine.shape}, expected ({N_CODEBOOKS}, {coarse.shape[1]}) to match the coarse codes"
        )
    for index, lo, hi in layout.spans():
        differ = np.asarray(fine[:N_GIVEN_CODEBOOKS, lo:hi] != coarse[:, lo:hi]).any(axis=0)
        if differ.any():
            frame = lo + int(np.argmax(differ))
            codebook = int(np.argmax(fine[:N_GIVEN_CODEBOOKS, frame] != coarse[:, frame]))
            where = f"after the window boundary at output frame {lo}" if lo > 0 else "before the first window boundary"
            raise CheckFailure(
                f"fine rows 0-1 differ from the coarse codes {where} (window {index} has the last word "
                f"on output frames {lo}-{hi - 1}): first differing frame {frame} (codebook {codebook}: "
                f"coarse {int(coarse[codebook, frame])}, fine {int(fine[codebook, frame])}); "
                f"{int(differ.sum())} frame(s) differ in that span"
            )


@dataclass(frozen=True)
class ObservedWindow:
    """What one window of a real fine-stage call did, as seen by hooks.

    Attributes:
        start: first input frame of the buffer the model read.
        codebooks: the codebooks predicted, in call order (2-7 for Bark).
        written: codebook -> sorted input frames written into that codebook during this window.
    """

    start: int
    codebooks: tuple[int, ...]
    written: Mapping[int, np.ndarray]


def check_window_writes(layout: FineWindowLayout, observed: Sequence[ObservedWindow]) -> None:
    """What the fine stage did, window by window, is what ``layout`` says: as many windows, each
    reading from the layout's start and writing exactly the layout's fill range in each of
    codebooks 2-7; and together the last writes cover every output frame. The message names the
    window, the codebook and the first frame that disagrees (input and output frames)."""
    h = layout.history_frames
    if len(observed) != len(layout.windows):
        raise CheckFailure(
            f"fine stage ran {len(observed)} windows, the layout has {len(layout.windows)}: {layout.describe()}"
        )
    expected_codebooks = tuple(range(N_GIVEN_CODEBOOKS, N_CODEBOOKS))
    for window, seen in zip(layout.windows, observed):
        if seen.start != window.start:
            raise CheckFailure(
                f"window {window.index} read from input frame {seen.start} (output frame "
                f"{seen.start - h}); the layout says {window.start} (output frame "
                f"{window.start - h}): {layout.describe()}"
            )
        if tuple(seen.codebooks) != expected_codebooks:
            raise CheckFailure(
                f"window {window.index} predicted codebooks {tuple(seen.codebooks)}, expected {expected_codebooks}"
            )
        expected = np.arange(window.fill_start, window.stop)
        for codebook in expected_codebooks:
            got = np.unique(np.asarray(seen.written.get(codebook, ()), dtype=np.int64))
            if np.array_equal(got, expected):
                continue
            missing = np.setdiff1d(expected, got)
            extra = np.setdiff1d(got, expected)
            first = min([*missing[:1].tolist(), *extra[:1].tolist()])
            kind = "did not write" if first in set(missing[:1].tolist()) else "wrote"
            raise CheckFailure(
                f"window {window.index}, codebook {codebook}: {kind} input frame {first} (output frame "
                f"{first - h}); the layout has it write input frames {window.fill_start}-{window.stop - 1} "
                f"(output {window.fill_start - h}-{window.stop - 1 - h}); {len(missing)} frame(s) missing, "
                f"{len(extra)} extra"
            )
    written = np.zeros(layout.coarse_frames, dtype=bool)
    for seen in observed:
        for frames in seen.written.values():
            frames = np.asarray(frames, dtype=np.int64) - h
            written[frames[(frames >= 0) & (frames < layout.coarse_frames)]] = True
    if not written.all():
        gap = np.flatnonzero(~written)
        raise CheckFailure(f"{gap.size} output frame(s) never written by any window, first {int(gap[0])}")


def change_reach(before: np.ndarray, after: np.ndarray, frame: int) -> tuple[np.ndarray, int]:
    """Output frames where codebooks 2-7 of two fine arrays (8, T) differ, and the largest
    distance in frames from ``frame`` to one of them (-1 when none differ)."""
    differ = np.flatnonzero(np.asarray(before[N_GIVEN_CODEBOOKS:] != after[N_GIVEN_CODEBOOKS:]).any(axis=0))
    reach = int(np.abs(differ - frame).max()) if differ.size else -1
    return differ, reach
