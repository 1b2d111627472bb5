"""Simulated battle logs from known ratings, for tests and benchmarks.

Battles draw a random pair of distinct models. With p the Bradley-Terry win probability of model_a, a battle is a tie
with probability `t = tie_rate · 2·min(p, 1 − p)` (close matches tie more often), model_a wins with probability
`p − t/2` and model_b with `1 − p − t/2`. Model_a's expected score is then exactly p, so the Bradley-Terry fit — which
counts a tie as half a win each way — recovers the true ratings. With `categorical=True` the columns are pandas
categoricals (a 10M-battle log then takes about 50 MB rather than gigabytes of Python strings).
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
    categorical: bool = False,
) -> pd.DataFrame:
    """Draw a battle log.

    Args:
        ratings: true ratings on the Elo scale (a Series supplies the model names).
        n_battles: number of battles.
        seed: random seed.
        tie_rate: tie probability between equally rated models (in [0, 1]; less for uneven pairs).
        scale, base: the rating scale.
        names: model names (default: the Series index, else `model-000`, `model-001`, …).
        categorical: return the three columns as `pd.Categorical` (same values, far less memory).

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
    t = tie_rate * 2.0 * np.minimum(p, 1.0 - p)
    u = rng.random(n_battles)
    labels = ["model_b", "model_a", "tie"]
    code = np.where(u < p - t / 2, 1, np.where(u < p + t / 2, 2, 0)).astype(np.int8)
    if categorical:
        dtype = a.dtype if m > 32767 else np.int16
        return pd.DataFrame({"model_a": pd.Categorical.from_codes(a.astype(dtype), names),
                             "model_b": pd.Categorical.from_codes(b.astype(dtype), names),
                             "winner": pd.Categorical.from_codes(code, labels)})
    names_arr = np.array(names)
    return pd.DataFrame({"model_a": names_arr[a], "model_b": names_arr[b], "winner": np.array(labels)[code]})
