"""Compare-or-regenerate: the workflow a golden test runs, with pytest-regressions' conventions.

* ``compare`` (default): load the golden case and raise :class:`~bark_ablation.golden.drift.GoldenMismatch`
  on drift. Missing golden data is an error that prints the exact command creating it; it is
  never written as a side effect (so a CI run, where ``CI`` is set, cannot silently bless its own
  output).
* ``force-regen`` (``--bark-golden-force-regen``): write the golden data of every case that runs, then
  fail with :class:`GoldenRegenerated` so the new data is reviewed (``git diff golden/``) before a
  rerun without the flag passes.
* ``regen-all`` (``--bark-golden-regen-all``): write and pass; for creating a device class's golden
  data on a new runner in one go.
"""

from __future__ import annotations

import dataclasses
import enum
import shlex
from dataclasses import dataclass, field
from pathlib import Path

from bark_ablation.core.checks import CheckFailure
from bark_ablation.core.implementation import ModelSet
from bark_ablation.core.prompts import VoicePrompt
from bark_ablation.generation.pipeline import Generation
from bark_ablation.golden.drift import TOLERANCES, DriftReport, Tolerance, assert_no_drift
from bark_ablation.golden.store import GoldenKey, GoldenRequest, GoldenStore

FORCE_REGEN_FLAG = "--bark-golden-force-regen"
REGEN_ALL_FLAG = "--bark-golden-regen-all"


class GoldenMode(enum.Enum):
    COMPARE = "compare"
    FORCE_REGEN = "force-regen"
    REGEN_ALL = "regen-all"


class GoldenRegenerated(CheckFailure):
    """Golden data was (re)written on request; the test fails so that it gets reviewed."""

    def __init__(self, directory: Path):
        self.directory = directory
        super().__init__(
            f"golden data written to {directory} ({FORCE_REGEN_FLAG}); review it "
            f"(git status / git diff golden/) and rerun without {FORCE_REGEN_FLAG}"
        )


def pytest_command(target: str, model_set: str, device: str, flag: str, golden_dir: Path | None = None) -> str:
    """The shell command that runs ``target`` (a node id or test file) with ``flag``."""
    parts = ["python", "-m", "pytest", target, "--bark-model-set", model_set, "--bark-device", device]
    if golden_dir is not None:
        parts += ["--bark-golden-dir", str(golden_dir)]
    return " ".join(shlex.quote(part) for part in [*parts, flag])


@dataclass
class GoldenCheck:
    """One golden comparison workflow over a store.

    ``artifacts_root``: where drift artifacts go (one directory per case), or ``None`` to write
    none. ``command`` and ``class_command`` are printed when the case or the whole device class
    has no golden data.
    """

    store: GoldenStore
    mode: GoldenMode = GoldenMode.COMPARE
    artifacts_root: Path | None = None
    tolerances: dict[str, Tolerance] = field(default_factory=lambda: dict(TOLERANCES))

    def check(
        self,
        generation: Generation,
        prompt: VoicePrompt,
        model_set: ModelSet,
        *,
        command: str | None = None,
        class_command: str | None = None,
        case: str | None = None,
        description: str | None = None,
    ) -> DriftReport | Path:
        """Compare ``generation`` with its golden case, or (re)write that case per :attr:`mode`.

        ``case`` names the case in place of the generation's cell (a generation that is not one
        cell of a matrix run, e.g. a long-form chunk: ``longform-previous-c2``); ``description``
        says how it was conditioned, for the manifest.

        Returns the passing report, or the written directory in ``regen-all`` mode.

        Raises:
            GoldenMismatch: the generation drifted (compare mode).
            GoldenRegenerated: the case was written (force-regen mode).
            GoldenDeviceClassMissing, GoldenMissingError, GoldenCorruptError, GoldenStaleError:
                see :meth:`bark_ablation.golden.store.GoldenStore.load`.
        """
        key = GoldenKey.for_generation(generation, model_set)
        if case is not None:
            key = dataclasses.replace(key, cell=case)
        if self.mode is not GoldenMode.COMPARE:
            directory = self.store.write(key, generation, prompt, model_set, description=description)
            if self.mode is GoldenMode.FORCE_REGEN:
                raise GoldenRegenerated(directory)
            return directory
        golden = self.store.load(
            key, GoldenRequest.for_generation(generation, prompt), command=command, class_command=class_command
        )
        return assert_no_drift(
            golden, generation, model_set.device_class, artifacts_root=self.artifacts_root, tolerances=self.tolerances
        )
