"""A release series: the same workload on every listed release of one implementation.

For each release, oldest first: its overlay is installed (or found in the cache,
:mod:`bark_ablation.releases.overlays`), then :mod:`bark_ablation.releases.workload` runs in a
fresh process with the overlay first on ``PYTHONPATH``, on this machine, one release after the
other, so timings are comparable within the series. The release installed in the environment
itself runs without an overlay. A release that pip cannot install beside the environment's torch
and numpy, that will not import, or that fails in the workload is a row with the reason.

:func:`bark_ablation.releases.timeline.write_series` writes the result and its timeline.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bark_ablation.core.errors import ParamsError, ReleaseError
from bark_ablation.releases.lines import ReleaseLine, final_releases, installed_version, parse_version
from bark_ablation.releases.overlays import ensure_overlay, release_notes_url
from bark_ablation.releases.workload import DEFAULT_REPEATS, STATUS_OK

STATUS_INSTALL = "install-error"
STATUS_CRASHED = "crashed"
RELEASE_TIMEOUT_S = 1800


@dataclass
class SeriesResult:
    """Results of :func:`run_series`, oldest release first."""

    distribution: str
    versions: list[str]
    model_set: str
    device: str
    repeats: int
    results: list[dict[str, Any]] = field(default_factory=list)
    wall_s: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return {"kind": "release-series", **vars(self)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "SeriesResult":
        return cls(**{key: value for key, value in data.items() if key != "kind"})


def check_versions(line: ReleaseLine, versions: Sequence[str]) -> list[str]:
    """``versions`` sorted oldest first; ParamsError naming the field for a repeated, unparsable,
    pre-release or pre-Bark version."""
    parsed = [parse_version("versions", text) for text in versions]
    if not parsed:
        raise ParamsError("versions", "must name at least one release")
    if len(set(parsed)) != len(parsed):
        raise ParamsError("versions", "must not repeat a release")
    kept = final_releases(list(versions), since=line.first_with_bark)
    left_out = sorted(set(map(str, parsed)) - set(kept))
    if left_out:
        raise ParamsError("versions", f"{', '.join(left_out)}: not a final release of {line.distribution} with Bark "
                                      f"(Bark arrived in {line.first_with_bark}; pre-releases are not series rows)")
    return kept


def run_release(line: ReleaseLine, version: str, *, model_set: str = "tiny", device: str = "cpu",
                repeats: int = DEFAULT_REPEATS, probes_only: bool = False, probes: Sequence[str] | None = None,
                cache: Path | None = None, timeout_s: float = RELEASE_TIMEOUT_S) -> dict[str, Any]:
    """The workload's result for ``line`` at ``version``, in a subprocess over its overlay (none for
    the environment's own release). Install failures and crashes are results too. ``probes``: run
    only these probes (None: every probe)."""
    started = time.perf_counter()

    def failed(status: str, error: str) -> dict[str, Any]:
        return {"distribution": line.distribution, "version": version, "status": status, "error": error,
                "wall_s": time.perf_counter() - started}

    overlay_path = None
    if version != installed_version(line):
        try:
            overlay_path = ensure_overlay(line, version, cache).path
        except ReleaseError as error:
            return failed(STATUS_INSTALL, str(error))
    environment = dict(os.environ, PYTHONNOUSERSITE="1")
    if overlay_path is not None:
        environment["PYTHONPATH"] = os.pathsep.join(filter(None, [str(overlay_path), os.environ.get("PYTHONPATH")]))
    with tempfile.TemporaryDirectory(prefix="bark-ablation-release-") as scratch:
        out = Path(scratch) / "result.json"
        command = [sys.executable, "-m", "bark_ablation.releases.workload", "--distribution", line.distribution,
                   "--version", version, "--model-set", model_set, "--device", device, "--repeats", str(repeats),
                   "--out", str(out)]
        if overlay_path is not None:
            command += ["--overlay", str(overlay_path)]
        if probes_only:
            command.append("--probes-only")
        for probe_id in probes or ():
            command += ["--probe", probe_id]
        try:
            done = subprocess.run(command, env=environment, capture_output=True, text=True, timeout=timeout_s)
            crashed = None if done.returncode == 0 and out.is_file() else \
                f"exit status {done.returncode}: {(done.stderr.strip().splitlines() or ['no output'])[-1][:300]}"
        except subprocess.TimeoutExpired:
            crashed = f"no result within {timeout_s:.0f} s"
        if crashed is not None:
            return failed(STATUS_CRASHED, crashed)
        result = json.loads(out.read_text(encoding="utf-8"))
    result["release_notes"] = release_notes_url(overlay_path, line.distribution)
    result["wall_s"] = time.perf_counter() - started
    return result


ProgressCallback = Callable[[dict[str, Any], int, int], None]


def run_series(line: ReleaseLine, versions: Sequence[str], *, model_set: str = "tiny", device: str = "cpu",
               repeats: int = DEFAULT_REPEATS, cache: Path | None = None,
               on_result: ProgressCallback | None = None,
               release_runner: Callable[..., dict[str, Any]] = run_release) -> SeriesResult:
    """Run the workload on every release in ``versions`` (validated, then oldest first)."""
    ordered = check_versions(line, versions)
    series = SeriesResult(line.distribution, ordered, model_set, device, repeats)
    started = time.perf_counter()
    for index, version in enumerate(ordered, 1):
        result = release_runner(line, version, model_set=model_set, device=device, repeats=repeats, cache=cache)
        series.results.append(result)
        if on_result is not None:
            on_result(result, index, len(ordered))
    series.wall_s = time.perf_counter() - started
    return series


def ran(result: dict[str, Any]) -> bool:
    """Whether the workload ran to the end for this release."""
    return result.get("status") == STATUS_OK
