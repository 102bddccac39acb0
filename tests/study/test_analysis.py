"""The study's analysis on hand-built scores: speakers as the unit of replication, the identity
transfer index, and the power statement, each against values worked out by hand, with known-bad
twins (pseudo-replication; a swapped margin)."""

from __future__ import annotations

import numpy as np
import pytest

from bark_ablation.core.conditioning import ALL_CONDITIONINGS, TRANSFER_CELLS
from bark_ablation.study import power
from bark_ablation.study.analysis import Score, analyse, unit_values
from bark_ablation.study.statistics import factorial_effects

EXACT = pytest.mark.filterwarnings("ignore:Precision loss occurred:RuntimeWarning")
"""Hand-built transfer scores are equal across speakers up to float rounding, which scipy's
t-test warns about; the means are what these tests check."""

SPEAKERS = ("a", "b", "c", "d")
TEXTS = (0, 1)
SEEDS = (0, 1, 2)
ON_OFF = [c.id for c in ALL_CONDITIONINGS]


def x(cell: str, stage: int) -> int:
    """+1 when the stage's character is not '-' (its history is on), else -1."""
    return 1 if cell[stage] != "-" else -1


def build(speaker_effects: dict[str, float], *, seed_noise: float = 0.0, rng=None, speaker_names=None) -> list[Score]:
    """SECS = 0.7 + speaker offset + effect/2 * x_fine (+ noise per sample)."""
    rng = rng or np.random.default_rng(0)
    rows = []
    for s_index, (speaker, effect) in enumerate(speaker_effects.items()):
        for text in TEXTS:
            for seed in SEEDS:
                for cell in ON_OFF:
                    value = 0.7 + 0.01 * s_index + effect / 2 * x(cell, 2) + seed_noise * rng.standard_normal()
                    name = speaker if speaker_names is None else speaker_names(speaker, seed)
                    rows.append(Score(name, text, cell, seed, float(value)))
    return rows


def test_speakers_are_the_unit_and_each_speaker_is_averaged_first():
    effects = {"a": 0.10, "b": 0.02, "c": 0.06, "d": 0.02}
    result = analyse(build(effects, seed_noise=0.005))
    assert result.unit == "speaker"
    assert result.levels == {"speakers": list(SPEAKERS), "texts": ["t0", "t1"], "seeds": list(SEEDS)}
    fine = next(e for e in result.effects if e.name == "fine")
    assert fine.n == len(SPEAKERS)
    per_speaker = [next(e for e in result.per_speaker[s] if e.name == "fine") for s in SPEAKERS]
    assert all(e.n == len(TEXTS) * len(SEEDS) for e in per_speaker)
    assert fine.mean == pytest.approx(np.mean([e.mean for e in per_speaker]))
    # the interval is across the 4 speakers' effects: its width follows their spread, not the seeds'
    assert fine.sd == pytest.approx(np.std([e.mean for e in per_speaker], ddof=1))


def test_one_speaker_falls_back_to_seeds_as_units():
    result = analyse(build({"a": 0.05}, seed_noise=0.01))
    assert result.unit == "seed" and result.per_speaker == {}
    assert next(e for e in result.effects if e.name == "fine").n == len(SEEDS)


def test_unit_values_average_over_texts_and_seeds():
    rows = build({"a": 0.1, "b": 0.0})
    values = unit_values(rows, "speaker")
    assert values[("scf", 0)] == pytest.approx(0.7 + 0.05)
    assert values[("sc-", 1)] == pytest.approx(0.71)
    with pytest.raises(ValueError, match="unit: must be speaker, seed or replicate"):
        unit_values(rows, "text")


def rejection_rate(pseudo_replicated: bool, studies: int = 100) -> float:
    """Fraction of null studies (true mean fine effect 0; speakers differ, seeds barely) whose
    unadjusted fine p-value is < 0.05."""
    rng = np.random.default_rng(7)
    rejected = 0
    for _ in range(studies):
        effects = dict(zip(SPEAKERS, rng.normal(0.0, 0.03, len(SPEAKERS)), strict=True))
        names = (lambda speaker, seed: f"{speaker}/{seed}") if pseudo_replicated else None
        rows = build(effects, seed_noise=0.002, rng=rng, speaker_names=names)
        fine = next(e for e in factorial_effects(unit_values(rows, "speaker")) if e.name == "fine")
        rejected += fine.p_value < 0.05
    return rejected / studies


def test_speaker_as_unit_holds_the_error_rate_and_pseudo_replication_does_not():
    """Known-bad twin: treating every (speaker, seed) as an independent unit (12 'speakers' that
    are 4 speakers thrice) finds effects that are not there. Measured (100 null studies): 5 %
    with speakers as units, 34 % pseudo-replicated (5 % and 31 % over 400)."""
    assert rejection_rate(pseudo_replicated=False) <= 0.10
    assert rejection_rate(pseudo_replicated=True) >= 0.20


def transfer_rows(index_by_stage: dict[str, float], *, swap: bool = False) -> list[Score]:
    """Scores whose transfer index is exactly ``index_by_stage`` for every speaker: the margin
    m = other - own of scf is -0.3; a transfer cell's margin is -0.3 + index."""
    rows = []
    cells = {
        "scf": 0.0,
        **{cell.id: index_by_stage.get(stage, 0.0) for stage, cell in TRANSFER_CELLS.items()},
        "ooo": 0.5,
    }
    for s_index, speaker in enumerate(SPEAKERS):
        for seed in SEEDS:
            for cell, index in cells.items():
                own = 0.8 - 0.01 * s_index - index / 2
                other = own - 0.3 + index
                rows.append(Score(speaker, 0, cell, seed, other if swap else own, own if swap else other))
    return rows


@EXACT
def test_transfer_index_is_the_change_of_the_identity_margin():
    result = analyse(transfer_rows({"fine": 0.12, "coarse": 0.04}))
    transfer = {e.name: e for e in result.transfer}
    assert list(transfer) == ["semantic (ocf)", "coarse (sof)", "fine (sco)"]
    assert transfer["fine (sco)"].mean == pytest.approx(0.12)
    assert transfer["coarse (sof)"].mean == pytest.approx(0.04)
    assert transfer["semantic (ocf)"].mean == pytest.approx(0.0, abs=1e-12)
    assert result.transfer_ceiling.mean == pytest.approx(0.5)
    assert all(e.n == len(SPEAKERS) for e in result.transfer)


@EXACT
def test_transfer_index_has_a_direction():
    """Known-bad twin: scores against the two speakers swapped turn transfer into its opposite."""
    swapped = {e.name: e for e in analyse(transfer_rows({"fine": 0.12}, swap=True)).transfer}
    assert swapped["fine (sco)"].mean == pytest.approx(-0.12)


def test_no_transfer_cells_no_transfer_index():
    result = analyse(build({"a": 0.1, "b": 0.0}))
    assert result.transfer == [] and result.transfer_ceiling is None


def test_power_statement_follows_the_spread_across_speakers():
    rng = np.random.default_rng(3)
    effects = dict(zip(SPEAKERS, 0.05 + rng.normal(0, 0.02, len(SPEAKERS)), strict=True))
    result = analyse(build(effects, seed_noise=0.01, rng=rng))
    fine = next(e for e in result.effects if e.name == "fine")
    entry = result.power["fine"]
    assert entry["unit"] == "speaker" and entry["n_units"] == len(SPEAKERS)
    assert entry["minimum_detectable_effect"] == pytest.approx(power.minimum_detectable_effect(fine.sd, fine.n))
    assert entry["units_needed"] == power.units_needed(0.02, fine.sd)
    assert power.t_test_power(entry["minimum_detectable_effect"], fine.sd, fine.n) == pytest.approx(0.8, abs=1e-6)
    # the within-speaker sd comes from the per-speaker effects' spread over texts x seeds
    within = [next(e for e in result.per_speaker[s] if e.name == "fine").sd for s in SPEAKERS]
    assert entry["within_speaker_sd"] == pytest.approx(float(np.sqrt(np.mean(np.square(within)))))
