"""Merging run directories that split one study: by seed, or by unit (shards on several
workers, GPUs or machines).

**By unit.** ``bark-ablation run --shard I/N`` runs every N-th (speaker, text) unit of a study
(SLURM array tasks, CI matrix jobs). :func:`merge_runs` of every shard checks that they are the
parts of one study (same design, parameters, model set, implementation and version, device
class, shard count) and that together they hold every unit exactly once, copies the unit
directories and the reference audio, and recomputes the pooled study from the units' scores
(full precision, from each unit's ``study.json``) in the design's unit order. Every unit is
seeded and scored as in one run, so the statistics files (``secs.csv``, ``cells.csv``,
``differences.csv``, ``effects.csv``, ``transfer.csv``, ``speakers.csv``) are byte-identical to
one run's; ``study.json`` differs only in ``seconds_per_score`` (the shards' mean).

**By seed.**
A large study runs as shards, ``bark-ablation run --seeds 0 1 ...`` on one GPU and ``--seeds
2 3 ...`` on another, each writing its own run directory. :func:`merge_runs` checks that the
shards are parts of one study (same text, prompt, cells, generation parameters, model set,
implementation and version, device class) with disjoint seeds, then writes one run directory
holding every shard's WAVs and tokens, a summary of all generations, and the study recomputed
from every shard's SECS scores (``study.json``; no audio is re-embedded). ``bark-ablation report`` reads the
result like any run.

Seeds are the study's replicates and every stage is seeded from (seed, stage) alone, so a merged
study equals the study one process would have run over all the seeds.
"""

from __future__ import annotations

import json
import shutil
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from bark_ablation.core.errors import BarkAblationError
from bark_ablation.output.staging import StagedDirectory
from bark_ablation.study.run_output import write_summary

MUST_AGREE = (
    "text",
    "prompt.fingerprint",
    "cells",
    "params",
    "profile.name",
    "model_set.name",
    "model_set.implementation",
    "device.device_class",
)
"""Summary fields every shard of one study must share (dotted paths into ``summary.json``),
besides the version of the implementation that made them."""


class MergeError(BarkAblationError):
    """Run directories that cannot be merged; the message names the directory and the field."""


def merge_runs(run_dirs: list[Path], destination: Path, *, overwrite: bool = False) -> Path:
    """Merge ``run_dirs`` (shards of one study by seed) into ``destination``; returns it.

    Raises :class:`MergeError` naming the directory and the field when the shards disagree,
    repeat a seed, or lack a file; nothing is written then.
    """
    run_dirs = [Path(d) for d in run_dirs]
    if not run_dirs:
        raise MergeError("runs: give the run directories to merge")
    summaries = [_read_json(d / "summary.json") for d in run_dirs]
    if len(run_dirs) < 2 and summaries[0].get("shard", {}).get("count") != 1:
        raise MergeError("runs: give at least two run directories to merge (or the one shard of a --shard 1/1 run)")
    for run_dir, summary in zip(run_dirs, summaries, strict=True):
        if summary.get("kind") == "study":
            if all("shard" in s for s in summaries):
                return merge_study_shards(run_dirs, summaries, destination, overwrite=overwrite)
            raise MergeError(
                f"{run_dir}: kind: a multi-speaker study that is not a shard; shards of a study come from "
                f"`bark-ablation run --shard I/N`, one per I"
            )
    _check_same_study(run_dirs, summaries)
    seeds = _check_disjoint_seeds(run_dirs, summaries)
    with_study = [(d / "study.json").is_file() for d in run_dirs]
    if any(with_study) and not all(with_study):
        missing = run_dirs[with_study.index(False)]
        raise MergeError(f"{missing}: study.json: missing while other runs have one (rerun it without --no-study)")

    staged = StagedDirectory(destination, overwrite=overwrite)
    try:
        for run_dir in run_dirs:
            for sub in ("audio", "tokens"):
                _copy_tree(run_dir / sub, staged.path / sub)
        if all(with_study):
            _merge_study(run_dirs, staged.path)
        write_summary(staged.path, _merged_summary(run_dirs, summaries, seeds))
    except BaseException:
        staged.discard()
        raise
    return staged.commit()


STUDY_MUST_AGREE = (
    "prompts",
    "texts",
    "seeds",
    "cells",
    "params",
    "profile",
    "model_set.name",
    "model_set.implementation",
    "device.device_class",
    "shard.count",
    "shard.design_units",
)
"""Summary fields every shard of one study must share."""


def merge_study_shards(
    run_dirs: list[Path], summaries: list[dict[str, Any]], destination: Path, *, overwrite: bool = False
) -> Path:
    """Merge the shards of one study by unit (module docstring) into ``destination``.

    Raises :class:`MergeError` naming the directory and the field when the shards disagree, hold
    a unit twice, or leave a unit out; nothing is written then.
    """
    _check_agree(run_dirs, summaries, STUDY_MUST_AGREE)
    first = summaries[0]
    design_units = first["shard"]["design_units"]
    owner: dict[str, tuple[Path, dict[str, Any]]] = {}
    for run_dir, summary in zip(run_dirs, summaries, strict=True):
        for unit in summary["units"]:
            if unit["id"] in owner:
                raise MergeError(
                    f"{run_dir}: units: unit {unit['id']} is also in {owner[unit['id']][0]} "
                    f"(shard {_field(summary, 'shard.index')} of {first['shard']['count']}); give each shard once"
                )
            owner[unit["id"]] = (run_dir, unit)
    missing = [unit for unit in design_units if unit not in owner]
    if missing:
        raise MergeError(
            f"runs: units {', '.join(missing)} of the study are in none of the shards given "
            f"({len(owner)} of {len(design_units)} units); run and add the missing shards"
        )
    with_study = [(d / "study.json").is_file() for d in run_dirs]
    if any(with_study) and not all(with_study):
        missing_dir = run_dirs[with_study.index(False)]
        raise MergeError(
            f"{missing_dir}: study.json: missing while other shards have one (rerun it without --no-study)"
        )
    staged = StagedDirectory(destination, overwrite=overwrite)
    try:
        for unit in design_units:
            run_dir, entry = owner[unit]
            shutil.copytree(run_dir / entry["directory"], staged.path / entry["directory"])
        if all(with_study):
            _merge_unit_studies([owner[unit] for unit in design_units], run_dirs, staged.path)
        merged = dict(first)
        merged.pop("shard")
        merged.pop("execution", None)  # each shard's own: kept per shard in merged_from
        merged["created_utc"] = datetime.now(timezone.utc).isoformat(timespec="seconds")
        merged["units"] = [owner[unit][1] for unit in design_units]
        merged["generations"] = sum(s["generations"] for s in summaries)
        merged["batch_size"] = max(s["batch_size"] for s in summaries)
        for total in ("stage_runs", "stage_runs_without_reuse", "stage_seconds_total"):
            stages = dict.fromkeys(stage for s in summaries for stage in s[total])  # a shard may lack one
            merged[total] = {stage: round(sum(s[total].get(stage, 0) for s in summaries), 4) for stage in stages}
        merged["wall_seconds"] = round(sum(s["wall_seconds"] for s in summaries), 3)  # the shards' walls, added
        merged["merged_from"] = [
            {
                "directory": str(d),
                "shard": f"{s['shard']['index']}/{s['shard']['count']}",
                "units": [u["id"] for u in s["units"]],
                "created_utc": s["created_utc"],
                "wall_seconds": s["wall_seconds"],
                "device": s["device"],
                **({"execution": s["execution"]} if "execution" in s else {}),
            }
            for d, s in zip(run_dirs, summaries, strict=True)
        ]
        write_summary(staged.path, merged)
    except BaseException:
        staged.discard()
        raise
    return staged.commit()


def _merge_unit_studies(units: list[tuple[Path, dict[str, Any]]], run_dirs: list[Path], directory: Path) -> None:
    """The pooled study from the units' scores, in design order, as one run computes it; the
    reference audio of every speaker (own and other) read back from the unit directories."""
    from bark_ablation.study.analysis import REFERENCE_WAV, Score, analyse, reference_file, write_study
    from bark_ablation.study.similarity import load_audio

    scores: list[Score] = []
    prompts: list[str] = []
    others: dict[str, str] = {}
    references = {}
    for run_dir, unit in units:
        unit_dir = run_dir / unit["directory"]
        study = _read_json(unit_dir / "study.json")
        scores += [Score(**row) for row in study["scores"]]
        prompt = unit["prompt"]
        prompts += [prompt] if prompt not in prompts else []
        speakers = [prompt] + ([unit["other_prompt"]] if unit.get("other_prompt") else [])
        if unit.get("other_prompt"):
            others[prompt] = unit["other_prompt"]
        for speaker in speakers:
            path = unit_dir / "audio" / reference_file(speaker, [prompt])
            if not path.is_file():
                raise MergeError(f"{path}: missing; every unit directory holds its speakers' reference audio")
            references.setdefault(speaker, load_audio(path)[0])
    pooled = [_read_json(d / "study.json") for d in run_dirs]
    _check_same_encoder(run_dirs, pooled)
    reference = {
        **pooled[0]["reference"],
        "prompts": prompts,
        "other_prompts": {p: others[p] for p in prompts if p in others},
        "file": f"audio/{REFERENCE_WAV}" if len(units) == 1 else "audio/reference_<prompt>.wav",
    }
    per_score = sum(p["seconds_per_score"] for p in pooled) / len(pooled)
    result = analyse(scores, per_score, reference, texts=pooled[0]["levels"]["texts"])
    result.reference_audio = references
    write_study(directory, result)


def _field(summary: dict[str, Any], dotted: str) -> Any:
    value: Any = summary
    for part in dotted.split("."):
        value = value.get(part) if isinstance(value, dict) else None
    return value


def _check_same_study(run_dirs: list[Path], summaries: list[dict[str, Any]]) -> None:
    _check_agree(run_dirs, summaries, MUST_AGREE)


def _check_agree(run_dirs: list[Path], summaries: list[dict[str, Any]], fields: tuple[str, ...]) -> None:
    """Every summary has the first one's value of each of ``fields`` (dotted paths) and of the
    implementation's version; the first that differs is named with both values."""
    first_dir, first = run_dirs[0], summaries[0]
    implementation_version = f"versions.{first['model_set']['implementation']}"
    for run_dir, summary in zip(run_dirs[1:], summaries[1:], strict=True):
        for name in (*fields, implementation_version):
            if _field(summary, name) != _field(first, name):
                raise MergeError(
                    f"{run_dir}: {name}: {_field(summary, name)!r}, but {first_dir} has "
                    f"{_field(first, name)!r}; shards of one study must agree on it"
                )


def _check_disjoint_seeds(run_dirs: list[Path], summaries: list[dict[str, Any]]) -> list[int]:
    owner: dict[int, Path] = {}
    for run_dir, summary in zip(run_dirs, summaries, strict=True):
        for seed in summary["seeds"]:
            if seed in owner:
                raise MergeError(
                    f"{run_dir}: seeds: seed {seed} is also in {owner[seed]}; shards must "
                    f"split the seeds, not repeat them"
                )
            owner[seed] = run_dir
    return sorted(owner)


def _copy_tree(source: Path, target: Path) -> None:
    """Copy ``source``'s files into ``target``; a file already there must be identical (the prompt's
    reference WAV is in every shard)."""
    if not source.is_dir():
        return
    target.mkdir(exist_ok=True)
    for path in sorted(source.iterdir()):
        destination = target / path.name
        if destination.exists():
            if destination.read_bytes() != path.read_bytes():
                raise MergeError(
                    f"{path}: differs from the same file in an earlier run; shards of one "
                    f"study decode the same reference"
                )
            continue
        shutil.copy2(path, destination)


def _check_same_encoder(run_dirs: list[Path], studies: list[dict]) -> None:
    """Shards scored by different speaker encoders (or versions, weights) do not merge."""
    encoders = [(study.get("reference") or {}).get("speaker_encoder") for study in studies]
    for run_dir, encoder in zip(run_dirs[1:], encoders[1:], strict=True):
        if encoder != encoders[0]:
            raise MergeError(
                f"{run_dir}: speaker_encoder differs from {run_dirs[0]}'s ({encoder} vs {encoders[0]}); "
                f"shards of one study are scored by one encoder (rescore them with the same one)"
            )


def _merge_study(run_dirs: list[Path], directory: Path) -> None:
    from bark_ablation.study.analysis import REFERENCE_WAV, Score, analyse, write_study

    scores: list[Score] = []
    timings = []
    for run_dir in run_dirs:
        study = _read_json(run_dir / "study.json")
        timings.append(study["seconds_per_score"])
        # study.json keeps full precision (secs.csv rounds to 6 digits)
        scores += [Score(**row) for row in study["scores"]]
    first = _read_json(run_dirs[0] / "study.json")
    _check_same_encoder(run_dirs, [_read_json(d / "study.json") for d in run_dirs])
    scores.sort(key=lambda s: s.seed)
    result = analyse(scores, sum(timings) / len(timings), first["reference"], texts=first["levels"]["texts"])
    write_study(directory, result)
    if not (directory / "audio" / REFERENCE_WAV).is_file():
        raise MergeError(f"{run_dirs[0]}: audio/{REFERENCE_WAV}: missing")


def _merged_summary(run_dirs: list[Path], summaries: list[dict[str, Any]], seeds: list[int]) -> dict[str, Any]:
    merged = dict(summaries[0])
    merged.pop("execution", None)  # each part's own
    merged["created_utc"] = datetime.now(timezone.utc).isoformat(timespec="seconds")
    merged["seeds"] = seeds
    generations = [g for s in summaries for g in s["generations"]]
    merged["generations"] = sorted(generations, key=lambda g: (g["seed"], merged["cells"].index(g["cell"])))
    for total in ("stage_runs", "stage_runs_without_reuse", "stage_seconds_total"):
        merged[total] = {
            stage: round(sum(s[total].get(stage, 0) for s in summaries), 4) for stage in summaries[0][total]
        }
    merged["wall_seconds"] = round(sum(s["wall_seconds"] for s in summaries), 3)  # the shards' walls, added
    merged["merged_from"] = [
        {
            "directory": str(d),
            "seeds": s["seeds"],
            "created_utc": s["created_utc"],
            "wall_seconds": s["wall_seconds"],
            "device": s["device"],
        }
        for d, s in zip(run_dirs, summaries, strict=True)
    ]
    return merged


def _read_json(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise MergeError(f"{path}: missing; is {path.parent} a directory written by `bark-ablation run`?") from None
    except (OSError, json.JSONDecodeError) as error:
        raise MergeError(f"{path}: unreadable ({error})") from None
