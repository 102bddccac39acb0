"""Figures for people, as PNG (matplotlib, headless Agg backend): drift spectrogram comparisons,
and the study report's SECS chart and per-cell spectrograms, the long-form report's SECS per chunk."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import numpy as np

from bark_ablation.core.conditioning import TOKEN_STAGE_NAMES, Conditioning
from bark_ablation.core.features import HOP_LENGTH, log_mel_db


def _pyplot():
    import matplotlib

    matplotlib.use("Agg", force=False)
    from matplotlib import pyplot

    return pyplot


def _png(figure) -> bytes:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=90)
    return buffer.getvalue()


def save_spectrogram_comparison(
    golden_db: np.ndarray, obtained_db: np.ndarray, sample_rate: int, path: Path, *, title: str = ""
) -> Path:
    """Three stacked log-mel spectrograms, golden / obtained / obtained - golden, as a PNG.

    Args:
        golden_db, obtained_db: :func:`bark_ablation.core.features.log_mel_db` output, shape
            ``(n_mels, n_frames)``; frames beyond the shorter one are left out of the difference.
        sample_rate: Hz, for the time axis (one frame = ``HOP_LENGTH`` samples).
        path: where the PNG goes.
    """
    import librosa.display

    pyplot = _pyplot()
    frames = min(golden_db.shape[1], obtained_db.shape[1])
    difference = obtained_db[:, :frames] - golden_db[:, :frames]
    low = min(golden_db.min(), obtained_db.min())
    high = max(golden_db.max(), obtained_db.max())
    spread = max(float(np.abs(difference).max()), 1e-6)
    figure, axes = pyplot.subplots(3, 1, figsize=(10, 8), sharex=True, constrained_layout=True)
    try:
        panels = (
            (golden_db, "golden", "magma", low, high),
            (obtained_db, "obtained", "magma", low, high),
            (difference, f"obtained - golden (max |diff| {spread:.3g} dB)", "coolwarm", -spread, spread),
        )
        for axis, (data, label, colormap, vmin, vmax) in zip(axes, panels, strict=True):
            image = librosa.display.specshow(
                data,
                sr=sample_rate,
                hop_length=HOP_LENGTH,
                x_axis="time",
                y_axis="mel",
                cmap=colormap,
                vmin=vmin,
                vmax=vmax,
                ax=axis,
            )
            axis.set_title(label)
            figure.colorbar(image, ax=axis, format="%+.2g dB")
        if title:
            figure.suptitle(title)
        figure.savefig(path, dpi=80)
    finally:
        pyplot.close(figure)
    return path


def secs_bar_chart(cells: list[dict[str, Any]], *, title: str) -> bytes:
    """PNG: mean SECS per cell with 95 % CI error bars."""
    pyplot = _pyplot()
    names = [cell["name"] for cell in cells]
    means = np.array([cell["mean"] for cell in cells])
    low = np.array([cell["ci_low"] if cell["ci_low"] is not None else cell["mean"] for cell in cells])
    high = np.array([cell["ci_high"] if cell["ci_high"] is not None else cell["mean"] for cell in cells])
    figure, axis = pyplot.subplots(figsize=(max(6, 0.7 * len(names) + 2), 3.6), constrained_layout=True)
    try:
        colours = ["#4c72b0" if not Conditioning.from_id(name).is_control else "#dd8452" for name in names]
        axis.bar(range(len(names)), means, yerr=[means - low, high - means], capsize=4, color=colours)
        axis.set_xticks(range(len(names)), names, fontfamily="monospace")
        spread = max(float(high.max() - low.min()), 0.02)
        axis.set_ylim(max(float(low.min()) - spread, -1.0), min(float(high.max()) + spread * 0.5, 1.0))
        axis.set_ylabel("SECS vs prompt (mean, 95 % CI)")
        axis.set_title(title)
        axis.grid(axis="y", alpha=0.3)
        return _png(figure)
    finally:
        pyplot.close(figure)


def mel_spectrogram_png(audio: np.ndarray, sample_rate: int, *, title: str) -> bytes:
    """PNG: log-mel spectrogram of ``audio`` (dB re 1.0)."""
    import librosa.display

    pyplot = _pyplot()
    figure, axis = pyplot.subplots(figsize=(5, 2.2), constrained_layout=True)
    try:
        librosa.display.specshow(
            log_mel_db(audio, sample_rate),
            sr=sample_rate,
            hop_length=HOP_LENGTH,
            x_axis="time",
            y_axis="mel",
            cmap="magma",
            ax=axis,
        )
        axis.set_title(title, fontsize=9)
        return _png(figure)
    finally:
        pyplot.close(figure)


def forest_plot(
    per_speaker: dict[str, list[dict[str, Any]]],
    pooled: list[dict[str, Any]],
    *,
    terms: tuple[str, ...] = TOKEN_STAGE_NAMES,
    title: str = "",
) -> bytes:
    """PNG: one panel per main effect; a row per speaker (its effect on SECS with the 95 % CI over
    its texts x seeds) and a pooled row (across speakers), with a line at 0.

    ``per_speaker`` maps a speaker to its factorial-effect dicts (``name``, ``mean``, ``ci_low``,
    ``ci_high``; None bounds are drawn as points); ``pooled`` holds the across-speaker ones.
    """
    pyplot = _pyplot()
    speakers = list(per_speaker)
    rows = [*speakers, "pooled"]
    figure, axes = pyplot.subplots(
        1, len(terms), figsize=(3.6 * len(terms) + 1.5, 0.32 * len(rows) + 1.6), sharey=True, constrained_layout=True
    )
    try:
        for axis, term in zip(np.atleast_1d(axes), terms, strict=True):
            estimates = [next(e for e in per_speaker[s] if e["name"] == term) for s in speakers]
            estimates.append(next(e for e in pooled if e["name"] == term))
            for row, estimate in enumerate(estimates):
                y = len(rows) - 1 - row
                low, high = estimate["ci_low"], estimate["ci_high"]
                pooled_row = row == len(rows) - 1
                colour = "#c44e52" if pooled_row else "#4c72b0"
                if low is not None and high is not None:
                    axis.plot([low, high], [y, y], color=colour, linewidth=2.5 if pooled_row else 1.2)
                axis.plot([estimate["mean"]], [y], marker="D" if pooled_row else "o", color=colour)
            axis.axvline(0.0, color="#555", linewidth=0.8, linestyle="--")
            axis.set_title(f"{term} (main effect)")
            axis.set_xlabel("effect on SECS")
        first = np.atleast_1d(axes)[0]
        first.set_yticks(range(len(rows)), list(reversed(rows)), fontfamily="monospace")
        if title:
            figure.suptitle(title)
        return _png(figure)
    finally:
        pyplot.close(figure)


def chunk_secs_plot(per_chunk: dict[str, list[dict[str, Any]]], *, title: str) -> bytes:
    """PNG: per policy, mean SECS against the prompt at each chunk index (0, 1, ...) with 95 % CI
    error bars (``per_chunk``: policy -> one estimate dict per chunk index, as in ``drift.json``)."""
    pyplot = _pyplot()
    figure, axis = pyplot.subplots(figsize=(7, 3.8), constrained_layout=True)
    try:
        offsets = np.linspace(-0.15, 0.15, max(len(per_chunk), 1))
        for offset, (policy, estimates) in zip(offsets, per_chunk.items(), strict=False):
            chunks = np.arange(len(estimates)) + offset
            means = np.array([e["mean"] for e in estimates])
            low = np.array([e["ci_low"] if e["ci_low"] is not None else e["mean"] for e in estimates])
            high = np.array([e["ci_high"] if e["ci_high"] is not None else e["mean"] for e in estimates])
            axis.errorbar(chunks, means, yerr=[means - low, high - means], capsize=3, marker="o", label=policy)
        longest = max((len(e) for e in per_chunk.values()), default=0)
        axis.set_xticks(range(longest), [str(k) for k in range(longest)])
        axis.set_xlabel("chunk index")
        axis.set_ylabel("SECS vs prompt (mean, 95 % CI)")
        axis.set_title(title)
        axis.grid(alpha=0.3)
        axis.legend(fontsize="small", ncols=2)
        return _png(figure)
    finally:
        pyplot.close(figure)
