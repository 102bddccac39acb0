"""`bark-ablation longform` end to end: the files it writes, the report, and bad input refused by
name with nothing written. One run: 2 speakers x a 3-sentence passage x 1 seed x 3 policies on
the tiny set, 0.4 s per chunk."""

from __future__ import annotations

import csv
import json
import re
import shlex
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from scipy.io import wavfile

from bark_ablation import cli
from bark_ablation.longform.generation import JOIN_SILENCE_S
from bark_ablation.longform.output import passage_file
from bark_ablation.study.report_check import check_page, find_chromium

PASSAGE = "The first sentence is short. Then comes a second one! Is this the third?"
SPEAKERS = ("en_speaker_0", "en_speaker_1")
POLICIES = ("prompt", "previous", "pcf")
FAST = ["--model-set", "tiny", "--max-duration", "0.4", "--quiet"]
needs_chromium = pytest.mark.skipif(
    find_chromium() is None, reason="needs Chromium (Debian package chromium; .ci/run installs it)"
)


@pytest.fixture(scope="module")
def texts_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("texts") / "passages.txt"
    path.write_text(f"# one passage per line\n{PASSAGE}\n", encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def longform_dir(tmp_path_factory, texts_file, tiny_models):
    out = tmp_path_factory.mktemp("longform") / "run"
    argv = ["longform", "--prompts", *SPEAKERS, "--texts-file", str(texts_file), "--seeds", "0"]
    assert cli.main([*argv, "--policies", *POLICIES, "--out", str(out), *FAST]) == 0
    return out


def test_chunks_csv_has_a_row_per_speaker_policy_seed_and_chunk(longform_dir):
    rows = list(csv.DictReader((longform_dir / "chunks.csv").open(encoding="utf-8")))
    assert len(rows) == len(SPEAKERS) * len(POLICIES) * 3
    assert set(rows[0]) == {"prompt", "passage", "policy", "seed", "chunk", "duration_s", "secs_prompt", "secs_first"}
    assert {r["policy"] for r in rows} == set(POLICIES)
    assert all(float(r["secs_first"]) == pytest.approx(1.0, abs=1e-5) for r in rows if r["chunk"] == "0")
    assert all(0 < float(r["duration_s"]) <= 0.42 for r in rows)


def test_drift_csv_has_a_row_per_policy_with_intervals_and_holm(longform_dir):
    rows = list(csv.DictReader((longform_dir / "drift.csv").open(encoding="utf-8")))
    assert [r["policy"] for r in rows] == list(POLICIES)
    for row in rows:
        assert row["unit"] == "speaker" and row["n"] == str(len(SPEAKERS))
        assert float(row["slope_ci_low"]) <= float(row["slope"]) <= float(row["slope_ci_high"])
        assert float(row["slope_p"]) <= float(row["slope_p_adjusted"]) <= 1


def test_every_chunk_and_every_joined_passage_is_a_wav(longform_dir):
    summary = json.loads((longform_dir / "summary.json").read_text())
    assert summary["kind"] == "longform" and summary["chunks"] == len(SPEAKERS) * len(POLICIES) * 3
    assert summary["stage_runs"]["semantic"] < summary["stage_runs_without_reuse"]["semantic"]
    for speaker in SPEAKERS:
        audio = longform_dir / "units" / f"{speaker}_p0" / "audio"
        for policy in POLICIES:
            chunks = [wavfile.read(audio / f"seed0_{policy}_c{k}.wav") for k in range(3)]
            rate, joined = wavfile.read(audio / passage_file(policy, 0))
            gap = int(JOIN_SILENCE_S * rate)
            assert joined.size == sum(c.size for _, c in chunks) + 3 * gap
            assert np.array_equal(joined[: chunks[0][1].size], chunks[0][1])
            assert (longform_dir / "units" / f"{speaker}_p0" / "tokens" / f"seed0_{policy}_c2.npz").is_file()
        assert (longform_dir / "audio" / f"reference_{speaker}.wav").is_file()


def test_the_report_leads_with_the_answer_and_plays_every_passage_and_chunk(longform_dir, capsys):
    assert cli.main(["report", str(longform_dir)]) == 0
    markdown = (longform_dir / "report.md").read_text()
    answer = markdown.split("## Answer", 1)[1].lstrip().splitlines()[0]
    assert re.match(r"- `(prompt|previous|pcf)` holds the voice best: SECS (loses|gains) \d\.\d{4} per chunk", answer)
    assert "has random weights" in markdown
    page = (longform_dir / "report.html").read_text()
    sources = re.findall(r"<audio[^>]* src='([^']+)'", page)
    assert len(sources) == len(SPEAKERS) * (1 + len(POLICIES) * (1 + 3))
    assert all((longform_dir / s).is_file() for s in sources)
    assert "data:image/png;base64," in page and (longform_dir / "figures" / "chunks.png").read_bytes()[:4] == b"\x89PNG"


@needs_chromium
def test_the_report_renders_in_headless_chromium(longform_dir):
    cli.main(["report", str(longform_dir)])
    result = check_page(longform_dir / "report.html")
    assert result.ok and result.audio_ok == result.audio > 0, result


@pytest.mark.parametrize(
    "passage, argv, message",
    [
        ("   ", [], "--texts-file: "),  # a file with only an empty line holds no passage
        ("no sentence end here", [], "passage 1 has no sentence end (. ! ? or …)"),
        (
            "Short. " + "x" * 60 + ".",
            ["--max-chunk-chars", "40"],
            "sentence 2 is 61 characters, over the chunk cap of 40",
        ),
        ("One. Two.", ["--policies", "prompt", "nearest"], "policies: unknown policy 'nearest'"),
        ("Just one sentence.", [], "passage 1 has 1 sentence; drift over chunks needs at least 2"),
        ("One. Two.", ["--max-chunk-chars", "0"], "--max-chunk-chars: must be an integer from 1 to 1000"),
    ],
)
def test_bad_input_is_one_line_naming_the_field_and_writes_nothing(tmp_path, capsys, passage, argv, message):
    texts = tmp_path / "texts.txt"
    texts.write_text(passage + "\n", encoding="utf-8")
    out = tmp_path / "run"
    code = cli.main(
        ["longform", "--prompt", "en_speaker_0", "--texts-file", str(texts), *argv, "--out", str(out), *FAST]
    )
    err = capsys.readouterr().err
    assert code == cli.EXIT_USAGE and message in err and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1 and not out.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["texts.txt"]


README = Path(__file__).resolve().parents[2] / "README.md"
README_SECTION = "## Long-form speech"


def readme_commands() -> list[list[str]]:
    """The argument lists of the README's long-form command line (``A && B``), as a shell splits them."""
    section = README.read_text(encoding="utf-8").split(README_SECTION, 1)[1].split("\n## ", 1)[0]
    block = re.search(r"```bash\n(.+?)\n```", section, re.DOTALL).group(1)
    return [shlex.split(part) for part in block.strip().split(" && ")]


@pytest.mark.bark_slow
def test_the_readme_command_runs_as_written_and_writes_what_the_readme_says(tmp_path):
    """The README's command, in this environment (its ``.venv/bin/`` is this interpreter's
    directory) and with its output directory under tmp_path; every file the section names is
    checked."""
    out = tmp_path / "longform"
    for argv in readme_commands():
        assert argv[0] == ".venv/bin/bark-ablation", argv
        command = [str(Path(sys.executable).parent / "bark-ablation"), *argv[1:]]
        command = [str(out) if a == "runs/longform" else a for a in command]
        done = subprocess.run(command, cwd=README.parent, capture_output=True, text=True, timeout=600)
        assert done.returncode == 0, done.stderr
    argv = readme_commands()[0]
    prompts = argv[argv.index("--prompts") + 1 :]
    speakers = len(prompts[: next(i for i, a in enumerate(prompts) if a.startswith("--"))])
    chunks = list(csv.DictReader((out / "chunks.csv").open(encoding="utf-8")))
    assert len(chunks) == speakers * 3 * 8  # 3 sentences x every policy x seed 0
    assert len(list(csv.DictReader((out / "drift.csv").open(encoding="utf-8")))) == 8
    assert (out / "report.html").is_file() and (out / "report.md").read_text().startswith("# Long-form drift")
    assert (out / "units" / "en_speaker_0_p0" / "audio" / passage_file("previous", 0)).is_file()


def test_a_run_without_the_study_has_chunks_but_no_report(tmp_path, capsys):
    texts = tmp_path / "texts.txt"
    texts.write_text("One sentence. Two sentences.\n", encoding="utf-8")
    out = tmp_path / "run"
    argv = ["longform", "--prompt", "en_speaker_0", "--texts-file", str(texts), "--seeds", "0"]
    assert cli.main([*argv, "--policies", "previous", "--no-study", "--out", str(out), *FAST]) == 0
    assert (out / "units" / "en_speaker_0_p0" / "audio" / passage_file("previous", 0)).is_file()
    assert not (out / "chunks.csv").exists() and not (out / "drift.csv").exists()
    capsys.readouterr()
    assert cli.main(["report", str(out)]) == cli.EXIT_USAGE
    assert "has no drift.json: the run was made with --no-study" in capsys.readouterr().err
