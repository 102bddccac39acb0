"""Writing a run directory: WAVs, token files, a JSON summary and a Markdown table.

The directory is built under a temporary name beside its destination and renamed into place
only when complete, so an interrupted or failed run leaves nothing half-written at ``out``.

Layout of one speaker saying one text (a *unit*)::

    out/
      summary.json          params, versions, model set, stage run counts, timings, cells
      summary.md            the same as a readable table
      audio/seed<seed>_<cell>.wav     float32 PCM, 24 kHz, mono
      tokens/seed<seed>_<cell>.npz    semantic (T_s,), coarse (2, T_c), fine (8, T_c)
      study.json, *.csv     the study (seeds as replicates), unless --no-study

Layout of a study with several speakers or texts: one unit directory per (speaker, text), each
laid out as above with its own study, and the pooled study (speakers as replicates) on top::

    out/
      summary.json          "kind": "study": the design, the units, totals
      summary.md
      study.json, *.csv     the pooled study; speakers.csv holds the per-speaker effects
      audio/reference_<prompt>.wav
      units/<prompt>_t<k>/  a unit directory

A shard of a study (``run --shard I/N``: every N-th unit, :class:`~bark_ablation.study.design.Shard`)
has the study layout even with one unit; its summary's ``shard`` names the part and every unit of
the design, and its pooled study covers its own units only. ``bark-ablation merge`` of every shard
writes the study one run would have (:func:`~bark_ablation.study.run_merge.merge_runs`).
"""

from __future__ import annotations

import io
import json
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from bark_ablation.core.environment import package_versions
from bark_ablation.core.version import __version__
from bark_ablation.core.wav import write_wav
from bark_ablation.generation.pipeline import Generation, MatrixRun, count_stage_runs
from bark_ablation.output.staging import StagedDirectory, write_atomically

if TYPE_CHECKING:
    from bark_ablation.study.analysis import StudyResult
    from bark_ablation.study.design import DesignRun


def write_generation(directory: Path, generation: Generation) -> None:
    """The WAV and token file of one generation, named by :attr:`Generation.label`, each written
    whole or not at all, the token file (semantic, coarse, fine, and the stages' timings as JSON
    in ``stage_seconds``) last: its presence marks the sample done (a resumable run's samples,
    :mod:`bark_ablation.study.resume`). A sample already done is left as it is."""
    tokens = directory / "tokens" / f"{generation.label}.npz"
    if tokens.exists() and (directory / "audio" / f"{generation.label}.wav").exists():
        return
    (directory / "audio").mkdir(parents=True, exist_ok=True)
    (directory / "tokens").mkdir(exist_ok=True)
    wav = io.BytesIO()
    write_wav(wav, generation.audio, generation.sample_rate)
    write_atomically(directory / "audio" / f"{generation.label}.wav", wav.getvalue())
    arrays = io.BytesIO()
    np.savez(
        arrays,
        semantic=generation.semantic,
        coarse=generation.coarse,
        fine=generation.fine,
        stage_seconds=np.array(json.dumps(generation.stage_seconds)),
    )
    write_atomically(tokens, arrays.getvalue())


def stage_work(run: MatrixRun) -> dict[str, dict[str, float]]:
    """What a run's stages did: ``stage_runs`` (runs per stage), ``stage_runs_without_reuse``
    (what sharing nothing would have taken), ``stage_seconds_total`` (seconds of the runs
    that happened, shared results counted once) and ``batch_size`` (most rows a stage ran per call)."""
    per_seed = count_stage_runs(run.conditionings)
    seconds = {stage: 0.0 for stage in per_seed}
    for generation in run.generations:
        for stage, spent in generation.stage_seconds.items():
            if stage not in generation.reused:
                seconds[stage] += spent
    return {
        "batch_size": run.batch_size,
        "stage_runs": dict(run.stage_runs),
        "stage_runs_without_reuse": {stage: len(run.conditionings) * len(run.seeds) for stage in per_seed},
        "stage_seconds_total": {stage: round(value, 4) for stage, value in seconds.items()},
    }


def run_summary(run: MatrixRun, wall_s: float) -> dict[str, Any]:
    """JSON-ready summary of a matrix run."""
    model_set = run.model_set
    return {
        "bark_ablation_version": __version__,
        "created_utc": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "text": run.text,
        "prompt": {
            "name": run.prompt.name,
            "source": run.prompt.source,
            "fingerprint": run.prompt.fingerprint,
            "semantic_tokens": run.prompt.n_semantic,
            "frames": run.prompt.n_frames,
        },
        "seeds": list(run.seeds),
        "cells": [c.id for c in run.conditionings],
        "params": run.params.to_dict(),
        "profile": run.profile.to_dict(),
        "model_set": {
            "name": model_set.name,
            "implementation": model_set.implementation,
            "provenance": model_set.provenance,
        },
        "device": model_set.describe_device(),
        "versions": package_versions(),
        **stage_work(run),
        "wall_seconds": round(wall_s, 3),
        "notes": (
            "coarse conditioning passes the prompt's semantic_prompt AND coarse_prompt to "
            "Bark's coarse stage; it always carries the prompt's semantic tokens too"
        ),
        "generations": [g.summary() for g in run.generations],
    }


def summary_table(generations: list[dict[str, Any]]) -> str:
    """A Markdown table, one row per (cell, seed), from :meth:`Generation.summary` dicts (the
    ``generations`` of ``summary.json``)."""
    header = (
        "| cell | seed | semantic tokens | coarse frames | duration s | semantic s | "
        "coarse s | fine s | decode s | shared stages |"
    )
    lines = [header, "|---|---:|---:|---:|---:|---:|---:|---:|---:|---|"]
    for g in generations:
        lines.append(
            f"| `{g['cell']}` | {g['seed']} | {g['semantic_tokens']} | {g['coarse_frames']} | "
            f"{g['duration_s']:.2f} | {_time(g, 'semantic')} | {_time(g, 'coarse')} | "
            f"{_time(g, 'fine')} | {_time(g, 'decode')} | {', '.join(g['reused_stages']) or '-'} |"
        )
    return "\n".join(lines)


def _time(generation: dict[str, Any], stage: str) -> str:
    return "shared" if stage in generation["reused_stages"] else f"{generation['stage_seconds'][stage]:.3f}"


def summary_markdown(summary: dict[str, Any]) -> str:
    """The run's Markdown page (``summary.md``) from its ``summary.json`` dict: what ran, with
    what, and the table."""
    if summary.get("kind") == "study":
        return _study_summary_markdown(summary)
    runs = summary["stage_runs"]
    naive = summary["stage_runs_without_reuse"]
    model_set = summary["model_set"]
    lines = [
        f"# bark-ablation run: prompt `{summary['prompt']['name']}`",
        "",
        f"- text: {summary['text']!r}",
        f"- seeds: {', '.join(map(str, summary['seeds']))}; cells: {', '.join(summary['cells'])}",
        (
            f"- model set: `{model_set['name']}` ({model_set['implementation']} "
            f"{summary['versions'].get(model_set['implementation'])}), device class "
            f"`{summary['device']['device_class']}`"
        ),
        f"- generation profile: `{summary.get('profile', {}).get('name', 'default')}` "
        f"({summary.get('profile', {}).get('exercises', 'Bark defaults')})",
        "- stage runs: " + ", ".join(f"{k} {runs.get(k, 0)} (of {naive[k]})" for k in naive),
        f"- wall time: {summary['wall_seconds']:.2f} s",
    ]
    if summary.get("merged_from"):
        lines.append(
            "- merged from: "
            + "; ".join(
                f"{part['directory']} (seeds {', '.join(map(str, part['seeds']))})" for part in summary["merged_from"]
            )
        )
    lines += [
        f"- note: {summary['notes']}",
        "",
        (
            "Cell ids: one character per stage (semantic, coarse, fine); a letter when the stage "
            "receives the prompt's history, `-` when it does not."
        ),
        "",
        summary_table(summary["generations"]),
        "",
    ]
    return "\n".join(lines)


def _study_summary_markdown(summary: dict[str, Any]) -> str:
    model_set = summary["model_set"]
    lines = [
        f"# bark-ablation study: {len(summary['prompts'])} speakers x {len(summary['texts'])} texts",
        "",
        "- speakers: " + ", ".join(f"`{p['name']}`" for p in summary["prompts"]),
        *[f"- text t{i}: {text!r}" for i, text in enumerate(summary["texts"])],
        f"- seeds: {', '.join(map(str, summary['seeds']))}; cells: {', '.join(summary['cells'])}",
        (
            f"- model set: `{model_set['name']}` ({model_set['implementation']} "
            f"{summary['versions'].get(model_set['implementation'])}), device class "
            f"`{summary['device']['device_class']}`"
            + (f"; {model_set['choice']['reason']}" if model_set.get("choice") else "")
        ),
        f"- generation profile: `{summary['profile']['name']}`",
        f"- {summary['generations']} generations; stage runs: "
        + ", ".join(
            f"{k} {summary['stage_runs'].get(k, 0)} (of {v})" for k, v in summary["stage_runs_without_reuse"].items()
        ),
        f"- wall time: {summary['wall_seconds']:.2f} s",
        "",
        "| unit | speaker | text | other speaker | directory |",
        "|---|---|---:|---|---|",
    ]
    lines += [
        f"| `{u['id']}` | `{u['prompt']}` | t{u['text_index']} | {u['other_prompt'] or '-'} | "
        f"[{u['directory']}]({u['directory']}/summary.md) |"
        for u in summary["units"]
    ]
    return "\n".join(lines) + "\n"


def write_summary(directory: Path, summary: dict[str, Any]) -> None:
    """``summary.json`` and ``summary.md`` into ``directory``."""
    (directory / "summary.json").write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    (directory / "summary.md").write_text(summary_markdown(summary), encoding="utf-8")


def write_run(
    staged: StagedDirectory,
    run: MatrixRun,
    wall_s: float,
    study: StudyResult | None = None,
    *,
    model_set_choice: dict[str, str] | None = None,
    execution: dict[str, Any] | None = None,
) -> Path:
    """Write every file of ``run`` (and of its ``study``, when given) into ``staged`` (a
    :class:`StagedDirectory`, or a resumable run's :class:`~bark_ablation.study.resume.ResumableDirectory`)
    and move it to its destination. ``execution``: how the samples were made
    (:meth:`~bark_ablation.study.progress.StudyProgress.record`), for the summary."""
    _write_unit(staged.path, run, wall_s, study, model_set_choice, execution)
    return staged.commit()


def _write_unit(
    directory: Path,
    run: MatrixRun,
    wall_s: float,
    study: StudyResult | None,
    model_set_choice: dict[str, str] | None,
    execution: dict[str, Any] | None = None,
) -> None:
    for generation in run.generations:
        write_generation(directory, generation)
    if study is not None:
        from bark_ablation.study.analysis import write_study

        write_study(directory, study)
    summary = run_summary(run, wall_s)
    if model_set_choice:
        summary["model_set"]["choice"] = model_set_choice
    if execution is not None:
        summary["execution"] = execution
    if study is not None:
        summary["speaker_encoder"] = study.reference.get("speaker_encoder")
    write_summary(directory, summary)


def write_design_run(
    staged: StagedDirectory,
    design_run: DesignRun,
    wall_s: float,
    study: StudyResult | None = None,
    *,
    model_set_choice: dict[str, str] | None = None,
    execution: dict[str, Any] | None = None,
) -> Path:
    """Write a design's run: the single-unit layout for one speaker and one text, else one unit
    directory per (speaker, text) under ``units/`` with the pooled study on top. ``execution``:
    see :func:`write_run`."""
    if design_run.is_single_unit:
        return write_run(
            staged, design_run.runs[0], wall_s, study, model_set_choice=model_set_choice, execution=execution
        )
    from bark_ablation.study.analysis import analyse, write_study

    units = []
    for unit, run in zip(design_run.units, design_run.runs, strict=True):
        directory = staged.path / "units" / unit.id
        directory.mkdir(parents=True, exist_ok=True)  # a resumable run wrote its samples there already
        unit_study = None
        if study is not None:
            scores = [s for s in study.scores if s.prompt == unit.prompt.name and s.text_index == unit.text_index]
            reference = {
                **study.reference,
                "prompts": [unit.prompt.name],
                "other_prompts": {} if unit.other_prompt is None else {unit.prompt.name: unit.other_prompt.name},
            }
            unit_study = analyse(scores, study.seconds_per_score, reference, texts=[unit.text])
            unit_study.reference_audio = {
                name: audio
                for name, audio in study.reference_audio.items()
                if unit.other_prompt is not None and name == unit.other_prompt.name or name == unit.prompt.name
            }
        unit_wall_s = sum(stage_work(run)["stage_seconds_total"].values())  # the stages' own time
        _write_unit(directory, run, unit_wall_s, unit_study, model_set_choice)
        units.append(
            {
                "id": unit.id,
                "prompt": unit.prompt.name,
                "text_index": unit.text_index,
                "directory": f"units/{unit.id}",
                "other_prompt": None if unit.other_prompt is None else unit.other_prompt.name,
            }
        )
    if study is not None:
        write_study(staged.path, study)
    summary = design_summary(design_run, wall_s, units, model_set_choice)
    if execution is not None:
        summary["execution"] = execution
    if study is not None:
        summary["speaker_encoder"] = study.reference.get("speaker_encoder")
    write_summary(staged.path, summary)
    return staged.commit()


def design_summary(
    design_run: DesignRun, wall_s: float, units: list[dict[str, Any]], model_set_choice: dict[str, str] | None
) -> dict[str, Any]:
    """JSON-ready summary of a multi-unit study (``"kind": "study"``)."""
    design = design_run.design
    first = run_summary(design_run.runs[0], wall_s)
    totals: dict[str, dict[str, float]] = {"stage_runs": {}, "stage_runs_without_reuse": {}, "stage_seconds_total": {}}
    for run in design_run.runs:
        for name, part in stage_work(run).items():
            if name == "batch_size":
                continue
            for stage, value in part.items():
                totals[name][stage] = round(totals[name].get(stage, 0) + value, 4)
    model_set = dict(first["model_set"])
    if model_set_choice:
        model_set["choice"] = model_set_choice
    return {
        "kind": "study",
        "bark_ablation_version": first["bark_ablation_version"],
        "created_utc": first["created_utc"],
        "prompts": [
            {
                "name": p.name,
                "source": p.source,
                "fingerprint": p.fingerprint,
                "semantic_tokens": p.n_semantic,
                "frames": p.n_frames,
                "other_prompt": None if o is None else o.name,
            }
            for p, o in zip(design.prompts, design.other_prompts, strict=True)
        ],
        "texts": list(design.texts),
        "seeds": list(design.seeds),
        "cells": [c.id for c in design.cells],
        "cell_descriptions": {c.id: c.description for c in design.cells},
        "params": first["params"],
        "profile": first["profile"],
        "model_set": model_set,
        "device": first["device"],
        "versions": first["versions"],
        "units": units,
        "generations": sum(len(run.generations) for run in design_run.runs),
        **(
            {
                "shard": {
                    "index": design_run.shard.index,
                    "count": design_run.shard.count,
                    "design_units": [u.id for u in design.units],
                }
            }
            if design_run.shard is not None
            else {}
        ),
        "batch_size": max(run.batch_size for run in design_run.runs),
        **totals,
        "wall_seconds": round(wall_s, 3),
        "notes": first["notes"],
    }
