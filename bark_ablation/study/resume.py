"""Resumable runs: every sample written as it is made, so an interrupted run continues where it stopped.

``bark-ablation run --out DIR`` builds its directory at ``.DIR.partial`` beside ``DIR`` (a fixed
name, so it can be found again) and moves it to ``DIR`` when complete, as every command does.
Each sample is written there as soon as it is generated: its WAV, then its token file (which
also holds the stages' timings), each to a temporary file renamed into place, so a ``kill -9``
at any instant leaves each file whole or absent; a sample counts as done only when its token
file exists, which is written last. ``resume.json`` records the arguments that decide what is
generated.

``bark-ablation run --resume DIR`` with the same arguments reads the done samples back (tokens
from the ``.npz``, audio from the float32 WAV, bit for bit), generates only the rest (a done
sample's stage rows are not run again, and cells that share a row with it read it), then scores
and writes everything as an uninterrupted run does. Every stage is seeded from (seed, stage)
alone, so the statistics files come out byte-identical to an uninterrupted run's (for the
batched implementation, up to the rounding of other batch compositions). Arguments that differ
from the recorded ones are refused, naming the option.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from bark_ablation.core.errors import OutputError, ParamsError
from bark_ablation.generation.pipeline import SAMPLE_RATE, Generation
from bark_ablation.output.staging import move_into_place, write_atomically
from bark_ablation.study.design import Unit

RESUME_FILE = "resume.json"
"""The recorded arguments, in the partial directory."""
RESUME_FORMAT = 1


@dataclass(frozen=True)
class SavedSample:
    """A done sample read back: every stage's output and its timing (seconds)."""

    semantic: np.ndarray
    coarse: np.ndarray
    fine: np.ndarray
    audio: np.ndarray
    stage_seconds: dict[str, float]


def partial_path(destination: Path) -> Path:
    """Where the run that will write ``destination`` keeps its samples until it is complete."""
    destination = Path(destination)
    return destination.parent / f".{destination.name}.partial"


class ResumableDirectory:
    """A run directory staged at :func:`partial_path` that survives interruption.

    ``ResumableDirectory(destination)`` starts a run (refused when ``destination`` exists, unless
    ``overwrite``, or when an interrupted run of it is waiting); :meth:`resume` continues one.
    Like :class:`~bark_ablation.output.staging.StagedDirectory` it offers ``path``, ``commit`` and
    ``discard``.
    """

    def __init__(self, destination: Path, *, overwrite: bool = False, resuming: bool = False):
        self.destination = Path(destination)
        self.path = partial_path(self.destination)
        self._created_root: Path | None = None
        if resuming:
            if not self.path.is_dir():
                state = "is complete" if self.destination.is_dir() else "was never started"
                raise OutputError(
                    f"--resume {self.destination}: nothing to resume ({self.path} is absent: the run {state})"
                )
            return
        if self.destination.exists() and not (overwrite and self.destination.is_dir()):
            what = "directory" if self.destination.is_dir() else "file"
            hint = "; pass --overwrite to replace it" if self.destination.is_dir() else ""
            raise OutputError(f"output {self.destination}: a {what} of that name exists{hint}")
        if self.path.exists():
            raise OutputError(
                f"output {self.destination}: an interrupted run of it is at {self.path}; continue it with "
                f"`--resume {self.destination}` (same arguments) or remove that directory"
            )
        parent = self.path.parent
        # Missing parents are created by start() and removed again by discard(), so a failed run
        # leaves the disk as it found it.
        self._created_root = next((p for p in reversed([parent, *parent.parents]) if not p.exists()), None)

    def start(self, arguments: Mapping[str, Any]) -> None:
        """Create the partial directory holding ``resume.json`` (the arguments that decide what is
        generated) in one step: it is prepared under a temporary name and renamed, so a kill at
        any instant leaves either no partial directory or one that can be resumed."""
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            preparing = Path(tempfile.mkdtemp(prefix=f".{self.destination.name}.starting-", dir=self.path.parent))
        except OSError as error:
            raise OutputError(f"output {self.destination}: cannot write in {self.path.parent} ({error})") from None
        try:
            record = {"format": RESUME_FORMAT, "arguments": dict(arguments)}
            write_atomically(preparing / RESUME_FILE, (json.dumps(record, indent=2) + "\n").encode())
            os.rename(preparing, self.path)  # fails if another run took the name meanwhile
        except OSError as error:
            shutil.rmtree(preparing, ignore_errors=True)
            raise OutputError(f"output {self.destination}: cannot start the run at {self.path} ({error})") from None

    @classmethod
    def resume(cls, destination: Path) -> ResumableDirectory:
        return cls(destination, resuming=True)

    def commit(self) -> Path:
        """Move the complete directory into place (replacing an old one if allowed), then drop
        what only a partial run needs: until the rename the partial directory stays resumable."""
        move_into_place(self.path, self.destination)
        (self.destination / RESUME_FILE).unlink(missing_ok=True)
        for stray in self.destination.rglob(".*.tmp"):  # a temporary file a killed run left behind
            stray.unlink()
        return self.destination

    def discard(self) -> None:
        """Remove the partial directory and any parent directories this run created."""
        shutil.rmtree(self._created_root or self.path, ignore_errors=True)

    def done_count(self) -> int:
        """Samples written so far (0 before :meth:`start`)."""
        return sum(1 for _ in self.path.rglob("tokens/*.npz")) if self.path.is_dir() else 0

    def check_arguments(
        self, arguments: Mapping[str, Any], options: Mapping[str, str], *, absent: Mapping[str, Any] | None = None
    ) -> None:
        """Refuse arguments that differ from the recorded ones, naming the option (``options``:
        argument name -> the command-line option that sets it). ``absent``: the value an argument
        had in runs recorded before it was (argument name -> value)."""
        try:
            recorded = json.loads((self.path / RESUME_FILE).read_text(encoding="utf-8"))["arguments"]
            recorded = {**(absent or {}), **recorded}
        except (OSError, ValueError, KeyError) as error:
            raise OutputError(f"{self.path / RESUME_FILE}: unreadable ({error}); the run cannot be resumed") from None
        given = json.loads(json.dumps(dict(arguments)))  # as it would be recorded
        for name in sorted(set(recorded) | set(given)):
            if recorded.get(name) != given.get(name):
                raise ParamsError(
                    options.get(name, name),
                    f"differs from the interrupted run's ({_short(recorded.get(name))} there, "
                    f"{_short(given.get(name))} now); resume with the same arguments",
                )


def unit_directory(root: Path, unit: Unit, single_unit: bool) -> Path:
    """Where ``unit``'s samples go: the root for the single-run layout, else ``units/<id>``."""
    return root if single_unit else root / "units" / unit.id


class SampleWriter:
    """``on_result``-style callback that writes each generation's WAV and token file atomically
    into its unit's directory as it is made
    (:func:`~bark_ablation.study.run_output.write_generation`: token file last, it marks the
    sample done)."""

    def __init__(self, root: Path, units: Sequence[Unit], single_unit: bool):
        self._directories = {(unit.prompt.name, unit.text): unit_directory(root, unit, single_unit) for unit in units}

    def __call__(self, generation: Generation, index: int = 0, total: int = 0) -> None:
        from bark_ablation.study.run_output import write_generation

        write_generation(self._directories[(generation.prompt, generation.text)], generation)


def load_done(root: Path, units: Sequence[Unit], single_unit: bool) -> dict[str, dict[tuple[int, str], SavedSample]]:
    """Unit id -> (seed, cell) -> the sample read back, for every done sample under ``root``."""
    from bark_ablation.study.similarity import load_audio

    done: dict[str, dict[tuple[int, str], SavedSample]] = {}
    for unit in units:
        directory = unit_directory(root, unit, single_unit)
        for tokens in sorted((directory / "tokens").glob("*.npz")):
            label = tokens.stem
            seed_text, _, cell = label.partition("_")
            wav = directory / "audio" / f"{label}.wav"
            if not seed_text.startswith("seed") or not wav.is_file():
                continue
            with np.load(tokens) as arrays:
                saved = {name: np.array(arrays[name]) for name in ("semantic", "coarse", "fine")}
                timings = json.loads(str(arrays["stage_seconds"])) if "stage_seconds" in arrays else {}
            audio, rate = load_audio(wav)
            if rate != SAMPLE_RATE:
                raise OutputError(f"{wav}: {rate} Hz, expected {SAMPLE_RATE}; the partial run is damaged")
            done.setdefault(unit.id, {})[(int(seed_text[4:]), cell)] = SavedSample(
                saved["semantic"], saved["coarse"], saved["fine"], audio, timings
            )
    return done


def _short(value: Any) -> str:
    text = json.dumps(value)
    return text if len(text) <= 80 else text[:77] + "..."
