"""bark-ablation: which of Bark's three token stages carries speaker identity?

The library runs Bark's real generation code under every per-stage conditioning of a voice
prompt (the 2^3 cells of :data:`ALL_CONDITIONINGS`), with explicit per-stage seeds, on a
deterministic tiny model set by default or on real weights already in the local caches.

    >>> from bark_ablation import run_matrix
    >>> run = run_matrix("Hello there.", "en_speaker_0", seeds=[0, 1])   # doctest: +SKIP
    >>> run.get("s--", 0).semantic.shape                                  # doctest: +SKIP
"""

import importlib

_EXPORTS = {
    "ALL_CONDITIONINGS": "bark_ablation.core.conditioning",
    "Conditioning": "bark_ablation.core.conditioning",
    "Stage": "bark_ablation.core.conditioning",
    "BarkAblationError": "bark_ablation.core.errors",
    "MissingWeightsError": "bark_ablation.core.errors",
    "ModelSetError": "bark_ablation.core.errors",
    "OutputError": "bark_ablation.core.errors",
    "ParamsError": "bark_ablation.core.errors",
    "PromptError": "bark_ablation.core.errors",
    "GenerationParams": "bark_ablation.core.params",
    "Generation": "bark_ablation.generation.pipeline",
    "MatrixRun": "bark_ablation.generation.pipeline",
    "generate": "bark_ablation.generation.pipeline",
    "run_matrix": "bark_ablation.generation.pipeline",
    "VoicePrompt": "bark_ablation.core.prompts",
    "load_prompt": "bark_ablation.core.prompts",
    "shipped_prompt_names": "bark_ablation.core.prompts",
    "__version__": "bark_ablation.core.version",
}
"""Public name -> the module that defines it, imported on first use (PEP 562). The package's
pytest plugin loads in every pytest session of an environment where bark-ablation is installed
(its ``pytest11`` entry point), and importing it must not import torch there: a session that has
not enabled the plugin pays nothing for it."""

__all__ = sorted(name for name in _EXPORTS if name != "__version__")


def __getattr__(name: str):
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'bark_ablation' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_EXPORTS})
