"""Whole-study throughput: samples per second of one implementation and batch size on the same work.

A :class:`StudyWork` is a fixed piece of a study: one or more speakers, one text, some cells and
seeds, under parameters with early stop off (every row generates the same number of tokens, so a
round's work does not depend on where sampling stops). :func:`measure` runs it through the
pipeline (:func:`~bark_ablation.generation.pipeline.run_matrix`, stage reuse included) on one
implementation at one batch size and returns samples per second with the time per stage. The benchmarks in
``tests/suite/test_benchmarks.py`` time the same function with pytest-benchmark, so saved runs compare
across implementations, batch sizes and Bark versions.
"""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass, field

from bark_ablation.core.device import synchronize
from bark_ablation.core.implementation import ModelSet
from bark_ablation.core.params import GenerationParams
from bark_ablation.core.profiles import ALL_CELLS
from bark_ablation.generation.pipeline import STAGE_NAMES, MatrixRun, run_matrix


@dataclass(frozen=True)
class StudyWork:
    """A fixed slice of a study: every prompt x the text x every cell x every seed.

    ``params`` should have ``allow_early_stop=False`` so that every round does the same work.
    """

    prompts: tuple[str, ...]
    text: str
    seeds: tuple[int, ...]
    params: GenerationParams
    cells: tuple[str, ...] = ALL_CELLS
    other_prompt: str | None = None

    @property
    def samples(self) -> int:
        """Generations (audio clips) the work produces."""
        return len(self.prompts) * len(self.cells) * len(self.seeds)


@dataclass
class Throughput:
    """One measurement: ``samples`` clips in ``seconds`` (wall time, s), stage by stage."""

    implementation: str
    batch_size: int
    samples: int
    seconds: float
    stage_seconds: dict[str, float] = field(default_factory=dict)
    stage_runs: dict[str, int] = field(default_factory=dict)

    @property
    def samples_per_second(self) -> float:
        return self.samples / self.seconds

    def to_dict(self) -> dict:
        return {
            "implementation": self.implementation,
            "batch_size": self.batch_size,
            "samples": self.samples,
            "seconds": round(self.seconds, 4),
            "samples_per_second": round(self.samples_per_second, 5),
            "stage_seconds": {k: round(v, 4) for k, v in self.stage_seconds.items()},
            "stage_runs": dict(self.stage_runs),
        }


def run_work(work: StudyWork, model_set: ModelSet, batch_size: int | None = None) -> list[MatrixRun]:
    """Generate ``work`` once on ``model_set`` (``batch_size`` for batched implementations only)."""
    runs = []
    for prompt in work.prompts:
        runs.append(
            run_matrix(
                work.text,
                prompt,
                work.seeds,
                work.cells,
                work.params,
                model_set=model_set,
                other_prompt=work.other_prompt,
                batch_size=batch_size,
            )
        )
    synchronize(model_set.device)
    return runs


def measure(work: StudyWork, model_set: ModelSet, batch_size: int | None = None) -> Throughput:
    """Time one pass of ``work``; stage times are the runs' own (a reused result counts once)."""
    started = time.perf_counter()
    runs = run_work(work, model_set, batch_size)
    seconds = time.perf_counter() - started
    stage_seconds: Counter = Counter()
    stage_runs: Counter = Counter()
    for run in runs:
        stage_runs.update(run.stage_runs)
        for generation in run.generations:
            for stage in STAGE_NAMES:
                if stage not in generation.reused:
                    stage_seconds[stage] += generation.stage_seconds[stage]
    return Throughput(
        model_set.implementation,
        batch_size or runs[0].batch_size,
        work.samples,
        seconds,
        dict(stage_seconds),
        dict(stage_runs),
    )
