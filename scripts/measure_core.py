"""Measure the 8-cell matrix with and without stage reuse, and the harness's overhead over
calling Bark's stage functions directly. Prints figures; asserts nothing.

    python scripts/measure_core.py --max-duration 2.0 --repeats 5
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from bark_ablation import ALL_CONDITIONINGS, GenerationParams, generate, load_prompt, run_matrix
from bark_ablation.core.conditioning import Stage
from bark_ablation.core.seeding import stage_seed
from bark_ablation.implementations.registry import activated, get_model_set

TEXT = "When I was a young boy, my father took me into the city."


def direct_bark_cell(generation, text, prompt, cell, seed, params):
    """One cell through Bark's functions with nothing of the harness around them."""
    history = prompt.as_bark_dict()
    torch.manual_seed(stage_seed(seed, "semantic"))
    semantic = generation.generate_text_semantic(
        text,
        history if cell.conditions(Stage.SEMANTIC) else None,
        temp=params.semantic_temp,
        silent=True,
        min_eos_p=params.min_eos_p,
        max_gen_duration_s=params.max_duration_s,
        use_kv_caching=True,
    )
    torch.manual_seed(stage_seed(seed, "coarse"))
    coarse = generation.generate_coarse(
        semantic,
        history if cell.conditions(Stage.COARSE) else None,
        temp=params.coarse_temp,
        silent=True,
        use_kv_caching=True,
    )
    torch.manual_seed(stage_seed(seed, "fine"))
    fine = generation.generate_fine(coarse, history if cell.conditions(Stage.FINE) else None, temp=params.fine_temp)
    return generation.codec_decode(fine)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--max-duration", type=float, default=2.0)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--prompt", default="en_speaker_0")
    args = parser.parse_args()
    params = GenerationParams(max_duration_s=args.max_duration)
    prompt = load_prompt(args.prompt)
    model_set = get_model_set("tiny", "cpu")
    run_matrix(TEXT, prompt, [0], params=params, model_set=model_set)  # warm-up

    def timed(fn):
        samples = []
        for _ in range(args.repeats):
            start = time.perf_counter()
            fn()
            samples.append(time.perf_counter() - start)
        return statistics.median(samples), min(samples)

    reuse = timed(lambda: run_matrix(TEXT, prompt, [0], params=params, model_set=model_set))
    fresh = timed(lambda: [generate(TEXT, prompt, c, 0, params, model_set=model_set) for c in ALL_CONDITIONINGS])
    with activated(model_set):
        import bark.generation as generation

        direct = timed(lambda: [direct_bark_cell(generation, TEXT, prompt, c, 0, params) for c in ALL_CONDITIONINGS])
    print(
        f"torch threads {torch.get_num_threads()}, {args.max_duration} s cap, prompt {args.prompt}, "
        f"{args.repeats} repeats (median / min, seconds)"
    )
    print(f"8-cell matrix with reuse:       {reuse[0]:.3f} / {reuse[1]:.3f}")
    print(f"8 cells, each run fresh:        {fresh[0]:.3f} / {fresh[1]:.3f}")
    print(f"8 cells, Bark called directly:  {direct[0]:.3f} / {direct[1]:.3f}")
    print(f"reuse speed-up (fresh / reuse): {fresh[0] / reuse[0]:.2f}x")
    print(
        f"harness overhead (fresh vs direct): {100 * (fresh[0] / direct[0] - 1):+.2f}% median, "
        f"{100 * (fresh[1] / direct[1] - 1):+.2f}% min"
    )


if __name__ == "__main__":
    main()
