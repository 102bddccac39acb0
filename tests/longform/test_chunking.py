"""The sentence splitter and the chunk rules: what lands in which chunk, and every refusal named."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bark_ablation.core.errors import ParamsError
from bark_ablation.longform.chunking import (
    MAX_CHUNK_CHARS,
    MIN_CHUNKS,
    chunk_passage,
    chunk_passages,
    split_sentences,
    validate_max_chars,
)


@pytest.mark.parametrize(
    "passage, sentences",
    [
        ("Hello there. How are you?", ["Hello there.", "How are you?"]),
        ("It cost 3.5 dollars. Cheap!", ["It cost 3.5 dollars.", "Cheap!"]),
        ("Wait... Go on.", ["Wait...", "Go on."]),
        ("She said (quietly.) Then left.", ["She said (quietly.)", "Then left."]),
        ("“Really?” Yes.", ["“Really?”", "Yes."]),
        ("One   line\n  broken.  Two.", ["One line broken.", "Two."]),
        ("Mr. Smith left.", ["Mr.", "Smith left."]),  # the documented limit: an abbreviation ends a sentence
        ("Ünïcode wörks. Ça va…", ["Ünïcode wörks.", "Ça va…"]),
    ],
)
def test_sentences_end_at_terminal_punctuation_before_whitespace(passage, sentences):
    assert split_sentences(passage) == (sentences, "")


def test_text_after_the_last_sentence_end_is_returned_apart():
    assert split_sentences("Done. not yet") == (["Done."], "not yet")


words = st.text(alphabet="abcdefghij ", min_size=1, max_size=30).filter(lambda t: t.strip())


@given(st.lists(st.tuples(words, st.sampled_from([".", "!", "?", "…", "?!"])), min_size=2, max_size=6))
def test_sentences_joined_by_spaces_split_back(parts):
    sentences = [" ".join(text.split()) + end for text, end in parts]
    passage = " ".join(sentences)
    assert split_sentences(passage) == (sentences, "")


def test_a_passage_becomes_one_chunk_per_sentence():
    passage = chunk_passage("First one. Second one! Third?", 4)
    assert passage.chunks == ("First one.", "Second one!", "Third?") and passage.id == "p4"


@pytest.mark.parametrize(
    "text, rule",
    [
        ("", r"passages: passage 1 is empty"),
        ("   \n ", r"passages: passage 1 is empty"),
        (
            "no sentence end at all",
            r"passages: passage 1 has no sentence end \(\. ! \? or …\): 'no sentence end at all'",
        ),
        ("One. And then", r"passages: passage 1 ends without a sentence end .* after 'And then'"),
        ("Only one sentence.", rf"passages: passage 1 has 1 sentence; drift over chunks needs at least {MIN_CHUNKS}"),
        ("Words. ?! More.", r"passages: passage 1, sentence 2 holds no word: '\?!'"),
        (
            "Short. " + "x" * (MAX_CHUNK_CHARS + 1) + ".",
            rf"sentence 2 is {MAX_CHUNK_CHARS + 2} characters, over the chunk cap",
        ),
    ],
)
def test_bad_passages_are_refused_naming_the_field_the_passage_and_the_rule(text, rule):
    with pytest.raises(ParamsError, match=rule):
        chunk_passage(text)


def test_the_cap_is_inclusive_and_adjustable():
    assert chunk_passage("Ab. Cd.", max_chars=3).chunks == ("Ab.", "Cd.")
    with pytest.raises(ParamsError, match="over the chunk cap of 2"):
        chunk_passage("Ab. Cd.", max_chars=2)


def test_passages_are_numbered_from_one_in_errors_and_the_field_is_the_caller_s():
    with pytest.raises(ParamsError, match=r"--texts-file t\.txt: passage 2 has no sentence end"):
        chunk_passages(["Fine. Good.", "broken"], field="--texts-file t.txt")


def test_passages_must_be_a_non_empty_list_of_distinct_passages():
    with pytest.raises(ParamsError, match="at least one passage"):
        chunk_passages([])
    with pytest.raises(ParamsError, match="one string"):
        chunk_passages("One. Two.")
    with pytest.raises(ParamsError, match="passage 2 repeats passage 1"):
        chunk_passages(["One. Two.", "One.   Two."])


@pytest.mark.parametrize("value", [0, -1, 1001, 2.5, True, "200"])
def test_a_bad_cap_is_refused_by_name(value):
    with pytest.raises(ParamsError, match=r"max_chunk_chars: must be an integer from 1 to 1000"):
        validate_max_chars(value)


def test_the_cli_default_cap_is_the_library_s():
    from bark_ablation.cli import MAX_CHUNK_CHARS_DEFAULT

    assert MAX_CHUNK_CHARS_DEFAULT == MAX_CHUNK_CHARS


def test_a_passage_that_is_not_text_is_named_as_such_not_as_empty():
    with pytest.raises(ParamsError, match=r"passages: passage 1: must be a string, got int"):
        chunk_passage(42)
