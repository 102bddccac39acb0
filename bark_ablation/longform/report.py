"""The long-form report: ``report.html`` and ``report.md`` for a directory written by
``bark-ablation longform``.

It leads with the answer: which policy holds the voice best, and how much SECS each policy
loses per chunk (the slope, with its 95 % interval over units and Holm-adjusted p), with the
first-to-last difference beside it; then the per-chunk plot (mean SECS at each chunk index per
policy, with intervals), and players for every joined passage and every chunk. Like the study's
report, the page is self-contained apart from the run's WAVs, which it references relatively,
and it records for the render check (:mod:`bark_ablation.study.report_check`) how many images
and players loaded.
"""

from __future__ import annotations

import html
from pathlib import Path
from typing import Any

from bark_ablation.core.errors import OutputError
from bark_ablation.core.plots import chunk_secs_plot
from bark_ablation.longform.output import KIND, chunk_file, passage_file, reference_file
from bark_ablation.output.pages import PAGE_STYLE, RENDER_CHECK_SCRIPT, ci_text, data_uri, p_text, read_json
from bark_ablation.output.tables import Table, inline_html
from bark_ablation.study.report import random_weights_caveat
from bark_ablation.study.statistics import ALPHA


def write_longform_report(run_dir: Path) -> tuple[Path, Path]:
    """Write ``report.html``, ``report.md`` and ``figures/chunks.png`` into ``run_dir``."""
    run_dir = Path(run_dir)
    summary = read_json(run_dir / "summary.json")
    if summary.get("kind") != KIND:
        raise OutputError(f"{run_dir}: not a long-form run (summary.json kind {summary.get('kind')!r})")
    if not (run_dir / "drift.json").is_file():
        raise OutputError(
            f"{run_dir}: has no drift.json: the run was made with --no-study, so there is nothing to report"
        )
    drift = read_json(run_dir / "drift.json")
    png = chunk_secs_plot(
        drift["per_chunk"],
        title=f"SECS per chunk, {drift['n']['speakers']} speaker(s), model set {summary['model_set']['name']}",
    )
    (run_dir / "figures").mkdir(exist_ok=True)
    (run_dir / "figures" / "chunks.png").write_bytes(png)
    answer = answer_lines(drift)
    table = drift_table(drift)
    (run_dir / "report.md").write_text(_markdown(summary, drift, answer, table), encoding="utf-8")
    (run_dir / "report.html").write_text(_html(summary, drift, answer, table, png), encoding="utf-8")
    return run_dir / "report.html", run_dir / "report.md"


def answer_lines(drift: dict[str, Any]) -> list[str]:
    """The answer, first: the policy that holds the voice best (or that none drifts detectably),
    then what each policy loses per chunk."""
    policies = {p["policy"]: p for p in drift["policies"]}
    best = policies[drift["best_policy"]]
    unit, n = drift["unit"], drift["n"][drift["unit"] + "s"]
    drifting = [p for p in policies.values() if _found(p["slope"])]
    lead = (
        f"`{best['policy']}` holds the voice best: SECS {_change(best['slope'])} per chunk "
        f"{ci_text(best['slope'], 4)} (95 % t-interval over {n} {unit}s)"
    )
    if drifting:
        lead += "; drift found (Holm p < 0.05) under " + ", ".join(f"`{p['policy']}`" for p in drifting) + "."
    else:
        lead += "; no policy's slope differs from 0 at Holm-adjusted p < 0.05, so the ranking is not established."
    lines = [lead]
    for policy in sorted(policies.values(), key=lambda p: -p["slope"]["mean"]):
        slope = policy["slope"]
        lines.append(
            f"`{policy['policy']}`: SECS {_change(slope)} per chunk {ci_text(slope, 4)}, Holm p "
            f"{p_text(slope['p_adjusted'])}; last chunk minus first {policy['first_to_last']['mean']:+.4f}"
        )
    return lines


def _change(slope: dict[str, Any]) -> str:
    return f"loses {-slope['mean']:.4f}" if slope["mean"] < 0 else f"gains {slope['mean']:.4f}"


def _found(estimate: dict[str, Any]) -> bool:
    return estimate["p_adjusted"] is not None and estimate["p_adjusted"] < ALPHA


def drift_table(drift: dict[str, Any]) -> Table:
    """One row per policy: slope and first-to-last difference with intervals and Holm p."""
    rows = []
    for policy in drift["policies"]:
        slope, change = policy["slope"], policy["first_to_last"]
        rows.append(
            [
                f"`{policy['policy']}`",
                f"{slope['mean']:+.4f}",
                ci_text(slope, 4),
                p_text(slope["p_adjusted"]),
                f"{change['mean']:+.4f}",
                ci_text(change, 4),
                p_text(change["p_adjusted"]),
                str(slope["n"]),
            ]
        )
    return Table(
        [
            "policy",
            "slope (SECS/chunk)",
            "95 % CI",
            "Holm p",
            "last - first",
            "95 % CI",
            "Holm p",
            "n",
        ],
        rows,
        numeric={1, 3, 4, 6, 7},
    )


def _design_lines(summary: dict[str, Any], drift: dict[str, Any]) -> list[str]:
    return [
        f"unit of replication: {drift['unit']} (n = {drift['n'][drift['unit'] + 's']}); speakers: "
        + ", ".join(f"`{p['name']}`" for p in summary["prompts"]),
        f"passages: {len(summary['passages'])} ("
        + ", ".join(f"{p['id']}: {len(p['chunks'])} chunks" for p in summary["passages"])
        + f"); seeds: {', '.join(map(str, summary['seeds']))}",
        "policies: " + "; ".join(f"`{p['name']}`: {p['description']}" for p in summary["policies"]),
        f"model set `{summary['model_set']['name']}` ({summary['model_set']['implementation']}), profile "
        f"`{summary['profile']['name']}`, device class `{summary['device']['device_class']}`",
        f"metric: {drift['metric']}; drift: least-squares slope over the chunk index per run, averaged within each unit",
    ]


def _markdown(summary, drift, answer, table) -> str:
    lines = ["# Long-form drift: which history policy holds the voice", ""]
    if random_weights_caveat(summary):
        lines += [f"> {random_weights_caveat(summary)}", ""]
    lines += ["## Answer", "", *[f"- {line}" for line in answer], ""]
    lines += [*table.markdown(), "", "![SECS per chunk](figures/chunks.png)", ""]
    lines += ["## Design", "", *[f"- {line}" for line in _design_lines(summary, drift)], ""]
    lines += ["## Listen", ""]
    for unit in summary["units"]:
        for policy in summary["policies"]:
            for seed in summary["seeds"]:
                lines.append(
                    f"- `{unit['id']}` `{policy['name']}` seed {seed}: "
                    f"[passage](units/{unit['id']}/audio/{passage_file(policy['name'], seed)})"
                )
    return "\n".join(lines) + "\n"


def _html(summary, drift, answer, table, png: bytes) -> str:
    e = html.escape
    head = (
        "<!doctype html><html lang='en'><head><meta charset='utf-8'>"
        "<title>bark-ablation longform report</title><style>"
        + PAGE_STYLE
        + ".runs{display:grid;grid-template-columns:repeat(auto-fill,minmax(22rem,1fr));gap:1rem}"
        ".run{border:1px solid #ddd;padding:.5rem}audio,img{max-width:100%}</style></head><body>"
    )
    parts = [head, "<h1>Long-form drift: which history policy holds the voice</h1>"]
    if random_weights_caveat(summary):
        parts.append(f"<p class='caveat'>{inline_html(random_weights_caveat(summary))}</p>")
    parts.append("<h2>Answer</h2><ul>" + "".join(f"<li>{inline_html(line)}</li>" for line in answer) + "</ul>")
    parts.append(table.html())
    parts.append(f"<img alt='SECS per chunk' src='{data_uri(png)}'>")
    parts.append(
        "<h2>Design</h2><ul>"
        + "".join(f"<li>{inline_html(line)}</li>" for line in _design_lines(summary, drift))
        + "</ul>"
    )
    parts.append("<h2>Listen</h2>")
    for prompt in summary["prompts"]:
        parts.append(
            f"<p>Reference <code>{e(prompt['name'])}</code> (the prompt, decoded): <audio controls preload='metadata' "
            f"src='audio/{e(reference_file(prompt['name']))}'></audio></p>"
        )
    chunk_counts = {p["id"]: len(p["chunks"]) for p in summary["passages"]}
    for unit in summary["units"]:
        parts.append(f"<h3><code>{e(unit['id'])}</code></h3><div class='runs'>")
        for policy in summary["policies"]:
            for seed in summary["seeds"]:
                base = f"units/{e(unit['id'])}/audio/"
                chunks = "".join(
                    f"<div>chunk {k} <audio controls preload='none' "
                    f"src='{base}{e(chunk_file(policy['name'], seed, k))}'></audio></div>"
                    for k in range(chunk_counts[unit["passage"]])
                )
                parts.append(
                    f"<div class='run'><h4><code>{e(policy['name'])}</code>, seed {seed}</h4>"
                    f"<div>passage <audio controls preload='metadata' "
                    f"src='{base}{e(passage_file(policy['name'], seed))}'></audio></div>{chunks}</div>"
                )
        parts.append("</div>")
    parts.append(RENDER_CHECK_SCRIPT + "</body></html>\n")
    return "".join(parts)
