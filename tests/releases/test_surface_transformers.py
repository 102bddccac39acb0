"""transformers' Bark called as its users call it: every surface check on the installed release,
and a known-bad twin per check (the installed release with that one entry point broken, as an
upstream release breaks it) that must come out ``fails`` with the stand-in's error.

The checks run the installed transformers' real code on the tiny set saved in the Hub's layout;
nothing is mocked in the runs that claim to test Bark. The twins patch one entry point each.
"""

from __future__ import annotations

import functools
import json
from pathlib import Path

import numpy as np
import pytest

from bark_ablation.releases import hub_layout
from bark_ablation.releases import surface_transformers as checks
from bark_ablation.releases.surface import (
    FAILS,
    NOT_APPLICABLE,
    WORKS,
    SurfaceContext,
    audio_summary,
    changed_defaults,
    run_checks,
)

CHECK_NAMES = tuple(check.name for check in checks.CHECKS)
NEEDS_CUDA = {"enable-cpu-offload"}


@pytest.fixture(scope="module")
def layout(tmp_path_factory) -> Path:
    return checks.prepare_layout(tmp_path_factory.mktemp("surface-layout"))


@pytest.fixture(scope="module")
def installed(layout, tmp_path_factory) -> dict:
    """Every check once on the installed transformers, by name."""
    context = SurfaceContext(layout, tmp_path_factory.mktemp("surface-scratch"))
    return {result.check: result for result in run_checks(checks.CHECKS, context)}


def fresh_context(layout: Path, tmp_path: Path) -> SurfaceContext:
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    return SurfaceContext(layout, scratch)


def run_one(name: str, layout: Path, tmp_path: Path):
    (result,) = run_checks(checks.CHECKS, fresh_context(layout, tmp_path), [name])
    return result


def test_the_layout_is_the_hubs(layout):
    """The files and keys users' from_pretrained reads in suno/bark-small."""
    names = {path.name for path in layout.iterdir()}
    assert {
        "config.json",
        "generation_config.json",
        "pytorch_model.bin",
        "vocab.txt",
        "tokenizer_config.json",
        "special_tokens_map.json",
        "speaker_embeddings_path.json",
        "speaker_embeddings",
    } <= names
    config = json.loads((layout / "config.json").read_text())
    assert config["architectures"] == ["BarkModel"] and config["model_type"] == "bark"
    assert config["transformers_version"] == "4.31.0.dev0"
    generation = json.loads((layout / "generation_config.json").read_text())
    assert (layout / "generation_config.json").stat().st_size == 4908  # the Hub file's size
    assert generation["semantic_config"]["do_sample"] is True and generation["semantic_config"]["temperature"] == 0.7
    assert generation["fine_acoustics_config"]["temperature"] == 0.5
    embeddings = json.loads((layout / "speaker_embeddings_path.json").read_text())
    for preset in hub_layout.LAYOUT_PRESETS:
        for key, path in embeddings[f"v2/{preset}"].items():
            assert np.load(layout / path).shape == np.load(layout / "presets" / f"{preset}.npz")[key].shape


def test_every_check_works_or_says_why_not_on_the_installed_release(installed):
    assert tuple(installed) == CHECK_NAMES
    for name, result in installed.items():
        if name in NEEDS_CUDA:
            assert (result.status, result.reason) == (NOT_APPLICABLE, "needs a CUDA device (this run is on the CPU)")
        elif result.status == NOT_APPLICABLE:
            assert name == "attn-implementation-sdpa" and "sdpa" in result.reason
        else:
            assert result.status == WORKS, f"{name}: {result.describe_error()}"


def test_default_calls_record_their_defaults_and_what_they_produced(installed):
    for name in ("pipeline-text-to-speech", "model-generate-voice-preset", "model-generate-no-preset"):
        result = installed[name]
        assert result.produced["sample_rate"] == checks.SAMPLE_RATE_HZ
        assert result.produced["samples"] > 0 and len(result.produced["pcm16_sha256"]) == 16
        assert result.produced["duration_s"] == round(result.produced["samples"] / checks.SAMPLE_RATE_HZ, 4)
        # Read from the layout's generation_config.json: the Hub file samples at 0.7 / 0.7 / 0.5.
        assert result.defaults["semantic_config.do_sample"] is True
        assert result.defaults["semantic_config.temperature"] == 0.7
        assert result.defaults["fine_acoustics_config.temperature"] == 0.5
    assert "generate.history_prompt" in installed["model-generate-voice-preset"].defaults


def test_a_seeded_default_call_is_deterministic(installed, layout, tmp_path):
    again = run_one("model-generate-voice-preset", layout, tmp_path)
    assert again.produced == installed["model-generate-voice-preset"].produced


def test_changed_defaults_name_the_parameter():
    assert changed_defaults({"temperature": 0.7, "top_k": 50}, {"temperature": 1.0, "top_k": 50}) == [
        "temperature: 0.7 -> 1.0"
    ]
    assert changed_defaults({"a": 1}, {"a": 1, "b": 2}) == ["b: '(absent)' -> 2"]
    assert changed_defaults({"a": 1}, {"a": 1}) == []


def test_audio_summary_refuses_what_is_not_audio():
    with pytest.raises(AssertionError, match="non-finite"):
        audio_summary(np.array([0.0, np.nan]), 24_000)
    with pytest.raises(AssertionError, match="one non-empty mono signal"):
        audio_summary(np.zeros((2, 10)), 24_000)


# --- known-bad twins: one entry point broken, as an upstream release breaks it -------------------


def _raise(error: Exception):
    def broken(*args, **kwargs):
        raise error

    return broken


def break_pipeline(monkeypatch):
    from transformers.pipelines import text_to_audio

    # transformers 4.46.0.dev0's text-to-audio pipeline (huggingface/transformers#33779).
    monkeypatch.setattr(
        text_to_audio.TextToAudioPipeline,
        "_forward",
        _raise(TypeError("GenerationMixin.generate() got multiple values for keyword argument 'generation_config'")),
    )
    return "TypeError"


def break_processor(monkeypatch):
    from transformers import BarkProcessor

    original = BarkProcessor.__call__

    def without_history(self, *args, **kwargs):
        encoded = original(self, *args, **kwargs)
        encoded.pop("history_prompt", None)
        return encoded

    monkeypatch.setattr(BarkProcessor, "__call__", without_history)
    return "SurfaceFailure"


def break_generate(monkeypatch):
    from transformers import BarkModel

    monkeypatch.setattr(BarkModel, "generate", _raise(RuntimeError("Expected all tensors to be on the same device")))
    return "RuntimeError"


def break_generation_config(monkeypatch):
    """The model loads without Bark's generation config (huggingface/transformers#28327)."""
    from transformers import BarkModel, GenerationConfig

    original = BarkModel.from_pretrained.__func__

    def plain_config(cls, *args, **kwargs):
        model = original(cls, *args, **kwargs)
        model.generation_config = GenerationConfig()
        return model

    monkeypatch.setattr(BarkModel, "from_pretrained", classmethod(plain_config))
    return "AttributeError"


def break_save(monkeypatch):
    from transformers import BarkModel

    monkeypatch.setattr(
        BarkModel,
        "save_pretrained",
        _raise(AttributeError("'BarkGenerationConfig' object has no attribute 'early_stopping'")),
    )
    return "AttributeError"


def break_dtype(monkeypatch):
    """from_pretrained ignores the dtype it is given."""
    from transformers import BarkModel

    original = BarkModel.from_pretrained.__func__

    def float32(cls, *args, dtype=None, torch_dtype=None, **kwargs):
        return original(cls, *args, **kwargs)

    monkeypatch.setattr(BarkModel, "from_pretrained", classmethod(float32))
    return "SurfaceFailure"


def break_attention(monkeypatch):
    """The attention implementation asked for computes something else (one weight off)."""
    import torch
    from transformers import BarkModel

    original = BarkModel.from_pretrained.__func__
    monkeypatch.setattr(BarkModel, "_supports_sdpa", True, raising=False)

    def perturbed(cls, *args, attn_implementation=None, **kwargs):
        model = original(cls, *args, **kwargs)
        if attn_implementation is not None:
            with torch.no_grad():
                model.semantic.layers[0].attn.att_proj.weight.mul_(-1.0)
        return model

    monkeypatch.setattr(BarkModel, "from_pretrained", classmethod(perturbed))
    return "SurfaceFailure"


def break_output_lengths(monkeypatch):
    from transformers import BarkModel

    original = BarkModel.generate

    @functools.wraps(original)  # the signature still offers return_output_lengths
    def zero_lengths(self, *args, **kwargs):
        audio, lengths = original(self, *args, **kwargs)
        return audio, lengths * 0

    monkeypatch.setattr(BarkModel, "generate", zero_lengths)
    return "SurfaceFailure"


def break_import(monkeypatch):
    from bark_ablation.releases import import_contacts

    def failed(module, **kwargs):
        return import_contacts.ImportContacts(
            module, (), (), "ImportError: cannot import name is_offline_mode", 1.0, 2.0
        )

    monkeypatch.setattr(import_contacts, "count_import_contacts", failed)
    return "SurfaceFailure"


TWINS = {
    "pipeline-text-to-speech": break_pipeline,
    "pipeline-text-to-speech-forward-params": break_pipeline,
    "pipeline-text-to-speech-voice-preset": break_pipeline,
    "pipeline-text-to-audio": break_pipeline,
    "pipeline-text-to-audio-forward-params": break_pipeline,
    "processor-voice-preset-name": break_processor,
    "processor-voice-preset-npz": break_processor,
    "model-generate-voice-preset": break_generate,
    "model-generate-no-preset": break_generate,
    "generation-config-sample-rate": break_generation_config,
    "save-pretrained-round-trip": break_save,
    "dtype-bfloat16": break_dtype,
    "attn-implementation-eager": break_attention,
    "attn-implementation-sdpa": break_attention,
    "batched-padding-output-lengths": break_output_lengths,
    "import-network-refused": break_import,
}


def test_every_check_has_a_twin():
    """enable-cpu-offload's twin needs CUDA: tests/releases/test_gpu_surface.py runs it on GPU runners."""
    assert set(TWINS) | NEEDS_CUDA == set(CHECK_NAMES)


@pytest.mark.parametrize("name", sorted(TWINS))
def test_a_broken_entry_point_is_reported_as_failing(name, layout, tmp_path, monkeypatch):
    expected_type = TWINS[name](monkeypatch)
    result = run_one(name, layout, tmp_path)
    assert result.status == FAILS, f"{name} did not fail: {result.status} {result.reason}"
    assert result.error_type == expected_type
    assert result.error and result.where and ":" in result.where


# --- golden: what a default call produces, per tested release ------------------------------------

REPO_ROOT = Path(__file__).resolve().parents[2]


def test_the_installed_release_matches_its_golden_surface_record(installed):
    """Defaults are behaviour: a release (or a dependency) that changes a default, or what a seeded
    default call produces, shows here naming the check and the parameter."""
    from importlib import metadata

    from bark_ablation.releases.surface import GOLDEN_DIR, golden_differences, golden_path, golden_record

    version = metadata.version("transformers")
    path = golden_path(REPO_ROOT / GOLDEN_DIR, "transformers", version)
    if not path.is_file():
        pytest.skip(
            f"no surface golden record for transformers {version} at {path}; write one with "
            f"`python -m bark_ablation.releases.surface transformers --write-golden {GOLDEN_DIR}`"
        )
    differences = golden_differences(json.loads(path.read_text()), golden_record(list(installed.values())))
    assert not differences, "\n".join(differences)


def test_a_changed_default_is_named_against_the_golden_record(installed):
    """Known-bad twin: the golden record with one default and one output changed."""
    from bark_ablation.releases.surface import golden_differences, golden_record

    record = golden_record(list(installed.values()))
    changed = json.loads(json.dumps(record))
    changed["model-generate-voice-preset"]["defaults"]["semantic_config.temperature"] = 1.0
    changed["pipeline-text-to-speech"]["produced"]["samples"] += 320
    changed["attn-implementation-eager"]["status"] = FAILS
    assert golden_differences(changed, record) == [
        "pipeline-text-to-speech: produced: samples: "
        f"{record['pipeline-text-to-speech']['produced']['samples'] + 320} -> "
        f"{record['pipeline-text-to-speech']['produced']['samples']}",
        "model-generate-voice-preset: defaults: semantic_config.temperature: 1.0 -> 0.7",
        "attn-implementation-eager: status: fails -> works",
    ]


def test_the_surface_command_writes_a_golden_record(tmp_path, capsys):
    from bark_ablation.releases.surface import main

    assert main(["transformers", "--check", "generation-config-sample-rate", "--write-golden", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "generation-config-sample-rate: works: sample_rate 24000" in out
    (written,) = tmp_path.glob("transformers-*.json")
    assert json.loads(written.read_text()) == {
        "generation-config-sample-rate": {
            "defaults": {},
            "error_type": None,
            "produced": {"sample_rate": 24000},
            "status": "works",
        }
    }


def test_where_names_the_top_level_package_of_a_checkout(tmp_path):
    """A checkout under a directory that shares a package's name (``~/src/bark``) still names
    ``bark_ablation/...``; a source checkout of transformers names ``transformers/...``."""
    from bark_ablation.releases.surface import _package_root

    checkout = tmp_path / "bark" / "bark_ablation" / "releases"
    checkout.mkdir(parents=True)
    (tmp_path / "bark" / "bark_ablation" / "__init__.py").write_text("")
    (checkout / "__init__.py").write_text("")
    parts = (checkout / "surface.py").parts
    assert parts[_package_root(parts) :] == ("bark_ablation", "releases", "surface.py")
    source = tmp_path / "transformers" / "src" / "transformers" / "models" / "bark"
    source.mkdir(parents=True)
    for package in (source.parent.parent, source.parent, source):
        (package / "__init__.py").write_text("")
    parts = (source / "modeling_bark.py").parts
    assert parts[_package_root(parts) :] == ("transformers", "models", "bark", "modeling_bark.py")


def test_checks_give_the_callers_generators_back(layout, tmp_path):
    import random

    import torch

    random.seed(5)
    np.random.seed(5)
    torch.manual_seed(5)
    expected = (random.random(), np.random.random(), torch.rand(1).item())
    random.seed(5)
    np.random.seed(5)
    torch.manual_seed(5)
    run_one("model-generate-no-preset", layout, tmp_path)
    assert (random.random(), np.random.random(), torch.rand(1).item()) == expected


def test_the_surface_command_names_an_unknown_check(capsys):
    from bark_ablation.releases.surface import main

    assert main(["transformers", "--check", "no-such-call"]) == 2
    assert "surface: unknown check(s) no-such-call for transformers" in capsys.readouterr().err


def test_a_round_trip_that_changes_the_weights_is_reported_as_failing(layout, tmp_path, monkeypatch):
    """Known-bad twin for the round trip's comparison itself: the reload comes back with one weight off."""
    import torch
    from transformers import BarkModel

    original = BarkModel.from_pretrained.__func__

    def perturbed_reload(cls, path, *args, **kwargs):
        model = original(cls, path, *args, **kwargs)
        if "round-trip" in str(path):
            with torch.no_grad():
                model.semantic.layers[0].attn.att_proj.weight.mul_(-1.0)
        return model

    monkeypatch.setattr(BarkModel, "from_pretrained", classmethod(perturbed_reload))
    result = run_one("save-pretrained-round-trip", layout, tmp_path)
    assert (result.status, result.error_type) == (FAILS, "SurfaceFailure")
    assert result.error.startswith("after save_pretrained / from_pretrained: greedy audio differs")


@pytest.mark.parametrize("name", ["processor-voice-preset-name", "processor-voice-preset-npz"])
def test_a_processor_that_loads_other_arrays_is_reported_as_failing(name, layout, tmp_path, monkeypatch):
    """Known-bad twin for the array comparison: the history prompt comes back shifted by one."""
    from transformers import BarkProcessor

    original = BarkProcessor.__call__

    def shifted(self, *args, **kwargs):
        encoded = original(self, *args, **kwargs)
        history = encoded.get("history_prompt")
        if history is not None:
            history["semantic_prompt"] = history["semantic_prompt"] + 1
        return encoded

    monkeypatch.setattr(BarkProcessor, "__call__", shifted)
    result = run_one(name, layout, tmp_path)
    assert (result.status, result.error_type) == (FAILS, "SurfaceFailure")
    assert "history_prompt['semantic_prompt']" in result.error
