"""A release series: the same workload on every listed release of one implementation.

For each release, oldest first: its overlay is installed (or found in the cache,
:mod:`bark_ablation.releases.overlays`), then :mod:`bark_ablation.releases.workload` runs in a
fresh process with the overlay first on ``PYTHONPATH``, on this machine, one release after the
other, so timings are comparable within the series. The release installed in the environment
itself runs without an overlay. A release that pip cannot install beside the environment's torch
and numpy, that will not import, or that fails in the workload is a row with the reason.

The surface checks' layout (:mod:`bark_ablation.releases.surface`) is written once per series and
shared by every release. A series can *refine*: when two consecutive rows that ran differ in any
surface check's status, every final release between them (from ``refine_versions``) runs too, so
the first failing and the first fixed release of a break are named exactly.

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
from bark_ablation.models.catalogue import DEFAULT_MODEL_SET
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
    refined: list[str] = field(default_factory=list)
    """Releases run because the surface statuses of their neighbours in the series differ."""

    def to_dict(self) -> dict[str, Any]:
        return {"kind": "release-series", **vars(self)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SeriesResult:
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
        raise ParamsError(
            "versions",
            f"{', '.join(left_out)}: not a final release of {line.distribution} with Bark "
            f"(Bark arrived in {line.first_with_bark}; pre-releases are not series rows)",
        )
    return kept


def run_release(
    line: ReleaseLine,
    version: str,
    *,
    model_set: str = DEFAULT_MODEL_SET,
    device: str = "cpu",
    repeats: int = DEFAULT_REPEATS,
    probes_only: bool = False,
    probes: Sequence[str] | None = None,
    surface: Sequence[str] | None = None,
    surface_layout: Path | None = None,
    cache: Path | None = None,
    timeout_s: float = RELEASE_TIMEOUT_S,
) -> dict[str, Any]:
    """The workload's result for ``line`` at ``version``, in a subprocess over its overlay (none for
    the environment's own release). Install failures and crashes are results too. ``probes``: run
    only these probes (None: every probe; empty: none). ``surface``: run only these surface checks
    (None: every one; empty: none); ``surface_layout``: a layout already written for them."""
    started = time.perf_counter()

    def failed(status: str, error: str) -> dict[str, Any]:
        return {
            "distribution": line.distribution,
            "version": version,
            "status": status,
            "error": error,
            "wall_s": time.perf_counter() - started,
        }

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
        command = [
            sys.executable,
            "-m",
            "bark_ablation.releases.workload",
            "--distribution",
            line.distribution,
            "--version",
            version,
            "--model-set",
            model_set,
            "--device",
            device,
            "--repeats",
            str(repeats),
            "--out",
            str(out),
        ]
        if overlay_path is not None:
            command += ["--overlay", str(overlay_path)]
        if probes_only:
            command.append("--probes-only")
        if probes is not None and not probes:
            command.append("--no-probes")
        for probe_id in probes or ():
            command += ["--probe", probe_id]
        if surface is not None and not surface:
            command.append("--no-surface")
        for check in surface or ():
            command += ["--surface-check", check]
        if surface_layout is not None:
            command += ["--surface-layout", str(surface_layout)]
        try:
            done = subprocess.run(command, env=environment, capture_output=True, text=True, timeout=timeout_s)
            crashed = (
                None
                if done.returncode == 0 and out.is_file()
                else f"exit status {done.returncode}: {(done.stderr.strip().splitlines() or ['no output'])[-1][:300]}"
            )
        except subprocess.TimeoutExpired:
            crashed = f"no result within {timeout_s:.0f} s"
        if crashed is not None:
            return failed(STATUS_CRASHED, crashed)
        result = json.loads(out.read_text(encoding="utf-8"))
    result["release_notes"] = release_notes_url(overlay_path, line.distribution)
    result["wall_s"] = time.perf_counter() - started
    return result


ProgressCallback = Callable[[dict[str, Any], int, int], None]


def run_series(
    line: ReleaseLine,
    versions: Sequence[str],
    *,
    model_set: str = DEFAULT_MODEL_SET,
    device: str = "cpu",
    repeats: int = DEFAULT_REPEATS,
    cache: Path | None = None,
    on_result: ProgressCallback | None = None,
    release_runner: Callable[..., dict[str, Any]] = run_release,
    refine_versions: Sequence[str] | None = None,
    surface: bool = True,
) -> SeriesResult:
    """Run the workload on every release in ``versions`` (validated, then oldest first).

    ``refine_versions``: every final release of the line (oldest first); when given, each pair of
    consecutive rows that ran and differ in a surface check's status also runs the releases of it
    strictly between them (see the module docstring). ``surface``: run the surface checks (their
    layout is written once, into a temporary directory removed at the end)."""
    ordered = check_versions(line, versions)
    series = SeriesResult(line.distribution, ordered, model_set, device, repeats)
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="bark-ablation-surface-layout-") as scratch:
        layout = _surface_layout(line, Path(scratch)) if surface else None
        options = dict(model_set=model_set, device=device, repeats=repeats, cache=cache)
        if layout is not None:
            options["surface_layout"] = layout
        elif not surface:
            options["surface"] = ()
        total = len(ordered)
        for index, version in enumerate(ordered, 1):
            result = release_runner(line, version, **options)
            series.results.append(result)
            if on_result is not None:
                on_result(result, index, total)
        if refine_versions is not None and surface:
            between = refinements(series.results, refine_versions)
            total += len(between)
            for index, (version, checks) in enumerate(between.items(), len(ordered) + 1):
                # Only the checks whose status changed, no tokens, timings or probes: enough to name
                # the first failing and first fixed release, at a fraction of a full row's time.
                result = release_runner(
                    line, version, **{**options, "probes_only": True, "probes": (), "surface": checks}
                )
                result["refined"] = True
                series.results.append(result)
                series.refined.append(version)
                if on_result is not None:
                    on_result(result, index, total)
    order = {version: parse_version("versions", version) for version in [r["version"] for r in series.results]}
    series.results.sort(key=lambda result: order[result["version"]])
    series.versions = [result["version"] for result in series.results]
    series.wall_s = time.perf_counter() - started
    return series


def _surface_layout(line: ReleaseLine, root: Path) -> Path | None:
    """The line's surface layout written under ``root`` (None when the line has no surface checks,
    or the layout cannot be written here: each release then writes its own and reports why not)."""
    from bark_ablation.releases.surface import SURFACES

    if line.distribution not in SURFACES:
        return None
    import importlib

    try:
        return importlib.import_module(SURFACES[line.distribution]).prepare_layout(root / "layout")
    except Exception:  # each release's workload writes it again and records the error in its row
        return None


def surface_statuses(result: dict[str, Any]) -> dict[str, str]:
    """``{check: status}`` of one release's result (empty when no surface check ran)."""
    return {check["check"]: check["status"] for check in result.get("surface", [])}


def refinements(results: Sequence[dict[str, Any]], all_versions: Sequence[str]) -> dict[str, tuple[str, ...]]:
    """Releases of ``all_versions`` strictly between two consecutive rows of ``results`` that ran
    and whose surface statuses differ, not in ``results`` already, oldest first, each with the
    checks whose status differs across its pair (sorted)."""
    done = {result["version"] for result in results}
    rows = sorted(
        (r for r in results if ran(r) and r.get("surface")), key=lambda r: parse_version("versions", r["version"])
    )
    wanted: dict[str, set[str]] = {}
    for before, after in zip(rows, rows[1:]):
        old, new = surface_statuses(before), surface_statuses(after)
        differing = {check for check in set(old) | set(new) if old.get(check) != new.get(check)}
        if not differing:
            continue
        low, high = parse_version("versions", before["version"]), parse_version("versions", after["version"])
        for version in all_versions:
            if low < parse_version("versions", version) < high and version not in done:
                wanted.setdefault(version, set()).update(differing)
    return {
        version: tuple(sorted(wanted[version]))
        for version in sorted(wanted, key=lambda v: parse_version("versions", v))
    }


def ran(result: dict[str, Any]) -> bool:
    """Whether the workload ran to the end for this release."""
    return result.get("status") == STATUS_OK
