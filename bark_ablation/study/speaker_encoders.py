"""Speaker encoders behind one seam: ``embed(audio, sample_rate) -> unit vector``.

SECS is the cosine similarity of two speaker embeddings; which encoder makes them decides what
the number means and whether it compares with a paper's:

- ``resemblyzer`` (the default): Resemblyzer's GE2E encoder, 256 floats; its weights ship inside
  the wheel, so it always works offline.
- ``wavlm-base-plus-sv``: ``microsoft/wavlm-base-plus-sv`` through transformers'
  ``WavLMForXVector`` and its feature extractor (512 floats), what part of the zero-shot TTS
  literature reports as speaker similarity.
- ``ecapa-voxceleb``: SpeechBrain's ECAPA-TDNN ``speechbrain/spkrec-ecapa-voxceleb`` (192 floats;
  optional extra ``[ecapa]``).

The last two are read from the local Hugging Face cache only, unless downloads are allowed;
missing files are named with where they were expected and the command that fetches them, broken
ones like the Bark caches' (:class:`CacheFileError`).

Each encoder resamples to the rate it expects (16 kHz for all three) with librosa; its
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
"""Hz, what every encoder takes."""
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


def encoder_label(described: dict[str, Any] | None) -> str:
    """An encoder's :meth:`SpeakerEncoder.describe` in words, for metric lines (Resemblyzer's
    GE2E where a file predates the record: ``None``)."""
    if not described or described.get("name") == ResemblyzerEncoder.name:
        return "Resemblyzer (GE2E)"
    return f"{described['name']} ({described.get('weights', '')})"


def at_encoder_rate(audio: np.ndarray, sample_rate: int) -> np.ndarray:
    """``audio`` (float32 samples at ``sample_rate`` Hz) at :data:`ENCODER_RATE`, resampled by librosa."""
    import librosa

    samples = np.asarray(audio, dtype=np.float32)
    if sample_rate != ENCODER_RATE:
        samples = librosa.resample(samples, orig_sr=sample_rate, target_sr=ENCODER_RATE)
    return samples


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
        samples = at_encoder_rate(audio, sample_rate)
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


ECAPA_REPO = "speechbrain/spkrec-ecapa-voxceleb"
ECAPA_CHECKPOINT = "embedding_model.ckpt"
ECAPA_EXTRA_HINT = "pip install -c constraints/tested.txt 'bark-ablation[ecapa]' (SpeechBrain; the constraints keep torch and torchaudio matched)"


class EcapaVoxcelebEncoder:
    """SpeechBrain's ECAPA-TDNN trained on VoxCeleb (``speechbrain/spkrec-ecapa-voxceleb``, 192
    floats): 80 mel filterbanks of 16 kHz audio, sentence mean normalisation, the ECAPA-TDNN
    embedding, as the repository's ``EncoderClassifier.encode_batch`` computes it (tested against
    ``encode_batch`` on a tiny checkpoint).

    Built here from SpeechBrain's classes, not with ``EncoderClassifier.from_hparams``, which
    executes the cached ``hyperparams.yaml`` (HyperPyYAML builds any object it names) and writes a
    copy of the files into a save directory; only ``embedding_model.ckpt`` is read, with
    ``torch.load(weights_only=True)``, and the network's sizes are read from its tensors' shapes
    (the real checkpoint's: channels 1024 x 4 and 3072, attention 128, 192 outputs). Optional
    extra ``[ecapa]``; read from the local Hugging Face cache only, unless downloads are allowed."""

    name = "ecapa-voxceleb"

    def __init__(self, device: str = "cpu", *, repo: str = ECAPA_REPO, allow_download: bool = False):
        import torch

        try:
            from speechbrain.lobes.features import Fbank
            from speechbrain.lobes.models.ECAPA_TDNN import ECAPA_TDNN
            from speechbrain.processing.features import InputNormalization
        except ImportError:
            raise ParamsError("--speaker-encoder", f"{self.name} needs SpeechBrain: {ECAPA_EXTRA_HINT}") from None
        from bark_ablation.models.cached_weights import CacheLocations

        self.repo, self.device, self._torch = repo, device, torch
        cache_dir = CacheLocations.from_environment().hf_hub_dir
        checkpoint = _ecapa_checkpoint(repo, cache_dir, allow_download)
        what = f"speaker encoder {self.name!r} ({repo}) {ECAPA_CHECKPOINT}"
        fix = f"delete it and fetch it again: {_fetch_command(repo)}"
        try:
            state = torch.load(checkpoint, map_location="cpu", weights_only=True)
        except Exception as error:  # truncated, not a torch file, or a pickled global outside the allow-list
            detail = " ".join(f"{type(error).__name__}: {error}".split())[:300]
            raise CacheFileError(checkpoint, what, f"cannot be read ({detail})", fix) from None
        try:
            model = ECAPA_TDNN(**_ecapa_sizes(state))
            model.load_state_dict(state, strict=True)
        except (KeyError, IndexError, RuntimeError, TypeError, AttributeError, ValueError, AssertionError) as error:
            problem = f"is not an ECAPA-TDNN embedding model ({' '.join(str(error).split())[:300]})"
            raise CacheFileError(checkpoint, what, problem, fix) from None
        self._features = Fbank(n_mels=int(state["blocks.0.conv.conv.weight"].shape[1])).to(device)
        self._normalise = InputNormalization(norm_type="sentence", std_norm=False).eval().to(device)
        self._model = model.eval().to(device)
        self.dimensions = int(state["fc.conv.weight"].shape[0])
        self.revision = Path(checkpoint).parent.name

    def embed(self, audio: np.ndarray, sample_rate: int) -> np.ndarray:
        samples = at_encoder_rate(audio, sample_rate)
        torch = self._torch
        with torch.no_grad():  # as encode_batch: features on the model's device, relative lengths 1
            wavs = torch.from_numpy(samples)[None, :].to(self.device)
            lengths = torch.ones(1, device=self.device)
            features = self._normalise(self._features(wavs), lengths)
            embedding = self._model(features, lengths)
        return _unit(embedding[0, 0].float().cpu().numpy())

    def describe(self) -> dict[str, Any]:
        from importlib import metadata

        return {
            "name": self.name,
            "version": f"speechbrain {metadata.version('speechbrain')}",
            "weights": f"{self.repo}@{self.revision} ({ECAPA_CHECKPOINT}, ECAPA-TDNN), Hugging Face cache",
            "dimensions": self.dimensions,
            "sample_rate_hz": ENCODER_RATE,
        }


def _ecapa_sizes(state: dict) -> dict[str, Any]:
    """ECAPA_TDNN's constructor arguments, read from its state dict's shapes (dilations 1, 2, 3, 4,
    1 as in every SpeechBrain ECAPA recipe: they leave no trace in the weights)."""
    first = state["blocks.0.conv.conv.weight"]
    middle = [state[f"blocks.{i}.tdnn1.conv.conv.weight"] for i in (1, 2, 3)]
    aggregation = state["mfa.conv.conv.weight"]
    res2net = [k for k in state if k.startswith("blocks.1.res2net_block.blocks.") and k.endswith("conv.conv.weight")]
    attention = state["asp.tdnn.conv.conv.weight"]
    return {
        "input_size": int(first.shape[1]),
        "channels": [int(first.shape[0]), *(int(w.shape[0]) for w in middle), int(aggregation.shape[0])],
        "kernel_sizes": [
            int(first.shape[2]),
            *(int(state[f"blocks.{i}.res2net_block.blocks.0.conv.conv.weight"].shape[2]) for i in (1, 2, 3)),
            int(aggregation.shape[2]),
        ],
        "dilations": [1, 2, 3, 4, 1],
        "attention_channels": int(attention.shape[0]),
        "res2net_scale": 1 + len(res2net),
        "se_channels": int(state["blocks.1.se_block.conv1.conv.weight"].shape[0]),
        "lin_neurons": int(state["fc.conv.weight"].shape[0]),
        # attentive pooling sees the frames with their mean and deviation (3 x the channels) or alone
        "global_context": int(attention.shape[1]) == 3 * int(aggregation.shape[0]),
    }


def _ecapa_checkpoint(repo: str, cache_dir: Path, allow_download: bool) -> Path:
    """The cached ``embedding_model.ckpt`` of ``repo`` (fetched first where downloads are
    allowed); missing: :class:`MissingWeightsError` naming it, where, and the command."""
    from huggingface_hub import hf_hub_download, try_to_load_from_cache

    found = try_to_load_from_cache(repo, ECAPA_CHECKPOINT, cache_dir=cache_dir)
    if isinstance(found, str):
        return Path(found)
    if allow_download:
        from bark_ablation.core.hub_access import hub_online

        try:
            with hub_online():
                return Path(hf_hub_download(repo, ECAPA_CHECKPOINT, cache_dir=cache_dir))
        except Exception as error:  # offline, not found, refused: named, never a traceback
            detail = " ".join(f"{type(error).__name__}: {error}".split())[:300]
            raise CacheFileError(
                Path(cache_dir),
                f"speaker encoder {EcapaVoxcelebEncoder.name!r} ({repo})",
                f"cannot be fetched ({detail})",
                "see the error",
            ) from None
    raise MissingWeightsError(
        f"{EcapaVoxcelebEncoder.name} ({repo})",
        missing_ecapa_files(repo, cache_dir),
        kind="speaker encoder",
        command=_fetch_command(repo),
    )


def missing_ecapa_files(repo: str, cache_dir: Path) -> list[MissingFile]:
    """``embedding_model.ckpt`` of ``repo`` where the Hugging Face cache at ``cache_dir`` lacks it."""
    from huggingface_hub import try_to_load_from_cache

    if isinstance(try_to_load_from_cache(repo, ECAPA_CHECKPOINT, cache_dir=cache_dir), str):
        return []
    where = Path(cache_dir) / ("models--" + repo.replace("/", "--"))
    return [MissingFile(f"{repo} {ECAPA_CHECKPOINT}", where, "Hugging Face cache: $HF_HOME/hub")]


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
    EcapaVoxcelebEncoder.name: lambda device, allow_download: EcapaVoxcelebEncoder(
        device, allow_download=allow_download
    ),
}


def missing_files(name: str) -> list[MissingFile]:
    """What encoder ``name`` lacks in this machine's caches (empty: it can run offline)."""
    from bark_ablation.models.cached_weights import CacheLocations

    name = check_encoder_name(name)
    if name == WavLMXVectorEncoder.name:
        return missing_wavlm_files(WAVLM_REPO, CacheLocations.from_environment().hf_hub_dir)
    if name == EcapaVoxcelebEncoder.name:
        return missing_ecapa_files(ECAPA_REPO, CacheLocations.from_environment().hf_hub_dir)
    return []


def fetch_command(name: str) -> str | None:
    """The command that caches encoder ``name``'s weights (None: they ship with a package)."""
    repos = {WavLMXVectorEncoder.name: WAVLM_REPO, EcapaVoxcelebEncoder.name: ECAPA_REPO}
    return _fetch_command(repos[name]) if check_encoder_name(name) in repos else None


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
