"""Which of Bark's three token stages receive the voice prompt's history.

Bark generates in three stages, each of which can read a part of a voice ("history") prompt:

* ``semantic`` (text -> semantic tokens, 49.9 Hz) reads the prompt's ``semantic_prompt``
  (its last 256 tokens).
* ``coarse`` (semantic tokens -> 2 EnCodec codebooks, 75 Hz) reads the prompt's
  ``semantic_prompt`` AND ``coarse_prompt`` together, as an aligned pair (at most 630
  interleaved coarse tokens, about 209 semantic tokens, then Bark drops the last 2 coarse
  tokens for time alignment). "Coarse conditioning" therefore always carries the prompt's
  semantic tokens too; results must be read that way.
* ``fine`` (2 coarse codebooks -> 8 codebooks, 75 Hz) reads the prompt's ``fine_prompt``
  (its last 512 frames).

A :class:`Conditioning` is the set of stages that receive the history. The 2^3 = 8 cells have
short ids used in test ids, file names and reports: one character per stage in the order
semantic, coarse, fine; the stage's letter when it is conditioned and ``-`` when it is not
(``scf`` = all three, ``---`` = none, ``s--`` = semantic only).
"""

from __future__ import annotations

import enum
import itertools
from dataclasses import dataclass

from bark_ablation.errors import ParamsError


class Stage(enum.Enum):
    """Bark's token stages, in generation order. ``value`` is the stage's name."""

    SEMANTIC = "semantic"
    COARSE = "coarse"
    FINE = "fine"

    @property
    def letter(self) -> str:
        """One-letter code used in conditioning ids (``s``, ``c``, ``f``)."""
        return self.value[0]

    @property
    def prompt_keys(self) -> tuple[str, ...]:
        """The voice-prompt fields Bark reads in this stage."""
        return _PROMPT_KEYS_READ[self]


_PROMPT_KEYS_READ = {
    Stage.SEMANTIC: ("semantic_prompt",),
    Stage.COARSE: ("semantic_prompt", "coarse_prompt"),
    Stage.FINE: ("fine_prompt",),
}

STAGES: tuple[Stage, ...] = (Stage.SEMANTIC, Stage.COARSE, Stage.FINE)


@dataclass(frozen=True, order=True)
class Conditioning:
    """The set of stages that receive the voice prompt's history.

    Build one with :meth:`from_id` (``"s-f"``) or :meth:`of` (``Conditioning.of(Stage.FINE)``);
    iterate all eight with :data:`ALL_CONDITIONINGS`.
    """

    semantic: bool
    coarse: bool
    fine: bool

    @classmethod
    def of(cls, *stages: Stage) -> "Conditioning":
        """The conditioning in which exactly ``stages`` receive the history."""
        chosen = set(stages)
        return cls(*(stage in chosen for stage in STAGES))

    @classmethod
    def from_id(cls, cell_id: str) -> "Conditioning":
        """Parse a short id such as ``"scf"``, ``"-c-"`` or ``"---"``.

        Raises :class:`~bark_ablation.errors.ParamsError` naming the rule when ``cell_id`` is
        not three characters, each the stage's letter or ``-``.
        """
        if not isinstance(cell_id, str) or len(cell_id) != len(STAGES):
            raise ParamsError(
                "conditioning", f"id must be 3 characters (semantic, coarse, fine), got {cell_id!r}"
            )
        flags = []
        for char, stage in zip(cell_id, STAGES, strict=True):
            if char not in (stage.letter, "-"):
                raise ParamsError(
                    "conditioning",
                    f"id {cell_id!r}: position {stage.value} must be {stage.letter!r} or '-', "
                    f"got {char!r}",
                )
            flags.append(char == stage.letter)
        return cls(*flags)

    @property
    def id(self) -> str:
        """Short stable id: ``scf``, ``s--``, ``---`` ..."""
        return "".join(stage.letter if self.conditions(stage) else "-" for stage in STAGES)

    @property
    def stages(self) -> tuple[Stage, ...]:
        """The conditioned stages, in generation order."""
        return tuple(stage for stage in STAGES if self.conditions(stage))

    def conditions(self, stage: Stage) -> bool:
        """Whether ``stage`` receives the voice prompt's history."""
        return getattr(self, stage.value)

    def upstream(self, stage: Stage) -> tuple[bool, ...]:
        """Flags of ``stage`` and every stage before it: what that stage's output depends on."""
        return tuple(self.conditions(s) for s in STAGES[: STAGES.index(stage) + 1])

    @property
    def description(self) -> str:
        """Readable description, e.g. ``semantic + coarse (coarse also reads semantic_prompt)``."""
        if not self.stages:
            return "no history (unconditioned)"
        text = " + ".join(stage.value for stage in self.stages)
        if self.coarse and not self.semantic:
            text += " (the coarse stage still reads the prompt's semantic_prompt)"
        return text

    def __str__(self) -> str:
        return self.id


ALL_CONDITIONINGS: tuple[Conditioning, ...] = tuple(
    Conditioning(*flags) for flags in itertools.product((True, False), repeat=len(STAGES))
)
"""All 8 cells, from ``scf`` (full conditioning) to ``---`` (none)."""

FULL = Conditioning(True, True, True)
NONE = Conditioning(False, False, False)

NOTEBOOK_CONDITIONS: dict[str, Conditioning] = {
    "baseline": FULL,
    "coarse + fine only": Conditioning(False, True, True),
    "semantic only": Conditioning(True, False, False),
}
"""The seed notebook's three conditions mapped onto cells. Its "semantic only" cell meant
``s--``; the notebook's code for it passed the unconditioned semantic tokens of the previous
cell instead, so it actually ran ``---``."""
