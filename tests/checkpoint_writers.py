"""Writers of real-format caches for the tests: Bark checkpoints pickled as numpy 1.x pickled
them, EnCodec's state dict in torch hub's cache, and the tokenizer in the Hugging Face cache
layout; plus the four ways a cached file goes bad (truncated, garbage, another model's file,
a pickled global outside the allow-list).

Bark's published checkpoints were written by ``torch.save`` (pickle protocol 2) under numpy 1.x:
``best_val_loss`` is a numpy float64 scalar, which pickles as the global
``numpy.core.multiarray.scalar`` applied to (``numpy.dtype('f8', False, True)`` with its BUILD
state, the value's 8 bytes). numpy 2 writes ``numpy._core.multiarray.scalar`` instead;
:data:`NUMPY1_PICKLE` writes the numpy 1.x name, so the loader is tested on the stream the real
files hold.
"""

from __future__ import annotations

import hashlib
import io
import os
import pickle
import shutil
import types
import zlib
from pathlib import Path

import numpy as np
import torch

from bark_ablation.models.cached_weights import (
    CHECKPOINTS,
    TOKENIZER_REPO,
    TOKENIZER_VOCAB_SIZE,
    CacheLocations,
    _numpy_checkpoint_globals,
)
from bark_ablation.models.tiny_model_set import tiny_tokenizer_dir

try:
    from numpy._core.multiarray import scalar as _numpy_scalar  # numpy >= 2
except ImportError:  # pragma: no cover - numpy 1.x
    from numpy.core.multiarray import scalar as _numpy_scalar

NUMPY1_SCALAR_GLOBAL = b"numpy.core.multiarray\nscalar\n"
"""The GLOBAL argument numpy 1.x pickles a scalar's reconstructor with."""

BARK_SMALL_COARSE_ARGS = dict(n_layer=12, n_head=12, n_embd=768, block_size=1024,
                              input_vocab_size=12_096, output_vocab_size=12_096, bias=False, dropout=0.0)
"""bark-small's coarse model (``coarse.pt``): GPT blocks as transformers' BarkCoarseConfig
defaults and ``suno/bark-small``, Bark's coarse vocabularies."""
FULL_SIZE_WEIGHT_SEED = 20_240_102
FULL_SIZE_WEIGHT_STD = 0.02

FOREIGN_GLOBAL = os.system
"""A global no weights file may carry: pickled by reference (it is never called), it shows in
the stream as ``posix.system`` on Linux."""
FOREIGN_GLOBAL_NAME = f"{os.system.__module__}.system"


class Numpy1Pickler(pickle._Pickler):
    """The pure-Python pickler, writing numpy scalars under numpy 1.x's global name."""

    def save_global(self, obj, name=None):
        if obj is _numpy_scalar:
            self.write(pickle.GLOBAL + NUMPY1_SCALAR_GLOBAL)
            self.memoize(obj)
            return
        super().save_global(obj, name)


def _dump(obj, file, protocol=None) -> None:
    Numpy1Pickler(file, protocol).dump(obj)


NUMPY1_PICKLE = types.ModuleType("numpy1_pickle")
"""A ``pickle_module`` for ``torch.save``: ``torch.save(obj, f, pickle_module=NUMPY1_PICKLE)``
(``Pickler`` for torch's zip format, ``dump`` for its legacy format)."""
NUMPY1_PICKLE.Pickler = Numpy1Pickler
NUMPY1_PICKLE.dump = _dump


def save_bark_checkpoint(path: Path | io.BytesIO, model_args: dict, state_dict: dict, best_val_loss: float = 2.5,
                         **extra) -> None:
    """A checkpoint as Bark's published ones are: ``model_args``, ``model`` (every key with the
    ``_orig_mod.`` prefix of a compiled model), ``best_val_loss`` a numpy float64, pickled by
    ``torch.save`` at protocol 2 with numpy 1.x's global names. ``extra`` adds entries."""
    checkpoint = {"model_args": dict(model_args),
                  "model": {f"_orig_mod.{key}": value for key, value in state_dict.items()},
                  "best_val_loss": np.float64(best_val_loss), **extra}
    torch.save(checkpoint, path, pickle_module=NUMPY1_PICKLE, pickle_protocol=2)


def read_checkpoint(path: Path):
    """A checkpoint read back the way the loader reads it (weights_only, the numpy allow-list)."""
    with torch.serialization.safe_globals(_numpy_checkpoint_globals()):
        return torch.load(path, map_location="cpu", weights_only=True)


def save_gpt_model(path: Path, model: torch.nn.Module) -> None:
    save_bark_checkpoint(path, dict(vars(model.config)), model.state_dict())


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


def padded_vocabulary(entries: list[str], size: int = TOKENIZER_VOCAB_SIZE) -> list[str]:
    """``entries`` padded to ``size`` with ``[unusedN]`` entries: BERT's basic tokenizer splits
    ``[`` and ``]`` off as punctuation, so no text ever tokenizes to them and the ids of the
    original entries (and the tokenization of any text) stay as they were."""
    taken = set(entries)
    padding = (f"[unused{i}]" for i in range(size * 2))
    return entries + [p for p in padding if p not in taken][: size - len(entries)]


def tiny_vocabulary() -> list[str]:
    return (Path(tiny_tokenizer_dir()) / "vocab.txt").read_text(encoding="utf-8").splitlines()


def write_tokenizer_cache(hf_hub_dir: Path, vocab_lines: list[str]) -> Path:
    """huggingface_hub's cache layout: ``models--<repo>/blobs/<sha>`` holding the bytes,
    ``snapshots/<40 hex>/<file>`` relative links to them, ``refs/main`` naming the snapshot.
    Returns the snapshot's ``vocab.txt``."""
    repo_dir = hf_hub_dir / f"models--{TOKENIZER_REPO}"
    commit = hashlib.sha1(b"bark-ablation test snapshot").hexdigest()
    files = {"vocab.txt": "".join(line + "\n" for line in vocab_lines).encode("utf-8"),
             "tokenizer_config.json": (Path(tiny_tokenizer_dir()) / "tokenizer_config.json").read_bytes()}
    (repo_dir / "blobs").mkdir(parents=True)
    snapshot = repo_dir / "snapshots" / commit
    snapshot.mkdir(parents=True)
    for name, data in files.items():
        blob = hashlib.sha256(data).hexdigest()
        (repo_dir / "blobs" / blob).write_bytes(data)
        (snapshot / name).symlink_to(Path("..", "..", "blobs", blob))
    (repo_dir / "refs").mkdir()
    (repo_dir / "refs" / "main").write_text(commit)
    return snapshot / "vocab.txt"


def write_fake_cache(locations: CacheLocations, tiny_models, name: str = "bark", *,
                     models: dict | None = None) -> None:
    """The tiny models (or ``models``, stage -> (model_args, state_dict)), saved where and how
    the real ones are: numpy-1 checkpoints in Bark's cache, EnCodec's state dict in torch hub's,
    the tiny tokenizer padded to bert-base-multilingual-cased's 119,547 entries in the Hugging
    Face cache."""
    locations.bark_dir.mkdir(parents=True)
    tiny = tiny_models.models
    for stage, file_name in CHECKPOINTS[name].items():
        if models is not None and stage in models:
            model_args, state_dict = models[stage]
            save_bark_checkpoint(locations.bark_dir / file_name, model_args, state_dict)
        else:
            save_gpt_model(locations.bark_dir / file_name, tiny["text"]["model"] if stage == "text" else tiny[stage])
    write_tokenizer_cache(locations.hf_hub_dir, padded_vocabulary(tiny_vocabulary()))
    (locations.torch_hub_dir / "checkpoints").mkdir(parents=True)
    torch.save(tiny["codec"].state_dict(), locations.encodec_path)


def locations_under(root: Path) -> CacheLocations:
    """The caches where ``XDG_CACHE_HOME=root``, ``HF_HOME=root/huggingface`` and
    ``TORCH_HOME=root/torch`` put them (see :func:`point_environment_at`)."""
    return CacheLocations(bark_dir=root / "suno" / "bark_v0", hf_hub_dir=root / "huggingface" / "hub",
                          torch_hub_dir=root / "torch" / "hub")


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
