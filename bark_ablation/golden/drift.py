"""Drift: how a generation differs from its golden case, strictest check first, as a table.

Order of checks:

1. Tokens, exactly (values, shape and dtype of every stage), when the generation's device class
   is the golden's. Across classes tokens are not expected to agree and the rows say so.
2. Audio, by spectral features (:mod:`bark_ablation.core.features`), each with its own tolerance
   (:data:`TOLERANCES`): log-mel distance (global and worst frame), duration, RMS energy, MFCC
   statistics, centroid, bandwidth, roll-off, flatness, voicing and f0.

:func:`compare` returns a :class:`DriftReport`; :func:`assert_no_drift` raises
:class:`GoldenMismatch` with the table and writes what a person needs to judge the failure
(obtained and golden WAV, a golden/obtained/difference spectrogram PNG, the table as text).
"""

from __future__ import annotations

import math
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from bark_ablation.core.checks import CheckFailure
from bark_ablation.core.conditioning import TOKEN_STAGE_NAMES
from bark_ablation.core.features import (
    HOP_LENGTH,
    N_FFT,
    SCALAR_FEATURES,
    VECTOR_FEATURES,
    log_mel_db,
    log_mel_distance,
    spectral_features,
)
from bark_ablation.generation.pipeline import SAMPLE_RATE, Generation
from bark_ablation.golden.store import GoldenCase


@dataclass(frozen=True)
class Tolerance:
    """Allowed |golden - obtained| for one feature:
    ``absolute + relative * |golden| + quantum / frames``.

    ``noise`` and ``smallest_real`` are the calibration figures the tolerance sits between
    (largest benign difference measured; smallest difference a real change caused, or ``None``
    where no calibrated real change targets this feature), in ``unit``.

    ``quantum`` is for features averaged over frames from a discrete per-frame value (an FFT bin,
    a voiced/unvoiced decision): a benign difference in the last bits of the audio can tip one
    frame that sits on a boundary over to the next step, which moves the mean by one step divided
    by the number of frames, however small the difference was; a thread-count change alone does
    this (measured: docs/measurements.md#drift-one-frame-step). One such frame is allowed at any
    clip length (early stops make very short clips); two are not.
    """

    absolute: float
    unit: str
    noise: float
    smallest_real: float | None = None
    relative: float = 0.0
    quantum: float = 0.0
    """One frame's step of a discrete per-frame feature, in ``unit`` (0: the feature is continuous)."""

    def allowed(self, golden: float, frames: int | None = None) -> float:
        """The allowed difference; ``frames``: how many frames the feature averages (needed for
        a ``quantum``)."""
        return self.absolute + self.relative * abs(golden) + (self.quantum / frames if self.quantum and frames else 0.0)

    def describe(self) -> str:
        if self.relative and not self.absolute:
            return f"{self.relative:.0%} of golden"
        text = f"{self.absolute:.3g} {self.unit}".strip()
        if self.quantum:
            text += f" + one frame ({self.quantum:.3g} {self.unit} / frames)".replace("  ", " ")
        return f"{text} + {self.relative:.0%} of golden" if self.relative else text


TOLERANCES: dict[str, Tolerance] = {
    # Calibrated with scripts/calibrate_golden.py on the tiny set, CPU, all 48 regression cases;
    # figures and method in golden/CALIBRATION.md. Noise: largest difference from decoding with 1
    # thread instead of 2, or with the decoder input scaled by 1 + 1e-5 N(0,1). Real changes:
    # one fine code changed in any codebook at the first, middle or last frame; +-0.5 dB gain;
    # the last 1 % of the samples dropped.
    "log_mel_mean_abs_db": Tolerance(0.05, "dB", noise=3.4e-5, smallest_real=0.5),  # gain
    "log_mel_max_frame_db": Tolerance(0.02, "dB", noise=6.0e-5, smallest_real=0.32),  # one token
    "duration_s": Tolerance(0.001, "s", noise=0.0, smallest_real=0.01),  # 1 % shorter
    "rms_db": Tolerance(0.05, "dB", noise=2.6e-6, smallest_real=0.5),  # gain
    "mfcc_mean": Tolerance(0.005, "", noise=3.1e-5, smallest_real=0.0145),  # one token
    "mfcc_std": Tolerance(0.005, "", noise=2.6e-5, smallest_real=0.0102),  # one token
    # Not targeted by a calibrated change: about 100x the noise floor, on a 1-2-5 step.
    "centroid_hz": Tolerance(0.1, "Hz", noise=6.6e-4),
    "bandwidth_hz": Tolerance(0.05, "Hz", noise=2.4e-4),
    # Discrete per frame (see Tolerance.quantum): one frame may move one step.
    "rolloff_hz": Tolerance(0.1, "Hz", noise=0.0, quantum=SAMPLE_RATE / N_FFT),  # FFT bin: 23.4 Hz
    "flatness": Tolerance(5e-5, "", noise=4.5e-7),
    "voiced_fraction": Tolerance(0.001, "", noise=0.0, quantum=1.0),  # one pYIN frame voiced <-> unvoiced
    "f0_median_hz": Tolerance(0.0, "Hz", noise=0.0, relative=0.01),  # ~1.7 pYIN pitch-grid steps
}
"""Feature name -> tolerance. Each row of a :class:`DriftReport` for audio uses one of these."""


@dataclass(frozen=True)
class DriftRow:
    """One line of the drift table. ``golden``/``obtained``/``difference`` are display strings;
    ``measured`` is the number compared with the tolerance (|difference| in the feature's unit;
    NaN for token rows, which are exact)."""

    check: str
    golden: str
    obtained: str
    difference: str
    tolerance: str
    passed: bool | None  # None: not applicable (e.g. tokens across device classes)
    measured: float = float("nan")

    @property
    def verdict(self) -> str:
        return {True: "pass", False: "FAIL", None: "n/a"}[self.passed]


@dataclass(frozen=True)
class DriftReport:
    """The outcome of comparing one generation with its golden case."""

    case: str
    rows: tuple[DriftRow, ...]
    golden_dir: Path

    @property
    def passed(self) -> bool:
        return all(row.passed is not False for row in self.rows)

    @property
    def failures(self) -> tuple[DriftRow, ...]:
        return tuple(row for row in self.rows if row.passed is False)

    def headline(self) -> str:
        """One sentence: which stage drifted first and how much of the audio check failed."""
        if self.passed:
            return f"{self.case}: matches its golden data"
        token_failures = [row.check for row in self.failures if row.check.endswith(" tokens")]
        audio_rows = [row for row in self.rows if not row.check.endswith(" tokens")]
        audio_failures = [row.check for row in audio_rows if row.passed is False]
        parts = []
        if token_failures:
            parts.append(
                f"tokens differ from the {token_failures[0].split()[0]} stage on ({', '.join(token_failures)})"
            )
        if audio_failures:
            parts.append(
                f"audio drifted: {len(audio_failures)} of {len(audio_rows)} checks out of "
                f"tolerance ({', '.join(audio_failures)})"
            )
        else:
            parts.append("audio features within tolerance")
        return f"{self.case}: " + "; ".join(parts)

    def table(self) -> str:
        """Fixed-width table: check, golden, obtained, difference, tolerance, verdict."""
        header = ("check", "golden", "obtained", "difference", "tolerance", "result")
        lines = [header] + [(r.check, r.golden, r.obtained, r.difference, r.tolerance, r.verdict) for r in self.rows]
        widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
        rendered = [
            "  ".join(cell.ljust(width) for cell, width in zip(line, widths, strict=True)).rstrip() for line in lines
        ]
        rendered.insert(1, "  ".join("-" * width for width in widths))
        return "\n".join(rendered)

    def __str__(self) -> str:
        return f"{self.headline()}\n{self.table()}"


class GoldenMismatch(CheckFailure):
    """A generation drifted from its golden case; carries the report and where artifacts went."""

    def __init__(self, report: DriftReport, artifacts: Path | None):
        self.report = report
        self.artifacts = artifacts
        message = f"{report}\ngolden data: {report.golden_dir}"
        if artifacts is not None:
            message += f"\nlisten and look: {artifacts} (obtained.wav, golden.wav, spectrograms.png, drift.txt)"
        super().__init__(message)


def compare_tokens(golden: GoldenCase, generation: Generation, device_class: str) -> list[DriftRow]:
    """One row per stage: exact equality of values, shape and dtype."""
    same_class = device_class == golden.key.device_class
    rows = []
    for stage in TOKEN_STAGE_NAMES:
        expected, obtained = getattr(golden, stage), getattr(generation, stage)
        if not same_class:
            rows.append(
                DriftRow(
                    f"{stage} tokens",
                    describe(expected),
                    describe(obtained),
                    f"not compared: device class {device_class} vs golden {golden.key.device_class}",
                    "exact",
                    None,
                )
            )
            continue
        rows.append(
            DriftRow(
                f"{stage} tokens",
                describe(expected),
                describe(obtained),
                _token_difference(expected, obtained),
                "exact",
                expected.shape == obtained.shape
                and expected.dtype == obtained.dtype
                and bool(np.array_equal(expected, obtained)),
            )
        )
    return rows


def describe(array: np.ndarray) -> str:
    return f"{array.dtype}{list(array.shape)}"


def _token_difference(expected: np.ndarray, obtained: np.ndarray) -> str:
    """What differs: shape, values (how many, where first) and dtype, each said when it differs."""
    dtype = None if expected.dtype == obtained.dtype else f"dtype {expected.dtype} -> {obtained.dtype}"
    if expected.shape != obtained.shape:
        values = f"shape {tuple(expected.shape)} -> {tuple(obtained.shape)}"
    else:
        differing = np.argwhere(expected != obtained)
        if len(differing) == 0:
            values = None
        else:
            first = tuple(int(i) for i in differing[0])
            where = f"frame {first[-1]}" + (f", codebook {first[0]}" if expected.ndim == 2 else "")
            values = f"{len(differing)} of {expected.size} differ, first at {where}"
    return ", ".join(part for part in (values, dtype) if part) or "none"


def compare_audio(
    golden: GoldenCase,
    audio: np.ndarray,
    sample_rate: int,
    tolerances: dict[str, Tolerance] = TOLERANCES,
    obtained_features: dict[str, Any] | None = None,
) -> list[DriftRow]:
    """Feature rows: log-mel distances (from the golden WAV) and every recorded feature.

    The golden WAV holds 16-bit PCM; ``audio`` is rounded the same way (:meth:`GoldenCase.as_stored`)
    before the log-mel comparison, so storage adds no difference of its own: an unchanged
    generation compares at exactly 0 dB."""
    obtained = obtained_features or spectral_features(audio, sample_rate)
    distance = log_mel_distance(
        log_mel_db(golden.audio, golden.sample_rate), log_mel_db(golden.as_stored(audio), sample_rate)
    )
    worst_s = distance.worst_frame * HOP_LENGTH / sample_rate
    rows = [
        _row("log_mel_mean_abs_db", 0.0, distance.mean_abs_db, tolerances, shown=("0", f"{distance.mean_abs_db:.3g}")),
        _row(
            "log_mel_max_frame_db",
            0.0,
            distance.max_frame_db,
            tolerances,
            shown=("0", f"{distance.max_frame_db:.3g} at {worst_s:.3f} s"),
        ),
    ]
    frames = 1 + audio.shape[-1] // HOP_LENGTH  # centred STFT and pYIN frames of the obtained audio
    for name in SCALAR_FEATURES:
        rows.append(_row(name, _number(golden.features.get(name)), _number(obtained[name]), tolerances, frames=frames))
    for name in VECTOR_FEATURES:
        expected = np.asarray(golden.features.get(name), dtype=np.float64)
        actual = np.asarray(obtained[name], dtype=np.float64)
        if expected.shape != actual.shape:
            rows.append(
                DriftRow(
                    name,
                    f"{expected.size} values",
                    f"{actual.size} values",
                    "length differs",
                    tolerances[name].describe(),
                    False,
                    float("inf"),
                )
            )
            continue
        worst = int(np.argmax(np.abs(expected - actual)))
        rows.append(
            _row(f"{name}[{worst}]", float(expected[worst]), float(actual[worst]), tolerances, tolerance_name=name)
        )
    return rows


def _number(value: Any) -> float:
    return float("nan") if value is None else float(value)


def _row(
    name: str,
    golden: float,
    obtained: float,
    tolerances: dict[str, Tolerance],
    *,
    tolerance_name: str | None = None,
    shown: tuple[str, str] | None = None,
    frames: int | None = None,
) -> DriftRow:
    tolerance = tolerances[tolerance_name or name]
    if math.isnan(golden) and math.isnan(obtained):  # e.g. f0 where neither is voiced
        return DriftRow(name, "none", "none", "0", tolerance.describe(), True, 0.0)
    difference = abs(obtained - golden)  # NaN against a number: NaN, which fails below
    passed = bool(difference <= tolerance.allowed(golden, frames))
    golden_text, obtained_text = shown or (f"{golden:.6g}", f"{obtained:.6g}")
    return DriftRow(name, golden_text, obtained_text, f"{difference:.3g}", tolerance.describe(), passed, difference)


def compare(
    golden: GoldenCase, generation: Generation, device_class: str, tolerances: dict[str, Tolerance] = TOLERANCES
) -> DriftReport:
    """Every check of the module docstring, tokens first."""
    rows = compare_tokens(golden, generation, device_class)
    rows += compare_audio(golden, generation.audio, generation.sample_rate, tolerances)
    return DriftReport(str(golden.key), tuple(rows), golden.directory)


def write_artifacts(
    report: DriftReport, golden: GoldenCase, audio: np.ndarray, sample_rate: int, directory: Path
) -> Path:
    """Write obtained.wav, golden.wav, spectrograms.png and drift.txt into ``directory``
    (created, replaced if it exists); returns ``directory``."""
    from bark_ablation.core.plots import save_spectrogram_comparison
    from bark_ablation.core.wav import write_wav

    if directory.exists():
        shutil.rmtree(directory)
    directory.mkdir(parents=True)
    write_wav(directory / "obtained.wav", audio, sample_rate)
    shutil.copyfile(golden.audio_path, directory / "golden.wav")
    save_spectrogram_comparison(
        log_mel_db(golden.audio, golden.sample_rate),
        log_mel_db(audio, sample_rate),
        sample_rate,
        directory / "spectrograms.png",
        title=report.case,
    )
    (directory / "drift.txt").write_text(f"{report}\n", encoding="utf-8")
    return directory


def assert_no_drift(
    golden: GoldenCase,
    generation: Generation,
    device_class: str,
    *,
    artifacts_root: Path | None = None,
    tolerances: dict[str, Tolerance] = TOLERANCES,
) -> DriftReport:
    """Compare; on drift write artifacts under ``artifacts_root/<case>`` and raise
    :class:`GoldenMismatch`. Returns the (passing) report otherwise."""
    report = compare(golden, generation, device_class, tolerances)
    if report.passed:
        return report
    artifacts = None
    if artifacts_root is not None:
        artifacts = write_artifacts(
            report, golden, generation.audio, generation.sample_rate, artifacts_root / golden.key.case_path()
        )
    raise GoldenMismatch(report, artifacts)
