"""Generation parameters, explicit and recorded with every result.

Defaults are Bark 0.1.5's own defaults, except ``max_duration_s`` (Bark: unlimited; a model
that never emits end-of-sequence would run all 768 semantic steps) and ``use_kv_caching``
(Bark's functions default to off; its ``api`` turns it on).
"""

from __future__ import annotations

import dataclasses
import math
import os
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from bark_ablation.core.errors import ParamsError

MAX_SEED = 2**32 - 1


@dataclass(frozen=True)
class GenerationParams:
    """Everything besides text, prompt, conditioning and seed that decides the tokens.

    Attributes:
        semantic_temp: sampling temperature of the semantic stage (> 0).
        coarse_temp: sampling temperature of the coarse stage (> 0).
        fine_temp: sampling temperature of the fine stage (> 0), or ``None`` for argmax.
        top_k: keep the k most likely tokens in the semantic and coarse stages, or ``None``.
        top_p: nucleus sampling mass in (0, 1] for the semantic and coarse stages, or ``None``.
        min_eos_p: the semantic stage stops once end-of-sequence has at least this
            probability, in (0, 1]; ``None`` stops only when it is sampled.
        max_duration_s: cap on the semantic tokens generated, in seconds of audio
            (49.9 tokens per second); ``None`` lets Bark run up to 768 tokens (15.4 s).
        allow_early_stop: whether the semantic stage may stop at end-of-sequence.
        use_kv_caching: reuse attention keys/values between steps (same tokens, faster).
        max_coarse_history: coarse history window in interleaved coarse tokens, [60, 630].
        sliding_window_len: coarse tokens generated per window; with ``max_coarse_history``
            at most 768.
    """

    semantic_temp: float = 0.7
    coarse_temp: float = 0.7
    fine_temp: float | None = 0.5
    top_k: int | None = None
    top_p: float | None = None
    min_eos_p: float | None = 0.2
    max_duration_s: float | None = 3.0
    allow_early_stop: bool = True
    use_kv_caching: bool = True
    max_coarse_history: int = 630
    sliding_window_len: int = 60

    def __post_init__(self) -> None:
        _positive_float("semantic_temp", self.semantic_temp)
        _positive_float("coarse_temp", self.coarse_temp)
        if self.fine_temp is not None:
            _positive_float("fine_temp", self.fine_temp)
        if self.top_k is not None and (not _is_int(self.top_k) or self.top_k < 1):
            raise ParamsError("top_k", f"must be a positive integer or None, got {self.top_k!r}")
        if self.top_p is not None:
            _fraction("top_p", self.top_p)
        if self.min_eos_p is not None:
            _fraction("min_eos_p", self.min_eos_p)
        if self.max_duration_s is not None:
            _positive_float("max_duration_s", self.max_duration_s)
        for name in ("allow_early_stop", "use_kv_caching"):
            if not isinstance(getattr(self, name), bool):
                raise ParamsError(name, f"must be True or False, got {getattr(self, name)!r}")
        if not _is_int(self.max_coarse_history) or not 60 <= self.max_coarse_history <= 630:
            raise ParamsError("max_coarse_history", f"must be an integer in [60, 630], got {self.max_coarse_history!r}")
        if not _is_int(self.sliding_window_len) or self.sliding_window_len < 1:
            raise ParamsError("sliding_window_len", f"must be a positive integer, got {self.sliding_window_len!r}")
        if self.max_coarse_history + self.sliding_window_len > 768:
            raise ParamsError(
                "sliding_window_len",
                f"max_coarse_history + sliding_window_len must be <= 768 (Bark's coarse context "
                f"is 1024 minus 256 semantic tokens), got {self.max_coarse_history} + "
                f"{self.sliding_window_len}",
            )

    def to_dict(self) -> dict[str, Any]:
        """Plain dict, for JSON summaries and manifests."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> GenerationParams:
        """Inverse of :meth:`to_dict`; unknown keys are an error."""
        known = {field.name for field in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ParamsError(unknown[0], f"unknown generation parameter (known: {', '.join(sorted(known))})")
        return cls(**values)

    def bark_kwargs(self, stage: str) -> dict[str, Any]:
        """The keyword arguments of Bark's generation function for ``stage`` (``semantic``:
        ``generate_text_semantic``, ``coarse``: ``generate_coarse``, ``fine``: ``generate_fine``)
        that these parameters set, under Bark's own names; one mapping for every adapter that
        calls Bark's functions or their batched copies."""
        if stage == "semantic":
            return {
                "temp": self.semantic_temp,
                "top_k": self.top_k,
                "top_p": self.top_p,
                "min_eos_p": self.min_eos_p,
                "max_gen_duration_s": self.max_duration_s,
                "allow_early_stop": self.allow_early_stop,
                "use_kv_caching": self.use_kv_caching,
            }
        if stage == "coarse":
            return {
                "temp": self.coarse_temp,
                "top_k": self.top_k,
                "top_p": self.top_p,
                "max_coarse_history": self.max_coarse_history,
                "sliding_window_len": self.sliding_window_len,
                "use_kv_caching": self.use_kv_caching,
            }
        if stage == "fine":
            return {"temp": self.fine_temp}
        raise ValueError(f"stage must be semantic, coarse or fine, got {stage!r}")

    def replace(self, **changes: Any) -> GenerationParams:
        """A validated copy with some fields changed."""
        return dataclasses.replace(self, **changes)


def validate_seed(seed: object) -> int:
    """Return ``seed`` if it is an integer in [0, 2**32 - 1]; raise ParamsError otherwise."""
    if not _is_int(seed) or not 0 <= seed <= MAX_SEED:
        raise ParamsError("seed", f"must be an integer in [0, {MAX_SEED}], got {seed!r}")
    return int(seed)


def validate_seeds(seeds: Iterable[object]) -> tuple[int, ...]:
    """Return ``seeds`` as a tuple if it names at least one seed, none twice, each valid
    (:func:`validate_seed`); raise ParamsError naming ``seeds`` otherwise."""
    values = tuple(validate_seed(seed) for seed in seeds)
    if not values:
        raise ParamsError("seeds", "must name at least one seed")
    repeated = sorted({seed for seed in values if values.count(seed) > 1})
    if repeated:
        raise ParamsError("seeds", f"must not repeat a seed, got {repeated[0]} more than once")
    return values


def validate_batch_size(batch_size: object, field: str = "batch_size") -> int | None:
    """Return ``batch_size`` if it is ``None`` (the default: what memory allows) or a positive
    integer (rows per stage call); raise ParamsError naming ``field`` otherwise."""
    if batch_size is not None and (not _is_int(batch_size) or batch_size < 1):
        raise ParamsError(field, f"must be a positive integer, got {batch_size!r}")
    return batch_size


def validate_text(text: object) -> str:
    """Return ``text`` if it is a string with at least one non-whitespace character."""
    if not isinstance(text, str):
        raise ParamsError("text", f"must be a string, got {type(text).__name__}")
    if not text.strip():
        raise ParamsError("text", "must contain at least one non-whitespace character")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as error:
        raise ParamsError(
            "text",
            f"must be valid Unicode; character {error.start} is a lone surrogate "
            f"{text[error.start]!r} (undecodable input bytes?)",
        ) from None
    return text


def text_from_command_line(argument: str) -> str:
    """A command-line argument as the user typed it.

    Under a locale whose encoding is not UTF-8 (``LC_ALL=C`` without locale coercion, say), Python
    decodes ``argv`` bytes it cannot read to lone surrogates (PEP 383). Shells and terminals
    pass UTF-8 nearly everywhere, so such an argument is decoded again from its original bytes
    as UTF-8; bytes that are not UTF-8 either are refused by :func:`validate_text`.
    """
    try:
        return os.fsencode(argument).decode("utf-8")
    except UnicodeDecodeError:
        return argument


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _positive_float(name: str, value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
        raise ParamsError(name, f"must be a finite number > 0, got {value!r}")


def _fraction(name: str, value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value <= 1:
        raise ParamsError(name, f"must be a number in (0, 1], got {value!r}")
