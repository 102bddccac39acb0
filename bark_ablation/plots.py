"""Figures for people: spectrogram comparisons written as PNG (matplotlib, headless Agg backend)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from bark_ablation.features import HOP_LENGTH


def save_spectrogram_comparison(golden_db: np.ndarray, obtained_db: np.ndarray, sample_rate: int,
                                path: Path, *, title: str = "") -> Path:
    """Three stacked log-mel spectrograms, golden / obtained / obtained - golden, as a PNG.

    Args:
        golden_db, obtained_db: :func:`bark_ablation.features.log_mel_db` output, shape
            ``(n_mels, n_frames)``; frames beyond the shorter one are left out of the difference.
        sample_rate: Hz, for the time axis (one frame = ``HOP_LENGTH`` samples).
        path: where the PNG goes.
    """
    import librosa.display
    import matplotlib

    matplotlib.use("Agg", force=False)
    from matplotlib import pyplot

    frames = min(golden_db.shape[1], obtained_db.shape[1])
    difference = obtained_db[:, :frames] - golden_db[:, :frames]
    low = min(golden_db.min(), obtained_db.min())
    high = max(golden_db.max(), obtained_db.max())
    spread = max(float(np.abs(difference).max()), 1e-6)
    figure, axes = pyplot.subplots(3, 1, figsize=(10, 8), sharex=True, constrained_layout=True)
    try:
        panels = ((golden_db, "golden", "magma", low, high), (obtained_db, "obtained", "magma", low, high),
                  (difference, f"obtained - golden (max |diff| {spread:.3g} dB)", "coolwarm", -spread, spread))
        for axis, (data, label, colormap, vmin, vmax) in zip(axes, panels, strict=True):
            image = librosa.display.specshow(data, sr=sample_rate, hop_length=HOP_LENGTH, x_axis="time",
                                             y_axis="mel", cmap=colormap, vmin=vmin, vmax=vmax, ax=axis)
            axis.set_title(label)
            figure.colorbar(image, ax=axis, format="%+.2g dB")
        if title:
            figure.suptitle(title)
        figure.savefig(path, dpi=80)
    finally:
        pyplot.close(figure)
    return path
