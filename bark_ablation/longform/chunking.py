"""Splitting a passage into chunks: one sentence per chunk, each at most a cap long.

Bark speaks at most about 14 s per call, so a long text is generated in chunks; Bark's own
long-form notebook splits the passage into sentences (``nltk.sent_tokenize``) and generates one
per call. This module does the same with a rule that is written down here rather than a model:

* a sentence ends at a run of ``.``, ``!``, ``?`` or ``…``, optionally followed by closing quotes
  or brackets (``" ' ” ’ ) ]``), where whitespace or the end of the passage follows;
* so ``3.5`` and ``e.g.x`` do not end a sentence, and ``Mr. Smith`` does (a known limit: write
  ``Mr Smith``, or keep such a sentence whole by ending the one before it differently);
* whitespace inside a sentence is collapsed to single spaces.

Why not a library: nltk's punkt splitter needs a data download at run time (this project takes
nothing from the network unless asked), and the splitters that ship their data (pysbd,
blingfire) would add a dependency for what one regular expression does with a rule a user can
read. The rule is what a user needs to predict which text lands in which chunk.

Every passage must end with a sentence end, every sentence must hold a word character, and
each chunk is at most ``max_chars`` characters (default :data:`MAX_CHUNK_CHARS`: at Bark's
usual 12-16 characters per second, about 14 s of speech). A passage needs at least
:data:`MIN_CHUNKS` sentences: drift is a slope over chunks.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from bark_ablation.core.errors import ParamsError
from bark_ablation.core.params import validate_text

MAX_CHUNK_CHARS = 200
"""Default cap on one chunk, characters (about 14 s of speech, Bark's longest generation)."""
MIN_CHUNKS = 2
"""Fewest chunks a passage may split into: a slope needs two points."""
SENTENCE_END = "[.!?…]+[\"'”’)\\]]*"
"""A sentence end: terminal punctuation, then optional closing quotes or brackets."""
_SENTENCE = re.compile(rf"\S.*?{SENTENCE_END}(?=\s|\Z)", re.DOTALL)
_WORD = re.compile(r"\w")


@dataclass(frozen=True)
class Passage:
    """One passage of a long-form design: ``index`` counts from 0 in the design's passages;
    ``chunks`` are its sentences, in order."""

    index: int
    text: str
    chunks: tuple[str, ...]

    @property
    def id(self) -> str:
        """``p<index>``: the passage's name in file names and tables."""
        return f"p{self.index}"


def split_sentences(passage: str) -> tuple[list[str], str]:
    """The sentences of ``passage`` (whitespace collapsed) and the text after the last sentence
    end (empty when the passage ends with one)."""
    sentences, end = [], 0
    for match in _SENTENCE.finditer(passage):
        sentences.append(" ".join(match.group().split()))
        end = match.end()
    return sentences, passage[end:].strip()


def chunk_passage(
    passage: str, index: int = 0, *, max_chars: int = MAX_CHUNK_CHARS, field: str = "passages"
) -> Passage:
    """``passage`` split into chunks, one sentence each, checked against the rules above.

    Raises :class:`ParamsError` naming ``field`` and the passage (by its 1-based number) when it
    is empty, has no sentence end or text after its last one, holds a sentence without a word,
    a chunk longer than ``max_chars`` characters, or fewer than :data:`MIN_CHUNKS` sentences.
    """
    if isinstance(passage, str) and not passage.strip():
        raise ParamsError(field, f"passage {index + 1} is empty; every passage needs at least {MIN_CHUNKS} sentences")
    try:
        text = validate_text(passage)
    except ParamsError as error:
        raise ParamsError(field, f"passage {index + 1}: {error.rule}") from None
    sentences, rest = split_sentences(text)
    if not sentences:
        raise ParamsError(field, f"passage {index + 1} has no sentence end (. ! ? or …): {_excerpt(text)}")
    if rest:
        raise ParamsError(
            field,
            f"passage {index + 1} ends without a sentence end (. ! ? or …) after {_excerpt(rest)}; "
            f"end its last sentence",
        )
    for number, sentence in enumerate(sentences, 1):
        if not _WORD.search(sentence):
            raise ParamsError(field, f"passage {index + 1}, sentence {number} holds no word: {sentence!r}")
        if len(sentence) > max_chars:
            raise ParamsError(
                field,
                f"passage {index + 1}, sentence {number} is {len(sentence)} characters, over the chunk cap of "
                f"{max_chars} (about 14 s of speech, Bark's longest generation); split it or raise the cap: "
                f"{_excerpt(sentence)}",
            )
    if len(sentences) < MIN_CHUNKS:
        raise ParamsError(
            field,
            f"passage {index + 1} has {len(sentences)} sentence; drift over chunks needs at least {MIN_CHUNKS}",
        )
    return Passage(index, text, tuple(sentences))


def chunk_passages(
    passages: Sequence[str], *, max_chars: int = MAX_CHUNK_CHARS, field: str = "passages"
) -> tuple[Passage, ...]:
    """Every passage chunked by :func:`chunk_passage`; at least one, each distinct."""
    max_chars = validate_max_chars(max_chars)
    if isinstance(passages, str):
        raise ParamsError(field, "must be a list of passages, got one string")
    chunked = tuple(chunk_passage(text, i, max_chars=max_chars, field=field) for i, text in enumerate(passages))
    if not chunked:
        raise ParamsError(field, "must give at least one passage")
    seen: dict[tuple[str, ...], int] = {}
    for passage in chunked:
        if passage.chunks in seen:
            raise ParamsError(field, f"passage {passage.index + 1} repeats passage {seen[passage.chunks] + 1}")
        seen[passage.chunks] = passage.index
    return chunked


def validate_max_chars(value: object, field: str = "max_chunk_chars") -> int:
    """``value`` as a chunk cap: an integer from 1 to 1000 characters."""
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 1000:
        raise ParamsError(field, f"must be an integer from 1 to 1000 (characters), got {value!r}")
    return value


def _excerpt(text: str, limit: int = 60) -> str:
    return repr(text if len(text) <= limit else text[: limit - 1] + "…")
