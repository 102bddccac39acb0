"""Speaker encoders behind one seam: ``embed(audio, sample_rate) -> unit vector``.

SECS is the cosine similarity of two speaker embeddings; which encoder makes them decides what
the number means and whether it compares with a paper's:

- ``resemblyzer`` (the default): Resemblyzer's GE2E encoder, 256 floats; its weights ship inside
  the wheel, so it always works offline.
- ``wavlm-base-plus-sv``: ``microsoft/wavlm-base-plus-sv`` through transformers'
  ``WavLMForXVector`` and its feature extractor (512 floats), what part of the zero-shot TTS
  literature reports as speaker similarity. Read from the local Hugging Face cache only, unless
  downloads are allowed; missing files are named with where they were expected and the command
  that fetches them, broken ones like the Bark caches' (:class:`CacheFileError`).

Each encoder resamples to the rate it expects (16 kHz for both) with librosa; its
:meth:`SpeakerEncoder.describe` (name, version, weights) is recorded in every study it scores.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from bark_ablation.core.errors import CacheFileError, MissingFile, MissingWeightsError, ParamsError

DEFAULT_ENCODER = "resemblyzer"
ENCODER_RATE = 16_000
"""Hz, what both encoders take."""
MIN_SPEECH_S = 0.3
"""Shortest audio (seconds, after silence trimming) that gives a usable embedding."""
WAVLM_REPO = "microsoft/wavlm-base-plus-sv"
WAVLM_FILES = ("config.json", "preprocessor_config.json")
WAVLM_WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")


class SpeakerEncoder(Protocol):
    """One speaker encoder: ``name``, and unit-norm embeddings of mono float32 audio."""

    name: str

    def embed(self, audio: np.ndarray, sample_rate: int) -> np.ndarray:
        """Unit-norm embedding of ``audio`` (samples at ``sample_rate`` Hz)."""
        ...

    def describe(self) -> dict[str, Any]:
        """Name, version and weights, for the study files."""
        ...


def _unit(vector: np.ndarray) -> np.ndarray:
    vector = np.asarray(vector, dtype=np.float32).reshape(-1)
    return vector / np.float32(np.linalg.norm(vector))


class ResemblyzerEncoder:
    """Resemblyzer's GE2E encoder (weights in the wheel); audio prepared by
    :func:`prepare` (16 kHz, volume, long silences)."""

    name = "resemblyzer"

    def __init__(self, device: str = "cpu"):
        from resemblyzer import VoiceEncoder

        self.device = device
        self._encoder = VoiceEncoder(device, verbose=False)

    def embed(self, audio: np.ndarray, sample_rate: int) -> np.ndarray:
        return self._encoder.embed_utterance(prepare(audio, sample_rate))

    def describe(self) -> dict[str, Any]:
        from importlib import metadata

        return {
            "name": self.name,
            "version": metadata.version("resemblyzer"),
            "weights": "GE2E, in the resemblyzer wheel",
            "dimensions": 256,
            "sample_rate_hz": ENCODER_RATE,
        }


def prepare(samples: np.ndarray, sample_rate: int) -> np.ndarray:
    """``resemblyzer.preprocess_wav`` in its three steps (resample to 16 kHz, normalise volume,
    trim long silences), split so that trimming can be skipped when the voice-activity detector
    finds (almost) no speech, as in the tiny model set's noise-like output; otherwise such audio
    would leave nothing to embed."""
    import librosa
    from resemblyzer.audio import normalize_volume, trim_long_silences
    from resemblyzer.hparams import audio_norm_target_dBFS, sampling_rate

    resampled = librosa.resample(samples, orig_sr=sample_rate, target_sr=sampling_rate)
    normalised = normalize_volume(resampled, audio_norm_target_dBFS, increase_only=True)
    trimmed = trim_long_silences(normalised)
    return trimmed if trimmed.size >= MIN_SPEECH_S * sampling_rate else normalised


class WavLMXVectorEncoder:
    """transformers' ``WavLMForXVector`` and its feature extractor from a Hugging Face repository
    (``microsoft/wavlm-base-plus-sv``), loaded from the local cache unless ``allow_download``."""

    name = "wavlm-base-plus-sv"

    def __init__(self, device: str = "cpu", *, repo: str = WAVLM_REPO, allow_download: bool = False):
        import torch
        from transformers import AutoFeatureExtractor, WavLMForXVector

        from bark_ablation.core.hub_access import hub_online
        from bark_ablation.models.cached_weights import CacheLocations

        self.repo, self.device = repo, device
        cache_dir = CacheLocations.from_environment().hf_hub_dir
        snapshot = None if allow_download else _check_wavlm_cache(repo, cache_dir)
        online = hub_online() if allow_download else contextlib.nullcontext()
        what = f"speaker encoder {self.name!r} ({repo})"
        try:
            with online:
                self._features = AutoFeatureExtractor.from_pretrained(
                    repo, cache_dir=cache_dir, local_files_only=not allow_download
                )
                model, loading = WavLMForXVector.from_pretrained(
                    repo, cache_dir=cache_dir, local_files_only=not allow_download, output_loading_info=True
                )
        except Exception as error:  # truncated or foreign files: transformers and safetensors raise many kinds
            detail = f"{type(error).__name__}: {' '.join(str(error).split())[:300]}"
            if allow_download:  # a network or version problem as likely as a broken file
                raise CacheFileError(
                    cache_dir, what, f"cannot be fetched or loaded ({detail})", "see the error"
                ) from None
            raise CacheFileError(
                snapshot, what, f"cannot be loaded ({detail})", f"delete it and fetch it again: {_fetch_command(repo)}"
            ) from None
        incomplete = {k: v for k, v in loading.items() if k != "error_msgs" and v}
        if incomplete:  # a head left random would give other numbers at every load
            names = "; ".join(f"{kind}: {', '.join(sorted(map(str, keys))[:4])}" for kind, keys in incomplete.items())
            raise CacheFileError(
                snapshot or cache_dir,
                what,
                f"its weights are not a WavLMForXVector's ({names})",
                f"delete the snapshot and fetch it again: {_fetch_command(repo)}",
            )
        self.revision = _snapshot_revision(repo, cache_dir)
        self._model = model.eval().to(device)
        self._torch = torch
        self.dimensions = int(model.config.xvector_output_dim)

    def embed(self, audio: np.ndarray, sample_rate: int) -> np.ndarray:
        import librosa

        samples = np.asarray(audio, dtype=np.float32)
        if sample_rate != ENCODER_RATE:
            samples = librosa.resample(samples, orig_sr=sample_rate, target_sr=ENCODER_RATE)
        inputs = self._features(samples, sampling_rate=ENCODER_RATE, return_tensors="pt")
        with self._torch.no_grad():
            embedding = self._model(**{k: v.to(self.device) for k, v in inputs.items()}).embeddings
        return _unit(embedding[0].float().cpu().numpy())

    def describe(self) -> dict[str, Any]:
        from importlib import metadata

        return {
            "name": self.name,
            "version": f"transformers {metadata.version('transformers')}",
            "weights": f"{self.repo}@{self.revision} (WavLMForXVector), Hugging Face cache",
            "dimensions": self.dimensions,
            "sample_rate_hz": ENCODER_RATE,
        }


def _snapshot_revision(repo: str, cache_dir: Path) -> str:
    """The commit of the cached snapshot the model was read from (its directory's name)."""
    from huggingface_hub import try_to_load_from_cache

    found = try_to_load_from_cache(repo, "config.json", cache_dir=cache_dir)
    return Path(found).parent.name if isinstance(found, str) else "unknown"


def _fetch_command(repo: str) -> str:
    return f"hf download {repo} (or rerun with --allow-download)"


def missing_wavlm_files(repo: str, cache_dir: Path) -> list[MissingFile]:
    """Files of ``repo`` the Hugging Face cache at ``cache_dir`` lacks (empty: all there)."""
    from huggingface_hub import try_to_load_from_cache

    where = Path(cache_dir) / ("models--" + repo.replace("/", "--"))

    def cached(filename: str) -> bool:
        return isinstance(try_to_load_from_cache(repo, filename, cache_dir=cache_dir), str)

    hint = "Hugging Face cache: $HF_HOME/hub"
    missing = [MissingFile(f"{repo} {name}", where, hint) for name in WAVLM_FILES if not cached(name)]
    if not any(cached(name) for name in WAVLM_WEIGHT_FILES):
        missing.append(MissingFile(f"{repo} weights ({' or '.join(WAVLM_WEIGHT_FILES)})", where, hint))
    return missing


def _check_wavlm_cache(repo: str, cache_dir: Path) -> Path:
    """The cached snapshot of ``repo``, checked: every file present (else
    :class:`MissingWeightsError` naming them, where, and the command), and its config a
    ``WavLMForXVector``'s (else :class:`CacheFileError`: another model's files)."""
    from huggingface_hub import try_to_load_from_cache

    missing = missing_wavlm_files(repo, cache_dir)
    if missing:
        raise MissingWeightsError(
            f"{WavLMXVectorEncoder.name} ({repo})", missing, kind="speaker encoder", command=_fetch_command(repo)
        )
    config_path = Path(try_to_load_from_cache(repo, "config.json", cache_dir=cache_dir))
    try:
        config = json.loads(config_path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise CacheFileError(
            config_path, f"speaker encoder config ({repo})", f"unreadable ({error})", _fetch_command(repo)
        ) from None
    kind, architectures = config.get("model_type"), config.get("architectures") or []
    if kind != "wavlm" or "WavLMForXVector" not in architectures:
        raise CacheFileError(
            config_path,
            f"speaker encoder config ({repo})",
            f"is another model's (model_type {kind!r}, architectures {architectures}); a WavLMForXVector's is needed",
            f"delete the snapshot and fetch it again: {_fetch_command(repo)}",
        )
    return config_path.parent


ENCODERS: dict[str, Callable[..., SpeakerEncoder]] = {
    ResemblyzerEncoder.name: lambda device, allow_download: ResemblyzerEncoder(device),
    WavLMXVectorEncoder.name: lambda device, allow_download: WavLMXVectorEncoder(device, allow_download=allow_download),
}


def missing_files(name: str) -> list[MissingFile]:
    """What encoder ``name`` lacks in this machine's caches (empty: it can run offline)."""
    from bark_ablation.models.cached_weights import CacheLocations

    if check_encoder_name(name) == WavLMXVectorEncoder.name:
        return missing_wavlm_files(WAVLM_REPO, CacheLocations.from_environment().hf_hub_dir)
    return []


def check_encoder_name(name: str, field: str = "--speaker-encoder") -> str:
    if name not in ENCODERS:
        raise ParamsError(field, f"must be one of {', '.join(ENCODERS)}, got {name!r}")
    return name


_BUILT: dict[tuple[str, str, Path], SpeakerEncoder] = {}


def get_encoder(name: str = DEFAULT_ENCODER, device: str = "cpu", *, allow_download: bool = False) -> SpeakerEncoder:
    """The encoder ``name`` on ``device``, built once per process and Hugging Face cache (built
    with ``allow_download``, it serves the later offline calls too)."""
    from bark_ablation.models.cached_weights import CacheLocations

    key = (check_encoder_name(name), device, CacheLocations.from_environment().hf_hub_dir)
    if key not in _BUILT:
        _BUILT[key] = ENCODERS[name](device, allow_download)
    return _BUILT[key]


def forget_encoders() -> None:
    """Drop every built encoder (for a test that changes a cache in place)."""
    _BUILT.clear()
