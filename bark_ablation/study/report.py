"""The study report: one HTML page (and a Markdown twin) per run directory.

``write_report(run_dir)`` reads what ``bark-ablation run`` wrote (``summary.json``,
``study.json``, ``audio/*.wav``) and writes ``report.html``, ``report.md`` and
``figures/*.png``; for a multi-speaker study it also writes each unit's own report under
``units/``, which the study's page links to.

The page leads with the answer: each stage's main effect on SECS with its 95 % interval,
p-value and Holm-adjusted p-value (what survives is marked), the unit of replication and n of
every level; then the per-speaker forest plot, identity transfer, power, the interactions and
cells, and the audio. The HTML page is self-contained apart from the run's own WAV files, which
its audio players reference relatively (so the page works wherever the run directory is
copied): figures are embedded as PNG data URIs and there is no script or style from elsewhere.
A small inline script records, once the page has loaded, how many images and audio elements
loaded or failed in ``<body data-render-check=...>``; :mod:`bark_ablation.study.report_check` reads it
from headless Chromium.
"""

from __future__ import annotations

import html
from pathlib import Path
from typing import Any

from bark_ablation.core.plots import forest_plot, mel_spectrogram_png, secs_bar_chart
from bark_ablation.models.catalogue import names_of_kind
from bark_ablation.output.pages import PAGE_STYLE, RENDER_CHECK_SCRIPT
from bark_ablation.output.pages import ci_text as _ci
from bark_ablation.output.pages import data_uri as _data_uri
from bark_ablation.output.pages import fmt as _fmt
from bark_ablation.output.pages import p_text as _p
from bark_ablation.output.pages import read_json as _read_json
from bark_ablation.output.tables import Table, inline_html
from bark_ablation.study.analysis import ALPHA, MAIN_EFFECTS, reference_file
from bark_ablation.study.rescoring import agreement, primary_encoder, rescored_studies
from bark_ablation.study.similarity import load_audio


def _survives(estimate: dict[str, Any]) -> str:
    adjusted = estimate.get("p_adjusted")
    return "n/a" if adjusted is None else ("**yes**" if adjusted < ALPHA else "no")


def write_report(run_dir: Path, *, unit_reports: bool = True) -> tuple[Path, Path]:
    """Write ``report.html``, ``report.md`` and ``figures/`` into ``run_dir``; returns both paths.

    For a multi-speaker study, also each unit's report unless ``unit_reports`` is false (the
    study's page links to them)."""
    run_dir = Path(run_dir)
    summary = _read_json(run_dir / "summary.json")
    study = _read_json(run_dir / "study.json")
    multi = summary.get("kind") == "study"
    if multi and unit_reports:
        for unit in summary["units"]:
            write_report(run_dir / unit["directory"])
    figures = run_dir / "figures"
    figures.mkdir(exist_ok=True)
    sections = _sections(summary, study, multi) + _encoder_sections(study, rescored_studies(run_dir))
    images: dict[str, bytes] = {}
    model_set = summary["model_set"]["name"]
    speakers = study["levels"]["speakers"]
    title = (f"{len(speakers)} speakers" if multi else f"prompt {speakers[0]}") + f", model set {model_set}"
    images["secs"] = secs_bar_chart(study["cells"], title=title)
    if study.get("per_speaker_effects") and study["factorial_effects"]:
        images["forest"] = forest_plot(
            study["per_speaker_effects"],
            study["factorial_effects"],
            title="per-speaker main effects (95 % CI over texts x seeds) and pooled",
        )
    spectrograms = {} if multi else _spectrograms(run_dir, summary)
    for name, png in {**images, **{f"mel_{label}": png for label, png in spectrograms.items()}}.items():
        (figures / f"{name}.png").write_bytes(png)
    markdown = _markdown(summary, study, sections, images, spectrograms, multi)
    (run_dir / "report.md").write_text(markdown, encoding="utf-8")
    page = _html(summary, study, sections, images, spectrograms, multi)
    (run_dir / "report.html").write_text(page, encoding="utf-8")
    return run_dir / "report.html", run_dir / "report.md"


def _spectrograms(run_dir: Path, summary: dict[str, Any]) -> dict[str, bytes]:
    first_seed = summary["seeds"][0]
    spectrograms = {}
    for cell in summary["cells"]:
        label = f"seed{first_seed}_{cell}"
        audio, rate = load_audio(run_dir / "audio" / f"{label}.wav")
        spectrograms[label] = mel_spectrogram_png(audio, rate, title=f"{cell}, seed {first_seed}")
    return spectrograms


def _descriptions(summary: dict[str, Any]) -> dict[str, str]:
    if "cell_descriptions" in summary:
        return summary["cell_descriptions"]
    return {g["cell"]: g["conditioning"] for g in summary["generations"]}


def _design_lines(summary: dict[str, Any], study: dict[str, Any], multi: bool) -> list[str]:
    levels, unit = study["levels"], study["unit"]
    texts = summary["texts"] if multi else [summary["text"]]
    model_set = summary["model_set"]
    lines = [
        f"speakers (n = {len(levels['speakers'])}): " + ", ".join(f"`{s}`" for s in levels["speakers"]),
        f"texts (n = {len(texts)}): " + "; ".join(f"t{i} {t!r}" for i, t in enumerate(texts)),
        f"seeds (n = {len(levels['seeds'])}): {', '.join(map(str, levels['seeds']))}",
        f"cells (n = {len(summary['cells'])}): " + ", ".join(f"`{c}`" for c in summary["cells"]),
        (
            "unit of replication: **the speaker** (per speaker, each cell's SECS is averaged over texts and seeds; "
            f"intervals and tests are across the {len(levels['speakers'])} speakers)"
            if unit == "speaker"
            else "unit of replication: **the seed** (one speaker: every statement below is about this speaker only)"
        ),
        f"model set: `{model_set['name']}`, device class `{summary['device']['device_class']}`"
        + (f" ({model_set['choice']['reason']})" if model_set.get("choice") else ""),
        f"Bark: {model_set['implementation']} {summary['versions'].get(model_set['implementation'])}, "
        f"torch {summary['versions'].get('torch')}",
        f"metric: {study['metric']}",
        f"statistics: {study['interval']}",
    ]
    return lines


def _estimate_row(e: dict[str, Any], digits: int = 4) -> list[str]:
    return [
        f"{e['mean']:+.{digits}f}",
        _ci(e, digits),
        _p(e.get("p_value")),
        _p(e.get("p_adjusted")),
        _survives(e),
        str(e["n"]),
    ]


ESTIMATE_HEADER = ["estimate", "95 % CI", "p", "Holm p", "survives", "n"]


def _sections(summary: dict[str, Any], study: dict[str, Any], multi: bool) -> list[tuple[str, str, Table | None]]:
    """(heading, paragraph, table) in report order."""
    sections = []
    effects = study["factorial_effects"]
    main = [e for e in effects if e["name"] in MAIN_EFFECTS]
    unit = study["unit"]
    if main:
        carrying = [e["name"] for e in main if e.get("p_adjusted") is not None and e["p_adjusted"] < ALPHA]
        answer = (
            f"Stages whose history changes SECS (Holm-adjusted p < {ALPHA}, across {unit}s): "
            + (", ".join(f"**{name}**" for name in carrying) if carrying else "**none**")
            + "."
        )
        sections.append(
            (
                "The answer: each stage's main effect on SECS",
                answer + " Main effect: mean SECS with the stage's history minus without, over the 8 on/off cells.",
                Table(
                    ["stage", *ESTIMATE_HEADER], [[e["name"], *_estimate_row(e)] for e in main], numeric={1, 3, 4, 6}
                ),
            )
        )
    else:
        sections.append(
            (
                "The answer",
                "Not every one of the 8 on/off cells ran, so there are no main effects; "
                "see the paired differences below.",
                None,
            )
        )
    if study.get("per_speaker_effects") and effects:
        sections.append(
            (
                "Per speaker",
                "The forest plot shows each speaker's main effects (95 % CI over its texts x "
                "seeds: about that speaker only) and the pooled effect across speakers.",
                None,
            )
        )
    transfer = study.get("identity_transfer") or []
    if transfer:
        rows = [[e["name"], *_estimate_row(e)] for e in transfer]
        ceiling = study.get("identity_transfer_ceiling")
        if ceiling:
            rows.append(
                [
                    ceiling["name"] + " (ceiling, not in the family)",
                    *_estimate_row(ceiling)[:2],
                    "",
                    "",
                    "",
                    str(ceiling["n"]),
                ]
            )
        sections.append(
            (
                "Identity transfer",
                "ITI_X = m(scf with stage X given the other speaker's history) - m(scf), where m = SECS vs "
                "the other speaker - SECS vs the own speaker. Positive: that stage's history pulls the "
                "voice toward the speaker it came from.",
                Table(["stage (cell)", *ESTIMATE_HEADER], rows, numeric={1, 3, 4, 6}),
            )
        )
    power = study.get("power") or {}
    if power:
        rows = []
        for stage, entry in power.items():
            seeds = entry.get("seeds_needed", "n/a")
            rows.append(
                [
                    stage,
                    _fmt(entry["sd_across_units"], 4),
                    _fmt(entry["minimum_detectable_effect"], 4),
                    str(entry["units_needed"] if entry["units_needed"] is not None else "n/a"),
                    "n/a" if "seeds_needed" not in entry else ("more seeds cannot" if seeds is None else str(seeds)),
                ]
            )
        sections.append(
            (
                "Power",
                f"From the observed spread across {unit}s: the smallest main effect this design detects "
                f"with 80 % power at alpha 0.05 (two-sided t-test), and how many {unit}s would detect "
                f"0.02 SECS"
                + (" (or how many seeds per speaker and text, with these speakers)" if unit == "speaker" else "")
                + f". 2 is the fewest {unit}s a t-test "
                "can use; 'more seeds cannot': with these speakers, the spread between speakers alone keeps "
                "0.02 out of reach (add speakers).",
                Table(
                    [
                        "stage",
                        f"SD across {unit}s",
                        "detectable (80 %)",
                        f"{unit}s for 0.02",
                        *(["seeds for 0.02"] if unit == "speaker" else []),
                    ],
                    [row if unit == "speaker" else row[:4] for row in rows],
                    numeric={1, 2, 3, 4},
                ),
            )
        )
    others = [e for e in effects if e["name"] not in MAIN_EFFECTS]
    if others:
        sections.append(
            (
                "Interactions",
                "Half the change of one stage's effect when the other stage is switched on "
                "(Holm family: all 7 factorial terms).",
                Table(
                    ["term", *ESTIMATE_HEADER], [[e["name"], *_estimate_row(e)] for e in others], numeric={1, 3, 4, 6}
                ),
            )
        )
    descriptions = _descriptions(summary)
    differences = {e["name"].split(" - ")[0]: e for e in study["differences_vs_full"]}
    rows = []
    for e in study["cells"]:
        d = differences.get(e["name"])
        rows.append(
            [
                f"`{e['name']}`",
                descriptions.get(e["name"], ""),
                _fmt(e["mean"]),
                _ci(e),
                "reference" if d is None else f"{d['mean']:+.4f} {_ci(d, 4)}",
                "" if d is None else _p(d.get("p_adjusted")),
                "" if d is None else _survives(d),
                str(e["n"]),
            ]
        )
    sections.append(
        (
            "Cells",
            f"Mean SECS per cell across {unit}s, and the paired difference from `scf` (one Holm family).",
            Table(
                ["cell", "conditioning", "mean SECS", "95 % CI", "vs `scf` (95 % CI)", "Holm p", "survives", "n"],
                rows,
                numeric={2, 5, 7},
            ),
        )
    )
    return sections


def _encoder_sections(study: dict[str, Any], others: dict[str, dict[str, Any]]) -> list[tuple[str, str, Table | None]]:
    """With re-scored studies (``bark-ablation rescore``), how far each encoder agrees with this one."""
    if not others:
        return []
    primary = primary_encoder(study)
    rows = []
    for name, other in others.items():
        found = agreement(study, other)
        rows.append(
            [
                f"`{name}`",
                "n/a" if found["spearman_rho"] is None else f"{found['spearman_rho']:+.3f}",
                _p(found["spearman_p"]),
                str(found["cells"]),
                *(
                    (
                        ""
                        if stage not in found["stages"]
                        else ("agrees" if found["stages"][stage]["agree"] else "**differs**")
                        + f" ({found['stages'][stage]['other']})"
                    )
                    for stage in MAIN_EFFECTS
                ),
            ]
        )
    return [
        (
            "Speaker encoders",
            f"Every number above comes from `{primary}`. The same samples re-scored (`bark-ablation rescore`, "
            f"files in `encoders/<name>/`): Spearman's rho of the per-cell mean SECS against `{primary}`'s, and "
            f"whether each stage's answer (main effect surviving Holm at {ALPHA}, and its sign) agrees.",
            Table(
                ["encoder", "Spearman rho", "p", "cells", *(f"{stage} answer" for stage in MAIN_EFFECTS)],
                rows,
                numeric={1, 2, 3},
            ),
        )
    ]


def random_weights_caveat(summary: dict[str, Any]) -> str:
    """The caveat a report leads with when its model set has random weights (the tiny sets and
    the random full-size sets, by the catalogue's kinds), else ``""``."""
    name = summary["model_set"]["name"]
    if name in names_of_kind("tiny") or name in names_of_kind("random"):
        return (
            f"Model set `{name}` has random weights: its audio is noise-like and these scores test "
            "the plumbing only; they say nothing about speaker identity."
        )
    return ""


_caveat = random_weights_caveat


def _title(study: dict[str, Any], multi: bool) -> str:
    speakers = study["levels"]["speakers"]
    return (
        f"Speaker identity by stage: {len(speakers)} speakers"
        if multi
        else f"Speaker identity by stage: prompt `{speakers[0]}`"
    )


def _markdown(summary, study, sections, images, spectrograms, multi) -> str:
    lines = [f"# {_title(study, multi)}", ""]
    if _caveat(summary):
        lines += [f"> {_caveat(summary)}", ""]
    lines += [f"- {line}" for line in _design_lines(summary, study, multi)] + [""]
    for heading, paragraph, table in sections:
        lines += [f"## {heading}", "", paragraph, ""]
        if heading == "Per speaker":
            lines += ["![per-speaker main effects](figures/forest.png)", ""]
        if table is not None:
            lines += table.markdown()
        if heading == "Cells":
            lines += ["![SECS per cell](figures/secs.png)", ""]
    lines += ["## Listen", ""]
    speakers = study["levels"]["speakers"]
    for speaker in _reference_speakers(study):
        name = reference_file(speaker, speakers)
        lines.append(f"- reference `{speaker}` (the prompt, decoded): [audio/{name}](audio/{name})")
    if multi:
        lines += [""] + [f"- unit `{u['id']}`: [report]({u['directory']}/report.md)" for u in summary["units"]]
    else:
        for cell in summary["cells"]:
            links = ", ".join(f"[seed {s}](audio/seed{s}_{cell}.wav)" for s in summary["seeds"])
            label = f"seed{summary['seeds'][0]}_{cell}"
            lines.append(f"- `{cell}`: {links} ![mel {cell}](figures/mel_{label}.png)")
    return "\n".join(lines) + "\n"


def _reference_speakers(study: dict[str, Any]) -> list[str]:
    others = list((study.get("reference") or {}).get("other_prompts", {}).values())
    return list(dict.fromkeys([*study["levels"]["speakers"], *others]))


def _html(summary, study, sections, images, spectrograms, multi) -> str:
    e = html.escape
    head = (
        "<!doctype html><html lang='en'><head><meta charset='utf-8'>"
        f"<title>bark-ablation report: {e(_title(study, multi))}</title><style>"
        + PAGE_STYLE
        + ".cells{display:grid;grid-template-columns:repeat(auto-fill,minmax(22rem,1fr));gap:1rem}"
        ".cell{border:1px solid #ddd;padding:.5rem}.cell audio,.cell img,img{max-width:100%}</style></head><body>"
    )
    parts = [head, f"<h1>{inline_html(_title(study, multi))}</h1>"]
    if _caveat(summary):
        parts.append(f"<p class='caveat'>{inline_html(_caveat(summary))}</p>")
    parts.append(
        "<ul>" + "".join(f"<li>{inline_html(line)}</li>" for line in _design_lines(summary, study, multi)) + "</ul>"
    )
    for heading, paragraph, table in sections:
        parts.append(f"<h2>{e(heading)}</h2><p>{inline_html(paragraph)}</p>")
        if heading == "Per speaker":
            parts.append(f"<img alt='per-speaker main effects' src='{_data_uri(images['forest'])}'>")
        if table is not None:
            parts.append(table.html())
        if heading == "Cells":
            parts.append(f"<img alt='SECS per cell' src='{_data_uri(images['secs'])}'>")
    parts.append("<h2>Listen</h2>")
    speakers = study["levels"]["speakers"]
    for speaker in _reference_speakers(study):
        parts.append(
            f"<p>Reference <code>{e(speaker)}</code> (the prompt, decoded): <audio controls "
            f"preload='metadata' src='audio/{e(reference_file(speaker, speakers))}'></audio></p>"
        )
    if multi:
        parts.append(
            "<ul>"
            + "".join(
                f"<li>unit <code>{e(u['id'])}</code>: <a href='{e(u['directory'])}/report.html'>"
                f"report and audio</a></li>"
                for u in summary["units"]
            )
            + "</ul>"
        )
    else:
        parts.append("<div class='cells'>")
        for cell in summary["cells"]:
            label = f"seed{summary['seeds'][0]}_{cell}"
            players = "".join(
                f"<div>seed {s} <audio controls preload='metadata' src='audio/seed{s}_{e(cell)}.wav'></audio></div>"
                for s in summary["seeds"]
            )
            parts.append(
                f"<div class='cell'><h3><code>{e(cell)}</code></h3>"
                f"<img alt='mel spectrogram {e(cell)}' src='{_data_uri(spectrograms[label])}'>{players}</div>"
            )
        parts.append("</div>")
    parts.append(RENDER_CHECK_SCRIPT + "</body></html>\n")
    return "".join(parts)
