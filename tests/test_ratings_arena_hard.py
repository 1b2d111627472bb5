"""Arena-Hard's own scoring: `>>` counted three times, each position game a battle, and arena-hard-auto's numbers
(`compute_mle_elo`, `get_win_rate_column`) reproduced on its own battle file."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest

from harness.arena.verdicts import Judgement
from harness.cli import main
from harness.errors import HarnessError
from harness.ratings import fit_bt
from harness.ratings.arena_hard import expand_verdicts, game_battles, win_rate_vs_baseline

BASELINE = "claude-3-haiku-20240307"
RATING_TOL = 1e-3  # Elo points: both are the same maximum-likelihood fit, solved to ~1e-6
WIN_RATE_TOL = 0.01  # percentage points: arena-hard-auto prints win rates rounded to 2 decimals


def test_a_strong_verdict_is_three_battles_and_a_plain_one_is_one():
    rows = game_battles(Judgement("A>>B"), Judgement("A>B"), "x", "y")
    assert [r["winner"] for r in rows] == ["model_a"] * 3 + ["model_b"]  # second game: y shown first, y better
    assert [r["game"] for r in rows] == ["ab"] * 3 + ["ba"]
    rows = game_battles(Judgement("B>A"), Judgement("B>>A"), "x", "y")
    assert [r["winner"] for r in rows] == ["model_b"] + ["model_a"] * 3
    assert [r["winner"] for r in game_battles("A=B", "A=B", "x", "y")] == ["tie", "tie"]
    assert len(game_battles("A>>B", "B>>A", "x", "y", strong_weight=1)) == 2
    with pytest.raises(HarnessError, match="verdict None is not on the Arena-Hard scale"):
        game_battles(Judgement(None, error="timeout"), Judgement("A>B"), "x", "y")


def test_expand_verdicts_on_arena_records():
    records = pd.DataFrame([
        {"model_a": "x", "model_b": "y", "winner": "model_a", "prompt_id": "p1", "verdict_ab": "A>>B", "verdict_ba": "B>A"},
        {"model_a": "x", "model_b": "y", "winner": "tie", "prompt_id": "p2", "verdict_ab": "A>B", "verdict_ba": "A>B"},
        {"model_a": "y", "model_b": "z", "winner": "model_b", "prompt_id": "p1", "verdict_ab": "A=B", "verdict_ba": "A>>B"},
    ])
    out = expand_verdicts(records)
    assert len(out) == 3 + 1 + 1 + 1 + 1 + 3
    per = out.groupby(["prompt_id", "model_b", "winner"]).size().to_dict()
    assert per[("p1", "y", "model_a")] == 4  # A>>B with x first (3) + B>A with y first (1)
    assert per[("p2", "y", "model_a")] == 1 and per[("p2", "y", "model_b")] == 1  # position bias: one each
    assert per[("p1", "z", "tie")] == 1 and per[("p1", "z", "model_b")] == 3
    assert set(out.columns) >= {"prompt_id", "game", "verdict_ab"} and sorted(out["game"].unique()) == ["ab", "ba"]
    with pytest.raises(HarnessError, match="row 2: column verdict_ba is 'A>>>B'"):
        expand_verdicts(records.assign(verdict_ba=["B>A", "A>>>B", "A>B"]))
    with pytest.raises(HarnessError, match="needs the per-game verdicts"):
        expand_verdicts(records.drop(columns=["verdict_ab"]))


def _compute_mle_elo(df: pd.DataFrame) -> pd.Series:
    """arena-hard-auto's `compute_mle_elo`: logistic regression on the battle design matrix, ties as one win each
    way (battles doubled), scale 400, base 10, init 1000, the baseline anchored at 1000."""
    from sklearn.linear_model import LogisticRegression

    models = pd.concat([df["model_a"], df["model_b"]]).unique()
    models = pd.Series(np.arange(len(models)), index=models)
    df = pd.concat([df, df], ignore_index=True)
    n, p = len(df), len(models)
    x = np.zeros([n, p])
    x[np.arange(n), models[df["model_a"]].to_numpy()] = +math.log(10)
    x[np.arange(n), models[df["model_b"]].to_numpy()] = -math.log(10)
    y = np.zeros(n)
    y[(df["winner"] == "model_a").to_numpy()] = 1.0
    tie = df["winner"].isin(["tie", "tie (bothbad)"]).to_numpy().copy()
    tie[n // 2:] = False
    y[tie] = 1.0
    lr = LogisticRegression(fit_intercept=False, C=np.inf, tol=1e-8)  # C=inf: sklearn's spelling of penalty=None
    lr.fit(x, y)
    elo = 400 * lr.coef_[0] + 1000
    elo += 1000 - elo[models[BASELINE]]
    return pd.Series(elo, index=models.index)


def test_reproduces_arena_hard_auto_on_its_battles(arena_hard):
    battles = pd.read_json(arena_hard, lines=True)
    theirs = _compute_mle_elo(battles)
    ours = fit_bt(battles, anchor={BASELINE: 1000.0})
    their_rate = theirs.map(lambda r: round(100 / (1 + 10 ** ((1000 - r) / 400)), 2))  # get_win_rate_column
    our_rate = win_rate_vs_baseline(ours, BASELINE)
    table = pd.DataFrame({"arena_hard_auto_elo": theirs, "ours": ours[theirs.index],
                          "arena_hard_auto_win_rate": their_rate, "our_win_rate": our_rate[theirs.index]})
    print("\n" + table.sort_values("ours", ascending=False).round(4).to_string())
    assert np.abs(table["ours"] - table["arena_hard_auto_elo"]).max() < RATING_TOL
    assert np.abs(table["our_win_rate"] - table["arena_hard_auto_win_rate"]).max() <= WIN_RATE_TOL / 2 + 1e-9
    assert their_rate.to_dict() == {"claude-3-5-sonnet-20240620": 88.69, "gpt-4o": 86.82, "gpt-4o-mini": 80.06,
                                    "claude-3-opus-20240229": 75.97, BASELINE: 50.0}


def test_harness_rate_scores_arena_records_the_arena_hard_way(tmp_path, capsys):
    rows = []
    rng = np.random.default_rng(0)
    verdicts = ["A>>B", "A>B", "A=B", "B>A", "B>>A"]
    for k in range(60):
        for a, b in (("x", "y"), ("y", "z"), ("x", "z")):
            rows.append({"model_a": a, "model_b": b, "winner": "tie", "prompt_id": f"p{k}",
                         "verdict_ab": verdicts[rng.integers(0, 5)], "verdict_ba": verdicts[rng.integers(0, 5)]})
    path = tmp_path / "arena.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    assert main(["rate", str(path), "--scoring", "arena-hard", "--bootstrap", "0", "--format", "json"]) == 0
    captured = capsys.readouterr()
    out = {r["model"]: r for r in json.loads(captured.out)}
    expected = fit_bt(expand_verdicts(pd.DataFrame(rows)))
    for model, rating in expected.items():
        assert out[model]["rating"] == pytest.approx(rating) and out[model]["se"] > 0
    assert "Arena-Hard scoring (each position game a battle, >> = 3 battles)" in captured.err
    assert "clustered by prompt_id, 60 clusters" in captured.err
    assert sum(r["battles"] for r in out.values()) == 2 * len(expand_verdicts(pd.DataFrame(rows)))
    plain = tmp_path / "plain.jsonl"
    plain.write_text("".join(json.dumps({k: r[k] for k in ("model_a", "model_b", "winner")}) + "\n" for r in rows))
    assert main(["rate", str(plain), "--scoring", "arena-hard"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "Arena-Hard scoring needs the per-game verdicts" in err[0]
    assert main(["rate", str(path), "--scoring", "arena-hard", "--strong-weight", "0"]) == 2
    assert "out of range (valid: >= 1)" in capsys.readouterr().err
