"""Real Bark weights, read only from the local caches.

Files a real model set needs, and where Bark's ecosystem keeps them:

* GPT checkpoints ``text_2.pt``, ``coarse_2.pt``, ``fine_2.pt`` (``bark``) or ``text.pt``,
  ``coarse.pt``, ``fine.pt`` (``bark-small``) in Bark's cache,
  ``$XDG_CACHE_HOME/suno/bark_v0`` (default ``~/.cache/suno/bark_v0``);
* the tokenizer ``bert-base-multilingual-cased`` in the Hugging Face cache (``$HF_HOME``);
* EnCodec 24 kHz weights ``encodec_24khz-d7cc33bc.th`` in torch hub's cache
  (``$TORCH_HOME/hub/checkpoints``).

Nothing here downloads unless ``allow_download=True``. Bark 0.1.5's own loader calls
``torch.load`` with torch's default, which since torch 2.6 is ``weights_only=True``, and Bark's
checkpoints hold a numpy scalar (``best_val_loss``), so Bark's loader fails there. This module
loads with ``weights_only=True`` and allows exactly the numpy globals those checkpoints
contain, for the duration of one ``torch.load`` call; it never turns ``weights_only`` off.
"""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from bark_ablation.errors import MissingFile, MissingWeightsError, ModelSetError

TOKENIZER_REPO = "bert-base-multilingual-cased"
ENCODEC_CHECKPOINT = "encodec_24khz-d7cc33bc.th"
BARK_REPO = "suno/bark"

CHECKPOINTS = {
    "bark": {"text": "text_2.pt", "coarse": "coarse_2.pt", "fine": "fine_2.pt"},
    "bark-small": {"text": "text.pt", "coarse": "coarse.pt", "fine": "fine.pt"},
}
"""Model set name -> stage -> checkpoint file name (Bark's ``REMOTE_MODEL_PATHS``)."""


@dataclass(frozen=True)
class CacheLocations:
    """Where the three caches are. ``from_environment`` reads the same variables Bark,
    huggingface_hub and torch hub read."""

    bark_dir: Path
    hf_hub_dir: Path
    torch_hub_dir: Path

    @classmethod
    def from_environment(cls) -> "CacheLocations":
        from huggingface_hub import constants

        xdg = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
        return cls(bark_dir=Path(xdg) / "suno" / "bark_v0", hf_hub_dir=Path(constants.HF_HUB_CACHE),
                   torch_hub_dir=Path(torch.hub.get_dir()))

    def hub_repo_dir(self, repo: str) -> Path:
        """Where the Hugging Face cache keeps ``repo`` (``models--owner--name``)."""
        return self.hf_hub_dir / ("models--" + repo.replace("/", "--"))

    @property
    def encodec_path(self) -> Path:
        return self.torch_hub_dir / "checkpoints" / ENCODEC_CHECKPOINT


def missing_files(name: str, locations: CacheLocations | None = None) -> list[MissingFile]:
    """Every file model set ``name`` needs that is not in the local caches (empty: all there)."""
    locations = locations or CacheLocations.from_environment()
    missing = []
    for stage, file_name in CHECKPOINTS[name].items():
        path = locations.bark_dir / file_name
        if not path.is_file():
            missing.append(MissingFile(f"Bark {stage} checkpoint {file_name}", path,
                                       "Bark's cache: $XDG_CACHE_HOME/suno/bark_v0"))
    if _tokenizer_vocab(locations) is None:
        missing.append(MissingFile(f"tokenizer {TOKENIZER_REPO} (vocab.txt)",
                                   locations.hub_repo_dir(TOKENIZER_REPO),
                                   "Hugging Face cache: $HF_HOME/hub"))
    if not locations.encodec_path.is_file():
        missing.append(MissingFile(f"EnCodec 24 kHz weights {ENCODEC_CHECKPOINT}", locations.encodec_path,
                                   "torch hub cache: $TORCH_HOME/hub/checkpoints"))
    return missing


def load_cached_models(name: str, device: str, *, locations: CacheLocations | None = None,
                       allow_download: bool = False) -> tuple[dict, dict[str, Any]]:
    """Load model set ``name`` (``bark`` or ``bark-small``) in ``bark.generation.models`` layout.

    Returns ``(models, provenance)``. Raises :class:`MissingWeightsError` listing every missing
    file unless ``allow_download`` is true, in which case they are fetched first.
    """
    if name not in CHECKPOINTS:
        raise ModelSetError(f"model set {name!r}: no real weights of that name (known: {', '.join(CHECKPOINTS)})")
    locations = locations or CacheLocations.from_environment()
    missing = missing_files(name, locations)
    if missing and allow_download:
        _download(name, locations)
        missing = missing_files(name, locations)
    if missing:
        raise MissingWeightsError(name, missing)

    from bark.model import GPT, GPTConfig
    from bark.model_fine import FineGPT, FineGPTConfig
    from transformers import BertTokenizer

    paths = {stage: locations.bark_dir / file for stage, file in CHECKPOINTS[name].items()}
    text = load_bark_checkpoint(paths["text"], GPT, GPTConfig, device)
    coarse = load_bark_checkpoint(paths["coarse"], GPT, GPTConfig, device)
    fine = load_bark_checkpoint(paths["fine"], FineGPT, FineGPTConfig, device)
    tokenizer = BertTokenizer.from_pretrained(str(Path(_tokenizer_vocab(locations)).parent),
                                              local_files_only=True)
    codec = load_cached_encodec(locations.encodec_path, device)
    provenance = {"files": {stage: str(path) for stage, path in paths.items()},
                  "encodec": str(locations.encodec_path), "tokenizer": TOKENIZER_REPO}
    return {"text": {"model": text, "tokenizer": tokenizer}, "coarse": coarse, "fine": fine,
            "codec": codec}, provenance


def load_bark_checkpoint(path: Path, model_class: type, config_class: type, device: str) -> torch.nn.Module:
    """Load one checkpoint in Bark's format (``model_args``, ``model``, ``best_val_loss``).

    Mirrors ``bark.generation._load_model`` (legacy ``vocab_size``, the ``_orig_mod.`` prefix
    of compiled models, the ignored ``.attn.bias`` buffers) but reads with ``weights_only=True``.
    """
    with torch.serialization.safe_globals(_numpy_checkpoint_globals()):
        checkpoint = torch.load(path, map_location=device, weights_only=True)
    model_args = dict(checkpoint["model_args"])
    if "input_vocab_size" not in model_args:
        model_args["input_vocab_size"] = model_args["output_vocab_size"] = model_args.pop("vocab_size")
    model = model_class(config_class(**model_args))
    state_dict = {key.removeprefix("_orig_mod."): value for key, value in checkpoint["model"].items()}
    expected = {k for k in model.state_dict() if not k.endswith(".attn.bias")}
    provided = {k for k in state_dict if not k.endswith(".attn.bias")}
    if expected != provided:
        raise ModelSetError(
            f"checkpoint {path}: keys do not match {model_class.__name__}: missing "
            f"{sorted(expected - provided)[:5]}, unexpected {sorted(provided - expected)[:5]}"
        )
    model.load_state_dict(state_dict, strict=False)
    model.eval()
    return model.to(device)


def load_cached_encodec(path: Path, device: str) -> torch.nn.Module:
    """EnCodec 24 kHz at 6 kbps (8 codebooks) from a local state-dict file."""
    from encodec import EncodecModel

    with warnings.catch_warnings():  # encodec uses the deprecated torch weight_norm
        warnings.simplefilter("ignore", FutureWarning)
        codec = EncodecModel.encodec_model_24khz(pretrained=False)
    codec.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
    codec.set_target_bandwidth(6.0)
    codec.eval()
    return codec.to(device)


def _numpy_checkpoint_globals() -> list:
    """The numpy globals a Bark checkpoint's ``best_val_loss`` pickles to, under numpy 1.x
    names (``numpy.core``) and 2.x names (``numpy._core``)."""
    try:
        from numpy._core.multiarray import scalar  # numpy >= 2
    except ImportError:  # pragma: no cover - numpy 1.x
        from numpy.core.multiarray import scalar
    dtype_classes = [type(np.dtype(code)) for code in ("f8", "f4", "i8", "i4")]
    allowed: list = [np.dtype, scalar, *dtype_classes,
                     (scalar, "numpy.core.multiarray.scalar"),
                     (scalar, "numpy._core.multiarray.scalar")]
    return allowed


def _tokenizer_vocab(locations: CacheLocations) -> str | None:
    """Path of the cached tokenizer vocabulary, or None. A local lookup: no network."""
    from huggingface_hub import try_to_load_from_cache

    found = try_to_load_from_cache(TOKENIZER_REPO, "vocab.txt", cache_dir=locations.hf_hub_dir)
    return found if isinstance(found, str) else None


def _download(name: str, locations: CacheLocations) -> None:  # pragma: no cover - needs network
    """Fetch the files of model set ``name``. Only called with ``allow_download=True``."""
    from encodec import EncodecModel
    from huggingface_hub import hf_hub_download
    from transformers import BertTokenizer

    for file_name in CHECKPOINTS[name].values():
        hf_hub_download(repo_id=BARK_REPO, filename=file_name, local_dir=locations.bark_dir)
    BertTokenizer.from_pretrained(TOKENIZER_REPO, cache_dir=locations.hf_hub_dir)
    EncodecModel.encodec_model_24khz(pretrained=True)
