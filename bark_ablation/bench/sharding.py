"""Splitting a suite across CI jobs and GPUs.

Across CI jobs: pytest-split (``--splits N --group K``), by the per-test durations recorded in
:data:`DURATIONS_FILE`, with pytest-split's default algorithm (``duration_based_chunks``). Why:
it keeps each test file in one group, so each group builds the session fixtures (regression
matrices, studies, numba's kernels) once; ``least_duration`` and a hash of node ids balance
better around their mean but scatter every file over every group, and cost more CPU in all and
in the slowest group (measured: docs/measurements.md#ci-split-algorithms). A
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
"""The README's command that records :data:`DURATIONS_FILE` again: it runs the whole suite
(measured: docs/measurements.md#suite-duration)."""


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
