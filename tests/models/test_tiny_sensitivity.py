"""The tiny model set notices every input of every stage, and only what Bark's windows keep.

A regression suite on models that ignore their inputs cannot catch a bug in how Bark builds
those inputs. For each stage and each input (text, each part of the history, the previous
stage's tokens) one token is changed and the stage is rerun with the same seed:

* inside Bark's windows the output must change for at least one of four seeds (it depends on
  that token; the seeds are tried in turn until one shows it);
* outside the windows (semantic history beyond the last 256 tokens, coarse history beyond 630
  interleaved tokens, fine history beyond 512 frames, and the last coarse frame that Bark drops
  "for time alignment") it must change for none of them.

Measured with the tiny set's gains, over 16 seeds, en_speaker_3, 1 s of audio: text 16/16,
semantic_prompt last token 7/16, 256th from the end 16/16; coarse stage: semantic input 16/16,
semantic_prompt last 16/16, coarse_prompt second-last frame 15/16; fine stage: coarse input
16/16, fine_prompt last frame 16/16, 512th from the end 16/16; every out-of-window case 0/16.
With PyTorch-default-scale weights (std 0.02 everywhere, heads x30) the coarse stage ignored a
changed semantic input token in every seed tried.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pytest

from bark_ablation.core.seeding import seeded_stage
from bark_ablation.implementations.registry import activated

SEEDS = (0, 1, 2, 3)
TEXT = "When I was a young boy, my father took me into the city."
LONG_PROMPT = "en_speaker_3"  # 466 semantic tokens, 700 frames: longer than every window


def bumped(array: np.ndarray, index, upper: int) -> np.ndarray:
    """Copy of ``array`` with the token at ``index`` replaced by another valid token."""
    changed = np.array(array, copy=True)
    changed[index] = (changed[index] + 7) % upper
    return changed


@dataclass(frozen=True)
class Case:
    """Change one token of one input of ``stage``; ``inside_window`` says whether Bark reads it.

    ``changed_input`` is ``"input"`` (the text, or the previous stage's tokens) or the history
    part (``"semantic"``, ``"coarse"``, ``"fine"``) that ``change`` alters.
    """

    id: str
    stage: str
    inside_window: bool
    changed_input: str
    change: Callable


def run_case(case: Case, runner, prompt, upstream: dict, params, *, changed: bool) -> np.ndarray:
    """Run ``case.stage`` on its usual inputs, or with ``case.change`` applied to one of them."""
    stage_input = {"semantic": TEXT, "coarse": upstream["semantic"], "fine": upstream["coarse"]}[case.stage]
    history = prompt
    if changed and case.changed_input == "input":
        stage_input = case.change(stage_input)
    elif changed:
        part = case.changed_input
        history = prompt.with_arrays("changed", **{part: case.change(getattr(prompt, part))})
    return getattr(runner, case.stage)(stage_input, history, params)


SEM, CODE = 10_000, 1024
CASES = [
    Case("semantic/text", "semantic", True, "input", lambda t: t.replace("boy", "bay")),
    Case("semantic/semantic_prompt-last", "semantic", True, "semantic", lambda a: bumped(a, -1, SEM)),
    Case("semantic/semantic_prompt-256th-from-end", "semantic", True, "semantic", lambda a: bumped(a, -256, SEM)),
    Case("semantic/semantic_prompt-257th-from-end", "semantic", False, "semantic", lambda a: bumped(a, -257, SEM)),
    Case("coarse/semantic-input", "coarse", True, "input", lambda a: bumped(a, 10, SEM)),
    Case("coarse/semantic_prompt-last", "coarse", True, "semantic", lambda a: bumped(a, -1, SEM)),
    Case("coarse/semantic_prompt-beyond-209", "coarse", False, "semantic", lambda a: bumped(a, -211, SEM)),
    Case("coarse/coarse_prompt-second-last-frame", "coarse", True, "coarse", lambda a: bumped(a, (0, -2), CODE)),
    Case(
        "coarse/coarse_prompt-last-frame-dropped-by-bark", "coarse", False, "coarse", lambda a: bumped(a, (1, -1), CODE)
    ),
    Case("coarse/coarse_prompt-beyond-315-frames", "coarse", False, "coarse", lambda a: bumped(a, (0, -320), CODE)),
    Case("fine/coarse-input", "fine", True, "input", lambda a: bumped(a, (0, 10), CODE)),
    Case("fine/fine_prompt-last-frame", "fine", True, "fine", lambda a: bumped(a, (2, -1), CODE)),
    Case("fine/fine_prompt-512th-frame-from-end", "fine", True, "fine", lambda a: bumped(a, (2, -512), CODE)),
    Case("fine/fine_prompt-513th-frame-from-end", "fine", False, "fine", lambda a: bumped(a, (2, -513), CODE)),
]


@pytest.fixture(scope="module")
def upstream_tokens(tiny_models, voice_prompts, generation_params):
    """Conditioned semantic and coarse tokens of the long prompt, per seed."""
    from bark_ablation.generation.pipeline import run_matrix

    run = run_matrix(TEXT, voice_prompts[LONG_PROMPT], SEEDS, ["scf"], generation_params, model_set=tiny_models)
    return {seed: {"semantic": run.get("scf", seed).semantic, "coarse": run.get("scf", seed).coarse} for seed in SEEDS}


@pytest.fixture(scope="module")
def unchanged_outputs(tiny_models, voice_prompts, generation_params, upstream_tokens):
    """``unchanged_outputs(case, seed)``: the stage's output on its usual inputs, computed once per
    (stage, seed) and shared by every case of that stage."""
    outputs = {}

    def get(case: Case, seed: int) -> np.ndarray:
        if (case.stage, seed) not in outputs:
            with activated(tiny_models) as runner, seeded_stage(seed, case.stage, runner.device):
                outputs[case.stage, seed] = run_case(
                    case, runner, voice_prompts[LONG_PROMPT], upstream_tokens[seed], generation_params, changed=False
                )
        return outputs[case.stage, seed]

    return get


@pytest.mark.parametrize("case", CASES, ids=[case.id for case in CASES])
def test_one_changed_token(case, tiny_models, voice_prompts, generation_params, upstream_tokens, unchanged_outputs):
    prompt = voice_prompts[LONG_PROMPT]
    befores = {seed: unchanged_outputs(case, seed) for seed in SEEDS}
    changed_in = []
    with activated(tiny_models) as runner:
        for seed in SEEDS:
            before = befores[seed]
            with seeded_stage(seed, case.stage, runner.device):
                after = run_case(case, runner, prompt, upstream_tokens[seed], generation_params, changed=True)
            if before.shape != after.shape or not np.array_equal(before, after):
                changed_in.append(seed)
                if case.inside_window:
                    break  # one seed in which the output depends on the token is the proof
    if case.inside_window:
        assert changed_in, (
            f"{case.id}: the token is inside Bark's window but the {case.stage} output did not "
            f"change for any of seeds {SEEDS}: the stage ignores that input"
        )
    else:
        assert not changed_in, (
            f"{case.id}: the token is outside Bark's window but the {case.stage} output changed for seeds {changed_in}"
        )


def test_one_changed_fine_token_changes_the_audio(tiny_models, regression_matrix):
    generation = regression_matrix("en_speaker_0", 0).get("scf", 0)
    fine = bumped(generation.fine, (7, 30), CODE)
    with activated(tiny_models) as runner:
        audio = runner.decode(fine)
    changed = int(np.sum(audio != generation.audio))
    assert changed > 0, "one changed fine token left the decoded audio bit-identical"
