"""The timeline of a release series: what changed from each release to the next.

Per release (oldest first): whether it ran; greedy and sampled tokens equal to the previous
release that ran, or the first case, stage and position where they differ; each probe's status;
each stage's median wall time as a ratio to the previous release's, with a 95 % bootstrap
interval over the repeats (scipy.stats.bootstrap, percentile method); each surface check's status
(:mod:`bark_ablation.releases.surface`), with every status change, changed default and changed
default-call output against the previous release named; and the release-notes link when the
package's metadata names one. The summary leads with every surface break (first failing release,
first fixed release, the error users saw), the first release that shows each probed behaviour and
the largest speed change between consecutive releases.

Rendered as Markdown and as one self-contained HTML page, with the study report's table and
page conventions (:class:`bark_ablation.output.tables.Table`).
"""

from __future__ import annotations

import html
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from scipy import stats

from bark_ablation.core.conditioning import PIPELINE_STAGE_NAMES, TOKEN_STAGE_NAMES
from bark_ablation.output.staging import StagedDirectory
from bark_ablation.output.tables import Table, inline_html
from bark_ablation.releases.probes import PRESENT, PROBES
from bark_ablation.releases.series import SeriesResult, ran
from bark_ablation.releases.surface import FAILS, NOT_APPLICABLE, WORKS, changed_defaults

STAGES = TOKEN_STAGE_NAMES
TIMED_STAGES = PIPELINE_STAGE_NAMES
BOOTSTRAP_RESAMPLES = 2000
CONFIDENCE = 0.95


@dataclass(frozen=True)
class TokenDifference:
    """Where two results' tokens first differ: ``case`` (``cell/seed``), ``stage``, and ``position``
    (semantic: token index; coarse and fine: frame index, with the first differing ``codebook``)."""

    case: str
    stage: str
    position: int
    codebook: int | None = None
    detail: str = ""

    def describe(self) -> str:
        where = (
            f"frame {self.position}, codebook {self.codebook}"
            if self.codebook is not None
            else f"token {self.position}"
        )
        return f"{self.stage} {where} ({self.case}){': ' + self.detail if self.detail else ''}"


@dataclass(frozen=True)
class SpeedChange:
    """One stage's median time in a release over that of the previous release that ran."""

    stage: str
    ratio: float
    low: float
    high: float
    median_s: float

    def describe(self) -> str:
        return f"x{self.ratio:.2f} [{self.low:.2f}, {self.high:.2f}]"


@dataclass
class TimelineRow:
    version: str
    status: str
    error: str | None
    previous: str | None
    """The release this row is compared with (the previous one that ran)."""
    greedy: TokenDifference | None | str = "-"
    sampled: TokenDifference | None | str = "-"
    probes: dict[str, dict[str, str]] = field(default_factory=dict)
    speed: dict[str, SpeedChange] = field(default_factory=dict)
    medians_s: dict[str, float] = field(default_factory=dict)
    release_notes: str | None = None
    wall_s: float = 0.0
    build_note: str | None = None
    """How the model set had to be built in this release, when not the usual way (an upstream bug)."""
    surface: dict[str, dict[str, Any]] = field(default_factory=dict)
    """Surface check name -> its result (:class:`~bark_ablation.releases.surface.SurfaceResult` as a dict)."""
    surface_error: str | None = None
    status_changes: list[str] = field(default_factory=list)
    """``check: old -> new`` (with the error when it now fails) against the previous row that ran."""
    default_changes: list[str] = field(default_factory=list)
    """``check: parameter: old -> new`` against the previous row that ran."""
    output_changes: list[str] = field(default_factory=list)
    """``check: what the default call produced, old -> new`` against the previous row that ran."""
    refined: bool = False
    """Run because its neighbours in the default series differ in a surface status."""


@dataclass(frozen=True)
class SurfaceBreak:
    """A run of consecutive releases (among those that ran) where one surface check fails.

    ``first_fixed`` is the first release after the run where it works again (None: it still fails
    in the newest release of the series); ``last_working`` the release before the run where it
    worked (None: it failed from the first release that ran)."""

    check: str
    first_failing: str
    last_failing: str
    first_fixed: str | None
    last_working: str | None
    error: str
    before: tuple[str, str] | None = None
    """(release, status) of the row just before the run (None: the run starts the series)."""
    after: tuple[str, str] | None = None
    """(release, status) of the row just after the run (None: the run ends the series)."""


@dataclass
class Timeline:
    distribution: str
    model_set: str
    device: str
    repeats: int
    rows: list[TimelineRow]
    wall_s: float
    packages: dict[str, Any]

    def first_present(self, probe: str) -> tuple[str | None, TimelineRow | None]:
        """(first release in the series showing ``probe``, the row of the release that ran before it)."""
        previous = None
        for row in self.rows:
            if row.status != "ok" or row.refined:  # refined rows run surface checks only, no probe
                continue
            if row.probes.get(probe, {}).get("status") == PRESENT:
                return row.version, previous
            previous = row
        return None, None

    def surface_breaks(self) -> list[SurfaceBreak]:
        """Every run of failing releases of every surface check, in check order then release order."""
        rows = [row for row in self.rows if row.status == "ok" and row.surface]
        checks = list(dict.fromkeys(name for row in rows for name in row.surface))
        breaks = []
        for check in checks:
            run: list[TimelineRow] = []
            last_working, last_seen = None, None
            for row in rows + [None]:
                status = None if row is None else row.surface.get(check, {}).get("status")
                if row is not None and status is None:
                    continue  # a refined row that did not run this check
                if status == FAILS:
                    run.append(row)
                    continue
                if run:
                    breaks.append(
                        SurfaceBreak(
                            check,
                            run[0].version,
                            run[-1].version,
                            row.version if row is not None and status == WORKS else None,
                            last_working,
                            _surface_error(run[0].surface[check]),
                            last_seen,
                            None if row is None else (row.version, status),
                        )
                    )
                    run = []
                if status == WORKS:
                    last_working = row.version
                if row is not None:
                    last_seen = (row.version, status)
        return breaks

    def largest_speed_change(self) -> tuple[TimelineRow, SpeedChange] | None:
        """The (row, stage) whose median ratio to the previous release is furthest from 1 (in log)."""
        changes = [(row, change) for row in self.rows for change in row.speed.values()]
        return max(changes, key=lambda pair: abs(math.log(pair[1].ratio)), default=None)


def first_difference(before: dict[str, Any], after: dict[str, Any]) -> TokenDifference | None:
    """Where the tokens of ``after`` first differ from ``before`` (cases in ``before``'s order,
    stages in pipeline order), or None when every case is equal."""
    for case, tokens in before.items():
        if case not in after:
            return TokenDifference(case, "semantic", 0, detail="case missing")
        for stage in STAGES:
            old, new = np.asarray(tokens[stage]), np.asarray(after[case][stage])
            if old.shape == new.shape and np.array_equal(old, new):
                continue
            if old.ndim == 1:
                common = min(old.size, new.size)
                unequal = np.flatnonzero(old[:common] != new[:common])
                position = int(unequal[0]) if unequal.size else common
                detail = (
                    f"{old.size} -> {new.size} tokens"
                    if old.size != new.size
                    else f"{int(old[position])} -> {int(new[position])}"
                )
                return TokenDifference(case, stage, position, detail=detail)
            frames = min(old.shape[-1], new.shape[-1])
            books = min(old.shape[0], new.shape[0])
            unequal = np.argwhere((old[:books, :frames] != new[:books, :frames]).T)
            if unequal.size:
                frame, book = (int(v) for v in unequal[0])
                return TokenDifference(case, stage, frame, book, f"{int(old[book, frame])} -> {int(new[book, frame])}")
            return TokenDifference(case, stage, frames, 0, f"shape {old.shape} -> {new.shape}")
    return None


def speed_change(stage: str, now_s: list[float], before_s: list[float]) -> SpeedChange:
    """Median ratio of ``now_s`` to ``before_s`` (seconds per run) with a 95 % percentile bootstrap
    interval over both sets of repeats (fixed resampling seed, so a timeline is reproducible from
    its series.json)."""
    now, before = np.asarray(now_s, dtype=float), np.asarray(before_s, dtype=float)
    ratio = float(np.median(now) / np.median(before))
    if now.size < 2 or before.size < 2:
        return SpeedChange(stage, ratio, ratio, ratio, float(np.median(now)))
    interval = stats.bootstrap(
        (now, before),
        lambda a, b: np.median(a) / np.median(b),
        vectorized=False,
        paired=False,
        n_resamples=BOOTSTRAP_RESAMPLES,
        confidence_level=CONFIDENCE,
        method="percentile",
        rng=np.random.default_rng(0),
    ).confidence_interval
    return SpeedChange(stage, ratio, float(interval.low), float(interval.high), float(np.median(now)))


def build_timeline(series: SeriesResult) -> Timeline:
    """Compare each release of ``series`` with the previous release that ran. A refined row (only
    some surface checks, no tokens) is compared on those checks with the previous row that ran
    them, and is never the token or speed reference of the next row."""
    rows, previous = [], None
    surface_before: dict[str, dict[str, Any]] = {}
    packages: dict[str, Any] = {}
    for result in series.results:
        row = TimelineRow(
            result["version"],
            result.get("status", "?"),
            result.get("error"),
            previous["version"] if previous else None,
            release_notes=result.get("release_notes"),
            wall_s=float(result.get("wall_s", 0.0)),
            build_note=result.get("build_note"),
            surface={check["check"]: check for check in result.get("surface", [])},
            surface_error=result.get("surface_error"),
            refined=bool(result.get("refined")),
        )
        if ran(result):
            compare_surface(row, surface_before)
            surface_before = {**surface_before, **row.surface}
        if ran(result) and not row.refined:
            packages = packages or {
                k: v for k, v in result.get("packages", {}).items() if k in ("python", "torch", "numpy")
            }
            row.probes = {p["probe"]: p for p in result.get("probes", [])}
            row.medians_s = {
                stage: float(np.median(times)) for stage, times in result.get("timings_s", {}).items() if times
            }
            if previous is not None:
                row.greedy = first_difference(previous["greedy"], result["greedy"])
                row.sampled = first_difference(previous["sampled"], result["sampled"])
                row.speed = {
                    stage: speed_change(stage, result["timings_s"][stage], previous["timings_s"][stage])
                    for stage in TIMED_STAGES
                    if result.get("timings_s", {}).get(stage) and previous["timings_s"].get(stage)
                }
            previous = result
        rows.append(row)
    return Timeline(series.distribution, series.model_set, series.device, series.repeats, rows, series.wall_s, packages)


def _surface_error(result: dict[str, Any]) -> str:
    text = f"{result.get('error_type')}: {result.get('error') or ''}".rstrip(": ")
    return text + (f" (at {result['where']})" if result.get("where") else "")


def _produced_text(produced: dict[str, Any]) -> str:
    if "duration_s" in produced:
        return f"{produced['duration_s']} s ({produced.get('pcm16_sha256', '?')[:8]})"
    return json.dumps(produced, sort_keys=True)


_AUDIO_FIELDS = ("duration_s", "pcm16_sha256", "samples", "sample_rate")


def produced_change(check: str, old: dict[str, Any], new: dict[str, Any]) -> str:
    """``check: old -> new`` for what a default call produced: the audio as seconds and digest
    where it changed, then every other field that changed, by name (for example the weight
    files ``save_pretrained`` writes), so that no change reads as ``x -> x``."""
    parts = []
    if any(old.get(key) != new.get(key) for key in _AUDIO_FIELDS):
        audio_old = {k: v for k, v in old.items() if k in _AUDIO_FIELDS}
        audio_new = {k: v for k, v in new.items() if k in _AUDIO_FIELDS}
        parts.append(f"{_produced_text(audio_old)} -> {_produced_text(audio_new)}")
    for name in sorted(set(old) | set(new)):
        if name not in _AUDIO_FIELDS and old.get(name, "(absent)") != new.get(name, "(absent)"):
            parts.append(f"{name}: {json.dumps(old.get(name, '(absent)'))} -> {json.dumps(new.get(name, '(absent)'))}")
    return f"{check}: " + "; ".join(parts)


def compare_surface(row: TimelineRow, before: dict[str, dict[str, Any]]) -> None:
    """Fill ``row``'s status, default and output changes against ``before`` (the previous ran
    release's surface results by check)."""
    if not row.surface or not before:
        return
    # A check that ran on one side only (a refined row runs a few) is not compared.
    for check in (
        [name for name in row.surface if name in before] if row.refined else dict.fromkeys([*before, *row.surface])
    ):
        old, new = before.get(check, {}), row.surface.get(check, {})
        old_status, new_status = old.get("status", "(absent)"), new.get("status", "(absent)")
        if old_status != new_status:
            detail = (
                f": {_surface_error(new)}"
                if new_status == FAILS
                else f": {new.get('reason')}"
                if new_status == NOT_APPLICABLE
                else ""
            )
            row.status_changes.append(f"{check}: {old_status} -> {new_status}{detail}")
            continue
        if new_status != WORKS:
            continue
        row.default_changes += [
            f"{check}: {change}" for change in changed_defaults(old.get("defaults", {}), new.get("defaults", {}))
        ]
        if old.get("produced") != new.get("produced"):
            row.output_changes.append(produced_change(check, old.get("produced", {}), new.get("produced", {})))


def surface_counts(row: TimelineRow) -> str:
    """``12 works, 1 fails, 4 n/a`` for one row ("-" when no check ran)."""
    if row.surface_error:
        return f"**not run**: {row.surface_error}"
    if not row.surface:
        return "-"
    counts = {
        status: sum(1 for r in row.surface.values() if r.get("status") == status)
        for status in (WORKS, FAILS, NOT_APPLICABLE)
    }
    text = f"{counts[WORKS]} works, {counts[FAILS]} fails, {counts[NOT_APPLICABLE]} n/a"
    failing = [name for name, r in row.surface.items() if r.get("status") == FAILS]
    return text + (f" (**fails**: {', '.join(f'`{name}`' for name in failing)})" if failing else "")


def _surface_cell(row: TimelineRow) -> str:
    text = surface_counts(row)
    if row.status_changes:
        text += "; **changed**: " + "; ".join(row.status_changes)
    return text


def _changes_cell(row: TimelineRow) -> str:
    parts = []
    if row.default_changes:
        parts.append("**defaults**: " + "; ".join(row.default_changes))
    if row.output_changes:
        parts.append("**output**: " + "; ".join(row.output_changes))
    return " ".join(parts) or ("-" if row.previous is None or not row.surface else "equal")


def _tokens_cell(value: TokenDifference | None | str) -> str:
    if isinstance(value, str):
        return value
    return "equal" if value is None else f"**differs**: {value.describe()}"


def _probe_cell(row: TimelineRow, probe: str) -> str:
    status = row.probes.get(probe, {}).get("status", "-")
    return f"**{status}**" if status == PRESENT else status


def _status_cell(row: TimelineRow) -> str:
    if row.status != "ok":
        return f"**{row.status}**: {row.error or ''}"
    return f"ran; **note**: {row.build_note}" if row.build_note else "ran"


def release_table(timeline: Timeline) -> Table:
    header = [
        "release",
        "ran",
        "greedy tokens vs previous",
        "sampled tokens vs previous",
        *[f"`{probe}`" for probe in PROBES],
        *[f"{stage} (ms, ratio [95 % CI])" for stage in TIMED_STAGES],
        "surface checks",
        "surface defaults and outputs vs previous",
        "release notes",
    ]
    rows = []
    for row in timeline.rows:
        speeds = []
        for stage in TIMED_STAGES:
            median = row.medians_s.get(stage)
            text = "-" if median is None else f"{median * 1e3:.0f}"
            if stage in row.speed:
                text += f" {row.speed[stage].describe()}"
            speeds.append(text)
        version = f"`{row.version}`" + (" (refined)" if row.refined else "")
        rows.append(
            [
                version,
                _status_cell(row),
                _tokens_cell(row.greedy),
                _tokens_cell(row.sampled),
                *[_probe_cell(row, probe) for probe in PROBES],
                *speeds,
                _surface_cell(row),
                _changes_cell(row),
                row.release_notes or "-",
            ]
        )
    numeric = set(range(4 + len(PROBES), 4 + len(PROBES) + len(TIMED_STAGES)))
    return Table(header, rows, numeric)


def surface_table(timeline: Timeline) -> Table | None:
    """Release x surface check: ``works``, ``**fails**`` or ``n/a`` (None when no check ran)."""
    checks = list(dict.fromkeys(name for row in timeline.rows for name in row.surface))
    if not checks:
        return None
    symbol = {WORKS: "works", FAILS: "**fails**", NOT_APPLICABLE: "n/a"}
    rows = [
        [
            f"`{row.version}`" + (" (refined)" if row.refined else ""),
            *[symbol.get(row.surface.get(check, {}).get("status"), "-") for check in checks],
        ]
        for row in timeline.rows
        if row.surface
    ]
    return Table(["release", *[f"`{check}`" for check in checks]], rows, set())


SURFACE_LEGEND = (
    "Each public entry point called as users call it, on the tiny set saved in the Hub's layout "
    "(`bark_ablation.releases.surface`). n/a: the release or machine lacks what the call needs "
    "(the reason is in series.json)."
)


def summary_lines(timeline: Timeline) -> list[str]:
    ran_rows = [row for row in timeline.rows if row.status == "ok" and not row.refined]
    main_rows = [row for row in timeline.rows if not row.refined]
    count = f"{len(main_rows)} release{'s' if len(main_rows) != 1 else ''}"
    lines = [
        f"{count} of `{timeline.distribution}` "
        f"(`{timeline.rows[0].version}` to `{timeline.rows[-1].version}`), {len(ran_rows)} ran the workload; "
        f"model set `{timeline.model_set}` on `{timeline.device}`, {timeline.repeats} timed repeats per release; "
        f"series wall time {timeline.wall_s:.0f} s"
        + ("; environment: " + ", ".join(f"{k} {v}" for k, v in timeline.packages.items()) if timeline.packages else "")
    ]
    refined = [row.version for row in timeline.rows if row.refined]
    if refined:
        lines.append(f"refined around surface changes: {', '.join(f'`{v}`' for v in refined)} also ran")
    if any(row.surface for row in timeline.rows):
        breaks = timeline.surface_breaks()
        grouped: dict[tuple, list[str]] = {}
        for found in breaks:  # one line per break, naming every check it broke alike
            key = (found.first_failing, found.last_failing, found.first_fixed, found.before, found.after, found.error)
            grouped.setdefault(key, []).append(found.check)
        for (first_failing, _, first_fixed, before, after, error), checks in grouped.items():
            fixed = (
                f"first fixed in `{first_fixed}`"
                if first_fixed
                else "**still failing in the newest release of the series**"
                if after is None
                else f"then {after[1]} from `{after[0]}`"
            )
            since = (
                "fails from the first release that ran"
                if before is None
                else f"{'works' if before[1] == WORKS else before[1]} in `{before[0]}`"
            )
            names = ", ".join(f"`{check}`" for check in checks)
            lines.append(
                f"surface break in {names}: first failing `{first_failing}` ({since}), {fixed}; users saw "
                f"{error} (`bark-ablation bisect {timeline.distribution} --surface {checks[0]}` names the "
                f"releases among all of them)"
            )
        if not breaks:
            lines.append("surface checks: no check fails in any release that ran")
        defaults = [
            f"`{row.version}` ({'; '.join(row.default_changes)})" for row in timeline.rows if row.default_changes
        ]
        lines.append("surface defaults changed in: " + ("; ".join(defaults) or "no release"))
        outputs = [
            f"`{row.version}` ({len(row.output_changes)} check{'s' if len(row.output_changes) != 1 else ''})"
            for row in timeline.rows
            if row.output_changes
        ]
        lines.append("surface default-call outputs changed in: " + ("; ".join(outputs) or "no release"))
    for probe_id, probe in PROBES.items():
        first, before = timeline.first_present(probe_id)
        if first is None:
            lines.append(f"`{probe_id}` ({probe.summary}): in no release of the series")
        else:
            since = (
                f"after `{before.version}`, where it is {before.probes.get(probe_id, {}).get('status', '-')}"
                if before
                else "the first release of the series"
            )
            lines.append(
                f"`{probe_id}` ({probe.summary}): first shown by `{first}` ({since}; "
                f"`bark-ablation bisect {timeline.distribution} --known-issue {probe_id}` names the first "
                f"release among all of them); report: `{probe.report}`"
            )
    largest = timeline.largest_speed_change()
    if largest is not None:
        row, change = largest
        lines.append(
            f"largest speed change between consecutive releases: {change.stage} stage, `{row.previous}` -> "
            f"`{row.version}`, median time {change.describe()} (95 % bootstrap interval over the repeats)"
        )
    for label in ("greedy", "sampled"):
        changes = [
            f"`{row.version}` ({getattr(row, label).describe()})"
            for row in timeline.rows
            if isinstance(getattr(row, label), TokenDifference)
        ]
        lines.append(f"{label} tokens changed in: " + ("; ".join(changes) or "no release"))
    noted = [row for row in timeline.rows if row.status == "ok" and row.build_note]
    if noted:
        lines.append(
            "ran around an upstream bug: "
            + ", ".join(f"`{row.version}`" for row in noted)
            + f" ({noted[0].build_note})"
        )
    failed = [row for row in timeline.rows if row.status != "ok"]
    if failed:
        lines.append("did not run: " + "; ".join(f"`{row.version}` ({row.status})" for row in failed))
    return lines


def timeline_markdown(timeline: Timeline) -> str:
    parts = [f"# {timeline.distribution}: Bark across releases", ""]
    parts += [f"- {line}" for line in summary_lines(timeline)] + [""]
    parts += [
        "## Releases",
        "",
        "Each release is compared with the previous release that ran. Tokens: the first "
        "case (`cell/seed`), stage and position that differ. Times: median stage wall time of the greedy "
        "`scf` cell on this machine, and its ratio to the previous release's. Release notes: the address "
        "the package's metadata names, else the GitHub release page of its home page's repository.",
        "",
    ]
    parts += release_table(timeline).markdown()
    table = surface_table(timeline)
    if table is not None:
        parts += ["## Surface checks", "", SURFACE_LEGEND, ""] + table.markdown()
    parts += ["## Probe evidence", ""]
    for row in timeline.rows:
        for probe in row.probes.values():
            parts.append(f"- `{row.version}` `{probe['probe']}`: {probe['status']}: {probe['evidence']}")
    return "\n".join(parts) + "\n"


def timeline_html(timeline: Timeline) -> str:
    e = html.escape
    head = (
        "<!doctype html><html lang='en'><head><meta charset='utf-8'>"
        f"<title>bark-ablation: {e(timeline.distribution)} across releases</title><style>"
        "body{font-family:sans-serif;max-width:96rem;margin:2rem auto;padding:0 1rem;color:#222}"
        "table{border-collapse:collapse;margin:1rem 0;font-size:.9rem}td,th{border:1px solid #ccc;padding:.3rem .6rem}"
        "td.num{text-align:right;font-variant-numeric:tabular-nums}code{background:#f3f3f3;padding:0 .2rem}"
        "</style></head><body>"
    )
    parts = [head, f"<h1>{e(timeline.distribution)}: Bark across releases</h1><ul>"]
    parts += [f"<li>{inline_html(line)}</li>" for line in summary_lines(timeline)]
    parts += ["</ul><h2>Releases</h2>", release_table(timeline).html()]
    table = surface_table(timeline)
    if table is not None:
        parts += ["<h2>Surface checks</h2>", f"<p>{inline_html(SURFACE_LEGEND)}</p>", table.html()]
    parts += ["<h2>Probe evidence</h2><ul>"]
    for row in timeline.rows:
        for probe in row.probes.values():
            parts.append(
                f"<li><code>{e(row.version)}</code> <code>{e(probe['probe'])}</code>: "
                f"{e(probe['status'])}: {e(probe['evidence'])}</li>"
            )
    parts.append("</ul></body></html>\n")
    return "".join(parts)


def write_series(series: SeriesResult, out: Path) -> Path:
    """``series.json`` (every result, tokens included), ``timeline.md`` and ``timeline.html`` in a
    new directory ``out``, staged under a temporary name and renamed into place when complete."""
    staged = StagedDirectory(out)
    try:
        timeline = build_timeline(series)
        (staged.path / "series.json").write_text(json.dumps(series.to_dict(), indent=1) + "\n", encoding="utf-8")
        (staged.path / "timeline.md").write_text(timeline_markdown(timeline), encoding="utf-8")
        (staged.path / "timeline.html").write_text(timeline_html(timeline), encoding="utf-8")
    except BaseException:
        staged.discard()
        raise
    return staged.commit()
