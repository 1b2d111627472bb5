"""Ratings of an arena, computed by the ratings engine (`harness.ratings`) from the raw battles.

`rate(battles, answers, baseline=...)` gives the leaderboard: Bradley-Terry ratings on the Elo scale with bootstrap
CIs and CI-aware ranks, battle counts and win rates, and against the baseline (when there is one) the win rate with
its 95% interval, the length-controlled win rate (AlpacaEval's GLM) and the predicted win probability from the
ratings. Win rates against the baseline count a battle as the model's mean score over the two position-swapped
games (1, 3/4, 1/2, 1/4 or 0), which is AlpacaEval's preference in [1, 2] minus one; rates are fractions in [0, 1].
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

Z95 = 1.959963984540054


@dataclass
class Ratings:
    """The leaderboard and the matrices behind it."""

    leaderboard: pd.DataFrame
    win_prob: pd.DataFrame
    empirical_win_rate: pd.DataFrame
    battle_counts: pd.DataFrame
    warnings: list[str] = field(default_factory=list)


def annotations(battles: pd.DataFrame, answers: list[dict], baseline: str) -> pd.DataFrame:
    """Battles against `baseline` as AlpacaEval annotations (generator_1 = the baseline, preference in [1, 2])."""
    text = {(r["model"], r["prompt_id"]): r["answer"] for r in answers}
    rows = []
    for b in battles.itertuples(index=False):
        if baseline not in (b.model_a, b.model_b) or b.model_a == b.model_b:
            continue
        model = b.model_b if b.model_a == baseline else b.model_a
        score = b.score_a if b.model_a == model else 1.0 - b.score_a
        rows.append({"instruction": b.prompt_id, "generator_1": baseline, "generator_2": model,
                     "output_1": text[(baseline, b.prompt_id)], "output_2": text[(model, b.prompt_id)],
                     "preference": 1.0 + score})
    return pd.DataFrame(rows)


def _vs_baseline(battles: pd.DataFrame, answers: list[dict], baseline: str, caught: list[str]) -> pd.DataFrame:
    from harness.ratings import alpaca_winrate

    frame = annotations(battles, answers, baseline)
    if frame.empty:
        return pd.DataFrame(columns=["model"])
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        table = alpaca_winrate([frame])
    for w in seen:
        if str(w.message).startswith("instruction difficulty estimated"):
            # The engine's advice names a flag of `harness winrate`; here the caveat is what matters.
            caught.append(f"LC win rate: instruction difficulty is estimated from these {len(table)} model(s) only "
                          "(AlpacaEval estimates it over its whole leaderboard); read the LC win rate as rough")
        else:
            caught.append(str(w.message))
    rate, se = table["win_rate"] / 100.0, table["standard_error"].fillna(np.inf) / 100.0
    return pd.DataFrame({
        "model": table["model"],
        "win_rate_vs_baseline": rate,
        "win_rate_ci_low": (rate - Z95 * se).clip(0.0, 1.0),
        "win_rate_ci_high": (rate + Z95 * se).clip(0.0, 1.0),
        "lc_win_rate_vs_baseline": table["length_controlled_winrate"] / 100.0,
    })


def rate(
    battles: pd.DataFrame, answers: list[dict], *, baseline: str | None = None, rounds: int = 1000, seed: int = 0,
    scoring: str = "paired", strong_weight: int = 3,
) -> Ratings:
    """Rate the models of an arena.

    Args:
        battles: battle records (arena format, with ``score_a`` and ``prompt_id``).
        answers: the generation records (for the answers' texts and lengths).
        baseline: the model the others are measured against, or None.
        rounds: bootstrap rounds for the rating CIs.
        seed: bootstrap seed.
        scoring: "paired" (default): one battle per pair of position-swapped games, won on the mean score;
            "arena-hard": each game a battle and a strong verdict (``>>``) `strong_weight` battles, as arena-hard-auto
            scores (`harness.ratings.arena_hard`). The win rates against the baseline use the paired score either way.
        strong_weight: battles per strong verdict with ``scoring="arena-hard"``.

    Returns:
        `Ratings`; the leaderboard has ``rank, model, rating, ci_low, ci_high, battles, wins, ties, losses,
        win_rate, avg_win_prob`` and with a baseline ``win_rate_vs_baseline, win_rate_ci_low, win_rate_ci_high,
        lc_win_rate_vs_baseline, p_win_vs_baseline`` (NaN in the baseline's own row).

    When the battles do not identify the ratings (an undefeated model, a disconnected comparison graph) they are
    fitted with the ratings engine's weak L2 penalty and a warning in `Ratings.warnings` says so.

    Raises:
        HarnessError: no battles, or malformed ones.
    """
    from harness.ratings import battle_count_matrix, empirical_win_rate_matrix, leaderboard, win_prob_matrix

    from harness.ratings import NotIdentifiableError
    from harness.ratings.intervals import FALLBACK_L2

    caught: list[str] = []
    rated = battles
    if scoring == "arena-hard":
        from harness.ratings.arena_hard import expand_verdicts

        rated = expand_verdicts(battles, strong_weight=strong_weight)
    elif scoring != "paired":
        from harness.errors import HarnessError

        raise HarnessError(f"unknown arena scoring {scoring!r}; valid: paired, arena-hard")
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        try:
            board = leaderboard(rated, rounds=rounds, seed=seed)
        except NotIdentifiableError as err:
            # The battles are already recorded; a penalised fit keeps the leaderboard, and the warning says why.
            caught.append(f"{err}; rated with an L2 penalty of {FALLBACK_L2} instead, so these ratings and their "
                          "intervals are bounded by the penalty, not by the data")
            board = leaderboard(rated, rounds=rounds, seed=seed, l2=FALLBACK_L2)
    caught += [str(w.message) for w in seen]
    board.attrs["scoring"] = scoring if scoring == "paired" else f"arena-hard (>> = {strong_weight} battles)"
    ratings = board.set_index("model")["rating"]
    order = list(ratings.index)
    win_prob = win_prob_matrix(ratings)
    if baseline is not None and baseline in order:
        extra = _vs_baseline(battles, answers, baseline, caught)
        attrs = board.attrs
        board = board.merge(extra, on="model", how="left")
        board.attrs.update(attrs, baseline=baseline)
        board["p_win_vs_baseline"] = [np.nan if m == baseline else win_prob.loc[m, baseline] for m in board["model"]]
    return Ratings(
        leaderboard=board,
        win_prob=win_prob,
        empirical_win_rate=empirical_win_rate_matrix(rated).loc[order, order],
        battle_counts=battle_count_matrix(rated).loc[order, order],
        warnings=caught,
    )


def format_leaderboard(board: pd.DataFrame) -> str:
    """The terminal table: rank, model, rating and CI, battles, and the columns against the baseline."""
    from harness.ratings.report import render

    baseline = board.attrs.get("baseline")
    show = board[["rank", "model", "rating", "ci_low", "ci_high", "se", "battles", "win_rate"]].copy()
    digits = {"rating": 0, "ci_low": 0, "ci_high": 0, "se": 1, "win_rate": 3}
    if baseline:
        tag = f"vs_{baseline}"
        show[f"win_rate_{tag}"] = board["win_rate_vs_baseline"]
        show["wr_ci_low"] = board["win_rate_ci_low"]
        show["wr_ci_high"] = board["win_rate_ci_high"]
        show[f"lc_win_rate_{tag}"] = board["lc_win_rate_vs_baseline"]
        show[f"p_win_{tag}"] = board["p_win_vs_baseline"]
        digits.update({c: 3 for c in show.columns[8:]})
    return render(show, "table", digits=digits)
