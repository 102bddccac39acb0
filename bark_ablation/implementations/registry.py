"""Model sets by name: ``tiny`` (default, built in), ``bark`` and ``bark-small`` (real weights
from local caches). Built sets are cached per (implementation, name, device) in the process."""

from __future__ import annotations

from functools import lru_cache

from bark_ablation.device import resolve_device
from bark_ablation.implementation import (
    ModelSet,
    default_implementation,
    get_implementation,
)

DEFAULT_MODEL_SET = "tiny"


def get_model_set(name: str = DEFAULT_MODEL_SET, device: str | None = "cpu", *,
                  implementation: str | None = None,
                  allow_download: bool = False) -> ModelSet:
    """The model set ``name`` on ``device`` (``cpu``, ``cuda``, ``cuda:N`` or ``auto``).

    Raises :class:`~bark_ablation.errors.MissingWeightsError` listing every missing file when a
    real set is not cached and ``allow_download`` is false.
    """
    return _cached_model_set(implementation or default_implementation(), name, resolve_device(device),
                             allow_download)


@lru_cache(maxsize=8)
def _cached_model_set(implementation: str, name: str, device: str, allow_download: bool) -> ModelSet:
    return get_implementation(implementation).load_model_set(name, device, allow_download=allow_download)
