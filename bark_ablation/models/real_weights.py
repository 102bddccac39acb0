"""Real model sets (``bark``, ``bark-small``) from the local caches, fetching what is missing
only when allowed.

The layers: :mod:`bark_ablation.models.cached_weights` reads and checks cached files and never
downloads; :mod:`bark_ablation.models.weight_downloads` fetches and proves files, reading them
back with the cache reader; this module puts the two together for the loaders above it.
"""

from __future__ import annotations

from typing import Any

from bark_ablation.models.cached_weights import (
    CacheLocations,
    check_model_set_name,
    load_cached_files,
    missing_files,
)
from bark_ablation.models.weight_downloads import download_missing


def load_cached_models(
    name: str, device: str, *, locations: CacheLocations | None = None, allow_download: bool = False
) -> tuple[dict, dict[str, Any]]:
    """Load model set ``name`` (``bark`` or ``bark-small``) in ``bark.generation.models`` layout.

    Returns ``(models, provenance)``. Raises :class:`~bark_ablation.core.errors.MissingWeightsError`
    listing every missing file unless ``allow_download`` is true, in which case they are fetched
    first (each proven loadable before it is left in the cache; the Hub is ``$HF_ENDPOINT``,
    EnCodec's URL ``$BARK_ABLATION_ENCODEC_URL``), and
    :class:`~bark_ablation.core.errors.CacheFileError` naming the first cached file that cannot be
    used.
    """
    check_model_set_name(name)
    locations = locations or CacheLocations.from_environment()
    if allow_download and missing_files(name, locations):
        download_missing(name, locations)
    return load_cached_files(name, device, locations)
