"""A study's units as Ray tasks, on the GPUs of one machine or of a cluster (``run --executor ray``).

Ray is an optional extra (``pip install 'bark-ablation[ray]'``); nothing here imports it until a
run asks for it. Why Ray rather than Dask distributed: a Ray task asks for a GPU as a resource
(``num_gpus=1``) and Ray gives it one (``CUDA_VISIBLE_DEVICES``), where a Dask resource is only a
label and the task must pick its device itself; and a Ray task can be a streaming generator, which
hands each sample to this process as soon as it is made.

The work:

- :func:`open_on_cluster` resolves the model set on a worker (``auto``, the batch size from the
  worker's free memory) and brings back a copy without models, with the worker's description of
  its device and its package versions, which must equal this machine's.
- :func:`run_units` runs each (speaker, text) unit as one task (:func:`_unit_task`): it loads the
  model set once per worker process, runs the unit with
  :func:`~bark_ablation.generation.pipeline.run_request` and yields each new sample, then the
  unit's run without its models. This process writes each sample as it arrives (through
  ``on_result``) and keeps it.
- A worker that dies (its process killed, its node lost) fails its task; the unit is submitted
  again with the samples already received as done, so the new task makes only the rest, exactly
  as ``--resume`` does: nothing is lost and nothing counted twice. After ``retries`` deaths of one
  unit the run stops, its samples kept for ``--resume``. Ray schedules every attempt; the only
  policy written here is which samples a new attempt may skip, which Ray cannot know.

Every row is seeded from (seed, stage) alone and each task runs torch on this process's number of
threads, so a unit's samples equal a local run's (tested with a worker killed mid-unit). The tasks
keep the Hugging Face clients offline unless downloads are allowed, and a cluster this process
starts sends no usage statistics.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import queue
import secrets
import threading
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

from bark_ablation.core.environment import package_versions
from bark_ablation.core.errors import BarkAblationError, ExecutorError, ParamsError
from bark_ablation.core.params import GenerationParams
from bark_ablation.core.profiles import Profile
from bark_ablation.generation.pipeline import Generation, MatrixRequest, MatrixRun, resolve_profile
from bark_ablation.implementations.registry import ModelSetRequest, OpenedModelSet
from bark_ablation.study.design import DesignRun, Shard, StudyDesign, Unit

EXTRA_HINT = "pip install 'bark-ablation[ray]'"
TASK_PREFIX = "bark-ablation unit "
"""A unit's task name (and its worker's process title, ``ray::bark-ablation unit <unit id>``)."""
DEFAULT_RETRIES = 3
"""How many times a unit is started again after its worker died."""


@dataclasses.dataclass(frozen=True)
class WorkerSettings:
    """How each task sets up its process: torch threads (this process's count, so samples equal
    a local run's) and whether the Hugging Face clients may go online."""

    torch_threads: int
    allow_download: bool

    @classmethod
    def here(cls, allow_download: bool) -> WorkerSettings:
        import torch

        return cls(torch.get_num_threads(), allow_download)


def require_ray():
    """The ``ray`` module, or a :class:`ParamsError` naming ``--executor`` and the extra to install."""
    try:
        import ray
    except ImportError:
        raise ParamsError("--executor", f"ray needs Ray, which is not installed: {EXTRA_HINT}") from None
    return ray


def check_device(device: str) -> None:
    """Ray gives each task its GPU, so the device is named by kind only: ``cpu`` or ``cuda``."""
    if device not in ("cpu", "cuda"):
        raise ParamsError(
            "--device",
            f"with --executor ray it must be cpu or cuda (Ray gives each task its own GPU), got {device!r}",
        )


def check_address(address: str | None) -> None:
    """Ray Client addresses (``ray://``) cannot stream a task's results: refused by name."""
    if address is not None and address.startswith("ray://"):
        raise ParamsError(
            "--address",
            f"{address}: Ray Client (ray://) cannot stream a task's samples; run on a node of the cluster "
            f"with --address auto (or HEAD:PORT)",
        )


@contextlib.contextmanager
def connected(address: str | None) -> Iterator[Any]:
    """Connect to the Ray cluster at ``address`` (``auto``: the one ``ray start`` runs on this
    machine; ``HOST:PORT``: its head's), or with ``None`` start a new local one on this machine's
    CPUs and GPUs for the run (never another one found on the machine; no dashboard, no usage
    statistics, and an authentication token of its own in the environment, so nothing is written
    to ``~/.ray``); disconnect (and stop a cluster started here) after."""
    ray = require_ray()
    check_address(address)
    imposed = {}
    if address is None:
        imposed["RAY_USAGE_STATS_ENABLED"] = "0"  # read by the cluster ray.init starts
        if not os.environ.get("RAY_AUTH_TOKEN") and not os.environ.get("RAY_AUTH_TOKEN_PATH"):
            imposed["RAY_AUTH_TOKEN"] = secrets.token_hex(32)  # else Ray writes one to ~/.ray/auth_token
    saved = {name: os.environ.get(name) for name in imposed}
    os.environ.update(imposed)
    options: dict[str, Any] = {"include_dashboard": False} if address is None else {}
    where = "a local Ray cluster" if address is None else f"the Ray cluster at --address {address}"
    try:
        try:
            ray.init(address=address or "local", logging_level=logging.ERROR, **options)
        except Exception as error:  # cannot connect, cannot authenticate, cannot start
            raise ExecutorError(f"{where}: {type(error).__name__}: {_first_line(error)}") from None
        try:
            yield ray
        except ray.exceptions.RayError as error:
            raise ExecutorError(f"{where}: {type(error).__name__}: {_first_line(error)}") from None
    finally:
        with contextlib.suppress(Exception):
            ray.shutdown()
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else "(no message)"


def check_resources(ray, device: str, settings: WorkerSettings) -> None:
    """Refuse, by name, a cluster where no node can run a task (Ray would wait forever): no GPU
    for ``--device cuda``, or no node with the CPUs a CPU task asks for."""
    needs = _resources(device, settings)
    nodes = [node.get("Resources", {}) for node in ray.nodes() if node.get("Alive")]
    if any(all(node.get(_RESOURCE_NAMES[k], 0) >= v for k, v in needs.items() if v) for node in nodes):
        return
    largest = max((node.get("CPU", 0), node.get("GPU", 0)) for node in nodes) if nodes else (0, 0)
    raise ExecutorError(
        f"no node of the Ray cluster can run a unit: each asks for {needs['num_cpus']:g} CPU and "
        f"{needs['num_gpus']:g} GPU (--device {device}, {settings.torch_threads} torch thread(s)); the largest "
        f"node has {largest[0]:g} CPU and {largest[1]:g} GPU"
    )


_RESOURCE_NAMES = {"num_cpus": "CPU", "num_gpus": "GPU"}


def _resources(device: str, settings: WorkerSettings) -> dict[str, float]:
    """What one task asks the cluster for: a GPU and a CPU on CUDA, the torch threads' CPUs on CPU."""
    if device.startswith("cuda"):
        return {"num_gpus": 1, "num_cpus": 1}
    return {"num_gpus": 0, "num_cpus": settings.torch_threads}


def _task_options(device: str, settings: WorkerSettings) -> dict[str, Any]:
    """Resources, and on CUDA a fresh worker process per task (``max_calls=1``, Ray's own default
    for GPU functions): a process keeps the CUDA device it first used, whatever
    ``CUDA_VISIBLE_DEVICES`` Ray gives its next task, and its models' GPU memory."""
    options: dict[str, Any] = dict(_resources(device, settings))
    if device.startswith("cuda"):
        options["max_calls"] = 1
    return options


@contextlib.contextmanager
def _worker_process(settings: WorkerSettings) -> Iterator[None]:
    """A task's process set up as the run's: torch threads, Hugging Face clients offline unless allowed."""
    import torch

    from bark_ablation.core.hub_access import keep_hub_offline

    torch.set_num_threads(settings.torch_threads)
    restore = None if settings.allow_download else keep_hub_offline()
    try:
        yield
    finally:
        if restore is not None:
            restore()


def _without_models(opened: OpenedModelSet) -> OpenedModelSet:
    """The model set as a copy that can travel: no models, the device as this worker describes it."""
    model_set = opened.model_set
    light = dataclasses.replace(model_set, models=None, device_info=model_set.describe_device())
    return dataclasses.replace(opened, model_set=light)


def _open_task(request: ModelSetRequest, settings: WorkerSettings) -> tuple[OpenedModelSet, dict[str, str | None]]:
    from bark_ablation.implementations.registry import open_model_set

    with _worker_process(settings):
        return _without_models(open_model_set(request)), package_versions()


def open_on_cluster(ray, request: ModelSetRequest, settings: WorkerSettings) -> OpenedModelSet:
    """Resolve ``request`` on a worker with the resources a unit's task gets; refuse a cluster
    whose workers run other package versions than this machine (their samples would not be this
    run's)."""
    check_resources(ray, request.device, settings)
    task = ray.remote(_open_task).options(max_retries=1, **_task_options(request.device, settings))
    opened, versions = _get(ray, task.remote(request, settings), "opening the model set")
    _check_versions("a Ray worker", versions, package_versions())
    return opened


def _check_versions(where: str, versions: Mapping[str, str | None], here: Mapping[str, str | None]) -> None:
    differing = [
        f"{name} {versions.get(name)} there, {value} here"
        for name, value in here.items()
        if versions.get(name) != value
    ]
    if differing:
        raise ExecutorError(
            f"{where} runs other versions than this machine ({'; '.join(differing)}): install the same "
            f"versions on every node"
        )


def _get(ray, ref, what: str):
    """``ray.get``, with a task's own error raised as itself (a named bark-ablation error) and
    any other error of a task named with ``what``; a dead worker's error passes (see
    :func:`_worker_deaths`)."""
    try:
        return ray.get(ref)
    except _worker_deaths(ray):
        raise
    except ray.exceptions.RayTaskError as error:
        cause = getattr(error, "cause", None)
        if isinstance(cause, BarkAblationError):
            raise cause from None
        raise ExecutorError(f"{what} failed on a Ray worker: {_first_line(cause or error)}") from None
    except ray.exceptions.RayError as error:
        raise ExecutorError(f"{what} failed on the Ray cluster: {type(error).__name__}: {_first_line(error)}") from None


@dataclasses.dataclass(frozen=True)
class WorkerReport:
    """A unit task's first item: where it runs, checked before any of its samples is accepted."""

    device_class: str
    versions: dict[str, str | None]


_END = object()


def _unit_task(
    request: ModelSetRequest,
    settings: WorkerSettings,
    matrix: MatrixRequest,
    done: Mapping[tuple[int, str], Generation],
):
    """One unit, on a worker: yield a :class:`WorkerReport`, each sample not in ``done`` as it is made, then the unit's
    :class:`MatrixRun` without its models and the prompts' decoded reference audio (for the
    study's scores, decoded where the models are). The unit runs in a thread so that this generator can
    hand samples over while it runs."""
    from bark_ablation.generation.pipeline import run_request
    from bark_ablation.implementations.registry import open_model_set
    from bark_ablation.study.similarity import prompt_reference_audio

    made: queue.Queue = queue.Queue()

    def work() -> None:
        try:
            with _worker_process(settings):
                opened = open_model_set(request)
                made.put(WorkerReport(opened.model_set.device_class, package_versions()))
                run = run_request(matrix, opened.model_set, on_result=lambda g, i, n: made.put(g), done=done)
                references = {
                    voice.name: prompt_reference_audio(voice, opened.model_set)
                    for voice in (matrix.prompt, matrix.other_prompt)
                    if voice is not None
                }
                last = (dataclasses.replace(run, model_set=_without_models(opened).model_set), references)
            made.put(_END)
            made.put(last)
        except BaseException as error:  # handed to the generator, which raises it in the task
            made.put(error)

    thread = threading.Thread(target=work, name="bark-ablation-unit", daemon=True)
    thread.start()
    while True:
        item = made.get()
        if isinstance(item, BaseException):
            raise item
        if item is _END:
            yield made.get()
            break
        yield item
    thread.join()


def run_units(
    ray,
    design: StudyDesign,
    params: GenerationParams | None,
    *,
    request: ModelSetRequest,
    settings: WorkerSettings,
    profile: Profile | str | None = None,
    batch_size: int | None = None,
    shard: Shard | None = None,
    done: Mapping[str, Mapping[tuple[int, str], Generation]] | None = None,
    on_result: Callable[[Generation, int, int], None] | None = None,
    on_retry: Callable[[str], None] | None = None,
    retries: int = DEFAULT_RETRIES,
    device_class: str | None = None,
) -> DesignRun:
    """Every unit of ``design`` (of ``shard``) as one Ray task, as :func:`~bark_ablation.study.design.run_design`
    runs them in this process: same arguments, same :class:`DesignRun`. ``on_result(generation,
    index, total)`` sees each new sample once, here, as it arrives; ``on_retry(unit_id)`` each
    restart of a unit whose worker died. ``request`` should be resolved already (:func:`resolved`),
    so that every worker loads the same set; ``device_class``: the class every unit must run on
    (the one :func:`open_on_cluster` found), since tokens are comparable only within one."""
    if retries < 0:
        raise ParamsError("--retries", f"must be an integer >= 0, got {retries}")
    profile, params = resolve_profile(profile, params)
    units: Sequence[Unit] = design.shard_units(shard)
    total = len(units) * len(design.cells) * len(design.seeds)
    task = ray.remote(_unit_task)
    task_options = _task_options(request.device, settings)
    here = package_versions()
    deaths = _worker_deaths(ray)
    received = {unit.id: dict((done or {}).get(unit.id, {})) for unit in units}
    runs: dict[str, MatrixRun] = {}
    references: dict[str, Any] = {}
    attempts: Counter = Counter()
    pending: dict[Any, Unit] = {}
    arrived = 0

    def submit(unit: Unit) -> None:
        matrix = MatrixRequest(
            unit.text, unit.prompt, design.seeds, design.cells, params, profile, unit.other_prompt, batch_size
        )
        # max_retries=0: a dead worker's unit is started again here, with what it already sent;
        # the name is the worker's process title while it runs (ray::<name>)
        options = {"num_returns": "streaming", "max_retries": 0, "name": f"{TASK_PREFIX}{unit.id}", **task_options}
        pending[task.options(**options).remote(request, settings, matrix, dict(received[unit.id]))] = unit

    for unit in units:
        submit(unit)
    try:
        while pending:
            [stream], _ = ray.wait(list(pending), num_returns=1)
            unit = pending[stream]
            try:
                item = _get(ray, next(stream), f"unit {unit.id}")
            except StopIteration:
                del pending[stream]
                if unit.id not in runs:
                    raise ExecutorError(f"unit {unit.id}: its Ray task ended without the unit's results") from None
                continue
            except deaths as error:
                del pending[stream]
                if unit.id in runs:  # it died after handing over everything: the unit is complete
                    continue
                attempts[unit.id] += 1
                if attempts[unit.id] > retries:
                    raise ExecutorError(
                        f"unit {unit.id}: its worker died {attempts[unit.id]} times (--retries {retries}); last: "
                        f"{type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''}"
                    ) from None
                if on_retry is not None:
                    on_retry(unit.id)
                submit(unit)  # with every sample received so far as done
                continue
            if isinstance(item, WorkerReport):  # first: nothing from another device class or install is kept
                _check_device_class(unit, item.device_class, device_class)
                _check_versions(f"the Ray worker running unit {unit.id}", item.versions, here)
                continue
            if isinstance(item, tuple):  # the unit's last item
                runs[unit.id], unit_references = item
                references.update(unit_references)
                received.pop(unit.id)  # kept only to start the unit again
                continue
            key = (item.seed, item.cell)
            if key in received[unit.id]:  # cannot happen: a task is given what it must not make again
                raise ExecutorError(f"unit {unit.id}: sample {item.label} arrived twice")
            received[unit.id][key] = item
            arrived += 1
            if on_result is not None:
                on_result(item, arrived, total)
    finally:
        for stream in pending:
            with contextlib.suppress(Exception):
                ray.cancel(stream, force=True)
    return DesignRun(design, [runs[unit.id] for unit in units], list(units), shard, reference_audio=references)


def resolved(request: ModelSetRequest, opened: OpenedModelSet) -> ModelSetRequest:
    """``request`` as :func:`open_on_cluster` resolved it (model set, implementation, batch size),
    so that a node with other caches cannot pick another set for ``auto``."""
    model_set = opened.model_set
    return dataclasses.replace(
        request, name=model_set.name, implementation=model_set.implementation, batch_size=opened.batch_size
    )


def _check_device_class(unit: Unit, found: str, expected: str | None) -> None:
    if expected is not None and found != expected:
        raise ExecutorError(
            f"unit {unit.id} ran on device class {found}, the run's is {expected}: tokens are comparable only "
            f"within one device class; run on GPUs of one kind (a homogeneous cluster, or Ray custom resources)"
        )


def _worker_deaths(ray) -> tuple[type[BaseException], ...]:
    """Ray's errors for a task whose worker process or node died, or that Ray's memory monitor
    killed (not an error of the task's own)."""
    names = (
        "WorkerCrashedError",
        "NodeDiedError",
        "LocalRayletDiedError",
        "ObjectLostError",
        "OwnerDiedError",
        "OutOfMemoryError",
    )
    return tuple(getattr(ray.exceptions, name) for name in names if hasattr(ray.exceptions, name))
