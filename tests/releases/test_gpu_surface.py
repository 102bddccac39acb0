"""transformers' Bark called as its users call it, on CUDA (``pytest -m bark_gpu``): every surface
check, ``enable_cpu_offload()`` included (the GPU workflow installs accelerate for it), and the
offload check's known-bad twin. Each test skips with its reason where torch sees no CUDA device."""

from __future__ import annotations

import pytest

from bark_ablation.releases import surface_transformers as checks
from bark_ablation.releases.surface import FAILS, NOT_APPLICABLE, WORKS, SurfaceContext, run_checks

pytestmark = pytest.mark.bark_gpu


@pytest.fixture(scope="module")
def layout(tmp_path_factory):
    return checks.prepare_layout(tmp_path_factory.mktemp("surface-layout"))


def cuda_context(layout, tmp_path):
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    return SurfaceContext(layout, scratch, device="cuda")


def test_every_check_on_cuda(layout, tmp_path):
    results = {result.check: result for result in run_checks(checks.CHECKS, cuda_context(layout, tmp_path))}
    for name, result in results.items():
        assert result.status in (WORKS, NOT_APPLICABLE), f"{name}: {result.describe_error()}"
        if result.status == NOT_APPLICABLE:
            assert name in ("attn-implementation-sdpa", "enable-cpu-offload"), (name, result.reason)
    offload = results["enable-cpu-offload"]
    if offload.status == NOT_APPLICABLE:
        assert offload.reason == "needs accelerate, which is not installed"
    else:
        assert offload.produced["samples"] > 0


def test_a_broken_cpu_offload_is_reported_as_failing(layout, tmp_path, monkeypatch):
    pytest.importorskip("accelerate", reason="enable-cpu-offload needs accelerate")
    from transformers import BarkModel

    def broken(self, *args, **kwargs):
        raise RuntimeError("Expected all tensors to be on the same device, but found at least two devices")

    monkeypatch.setattr(BarkModel, "enable_cpu_offload", broken)
    (result,) = run_checks(checks.CHECKS, cuda_context(layout, tmp_path), ["enable-cpu-offload"])
    assert (result.status, result.error_type) == (FAILS, "RuntimeError")
