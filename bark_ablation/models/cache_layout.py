"""Writers of Bark's real cache layout, for model sets that were never published (the tiny set).

Bark 0.1.5 loads its models from three caches (see :mod:`bark_ablation.models.cached_weights`),
and :func:`write_bark_cache` puts a model set in all three, in the format each reader expects:

* GPT checkpoints in Bark's cache, ``$XDG_CACHE_HOME/suno/bark_v0/{text,coarse,fine}.pt``
  (``bark-small`` names) or ``text_2.pt`` etc. (``bark``): a dict of ``model_args``, ``model``
  (the state dict, every key with the ``_orig_mod.`` prefix of a compiled model) and
  ``best_val_loss`` (a numpy float64, in nats per token), written by ``torch.save`` at pickle
  protocol 2 as numpy 1.x pickled it (below);
* EnCodec 24 kHz weights as a plain state dict in torch hub's cache,
  ``$TORCH_HOME/hub/checkpoints/encodec_24khz-d7cc33bc.th``;
* the tokenizer ``bert-base-multilingual-cased`` in the Hugging Face cache layout
  (``$HF_HOME/hub/models--bert-base-multilingual-cased/{blobs,snapshots,refs}``): the tiny
  set's ASCII vocabulary padded with ``[unusedN]`` entries to the real one's 119,547 lines, so
  Bark's text pad token (10_048 + 119,547) means what it means with the real tokenizer.

Sizes: EnCodec's weights are full size and make most of the bytes; the text checkpoint comes next
(its 129,600-row input embedding) (measured: docs/measurements.md#tiny-cache-layout-size).

Hand-written because nothing else writes this format: Bark only reads checkpoints (its training
code was never published), transformers saves Bark as ``BarkModel`` in its own layout, and the
published checkpoints are what users' caches hold. Bark's published checkpoints were pickled
under numpy 1.x: ``best_val_loss`` is stored as the global ``numpy.core.multiarray.scalar``
applied to a dtype and the value's 8 bytes. numpy 2 writes ``numpy._core.multiarray.scalar``;
:data:`NUMPY1_PICKLE` writes numpy 1.x's name, so a reader is tried on the stream the real files
hold (the one torch's ``weights_only`` loader refuses unless that global is allowed).
"""

from __future__ import annotations

import hashlib
import io
import pickle
import types
from pathlib import Path

import numpy as np
import torch

from bark_ablation.models.cached_weights import CHECKPOINTS, TOKENIZER_REPO, TOKENIZER_VOCAB_SIZE, CacheLocations
from bark_ablation.models.tiny_model_set import tiny_tokenizer_dir

try:
    from numpy._core.multiarray import scalar as _numpy_scalar  # numpy >= 2
except ImportError:  # pragma: no cover - numpy 1.x
    from numpy.core.multiarray import scalar as _numpy_scalar

NUMPY1_SCALAR_GLOBAL = b"numpy.core.multiarray\nscalar\n"
"""The GLOBAL argument numpy 1.x pickles a scalar's reconstructor with."""
BEST_VAL_LOSS = 2.5
"""``best_val_loss`` written into checkpoints (nats per token; Bark logs it, nothing uses it)."""
SNAPSHOT_COMMIT = hashlib.sha1(b"bark-ablation test snapshot").hexdigest()
"""The 40-hex snapshot name the tokenizer is filed under in the Hugging Face cache."""


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


def save_bark_checkpoint(
    path: Path | io.BytesIO, model_args: dict, state_dict: dict, best_val_loss: float = BEST_VAL_LOSS, **extra
) -> None:
    """A checkpoint as Bark's published ones are: ``model_args``, ``model`` (every key with the
    ``_orig_mod.`` prefix of a compiled model), ``best_val_loss`` a numpy float64, pickled by
    ``torch.save`` at protocol 2 with numpy 1.x's global names. ``extra`` adds entries."""
    checkpoint = {
        "model_args": dict(model_args),
        "model": {f"_orig_mod.{key}": value for key, value in state_dict.items()},
        "best_val_loss": np.float64(best_val_loss),
        **extra,
    }
    torch.save(checkpoint, path, pickle_module=NUMPY1_PICKLE, pickle_protocol=2)


def save_gpt_model(path: Path | io.BytesIO, model: torch.nn.Module) -> None:
    """One of Bark's ``GPT`` / ``FineGPT`` models as a Bark checkpoint (its config as ``model_args``)."""
    save_bark_checkpoint(path, dict(vars(model.config)), model.state_dict())


def padded_vocabulary(entries: list[str], size: int = TOKENIZER_VOCAB_SIZE) -> list[str]:
    """``entries`` padded to ``size`` with ``[unusedN]`` entries: BERT's basic tokenizer splits
    ``[`` and ``]`` off as punctuation, so no text ever tokenizes to them and the ids of the
    original entries (and the tokenization of any text) stay as they were."""
    taken = set(entries)
    padding = (f"[unused{i}]" for i in range(size * 2))
    return entries + [p for p in padding if p not in taken][: size - len(entries)]


def tiny_vocabulary() -> list[str]:
    """The tiny tokenizer's vocabulary (161 entries), one entry per line."""
    return (Path(tiny_tokenizer_dir()) / "vocab.txt").read_text(encoding="utf-8").splitlines()


def write_hub_snapshot(hf_hub_dir: Path, repo: str, files: dict[str, bytes]) -> Path:
    """``files`` (name -> bytes) as repository ``repo`` in huggingface_hub's cache layout:
    ``models--<owner>--<name>/blobs/<sha>`` holding the bytes, ``snapshots/<40 hex>/<file>``
    relative links to them, ``refs/main`` naming the snapshot. Returns the snapshot directory."""
    repo_dir = Path(hf_hub_dir) / ("models--" + repo.replace("/", "--"))
    (repo_dir / "blobs").mkdir(parents=True)
    snapshot = repo_dir / "snapshots" / SNAPSHOT_COMMIT
    snapshot.mkdir(parents=True)
    for name, data in files.items():
        blob = hashlib.sha256(data).hexdigest()
        (repo_dir / "blobs" / blob).write_bytes(data)
        (snapshot / name).symlink_to(Path("..", "..", "blobs", blob))
    (repo_dir / "refs").mkdir()
    (repo_dir / "refs" / "main").write_text(SNAPSHOT_COMMIT, encoding="utf-8")
    return snapshot


def write_tokenizer_cache(hf_hub_dir: Path, vocab_lines: list[str]) -> Path:
    """The tokenizer's repository in huggingface_hub's cache layout (:func:`write_hub_snapshot`).
    Returns the snapshot's ``vocab.txt``."""
    files = {
        "vocab.txt": "".join(line + "\n" for line in vocab_lines).encode("utf-8"),
        "tokenizer_config.json": (Path(tiny_tokenizer_dir()) / "tokenizer_config.json").read_bytes(),
    }
    return write_hub_snapshot(hf_hub_dir, TOKENIZER_REPO, files) / "vocab.txt"


def write_bark_cache(
    locations: CacheLocations, models: dict, name: str = "bark", *, replacements: dict | None = None
) -> None:
    """``models`` (a model set's dict in ``bark.generation.models`` layout: ``text`` holding
    ``model`` and ``tokenizer``, ``coarse``, ``fine``, ``codec``) saved where and how the real
    ones are, under the file names of real model set ``name`` (``bark``: ``text_2.pt``...,
    ``bark-small``: ``text.pt``...): numpy-1 checkpoints in Bark's cache, EnCodec's state dict
    in torch hub's, the tiny tokenizer padded to bert-base-multilingual-cased's 119,547 entries
    in the Hugging Face cache. ``replacements`` (stage -> (model_args, state_dict)) writes those
    stages' checkpoints from the given contents instead. The directories must not hold a
    cache already."""
    locations.bark_dir.mkdir(parents=True)
    for stage, file_name in CHECKPOINTS[name].items():
        if replacements is not None and stage in replacements:
            model_args, state_dict = replacements[stage]
            save_bark_checkpoint(locations.bark_dir / file_name, model_args, state_dict)
        else:
            save_gpt_model(
                locations.bark_dir / file_name, models["text"]["model"] if stage == "text" else models[stage]
            )
    write_tokenizer_cache(locations.hf_hub_dir, padded_vocabulary(tiny_vocabulary()))
    (locations.torch_hub_dir / "checkpoints").mkdir(parents=True)
    torch.save(models["codec"].state_dict(), locations.encodec_path)


def locations_under(root: Path) -> CacheLocations:
    """The caches where ``XDG_CACHE_HOME=root``, ``HF_HOME=root/huggingface`` and
    ``TORCH_HOME=root/torch`` put them (:func:`environment_for`)."""
    root = Path(root)
    return CacheLocations(
        bark_dir=root / "suno" / "bark_v0",
        hf_hub_dir=root / "huggingface" / "hub",
        torch_hub_dir=root / "torch" / "hub",
    )


def environment_for(root: Path) -> dict[str, str]:
    """The variables that point Bark, huggingface_hub and torch hub at the caches under ``root``
    (:func:`locations_under`). A caller also removes ``HF_HUB_CACHE`` and
    ``HUGGINGFACE_HUB_CACHE``, which take precedence over ``HF_HOME``."""
    root = Path(root)
    return {"XDG_CACHE_HOME": str(root), "HF_HOME": str(root / "huggingface"), "TORCH_HOME": str(root / "torch")}
