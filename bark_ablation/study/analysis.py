"""The speaker-identity study: SECS of every generation against its speaker, and the statistics.

Flow: a :class:`~bark_ablation.study.design.DesignRun` (speakers x texts x cells x seeds) ->
:func:`score_design` (SECS of each generation against its own speaker's reference audio, i.e.
the prompt's fine codes decoded by the same model set's codec, and, where a cell gave some stage
another speaker's history, against that other speaker's reference too) -> :func:`analyse` ->
:func:`write_study` (``study.json`` and CSVs).

**The unit of replication.** With two or more speakers the unit is the speaker: for each
speaker, the scores of a cell are averaged over texts and seeds, and every interval and test is
then across speakers (a two-stage "summary statistics" analysis). With one speaker the unit is
the seed (averaged over texts), and the answer is about that speaker only; the report says so.

Why summary statistics rather than a mixed model: the design is balanced (every speaker has
every cell x text x seed), and for a balanced design the fixed effect of a random-intercept,
random-slope model equals the mean of the per-speaker effects and its test reduces to the
one-sample t-test across speakers with n - 1 degrees of freedom, which is what is done here. It
keeps the study free of statsmodels/pandas, and the per-speaker values it rests on are what the
forest plot shows.

**Identity transfer** (cells ``ocf``, ``sof``, ``sco``: ``scf`` with one stage's history taken from
another speaker). For each replicate, the identity margin of a generation is
``m = SECS(generation, other speaker) - SECS(generation, own speaker)``. The transfer index of
stage X is ``ITI_X = m(scf with X = o) - m(scf)``: how far handing stage X the other speaker's
history moves the output toward that speaker and away from its own, in SECS units. 0 means the
stage carries no identity; ``m(ooo) - m(scf)`` is the ceiling, all three stages swapped.

On the tiny model set the scores are those of noise-like audio: the study runs as plumbing and
makes no claim about identity.
"""

from __future__ import annotations

import csv
import json
import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from bark_ablation.core.conditioning import ALL_CONDITIONINGS, FULL, TOKEN_STAGE_NAMES, TRANSFER_CELLS
from bark_ablation.generation.pipeline import SAMPLE_RATE, Generation, MatrixRun
from bark_ablation.study import power
from bark_ablation.study.similarity import cached_embedding, prompt_reference_audio, secs
from bark_ablation.study.speaker_encoders import DEFAULT_ENCODER, encoder_label, get_encoder
from bark_ablation.study.statistics import (
    ALPHA,
    CONFIDENCE,
    Estimate,
    adjust_family,
    cell_estimates,
    factorial_effects,
    paired_differences,
    t_estimate,
)

REFERENCE_WAV = "reference.wav"
"""The prompt's reference audio, in the run's ``audio/`` directory."""
TOTAL_TRANSFER_CELL = "ooo"
"""All three stages given the other speaker's history: the transfer ceiling."""
DETECTABLE_SECS = 0.02
"""The effect size (SECS units) the power statement asks about."""
POWER = 0.8
"""Power the study's power statement asks for."""
MAIN_EFFECTS = TOKEN_STAGE_NAMES
"""The factorial main effects: one per token stage."""


@dataclass(frozen=True)
class Score:
    """One generation's SECS against its own speaker (``secs``) and, when the unit has another
    speaker, against that speaker (``secs_other``; None otherwise)."""

    prompt: str
    text_index: int
    cell: str
    seed: int
    secs: float
    secs_other: float | None = None


@dataclass
class StudyResult:
    """Scores and statistics of a study.

    Attributes:
        scores: one :class:`Score` per generation.
        unit: ``"speaker"`` (two or more speakers) or ``"seed"`` (one speaker).
        levels: the speakers, texts and seeds, in design order.
        cells: per-cell mean SECS over units with 95 % t-intervals.
        differences: per cell, mean of (cell - scf) over units, with t-interval, p and Holm-adjusted p.
        effects: factorial main effects and interactions (empty unless all 8 on/off cells ran).
        transfer: identity-transfer index per stage (empty unless the transfer cells ran).
        transfer_ceiling: the same index for ``ooo`` (None unless it ran).
        per_speaker: speaker -> factorial effects within that speaker (over texts x seeds).
        power: per main effect, the smallest effect detected with 80 % power, and how many
            units (speakers or seeds) would detect :data:`DETECTABLE_SECS`.
        seconds_per_score: mean wall time of one embedding + SECS, seconds.
    """

    scores: list[Score]
    unit: str
    levels: dict[str, list]
    cells: list[Estimate]
    differences: list[Estimate]
    effects: list[Estimate]
    transfer: list[Estimate] = field(default_factory=list)
    transfer_ceiling: Estimate | None = None
    per_speaker: dict[str, list[Estimate]] = field(default_factory=dict)
    power: dict[str, dict[str, Any]] = field(default_factory=dict)
    seconds_per_score: float = math.nan
    reference: dict[str, Any] = field(default_factory=dict)
    reference_audio: dict[str, np.ndarray] = field(default_factory=dict)
    """Speaker name -> reference audio (float32, :data:`SAMPLE_RATE` Hz), written beside the generations."""

    def score_map(self) -> dict[tuple[str, int], float]:
        """(cell, seed) -> SECS; only for one speaker and one text."""
        if len(self.levels["speakers"]) != 1 or len(self.levels["texts"]) != 1:
            raise ValueError("score_map: only defined for one speaker and one text")
        return {(s.cell, s.seed): s.secs for s in self.scores}

    @property
    def encoder_label(self) -> str:
        """The speaker encoder in words, from ``reference["speaker_encoder"]`` (Resemblyzer's
        GE2E where a study predates the record)."""
        return encoder_label(self.reference.get("speaker_encoder"))

    def to_dict(self) -> dict[str, Any]:
        return {
            "metric": f"SECS: cosine similarity of {self.encoder_label} embeddings, generation vs the "
            "prompt's reference audio (its fine codes decoded by the same codec)",
            "confidence": CONFIDENCE,
            "unit": self.unit,
            "levels": self.levels,
            "n": {name: len(values) for name, values in self.levels.items()},
            "interval": "Student t over units; p: two-sided one-sample t-test of 0; "
            "p_adjusted: Holm within each family (differences; factorial terms; transfer)",
            "reference": self.reference,
            "scores": [asdict(s) for s in self.scores],
            "cells": [e.to_dict() for e in self.cells],
            "differences_vs_full": [e.to_dict() for e in self.differences],
            "factorial_effects": [e.to_dict() for e in self.effects],
            "identity_transfer": [e.to_dict() for e in self.transfer],
            "identity_transfer_ceiling": None if self.transfer_ceiling is None else self.transfer_ceiling.to_dict(),
            "per_speaker_effects": {
                speaker: [e.to_dict() for e in effects] for speaker, effects in self.per_speaker.items()
            },
            "power": self.power,
            "seconds_per_score": self.seconds_per_score,
        }


AudioTransform = Callable[[Generation, Mapping[str, np.ndarray]], np.ndarray]
"""(generation, speaker name -> reference audio) -> the audio to score in place of the generation's."""


def score_runs(
    runs: Sequence[MatrixRun],
    *,
    device: str = "cpu",
    transform: AudioTransform | None = None,
    references: Mapping[str, np.ndarray] | None = None,
    embedding_cache: dict[bytes, np.ndarray] | None = None,
    texts: Sequence[str] | None = None,
    encoder: str = DEFAULT_ENCODER,
) -> tuple[list[Score], dict[str, np.ndarray], float]:
    """SECS of every generation of ``runs`` against its own speaker's reference audio and, for
    runs with another speaker, against that speaker's too.

    ``texts``: the design's texts, whose positions are the scores' ``text_index`` (default: the
    runs' texts in first-seen order; a shard's runs may hold only some of the design's texts).

    ``transform(generation, references)`` (optional) returns the audio to score in place of
    ``generation.audio``; ``references`` maps speaker name -> reference audio. It exists to
    plant known effects (:mod:`bark_ablation.study.planting`).

    ``references`` (optional): speaker name -> reference audio already decoded by
    :func:`~bark_ablation.study.similarity.prompt_reference_audio` for these runs' model set, so
    that scoring the same runs several times decodes each prompt once.

    ``embedding_cache`` (optional): a dict kept by the caller across calls; audio already
    embedded (same samples, same rate) is not embedded again. Scoring one run under several
    plants then embeds only what each plant changed.

    Returns the scores, the reference audio per speaker, and seconds per score.
    """
    cache = embedding_cache if embedding_cache is not None else {}

    def embedding_of(audio: np.ndarray, rate: int, source: str) -> np.ndarray:
        return cached_embedding(cache, audio, rate, source=source, device=device, encoder=encoder)

    given = dict(references or {})
    references = {}
    embeddings: dict[str, np.ndarray] = {}
    for run in runs:
        for voice in (run.prompt, run.other_prompt):
            if voice is not None and voice.name not in references:
                references[voice.name] = (
                    given[voice.name] if voice.name in given else prompt_reference_audio(voice, run.model_set)
                )
                embeddings[voice.name] = embedding_of(
                    references[voice.name], SAMPLE_RATE, f"reference of prompt {voice.name!r}"
                )
    text_index = {text: i for i, text in enumerate(texts if texts is not None else dict.fromkeys(r.text for r in runs))}
    scores = []
    started = time.perf_counter()
    count = 0
    for run in runs:
        for generation in run.generations:
            audio = generation.audio if transform is None else transform(generation, references)
            embedding = embedding_of(audio, generation.sample_rate, generation.label)
            other = None if run.other_prompt is None else secs(embeddings[run.other_prompt.name], embedding)
            scores.append(
                Score(
                    run.prompt.name,
                    text_index[run.text],
                    generation.cell,
                    generation.seed,
                    secs(embeddings[run.prompt.name], embedding),
                    other,
                )
            )
            count += 1
    return scores, references, (time.perf_counter() - started) / max(count, 1)


def analyse(
    scores: Sequence[Score] | Mapping[tuple[str, int], float],
    seconds_per_score: float = math.nan,
    reference: dict[str, Any] | None = None,
    *,
    texts: Sequence[str] | None = None,
) -> StudyResult:
    """Every estimate of the study from its scores (a mapping ``(cell, seed) -> SECS`` is read
    as one speaker saying one text)."""
    rows = _as_scores(scores)
    speakers = list(dict.fromkeys(s.prompt for s in rows))
    text_indices = sorted({s.text_index for s in rows})
    seeds = sorted({s.seed for s in rows})
    unit = "speaker" if len(speakers) >= 2 else "seed"
    cells_present = {s.cell for s in rows}
    has_factorial = all(c.id in cells_present for c in ALL_CONDITIONINGS)
    by_unit = unit_values(rows, unit)
    effects = factorial_effects(by_unit) if has_factorial else []
    per_speaker = {}
    if unit == "speaker" and has_factorial:
        per_speaker = {
            speaker: factorial_effects(unit_values([s for s in rows if s.prompt == speaker], "replicate"))
            for speaker in speakers
        }
    transfer, ceiling = identity_transfer(rows, unit)
    result = StudyResult(
        scores=list(rows),
        unit=unit,
        levels={
            "speakers": speakers,
            "texts": list(texts) if texts is not None else [f"t{i}" for i in text_indices],
            "seeds": seeds,
        },
        cells=cell_estimates(by_unit),
        differences=paired_differences(by_unit, FULL.id) if FULL.id in cells_present else [],
        effects=effects,
        transfer=transfer,
        transfer_ceiling=ceiling,
        per_speaker=per_speaker,
        seconds_per_score=seconds_per_score,
        reference=reference or {},
    )
    result.power = power_statement(result)
    return result


def unit_values(rows: Sequence[Score], unit: str) -> dict[tuple[str, int], float]:
    """(cell, unit index) -> mean SECS of that cell over everything inside the unit.

    ``unit``: ``"speaker"`` (average over texts and seeds; index = the speaker's position in
    first-seen order), ``"seed"`` (average over texts, of one speaker; index = the seed) or
    ``"replicate"`` (no averaging; index = the position of (text, seed) in sorted order).
    """
    return _mean_by_unit([(row.cell, row, row.secs) for row in rows], unit)


def _mean_by_unit(items: Sequence[tuple[str, Score, float]], unit: str) -> dict[tuple[str, int], float]:
    """Mean of each (name, unit) group of ``items`` = (name, the score it came from, value)."""
    if unit == "speaker":
        index = {key: i for i, key in enumerate(dict.fromkeys(row.prompt for _, row, _ in items))}
        unit_of: Callable[[Score], int] = lambda row: index[row.prompt]  # noqa: E731
    elif unit == "seed":
        unit_of = lambda row: row.seed  # noqa: E731
    elif unit == "replicate":
        index = {key: i for i, key in enumerate(sorted({(row.text_index, row.seed) for _, row, _ in items}))}
        unit_of = lambda row: index[(row.text_index, row.seed)]  # noqa: E731
    else:
        raise ValueError(f"unit: must be speaker, seed or replicate, got {unit!r}")
    groups: dict[tuple[str, int], list[float]] = {}
    for name, row, value in items:
        groups.setdefault((name, unit_of(row)), []).append(value)
    return {key: float(np.mean(values)) for key, values in groups.items()}


def identity_transfer(rows: Sequence[Score], unit: str) -> tuple[list[Estimate], Estimate | None]:
    """:data:`TRANSFER_CELLS`' transfer indices (one Holm family) and the ``ooo`` ceiling, each a
    mean over units of ``m(cell) - m(scf)`` with ``m = secs_other - secs`` (module docstring)."""
    full_margin = {
        (r.prompt, r.text_index, r.seed): r.secs_other - r.secs
        for r in rows
        if r.cell == FULL.id and r.secs_other is not None
    }

    def estimate(name: str, cell: str) -> Estimate | None:
        items = [
            (cell, r, (r.secs_other - r.secs) - full_margin[(r.prompt, r.text_index, r.seed)])
            for r in rows
            if r.cell == cell and r.secs_other is not None and (r.prompt, r.text_index, r.seed) in full_margin
        ]
        values = list(_mean_by_unit(items, unit).values())
        return t_estimate(name, values) if values else None

    transfer = [e for stage, cell in TRANSFER_CELLS.items() if (e := estimate(f"{stage} ({cell.id})", cell.id))]
    ceiling = estimate(f"all stages ({TOTAL_TRANSFER_CELL})", TOTAL_TRANSFER_CELL)
    return (adjust_family(transfer) if transfer else []), ceiling


def power_statement(result: StudyResult) -> dict[str, dict[str, Any]]:
    """Per main effect, from the observed spread across units: the smallest effect detected with
    80 % power at alpha 0.05 (two-sided t-test), how many units would detect
    :data:`DETECTABLE_SECS`, and, with several speakers, how many seeds per (speaker, text) would
    (None: more seeds alone cannot, because speakers differ more than that)."""
    statement: dict[str, dict[str, Any]] = {}
    main = {e.name: e for e in result.effects if e.name in MAIN_EFFECTS}
    n_texts, n_seeds = len(result.levels["texts"]), len(result.levels["seeds"])
    for name, estimate in main.items():
        entry: dict[str, Any] = {
            "unit": result.unit,
            "n_units": estimate.n,
            "sd_across_units": _finite(estimate.sd),
            "minimum_detectable_effect": _finite(
                power.minimum_detectable_effect(estimate.sd, estimate.n, alpha=ALPHA, power=POWER)
            ),
            "target_effect": DETECTABLE_SECS,
            "units_needed": power.units_needed(DETECTABLE_SECS, estimate.sd, alpha=ALPHA, power=POWER)
            if math.isfinite(estimate.sd)
            else None,
        }
        if result.per_speaker:
            within = [
                e.sd
                for effects in result.per_speaker.values()
                for e in effects
                if e.name == name and math.isfinite(e.sd)
            ]
            within_sd = float(np.sqrt(np.mean(np.square(within)))) if within else math.nan
            between_var = max(0.0, estimate.sd**2 - within_sd**2 / (n_texts * n_seeds)) if within else math.nan
            entry["within_speaker_sd"] = _finite(within_sd)
            entry["between_speaker_sd"] = _finite(math.sqrt(between_var) if math.isfinite(between_var) else math.nan)
            entry["seeds_needed"] = (
                power.seeds_needed(
                    DETECTABLE_SECS, math.sqrt(between_var), within_sd, estimate.n, n_texts, alpha=ALPHA, power=POWER
                )
                if math.isfinite(between_var) and math.isfinite(within_sd)
                else None
            )
        statement[name] = entry
    return statement


def _finite(value: float) -> float | None:
    return float(value) if value is not None and math.isfinite(value) else None


def _as_scores(scores: Sequence[Score] | Mapping[tuple[str, int], float]) -> list[Score]:
    if isinstance(scores, Mapping):
        return [Score("prompt", 0, cell, seed, float(value)) for (cell, seed), value in scores.items()]
    rows = list(scores)
    if not rows:
        raise ValueError("analyse: no scores")
    return rows


def run_study(
    run: MatrixRun | Sequence[MatrixRun],
    *,
    device: str = "cpu",
    texts: Sequence[str] | None = None,
    transform: AudioTransform | None = None,
    references: Mapping[str, np.ndarray] | None = None,
    embedding_cache: dict[bytes, np.ndarray] | None = None,
    references_decoded: bool = False,
    encoder: str = DEFAULT_ENCODER,
) -> StudyResult:
    """:func:`score_runs` then :func:`analyse`: one matrix run, or the runs of a design.
    ``references_decoded``: the given ``references`` are the prompts' fine codes decoded by the
    runs' model set in another process (a Ray worker's), and the study says so as if decoded here."""
    runs = [run] if isinstance(run, MatrixRun) else list(run)
    given_by_caller = references is not None and not references_decoded
    scores, references, per_score = score_runs(
        runs,
        device=device,
        transform=transform,
        references=references,
        embedding_cache=embedding_cache,
        texts=texts,
        encoder=encoder,
    )
    model_set = runs[0].model_set.name
    result = analyse(
        scores,
        per_score,
        {
            "prompts": list(dict.fromkeys(r.prompt.name for r in runs)),
            "other_prompts": {r.prompt.name: r.other_prompt.name for r in runs if r.other_prompt is not None},
            "audio": (
                "reference audio given by the caller"
                if given_by_caller
                else f"prompt fine codes decoded by model set {model_set!r}"
            ),
            "file": f"audio/{REFERENCE_WAV}" if len(runs) == 1 else "audio/reference_<prompt>.wav",
            "speaker_encoder": get_encoder(encoder, device).describe(),
        },
        texts=texts if texts is not None else list(dict.fromkeys(r.text for r in runs)),
    )
    result.reference_audio = references
    return result


def reference_file(speaker: str, speakers: Sequence[str]) -> str:
    """Name of a speaker's reference WAV inside ``audio/``: :data:`REFERENCE_WAV` for the one
    speaker of a single-speaker study, ``reference_<prompt>.wav`` otherwise (other speakers too)."""
    from bark_ablation.study.design import safe_name

    return REFERENCE_WAV if list(speakers) == [speaker] else f"reference_{safe_name(speaker)}.wav"


ESTIMATE_COLUMNS = ["name", "mean", "ci_low", "ci_high", "n", "standardized", "p_value", "p_adjusted"]


def write_study(directory: Path, result: StudyResult) -> None:
    """``study.json``, the CSVs (one row per score, cell, difference, effect, transfer index,
    per-speaker effect) and the reference audio into ``directory``."""
    from bark_ablation.core.wav import write_wav

    if result.reference_audio:
        (directory / "audio").mkdir(exist_ok=True)
        for speaker, audio in result.reference_audio.items():
            write_wav(directory / "audio" / reference_file(speaker, result.levels["speakers"]), audio, SAMPLE_RATE)
    (directory / "study.json").write_text(json.dumps(result.to_dict(), indent=2) + "\n", encoding="utf-8")
    _write_csv(
        directory / "secs.csv",
        ["prompt", "text", "cell", "seed", "secs", "secs_other"],
        [
            [
                s.prompt,
                s.text_index,
                s.cell,
                s.seed,
                f"{s.secs:.6f}",
                "" if s.secs_other is None else f"{s.secs_other:.6f}",
            ]
            for s in result.scores
        ],
    )
    tables = {
        "cells": result.cells,
        "differences": result.differences,
        "effects": result.effects,
        "transfer": result.transfer + ([result.transfer_ceiling] if result.transfer_ceiling else []),
    }
    for name, estimates in tables.items():
        _write_csv(directory / f"{name}.csv", ESTIMATE_COLUMNS, [_estimate_row(e) for e in estimates])
    if result.per_speaker:
        _write_csv(
            directory / "speakers.csv",
            ["speaker", *ESTIMATE_COLUMNS],
            [[speaker, *_estimate_row(e)] for speaker, effects in result.per_speaker.items() for e in effects],
        )


def _estimate_row(e: Estimate) -> list[Any]:
    return [
        e.name,
        f"{e.mean:.6f}",
        f"{e.ci_low:.6f}",
        f"{e.ci_high:.6f}",
        e.n,
        f"{e.standardized:.4f}",
        f"{e.p_value:.6g}",
        f"{e.p_adjusted:.6g}",
    ]


def _write_csv(path: Path, header: list[str], rows: list[list[Any]]) -> None:
    with path.open("w", newline="", encoding="utf-8") as stream:
        writer = csv.writer(stream)
        writer.writerow(header)
        writer.writerows(rows)
