"""Fixtures of the release tests."""

from __future__ import annotations

import pytest
from stand_ins import write_broken_release


@pytest.fixture
def cache_with_broken_release(tmp_path):
    """An overlay cache holding a release that will not import (:func:`stand_ins.write_broken_release`)."""
    return write_broken_release(tmp_path)
