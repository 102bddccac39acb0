"""The pipeline: text + voice prompt + conditioning + seed -> tokens of every stage and audio.

:func:`run_matrix` validates its inputs into a :class:`MatrixRequest` (the boundary), plans the
stage rows every (seed, cell) needs (:mod:`bark_ablation.generation.plan`: a stage's result is
shared by every cell that agrees on that stage and everything upstream of it, 22 runs for the
8-cell matrix instead of 32) and runs the plan through the one executor
(:mod:`bark_ablation.generation.engine`): row by row for one-row runners, stage by stage in
batches for runners with batched stages. A shared result is bit-identical to what a fresh
single-cell run computes; the test suite checks that.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from bark_ablation.core.conditioning import (
    ALL_CONDITIONINGS,
    PIPELINE_STAGE_NAMES,
    Conditioning,
    HistorySource,
    Stage,
    needs_other_speaker,
    validate_cells,
)
from bark_ablation.core.errors import ParamsError
from bark_ablation.core.implementation import ModelSet
from bark_ablation.core.params import GenerationParams, validate_batch_size, validate_seeds, validate_text
from bark_ablation.core.profiles import DEFAULT_PROFILE, Profile, get_profile
from bark_ablation.core.prompts import VoicePrompt, load_prompt
from bark_ablation.generation.engine import execute, stage_calls
from bark_ablation.generation.plan import count_stage_runs, plan_stages
from bark_ablation.implementations.registry import activated, get_model_set
from bark_ablation.models.catalogue import DEFAULT_MODEL_SET

SAMPLE_RATE = 24_000
"""Bark's output sample rate, Hz."""
STAGE_NAMES = PIPELINE_STAGE_NAMES
"""The stages a generation times, in order (re-exported from :mod:`bark_ablation.core.conditioning`)."""
__all__ = [
    "SAMPLE_RATE",
    "STAGE_NAMES",
    "Generation",
    "MatrixRequest",
    "MatrixRun",
    "ProgressCallback",
    "count_stage_runs",
    "generate",
    "resolve_profile",
    "run_matrix",
    "run_request",
]


@dataclass(frozen=True, eq=False)
class Generation:
    """One cell of one seed: every stage's output and how long each stage took.

    Attributes:
        semantic: semantic tokens, shape (T_s,), 49.9 per second.
        coarse: coarse codes, shape (2, T_c), 75 frames per second.
        fine: fine codes, shape (8, T_c); rows 0-1 equal ``coarse``.
        audio: float32 samples at :data:`SAMPLE_RATE` Hz, T_c * 320 of them.
        stage_seconds: wall time of each stage's run (``semantic``, ``coarse``, ``fine``,
            ``decode``), in seconds; for a stage in ``reused`` it is the time of the run whose
            result this cell shares; for a batched stage, the batch's wall time divided by its
            rows (so the rows' times add up to the batches').
        reused: stages whose result was shared with an earlier cell of the same matrix.
    """

    text: str
    prompt: str
    conditioning: Conditioning
    seed: int
    params: GenerationParams
    semantic: np.ndarray
    coarse: np.ndarray
    fine: np.ndarray
    audio: np.ndarray
    stage_seconds: dict[str, float]
    reused: frozenset[str] = frozenset()
    sample_rate: int = SAMPLE_RATE
    other_prompt: str | None = None
    """Name of the other speaker's prompt, for cells with an ``o`` (other-speaker) history."""
    profile: str = DEFAULT_PROFILE
    """Name of the generation profile (:mod:`bark_ablation.core.profiles`) whose parameters ``params`` hold."""

    @property
    def cell(self) -> str:
        """The conditioning id, e.g. ``s-f``."""
        return self.conditioning.id

    @property
    def duration_s(self) -> float:
        """Audio duration in seconds."""
        return self.audio.shape[-1] / self.sample_rate

    @property
    def label(self) -> str:
        """``seed<seed>_<cell>``: the stem of this generation's files (seed first, so that no
        file name starts with ``-``)."""
        return f"seed{self.seed}_{self.cell}"

    def summary(self) -> dict[str, Any]:
        """JSON-ready description (no arrays)."""
        return {
            "cell": self.cell,
            "conditioning": self.conditioning.description,
            "seed": self.seed,
            "semantic_tokens": int(self.semantic.shape[-1]),
            "coarse_frames": int(self.coarse.shape[-1]),
            "samples": int(self.audio.shape[-1]),
            "duration_s": round(self.duration_s, 4),
            "stage_seconds": {k: round(v, 4) for k, v in self.stage_seconds.items()},
            "reused_stages": sorted(self.reused),
            "profile": self.profile,
            **({"other_prompt": self.other_prompt} if self.other_prompt else {}),
        }


@dataclass
class MatrixRun:
    """Results of :func:`run_matrix`: one :class:`Generation` per (cell, seed)."""

    text: str
    prompt: VoicePrompt
    seeds: tuple[int, ...]
    conditionings: tuple[Conditioning, ...]
    params: GenerationParams
    model_set: ModelSet
    generations: list[Generation] = field(default_factory=list)
    stage_runs: Counter = field(default_factory=Counter)
    """How many times each stage actually ran (``semantic``, ``coarse``, ``fine``, ``decode``)."""
    profile: Profile = field(default_factory=lambda: get_profile(DEFAULT_PROFILE))
    """The generation profile ``params`` follow."""
    other_prompt: VoicePrompt | None = None
    """The speaker whose history cells with an ``o`` received (None when no cell needed one)."""
    batch_size: int = 1
    """Most rows a stage ran per call (1: one row at a time)."""

    def get(self, cell: Conditioning | str, seed: int) -> Generation:
        """The generation of ``cell`` (a Conditioning or its id) and ``seed``."""
        cell_id = cell if isinstance(cell, str) else cell.id
        for generation in self.generations:
            if generation.cell == cell_id and generation.seed == seed:
                return generation
        raise KeyError(f"no generation for cell {cell_id!r} and seed {seed}")


ProgressCallback = Callable[[Generation, int, int], None]


@dataclass(frozen=True)
class MatrixRequest:
    """What one matrix run generates, valid: built by :meth:`build` at a boundary (or from an
    already validated :class:`~bark_ablation.study.design.StudyDesign`); :func:`run_request`
    takes it as it is."""

    text: str
    prompt: VoicePrompt
    seeds: tuple[int, ...]
    cells: tuple[Conditioning, ...]
    params: GenerationParams
    profile: Profile
    other_prompt: VoicePrompt | None = None
    """The speaker whose history cells with an ``o`` receive (None when no cell needs one)."""
    batch_size: int | None = None
    """Most rows per stage call; ``None``: what the runner's memory allows."""

    @classmethod
    def build(
        cls,
        text: str,
        prompt: VoicePrompt | str,
        seeds: Iterable[int],
        conditionings: Iterable[Conditioning | str] = ALL_CONDITIONINGS,
        params: GenerationParams | None = None,
        *,
        other_prompt: VoicePrompt | str | None = None,
        profile: Profile | str | None = None,
        batch_size: int | None = None,
    ) -> MatrixRequest:
        """Validate every input before anything runs; errors name the field and the rule."""
        text = validate_text(text)
        voice = load_prompt(prompt)
        other = None if other_prompt is None else load_prompt(other_prompt)
        seed_list = validate_seeds(seeds)
        cells = validate_cells(conditionings)
        needs_other = needs_other_speaker(cells)
        if needs_other and other is None:
            raise ParamsError(
                "other_prompt",
                f"cells {', '.join(needs_other)} give a stage another speaker's history ('o'): name that speaker's prompt",
            )
        batch_size = validate_batch_size(batch_size)
        if other is not None and other.fingerprint == voice.fingerprint:
            raise ParamsError(
                "other_prompt",
                f"must be another speaker's prompt; {other.name!r} has the same tokens as {voice.name!r}",
            )
        profile, params = resolve_profile(profile, params)
        return cls(text, voice, seed_list, cells, params, profile, other, batch_size)


def resolve_profile(profile: Profile | str | None, params: GenerationParams | None) -> tuple[Profile, GenerationParams]:
    """The profile (default ``default``) and the parameters a run uses: the profile's own without
    ``params``; with them, ``params`` after checking they hold the profile's settings."""
    profile = profile if isinstance(profile, Profile) else get_profile(profile or DEFAULT_PROFILE)
    params = profile.params() if params is None else params
    profile.check(params)
    return profile, params


def generate(
    text: str,
    prompt: VoicePrompt | str,
    conditioning: Conditioning | str,
    seed: int,
    params: GenerationParams | None = None,
    *,
    model_set: ModelSet | str = DEFAULT_MODEL_SET,
    other_prompt: VoicePrompt | str | None = None,
    profile: Profile | str | None = None,
) -> Generation:
    """Generate one cell: a single (text, prompt, conditioning, seed), every stage run fresh."""
    return run_matrix(
        text, prompt, [seed], [conditioning], params, model_set=model_set, other_prompt=other_prompt, profile=profile
    ).generations[0]


def run_matrix(
    text: str,
    prompt: VoicePrompt | str,
    seeds: Iterable[int],
    conditionings: Iterable[Conditioning | str] = ALL_CONDITIONINGS,
    params: GenerationParams | None = None,
    *,
    model_set: ModelSet | str = DEFAULT_MODEL_SET,
    on_result: ProgressCallback | None = None,
    other_prompt: VoicePrompt | str | None = None,
    profile: Profile | str | None = None,
    batch_size: int | None = None,
) -> MatrixRun:
    """Generate every (conditioning, seed) pair, sharing stage results between cells.

    ``prompt`` is a :class:`VoicePrompt` or anything :func:`~bark_ablation.core.prompts.load_prompt`
    accepts; ``model_set`` a :class:`ModelSet` or a name (built on CPU). Cells may be controls
    (:data:`~bark_ablation.core.conditioning.CONTROLS`); those with an other-speaker history (``o``)
    need ``other_prompt``. ``profile`` (a :class:`~bark_ablation.core.profiles.Profile` or its name;
    default ``default``) is recorded with every generation: without ``params`` the profile's
    parameters are used, with ``params`` they must already hold the profile's settings. All
    inputs are validated before any stage runs (:meth:`MatrixRequest.build`).
    ``on_result(generation, index, total)`` is called after each cell.

    ``batch_size``: most rows per stage call for an implementation with batched stages (default:
    what the runner's memory allows, its ``max_batch_size``); tokens may depend on it through the
    rounding of batched matrix products, so it is recorded in the run. Implementations without
    batched stages accept only ``None`` or 1.
    """
    request = MatrixRequest.build(
        text,
        prompt,
        seeds,
        conditionings,
        params,
        other_prompt=other_prompt,
        profile=profile,
        batch_size=batch_size,
    )
    models = get_model_set(model_set) if isinstance(model_set, str) else model_set
    return run_request(request, models, on_result=on_result)


def run_request(
    request: MatrixRequest,
    model_set: ModelSet,
    *,
    on_result: ProgressCallback | None = None,
    done: Mapping[tuple[int, str], Generation] | None = None,
) -> MatrixRun:
    """Generate a validated :class:`MatrixRequest` on ``model_set``: plan its stage rows, run them
    through the executor, and build one :class:`Generation` per (seed, cell) in plan order.

    ``done``: generations already made, by (seed, cell id) (a resumed run's samples read back from
    disk): their rows are not run again, and the cells that share a row with them read it; they are
    in the run's generations but not reported to ``on_result``, which sees only new samples. Every
    row is seeded from (seed, stage) alone, so the rest come out as in an uninterrupted run (for
    batched runners, up to the rounding of other batch compositions)."""
    run = MatrixRun(
        request.text,
        request.prompt,
        request.seeds,
        request.cells,
        request.params,
        model_set,
        profile=request.profile,
        other_prompt=request.other_prompt,
    )
    plan = plan_stages(request.seeds, request.cells, request.prompt, request.other_prompt)
    total = len(plan.cells)
    known = {}
    for cell in plan.cells:
        previous = (done or {}).get((cell.seed, cell.conditioning.id))
        if previous is not None:
            arrays = {
                Stage.SEMANTIC: previous.semantic,
                Stage.COARSE: previous.coarse,
                Stage.FINE: previous.fine,
                Stage.DECODE: previous.audio,
            }
            for stage in plan.stages:
                known[cell.keys[stage]] = (arrays[stage], previous.stage_seconds.get(stage.value, 0.0))
    with activated(model_set) as runner:
        calls, order = stage_calls(runner)
        if order == "stage":
            run.batch_size = request.batch_size or runner.max_batch_size
        elif request.batch_size not in (None, 1):
            raise ParamsError(
                "batch_size",
                f"implementation {model_set.implementation!r} generates one row at a time; batch sizes above 1 "
                f"need batched stages (implementation 'batched'), got {request.batch_size}",
            )
        for cell, outputs in execute(
            plan,
            calls,
            text=request.text,
            params=request.params,
            order=order,
            batch_size=run.batch_size,
            stage_runs=run.stage_runs,
            known=known,
        ):
            generation = Generation(
                text=request.text,
                prompt=request.prompt.name,
                conditioning=cell.conditioning,
                seed=cell.seed,
                params=request.params,
                semantic=outputs[Stage.SEMANTIC][0],
                coarse=outputs[Stage.COARSE][0],
                fine=outputs[Stage.FINE][0],
                audio=outputs[Stage.DECODE][0],
                stage_seconds={stage.value: seconds for stage, (_, seconds) in outputs.items()},
                reused=cell.reused,
                profile=request.profile.name,
                other_prompt=(
                    request.other_prompt.name
                    if request.other_prompt is not None
                    and HistorySource.OTHER_SPEAKER in cell.conditioning.upstream(Stage.FINE)
                    else None
                ),
            )
            run.generations.append(generation)
            if on_result is not None and (cell.seed, cell.conditioning.id) not in (done or {}):
                on_result(generation, len(run.generations), total)
    return run
