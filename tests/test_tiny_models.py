"""The tiny model set: Bark's classes, numpy-drawn weights, and a codec whose codebooks are
not the untrained zeros (with which every token sequence decodes to the same audio)."""

from __future__ import annotations

import zlib

import numpy as np
import pytest
import torch

from bark_ablation import tiny_model_set
from bark_ablation.implementation import ModelSet, activated, get_implementation


def test_built_from_barks_own_classes(tiny_models):
    from bark.model import GPT
    from bark.model_fine import FineGPT
    from encodec import EncodecModel

    models = tiny_models.models
    assert type(models["text"]["model"]) is GPT and type(models["coarse"]) is GPT
    assert type(models["fine"]) is FineGPT and type(models["codec"]) is EncodecModel


def test_weights_are_the_numpy_draws_not_torch_initialisers(tiny_models):
    """Weights come from numpy's Generator seeded by (TINY_WEIGHT_SEED, tensor name): recompute
    two tensors with numpy alone and compare bit for bit."""
    text = tiny_models.models["text"]["model"]
    rng = np.random.default_rng([tiny_model_set.TINY_WEIGHT_SEED, zlib.crc32(b"text/transformer.wte.weight")])
    expected = rng.normal(0.0, tiny_model_set.EMBEDDING_STD, size=tuple(text.transformer.wte.weight.shape))
    assert torch.equal(text.transformer.wte.weight, torch.from_numpy(expected.astype(np.float32)))
    codec = tiny_models.models["codec"]
    name = "quantizer.vq.layers.3._codebook.embed"
    rng = np.random.default_rng([tiny_model_set.TINY_WEIGHT_SEED, zlib.crc32(f"codec/{name}".encode())])
    assert torch.equal(codec.state_dict()[name], torch.from_numpy(rng.normal(size=(1024, 128)).astype(np.float32)))


def test_two_builds_are_identical_and_ignore_torchs_seed(tiny_models):
    torch.manual_seed(999)
    again = tiny_model_set.build_tiny_models("cpu")
    for key in ("coarse", "fine", "codec"):
        ours, theirs = tiny_models.models[key].state_dict(), again[key].state_dict()
        assert ours.keys() == theirs.keys()
        assert all(torch.equal(ours[k], theirs[k]) for k in ours)


def _decode_two_token_sequences(models):
    model_set = ModelSet("probe", get_implementation().name, "cpu", models)
    rng = np.random.default_rng(0)
    fine = rng.integers(0, 1024, size=(8, 75))
    other = fine.copy()
    other[7, 30] = (other[7, 30] + 1) % 1024
    with activated(model_set) as runner:
        return runner.decode(fine), runner.decode(other), runner.decode(rng.integers(0, 1024, size=(8, 75)))


def test_untrained_zero_codebooks_decode_everything_to_the_same_audio():
    """Why the tiny codec gets random codebooks: with EnCodec's zeros, an audio check cannot fail."""
    first, one_token_changed, unrelated = _decode_two_token_sequences(tiny_model_set.build_tiny_models(codebooks="zeros"))
    assert np.array_equal(first, one_token_changed) and np.array_equal(first, unrelated)


def test_tiny_codebooks_make_one_token_audible(tiny_models):
    first, one_token_changed, unrelated = _decode_two_token_sequences(tiny_models.models)
    changed = int(np.sum(first != one_token_changed))
    assert changed >= 320, f"one changed token altered only {changed} samples (one frame is 320)"
    assert not np.array_equal(first, unrelated)


def test_decoded_audio_has_a_usable_level(regression_matrix):
    audio = regression_matrix("en_speaker_0", 0).get("scf", 0).audio
    rms = float(np.sqrt(np.mean(audio.astype(np.float64) ** 2)))
    assert 0.005 < rms < 0.5 and float(np.abs(audio).max()) < 1.0


def test_unknown_codebook_mode_is_refused():
    with pytest.raises(ValueError, match="codebooks must be"):
        tiny_model_set.build_tiny_models(codebooks="ones")
