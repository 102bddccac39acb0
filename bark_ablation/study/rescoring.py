"""Re-scoring a finished run with another speaker encoder, and how far the encoders agree.

``bark-ablation rescore DIR --speaker-encoder NAME`` reads the run's samples and reference audio
back from its WAVs (float32, bit for bit what was scored), embeds them with ``NAME`` and writes
that encoder's study (``secs.csv``, ``cells.csv``, ``differences.csv``, ``effects.csv``,
``transfer.csv``, ``speakers.csv``, ``study.json``) into ``DIR/encoders/NAME/``, staged and moved
into place whole. Re-scoring with the run's own encoder reproduces its statistics files byte for
byte (tested), so a difference is the encoder's.

:func:`agreement` compares two studies of the same samples: the Spearman correlation of their
per-cell mean SECS (scipy), and for each stage whether the answer agrees (its main effect
survives Holm in both or in neither, with the same sign where it survives).
"""

from __future__ import annotations

import csv
import json
import time
from pathlib import Path
from typing import Any

from bark_ablation.core.conditioning import TOKEN_STAGE_NAMES
from bark_ablation.core.errors import OutputError
from bark_ablation.output.staging import StagedDirectory
from bark_ablation.study.analysis import ALPHA, Score, analyse, write_study
from bark_ablation.study.design import safe_name
from bark_ablation.study.similarity import cached_embedding, load_audio, secs
from bark_ablation.study.speaker_encoders import DEFAULT_ENCODER, check_encoder_name, get_encoder

ENCODERS_DIR = "encoders"
"""Where a run directory keeps its re-scored studies: ``encoders/<name>/``."""


def primary_encoder(study: dict[str, Any]) -> str:
    """The encoder a study was scored with (Resemblyzer where it predates the record)."""
    return (study.get("reference", {}).get("speaker_encoder") or {}).get("name", DEFAULT_ENCODER)


def rescore(run_dir: Path, encoder: str, *, device: str = "cpu", allow_download: bool = False) -> Path:
    """Score the samples of ``run_dir`` with ``encoder`` into ``run_dir/encoders/<encoder>/``
    (replacing an earlier re-scoring with it); returns that directory."""
    run_dir = Path(run_dir)
    check_encoder_name(encoder)
    try:
        study = json.loads((run_dir / "study.json").read_text(encoding="utf-8"))
        rows = list(csv.DictReader((run_dir / "secs.csv").open(encoding="utf-8")))
    except (OSError, ValueError) as error:
        raise OutputError(f"{run_dir}: not a run with a study (study.json, secs.csv: {error})") from None
    described = get_encoder(encoder, device, allow_download=allow_download).describe()
    single = not (run_dir / "units").is_dir()
    cache: dict[bytes, Any] = {}

    def embedding(path: Path):
        if not path.is_file():
            raise OutputError(f"{path}: missing; the run directory is incomplete")
        audio, rate = load_audio(path)
        return cached_embedding(cache, audio, rate, source=str(path), device=device, encoder=encoder)

    def reference(name: str):
        named = run_dir / "audio" / f"reference_{safe_name(name)}.wav"
        # reference.wav is the one speaker's of a single-speaker run, never another speaker's
        own_only = not named.is_file() and name in study["reference"].get("prompts", [])
        return embedding(run_dir / "audio" / "reference.wav" if own_only else named)

    others = study["reference"].get("other_prompts", {})
    started = time.perf_counter()
    scores = []
    for row in rows:
        unit = run_dir if single else run_dir / "units" / f"{safe_name(row['prompt'])}_t{row['text']}"
        sample = embedding(unit / "audio" / f"seed{row['seed']}_{row['cell']}.wav")
        other = others.get(row["prompt"])
        scores.append(
            Score(
                row["prompt"],
                int(row["text"]),
                row["cell"],
                int(row["seed"]),
                secs(reference(row["prompt"]), sample),
                None if other is None or row["secs_other"] == "" else secs(reference(other), sample),
            )
        )
    per_score = (time.perf_counter() - started) / max(len(scores), 1)
    result = analyse(
        scores, per_score, {**study["reference"], "speaker_encoder": described}, texts=study["levels"]["texts"]
    )
    staged = StagedDirectory(run_dir / ENCODERS_DIR / encoder, overwrite=True)
    try:
        write_study(staged.path, result)
    except BaseException:
        staged.discard()
        raise
    return staged.commit()


def agreement(primary: dict[str, Any], other: dict[str, Any]) -> dict[str, Any]:
    """How far two studies of the same samples agree (``study.json`` contents): Spearman's rho of
    the per-cell means (with its p-value) and, per stage, both answers and whether they agree."""
    from scipy.stats import spearmanr

    means = {c["name"]: c["mean"] for c in primary["cells"]}
    paired = [(means[c["name"]], c["mean"]) for c in other["cells"] if c["name"] in means]
    rho = spearmanr([a for a, _ in paired], [b for _, b in paired]) if len(paired) >= 3 else None
    stages = {}
    for name in TOKEN_STAGE_NAMES:
        answers = [_answer(study, name) for study in (primary, other)]
        if None not in answers:
            stages[name] = {"primary": answers[0], "other": answers[1], "agree": answers[0] == answers[1]}
    return {
        "cells": len(paired),
        "spearman_rho": None if rho is None else float(rho.statistic),
        "spearman_p": None if rho is None else float(rho.pvalue),
        "stages": stages,
    }


def _answer(study: dict[str, Any], stage: str) -> str | None:
    """``carries (+)``, ``carries (-)`` or ``no effect`` (Holm-adjusted p < ALPHA); None without the factorial."""
    effect = next((e for e in study.get("factorial_effects", []) if e["name"] == stage), None)
    if effect is None or effect.get("p_adjusted") is None:
        return None
    if effect["p_adjusted"] >= ALPHA:
        return "no effect"
    return "carries (+)" if effect["mean"] > 0 else "carries (-)"


def rescored_studies(run_dir: Path) -> dict[str, dict[str, Any]]:
    """Encoder name -> the study it wrote under ``run_dir/encoders/``."""
    found = {}
    for path in sorted((Path(run_dir) / ENCODERS_DIR).glob("*/study.json")):
        found[path.parent.name] = json.loads(path.read_text(encoding="utf-8"))
    return found
