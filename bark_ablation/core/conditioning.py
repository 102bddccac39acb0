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

A :class:`Conditioning` says, per stage, which history that stage receives
(:class:`HistorySource`): the voice prompt, none, or a control. The 2^3 = 8 on/off cells have
short ids used in test ids, file names and reports: one character per stage in the order
semantic, coarse, fine; the stage's letter when it gets the prompt and ``-`` when it gets
nothing (``scf`` = all three, ``---`` = none, ``s--`` = semantic only). Controls use three more
characters in the same positions (:mod:`bark_ablation.core.controls` builds their histories):

* ``r``: random tokens of the prompt's lengths, uniform over each vocabulary (``rcf`` is the
  seed notebook's random-semantic cell, done so that Bark accepts it);
* ``x``: the prompt's own tokens shuffled in time (the same permutation for every codebook);
* ``o``: another speaker's prompt (``soo``: semantic history from the target speaker, coarse
  and fine from the other one).

:data:`CONTROLS` names the useful ones.
"""

from __future__ import annotations

import enum
import itertools
from collections.abc import Iterable
from dataclasses import dataclass

from bark_ablation.core.errors import ParamsError


class Stage(enum.Enum):
    """Bark's stages, in generation order. ``value`` is the stage's name.

    The three token stages (:data:`STAGES`) take a history and make up a conditioning cell; the
    decoder (``DECODE``: fine codes -> audio) takes none and closes the pipeline
    (:data:`PIPELINE_STAGES`).
    """

    SEMANTIC = "semantic"
    COARSE = "coarse"
    FINE = "fine"
    DECODE = "decode"

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
    Stage.DECODE: (),
}

STAGES: tuple[Stage, ...] = (Stage.SEMANTIC, Stage.COARSE, Stage.FINE)
"""The token stages: each may be conditioned on a history; a cell says which are."""
TOKEN_STAGE_NAMES: tuple[str, ...] = tuple(stage.value for stage in STAGES)
"""``("semantic", "coarse", "fine")``: the token stages' names (token files, per-stage effects)."""
PIPELINE_STAGES: tuple[Stage, ...] = (*STAGES, Stage.DECODE)
"""Every stage a generation runs, the decoder last."""
PIPELINE_STAGE_NAMES: tuple[str, ...] = tuple(stage.value for stage in PIPELINE_STAGES)
"""``("semantic", "coarse", "fine", "decode")``: the keys of per-stage records (timings, run counts)."""


class HistorySource(enum.Enum):
    """What one stage receives as history. ``value`` is its id character (``stage`` means the
    stage's own letter)."""

    PROMPT = "stage"
    NONE = "-"
    RANDOM = "r"
    SHUFFLED = "x"
    OTHER_SPEAKER = "o"

    def char(self, stage: Stage) -> str:
        return stage.letter if self is HistorySource.PROMPT else self.value


_CONTROL_CHARS = {source.value: source for source in HistorySource if source is not HistorySource.PROMPT}


@dataclass(frozen=True)
class Conditioning:
    """Which history each stage receives: a :class:`HistorySource` per stage (``True`` and
    ``False`` are accepted for PROMPT and NONE).

    Build one with :meth:`from_id` (``"s-f"``) or :meth:`of` (``Conditioning.of(Stage.FINE)``);
    iterate all eight with :data:`ALL_CONDITIONINGS`.
    """

    semantic: HistorySource | bool
    coarse: HistorySource | bool
    fine: HistorySource | bool

    def __post_init__(self) -> None:
        for stage in STAGES:
            value = getattr(self, stage.value)
            if isinstance(value, bool):
                object.__setattr__(self, stage.value, HistorySource.PROMPT if value else HistorySource.NONE)
            elif not isinstance(value, HistorySource):
                raise ParamsError("conditioning", f"{stage.value}: must be a HistorySource or a bool, got {value!r}")

    @classmethod
    def of(cls, *stages: Stage) -> Conditioning:
        """The conditioning in which exactly ``stages`` receive the history."""
        chosen = set(stages)
        return cls(*(stage in chosen for stage in STAGES))

    @classmethod
    def from_id(cls, cell_id: str) -> Conditioning:
        """Parse a short id such as ``"scf"``, ``"-c-"`` or ``"---"``.

        Raises :class:`~bark_ablation.core.errors.ParamsError` naming the rule when ``cell_id`` is
        not three characters, each the stage's letter, ``-``, ``r``, ``x`` or ``o``. A control
        name from :data:`CONTROLS` is accepted too.
        """
        if isinstance(cell_id, str) and cell_id in CONTROLS:
            return CONTROLS[cell_id]
        return cls._from_chars(cell_id)

    @classmethod
    def _from_chars(cls, cell_id: str) -> Conditioning:
        if not isinstance(cell_id, str) or len(cell_id) != len(STAGES):
            raise ParamsError(
                "conditioning",
                f"id must be 3 characters (semantic, coarse, fine) or a control name "
                f"({', '.join(CONTROLS)}), got {cell_id!r}",
            )
        sources = []
        for char, stage in zip(cell_id, STAGES, strict=True):
            if char == stage.letter:
                sources.append(HistorySource.PROMPT)
            elif char in _CONTROL_CHARS:
                sources.append(_CONTROL_CHARS[char])
            else:
                raise ParamsError(
                    "conditioning",
                    f"id {cell_id!r}: position {stage.value} must be {stage.letter!r}, '-', 'r' (random), "
                    f"'x' (shuffled) or 'o' (other speaker), got {char!r}",
                )
        return cls(*sources)

    @property
    def id(self) -> str:
        """Short stable id: ``scf``, ``s--``, ``---`` ..."""
        return "".join(self.source(stage).char(stage) for stage in STAGES)

    @property
    def stages(self) -> tuple[Stage, ...]:
        """The conditioned stages, in generation order."""
        return tuple(stage for stage in STAGES if self.conditions(stage))

    def source(self, stage: Stage) -> HistorySource:
        """The history ``stage`` (a token stage) receives."""
        if stage not in STAGES:
            raise ParamsError(
                "stage", f"must be a token stage ({', '.join(TOKEN_STAGE_NAMES)}); the decoder takes no history"
            )
        return getattr(self, stage.value)

    def conditions(self, stage: Stage) -> bool:
        """Whether ``stage`` receives any history (the prompt or a control)."""
        return self.source(stage) is not HistorySource.NONE

    @property
    def is_control(self) -> bool:
        """Whether any stage receives a control history (random, shuffled, other speaker)."""
        return any(self.source(stage) not in (HistorySource.PROMPT, HistorySource.NONE) for stage in STAGES)

    def upstream(self, stage: Stage) -> tuple[HistorySource, ...]:
        """Sources of ``stage`` and every stage before it: what that stage's output depends on."""
        return tuple(self.source(s) for s in STAGES[: STAGES.index(stage) + 1])

    @property
    def description(self) -> str:
        """Readable description, e.g. ``semantic + coarse (coarse also reads semantic_prompt)``."""
        if not self.stages:
            return "no history (unconditioned)"
        names = {
            HistorySource.RANDOM: "random",
            HistorySource.SHUFFLED: "shuffled",
            HistorySource.OTHER_SPEAKER: "other speaker's",
        }
        text = " + ".join(
            f"{names[self.source(stage)]} {stage.value}" if self.source(stage) in names else stage.value
            for stage in self.stages
        )
        if self.source(Stage.COARSE) is HistorySource.PROMPT and self.source(Stage.SEMANTIC) is HistorySource.NONE:
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

CONTROLS: dict[str, Conditioning] = {
    "random-semantic": Conditioning._from_chars("rcf"),
    "random-all": Conditioning._from_chars("rrr"),
    "shuffled-semantic": Conditioning._from_chars("xcf"),
    "shuffled-all": Conditioning._from_chars("xxx"),
    "other-speaker": Conditioning._from_chars("ooo"),
    "other-speaker-semantic": Conditioning._from_chars("ocf"),
    "other-speaker-coarse": Conditioning._from_chars("sof"),
    "other-speaker-fine": Conditioning._from_chars("sco"),
    "other-speaker-coarse-fine": Conditioning._from_chars("soo"),
}
"""Named control conditions. Each keeps the full-conditioning shape and replaces the history of
one or all stages, so its SECS is read against ``scf`` (same speaker) on matched seeds. The three
single-stage other-speaker cells (``ocf``, ``sof``, ``sco``) are the study's identity-transfer
cells (:data:`TRANSFER_CELLS`)."""

TRANSFER_CELLS: dict[str, Conditioning] = {
    "semantic": CONTROLS["other-speaker-semantic"],
    "coarse": CONTROLS["other-speaker-coarse"],
    "fine": CONTROLS["other-speaker-fine"],
}
"""Per stage: ``scf`` with that one stage's history taken from another speaker."""


def validate_cells(cells: Iterable[Conditioning | str]) -> tuple[Conditioning, ...]:
    """``cells`` (conditionings or their ids, :meth:`Conditioning.from_id`) as a tuple of
    conditionings; raise ParamsError naming ``conditionings`` when it is empty or repeats a cell."""
    values = tuple(cell if isinstance(cell, Conditioning) else Conditioning.from_id(cell) for cell in cells)
    if not values:
        raise ParamsError("conditionings", "must name at least one cell")
    repeated = sorted({cell.id for cell in values if values.count(cell) > 1})
    if repeated:
        raise ParamsError("conditionings", f"must not repeat a cell, got {repeated[0]} more than once")
    return values


def needs_other_speaker(cells: Iterable[Conditioning]) -> list[str]:
    """Ids of the cells that give some stage another speaker's history (``o``)."""
    return [cell.id for cell in cells if HistorySource.OTHER_SPEAKER in cell.upstream(Stage.FINE)]
