"""Check that a report page renders in headless Chromium: no broken image, every audio element
resolving to a loadable file.

Chromium loads the page from disk with ``--dump-dom`` and a virtual-time budget, which lets the
page's load handlers run; the page's own render-check script (:mod:`bark_ablation.study.report`)
writes its findings into ``<body data-render-check=...>``, read back from the dumped DOM.
Chromium is Debian's ``chromium`` package (``/usr/bin/chromium``); the flags are the ones a
closed network needs (no background networking, no first-run, no component updates).
"""

from __future__ import annotations

import html
import json
import re
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome")
CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--allow-file-access-from-files",
    "--autoplay-policy=no-user-gesture-required",
)


@dataclass(frozen=True)
class RenderCheck:
    """What the page reported: counts of images and audio elements, and the broken ones."""

    images: int
    images_broken: list[str]
    audio: int
    audio_ok: int
    audio_broken: list[str]

    @property
    def ok(self) -> bool:
        return not self.images_broken and not self.audio_broken and self.audio_ok == self.audio


def find_chromium() -> str | None:
    """Path of a Chromium executable on PATH, or None."""
    for name in CHROMIUM_NAMES:
        path = shutil.which(name)
        if path:
            return path
    return None


def check_page(
    page: Path, *, chromium: str | None = None, budget_ms: int = 15_000, timeout_s: float = 90
) -> RenderCheck:
    """Render ``page`` headless and return its :class:`RenderCheck`.

    Raises RuntimeError when Chromium is missing, fails, or the page never reported.
    """
    executable = chromium or find_chromium()
    if executable is None:
        raise RuntimeError("Chromium not found (install Debian's `chromium` package)")
    with tempfile.TemporaryDirectory(prefix="bark-ablation-chromium-") as profile:
        completed = subprocess.run(
            [
                executable,
                *CHROMIUM_FLAGS,
                f"--user-data-dir={profile}",
                f"--virtual-time-budget={budget_ms}",
                "--dump-dom",
                Path(page).resolve().as_uri(),
            ],
            capture_output=True,
            encoding="utf-8",
            errors="replace",
            timeout=timeout_s,
            check=False,
        )
    match = re.search(r'data-render-check="([^"]*)"', completed.stdout)
    if match is None:
        raise RuntimeError(
            f"{page}: the page did not report (chromium exit {completed.returncode}; "
            f"stderr: {completed.stderr.strip()[-500:]})"
        )
    return RenderCheck(**json.loads(html.unescape(match.group(1))))
