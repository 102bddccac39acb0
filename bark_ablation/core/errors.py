"""Exception types a caller can catch.

Every validation error names the thing that was checked, the field inside it and the rule it
broke, so a message reads like ``prompt 'en_speaker_0': coarse_prompt: must have 2 codebooks
(rows), got 3``. None of them is an ``AssertionError``: bad input is rejected before Bark's own
bare asserts can see it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


class BarkAblationError(Exception):
    """Base class of every error this package raises on purpose.

    Every one pickles whole (its message and attributes), whatever its constructor takes: a Ray
    worker's error reaches the driver as itself (:mod:`bark_ablation.study.ray_executor`)."""

    def __reduce__(self):
        return _rebuild_error, (type(self), str(self), dict(self.__dict__))


def _rebuild_error(kind: type[BarkAblationError], message: str, state: dict) -> BarkAblationError:
    """An error of ``kind`` with ``message`` and ``state``, without calling its constructor."""
    error = kind.__new__(kind)
    Exception.__init__(error, message)
    error.__dict__.update(state)
    return error


class ValidationError(BarkAblationError, ValueError):
    """An input broke a rule. ``subject`` names the input, ``field`` the part, ``rule`` the rule."""

    def __init__(self, subject: str, field: str, rule: str):
        self.subject = subject
        self.field = field
        self.rule = rule
        super().__init__(f"{subject}: {field}: {rule}")


class PromptError(ValidationError):
    """A voice prompt (history prompt) is missing, unreadable, or breaks one of Bark's rules."""

    def __init__(self, prompt: str, field: str, rule: str):
        self.prompt = prompt
        super().__init__(f"prompt {prompt!r}", field, rule)


class ParamsError(ValidationError):
    """A generation parameter, the text, a seed or a conditioning id is invalid."""

    def __init__(self, field: str, rule: str):
        super().__init__("generation input", field, rule)


@dataclass(frozen=True)
class MissingFile:
    """One file a model set needs and could not find.

    ``what`` says what the file is, ``expected_at`` where it was looked for, and ``hint`` how to
    change that location (an environment variable, usually).
    """

    what: str
    expected_at: Path
    hint: str

    def __str__(self) -> str:
        return f"{self.what}: expected at {self.expected_at} ({self.hint})"


class ModelSetError(BarkAblationError):
    """A model set is unknown or cannot be built on this machine."""


class MissingWeightsError(ModelSetError):
    """Real weights are not in the local caches; lists every missing file and where it belongs."""

    def __init__(
        self, model_set: str, missing: list[MissingFile], *, kind: str = "model set", command: str | None = None
    ):
        self.model_set = model_set
        self.missing = list(missing)
        self.command = command
        lines = "\n".join(f"  - {item}" for item in self.missing)
        fetch = f"\nfetch them with: {command}" if command else ""
        super().__init__(
            f"{kind} {model_set!r}: {len(self.missing)} file(s) missing from the local caches "
            f"(nothing is downloaded unless you opt in with allow_download=True / "
            f"--allow-download):\n{lines}{fetch}"
        )


class CacheFileError(ModelSetError):
    """A file in a local weights cache is there but cannot be used: truncated, not the kind of
    file it should be, made for another model (keys, shapes, vocabularies), or carrying a
    pickled global outside the allow-list of weights files.

    ``path`` is the file, ``what`` says what it should have been, ``problem`` what is wrong with
    it and ``fix`` what to do. The message is one line.
    """

    def __init__(self, path: Path, what: str, problem: str, fix: str):
        self.path = Path(path)
        self.what = what
        self.problem = problem
        self.fix = fix
        message = f"{what} {self.path}: {problem}; {fix}"
        super().__init__(" ".join(message.splitlines()))


class OutputError(BarkAblationError):
    """An output location cannot be used (exists, is not writable, ...)."""


class ExecutorError(BarkAblationError):
    """A distributed run could not finish: the cluster is unreachable or a unit's workers kept dying."""


class ReleaseError(BarkAblationError):
    """A release of a Bark implementation cannot be listed, installed into an overlay or run."""


class GoldenError(BarkAblationError):
    """Golden data is missing, unreadable or made for another request.

    ``path`` is the file or directory concerned; ``command`` (when known) is the exact command
    that (re)creates the golden data.
    """

    def __init__(self, path: Path, problem: str, command: str | None = None):
        self.path = Path(path)
        self.problem = problem
        self.command = command
        message = f"golden data {self.path}: {problem}"
        if command:
            message += f"\n  (re)create it with:\n    {command}"
        super().__init__(message)


class GoldenMissingError(GoldenError):
    """No golden data for this case, in a device class that has golden data."""


class GoldenDeviceClassMissing(GoldenError):
    """No golden data at all for this model set, implementation and device class: a test of
    this class has nothing to compare against and should be skipped, not failed."""


class GoldenCorruptError(GoldenError):
    """A golden file is missing from its case, truncated, altered or unreadable."""


class GoldenStaleError(GoldenError):
    """Golden data was made for a different request (text, prompt, parameters, format)."""
