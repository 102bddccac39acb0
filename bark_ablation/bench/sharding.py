"""Splitting a suite across CI jobs and GPUs.

* :func:`parse_shard` / :func:`in_shard`: ``--bark-shard i/n`` keeps the tests whose node id hashes to
  shard ``i`` of ``n`` (CRC-32 of the node id, so the split is the same on every machine and does
  not depend on collection order). Run shards ``1/n`` ... ``n/n`` in a CI matrix; together they
  run every test exactly once.
* :func:`worker_device`: under pytest-xdist, ``--bark-device cuda`` gives worker ``gwK`` the GPU
  ``cuda:K mod device_count``, one GPU per worker.

Results merge afterwards: pytest-benchmark's ``--benchmark-json`` per shard, and a run
directory per study shard (``bark-ablation run --seeds`` on disjoint seeds).
"""

from __future__ import annotations

import zlib

from bark_ablation.core.errors import ParamsError


def parse_shard(text: str) -> tuple[int, int]:
    """``"i/n"`` -> ``(i, n)`` with 1 <= i <= n; ParamsError naming the rule otherwise."""
    try:
        index, count = (int(part) for part in text.split("/"))
    except ValueError:
        raise ParamsError("shard", f"must be 'i/n' with integers, e.g. '2/4', got {text!r}") from None
    if not 1 <= index <= count:
        raise ParamsError("shard", f"must satisfy 1 <= i <= n, got {text!r}")
    return index, count


def in_shard(nodeid: str, index: int, count: int) -> bool:
    """Whether the test ``nodeid`` belongs to shard ``index`` (1-based) of ``count``."""
    return zlib.crc32(nodeid.encode()) % count == index - 1


def worker_device(device: str, worker: str | None, device_count: int) -> str:
    """``device`` for one pytest-xdist worker: plain ``cuda`` becomes ``cuda:K mod device_count``
    for worker ``gwK``; anything else (cpu, an explicit ``cuda:N``, no worker) is unchanged."""
    if device != "cuda" or not worker or not worker.startswith("gw") or device_count < 1:
        return device
    return f"cuda:{int(worker[2:]) % device_count}"
