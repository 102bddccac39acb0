"""bark-ablation: which of Bark's three token stages carries speaker identity?

The library runs Bark's real generation code under every per-stage conditioning of a voice
prompt (the 2^3 cells of :data:`ALL_CONDITIONINGS`), with explicit per-stage seeds, on a
deterministic tiny model set by default or on real weights already in the local caches.

    >>> from bark_ablation import run_matrix
    >>> run = run_matrix("Hello there.", "en_speaker_0", seeds=[0, 1])   # doctest: +SKIP
    >>> run.get("s--", 0).semantic.shape                                  # doctest: +SKIP
"""

from bark_ablation.core.conditioning import ALL_CONDITIONINGS, Conditioning, Stage
from bark_ablation.core.errors import (BarkAblationError, MissingWeightsError, ModelSetError, OutputError,
                                  ParamsError, PromptError)
from bark_ablation.core.params import GenerationParams
from bark_ablation.generation.pipeline import Generation, MatrixRun, generate, run_matrix
from bark_ablation.core.prompts import VoicePrompt, load_prompt, shipped_prompt_names
from bark_ablation.core.version import __version__


__all__ = [
    "ALL_CONDITIONINGS", "BarkAblationError", "Conditioning", "Generation", "GenerationParams",
    "MatrixRun", "MissingWeightsError", "ModelSetError", "OutputError", "ParamsError",
    "PromptError", "Stage", "VoicePrompt", "generate", "load_prompt", "run_matrix",
    "shipped_prompt_names",
]
