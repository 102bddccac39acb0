"""The executor: runs a :class:`~bark_ablation.generation.plan.StagePlan` through a stage runner.

There is one engine. A runner with batched stages (:data:`~bark_ablation.core.implementation.BATCH_METHODS`)
is driven through :class:`BatchedCalls`, a runner that generates one row at a time through
:class:`OneRowCalls`, which runs each request as a batch of one, seeded from the request's
``torch_seed``. Either way the rows, their seeds, their sharing and their timings are the
plan's and this module's, written once.

Two orders:

* ``"stage"``: every row of the semantic stage, then every row of the coarse stage, and so on,
  ``batch_size`` rows per call (what batched runners want);
* ``"cell"``: cell by cell, each cell's missing rows as they are needed, so results stream out
  cell by cell (what one-row runners want: progress after every cell).

Tokens do not depend on the order: every row is seeded from (seed, stage) alone.

A :class:`StageObserver` sees every stage call (the rows, then their outputs); the KV-cache
oracle records each step's logits through it (:mod:`bark_ablation.oracles.kv_cache`).
"""

from __future__ import annotations

import contextlib
import functools
import time
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any, Literal, Protocol

import numpy as np

from bark_ablation.core.conditioning import Stage
from bark_ablation.core.device import synchronize
from bark_ablation.core.implementation import StageRequest, StageRunner, batch_method
from bark_ablation.core.params import GenerationParams
from bark_ablation.core.seeding import seeded_torch, stage_seed
from bark_ablation.generation.plan import PlannedCell, PlannedRow, RowKey, StagePlan

StageResult = tuple[np.ndarray, float]
"""A row's output (read-only array) and its share of the call's wall time, in seconds."""
Order = Literal["stage", "cell"]


class StageCalls(Protocol):
    """A runner seen as batches: ``run`` returns one output per request, in order, and the wall
    time of the stage's compute in seconds (device synchronized; seeding not counted)."""

    device: str

    def run(
        self, stage: Stage, requests: Sequence[StageRequest], params: GenerationParams
    ) -> tuple[list[np.ndarray], float]: ...


def timed(device: str, compute: Callable[[], Any]) -> tuple[Any, float]:
    """``compute()`` and its wall time in seconds, the device synchronized before and after (so
    a CUDA stage's queued kernels count)."""
    synchronize(device)
    started = time.perf_counter()
    result = compute()
    synchronize(device)
    return result, time.perf_counter() - started


class _RunnerCalls:
    """Stage calls on one activated runner, on its device."""

    def __init__(self, runner: StageRunner):
        self._runner = runner
        self.device = runner.device


class OneRowCalls(_RunnerCalls):
    """A one-row :class:`~bark_ablation.core.implementation.StageRunner` as batches: each request
    runs alone, with torch's global generator seeded from its ``torch_seed`` (and the caller's
    random state restored afterwards)."""

    def run(
        self, stage: Stage, requests: Sequence[StageRequest], params: GenerationParams
    ) -> tuple[list[np.ndarray], float]:
        outputs, seconds = [], 0.0
        for request in requests:
            if stage is Stage.DECODE:
                call = functools.partial(self._runner.decode, request.input)
            else:
                call = functools.partial(getattr(self._runner, stage.value), request.input, request.history, params)
            with seeded_torch(request.torch_seed, self.device):
                output, elapsed = timed(self.device, call)
            outputs.append(output)
            seconds += elapsed
        return outputs, seconds


class BatchedCalls(_RunnerCalls):
    """A runner with batched stage methods (``semantic_batch`` ...); those seed every row themselves."""

    def run(
        self, stage: Stage, requests: Sequence[StageRequest], params: GenerationParams
    ) -> tuple[list[np.ndarray], float]:
        method = batch_method(self._runner, stage.value)
        call = (
            functools.partial(method, requests)
            if stage is Stage.DECODE
            else functools.partial(method, requests, params)
        )
        outputs, seconds = timed(self.device, call)
        return list(outputs), seconds


def stage_calls(runner: StageRunner) -> tuple[StageCalls, Order]:
    """The calls adapter for ``runner`` and the order it runs best in: batched stages when the
    runner has them, one row at a time otherwise."""
    if batch_method(runner, Stage.SEMANTIC.value) is not None:
        return BatchedCalls(runner), "stage"
    return OneRowCalls(runner), "cell"


class StageObserver:
    """Sees every stage call of an execution. The default methods do nothing.

    ``calling(stage, rows)`` is a context manager entered around the call (outside its timing):
    the place to install a hook. ``called(stage, rows, outputs, seconds)`` receives the outputs,
    one per row, and each row's share of the call's wall time in seconds.
    """

    def calling(self, stage: Stage, rows: Sequence[PlannedRow]) -> contextlib.AbstractContextManager:
        return contextlib.nullcontext()

    def called(self, stage: Stage, rows: Sequence[PlannedRow], outputs: Sequence[np.ndarray], seconds: float) -> None:
        pass


def execute(
    plan: StagePlan,
    calls: StageCalls,
    *,
    text: str,
    params: GenerationParams,
    order: Order = "stage",
    batch_size: int = 1,
    observer: StageObserver | None = None,
    stage_runs: Counter | None = None,
    known: Mapping[RowKey, StageResult] | None = None,
) -> Iterator[tuple[PlannedCell, dict[Stage, StageResult]]]:
    """Run ``plan``: yield each planned cell with its stages' results, in plan order.

    ``text`` is what the semantic stage reads; ``batch_size`` the most rows per call in order
    ``"stage"`` (order ``"cell"`` runs each row alone); ``stage_runs`` counts the rows run per
    stage name. ``known``: results already computed (a resumed run's samples read back from
    disk), by row key; those rows are not run again, and rows downstream read them.
    """
    observer = observer or StageObserver()
    results: dict[RowKey, StageResult] = dict(known or {})

    def run_rows(stage: Stage, rows: Sequence[PlannedRow]) -> None:
        for start in range(0, len(rows), batch_size):
            chunk = rows[start : start + batch_size]
            requests = [
                StageRequest(
                    text if row.upstream is None else results[row.upstream][0],
                    row.history,
                    stage_seed(row.seed, stage.value),
                )
                for row in chunk
            ]
            with observer.calling(stage, chunk):
                outputs, seconds = calls.run(stage, requests, params)
            if len(outputs) != len(chunk):
                raise RuntimeError(
                    f"the {stage.value} stage returned {len(outputs)} outputs for {len(chunk)} rows: a batched "
                    f"method must return one output per request, in order"
                )
            seconds /= len(chunk)
            arrays = []
            for row, output in zip(chunk, outputs, strict=True):
                array = np.asarray(output)
                array.setflags(write=False)
                results[row.key] = (array, seconds)
                arrays.append(array)
            observer.called(stage, chunk, arrays, seconds)
            if stage_runs is not None:
                stage_runs[stage.value] += len(chunk)

    def cell_results(cell: PlannedCell) -> dict[Stage, StageResult]:
        return {stage: results[cell.keys[stage]] for stage in plan.stages}

    if order == "stage":
        for stage in plan.stages:
            run_rows(stage, [row for key, row in plan.rows[stage].items() if key not in results])
        for cell in plan.cells:
            yield cell, cell_results(cell)
    elif order == "cell":
        for cell in plan.cells:
            for stage in plan.stages:
                if cell.keys[stage] not in results:
                    run_rows(stage, [plan.rows[stage][cell.keys[stage]]])
            yield cell, cell_results(cell)
    else:
        raise ValueError(f"order must be 'stage' or 'cell', got {order!r}")
