"""Voice prompts (Bark's "history prompts"): loading and validation.

A voice prompt holds three token arrays:

* ``semantic_prompt``: shape (T_s,), semantic tokens in [0, 10_000), 49.9 tokens per second;
* ``coarse_prompt``: shape (2, T_c), EnCodec codes in [0, 1024), 75 frames per second;
* ``fine_prompt``: shape (8, T_c), EnCodec codes in [0, 1024), 75 frames per second.

:func:`load_prompt` accepts a shipped preset name (``en_speaker_0``, ``v2/en_speaker_0`` and the
ten ``speaker_N`` files that Bark ships but refuses by name), a path to an ``.npz`` file (read
with ``allow_pickle=False``: a prompt file never runs code) or a mapping. Every prompt is
validated against the rules Bark enforces with bare asserts, plus the consistency rules its
stages rely on, and a broken rule raises :class:`~bark_ablation.core.errors.PromptError` naming the
prompt, the field and the rule.
"""

from __future__ import annotations

import difflib
import hashlib
import os
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import numpy as np

from bark_ablation.core.errors import PromptError

SEMANTIC_VOCAB_SIZE = 10_000
"""Semantic tokens are in [0, SEMANTIC_VOCAB_SIZE)."""
CODEBOOK_SIZE = 1024
"""EnCodec codes are in [0, CODEBOOK_SIZE)."""
N_COARSE_CODEBOOKS = 2
N_FINE_CODEBOOKS = 8
SEMANTIC_RATE_HZ = 49.9
COARSE_RATE_HZ = 75
COARSE_PER_SEMANTIC = COARSE_RATE_HZ / SEMANTIC_RATE_HZ
"""Coarse frames per semantic token (1.503). Bark requires ``round(T_c / T_s, 1) == 1.5``."""

PROMPT_KEYS = ("semantic_prompt", "coarse_prompt", "fine_prompt")


@dataclass(frozen=True, eq=False)
class VoicePrompt:
    """A validated voice prompt. Arrays are int64 copies, read-only.

    Build it with :func:`load_prompt` or :meth:`from_arrays`, which validate; the constructor
    does not.
    """

    name: str
    semantic: np.ndarray
    coarse: np.ndarray
    fine: np.ndarray
    source: str = ""

    @classmethod
    def from_arrays(cls, name: str, arrays: Mapping[str, object], source: str = "") -> VoicePrompt:
        """Validate ``arrays`` (keys :data:`PROMPT_KEYS`) and build a prompt named ``name``."""
        semantic, coarse, fine = validate_prompt_arrays(name, arrays)
        return cls(name=name, semantic=semantic, coarse=coarse, fine=fine, source=source or name)

    def as_bark_dict(self) -> dict[str, np.ndarray]:
        """The prompt in the dict form Bark's generation functions accept."""
        return {
            "semantic_prompt": self.semantic,
            "coarse_prompt": self.coarse,
            "fine_prompt": self.fine,
        }

    @cached_property
    def fingerprint(self) -> str:
        """SHA-256 of the three arrays (shape, dtype and bytes): equal tokens, equal fingerprint."""
        digest = hashlib.sha256()
        for array in (self.semantic, self.coarse, self.fine):
            digest.update(repr((array.shape, array.dtype.str)).encode())
            digest.update(np.ascontiguousarray(array).tobytes())
        return digest.hexdigest()

    @property
    def n_semantic(self) -> int:
        """Semantic history length in tokens."""
        return int(self.semantic.shape[0])

    @property
    def n_frames(self) -> int:
        """Coarse/fine history length in frames (75 per second)."""
        return int(self.coarse.shape[1])

    @property
    def duration_s(self) -> float:
        """History duration in seconds, from the coarse frames."""
        return self.n_frames / COARSE_RATE_HZ

    def with_arrays(self, name: str, **arrays: np.ndarray) -> VoicePrompt:
        """A validated copy with some arrays replaced (keys ``semantic``, ``coarse``, ``fine``)."""
        merged = {
            "semantic_prompt": arrays.get("semantic", self.semantic),
            "coarse_prompt": arrays.get("coarse", self.coarse),
            "fine_prompt": arrays.get("fine", self.fine),
        }
        return VoicePrompt.from_arrays(name, merged, source=f"{self.source} (modified)")

    def __repr__(self) -> str:
        return f"VoicePrompt({self.name!r}, semantic={self.n_semantic} tokens, coarse/fine={self.n_frames} frames)"


def bark_prompt_dir() -> Path:
    """Directory of the presets shipped inside the installed ``bark`` package."""
    import bark  # imported lazily: bark's import pulls in torch

    return Path(bark.__file__).resolve().parent / "assets" / "prompts"


def shipped_prompt_names() -> list[str]:
    """Names of every preset shipped with Bark (v1 and ``v2/``), sorted."""
    root = bark_prompt_dir()
    return sorted(path.relative_to(root).with_suffix("").as_posix() for path in root.rglob("*.npz"))


def load_prompt(
    prompt: str | os.PathLike[str] | Mapping[str, object] | VoicePrompt, *, name: str | None = None
) -> VoicePrompt:
    """Load and validate a voice prompt.

    ``prompt`` is a :class:`VoicePrompt` (returned as is), a preset name (``"en_speaker_0"``,
    ``"v2/en_speaker_0"``, ``"speaker_3"``), a path to an ``.npz`` file, or a mapping with the
    keys ``semantic_prompt``, ``coarse_prompt`` and ``fine_prompt``. ``name`` overrides the
    name used in messages and reports.
    """
    if isinstance(prompt, VoicePrompt):
        return prompt
    if isinstance(prompt, Mapping):
        label = name or "<dict>"
        return VoicePrompt.from_arrays(label, prompt, source="dict")
    if isinstance(prompt, (str, os.PathLike)):
        text = os.fspath(prompt)
        path = Path(text)
        if text.endswith(".npz") or path.is_file():
            return _load_npz(path, name or path.stem, source=str(path))
        return _load_preset(text, name)
    raise PromptError(
        str(name or type(prompt).__name__),
        "prompt",
        f"must be a preset name, an .npz path or a mapping, got {type(prompt).__name__}",
    )


def _load_preset(preset: str, name: str | None) -> VoicePrompt:
    root = bark_prompt_dir()
    normalized = preset.strip().replace(os.sep, "/").removesuffix(".npz")
    path = root / f"{normalized}.npz"
    if not normalized or ".." in normalized.split("/") or not path.is_file():
        close = difflib.get_close_matches(normalized, shipped_prompt_names(), n=3)
        hint = f"; did you mean {', '.join(close)}?" if close else ""
        raise PromptError(
            preset,
            "name",
            f"not a preset shipped with Bark (see `bark-ablation prompts`) nor an existing .npz file{hint}",
        )
    return _load_npz(path, name or normalized, source=f"bark preset {normalized}")


def _load_npz(path: Path, name: str, source: str) -> VoicePrompt:
    try:
        with np.load(path, allow_pickle=False) as npz:
            arrays = {key: npz[key] for key in npz.files}
    except FileNotFoundError:
        raise PromptError(name, "path", f"file not found: {path}") from None
    except ValueError as error:  # pickled object arrays are refused
        raise PromptError(name, "path", f"{path}: not a plain .npz of arrays ({error})") from None
    except (OSError, zipfile.BadZipFile, EOFError) as error:
        raise PromptError(name, "path", f"{path}: not a readable .npz file ({error})") from None
    return VoicePrompt.from_arrays(name, arrays, source=source)


def validate_prompt_arrays(name: str, arrays: Mapping[str, object]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Check the three arrays against Bark's rules; return int64, read-only copies.

    Rules, each reported with the field that broke it:

    * every key of :data:`PROMPT_KEYS` is present and holds a non-empty integer array
      (``bool`` is not an integer type here);
    * ``semantic_prompt`` is 1-D with tokens in [0, 10_000);
    * ``coarse_prompt`` is 2-D with 2 rows, ``fine_prompt`` 2-D with 8 rows, codes in [0, 1024);
    * coarse and fine have the same number of frames;
    * ``round(coarse frames / semantic tokens, 1) == 1.5``: Bark's coarse stage asserts it.
    """
    if not isinstance(arrays, Mapping):
        raise PromptError(name, "prompt", f"must be a mapping of arrays, got {type(arrays).__name__}")
    semantic = _integer_array(name, arrays, "semantic_prompt", ndim=1, upper=SEMANTIC_VOCAB_SIZE)
    coarse = _integer_array(name, arrays, "coarse_prompt", ndim=2, upper=CODEBOOK_SIZE, rows=N_COARSE_CODEBOOKS)
    fine = _integer_array(name, arrays, "fine_prompt", ndim=2, upper=CODEBOOK_SIZE, rows=N_FINE_CODEBOOKS)
    if coarse.shape[1] != fine.shape[1]:
        raise PromptError(
            name,
            "fine_prompt",
            f"must have as many frames as coarse_prompt ({coarse.shape[1]}), got {fine.shape[1]}",
        )
    ratio = coarse.shape[1] / semantic.shape[0]
    if round(ratio, 1) != round(COARSE_PER_SEMANTIC, 1):
        raise PromptError(
            name,
            "coarse_prompt",
            f"coarse frames / semantic tokens must round to {round(COARSE_PER_SEMANTIC, 1)} "
            f"(75 Hz / 49.9 Hz; Bark's coarse stage asserts it), got {coarse.shape[1]} / "
            f"{semantic.shape[0]} = {ratio:.3f}",
        )
    return semantic, coarse, fine


def _integer_array(
    name: str, arrays: Mapping[str, object], key: str, *, ndim: int, upper: int, rows: int | None = None
) -> np.ndarray:
    if key not in arrays:
        present = ", ".join(sorted(map(str, arrays))) or "none"
        raise PromptError(name, key, f"missing (keys present: {present})")
    value = arrays[key]
    try:
        array = np.asarray(value)
    except (ValueError, TypeError) as error:
        raise PromptError(name, key, f"not convertible to an array ({error})") from None
    if array.dtype == np.bool_ or not np.issubdtype(array.dtype, np.integer):
        raise PromptError(name, key, f"must have an integer dtype, got {array.dtype}")
    if array.ndim != ndim:
        raise PromptError(name, key, f"must be {ndim}-D, got {array.ndim}-D with shape {array.shape}")
    if rows is not None and array.shape[0] != rows:
        raise PromptError(name, key, f"must have {rows} codebooks (rows), got {array.shape[0]}")
    if array.size == 0:
        raise PromptError(name, key, f"must not be empty, got shape {array.shape}")
    low, high = array.min(), array.max()
    if low < 0 or high >= upper:
        raise PromptError(name, key, f"tokens must be in [0, {upper}), got values in [{low}, {high}]")
    result = array.astype(np.int64, copy=True)
    result.setflags(write=False)
    return result
