"""Drift statistics on scores whose answer is known by construction (no generation, no encoder).

Slopes are checked against numpy's polynomial fit, intervals against the t quantile written out,
and Holm against the hand-computed step-down; the known-bad inputs show that each estimate can
say "no drift" and "drift" and tell policies apart.
"""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
from scipy import stats

from bark_ablation.longform.identity_drift import analyse_drift, run_slopes, write_drift
from bark_ablation.longform.scoring import ChunkScore

SPEAKERS = ("a", "b", "c", "d")


def scores_with(slopes: dict[str, dict[str, float]], chunks: int = 4, seeds=(0,), noise=None) -> list[ChunkScore]:
    """policy -> speaker -> slope; SECS = 0.8 + slope * k (+ optional noise per (speaker, seed, k))."""
    rows = []
    for policy, by_speaker in slopes.items():
        for speaker, slope in by_speaker.items():
            for seed in seeds:
                for k in range(chunks):
                    jitter = 0.0 if noise is None else noise(speaker, seed, k)
                    rows.append(ChunkScore(speaker, 0, policy, seed, k, 0.8 + slope * k + jitter, 1.0, 0.5))
    return rows


def test_the_slope_of_each_run_is_the_least_squares_slope():
    rng = np.random.default_rng(0)
    values = {k: float(v) for k, v in enumerate(rng.uniform(0.5, 0.9, size=5))}
    rows = [ChunkScore("a", 0, "previous", 0, k, v, 1.0, 0.5) for k, v in values.items()]
    slope, change = run_slopes(rows)[("a", 0, "previous", 0)]
    assert slope == pytest.approx(np.polyfit(list(values), list(values.values()), 1)[0], abs=1e-12)
    assert change == pytest.approx(values[4] - values[0])


def test_speakers_are_the_unit_and_the_interval_is_student_t_over_them():
    per_speaker = {"a": -0.02, "b": -0.03, "c": -0.01, "d": -0.04}
    result = analyse_drift(scores_with({"previous": per_speaker, "prompt": dict.fromkeys(SPEAKERS, 0.0)}))
    drift = result.get("previous")
    values = np.array(list(per_speaker.values()))
    half = stats.t.ppf(0.975, len(values) - 1) * values.std(ddof=1) / np.sqrt(len(values))
    assert result.unit == "speaker" and drift.slope.n == 4
    assert drift.slope.mean == pytest.approx(values.mean())
    assert (drift.slope.ci_low, drift.slope.ci_high) == pytest.approx((values.mean() - half, values.mean() + half))
    assert drift.first_to_last.mean == pytest.approx(3 * values.mean())
    assert result.best.policy == "prompt" and drift.loss_per_chunk == pytest.approx(0.025)


def test_seeds_and_passages_are_averaged_within_a_speaker():
    noise = lambda speaker, seed, k: 0.01 * k * (1 if seed == 0 else -1)  # noqa: E731 - cancels over seeds
    result = analyse_drift(scores_with({"previous": dict.fromkeys(SPEAKERS, -0.02)}, seeds=(0, 1), noise=noise))
    drift = result.get("previous").slope
    assert drift.n == 4 and drift.mean == pytest.approx(-0.02) and drift.sd == pytest.approx(0.0, abs=1e-12)


def test_with_one_speaker_the_unit_is_the_seed():
    noise = lambda speaker, seed, k: 0.002 * seed * k  # noqa: E731
    result = analyse_drift(scores_with({"previous": {"a": -0.02}}, seeds=(0, 1, 2), noise=noise))
    assert result.unit == "seed" and result.get("previous").slope.n == 3
    assert result.levels["seeds"] == [0, 1, 2]


def test_holm_adjusts_the_slopes_across_policies():
    rng = np.random.default_rng(1)
    slopes = {
        "previous": {s: -0.03 + rng.normal(0, 0.01) for s in SPEAKERS},
        "pcf": {s: -0.01 + rng.normal(0, 0.01) for s in SPEAKERS},
        "prompt": {s: rng.normal(0, 0.01) for s in SPEAKERS},
    }
    result = analyse_drift(scores_with(slopes))
    p = np.array([d.slope.p_value for d in result.drift])
    order = np.argsort(p)
    expected = np.empty(3)
    running = 0.0
    for rank, index in enumerate(order):
        running = max(running, min(1.0, (3 - rank) * p[index]))
        expected[index] = running
    assert [d.slope.p_adjusted for d in result.drift] == pytest.approx(list(expected))
    assert result.get("previous").slope.survives and not result.get("prompt").slope.survives


def test_no_drift_is_found_where_there_is_none_and_a_fade_is_found_where_there_is_one():
    """The known-bad pair: noise alone must not be called drift; a steady fade must be."""
    rng = np.random.default_rng(2)
    flat = {s: rng.normal(0, 0.002) for s in SPEAKERS}
    fading = {s: -0.05 + rng.normal(0, 0.002) for s in SPEAKERS}
    result = analyse_drift(scores_with({"prompt": flat, "previous": fading}))
    assert not result.get("prompt").slope.survives
    assert result.get("previous").slope.survives and result.get("previous").slope.ci_high < 0


def test_per_chunk_means_follow_the_chunks():
    result = analyse_drift(scores_with({"previous": dict.fromkeys(SPEAKERS, -0.1)}))
    assert [e.mean for e in result.per_chunk["previous"]] == pytest.approx([0.8, 0.7, 0.6, 0.5])


def test_a_run_with_one_chunk_has_no_slope():
    with pytest.raises(ValueError, match="at least 2 chunks"):
        run_slopes([ChunkScore("a", 0, "prompt", 0, 0, 0.9, 1.0, 0.5)])


def test_the_files_hold_one_row_per_chunk_and_per_policy(tmp_path):
    scores = scores_with({"previous": dict.fromkeys(SPEAKERS, -0.02), "prompt": dict.fromkeys(SPEAKERS, 0.0)})
    result = analyse_drift(scores)
    write_drift(tmp_path, result)
    chunks = list(csv.DictReader((tmp_path / "chunks.csv").open()))
    drift = list(csv.DictReader((tmp_path / "drift.csv").open()))
    assert len(chunks) == len(scores) and chunks[1]["secs_prompt"] == "0.780000"
    assert [row["policy"] for row in drift] == ["previous", "prompt"] and drift[0]["unit"] == "speaker"
    assert float(drift[0]["slope"]) == pytest.approx(-0.02)
    assert json.loads((tmp_path / "drift.json").read_text())["best_policy"] == "prompt"
