"""Stand-in releases for the release tests: overlays put into a temporary cache, so nothing
reaches the package index."""

from __future__ import annotations

import json
from pathlib import Path

from bark_ablation.releases import overlays
from bark_ablation.releases.lines import RELEASE_LINES

BROKEN_RELEASE = "4.40.0"
"""A stand-in overlay of this version that raises ImportError on import."""


def write_broken_release(cache: Path) -> Path:
    """Put into ``cache`` a complete overlay of :data:`BROKEN_RELEASE` whose ``transformers``
    refuses to import, as transformers releases that pin ``numpy<2`` do; return ``cache``."""
    path = overlays.overlay_dir(RELEASE_LINES["transformers"], BROKEN_RELEASE, cache)
    (path / "transformers").mkdir(parents=True)
    (path / "transformers" / "__init__.py").write_text(
        'raise ImportError("numpy.core.multiarray failed to import: this release needs numpy<2")\n'
    )
    (path / overlays.MANIFEST).write_text(
        json.dumps({"distribution": "transformers", "version": BROKEN_RELEASE, "holds": [], "shared": []})
    )
    return cache
