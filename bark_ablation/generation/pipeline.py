"""The pipeline: text + voice prompt + conditioning + seed -> tokens of every stage and audio.

Each stage is seeded from (seed, stage) alone (:mod:`bark_ablation.core.seeding`), so a stage's
output is a function of its input tokens, the history it receives and the seed. Within one
matrix run the results of a stage are therefore shared by every cell that agrees on that stage
and on everything upstream of it: the 8-cell matrix runs the semantic stage 2 times, coarse 4,
fine 8 and the decoder 8 (22 runs instead of 32). A shared result is bit-identical to what a
fresh single-cell run computes; the test suite checks that.

A runner with batched stages (:data:`~bark_ablation.core.implementation.BATCH_METHODS`) is handed the
run stage by stage instead: every distinct semantic row of every seed and cell at once, then every
distinct coarse row, and so on, at most ``batch_size`` rows per call. Each row is seeded from
(seed, stage) by the runner, so the same rows are shared and the same seeds drawn as above.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Hashable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from bark_ablation.core.conditioning import (
    ALL_CONDITIONINGS,
    Conditioning,
    HistorySource,
    Stage,
)
from bark_ablation.core.controls import stage_history
from bark_ablation.core.device import synchronize
from bark_ablation.core.errors import ParamsError
from bark_ablation.core.implementation import ModelSet, StageRequest, StageRunner, batch_method
from bark_ablation.core.params import GenerationParams, validate_seed, validate_text
from bark_ablation.core.profiles import DEFAULT_PROFILE, Profile, get_profile
from bark_ablation.core.prompts import VoicePrompt, load_prompt
from bark_ablation.core.seeding import seeded_stage, stage_seed
from bark_ablation.implementations.registry import activated, get_model_set

SAMPLE_RATE = 24_000
"""Bark's output sample rate, Hz."""
STAGE_NAMES = ("semantic", "coarse", "fine", "decode")


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


def generate(
    text: str,
    prompt: VoicePrompt | str,
    conditioning: Conditioning | str,
    seed: int,
    params: GenerationParams | None = None,
    *,
    model_set: ModelSet | str = "tiny",
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
    model_set: ModelSet | str = "tiny",
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
    inputs are validated before any stage runs.
    ``on_result(generation, index, total)`` is called after each cell.

    ``batch_size``: most rows per stage call for an implementation with batched stages (default:
    what the runner's memory allows, its ``max_batch_size``); tokens may depend on it through the
    rounding of batched matrix products, so it is recorded in the run. Implementations without
    batched stages accept only ``None`` or 1.
    """
    text = validate_text(text)
    voice = load_prompt(prompt)
    other = None if other_prompt is None else load_prompt(other_prompt)
    seed_list = tuple(validate_seed(seed) for seed in seeds)
    cells = tuple(_as_conditioning(c) for c in conditionings)
    if not seed_list:
        raise ParamsError("seeds", "must name at least one seed")
    if not cells:
        raise ParamsError("conditionings", "must name at least one cell")
    if len(set(seed_list)) != len(seed_list) or len(set(cells)) != len(cells):
        raise ParamsError("seeds/conditionings", "must not repeat a seed or a cell")
    needs_other = [c.id for c in cells if HistorySource.OTHER_SPEAKER in c.upstream(Stage.FINE)]
    if needs_other and other is None:
        raise ParamsError(
            "other_prompt",
            f"cells {', '.join(needs_other)} give a stage another speaker's history ('o'): name that speaker's prompt",
        )
    if batch_size is not None and (isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1):
        raise ParamsError("batch_size", f"must be a positive integer, got {batch_size!r}")
    if other is not None and other.fingerprint == voice.fingerprint:
        raise ParamsError(
            "other_prompt", f"must be another speaker's prompt; {other.name!r} has the same tokens as {voice.name!r}"
        )
    profile = get_profile(profile or DEFAULT_PROFILE) if not isinstance(profile, Profile) else profile
    params = profile.params() if params is None else params
    profile.check(params)
    models = get_model_set(model_set) if isinstance(model_set, str) else model_set
    run = MatrixRun(text, voice, seed_list, cells, params, models, profile=profile, other_prompt=other)
    total = len(seed_list) * len(cells)
    with activated(models) as runner:
        if batch_method(runner, "semantic") is not None:
            run.batch_size = batch_size or runner.max_batch_size
            for generation in _BatchedStages(runner, run, profile.name).generate():
                run.generations.append(generation)
                if on_result is not None:
                    on_result(generation, len(run.generations), total)
            return run
        if batch_size not in (None, 1):
            raise ParamsError(
                "batch_size",
                f"implementation {models.implementation!r} generates one row at a "
                f"time; batch sizes above 1 need batched stages (implementation "
                f"'batched'), got {batch_size}",
            )
        for seed in seed_list:
            stages = _SharedStages(runner, text, voice, seed, params, run.stage_runs, other, profile.name)
            for conditioning in cells:
                generation = stages.generate(conditioning)
                run.generations.append(generation)
                if on_result is not None:
                    on_result(generation, len(run.generations), total)
    return run


def _as_conditioning(value: Conditioning | str) -> Conditioning:
    return value if isinstance(value, Conditioning) else Conditioning.from_id(value)


class _SharedStages:
    """Stage results of one (text, prompt, seed), keyed by everything each result depends on.

    The key of a stage's result is the key of its input plus the fingerprint of the history it
    receives (``None`` when unconditioned), so equal keys mean equal inputs, equal history and
    equal seed: the result can be shared. Keys use fingerprints, not conditioning flags, so
    conditions that feed a stage some other prompt share correctly too.
    """

    def __init__(
        self,
        runner: StageRunner,
        text: str,
        prompt: VoicePrompt,
        seed: int,
        params: GenerationParams,
        counter: Counter,
        other_prompt: VoicePrompt | None = None,
        profile: str = DEFAULT_PROFILE,
    ):
        self._other_prompt = other_prompt
        self._profile = profile
        self._runner = runner
        self._text = text
        self._prompt = prompt
        self._seed = seed
        self._params = params
        self._counter = counter
        self._results: dict[Hashable, tuple[np.ndarray, float]] = {}

    def generate(self, conditioning: Conditioning) -> Generation:
        def history(stage: Stage) -> VoicePrompt | None:
            return stage_history(conditioning.source(stage), stage, self._prompt, self._seed, self._other_prompt)

        runner, params = self._runner, self._params
        seconds: dict[str, float] = {}
        reused: set[str] = set()

        h_sem, h_coarse, h_fine = history(Stage.SEMANTIC), history(Stage.COARSE), history(Stage.FINE)
        key: Hashable = ("semantic", _fingerprint(h_sem))
        semantic = self._run("semantic", key, seconds, reused, lambda: runner.semantic(self._text, h_sem, params))
        key = (key, "coarse", _fingerprint(h_coarse))
        coarse = self._run("coarse", key, seconds, reused, lambda: runner.coarse(semantic, h_coarse, params))
        key = (key, "fine", _fingerprint(h_fine))
        fine = self._run("fine", key, seconds, reused, lambda: runner.fine(coarse, h_fine, params))
        key = (key, "decode")
        audio = self._run("decode", key, seconds, reused, lambda: runner.decode(fine))
        return Generation(
            text=self._text,
            prompt=self._prompt.name,
            conditioning=conditioning,
            seed=self._seed,
            params=params,
            semantic=semantic,
            coarse=coarse,
            fine=fine,
            audio=audio,
            stage_seconds=seconds,
            reused=frozenset(reused),
            profile=self._profile,
            other_prompt=None
            if self._other_prompt is None or HistorySource.OTHER_SPEAKER not in conditioning.upstream(Stage.FINE)
            else self._other_prompt.name,
        )

    def _run(
        self, stage: str, key: Hashable, seconds: dict[str, float], reused: set[str], compute: Callable[[], np.ndarray]
    ) -> np.ndarray:
        if key in self._results:
            result, elapsed = self._results[key]
            reused.add(stage)
        else:
            with seeded_stage(self._seed, stage, self._runner.device):
                synchronize(self._runner.device)
                start = time.perf_counter()
                result = compute()
                synchronize(self._runner.device)
                elapsed = time.perf_counter() - start
            result = np.asarray(result)
            result.setflags(write=False)
            self._results[key] = (result, elapsed)
            self._counter[stage] += 1
        seconds[stage] = elapsed
        return result


class _BatchedStages:
    """A run, stage by stage: every distinct row of a stage is planned first, then run in batches.

    Keys are those of :class:`_SharedStages` with the seed in front, so a row is shared exactly
    when the one-row path would share it.
    """

    def __init__(self, runner: StageRunner, run: MatrixRun, profile: str):
        self._runner = runner
        self._run = run
        self._profile = profile

    def generate(self) -> list[Generation]:
        run = self._run
        rows: dict[str, dict[Hashable, tuple[int, VoicePrompt | None, Hashable]]] = {stage: {} for stage in STAGE_NAMES}
        plans = []
        for seed in run.seeds:
            for conditioning in run.conditionings:
                keys, reused = {}, set()
                upstream: Hashable = None
                for stage in STAGE_NAMES:
                    history = (
                        None
                        if stage == "decode"
                        else stage_history(
                            conditioning.source(Stage(stage)), Stage(stage), run.prompt, seed, run.other_prompt
                        )
                    )
                    key = (
                        (seed, "semantic", _fingerprint(history))
                        if stage == "semantic"
                        else (upstream, stage, _fingerprint(history))
                    )
                    if key in rows[stage]:
                        reused.add(stage)
                    else:
                        rows[stage][key] = (seed, history, upstream)
                    keys[stage] = upstream = key
                plans.append((seed, conditioning, keys, frozenset(reused)))
        results: dict[Hashable, tuple[np.ndarray, float]] = {}
        for stage in STAGE_NAMES:
            self._run_stage(stage, list(rows[stage].items()), results)
        generations = []
        for seed, conditioning, keys, reused in plans:
            outputs = {stage: results[keys[stage]] for stage in STAGE_NAMES}
            generations.append(
                Generation(
                    text=run.text,
                    prompt=run.prompt.name,
                    conditioning=conditioning,
                    seed=seed,
                    params=run.params,
                    semantic=outputs["semantic"][0],
                    coarse=outputs["coarse"][0],
                    fine=outputs["fine"][0],
                    audio=outputs["decode"][0],
                    stage_seconds={stage: outputs[stage][1] for stage in STAGE_NAMES},
                    reused=reused,
                    profile=self._profile,
                    other_prompt=None
                    if run.other_prompt is None or HistorySource.OTHER_SPEAKER not in conditioning.upstream(Stage.FINE)
                    else run.other_prompt.name,
                )
            )
        return generations

    def _run_stage(self, stage: str, pending: list, results: dict) -> None:
        run, method = self._run, batch_method(self._runner, stage)
        for start in range(0, len(pending), run.batch_size):
            chunk = pending[start : start + run.batch_size]
            requests = [
                StageRequest(
                    run.text if stage == "semantic" else results[upstream][0], history, stage_seed(seed, stage)
                )
                for _, (seed, history, upstream) in chunk
            ]
            synchronize(self._runner.device)
            started = time.perf_counter()
            outputs = method(requests) if stage == "decode" else method(requests, run.params)
            synchronize(self._runner.device)
            elapsed = (time.perf_counter() - started) / len(chunk)
            for (key, _), output in zip(chunk, outputs):
                result = np.asarray(output)
                result.setflags(write=False)
                results[key] = (result, elapsed)
            run.stage_runs[stage] += len(chunk)


def _fingerprint(prompt: VoicePrompt | None) -> str | None:
    return None if prompt is None else prompt.fingerprint


def count_stage_runs(cells: Sequence[Conditioning]) -> dict[str, int]:
    """Stage runs :func:`run_matrix` needs per seed for ``cells`` (for the 8 cells: semantic 2,
    coarse 4, fine 8, decode 8)."""
    return {
        "semantic": len({c.upstream(Stage.SEMANTIC) for c in cells}),
        "coarse": len({c.upstream(Stage.COARSE) for c in cells}),
        "fine": len({c.upstream(Stage.FINE) for c in cells}),
        "decode": len({c.upstream(Stage.FINE) for c in cells}),
    }
