"""Simulated battle logs from known ratings, for tests and benchmarks.

Battles draw a random pair of distinct models, declare a tie with probability `tie_rate`, and otherwise let model_a
win with the Bradley-Terry probability of its rating margin. Ties are symmetric, so the Bradley-Terry fit (which
counts a tie as half a win each way) still recovers the true ratings.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from harness.ratings.elo import win_prob


def simulate_battles(
    ratings: np.ndarray | pd.Series,
    n_battles: int,
    *,
    seed: int = 0,
    tie_rate: float = 0.0,
    scale: float = 400.0,
    base: float = 10.0,
    names: list[str] | None = None,
) -> pd.DataFrame:
    """Draw a battle log.

    Args:
        ratings: true ratings on the Elo scale (a Series supplies the model names).
        n_battles: number of battles.
        seed: random seed.
        tie_rate: probability that a battle is a tie.
        scale, base: the rating scale.
        names: model names (default: the Series index, else `model-000`, `model-001`, …).

    Returns:
        A DataFrame with `model_a, model_b, winner` (Chatbot Arena labels).
    """
    if isinstance(ratings, pd.Series):
        names = names or [str(m) for m in ratings.index]
        ratings = ratings.to_numpy(dtype=float)
    ratings = np.asarray(ratings, dtype=float)
    m = len(ratings)
    names = names or [f"model-{k:03d}" for k in range(m)]
    rng = np.random.default_rng(seed)
    a = rng.integers(0, m, n_battles)
    b = (a + rng.integers(1, m, n_battles)) % m
    p = win_prob(ratings[a] - ratings[b], scale=scale, base=base)
    tie = rng.random(n_battles) < tie_rate
    a_wins = rng.random(n_battles) < p
    labels = np.array(["model_b", "model_a", "tie"])
    winner = labels[np.where(tie, 2, a_wins.astype(int))]
    names_arr = np.array(names)
    return pd.DataFrame({"model_a": names_arr[a], "model_b": names_arr[b], "winner": winner})
