"""A tiny random WavLMForXVector, as microsoft/wavlm-base-plus-sv's files would hold it: the
speaker-encoder tests load it through the real loading path from a Hugging Face cache layout."""

from __future__ import annotations

import json
from pathlib import Path

TINY_XVECTOR = 12
"""Dimensions of the tiny model's embeddings."""


def tiny_wavlm_files(tmp_path: Path, **config_changes) -> dict[str, bytes]:
    """A random WavLMForXVector (13k parameters, seeded) and its feature extractor, as save_pretrained writes them."""
    import torch
    from transformers import Wav2Vec2FeatureExtractor, WavLMConfig, WavLMForXVector

    config = WavLMConfig(
        hidden_size=16,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=20,
        conv_dim=(16, 16, 16),
        conv_stride=(5, 4, 4),
        conv_kernel=(10, 8, 8),
        num_conv_pos_embeddings=16,
        num_conv_pos_embedding_groups=2,
        tdnn_dim=(16, 16, 16),
        tdnn_kernel=(3, 3, 1),
        tdnn_dilation=(1, 2, 1),
        xvector_output_dim=TINY_XVECTOR,
        num_buckets=32,
        max_bucket_distance=80,
        architectures=["WavLMForXVector"],
    )
    torch.manual_seed(0)
    directory = tmp_path / "saved"
    WavLMForXVector(config).eval().save_pretrained(directory)
    Wav2Vec2FeatureExtractor(sampling_rate=16_000, do_normalize=True, return_attention_mask=True).save_pretrained(
        directory
    )
    files = {path.name: path.read_bytes() for path in directory.iterdir()}
    if config_changes:
        files["config.json"] = json.dumps({**json.loads(files["config.json"]), **config_changes}).encode()
    return files
