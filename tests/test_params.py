"""Generation parameters, text and seeds: explicit, validated, recorded."""

from __future__ import annotations

import inspect
import math

import pytest

from bark_ablation.core.errors import ParamsError
from bark_ablation.core.params import GenerationParams, validate_seed, validate_text


def test_defaults_are_barks_own():
    from bark.generation import generate_coarse, generate_fine, generate_text_semantic

    semantic = inspect.signature(generate_text_semantic).parameters
    coarse = inspect.signature(generate_coarse).parameters
    fine = inspect.signature(generate_fine).parameters
    params = GenerationParams()
    assert params.semantic_temp == semantic["temp"].default
    assert params.min_eos_p == semantic["min_eos_p"].default
    assert params.top_k == semantic["top_k"].default and params.top_p == semantic["top_p"].default
    assert params.coarse_temp == coarse["temp"].default
    assert params.max_coarse_history == coarse["max_coarse_history"].default
    assert params.sliding_window_len == coarse["sliding_window_len"].default
    assert params.fine_temp == fine["temp"].default


@pytest.mark.parametrize("field, value", [
    ("semantic_temp", 0), ("coarse_temp", -1.0), ("fine_temp", math.inf), ("semantic_temp", True),
    ("top_k", 0), ("top_k", 2.5), ("top_p", 0.0), ("top_p", 1.5), ("min_eos_p", 2),
    ("max_duration_s", 0), ("allow_early_stop", 1), ("use_kv_caching", "yes"),
    ("max_coarse_history", 59), ("max_coarse_history", 631), ("sliding_window_len", 0),
    ("sliding_window_len", 200),
])
def test_each_bad_field_is_named(field, value):
    with pytest.raises(ParamsError, match=f"generation input: {field}: "):
        GenerationParams(**{field: value})


def test_round_trip_through_dict():
    params = GenerationParams(top_k=50, max_duration_s=2.0)
    assert GenerationParams.from_dict(params.to_dict()) == params
    with pytest.raises(ParamsError, match="temperature: unknown generation parameter"):
        GenerationParams.from_dict({"temperature": 0.5})


@pytest.mark.parametrize("seed", [-1, 2**32, 1.0, "3", None, True])
def test_bad_seeds(seed):
    with pytest.raises(ParamsError, match="seed: must be an integer in"):
        validate_seed(seed)


@pytest.mark.parametrize("text", ["", "   \n\t", None, b"bytes"])
def test_bad_text(text):
    with pytest.raises(ParamsError, match="text: must"):
        validate_text(text)
