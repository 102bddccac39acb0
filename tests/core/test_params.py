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


@pytest.mark.parametrize(
    "field, value",
    [
        ("semantic_temp", 0),
        ("coarse_temp", -1.0),
        ("fine_temp", math.inf),
        ("semantic_temp", True),
        ("top_k", 0),
        ("top_k", 2.5),
        ("top_p", 0.0),
        ("top_p", 1.5),
        ("min_eos_p", 2),
        ("max_duration_s", 0),
        ("allow_early_stop", 1),
        ("use_kv_caching", "yes"),
        ("max_coarse_history", 59),
        ("max_coarse_history", 631),
        ("sliding_window_len", 0),
        ("sliding_window_len", 200),
    ],
)
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


def test_profile_parameters_hold_their_settings_and_others_are_refused():
    """``Profile.check`` (what run_matrix applies to labelled parameters): a profile's own
    parameters pass; parameters that contradict a setting name the field and the profile."""
    from bark_ablation.core.profiles import PROFILES, get_profile

    for profile in PROFILES.values():
        profile.check(profile.params(GenerationParams(max_duration_s=1.0)))
    with pytest.raises(
        ParamsError, match=r"generation input: top_k: profile 'top-k' sets top_k=3; the parameters have 5"
    ):
        get_profile("top-k").check(GenerationParams(top_k=5))
    with pytest.raises(ParamsError, match=r"generation input: profile: unknown profile 'fast'"):
        get_profile("fast")


def test_run_matrix_refuses_parameters_its_profile_does_not_hold():
    """Known-bad input: a matrix labelled ``top-p`` with parameters that have no top-p is refused
    before any model is built or any stage runs."""
    from bark_ablation import run_matrix

    with pytest.raises(ParamsError, match=r"top_p: profile 'top-p' sets top_p=0.7; the parameters have None"):
        run_matrix("Hi.", "en_speaker_0", [0], ["scf"], GenerationParams(), model_set="no-such-set", profile="top-p")
