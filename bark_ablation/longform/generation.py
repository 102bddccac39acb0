"""Long-form generation: every speaker says every passage, chunk by chunk, under every policy.

A :class:`LongformDesign` crosses voice prompts x passages (each split into chunks by
:mod:`bark_ablation.longform.chunking`) x seeds x history policies
(:mod:`bark_ablation.longform.policies`). :func:`run_longform` generates one (speaker, passage)
unit at a time, and within it one chunk index at a time: chunk k of every (seed, policy) is one
plan (:func:`~bark_ablation.generation.plan.plan_rows`) run by the one executor
(:mod:`bark_ablation.generation.engine`), so a batched implementation batches every seed and
policy of that chunk, and rows whose inputs are equal are run once. Chunk k's history for a
stage the policy carries over is chunk k - 1's full generation of the same (seed, policy), as a
:class:`~bark_ablation.core.prompts.VoicePrompt` (validated by Bark's rules, so a chunk too short
to serve as history is a named error, not Bark's bare assert).

Sharing: the first chunk of every policy is the same generation (one row per stage and seed);
at chunk index 1 every policy still reads the same first chunk, so policies that give a stage the same
source share that stage's row as well.

Each stage of a chunk is seeded from (seed, stage) (:mod:`bark_ablation.core.seeding`), as in a
matrix run: the chunk index does not enter the seed, so chunks differ by their text and history.

Every chunk records where each stage's history came from as the plan ran it (``sources``: the
prompt, or the previous chunk, told apart by the history's fingerprint) and how many chunks in a
row each stage has carried the history over (``carried``): what a reader, or the planted drift
of :mod:`bark_ablation.longform.planting`, checks the policy against.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from bark_ablation.core.conditioning import FULL, STAGES, Stage
from bark_ablation.core.errors import ParamsError, PromptError
from bark_ablation.core.implementation import ModelSet
from bark_ablation.core.params import GenerationParams, validate_batch_size, validate_seeds
from bark_ablation.core.profiles import Profile
from bark_ablation.core.prompts import VoicePrompt, load_prompt
from bark_ablation.generation.engine import execute, stage_calls
from bark_ablation.generation.pipeline import SAMPLE_RATE, Generation, resolve_profile
from bark_ablation.generation.plan import RowRequest, plan_rows
from bark_ablation.implementations.registry import activated
from bark_ablation.longform.chunking import MAX_CHUNK_CHARS, Passage, chunk_passages
from bark_ablation.longform.policies import ALL_POLICIES, Policy, validate_policies
from bark_ablation.study.design import check_unique, safe_name

PROMPT_SOURCE = "prompt"
PREVIOUS_SOURCE = "previous"
JOIN_SILENCE_S = 0.25
"""Silence between joined chunks, seconds: Bark's long-form notebook appends 0.25 s of zeros
after every sentence."""


@dataclass(frozen=True)
class LongformDesign:
    """Prompts x passages x seeds x policies, validated by :meth:`build`."""

    prompts: tuple[VoicePrompt, ...]
    passages: tuple[Passage, ...]
    seeds: tuple[int, ...]
    policies: tuple[Policy, ...]
    max_chunk_chars: int = MAX_CHUNK_CHARS

    @classmethod
    def build(
        cls,
        prompts: Sequence[VoicePrompt | str],
        passages: Sequence[str],
        seeds: Iterable[int],
        policies: Iterable[Policy | str] = ALL_POLICIES,
        *,
        max_chunk_chars: int = MAX_CHUNK_CHARS,
        passages_field: str = "passages",
    ) -> LongformDesign:
        """Validate every input before anything runs; errors name the field and the rule
        (``passages_field``: how errors name the passages, e.g. the file they came from)."""
        if isinstance(prompts, (str, VoicePrompt)):
            prompts = [prompts]
        voices = tuple(load_prompt(p) for p in prompts)
        if not voices:
            raise ParamsError("prompts", "must name at least one voice prompt")
        check_unique("prompts", [v.fingerprint for v in voices], [v.name for v in voices])
        names: dict[str, str] = {}
        for voice in voices:  # files, units and scores are keyed by the speaker's name
            if safe_name(voice.name) in names:
                raise ParamsError(
                    "prompts",
                    f"{voice.name!r} and {names[safe_name(voice.name)]!r} name one speaker (file names "
                    f"{safe_name(voice.name)!r}); give the prompt files distinct names",
                )
            names[safe_name(voice.name)] = voice.name
        chunked = chunk_passages(passages, max_chars=max_chunk_chars, field=passages_field)
        return cls(voices, chunked, validate_seeds(seeds), validate_policies(policies), max_chunk_chars)

    @property
    def units(self) -> list[tuple[VoicePrompt, Passage]]:
        """Every (speaker, passage) pair, speaker-major."""
        return [(prompt, passage) for prompt in self.prompts for passage in self.passages]

    @property
    def n_chunks(self) -> int:
        """Chunks the design yields (policies counted apart, shared first chunks too)."""
        return len(self.prompts) * sum(len(p.chunks) for p in self.passages) * len(self.seeds) * len(self.policies)


@dataclass(frozen=True, eq=False)
class ChunkGeneration:
    """One chunk of one (speaker, passage, policy, seed) run.

    Attributes:
        semantic, coarse, fine, audio: as in :class:`~bark_ablation.generation.pipeline.Generation`
            (tokens; float32 samples at :attr:`sample_rate` Hz).
        stage_seconds: each stage's wall time, seconds (a shared row's time is its run's).
        reused: stages whose row an earlier (seed, policy) of this chunk index computed.
        sources: stage name -> ``"prompt"`` or ``"previous"``: the history that stage received,
            as the plan ran it.
        carried: stage name -> how many chunks in a row, ending with this one, that stage's
            history was the previous chunk's (0: the prompt).
    """

    prompt: str
    passage: int
    policy: Policy
    seed: int
    chunk: int
    text: str
    semantic: np.ndarray
    coarse: np.ndarray
    fine: np.ndarray
    audio: np.ndarray
    stage_seconds: dict[str, float]
    reused: frozenset[str]
    sources: Mapping[str, str]
    carried: Mapping[str, int]
    sample_rate: int = SAMPLE_RATE

    @property
    def duration_s(self) -> float:
        """Audio duration, seconds."""
        return self.audio.shape[-1] / self.sample_rate

    @property
    def run_key(self) -> tuple[str, int, str, int]:
        """(speaker, passage, policy name, seed): the run this chunk belongs to."""
        return self.prompt, self.passage, self.policy.name, self.seed

    @property
    def label(self) -> str:
        """``seed<seed>_<policy>_c<chunk>``: the stem of the chunk's files."""
        return f"seed{self.seed}_{self.policy.name}_c{self.chunk}"

    def as_history(self, implementation: str | None = None) -> VoicePrompt:
        """The chunk's full generation as a voice prompt (semantic, coarse, fine tokens: Bark's
        ``output_full``), validated by Bark's rules.

        ``implementation``: the one that generated the chunk. transformers' coarse stage can emit
        codes 1024-1071 in its second codebook (known issue ``transformers-coarse-special-tokens``,
        :mod:`bark_ablation.implementations.known_issues`), which its own fine stage reads modulo
        1024; where exactly that explains the out-of-range codes, they are carried over as
        transformers itself reads them, and the history's name says so.

        A chunk whose lengths break the ratio Bark's coarse stage asserts (a short chunk of the
        ``early-stop`` profile) is carried over as its newest tokens that keep it
        (:func:`aligned_tail`); the history's name says so.

        Raises :class:`ParamsError` naming the chunk when Bark could not take it as history even
        so (a chunk of one semantic token, codes out of range).
        """
        from bark_ablation.implementations.known_issues import TRANSFORMERS_COARSE_SPECIAL_TOKENS, explain

        name = f"{self.prompt}~{self.policy.name}-seed{self.seed}-p{self.passage}c{self.chunk}"
        coarse = self.coarse
        if implementation is not None and explain(self, implementation) is TRANSFORMERS_COARSE_SPECIAL_TOKENS:
            coarse = np.asarray(coarse).copy()
            coarse[1] %= 1024
            name += f" (coarse wrapped modulo 1024: {TRANSFORMERS_COARSE_SPECIAL_TOKENS.id})"
        semantic, coarse, fine, trimmed = aligned_tail(self.semantic, coarse, self.fine)
        if trimmed:
            name += f" (newest {len(semantic)} semantic tokens and {coarse.shape[1]} frames: Bark's 1.5 ratio)"
        try:
            return VoicePrompt.from_arrays(
                name,
                {"semantic_prompt": semantic, "coarse_prompt": coarse, "fine_prompt": fine},
                source=f"chunk {self.chunk} of passage {self.passage} ({self.policy.name}, seed {self.seed})",
            )
        except PromptError as error:
            raise ParamsError(
                "policies",
                f"policy {self.policy.name!r} carries chunk {self.chunk} of passage {self.passage + 1} "
                f"(speaker {self.prompt}, seed {self.seed}) over as history, but Bark cannot take it: {error}",
            ) from None


def aligned_tail(
    semantic: np.ndarray, coarse: np.ndarray, fine: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray, bool]:
    """The newest tokens of a generation that Bark's coarse stage accepts as history, and whether
    any were dropped.

    Bark asserts ``round(coarse frames / semantic tokens, 1) == 1.5`` of a history, while its own
    coarse stage makes ``floor(1.503 * T_s)`` frames from T_s semantic tokens: the rule fails for
    T_s = 1, 3, 5, 7 and 9 (e.g. 7 tokens give 10 frames, 1.43). Such a generation is cut from
    its start, where history matters least (Bark reads a history's end), to the longest tail
    ``(t_s, t_c)`` with ``t_c = min(T_c, round(1.5 * t_s))`` that keeps the rule: 7 and 10
    become 6 and 9. A generation that keeps the rule passes whole (every T_s >= 10). Written here because Bark has no such
    helper: it only asserts.
    """
    n_semantic, n_frames = len(semantic), coarse.shape[1]
    if n_semantic and round(n_frames / n_semantic, 1) == 1.5:
        return semantic, coarse, fine, False
    for tokens in range(n_semantic - 1, 0, -1):
        frames = min(n_frames, round(1.5 * tokens))
        if frames and round(frames / tokens, 1) == 1.5:
            trimmed = tokens != n_semantic or frames != n_frames
            return semantic[-tokens:], coarse[:, n_frames - frames :], fine[:, n_frames - frames :], trimmed
    return semantic, coarse, fine, False  # nothing keeps the rule: the prompt's validation names it


ChunkCallback = Callable[[ChunkGeneration, int, int], None]


@dataclass
class LongformRun:
    """Results of :func:`run_longform`: every chunk, in design order (speaker, passage, chunk
    index, seed, policy)."""

    design: LongformDesign
    params: GenerationParams
    profile: Profile
    model_set: ModelSet
    chunks: list[ChunkGeneration] = field(default_factory=list)
    stage_runs: Counter = field(default_factory=Counter)
    """Rows each stage ran (shared rows once)."""
    stage_rows: Counter = field(default_factory=Counter)
    """Rows each stage would have run with nothing shared."""
    batch_size: int = 1

    def runs(self) -> dict[tuple[str, int, str, int], list[ChunkGeneration]]:
        """(speaker, passage, policy name, seed) -> its chunks in order."""
        grouped: dict[tuple[str, int, str, int], list[ChunkGeneration]] = {}
        for chunk in self.chunks:
            grouped.setdefault(chunk.run_key, []).append(chunk)
        for chunks in grouped.values():
            chunks.sort(key=lambda c: c.chunk)
        return grouped


def chunk_history(policy: Policy, stage: Stage, prompt: VoicePrompt, previous: VoicePrompt | None) -> VoicePrompt:
    """The history ``stage`` receives under ``policy``: the previous chunk's generation where the
    policy carries that stage over and a previous chunk exists, else the voice prompt."""
    return previous if previous is not None and policy.carries(stage) else prompt


def run_longform(
    design: LongformDesign,
    params: GenerationParams | None = None,
    *,
    model_set: ModelSet,
    profile: Profile | str | None = None,
    batch_size: int | None = None,
    on_chunk: ChunkCallback | None = None,
) -> LongformRun:
    """Generate every chunk of ``design`` on ``model_set`` (any implementation).

    ``profile`` and ``params`` as in :func:`~bark_ablation.generation.pipeline.run_matrix`;
    ``batch_size``: most rows per stage call for implementations with batched stages (default:
    what the runner's memory allows). ``on_chunk(chunk, index, total)`` is called after each
    chunk (index counts over the design).
    """
    profile, params = resolve_profile(profile, params)
    batch_size = validate_batch_size(batch_size)
    run = LongformRun(design, params, profile, model_set)
    total = design.n_chunks
    with activated(model_set) as runner:
        calls, order = stage_calls(runner)
        if order == "stage":
            run.batch_size = batch_size or runner.max_batch_size
        elif batch_size not in (None, 1):
            raise ParamsError(
                "batch_size",
                f"implementation {model_set.implementation!r} generates one row at a time; batch sizes above 1 "
                f"need batched stages (implementation 'batched'), got {batch_size}",
            )
        for prompt, passage in design.units:
            previous: dict[tuple[int, Policy], ChunkGeneration] = {}
            for index, text in enumerate(passage.chunks):
                carried_over = {  # only where a policy carries something over: a prompt-only run never needs it
                    key: chunk.as_history(model_set.implementation)
                    for key, chunk in previous.items()
                    if key[1].carried_stages
                }
                requests = [
                    RowRequest(
                        seed,
                        (seed, policy),
                        {
                            stage: chunk_history(policy, stage, prompt, carried_over.get((seed, policy)))
                            for stage in STAGES
                        },
                    )
                    for seed in design.seeds
                    for policy in design.policies
                ]
                plan = plan_rows(requests)
                for stage in plan.stages:
                    run.stage_rows[stage.value] += len(plan.cells)
                for cell, outputs in execute(
                    plan,
                    calls,
                    text=text,
                    params=params,
                    order=order,
                    batch_size=run.batch_size,
                    stage_runs=run.stage_runs,
                ):
                    seed, policy = cell.tag
                    before = previous.get((seed, policy))
                    sources = {
                        stage.value: _source(plan.rows[stage][cell.keys[stage]].history, prompt) for stage in STAGES
                    }
                    carried = {
                        name: (before.carried[name] + 1 if before else 1) if source == PREVIOUS_SOURCE else 0
                        for name, source in sources.items()
                    }
                    chunk = ChunkGeneration(
                        prompt=prompt.name,
                        passage=passage.index,
                        policy=policy,
                        seed=seed,
                        chunk=index,
                        text=text,
                        semantic=outputs[Stage.SEMANTIC][0],
                        coarse=outputs[Stage.COARSE][0],
                        fine=outputs[Stage.FINE][0],
                        audio=outputs[Stage.DECODE][0],
                        stage_seconds={stage.value: seconds for stage, (_, seconds) in outputs.items()},
                        reused=cell.reused,
                        sources=sources,
                        carried=carried,
                    )
                    previous[(seed, policy)] = chunk
                    run.chunks.append(chunk)
                    if on_chunk is not None:
                        on_chunk(chunk, len(run.chunks), total)
    return run


def as_generation(run: LongformRun, chunk: ChunkGeneration) -> Generation:
    """``chunk`` as a :class:`~bark_ablation.generation.pipeline.Generation` (cell ``scf``: every
    stage conditioned on a history), for the checks and golden store written for generations.
    Name its golden case apart (``case=`` of the golden check): the cell does not say which
    history each stage received."""
    return Generation(
        text=chunk.text,
        prompt=chunk.prompt,
        conditioning=FULL,
        seed=chunk.seed,
        params=run.params,
        semantic=chunk.semantic,
        coarse=chunk.coarse,
        fine=chunk.fine,
        audio=chunk.audio,
        stage_seconds=dict(chunk.stage_seconds),
        reused=chunk.reused,
        sample_rate=chunk.sample_rate,
        profile=run.profile.name,
    )


def check_carry_over(run: LongformRun, chunk: ChunkGeneration) -> None:
    """Regenerate ``chunk`` as one cell of a matrix run and compare its tokens.

    The cell gives each stage the history the policy promises: the voice prompt (the stage's
    letter), or the previous chunk's full generation passed as the other speaker's prompt (``o``),
    so ``pcf`` is checked as cell ``ocf`` with the previous chunk as the other speaker. Matrix
    runs choose histories by :mod:`bark_ablation.core.controls`, not by this module, so a policy
    that silently conditions on the prompt fails here.

    Raises :class:`~bark_ablation.core.checks.CheckFailure` naming the stage whose tokens differ.
    """
    from bark_ablation.core.checks import assert_tokens_equal
    from bark_ablation.generation.pipeline import run_matrix

    runs = run.runs()[chunk.run_key]
    previous = runs[chunk.chunk - 1] if chunk.chunk > 0 else None
    cell = "".join("o" if previous is not None and chunk.policy.carries(stage) else stage.value[0] for stage in STAGES)
    prompt = next(p for p in run.design.prompts if p.name == chunk.prompt)
    expected = run_matrix(
        chunk.text,
        prompt,
        [chunk.seed],
        [cell],
        run.params,
        model_set=run.model_set,
        other_prompt=previous.as_history(run.model_set.implementation) if "o" in cell else None,
        profile=run.profile,
    ).generations[0]
    for stage in STAGES:
        assert_tokens_equal(
            getattr(expected, stage.value),
            getattr(chunk, stage.value),
            f"{stage.value} tokens of {chunk.label} ({chunk.prompt}, passage {chunk.passage}) against cell {cell}",
            compare_dtype=False,
        )


def _source(history: VoicePrompt | None, prompt: VoicePrompt) -> str:
    if history is None:
        return "none"
    return PROMPT_SOURCE if history.fingerprint == prompt.fingerprint else PREVIOUS_SOURCE


def joined_audio(chunks: Sequence[ChunkGeneration]) -> np.ndarray:
    """The chunks' audio joined as Bark's long-form notebook joins them: each chunk followed by
    :data:`JOIN_SILENCE_S` seconds of silence. Float32 at the chunks' sample rate."""
    if not chunks:
        raise ValueError("joined_audio: no chunks")
    rate = chunks[0].sample_rate
    silence = np.zeros(int(round(JOIN_SILENCE_S * rate)), dtype=np.float32)
    pieces = []
    for chunk in sorted(chunks, key=lambda c: c.chunk):
        pieces += [np.asarray(chunk.audio, dtype=np.float32), silence]
    return np.concatenate(pieces)


def unit_id(prompt: str, passage: int) -> str:
    """``<prompt>_p<passage>``, file-system safe: a unit's directory name."""
    return f"{safe_name(prompt)}_p{passage}"


def design_summary(design: LongformDesign) -> dict[str, Any]:
    """JSON-ready description of a design."""
    return {
        "prompts": [
            {"name": p.name, "source": p.source, "fingerprint": p.fingerprint, "frames": p.n_frames}
            for p in design.prompts
        ],
        "passages": [{"id": p.id, "text": p.text, "chunks": list(p.chunks)} for p in design.passages],
        "seeds": list(design.seeds),
        "policies": [{"id": p.id, "name": p.name, "description": p.description} for p in design.policies],
        "max_chunk_chars": design.max_chunk_chars,
        "join_silence_s": JOIN_SILENCE_S,
    }
