"""Say what a CI lane's environment resolved, against the tested set, before its tests run.

Usage: python .ci/resolved_versions.py CONSTRAINTS [REFERENCE-VENV]

Run by the lane's own interpreter. Prints one line per distribution whose version differs from
its pin in CONSTRAINTS (constraints/tested.txt), then one line naming the distributions that
REFERENCE-VENV (the default lane's environment, installed with those constraints) does not have
at all: a new dependency of an upstream release (transformers 5.25.0 brought `kernels`) is as
likely a cause as a changed version. Always exits 0: it explains, the tests judge.
"""

from __future__ import annotations

import glob
import re
import sys
from importlib import metadata
from pathlib import Path

from packaging.utils import canonicalize_name as canonical  # a dependency of the project


def pins(path: Path) -> dict[str, str]:
    found = {}
    for line in path.read_text().splitlines():
        match = re.match(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)\s*==\s*([^\s;#]+)", line)
        if match:
            found[canonical(match[1])] = match[2]
    return found


def installed(paths: list[str] | None = None) -> dict[str, str]:
    distributions = metadata.distributions(path=paths) if paths is not None else metadata.distributions()
    return {canonical(d.metadata["Name"]): d.version for d in distributions if d.metadata["Name"]}


def main(argv: list[str]) -> int:
    tested = pins(Path(argv[0]))
    here = installed()
    changed = [
        f"{name} {tested[name]} -> {here.get(name, 'absent')}"
        for name in sorted(tested)
        if here.get(name) != tested[name]
    ]
    print(f"differs from {argv[0]}: " + (", ".join(changed) if changed else "nothing"))
    if len(argv) > 1:
        sites = glob.glob(str(Path(argv[1]) / "lib" / "python*" / "site-packages"))
        reference = installed(sites) if sites else {}
        new = [
            f"{name} {version}"
            for name, version in sorted(here.items())
            if name not in reference and name != "bark-ablation"
        ]
        if sites:
            print(f"not in {argv[1]} (the tested set): " + (", ".join(new) if new else "nothing"))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
