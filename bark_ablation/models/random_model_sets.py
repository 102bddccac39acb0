"""Full-size model sets with random weights: Bark's and Bark-small's published architectures,
so that stage timings and memory on a GPU are real without the weights.

Architectures (GPT blocks of the text, coarse and fine models; all three share them):

=====================  ========  =======  ======  ==============================================
model set              layers    heads    width   published as
=====================  ========  =======  ======  ==============================================
``bark-random``        24        16       1024    suno/bark: "80/300 M" parameters per model
                                                  (large); 24 x 1024 layers in the checkpoints
``bark-small-random``  12        12       768     suno/bark-small (80 M per model); the defaults
                                                  of transformers' BarkSemanticConfig
=====================  ========  =======  ======  ==============================================

Vocabularies, block size (1024) and EnCodec 24 kHz are the same as the real models'; the
weights come from the tiny set's seeded numpy initialiser (deterministic; values meaningless),
with random codebooks so the decoder does real work. Use them for speed and memory, never for
anything about speech.
"""

from __future__ import annotations

import dataclasses

import torch

from bark_ablation.models.catalogue import MODEL_SETS, names_of_kind
from bark_ablation.models.tiny_model_set import (
    TINY_ARCHITECTURE,
    TinyArchitecture,
    build_tiny_models,
)

RANDOM_ARCHITECTURES: dict[str, TinyArchitecture] = {
    name: dataclasses.replace(TINY_ARCHITECTURE, **dataclasses.asdict(MODEL_SETS[name].architecture))
    for name in names_of_kind("random")
}
"""The catalogue's random sets: the tiny set's vocabularies at each set's full size."""


def build_random_models(name: str, device: str | torch.device = "cpu") -> dict:
    """The ``bark.generation.models`` layout of a full-size random set (several GB in float32)."""
    return build_tiny_models(device, architecture=RANDOM_ARCHITECTURES[name])


def parameter_count(architecture: TinyArchitecture, vocab_in: int, vocab_out: int) -> int:
    """Parameters of one Bark GPT of ``architecture`` (no biases): embeddings, blocks, head.

    Per block: attention 4 d^2, MLP 8 d^2, two LayerNorm weights 2 d. Used to check the
    architecture against the published sizes without building anything.
    """
    d = architecture.n_embd
    return vocab_in * d + architecture.block_size * d + architecture.n_layer * (12 * d * d + 2 * d) + d + d * vocab_out


def block_parameter_count(architecture: TinyArchitecture) -> int:
    """Parameters in the transformer blocks alone (what the published "80/300 M" counts)."""
    d = architecture.n_embd
    return architecture.n_layer * (12 * d * d + 2 * d)
