"""Devices and device classes.

Tokens sampled on different hardware differ (different kernels, and on CUDA Bark turns on TF32
and bf16 autocast at import), so determinism and golden data are promised per *device class*:
``cpu``, or ``cuda-sm<major><minor>-<autocast dtype>`` (e.g. ``cuda-sm90-bf16``).
"""

from __future__ import annotations

import torch

from bark_ablation.core.errors import ParamsError


def resolve_device(device: str | None) -> str:
    """``"auto"``/``None`` -> ``"cuda"`` when available, else ``"cpu"``; validates the rest."""
    if device in (None, "auto"):
        return "cuda" if torch.cuda.is_available() else "cpu"
    try:
        parsed = torch.device(device)
    except (RuntimeError, TypeError):
        raise ParamsError("device", f"must be 'cpu', 'cuda', 'cuda:N' or 'auto', got {device!r}") from None
    if parsed.type not in ("cpu", "cuda"):
        raise ParamsError("device", f"must be 'cpu', 'cuda', 'cuda:N' or 'auto', got {device!r}")
    if parsed.type == "cuda" and not torch.cuda.is_available():
        raise ParamsError("device", f"{device!r} requested but torch.cuda.is_available() is False")
    return str(parsed)


def cuda_autocast_dtype() -> str:
    """The autocast dtype Bark 0.1.5 runs under on this machine's GPU: ``bf16`` or ``fp32``."""
    return "bf16" if torch.cuda.is_available() and torch.cuda.is_bf16_supported() else "fp32"


def device_class(device: str, cuda_dtype: str | None = None) -> str:
    """Device class of ``device``: ``cpu`` or ``cuda-sm<cc>-<dtype>``, where the dtype is
    ``cuda_dtype`` (an implementation that does not autocast) or Bark's autocast dtype."""
    parsed = torch.device(device)
    if parsed.type != "cuda":
        return "cpu"
    major, minor = torch.cuda.get_device_capability(parsed)
    return f"cuda-sm{major}{minor}-{cuda_dtype or cuda_autocast_dtype()}"


def synchronize(device: str) -> None:
    """Wait for queued CUDA work on ``device`` (no-op on CPU), so wall times are real."""
    parsed = torch.device(device)
    if parsed.type == "cuda":
        torch.cuda.synchronize(parsed)
