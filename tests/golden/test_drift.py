"""Drift comparison: the calibrated tolerances let benign noise through and catch the smallest
real changes; token rows say where tokens differ; a failure is a readable table plus files a
person can listen to and look at."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from scipy.io import wavfile

from bark_ablation.golden import perturbations
from bark_ablation.golden.drift import (
    TOLERANCES,
    GoldenMismatch,
    assert_no_drift,
    compare,
    compare_audio,
    compare_tokens,
)
from bark_ablation.golden.store import GoldenKey, GoldenRequest, GoldenStore
from bark_ablation.implementations.registry import activated


@pytest.fixture(scope="module")
def goldens(tmp_path_factory, tiny_generations, voice_prompts, tiny_models):
    """``{cell: GoldenCase}`` written from :func:`tiny_generations` into a fresh store."""
    store = GoldenStore(tmp_path_factory.mktemp("golden"))
    prompt = voice_prompts["en_speaker_0"]
    cases = {}
    for cell, generation in tiny_generations.items():
        key = GoldenKey.for_generation(generation, tiny_models)
        store.write(key, generation, prompt, tiny_models)
        cases[cell] = store.load(key, GoldenRequest.for_generation(generation, prompt))
    return cases


CELLS = ["scf", "---"]


def failing(rows):
    return {row.check.split("[")[0] for row in rows if row.passed is False}


def decode_with_other_threads(models, fine):
    """Decode with another intra-op thread count than the session's (1 <-> 2)."""
    import torch

    return perturbations.decode_with_threads(models, fine, 2 if torch.get_num_threads() == 1 else 1)


BENIGN_PERTURBATIONS = [
    # (id, perturbation, always changes the audio). Another thread count changes the float
    # summation order only where the decoder's kernels split work by thread: on some CPUs it is
    # bit-identical, so it proves nothing there and is skipped, saying so. Input noise of 1e-6 is
    # about 8 float32 ulps of an embedding value: it changes the audio on every machine.
    pytest.param(decode_with_other_threads, False, id="other-thread-count"),
    pytest.param(lambda models, fine: perturbations.decode_with_input_noise(models, fine, 1e-6), True, id="noise-1e-6"),
    pytest.param(lambda models, fine: perturbations.decode_with_input_noise(models, fine, 1e-5), True, id="noise-1e-5"),
]


@pytest.mark.parametrize("cell", CELLS)
@pytest.mark.parametrize("perturb, always_changes", BENIGN_PERTURBATIONS)
def test_benign_perturbation_passes(goldens, tiny_models, cell, perturb, always_changes):
    golden = goldens[cell]
    audio = perturb(tiny_models, np.array(golden.fine))
    if np.array_equal(audio, golden.audio):
        assert not always_changes, "this perturbation must change the audio on every machine"
        pytest.skip("bit-identical audio on this CPU: the perturbation changed nothing, so it tests nothing here")
    rows = compare_audio(golden, audio, golden.sample_rate)
    assert failing(rows) == set(), "\n".join(map(str, rows))


def test_at_least_one_benign_perturbation_always_changes_the_audio():
    assert any(param.values[1] for param in BENIGN_PERTURBATIONS)


@pytest.mark.parametrize("cell", CELLS)
@pytest.mark.parametrize("codebook", range(8))
def test_one_changed_fine_code_fails(goldens, tiny_models, cell, codebook):
    golden = goldens[cell]
    with activated(tiny_models) as runner:
        audio = runner.decode(perturbations.flip_token(golden.fine, codebook, golden.fine.shape[1] // 2))
    assert "log_mel_max_frame_db" in failing(compare_audio(golden, audio, golden.sample_rate))


@pytest.mark.parametrize("cell", CELLS)
@pytest.mark.parametrize(
    "change, caught_by",
    [
        pytest.param(lambda a: perturbations.apply_gain_db(a, 0.5), {"rms_db", "log_mel_mean_abs_db"}, id="+0.5dB"),
        pytest.param(lambda a: perturbations.apply_gain_db(a, -0.5), {"rms_db", "log_mel_mean_abs_db"}, id="-0.5dB"),
        pytest.param(lambda a: perturbations.shorten(a, 0.01), {"duration_s"}, id="1%-shorter"),
    ],
)
def test_smallest_real_audio_change_fails(goldens, cell, change, caught_by):
    golden = goldens[cell]
    assert caught_by <= failing(compare_audio(golden, change(golden.audio), golden.sample_rate))


@pytest.mark.parametrize("name", sorted(TOLERANCES))
def test_each_tolerance_sits_between_its_calibration_figures(name):
    tolerance = TOLERANCES[name]
    assert tolerance.allowed(0.0) >= 10 * tolerance.noise or tolerance.relative > 0, "margin over noise < 10x"
    if tolerance.smallest_real is not None:
        assert tolerance.allowed(0.0) * 1.5 <= tolerance.smallest_real, "margin under the real change < 1.5x"


def test_unvoiced_against_unvoiced_passes_and_voiced_against_unvoiced_fails(goldens):
    golden = goldens["scf"]
    unvoiced = dataclasses.replace(golden, features={**golden.features, "f0_median_hz": None})
    features = {**golden.features, "f0_median_hz": float("nan")}
    rows = compare_audio(unvoiced, golden.audio, golden.sample_rate, obtained_features=features)
    assert "f0_median_hz" not in failing(rows)
    assert "f0_median_hz" in failing(
        compare_audio(golden, golden.audio, golden.sample_rate, obtained_features=features)
    )


def test_identical_generation_passes_every_row(goldens, tiny_generations):
    report = compare(goldens["scf"], tiny_generations["scf"], "cpu")
    assert report.passed and all(row.passed for row in report.rows)
    assert "matches its golden data" in report.headline()


@pytest.mark.parametrize(
    "stage, change, difference",
    [
        (
            "semantic",
            lambda a: np.where(np.arange(a.size) == 3, (a + 1) % 10_000, a),
            "1 of 50 differ, first at frame 3",
        ),
        ("coarse", lambda a: a[:, :-1], "shape (2, 75) -> (2, 74)"),
        (
            "fine",
            lambda a: np.where((np.arange(8)[:, None] == 7) & (np.arange(a.shape[1]) == 40), (a + 1) % 1024, a),
            "1 of 600 differ, first at frame 40, codebook 7",
        ),
        ("fine", lambda a: a.astype(np.int64), "dtype int32 -> int64"),
    ],
)
def test_token_rows_say_what_differs(goldens, tiny_generations, stage, change, difference):
    generation = tiny_generations["scf"]
    changed = dataclasses.replace(generation, **{stage: change(getattr(generation, stage))})
    rows = {row.check: row for row in compare_tokens(goldens["scf"], changed, "cpu")}
    assert rows[f"{stage} tokens"].passed is False and rows[f"{stage} tokens"].difference == difference
    assert all(row.passed for name, row in rows.items() if name != f"{stage} tokens")


def test_tokens_are_not_compared_across_device_classes(goldens, tiny_generations):
    generation = tiny_generations["scf"]
    changed = dataclasses.replace(generation, semantic=generation.semantic[::-1].copy())
    report = compare(goldens["scf"], changed, "cuda-sm90-bf16")
    assert [row.verdict for row in report.rows[:3]] == ["n/a"] * 3
    assert "device class cuda-sm90-bf16 vs golden cpu" in report.rows[0].difference
    assert report.passed


def test_drift_failure_is_a_table_and_files_to_listen_to(goldens, tiny_generations, tmp_path):
    golden = goldens["scf"]
    drifted = tiny_generations["---"]  # another cell: every stage differs
    with pytest.raises(GoldenMismatch) as raised:
        assert_no_drift(golden, drifted, "cpu", artifacts_root=tmp_path / "failures")
    message = str(raised.value)
    first_line, header = message.splitlines()[:2]
    assert "tokens differ from the semantic stage on" in first_line and "audio drifted" in first_line
    assert header.split() == ["check", "golden", "obtained", "difference", "tolerance", "result"]
    assert "FAIL" in message and "log_mel_mean_abs_db" in message
    directory = tmp_path / "failures" / golden.key.case_path()
    assert f"listen and look: {directory}" in message
    rate, audio = wavfile.read(directory / "obtained.wav")
    assert rate == 24_000 and np.array_equal(audio, drifted.audio)
    assert (directory / "golden.wav").read_bytes() == golden.audio_path.read_bytes()
    assert (directory / "spectrograms.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert (directory / "drift.txt").read_text().startswith(first_line)


@pytest.mark.parametrize("feature, step", [("rolloff_hz", 24_000 / 1024), ("voiced_fraction", 1.0)])
def test_one_frame_may_take_one_step_of_a_discrete_feature_two_may_not(goldens, feature, step):
    """Roll-off (FFT bins) and voiced fraction (pYIN decisions) are means of discrete per-frame
    values: benign noise can tip one frame on a boundary (measured: other thread count, one
    frame's roll-off one bin up in a 1 s case, 0.308 Hz of mean). One frame passes at any clip
    length; two frames fail."""
    golden = goldens["scf"]
    frames = 1 + golden.audio.size // 320
    for moved, passes in ((1, True), (2, False)):
        features = {**golden.features, feature: golden.features[feature] + moved * step / frames}
        rows = compare_audio(golden, np.array(golden.audio), golden.sample_rate, obtained_features=features)
        assert (feature not in failing(rows)) is passes, (feature, moved, [r for r in rows if r.check == feature])
