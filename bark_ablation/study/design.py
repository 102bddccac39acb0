"""A study's design: which speakers (voice prompts) say which texts, in which cells, with which seeds.

The speaker is the study's unit of replication: a finding about one speaker saying one sentence
is an anecdote. A :class:`StudyDesign` crosses every prompt with every text, cell and seed;
:func:`run_design` generates each (prompt, text) unit as one matrix run
(:func:`~bark_ablation.generation.pipeline.run_request`), so stage results are still shared between
the cells of one seed.

Cells with another speaker's history (``o``) need that speaker's prompt. With one prompt it is
named explicitly (``other_prompt``); with several prompts and no explicit one, each prompt's
"other speaker" is the next prompt in the list (the last one's is the first), a fixed rotation
written into the run's summary.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from bark_ablation.core.conditioning import Conditioning, needs_other_speaker, validate_cells
from bark_ablation.core.errors import ParamsError
from bark_ablation.core.implementation import ModelSet
from bark_ablation.core.params import GenerationParams, validate_batch_size, validate_seeds, validate_text
from bark_ablation.core.profiles import Profile
from bark_ablation.core.prompts import VoicePrompt, load_prompt
from bark_ablation.generation.pipeline import Generation, MatrixRequest, MatrixRun, resolve_profile, run_request


@dataclass(frozen=True)
class Unit:
    """One (speaker, text) pair of a design: ``text_index`` counts from 0 in the design's texts."""

    prompt: VoicePrompt
    text_index: int
    text: str
    other_prompt: VoicePrompt | None

    @property
    def id(self) -> str:
        """A file-system-safe id, ``<prompt>_t<text index>`` (``v2/en_speaker_0`` -> ``v2_en_speaker_0_t0``)."""
        return f"{safe_name(self.prompt.name)}_t{self.text_index}"


@dataclass(frozen=True)
class Shard:
    """Part ``index`` of ``count`` (1-based) of a design's units: units ``index - 1``,
    ``index - 1 + count``, ... in :attr:`StudyDesign.units` order (round robin, so every shard
    holds speakers from the whole list). Shards run apart (SLURM array tasks, CI matrix jobs);
    ``bark-ablation merge`` of every shard gives the study one run would have written."""

    index: int
    count: int

    @classmethod
    def parse(cls, text: str, field: str = "--shard") -> Shard:
        """``"I/N"`` with 1 <= I <= N."""
        match = re.fullmatch(r"\s*(\d+)\s*/\s*(\d+)\s*", str(text))
        if not match:
            raise ParamsError(field, f"must be I/N (this job's part I of N, from 1), got {text!r}")
        index, count = int(match.group(1)), int(match.group(2))
        if not 1 <= index <= count:
            raise ParamsError(field, f"must be I/N with 1 <= I <= N, got {text!r}")
        return cls(index, count)

    @property
    def label(self) -> str:
        return f"{self.index}/{self.count}"


@dataclass(frozen=True)
class StudyDesign:
    """Prompts x texts x cells x seeds, validated by :meth:`build`."""

    prompts: tuple[VoicePrompt, ...]
    texts: tuple[str, ...]
    seeds: tuple[int, ...]
    cells: tuple[Conditioning, ...]
    other_prompts: tuple[VoicePrompt | None, ...]
    """Per prompt, the speaker whose history ``o`` cells receive (None when no cell needs one)."""

    @classmethod
    def build(
        cls,
        prompts: Sequence[VoicePrompt | str],
        texts: Sequence[str],
        seeds: Iterable[int],
        cells: Iterable[Conditioning | str],
        *,
        other_prompt: VoicePrompt | str | None = None,
    ) -> StudyDesign:
        """Validate every input before anything runs; errors name the field and the rule."""
        voices = tuple(load_prompt(p) for p in prompts)
        if not voices:
            raise ParamsError("prompts", "must name at least one voice prompt")
        check_unique("prompts", [v.fingerprint for v in voices], [v.name for v in voices])
        text_list = tuple(validate_text(t) for t in texts)
        if not text_list:
            raise ParamsError("texts", "must give at least one text")
        check_unique("texts", list(text_list), [repr(t) for t in text_list])
        seed_list = validate_seeds(seeds)
        cell_list = validate_cells(cells)
        needs_other = bool(needs_other_speaker(cell_list))
        others: tuple[VoicePrompt | None, ...] = (None,) * len(voices)
        if other_prompt is not None:
            other = load_prompt(other_prompt)
            clash = [v.name for v in voices if v.fingerprint == other.fingerprint]
            if clash:
                raise ParamsError(
                    "other_prompt",
                    f"{other.name!r} is also a study prompt ({clash[0]!r}); with "
                    f"several prompts leave it out to pair each with the next",
                )
            others = (other,) * len(voices)
        elif needs_other and len(voices) >= 2:
            others = tuple(voices[(i + 1) % len(voices)] for i in range(len(voices)))
        elif needs_other:
            raise ParamsError(
                "other_prompt",
                "cells with an 'o' (other-speaker) history need another speaker: name one, or give several prompts",
            )
        return cls(voices, text_list, seed_list, cell_list, others)

    @property
    def units(self) -> list[Unit]:
        """Every (prompt, text) pair, prompt-major."""
        return [
            Unit(prompt, index, text, other)
            for prompt, other in zip(self.prompts, self.other_prompts, strict=True)
            for index, text in enumerate(self.texts)
        ]

    @property
    def n_generations(self) -> int:
        return len(self.prompts) * len(self.texts) * len(self.cells) * len(self.seeds)

    def shard_units(self, shard: Shard | None, field: str = "--shard") -> list[Unit]:
        """The units of ``shard`` (every unit for ``None``); a shard count above the number of
        units is refused by name (a shard would be empty)."""
        units = self.units
        if shard is None:
            return units
        if shard.count > len(units):
            raise ParamsError(
                field,
                f"{shard.label}: the study has {len(units)} units (speakers x texts), so at most "
                f"{len(units)} shards; got {shard.count}",
            )
        return units[shard.index - 1 :: shard.count]

    @property
    def is_single_unit(self) -> bool:
        """One prompt and one text: the run directory has the single-run layout."""
        return len(self.prompts) == 1 and len(self.texts) == 1


@dataclass
class DesignRun:
    """Results of :func:`run_design`: one :class:`MatrixRun` per unit run, in :attr:`StudyDesign.units`
    order; ``units`` are those units (all of them unless the run was one ``shard``)."""

    design: StudyDesign
    runs: list[MatrixRun]
    units: list[Unit] | None = None
    shard: Shard | None = None
    reference_audio: dict[str, np.ndarray] | None = None
    """Prompt name -> its fine codes decoded by the model set (float32, 24 kHz), where the run
    decoded them already (on Ray workers, :mod:`bark_ablation.study.ray_executor`); ``None``: the
    study decodes them."""

    def __post_init__(self) -> None:
        if self.units is None:
            self.units = self.design.units

    @property
    def is_single_unit(self) -> bool:
        """One unit and not a shard: the run directory has the single-run layout."""
        return self.design.is_single_unit and self.shard is None

    @property
    def generations(self) -> list[Generation]:
        return [g for run in self.runs for g in run.generations]

    @property
    def stage_runs(self) -> Counter:
        """How many times each stage ran, over every unit."""
        return sum((run.stage_runs for run in self.runs), Counter())


def run_design(
    design: StudyDesign,
    params: GenerationParams | None = None,
    *,
    model_set: ModelSet,
    profile: Profile | str | None = None,
    on_result: Callable[[Generation, int, int], None] | None = None,
    batch_size: int | None = None,
    shard: Shard | None = None,
    done: Mapping[str, Mapping[tuple[int, str], Generation]] | None = None,
) -> DesignRun:
    """Generate every unit of ``design`` on ``model_set``; ``on_result(generation, index, total)``
    counts over the whole design. The design is valid already (:meth:`StudyDesign.build`); the
    profile, parameters and batch size are checked once here, before any unit runs.
    ``batch_size``: see :func:`~bark_ablation.generation.pipeline.run_matrix` (each unit's rows
    are batched together). ``shard``: run only that shard's units (:class:`Shard`). ``done``: unit
    id -> generations already made (a resumed run's samples), which are not made again."""
    profile, params = resolve_profile(profile, params)
    batch_size = validate_batch_size(batch_size)
    units = design.shard_units(shard)
    total = len(units) * len(design.cells) * len(design.seeds)
    finished = 0

    def progress(generation: Generation, index: int, unit_total: int) -> None:
        if on_result is not None:
            on_result(generation, finished + index, total)

    runs = []
    for unit in units:
        request = MatrixRequest(
            unit.text, unit.prompt, design.seeds, design.cells, params, profile, unit.other_prompt, batch_size
        )
        runs.append(run_request(request, model_set, on_result=progress, done=(done or {}).get(unit.id)))
        finished += len(runs[-1].generations)
    return DesignRun(design, runs, units, shard)


def read_texts_file(path: Path | str) -> list[str]:
    """Texts from a UTF-8 file, one per line; blank lines and lines starting with ``#`` are skipped.

    Raises :class:`ParamsError` naming ``--texts-file`` when the file is unreadable or holds no text.
    """
    try:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as error:
        raise ParamsError("--texts-file", f"{path}: unreadable ({error})") from None
    texts = [line.strip() for line in lines if line.strip() and not line.lstrip().startswith("#")]
    if not texts:
        raise ParamsError("--texts-file", f"{path}: holds no text (one per line; '#' starts a comment)")
    return texts


def safe_name(name: str) -> str:
    """``name`` with every character outside ``[A-Za-z0-9._-]`` replaced by ``_``."""
    return re.sub(r"[^A-Za-z0-9._-]", "_", name)


def check_unique(field: str, keys: list[str], labels: list[str]) -> None:
    """Raise :class:`ParamsError` naming ``field`` when two ``keys`` are equal (``labels`` name them)."""
    seen: dict[str, str] = {}
    for key, label in zip(keys, labels, strict=True):
        if key in seen:
            raise ParamsError(field, f"{label} repeats {seen[key]} (same tokens or text); each must be distinct")
        seen[key] = label
