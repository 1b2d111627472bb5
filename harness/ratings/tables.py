"""Leaderboard tables: ratings with intervals and CI-aware ranks, plus the win-rate matrices behind them.

`leaderboard(battles)` is the one call that turns raw battles into the table `harness rate` prints: Bradley-Terry
ratings, percentile bootstrap intervals, sandwich standard errors beside them (`harness.ratings.sandwich`, clustered
by prompt when the battles name one), CI-aware ranks with an interval of ranks, battle counts, wins/ties/losses, the
empirical win rate and the predicted average win rate against all other models; with `style=True` also
style-controlled ratings.

Matrices (row model vs column model): `battle_count_matrix`, `empirical_win_rate_matrix` (wins plus half the ties,
over battles) and `harness.ratings.elo.win_prob_matrix` (predicted from ratings).
"""

from __future__ import annotations

from typing import Mapping

import numpy as np
import pandas as pd

from harness.ratings.battles import BattlesLike, PairCounts, aggregate, as_battles
from harness.ratings.bt import fit_bt
from harness.ratings.elo import win_prob_matrix
from harness.ratings.intervals import bootstrap, ci_ranks
from harness.ratings.sandwich import sandwich


def _square(counts: PairCounts, upper: np.ndarray, lower: np.ndarray) -> pd.DataFrame:
    m = len(counts.models)
    out = np.zeros((m, m))
    out[counts.i, counts.j] = upper
    out[counts.j, counts.i] = lower
    return pd.DataFrame(out, index=counts.models, columns=counts.models)


def battle_count_matrix(battles: BattlesLike | PairCounts) -> pd.DataFrame:
    """Battles between each pair of models (symmetric, zero diagonal).

    Args:
        battles: battles or `PairCounts`.

    Returns:
        A square DataFrame of counts, models sorted by name.
    """
    counts = aggregate(battles)
    return _square(counts, counts.n, counts.n).astype(np.int64)


def empirical_win_rate_matrix(battles: BattlesLike | PairCounts) -> pd.DataFrame:
    """Observed score of the row model against the column model: (wins + ties / 2) / battles.

    Args:
        battles: battles or `PairCounts`.

    Returns:
        A square DataFrame; NaN where two models never met and on the diagonal.
    """
    counts = aggregate(battles)
    n = counts.n
    frame = _square(counts, counts.score_i / n, (n - counts.score_i) / n)
    never = battle_count_matrix(counts).to_numpy() == 0
    return frame.mask(never)


def average_win_rate(ratings: Mapping[str, float] | pd.Series, *, scale: float = 400.0, base: float = 10.0) -> pd.Series:
    """Predicted win probability of each model against every other model, averaged (uniform over opponents).

    Args:
        ratings: model → rating.
        scale, base: the rating scale.

    Returns:
        Average predicted win rate per model, same order as `ratings`.
    """
    return win_prob_matrix(ratings, scale=scale, base=base).mean(axis=1, skipna=True).rename("avg_win_prob")


def model_totals(battles: BattlesLike | PairCounts) -> pd.DataFrame:
    """Per model: battles, wins, ties, losses and the empirical win rate (wins + ties / 2) / battles."""
    c = aggregate(battles)
    m = len(c.models)
    wins = np.bincount(c.i, c.wins_i, m) + np.bincount(c.j, c.wins_j, m)
    losses = np.bincount(c.i, c.wins_j, m) + np.bincount(c.j, c.wins_i, m)
    ties = np.bincount(c.i, c.ties, m) + np.bincount(c.j, c.ties, m)
    n = wins + ties + losses
    return pd.DataFrame(
        {
            "battles": n.astype(np.int64),
            "wins": wins.astype(np.int64),
            "ties": ties.astype(np.int64),
            "losses": losses.astype(np.int64),
            "win_rate": (wins + 0.5 * ties) / n,
        },
        index=c.models,
    )


def leaderboard(
    battles: BattlesLike,
    *,
    rounds: int = 1000,
    seed: int = 0,
    level: float = 0.95,
    anchor: Mapping[str, float] | None = None,
    l2: float = 0.0,
    scale: float = 400.0,
    base: float = 10.0,
    init: float = 1000.0,
    style: bool = False,
    cluster: str | None = "auto",
) -> pd.DataFrame:
    """Ratings table, best first.

    Args:
        battles: battles (DataFrame, list of dicts, path).
        rounds: bootstrap rounds; 0 skips the bootstrap (intervals are then NaN and ranks follow the ratings).
        seed: bootstrap seed.
        level: confidence level of the percentile intervals.
        anchor: optional `{model: rating}`.
        l2: L2 penalty on natural-unit ratings.
        scale, base, init: the rating scale.
        style: also fit style-controlled ratings (needs response metadata, see `harness.ratings.style`).
        cluster: the column the sandwich standard errors are clustered by; "auto" takes `prompt_id` or
            `question_id` when present, None clusters nothing (every battle its own cluster).

    Returns:
        Columns `rank, model, rating, ci_low, ci_high, se, rank_ci_low, rank_ci_high, battles, wins, ties, losses,
        win_rate, avg_win_prob`, and with `style=True` also `style_rating, style_ci_low, style_ci_high, style_rank`.
        `se` is the sandwich standard error (rating points); the rank interval is the percentile interval of the
        bootstrap ranks, or with `rounds=0` the ranks the sandwich Wald intervals allow. `attrs` records the level,
        rounds, seed, scale, base, init, anchor, l2, how the SEs were clustered (and the style coefficients).
    """
    frame = as_battles(battles)
    counts = aggregate(frame)
    robust = sandwich(frame, level=level, cluster=cluster, anchor=anchor, l2=l2, scale=scale, base=base, init=init)
    if rounds > 0:
        boot = bootstrap(counts, rounds, seed, level, anchor=anchor, l2=l2, scale=scale, base=base, init=init)
        ratings, low, high, rank = boot.ratings, boot.ci_low, boot.ci_high, boot.rank
        rank_low, rank_high = boot.rank_ci_low, boot.rank_ci_high
        rank_method = "percentile interval of the bootstrap ranks"
    else:
        ratings = fit_bt(counts, anchor=anchor, l2=l2, scale=scale, base=base, init=init)
        low = high = pd.Series(np.nan, index=ratings.index)
        rank = pd.Series(ci_ranks(ratings.to_numpy(), ratings.to_numpy()), index=ratings.index)
        rank_low, rank_high = robust.rank_low[ratings.index], robust.rank_high[ratings.index]
        rank_method = "ranks allowed by the sandwich Wald intervals"
    totals = model_totals(counts).loc[ratings.index]
    table = pd.DataFrame(
        {
            "rank": rank.to_numpy(),
            "model": ratings.index,
            "rating": ratings.to_numpy(),
            "ci_low": low.to_numpy(),
            "ci_high": high.to_numpy(),
            "se": robust.se[ratings.index].to_numpy(),
            "rank_ci_low": rank_low.to_numpy(),
            "rank_ci_high": rank_high.to_numpy(),
        }
    )
    table = pd.concat([table, totals.reset_index(drop=True)], axis=1)
    table["avg_win_prob"] = average_win_rate(ratings, scale=scale, base=base).to_numpy()
    table.attrs.update(
        {"level": level, "rounds": rounds, "seed": seed, "ci_method": "percentile bootstrap (Poisson resampling)",
         "scale": scale, "base": base, "init": init, "anchor": dict(anchor or {}), "l2": l2,
         "se_method": "sandwich (Huber-White)", "se_cluster": robust.cluster or "none", "se_clusters": robust.clusters,
         "rank_ci_method": rank_method}
    )
    if style:
        from harness.ratings.style import style_bootstrap

        result = style_bootstrap(frame, rounds=rounds, seed=seed, level=level, anchor=anchor, l2=l2,
                                 scale=scale, base=base, init=init)
        styled = result.table().set_index("model").loc[table["model"]]
        for col in ("rating", "ci_low", "ci_high", "rank"):
            table[f"style_{col}"] = styled[col].to_numpy()
        table.attrs["style_coefficients"] = result.coefficients.to_dict()
    return table.sort_values(["rating"], ascending=False, kind="stable").reset_index(drop=True)
