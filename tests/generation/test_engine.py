"""The plan and the one executor: rows shared as the cells' ids say, the same tokens in either
order, every row seen once by an observer, results streamed cell by cell, and a batched method
that loses a row named."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest

from bark_ablation.core.conditioning import ALL_CONDITIONINGS, Conditioning, Stage
from bark_ablation.core.params import GenerationParams
from bark_ablation.generation.engine import OneRowCalls, StageObserver, execute
from bark_ablation.generation.plan import count_stage_runs, plan_stages
from bark_ablation.implementations.registry import activated
from bark_ablation.testing.matrix import REGRESSION_TEXT

SHORT = GenerationParams(max_duration_s=0.4)
CELLS = tuple(Conditioning.from_id(cell) for cell in ("scf", "s--", "-cf", "---"))


@pytest.fixture(scope="module")
def prompt(voice_prompts):
    return voice_prompts["en_speaker_0"]


def test_the_plan_shares_rows_as_the_cells_ids_say(prompt):
    plan = plan_stages([0, 1], ALL_CONDITIONINGS, prompt)
    per_seed = count_stage_runs(ALL_CONDITIONINGS)
    assert per_seed == {"semantic": 2, "coarse": 4, "fine": 8, "decode": 8}
    assert plan.runs_per_stage() == {stage: 2 * runs for stage, runs in per_seed.items()}
    first, second = (cell for cell in plan.cells if cell.seed == 0 and cell.conditioning.id in ("scf", "sc-"))
    assert first.keys[Stage.COARSE] == second.keys[Stage.COARSE] and first.keys[Stage.FINE] != second.keys[Stage.FINE]
    assert second.reused == frozenset({"semantic", "coarse"})


def test_a_control_history_is_never_shared_with_the_prompts(prompt):
    """Known-bad twin of the sharing: ``rcf`` reads a random semantic history, so it shares no
    row with ``scf`` although both condition every stage."""
    plan = plan_stages([0], [Conditioning.from_id("scf"), Conditioning.from_id("rcf")], prompt)
    assert plan.runs_per_stage() == {"semantic": 2, "coarse": 2, "fine": 2, "decode": 2}
    assert plan.cells[1].reused == frozenset()


def test_stages_must_be_a_prefix_of_the_pipeline(prompt):
    with pytest.raises(ValueError, match="prefix"):
        plan_stages([0], CELLS, prompt, stages=(Stage.COARSE,))


def test_stage_order_and_cell_order_give_identical_tokens(tiny_models, prompt):
    plan = plan_stages([3], CELLS, prompt)
    with activated(tiny_models) as runner:
        by_order = {
            order: list(execute(plan, OneRowCalls(runner), text=REGRESSION_TEXT, params=SHORT, order=order))
            for order in ("stage", "cell")
        }
    assert [cell for cell, _ in by_order["stage"]] == [cell for cell, _ in by_order["cell"]] == list(plan.cells)
    for (_, in_stage_order), (_, in_cell_order) in zip(by_order["stage"], by_order["cell"], strict=True):
        for stage in plan.stages:
            np.testing.assert_array_equal(in_stage_order[stage][0], in_cell_order[stage][0])


class Recorder(StageObserver):
    def __init__(self):
        self.events = []

    def calling(self, stage, rows):
        self.events.append(("calling", stage, tuple(row.key for row in rows)))
        return super().calling(stage, rows)

    def called(self, stage, rows, outputs, seconds):
        assert len(outputs) == len(rows) and seconds > 0
        self.events.append(("called", stage, tuple(row.key for row in rows)))


def test_the_observer_sees_every_row_once_and_results_stream_cell_by_cell(tiny_models, prompt):
    plan = plan_stages([0], CELLS, prompt)
    recorder, stage_runs = Recorder(), Counter()
    runs_before_each_cell = []
    with activated(tiny_models) as runner:
        for _ in execute(
            plan,
            OneRowCalls(runner),
            text=REGRESSION_TEXT,
            params=SHORT,
            order="cell",
            observer=recorder,
            stage_runs=stage_runs,
        ):
            runs_before_each_cell.append(sum(stage_runs.values()))
    called = [key for event, _, keys in recorder.events if event == "called" for key in keys]
    assert sorted(map(repr, called)) == sorted(repr(key) for rows in plan.rows.values() for key in rows)
    assert [event for event, _, _ in recorder.events] == ["calling", "called"] * len(called)
    assert dict(stage_runs) == plan.runs_per_stage()
    assert runs_before_each_cell[0] == len(plan.stages) < runs_before_each_cell[-1] == len(called)


class LosesARow:
    """Stage calls whose batched method returns one output fewer than it was given rows."""

    device = "cpu"

    def run(self, stage, requests, params):
        return [np.zeros(3, dtype=np.int64)] * (len(requests) - 1), 0.0


def test_a_batched_method_that_loses_a_row_is_named(prompt):
    plan = plan_stages([0], CELLS, prompt)
    with pytest.raises(RuntimeError, match="semantic stage returned 1 outputs for 2 rows"):
        list(execute(plan, LosesARow(), text=REGRESSION_TEXT, params=SHORT, order="stage", batch_size=2))
