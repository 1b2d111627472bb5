"""Leaderboard tables and matrices: battle counts, empirical and predicted win rates, average win rate."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from harness.ratings import (
    average_win_rate,
    battle_count_matrix,
    empirical_win_rate_matrix,
    fit_bt,
    leaderboard,
    model_totals,
    simulate_battles,
    win_prob_matrix,
)

ROWS = [("a", "b", "model_a"), ("a", "b", "model_a"), ("b", "a", "tie"), ("b", "c", "model_b"), ("c", "a", "model_a"),
        ("c", "b", "tie (bothbad)")]
FRAME = pd.DataFrame(ROWS, columns=["model_a", "model_b", "winner"])


def test_matrices_golden():
    counts = battle_count_matrix(FRAME)
    assert counts.loc["a", "b"] == 3 and counts.loc["b", "c"] == 2 and counts.loc["a", "c"] == 1
    assert (np.diag(counts) == 0).all() and (counts.to_numpy() == counts.to_numpy().T).all()
    rate = empirical_win_rate_matrix(FRAME)
    assert rate.loc["a", "b"] == pytest.approx(2.5 / 3) and rate.loc["b", "a"] == pytest.approx(0.5 / 3)
    assert rate.loc["c", "b"] == pytest.approx(0.75) and rate.loc["c", "a"] == 1.0 and np.isnan(rate.loc["a", "a"])


def test_model_totals_and_average_win_rate():
    totals = model_totals(FRAME)
    assert totals.loc["a"].tolist()[:4] == [4, 2, 1, 1]  # battles, wins, ties, losses
    assert totals.loc["a", "win_rate"] == pytest.approx(2.5 / 4)
    ratings = pd.Series({"x": 1100.0, "y": 1000.0, "z": 900.0})
    avg = average_win_rate(ratings)
    m = win_prob_matrix(ratings)
    assert avg["x"] == pytest.approx((m.loc["x", "y"] + m.loc["x", "z"]) / 2)
    assert avg.sum() == pytest.approx(1.5)  # every pair's probabilities sum to 1: total = pairs / (models - 1)


def test_leaderboard_columns_order_and_attrs():
    frame = simulate_battles(np.linspace(800, 1200, 6), 4000, seed=0, tie_rate=0.2)
    board = leaderboard(frame, rounds=200, seed=1, level=0.9)
    assert list(board.columns[:9]) == ["rank", "model", "rating", "ci_low", "ci_high", "se", "rank_ci_low",
                                       "rank_ci_high", "battles"]
    assert board["rating"].is_monotonic_decreasing and board["rank"].is_monotonic_increasing
    assert np.allclose(board.set_index("model")["rating"], fit_bt(frame)[board["model"]])
    assert board.attrs["level"] == 0.9 and board.attrs["rounds"] == 200 and board.attrs["seed"] == 1
    assert board["battles"].sum() == 2 * 4000
    assert board["rank_ci_low"].tolist() == board["rank_ci_high"].tolist() == [1, 2, 3, 4, 5, 6]  # 80 points apart
    assert board.attrs["se_cluster"] == "none" and board.attrs["se_clusters"] == 4000
    no_boot = leaderboard(frame, rounds=0)
    assert no_boot["ci_low"].isna().all() and no_boot["rank"].tolist() == [1, 2, 3, 4, 5, 6]
    assert np.allclose(no_boot["se"], board["se"]) and (no_boot["se"] > 0).all()
    assert no_boot.attrs["rank_ci_method"] == "ranks allowed by the sandwich Wald intervals"

