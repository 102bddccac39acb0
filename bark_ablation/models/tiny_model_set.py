"""The ``tiny`` model set: Bark's own model classes at toy size, with deterministic weights.

It exists so that Bark's real generation code runs everywhere, in seconds, on a CPU, without
weights that cannot be downloaded. Three properties are designed in and tested:

* **Deterministic weights.** Every parameter is drawn from numpy's ``Generator`` seeded from
  (:data:`TINY_WEIGHT_SEED`, parameter name) and written into the state dict, so weights are
  identical across torch releases and machines (torch's own initialisers are not).
* **Sensitive, sharp outputs.** With default-scale weights the tiny models' distributions are
  nearly flat and their attention nearly uniform, so the sampled tokens depend on the random
  generator, not on the inputs: a bug in history handling would go unnoticed. Gains on
  attention and output heads (below) make one changed input token change the stage's output.
* **Non-degenerate codec.** EnCodec's codebooks are all zeros until trained, and then every
  token sequence decodes to the same audio. Here the codebooks hold random vectors, so one
  changed fine token changes thousands of samples.

None of this says anything about speech: the tiny set is a test fixture for the plumbing.
"""

from __future__ import annotations

import warnings
import zlib
from dataclasses import asdict, dataclass
from importlib import resources

import numpy as np
import torch

from bark_ablation.models.catalogue import MODEL_SETS, TINY

TINY_WEIGHT_SEED = 20_240_101
"""Seed of every tiny weight; changing it changes every golden file."""

EMBEDDING_STD = 0.1
"""Std of token and position embeddings."""
ATTENTION_QK_GAIN = 3.0
"""Gain on the query/key projections (fan-in scaled): peaked attention, so that one token in a
long context still moves the output instead of vanishing in a uniform average."""
ATTENTION_VALUE_GAIN = 2.0
"""Gain on value and output projections: context outweighs the current token's embedding."""
HEAD_SHARPNESS = 10.0
"""Gain on the output heads (fan-in scaled): logits with std about 10 before temperature."""

CODEC_OUTPUT_GAIN = 0.05
"""Gain on the codec's last layer; brings the decoded audio's RMS to roughly 0.1 (of 1.0 full scale)."""

EOS_TOKEN = 10_000
"""Row of the text model's output head that Bark reads as end-of-sequence (``SEMANTIC_PAD_TOKEN``)."""
EOS_HEAD_NORM = 20.0
"""Norm of the ``tiny-eos`` set's end-of-sequence row: a fixed unit direction times this. The
semantic rows have norm about :data:`HEAD_SHARPNESS` (10), so the EOS logit is about twice a
semantic token's and reaches the largest of them at some steps. Chosen so that the early-stop
profile's semantic runs stop before the cap in 30-70 % of cases (the band
``tests/oracles/test_early_stop.py`` holds), because a smaller norm almost never stops and a larger one
almost always does, down to an empty clip (measured: docs/measurements.md#tiny-eos-head-norm)."""


@dataclass(frozen=True)
class TinyArchitecture:
    """Sizes of the tiny models. Vocabularies are Bark's own: its special tokens must fit."""

    n_layer: int = 2
    n_head: int = 2
    n_embd: int = 32
    block_size: int = 1024
    text_input_vocab: int = 129_600  # text ids are offset by 10_048; pad 129_595, infer 129_599
    text_output_vocab: int = 10_048
    coarse_vocab: int = 12_096  # 10_000 semantic + 2 x 1024 codes + specials up to 12_050
    fine_vocab: int = 1_056  # 1024 codes + pad 1024


TINY_ARCHITECTURE = TinyArchitecture(**asdict(MODEL_SETS[TINY].architecture))
"""The sizes the catalogue gives ``tiny`` (and ``tiny-eos``)."""


def tiny_tokenizer_dir() -> str:
    """Directory of the offline ``BertTokenizer`` vocabulary (161 entries: ASCII characters)."""
    return str(resources.files("bark_ablation") / "assets" / "tiny_tokenizer")


def build_tiny_models(
    device: str | torch.device = "cpu", *, codebooks: str = "random", architecture: TinyArchitecture = TINY_ARCHITECTURE
) -> dict:
    """Build the tiny models in the layout of ``bark.generation.models``.

    Returns ``{"text": {"model", "tokenizer"}, "coarse", "fine", "codec"}`` on ``device``, in
    eval mode. ``codebooks="zeros"`` keeps EnCodec's untrained all-zero codebooks (only for the
    test that shows why they must not be used).
    """
    from bark.model import GPT, GPTConfig
    from bark.model_fine import FineGPT, FineGPTConfig
    from encodec import EncodecModel
    from transformers import BertTokenizer

    arch = architecture
    common = dict(
        n_layer=arch.n_layer,
        n_head=arch.n_head,
        n_embd=arch.n_embd,
        block_size=arch.block_size,
        dropout=0.0,
        bias=False,
    )
    text = GPT(GPTConfig(input_vocab_size=arch.text_input_vocab, output_vocab_size=arch.text_output_vocab, **common))
    coarse = GPT(GPTConfig(input_vocab_size=arch.coarse_vocab, output_vocab_size=arch.coarse_vocab, **common))
    fine = FineGPT(
        FineGPTConfig(
            input_vocab_size=arch.fine_vocab,
            output_vocab_size=arch.fine_vocab,
            n_codes_total=8,
            n_codes_given=1,
            **common,
        )
    )
    for label, model in (("text", text), ("coarse", coarse), ("fine", fine)):
        _fill_gpt(label, model)

    with warnings.catch_warnings():  # encodec uses the deprecated torch weight_norm
        warnings.simplefilter("ignore", FutureWarning)
        codec = EncodecModel.encodec_model_24khz(pretrained=False)
    codec.set_target_bandwidth(6.0)
    _fill_codec(codec, codebooks=codebooks)

    tokenizer = BertTokenizer.from_pretrained(tiny_tokenizer_dir(), local_files_only=True)
    models = {"text": {"model": text, "tokenizer": tokenizer}, "coarse": coarse, "fine": fine, "codec": codec}
    for model in (text, coarse, fine, codec):
        model.eval()
        model.to(device)
    return models


def build_tiny_eos_models(
    device: str | torch.device = "cpu", *, architecture: TinyArchitecture = TINY_ARCHITECTURE
) -> dict:
    """The ``tiny-eos`` set: the ``tiny`` set with its own end-of-sequence row in the text head.

    Bark stops the semantic stage at the first step where end-of-sequence is sampled or its
    probability (after top-p, top-k and temperature, over the 10_000 semantic tokens plus EOS)
    reaches ``min_eos_p`` (default 0.2). In ``tiny`` the EOS row (:data:`EOS_TOKEN` of the text
    model's ``lm_head``) is an ordinary fan-in scaled row: its probability stays near zero and
    the stage always runs to the duration cap. Here that one row is replaced by a unit direction
    drawn from its own numpy generator (label ``text``, name ``lm_head.weight[eos]``) times
    :data:`EOS_HEAD_NORM`; every other tensor, and the build order, is ``tiny``'s, so ``tiny``
    itself is unchanged.

    Contract: under the ``early-stop`` profile some semantic runs stop before the cap, at varied
    steps and never at step 0, and the others run to the cap; ``tests/oracles/test_early_stop.py`` holds
    the share to 30-70 % and the stop steps to those recorded there. Why: the early-stop decision
    is only tested when it goes both ways (measured: docs/measurements.md#tiny-eos-stop-rates).

    The EOS probability jumps rather than climbs: a tiny random model has no direction whose
    logit tracks the semantic logits' scale, so the EOS logit moves by tens of logit units
    between steps and few decisions land near the threshold. Consequence for checks: a change to
    the rule that only matters for probabilities in that sparse middle band (a threshold halved,
    the probability taken before temperature) may change no run; the known-bad thresholds of
    ``tests/oracles/test_early_stop.py`` are placed where runs do land
    (measured: docs/measurements.md#tiny-eos-p-eos-distribution).
    """
    models = build_tiny_models(device, architecture=architecture)
    head = models["text"]["model"].lm_head.weight
    direction = _generator("text", "lm_head.weight[eos]").normal(0.0, 1.0, size=head.shape[1])
    values = head.detach().cpu().numpy().copy()
    values[EOS_TOKEN] = EOS_HEAD_NORM * direction / np.linalg.norm(direction)
    _write_into(head, values)
    return models


def tiny_eos_differences() -> dict:
    """What the ``tiny-eos`` set changes in ``tiny``, for provenance records."""
    return {
        "tensor": "text lm_head.weight",
        "row": EOS_TOKEN,
        "values": "unit direction from numpy Generator (text, lm_head.weight[eos]) x norm",
        "eos_head_norm": EOS_HEAD_NORM,
    }


def _write_into(tensor: torch.Tensor, values: np.ndarray) -> None:
    with torch.no_grad():
        tensor.copy_(torch.from_numpy(np.ascontiguousarray(values, dtype=np.float32)).to(tensor.device))


def _generator(label: str, name: str) -> np.random.Generator:
    """A numpy generator private to one tensor: adding a tensor never shifts another's values."""
    return np.random.default_rng([TINY_WEIGHT_SEED, zlib.crc32(f"{label}/{name}".encode())])


def _write(tensor: torch.Tensor, values: np.ndarray) -> None:
    with torch.no_grad():
        tensor.copy_(torch.from_numpy(np.ascontiguousarray(values, dtype=np.float32)))


def _fill_gpt(label: str, model: torch.nn.Module) -> None:
    """Fan-in scaled weights drawn from numpy, with the gains above; LayerNorms at 1, biases 0.

    The gains were chosen by measuring, over 8 seeds, how often one changed token in each input
    of each stage changes the stage's sampled output (figures in
    ``tests/models/test_tiny_sensitivity.py``); default-scale weights let the tiny models ignore their
    history. ``named_parameters`` lists a tied tensor
    once (the fine model ties its code embeddings 1..7 to its output heads), so heads are
    recognised by identity, not by name.
    """
    heads = {id(p) for name, p in model.named_parameters(remove_duplicate=False) if "lm_head" in name}
    for name, param in model.named_parameters():
        rng = _generator(label, name)
        fan_in = param.shape[-1]
        if name.endswith("bias"):
            values = np.zeros(param.shape)
        elif ".ln_" in name or name.startswith("transformer.ln_f"):
            values = np.ones(param.shape)
        elif id(param) in heads:
            values = rng.normal(0.0, HEAD_SHARPNESS / np.sqrt(fan_in), size=param.shape)
        elif ".wte" in name or ".wpe" in name:
            values = rng.normal(0.0, EMBEDDING_STD, size=param.shape)
        elif name.endswith("attn.c_attn.weight"):
            values = rng.normal(0.0, 1.0 / np.sqrt(fan_in), size=param.shape)
            n_embd = param.shape[0] // 3
            values[: 2 * n_embd] *= ATTENTION_QK_GAIN
            values[2 * n_embd :] *= ATTENTION_VALUE_GAIN
        elif name.endswith("attn.c_proj.weight"):
            values = rng.normal(0.0, ATTENTION_VALUE_GAIN / np.sqrt(fan_in), size=param.shape)
        else:
            values = rng.normal(0.0, 1.0 / np.sqrt(fan_in), size=param.shape)
        _write(param, values)


def _fill_codec(codec: torch.nn.Module, *, codebooks: str) -> None:
    """Fan-in scaled weights for every EnCodec tensor, random codebooks, unit-norm weight-norm.

    Weight-normed convolutions store ``weight_g`` (norm) and ``weight_v`` (direction); writing
    ``v = W`` and ``g = ||W||`` makes the effective weight exactly ``W``.
    """
    params = dict(codec.named_parameters())
    buffers = dict(codec.named_buffers())
    last_conv = max(
        (n for n in params if n.startswith("decoder.") and n.endswith("weight_v")), key=lambda n: int(n.split(".")[2])
    )
    for name, param in params.items():
        rng = _generator("codec", name)
        if name.endswith("weight_g"):
            continue  # written together with its weight_v
        if "bias" in name:
            _write(param, np.zeros(param.shape))
            continue
        fan_in = int(np.prod(param.shape[1:])) if param.ndim > 1 else param.shape[0]
        values = rng.normal(0.0, 1.0 / np.sqrt(fan_in), size=param.shape)
        if name == last_conv:
            values *= CODEC_OUTPUT_GAIN
        _write(param, values)
        if name.endswith("weight_v"):
            norm_axes = tuple(range(1, values.ndim))
            _write(params[name[: -len("_v")] + "_g"], np.sqrt((values**2).sum(axis=norm_axes, keepdims=True)))
    for name, buffer in buffers.items():
        if not name.endswith("_codebook.embed"):
            continue
        if codebooks == "random":
            values = _generator("codec", name).normal(0.0, 1.0, size=buffer.shape)
        elif codebooks == "zeros":
            values = np.zeros(buffer.shape)
        else:
            raise ValueError(f"codebooks must be 'random' or 'zeros', got {codebooks!r}")
        _write(buffer, values)
        prefix = name[: -len("embed")]
        _write(buffers[prefix + "embed_avg"], values)
        _write(buffers[prefix + "cluster_size"], np.ones(buffers[prefix + "cluster_size"].shape))
        _write(buffers[prefix + "inited"], np.ones(buffers[prefix + "inited"].shape))
