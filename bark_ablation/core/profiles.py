"""Generation profiles: named sets of generation parameters beside Bark's defaults.

Bark's defaults (no top-k, no top-p, temperature 0.7, KV cache on) leave whole paths of its
generation code unexecuted: the top-k and top-p filters, generation without the KV cache, the
early-stop decision and the fine stage's loop over overlapping 1024-frame windows. Each profile
turns one of those paths on, and the regression matrix and golden data cover every profile.

A profile is a set of changes to a base :class:`~bark_ablation.core.params.GenerationParams` (the
session's or the command line's), so ``--max-duration`` and the like still apply where a profile
does not set them. Each filter value must change the tiny set's tokens, because a filter that
never removes a sampled token would test nothing; the tiny set's distributions are sharp, so only
a tight filter does (measured: docs/measurements.md#profile-filter-token-changes).

Two profiles need more than parameters:

* ``early-stop``: Bark stops the semantic stage once end-of-sequence is sampled or its
  probability reaches ``min_eos_p`` (0.2). The tiny set's end-of-sequence logit never gets there,
  so the profile says it needs early stops (``needs_early_stop``) and on the tiny set runs the
  set's variant with an end-of-sequence head that reaches it in a known share of runs (the model
  set catalogue names it: :func:`bark_ablation.models.catalogue.model_set_for`). On real
  weights it runs on the session's model set: real Bark stops by itself.
* ``long``: a cap of 20 s. Bark's semantic stage stops after 768 tokens (15.4 s at 49.9 tokens
  per second) whatever the cap, which gives 1,154 coarse frames: the coarse stage runs about 39
  sliding windows of 60 interleaved tokens and the fine stage at least two 1024-frame windows
  (three with fine history: ``en_speaker_0`` gives 405 frames of it). It runs two cells, ``scf``
  (fine history, three windows) and ``---`` (none, two windows), since each costs seconds,
  mostly decoding (measured: docs/measurements.md#long-profile-time).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from bark_ablation.core.errors import ParamsError
from bark_ablation.core.params import GenerationParams

DEFAULT_PROFILE = "default"
ALL_CELLS = ("scf", "sc-", "s-f", "s--", "-cf", "-c-", "--f", "---")


@dataclass(frozen=True)
class Profile:
    """A named generation profile.

    Attributes:
        name: the profile's name, as given to ``--profile``.
        exercises: what part of Bark's generation code it runs, in a few words.
        changes: :class:`GenerationParams` fields it sets, applied over a base.
        cells: the conditioning cells the regression matrix runs under it.
        needs_early_stop: the profile tests the semantic stage's early stop, so it runs a model
            set whose semantic stage can stop early (the catalogue's ``early_stop_variant``).
    """

    name: str
    exercises: str
    changes: Mapping[str, Any] = field(default_factory=dict)
    cells: tuple[str, ...] = ALL_CELLS
    needs_early_stop: bool = False

    def __post_init__(self) -> None:
        object.__setattr__(self, "changes", MappingProxyType(dict(self.changes)))
        GenerationParams().replace(**self.changes)  # a profile that cannot be built fails at import

    def params(self, base: GenerationParams | None = None) -> GenerationParams:
        """``base`` (Bark's defaults when ``None``) with this profile's changes."""
        return (base or GenerationParams()).replace(**self.changes)

    def check(self, params: GenerationParams) -> None:
        """Raise :class:`ParamsError` naming the first field where ``params`` do not hold this
        profile's setting (parameters labelled with a profile they do not follow)."""
        for name, value in self.changes.items():
            if getattr(params, name) != value:
                raise ParamsError(
                    name,
                    f"profile {self.name!r} sets {name}={value!r}; the parameters "
                    f"have {getattr(params, name)!r} (leave it out, or choose another profile)",
                )

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready description, for summaries and golden manifests."""
        return {"name": self.name, "exercises": self.exercises, "changes": dict(self.changes)}


PROFILES: dict[str, Profile] = {
    profile.name: profile
    for profile in (
        Profile(DEFAULT_PROFILE, "Bark's default sampling: temperature 0.7 (fine 0.5), no top-k, no top-p, KV cache"),
        Profile("top-k", "top-k filtering in the semantic and coarse stages (k = 3)", {"top_k": 3}),
        Profile("top-p", "top-p (nucleus) filtering in the semantic and coarse stages (p = 0.7)", {"top_p": 0.7}),
        Profile(
            "low-temperature",
            "sharper sampling: temperatures 0.3 / 0.3 / 0.2",
            {"semantic_temp": 0.3, "coarse_temp": 0.3, "fine_temp": 0.2},
        ),
        Profile(
            "no-kv-cache", "generation without the KV cache (the whole context every step)", {"use_kv_caching": False}
        ),
        Profile(
            "early-stop",
            "the semantic stage's end-of-sequence stop under min_eos_p 0.2 (3 s cap)",
            {"max_duration_s": 3.0},
            needs_early_stop=True,
        ),
        Profile(
            "long",
            "long clips: 768 semantic tokens (Bark's limit, 15.4 s), many coarse windows, two or more fine windows",
            {"max_duration_s": 20.0},
            cells=("scf", "---"),
        ),
    )
}


def get_profile(name: str) -> Profile:
    """The profile called ``name``; :class:`ParamsError` naming the field and the known names."""
    try:
        return PROFILES[name]
    except (KeyError, TypeError):
        raise ParamsError("profile", f"unknown profile {name!r} (known: {', '.join(PROFILES)})") from None
