"""Real-format caches: checkpoints pickled as Bark's published ones were (numpy 1.x global
names, ``model_args`` / ``model`` with the ``_orig_mod.`` prefix / ``best_val_loss`` a numpy
scalar), bark-small's coarse model at full size, EnCodec in torch hub's cache and the tokenizer
in the Hugging Face cache layout, loaded the way a user loads them (``--model-set bark-small``),
with ``weights_only=True`` and the allow-list.

Broken caches: each of the five files (three checkpoints, EnCodec, tokenizer) truncated,
garbage, another model's file, or carrying a pickled global outside the allow-list, is named in
a one-line error that says what is wrong and what to do; the CLI exits 2 with no traceback and
writes nothing.
"""

from __future__ import annotations

import functools
import json
import pickletools
import resource
import time
import warnings
import zipfile

import numpy as np
import pytest
import torch
from checkpoint_writers import (
    BARK_SMALL_COARSE_ARGS,
    CACHE_FILES,
    FAULTS,
    FOREIGN_GLOBAL,
    FOREIGN_GLOBAL_NAME,
    NUMPY1_PICKLE,
    break_file,
    cache_file,
    copy_cache,
    full_size_state_dict,
    full_size_tensor,
    locations_under,
    padded_vocabulary,
    point_environment_at,
    read_checkpoint,
    save_bark_checkpoint,
    tiny_vocabulary,
    write_fake_cache,
)

from bark_ablation import GenerationParams, cli
from bark_ablation.core import checks
from bark_ablation.core.errors import CacheFileError
from bark_ablation.generation.pipeline import run_matrix
from bark_ablation.implementations import registry as model_sets
from bark_ablation.implementations.registry import get_model_set
from bark_ablation.models.cached_weights import (
    TOKENIZER_VOCAB_SIZE,
    check_tokenizer_vocab,
    load_bark_checkpoint,
    load_cached_encodec,
    load_cached_tokenizer,
)
from bark_ablation.models.real_weights import load_cached_models
from bark_ablation.testing.matrix import REGRESSION_TEXT

TEXT = "Hello there."
PROMPT = "en_speaker_0"


@pytest.fixture(autouse=True)
def private_model_set_cache(monkeypatch):
    """Model sets are cached by name, not by cache location: each test here gets an empty cache
    of its own, and the session's (with its tiny set) is back afterwards."""
    fresh = functools.lru_cache(maxsize=8)(model_sets._cached_model_set.__wrapped__)
    monkeypatch.setattr(model_sets, "_cached_model_set", fresh)


@pytest.fixture(scope="session")
def tiny_real_format_cache(tmp_path_factory, tiny_models):
    """A valid ``bark`` cache of the tiny models in the real format, written once per session;
    tests copy it (hard links) and break their copy."""
    root = tmp_path_factory.mktemp("tiny-real-format-cache")
    write_fake_cache(locations_under(root), tiny_models, "bark")
    return root


@pytest.fixture(scope="session")
def bark_small_cache(tmp_path_factory, tiny_models):
    """A ``bark-small`` cache whose ``coarse.pt`` is bark-small's coarse model at full size
    (12 layers x 768, vocabularies 12,096; numpy-drawn weights), text and fine from the tiny set,
    EnCodec 24 kHz (full size) and the tokenizer. Written once per session."""
    from bark.model import GPT, GPTConfig

    root = tmp_path_factory.mktemp("bark-small-cache")
    start = time.perf_counter()
    coarse = full_size_state_dict(GPT, GPTConfig(**BARK_SMALL_COARSE_ARGS))
    write_fake_cache(
        locations_under(root), tiny_models, "bark-small", models={"coarse": (BARK_SMALL_COARSE_ARGS, coarse)}
    )
    del coarse
    return root, time.perf_counter() - start


def _maxrss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # kB on Linux


def _current_rss_mb() -> float:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * resource.getpagesize() / 2**20


def _pickle_globals(path) -> tuple[list[str], bytes]:
    """GLOBAL names in a torch.save archive's pickle, and the pickle itself (read, never run)."""
    with zipfile.ZipFile(path) as archive:
        stream = archive.read(next(name for name in archive.namelist() if name.endswith("/data.pkl")))
    return [arg for opcode, arg, _ in pickletools.genops(stream) if opcode.name == "GLOBAL"], stream


# The real format ---------------------------------------------------------------------------


def test_fixture_writes_barks_numpy_1_checkpoint_format(bark_small_cache):
    root, _ = bark_small_cache
    path = locations_under(root).bark_dir / "coarse.pt"
    names, stream = _pickle_globals(path)
    assert "numpy.core.multiarray scalar" in names and "numpy dtype" in names
    assert b"numpy._core" not in stream and not any(name.startswith("numpy._core") for name in names)
    assert stream[:2] == b"\x80\x02"  # pickle protocol 2, as torch.save writes by default
    with warnings.catch_warnings():
        # numpy 2 keeps numpy.core as a deprecated shim; the allow-list maps the old name
        # without importing it.
        warnings.simplefilter("error", DeprecationWarning)
        checkpoint = read_checkpoint(path)
    assert set(checkpoint) == {"model_args", "model", "best_val_loss"}
    assert checkpoint["model_args"] == BARK_SMALL_COARSE_ARGS
    assert type(checkpoint["best_val_loss"]) is np.float64 and checkpoint["best_val_loss"] == 2.5
    assert all(key.startswith("_orig_mod.") for key in checkpoint["model"])
    assert checkpoint["model"]["_orig_mod.transformer.wte.weight"].shape == (12_096, 768)
    assert sum(v.numel() for v in checkpoint["model"].values()) == 104_319_744


def test_full_size_bark_small_loads_through_the_users_path_and_generates(
    bark_small_cache, monkeypatch, record_property
):
    root, write_s = bark_small_cache
    locations = point_environment_at(monkeypatch, root)
    coarse_bytes = (locations.bark_dir / "coarse.pt").stat().st_size
    rss_before, maxrss_before = _current_rss_mb(), _maxrss_mb()
    start = time.perf_counter()
    model_set = get_model_set("bark-small", "cpu")
    load_s = time.perf_counter() - start
    rss_after, maxrss_after = _current_rss_mb(), _maxrss_mb()
    figures = {
        "fixture_write_s": round(write_s, 2),
        "coarse_pt_mb": round(coarse_bytes / 2**20, 1),
        "load_s": round(load_s, 2),
        "rss_growth_mb": round(rss_after - rss_before),
        "peak_rss_mb_before_load": round(maxrss_before),
        "peak_rss_mb_after_load": round(maxrss_after),
    }
    for key, value in figures.items():
        record_property(key, value)
    print("bark-small (full-size coarse) load:", json.dumps(figures))

    assert model_set.provenance["files"]["coarse"] == str(locations.bark_dir / "coarse.pt")
    coarse = model_set.models["coarse"]
    assert (coarse.config.n_layer, coarse.config.n_head, coarse.config.n_embd) == (12, 12, 768)
    name = "transformer.h.11.mlp.c_fc.weight"
    assert torch.equal(coarse.state_dict()[name], full_size_tensor(name, (3072, 768)))
    assert model_set.models["text"]["tokenizer"].vocab_size == TOKENIZER_VOCAB_SIZE

    # Every stage's history, so the full-size coarse model reads the prompt's 630-token window.
    start = time.perf_counter()
    run = run_matrix(TEXT, PROMPT, [0], ["scf"], GenerationParams(max_duration_s=0.3), model_set=model_set)
    record_property("generate_s", round(time.perf_counter() - start, 2))
    generation = run.get("scf", 0)
    checks.check_shapes(generation)
    checks.check_token_ranges(generation)
    checks.check_durations(generation)
    assert generation.coarse.shape[1] >= 15  # 0.3 s at 75 frames per second


def test_full_size_bark_small_runs_from_the_command_line(bark_small_cache, monkeypatch, tmp_path, capsys):
    root, _ = bark_small_cache
    locations = point_environment_at(monkeypatch, root)
    out = tmp_path / "run"
    assert (
        cli.main(
            [
                "run",
                "--model-set",
                "bark-small",
                "--prompt",
                PROMPT,
                "--text",
                TEXT,
                "--cells",
                "s--",
                "s-f",
                "--seeds",
                "0",
                "--no-study",
                "--max-duration",
                "0.3",
                "--quiet",
                "--out",
                str(out),
            ]
        )
        == 0
    )
    summary = json.loads((out / "summary.json").read_text())
    assert summary["model_set"]["name"] == "bark-small"
    assert str(locations.bark_dir / "coarse.pt") in json.dumps(summary)
    assert len(summary["generations"]) == 2 and (out / "audio" / "seed0_s--.wav").is_file()
    assert summary["stage_runs"] == {"semantic": 1, "coarse": 1, "fine": 2, "decode": 2}
    assert capsys.readouterr().err == ""


# Broken caches -----------------------------------------------------------------------------

EXPECTED_PROBLEM = {
    ("text", "other-model"): "made for another model: its model_args have input_vocab_size 12096, "
    "output_vocab_size 12096 (those of Bark's coarse model",
    ("coarse", "other-model"): "made for another model: its model_args have input_vocab_size 129600, "
    "output_vocab_size 10048 (those of Bark's text model",
    ("fine", "other-model"): "made for another model: its model_args have input_vocab_size 12096",
    ("encodec", "other-model"): "not EnCodec 24 kHz weights: a Bark GPT checkpoint",
    ("tokenizer", "other-model"): f"holds 161 entries where bert-base-multilingual-cased has {TOKENIZER_VOCAB_SIZE:,}",
    ("tokenizer", "truncated"): "entries where bert-base-multilingual-cased has 119,547",
    ("tokenizer", "garbage"): "not a text vocabulary: not UTF-8",
    ("tokenizer", "foreign-global"): f"not a text vocabulary: a pickle stream naming {FOREIGN_GLOBAL_NAME}; "
    "vocab.txt is read as text, never unpickled",
}
for _file in ("text", "coarse", "fine", "encodec"):
    EXPECTED_PROBLEM[_file, "truncated"] = "truncated: a zip archive without its end"
    EXPECTED_PROBLEM[_file, "garbage"] = "not a PyTorch checkpoint: neither a zip archive nor a pickle stream"
    EXPECTED_PROBLEM[_file, "foreign-global"] = (
        f"carries a pickled global outside the allow-list of weights files: {FOREIGN_GLOBAL_NAME}"
    )
WHAT = {
    "text": "Bark text checkpoint",
    "coarse": "Bark coarse checkpoint",
    "fine": "Bark fine checkpoint",
    "encodec": "EnCodec 24 kHz weights",
    "tokenizer": "tokenizer bert-base-multilingual-cased vocabulary",
}


def assert_actionable(message: str, path) -> None:
    """One line that names the file and what to do, and never suggests loosening the loader."""
    assert "\n" not in message and "\r" not in message
    assert str(path) in message
    assert "delete" in message and "fetch it again" in message and "--allow-download" in message
    assert "weights_only" not in message and "trust" not in message.lower()


def test_a_correct_real_format_cache_gives_no_error(tiny_real_format_cache, monkeypatch, tmp_path, capsys):
    """The positive control of the broken-cache cases: the same copy, unbroken, runs from the
    command line. (Loading it generates exactly what the tiny set generates:
    ``test_model_sets.py``.)"""
    root = copy_cache(tiny_real_format_cache, tmp_path / "cache")
    point_environment_at(monkeypatch, root)
    out = tmp_path / "runs" / "out"
    assert (
        cli.main(
            [
                "run",
                "--model-set",
                "bark",
                "--prompt",
                PROMPT,
                "--text",
                TEXT,
                "--cells",
                "scf",
                "--seeds",
                "0",
                "--no-study",
                "--max-duration",
                "0.3",
                "--quiet",
                "--out",
                str(out),
            ]
        )
        == 0
    )
    assert json.loads((out / "summary.json").read_text())["model_set"]["name"] == "bark"
    assert capsys.readouterr().err == ""


@pytest.mark.parametrize("fault", FAULTS)
@pytest.mark.parametrize("file", CACHE_FILES)
def test_broken_cache_file_is_named_in_one_line(tiny_real_format_cache, monkeypatch, tmp_path, capsys, file, fault):
    root = copy_cache(tiny_real_format_cache, tmp_path / "cache")
    locations = point_environment_at(monkeypatch, root)
    path = break_file(locations, file, fault)

    with pytest.raises(CacheFileError) as raised:
        get_model_set("bark", "cpu")
    error = raised.value
    assert error.path == path
    assert str(error).startswith(f"{WHAT[file]} {path}: ")
    assert EXPECTED_PROBLEM[file, fault] in error.problem, error.problem
    assert_actionable(str(error), path)

    out = tmp_path / "runs" / "out"
    assert (
        cli.main(
            [
                "run",
                "--model-set",
                "bark",
                "--prompt",
                PROMPT,
                "--text",
                TEXT,
                "--cells",
                "scf",
                "--seeds",
                "0",
                "--no-study",
                "--quiet",
                "--out",
                str(out),
            ]
        )
        == cli.EXIT_USAGE
    )
    captured = capsys.readouterr()
    assert captured.err == f"bark-ablation: error: {error}\n"
    assert "Traceback" not in captured.err and "weights_only=False" not in captured.err
    assert captured.out == ""
    assert not (tmp_path / "runs").exists()


# Each check on its own, against a file that breaks just that rule -------------------------


@pytest.fixture(scope="module")
def coarse_checkpoint(tiny_real_format_cache):
    checkpoint = read_checkpoint(locations_under(tiny_real_format_cache).bark_dir / "coarse_2.pt")
    model = {key.removeprefix("_orig_mod."): value for key, value in checkpoint["model"].items()}
    return checkpoint["model_args"], model


def _load_coarse(path):
    from bark.model import GPT, GPTConfig

    return load_bark_checkpoint(path, GPT, GPTConfig, "cpu", stage="coarse")


@pytest.mark.parametrize(
    "change, problem",
    [
        (
            lambda args, model: ({**args, "n_embd": 64}, model),
            "shapes do not match GPT: lm_head.weight (12096, 32) in the file, (12096, 64) in the model; "
            "transformer.h.0.attn.c_attn.weight (96, 32) in the file, (192, 64) in the model; ",
        ),
        (lambda args, model: ({**args, "rotary": True}, model), "model_args do not fit GPTConfig: "),
        (
            lambda args, model: ({**args, "n_head": 3}, model),
            "model_args do not describe a GPT that can be built (AssertionError)",
        ),
        (
            lambda args, model: (args, {**model, "transformer.wpe.weight": [0.0] * 4}),
            "not GPT weights: entries that are not tensors: transformer.wpe.weight",
        ),
        (
            lambda args, model: ({key: value for key, value in args.items() if key != "output_vocab_size"}, model),
            "made for another model: its model_args have no output_vocab_size",
        ),
    ],
    ids=["shapes", "unknown-model-arg", "heads-do-not-divide-width", "not-a-tensor", "missing-vocabulary"],
)
def test_checkpoint_rules(coarse_checkpoint, tmp_path, change, problem):
    path = tmp_path / "coarse_2.pt"
    save_bark_checkpoint(path, *change(*coarse_checkpoint))
    with pytest.raises(CacheFileError) as raised:
        _load_coarse(path)
    assert problem in raised.value.problem
    assert_actionable(str(raised.value), path)


def test_legacy_vocab_size_still_loads(coarse_checkpoint, tmp_path):
    """Bark's loader turns a legacy ``vocab_size`` into both vocabularies; so does ours."""
    args, model = coarse_checkpoint
    path = tmp_path / "coarse_2.pt"
    legacy = {key: value for key, value in args.items() if not key.endswith("_vocab_size")}
    save_bark_checkpoint(path, {**legacy, "vocab_size": 12_096}, model)
    assert _load_coarse(path).config.input_vocab_size == 12_096


def test_empty_and_legacy_format_files_are_named(coarse_checkpoint, tmp_path):
    path = tmp_path / "coarse_2.pt"
    path.write_bytes(b"")
    with pytest.raises(CacheFileError, match="empty \\(0 bytes\\)"):
        _load_coarse(path)
    # torch's pre-1.6 (non-zip) format: the foreign global is named from torch's own refusal.
    args, model = coarse_checkpoint
    torch.save({"model_args": args, "model": model, "hook": FOREIGN_GLOBAL}, path, _use_new_zipfile_serialization=False)
    with pytest.raises(CacheFileError, match=f"allow-list of weights files: {FOREIGN_GLOBAL_NAME} "):
        _load_coarse(path)
    torch.save(
        {"model_args": args, "model": model, "best_val_loss": np.float64(1.0)},
        path,
        _use_new_zipfile_serialization=False,
        pickle_module=NUMPY1_PICKLE,
    )
    assert _load_coarse(path).config.n_layer == args["n_layer"]


def test_encodec_with_a_missing_tensor_is_named(tiny_real_format_cache, tmp_path):
    state = read_checkpoint(locations_under(tiny_real_format_cache).encodec_path)
    state.pop("decoder.model.0.conv.conv.bias")
    path = tmp_path / "encodec_24khz-d7cc33bc.th"
    torch.save(state, path)
    with pytest.raises(
        CacheFileError,
        match=r"keys do not match EnCodec 24 kHz: missing "
        r"\['decoder.model.0.conv.conv.bias'\], unexpected \[\]",
    ):
        load_cached_encodec(path, "cpu")


@pytest.mark.parametrize(
    "content, problem",
    [
        (
            "\n".join(padded_vocabulary([t for t in tiny_vocabulary() if t != "[UNK]"])) + "\n",
            "lacks BERT's special token(s) [UNK]",
        ),
        (
            "\n".join(padded_vocabulary(tiny_vocabulary(), TOKENIZER_VOCAB_SIZE + 1)) + "\n",
            f"holds {TOKENIZER_VOCAB_SIZE + 1:,} entries",
        ),
        ("[PAD]\n\u00e9".encode()[:-1], "truncated: ends inside a UTF-8 character"),
        ("[PAD]\n\x00\n", "holds NUL bytes"),
        (b"PK\x03\x04 rest of an archive", "not a text vocabulary: a zip archive"),
    ],
    ids=["no-unk", "one-too-many", "cut-inside-a-character", "nul-bytes", "zip-archive"],
)
def test_tokenizer_vocabulary_rules(tmp_path, content, problem):
    path = tmp_path / "vocab.txt"
    path.write_bytes(content if isinstance(content, bytes) else content.encode("utf-8"))
    with pytest.raises(CacheFileError) as raised:
        check_tokenizer_vocab(path)
    assert problem in raised.value.problem
    assert_actionable(str(raised.value), path)


def test_padded_tokenizer_vocabulary_passes_and_tokenizes_like_the_tiny_one(tiny_real_format_cache, tiny_models):
    """The fake caches' tokenizer has the real entry count, and its padding never changes how a
    text tokenizes (so generation equals the tiny set's)."""
    path = cache_file(locations_under(tiny_real_format_cache), "tokenizer")
    check_tokenizer_vocab(path)  # no error
    tokenizer = load_cached_tokenizer(path)
    tiny_tokenizer = tiny_models.models["text"]["tokenizer"]
    assert tokenizer.vocab_size == TOKENIZER_VOCAB_SIZE
    for text in (TEXT, REGRESSION_TEXT, "[unused5] [UNK] [unused119000] café ##a"):
        assert tokenizer.encode(text, add_special_tokens=False) == tiny_tokenizer.encode(text, add_special_tokens=False)


def test_library_error_names_the_file_for_direct_callers(tiny_real_format_cache, tmp_path):
    root = copy_cache(tiny_real_format_cache, tmp_path / "cache")
    locations = locations_under(root)
    path = break_file(locations, "fine", "truncated")
    with pytest.raises(CacheFileError, match="fine_2.pt: truncated") as raised:
        load_cached_models("bark", "cpu", locations=locations)
    assert raised.value.path == path


def test_auto_picks_the_real_weights_when_they_are_cached(tiny_real_format_cache, monkeypatch, tmp_path):
    """`run`'s default model set: `bark` where every file is cached; the tiny set, naming the
    missing file and where it was expected, as soon as one is not (the known-bad twin)."""
    from bark_ablation.implementations.registry import choose_model_set

    root = copy_cache(tiny_real_format_cache, tmp_path / "cache")
    point_environment_at(monkeypatch, root)
    chosen, reason = choose_model_set("auto")
    assert chosen == "bark" and "are cached on this machine" in reason
    missing = locations_under(root).bark_dir / "fine_2.pt"
    missing.unlink()
    chosen, reason = choose_model_set("auto")
    assert chosen == "tiny" and f"expected at {missing}" in reason
