"""Every error the package raises pickles whole: a Ray worker's named error reaches the driver as
itself (message, type and attributes), not as Ray's UnserializableException."""

from __future__ import annotations

import pickle
from pathlib import Path

import pytest

from bark_ablation.core import errors

EXAMPLES = [
    errors.ParamsError("--seeds", "must be integers"),
    errors.PromptError("en_speaker_0", "coarse_prompt", "must have 2 codebooks (rows), got 3"),
    errors.ValidationError("request", "text", "must not be empty"),
    errors.MissingWeightsError("bark", [errors.MissingFile("text model", Path("/c/text_2.pt"), "set XDG_CACHE_HOME")]),
    errors.CacheFileError(Path("/c/text_2.pt"), "text model", "truncated", "delete it and download again"),
    errors.OutputError("output /x: a directory of that name exists"),
    errors.ExecutorError("unit en_speaker_0_t0: its worker died 4 times"),
    errors.GoldenError(Path("golden/x.npz"), "unreadable", "regenerate"),
]


def test_every_error_class_has_an_example_here():
    """A new error class is covered as soon as it exists."""
    classes = {
        value
        for value in vars(errors).values()
        if isinstance(value, type)
        and issubclass(value, errors.BarkAblationError)
        and value.__module__ == errors.__name__
    }
    constructors_tested = {type(e) for e in EXAMPLES}
    plain = {c for c in classes if "__init__" not in vars(c)} - {errors.BarkAblationError}
    untested = {c for c in classes if "__init__" in vars(c)} - constructors_tested
    assert not untested, f"add an example of {sorted(c.__name__ for c in untested)}"
    assert plain  # errors with Exception's constructor pickle by themselves; one is checked below


@pytest.mark.parametrize("error", EXAMPLES, ids=lambda e: type(e).__name__)
def test_an_error_survives_pickling_with_its_message_and_attributes(error):
    copy = pickle.loads(pickle.dumps(error))
    assert type(copy) is type(error) and str(copy) == str(error)
    assert vars(copy) == vars(error)
