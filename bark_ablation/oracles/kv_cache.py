"""KV cache equivalence: the semantic and coarse tokens of every cell with and without the cache.

Bark's semantic and coarse stages can reuse attention keys and values between steps
(``use_kv_caching``); the fine stage has no cache. :func:`stage_tokens_by_cell` runs the two
cached stages of every cell through the pipeline's plan and executor (same rows, same
histories, same per-stage seeds), once with and once without the cache, recording each step's
logits (:mod:`bark_ablation.oracles.sampling_oracle`), and :func:`token_differences` names every
cell, stage and position where two such runs disagree. Equal coarse tokens give equal fine tokens and audio:
those stages see nothing else that the cache touches.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import numpy as np

from bark_ablation.core.conditioning import ALL_CONDITIONINGS, Conditioning, Stage
from bark_ablation.core.params import GenerationParams
from bark_ablation.core.prompts import VoicePrompt
from bark_ablation.generation.engine import OneRowCalls, StageObserver, execute
from bark_ablation.generation.plan import plan_stages
from bark_ablation.implementations.registry import activated
from bark_ablation.oracles.sampling_oracle import Step, coarse_steps, recorded_logits, semantic_steps

CACHED_STAGE_ENUMS = (Stage.SEMANTIC, Stage.COARSE)
"""The stages with a KV cache (the fine stage has none)."""
CACHED_STAGES = tuple(stage.value for stage in CACHED_STAGE_ENUMS)


@dataclass(frozen=True)
class StageRun:
    """One stage's output and the steps it sampled them from.

    ``tokens``: semantic (T_s,) or coarse (2, T_c); ``steps``: one :class:`Step` per model call.
    """

    tokens: np.ndarray
    steps: list[Step]


CellRuns = Mapping[str, Mapping[str, StageRun]]
"""``{cell id: {"semantic": StageRun, "coarse": StageRun}}``."""


def stage_tokens_by_cell(
    model_set,
    text: str,
    prompt: VoicePrompt,
    seed: int,
    params: GenerationParams,
    cells: Iterable[Conditioning] = ALL_CONDITIONINGS,
    *,
    record: bool | None = None,
) -> dict[str, dict[str, StageRun]]:
    """The semantic and coarse stage runs of every cell in ``cells`` for one seed.

    The pipeline's own plan and executor run them (:func:`~bark_ablation.generation.plan.plan_stages`,
    :func:`~bark_ablation.generation.engine.execute`), one row at a time, so a stage's run is shared
    between cells exactly as in :func:`~bark_ablation.generation.pipeline.run_matrix` (the 8 cells
    need 2 semantic and 4 coarse runs; a shared run is the same :class:`StageRun` object), and
    its tokens equal the pipeline's. ``record`` (default: for every implementation but transformers, whose logits a hook
    can see) records each step's logits; without it ``steps`` is empty.
    """
    if record is None:
        record = model_set.implementation != "transformers"
    plan = plan_stages([seed], list(cells), prompt, stages=CACHED_STAGE_ENUMS)
    recorder = _StepRecorder(model_set, params, record)
    results: dict[str, dict[str, StageRun]] = {}
    with activated(model_set) as runner:
        for cell, _ in execute(plan, OneRowCalls(runner), text=text, params=params, order="cell", observer=recorder):
            results[cell.conditioning.id] = {stage.value: recorder.runs[key] for stage, key in cell.keys.items()}
    return results


class _StepRecorder(StageObserver):
    """Keeps every row's :class:`StageRun` by row key, with its steps when ``record`` (a forward
    hook on the stage's model records the logits of each call while the row runs)."""

    def __init__(self, model_set, params: GenerationParams, record: bool):
        self._model_set, self._params, self._record = model_set, params, record
        self._recorder = None
        self.runs: dict = {}

    @contextlib.contextmanager
    def calling(self, stage: Stage, rows):
        if not self._record:
            yield
            return
        with recorded_logits(self._model_set, stage.value) as recorder:
            self._recorder = recorder
            yield

    def called(self, stage: Stage, rows, outputs, seconds: float) -> None:
        (row,), (tokens,) = rows, outputs
        steps = []
        if self._record:
            calls = self._recorder.calls
            steps = (
                semantic_steps(calls, tokens, allow_early_stop=self._params.allow_early_stop)
                if stage is Stage.SEMANTIC
                else coarse_steps(calls, tokens)
            )
        self.runs[row.key] = StageRun(tokens, steps)


@dataclass(frozen=True)
class TokenDifference:
    """The first position where two runs of one cell's stage disagree."""

    cell: str
    stage: str
    position: str
    """``token 12`` (semantic) or ``codebook 1, frame 30`` (coarse), or ``length``."""
    first: str
    second: str
    differing: int
    """How many positions differ in all (0 for a length difference)."""

    def describe(self) -> str:
        return (
            f"cell {self.cell}, {self.stage} stage, {self.position}: {self.first} vs {self.second} "
            f"({self.differing} position(s) differ)"
        )


def token_differences(first: CellRuns, second: CellRuns, *, stages=CACHED_STAGES) -> list[TokenDifference]:
    """Every (cell, stage) whose tokens differ between ``first`` and ``second``, naming the first
    differing position. Cells present in only one of the two are reported too."""
    differences = []
    for cell in sorted(set(first) | set(second)):
        if cell not in first or cell not in second:
            differences.append(TokenDifference(cell, "-", "cell", str(cell in first), str(cell in second), 0))
            continue
        for stage in stages:
            a = np.asarray(first[cell][stage].tokens)
            b = np.asarray(second[cell][stage].tokens)
            if a.shape != b.shape:
                differences.append(TokenDifference(cell, stage, "length", str(a.shape), str(b.shape), 0))
                continue
            differ = np.argwhere(a != b)
            if len(differ):
                # the first in sampling order: by token, or by frame then codebook (interleaved)
                order = np.lexsort(differ.T) if a.ndim == 2 else np.arange(len(differ))
                where = tuple(int(i) for i in differ[order[0]])
                position = f"token {where[0]}" if a.ndim == 1 else f"codebook {where[0]}, frame {where[1]}"
                differences.append(TokenDifference(cell, stage, position, str(a[where]), str(b[where]), len(differ)))
    return differences


def first_divergent_step(first: StageRun, second: StageRun) -> int:
    """The number of leading steps at which both runs sampled the same token (= the index of the
    first step where they differ; the shorter run's length when one is a prefix of the other)."""
    n = min(len(first.steps), len(second.steps))
    for index in range(n):
        if first.steps[index].token != second.steps[index].token:
            return index
    return n


def max_logit_difference(first: StageRun, second: StageRun) -> float:
    """Largest absolute difference between the two runs' relevant logits over the steps before
    their tokens diverge (after that their contexts differ). In logit units."""
    n = first_divergent_step(first, second)
    if n == 0:
        return 0.0
    return float(max(np.max(np.abs(first.steps[i].logits - second.steps[i].logits)) for i in range(n)))


def min_greedy_gap(run: StageRun) -> float:
    """Smallest gap between the largest and second-largest relevant logit over a run's steps, in
    logit units: how far the argmax is from changing."""
    gaps = []
    for step in run.steps:
        top2 = np.partition(step.logits, -2)[-2:]
        gaps.append(float(top2[1] - top2[0]))
    return min(gaps)


def divergence_probability(first: np.ndarray, second: np.ndarray) -> float:
    """The probability that one uniform draw picks different tokens from two distributions
    (probability vectors over the same tokens) by inverse-CDF sampling, as ``torch.multinomial``
    does for one sample: the measure of the uniforms u for which the first token i with
    F(i) > u differs, i.e. of the union of the intervals between F1(i) and F2(i). Both
    cumulative distributions rise with i, so the intervals come sorted and the union is their
    sum minus their overlaps with the previous interval. Dimensionless, in [0, 1]."""
    f1, f2 = np.cumsum(first), np.cumsum(second)
    low, high = np.minimum(f1, f2)[:-1], np.maximum(f1, f2)[:-1]
    previous_high = np.concatenate([[-np.inf], high[:-1]])
    return float(np.clip(high - np.maximum(low, previous_high), 0.0, None).sum())
