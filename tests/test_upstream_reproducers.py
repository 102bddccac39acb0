"""The standalone reproducers of docs/upstream/, the bug reports for transformers' Bark port.

Each reproducer must keep reproducing its bug on the installed transformers (exit 1): the day
one exits 0, a release has fixed the bug and the test names the report to retire. A
reproducer that could never exit 0 would make that signal worthless, so each is also run
against transformers with the report's suggested fix applied in-process (the diff applied to
the installed source, or for the EOS order the suggested override), where it must exit 0.
The reproducers need only torch and transformers, and run in a few seconds each on CPU.
"""

from __future__ import annotations

import importlib.util
import inspect
import math
import os
import re
import subprocess
import sys
import textwrap
from collections.abc import Callable
from pathlib import Path
from types import ModuleType

import pytest
import transformers

UPSTREAM = Path(__file__).resolve().parents[1] / "docs" / "upstream"
REPORTS = ("coarse-special-tokens", "fine-temperature-one-greedy", "min-eos-p-before-warpers")
"""Report ids: docs/upstream/<id>.md, reproduced by docs/upstream/<id with _>.py."""


def script(report_id: str) -> Path:
    return UPSTREAM / f"{report_id.replace('-', '_')}.py"


def load(report_id: str) -> ModuleType:
    """The reproducer as a module (a name of its own, so nothing else is shadowed)."""
    path = script(report_id)
    spec = importlib.util.spec_from_file_location(f"upstream_reproducer_{path.stem}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def patched_source(function: Callable, old: str, new: str) -> Callable:
    """``function`` recompiled from its installed source with ``old`` replaced by ``new`` (the
    report's diff), in its own module's namespace; decorators in the source apply again."""
    function = inspect.unwrap(function)  # the source shows the decorators; they apply again below
    source = inspect.getsource(function)
    if source.count(old) != 1:
        pytest.fail(f"{function.__qualname__}'s source no longer holds {old.strip()!r} exactly once: "
                    f"transformers {transformers.__version__} changed it; update the fix here and in the report")
    namespace: dict = {}
    code = compile(textwrap.dedent(source.replace(old, new)), inspect.getsourcefile(function), "exec")
    exec(code, function.__globals__, namespace)
    return namespace[function.__name__]


@pytest.mark.parametrize("report_id", REPORTS)
def test_the_reproducer_still_reproduces(report_id: str) -> None:
    """The script, run as the report says, exits 1 and says REPRODUCED."""
    result = subprocess.run([sys.executable, str(script(report_id))], capture_output=True, text=True, timeout=120,
                            env={**os.environ, "OMP_NUM_THREADS": "1"})
    if result.returncode == 0:
        pytest.fail(f"transformers {transformers.__version__} no longer reproduces {report_id}: retire "
                    f"docs/upstream/{report_id}.md and its reproducer (and the known-issue entry in "
                    f"bark_ablation/implementations/known_issues.py where there is one)")
    if result.returncode != 1:
        pytest.fail(f"{script(report_id).name} exited {result.returncode}:\n{result.stdout}\n{result.stderr}")
    assert "REPRODUCED: " in result.stdout and "NOT REPRODUCED" not in result.stdout, result.stdout


def fix_coarse_special_tokens(monkeypatch: pytest.MonkeyPatch) -> None:
    """The report's diff: a second-codebook step also masks the ids above the second codebook."""
    from transformers.generation import logits_process

    processor = logits_process.AlternatingCodebooksLogitsProcessor
    fixed = patched_source(
        processor.__call__,
        '            scores_processed[:, : self.semantic_vocab_size + self.codebook_size] = -float("inf")\n',
        '            scores_processed[:, : self.semantic_vocab_size + self.codebook_size] = -float("inf")\n'
        '            scores_processed[:, self.semantic_vocab_size + 2 * self.codebook_size :] = -float("inf")\n')
    monkeypatch.setattr(processor, "__call__", fixed)


def fix_fine_temperature_one_greedy(monkeypatch: pytest.MonkeyPatch) -> None:
    """The report's diff: only ``temperature is None`` takes the argmax."""
    from transformers.models.bark.modeling_bark import BarkFineModel

    fixed = patched_source(BarkFineModel.generate, "if temperature is None or temperature == 1.0:",
                           "if temperature is None:")
    monkeypatch.setattr(BarkFineModel, "generate", fixed)


def fix_min_eos_p_before_warpers(monkeypatch: pytest.MonkeyPatch) -> None:
    """The report's suggested override: ``BarkSemanticModel`` moves its EOS processor behind the
    warpers (just ahead of ``LogitNormalization``), so it reads the distribution sampled from."""
    from transformers.generation.logits_process import (
        BarkEosPrioritizerLogitsProcessor,
        LogitNormalization,
        LogitsProcessorList,
    )
    from transformers.models.bark.modeling_bark import BarkCausalModel, BarkSemanticModel

    def _get_logits_processor(self, *args, **kwargs):
        processors = BarkCausalModel._get_logits_processor(self, *args, **kwargs)
        eos = [p for p in processors if isinstance(p, BarkEosPrioritizerLogitsProcessor)]
        rest = [p for p in processors if not isinstance(p, BarkEosPrioritizerLogitsProcessor)]
        at = len(rest) - 1 if rest and isinstance(rest[-1], LogitNormalization) else len(rest)
        return LogitsProcessorList(rest[:at] + eos + rest[at:])

    monkeypatch.setattr(BarkSemanticModel, "_get_logits_processor", _get_logits_processor)


FIXES = {"coarse-special-tokens": fix_coarse_special_tokens,
         "fine-temperature-one-greedy": fix_fine_temperature_one_greedy,
         "min-eos-p-before-warpers": fix_min_eos_p_before_warpers}


@pytest.mark.parametrize("report_id", REPORTS)
def test_the_reproducer_can_tell_a_fixed_release(report_id: str, monkeypatch: pytest.MonkeyPatch,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    """With the report's fix applied to the installed transformers, the reproducer exits 0 and
    names the report to retire; the same module, unfixed, exits 1 (so the fix made the change)."""
    module = load(report_id)
    assert module.main() == 1, capsys.readouterr().out
    capsys.readouterr()
    FIXES[report_id](monkeypatch)
    code = module.main()
    out = capsys.readouterr().out
    assert code == 0, out
    assert f"NOT REPRODUCED: transformers {transformers.__version__}" in out
    assert f"retire docs/upstream/{report_id}.md" in out


def test_the_fine_fix_samples_at_temperature_one(monkeypatch: pytest.MonkeyPatch,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    """The fixed fine stage's count of code 5 at temperature 1.0 is a sample of 192 draws at
    probability 1/2 (within 5 standard deviations of 96), not the argmax's 192."""
    fix_fine_temperature_one_greedy(monkeypatch)
    module = load("fine-temperature-one-greedy")
    assert module.main() == 0
    match = re.search(r"temperature +1\.0: +(\d+) of (\d+)", capsys.readouterr().out)
    assert match, "the reproducer no longer prints the temperature-1.0 count"
    count, total = int(match[1]), int(match[2])
    assert abs(count - total / 2) < 5 * math.sqrt(total / 4), (count, total)


def test_readme_lists_every_report_and_each_report_names_its_reproducer() -> None:
    readme = (UPSTREAM / "README.md").read_text()
    for report_id in REPORTS:
        report = UPSTREAM / f"{report_id}.md"
        assert report.is_file(), report
        assert script(report_id).is_file(), script(report_id)
        assert f"{report_id}.md" in readme and f"python docs/upstream/{script(report_id).name}" in readme, report_id
        text = report.read_text()
        assert f"python docs/upstream/{script(report_id).name}" in text, report
        assert re.search(r"First affected release: \*\*\d+\.\d+\.\d+\*\*", text), report  # the bisect's answer
    listed = set(re.findall(r"\(([a-z0-9-]+)\.md\)", readme))
    on_disk = {path.stem for path in UPSTREAM.glob("*.md")} - {"README"}
    assert listed == on_disk == set(REPORTS), (listed, on_disk)
