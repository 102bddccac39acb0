"""The speaker-identity study: SECS of every generation against the prompt, and its statistics.

Flow: a :class:`~bark_ablation.generation.pipeline.MatrixRun` (cells x seeds, controls included) ->
:func:`score_run` (SECS of each generation against the prompt's reference audio, i.e. the
prompt's fine codes decoded by the same model set's codec) -> :func:`analyse` (per-cell means
with CIs, paired differences against ``scf``, the 2^3 factorial effects) -> :func:`write_study`
(``study.json``, ``secs.csv``, ``cells.csv``, ``differences.csv``, ``effects.csv``).

On the tiny model set the scores are those of noise-like audio: the study runs as plumbing and
makes no claim about identity.
"""

from __future__ import annotations

import csv
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from bark_ablation.core.conditioning import ALL_CONDITIONINGS, FULL
from bark_ablation.generation.pipeline import SAMPLE_RATE, MatrixRun
from bark_ablation.study.similarity import embed, prompt_reference_audio, secs
from bark_ablation.study.statistics import (
    CONFIDENCE,
    Estimate,
    cell_estimates,
    factorial_effects,
    paired_differences,
)

REFERENCE_WAV = "reference.wav"
"""The prompt's reference audio, in the run's ``audio/`` directory."""


@dataclass
class StudyResult:
    """Scores and statistics of one run.

    Attributes:
        scores: (cell id, seed) -> SECS against the prompt's reference audio.
        cells: per-cell mean SECS with 95 % CI, over seeds.
        differences: per cell, mean of (cell - scf) over matched seeds, with CI.
        effects: factorial main effects and interactions (empty unless all 8 on/off cells ran).
        seconds_per_score: mean wall time of one embedding + SECS, seconds.
    """

    scores: dict[tuple[str, int], float]
    cells: list[Estimate]
    differences: list[Estimate]
    effects: list[Estimate]
    seconds_per_score: float
    reference: dict[str, Any] = field(default_factory=dict)
    reference_audio: np.ndarray | None = None
    """The prompt's reference audio (float32, :data:`SAMPLE_RATE` Hz), written beside the generations."""

    def to_dict(self) -> dict[str, Any]:
        return {
            "metric": "SECS: cosine similarity of Resemblyzer (GE2E) embeddings, generation vs the "
                      "prompt's reference audio (its fine codes decoded by the same codec)",
            "confidence": CONFIDENCE,
            "reference": self.reference,
            "scores": [{"cell": cell, "seed": seed, "secs": score} for (cell, seed), score in self.scores.items()],
            "cells": [e.to_dict() for e in self.cells],
            "differences_vs_full": [e.to_dict() for e in self.differences],
            "factorial_effects": [e.to_dict() for e in self.effects],
            "seconds_per_score": self.seconds_per_score,
        }


def score_run(run: MatrixRun, reference_audio: np.ndarray, *,
              device: str = "cpu") -> tuple[dict[tuple[str, int], float], float]:
    """SECS of every generation against ``reference_audio`` (:data:`SAMPLE_RATE` Hz); also seconds
    per score."""
    reference = embed(reference_audio, SAMPLE_RATE, source=f"prompt {run.prompt.name!r} (decoded)", device=device)
    scores = {}
    started = time.perf_counter()
    for generation in run.generations:
        embedding = embed(generation.audio, generation.sample_rate, source=generation.label, device=device)
        scores[(generation.cell, generation.seed)] = secs(reference, embedding)
    per_score = (time.perf_counter() - started) / max(len(run.generations), 1)
    return scores, per_score


def analyse(scores: dict[tuple[str, int], float], seconds_per_score: float = float("nan"),
            reference: dict[str, Any] | None = None) -> StudyResult:
    """Per-cell estimates, paired differences against ``scf`` and, when all 8 on/off cells
    are present for some seed, the factorial effects."""
    cells_present = {cell for cell, _ in scores}
    has_factorial = all(c.id in cells_present for c in ALL_CONDITIONINGS)
    return StudyResult(
        scores=dict(scores),
        cells=cell_estimates(scores),
        differences=paired_differences(scores, FULL.id) if FULL.id in cells_present else [],
        effects=factorial_effects(scores) if has_factorial else [],
        seconds_per_score=seconds_per_score,
        reference=reference or {},
    )


def run_study(run: MatrixRun, *, device: str = "cpu") -> StudyResult:
    """:func:`score_run` against the prompt's decoded fine codes, then :func:`analyse`."""
    reference_audio = prompt_reference_audio(run.prompt, run.model_set)
    scores, per_score = score_run(run, reference_audio, device=device)
    result = analyse(scores, per_score, {"prompt": run.prompt.name, "audio": "prompt fine codes decoded by "
                                         f"model set {run.model_set.name!r}", "file": f"audio/{REFERENCE_WAV}"})
    result.reference_audio = reference_audio
    return result


def write_study(directory: Path, result: StudyResult) -> None:
    """``study.json``, the CSVs (one row per score, cell, difference, effect) and, when known,
    ``audio/reference.wav`` into ``directory``."""
    if result.reference_audio is not None:
        from bark_ablation.core.wav import write_wav

        (directory / "audio").mkdir(exist_ok=True)
        write_wav(directory / "audio" / REFERENCE_WAV, result.reference_audio, SAMPLE_RATE)
    (directory / "study.json").write_text(json.dumps(result.to_dict(), indent=2) + "\n", encoding="utf-8")
    _write_csv(directory / "secs.csv", ["cell", "seed", "secs"],
               [[cell, seed, f"{score:.6f}"] for (cell, seed), score in result.scores.items()])
    for name, estimates in (("cells", result.cells), ("differences", result.differences),
                            ("effects", result.effects)):
        _write_csv(directory / f"{name}.csv", ["name", "mean", "ci_low", "ci_high", "n", "standardized"],
                   [[e.name, f"{e.mean:.6f}", f"{e.ci_low:.6f}", f"{e.ci_high:.6f}", e.n, f"{e.standardized:.4f}"]
                    for e in estimates])


def _write_csv(path: Path, header: list[str], rows: list[list[Any]]) -> None:
    with path.open("w", newline="", encoding="utf-8") as stream:
        writer = csv.writer(stream)
        writer.writerow(header)
        writer.writerows(rows)
