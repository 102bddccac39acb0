"""The design planted drifts are scored on (tests/longform/conftest.py builds its run)."""

from __future__ import annotations

from bark_ablation.core.params import GenerationParams

SPEAKERS = tuple(f"en_speaker_{i}" for i in range(5))
VOICE_NAMES = ("bass", "tenor", "breathy", "soprano", "child")
"""Five of the synthetic voices that differ most (as in tests/study/test_planting.py)."""
PASSAGE = "One sentence here. Another one follows. A third comes now. And the last one."
PLANT_PARAMS = GenerationParams(max_duration_s=0.4)
