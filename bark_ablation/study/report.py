"""The study report: one HTML page (and a Markdown twin) per run directory.

``write_report(run_dir)`` reads what ``bark-ablation run`` wrote (``summary.json``,
``study.json``, ``audio/*.wav``) and writes ``report.html``, ``report.md`` and
``figures/*.png``. The HTML page is self-contained apart from the run's own WAV files, which
its audio players reference relatively (so the page works wherever the run directory is
copied): figures are embedded as PNG data URIs and there is no script or style from elsewhere.
A small inline script records, once the page has loaded, how many images and audio elements
loaded or failed in ``<body data-render-check=...>``; :mod:`bark_ablation.study.report_check` reads it
from headless Chromium.
"""

from __future__ import annotations

import base64
import html
import json
import math
from pathlib import Path
from typing import Any

from bark_ablation.core.errors import OutputError
from bark_ablation.core.plots import mel_spectrogram_png, secs_bar_chart
from bark_ablation.study.similarity import load_audio
from bark_ablation.study.analysis import REFERENCE_WAV

RENDER_CHECK_SCRIPT = """
<script>
window.addEventListener("load", function () {
  var images = Array.from(document.images);
  var audios = Array.from(document.querySelectorAll("audio"));
  var result = {images: images.length, images_broken: images.filter(function (i) {
    return !(i.complete && i.naturalWidth > 0); }).map(function (i) { return i.alt; }),
    audio: audios.length, audio_ok: 0, audio_broken: []};
  var pending = audios.length;
  function done() { document.body.setAttribute("data-render-check", JSON.stringify(result)); }
  if (pending === 0) { done(); return; }
  audios.forEach(function (a) {
    function settle(ok) { if (a.dataset.settled) return; a.dataset.settled = "1";
      if (ok) { result.audio_ok += 1; } else { result.audio_broken.push(a.getAttribute("src")); }
      pending -= 1; if (pending === 0) { done(); } }
    if (a.readyState >= 1) { settle(true); return; }
    a.addEventListener("loadedmetadata", function () { settle(true); });
    a.addEventListener("error", function () { settle(false); });
    a.load();
  });
});
</script>
"""


def _read_json(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise OutputError(f"{path}: missing; is {path.parent} a directory written by `bark-ablation run`?")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as error:
        raise OutputError(f"{path}: unreadable JSON ({error})") from None


def _fmt(value: float | None, digits: int = 3) -> str:
    return "n/a" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.{digits}f}"


def _ci(estimate: dict[str, Any]) -> str:
    if estimate["ci_low"] is None:
        return "n/a (1 seed)"
    return f"[{_fmt(estimate['ci_low'])}, {_fmt(estimate['ci_high'])}]"


def write_report(run_dir: Path) -> tuple[Path, Path]:
    """Write ``report.html``, ``report.md`` and ``figures/`` into ``run_dir``; returns both paths."""
    run_dir = Path(run_dir)
    summary = _read_json(run_dir / "summary.json")
    study = _read_json(run_dir / "study.json")
    figures = run_dir / "figures"
    figures.mkdir(exist_ok=True)
    model_set = summary["model_set"]["name"]
    prompt = summary["prompt"]["name"]
    chart = secs_bar_chart(study["cells"], title=f"prompt {prompt}, model set {model_set}")
    (figures / "secs.png").write_bytes(chart)
    differences = {e["name"].split(" - ")[0]: e for e in study["differences_vs_full"]}
    cells = summary["cells"]
    first_seed = summary["seeds"][0]
    spectrograms = {}
    for cell in cells:
        label = f"seed{first_seed}_{cell}"
        audio, rate = load_audio(run_dir / "audio" / f"{label}.wav")
        spectrograms[cell] = mel_spectrogram_png(audio, rate, title=f"{cell}, seed {first_seed}")
        (figures / f"mel_{label}.png").write_bytes(spectrograms[cell])
    descriptions = {g["cell"]: g["conditioning"] for g in summary["generations"]}
    tiny = model_set == "tiny"
    caveat = ("Model set `tiny` has random weights: its audio is noise-like and these scores test "
              "the plumbing only; they say nothing about speaker identity." if tiny else "")

    rows = []
    for estimate in study["cells"]:
        cell = estimate["name"]
        difference = differences.get(cell)
        rows.append((cell, descriptions.get(cell, ""), _fmt(estimate["mean"]), _ci(estimate),
                     "reference" if difference is None else
                     f"{difference['mean']:+.3f} {_ci(difference)}, d_z {_fmt(difference.get('standardized'), 2)}",
                     str(estimate["n"])))
    effects = [(e["name"], f"{e['mean']:+.4f}", _ci(e), _fmt(e.get("standardized"), 2), str(e["n"]))
               for e in study["factorial_effects"]]

    markdown = _markdown(summary, study, rows, effects, caveat, cells, first_seed)
    (run_dir / "report.md").write_text(markdown, encoding="utf-8")
    page = _html(summary, study, rows, effects, caveat, cells, chart, spectrograms)
    (run_dir / "report.html").write_text(page, encoding="utf-8")
    return run_dir / "report.html", run_dir / "report.md"


def _markdown(summary, study, rows, effects, caveat, cells, first_seed) -> str:
    lines = [f"# Speaker identity by stage: prompt `{summary['prompt']['name']}`", ""]
    if caveat:
        lines += [f"> {caveat}", ""]
    lines += [f"- text: {summary['text']!r}", f"- seeds: {', '.join(map(str, summary['seeds']))}",
              f"- model set: `{summary['model_set']['name']}`, device class `{summary['device']['device_class']}`",
              f"- metric: {study['metric']}", "",
              "| cell | conditioning | mean SECS | 95 % CI | vs `scf` (paired, 95 % CI, d_z) | seeds |",
              "|---|---|---:|---|---|---:|"]
    lines += [f"| `{r[0]}` | {r[1]} | {r[2]} | {r[3]} | {r[4]} | {r[5]} |" for r in rows]
    lines += ["", "![SECS per cell](figures/secs.png)", ""]
    if effects:
        lines += ["## Factorial effects (on/off cells)", "",
                  ("Main effect: mean SECS with the stage's history minus without; interactions: "
                  "half the change of one effect when the other stage is switched on."), "",
                  "| term | effect | 95 % CI | d_z | seeds |", "|---|---:|---|---:|---:|"]
        lines += [f"| {e[0]} | {e[1]} | {e[2]} | {e[3]} | {e[4]} |" for e in effects]
        lines.append("")
    lines += ["## Listen", "", f"Reference (the prompt, decoded): [audio/{REFERENCE_WAV}](audio/{REFERENCE_WAV})", ""]
    for cell in cells:
        links = ", ".join(f"[seed {s}](audio/seed{s}_{cell}.wav)" for s in summary["seeds"])
        lines.append(f"- `{cell}`: {links} ![mel {cell}](figures/mel_seed{first_seed}_{cell}.png)")
    return "\n".join(lines) + "\n"


def _data_uri(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def _html(summary, study, rows, effects, caveat, cells, chart, spectrograms) -> str:
    e = html.escape
    head = ("<!doctype html><html lang='en'><head><meta charset='utf-8'>"
            f"<title>bark-ablation report: {e(summary['prompt']['name'])}</title><style>"
            "body{font-family:sans-serif;max-width:72rem;margin:2rem auto;padding:0 1rem;color:#222}"
            "table{border-collapse:collapse;margin:1rem 0}td,th{border:1px solid #ccc;padding:.3rem .6rem}"
            "td.num{text-align:right;font-variant-numeric:tabular-nums}code{background:#f3f3f3;padding:0 .2rem}"
            ".caveat{background:#fff4e0;border-left:4px solid #dd8452;padding:.5rem 1rem}"
            ".cells{display:grid;grid-template-columns:repeat(auto-fill,minmax(22rem,1fr));gap:1rem}"
            ".cell{border:1px solid #ddd;padding:.5rem}.cell audio,.cell img,img{max-width:100%}</style></head><body>")
    parts = [head, f"<h1>Speaker identity by stage: prompt <code>{e(summary['prompt']['name'])}</code></h1>"]
    if caveat:
        parts.append(f"<p class='caveat'>{e(caveat)}</p>")
    parts.append("<ul>" + "".join(f"<li>{item}</li>" for item in [
        f"text: {e(repr(summary['text']))}", f"seeds: {e(', '.join(map(str, summary['seeds'])))}",
        (f"model set: <code>{e(summary['model_set']['name'])}</code>, device class "
        f"<code>{e(summary['device']['device_class'])}</code>"), f"metric: {e(study['metric'])}",
        (f"Bark: {e(summary['model_set']['implementation'])} "
         f"{e(str(summary['versions'].get(summary['model_set']['implementation'])))}, "
         f"torch {e(str(summary['versions'].get('torch')))}"),
    ]) + "</ul>")
    parts.append("<table><tr><th>cell</th><th>conditioning</th><th>mean SECS</th><th>95 % CI</th>"
                 "<th>vs <code>scf</code> (paired, 95 % CI, d_z)</th><th>seeds</th></tr>")
    parts += [f"<tr><td><code>{e(r[0])}</code></td><td>{e(r[1])}</td><td class='num'>{e(r[2])}</td>"
              f"<td class='num'>{e(r[3])}</td><td class='num'>{e(r[4])}</td><td class='num'>{e(r[5])}</td></tr>"
              for r in rows]
    parts.append("</table>")
    parts.append(f"<img alt='SECS per cell' src='{_data_uri(chart)}'>")
    if effects:
        parts.append("<h2>Factorial effects (on/off cells)</h2><p>Main effect: mean SECS with the stage's "
                     "history minus without. Interaction: half the change of one stage's effect when the "
                     "other is switched on. d_z: effect over the standard deviation of its per-seed values.</p>"
                     "<table><tr><th>term</th><th>effect</th><th>95 % CI</th><th>d_z</th><th>seeds</th></tr>")
        parts += [f"<tr><td>{e(x[0])}</td><td class='num'>{e(x[1])}</td><td class='num'>{e(x[2])}</td>"
                  f"<td class='num'>{e(x[3])}</td><td class='num'>{e(x[4])}</td></tr>" for x in effects]
        parts.append("</table>")
    parts.append(f"<h2>Listen</h2><p>Reference (the prompt, decoded): "
                 f"<audio controls preload='metadata' src='audio/{REFERENCE_WAV}'></audio></p><div class='cells'>")
    for cell in cells:
        players = "".join(f"<div>seed {s} <audio controls preload='metadata' src='audio/seed{s}_{e(cell)}.wav'>"
                          f"</audio></div>" for s in summary["seeds"])
        parts.append(f"<div class='cell'><h3><code>{e(cell)}</code></h3>"
                     f"<img alt='mel spectrogram {e(cell)}' src='{_data_uri(spectrograms[cell])}'>{players}</div>")
    parts.append("</div>" + RENDER_CHECK_SCRIPT + "</body></html>\n")
    return "".join(parts)
