"""Caches the suite keeps apart per pytest-xdist worker."""

from __future__ import annotations

import os
import sys
from pathlib import Path

from bark_ablation.core.cache_dir import cache_dir


def separate_numba_caches() -> None:
    """Give each pytest-xdist worker its own numba cache directory, kept between runs.

    librosa compiles its feature kernels with numba when it is imported and caches them. Two
    workers compiling the same kernel at once write the same cache index; on a fresh environment
    that race crashed a worker with a segmentation fault inside ``librosa.util.localmin``
    (measured in CI, 2 workers), so each worker gets a directory of its own. Compiling costs
    several times what loading the compiled kernels does (measured:
    docs/measurements.md#numba-cache-compile-time), so the directories live in the project's cache (``<cache>/numba/<worker>``,
    :func:`bark_ablation.core.cache_dir.cache_dir`; inside a ``NUMBA_CACHE_DIR`` the user set, when
    there is one), not in the checkout: cleaning or re-cloning the checkout keeps them. numba
    files its entries under the path of librosa's sources, so an environment at another path (a
    new virtual environment) compiles once for itself, and a changed librosa recompiles. Must
    run before numba is imported, or numba is told directly.
    """
    worker = os.environ.get("PYTEST_XDIST_WORKER")
    if not worker:
        return
    base = Path(os.environ.get("NUMBA_CACHE_DIR") or cache_dir() / "numba")
    directory = base if base.name == worker else base / worker  # a nested session: already this worker's
    directory.mkdir(parents=True, exist_ok=True)
    os.environ["NUMBA_CACHE_DIR"] = str(directory)
    if "numba" in sys.modules:
        sys.modules["numba"].config.CACHE_DIR = str(directory)
