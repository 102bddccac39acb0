"""Speaker similarity (SECS): validated on a panel of known synthetic voices, and clear errors
for audio it cannot score."""

from __future__ import annotations

import json
import time

import numpy as np
import pytest
from scipy.io import wavfile

from bark_ablation.cli import main
from bark_ablation.study.metric_validation import (
    MIN_AUC,
    PANEL_SENTENCES,
    PANEL_VOICES,
    espeak_available,
    validate,
)
from bark_ablation.study.similarity import (
    AudioError,
    embed,
    load_audio,
    prompt_reference_audio,
    score_files,
    secs,
)
from bark_ablation.study.speaker_encoders import ENCODERS, fetch_command, missing_files

needs_espeak = pytest.mark.skipif(
    espeak_available() is None, reason="needs espeak-ng (Debian package espeak-ng; .ci/run installs it)"
)


@pytest.fixture(scope="module")
def panel_files(tmp_path_factory):
    """{(voice, sentence): WAV} of the validation panel."""
    from bark_ablation.study.metric_validation import synthesize_panel

    return synthesize_panel(tmp_path_factory.mktemp("panel"))


def embed_panel(paths, encoder: str = "resemblyzer"):
    """{(voice, sentence): embedding} by ``encoder``, and the seconds per embedding."""
    embed(*load_audio(next(iter(paths.values()))), encoder=encoder)  # load the encoder outside the timing
    started = time.perf_counter()
    embeddings = {key: embed(*load_audio(path), encoder=encoder) for key, path in paths.items()}
    return paths, embeddings, (time.perf_counter() - started) / len(paths)


@pytest.fixture(scope="module")
def panel(panel_files):
    return embed_panel(panel_files)


@needs_espeak
@pytest.mark.parametrize("encoder", list(ENCODERS))
def test_metric_separates_known_voices(panel_files, encoder, record_property):
    """For every encoder whose weights this machine has (the real ones: the tiny test model is
    never in the real cache); the others skip, naming what is missing."""
    if encoder == "ecapa-voxceleb":
        pytest.importorskip("speechbrain", reason="ecapa-voxceleb needs the [ecapa] extra (SpeechBrain)")
    missing = missing_files(encoder)
    if missing:
        pytest.skip(
            f"speaker encoder {encoder!r}: {len(missing)} file(s) not cached, e.g. {missing[0]}; "
            f"fetch: {fetch_command(encoder)}"
        )
    _, embeddings, seconds_per_embedding = embed_panel(panel_files, encoder)
    result = validate(embeddings)
    for name, value in {**result.to_dict(), "seconds_per_embedding": seconds_per_embedding}.items():
        record_property(name, value)
    print(
        f"SECS validation ({encoder}): {len(PANEL_VOICES)} voices x {len(PANEL_SENTENCES)} sentences: "
        f"AUC {result.auc:.4f}, same {result.same_mean:.3f} (n={result.n_same}), different "
        f"{result.different_mean:.3f} (n={result.n_different}), {seconds_per_embedding * 1000:.0f} ms per embedding"
    )
    assert result.auc >= MIN_AUC
    assert result.same_mean > result.different_mean


@needs_espeak
def test_the_validation_fails_for_a_metric_that_ignores_the_speaker(panel):
    """Known-bad metric: embeddings that carry no speaker information score near chance."""
    _, embeddings, _ = panel
    rng = np.random.default_rng(0)
    random_embeddings = {key: rng.standard_normal(256) for key in embeddings}
    assert validate(random_embeddings).auc < MIN_AUC
    sentence_only = {key: embeddings[(PANEL_VOICES[0], key[1])] for key in embeddings}  # speaker erased
    assert validate(sentence_only).auc < MIN_AUC


def test_identical_audio_scores_one_and_a_change_of_voice_scores_less(tiny_generations):
    scf, none = tiny_generations["scf"], tiny_generations["---"]
    reference = embed(scf.audio, scf.sample_rate)
    assert secs(reference, embed(scf.audio.copy(), scf.sample_rate)) == pytest.approx(1.0, abs=1e-5)
    assert secs(reference, embed(none.audio, none.sample_rate)) < 1.0


def test_prompt_reference_audio_is_the_prompt_decoded(voice_prompts, tiny_models):
    prompt = voice_prompts["en_speaker_0"]
    audio = prompt_reference_audio(prompt, tiny_models)
    assert audio.dtype == np.float32 and audio.shape == (prompt.n_frames * 320,)


@pytest.mark.parametrize(
    "audio, rule",
    [
        (np.zeros(24_000, np.float32), "is silent"),
        (np.full(24_000, 1e-5, np.float32), "is silent"),
        (np.zeros((2, 24_000), np.float32) + 0.1, "must be one non-empty channel"),
        (np.array([], np.float32), "must be one non-empty channel"),
        (np.where(np.arange(24_000) == 7, np.nan, 0.1).astype(np.float32), "NaN or infinite"),
        (
            np.random.default_rng(0).standard_normal(2_400).astype(np.float32) * 0.1,
            "is 0.10 s long; needs at least 0.3 s",
        ),
    ],
)
def test_unusable_audio_is_refused_with_the_rule(audio, rule):
    with pytest.raises(AudioError, match=rule):
        embed(audio, 24_000, source="x.wav")


def test_unreadable_file_is_named(tmp_path):
    broken = tmp_path / "broken.wav"
    broken.write_bytes(b"RIFF nonsense")
    with pytest.raises(AudioError, match=f"audio {broken}: samples: unreadable"):
        score_files(broken, [broken])


def test_cli_prints_score_tab_path_and_json(tiny_generations, tmp_path, capsys):
    paths = []
    for cell in ("scf", "---"):
        path = tmp_path / f"{cell.replace('-', 'n')}.wav"
        wavfile.write(path, 24_000, tiny_generations[cell].audio)
        paths.append(path)
    assert main(["similarity", str(paths[0]), str(paths[0]), str(paths[1])]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split("\t")[1] for line in lines] == [str(paths[0]), str(paths[1])]
    assert float(lines[0].split("\t")[0]) == pytest.approx(1.0, abs=1e-4)
    assert main(["similarity", "--json", str(paths[0]), str(paths[1])]) == 0
    payload = json.loads(capsys.readouterr().out)
    assert payload["scores"][0]["path"] == str(paths[1]) and -1 <= payload["scores"][0]["secs"] <= 1


def test_cli_rejects_silent_audio_with_one_line(tmp_path, capsys):
    silent = tmp_path / "silent.wav"
    wavfile.write(silent, 24_000, np.zeros(24_000, np.float32))
    assert main(["similarity", str(silent), str(silent)]) == 2
    error = capsys.readouterr().err
    assert error.startswith(f"bark-ablation: error: audio {silent}: samples: is silent")
