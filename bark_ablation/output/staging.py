"""Output directories that appear whole or not at all.

Every command that writes a directory (``run``, ``merge``, ``series``) stages it next to its
destination and moves it into place only when everything is written, so an error or an
interrupt never leaves a half-written directory behind. Single files that must appear whole
(golden cases, a resumable run's samples) are written with :func:`write_atomically`.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

from bark_ablation.core.errors import OutputError


class StagedDirectory:
    """A directory that appears at ``destination`` only on :meth:`commit`.

    Creating it checks that the destination's parent is writable (the staging directory is made
    there), so an unusable output location fails before any work is done.
    """

    def __init__(self, destination: Path, *, overwrite: bool = False):
        self.destination = Path(destination)
        if self.destination.exists() and not (overwrite and self.destination.is_dir()):
            what = "directory" if self.destination.is_dir() else "file"
            hint = "; pass --overwrite to replace it" if self.destination.is_dir() else ""
            raise OutputError(f"output {self.destination}: a {what} of that name exists{hint}")
        parent = self.destination.parent
        # Missing parents are created, and removed again by discard(), so a failed run leaves
        # the disk as it found it.
        self._created_root = next((p for p in reversed([parent, *parent.parents]) if not p.exists()), None)
        try:
            parent.mkdir(parents=True, exist_ok=True)
            self.path = Path(tempfile.mkdtemp(prefix=f".{self.destination.name}.partial-", dir=parent))
        except OSError as error:
            raise OutputError(
                f"output {self.destination}: cannot write in {parent} ({error.strerror or error})"
            ) from None

    def commit(self) -> Path:
        """Move the staged directory into place (replacing an old one if allowed)."""
        return move_into_place(self.path, self.destination)

    def discard(self) -> None:
        """Remove the staged directory and any parent directories this object created."""
        shutil.rmtree(self._created_root or self.path, ignore_errors=True)


def move_into_place(path: Path, destination: Path) -> Path:
    """Rename the complete directory ``path`` to ``destination``; an existing ``destination`` is
    moved aside first and removed only once the new one is in place."""
    if destination.exists():
        backup = destination.with_name(f".{destination.name}.old-{os.getpid()}")
        os.replace(destination, backup)
        os.replace(path, destination)
        shutil.rmtree(backup, ignore_errors=True)
    else:
        os.replace(path, destination)
    return destination


def write_atomically(path: Path, data: bytes) -> None:
    """Write ``data`` to a uniquely named temporary file beside ``path``, then rename it over
    ``path``: a reader sees the old file or the new one, never a partial one. The file gets the
    mode an ordinary ``open`` would give (mkstemp's is 0600, unreadable to a CI user or a team)."""
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.chmod(temporary, 0o666 & ~_UMASK)
        with os.fdopen(handle, "wb") as stream:
            stream.write(data)
            stream.flush()
            os.fsync(stream.fileno())
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def _process_umask() -> int:
    current = os.umask(0o022)
    os.umask(current)
    return current


_UMASK = _process_umask()
"""Read once at import: os.umask can only be read by setting it, which would race with writers
in other threads."""
