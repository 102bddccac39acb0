"""The tiny model set: Bark's classes, numpy-drawn weights, and a codec whose codebooks are
not the untrained zeros (with which every token sequence decodes to the same audio)."""

from __future__ import annotations

import zlib

import numpy as np
import pytest
import torch

from bark_ablation.core.implementation import ModelSet
from bark_ablation.implementations.registry import activated, get_implementation
from bark_ablation.models import tiny_model_set


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
    first, one_token_changed, unrelated = _decode_two_token_sequences(
        tiny_model_set.build_tiny_models(codebooks="zeros")
    )
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


def test_tiny_eos_differs_from_tiny_only_in_the_end_of_sequence_row(tiny_models):
    """``tiny-eos`` changes one row of one tensor (the text head's EOS row, recomputed here with
    numpy alone); every other tensor of every model is ``tiny``'s, bit for bit."""
    from bark_ablation.implementations.registry import get_model_set

    eos = get_model_set("tiny-eos", "cpu")
    for key in ("coarse", "fine", "codec"):
        ours, theirs = tiny_models.models[key].state_dict(), eos.models[key].state_dict()
        assert all(torch.equal(ours[k], theirs[k]) for k in ours), key
    tiny_text, eos_text = tiny_models.models["text"]["model"].state_dict(), eos.models["text"]["model"].state_dict()
    changed = [k for k in tiny_text if not torch.equal(tiny_text[k], eos_text[k])]
    assert changed == ["lm_head.weight"]
    rows = (tiny_text["lm_head.weight"] != eos_text["lm_head.weight"]).any(dim=1).nonzero().flatten().tolist()
    assert rows == [tiny_model_set.EOS_TOKEN] == [10_000]
    rng = np.random.default_rng([tiny_model_set.TINY_WEIGHT_SEED, zlib.crc32(b"text/lm_head.weight[eos]")])
    direction = rng.normal(size=tiny_model_set.TINY_ARCHITECTURE.n_embd)
    expected = tiny_model_set.EOS_HEAD_NORM * direction / np.linalg.norm(direction)
    assert torch.equal(eos_text["lm_head.weight"][10_000], torch.from_numpy(expected.astype(np.float32)))
    assert eos.provenance["differs_from_tiny"]["row"] == 10_000
    assert "differs_from_tiny" not in tiny_models.provenance


def test_tiny_eos_is_registered_for_both_implementations():
    from bark_ablation.implementations.registry import default_implementation, get_model_set
    from bark_ablation.models.catalogue import TINY_EOS

    for implementation in (default_implementation(), "transformers"):
        names = get_implementation(implementation).model_set_names()
        assert "tiny" in names and TINY_EOS in names, implementation
    hf = get_model_set(TINY_EOS, "cpu", implementation="transformers")
    suno = get_model_set(TINY_EOS, "cpu")
    assert torch.equal(hf.models["text"]["model"].lm_head.weight, suno.models["text"]["model"].lm_head.weight)
    assert hf.provenance["differs_from_tiny"] == suno.provenance["differs_from_tiny"]
