"""Writing a long-form run directory.

Built under a temporary name and renamed into place when complete
(:class:`~bark_ablation.output.staging.StagedDirectory`): an interrupted or failed run leaves
nothing at ``out``. Layout::

    out/
      summary.json        "kind": "longform": design (passages and their chunks, policies),
                          params, profile, model set, versions, stage runs, timings
      summary.md          the same, readable
      chunks.csv          one row per speaker, passage, policy, seed and chunk: duration (s),
                          SECS vs the prompt's reference, SECS vs the run's first chunk
      drift.csv           one row per policy: slope (SECS per chunk) and first-to-last difference,
                          each with its 95 % t-interval over units, p and Holm-adjusted p
      drift.json          the same with the per-chunk means the report plots
      audio/reference_<prompt>.wav     the prompt decoded by the model set's codec
      units/<prompt>_p<k>/audio/seed<N>_<policy>_c<k>.wav      each chunk (float32, 24 kHz)
      units/<prompt>_p<k>/audio/seed<N>_<policy>_passage.wav   the chunks joined (0.25 s apart)
      units/<prompt>_p<k>/tokens/seed<N>_<policy>_c<k>.npz     semantic, coarse, fine

Without the study (``--no-study``) the CSVs and ``drift.json`` are left out.
"""

from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from bark_ablation.core.environment import device_description, package_versions
from bark_ablation.core.version import __version__
from bark_ablation.core.wav import write_wav
from bark_ablation.generation.pipeline import SAMPLE_RATE
from bark_ablation.longform.generation import LongformRun, design_summary, joined_audio, unit_id
from bark_ablation.longform.identity_drift import DriftResult, write_drift
from bark_ablation.output.staging import StagedDirectory
from bark_ablation.study.design import safe_name

KIND = "longform"
"""``summary.json``'s ``kind`` for a long-form run."""


def chunk_file(policy: str, seed: int, chunk: int) -> str:
    """File name of one chunk's WAV inside its unit's ``audio/`` (the chunk's label)."""
    return f"seed{seed}_{policy}_c{chunk}.wav"


def passage_file(policy: str, seed: int) -> str:
    """File name of a run's joined passage inside its unit's ``audio/``."""
    return f"seed{seed}_{policy}_passage.wav"


def reference_file(prompt: str) -> str:
    """File name of a speaker's reference audio inside ``audio/``."""
    return f"reference_{safe_name(prompt)}.wav"


def longform_summary(
    run: LongformRun, wall_s: float, *, model_set_choice: dict[str, str] | None = None
) -> dict[str, Any]:
    """JSON-ready summary of a long-form run."""
    model_set = run.model_set
    stage_seconds: dict[str, float] = {}
    for chunk in run.chunks:
        for stage, seconds in chunk.stage_seconds.items():
            if stage not in chunk.reused:
                stage_seconds[stage] = stage_seconds.get(stage, 0.0) + seconds
    per_chunk = [sum(chunk.stage_seconds.values()) for chunk in run.chunks]
    return {
        "kind": KIND,
        "bark_ablation_version": __version__,
        "created_utc": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        **design_summary(run.design),
        "params": run.params.to_dict(),
        "profile": run.profile.to_dict(),
        "model_set": {
            "name": model_set.name,
            "implementation": model_set.implementation,
            "provenance": model_set.provenance,
            **({"choice": model_set_choice} if model_set_choice else {}),
        },
        "device": device_description(model_set.device, model_set.cuda_dtype),
        "versions": package_versions(),
        "batch_size": run.batch_size,
        "chunks": len(run.chunks),
        "stage_runs": dict(run.stage_runs),
        "stage_runs_without_reuse": dict(run.stage_rows),
        "stage_seconds_total": {stage: round(value, 4) for stage, value in stage_seconds.items()},
        "seconds_per_chunk": round(float(np.mean(per_chunk)), 4) if per_chunk else None,
        "units": [
            {"id": unit_id(prompt.name, passage.index), "prompt": prompt.name, "passage": passage.id}
            for prompt, passage in run.design.units
        ],
        "wall_seconds": round(wall_s, 3),
        "notes": (
            "every chunk's stages are seeded from (seed, stage), as in a matrix run; the first chunk of every "
            "policy is one shared generation; coarse history means the history's semantic AND coarse tokens"
        ),
    }


def summary_markdown(summary: dict[str, Any]) -> str:
    """``summary.md`` from the summary dict."""
    model_set = summary["model_set"]
    lines = [
        f"# bark-ablation longform: {len(summary['prompts'])} speaker(s) x {len(summary['passages'])} passage(s)",
        "",
        "- speakers: " + ", ".join(f"`{p['name']}`" for p in summary["prompts"]),
        *[
            f"- passage {p['id']}: {len(p['chunks'])} chunks: " + " | ".join(repr(c) for c in p["chunks"])
            for p in summary["passages"]
        ],
        "- policies: " + "; ".join(f"`{p['name']}` ({p['description']})" for p in summary["policies"]),
        f"- seeds: {', '.join(map(str, summary['seeds']))}",
        f"- model set: `{model_set['name']}` ({model_set['implementation']} "
        f"{summary['versions'].get(model_set['implementation'])}), device class `{summary['device']['device_class']}`",
        f"- generation profile: `{summary['profile']['name']}`",
        f"- {summary['chunks']} chunks; stage runs: "
        + ", ".join(
            f"{k} {summary['stage_runs'].get(k, 0)} (of {v})" for k, v in summary["stage_runs_without_reuse"].items()
        ),
        f"- wall time: {summary['wall_seconds']:.2f} s; one chunk's stages: {summary['seconds_per_chunk']} s "
        "on average (what a chunk costs alone, shared rows counted at their run's time)",
        f"- note: {summary['notes']}",
        "",
    ]
    return "\n".join(lines)


def write_longform(
    staged: StagedDirectory,
    run: LongformRun,
    wall_s: float,
    drift: DriftResult | None = None,
    references: dict[str, np.ndarray] | None = None,
    *,
    model_set_choice: dict[str, str] | None = None,
) -> Path:
    """Write every file of the layout above into ``staged`` and move it to its destination."""
    root = staged.path
    for (prompt, passage, policy, seed), chunks in run.runs().items():
        directory = root / "units" / unit_id(prompt, passage)
        (directory / "audio").mkdir(parents=True, exist_ok=True)
        (directory / "tokens").mkdir(exist_ok=True)
        for chunk in chunks:
            write_wav(directory / "audio" / chunk_file(policy, seed, chunk.chunk), chunk.audio, chunk.sample_rate)
            np.savez(
                directory / "tokens" / f"{chunk.label}.npz",
                semantic=chunk.semantic,
                coarse=chunk.coarse,
                fine=chunk.fine,
            )
        write_wav(directory / "audio" / passage_file(policy, seed), joined_audio(chunks), chunks[0].sample_rate)
    if references:
        (root / "audio").mkdir(exist_ok=True)
        for prompt, audio in references.items():
            write_wav(root / "audio" / reference_file(prompt), audio, SAMPLE_RATE)
    if drift is not None:
        write_drift(root, drift)
    summary = longform_summary(run, wall_s, model_set_choice=model_set_choice)
    (root / "summary.json").write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    (root / "summary.md").write_text(summary_markdown(summary), encoding="utf-8")
    return staged.commit()
