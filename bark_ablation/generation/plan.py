"""The stage plan of a matrix run: the distinct rows each stage computes, and which cells share them.

Each stage is seeded from (seed, stage) alone (:mod:`bark_ablation.core.seeding`), so a stage's
output is a function of its input, the history it receives and the seed. A row's key is
therefore the seed, the key of the row it reads, the stage and the fingerprint of its history
(``None`` when unconditioned): equal keys mean equal inputs, equal history and equal seed, and
one run serves every cell with that key. Keys use prompt fingerprints, not conditioning flags,
so cells that feed a stage another prompt (controls) share correctly too. For the 8 cells of one
seed the plan holds 2 semantic, 4 coarse, 8 fine and 8 decode rows (22 runs instead of 32).

:func:`plan_stages` plans conditioning cells; :func:`plan_rows` plans any (seed, tag) with the
history each stage receives given outright (the long-form chunks of
:mod:`bark_ablation.longform.generation`, whose history may be the previous chunk's output).
Rows of one plan read one text: the text is not part of a key.
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from bark_ablation.core.conditioning import PIPELINE_STAGES, Conditioning, Stage
from bark_ablation.core.controls import stage_history
from bark_ablation.core.prompts import VoicePrompt

RowKey = Hashable
"""What one stage row depends on: ``(seed, "semantic", fingerprint)`` for the semantic stage,
``(upstream row key, stage, fingerprint or None)`` after it."""


@dataclass(frozen=True)
class PlannedRow:
    """One distinct run of one stage.

    Attributes:
        stage: the stage that runs.
        key: the row's :data:`RowKey`.
        seed: the run's seed (the stage draws from ``stage_seed(seed, stage)``).
        history: the voice prompt the stage is conditioned on, or ``None``.
        upstream: the key of the row whose output this row reads (``None`` for the semantic
            stage, which reads the text).
    """

    stage: Stage
    key: RowKey
    seed: int
    history: VoicePrompt | None
    upstream: RowKey | None


@dataclass(frozen=True)
class PlannedCell:
    """One (seed, tag) of the run: the row key of each planned stage, and the stages whose row an
    earlier cell of the plan already computes (``reused``, stage names). ``tag`` is what the
    caller planned: the :class:`Conditioning` for :func:`plan_stages`."""

    seed: int
    tag: Any
    keys: Mapping[Stage, RowKey]
    reused: frozenset[str]

    @property
    def conditioning(self) -> Conditioning:
        """The cell's conditioning, for plans made by :func:`plan_stages` (where it is the tag)."""
        return self.tag


@dataclass(frozen=True)
class RowRequest:
    """One (seed, tag) to plan with the history each token stage receives (``None``: none);
    ``tag`` identifies it to the caller (any hashable value)."""

    seed: int
    tag: Hashable
    histories: Mapping[Stage, VoicePrompt | None]


@dataclass(frozen=True)
class StagePlan:
    """Every (seed, cell) in order (seeds outer, cells inner), and per stage its distinct rows in
    the order the cells first need them."""

    stages: tuple[Stage, ...]
    cells: tuple[PlannedCell, ...]
    rows: Mapping[Stage, Mapping[RowKey, PlannedRow]]

    def runs_per_stage(self) -> dict[str, int]:
        """Distinct rows per stage name: how many times each stage runs."""
        return {stage.value: len(self.rows[stage]) for stage in self.stages}


def plan_stages(
    seeds: Sequence[int],
    cells: Sequence[Conditioning],
    prompt: VoicePrompt,
    other_prompt: VoicePrompt | None = None,
    *,
    stages: Sequence[Stage] = PIPELINE_STAGES,
) -> StagePlan:
    """Plan ``stages`` (a prefix of the pipeline; default all four) for every seed x cell.

    ``prompt`` is the voice whose history the cells give; ``other_prompt`` the speaker that cells
    with an ``o`` history receive. Inputs are taken as valid (the callers' boundaries check them).
    """
    requests = [
        RowRequest(
            seed,
            conditioning,
            {
                stage: stage_history(conditioning.source(stage), stage, prompt, seed, other_prompt)
                for stage in stages
                if stage is not Stage.DECODE
            },
        )
        for seed in seeds
        for conditioning in cells
    ]
    return plan_rows(requests, stages=stages)


def plan_rows(requests: Sequence[RowRequest], *, stages: Sequence[Stage] = PIPELINE_STAGES) -> StagePlan:
    """Plan ``stages`` (a prefix of the pipeline; default all four) for every request, in order.

    Two requests share a stage's row when their seed, their rows upstream and that stage's
    history (by fingerprint) are equal.
    """
    stages = tuple(stages)
    if stages != PIPELINE_STAGES[: len(stages)]:
        raise ValueError(f"stages must be a prefix of {[s.value for s in PIPELINE_STAGES]}, got {stages}")
    rows: dict[Stage, dict[RowKey, PlannedRow]] = {stage: {} for stage in stages}
    planned = []
    for request in requests:
        keys: dict[Stage, RowKey] = {}
        reused = set()
        upstream: RowKey | None = None
        for stage in stages:
            history = None if stage is Stage.DECODE else request.histories.get(stage)
            fingerprint = None if history is None else history.fingerprint
            key = (request.seed, stage.value, fingerprint) if upstream is None else (upstream, stage.value, fingerprint)
            if key in rows[stage]:
                reused.add(stage.value)
            else:
                rows[stage][key] = PlannedRow(stage, key, request.seed, history, upstream)
            keys[stage] = upstream = key
        planned.append(PlannedCell(request.seed, request.tag, keys, frozenset(reused)))
    return StagePlan(stages, tuple(planned), rows)


def count_stage_runs(cells: Iterable[Conditioning]) -> dict[str, int]:
    """Stage runs a plan needs per seed for ``cells`` (for the 8 cells: semantic 2, coarse 4,
    fine 8, decode 8), from the cells' ids alone (no prompt needed)."""
    cells = list(cells)
    # the decoder reads the fine stage's output: it runs as often as the fine stage
    return {
        stage.value: len({c.upstream(Stage.FINE if stage is Stage.DECODE else stage) for c in cells})
        for stage in PIPELINE_STAGES
    }
