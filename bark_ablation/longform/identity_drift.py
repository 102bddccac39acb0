"""How fast each history policy loses the voice: the drift of SECS over the chunks of a passage.

Per run (speaker, passage, policy, seed), over its chunks k = 0, 1, ..., K - 1:

* the **slope**: the least-squares slope of SECS against the prompt's reference over the chunk
  index (``scipy.stats.linregress``), SECS units per chunk; negative means the voice fades;
* the **first-to-last difference**: SECS of the last chunk minus SECS of the first.

The unit of replication is the speaker, as in the study (:mod:`bark_ablation.study.analysis`):
each speaker's runs are averaged over passages and seeds, and the interval (Student t, 95 %) and
the test of 0 are across speakers, n - 1 degrees of freedom. With one speaker the unit is the
seed (averaged over passages), and the answer is about that speaker only. The slopes' p-values
are Holm-adjusted across the policies (one family); the first-to-last differences form a second
family. Per chunk index, the mean SECS of each policy over units with its t-interval is what the
report plots; where passages have different numbers of chunks, the means of the later indices
cover only the passages that reach them (the slopes do not mix passages: each run has its own).

The answer: the policy whose slope is highest (closest to 0, or positive) holds the voice best;
``-slope`` is the SECS it loses per chunk.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from scipy import stats

from bark_ablation.longform.scoring import ChunkScore
from bark_ablation.study.speaker_encoders import encoder_label
from bark_ablation.study.statistics import CONFIDENCE, Estimate, adjust_family, t_estimate

DRIFT_COLUMNS = [
    "policy",
    "unit",
    "n",
    "slope",
    "slope_ci_low",
    "slope_ci_high",
    "slope_p",
    "slope_p_adjusted",
    "first_to_last",
    "first_to_last_ci_low",
    "first_to_last_ci_high",
    "first_to_last_p",
    "first_to_last_p_adjusted",
]
CHUNK_COLUMNS = ["prompt", "passage", "policy", "seed", "chunk", "duration_s", "secs_prompt", "secs_first"]


@dataclass(frozen=True)
class PolicyDrift:
    """One policy's drift: ``slope`` (SECS per chunk) and ``first_to_last`` (SECS), each a mean
    over units with its t-interval, p-value and Holm-adjusted p-value."""

    policy: str
    unit: str
    slope: Estimate
    first_to_last: Estimate

    @property
    def loss_per_chunk(self) -> float:
        """SECS lost per chunk: ``-slope`` (negative: gained)."""
        return -self.slope.mean

    def to_dict(self) -> dict[str, Any]:
        return {
            "policy": self.policy,
            "unit": self.unit,
            "slope": self.slope.to_dict(),
            "first_to_last": self.first_to_last.to_dict(),
        }


@dataclass
class DriftResult:
    """Every estimate of a long-form run.

    Attributes:
        unit: ``"speaker"`` (two or more speakers) or ``"seed"``.
        levels: speakers, passages, seeds and policies, in design order.
        drift: one :class:`PolicyDrift` per policy, in design order.
        per_chunk: policy -> per chunk index, mean SECS against the prompt over units with its
            t-interval (no test).
        scores: every chunk's scores.
    """

    unit: str
    levels: dict[str, list]
    drift: list[PolicyDrift]
    per_chunk: dict[str, list[Estimate]]
    scores: list[ChunkScore]
    seconds_per_score: float = float("nan")
    speaker_encoder: dict[str, Any] | None = None
    """The encoder that made the scores (:meth:`SpeakerEncoder.describe`); None: Resemblyzer, unrecorded."""

    @property
    def best(self) -> PolicyDrift:
        """The policy that holds the voice best: the highest slope."""
        return max(self.drift, key=lambda d: d.slope.mean)

    def get(self, policy: str) -> PolicyDrift:
        for drift in self.drift:
            if drift.policy == policy:
                return drift
        raise KeyError(f"no drift for policy {policy!r}; policies: {[d.policy for d in self.drift]}")

    def to_dict(self) -> dict[str, Any]:
        return {
            "metric": f"SECS: cosine similarity of {encoder_label(self.speaker_encoder)} embeddings, chunk vs the prompt's "
            "reference audio (its fine codes decoded by the same codec)",
            "speaker_encoder": self.speaker_encoder,
            "drift": "least-squares slope of SECS over the chunk index per run (SECS per chunk), averaged "
            "within each unit; first_to_last: SECS of the last chunk minus the first's",
            "confidence": CONFIDENCE,
            "unit": self.unit,
            "levels": self.levels,
            "n": {name: len(values) for name, values in self.levels.items()},
            "interval": "Student t over units; p: two-sided one-sample t-test of 0; p_adjusted: Holm across "
            "policies (slopes one family, first-to-last differences another)",
            "best_policy": self.best.policy,
            "policies": [d.to_dict() for d in self.drift],
            "per_chunk": {policy: [e.to_dict() for e in estimates] for policy, estimates in self.per_chunk.items()},
            "seconds_per_score": self.seconds_per_score,
        }


def run_slopes(scores: Sequence[ChunkScore]) -> dict[tuple[str, int, str, int], tuple[float, float]]:
    """(speaker, passage, policy, seed) -> (slope of ``secs_prompt`` over the chunk index, last
    minus first ``secs_prompt``)."""
    runs: dict[tuple[str, int, str, int], list[ChunkScore]] = {}
    for score in scores:
        runs.setdefault(score.run_key, []).append(score)
    result = {}
    for key, rows in runs.items():
        rows = sorted(rows, key=lambda r: r.chunk)
        if len(rows) < 2:
            raise ValueError(f"run {key}: drift needs at least 2 chunks, got {len(rows)}")
        x = np.array([r.chunk for r in rows], dtype=np.float64)
        y = np.array([r.secs_prompt for r in rows], dtype=np.float64)
        result[key] = (float(stats.linregress(x, y).slope), float(y[-1] - y[0]))
    return result


def analyse_drift(scores: Sequence[ChunkScore], seconds_per_score: float = float("nan")) -> DriftResult:
    """Every estimate of the module docstring from the chunks' scores."""
    if not scores:
        raise ValueError("analyse_drift: no scores")
    speakers = list(dict.fromkeys(s.prompt for s in scores))
    policies = list(dict.fromkeys(s.policy for s in scores))
    unit = "speaker" if len(speakers) >= 2 else "seed"
    slopes = run_slopes(scores)

    def unit_of(prompt: str, seed: int) -> Any:
        return prompt if unit == "speaker" else seed

    slope_estimates, change_estimates = [], []
    for policy in policies:
        by_unit: dict[Any, list[tuple[float, float]]] = {}
        for (prompt, _, run_policy, seed), values in slopes.items():
            if run_policy == policy:
                by_unit.setdefault(unit_of(prompt, seed), []).append(values)
        slope_estimates.append(t_estimate(policy, [np.mean([v[0] for v in vs]) for vs in by_unit.values()]))
        change_estimates.append(t_estimate(policy, [np.mean([v[1] for v in vs]) for vs in by_unit.values()]))
    slope_estimates = adjust_family(slope_estimates)
    change_estimates = adjust_family(change_estimates)
    per_chunk: dict[str, list[Estimate]] = {}
    for policy in policies:
        cells: dict[int, dict[Any, list[float]]] = {}
        for score in scores:
            if score.policy == policy:
                cells.setdefault(score.chunk, {}).setdefault(unit_of(score.prompt, score.seed), []).append(
                    score.secs_prompt
                )
        per_chunk[policy] = [
            t_estimate(f"{policy} chunk {k}", [float(np.mean(v)) for v in cells[k].values()], test_zero=False)
            for k in sorted(cells)
        ]
    return DriftResult(
        unit=unit,
        levels={
            "speakers": speakers,
            "passages": sorted({s.passage for s in scores}),
            "seeds": sorted({s.seed for s in scores}),
            "policies": policies,
        },
        drift=[
            PolicyDrift(policy, unit, slope, change)
            for policy, slope, change in zip(policies, slope_estimates, change_estimates, strict=True)
        ],
        per_chunk=per_chunk,
        scores=list(scores),
        seconds_per_score=seconds_per_score,
    )


def write_drift(directory: Path, result: DriftResult) -> None:
    """``chunks.csv`` (one row per chunk), ``drift.csv`` (one row per policy) and ``drift.json``."""
    with (directory / "chunks.csv").open("w", newline="", encoding="utf-8") as stream:
        writer = csv.writer(stream)
        writer.writerow(CHUNK_COLUMNS)
        for s in result.scores:
            writer.writerow(
                [
                    s.prompt,
                    s.passage,
                    s.policy,
                    s.seed,
                    s.chunk,
                    f"{s.duration_s:.4f}",
                    f"{s.secs_prompt:.6f}",
                    f"{s.secs_first:.6f}",
                ]
            )
    with (directory / "drift.csv").open("w", newline="", encoding="utf-8") as stream:
        writer = csv.writer(stream)
        writer.writerow(DRIFT_COLUMNS)
        for d in result.drift:
            writer.writerow(
                [
                    d.policy,
                    d.unit,
                    d.slope.n,
                    *_numbers(d.slope),
                    *_numbers(d.first_to_last),
                ]
            )
    (directory / "drift.json").write_text(json.dumps(result.to_dict(), indent=2) + "\n", encoding="utf-8")


def _numbers(e: Estimate) -> list[str]:
    return [f"{e.mean:.6f}", f"{e.ci_low:.6f}", f"{e.ci_high:.6f}", f"{e.p_value:.6g}", f"{e.p_adjusted:.6g}"]
