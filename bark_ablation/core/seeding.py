"""Per-stage seeds.

Every stage draws from torch's global generator. Seeding each stage from (seed, stage) alone
makes a stage's output a function of its inputs, its history and the seed: it does not depend
on which stages ran before it in the process. That is what lets the 8-cell matrix reuse a
stage's result across cells (see :mod:`bark_ablation.generation.pipeline`).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import numpy as np
import torch

from bark_ablation.core.conditioning import PIPELINE_STAGE_NAMES

_STAGE_STREAMS = {stage: stream for stream, stage in enumerate(PIPELINE_STAGE_NAMES, start=1)}
"""Stage name -> its stream in the seed sequence: semantic 1, coarse 2, fine 3, decode 4 (fixed: seeds depend on it)."""


def stage_seed(seed: int, stage: str) -> int:
    """The torch seed for ``stage`` (``semantic``, ``coarse``, ``fine``, ``decode``) of ``seed``.

    Derived with numpy's ``SeedSequence`` so that nearby seeds give unrelated streams and the
    value is identical on every platform; returns an integer in [0, 2**32).
    """
    return int(np.random.SeedSequence([seed, _STAGE_STREAMS[stage]]).generate_state(1)[0])


@contextlib.contextmanager
def seeded_torch(torch_seed: int, device: torch.device | str) -> Iterator[int]:
    """Seed torch's global generators with ``torch_seed``, restoring the caller's random state
    afterwards. Yields ``torch_seed``. CUDA generators are forked only when ``device`` is a CUDA
    device."""
    device = torch.device(device)
    cuda_devices = [device] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=cuda_devices):
        torch.manual_seed(torch_seed)
        yield torch_seed


@contextlib.contextmanager
def seeded_stage(seed: int, stage: str, device: torch.device | str) -> Iterator[int]:
    """Seed torch for one run of ``stage`` of ``seed`` (:func:`stage_seed`), restoring the
    caller's random state afterwards. Yields the stage seed."""
    with seeded_torch(stage_seed(seed, stage), device) as value:
        yield value
