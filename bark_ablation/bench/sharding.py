"""Splitting a suite across CI jobs and GPUs.

Across CI jobs: pytest-split (``--splits N --group K``), by the per-test durations recorded in
:data:`DURATIONS_FILE`. Measured on this suite (1,410 tests, 4 groups, each group one process
on one core of a 2-core AMD EPYC, CPU seconds): pytest-split's default ``duration_based_chunks``
gave 131 / 119 / 207 / 139 s (slowest 1.39x the mean of 149 s, 594 s in all); its
``least_duration`` 235 / 272 / 245 / 274 s (1.07x the mean of 257 s, 1,027 s); the CRC-32 split
of node ids this module used to do 266 / 256 / 251 / 289 s (1.09x the mean of 266 s, 1,062 s).
The last two balance better around their mean but scatter every file over every group, so each
group builds the session fixtures (regression matrices, studies, numba's kernels) again: the
hash's slowest group took 40 % longer than the chunks' slowest, and the whole split 79 % more
CPU. The chunks keep files together, so the default algorithm is the one to use. A
test the durations file lacks is given the mean duration, so the file only needs refreshing
when the suite's shape changes (:func:`missing_durations` says how much it lacks).

Across GPUs: :func:`worker_device`: under pytest-xdist, ``--bark-device cuda`` gives worker
``gwK`` the GPU ``cuda:K mod device_count``, one GPU per worker.

Results merge afterwards: pytest-benchmark's ``--benchmark-json`` per job, and a run directory
per study shard (``bark-ablation run --seeds`` on disjoint seeds).
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path

DURATIONS_FILE = ".test_durations"
"""pytest-split's durations file, at the repository root (its default path)."""
REFRESH_DURATIONS_COMMAND = ".venv/bin/python -m pytest -n 2 --dist loadfile --store-durations --clean-durations"
"""The README's command that records :data:`DURATIONS_FILE` again (the whole suite, about 6 minutes on 2 cores)."""


def read_durations(path: Path) -> dict[str, float]:
    """``{node id: seconds}`` from a pytest-split durations file."""
    return {str(nodeid): float(seconds) for nodeid, seconds in json.loads(path.read_text(encoding="utf-8")).items()}


def missing_durations(nodeids: Iterable[str], durations: dict[str, float]) -> list[str]:
    """The node ids that ``durations`` has no time for (pytest-split gives them the mean)."""
    return [nodeid for nodeid in nodeids if nodeid not in durations]


def worker_device(device: str, worker: str | None, device_count: int) -> str:
    """``device`` for one pytest-xdist worker: plain ``cuda`` becomes ``cuda:K mod device_count``
    for worker ``gwK``; anything else (cpu, an explicit ``cuda:N``, no worker) is unchanged."""
    if device != "cuda" or not worker or not worker.startswith("gw") or device_count < 1:
        return device
    return f"cuda:{int(worker[2:]) % device_count}"
