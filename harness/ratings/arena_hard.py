"""Arena-Hard's own scoring: each position game is a battle and a strong verdict (`>>`) counts as several.

arena-hard-auto (`show_result.py`, `get_battles_from_judgment`) turns the two games of a (question, model, baseline)
judgement — answer A shown first, then the positions swapped — into separate battles, and repeats a game whose verdict
is strong (``A>>B``, ``B>>A``) `WEIGHT` = 3 times; ``A>B`` and ``B>A`` count once, ``A=B`` is one tie. Its
`compute_mle_elo` then fits Bradley-Terry by logistic regression (scale 400, base 10, ties as half a win each way,
the baseline anchored at 1000), and its score is each model's predicted win rate against the baseline
(`get_win_rate_column`). The harness's default instead makes one battle per pair of games, won on the mean score (a
judge with position bias then produces ties rather than wins); `harness rate --scoring arena-hard` and
`harness.arena.leaderboard.rate(scoring="arena-hard")` use this expansion.

    from harness.ratings.arena_hard import expand_verdicts
    battles = expand_verdicts(arena_battles, strong_weight=3)   # one row per counted game
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from harness.arena.verdicts import VERDICTS, Judgement
from harness.errors import HarnessError

STRONG_WEIGHT = 3  # arena-hard-auto's WEIGHT
VERDICT_COLUMNS = ("verdict_ab", "verdict_ba")
# verdict as given with the first-named model shown as A → (winner from that model's side, strong?)
_FIRST = {"A>>B": ("first", True), "A>B": ("first", False), "A=B": ("tie", False), "B>A": ("second", False),
          "B>>A": ("second", True)}


def _weight(verdict: str, strong_weight: int) -> int:
    return strong_weight if _FIRST[verdict][1] else 1


def _check_weight(strong_weight: int) -> None:
    if isinstance(strong_weight, bool) or not isinstance(strong_weight, (int, np.integer)) or strong_weight < 1:
        raise HarnessError(f"strong_weight must be a whole number >= 1 (arena-hard-auto uses 3), got {strong_weight!r}")


def game_battles(first: Judgement | str, second: Judgement | str, model_a: str, model_b: str, *,
                 strong_weight: int = STRONG_WEIGHT) -> list[dict[str, str]]:
    """The battles two position-swapped judgements count for under Arena-Hard's scoring.

    Args:
        first: the verdict with `model_a`'s answer shown first (as A).
        second: the verdict with `model_b`'s answer shown first.
        model_a, model_b: the two models.
        strong_weight: how many battles a strong verdict (`>>`) counts for.

    Returns:
        Battle dicts (`model_a, model_b, winner, game`), `strong_weight` of them for a strong verdict, one otherwise.
    """
    _check_weight(strong_weight)
    out = []
    for game, judgement, shown_first in (("ab", first, "model_a"), ("ba", second, "model_b")):
        verdict = judgement.verdict if isinstance(judgement, Judgement) else judgement
        if verdict not in _FIRST:
            raise HarnessError(f"game {game} of {model_a} vs {model_b}: verdict {verdict!r} is not on the Arena-Hard "
                               f"scale; valid: {', '.join(VERDICTS)}")
        side = _FIRST[verdict][0]
        other = "model_b" if shown_first == "model_a" else "model_a"
        winner = "tie" if side == "tie" else (shown_first if side == "first" else other)
        out += [{"model_a": model_a, "model_b": model_b, "winner": winner, "game": game}] * _weight(verdict, strong_weight)
    return out


def expand_verdicts(battles: pd.DataFrame, *, strong_weight: int = STRONG_WEIGHT, source: str = "battles") -> pd.DataFrame:
    """Arena battle records (one per pair of games, with `verdict_ab` and `verdict_ba`) → Arena-Hard battles.

    Args:
        battles: battle records as `harness arena` writes them (`verdict_ab`: model_a shown first, `verdict_ba`:
            model_b shown first).
        strong_weight: battles per strong verdict (arena-hard-auto: 3).
        source: how to name the input in error messages.

    Returns:
        One row per counted game: the record's other columns, `winner` from that game, and `game` (`ab` or `ba`);
        the `ab` games of all records first, then the `ba` games.
    """
    _check_weight(strong_weight)
    missing = [c for c in VERDICT_COLUMNS if c not in battles.columns]
    if missing:
        raise HarnessError(
            f"{source}: Arena-Hard scoring needs the per-game verdicts ({', '.join(VERDICT_COLUMNS)}, as `harness "
            f"arena` records them); missing: {', '.join(missing)}. Battles already expanded one row per game and "
            "weight (arena-hard-auto's battle files) are rated as they are, without --scoring arena-hard"
        )
    parts = []
    for game, column, first_side in (("ab", "verdict_ab", "model_a"), ("ba", "verdict_ba", "model_b")):
        verdicts = battles[column]
        bad = ~verdicts.isin(list(_FIRST))
        if bad.any():
            row = int(np.flatnonzero(bad.to_numpy())[0])
            raise HarnessError(f"{source}: row {row + 1}: column {column} is {verdicts.iloc[row]!r}; valid: "
                               f"{', '.join(VERDICTS)}")
        second_side = "model_b" if first_side == "model_a" else "model_a"
        side = verdicts.map({k: v[0] for k, v in _FIRST.items()})
        winner = np.where(side == "tie", "tie", np.where(side == "first", first_side, second_side))
        weight = verdicts.map({k: _weight(k, strong_weight) for k in _FIRST}).to_numpy(dtype=np.int64)
        frame = battles.assign(winner=winner, game=game)
        parts.append(frame.loc[frame.index.repeat(weight)])
    return pd.concat(parts, ignore_index=True)


def win_rate_vs_baseline(ratings: pd.Series, baseline: str, *, scale: float = 400.0, base: float = 10.0) -> pd.Series:
    """Each model's predicted win rate against `baseline` from its rating, in percent (the baseline gets 50), as
    arena-hard-auto's `get_win_rate_column` prints it (unrounded here).

    Args:
        ratings: model → rating.
        baseline: the baseline model (one of `ratings`).
        scale, base: the rating scale.

    Returns:
        Win rates in percent, same order as `ratings`.
    """
    if baseline not in ratings.index:
        raise HarnessError(f"baseline {baseline!r} is not among the rated models: {', '.join(map(str, ratings.index))}")
    gap = (ratings - ratings[baseline]) / scale
    return (100.0 / (1.0 + np.power(base, -gap))).rename("win_rate_vs_baseline")
