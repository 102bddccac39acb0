"""The package does not depend on the machine's locale: every text file it reads or writes names
its encoding, and a run under an ASCII locale writes non-ASCII text intact.

A default encoding is the locale's: UTF-8 on most Linux desktops, ASCII under ``LC_ALL=C`` without
locale coercion, cp1252 on Windows. Summaries, reports and drift tables carry the user's text,
which may be any language Bark speaks.
"""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from plugin_projects import enable_plugin

import bark_ablation
from bark_ablation.core.errors import ParamsError
from bark_ablation.core.params import text_from_command_line, validate_text

PACKAGE = Path(bark_ablation.__file__).parent
TEXT_CALLS = {"read_text", "write_text", "open"}


def calls_without_encoding(source: str) -> list[int]:
    """Line numbers of ``open``/``Path.open``/``read_text``/``write_text`` calls in text mode that
    pass no ``encoding``. Binary modes (a ``b`` in a literal mode argument) are exempt."""
    lines = []
    for node in ast.walk(ast.parse(source)):
        if not isinstance(node, ast.Call):
            continue
        name = node.func.attr if isinstance(node.func, ast.Attribute) else getattr(node.func, "id", None)
        if name not in TEXT_CALLS or any(k.arg == "encoding" for k in node.keywords):
            continue
        modes = [
            a.value
            for a in [*node.args, *(k.value for k in node.keywords if k.arg == "mode")]
            if isinstance(a, ast.Constant) and isinstance(a.value, str)
        ]
        if name in ("open",) and any("b" in mode for mode in modes):
            continue
        lines.append(node.lineno)
    return lines


def test_every_text_file_the_package_touches_names_its_encoding():
    offenders = {
        str(path.relative_to(PACKAGE)): found
        for path in sorted(PACKAGE.rglob("*.py"))
        if (found := calls_without_encoding(path.read_text(encoding="utf-8")))
    }
    assert offenders == {}, f"text I/O without encoding= (locale-dependent): {offenders}"


@pytest.mark.parametrize(
    "source, expected",
    [
        ("Path('a').write_text('x')", [1]),
        ("Path('a').read_text()", [1]),
        ("open('a')", [1]),
        ("p.open('w', newline='')", [1]),
        ("open('a', 'rb')", []),
        ("Path('a').write_text('x', encoding='utf-8')", []),
    ],
)
def test_the_encoding_check_catches_a_default_encoding(source, expected):
    assert calls_without_encoding(source) == expected


def test_a_run_under_an_ascii_locale_keeps_non_ascii_text(tmp_path):
    """``LC_ALL=C`` with locale coercion and UTF-8 mode off makes Python's default encoding
    ASCII: any text file written without an encoding would raise UnicodeEncodeError."""
    text = "Grüße, señor: ça va?"
    out = tmp_path / "run"
    environment = {
        **os.environ,
        "LC_ALL": "C",
        "LANG": "C",
        "PYTHONCOERCECLOCALE": "0",
        "PYTHONUTF8": "0",
        "OMP_NUM_THREADS": "1",
    }
    probe = subprocess.run(
        [sys.executable, "-c", "import locale; print(locale.getpreferredencoding(False))"],
        env=environment,
        capture_output=True,
        text=True,
        check=True,
    )
    assert probe.stdout.strip() in {"ANSI_X3.4-1968", "ascii", "US-ASCII"}, "the ASCII locale did not take"
    completed = subprocess.run(
        [
            sys.executable,
            "-m",
            "bark_ablation.cli",
            "run",
            "--prompt",
            "en_speaker_0",
            "--text",
            text,
            "--seeds",
            "0",
            "--cells",
            "scf",
            "--max-duration",
            "0.2",
            "--no-study",
            "--quiet",
            "--model-set",
            "tiny",
            "--out",
            str(out),
        ],
        env=environment,
        capture_output=True,
        timeout=300,
        check=False,
    )
    assert completed.returncode == 0, completed.stderr.decode("utf-8", "replace")[-2000:]
    assert json.loads((out / "summary.json").read_text(encoding="utf-8"))["text"] == text
    assert text in (out / "summary.md").read_text(encoding="utf-8")


def test_surrogate_escaped_arguments_are_read_back_as_utf8():
    escaped = "Gr\udcc3\udcbc\udcc3\udc9fe"  # what an ASCII locale makes of the bytes of "Grüße"
    assert text_from_command_line(escaped) == "Grüße"
    assert text_from_command_line("plain") == "plain"


def test_text_that_is_not_unicode_is_refused_naming_the_field():
    with pytest.raises(ParamsError, match="text: must be valid Unicode; character 2 is a lone surrogate"):
        validate_text("ab\udcff")


def test_the_suite_runs_torch_with_the_thread_count_it_was_given(pytestconfig):
    """One intra-op thread by default (``--bark-torch-threads``): the tiny set gains nothing from more,
    and more threads than free cores slowed its stages 10x on a busy 2-core runner."""
    import torch

    from bark_ablation.pytest_plugin import torch_threads

    wanted = torch_threads(pytestconfig)
    assert wanted == 0 or torch.get_num_threads() == wanted


@pytest.mark.parametrize("value, outcome", [("2", "passed"), ("-1", "usage error")])
def test_torch_threads_option_is_applied_or_refused(pytester, value, outcome):
    enable_plugin(pytester)
    pytester.makepyfile(test_threads="import torch\ndef test_count():\n    assert torch.get_num_threads() == 2\n")
    import torch

    before = torch.get_num_threads()
    try:
        result = pytester.runpytest_inprocess("--bark-torch-threads", value, "-p", "no:cacheprovider")
    finally:
        torch.set_num_threads(before)
    if outcome == "passed":
        result.assert_outcomes(passed=1)
    else:
        assert result.ret == pytest.ExitCode.USAGE_ERROR
        result.stderr.fnmatch_lines(["*--bark-torch-threads: must be 0 (torch's default) or a positive count, got -1*"])
