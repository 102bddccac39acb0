"""The compare-or-regenerate workflow, directly and through the pytest options."""

from __future__ import annotations

import dataclasses
import shlex

import pytest
from plugin_projects import enable_plugin

from bark_ablation.core.errors import GoldenMissingError
from bark_ablation.golden.drift import GoldenMismatch
from bark_ablation.golden.golden_check import (
    GoldenCheck,
    GoldenMode,
    GoldenRegenerated,
    pytest_command,
)
from bark_ablation.golden.perturbations import apply_gain_db
from bark_ablation.golden.store import GoldenKey, GoldenStore


@pytest.fixture
def store(tmp_path, tiny_generation, tiny_models):
    store = GoldenStore(tmp_path / "golden")
    store.class_dir(GoldenKey.for_generation(tiny_generation, tiny_models)).mkdir(parents=True)
    return store


@pytest.mark.parametrize("ci", [None, "true"])
def test_missing_case_fails_with_the_command_and_writes_nothing(
    store, tiny_generation, voice_prompts, tiny_models, monkeypatch, ci
):
    if ci is None:
        monkeypatch.delenv("CI", raising=False)
    else:
        monkeypatch.setenv("CI", ci)
    with pytest.raises(GoldenMissingError, match="the exact command"):
        GoldenCheck(store).check(
            tiny_generation, voice_prompts["en_speaker_0"], tiny_models, command="the exact command"
        )
    assert not any(path.is_file() for path in store.root.rglob("*"))


def test_force_regen_writes_then_fails_and_the_rerun_passes(store, tiny_generation, voice_prompts, tiny_models):
    prompt = voice_prompts["en_speaker_0"]
    with pytest.raises(GoldenRegenerated, match="rerun without --bark-golden-force-regen") as raised:
        GoldenCheck(store, GoldenMode.FORCE_REGEN).check(tiny_generation, prompt, tiny_models)
    assert (raised.value.directory / "manifest.json").is_file()
    assert GoldenCheck(store).check(tiny_generation, prompt, tiny_models).passed


def test_regen_all_writes_and_passes(store, tiny_generation, voice_prompts, tiny_models):
    directory = GoldenCheck(store, GoldenMode.REGEN_ALL).check(
        tiny_generation, voice_prompts["en_speaker_0"], tiny_models
    )
    assert (directory / "audio.wav").is_file()


def test_drift_raises_with_artifacts(store, tiny_generation, voice_prompts, tiny_models, tmp_path):
    prompt = voice_prompts["en_speaker_0"]
    GoldenCheck(store, GoldenMode.REGEN_ALL).check(tiny_generation, prompt, tiny_models)
    louder = dataclasses.replace(tiny_generation, audio=apply_gain_db(tiny_generation.audio, 0.5))
    with pytest.raises(GoldenMismatch) as raised:
        GoldenCheck(store, artifacts_root=tmp_path / "failures").check(louder, prompt, tiny_models)
    assert raised.value.artifacts == tmp_path / "failures" / GoldenKey.for_generation(louder, tiny_models).case_path()
    assert {"log_mel_mean_abs_db", "rms_db"} <= {row.check for row in raised.value.report.failures}
    assert not any(row.check.endswith("tokens") for row in raised.value.report.failures)


def test_command_survives_the_shell():
    nodeid = "tests/suite/test_golden.py::test_matches_golden[s-f-en_speaker_6-seed0]"
    command = pytest_command(nodeid, "tiny", "cpu", "--bark-golden-force-regen")
    assert shlex.split(command) == [
        "python",
        "-m",
        "pytest",
        nodeid,
        "--bark-model-set",
        "tiny",
        "--bark-device",
        "cpu",
        "--bark-golden-force-regen",
    ]


INNER_TEST = """
from bark_ablation.generation.pipeline import generate
from bark_ablation.core.params import GenerationParams

def test_case(golden_check, voice_prompts, model_set):
    generation = generate("Hello.", voice_prompts["en_speaker_0"], "s--", 0,
                          GenerationParams(max_duration_s=0.2), model_set=model_set)
    golden_check(generation, voice_prompts["en_speaker_0"])
"""


@pytest.fixture
def inner(pytester):
    enable_plugin(pytester)
    pytester.makepyfile(test_inner=INNER_TEST)
    return pytester


def test_plugin_skips_a_device_class_without_golden_data_then_creates_it(inner):
    result = inner.runpytest_inprocess("-rs")
    result.assert_outcomes(skipped=1)
    result.stdout.fnmatch_lines(
        [
            "*no golden data for device class 'cpu'*",
            "*python -m pytest test_inner.py --bark-model-set tiny --bark-device cpu --bark-golden-regen-all*",
        ]
    )
    inner.runpytest_inprocess("--bark-golden-regen-all").assert_outcomes(passed=1)
    inner.runpytest_inprocess().assert_outcomes(passed=1)
    result = inner.runpytest_inprocess("--bark-golden-force-regen")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*golden data written to*rerun without --bark-golden-force-regen*"])


def test_plugin_rejects_both_regen_options(inner):
    result = inner.runpytest_inprocess("--bark-golden-force-regen", "--bark-golden-regen-all")
    result.stderr.fnmatch_lines(["*--bark-golden-force-regen and --bark-golden-regen-all: choose one*"])
    assert result.ret == pytest.ExitCode.USAGE_ERROR
