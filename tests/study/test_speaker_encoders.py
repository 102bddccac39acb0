"""Speaker encoders behind one seam. The WavLM path is proved without the real weights: a tiny
random WavLMForXVector saved in the Hugging Face cache layout under microsoft/wavlm-base-plus-sv
loads through the same code and embeds; a missing, a truncated and another model's cache are each
refused by name."""

from __future__ import annotations

import json
import shutil
import sys

import numpy as np
import pytest
from wavlm_cache import TINY_XVECTOR, tiny_wavlm_files

from bark_ablation import cli
from bark_ablation.core.errors import CacheFileError, MissingWeightsError, ParamsError
from bark_ablation.models.cache_layout import write_hub_snapshot
from bark_ablation.study import speaker_encoders
from bark_ablation.study.similarity import embed
from bark_ablation.study.speaker_encoders import ECAPA_REPO, WAVLM_REPO, get_encoder


def voice(seconds: float = 1.0, pitch_hz: float = 140.0, rate: int = 24_000) -> np.ndarray:
    t = np.arange(int(seconds * rate)) / rate
    return (0.3 * np.sin(2 * np.pi * pitch_hz * t) * (1 + 0.5 * np.sin(2 * np.pi * 3 * t))).astype(np.float32)


def test_a_tiny_wavlm_in_the_hub_layout_loads_and_embeds_unit_vectors_deterministically(hub_cache, tmp_path):
    write_hub_snapshot(hub_cache, WAVLM_REPO, tiny_wavlm_files(tmp_path))
    encoder = get_encoder("wavlm-base-plus-sv")
    first = embed(voice(), 24_000, encoder="wavlm-base-plus-sv")
    again = embed(voice(), 24_000, encoder="wavlm-base-plus-sv")
    other = embed(voice(pitch_hz=220.0), 24_000, encoder="wavlm-base-plus-sv")
    assert first.shape == (TINY_XVECTOR,) and abs(float(np.linalg.norm(first)) - 1) < 1e-5
    assert np.array_equal(first, again)  # deterministic
    assert not np.array_equal(first, other)  # and it depends on the audio
    assert encoder.describe()["name"] == "wavlm-base-plus-sv" and encoder.describe()["dimensions"] == TINY_XVECTOR


def test_missing_weights_are_named_with_where_and_the_command(hub_cache):
    with pytest.raises(MissingWeightsError) as error:
        get_encoder("wavlm-base-plus-sv")
    message = str(error.value)
    assert "speaker encoder 'wavlm-base-plus-sv (microsoft/wavlm-base-plus-sv)': 3 file(s) missing" in message
    assert "config.json" in message and "preprocessor_config.json" in message and "model.safetensors" in message
    assert str(hub_cache / "models--microsoft--wavlm-base-plus-sv") in message
    assert "fetch them with: hf download microsoft/wavlm-base-plus-sv" in message


def test_a_truncated_weights_file_is_refused_by_name(hub_cache, tmp_path):
    files = tiny_wavlm_files(tmp_path)
    files["model.safetensors"] = files["model.safetensors"][:1000]
    write_hub_snapshot(hub_cache, WAVLM_REPO, files)
    with pytest.raises(CacheFileError, match=r"speaker encoder 'wavlm-base-plus-sv' \(microsoft/wavlm-base-plus-sv\)"):
        get_encoder("wavlm-base-plus-sv")


def test_another_models_config_is_refused_by_name(hub_cache, tmp_path):
    write_hub_snapshot(hub_cache, WAVLM_REPO, tiny_wavlm_files(tmp_path, architectures=["WavLMForCTC"]))
    with pytest.raises(
        CacheFileError, match=r"is another model's \(model_type 'wavlm', architectures \['WavLMForCTC'\]\)"
    ):
        get_encoder("wavlm-base-plus-sv")


def test_the_default_encoder_is_resemblyzer_and_an_unknown_name_is_refused():
    assert speaker_encoders.DEFAULT_ENCODER == "resemblyzer"
    audio = voice()
    assert np.array_equal(embed(audio, 24_000), get_encoder("resemblyzer").embed(audio, 24_000))
    assert get_encoder().describe()["dimensions"] == 256
    with pytest.raises(
        ParamsError,
        match=r"--speaker-encoder: must be one of resemblyzer, wavlm-base-plus-sv, ecapa-voxceleb, got 'ecapa'",
    ):
        get_encoder("ecapa")


def test_the_similarity_command_names_its_encoder(hub_cache, tmp_path, capsys):
    import soundfile

    write_hub_snapshot(hub_cache, WAVLM_REPO, tiny_wavlm_files(tmp_path))
    reference, other = tmp_path / "a.wav", tmp_path / "b.wav"
    soundfile.write(reference, voice(), 24_000)
    soundfile.write(other, voice(pitch_hz=200.0), 24_000)
    argv = ["similarity", str(reference), str(other), "--json", "--speaker-encoder", "wavlm-base-plus-sv"]
    assert cli.main(argv) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["speaker_encoder"]["name"] == "wavlm-base-plus-sv" and -1 <= printed["scores"][0]["secs"] <= 1
    shutil.rmtree(hub_cache / "models--microsoft--wavlm-base-plus-sv")
    speaker_encoders.forget_encoders()
    assert cli.main(argv) == cli.EXIT_USAGE  # missing now: named, one error, no traceback
    assert "speaker encoder 'wavlm-base-plus-sv (microsoft/wavlm-base-plus-sv)'" in capsys.readouterr().err


def test_a_study_records_its_encoder_and_a_missing_one_stops_the_run_before_generating(hub_cache, tmp_path, capsys):
    argv = ["run", "--prompt", "en_speaker_0", "--text", "Hi there.", "--seeds", "0", "--cells=scf,---"]
    argv += ["--model-set", "tiny", "--max-duration", "0.4", "--quiet", "--speaker-encoder", "wavlm-base-plus-sv"]
    assert cli.main([*argv, "--out", str(tmp_path / "missing")]) == cli.EXIT_USAGE
    assert "fetch them with: hf download" in capsys.readouterr().err
    assert not (tmp_path / "missing").exists() and not list(tmp_path.glob(".missing*"))
    write_hub_snapshot(hub_cache, WAVLM_REPO, tiny_wavlm_files(tmp_path))
    assert cli.main([*argv, "--out", str(tmp_path / "run")]) == 0
    study = json.loads((tmp_path / "run" / "study.json").read_text())
    assert study["reference"]["speaker_encoder"]["name"] == "wavlm-base-plus-sv"


def test_a_longform_run_scores_with_the_named_encoder(hub_cache, tmp_path):
    write_hub_snapshot(hub_cache, WAVLM_REPO, tiny_wavlm_files(tmp_path))
    texts = tmp_path / "passages.txt"
    texts.write_text("One sentence here. Another one there.\n", encoding="utf-8")
    argv = ["longform", "--prompt", "en_speaker_0", "--texts-file", str(texts), "--seeds", "0", "--policies", "prompt"]
    argv += ["--model-set", "tiny", "--max-duration", "0.4", "--quiet", "--speaker-encoder", "wavlm-base-plus-sv"]
    assert cli.main([*argv, "--out", str(tmp_path / "longform")]) == 0
    drift = json.loads((tmp_path / "longform" / "drift.json").read_text())
    assert drift["speaker_encoder"]["name"] == "wavlm-base-plus-sv" and "wavlm-base-plus-sv" in drift["metric"]


def test_weights_without_the_xvector_head_are_refused_by_name(hub_cache, tmp_path):
    """A bare WavLMModel's weights under a WavLMForXVector config would load with a random head
    (other numbers at every load): refused, naming what is missing."""
    import torch
    from transformers import WavLMConfig, WavLMModel

    files = tiny_wavlm_files(tmp_path)
    config = WavLMConfig(**{k: v for k, v in json.loads(files["config.json"]).items() if k != "architectures"})
    torch.manual_seed(0)
    WavLMModel(config).save_pretrained(tmp_path / "bare")
    files["model.safetensors"] = (tmp_path / "bare" / "model.safetensors").read_bytes()
    write_hub_snapshot(hub_cache, WAVLM_REPO, files)
    with pytest.raises(CacheFileError, match=r"its weights are not a WavLMForXVector's \(missing_keys: "):
        get_encoder("wavlm-base-plus-sv")


def test_a_run_recorded_before_the_encoder_was_resumes_as_resemblyzer(tmp_path):
    from bark_ablation.study.resume import ResumableDirectory

    destination = tmp_path / "run"
    ResumableDirectory(destination).start({"seeds": [0]})  # an older run: no speaker_encoder recorded
    waiting = ResumableDirectory.resume(destination)
    options = {"speaker_encoder": "--speaker-encoder"}
    waiting.check_arguments(
        {"seeds": [0], "speaker_encoder": "resemblyzer"}, options, absent={"speaker_encoder": "resemblyzer"}
    )
    with pytest.raises(ParamsError, match=r"--speaker-encoder: differs from the interrupted run's"):
        waiting.check_arguments(
            {"seeds": [0], "speaker_encoder": "wavlm-base-plus-sv"}, options, absent={"speaker_encoder": "resemblyzer"}
        )


TINY_ECAPA = {
    "input_size": 80,
    "channels": [16, 16, 16, 16, 48],
    "kernel_sizes": [3, 5, 5, 5, 1],
    "attention_channels": 8,
    "res2net_scale": 4,
    "se_channels": 8,
    "lin_neurons": 12,
}
"""A tiny ECAPA-TDNN whose sizes differ from SpeechBrain's defaults wherever the loader reads them from shapes."""


def tiny_ecapa_checkpoint() -> bytes:
    """A random tiny ECAPA-TDNN (seeded), as embedding_model.ckpt holds it."""
    import io

    import torch
    from speechbrain.lobes.models.ECAPA_TDNN import ECAPA_TDNN

    torch.manual_seed(0)
    buffer = io.BytesIO()
    torch.save(ECAPA_TDNN(**TINY_ECAPA).state_dict(), buffer)
    return buffer.getvalue()


TINY_HYPERPARAMS = """
compute_features: !new:speechbrain.lobes.features.Fbank
    n_mels: 80
mean_var_norm: !new:speechbrain.processing.features.InputNormalization
    norm_type: sentence
    std_norm: False
embedding_model: !new:speechbrain.lobes.models.ECAPA_TDNN.ECAPA_TDNN
    input_size: 80
    channels: [16, 16, 16, 16, 48]
    kernel_sizes: [3, 5, 5, 5, 1]
    dilations: [1, 2, 3, 4, 1]
    attention_channels: 8
    res2net_scale: 4
    se_channels: 8
    lin_neurons: 12
classifier: !new:speechbrain.lobes.models.ECAPA_TDNN.Classifier
    input_size: 12
    out_neurons: 2
modules:
    compute_features: !ref <compute_features>
    mean_var_norm: !ref <mean_var_norm>
    embedding_model: !ref <embedding_model>
    classifier: !ref <classifier>
pretrainer: !new:speechbrain.utils.parameter_transfer.Pretrainer
    loadables:
        embedding_model: !ref <embedding_model>
    paths:
        embedding_model: {checkpoint}
"""
"""spkrec-ecapa-voxceleb's hyperparams.yaml in its sections (features, normalisation, model,
classifier, pretrainer), at the tiny sizes: SpeechBrain's own EncoderClassifier loads it."""


@pytest.fixture
def speechbrain():
    return pytest.importorskip("speechbrain", reason="the ecapa-voxceleb encoder needs the [ecapa] extra (SpeechBrain)")


def test_a_tiny_ecapa_in_the_hub_layout_loads_and_embeds_unit_vectors_deterministically(
    speechbrain, hub_cache, tmp_path
):
    write_hub_snapshot(hub_cache, ECAPA_REPO, {"embedding_model.ckpt": tiny_ecapa_checkpoint()})
    first = embed(voice(), 24_000, encoder="ecapa-voxceleb")
    assert first.shape == (12,) and abs(float(np.linalg.norm(first)) - 1) < 1e-5
    assert np.array_equal(first, embed(voice(), 24_000, encoder="ecapa-voxceleb"))
    assert not np.array_equal(first, embed(voice(pitch_hz=220.0), 24_000, encoder="ecapa-voxceleb"))
    described = get_encoder("ecapa-voxceleb").describe()
    assert described["dimensions"] == 12 and described["version"].startswith("speechbrain ")


def test_a_broken_or_foreign_ecapa_checkpoint_is_refused_by_name(speechbrain, hub_cache, tmp_path):
    with pytest.raises(MissingWeightsError, match=r"fetch them with: hf download speechbrain/spkrec-ecapa-voxceleb"):
        get_encoder("ecapa-voxceleb")
    checkpoint = tiny_ecapa_checkpoint()
    write_hub_snapshot(hub_cache, ECAPA_REPO, {"embedding_model.ckpt": checkpoint[:2000]})
    with pytest.raises(CacheFileError, match=r"embedding_model.ckpt .*: cannot be read"):
        get_encoder("ecapa-voxceleb")


def test_another_models_checkpoint_is_not_taken_for_an_ecapa(speechbrain, hub_cache, tmp_path):
    import io

    import torch

    buffer = io.BytesIO()
    torch.save({"encoder.weight": torch.zeros(4, 4)}, buffer)
    write_hub_snapshot(hub_cache, ECAPA_REPO, {"embedding_model.ckpt": buffer.getvalue()})
    with pytest.raises(CacheFileError, match=r"is not an ECAPA-TDNN embedding model"):
        get_encoder("ecapa-voxceleb")


def test_without_speechbrain_the_ecapa_encoder_names_the_extra(monkeypatch):
    for name in [m for m in sys.modules if m == "speechbrain" or m.startswith("speechbrain.")] + ["speechbrain"]:
        monkeypatch.setitem(sys.modules, name, None)  # as if not installed
    with pytest.raises(
        ParamsError,
        match=r"ecapa-voxceleb needs SpeechBrain: pip install -c constraints/tested.txt 'bark-ablation\[ecapa\]'",
    ):
        speaker_encoders.EcapaVoxcelebEncoder()


def test_the_ecapa_embedding_equals_speechbrains_own_encode_batch(speechbrain, hub_cache, tmp_path):
    """The same tiny checkpoint through SpeechBrain's EncoderClassifier.from_hparams (the
    repository's hyperparams.yaml sections, written here) and through the encoder: equal."""
    import librosa
    import torch
    from speechbrain.inference.speaker import EncoderClassifier

    checkpoint = tiny_ecapa_checkpoint()
    write_hub_snapshot(hub_cache, ECAPA_REPO, {"embedding_model.ckpt": checkpoint})
    source = tmp_path / "source"
    source.mkdir()
    (source / "embedding_model.ckpt").write_bytes(checkpoint)
    (source / "hyperparams.yaml").write_text(TINY_HYPERPARAMS.format(checkpoint=source / "embedding_model.ckpt"))
    reference = EncoderClassifier.from_hparams(source=str(source), savedir=str(tmp_path / "saved"))
    audio = voice()
    with torch.no_grad():
        wav16k = torch.from_numpy(librosa.resample(audio, orig_sr=24_000, target_sr=16_000))[None, :]
        expected = reference.encode_batch(wav16k)[0, 0].numpy()
    found = embed(audio, 24_000, encoder="ecapa-voxceleb")
    assert np.allclose(found, expected / np.linalg.norm(expected), atol=1e-6)
