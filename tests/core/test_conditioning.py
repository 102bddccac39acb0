"""Conditioning cells: ids, parsing, and the seed notebook's conditions."""

from __future__ import annotations

import pytest

from bark_ablation.core.conditioning import (
    ALL_CONDITIONINGS,
    CONTROLS,
    NOTEBOOK_CONDITIONS,
    STAGES,
    Conditioning,
    HistorySource,
    Stage,
)
from bark_ablation.core.errors import ParamsError
from bark_ablation.generation.pipeline import count_stage_runs


def test_eight_distinct_cells_with_stable_ids():
    ids = [c.id for c in ALL_CONDITIONINGS]
    assert ids == ["scf", "sc-", "s-f", "s--", "-cf", "-c-", "--f", "---"]


@pytest.mark.parametrize("cell", ALL_CONDITIONINGS, ids=lambda c: c.id)
def test_id_round_trips(cell):
    assert Conditioning.from_id(cell.id) == cell
    assert Conditioning.of(*cell.stages) == cell


@pytest.mark.parametrize(
    "bad, rule",
    [
        ("sc", "must be 3 characters"),
        ("scff", "must be 3 characters"),
        ("csf", "position semantic must be 's'"),
        ("s f", "position coarse must be 'c'"),
        (None, "must be 3 characters"),
    ],
)
def test_bad_ids_name_the_rule(bad, rule):
    with pytest.raises(ParamsError, match=f"conditioning: .*{rule}"):
        Conditioning.from_id(bad)


def test_notebook_conditions_map_onto_cells():
    assert {k: v.id for k, v in NOTEBOOK_CONDITIONS.items()} == {
        "baseline": "scf",
        "coarse + fine only": "-cf",
        "semantic only": "s--",
    }


def test_coarse_conditioning_is_documented_as_reading_semantic_tokens_too():
    assert Stage.COARSE.prompt_keys == ("semantic_prompt", "coarse_prompt")
    assert "semantic_prompt" in Conditioning.from_id("-c-").description


def test_stage_runs_of_the_full_matrix():
    assert count_stage_runs(ALL_CONDITIONINGS) == {"semantic": 2, "coarse": 4, "fine": 8, "decode": 8}
    assert count_stage_runs([Conditioning.from_id("scf")]) == {"semantic": 1, "coarse": 1, "fine": 1, "decode": 1}


@pytest.mark.parametrize("name, cell_id", [(name, c.id) for name, c in CONTROLS.items()])
def test_controls_are_named_cells_with_control_characters(name, cell_id):
    control = Conditioning.from_id(name)
    assert control.id == cell_id and control.is_control
    assert Conditioning.from_id(cell_id) == control


def test_control_sources_and_descriptions():
    cell = Conditioning.from_id("rxo")
    assert [cell.source(s) for s in STAGES] == [
        HistorySource.RANDOM,
        HistorySource.SHUFFLED,
        HistorySource.OTHER_SPEAKER,
    ]
    assert cell.description == "random semantic + shuffled coarse + other speaker's fine"
    assert not any(c.is_control for c in ALL_CONDITIONINGS)


def test_a_bad_control_character_names_the_choices():
    with pytest.raises(
        ParamsError,
        match=r"position coarse must be 'c', '-', 'r' \(random\), 'x' \(shuffled\) "
        r"or 'o' \(other speaker\), got 'q'",
    ):
        Conditioning.from_id("sqf")
