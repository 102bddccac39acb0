"""The regression matrix: which prompts, seeds, text and durations the golden and regression tests
run, per generation profile. Pure data (no torch): the plugin, the tests, the golden calibration
script and a fork's CI read the same values."""

from __future__ import annotations

REGRESSION_PROMPTS = ("en_speaker_6", "en_speaker_0", "en_speaker_3")
"""Prompts on both sides of Bark's history windows: semantic 158 / 270 / 466 tokens (window
256; coarse pairs up to 209), coarse/fine 237 / 405 / 700 frames (coarse window 315 frames,
fine window 512)."""
REGRESSION_SEEDS = (0, 1)
REGRESSION_TEXT = "When I was a young boy, my father took me into the city."
REGRESSION_MAX_DURATION_S = 1.0
"""Generated audio per case in the regression matrix (50 semantic tokens, 75 frames); a profile
may set its own cap (``early-stop`` 3 s, ``long`` 20 s)."""
PROFILE_PROMPT = "en_speaker_0"
PROFILE_SEED = 0
"""Every profile besides ``default`` runs its cells for this one prompt and seed (the default
profile runs every regression prompt and seed)."""

SLOW_PROFILES = ("long",)
"""Profiles whose regression cases are marked ``bark_slow`` (run with ``--bark-run-slow``; CI's slow lane
does): the long profile generates two 15.4 s clips, many times a default case's work, most of it
decoding (measured: docs/measurements.md#long-profile-time)."""


def regression_cases(profile_name: str) -> list[tuple[str, int, str]]:
    """``(prompt, seed, cell)`` of every regression case of a profile
    (:mod:`bark_ablation.core.profiles`): for ``default`` 3 prompts x 2 seeds x 8 cells, for the others
    :data:`PROFILE_PROMPT` and :data:`PROFILE_SEED` with the profile's cells."""
    from bark_ablation.core.profiles import DEFAULT_PROFILE, get_profile

    profile = get_profile(profile_name)
    if profile.name == DEFAULT_PROFILE:
        return [
            (prompt, seed, cell) for cell in profile.cells for prompt in REGRESSION_PROMPTS for seed in REGRESSION_SEEDS
        ]
    return [(PROFILE_PROMPT, PROFILE_SEED, cell) for cell in profile.cells]
