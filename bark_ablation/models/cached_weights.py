"""Real Bark weights, read only from the local caches.

Files a real model set needs, and where Bark's ecosystem keeps them:

* GPT checkpoints ``text_2.pt``, ``coarse_2.pt``, ``fine_2.pt`` (``bark``) or ``text.pt``,
  ``coarse.pt``, ``fine.pt`` (``bark-small``) in Bark's cache,
  ``$XDG_CACHE_HOME/suno/bark_v0`` (default ``~/.cache/suno/bark_v0``);
* the tokenizer ``bert-base-multilingual-cased`` in the Hugging Face cache (``$HF_HOME``);
* EnCodec 24 kHz weights ``encodec_24khz-d7cc33bc.th`` in torch hub's cache
  (``$TORCH_HOME/hub/checkpoints``).

Nothing here downloads (:mod:`bark_ablation.models.real_weights` fetches what is missing when
allowed, through :mod:`bark_ablation.models.weight_downloads`). Bark 0.1.5's own loader calls
``torch.load`` with torch's default, which since torch 2.6 is ``weights_only=True``, and Bark's
checkpoints hold a numpy scalar (``best_val_loss``, pickled under numpy 1.x as
``numpy.core.multiarray.scalar``), so Bark's loader fails there. This module loads with
``weights_only=True`` and allows exactly the numpy globals those checkpoints contain, for the
duration of one ``torch.load`` call; it never turns ``weights_only`` off.

A cached file that is there but unusable (truncated, garbage, another model's file, a pickled
global outside the allow-list, a vocabulary of the wrong size) raises
:class:`~bark_ablation.core.errors.CacheFileError`: one line naming the file, what is wrong with it
and what to do. The tokenizer's ``vocab.txt`` is read as text, never unpickled.
"""

from __future__ import annotations

import io
import os
import pickle
import pickletools
import re
import warnings
import zipfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from bark_ablation.core.errors import CacheFileError, MissingFile, MissingWeightsError, ModelSetError

TOKENIZER_REPO = "bert-base-multilingual-cased"
ENCODEC_CHECKPOINT = "encodec_24khz-d7cc33bc.th"
BARK_REPO = "suno/bark"

CHECKPOINTS = {
    "bark": {"text": "text_2.pt", "coarse": "coarse_2.pt", "fine": "fine_2.pt"},
    "bark-small": {"text": "text.pt", "coarse": "coarse.pt", "fine": "fine.pt"},
}
"""Model set name -> stage -> checkpoint file name (Bark's ``REMOTE_MODEL_PATHS``)."""

STAGE_MODEL_ARGS = {
    "text": {"input_vocab_size": 129_600, "output_vocab_size": 10_048},
    "coarse": {"input_vocab_size": 12_096, "output_vocab_size": 12_096},
    "fine": {"input_vocab_size": 1_056, "output_vocab_size": 1_056, "n_codes_total": 8, "n_codes_given": 1},
}
"""What Bark's generation code needs of each stage's ``model_args`` (both sizes): text ids
(tokenizer id + 10_048, pad 129_595, infer 129_599) in, 10_000 semantic tokens + specials out;
coarse: semantic tokens and 2 x 1024 interleaved codes with specials up to 12_050; fine: 1024
codes + pad, 8 codebooks of which 1 is given (Bark indexes the 7 heads from codebook 1)."""

TEXT_ENCODING_OFFSET = 10_048
TOKENIZER_VOCAB_SIZE = 119_547
"""Entries (lines) in ``bert-base-multilingual-cased``'s ``vocab.txt``. Bark's text ids are
tokenizer id + 10_048 and its text pad token 129_595 = 10_048 + 119_547 comes right after the
vocabulary, so a vocabulary of any other size is not the one Bark's text model was trained on."""
TOKENIZER_SPECIAL_TOKENS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")

_ZIP_MAGIC = b"PK\x03\x04"


@dataclass(frozen=True)
class CacheLocations:
    """Where the three caches are. ``from_environment`` reads the same variables Bark,
    huggingface_hub and torch hub read, at call time."""

    bark_dir: Path
    hf_hub_dir: Path
    torch_hub_dir: Path

    @classmethod
    def from_environment(cls) -> CacheLocations:
        xdg = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
        return cls(
            bark_dir=Path(xdg) / "suno" / "bark_v0",
            hf_hub_dir=_hf_hub_cache(xdg),
            torch_hub_dir=Path(torch.hub.get_dir()),
        )

    def hub_repo_dir(self, repo: str) -> Path:
        """Where the Hugging Face cache keeps ``repo`` (``models--owner--name``)."""
        return self.hf_hub_dir / ("models--" + repo.replace("/", "--"))

    @property
    def encodec_path(self) -> Path:
        return self.torch_hub_dir / "checkpoints" / ENCODEC_CHECKPOINT


def _hf_hub_cache(xdg_cache_home: str) -> Path:
    """huggingface_hub's hub cache with its precedence (``HF_HUB_CACHE``,
    ``HUGGINGFACE_HUB_CACHE``, ``HF_HOME``/hub, ``$XDG_CACHE_HOME``/huggingface/hub), read now:
    ``huggingface_hub.constants`` freezes it when first imported."""
    home = os.environ.get("HF_HOME") or os.path.join(xdg_cache_home, "huggingface")
    hub = os.environ.get("HF_HUB_CACHE") or os.environ.get("HUGGINGFACE_HUB_CACHE") or os.path.join(home, "hub")
    return Path(os.path.expandvars(os.path.expanduser(hub)))


def missing_files(name: str, locations: CacheLocations | None = None) -> list[MissingFile]:
    """Every file model set ``name`` needs that is not in the local caches (empty: all there)."""
    locations = locations or CacheLocations.from_environment()
    missing = []
    for stage, file_name in CHECKPOINTS[name].items():
        path = locations.bark_dir / file_name
        if not path.is_file():
            missing.append(
                MissingFile(f"Bark {stage} checkpoint {file_name}", path, "Bark's cache: $XDG_CACHE_HOME/suno/bark_v0")
            )
    if _tokenizer_vocab(locations) is None:
        missing.append(
            MissingFile(
                f"tokenizer {TOKENIZER_REPO} (vocab.txt)",
                locations.hub_repo_dir(TOKENIZER_REPO),
                "Hugging Face cache: $HF_HOME/hub",
            )
        )
    if not locations.encodec_path.is_file():
        missing.append(
            MissingFile(
                f"EnCodec 24 kHz weights {ENCODEC_CHECKPOINT}",
                locations.encodec_path,
                "torch hub cache: $TORCH_HOME/hub/checkpoints",
            )
        )
    return missing


def check_model_set_name(name: str) -> None:
    """ModelSetError unless ``name`` is a real model set (``bark``, ``bark-small``)."""
    if name not in CHECKPOINTS:
        raise ModelSetError(f"model set {name!r}: no real weights of that name (known: {', '.join(CHECKPOINTS)})")


def load_cached_files(name: str, device: str, locations: CacheLocations) -> tuple[dict, dict[str, Any]]:
    """Load model set ``name`` (``bark`` or ``bark-small``) from ``locations`` in
    ``bark.generation.models`` layout; nothing is fetched (see
    :func:`bark_ablation.models.real_weights.load_cached_models`).

    Returns ``(models, provenance)``. Raises :class:`MissingWeightsError` listing every missing
    file, and :class:`CacheFileError` naming the first cached file that cannot be used.
    """
    check_model_set_name(name)
    missing = missing_files(name, locations)
    if missing:
        raise MissingWeightsError(name, missing)

    from bark.model import GPT, GPTConfig
    from bark.model_fine import FineGPT, FineGPTConfig

    paths = {stage: locations.bark_dir / file for stage, file in CHECKPOINTS[name].items()}
    vocab_path = Path(_tokenizer_vocab(locations))
    repo_dir = locations.hub_repo_dir(TOKENIZER_REPO)
    # Cheapest first: the vocabulary is checked before any model is built.
    check_tokenizer_vocab(vocab_path, _tokenizer_failure(vocab_path, name, repo_dir))
    text = load_bark_checkpoint(paths["text"], GPT, GPTConfig, device, stage="text", model_set=name)
    coarse = load_bark_checkpoint(paths["coarse"], GPT, GPTConfig, device, stage="coarse", model_set=name)
    fine = load_bark_checkpoint(paths["fine"], FineGPT, FineGPTConfig, device, stage="fine", model_set=name)
    codec = load_cached_encodec(locations.encodec_path, device, model_set=name)
    tokenizer = load_cached_tokenizer(vocab_path, model_set=name, repo_dir=repo_dir)
    provenance = {
        "files": {stage: str(path) for stage, path in paths.items()},
        "encodec": str(locations.encodec_path),
        "tokenizer": TOKENIZER_REPO,
    }
    return {"text": {"model": text, "tokenizer": tokenizer}, "coarse": coarse, "fine": fine, "codec": codec}, provenance


def load_bark_checkpoint(
    path: Path, model_class: type, config_class: type, device: str, *, stage: str | None = None, model_set: str = "bark"
) -> torch.nn.Module:
    """Load one checkpoint in Bark's format (``model_args``, ``model``, ``best_val_loss``).

    Mirrors ``bark.generation._load_model`` (legacy ``vocab_size``, the ``_orig_mod.`` prefix
    of compiled models, the ignored ``.attn.bias`` buffers) but reads with ``weights_only=True``.
    With ``stage`` (``text``, ``coarse``, ``fine``) the vocabularies are checked against what
    Bark's generation code needs of that stage (:data:`STAGE_MODEL_ARGS`), so another stage's
    checkpoint is named as such. Any problem raises :class:`CacheFileError`.
    """
    path = Path(path)
    fail = _failure(path, f"Bark {stage} checkpoint" if stage else "Bark checkpoint", model_set)
    checkpoint = _read_weights_file(path, device, fail)
    if not (
        isinstance(checkpoint, Mapping)
        and isinstance(checkpoint.get("model_args"), Mapping)
        and isinstance(checkpoint.get("model"), Mapping)
    ):
        raise fail(f"not a Bark checkpoint (no model_args and model): {_describe_contents(checkpoint)}")
    model_args = dict(checkpoint["model_args"])
    if "input_vocab_size" not in model_args and "vocab_size" in model_args:
        model_args["input_vocab_size"] = model_args["output_vocab_size"] = model_args.pop("vocab_size")
    if stage is not None:
        _check_stage_model_args(model_args, stage, fail)
    try:
        config = config_class(**model_args)
    except TypeError as error:
        raise fail(f"model_args do not fit {config_class.__name__}: {_first_line(error)}") from None
    # Built without memory (meta device) and given the file's tensors (assign): no random
    # initialisation to overwrite and no second copy of the weights, so loading costs one
    # checkpoint's worth of memory, on ``device``.
    try:
        with torch.device("meta"):
            model = model_class(config)
    except Exception as error:  # noqa: BLE001 - Bark checks its config with bare asserts
        raise fail(
            f"model_args do not describe a {model_class.__name__} that can be built ({_error_name(error)})"
        ) from None
    expected = model.state_dict()
    state_dict = {key.removeprefix("_orig_mod."): value for key, value in checkpoint["model"].items()}
    del checkpoint
    _check_state_dict(state_dict, expected, model_class.__name__, fail, ignore=lambda key: key.endswith(".attn.bias"))
    weights = {key: value.to(expected[key].dtype) for key, value in state_dict.items() if key in expected}
    del state_dict
    try:
        model.load_state_dict(weights, strict=False, assign=True)
        if any(tensor.is_meta for tensor in [*model.parameters(), *model.buffers()]):
            # A tensor the file does not hold (the causal-mask buffer of torch without flash
            # attention): build the model for real and copy the weights in.
            model = model_class(config)
            model.load_state_dict(weights, strict=False)
    except Exception as error:  # noqa: BLE001 - any failure here is the file's
        raise fail(f"weights do not fit {model_class.__name__}: {_first_line(error)}") from None
    model.eval()
    return model.to(device)


def load_cached_encodec(path: Path, device: str, *, model_set: str = "bark") -> torch.nn.Module:
    """EnCodec 24 kHz at 6 kbps (8 codebooks) from a local state-dict file. Any problem with
    the file raises :class:`CacheFileError`."""
    from encodec import EncodecModel

    path = Path(path)
    fail = _failure(path, "EnCodec 24 kHz weights", model_set)
    state_dict = _read_weights_file(path, "cpu", fail)
    if not isinstance(state_dict, Mapping) or "model_args" in state_dict:
        raise fail(f"not EnCodec 24 kHz weights: {_describe_contents(state_dict)}")
    with warnings.catch_warnings():  # encodec uses the deprecated torch weight_norm
        warnings.simplefilter("ignore", FutureWarning)
        codec = EncodecModel.encodec_model_24khz(pretrained=False)
    _check_state_dict(state_dict, codec.state_dict(), "EnCodec 24 kHz", fail)
    try:
        codec.load_state_dict(state_dict)
    except Exception as error:  # noqa: BLE001 - any failure here is the file's
        raise fail(f"weights do not fit EnCodec 24 kHz: {_first_line(error)}") from None
    codec.set_target_bandwidth(6.0)
    codec.eval()
    return codec.to(device)


def load_cached_tokenizer(vocab_path: Path, *, model_set: str = "bark", repo_dir: Path | None = None):
    """Bark's ``BertTokenizer`` from a cached ``vocab.txt``, after :func:`check_tokenizer_vocab`.
    ``repo_dir`` is the cache folder to delete when the file is bad (the Hugging Face cache keeps
    a snapshot's files as links to blobs in the same folder)."""
    from transformers import BertTokenizer

    vocab_path = Path(vocab_path)
    fail = _tokenizer_failure(vocab_path, model_set, repo_dir)
    check_tokenizer_vocab(vocab_path, fail)
    try:
        return BertTokenizer.from_pretrained(str(vocab_path.parent), local_files_only=True)
    except Exception as error:  # noqa: BLE001 - any failure here is the cache's
        raise fail(f"cannot be loaded as a BertTokenizer: {_first_line(error)}") from None


def check_tokenizer_vocab(path: Path, fail: Callable[[str], CacheFileError] | None = None) -> None:
    """Refuse a ``vocab.txt`` that is not Bark's tokenizer vocabulary: not UTF-8 text (garbage,
    or a pickle or zip archive put there; it is read as text, never unpickled), a count of
    entries other than :data:`TOKENIZER_VOCAB_SIZE` (truncated, or another tokenizer's), or
    missing BERT's special tokens."""
    path = Path(path)
    fail = fail or _tokenizer_failure(path, "bark", None)
    data = _read_bytes(path, fail)
    if not data:
        raise fail("empty (0 bytes): the download or copy was cut short")
    kind = _sniff(data)
    if kind == "zip":
        raise fail(
            "not a text vocabulary: a zip archive (a PyTorch checkpoint?); vocab.txt is read as text, never unpickled"
        )
    if kind == "pickle":
        names = _pickle_globals(data)
        naming = f" naming {', '.join(names)}" if names else ""
        raise fail(f"not a text vocabulary: a pickle stream{naming}; vocab.txt is read as text, never unpickled")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as error:
        if error.end >= len(data) and error.reason == "unexpected end of data":
            raise fail(f"truncated: ends inside a UTF-8 character ({len(data):,} bytes)") from None
        raise fail(
            f"not a text vocabulary: not UTF-8 (byte 0x{data[error.start]:02x} at offset "
            f"{error.start:,} of {len(data):,})"
        ) from None
    if "\x00" in text:
        raise fail(f"not a text vocabulary: holds NUL bytes (first at offset {text.index(chr(0)):,})")
    # Split lines exactly as transformers' load_vocab does (text mode, universal newlines).
    entries = [line.rstrip("\n") for line in io.StringIO(text, newline=None).readlines()]
    if len(entries) != TOKENIZER_VOCAB_SIZE:
        raise fail(
            f"holds {len(entries):,} entries where {TOKENIZER_REPO} has {TOKENIZER_VOCAB_SIZE:,} "
            f"(Bark's text pad token {TEXT_ENCODING_OFFSET + TOKENIZER_VOCAB_SIZE:,} comes right "
            "after the vocabulary): a truncated file or another tokenizer's vocabulary"
        )
    present = set(entries)
    lacking = [token for token in TOKENIZER_SPECIAL_TOKENS if token not in present]
    if lacking:
        raise fail(f"lacks BERT's special token(s) {', '.join(lacking)}: another tokenizer's vocabulary")


def _numpy_checkpoint_globals() -> list:
    """The numpy globals a Bark checkpoint's ``best_val_loss`` pickles to, under numpy 1.x
    names (``numpy.core``) and 2.x names (``numpy._core``)."""
    try:
        from numpy._core.multiarray import scalar  # numpy >= 2
    except ImportError:  # pragma: no cover - numpy 1.x
        from numpy.core.multiarray import scalar
    dtype_classes = [type(np.dtype(code)) for code in ("f8", "f4", "i8", "i4")]
    allowed: list = [
        np.dtype,
        scalar,
        *dtype_classes,
        (scalar, "numpy.core.multiarray.scalar"),
        (scalar, "numpy._core.multiarray.scalar"),
    ]
    return allowed


def _failure(path: Path, what: str, model_set: str, target: str = "it") -> Callable[[str], CacheFileError]:
    """``fail(problem)`` -> the one-line :class:`CacheFileError` for ``path``."""
    fix = (
        f"delete {target} and fetch it again (`bark-ablation run --model-set {model_set} "
        "--allow-download ...` fetches what is missing)"
    )

    def fail(problem: str) -> CacheFileError:
        return CacheFileError(path, what, problem, fix)

    return fail


def _tokenizer_failure(vocab_path: Path, model_set: str, repo_dir: Path | None) -> Callable[[str], CacheFileError]:
    # huggingface_hub keeps the bytes in a blob the snapshot's file links to: delete the folder.
    return _failure(
        vocab_path,
        f"tokenizer {TOKENIZER_REPO} vocabulary",
        model_set,
        target=f"the folder {repo_dir}" if repo_dir is not None else "it",
    )


def _read_bytes(path: Path, fail: Callable[[str], CacheFileError], size: int | None = None) -> bytes:
    try:
        with open(path, "rb") as file:
            return file.read() if size is None else file.read(size)
    except OSError as error:
        raise fail(f"cannot be read: {error.strerror or error}") from None


def _sniff(head: bytes) -> str:
    """``zip`` (torch's format since 1.6), ``pickle`` (binary protocol 2-5: torch's legacy
    format, or a bare pickle) or ``other``."""
    if head.startswith(_ZIP_MAGIC):
        return "zip"
    if len(head) >= 2 and head[0] == pickle.PROTO[0] and 2 <= head[1] <= 5:
        return "pickle"
    return "other"


def _read_weights_file(path: Path, device: str, fail: Callable[[str], CacheFileError]) -> Any:
    """``torch.load(path, weights_only=True)`` with the numpy allow-list, every failure named."""
    head = _read_bytes(path, fail, 16)
    if not head:
        raise fail("empty (0 bytes): the download or copy was cut short")
    kind = _sniff(head)
    if kind == "other":
        raise fail(
            "not a PyTorch checkpoint: neither a zip archive nor a pickle stream (it starts "
            f"with bytes {head[:8].hex(' ')})"
        )
    size = path.stat().st_size
    if kind == "zip" and not zipfile.is_zipfile(path):
        raise fail(f"truncated: a zip archive without its end ({size:,} bytes; the download or copy was cut short)")
    allowed = _numpy_checkpoint_globals()
    try:
        with torch.serialization.safe_globals(allowed):
            return torch.load(path, map_location=device, weights_only=True)
    except MemoryError:
        raise
    except pickle.UnpicklingError as error:
        foreign = _refused_globals(path, allowed, error)
        if foreign:
            raise fail(
                f"carries a pickled global outside the allow-list of weights files: "
                f"{', '.join(foreign)} (refused while reading; nothing in the file ran)"
            ) from None
        raise fail(
            f"damaged or not a weights file: the weights-only unpickler refuses it{_unpickler_reason(error)}"
        ) from None
    except EOFError:
        raise fail(f"truncated: the pickle stream ends early ({size:,} bytes)") from None
    except Exception as error:  # noqa: BLE001 - any failure of reading is the file's
        reason = _first_line(error)
        if "central directory" in reason or "truncated" in reason.lower():
            raise fail(f"truncated or damaged ({size:,} bytes): {_sentence(reason)}") from None
        raise fail(
            f"damaged: cannot be read as a PyTorch checkpoint ({type(error).__name__}: {_sentence(reason)})"
        ) from None


def _refused_globals(path: Path, allowed: list, error: Exception) -> list[str]:
    """Names of the pickled globals outside the allow-list: read statically from the archive's
    pickle (never run), else from torch's error text."""
    names: list[str] = []
    try:
        with torch.serialization.safe_globals(allowed):
            names = list(torch.serialization.get_unsafe_globals_in_checkpoint(path))
    except Exception:  # noqa: BLE001 - legacy (non-zip) format or a damaged archive
        names = []
    if not names:
        names = re.findall(r"GLOBAL ([\w.]+)", str(error))
    return sorted(set(names))


def _unpickler_reason(error: Exception) -> str:
    """torch's own reason for refusing a file, without its advice (which is about trusting the
    file, never right for a cache file that should hold weights)."""
    match = re.search(r"WeightsUnpickler error:\s*(.+)", str(error))
    if not match:
        return ""
    reason = _sentence(match.group(1).strip())
    return "" if "weights_only" in reason.lower() or "safe_globals" in reason else f" ({reason})"


def _pickle_globals(data: bytes) -> list[str]:
    """Globals a pickle stream names, read with ``pickletools`` (the stream is never run)."""
    names, strings = [], []
    try:
        for opcode, arg, _ in pickletools.genops(data):
            if opcode.name == "GLOBAL":
                names.append(str(arg).replace(" ", "."))
            elif opcode.name == "STACK_GLOBAL" and len(strings) >= 2:
                names.append(f"{strings[-2]}.{strings[-1]}")
            elif isinstance(arg, str):
                strings.append(arg)
    except Exception:  # noqa: BLE001 - a damaged stream: report what was read so far
        pass
    return sorted(set(names))


def _check_state_dict(
    provided: Mapping,
    expected: Mapping[str, torch.Tensor],
    model_name: str,
    fail: Callable[[str], CacheFileError],
    ignore: Callable[[str], bool] = lambda key: False,
) -> None:
    """Same tensor names and shapes as the model's, or :class:`CacheFileError` naming the first few."""
    not_tensors = [key for key, value in provided.items() if not isinstance(value, torch.Tensor)]
    if not_tensors:
        raise fail(f"not {model_name} weights: entries that are not tensors: {_first_few(not_tensors)}")
    wanted = {key for key in expected if not ignore(key)}
    given = {key for key in provided if not ignore(key)}
    if wanted != given:
        raise fail(
            f"keys do not match {model_name}: missing {sorted(wanted - given)[:5]}, "
            f"unexpected {sorted(given - wanted)[:5]}"
        )
    wrong = [
        f"{key} {tuple(provided[key].shape)} in the file, {tuple(expected[key].shape)} in the model"
        for key in sorted(wanted)
        if tuple(provided[key].shape) != tuple(expected[key].shape)
    ]
    if wrong:
        more = f" and {len(wrong) - 3} more" if len(wrong) > 3 else ""
        raise fail(f"shapes do not match {model_name}: {'; '.join(wrong[:3])}{more}")


def _check_stage_model_args(model_args: dict, stage: str, fail: Callable[[str], CacheFileError]) -> None:
    needed = STAGE_MODEL_ARGS[stage]
    wrong = [key for key, value in needed.items() if model_args.get(key) != value]
    if not wrong:
        return
    matches = [
        other
        for other, rules in STAGE_MODEL_ARGS.items()
        if other != stage and all(model_args.get(key) == value for key, value in rules.items())
    ]
    looks = f" (those of Bark's {matches[0]} model: another stage's checkpoint)" if matches else ""
    has = ", ".join(f"{key} {model_args[key]}" if key in model_args else f"no {key}" for key in wrong)
    needs = ", ".join(f"{key} {needed[key]}" for key in wrong)
    raise fail(f"made for another model: its model_args have {has}{looks}; the {stage} stage needs {needs}")


def _describe_contents(obj: Any) -> str:
    if isinstance(obj, Mapping) and isinstance(obj.get("model_args"), Mapping):
        args = obj["model_args"]
        sizes = ", ".join(
            f"{key} {args[key]}"
            for key in ("n_layer", "n_embd", "input_vocab_size", "output_vocab_size")
            if key in args
        )
        return f"a Bark GPT checkpoint ({sizes})"
    if isinstance(obj, Mapping) and obj and all(isinstance(v, torch.Tensor) for v in obj.values()):
        return f"a state dict of {len(obj)} tensors ({_first_few(list(obj))})"
    if isinstance(obj, Mapping):
        return f"a dict with keys {_first_few(list(obj))}"
    return f"a {type(obj).__name__}"


def _first_few(keys: list, count: int = 3) -> str:
    shown = ", ".join(map(str, keys[:count]))
    return shown + (f", ... ({len(keys)} in all)" if len(keys) > count else "")


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


def _error_name(error: BaseException) -> str:
    """``AssertionError`` or ``ValueError: reason``."""
    reason = _first_line(error)
    return type(error).__name__ if reason == type(error).__name__ else f"{type(error).__name__}: {reason}"


def _sentence(text: str) -> str:
    """The first sentence of ``text`` (torch's messages go on with advice)."""
    return re.split(r"(?<=[.!?])\s", text, maxsplit=1)[0].rstrip(".")


def _tokenizer_vocab(locations: CacheLocations) -> str | None:
    """Path of the cached tokenizer vocabulary, or None. A local lookup: no network."""
    from huggingface_hub import try_to_load_from_cache

    found = try_to_load_from_cache(TOKENIZER_REPO, "vocab.txt", cache_dir=locations.hf_hub_dir)
    return found if isinstance(found, str) else None
