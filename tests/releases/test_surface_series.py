"""Surface checks across releases: the series refines around a status change, the timeline names
each break with its first failing and first fixed release, and ``bisect --surface`` finds both.

The releases here are stand-ins (a runner that answers per version as a release would), so the
series logic is tested without the package index; the installed release runs for real in
tests/releases/test_surface_transformers.py and in the CLI test at the end.
"""

from __future__ import annotations

from importlib import metadata

import pytest
from packaging.version import Version

from bark_ablation import cli
from bark_ablation.releases import series as series_module
from bark_ablation.releases.bisect import bisect_surface
from bark_ablation.releases.lines import RELEASE_LINES, latest_patches
from bark_ablation.releases.series import refinements, run_series
from bark_ablation.releases.surface import FAILS, NOT_APPLICABLE, WORKS, changed_defaults, jsonable
from bark_ablation.releases.timeline import build_timeline, produced_change, summary_lines, timeline_markdown

TRANSFORMERS = RELEASE_LINES["transformers"]
CHECK = "pipeline-text-to-speech"
EVERY = ["4.45.0", "4.45.1", "4.45.2", "4.46.0", "4.46.1", "4.46.2", "4.46.3", "4.47.0", "4.47.1"]
BROKEN = {"4.46.0", "4.46.1", "4.46.2", "4.46.3"}
"""The stand-in break: the pipeline fails from 4.46.0 to 4.46.3; 4.47.0 fixes it."""
ERROR = "GenerationMixin.generate() got multiple values for keyword argument 'generation_config'"


def surface_result(check: str, status: str, **extra) -> dict:
    base = {
        "check": check,
        "status": status,
        "reason": "",
        "error_type": None,
        "error": None,
        "where": None,
        "defaults": {"temperature": 0.7},
        "produced": {"samples": 4080, "duration_s": 0.17},
        "seconds": 0.1,
    }
    return {**base, **extra}


def stand_in(line, version, broken=frozenset(BROKEN), **options) -> dict:
    """A release's workload result: equal tokens everywhere; the surface check fails where broken."""
    if version in broken:
        check = surface_result(
            CHECK,
            FAILS,
            error_type="TypeError",
            error=ERROR,
            where="transformers/pipelines/text_to_audio.py:214 in _forward",
            defaults={},
            produced={},
        )
    else:
        check = surface_result(CHECK, WORKS)
    other = surface_result("enable-cpu-offload", NOT_APPLICABLE, reason="needs a CUDA device")
    tokens = {"scf/seed0": {"semantic": [1, 2], "coarse": [[1], [2]], "fine": [[1]] * 8}}
    return {
        "distribution": line.distribution,
        "version": version,
        "status": "ok",
        "error": None,
        "greedy": tokens,
        "sampled": tokens,
        "timings_s": {},
        "probes": [],
        "surface": [check, other],
        "wall_s": 1.0,
    }


@pytest.fixture
def no_layout(monkeypatch):
    """Stand-in releases need no layout on disk."""
    monkeypatch.setattr(series_module, "_surface_layout", lambda line, root: None)


def test_refinements_are_the_releases_between_rows_that_differ():
    rows = [stand_in(TRANSFORMERS, v) for v in ("4.45.2", "4.46.3", "4.47.1")]
    assert refinements(rows, EVERY) == {version: (CHECK,) for version in ("4.46.0", "4.46.1", "4.46.2", "4.47.0")}
    same = [stand_in(TRANSFORMERS, v, broken=frozenset()) for v in ("4.45.2", "4.46.3", "4.47.1")]
    assert refinements(same, EVERY) == {}


def test_the_series_refines_around_a_break_and_names_its_first_failing_and_fixed_release(no_layout):
    asked = []

    def runner(line, version, **options):
        asked.append((version, options.get("surface"), options.get("probes")))
        result = stand_in(line, version, **options)
        if options.get("surface"):  # a refined row runs only the checks asked for
            result = {key: value for key, value in result.items() if key not in ("greedy", "sampled", "timings_s")}
            result["surface"] = [c for c in result["surface"] if c["check"] in options["surface"]]
        return result

    series = run_series(TRANSFORMERS, latest_patches(EVERY), release_runner=runner, refine_versions=EVERY)
    assert asked[-1] == ("4.47.0", (CHECK,), ())
    assert series.versions == EVERY[2:]  # 4.45.2, then every release from 4.46.0 on
    assert series.refined == ["4.46.0", "4.46.1", "4.46.2", "4.47.0"]
    timeline = build_timeline(series)
    (found,) = timeline.surface_breaks()
    assert (found.check, found.first_failing, found.last_failing, found.first_fixed, found.last_working) == (
        CHECK,
        "4.46.0",
        "4.46.3",
        "4.47.0",
        "4.45.2",
    )
    summary = "\n".join(summary_lines(timeline))
    assert (
        f"surface break in `{CHECK}`: first failing `4.46.0` (works in `4.45.2`), first fixed in `4.47.0`; "
        f"users saw TypeError: {ERROR} (at transformers/pipelines/text_to_audio.py:214 in _forward)"
    ) in summary
    markdown = timeline_markdown(timeline)
    assert f"**changed**: {CHECK}: works -> fails: TypeError: {ERROR}" in markdown
    assert "| `4.46.0` (refined) |" in markdown and "## Surface checks" in markdown


def test_without_refinement_the_break_is_only_bracketed(no_layout):
    """Known-bad twin: the default series alone names 4.46.3, a release after the first failing one."""
    series = run_series(TRANSFORMERS, latest_patches(EVERY), release_runner=stand_in)
    (found,) = build_timeline(series).surface_breaks()
    assert (found.first_failing, found.first_fixed) == ("4.46.3", "4.47.1")


def test_a_break_still_present_in_the_newest_release_is_said_so(no_layout):
    broken = frozenset({"4.47.0", "4.47.1"})
    series = run_series(
        TRANSFORMERS,
        latest_patches(EVERY),
        release_runner=lambda line, version, **o: stand_in(line, version, broken),
        refine_versions=EVERY,
    )
    (found,) = build_timeline(series).surface_breaks()
    assert (found.first_failing, found.first_fixed) == ("4.47.0", None)
    assert "**still failing in the newest release of the series**" in "\n".join(summary_lines(build_timeline(series)))


def test_a_changed_default_and_output_are_named(no_layout):
    def runner(line, version, **options):
        result = stand_in(line, version, broken=frozenset())
        if Version(version) >= Version("4.47.0"):
            result["surface"][0] = surface_result(
                CHECK, WORKS, defaults={"temperature": 1.0}, produced={"samples": 4400, "duration_s": 0.18}
            )
        return result

    timeline = build_timeline(run_series(TRANSFORMERS, ["4.46.3", "4.47.1"], release_runner=runner))
    newest = timeline.rows[-1]
    assert newest.default_changes == [f"{CHECK}: temperature: 0.7 -> 1.0"]
    assert newest.output_changes == [f"{CHECK}: 0.17 s (?) -> 0.18 s (?)"]
    assert "surface defaults changed in: `4.47.1` (pipeline-text-to-speech: temperature: 0.7 -> 1.0)" in "\n".join(
        summary_lines(timeline)
    )


def test_an_output_change_beside_equal_audio_names_the_field():
    """The 4.35.0 case: ``save_pretrained`` writes ``model.safetensors`` instead of
    ``pytorch_model.bin`` with the same audio; the change must not read as ``x -> x``."""
    old = {"samples": 5760, "duration_s": 0.24, "pcm16_sha256": "a3dc05f5", "weights_files": ["pytorch_model.bin"]}
    new = {**old, "weights_files": ["model.safetensors"]}
    assert (
        produced_change("save-pretrained-round-trip", old, new)
        == 'save-pretrained-round-trip: weights_files: ["pytorch_model.bin"] -> ["model.safetensors"]'
    )
    shorter = {**new, "samples": 5120, "duration_s": 0.2133, "pcm16_sha256": "5fe29a0f"}
    assert produced_change("c", new, shorter) == "c: 0.24 s (a3dc05f5) -> 0.2133 s (5fe29a0f)"
    assert (
        produced_change("import", {"attempts": 0, "hosts": []}, {"attempts": 4, "hosts": ["huggingface.co"]})
        == 'import: attempts: 0 -> 4; hosts: [] -> ["huggingface.co"]'
    )


def test_defaults_compare_equal_across_processes():
    """A function default (``save_function=torch.save``) and an object's repr carry no memory
    address, so the same default read in two processes is not a change; a changed one still is."""
    import torch

    class Marker:
        pass

    assert jsonable(torch.save) == "torch.serialization.save"
    assert "0x" not in jsonable(Marker())
    assert changed_defaults({"save_function": jsonable(torch.save)}, {"save_function": jsonable(torch.save)}) == []
    assert changed_defaults({"safe_serialization": False}, {"safe_serialization": True}) == [
        "safe_serialization: False -> True"
    ]


def judge_of(broken: set[str], unjudgeable: frozenset = frozenset()):
    asked: list[str] = []

    def judge(version):
        asked.append(version)
        if version in unjudgeable:
            return None, "not-applicable"
        return (version in broken), "fails" if version in broken else "works"

    return judge, asked


def test_bisect_surface_finds_the_first_failing_and_the_first_fixed_release():
    judge, asked = judge_of(BROKEN)
    result = bisect_surface(EVERY, judge, anchors=latest_patches(EVERY))
    assert (result.failing.first, result.fixed.first) == ("4.46.0", "4.47.0")
    assert len(asked) == len(set(asked))  # each release judged once
    assert "pipeline-text-to-speech fails: first shown in 4.46.0" in result.describe(CHECK)
    assert "works again: first shown in 4.47.0" in result.describe(CHECK)


def test_bisect_surface_when_the_newest_still_fails_or_nothing_fails():
    judge, _ = judge_of({"4.47.0", "4.47.1"})
    result = bisect_surface(EVERY, judge, anchors=latest_patches(EVERY))
    assert (result.failing.first, result.fixed) == ("4.47.0", None)
    assert result.describe(CHECK).endswith(
        "no release after it was judged to work (it still fails, or cannot be "
        "judged, up to the newest release searched)"
    )
    judge, _ = judge_of(set())
    nothing = bisect_surface(EVERY, judge, anchors=latest_patches(EVERY))
    assert not nothing.found and nothing.describe(CHECK).startswith(f"{CHECK}: fails in no release judged")


def test_bisect_surface_skips_releases_that_lack_the_entry_point():
    judge, _ = judge_of(BROKEN, unjudgeable=frozenset({"4.45.0", "4.45.1"}))
    result = bisect_surface(EVERY, judge, anchors=latest_patches(EVERY))
    assert (result.failing.first, result.fixed.first) == ("4.46.0", "4.47.0")


def test_cli_bisect_surface_refuses_an_unknown_check(capsys):
    code = cli.main(["bisect", "transformers", "--surface", "no-such-call", "--versions", "4.46.0"])
    assert code == 2
    assert "--surface: must be one of pipeline-text-to-speech," in capsys.readouterr().err


def test_cli_bisect_surface_over_the_installed_release(capsys, tmp_path):
    """The installed release, for real: the model card's call works, so nothing is found (exit 1)."""
    installed = metadata.version("transformers")
    code = cli.main(
        [
            "bisect",
            "transformers",
            "--surface",
            "model-generate-voice-preset",
            "--versions",
            installed,
            "--cache",
            str(tmp_path),
        ]
    )
    captured = capsys.readouterr()
    assert code == cli.EXIT_NOT_FOUND, captured.err
    assert captured.out.startswith(
        f"model-generate-voice-preset: fails in no release judged (1 judged: {installed} works)"
    )
    assert f"transformers {installed}: does not show it (works: " in captured.err


def test_checks_broken_alike_share_one_summary_line(no_layout):
    def runner(line, version, **options):
        result = stand_in(line, version)
        twin = dict(result["surface"][0], check="pipeline-text-to-audio")
        result["surface"].append(twin)
        return result

    lines = summary_lines(
        build_timeline(run_series(TRANSFORMERS, latest_patches(EVERY), release_runner=runner, refine_versions=EVERY))
    )
    breaks = [line for line in lines if line.startswith("surface break")]
    assert len(breaks) == 1
    assert breaks[0].startswith(f"surface break in `{CHECK}`, `pipeline-text-to-audio`: first failing `4.46.0`")


def test_bisect_surface_with_two_breaks_pairs_each_with_its_own_fix():
    """Known-bad input for an unbounded search: breaks at 4.45.x and 4.47.1, works between."""
    versions = ["4.44.0", "4.45.0", "4.45.1", "4.46.0", "4.46.1", "4.47.0", "4.47.1", "4.48.0"]
    judge, _ = judge_of({"4.45.0", "4.45.1", "4.47.1"})
    result = bisect_surface(versions, judge, anchors=latest_patches(versions))
    assert (result.failing.first, result.fixed.first) == ("4.47.1", "4.48.0")
    judge, _ = judge_of({"4.45.0", "4.45.1", "4.47.1"})
    older = bisect_surface(versions[:5], judge, anchors=latest_patches(versions[:5]))  # --until 4.46.1
    assert (older.failing.first, older.fixed.first) == ("4.45.0", "4.46.0")


def test_bisect_surface_when_the_newest_cannot_be_judged():
    judge, _ = judge_of(BROKEN, unjudgeable=frozenset({"4.47.1"}))
    result = bisect_surface(EVERY, judge, anchors=latest_patches(EVERY))
    assert result.failing.first == "4.46.0"
    assert result.fixed is None  # nothing above the break was judged to work


def test_a_break_followed_by_not_applicable_is_not_called_still_failing(no_layout):
    def runner(line, version, **options):
        result = stand_in(line, version)
        if version == "4.47.1":  # the entry point is gone: not applicable, not fixed
            result["surface"][0] = surface_result(CHECK, NOT_APPLICABLE, reason="the release has no such task")
        return result

    timeline = build_timeline(run_series(TRANSFORMERS, ["4.45.2", "4.46.3", "4.47.1"], release_runner=runner))
    (found,) = timeline.surface_breaks()
    assert (found.first_fixed, found.after) == (None, ("4.47.1", NOT_APPLICABLE))
    summary = "\n".join(summary_lines(timeline))
    assert "then not-applicable from `4.47.1`" in summary and "still failing" not in summary


@pytest.mark.parametrize("flag", [["--until", "4.46.3"], ["--no-refine"]])
def test_cli_series_refuses_default_series_options_with_explicit_versions(flag, tmp_path, capsys):
    code = cli.main(["series", "transformers", "4.46.3", *flag, "--out", str(tmp_path / "out")])
    assert code == 2
    assert f"{flag[0]}: applies to the default series only" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()
