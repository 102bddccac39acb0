"""Voice prompts: loading from every source, and a validator that rejects every broken rule
with PromptError (never another exception, never Bark's bare AssertionError)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bark_ablation.core.errors import PromptError
from bark_ablation.core.prompts import VoicePrompt, load_prompt, shipped_prompt_names

N_SHIPPED = 271  # 141 v1 files (including announcer and speaker_0..9) + 130 in v2/


def test_every_shipped_preset_loads_and_validates():
    names = shipped_prompt_names()
    assert len(names) == N_SHIPPED
    for name in names:
        prompt = load_prompt(name)
        assert prompt.semantic.dtype == prompt.coarse.dtype == prompt.fine.dtype == np.int64


def test_en_speaker_0_has_the_documented_shapes():
    prompt = load_prompt("en_speaker_0")
    assert (prompt.semantic.shape, prompt.coarse.shape, prompt.fine.shape) == ((270,), (2, 405), (8, 405))


def test_speaker_presets_that_bark_refuses_by_name_load():
    from bark.generation import _load_history_prompt

    with pytest.raises(ValueError, match="history prompt not found"):
        _load_history_prompt("speaker_3")
    assert load_prompt("speaker_3").name == "speaker_3"


def test_v2_presets_load_by_name():
    assert load_prompt("v2/en_speaker_0").n_frames == 512


def test_prompt_arrays_are_read_only_copies(tmp_path):
    prompt = load_prompt("en_speaker_0")
    with pytest.raises(ValueError):
        prompt.semantic[0] = 1


def test_npz_path_and_dict_load_the_same_tokens(tmp_path):
    preset = load_prompt("en_speaker_6")
    path = tmp_path / "voice.npz"
    np.savez(path, **preset.as_bark_dict())
    from_path = load_prompt(path)
    from_dict = load_prompt(dict(preset.as_bark_dict()), name="mine")
    assert from_path.name == "voice" and from_dict.name == "mine"
    assert from_path.fingerprint == from_dict.fingerprint == preset.fingerprint


def test_unknown_preset_names_the_rule_and_suggests():
    with pytest.raises(PromptError, match="prompt 'en_speakr_0': name: not a preset .*did you mean en_speaker_0"):
        load_prompt("en_speakr_0")


def test_path_traversal_is_not_a_preset():
    with pytest.raises(PromptError, match="name"):
        load_prompt("../../generation")


def test_pickled_npz_is_refused_without_unpickling(tmp_path):
    path = tmp_path / "evil.npz"
    preset = load_prompt("en_speaker_6").as_bark_dict()
    np.savez(
        path,
        semantic_prompt=np.array([object()], dtype=object),
        coarse_prompt=preset["coarse_prompt"],
        fine_prompt=preset["fine_prompt"],
    )
    with pytest.raises(PromptError, match="not a plain .npz"):
        load_prompt(path)


@pytest.mark.parametrize(
    "content", [b"", b"not a zip file", b"PK\x03\x04truncated"], ids=["empty", "text", "truncated-zip"]
)
def test_corrupt_npz_names_the_file(tmp_path, content):
    path = tmp_path / "broken.npz"
    path.write_bytes(content)
    with pytest.raises(PromptError, match="broken.npz"):
        load_prompt(path)


def test_missing_npz_names_the_path(tmp_path):
    with pytest.raises(PromptError, match="file not found"):
        load_prompt(tmp_path / "absent.npz")


def test_non_prompt_object_is_refused():
    with pytest.raises(PromptError, match="must be a preset name, an .npz path or a mapping"):
        load_prompt(42)


def valid_arrays(n_semantic: int = 20) -> dict:
    n_frames = round(n_semantic * 1.5)
    return {
        "semantic_prompt": np.arange(n_semantic) % 10_000,
        "coarse_prompt": np.zeros((2, n_frames), dtype=np.int64),
        "fine_prompt": np.ones((8, n_frames), dtype=np.int32),
    }


RULES = [
    ("missing-key", lambda a: a.pop("fine_prompt"), "fine_prompt: missing"),
    ("semantic-2d", lambda a: a.update(semantic_prompt=a["semantic_prompt"][None]), "semantic_prompt: must be 1-D"),
    ("coarse-1d", lambda a: a.update(coarse_prompt=a["coarse_prompt"][0]), "coarse_prompt: must be 2-D"),
    (
        "float-dtype",
        lambda a: a.update(fine_prompt=a["fine_prompt"].astype(np.float32)),
        "fine_prompt: must have an integer dtype",
    ),
    (
        "bool-dtype",
        lambda a: a.update(semantic_prompt=a["semantic_prompt"] > 3),
        "semantic_prompt: must have an integer dtype",
    ),
    ("empty", lambda a: a.update(semantic_prompt=np.array([], dtype=np.int64)), "semantic_prompt: must not be empty"),
    (
        "semantic-10000",
        lambda a: a["semantic_prompt"].__setitem__(0, 10_000),
        r"semantic_prompt: tokens must be in \[0, 10000\)",
    ),
    (
        "coarse-negative",
        lambda a: a["coarse_prompt"].__setitem__((1, 0), -1),
        r"coarse_prompt: tokens must be in \[0, 1024\)",
    ),
    ("fine-1024", lambda a: a["fine_prompt"].__setitem__((7, 0), 1024), r"fine_prompt: tokens must be in \[0, 1024\)"),
    (
        "ratio",
        lambda a: a.update(semantic_prompt=np.arange(40)),
        "coarse_prompt: coarse frames / semantic tokens must round to 1.5",
    ),
    (
        "coarse-3-codebooks",
        lambda a: a.update(coarse_prompt=np.zeros((3, 30), dtype=np.int64)),
        "coarse_prompt: must have 2 codebooks",
    ),
    (
        "fine-7-codebooks",
        lambda a: a.update(fine_prompt=np.zeros((7, 30), dtype=np.int64)),
        "fine_prompt: must have 8 codebooks",
    ),
    (
        "coarse-fine-mismatch",
        lambda a: a.update(fine_prompt=a["fine_prompt"][:, :-1]),
        "fine_prompt: must have as many frames as coarse_prompt",
    ),
    ("ragged", lambda a: a.update(semantic_prompt=[[1, 2], [3]]), "semantic_prompt: not convertible"),
]


def test_valid_arrays_pass():
    VoicePrompt.from_arrays("ok", valid_arrays())


@pytest.mark.parametrize("mutate, message", [(m, msg) for _, m, msg in RULES], ids=[r[0] for r in RULES])
def test_each_rule_names_prompt_field_and_rule(mutate, message):
    arrays = valid_arrays()
    mutate(arrays)
    with pytest.raises(PromptError, match=rf"prompt 'bad': {message}"):
        VoicePrompt.from_arrays("bad", arrays)


def test_bark_itself_only_asserts_on_the_random_semantic_prompt_of_the_seed_notebook():
    """The notebook's last cell: 256 random semantic tokens with en_speaker_0's 405 coarse
    frames. Bark answers with a bare AssertionError; the validator names the rule."""
    from bark.generation import generate_coarse

    prompt = load_prompt("en_speaker_0").as_bark_dict()
    prompt["semantic_prompt"] = np.random.default_rng(0).integers(0, 10_000, size=256)
    with pytest.raises(AssertionError) as bare:
        generate_coarse(np.arange(10), history_prompt=prompt, silent=True)
    assert str(bare.value) == ""
    with pytest.raises(PromptError, match="405 / 256"):
        VoicePrompt.from_arrays("random semantic", prompt)


# Property-based: malformed prompts built from random damage to a valid one.
junk_values = st.one_of(
    st.none(),
    st.integers(),
    st.floats(allow_nan=True),
    st.text(max_size=5),
    st.binary(max_size=5),
    st.lists(st.integers(-5, 20_000), max_size=5),
    st.lists(st.lists(st.integers(0, 5), max_size=3), max_size=3),
)
dtypes = st.sampled_from([np.float16, np.float64, np.complex64, np.bool_, np.str_, object])


@st.composite
def malformed_prompts(draw):
    arrays = valid_arrays(draw(st.integers(1, 40)))
    key = draw(st.sampled_from(sorted(arrays)))
    damage = draw(st.sampled_from(["drop", "junk", "dtype", "reshape", "empty", "range", "rows", "frames"]))
    array = arrays[key]
    if damage == "drop":
        del arrays[key]
    elif damage == "junk":
        arrays[key] = draw(junk_values)
    elif damage == "dtype":
        arrays[key] = array.astype(draw(dtypes))
    elif damage == "reshape":
        extra = draw(st.sampled_from(["scalar", "add-axis"]))
        arrays[key] = array.reshape(-1)[0] if extra == "scalar" else array[None]
    elif damage == "empty":
        arrays[key] = array[..., :0]
    elif damage == "range":
        upper = 10_000 if key == "semantic_prompt" else 1024
        bad = draw(st.one_of(st.integers(-(2**40), -1), st.integers(upper, 2**40)))
        array = array.astype(np.int64)
        array.flat[draw(st.integers(0, array.size - 1))] = bad
        arrays[key] = array
    elif damage == "rows":
        rows = draw(st.integers(1, 10).filter(lambda n: n not in (2, 8)))
        arrays[key] = (
            np.zeros((rows, 3), dtype=np.int64) if key != "semantic_prompt" else np.zeros((rows, 3), dtype=np.int64)
        )
    else:  # frames: break the coarse/fine or coarse/semantic length rules
        grow = draw(st.integers(1, 50))
        arrays[key] = np.concatenate([array, array[..., :1].repeat(grow, axis=-1)], axis=-1) if array.ndim else array
    return arrays


@settings(max_examples=300, deadline=None)
@given(malformed_prompts())
def test_malformed_prompts_raise_prompt_error_only(arrays):
    try:
        VoicePrompt.from_arrays("fuzzed", arrays)
    except PromptError as error:
        assert error.field in ("semantic_prompt", "coarse_prompt", "fine_prompt")
        assert str(error).startswith("prompt 'fuzzed': ")
    else:  # only damage that left every rule intact may pass; check it really did
        semantic, coarse, fine = (np.asarray(arrays[k]) for k in ("semantic_prompt", "coarse_prompt", "fine_prompt"))
        assert coarse.shape[1] == fine.shape[1] and round(coarse.shape[1] / semantic.shape[0], 1) == 1.5


@settings(max_examples=100, deadline=None)
@given(st.dictionaries(st.sampled_from(["semantic_prompt", "coarse_prompt", "fine_prompt", "other"]), junk_values))
def test_dicts_of_junk_raise_prompt_error(arrays):
    with pytest.raises(PromptError):
        VoicePrompt.from_arrays("junk", arrays)
