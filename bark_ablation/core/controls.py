"""Control histories: what a stage receives under a control condition instead of the prompt.

* random (``r``): the prompt's lengths, tokens uniform over each vocabulary (semantic
  [0, 10 000), codes [0, 1024)); fine rows 0-1 equal the coarse codes, as in real prompts.
* shuffled (``x``): the prompt's own tokens, frames permuted in time by one permutation for
  every codebook (the token statistics of the speaker stay, the sequence goes).
* other speaker (``o``): another voice prompt, whole.

A stage's control history replaces every field that stage reads (the coarse stage reads
``semantic_prompt`` and ``coarse_prompt``, so both are controlled). Random and shuffled
histories are drawn from ``numpy.random.default_rng([CONTROL_SEED, seed, stage])``: they differ
between seeds and stages, and a rerun draws the same ones.
"""

from __future__ import annotations

import numpy as np

from bark_ablation.core.conditioning import STAGES, HistorySource, Stage
from bark_ablation.core.errors import ParamsError
from bark_ablation.core.prompts import CODEBOOK_SIZE, SEMANTIC_VOCAB_SIZE, VoicePrompt

CONTROL_SEED = 7_001
"""First entropy word of every control RNG, so control draws never collide with stage seeds."""


def random_prompt(prompt: VoicePrompt, rng: np.random.Generator, name: str) -> VoicePrompt:
    """Uniform random tokens with ``prompt``'s lengths (a valid prompt Bark accepts)."""
    coarse = rng.integers(0, CODEBOOK_SIZE, size=prompt.coarse.shape)
    fine = np.vstack(
        [coarse, rng.integers(0, CODEBOOK_SIZE, size=(prompt.fine.shape[0] - coarse.shape[0], prompt.fine.shape[1]))]
    )
    return prompt.with_arrays(
        name, semantic=rng.integers(0, SEMANTIC_VOCAB_SIZE, size=prompt.semantic.shape), coarse=coarse, fine=fine
    )


def shuffled_prompt(prompt: VoicePrompt, rng: np.random.Generator, name: str) -> VoicePrompt:
    """``prompt``'s tokens with semantic tokens and coarse/fine frames permuted in time."""
    frames = rng.permutation(prompt.n_frames)
    return prompt.with_arrays(
        name,
        semantic=prompt.semantic[rng.permutation(prompt.n_semantic)],
        coarse=prompt.coarse[:, frames],
        fine=prompt.fine[:, frames],
    )


def stage_history(
    source: HistorySource, stage: Stage, prompt: VoicePrompt, seed: int, other_prompt: VoicePrompt | None = None
) -> VoicePrompt | None:
    """The history ``stage`` receives under ``source`` (``None``: no history)."""
    if source is HistorySource.NONE:
        return None
    if source is HistorySource.PROMPT:
        return prompt
    if source is HistorySource.OTHER_SPEAKER:
        if other_prompt is None:
            raise ParamsError(
                "other_prompt",
                f"the {stage.value} stage's history is another speaker's ('o'): name that speaker's prompt",
            )
        return other_prompt
    rng = np.random.default_rng([CONTROL_SEED, seed, STAGES.index(stage)])
    name = f"{prompt.name}~{source.name.lower()}-{stage.value}-seed{seed}"
    if source is HistorySource.RANDOM:
        return random_prompt(prompt, rng, name)
    return shuffled_prompt(prompt, rng, name)
