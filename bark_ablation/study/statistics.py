"""Statistics of a study: per-cell means with bootstrap CIs, paired differences against full
conditioning, and the 2^3 factorial effects of each stage's conditioning.

Seeds are the replicates. A seed's eight on/off cells share stage results (same text, prompt
and stage seeds), so every comparison between cells is paired by seed: differences and effects
are computed per seed first, then summarised over seeds with a percentile bootstrap
(``scipy.stats.bootstrap``, resampling seeds). Percentile rather than BCa because BCa is
undefined when every replicate is equal, which happens on the tiny set and in tests.

Factorial effects over the on/off cells, with x_s, x_c, x_f = +1 (history on) or -1 (off):
``effect(term) = sum_cells(y * prod_{stage in term} x_stage) / 4``. A main effect is then
``mean(y | stage on) - mean(y | stage off)``; a two-way interaction is half the change of one
stage's effect when the other is switched on; the three-way term likewise.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass

import numpy as np
from scipy import stats

from bark_ablation.core.conditioning import ALL_CONDITIONINGS, FULL, STAGES, Conditioning

CONFIDENCE = 0.95
N_RESAMPLES = 9_999
BOOTSTRAP_SEED = 0
"""Seed of the bootstrap's resampling, so a report's CIs are reproducible."""

FACTORIAL_TERMS: tuple[tuple[str, ...], ...] = tuple(
    term for size in (1, 2, 3) for term in itertools.combinations([s.value for s in STAGES], size))
"""("semantic",), ("coarse",), ("fine",), ("semantic", "coarse"), ..., all three."""


@dataclass(frozen=True)
class Estimate:
    """A mean over seeds with its bootstrap CI (NaN bounds when fewer than 2 seeds).

    ``standardized`` is the mean over the standard deviation of the per-seed values (ddof 1):
    for paired differences and factorial effects, Cohen's d_z. NaN with fewer than 2 seeds,
    infinite when every seed gives the same non-zero value.
    """

    name: str
    mean: float
    ci_low: float
    ci_high: float
    n: int
    standardized: float = math.nan

    def to_dict(self) -> dict:
        return {key: (None if isinstance(value, float) and not math.isfinite(value) else value)
                for key, value in asdict(self).items()}


def bootstrap_estimate(name: str, values: Sequence[float], *, confidence: float = CONFIDENCE,
                       n_resamples: int = N_RESAMPLES, seed: int = BOOTSTRAP_SEED) -> Estimate:
    """Mean of ``values`` with a percentile bootstrap CI at ``confidence``."""
    data = np.asarray(values, dtype=np.float64)
    if data.size == 0:
        raise ValueError(f"{name}: no values to estimate from")
    mean = float(data.mean())
    if data.size < 2:
        return Estimate(name, mean, math.nan, math.nan, int(data.size))
    spread = float(data.std(ddof=1))
    standardized = mean / spread if spread > 0 else (0.0 if mean == 0 else math.copysign(math.inf, mean))
    if spread == 0:
        return Estimate(name, mean, mean, mean, int(data.size), standardized)
    result = stats.bootstrap((data,), np.mean, confidence_level=confidence, n_resamples=n_resamples,
                             method="percentile", rng=np.random.default_rng(seed))
    return Estimate(name, mean, float(result.confidence_interval.low),
                    float(result.confidence_interval.high), int(data.size), standardized)


Scores = Mapping[tuple[str, int], float]
"""(cell id, seed) -> score (SECS)."""


def seeds_of(scores: Scores) -> list[int]:
    return sorted({seed for _, seed in scores})


def cell_estimates(scores: Scores) -> list[Estimate]:
    """Per cell, in first-seen order: mean score over seeds with its CI."""
    cells = list(dict.fromkeys(cell for cell, _ in scores))
    return [bootstrap_estimate(cell, [scores[(cell, seed)] for seed in seeds_of(scores) if (cell, seed) in scores])
            for cell in cells]


def paired_differences(scores: Scores, reference: str = FULL.id) -> list[Estimate]:
    """Per cell other than ``reference``: mean of (cell - reference) over seeds that have both."""
    cells = [cell for cell in dict.fromkeys(cell for cell, _ in scores) if cell != reference]
    estimates = []
    for cell in cells:
        differences = [scores[(cell, seed)] - scores[(reference, seed)] for seed in seeds_of(scores)
                       if (cell, seed) in scores and (reference, seed) in scores]
        if differences:
            estimates.append(bootstrap_estimate(f"{cell} - {reference}", differences))
    return estimates


def factorial_effects(scores: Scores) -> list[Estimate]:
    """Main effects and interactions of the 2^3 design, from seeds that have all 8 cells.

    Raises ValueError when no seed has all eight on/off cells.
    """
    complete = [seed for seed in seeds_of(scores)
                if all((cell.id, seed) in scores for cell in ALL_CONDITIONINGS)]
    if not complete:
        raise ValueError("factorial effects need all 8 on/off cells for at least one seed")
    effects = []
    for term in FACTORIAL_TERMS:
        per_seed = [sum(scores[(cell.id, seed)] * _sign(cell, term) for cell in ALL_CONDITIONINGS) / 4
                    for seed in complete]
        effects.append(bootstrap_estimate(" x ".join(term), per_seed))
    return effects


def _sign(cell: Conditioning, term: tuple[str, ...]) -> int:
    return math.prod(1 if cell.conditions(stage) else -1 for stage in STAGES if stage.value in term)


def auc(positives: Sequence[float], negatives: Sequence[float]) -> float:
    """Area under the ROC curve: the probability that a random positive scores above a random
    negative (ties count half), from the Mann-Whitney U statistic."""
    if len(positives) == 0 or len(negatives) == 0:
        raise ValueError("auc: needs at least one positive and one negative score")
    u = stats.mannwhitneyu(positives, negatives, alternative="two-sided").statistic
    return float(u / (len(positives) * len(negatives)))
