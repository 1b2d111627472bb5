"""The Elo scale: margins ↔ win probabilities, predicted win-probability matrices, and online Elo.

On the Elo scale a rating margin of `d` points means a win probability of `1 / (1 + base ** (-d / scale))`
(scale 400, base 10: 100 → 0.640, 200 → 0.760, 300 → 0.849). Bradley-Terry ratings (`harness.ratings.bt`) live on
this scale, so these functions turn any fitted ratings into head-to-head predictions.

Online Elo (`online_elo`) is the classic sequential update. Unlike the Bradley-Terry fit it depends on the order of
the battles — the same battles shuffled give different ratings — so use it to follow a stream, not to rank.
"""

from __future__ import annotations

import math
from typing import Mapping

import numpy as np
import pandas as pd

from harness.errors import HarnessError


def _check_scale(scale: float, base: float) -> None:
    if not (math.isfinite(scale) and scale > 0):
        raise HarnessError(f"scale must be a positive number, got {scale}")
    if not (math.isfinite(base) and base > 1):
        raise HarnessError(f"base must be a number greater than 1, got {base}")


def win_prob(margin: float | np.ndarray, *, scale: float = 400.0, base: float = 10.0) -> float | np.ndarray:
    """Win probability of the higher-rated side for a rating margin.

    Args:
        margin: rating difference(s), in rating points (negative margins give probabilities below 0.5).
        scale: rating points per `base`-fold change in the odds (400 on the Elo scale).
        base: the odds base (10 on the Elo scale).

    Returns:
        `1 / (1 + base ** (-margin / scale))`, same shape as `margin`.
    """
    _check_scale(scale, base)
    x = np.asarray(margin, dtype=float) * (math.log(base) / scale)
    p = 0.5 * (1.0 + np.tanh(0.5 * x))  # the logistic function, without overflow for large margins
    return float(p) if np.ndim(p) == 0 else p


def margin_for(prob: float | np.ndarray, *, scale: float = 400.0, base: float = 10.0) -> float | np.ndarray:
    """Rating margin that gives a win probability (the inverse of `win_prob`).

    Args:
        prob: win probability (or probabilities), strictly between 0 and 1.
        scale: rating points per `base`-fold change in the odds.
        base: the odds base.

    Returns:
        `scale * log_base(prob / (1 - prob))`, same shape as `prob`.
    """
    _check_scale(scale, base)
    p = np.asarray(prob, dtype=float)
    if not np.all((p > 0) & (p < 1)):
        raise HarnessError(f"win probabilities must lie strictly between 0 and 1, got {prob}")
    m = scale * (np.log(p) - np.log1p(-p)) / math.log(base)
    return float(m) if np.ndim(m) == 0 else m


def win_prob_matrix(
    ratings: Mapping[str, float] | pd.Series, *, scale: float = 400.0, base: float = 10.0
) -> pd.DataFrame:
    """Predicted probability that the row model beats the column model, from ratings on the Elo scale.

    Args:
        ratings: model → rating.
        scale: rating points per `base`-fold change in the odds (the scale the ratings were fitted on).
        base: the odds base.

    Returns:
        A square DataFrame (models in the order given); the diagonal is NaN.
    """
    series = pd.Series(ratings, dtype=float)
    r = series.to_numpy()
    p = win_prob(r[:, None] - r[None, :], scale=scale, base=base)
    np.fill_diagonal(p, np.nan)
    return pd.DataFrame(p, index=series.index, columns=series.index)


def online_elo(
    battles,
    *,
    k: float = 4.0,
    scale: float = 400.0,
    base: float = 10.0,
    init: float = 1000.0,
) -> pd.Series:
    """Sequential Elo over battles in the order given (order-dependent: shuffling the battles changes the result).

    Each battle moves model_a by `k * (score - expected)` and model_b by the opposite amount, where the score is 1,
    0.5 (tie) or 0, and the expectation is `win_prob(r_a - r_b)`.

    Args:
        battles: battles in any form `harness.ratings.battles.as_battles` accepts.
        k: the update step (Chatbot Arena used 4).
        scale: rating points per `base`-fold change in the odds.
        base: the odds base.
        init: every model's starting rating.

    Returns:
        Final ratings, highest first.
    """
    from harness.ratings.battles import encode

    _check_scale(scale, base)
    models, a, b, outcome = encode(battles)
    ratings = [float(init)] * len(models)
    alpha = math.log(base) / scale
    for x, y, score in zip(a.tolist(), b.tolist(), (outcome / 2.0).tolist()):
        expected = 1.0 / (1.0 + math.exp(-alpha * (ratings[x] - ratings[y])))
        delta = k * (score - expected)
        ratings[x] += delta
        ratings[y] -= delta
    return pd.Series(ratings, index=models, name="rating").sort_values(ascending=False)
