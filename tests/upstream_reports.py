"""The upstream reports of docs/upstream/ as the tests read them: where they are, and the first
affected release each names (the bisect's answer), so no test writes that version down again."""

from __future__ import annotations

import re
from pathlib import Path

import transformers
from packaging.version import Version

UPSTREAM = Path(__file__).resolve().parents[1] / "docs" / "upstream"
FIRST_AFFECTED = re.compile(r"First affected release: \*\*(\d+\.\d+\.\d+)\*\*")


def first_affected(report_id: str) -> str:
    """The first affected release ``docs/upstream/<report_id>.md`` names."""
    match = FIRST_AFFECTED.search((UPSTREAM / f"{report_id}.md").read_text())
    assert match, f"docs/upstream/{report_id}.md names no 'First affected release: **X.Y.Z**'"
    return match[1]


def predates(report_id: str) -> bool:
    """Whether the installed transformers is older than the report's first affected release."""
    return Version(transformers.__version__) < Version(first_affected(report_id))
