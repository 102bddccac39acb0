"""The model sets by name: what each one is, and the help text of the model-set options (the CLI's
``run --model-set`` and ``series``/``bisect --model-set``, the pytest plugin's ``--bark-model-set``).

Pure data, no torch: the pytest plugin writes its option help from it when it loads, in every
pytest session of an environment where bark-ablation is installed. Building a set is
:func:`bark_ablation.implementations.registry.get_model_set`.
"""

from __future__ import annotations

DEFAULT_MODEL_SET = "tiny"
AUTO_MODEL_SET = "auto"
"""Model-set name that picks real weights when they are cached, else the tiny set (:func:`bark_ablation.implementations.registry.choose_model_set`)."""
AUTO_REAL_SET = "bark"

MODEL_SET_KINDS = {
    "tiny": "built in, 2 layers, random weights: the suite's and CI's set",
    "tiny-eos": "tiny with an end-of-sequence head that stops the semantic stage early",
    "bark": "Suno's real weights, read from the local caches",
    "bark-small": "Suno's small real weights, read from the local caches",
    "bark-random": "bark's full size (24 layers), random weights: timing without downloads",
    "bark-small-random": "bark-small's size (12 layers), random weights",
}
"""Model set name -> what it is. Every implementation offers these names
(``BarkImplementation.model_set_names``; tests/test_model_sets.py holds every implementation to
it); the CLI's ``--model-set`` help and the pytest plugin's ``--bark-model-set`` help are written
from it (:func:`model_set_help`), so the two never disagree. A new model set gets its line here."""


def model_set_help(default: str, *, auto: bool = False) -> str:
    """Help text of a ``--model-set`` option whose default is ``default``: every name of
    :data:`MODEL_SET_KINDS` with what it is (and ``auto`` first where ``auto`` is accepted)."""
    choices = [(name, kind) for name, kind in MODEL_SET_KINDS.items()]
    if auto:
        choices.insert(
            0, (AUTO_MODEL_SET, f"{AUTO_REAL_SET} where its real weights are cached, else {DEFAULT_MODEL_SET}")
        )
    return "; ".join(f"{name} ({kind}{', the default' if name == default else ''})" for name, kind in choices)
