"""Model sets by name; real weights only from local caches, loaded with weights_only=True.

A fake cache is built from the tiny models, written in Bark's checkpoint format (including the
numpy scalar ``best_val_loss``, pickled under numpy 1.x's global names as in the published files,
that breaks Bark 0.1.5's own loader on torch >= 2.6; ``checkpoint_writers.py``), so the
real-weights loader is exercised without real weights. Broken caches: ``test_cache_files.py``.
"""

from __future__ import annotations

import pickle

import numpy as np
import pytest
import torch
from checkpoint_writers import read_checkpoint, save_bark_checkpoint, write_fake_cache

from bark_ablation import GenerationParams
from bark_ablation.core.errors import CacheFileError, MissingWeightsError, ModelSetError
from bark_ablation.core.implementation import ModelSet
from bark_ablation.generation.pipeline import generate
from bark_ablation.implementations.registry import get_implementation, get_model_set
from bark_ablation.models.cached_weights import CacheLocations, missing_files
from bark_ablation.models.real_weights import load_cached_models


@pytest.fixture
def empty_caches(tmp_path):
    return CacheLocations(
        bark_dir=tmp_path / "suno" / "bark_v0",
        hf_hub_dir=tmp_path / "hf" / "hub",
        torch_hub_dir=tmp_path / "torch" / "hub",
    )


def test_missing_files_are_listed_with_where_they_belong(empty_caches):
    with pytest.raises(MissingWeightsError) as error:
        load_cached_models("bark-small", "cpu", locations=empty_caches)
    message = str(error.value)
    for expected in (
        "text.pt",
        "coarse.pt",
        "fine.pt",
        "bert-base-multilingual-cased",
        "encodec_24khz-d7cc33bc.th",
        str(empty_caches.bark_dir),
        str(empty_caches.torch_hub_dir / "checkpoints"),
        "allow_download",
    ):
        assert expected in message
    assert len(error.value.missing) == 5


def test_unknown_names_are_refused():
    with pytest.raises(
        ModelSetError, match=f"unknown for {get_implementation().name} .*tiny, tiny-eos, bark, bark-small"
    ):
        get_model_set("enormous")
    with pytest.raises(ModelSetError, match="implementation 'bark-rs': unknown"):
        get_implementation("bark-rs")


def test_default_torch_load_refuses_barks_checkpoint_format(tmp_path, empty_caches, tiny_models):
    """The trap the loader exists for: weights_only=True rejects the numpy scalar."""
    write_fake_cache(empty_caches, tiny_models)
    with pytest.raises(pickle.UnpicklingError, match="Weights only load failed") as refused:
        torch.load(empty_caches.bark_dir / "coarse_2.pt", weights_only=True)
    assert "numpy.core.multiarray.scalar" in str(refused.value)  # numpy 1.x's name, as in Bark's files
    assert read_checkpoint(empty_caches.bark_dir / "coarse_2.pt")["best_val_loss"] == 2.5  # with the allow-list


def test_cached_models_load_with_weights_only_and_generate_like_the_originals(empty_caches, tiny_models):
    write_fake_cache(empty_caches, tiny_models)
    assert missing_files("bark", empty_caches) == []
    models, provenance = load_cached_models("bark", "cpu", locations=empty_caches)
    assert provenance["files"]["fine"].endswith("fine_2.pt")
    loaded = ModelSet("bark", get_implementation().name, "cpu", models)
    for key in ("coarse", "fine"):
        original = tiny_models.models[key].state_dict()
        assert all(torch.equal(original[k], v) for k, v in models[key].state_dict().items())
    params = GenerationParams(max_duration_s=0.4)
    ours = generate("Hello.", "en_speaker_0", "scf", 0, params, model_set=loaded)
    reference = generate("Hello.", "en_speaker_0", "scf", 0, params, model_set=tiny_models)
    np.testing.assert_array_equal(ours.fine, reference.fine)
    assert ours.audio.tobytes() == reference.audio.tobytes()


def test_checkpoint_with_wrong_keys_names_them(empty_caches, tiny_models):
    write_fake_cache(empty_caches, tiny_models)
    path = empty_caches.bark_dir / "fine_2.pt"
    checkpoint = read_checkpoint(path)
    model = {key.removeprefix("_orig_mod."): value for key, value in checkpoint["model"].items()}
    model.pop("transformer.wpe.weight")
    save_bark_checkpoint(path, checkpoint["model_args"], model)
    with pytest.raises(
        CacheFileError, match="fine_2.pt: keys do not match FineGPT: missing \\['transformer.wpe.weight'\\]"
    ):
        load_cached_models("bark", "cpu", locations=empty_caches)


def test_environment_variables_move_the_caches(monkeypatch, tmp_path):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "th"))
    for variable in ("HF_HOME", "HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE"):
        monkeypatch.delenv(variable, raising=False)
    locations = CacheLocations.from_environment()
    assert locations.bark_dir == tmp_path / "xdg" / "suno" / "bark_v0"
    assert locations.hf_hub_dir == tmp_path / "xdg" / "huggingface" / "hub"
    # Read when asked, not when huggingface_hub was first imported (it already was).
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    assert CacheLocations.from_environment().hf_hub_dir == tmp_path / "hf" / "hub"
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub-cache"))
    assert CacheLocations.from_environment().hf_hub_dir == tmp_path / "hub-cache"
    assert locations.encodec_path == tmp_path / "th" / "hub" / "checkpoints" / "encodec_24khz-d7cc33bc.th"


def _option_help(parser, flag: str) -> str:
    """The help text of ``flag`` in an argparse parser (or one of its subcommands)."""
    import argparse

    for action in parser._actions:
        if flag in action.option_strings:
            return action.help
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                found = _option_help(sub, flag)
                if found:
                    return found
    return ""


def undescribed_model_sets(help_text: str) -> list[str]:
    """The model sets of the catalogue that ``help_text`` does not describe in the catalogue's words."""
    from bark_ablation.models.catalogue import MODEL_SET_KINDS

    return [name for name, kind in MODEL_SET_KINDS.items() if f"{name} ({kind}" not in help_text]


def test_the_cli_and_the_plugin_describe_model_sets_from_one_source():
    """One catalogue (bark_ablation.models.catalogue) writes both --model-set helps, and it
    names exactly the sets every implementation offers."""
    from plugin_projects import RecordingParser

    from bark_ablation import cli, pytest_plugin
    from bark_ablation.implementations.registry import IMPLEMENTATIONS
    from bark_ablation.models.catalogue import MODEL_SET_KINDS

    for name, factory in IMPLEMENTATIONS.items():
        assert set(factory().model_set_names()) == set(MODEL_SET_KINDS), name
    parser = RecordingParser()
    pytest_plugin.pytest_addoption(parser)
    helps = {
        "plugin --bark-model-set": parser.help["--bark-model-set"],
        "run --model-set": _option_help(cli.build_parser(), "--model-set"),
    }
    for where, text in helps.items():
        assert undescribed_model_sets(text) == [], f"{where}: {text}"
    assert "auto (" in helps["run --model-set"] and "auto (" not in helps["plugin --bark-model-set"]


def test_a_help_written_by_hand_is_caught():
    """Known-bad twin: the help the CLI had before the catalogue (four names, its own words)."""
    old = "auto (default: bark where its real weights are cached, else the built-in tiny set), tiny, bark, bark-small"
    assert undescribed_model_sets(old) == ["tiny", "tiny-eos", "bark", "bark-small", "bark-random", "bark-small-random"]
