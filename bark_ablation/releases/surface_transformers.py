"""Surface checks of transformers' Bark: the calls Bark's model card, the pipeline docs and users'
notebooks make, on the tiny set saved in the Hub's layout (:mod:`bark_ablation.releases.hub_layout`).

Every call that generates is seeded with ``transformers.set_seed(context.seed)`` first and speaks
:data:`~bark_ablation.releases.surface.SURFACE_TEXT` with the defaults the release reads from the
layout's ``generation_config.json`` (sampling, as the Hub's file says), unless the check is about
a parameter. Names are stable: the series, ``bisect --surface`` and the golden data use them.

======================================  =============================================================
check                                   the call
======================================  =============================================================
``pipeline-text-to-speech``             ``pipeline("text-to-speech", model=dir)(text)``
``pipeline-text-to-speech-forward-params``  the same with ``forward_params={"do_sample": True}``
                                        (the model card's call)
``pipeline-text-to-speech-voice-preset``  the same with the processor's ``history_prompt`` in
                                        ``forward_params``
``pipeline-text-to-audio``              ``pipeline("text-to-audio", model=dir)(text)``
``pipeline-text-to-audio-forward-params``  the same with ``forward_params={"do_sample": True}``
``processor-voice-preset-name``         ``AutoProcessor.from_pretrained(dir)(text, voice_preset="v2/en_speaker_0")``:
                                        the history prompt equals the preset's arrays
``processor-voice-preset-npz``          ``BarkProcessor.from_pretrained(dir)(text, voice_preset=".../en_speaker_1.npz")``
``model-generate-voice-preset``         ``BarkModel.from_pretrained(dir).generate(**inputs)`` with the preset
``model-generate-no-preset``            the same without a preset
``generation-config-sample-rate``       ``model.generation_config.sample_rate`` is 24000 (the model
                                        card writes the WAV with it)
``save-pretrained-round-trip``          model and processor ``save_pretrained`` then ``from_pretrained``:
                                        greedy (``do_sample=False``) audio equal to the original's
``dtype-bfloat16``                      ``from_pretrained(dir, dtype=torch.bfloat16)`` (``torch_dtype``
                                        before 4.56) then greedy ``generate`` on CPU: finite audio
``attn-implementation-eager``           ``from_pretrained(dir, attn_implementation="eager")``: greedy
                                        audio equal to the default load's
``attn-implementation-sdpa``            the same with ``"sdpa"`` (not applicable where ``BarkModel``
                                        does not offer it)
``batched-padding-output-lengths``      two texts of different lengths, padded, ``generate(...,
                                        return_output_lengths=True)``: one length per text
``enable-cpu-offload``                  ``model.enable_cpu_offload()`` then ``generate`` (needs CUDA
                                        and accelerate)
``import-network-refused``              importing ``transformers.models.bark.modeling_bark`` in a
                                        fresh process with every connection refused; the attempts
                                        are counted
======================================  =============================================================
"""

from __future__ import annotations

import inspect
from importlib import metadata
from typing import Any

import numpy as np

from bark_ablation.releases.surface import (
    NotApplicable,
    SurfaceCheck,
    SurfaceContext,
    SurfaceFailure,
    audio_summary,
    jsonable,
    signature_defaults,
)
from bark_ablation.releases.surface_suno import LAYOUT_MODEL_SET

SAMPLE_RATE_HZ = 24_000
BARK_MODULE = "transformers.models.bark.modeling_bark"
GENERATION_FIELDS = (
    "do_sample",
    "temperature",
    "top_k",
    "top_p",
    "max_new_tokens",
    "min_eos_p",
    "renormalize_logits",
    "max_coarse_history",
    "sliding_window_len",
)
"""Fields of each sub-config recorded as defaults (absent fields are left out)."""
BATCH_TEXTS = ("It is raining.", "When I was a young boy, my father took me into the city.")
"""Two texts of different token lengths (padding); with :data:`~bark_ablation.releases.surface.SURFACE_SEED`
both rows stop early, so the batched call stays short (measured:
docs/measurements.md#surface-seed-clip-lengths)."""


def _version() -> tuple[int, ...]:
    from packaging.version import Version

    return Version(metadata.version("transformers")).release


def _seed(context: SurfaceContext) -> None:
    from transformers import set_seed

    set_seed(context.seed)


def _load_model(context: SurfaceContext, **kwargs: Any):
    """``BarkModel.from_pretrained(layout, **kwargs)`` on the context's device, in eval mode; the
    plain load is shared by the checks of one run."""
    from transformers import BarkModel

    if not kwargs and "model" in context.cache:
        return context.cache["model"]
    model = BarkModel.from_pretrained(str(context.layout), **kwargs).to(context.device).eval()
    if not kwargs:
        context.cache["model"] = model
    return model


def _processor(context: SurfaceContext):
    from transformers import BarkProcessor

    if "processor" not in context.cache:
        context.cache["processor"] = BarkProcessor.from_pretrained(str(context.layout))
    return context.cache["processor"]


def _to_device(inputs: Any, device: str) -> dict[str, Any]:
    """Processor output on ``device``, the nested ``history_prompt`` included (``BatchEncoding.to``
    does not move it)."""
    moved = {}
    for key, value in dict(inputs).items():
        if key == "history_prompt" and value is not None:
            moved[key] = {name: tensor.to(device) for name, tensor in dict(value).items()}
        else:
            moved[key] = value.to(device) if hasattr(value, "to") else value
    return moved


def generation_defaults(model) -> dict[str, Any]:
    """The generation settings a default call runs with: each sub-config's
    :data:`GENERATION_FIELDS`, ``sample_rate`` and ``codebook_size``, and the loaded config's class."""
    config = model.generation_config
    found: dict[str, Any] = {"generation_config_class": type(config).__name__}
    for part in ("semantic_config", "coarse_acoustics_config", "fine_acoustics_config"):
        sub = getattr(config, part, None)
        if sub is None:
            found[part] = "(absent)"
            continue
        values = sub if isinstance(sub, dict) else vars(sub)
        for name in GENERATION_FIELDS:
            if name in values:
                found[f"{part}.{name}"] = values[name]
    for name in ("sample_rate", "codebook_size"):
        found[name] = getattr(config, name, "(absent)")
    return jsonable(found)


def _generate_audio(model, inputs: dict[str, Any], context: SurfaceContext, **kwargs: Any) -> np.ndarray:
    import torch

    _seed(context)
    with torch.inference_mode():
        output = model.generate(**inputs, **kwargs)
    return output


def _pipeline_check(task: str, forward_params: dict[str, Any] | None = None, preset: bool = False):
    def run(context: SurfaceContext) -> tuple[dict[str, Any], dict[str, Any]]:
        from transformers import pipeline
        from transformers.pipelines import SUPPORTED_TASKS

        if task not in SUPPORTED_TASKS and task not in _task_aliases():
            raise NotApplicable(f"the release has no {task!r} pipeline task")
        key = f"pipeline:{task}"  # one pipeline per task, as a user's script builds it once and calls it often
        if key not in context.cache:
            context.cache[key] = pipeline(task, model=str(context.layout), device=context.device)
        pipe = context.cache[key]
        params = dict(forward_params or {})
        if preset:
            params["history_prompt"] = _to_device(
                _processor(context)(context.text, voice_preset=context.preset), context.device
            )["history_prompt"]
        _seed(context)
        output = pipe(context.text, **({"forward_params": params} if params else {}))
        if not isinstance(output, dict) or "audio" not in output:
            raise SurfaceFailure(f"expected a dict with 'audio' and 'sampling_rate', got {type(output).__name__}")
        rate = output.get("sampling_rate")
        if rate != SAMPLE_RATE_HZ:
            raise SurfaceFailure(f"sampling_rate is {rate!r}, expected {SAMPLE_RATE_HZ}")
        defaults = {
            **generation_defaults(pipe.model),
            "forward_params": sorted(params),
            **{f"pipeline.{k}": v for k, v in signature_defaults(type(pipe).__call__).items()},
        }
        return defaults, audio_summary(output["audio"], rate)

    return run


def _task_aliases() -> dict[str, str]:
    from transformers import pipelines

    return getattr(pipelines, "TASK_ALIASES", {})


def _processor_check(by_path: bool):
    def run(context: SurfaceContext) -> tuple[dict[str, Any], dict[str, Any]]:
        from transformers import AutoProcessor, BarkProcessor

        if by_path:
            processor = BarkProcessor.from_pretrained(str(context.layout))
            preset = str(context.layout / "presets" / f"{context.other_preset}.npz")
            expected = dict(np.load(preset))
        else:
            processor = AutoProcessor.from_pretrained(str(context.layout))
            preset = f"v2/{context.preset}"
            expected = {
                key: np.load(context.layout / "speaker_embeddings" / "v2" / f"{context.preset}_{key}.npy")
                for key in ("semantic_prompt", "coarse_prompt", "fine_prompt")
            }
        inputs = processor(context.text, voice_preset=preset)
        history = inputs.get("history_prompt")
        if history is None:
            raise SurfaceFailure("the processor returned no history_prompt for the voice preset")
        for key, array in expected.items():
            got = np.asarray(history[key].cpu().numpy() if hasattr(history[key], "cpu") else history[key])
            if got.shape != array.shape or not np.array_equal(got, array):
                raise SurfaceFailure(
                    f"history_prompt[{key!r}] has shape {got.shape}, differs from the preset's {array.shape} array"
                )
        defaults = {
            "processor_class": type(processor).__name__,
            **{f"call.{k}": v for k, v in signature_defaults(type(processor).__call__).items()},
        }
        produced = {
            "input_ids": list(inputs["input_ids"].shape),
            "history_prompt": {k: list(np.shape(v)) for k, v in dict(history).items()},
        }
        return defaults, produced

    return run


def _model_generate(preset: bool):
    def run(context: SurfaceContext) -> tuple[dict[str, Any], dict[str, Any]]:
        model = _load_model(context)
        processor = _processor(context)
        inputs = _to_device(processor(context.text, voice_preset=context.preset if preset else None), context.device)
        audio = _generate_audio(model, inputs, context)
        defaults = {
            **generation_defaults(model),
            **{f"generate.{k}": v for k, v in signature_defaults(type(model).generate).items()},
        }
        return defaults, audio_summary(audio, SAMPLE_RATE_HZ)

    return run


def _sample_rate(context: SurfaceContext) -> tuple[dict[str, Any], dict[str, Any]]:
    rate = _load_model(context).generation_config.sample_rate
    if rate != SAMPLE_RATE_HZ:
        raise SurfaceFailure(f"generation_config.sample_rate is {rate!r}, expected {SAMPLE_RATE_HZ}")
    return {}, {"sample_rate": rate}


def _greedy(model, context: SurfaceContext, preset: bool = True) -> np.ndarray:
    inputs = _to_device(
        _processor(context)(context.text, voice_preset=context.preset if preset else None), context.device
    )
    return np.asarray(_generate_audio(model, inputs, context, do_sample=False).float().cpu().numpy())


def _reference_greedy(context: SurfaceContext) -> np.ndarray:
    if "greedy" not in context.cache:
        context.cache["greedy"] = _greedy(_load_model(context), context)
    return context.cache["greedy"]


def _require_equal(label: str, reference: np.ndarray, audio: np.ndarray) -> None:
    if reference.shape != audio.shape or not np.array_equal(reference, audio):
        summary_a, summary_b = audio_summary(reference, SAMPLE_RATE_HZ), audio_summary(audio, SAMPLE_RATE_HZ)
        raise SurfaceFailure(
            f"{label}: greedy audio differs from the default load's ({summary_a['samples']} vs "
            f"{summary_b['samples']} samples, digests {summary_a['pcm16_sha256']} vs "
            f"{summary_b['pcm16_sha256']})"
        )


def _save_round_trip(context: SurfaceContext) -> tuple[dict[str, Any], dict[str, Any]]:
    from transformers import BarkModel, BarkProcessor

    model, processor = _load_model(context), _processor(context)
    target = context.scratch / "round-trip"
    model.save_pretrained(str(target))
    processor.save_pretrained(str(target))
    reloaded = BarkModel.from_pretrained(str(target)).to(context.device).eval()
    reprocessor = BarkProcessor.from_pretrained(str(target))
    inputs = _to_device(reprocessor(context.text, voice_preset=context.preset), context.device)
    audio = np.asarray(_generate_audio(reloaded, inputs, context, do_sample=False).float().cpu().numpy())
    _require_equal("after save_pretrained / from_pretrained", _reference_greedy(context), audio)
    weights = sorted(path.name for path in target.iterdir() if path.suffix in (".bin", ".safetensors"))
    defaults = {
        f"save_pretrained.{name}": value for name, value in signature_defaults(type(model).save_pretrained).items()
    }
    return defaults, {**audio_summary(audio, SAMPLE_RATE_HZ), "weights_files": weights}


def _bfloat16(context: SurfaceContext) -> tuple[dict[str, Any], dict[str, Any]]:
    import torch

    key = "dtype" if _version() >= (4, 56) else "torch_dtype"
    model = _load_model(context, **{key: torch.bfloat16})
    dtype = next(model.parameters()).dtype
    if dtype != torch.bfloat16:
        raise SurfaceFailure(f"from_pretrained({key}=torch.bfloat16) gave parameters of {dtype}")
    audio = _greedy(
        model, context, preset=False
    )  # without the preset: the shortest greedy run (bfloat16 is slow on CPUs)
    return {}, audio_summary(audio, SAMPLE_RATE_HZ)


def _attention(implementation: str):
    def run(context: SurfaceContext) -> tuple[dict[str, Any], dict[str, Any]]:
        from transformers import BarkModel

        if "attn_implementation" not in inspect.signature(BarkModel.__init__).parameters and _version() < (4, 36):
            raise NotApplicable("the release has no attn_implementation argument (added in 4.36)")
        if implementation == "sdpa" and not getattr(BarkModel, "_supports_sdpa", False):
            raise NotApplicable("BarkModel does not offer sdpa in this release (_supports_sdpa is false)")
        model = _load_model(context, attn_implementation=implementation)
        chosen = getattr(model.config, "_attn_implementation", None)
        audio = _greedy(model, context)
        _require_equal(f"attn_implementation={implementation!r}", _reference_greedy(context), audio)
        return {"config._attn_implementation": chosen}, audio_summary(audio, SAMPLE_RATE_HZ)

    return run


def _batched(context: SurfaceContext) -> tuple[dict[str, Any], dict[str, Any]]:
    model = _load_model(context)
    if "return_output_lengths" not in inspect.signature(type(model).generate).parameters:
        raise NotApplicable("BarkModel.generate has no return_output_lengths in this release")
    inputs = _to_device(_processor(context)(list(BATCH_TEXTS), voice_preset=context.preset), context.device)
    audio, lengths = _generate_audio(model, inputs, context, return_output_lengths=True)
    lengths = [int(n) for n in lengths]
    if tuple(audio.shape[:1]) != (len(BATCH_TEXTS),) or len(lengths) != len(BATCH_TEXTS):
        raise SurfaceFailure(
            f"expected {len(BATCH_TEXTS)} rows and lengths, got audio {tuple(audio.shape)} and {len(lengths)} lengths"
        )
    if max(lengths) > audio.shape[-1] or min(lengths) <= 0:
        raise SurfaceFailure(f"output lengths {lengths} do not fit audio of {audio.shape[-1]} samples")
    rows = [audio_summary(audio[i, : lengths[i]], SAMPLE_RATE_HZ) for i in range(len(lengths))]
    return {}, {"lengths": lengths, "rows": rows}


def _cpu_offload(context: SurfaceContext) -> tuple[dict[str, Any], dict[str, Any]]:
    import importlib.util

    if not context.device.startswith("cuda"):
        raise NotApplicable("needs a CUDA device (this run is on the CPU)")
    if importlib.util.find_spec("accelerate") is None:
        raise NotApplicable("needs accelerate, which is not installed")
    from transformers import BarkModel

    model = BarkModel.from_pretrained(str(context.layout)).eval()
    model.enable_cpu_offload()
    inputs = _to_device(_processor(context)(context.text, voice_preset=context.preset), context.device)
    audio = _generate_audio(model, inputs, context)
    return {}, audio_summary(audio, SAMPLE_RATE_HZ)


def _import_network_refused(context: SurfaceContext) -> tuple[dict[str, Any], dict[str, Any]]:
    from bark_ablation.releases.import_contacts import count_import_contacts

    contacts = context.cache.get("import_contacts")
    if contacts is None:
        contacts = count_import_contacts(BARK_MODULE)
    elif hasattr(contacts, "result"):  # started earlier by the caller (the workload), collected now
        contacts = contacts.result()
    context.cache["import_contacts"] = contacts
    if contacts.error:
        raise SurfaceFailure(f"importing {BARK_MODULE} with the network refused failed: {contacts.error}")
    return {}, {"attempts": len(contacts.attempts), "hosts": list(contacts.hosts)}


CHECKS = (
    SurfaceCheck(
        "pipeline-text-to-speech", "pipeline('text-to-speech') default call", _pipeline_check("text-to-speech")
    ),
    SurfaceCheck(
        "pipeline-text-to-speech-forward-params",
        "pipeline('text-to-speech') with forward_params",
        _pipeline_check("text-to-speech", {"do_sample": True}),
    ),
    SurfaceCheck(
        "pipeline-text-to-speech-voice-preset",
        "pipeline('text-to-speech') with a voice preset",
        _pipeline_check("text-to-speech", {"do_sample": True}, preset=True),
    ),
    SurfaceCheck("pipeline-text-to-audio", "pipeline('text-to-audio') default call", _pipeline_check("text-to-audio")),
    SurfaceCheck(
        "pipeline-text-to-audio-forward-params",
        "pipeline('text-to-audio') with forward_params",
        _pipeline_check("text-to-audio", {"do_sample": True}),
    ),
    SurfaceCheck("processor-voice-preset-name", "AutoProcessor with a voice preset by name", _processor_check(False)),
    SurfaceCheck(
        "processor-voice-preset-npz", "BarkProcessor with a voice preset by .npz path", _processor_check(True)
    ),
    SurfaceCheck(
        "model-generate-voice-preset",
        "BarkModel.from_pretrained then generate(**inputs) with a preset",
        _model_generate(True),
    ),
    SurfaceCheck(
        "model-generate-no-preset", "BarkModel.from_pretrained then generate(**inputs)", _model_generate(False)
    ),
    SurfaceCheck("generation-config-sample-rate", "model.generation_config.sample_rate", _sample_rate),
    SurfaceCheck(
        "save-pretrained-round-trip", "save_pretrained / from_pretrained, equal greedy audio", _save_round_trip
    ),
    SurfaceCheck("dtype-bfloat16", "from_pretrained in bfloat16, greedy generate on CPU", _bfloat16),
    SurfaceCheck("attn-implementation-eager", "attn_implementation='eager', equal greedy audio", _attention("eager")),
    SurfaceCheck("attn-implementation-sdpa", "attn_implementation='sdpa', equal greedy audio", _attention("sdpa")),
    SurfaceCheck("batched-padding-output-lengths", "two padded texts, return_output_lengths=True", _batched),
    SurfaceCheck("enable-cpu-offload", "enable_cpu_offload() then generate", _cpu_offload),
    SurfaceCheck("import-network-refused", "import Bark with every connection refused", _import_network_refused),
)


def prepare_layout(root):
    """The Hub layout under ``root`` (see :mod:`bark_ablation.releases.hub_layout`)."""
    from bark_ablation.releases.hub_layout import write_hub_layout

    return write_hub_layout(root / LAYOUT_MODEL_SET)
