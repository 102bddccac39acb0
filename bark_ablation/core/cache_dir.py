"""The project's own cache directory, for work worth keeping between runs on one machine.

``$BARK_ABLATION_CACHE`` when set, else ``$XDG_CACHE_HOME/bark-ablation`` (``~/.cache`` when
``XDG_CACHE_HOME`` is unset). Release overlays live under ``overlays/``
(:mod:`bark_ablation.releases.overlays`); compiled librosa kernels of the test sessions under
``numba/`` (:mod:`bark_ablation.pytest_plugin`). Model weights are not here: they stay in the
caches their own loaders read (Bark's, Hugging Face's, torch hub's).
"""

from __future__ import annotations

import os
from pathlib import Path

CACHE_ENV = "BARK_ABLATION_CACHE"


def cache_dir() -> Path:
    """``$BARK_ABLATION_CACHE``, else ``$XDG_CACHE_HOME/bark-ablation``, read now."""
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV])
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "bark-ablation"
