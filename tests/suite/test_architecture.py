"""The package's layout holds: every module sits in a wing, each wing imports only the wings
below it (``core`` none), and no import cycle exists anywhere. Imports are read from the source
(AST), with nothing imported, so the test sees function-level imports too."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import bark_ablation

WINGS = (
    "core",
    "output",
    "testing",
    "models",
    "implementations",
    "generation",
    "oracles",
    "golden",
    "study",
    "longform",
    "bench",
    "releases",
)
"""Bottom to top: a wing may import its own modules and those of the wings before it."""
TOP = "top"
"""The package itself and its top-level modules (``cli``, ``pytest_plugin``): they may import anything."""


def module_name(path: Path, root: Path) -> str:
    parts = list(path.relative_to(root.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imported_modules(path: Path, name: str, known: set[str]) -> set[str]:
    """Modules of the package that ``path`` (module ``name``) imports, at any depth of its code."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")
                anchor = anchor[: len(anchor) - node.level + 1]
                base = ".".join([*anchor, *filter(None, [base])])
            targets = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in known else base for alias in node.names]
        else:
            continue
        for target in targets:
            while target and target not in known:
                target = target.rpartition(".")[0]
            if target and target != name:
                found.add(target)
    return found


def import_graph(root: Path) -> dict[str, set[str]]:
    """``{module: modules of the same package it imports}`` for every module under ``root``."""
    paths = {module_name(path, root): path for path in sorted(root.rglob("*.py"))}
    return {name: imported_modules(path, name, set(paths)) for name, path in paths.items()}


def wing_of(module: str, package: str) -> str:
    parts = module.split(".")
    if len(parts) >= 3 and parts[1] in WINGS:
        return parts[1]
    if len(parts) == 2 and parts[1] in WINGS:
        return parts[1]  # a wing's own __init__
    return TOP


def layering_violations(graph: dict[str, set[str]], package: str) -> list[str]:
    """``importer (wing) -> imported (wing)`` for every import that goes up a wing, and every
    module that is not in a wing, nor a top-level module."""
    rank = {wing: index for index, wing in enumerate(WINGS)}
    rank[TOP] = len(WINGS)
    found = []
    for module, targets in sorted(graph.items()):
        wing = wing_of(module, package)
        for target in sorted(targets):
            target_wing = wing_of(target, package)
            if rank[target_wing] > rank[wing]:
                found.append(f"{module} ({wing}) imports {target} ({target_wing}), a higher wing")
    return found


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Every import cycle, as the list of modules around it (one per strongly connected set)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found = []

    def visit(node: str) -> None:  # Tarjan's strongly connected components
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in sorted(graph.get(node, ())):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


PACKAGE_ROOT = Path(bark_ablation.__file__).parent


def test_every_module_sits_in_a_wing_or_on_top():
    loose = [
        name
        for name in import_graph(PACKAGE_ROOT)
        if wing_of(name, "bark_ablation") == TOP
        and name not in ("bark_ablation", "bark_ablation.cli", "bark_ablation.pytest_plugin")
    ]
    assert not loose, f"modules outside every wing (put each in one of {', '.join(WINGS)}): {loose}"


def test_wings_import_only_wings_below_them():
    violations = layering_violations(import_graph(PACKAGE_ROOT), "bark_ablation")
    assert not violations, "\n".join(violations)


def test_the_package_has_no_import_cycle():
    found = cycles(import_graph(PACKAGE_ROOT))
    assert not found, "import cycles: " + "; ".join(" <-> ".join(cycle) for cycle in found)


def test_core_imports_no_other_wing():
    graph = import_graph(PACKAGE_ROOT)
    outside = sorted(
        f"{module} imports {target}"
        for module, targets in graph.items()
        if wing_of(module, "bark_ablation") == "core"
        for target in targets
        if wing_of(target, "bark_ablation") != "core"
    )
    assert not outside, "\n".join(outside)


@pytest.fixture
def bad_tree(tmp_path):
    """A known-bad package: a cycle inside ``core`` and ``core`` importing ``study``."""
    root = tmp_path / "bark_ablation"
    for wing in ("core", "study"):
        (root / wing).mkdir(parents=True)
        (root / wing / "__init__.py").write_text("")
    (root / "__init__.py").write_text("")
    (root / "core" / "a.py").write_text("from bark_ablation.core import b\n")
    (root / "core" / "b.py").write_text("def f():\n    from bark_ablation.core.a import thing\n")
    (root / "core" / "c.py").write_text("from bark_ablation.study.report import page\n")
    (root / "study" / "report.py").write_text("from bark_ablation.core.c import x\n")
    return root


def test_the_checks_catch_a_cycle_and_an_upward_import(bad_tree):
    graph = import_graph(bad_tree)
    assert graph["bark_ablation.core.a"] == {"bark_ablation.core.b"}
    assert graph["bark_ablation.core.b"] == {"bark_ablation.core.a"}  # found inside a function
    found = cycles(graph)
    assert ["bark_ablation.core.a", "bark_ablation.core.b"] in found
    assert ["bark_ablation.core.c", "bark_ablation.study.report"] in found
    assert layering_violations(graph, "bark_ablation") == [
        "bark_ablation.core.c (core) imports bark_ablation.study.report (study), a higher wing"
    ]
