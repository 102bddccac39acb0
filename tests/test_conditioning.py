"""Conditioning cells: ids, parsing, and the seed notebook's conditions."""

from __future__ import annotations

import pytest

from bark_ablation.conditioning import (ALL_CONDITIONINGS, NOTEBOOK_CONDITIONS, Conditioning, Stage)
from bark_ablation.errors import ParamsError
from bark_ablation.pipeline import count_stage_runs


def test_eight_distinct_cells_with_stable_ids():
    ids = [c.id for c in ALL_CONDITIONINGS]
    assert ids == ["scf", "sc-", "s-f", "s--", "-cf", "-c-", "--f", "---"]


@pytest.mark.parametrize("cell", ALL_CONDITIONINGS, ids=lambda c: c.id)
def test_id_round_trips(cell):
    assert Conditioning.from_id(cell.id) == cell
    assert Conditioning.of(*cell.stages) == cell


@pytest.mark.parametrize("bad, rule", [
    ("sc", "must be 3 characters"), ("scff", "must be 3 characters"), ("csf", "position semantic must be 's'"),
    ("s f", "position coarse must be 'c'"), (None, "must be 3 characters"),
])
def test_bad_ids_name_the_rule(bad, rule):
    with pytest.raises(ParamsError, match=f"conditioning: .*{rule}"):
        Conditioning.from_id(bad)


def test_notebook_conditions_map_onto_cells():
    assert {k: v.id for k, v in NOTEBOOK_CONDITIONS.items()} == {
        "baseline": "scf", "coarse + fine only": "-cf", "semantic only": "s--"}


def test_coarse_conditioning_is_documented_as_reading_semantic_tokens_too():
    assert Stage.COARSE.prompt_keys == ("semantic_prompt", "coarse_prompt")
    assert "semantic_prompt" in Conditioning.from_id("-c-").description


def test_stage_runs_of_the_full_matrix():
    assert count_stage_runs(ALL_CONDITIONINGS) == {"semantic": 2, "coarse": 4, "fine": 8, "decode": 8}
    assert count_stage_runs([Conditioning.from_id("scf")]) == {"semantic": 1, "coarse": 1, "fine": 1, "decode": 1}
