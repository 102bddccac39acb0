"""Fixtures of the study tests: an empty Hugging Face cache the speaker encoders read."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture
def hub_cache(tmp_path, monkeypatch) -> Path:
    """An empty Hugging Face cache the encoders read (HF_HOME under tmp_path)."""
    monkeypatch.setenv("HF_HOME", str(tmp_path / "huggingface"))
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)
    monkeypatch.delenv("HUGGINGFACE_HUB_CACHE", raising=False)
    hub = tmp_path / "huggingface" / "hub"
    hub.mkdir(parents=True)
    return hub
