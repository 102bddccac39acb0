"""Pieces every HTML/Markdown report of the package shares: reading a run's JSON, number and
interval formatting, PNG data URIs, and the render-check script.

The script records, once the page has loaded, how many images and audio elements loaded or
failed in ``<body data-render-check=...>``; :mod:`bark_ablation.study.report_check` reads it from
headless Chromium.
"""

from __future__ import annotations

import base64
import json
import math
from pathlib import Path
from typing import Any

from bark_ablation.core.errors import OutputError

PAGE_STYLE = (
    "body{font-family:sans-serif;max-width:72rem;margin:2rem auto;padding:0 1rem;color:#222}"
    "table{border-collapse:collapse;margin:1rem 0}td,th{border:1px solid #ccc;padding:.3rem .6rem}"
    "td.num{text-align:right;font-variant-numeric:tabular-nums}code{background:#f3f3f3;padding:0 .2rem}"
    ".caveat{background:#fff4e0;border-left:4px solid #dd8452;padding:.5rem 1rem}"
)
"""The CSS every report page starts from (each adds its own layout rules)."""
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


def read_json(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise OutputError(
            f"{path}: missing; is {path.parent} a directory written by `bark-ablation run` or `bark-ablation longform`?"
        )
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as error:
        raise OutputError(f"{path}: unreadable JSON ({error})") from None


def fmt(value: float | None, digits: int = 3) -> str:
    return "n/a" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.{digits}f}"


def p_text(value: float | None) -> str:
    return "n/a" if value is None else (f"{value:.2g}" if value >= 0.001 else "<0.001")


def ci_text(estimate: dict[str, Any], digits: int = 3) -> str:
    if estimate["ci_low"] is None:
        return "n/a (n = 1)"
    return f"[{estimate['ci_low']:+.{digits}f}, {estimate['ci_high']:+.{digits}f}]"


def data_uri(png: bytes) -> str:
    """A PNG as a ``data:`` URI, to embed in a page."""
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")
