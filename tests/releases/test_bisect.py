"""Bisect: the first release that shows a behaviour, or the bracket of releases that could not be judged."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from bark_ablation.core.errors import ReleaseError
from bark_ablation.releases.bisect import bisect_releases

# --- bisect ---------------------------------------------------------------------------------------

VERSIONS = [f"4.{minor}.0" for minor in range(31, 58)]


@given(first=st.integers(0, len(VERSIONS) - 1), skipped=st.sets(st.integers(0, len(VERSIONS) - 2), max_size=5))
def test_bisect_finds_the_first_release_or_brackets_it_with_skipped_ones(first, skipped):
    calls = []

    def judge(version):
        index = VERSIONS.index(version)
        calls.append(index)
        if index in skipped:
            return None, "will not import"
        return index >= first, "probe"

    result = bisect_releases(VERSIONS, judge)
    assert len(calls) == len(set(calls))  # no release is judged twice
    truth = next(i for i in range(first, len(VERSIONS)) if i not in skipped)
    assert result.first == VERSIONS[truth]
    if result.last_without is not None:
        low = VERSIONS.index(result.last_without)
        assert low < first and all(i in skipped for i in range(low + 1, truth))
        assert result.unjudged_between == [VERSIONS[i] for i in range(low + 1, truth)]
    if not skipped:
        assert len(calls) <= 2 + int(np.ceil(np.log2(len(VERSIONS))))


def test_bisect_stops_when_the_newest_does_not_show_it():
    calls = []
    result = bisect_releases(VERSIONS, lambda version: (calls.append(version), (False, "absent"))[1])
    assert not result.found and calls == [VERSIONS[-1]]
    assert result.describe("x") == "x: in no release searched; the newest, 4.57.0, does not show it (absent)"


def test_bisect_refuses_when_the_newest_cannot_be_judged():
    with pytest.raises(ReleaseError, match="cannot be judged .will not import.; name an older one with --until"):
        bisect_releases(VERSIONS, lambda version: (None, "will not import"))


def test_bisect_describes_its_range():
    result = bisect_releases(VERSIONS, lambda v: (VERSIONS.index(v) >= 10, "probe"))
    assert result.describe("x").startswith("x: first shown in 4.41.0; not in 4.40.0, the release before it")
