"""Overlays: one release installed beside the environment's torch, cached, never half-written."""

from __future__ import annotations

from importlib import metadata

import pytest
from stand_ins import BROKEN_RELEASE

from bark_ablation.core.errors import ReleaseError
from bark_ablation.releases import overlays
from bark_ablation.releases.lines import RELEASE_LINES

TRANSFORMERS = RELEASE_LINES["transformers"]


# --- overlays -------------------------------------------------------------------------------------


def test_overlay_drops_what_the_environment_already_has(tmp_path):
    """numpy at the environment's version, and any distribution the environment has at the same
    version, leave the overlay; a distribution at another version stays."""
    numpy_version = metadata.version("numpy")
    for name, version, top in (
        ("numpy", numpy_version, "numpy"),
        ("tokenizers", "0.13.3", "tokenizers"),
        ("scipy", metadata.version("scipy"), "scipy"),
    ):
        info = tmp_path / f"{name}-{version}.dist-info"
        info.mkdir()
        (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n")
        (tmp_path / top).mkdir()
        (tmp_path / top / "__init__.py").write_text("")
        (info / "RECORD").write_text(f"{top}/__init__.py,,\n{info.name}/METADATA,,\n")
    held, shared = overlays._drop_shared(tmp_path)
    assert held == ("tokenizers==0.13.3",)
    assert set(shared) == {f"numpy=={numpy_version}", f"scipy=={metadata.version('scipy')}"}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["tokenizers", "tokenizers-0.13.3.dist-info"]


def test_a_cached_overlay_is_used_without_pip(cache_with_broken_release, monkeypatch):
    def no_pip(*args, **kwargs):
        raise AssertionError("pip ran although the overlay is cached")

    monkeypatch.setattr(overlays, "_pip_install", no_pip)
    found = overlays.ensure_overlay(TRANSFORMERS, BROKEN_RELEASE, cache_with_broken_release)
    assert found.version == BROKEN_RELEASE and (found.path / "transformers").is_dir()


def test_a_failed_install_leaves_nothing_in_the_cache(tmp_path, monkeypatch):
    def refuse(line, version, target):
        (target / "half-written").write_text("x")
        raise ReleaseError(f"transformers {version}: pip cannot install it beside numpy==2: ERROR: no match")

    monkeypatch.setattr(overlays, "_pip_install", refuse)
    with pytest.raises(ReleaseError, match="pip cannot install it"):
        overlays.ensure_overlay(TRANSFORMERS, "4.31.0", tmp_path)
    assert not any(p.is_file() for p in tmp_path.rglob("*"))


def test_pip_error_keeps_the_resolver_lines_and_drops_warnings():
    """pip's output for transformers 4.42.4 beside numpy 2 (abridged)."""
    output = (
        "WARNING: Location 'file:///x' is ignored\n"
        "ERROR: Cannot install transformers==4.42.4 because these package versions have conflicting "
        "dependencies.\n\nThe conflict is caused by:\n    transformers 4.42.4 depends on numpy<2.0 and >=1.17\n"
        "    The user requested (constraint) numpy==2.4.6\n\nTo fix this you could try to:\n"
        "1. loosen the range of package versions you've specified\n"
        "ERROR: ResolutionImpossible: for help visit https://pip.pypa.io/\n"
    )
    assert overlays.pip_error(output) == (
        "ERROR: Cannot install transformers==4.42.4 because these package versions have conflicting dependencies. "
        "caused by: transformers 4.42.4 depends on numpy<2.0 and >=1.17; The user requested (constraint) numpy==2.4.6"
    )
    assert (
        overlays.pip_error("WARNING: x\nERROR: No matching distribution found for transformers==9.9\n")
        == "ERROR: No matching distribution found for transformers==9.9"
    )


def test_environment_key_names_python_torch_and_numpy():
    key = overlays.environment_key()
    assert (
        key.startswith("py3.")
        and f"torch{metadata.version('torch')}" in key
        and f"numpy{metadata.version('numpy')}" in key
    )
